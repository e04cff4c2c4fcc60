// SPDX-License-Identifier: BSD-3-Clause
// exp, log1p on [0, 1], softplus and sigmoid for float without libm calls: branch-free, so that the
// compiler vectorises the activation loops (a libm call per element cannot be). Used for float
// activations only; double keeps libm (tests and golden comparisons run in double).
//
// Accuracy (float): exp within about 1 ulp on [-87, 88] (Cody-Waite reduction, degree-7 Taylor
// polynomial on |r| <= ln2/2, truncation < 5e-9 relative); log1p(y) for y in [0, 1] as
// 2 atanh(y / (2 + y)) with the series to s^13 (s <= 1/3, truncation < 2e-8 relative).
#pragma once

#include <hydragnn/compat/kokkos.hpp>

#include <cstdint>
#include <cstring>

namespace hydragnn {
namespace fastmath {

KOKKOS_INLINE_FUNCTION float bits_to_float(std::int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

/// e^x, x clamped to [-87.3, 88.7] (beyond: the limits' values, 1.2e-38 and 3.3e38).
KOKKOS_INLINE_FUNCTION float exp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.7f ? 88.7f : x;
  // n = round(x / ln2) by the 1.5 * 2^23 trick (round to nearest, no SSE4.1 needed)
  constexpr float shift = 12582912.0f;
  const float n = (x * 1.44269504088896341f + shift) - shift;
  // r = x - n ln2 in two steps (ln2 = hi + lo, hi with 9 significant bits: n * hi is exact)
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * bits_to_float((static_cast<std::int32_t>(n) + 127) << 23);
}

/// log(1 + y) for y in [0, 1]: 2 atanh(s), s = y / (2 + y) in [0, 1/3].
KOKKOS_INLINE_FUNCTION float log1p_unit(float y) {
  const float s = y / (2.0f + y), s2 = s * s;
  float p = 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

/// log(1 + e^x) = max(x, 0) + log1p(e^-|x|), for every x.
KOKKOS_INLINE_FUNCTION float softplus(float x) {
  const float ax = x < 0.0f ? -x : x;
  return (x > 0.0f ? x : 0.0f) + log1p_unit(exp(-ax));
}

/// 1 / (1 + e^-x).
KOKKOS_INLINE_FUNCTION float sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }

}  // namespace fastmath
}  // namespace hydragnn
