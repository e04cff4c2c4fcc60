// SPDX-License-Identifier: BSD-3-Clause
// Host vector registers for the HostRow kernels: GCC/Clang vector extensions (pack_t<R>: as many
// lanes of R as the widest register the compiler may use). Lane j of a pack is element j of a row,
// so each element is computed alone, with the same operations in the same order as the scalar code
// of the other modes. Not available to the CUDA/HIP front ends (HYDRAGNN_SIMD_PACKS undefined):
// their HostRow kernels use the scalar code.
#pragma once

#include <cstdint>

namespace hydragnn {
namespace kernels {
namespace simd {

/// Bytes of the widest vector register the compiler may use (from its target macros).
#if defined(__AVX512F__)
constexpr int bytes = 64;
#elif defined(__AVX__)
constexpr int bytes = 32;
#else
constexpr int bytes = 16;
#endif

#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(__HIPCC__)
#define HYDRAGNN_SIMD_PACKS 1
template <class R>
struct pack;
template <>
struct pack<float> {
  typedef float type __attribute__((vector_size(bytes)));
  typedef std::int32_t mask __attribute__((vector_size(bytes)));  ///< comparisons, bit patterns
};
template <>
struct pack<double> {
  typedef double type __attribute__((vector_size(bytes)));
  typedef std::int64_t mask __attribute__((vector_size(bytes)));
};
template <class R>
using pack_t = typename pack<R>::type;
template <class R>
using mask_t = typename pack<R>::mask;
template <class R>
constexpr int lanes = bytes / int(sizeof(R));

template <class R>
inline pack_t<R> load(const R* p) {
  pack_t<R> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <class R>
inline void store(R* p, const pack_t<R>& v) {
  __builtin_memcpy(p, &v, sizeof(v));
}
#endif

}  // namespace simd
}  // namespace kernels
}  // namespace hydragnn
