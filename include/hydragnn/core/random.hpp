// SPDX-License-Identifier: BSD-3-Clause
// Counter-based random numbers: a value is a pure function of its key (seed, step, edge, ...), so a
// random mask is the same on every backend, in every thread order and in the real and dual passes of
// a step, with no generator state to carry. splitmix64's finaliser (Steele, Lea, Flood 2014).
#pragma once

#include <hydragnn/core/types.hpp>

#include <cstdint>

namespace hydragnn {

/// A 64-bit mix of x (bijective; neighbouring keys give unrelated values).
KOKKOS_INLINE_FUNCTION std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
/// The key (a, b) as one seed.
KOKKOS_INLINE_FUNCTION std::uint64_t mix64(std::uint64_t a, std::uint64_t b) { return mix64(a ^ mix64(b)); }
/// A uniform number in [0, 1) from a key (53 bits).
KOKKOS_INLINE_FUNCTION double uniform01(std::uint64_t key) { return double(mix64(key) >> 11) * 0x1.0p-53; }

}  // namespace hydragnn
