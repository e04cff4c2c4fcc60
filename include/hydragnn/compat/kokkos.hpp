// SPDX-License-Identifier: BSD-3-Clause
// The one place where Kokkos version differences live (Debian's Kokkos 3.4 vs Kokkos 4.x).
// Nothing outside include/hydragnn/compat/ may test KOKKOS_VERSION.
#pragma once

#include <Kokkos_Core.hpp>
#include <cmath>
#include <cstdint>
#include <string>

#if defined(KOKKOS_VERSION) && KOKKOS_VERSION >= 40000
#define HYDRAGNN_KOKKOS4 1
#else
#define HYDRAGNN_KOKKOS4 0
#endif

namespace hydragnn {
namespace math {

// Real-valued elementary functions usable in device code. Kokkos 3.4 keeps them in
// Kokkos::Experimental, Kokkos 4 in Kokkos::.
#if HYDRAGNN_KOKKOS4
#define HYDRAGNN_MATH_NS Kokkos
#else
#define HYDRAGNN_MATH_NS Kokkos::Experimental
#endif

#define HYDRAGNN_UNARY(name)                                                    \
  KOKKOS_INLINE_FUNCTION double name(double x) { return HYDRAGNN_MATH_NS::name(x); } \
  KOKKOS_INLINE_FUNCTION float name(float x) { return HYDRAGNN_MATH_NS::name(x); }
HYDRAGNN_UNARY(sqrt)
HYDRAGNN_UNARY(exp)
HYDRAGNN_UNARY(log)
HYDRAGNN_UNARY(log1p)
HYDRAGNN_UNARY(tanh)
HYDRAGNN_UNARY(cos)
HYDRAGNN_UNARY(sin)
HYDRAGNN_UNARY(fabs)
#undef HYDRAGNN_UNARY
#undef HYDRAGNN_MATH_NS

template <class T>
KOKKOS_INLINE_FUNCTION T pi() { return T(3.14159265358979323846); }

}  // namespace math

namespace compat {

/// KOKKOS_VERSION of the headers compiled against (major * 10000 + minor * 100 + patch).
constexpr int kokkos_version() {
#if defined(KOKKOS_VERSION)
  return KOKKOS_VERSION;
#else
  return 0;
#endif
}

/// "major.minor.patch" of the Kokkos headers compiled against.
inline std::string kokkos_version_string() {
  const int v = kokkos_version();
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

/// The Kokkos backends enabled in this build, e.g. "Serial OpenMP Cuda".
inline std::string kokkos_backends() {
  std::string s;
  auto add = [&s](const char* name) { s += (s.empty() ? "" : " ") + std::string(name); };
#if defined(KOKKOS_ENABLE_SERIAL)
  add("Serial");
#endif
#if defined(KOKKOS_ENABLE_OPENMP)
  add("OpenMP");
#endif
#if defined(KOKKOS_ENABLE_THREADS)
  add("Threads");
#endif
#if defined(KOKKOS_ENABLE_CUDA)
  add("Cuda");
#endif
#if defined(KOKKOS_ENABLE_HIP)
  add("HIP");
#endif
#if defined(KOKKOS_ENABLE_SYCL)
  add("SYCL");
#endif
#if defined(KOKKOS_ENABLE_OPENMPTARGET)
  add("OpenMPTarget");
#endif
  return s.empty() ? std::string("none") : s;
}

/// An instance of Exec whose work is ordered apart from the default instance's (Kokkos 4: a partition
/// of the space, e.g. its own CUDA stream), for work launched from a second host thread while the
/// first one keeps launching on the default instance. Kokkos 3.4 (Serial only here): the default one.
template <class Exec>
Exec independent_instance() {
#if HYDRAGNN_KOKKOS4
  return Kokkos::Experimental::partition_space(Exec(), 1)[0];
#else
  return Exec();
#endif
}

#if defined(KOKKOS_ENABLE_HIP)
#if HYDRAGNN_KOKKOS4
using hip_space = Kokkos::HIP;
#else
using hip_space = Kokkos::Experimental::HIP;
#endif
#endif
}  // namespace compat

/// Counts Kokkos allocations through the profiling hooks (a test tool: the allocation-free-step
/// tests). The hook's signature is the same in Kokkos 3.4 and 4.x.
struct AllocationCounter {
  static long& count() {
    static long n = 0;
    return n;
  }
  static void on_allocate(const Kokkos::Profiling::SpaceHandle, const char*, const void*, const std::uint64_t) {
    ++count();
  }
  static void install() { Kokkos::Tools::Experimental::set_allocate_data_callback(&on_allocate); }
  static void uninstall() { Kokkos::Tools::Experimental::set_allocate_data_callback(nullptr); }
};

/// Profiling region (ScopedRegion is Kokkos 4 only).
struct ProfileRegion {
  explicit ProfileRegion(const char* name) { Kokkos::Profiling::pushRegion(name); }
  ~ProfileRegion() { Kokkos::Profiling::popRegion(); }
  ProfileRegion(const ProfileRegion&) = delete;
  ProfileRegion& operator=(const ProfileRegion&) = delete;
};

}  // namespace hydragnn
