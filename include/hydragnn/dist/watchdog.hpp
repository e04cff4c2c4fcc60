// SPDX-License-Identifier: BSD-3-Clause
// A bound on the time one rank waits in one collective, so that a rank that stops responding (hung
// I/O, a stopped process, a node that went away without the launcher noticing) ends the job instead
// of hanging every other rank forever. A thread checks the collective in progress; when one has not
// completed after `timeout` seconds it prints
//
//   hydragnn: rank R: <collective> has not completed after T s; another rank stopped responding (...)
//
// and ends the process (exit status 3); the launcher (mpirun) then stops the other ranks, as it does
// for any rank that exits without MPI_Finalize. The bound is HYDRAGNN_COLLECTIVE_TIMEOUT seconds
// (default 1800, torch.distributed's default; 0 disables it). Only what a collective guards is
// bounded: dist/mpi.hpp guards the sums and gathers of training, validation and metrics and the
// barriers, but for barrier_unbounded() (at the end of an HPO search a worker waits for the others'
// trials, which may take hours).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace hydragnn {

/// HYDRAGNN_COLLECTIVE_TIMEOUT in seconds (default 1800; 0: no bound); a bad value is an error naming it.
inline double collective_timeout_from_env() {
  const char* v = std::getenv("HYDRAGNN_COLLECTIVE_TIMEOUT");
  if (!v || !*v) return 1800.0;
  char* end = nullptr;
  const double t = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(t >= 0) || t > 1e9)
    throw std::runtime_error(std::string("HYDRAGNN_COLLECTIVE_TIMEOUT = '") + v +
                             "' (seconds >= 0 expected; 0 disables the bound)");
  return t;
}

class CollectiveWatchdog {
 public:
  /// rank: named in the message; timeout_s <= 0: no thread, nothing is bounded.
  CollectiveWatchdog(int rank, double timeout_s) : rank_(rank), timeout_s_(timeout_s) {
    if (timeout_s_ > 0) thread_ = std::thread([this] { run(); });
  }
  ~CollectiveWatchdog() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  /// Marks `what` (a string literal) as in progress for the lifetime of the guard; a null watchdog
  /// bounds nothing.
  class Guard {
   public:
    Guard(const CollectiveWatchdog* w, const char* what) : w_(w) {
      if (!w_) return;
      w_->since_ns_.store(now_ns(), std::memory_order_relaxed);
      w_->what_.store(what, std::memory_order_release);
    }
    ~Guard() {
      if (w_) w_->what_.store(nullptr, std::memory_order_release);
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    const CollectiveWatchdog* w_;
  };

 private:
  static long long now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void run() {
    // poll a few times per bound (at most once a second): the process ends within ~1.25 x the bound
    const auto poll = std::chrono::duration<double>(std::min(1.0, timeout_s_ / 4));
    std::unique_lock<std::mutex> lk(m_);
    while (!cv_.wait_for(lk, poll, [this] { return stop_; })) {
      const char* what = what_.load(std::memory_order_acquire);
      if (!what) continue;
      const double waited = double(now_ns() - since_ns_.load(std::memory_order_relaxed)) * 1e-9;
      if (waited < timeout_s_ || what != what_.load(std::memory_order_acquire)) continue;
      std::fprintf(stderr,
                   "hydragnn: rank %d: %s has not completed after %.0f s; another rank stopped responding (the "
                   "bound is HYDRAGNN_COLLECTIVE_TIMEOUT seconds, 0 disables it)\n",
                   rank_, what, waited);
      std::fflush(stderr);
      std::_Exit(3);
    }
  }

  int rank_;
  double timeout_s_;
  mutable std::atomic<const char*> what_{nullptr};
  mutable std::atomic<long long> since_ns_{0};
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace hydragnn
