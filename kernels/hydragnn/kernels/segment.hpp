// SPDX-License-Identifier: BSD-3-Clause
// Gathers and segmented reductions over CSR segments (receiver-sorted edges, contiguous graphs) and
// over segments of a permutation (edges sorted by sender, triplets sorted by their kj edge).
//
// Determinism by construction: every reduction is one thread (or one vector lane) folding a segment
// in ascending order of its items; there are no floating-point atomics. A gather's backward is the
// segmented sum over the matching CSR / permutation, so backward is deterministic too. Every op takes
// its execution mode (exec_mode::HostRow / PerElement / TeamTiled, modes.hpp) as a template parameter
// after Exec and S; the modes fold each output element in the same order, so they agree bitwise.
//
// Items of a segment: "CSR" segments are rows [ptr(s), ptr(s+1)) of M; "perm" segments are rows
// perm(q), q in [ptr(s), ptr(s+1)). Backward kernels of reductions walk the segments and write each
// item row once (every row must belong to exactly one segment; rows in none are left untouched).
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/simd.hpp>

#include <type_traits>

namespace hydragnn {
namespace kernels {
namespace detail {
/// Items ahead of the current one whose scattered rows the host triplet walks (triplet.hpp,
/// spherical.hpp) ask the cache for.
constexpr int triplet_prefetch_ahead = 8;

/// Items of CSR segment s: rows ptr(s) .. ptr(s+1)-1.
template <class M>
struct CsrItems {
  CVec<int, M> ptr;
  KOKKOS_INLINE_FUNCTION int begin(long s) const { return ptr(s); }
  KOKKOS_INLINE_FUNCTION int end(long s) const { return ptr(s + 1); }
  KOKKOS_INLINE_FUNCTION long item(int q) const { return q; }
};
/// Items of permuted segment s: rows perm(q), q = ptr(s) .. ptr(s+1)-1.
template <class M>
struct PermItems {
  CVec<int, M> perm, ptr;
  KOKKOS_INLINE_FUNCTION int begin(long s) const { return ptr(s); }
  KOKKOS_INLINE_FUNCTION int end(long s) const { return ptr(s + 1); }
  KOKKOS_INLINE_FUNCTION long item(int q) const { return perm(q); }
};

/// Segmented reduction. Red provides: items (CsrItems / PermItems), acc_t, and
///   init(acc, s, c), step(acc, k, c) (fold item row k), finish(acc, s, c, n) (write output; n = items).
/// Each (s, c) folds its items in ascending q in every mode. HostRow keeps a row of accumulators
/// (channels innermost, contiguous loads) and falls back to PerElement above host_row_max channels.
template <class Mode, class Exec, class Red>
void segment_reduce(const Exec& exec, const char* label, long segs, long cols, const Red& red) {
  check_mode<Mode>();
  if (segs <= 0 || cols <= 0) return;
  using acc_t = typename Red::acc_t;
  if constexpr (is_host_row<Mode>) {
    if (cols <= host_row_max) {
      Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, segs), KOKKOS_LAMBDA(const long s) {
        acc_t acc[host_row_max];
        for (long c = 0; c < cols; ++c) red.init(acc[c], s, c);
        const int b = red.items.begin(s), e = red.items.end(s);
        for (int q = b; q < e; ++q) {
          const long k = red.items.item(q);
          for (long c = 0; c < cols; ++c) red.step(acc[c], k, c);
        }
        for (long c = 0; c < cols; ++c) red.finish(acc[c], s, c, e - b);
      });
      return;
    }
  }
  auto one = KOKKOS_LAMBDA(const long s, const long c) {
    acc_t acc;
    red.init(acc, s, c);
    const int b = red.items.begin(s), e = red.items.end(s);
    for (int q = b; q < e; ++q) red.step(acc, red.items.item(q), c);
    red.finish(acc, s, c, e - b);
  };
  if constexpr (is_team_tiled<Mode>)
    for_each_element<exec_mode::TeamTiled>(exec, label, segs, cols, one);
  else
    for_each_element<exec_mode::PerElement>(exec, label, segs, cols, one);
}

/// Segment walk (backward of reductions): body(s, k, c, n) for every segment s, item row k of s and
/// channel c; n = items of s. Each item row belongs to one segment, so writes never collide.
template <class Mode, class Exec, class Items, class Body>
void segment_walk(const Exec& exec, const char* label, long segs, long cols, const Items& items, const Body& body) {
  check_mode<Mode>();
  if (segs <= 0 || cols <= 0) return;
  if constexpr (is_host_row<Mode>) {
    Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, segs), KOKKOS_LAMBDA(const long s) {
      const int b = items.begin(s), e = items.end(s);
      for (int q = b; q < e; ++q) {
        const long k = items.item(q);
        for (long c = 0; c < cols; ++c) body(s, k, c, e - b);
      }
    });
  } else {
    for_each_element<Mode>(exec, label, segs, cols, KOKKOS_LAMBDA(const long s, const long c) {
      const int b = items.begin(s), e = items.end(s);
      for (int q = b; q < e; ++q) body(s, items.item(q), c, e - b);
    });
  }
}

template <class S, class V>
KOKKOS_INLINE_FUNCTION void put(const V& Y, long r, long c, const S& v, bool accumulate) {
  if (accumulate)
    Y(r, c) += v;
  else
    Y(r, c) = v;
}

// ---- reducers --------------------------------------------------------------------------------
template <class S, class M, class Items>
struct SumRed {
  using acc_t = S;
  Items items;
  CMat<S, M> X;
  Mat<S, M> Y;
  bool accumulate;
  KOKKOS_INLINE_FUNCTION void init(acc_t& a, long s, long c) const { a = accumulate ? S(Y(s, c)) : S(0); }
  KOKKOS_INLINE_FUNCTION void step(acc_t& a, long k, long c) const { a += X(k, c); }
  KOKKOS_INLINE_FUNCTION void finish(acc_t& a, long s, long c, int) const { Y(s, c) = a; }
};

template <class S, class M, class Items>
struct MeanRed {
  using acc_t = S;
  Items items;
  CMat<S, M> X;
  Mat<S, M> Y;
  bool accumulate;
  KOKKOS_INLINE_FUNCTION void init(acc_t& a, long, long) const { a = S(0); }
  KOKKOS_INLINE_FUNCTION void step(acc_t& a, long k, long c) const { a += X(k, c); }
  KOKKOS_INLINE_FUNCTION void finish(acc_t& a, long s, long c, int n) const {
    const S v = n > 0 ? S(a / real_t<S>(n)) : S(0);
    put(Y, s, c, v, accumulate);
  }
};

template <class S>
struct ArgAcc {
  S v;
  int arg;
};
/// Max (Sign = +1) or min (Sign = -1) with its item row; first item wins ties; empty -> 0, -1.
template <class S, class M, class Items, int Sign>
struct SelectRed {
  using acc_t = ArgAcc<S>;
  Items items;
  CMat<S, M> X;
  Mat<S, M> Y;
  Mat<int, M> arg;
  KOKKOS_INLINE_FUNCTION void init(acc_t& a, long, long) const {
    a.v = S(0);
    a.arg = -1;
  }
  KOKKOS_INLINE_FUNCTION void step(acc_t& a, long k, long c) const {
    const S x = X(k, c);
    // selects, not a branch: the channel loop of HostRow may be vectorised
    const bool take = a.arg < 0 || (Sign > 0 ? x > a.v : x < a.v);
    a.v = take ? x : a.v;
    a.arg = take ? int(k) : a.arg;
  }
  KOKKOS_INLINE_FUNCTION void finish(acc_t& a, long s, long c, int) const {
    Y(s, c) = a.v;
    arg(s, c) = a.arg;
  }
};

/// StdRed's mean and std of n items from their sum and sum of squares, for a scalar or a vector V
/// of reals R (HostRow's vector walks: the same operations lane by lane; selects, no branch on V).
template <class S>
KOKKOS_INLINE_FUNCTION S root(const S& x) {
  return math::sqrt(x);
}
#ifdef HYDRAGNN_SIMD_PACKS
inline simd::pack_t<float> root(const simd::pack_t<float>& x) { return simd::sqrt(x); }
inline simd::pack_t<double> root(const simd::pack_t<double>& x) { return simd::sqrt(x); }
#endif
template <class R, class V>
KOKKOS_INLINE_FUNCTION void std_finish(const V& sum, const V& sumsq, int n, R eps, V& mean, V& out) {
  mean = V{} + R(0);
  out = V{} + R(0);
  if (n > 0) {
    mean = sum / R(n);
    const V var = sumsq / R(n) - mean * mean;
    out = root(var > eps ? var : V{} + eps);
    out = out > math::sqrt(eps) ? out : V{} + R(0);
  }
}

template <class S>
struct MomentAcc {
  S sum, sumsq;
};
/// PyG StdAggregation (torch_geometric >= 2.3, as PNAConv's 'std' aggregator):
///   mean = sum/n, var = mean(x^2) - mean^2, out = sqrt(clamp(var, min=eps)), out <= sqrt(eps) -> 0.
/// Empty segments: mean = 0, out = 0. (PyG < 2.3 used sqrt(relu(var) + 1e-5) instead.)
template <class S, class M, class Items>
struct StdRed {
  using acc_t = MomentAcc<S>;
  using R = real_t<S>;
  Items items;
  CMat<S, M> X;
  Mat<S, M> Y, Mean;
  R eps;
  KOKKOS_INLINE_FUNCTION void init(acc_t& a, long, long) const {
    a.sum = S(0);
    a.sumsq = S(0);
  }
  KOKKOS_INLINE_FUNCTION void step(acc_t& a, long k, long c) const {
    const S x = X(k, c);
    a.sum += x;
    a.sumsq += x * x;
  }
  KOKKOS_INLINE_FUNCTION void finish(acc_t& a, long s, long c, int n) const {
    S mean, out;
    std_finish<R>(a.sum, a.sumsq, n, eps, mean, out);
    Mean(s, c) = mean;
    Y(s, c) = out;
  }
};

// ---- labelled implementations shared with vector.hpp / triplet.hpp ----------------------------
template <class Mode, class Exec, class S>
void gather_impl(const Exec& exec, const char* label, const CMat<S, mem_t<Exec>>& X,
                 const CVec<int, mem_t<Exec>>& idx, const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  for_each_element<Mode>(exec, label, long(Y.extent(0)), long(Y.extent(1)),
                         KOKKOS_LAMBDA(const long r, const long c) { put(Y, r, c, S(X(idx(r), c)), accumulate); });
}

template <class Mode, class Exec, class S, class Items>
void sum_impl(const Exec& exec, const char* label, const CMat<S, mem_t<Exec>>& X, const Items& items,
              const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  segment_reduce<Mode>(exec, label, long(Y.extent(0)), long(Y.extent(1)),
                       SumRed<S, mem_t<Exec>, Items>{items, X, Y, accumulate});
}

/// Xbar(k,c) (+)= Ybar(s,c) for every item row k of segment s (backward of a segment sum).
template <class Mode, class Exec, class S, class Items>
void sum_backward_impl(const Exec& exec, const char* label, const CMat<S, mem_t<Exec>>& Ybar, const Items& items,
                       const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  segment_walk<Mode>(exec, label, long(Ybar.extent(0)), long(Ybar.extent(1)), items,
                     KOKKOS_LAMBDA(const long s, const long k, const long c, int) {
                       put(Xbar, k, c, S(Ybar(s, c)), accumulate);
                     });
}

}  // namespace detail

// =============================================================================================
// Gathers
// =============================================================================================

/// Y(e,c) (+)= X(idx(e), c)                                       // X: N x F, idx: E -> Y: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void gather_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<int, mem_t<Exec>>& idx,
                 const Mat<S, mem_t<Exec>>& Y, bool accumulate = false) {
  detail::gather_impl<Mode>(exec, "hydragnn::Segment::gather_rows", X, idx, Y, accumulate);
}

/// Y(g,c) = X(offset + g stride, c): every stride-th row (slot `offset` of graphs of `stride` atoms each).
///                                                        // X: G*stride x F -> Y: G x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void gather_strided_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& X, long offset, long stride,
                         const Mat<S, mem_t<Exec>>& Y) {
  detail::for_each_element<Mode>(exec, "hydragnn::Segment::gather_strided_rows", long(Y.extent(0)), long(Y.extent(1)),
                         KOKKOS_LAMBDA(const long g, const long c) { Y(g, c) = X(offset + g * stride, c); });
}

/// X(offset + g stride, c) (+)= Y(g,c): the transpose of gather_strided_rows (distinct rows: no conflicts).
///                                                        // Y: G x F -> X: G*stride x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void scatter_strided_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& Y, long offset, long stride,
                          const Mat<S, mem_t<Exec>>& X, bool accumulate) {
  detail::for_each_element<Mode>(exec, "hydragnn::Segment::scatter_strided_rows", long(Y.extent(0)), long(Y.extent(1)),
                         KOKKOS_LAMBDA(const long g, const long c) { detail::put(X, offset + g * stride, c, S(Y(g, c)), accumulate); });
}

/// Backward of a gather whose idx is sorted (gather by dst over receiver-sorted edges): the CSR
/// segment sum Xbar(i,c) (+)= sum_{e in [ptr(i), ptr(i+1))} Ybar(e,c).
///                                                          // Ybar: E x F, ptr: N+1 -> Xbar: N x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void gather_rows_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& ptr,
                          const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Segment::gather_rows_backward", Ybar, detail::CsrItems<mem_t<Exec>>{ptr},
                         Xbar, accumulate);
}

/// Backward of a gather by an unsorted idx (gather by src): Xbar(j,c) (+)= sum_{q in [ptr(j),
/// ptr(j+1))} Ybar(perm(q),c), perm = rows sorted by idx (send_perm, send_ptr).
///                                              // Ybar: E x F, perm: E, ptr: N+1 -> Xbar: N x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void gather_rows_backward_perm(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& perm,
                               const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Segment::gather_rows_backward_perm", Ybar,
                         detail::PermItems<mem_t<Exec>>{perm, ptr}, Xbar, accumulate);
}

// =============================================================================================
// Sum
// =============================================================================================

/// Y(s,c) (+)= sum_{k in [ptr(s), ptr(s+1))} M(k,c)  (receiver sums, per-graph sums)
///                                                                  // M: E x F, ptr: S+1 -> Y: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_sum(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& ptr,
                 const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Segment::segment_sum", M, detail::CsrItems<mem_t<Exec>>{ptr}, Y, accumulate);
}

/// Y(s,c) (+)= sum_{q in [ptr(s), ptr(s+1))} M(perm(q),c)  (sender sums through the sender permutation)
///                                                        // M: E x F, perm: E, ptr: S+1 -> Y: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_sum_perm(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& perm,
                      const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Segment::segment_sum_perm", M, detail::PermItems<mem_t<Exec>>{perm, ptr}, Y,
                         accumulate);
}

/// Backward of segment_sum: Mbar(k,c) (+)= Ybar(s,c), k in segment s.  // Ybar: S x F, ptr: S+1 -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_sum_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& ptr,
                          const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  detail::sum_backward_impl<Mode>(exec, "hydragnn::Segment::segment_sum_backward", Ybar,
                                  detail::CsrItems<mem_t<Exec>>{ptr}, Mbar, accumulate);
}

/// Backward of segment_sum_perm: Mbar(perm(q),c) (+)= Ybar(s,c).  // Ybar: S x F, perm: E, ptr: S+1 -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_sum_perm_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& perm,
                               const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  detail::sum_backward_impl<Mode>(exec, "hydragnn::Segment::segment_sum_perm_backward", Ybar,
                                  detail::PermItems<mem_t<Exec>>{perm, ptr}, Mbar, accumulate);
}

// =============================================================================================
// Mean (empty segment -> 0)
// =============================================================================================

/// Y(s,c) (+)= (1/n_s) sum_{k in s} M(k,c)                          // M: E x F, ptr: S+1 -> Y: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_mean(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& ptr,
                  const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  using Items = detail::CsrItems<mem_t<Exec>>;
  detail::segment_reduce<Mode>(exec, "hydragnn::Segment::segment_mean", long(Y.extent(0)), long(Y.extent(1)),
                               detail::MeanRed<S, mem_t<Exec>, Items>{Items{ptr}, M, Y, accumulate});
}

/// Y(s,c) (+)= (1/n_s) sum_{q in s} M(perm(q),c)             // M: E x F, perm: E, ptr: S+1 -> Y: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_mean_perm(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& perm,
                       const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  using Items = detail::PermItems<mem_t<Exec>>;
  detail::segment_reduce<Mode>(exec, "hydragnn::Segment::segment_mean_perm", long(Y.extent(0)), long(Y.extent(1)),
                               detail::MeanRed<S, mem_t<Exec>, Items>{Items{perm, ptr}, M, Y, accumulate});
}

namespace detail {
template <class Mode, class Exec, class S, class Items>
void mean_backward_impl(const Exec& exec, const char* label, const CMat<S, mem_t<Exec>>& Ybar, const Items& items,
                        const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  segment_walk<Mode>(exec, label, long(Ybar.extent(0)), long(Ybar.extent(1)), items,
                     KOKKOS_LAMBDA(const long s, const long k, const long c, const int n) {
                       put(Mbar, k, c, S(Ybar(s, c) / real_t<S>(n)), accumulate);
                     });
}
}  // namespace detail

/// Backward of segment_mean: Mbar(k,c) (+)= Ybar(s,c) / n_s.     // Ybar: S x F, ptr: S+1 -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_mean_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& ptr,
                           const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  detail::mean_backward_impl<Mode>(exec, "hydragnn::Segment::segment_mean_backward", Ybar,
                                   detail::CsrItems<mem_t<Exec>>{ptr}, Mbar, accumulate);
}

/// Backward of segment_mean_perm.                     // Ybar: S x F, perm: E, ptr: S+1 -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_mean_perm_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& perm,
                                const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  detail::mean_backward_impl<Mode>(exec, "hydragnn::Segment::segment_mean_perm_backward", Ybar,
                                   detail::PermItems<mem_t<Exec>>{perm, ptr}, Mbar, accumulate);
}

// =============================================================================================
// Max / min with arg (first item wins ties; empty -> 0 and arg -1). arg holds the item's row of M.
// =============================================================================================

/// Y(s,c) = max_{k in s} M(k,c), arg(s,c) = winning row.    // M: E x F, ptr: S+1 -> Y: S x F, arg: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_max(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& ptr,
                 const Mat<S, mem_t<Exec>>& Y, const Mat<int, mem_t<Exec>>& arg) {
  using Items = detail::CsrItems<mem_t<Exec>>;
  detail::segment_reduce<Mode>(exec, "hydragnn::Segment::segment_max", long(Y.extent(0)), long(Y.extent(1)),
                               detail::SelectRed<S, mem_t<Exec>, Items, +1>{Items{ptr}, M, Y, arg});
}
/// Y(s,c) = min_{k in s} M(k,c), arg(s,c) = winning row.    // M: E x F, ptr: S+1 -> Y: S x F, arg: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_min(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& ptr,
                 const Mat<S, mem_t<Exec>>& Y, const Mat<int, mem_t<Exec>>& arg) {
  using Items = detail::CsrItems<mem_t<Exec>>;
  detail::segment_reduce<Mode>(exec, "hydragnn::Segment::segment_min", long(Y.extent(0)), long(Y.extent(1)),
                               detail::SelectRed<S, mem_t<Exec>, Items, -1>{Items{ptr}, M, Y, arg});
}
/// Max through a permutation; arg(s,c) = perm(q) of the winner.  // M: E x F, perm: E, ptr: S+1 -> Y, arg: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_max_perm(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& perm,
                      const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Y, const Mat<int, mem_t<Exec>>& arg) {
  using Items = detail::PermItems<mem_t<Exec>>;
  detail::segment_reduce<Mode>(exec, "hydragnn::Segment::segment_max_perm", long(Y.extent(0)), long(Y.extent(1)),
                               detail::SelectRed<S, mem_t<Exec>, Items, +1>{Items{perm, ptr}, M, Y, arg});
}
/// Min through a permutation.                               // M: E x F, perm: E, ptr: S+1 -> Y, arg: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_min_perm(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& perm,
                      const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Y, const Mat<int, mem_t<Exec>>& arg) {
  using Items = detail::PermItems<mem_t<Exec>>;
  detail::segment_reduce<Mode>(exec, "hydragnn::Segment::segment_min_perm", long(Y.extent(0)), long(Y.extent(1)),
                               detail::SelectRed<S, mem_t<Exec>, Items, -1>{Items{perm, ptr}, M, Y, arg});
}

namespace detail {
template <class Mode, class Exec, class S, class Items>
void select_backward_impl(const Exec& exec, const char* label, const CMat<S, mem_t<Exec>>& Ybar,
                          const CMat<int, mem_t<Exec>>& arg, const Items& items, const Mat<S, mem_t<Exec>>& Mbar,
                          bool accumulate) {
  segment_walk<Mode>(exec, label, long(Ybar.extent(0)), long(Ybar.extent(1)), items,
                     KOKKOS_LAMBDA(const long s, const long k, const long c, int) {
                       put(Mbar, k, c, arg(s, c) == int(k) ? S(Ybar(s, c)) : S(0), accumulate);
                     });
}
}  // namespace detail

/// Backward of segment_max / segment_min over CSR segments: Mbar(k,c) (+)= Ybar(s,c) if k == arg(s,c)
/// else 0, for every row k of segment s.            // Ybar, arg: S x F, ptr: S+1 -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_select_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CMat<int, mem_t<Exec>>& arg,
                             const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  detail::select_backward_impl<Mode>(exec, "hydragnn::Segment::segment_select_backward", Ybar, arg,
                                     detail::CsrItems<mem_t<Exec>>{ptr}, Mbar, accumulate);
}
/// Backward of segment_max_perm / segment_min_perm.   // Ybar, arg: S x F, perm: E, ptr: S+1 -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_select_perm_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar,
                                  const CMat<int, mem_t<Exec>>& arg, const CVec<int, mem_t<Exec>>& perm,
                                  const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  detail::select_backward_impl<Mode>(exec, "hydragnn::Segment::segment_select_perm_backward", Ybar, arg,
                                     detail::PermItems<mem_t<Exec>>{perm, ptr}, Mbar, accumulate);
}

/// Backward of segment_max / segment_min given each row's segment seg(k) (any of the max/min variants):
/// Mbar(k,c) (+)= Ybar(s,c) if k == arg(s,c), s = seg(k).   // Ybar, arg: S x F, seg: E -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_max_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CMat<int, mem_t<Exec>>& arg,
                          const CVec<int, mem_t<Exec>>& seg, const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  detail::for_each_element<Mode>(exec, "hydragnn::Segment::segment_max_backward", long(Mbar.extent(0)),
                                 long(Mbar.extent(1)), KOKKOS_LAMBDA(const long k, const long c) {
                                   const int s = seg(k);
                                   detail::put(Mbar, k, c, arg(s, c) == int(k) ? S(Ybar(s, c)) : S(0), accumulate);
                                 });
}
/// Same as segment_max_backward (the arg says which row won).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_min_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CMat<int, mem_t<Exec>>& arg,
                          const CVec<int, mem_t<Exec>>& seg, const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  segment_max_backward<Exec, S, Mode>(exec, Ybar, arg, seg, Mbar, accumulate);
}

// =============================================================================================
// Standard deviation (PyG StdAggregation; see detail::StdRed for the clamp semantics)
// =============================================================================================

/// Y(s,c) = std_{k in s} M(k,c), Mean(s,c) = mean (kept for the backward; PNA's mean aggregator).
///                                            // M: E x F, ptr: S+1 -> Y: S x F, Mean: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_std(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& ptr,
                 const Mat<S, mem_t<Exec>>& Y, const Mat<S, mem_t<Exec>>& Mean, real_t<S> eps = real_t<S>(1e-5)) {
  using Items = detail::CsrItems<mem_t<Exec>>;
  detail::segment_reduce<Mode>(exec, "hydragnn::Segment::segment_std", long(Y.extent(0)), long(Y.extent(1)),
                               detail::StdRed<S, mem_t<Exec>, Items>{Items{ptr}, M, Y, Mean, eps});
}
/// Std through a permutation.                      // M: E x F, perm: E, ptr: S+1 -> Y: S x F, Mean: S x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_std_perm(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& perm,
                      const CVec<int, mem_t<Exec>>& ptr, const Mat<S, mem_t<Exec>>& Y, const Mat<S, mem_t<Exec>>& Mean,
                      real_t<S> eps = real_t<S>(1e-5)) {
  using Items = detail::PermItems<mem_t<Exec>>;
  detail::segment_reduce<Mode>(exec, "hydragnn::Segment::segment_std_perm", long(Y.extent(0)), long(Y.extent(1)),
                               detail::StdRed<S, mem_t<Exec>, Items>{Items{perm, ptr}, M, Y, Mean, eps});
}

namespace detail {
template <class Mode, class Exec, class S, class Items>
void std_backward_impl(const Exec& exec, const char* label, const CMat<S, mem_t<Exec>>& M, const Items& items,
                       const CMat<S, mem_t<Exec>>& Mean, const CMat<S, mem_t<Exec>>& Y,
                       const CMat<S, mem_t<Exec>>& Ybar, const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  // d out / d M(k) = (M(k) - mean) / (n out) where out > 0 (var above the clamp), else 0.
  segment_walk<Mode>(exec, label, long(Y.extent(0)), long(Y.extent(1)), items,
                     KOKKOS_LAMBDA(const long s, const long k, const long c, const int n) {
                       const S y = Y(s, c);
                       const S v = y > real_t<S>(0) ? S(Ybar(s, c) * (M(k, c) - Mean(s, c)) / (real_t<S>(n) * y)) : S(0);
                       put(Mbar, k, c, v, accumulate);
                     });
}
}  // namespace detail

/// Backward of segment_std: Mbar(k,c) (+)= Ybar(s,c) (M(k,c) - Mean(s,c)) / (n_s Y(s,c)) where Y > 0,
/// else 0.                             // M: E x F, ptr: S+1, Mean, Y, Ybar: S x F -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_std_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& ptr,
                          const CMat<S, mem_t<Exec>>& Mean, const CMat<S, mem_t<Exec>>& Y,
                          const CMat<S, mem_t<Exec>>& Ybar, const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  detail::std_backward_impl<Mode>(exec, "hydragnn::Segment::segment_std_backward", M,
                                  detail::CsrItems<mem_t<Exec>>{ptr}, Mean, Y, Ybar, Mbar, accumulate);
}
/// Backward of segment_std_perm.            // M: E x F, perm: E, ptr: S+1, Mean, Y, Ybar: S x F -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_std_perm_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& perm,
                               const CVec<int, mem_t<Exec>>& ptr, const CMat<S, mem_t<Exec>>& Mean,
                               const CMat<S, mem_t<Exec>>& Y, const CMat<S, mem_t<Exec>>& Ybar,
                               const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  detail::std_backward_impl<Mode>(exec, "hydragnn::Segment::segment_std_perm_backward", M,
                                  detail::PermItems<mem_t<Exec>>{perm, ptr}, Mean, Y, Ybar, Mbar, accumulate);
}

// =============================================================================================
// Broadcast and per-row scaling
// =============================================================================================

/// Y(i,c) (+)= scale(s) * X(seg(i), c): broadcast a per-segment row to its members (backward of a
/// segment sum / mean when scale = 1 or 1/count; scale of extent 0 means 1).
///                                              // X: S x F, seg: N, scale: S or 0 -> Y: N x F
template <class Exec, class S, class R, class Mode = default_mode_t<Exec>>
void broadcast_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<int, mem_t<Exec>>& seg,
                    const CVec<R, mem_t<Exec>>& scale, const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  const bool scaled = scale.extent(0) > 0;
  detail::for_each_element<Mode>(exec, "hydragnn::Segment::broadcast_rows", long(Y.extent(0)), long(Y.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long c) {
                                   const int s = seg(i);
                                   S v = X(s, c);
                                   if (scaled) v = v * scale(s);
                                   detail::put(Y, i, c, v, accumulate);
                                 });
}

/// Per-edge scaling Y(e,c) (+)= X(e,c) s(e).                        // X: E x F, s: E -> Y: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void scale_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<S, mem_t<Exec>>& s,
                const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::for_each_element<Mode>(exec, "hydragnn::Segment::scale_rows", long(Y.extent(0)), long(Y.extent(1)),
                                 KOKKOS_LAMBDA(const long e, const long c) {
                                   detail::put(Y, e, c, S(X(e, c) * s(e)), accumulate);
                                 });
}

/// Backward of scale_rows: Xbar(e,c) (+)= Ybar(e,c) s(e); sbar(e) (+)= sum_c Ybar(e,c) X(e,c) (channels
/// ascending, one thread per edge in every mode). Xbar or sbar of extent 0 is skipped.
///                                   // X, Ybar: E x F, s: E -> Xbar: E x F, sbar: E
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void scale_rows_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<S, mem_t<Exec>>& s,
                         const CMat<S, mem_t<Exec>>& Ybar, const Mat<S, mem_t<Exec>>& Xbar,
                         const Vec<S, mem_t<Exec>>& sbar, bool accumulate_x, bool accumulate_s) {
  const long E = long(Ybar.extent(0)), F = long(Ybar.extent(1));
  if (Xbar.extent(0) > 0)
    detail::for_each_element<Mode>(exec, "hydragnn::Segment::scale_rows_backward_x", E, F,
                                   KOKKOS_LAMBDA(const long e, const long c) {
                                     detail::put(Xbar, e, c, S(Ybar(e, c) * s(e)), accumulate_x);
                                   });
  if (sbar.extent(0) > 0)
    detail::for_each_row<Mode>(exec, "hydragnn::Segment::scale_rows_backward_s", E, KOKKOS_LAMBDA(const long e) {
      S acc = accumulate_s ? S(sbar(e)) : S(0);
      for (long c = 0; c < F; ++c) acc += Ybar(e, c) * X(e, c);
      sbar(e) = acc;
    });
}

/// Y = A * B, elementwise.                                             // A, B: n x F -> Y: n x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void hadamard(const Exec& exec, const CMat<S, mem_t<Exec>>& A, const CMat<S, mem_t<Exec>>& B, const Mat<S, mem_t<Exec>>& Y) {
  detail::for_each_element<Mode>(exec, "hydragnn::Segment::hadamard", long(Y.extent(0)), long(Y.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long j) { Y(i, j) = A(i, j) * B(i, j); });
}

/// Backward of hadamard: Abar (+)= Ybar * B, Bbar (+)= Ybar * A; an output of extent 0 is skipped.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void hadamard_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& A, const CMat<S, mem_t<Exec>>& B,
                       const CMat<S, mem_t<Exec>>& Ybar, const Mat<S, mem_t<Exec>>& Abar, const Mat<S, mem_t<Exec>>& Bbar,
                       bool accumulate_a, bool accumulate_b) {
  const long n = long(Ybar.extent(0)), F = long(Ybar.extent(1));
  const bool want_a = Abar.extent(0) > 0, want_b = Bbar.extent(0) > 0;
  detail::for_each_element<Mode>(exec, "hydragnn::Segment::hadamard_backward", n, F,
                                 KOKKOS_LAMBDA(const long i, const long j) {
                                   if (want_a) detail::put(Abar, i, j, S(Ybar(i, j) * B(i, j)), accumulate_a);
                                   if (want_b) detail::put(Bbar, i, j, S(Ybar(i, j) * A(i, j)), accumulate_b);
                                 });
}

}  // namespace kernels
}  // namespace hydragnn
