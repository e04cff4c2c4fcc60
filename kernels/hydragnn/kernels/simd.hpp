// SPDX-License-Identifier: BSD-3-Clause
// Host vector registers for the HostRow kernels: GCC/Clang vector extensions (pack_t<R>: as many
// lanes of R as the widest register the compiler may use). Lane j of a pack is element j of a row,
// so each element is computed alone, with the same operations in the same order as the scalar code
// of the other modes. Not available to the CUDA/HIP front ends (HYDRAGNN_SIMD_PACKS undefined):
// their HostRow kernels use the scalar code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(__HIPCC__)
#define HYDRAGNN_SIMD_PACKS 1
#if defined(__SSE2__)
#include <immintrin.h>  // simd::sqrt
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif
#endif

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

#ifdef HYDRAGNN_SIMD_PACKS
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

/// The correctly rounded square root of each lane: the bits std::sqrt gives each element (IEEE
/// sqrt), as one instruction (a scalar std::sqrt keeps GCC from vectorising a loop: errno); double
/// and float.
inline pack_t<double> sqrt(const pack_t<double>& x) {
#if defined(__AVX512F__)
  return (pack_t<double>)_mm512_sqrt_pd((__m512d)x);
#elif defined(__AVX__)
  return (pack_t<double>)_mm256_sqrt_pd((__m256d)x);
#elif defined(__SSE2__)
  return (pack_t<double>)_mm_sqrt_pd((__m128d)x);
#elif defined(__aarch64__) && defined(__ARM_NEON)
  return (pack_t<double>)vsqrtq_f64((float64x2_t)x);
#else
  pack_t<double> y;
  for (int j = 0; j < lanes<double>; ++j) y[j] = __builtin_sqrt(x[j]);
  return y;
#endif
}

inline pack_t<float> sqrt(const pack_t<float>& x) {
#if defined(__AVX512F__)
  return (pack_t<float>)_mm512_sqrt_ps((__m512)x);
#elif defined(__AVX__)
  return (pack_t<float>)_mm256_sqrt_ps((__m256)x);
#elif defined(__SSE2__)
  return (pack_t<float>)_mm_sqrt_ps((__m128)x);
#elif defined(__aarch64__) && defined(__ARM_NEON)
  return (pack_t<float>)vsqrtq_f32((float32x4_t)x);
#else
  pack_t<float> y;
  for (int j = 0; j < lanes<float>; ++j) y[j] = __builtin_sqrtf(x[j]);
  return y;
#endif
}

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
/// lanes<double> values of T (float or double) as a pack of doubles, and back (rounded to T).
template <class T>
inline pack_t<double> load_as_double(const T* p) {
  typedef T tpack __attribute__((vector_size(lanes<double> * sizeof(T))));
  tpack x;
  __builtin_memcpy(&x, p, sizeof(x));
  return __builtin_convertvector(x, pack_t<double>);
}
template <class T>
inline void store_from_double(T* p, const pack_t<double>& v) {
  typedef T tpack __attribute__((vector_size(lanes<double> * sizeof(T))));
  const tpack x = __builtin_convertvector(v, tpack);
  __builtin_memcpy(p, &x, sizeof(x));
}

/// Two packs of an interleaved pair array (p[2j] = v[j], p[2j+1] = d[j], j < lanes: a row of
/// Dual<R>) to planes v and d, and back: register shuffles (__builtin_shufflevector: GCC >= 12,
/// Clang) instead of scalar moves; element moves where the compiler lacks it.
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define HYDRAGNN_SIMD_SHUFFLES 1
#endif
#endif
#ifdef HYDRAGNN_SIMD_SHUFFLES
namespace detail {
template <class V, int... I>
inline V shuffle2(const V& a, const V& b) {
  return __builtin_shufflevector(a, b, I...);
}
template <class V, std::size_t... J>
inline void deinterleave(const V& lo, const V& hi, V& v, V& d, std::index_sequence<J...>) {
  v = shuffle2<V, int(2 * J)...>(lo, hi);
  d = shuffle2<V, int(2 * J + 1)...>(lo, hi);
}
template <class V, std::size_t... J>
inline void interleave(const V& v, const V& d, V& lo, V& hi, std::index_sequence<J...>) {
  constexpr int L = int(sizeof...(J));
  lo = shuffle2<V, int((J & 1) * L + J / 2)...>(v, d);
  hi = shuffle2<V, int((J & 1) * L + L / 2 + J / 2)...>(v, d);
}
}  // namespace detail
#endif

/// The loaded pack p pinned in a vector register from here on: an empty asm that the compiler must
/// assume changes p, so it cannot fold a re-read of p's memory into each multiply-add that uses p
/// (a register tile's B row, used once per tile row: GCC spends the L1 load ports on those
/// re-reads when registers run short). Changes no value.
template <class R>
inline __attribute__((always_inline)) pack_t<R> pinned_load(const R* p) {
  pack_t<R> v = load(p);
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+v"(v));
#elif defined(__aarch64__)
  asm("" : "+w"(v));
#endif
  return v;
}

template <class R>
inline void deinterleave(const R* p, pack_t<R>& v, pack_t<R>& d) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  if constexpr (lanes<R> == 8) {
    // two in-lane shuffles and two 64-bit permutes, immediates only: GCC lowers the generic shuffle
    // to vpermd with index vectors that it then keeps in registers across the register tiles' k
    // loops (EGNN's fused edge-MLP backward spilled two of a dual tile's twelve accumulators)
    // (_mm256_loadu_ps, not simd::load: GCC 12 emits simd::load's memcpy cast to __m256 as the
    // integer-domain vmovdqu here, where this is vmovups)
    const __m256 lo = _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    const __m256 hi = _mm256_loadu_ps(reinterpret_cast<const float*>(p) + 8);
    // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6] -> 64-bit pairs (0, 2, 1, 3): [lo0 lo2 lo4 lo6 hi0 hi2 hi4 hi6]
    v = (pack_t<R>)_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    d = (pack_t<R>)_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
    return;
  }
#endif
#ifdef HYDRAGNN_SIMD_SHUFFLES
  detail::deinterleave(load(p), load(p + lanes<R>), v, d, std::make_index_sequence<lanes<R>>{});
#else
  for (int j = 0; j < lanes<R>; ++j) {
    v[j] = p[2 * j];
    d[j] = p[2 * j + 1];
  }
#endif
}
template <class R>
inline void interleave(const pack_t<R>& v, const pack_t<R>& d, R* p) {
#ifdef HYDRAGNN_SIMD_SHUFFLES
  pack_t<R> lo, hi;
  detail::interleave(v, d, lo, hi, std::make_index_sequence<lanes<R>>{});
  store(p, lo);
  store(p + lanes<R>, hi);
#else
  for (int j = 0; j < lanes<R>; ++j) {
    p[2 * j] = v[j];
    p[2 * j + 1] = d[j];
  }
#endif
}
#endif

}  // namespace simd
}  // namespace kernels
}  // namespace hydragnn
