// SPDX-License-Identifier: BSD-3-Clause
// The trainer's collectives (train/collective.hpp) over an MPI communicator.
//
// The sum of a float/double buffer has a fixed order, so the result does not depend on the MPI
// library's reduction algorithm or on message timing: the tree SumTree(P) of train/collective.hpp,
// computed as a recursive-halving reduce-scatter and a recursive-doubling all-gather (Rabenseifner's
// all-reduce). With p the largest power of two <= P and m = P - p: ranks 2i and 2i + 1 (i < m) first
// add their buffers on rank 2i + 1; the p remaining ranks then halve the buffer log2 p times, each
// round exchanging half of its current segment with the rank whose (virtual) number differs in one
// bit, lowest bit first, and adding; every element ends summed on one rank, and log2 p rounds of
// exchanges in the reverse order gather the sums everywhere (rank 2i gets the result from 2i + 1).
// Each rank sends and receives about 2 (p-1)/p of the buffer (plus the whole buffer once, twice
// where P is not a power of two) in 2 log2 p rounds, so the latency grows with log P, not P.
// Buffers are cut into buckets of at most `bucket_bytes` (default 64 MiB) so the staging memory
// stays bounded for any model size. Host buffers: the trainer stages device gradients through a
// host mirror. The sums and gathers are bounded in time (dist/watchdog.hpp,
// HYDRAGNN_COLLECTIVE_TIMEOUT): a rank that stops responding ends the job instead of hanging it.
// So are the barriers, but for barrier_unbounded() (the end of an HPO search).
// With overlap (MPI_THREAD_SERIALIZED), start_sum() runs the same sums on a communication thread while
// the caller computes (the trainer's heads' gradient during the trunk's backward). start_sum_device()
// is the same sum of a buffer in GPU memory for an MPI that reads GPU memory (gpu_aware()): the
// partner's part lands in a caller's scratch buffer and the additions are kernels.
//
// Include this header only where MPI is available (the CLI defines HYDRAGNN_HAVE_MPI when CMake finds
// it); the library proper does not depend on MPI.
#pragma once

#include <hydragnn/dist/watchdog.hpp>
#include <hydragnn/train/collective.hpp>

#include <hydragnn/kernels/optimizer.hpp>

#include <mpi.h>
#if defined(OPEN_MPI) && OPEN_MPI && __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // MPIX_CUDA_AWARE_SUPPORT, MPIX_Query_cuda_support (ROCm: Open MPI 5)
#endif

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace hydragnn {

namespace mpi_detail {
template <class T> MPI_Datatype datatype();
template <> inline MPI_Datatype datatype<float>() { return MPI_FLOAT; }
template <> inline MPI_Datatype datatype<double>() { return MPI_DOUBLE; }
template <> inline MPI_Datatype datatype<long>() { return MPI_LONG; }

/// An environment switch: "1" true, "0" false, unset or empty `otherwise`; any other value is an error
/// naming the variable and what it means.
inline bool env_switch(const char* name, bool otherwise, const char* meaning) {
  const char* v = std::getenv(name);
  if (!v || !*v) return otherwise;
  const std::string s(v);
  if (s == "1") return true;
  if (s == "0") return false;
  throw std::runtime_error(std::string(name) + " = '" + s + "' (" + meaning + ")");
}

/// Whether this MPI reads and writes GPU memory itself: HYDRAGNN_GPU_AWARE_MPI = 1 / 0 where set,
/// otherwise Open MPI's own answer at run time (MPIX_Query_cuda_support / MPIX_Query_rocm_support,
/// where mpi-ext.h declares them); other MPIs: no (buffers are staged through the host).
inline bool gpu_aware_mpi() {
  bool aware = false;
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  aware = aware || MPIX_Query_cuda_support() == 1;
#endif
#if defined(MPIX_ROCM_AWARE_SUPPORT) && MPIX_ROCM_AWARE_SUPPORT
  aware = aware || MPIX_Query_rocm_support() == 1;
#endif
  return env_switch("HYDRAGNN_GPU_AWARE_MPI", aware, "1: MPI reads GPU memory, 0: stage through the host");
}

/// HYDRAGNN_OVERLAP_SUMS = 1 (default) / 0: whether the gradient sums run on a communication thread
/// during the backward. 0 for runs with one core per rank and no GPU, where that thread's busy wait
/// in MPI competes with the backward for the core.
inline bool overlap_from_env() {
  return env_switch("HYDRAGNN_OVERLAP_SUMS", true, "1: sum the gradient during the backward, 0: after it");
}

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
  /// overlap: start_sum() runs the sum on a communication thread of this object, so that the caller
  /// computes meanwhile, when MPI was initialised with at least MPI_THREAD_SERIALIZED (MPI_Init_thread;
  /// the CLI asks for it); otherwise start_sum() sums at once. Only that thread calls MPI between a
  /// start_sum() and the wait_sums() after it: every other call here waits for the sums started first.
  explicit MpiCollective(MPI_Comm comm = MPI_COMM_WORLD, double timeout_s = 0,
                         std::size_t bucket_bytes = std::size_t(64) << 20, bool overlap = true)
      : comm_(comm), bucket_bytes_(bucket_bytes) {
    mpi_detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    mpi_detail::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    if (size_ > 1 && timeout_s > 0) watchdog_ = std::make_unique<CollectiveWatchdog>(rank_, timeout_s);
    int level = MPI_THREAD_SINGLE;
    mpi_detail::check(MPI_Query_thread(&level), "MPI_Query_thread");
    overlap_ = overlap && size_ > 1 && level >= MPI_THREAD_SERIALIZED;
    try {
      gpu_aware_ = mpi_detail::gpu_aware_mpi();
    } catch (const std::exception&) {
      gpu_aware_ = false;  // a bad HYDRAGNN_GPU_AWARE_MPI: the caller reports it (the CLI checks it first)
    }
  }
  ~MpiCollective() override {
    if (!worker_.joinable()) return;
    {
      std::lock_guard<std::mutex> lk(queue_mutex_);
      stop_ = true;
    }
    queue_cv_.notify_all();
    worker_.join();
  }
  MpiCollective(const MpiCollective&) = delete;
  MpiCollective& operator=(const MpiCollective&) = delete;
  /// whether start_sum() returns before the sum is done
  bool overlaps() const { return overlap_; }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm comm() const { return comm_; }

  void sum(float* x, std::size_t n) const override {
    wait_sums();
    ordered_sum(x, n);
  }
  void sum(double* x, std::size_t n) const override {
    wait_sums();
    ordered_sum(x, n);
  }
  void start_sum(float* x, std::size_t n) const override { enqueue([this, x, n] { ordered_sum(x, n); }); }
  void start_sum(double* x, std::size_t n) const override { enqueue([this, x, n] { ordered_sum(x, n); }); }
  bool gpu_aware() const override { return gpu_aware_; }
  void start_sum_device(const Kokkos::DefaultExecutionSpace& space, float* x, std::size_t n, float* scratch) const override {
    enqueue([this, space, x, n, scratch] { ordered_sum(x, n, scratch, &space); });
  }
  void start_sum_device(const Kokkos::DefaultExecutionSpace& space, double* x, std::size_t n,
                        double* scratch) const override {
    enqueue([this, space, x, n, scratch] { ordered_sum(x, n, scratch, &space); });
  }
  void wait_sums() const override {
    if (!overlap_) return;
    std::unique_lock<std::mutex> lk(queue_mutex_);
    queue_cv_.wait(lk, [this] { return queue_.empty() && !busy_; });
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }
  void sum(long* x, std::size_t n) const override {
    wait_sums();
    if (size_ == 1 || n == 0) return;
    const CollectiveWatchdog::Guard bound(watchdog_.get(), "a sum of counts over the ranks (MPI_Allreduce)");
    mpi_detail::check(MPI_Allreduce(MPI_IN_PLACE, x, int(n), MPI_LONG, MPI_SUM, comm_), "MPI_Allreduce");
  }

  std::vector<double> gather(const std::vector<double>& x) const override {
    wait_sums();
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

  void barrier() const override {
    wait_sums();
    const CollectiveWatchdog::Guard bound(watchdog_.get(), "a barrier (MPI_Barrier)");
    mpi_detail::check(MPI_Barrier(comm_), "MPI_Barrier");
  }
  void barrier_unbounded() const override {
    wait_sums();
    mpi_detail::check(MPI_Barrier(comm_), "MPI_Barrier");
  }

  void abort(const std::string& message) const override {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    if (size_ > 1) MPI_Abort(comm_, 1);
  }

 private:
  /// y[0, len) += r[0, len): on the host, or (device sums) by a kernel on *space, finished before MPI
  /// reads y again. The host loop is not a Kokkos kernel: it runs on the communication thread while
  /// the caller keeps launching on the host execution space.
  template <class T>
  static void add_into(T* y, const T* r, std::size_t len, const Kokkos::DefaultExecutionSpace* space) {
    if (len == 0) return;
    if (space) {
      using DM = Kokkos::DefaultExecutionSpace::memory_space;
      kernels::accumulate_gradient<Kokkos::DefaultExecutionSpace, T>(*space, Vec<T, DM>(y, len),
                                                                     Vec<T, DM>(const_cast<T*>(r), len));
      space->fence();
      return;
    }
    for (std::size_t k = 0; k < len; ++k) y[k] = y[k] + r[k];
  }

  /// x <- the SumTree of the ranks' x. Host buffers: the partner's part lands in recv_. Device buffers
  /// (space != nullptr): x and scratch (n values) in the default execution space's memory, handed to
  /// MPI as they are, added by kernels on *space.
  template <class T>
  void ordered_sum(T* x, std::size_t n, T* scratch = nullptr, const Kokkos::DefaultExecutionSpace* space = nullptr) const {
    if (size_ == 1 || n == 0) return;
    const CollectiveWatchdog::Guard bound(watchdog_.get(), "a sum over the ranks (MPI_Sendrecv)");
    const SumTree tree(size_);
    const int p = tree.pow2(), m = tree.pairs();
    const bool folded = rank_ < 2 * m && rank_ % 2 == 0;  // hands its buffer to rank_ + 1, waits for the sum
    const int v = rank_ < 2 * m ? rank_ / 2 : rank_ - m;   // number among the p ranks of the halving
    auto real_rank = [m](int u) { return u < m ? 2 * u + 1 : u + m; };
    const std::size_t bucket = std::max<std::size_t>(std::size_t(p), bucket_bytes_ / sizeof(T));
    const MPI_Datatype dt = mpi_detail::datatype<T>();
    constexpr int tag = 0x4847;
    for (std::size_t off = 0; off < n; off += bucket) {
      const std::size_t len = std::min(bucket, n - off);
      T* y = x + off;
      if (!space) recv_.resize(len * sizeof(T));
      T* rcv = space ? scratch + off : reinterpret_cast<T*>(recv_.data());
      if (rank_ < 2 * m) {
        if (folded) {
          mpi_detail::check(MPI_Send(y, int(len), dt, rank_ + 1, tag, comm_), "MPI_Send");
        } else {
          mpi_detail::check(MPI_Recv(rcv, int(len), dt, rank_ - 1, tag, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
          add_into(y, rcv, len, space);  // x_{2i} + x_{2i+1}
        }
      }
      if (!folded) {
        // reduce-scatter: before the round of distance d, ranks v and v ^ d hold the same segment
        levels_.clear();
        std::size_t lo = 0, hi = len;
        for (int d = 1; d < p; d *= 2) {
          levels_.push_back({lo, hi});
          const std::size_t mid = lo + (hi - lo) / 2;
          const bool low = (v & d) == 0;
          const std::size_t keep_lo = low ? lo : mid, keep_hi = low ? mid : hi;
          const std::size_t give_lo = low ? mid : lo, give_hi = low ? hi : mid;
          mpi_detail::check(MPI_Sendrecv(y + give_lo, int(give_hi - give_lo), dt, real_rank(v ^ d), tag, rcv,
                                         int(keep_hi - keep_lo), dt, real_rank(v ^ d), tag, comm_, MPI_STATUS_IGNORE),
                            "MPI_Sendrecv");
          add_into(y + keep_lo, rcv, keep_hi - keep_lo, space);
          lo = keep_lo;
          hi = keep_hi;
        }
        // all-gather: the rounds in reverse, each doubling the summed segment
        for (std::size_t l = levels_.size(); l-- > 0;) {
          const int d = 1 << l;
          const std::size_t plo = levels_[l].first, phi = levels_[l].second, mid = plo + (phi - plo) / 2;
          const bool low = (v & d) == 0;
          const std::size_t other_lo = low ? mid : plo, other_hi = low ? phi : mid;
          mpi_detail::check(MPI_Sendrecv(y + lo, int(hi - lo), dt, real_rank(v ^ d), tag, y + other_lo,
                                         int(other_hi - other_lo), dt, real_rank(v ^ d), tag, comm_, MPI_STATUS_IGNORE),
                            "MPI_Sendrecv");
          lo = plo;
          hi = phi;
        }
      }
      if (rank_ < 2 * m) {
        if (folded)
          mpi_detail::check(MPI_Recv(y, int(len), dt, rank_ + 1, tag, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
        else
          mpi_detail::check(MPI_Send(y, int(len), dt, rank_ - 1, tag, comm_), "MPI_Send");
      }
    }
  }

  /// run f on the communication thread (started at the first call), or at once without overlap
  template <class F>
  void enqueue(F f) const {
    if (!overlap_) {
      f();
      return;
    }
    {
      std::lock_guard<std::mutex> lk(queue_mutex_);
      if (!worker_.joinable()) worker_ = std::thread([this] { work(); });
      queue_.emplace_back(std::move(f));
    }
    queue_cv_.notify_all();
  }
  void work() const {
    std::unique_lock<std::mutex> lk(queue_mutex_);
    for (;;) {
      queue_cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopped
      std::function<void()> f = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      const bool failed = error_ != nullptr;  // after a failure the later sums are skipped
      lk.unlock();
      std::exception_ptr e;
      if (!failed) {
        try {
          f();
        } catch (...) {
          e = std::current_exception();
        }
      }
      lk.lock();
      if (e && !error_) error_ = e;
      busy_ = false;
      queue_cv_.notify_all();
    }
  }

  MPI_Comm comm_;
  std::size_t bucket_bytes_;
  bool overlap_ = false, gpu_aware_ = false;
  // the communication thread of start_sum() and its queue
  mutable std::thread worker_;
  mutable std::mutex queue_mutex_;
  mutable std::condition_variable queue_cv_;
  mutable std::deque<std::function<void()>> queue_;
  mutable bool busy_ = false, stop_ = false;
  mutable std::exception_ptr error_;
  int rank_ = 0, size_ = 1;
  mutable std::vector<char> recv_;  // the partner's half, kept between calls
  mutable std::vector<std::pair<std::size_t, std::size_t>> levels_;  // segment before each halving round
  std::unique_ptr<CollectiveWatchdog> watchdog_;  // null with one rank or HYDRAGNN_COLLECTIVE_TIMEOUT=0
};

}  // namespace hydragnn
