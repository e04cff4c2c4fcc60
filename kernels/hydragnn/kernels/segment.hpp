// SPDX-License-Identifier: BSD-3-Clause
// Gathers and segmented reductions over receiver-sorted (CSR) edges and contiguous graphs.
//
// Determinism by construction: every reduction is one thread summing a contiguous segment (or a
// segment of a fixed permutation) in a fixed order; there are no floating-point atomics. A gather's
// backward is the segmented sum over the matching permutation, so backward is deterministic too.
#pragma once

#include <hydragnn/core/types.hpp>

namespace hydragnn {
namespace kernels {

/// Y(e,c) = X(idx(e), c)
template <class Exec, class S>
void gather_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<int, mem_t<Exec>>& idx,
                 const Mat<S, mem_t<Exec>>& Y) {
  const long n = long(Y.extent(0)), c = long(Y.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Segment::gather_rows", Kokkos::RangePolicy<Exec>(exec, 0, n * c),
      KOKKOS_LAMBDA(const long k) { Y(k / c, k % c) = X(idx(k / c), k % c); });
}

/// Y(s,c) (+)= sum_{k in [ptr(s), ptr(s+1))} M(k, c)     (receiver sums, per-graph sums)
template <class Exec, class S>
void segment_sum(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& ptr,
                 const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  const long n = long(Y.extent(0)), c = long(Y.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Segment::segment_sum", Kokkos::RangePolicy<Exec>(exec, 0, n * c), KOKKOS_LAMBDA(const long k) {
        const long s = k / c, j = k % c;
        S acc = accumulate ? Y(s, j) : S(0);
        for (int e = ptr(s); e < ptr(s + 1); ++e) acc += M(e, j);
        Y(s, j) = acc;
      });
}

/// Y(s,c) (+)= sum_{k in [ptr(s), ptr(s+1))} M(perm(k), c)   (sender sums through the sender permutation)
template <class Exec, class S>
void segment_sum_perm(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& perm,
                      const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  const long n = long(Y.extent(0)), c = long(Y.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Segment::segment_sum_perm", Kokkos::RangePolicy<Exec>(exec, 0, n * c), KOKKOS_LAMBDA(const long k) {
        const long s = k / c, j = k % c;
        S acc = accumulate ? Y(s, j) : S(0);
        for (int q = ptr(s); q < ptr(s + 1); ++q) acc += M(perm(q), j);
        Y(s, j) = acc;
      });
}

/// Segment max: Y(s,c) = max_k M(k,c) with the winning row in arg(s,c) (first on ties); empty -> 0, -1.
template <class Exec, class S>
void segment_max(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& ptr,
                 const Mat<S, mem_t<Exec>>& Y, const Mat<int, mem_t<Exec>>& arg) {
  const long n = long(Y.extent(0)), c = long(Y.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Segment::segment_max", Kokkos::RangePolicy<Exec>(exec, 0, n * c), KOKKOS_LAMBDA(const long k) {
        const long s = k / c, j = k % c;
        int best = -1;
        for (int e = ptr(s); e < ptr(s + 1); ++e)
          if (best < 0 || M(e, j) > M(best, j)) best = e;
        Y(s, j) = best >= 0 ? M(best, j) : S(0);
        arg(s, j) = best;
      });
}

/// Backward of segment_max: Mbar(k,c) (+)= Ybar(s,c) if k == arg(s,c). seg(k) = segment of row k.
template <class Exec, class S>
void segment_max_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CMat<int, mem_t<Exec>>& arg,
                          const CVec<int, mem_t<Exec>>& seg, const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  const long n = long(Mbar.extent(0)), c = long(Mbar.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Segment::segment_max_backward", Kokkos::RangePolicy<Exec>(exec, 0, n * c),
      KOKKOS_LAMBDA(const long k) {
        const long i = k / c, j = k % c;
        const int s = seg(i);
        const S v = arg(s, j) == int(i) ? Ybar(s, j) : S(0);
        Mbar(i, j) = accumulate ? Mbar(i, j) + v : v;
      });
}

/// Y(i,c) (+)= scale(s) * X(seg(i), c): broadcast a per-segment row to its members (backward of a
/// segment sum / mean when scale = 1 or 1/count).
template <class Exec, class S, class R>
void broadcast_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<int, mem_t<Exec>>& seg,
                    const CVec<R, mem_t<Exec>>& scale, const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  const long n = long(Y.extent(0)), c = long(Y.extent(1));
  const bool scaled = scale.extent(0) > 0;
  Kokkos::parallel_for(
      "hydragnn::Segment::broadcast_rows", Kokkos::RangePolicy<Exec>(exec, 0, n * c), KOKKOS_LAMBDA(const long k) {
        const long i = k / c, j = k % c;
        const int s = seg(i);
        S v = X(s, j);
        if (scaled) v = v * scale(s);
        Y(i, j) = accumulate ? Y(i, j) + v : v;
      });
}

}  // namespace kernels
}  // namespace hydragnn
