// SPDX-License-Identifier: BSD-3-Clause
// The ranks a training run spans, as the trainer sees them: a handful of collectives with a fixed
// reduction order, so that a data-parallel run is deterministic (the same result for the same input,
// bitwise, whatever the message timing). This base class is one rank (every collective is the
// identity); dist/mpi.hpp implements it over an MPI communicator.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace hydragnn {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const { return 0; }
  virtual int size() const { return 1; }
  /// x <- sum over ranks of x, evaluated as ((x_0 + x_1) + x_2) + ... in rank order on every rank, so
  /// the result is bitwise the same on all ranks and the same as that left fold done by one process.
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
