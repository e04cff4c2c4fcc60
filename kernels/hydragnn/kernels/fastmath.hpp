// SPDX-License-Identifier: BSD-3-Clause
// exp, log1p on [0, 1], softplus, sigmoid, tanh, sin and cos for float without libm calls and
// without branches, for one float (every mode, every backend) or a pack of floats (HostRow's
// vectorised activation loops, kernels/simd.hpp): the same operations in the same order, so both
// give the same bits. Used for float activations and radial bases only; double keeps libm (tests
// and golden comparisons run in double).
//
// Accuracy (float, measured in tests/test_layers.cpp against double libm): exp about 1 ulp on
// [-87, 88] (Cody-Waite reduction, degree-7 Taylor polynomial on |r| <= ln2/2); log1p(y) for y in
// [0, 1] as 2 atanh(y / (2 + y)) with the series to s^13 (s <= 1/3); softplus, sigmoid ~2 ulp;
// tanh a few ulp (the cancellation in 1 - 2 / (e^{2|x|} + 1) just above |x| = 0.25); sin, cos
// within 2e-7 absolute on |x| <= 8192 (Cody-Waite reduction by pi/2, minimax polynomials).
// Clamps are selects (no branches): a branch would keep the compiler from vectorising the loop.
#pragma once

#include <hydragnn/compat/kokkos.hpp>
#include <hydragnn/core/dual.hpp>
#include <hydragnn/kernels/simd.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace hydragnn {
namespace fastmath {

namespace detail {
KOKKOS_INLINE_FUNCTION std::int32_t as_int(float f) {
  std::int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}
KOKKOS_INLINE_FUNCTION float as_float(std::int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
KOKKOS_INLINE_FUNCTION float sel(bool m, float a, float b) { return m ? a : b; }
#ifdef HYDRAGNN_SIMD_PACKS
using fpack = kernels::simd::pack_t<float>;
using ipack = kernels::simd::mask_t<float>;
inline ipack as_int(fpack f) { return reinterpret_cast<ipack&>(f); }
inline fpack as_float(ipack i) { return reinterpret_cast<fpack&>(i); }
inline fpack sel(ipack m, fpack a, fpack b) { return m ? a : b; }
#endif
/// |x| (clears the sign bit).
template <class V>
KOKKOS_INLINE_FUNCTION V abs(V x) {
  return as_float(as_int(x) & 0x7fffffff);
}
}  // namespace detail

/// e^x for x in [-87.3, 88.7]; 0 below (where e^x < 1.2e-38, the smallest normal float) and 3.3e38
/// above. Below, libm would return subnormals: exactly 0 instead (an error under 1.2e-38) keeps
/// subnormals out of the products that follow (a far Gaussian of SchNet's radial basis times a
/// weight), each of which costs a microcode assist of ~100 cycles on Intel cores.
template <class V>
KOKKOS_INLINE_FUNCTION V exp(V x) {
  using namespace detail;
  const auto under = x < -87.3f;
  x = sel(under, V{} - 87.3f, x);
  x = sel(x > 88.7f, V{} + 88.7f, x);
  // n = round(x / ln2) by the 1.5 * 2^23 trick (round to nearest); t's low mantissa bits hold n
  constexpr float shift = 12582912.0f;
  const V t = x * 1.44269504088896341f + shift;
  const V n = t - shift;
  // r = x - n ln2 in two steps (ln2 = hi + lo, hi with 9 significant bits: n * hi is exact)
  const V r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  V p = V{} + 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return sel(under, V{}, p * as_float((as_int(t) - 0x4B400000 + 127) << 23));  // * 2^n
}

/// log(1 + y) for y in [0, 1]: 2 atanh(s), s = y / (2 + y) in [0, 1/3].
template <class V>
KOKKOS_INLINE_FUNCTION V log1p_unit(V y) {
  const V s = y / (2.0f + y), s2 = s * s;
  V p = V{} + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

/// log(1 + e^x) = max(x, 0) + log1p(e^-|x|), for every x.
template <class V>
KOKKOS_INLINE_FUNCTION V softplus(V x) {
  using namespace detail;
  return sel(x > 0.0f, x, V{}) + log1p_unit(exp(-abs(x)));
}

/// 1 / (1 + e^-x).
template <class V>
KOKKOS_INLINE_FUNCTION V sigmoid(V x) {
  return 1.0f / (1.0f + exp(-x));
}

/// tanh(x): on |x| < 0.25 the odd Taylor series to x^11 (truncation below 1e-9 relative), beyond
/// it 1 - 2 / (e^{2|x|} + 1) with x's sign (e^{2|x|} clamped by exp: tanh = 1 there); both are
/// computed and one selected (no branch).
template <class V>
KOKKOS_INLINE_FUNCTION V tanh(V x) {
  using namespace detail;
  const V a = abs(x);
  const V e = exp(a + a);
  const V big = 1.0f - 2.0f / (e + 1.0f);
  const V x2 = x * x;
  const V small =
      x * (1.0f + x2 * (-0.333333333333f +
                        x2 * (0.133333333333f + x2 * (-0.0539682539683f + x2 * (0.0218694885362f + x2 * -0.00886323552990f)))));
  return sel(a < 0.25f, small, as_float(as_int(big) | (as_int(x) & ~0x7fffffff)));
}

/// sin(x) and cos(x) for |x| <= 8192: x = n pi/2 + r with n = round(x 2/pi) and r in three steps
/// (pi/2 = 1.5703125 + 4.837512969970703125e-4 + 7.54978995489188216e-8, the first two with few
/// significant bits, so n times each is exact for |n| < 2^12), Cephes' minimax polynomials of sin
/// and cos on |r| <= pi/4, then n mod 4 picks and signs them (selects, no branch).
template <class V>
KOKKOS_INLINE_FUNCTION void sincos(V x, V& s, V& c) {
  using namespace detail;
  constexpr float shift = 12582912.0f;  // 1.5 * 2^23: t's low mantissa bits hold n (mod 4 below)
  const V t = x * 0.636619772367581343f + shift;
  const V n = t - shift;
  const V r = ((x - n * 1.5703125f) - n * 4.837512969970703125e-4f) - n * 7.54978995489188216e-8f;
  const V r2 = r * r;
  const V ps = r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
  const V pc =
      (1.0f - 0.5f * r2) + r2 * r2 * (4.166664568298827e-2f + r2 * (-1.388731625493765e-3f + r2 * 2.443315711809948e-5f));
  const auto q = as_int(t) & 3;  // n mod 4 (the mantissa holds 2^22 + n)
  const auto odd = (q & 1) != 0;
  const V sb = sel(odd, pc, ps), cb = sel(odd, ps, pc);
  s = sel((q & 2) != 0, -sb, sb);
  c = sel(((q + 1) & 2) != 0, -cb, cb);
}

/// sin and cos of any scalar of the library: float and Dual<float> through sincos above, everything
/// else (double, Dual<double>) through libm.
template <class S>
KOKKOS_INLINE_FUNCTION void sincos_of(const S& x, S& s, S& c) {
  if constexpr (std::is_same<S, float>::value) {
    sincos(x, s, c);
  } else if constexpr (std::is_same<S, Dual<float>>::value) {
    float sv, cv;
    sincos(x.v, sv, cv);
    s = S(sv, cv * x.d);
    c = S(cv, -sv * x.d);
  } else {
    s = math::sin(x);
    c = math::cos(x);
  }
}
template <class S>
KOKKOS_INLINE_FUNCTION S sin_of(const S& x) {
  S s, c;
  sincos_of(x, s, c);
  return s;
}
template <class S>
KOKKOS_INLINE_FUNCTION S cos_of(const S& x) {
  S s, c;
  sincos_of(x, s, c);
  return c;
}

/// e^x for any scalar of the library: float and Dual<float> through exp above, everything else
/// (double, Dual<double>) through libm.
template <class S>
KOKKOS_INLINE_FUNCTION S exp_of(const S& x) {
  if constexpr (std::is_same<S, float>::value) {
    return exp(x);
  } else if constexpr (std::is_same<S, Dual<float>>::value) {
    const float e = exp(x.v);
    return S(e, e * x.d);
  } else {
    return math::exp(x);
  }
}

}  // namespace fastmath
}  // namespace hydragnn
