// SPDX-License-Identifier: BSD-3-Clause
// The trainer's collectives (train/collective.hpp) over an MPI communicator.
//
// The sum of a float/double buffer has a fixed order, so the result does not depend on the MPI
// library's reduction algorithm or on message timing: a reduce-scatter by all-to-all (rank q receives
// block q of every rank's buffer and adds the blocks in rank order, ((x_0 + x_1) + x_2) + ..), then an
// all-gather of the summed blocks. Each rank sends and receives 2 (P-1)/P of the buffer, as a ring
// all-reduce does. Buffers are cut into buckets of at most `bucket_bytes` (default 64 MiB) so the
// staging memory stays bounded for any model size. Host buffers: the trainer stages device
// gradients through a host mirror. The sums and gathers are bounded in time (dist/watchdog.hpp,
// HYDRAGNN_COLLECTIVE_TIMEOUT): a rank that stops responding ends the job instead of hanging it.
//
// Include this header only where MPI is available (the CLI defines HYDRAGNN_HAVE_MPI when CMake finds
// it); the library proper does not depend on MPI.
#pragma once

#include <hydragnn/dist/watchdog.hpp>
#include <hydragnn/train/collective.hpp>

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

namespace mpi_detail {
template <class T> MPI_Datatype datatype();
template <> inline MPI_Datatype datatype<float>() { return MPI_FLOAT; }
template <> inline MPI_Datatype datatype<double>() { return MPI_DOUBLE; }
template <> inline MPI_Datatype datatype<long>() { return MPI_LONG; }

inline void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string("hydragnn::MpiCollective: ") + what + " failed: " + std::string(msg, std::size_t(len)));
  }
}
}  // namespace mpi_detail

class MpiCollective final : public Collective {
 public:
  /// timeout_s > 0: a sum or gather that has not completed after timeout_s seconds ends the process
  /// (dist/watchdog.hpp; the CLI passes collective_timeout_from_env()); 0: unbounded.
  explicit MpiCollective(MPI_Comm comm = MPI_COMM_WORLD, double timeout_s = 0,
                         std::size_t bucket_bytes = std::size_t(64) << 20)
      : comm_(comm), bucket_bytes_(bucket_bytes) {
    mpi_detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    mpi_detail::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    if (size_ > 1 && timeout_s > 0) watchdog_ = std::make_unique<CollectiveWatchdog>(rank_, timeout_s);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm comm() const { return comm_; }

  void sum(float* x, std::size_t n) const override { ordered_sum(x, n); }
  void sum(double* x, std::size_t n) const override { ordered_sum(x, n); }
  void sum(long* x, std::size_t n) const override {
    if (size_ == 1 || n == 0) return;
    const CollectiveWatchdog::Guard bound(watchdog_.get(), "a sum of counts over the ranks (MPI_Allreduce)");
    mpi_detail::check(MPI_Allreduce(MPI_IN_PLACE, x, int(n), MPI_LONG, MPI_SUM, comm_), "MPI_Allreduce");
  }

  std::vector<double> gather(const std::vector<double>& x) const override {
    if (size_ == 1) return x;
    const CollectiveWatchdog::Guard bound(watchdog_.get(), "a gather over the ranks (MPI_Allgather, MPI_Allgatherv)");
    int mine = int(x.size());
    std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_), 0);
    mpi_detail::check(MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, comm_), "MPI_Allgather");
    for (int r = 1; r < size_; ++r) displs[std::size_t(r)] = displs[std::size_t(r) - 1] + counts[std::size_t(r) - 1];
    std::vector<double> out(std::size_t(displs.back() + counts.back()));
    mpi_detail::check(MPI_Allgatherv(x.data(), mine, MPI_DOUBLE, out.data(), counts.data(), displs.data(), MPI_DOUBLE,
                                     comm_),
                      "MPI_Allgatherv");
    return out;
  }

  void barrier() const override { mpi_detail::check(MPI_Barrier(comm_), "MPI_Barrier"); }

  void abort(const std::string& message) const override {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    if (size_ > 1) MPI_Abort(comm_, 1);
  }

 private:
  template <class T>
  void ordered_sum(T* x, std::size_t n) const {
    if (size_ == 1 || n == 0) return;
    const CollectiveWatchdog::Guard bound(watchdog_.get(), "a sum over the ranks (MPI_Alltoall, MPI_Allgather)");
    const std::size_t P = std::size_t(size_);
    const std::size_t bucket = std::max<std::size_t>(P, bucket_bytes_ / sizeof(T));
    const MPI_Datatype dt = mpi_detail::datatype<T>();
    for (std::size_t off = 0; off < n; off += bucket) {
      const std::size_t len = std::min(bucket, n - off);
      const std::size_t blk = (len + P - 1) / P;  // block q = [q blk, min((q+1) blk, len))
      send_.assign(blk * P * sizeof(T), 0);
      recv_.assign(blk * P * sizeof(T), 0);
      T* snd = reinterpret_cast<T*>(send_.data());
      T* rcv = reinterpret_cast<T*>(recv_.data());
      std::copy(x + off, x + off + len, snd);
      mpi_detail::check(MPI_Alltoall(snd, int(blk), dt, rcv, int(blk), dt, comm_), "MPI_Alltoall");
      // rcv = [block rank_ of rank 0 | of rank 1 | ...]: add in rank order
      T* mine = snd;  // reuse: the summed block
      for (std::size_t k = 0; k < blk; ++k) {
        T s = rcv[k];
        for (std::size_t r = 1; r < P; ++r) s += rcv[r * blk + k];
        mine[k] = s;
      }
      mpi_detail::check(MPI_Allgather(mine, int(blk), dt, rcv, int(blk), dt, comm_), "MPI_Allgather");
      std::copy(rcv, rcv + len, x + off);
    }
  }

  MPI_Comm comm_;
  std::size_t bucket_bytes_;
  int rank_ = 0, size_ = 1;
  mutable std::vector<char> send_, recv_;  // staging, kept between calls
  std::unique_ptr<CollectiveWatchdog> watchdog_;  // null with one rank or HYDRAGNN_COLLECTIVE_TIMEOUT=0
};

}  // namespace hydragnn
