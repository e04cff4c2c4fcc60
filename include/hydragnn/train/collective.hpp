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

#include <Kokkos_Core.hpp>

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
  /// Start x <- sum over ranks of x (the same sum) and return, where the implementation can run it
  /// while the caller computes (MpiCollective: on its communication thread); x must not be touched
  /// until wait_sums(). Every rank starts the same sums in the same order. Here: done at once.
  virtual void start_sum(float* x, std::size_t n) const { sum(x, n); }
  virtual void start_sum(double* x, std::size_t n) const { sum(x, n); }
  /// Wait for every sum started (rethrows a failure of one of them).
  virtual void wait_sums() const {}
  /// Whether start_sum_device() may be given buffers in GPU memory (an MPI that reads and writes GPU
  /// memory itself: CUDA- or ROCm-aware). Otherwise the caller stages device buffers through the host.
  virtual bool gpu_aware() const { return false; }
  /// start_sum() of x in the memory of Kokkos' default execution space: the ranks' buffers go to MPI as
  /// they are and are added by kernels on `space` (an instance apart from the caller's, as the sum
  /// runs while the caller computes), into x, with scratch (n values, same memory) for the partner's
  /// part. The same additions in the same order as start_sum(). Here (one rank): nothing to add.
  virtual void start_sum_device(const Kokkos::DefaultExecutionSpace& space, float* x, std::size_t n, float* scratch) const {
    (void)space, (void)x, (void)n, (void)scratch;
  }
  virtual void start_sum_device(const Kokkos::DefaultExecutionSpace& space, double* x, std::size_t n,
                                double* scratch) const {
    (void)space, (void)x, (void)n, (void)scratch;
  }
  /// Integer sums (counts, histograms): exact in any order.
  virtual void sum(long* x, std::size_t n) const { (void)x, (void)n; }
  /// Every rank's values, concatenated in rank order (ranks may contribute different lengths).
  virtual std::vector<double> gather(const std::vector<double>& x) const { return x; }
  /// Wait until every rank has arrived (e.g. rank 0 has written a file the others read next); bounded
  /// in time like the sums (MpiCollective).
  virtual void barrier() const {}
  /// The same without a time bound: where ranks legitimately wait for each other's long work (an HPO
  /// worker that ran out of trials waits for the others').
  virtual void barrier_unbounded() const { barrier(); }
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
