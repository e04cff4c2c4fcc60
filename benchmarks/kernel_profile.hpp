// SPDX-License-Identifier: BSD-3-Clause
// Per-kernel time of a benchmark step, by kernel label, through the Kokkos Tools callbacks: every
// parallel_for/reduce/scan is fenced before and after, so each label's time is its kernel's run time
// (plus one launch), on any backend, without an external profiler (the GPU machines here have none
// that reads counters on every runtime). Only for --profile runs: the fences serialise the step.
#pragma once

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace hydragnn_bench {

class KernelProfile {
 public:
  struct Entry {
    double seconds = 0;
    long calls = 0;
  };

  static void start() {
    Kokkos::fence();
    table().clear();
    open().clear();
    namespace T = Kokkos::Tools::Experimental;
    T::set_begin_parallel_for_callback(&begin);
    T::set_begin_parallel_reduce_callback(&begin);
    T::set_begin_parallel_scan_callback(&begin);
    T::set_end_parallel_for_callback(&end);
    T::set_end_parallel_reduce_callback(&end);
    T::set_end_parallel_scan_callback(&end);
  }

  static void stop() {
    Kokkos::fence();
    namespace T = Kokkos::Tools::Experimental;
    T::set_begin_parallel_for_callback(nullptr);
    T::set_begin_parallel_reduce_callback(nullptr);
    T::set_begin_parallel_scan_callback(nullptr);
    T::set_end_parallel_for_callback(nullptr);
    T::set_end_parallel_reduce_callback(nullptr);
    T::set_end_parallel_scan_callback(nullptr);
  }

  /// Prints the labels by total time (ms per step), their share of `step_seconds`, and what the
  /// kernels leave over (host work, copies, launch gaps).
  static void print(const char* title, double step_seconds, int steps, int top = 40) {
    std::vector<std::pair<std::string, Entry>> rows(table().begin(), table().end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    double kernels = 0;
    for (const auto& r : rows) kernels += r.second.seconds;
    std::printf("profile %s: %.3f ms/step (fenced), kernels %.3f ms/step in %zu labels, other %.3f ms/step\n", title,
                1e3 * step_seconds / steps, 1e3 * kernels / steps, rows.size(), 1e3 * (step_seconds - kernels) / steps);
    int shown = 0;
    for (const auto& r : rows) {
      if (shown++ == top) break;
      std::printf("  %9.4f ms %5.1f%% %6.1f calls  %s\n", 1e3 * r.second.seconds / steps,
                  100.0 * r.second.seconds / step_seconds, double(r.second.calls) / steps, r.first.c_str());
    }
    std::fflush(stdout);
  }

 private:
  using clock = std::chrono::steady_clock;
  static std::map<std::string, Entry>& table() {
    static std::map<std::string, Entry> t;
    return t;
  }
  /// Kernels in flight: (label, start), indexed by the id handed to Kokkos.
  static std::vector<std::pair<std::string, clock::time_point>>& open() {
    static std::vector<std::pair<std::string, clock::time_point>> o;
    return o;
  }
  static void begin(const char* name, const uint32_t, uint64_t* id) {
    Kokkos::fence();
    *id = open().size();
    open().emplace_back(name, clock::now());
  }
  static void end(const uint64_t id) {
    Kokkos::fence();
    auto& o = open()[id];
    Entry& e = table()[o.first];
    e.seconds += std::chrono::duration<double>(clock::now() - o.second).count();
    ++e.calls;
  }
};

}  // namespace hydragnn_bench
