// SPDX-License-Identifier: BSD-3-Clause
// The ranks a training run spans, as the trainer sees them: a handful of collectives with a fixed
// reduction order, so that a data-parallel run is deterministic (the same result for the same input,
// bitwise, whatever the message timing). This base class is one rank (every collective is the
// identity); dist/mpi.hpp implements it over an MPI communicator.
//
// The order of a sum of n addends x_0 .. x_{n-1} (ranks, or one rank's micro-batches) is the tree
// SumTree(n): with p the largest power of two <= n and m = n - p, the first m pairs are added first,
//   v_i = x_{2i} + x_{2i+1}  (i < m),   v_i = x_{i+m}  (m <= i < p),
// then v_0 .. v_{p-1} as a balanced binary tree, neighbours first:
//   n = 3: (x0 + x1) + x2      n = 4: (x0 + x1) + (x2 + x3)      n = 5: ((x0 + x1) + x2) + (x3 + x4)
// It is the tree of a recursive-halving all-reduce (dist/mpi.hpp: log2 p message rounds, not n), and
// one process evaluates the same tree over its micro-batches (SumTree::evaluate, depth() + 1 buffers),
// so `mpirun -np P` sums the gradients exactly as `--accumulate P` on one rank does.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace hydragnn {

class SumTree {
 public:
  explicit SumTree(int n) : n_(n < 1 ? 1 : n) {
    while (2 * p_ <= n_) p_ *= 2;
    m_ = n_ - p_;
  }
  int size() const { return n_; }
  /// the largest power of two <= n, and the number of leading pairs added before the balanced tree
  int pow2() const { return p_; }
  int pairs() const { return m_; }
  /// levels of the tree above the leaves (ceil(log2 n)): evaluate() uses buffers 0 .. depth()
  int depth() const {
    int d = 0;
    while ((1 << d) < p_) ++d;
    return d + (m_ > 0 ? 1 : 0);
  }
  /// Post-order evaluation, leaves in order 0 .. n-1: leaf(i, s) puts addend i into buffer s,
  /// add(s, s + 1) adds buffer s + 1 into buffer s; the sum ends in buffer 0.
  template <class Leaf, class Add>
  void evaluate(Leaf&& leaf, Add&& add) const {
    node(0, p_, 0, leaf, add);
  }

 private:
  template <class Leaf, class Add>
  void node(int lo, int hi, int s, Leaf& leaf, Add& add) const {
    if (hi - lo == 1) {
      if (lo < m_) {
        leaf(2 * lo, s);
        leaf(2 * lo + 1, s + 1);
        add(s, s + 1);
      } else {
        leaf(lo + m_, s);
      }
      return;
    }
    const int mid = lo + (hi - lo) / 2;
    node(lo, mid, s, leaf, add);
    node(mid, hi, s + 1, leaf, add);
    add(s, s + 1);
  }
  int n_, p_ = 1, m_ = 0;
};

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const { return 0; }
  virtual int size() const { return 1; }
  /// x <- sum over ranks of x, evaluated as SumTree(size()) over the ranks on every rank, so the result
  /// is bitwise the same on all ranks and the same as SumTree::evaluate done by one process.
  virtual void sum(float* x, std::size_t n) const { (void)x, (void)n; }
  virtual void sum(double* x, std::size_t n) const { (void)x, (void)n; }
  /// Integer sums (counts, histograms): exact in any order.
  virtual void sum(long* x, std::size_t n) const { (void)x, (void)n; }
  /// Every rank's values, concatenated in rank order (ranks may contribute different lengths).
  virtual std::vector<double> gather(const std::vector<double>& x) const { return x; }
  /// Wait until every rank has arrived (e.g. rank 0 has written a file the others read next).
  virtual void barrier() const {}
  /// Stop every rank of the run (a failure that the other ranks cannot see); does not return where
  /// there are other ranks. One rank: nothing (the caller throws).
  virtual void abort(const std::string& message) const { (void)message; }
};

/// One rank.
inline const Collective& single_rank() {
  static const Collective c;
  return c;
}

}  // namespace hydragnn
