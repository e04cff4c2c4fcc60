// SPDX-License-Identifier: BSD-3-Clause
// Fused continuous-filter convolution (SchNet CFConv) message passing.
//
//   agg(i,f) = sum_{e in in(i)} x(src(e), f) * W(e,f) * C(e)
//
// gather -> multiply -> segment-sum in one pass over each receiver's contiguous edge range, so the
// edges x channels message tensor is never stored. Modes: HostRow keeps one receiver's (or sender's)
// F channels in a local array and walks its edges once; PerElement is one thread per (node, channel);
// TeamTiled one team per tile of nodes with lanes over channels. All sum each channel's terms in edge
// order, so they agree bitwise. Backward:
//   xbar(j,f) = sum_{e: src(e)=j} aggbar(dst(e),f) W(e,f) C(e)   (segment over the sender permutation)
//   Wbar(e,f) = aggbar(dst(e),f) x(src(e),f) C(e)
//   Cbar(e)  += sum_f aggbar(dst(e),f) x(src(e),f) W(e,f)
// W and C depend on the edge's length only, so with EdgePairs they have one row per pair of mutually
// reverse edges (graph/edge_pairs.hpp): edge e reads row u = pair(e), and the backward sums the pair's
// two edges (first, then second) into Wbar(u, :) and Cbar(u).
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/dense.hpp>
#include <hydragnn/kernels/modes.hpp>

namespace hydragnn {
namespace kernels {

/// Rows of W and C per pair of mutually reverse edges (Batch::pair_first, pair_second, edge_pair);
/// empty views: one row per edge (pair u = edge u).
template <class M>
struct EdgePairs {
  CVec<int, M> first, second, of_edge;
  KOKKOS_INLINE_FUNCTION long row(long e) const { return of_edge.extent(0) > 0 ? long(of_edge(e)) : e; }
  KOKKOS_INLINE_FUNCTION long first_of(long u) const { return first.extent(0) > 0 ? long(first(u)) : u; }
  KOKKOS_INLINE_FUNCTION long second_of(long u) const { return second.extent(0) > 0 ? long(second(u)) : -1; }
};

template <class Exec, class S, class Mode = default_mode_t<Exec>>
void cfconv_forward(const Exec& exec, const CMat<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& W,
                    const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& row_ptr,
                    const CVec<int, mem_t<Exec>>& src, const Mat<S, mem_t<Exec>>& agg,
                    const EdgePairs<mem_t<Exec>>& pairs = {}) {
  // x: N x F, W: U x F, C: U (U = pairs, or E), row_ptr: N+1, src: E -> agg: N x F
  const long n = long(agg.extent(0)), F = long(agg.extent(1));
  if constexpr (std::is_same<Mode, exec_mode::HostRow>::value) {
    if (F <= detail::host_row_max) {
      Kokkos::parallel_for(
          "hydragnn::CFConv::forward", Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const long i) {
            S acc[detail::host_row_max];
            for (long f = 0; f < F; ++f) acc[f] = S(0);
            for (int e = row_ptr(i); e < row_ptr(i + 1); ++e) {
              const long j = src(e), u = pairs.row(e);
              const S c = C(u);
              for (long f = 0; f < F; ++f) acc[f] += x(j, f) * W(u, f) * c;
            }
            for (long f = 0; f < F; ++f) agg(i, f) = acc[f];
          });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::CFConv::forward", n, F, KOKKOS_LAMBDA(const long i, const long f) {
    S acc(0);
    for (int e = row_ptr(i); e < row_ptr(i + 1); ++e) {
      const long u = pairs.row(e);
      acc += x(src(e), f) * W(u, f) * C(u);
    }
    agg(i, f) = acc;
  });
}

/// xbar(j,f) = sum_{e: src(e)=j} aggbar(dst(e),f) W(e,f) C(e)      aggbar: N x F -> xbar: N x F (overwritten)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void cfconv_backward_nodes(const Exec& exec, const CMat<S, mem_t<Exec>>& W, const CVec<S, mem_t<Exec>>& C,
                           const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& send_perm,
                           const CVec<int, mem_t<Exec>>& send_ptr, const CMat<S, mem_t<Exec>>& aggbar,
                           const Mat<S, mem_t<Exec>>& xbar, const EdgePairs<mem_t<Exec>>& pairs = {}) {
  const long n = long(xbar.extent(0)), F = long(xbar.extent(1)), E = long(send_perm.extent(0));
  if constexpr (std::is_same<Mode, exec_mode::HostRow>::value) {
    if (F <= detail::host_row_max) {
      Kokkos::parallel_for(
          "hydragnn::CFConv::backward_nodes", Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const long j) {
            constexpr int ahead = 8;  // W's rows come in sender order, scattered: fetch them early
            S acc[detail::host_row_max];
            for (long f = 0; f < F; ++f) acc[f] = S(0);
            for (int q = send_ptr(j); q < send_ptr(j + 1); ++q) {
              if (q + ahead < E) detail::prefetch_rows(W, pairs.row(send_perm(q + ahead)), 1);
              const int e = send_perm(q);
              const long i = dst(e), u = pairs.row(e);
              const S c = C(u);
              for (long f = 0; f < F; ++f) acc[f] += aggbar(i, f) * W(u, f) * c;
            }
            for (long f = 0; f < F; ++f) xbar(j, f) = acc[f];
          });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::CFConv::backward_nodes", n, F, KOKKOS_LAMBDA(const long j, const long f) {
    S acc(0);
    for (int q = send_ptr(j); q < send_ptr(j + 1); ++q) {
      const int e = send_perm(q);
      const long u = pairs.row(e);
      acc += aggbar(dst(e), f) * W(u, f) * C(u);
    }
    xbar(j, f) = acc;
  });
}

namespace detail {
/// Row u of the CFConv backward: wbar(f) = sum over the pair's edges e of aggbar(dst(e),f)
/// x(src(e),f) C(u) for f < F (first edge, then second), written to wbar[f]; with WithC, returns
/// the sum of aggbar(dst(e),f) x(src(e),f) W(u,f) over the channels of the first edge, then the
/// second: Cbar's term (without, S(0): no geometric gradient wanted, and the channel sum, a chain
/// of dependent additions, is not run).
template <bool WithC, class S, class M>
KOKKOS_INLINE_FUNCTION S cfconv_edge_backward(const CMat<S, M>& x, const CMat<S, M>& W, const CVec<S, M>& C,
                                              const CVec<int, M>& dst, const CVec<int, M>& src, const CMat<S, M>& aggbar,
                                              const EdgePairs<M>& pairs, long u, S* wbar) {
  const long F = long(W.extent(1));
  S c_acc(0);
  const S c = C(u);
  for (int h = 0; h < 2; ++h) {
    const long e = h == 0 ? pairs.first_of(u) : pairs.second_of(u);
    if (e < 0) break;
    const int i = dst(e), j = src(e);
    for (long f = 0; f < F; ++f) {
      const S t = aggbar(i, f) * x(j, f);
      const S tc = t * c;
      wbar[f] = h == 0 ? tc : wbar[f] + tc;
      if constexpr (WithC) c_acc += t * W(u, f);
    }
  }
  return c_acc;
}

/// Rows u0 .. u0+n-1 of cfconv_backward_edges into a chunk buffer: wbar row r (stride F) is row
/// u0+r of Wbar; Cbar(u0+r) += its term when Cbar is not empty (skipped otherwise). The fused
/// kernels' shared first step.
template <class S, class M>
KOKKOS_INLINE_FUNCTION void cfconv_edge_backward_rows(const CMat<S, M>& x, const CMat<S, M>& W, const CVec<S, M>& C,
                                                      const CVec<int, M>& dst, const CVec<int, M>& src,
                                                      const CMat<S, M>& aggbar, const EdgePairs<M>& pairs,
                                                      const Vec<S, M>& Cbar, long u0, long n, S* wbar) {
  const long F = long(W.extent(1));
  if (Cbar.extent(0) > 0) {
    for (long r = 0; r < n; ++r)
      Cbar(u0 + r) += cfconv_edge_backward<true>(x, W, C, dst, src, aggbar, pairs, u0 + r, wbar + r * F);
  } else {
    for (long r = 0; r < n; ++r) cfconv_edge_backward<false>(x, W, C, dst, src, aggbar, pairs, u0 + r, wbar + r * F);
  }
}
}  // namespace detail

/// The edge half of cfconv_backward: Wbar (U x F, overwritten) and Cbar (U, accumulated; skipped
/// when empty). One thread per row (pair) in every mode (the channel sum for Cbar runs in channel
/// order).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void cfconv_backward_edges(const Exec& exec, const CMat<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& W,
                           const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& dst,
                           const CVec<int, mem_t<Exec>>& src, const CMat<S, mem_t<Exec>>& aggbar,
                           const Mat<S, mem_t<Exec>>& Wbar, const Vec<S, mem_t<Exec>>& Cbar,
                           const EdgePairs<mem_t<Exec>>& pairs = {}) {
  const long U = long(W.extent(0));
  if (Cbar.extent(0) == 0) {
    Kokkos::parallel_for("hydragnn::CFConv::backward_edges", Kokkos::RangePolicy<Exec>(exec, 0, U), KOKKOS_LAMBDA(const long u) {
      detail::cfconv_edge_backward<false>(x, W, C, dst, src, aggbar, pairs, u, &Wbar(u, 0));
    });
  } else {
    Kokkos::parallel_for("hydragnn::CFConv::backward_edges", Kokkos::RangePolicy<Exec>(exec, 0, U), KOKKOS_LAMBDA(const long u) {
      Cbar(u) += detail::cfconv_edge_backward<true>(x, W, C, dst, src, aggbar, pairs, u, &Wbar(u, 0));
    });
  }
}

template <class Exec, class S, class Mode = default_mode_t<Exec>>
void cfconv_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& W,
                     const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& dst,
                     const CVec<int, mem_t<Exec>>& src, const CVec<int, mem_t<Exec>>& send_perm,
                     const CVec<int, mem_t<Exec>>& send_ptr, const CMat<S, mem_t<Exec>>& aggbar,
                     const Mat<S, mem_t<Exec>>& xbar, const Mat<S, mem_t<Exec>>& Wbar, const Vec<S, mem_t<Exec>>& Cbar,
                     const EdgePairs<mem_t<Exec>>& pairs = {}) {
  // aggbar: N x F -> xbar: N x F (overwritten), Wbar: U x F (overwritten), Cbar: U (accumulated;
  // skipped when Cbar is empty: no geometric gradient wanted)
  cfconv_backward_nodes<Exec, S, Mode>(exec, W, C, dst, send_perm, send_ptr, aggbar, xbar, pairs);
  cfconv_backward_edges<Exec, S, Mode>(exec, x, W, C, dst, src, aggbar, Wbar, Cbar, pairs);
}

namespace detail {
/// HostRow body of cfconv_filter_geometry_backward: one tile of rows (pairs of edges), its cotangent
/// rows in local buffers (F, K <= host_row_max).
template <Activation AF, class S, class T, class M>
struct CFConvFilterGeometryTiles {
  CMat<S, M> x, W, aggbar, pre0;
  CVec<S, M> C;
  CVec<int, M> dst, src;
  CVec<T, M> p;
  LinearShape L0, L1;
  Vec<S, M> Cbar;
  Mat<S, M> Bacc;
  const real_t<S>* bedge0;  ///< W0's narrow last column tile, packed (host memory; null: none)
  EdgePairs<M> pairs;
  /// Epilogue of the last product: Bacc rows += the tile's rows (add_into).
  struct AddRows {
    Mat<S, M> Bacc;
    Mat<S, M> tile;
    long e0, K;
    KOKKOS_INLINE_FUNCTION void operator()(long r0, long r1) const {
      for (long r = r0; r < r1; ++r)
        for (long k = 0; k < K; ++k) Bacc(e0 + r, k) += tile(r, k);
    }
  };
  KOKKOS_INLINE_FUNCTION void operator()(const long t) const {
    constexpr long MT = gemm::mr / planes<S>;
    const long E = long(W.extent(0)), F = long(W.extent(1)), K = long(Bacc.extent(1));
    const long e0 = t * MT, n = E - e0 < MT ? E - e0 : MT;
    S wb[MT * host_row_max], zb[MT * host_row_max], bb[MT * host_row_max];
    const Mat<S, M> zbv(zb, n, F), bbv(bb, n, K);
    // cfconv_backward's edges: Wbar rows and Cbar
    cfconv_edge_backward_rows(x, W, C, dst, src, aggbar, pairs, Cbar, e0, n, wb);
    // the filter's input gradient: zbar = f'(pre0) * (Wbar W1), Bbar = zbar W0, added to Bacc
    rows_product_here<S>(wb, F, L1.out, p.data() + L1.w_off, L1.stride(), L1.in, zb, F, n, AccumulateInit<S, M>{zbv, false},
                         ActBackwardRowsPost<AF, S, M>{CMat<S, M>(&pre0(e0, 0), n, F), zbv, F});
    rows_product_here<S>(zb, F, L0.out, p.data() + L0.w_off, L0.stride(), L0.in, bb, K, n, AccumulateInit<S, M>{bbv, false},
                         AddRows{Bacc, bbv, e0, K}, bedge0);
  }
};
}  // namespace detail

/// Whether cfconv_filter_geometry_backward runs fused (HostRow on the host; widths within a
/// register row).
template <class Exec, class Mode = default_mode_t<Exec>>
constexpr bool cfconv_filter_geometry_fuses(int F, int K) {
  return detail::host_rows_on_host<Mode, Exec> && F <= detail::host_row_max && K <= detail::host_row_max;
}

/// The geometric backward of a CFConv layer through a two-layer filter network W = W1 f(W0 B + b0)
/// + b1 (no parameter gradient; forces and stress), rows u of W, C, pre0, Bacc per pair of edges
/// (one per edge without pairs):
///   Wbar(u,f) = sum_{e in u} aggbar(dst(e),f) x(src(e),f) C(u);  Cbar(u) += sum aggbar x W  (cfconv_backward_edges)
///   zbar = f'(pre0) * (Wbar W1);  Bacc += zbar W0                       (MLP backward, add_into)
/// bitwise those ops. HostRow on the host (cfconv_filter_geometry_fuses): one pass over tiles of
/// rows, Wbar, zbar and zbar W0 in local buffers (never stored), each tile's rows independent (any
/// thread count). Otherwise the ops, with Wbar, zbar, Bbar as the buffers (U rows).
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void cfconv_filter_geometry_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& W,
                                     const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& dst,
                                     const CVec<int, mem_t<Exec>>& src, const CMat<S, mem_t<Exec>>& aggbar,
                                     const CVec<T, mem_t<Exec>>& p, const LinearShape& L0, const LinearShape& L1,
                                     Activation act, const CMat<S, mem_t<Exec>>& pre0, const Vec<S, mem_t<Exec>>& Cbar,
                                     const Mat<S, mem_t<Exec>>& Bacc, const Mat<S, mem_t<Exec>>& Wbar,
                                     const Mat<S, mem_t<Exec>>& zbar, const Mat<S, mem_t<Exec>>& Bbar,
                                     const EdgePairs<mem_t<Exec>>& pairs = {}) {
  const long E = long(W.extent(0)), F = long(W.extent(1));  // E: rows (pairs of edges, or edges)
  if constexpr (detail::host_rows_on_host<Mode, Exec>) {
    const bool rows_contiguous = long(pre0.stride(0)) == F && long(Bacc.stride(0)) == long(Bacc.extent(1));
    if (cfconv_filter_geometry_fuses<Exec, Mode>(int(F), L0.in) && rows_contiguous) {
      using R = real_t<S>;
      constexpr long MT = gemm::mr / detail::planes<S>;
      detail::EdgePack<R> bedge_buf;
      const R* bedge =
          detail::pack_edge_columns<R>(p.data() + L0.w_off, L0.stride(), L0.out, L0.in, bedge_buf) ? &bedge_buf[0][0] : nullptr;
      detail::with_activation(act, [&](auto tag) {
        Kokkos::parallel_for("hydragnn::CFConv::filter_geometry_backward", Kokkos::RangePolicy<Exec>(exec, 0, (E + MT - 1) / MT),
                             detail::CFConvFilterGeometryTiles<decltype(tag)::value, S, T, mem_t<Exec>>{
                                 x, W, aggbar, pre0, C, dst, src, p, L0, L1, Cbar, Bacc, bedge, pairs});
      });
      return;
    }
  }
  if (long(Wbar.extent(0)) != E || long(zbar.extent(0)) != E || long(Bbar.extent(0)) != E)
    throw std::logic_error("cfconv_filter_geometry_backward: unfused, it needs Wbar, zbar and Bbar with one row per row of W");
  cfconv_backward_edges<Exec, S, Mode>(exec, x, W, C, dst, src, aggbar, Wbar, Cbar, pairs);
  linear_backward_input_act<Exec, S, T, Mode>(exec, Wbar, Weights<T, mem_t<Exec>>{p, {}}, L1, act, pre0, zbar);
  linear_backward_input<Exec, S, T, Mode>(exec, zbar, Weights<T, mem_t<Exec>>{p, {}}, L0, Bbar, false);
  add_into<Exec, S, Mode>(exec, Bbar, Bacc);
}

namespace detail {
/// Rows per chunk of cfconv_filter_backward_params (whole register tiles of 6 real or 3 dual rows).
constexpr long cfconv_filter_chunk_rows = 30;

/// HostRow body of cfconv_filter_backward_params: one thread, the rows in chunks of CH, each chunk's
/// Wbar and zbar (and zbar W0) in the buffers of sc, the weight sums in av (ChunkParams: the tiles
/// and order of linear_backward_params).
template <Activation AF, class S, class T, class M>
struct CFConvFilterParamsChunks {
  CMat<S, M> x, W, aggbar, B, a, pre0;
  CVec<S, M> C;
  CVec<int, M> dst, src;
  CVec<T, M> p;
  LinearShape L0, L1;
  Vec<real_t<S>, M> g;
  Vec<S, M> Cbar;
  Mat<S, M> Bacc;
  Vec<real_t<S>, M> av;
  Vec<S, M> sc;
  const real_t<S>* bedge0;  ///< W0's narrow last column tile, packed (host memory; null: none)
  EdgePairs<M> pairs;
  KOKKOS_INLINE_FUNCTION void operator()(const long) const {
    constexpr long CH = cfconv_filter_chunk_rows;
    const long U = long(W.extent(0)), F = long(W.extent(1)), K = long(B.extent(1));
    const bool geometry = Bacc.extent(0) > 0;
    // sc: the two bias sums (F each), then the chunk's Wbar and zbar (CH x F each), zbar W0 (CH x K)
    const ChunkParams<S> s1{av.data(), L1.b_off >= 0 ? sc.data() : nullptr, int(F), int(F)};
    const ChunkParams<S> s0{av.data() + ChunkParams<S>::av_size(int(F), int(F)), L0.b_off >= 0 ? sc.data() + F : nullptr,
                            int(K), int(F)};
    S* const wb = sc.data() + 2 * F;
    S* const zb = wb + CH * F;
    S* const bb = zb + CH * F;
    s1.start();
    s0.start();
    for (long i0 = 0; i0 < U; i0 += CH) {
      const long n = chunk_height(i0, U, CH);
      if (i0 + CH < U) {  // the next chunk's rows of the streamed operands towards the cache
        const long nn = chunk_height(i0 + CH, U, CH);
        prefetch_rows(a, i0 + CH, nn);
        prefetch_rows(pre0, i0 + CH, nn);
        prefetch_rows(B, i0 + CH, nn);
        if (Cbar.extent(0) > 0) prefetch_rows(W, i0 + CH, nn);
      }
      const Mat<S, M> zbv(zb, n, F), bbv(bb, n, K);
      // cfconv_backward_edges: the chunk's Wbar rows (and Cbar)
      cfconv_edge_backward_rows(x, W, C, dst, src, aggbar, pairs, Cbar, i0, n, wb);
      // W1's gradient (inputs a = f(pre0)), zbar = f'(pre0) * (Wbar W1), W0's gradient (inputs B)
      s1.add(&a(i0, 0), F, wb, F, n);
      rows_product_here<S>(wb, F, L1.out, p.data() + L1.w_off, L1.stride(), L1.in, zb, F, n, AccumulateInit<S, M>{zbv, false},
                           ActBackwardRowsPost<AF, S, M>{CMat<S, M>(&pre0(i0, 0), n, F), zbv, F});
      s0.add(&B(i0, 0), K, zb, F, n);
      // the filter's input gradient: Bacc += zbar W0
      if (geometry)
        rows_product_here<S>(zb, F, L0.out, p.data() + L0.w_off, L0.stride(), L0.in, bb, K, n,
                             AccumulateInit<S, M>{bbv, false},
                             typename CFConvFilterGeometryTiles<AF, S, T, M>::AddRows{Bacc, bbv, i0, K}, bedge0);
    }
    s1.finish(g, L1.w_off, L1.stride(), L1.b_off);
    s0.finish(g, L0.w_off, L0.stride(), L0.b_off);
  }
};
}  // namespace detail

/// Whether cfconv_filter_backward_params runs fused: HostRow on a host space of one thread (the
/// weight sums run over all rows in one order), widths within a register row.
template <class Exec, class Mode = default_mode_t<Exec>>
bool cfconv_filter_params_fuses(const Exec& exec, int F, int K) {
  return cfconv_filter_geometry_fuses<Exec, Mode>(F, K) && exec.concurrency() == 1;
}
/// Whether cfconv_filter_backward_params' operands have contiguous rows (its fused path's
/// condition besides cfconv_filter_params_fuses): W, a, pre0 of F columns, B of K, and Bacc of K
/// when not empty.
template <class S, class M>
bool cfconv_filter_params_rows_contiguous(const CMat<S, M>& W, const CMat<S, M>& a, const CMat<S, M>& pre0,
                                          const CMat<S, M>& B, const Mat<S, M>& Bacc) {
  const long F = long(W.extent(1)), K = long(B.extent(1));
  return long(W.stride(0)) == F && long(a.stride(0)) == F && long(pre0.stride(0)) == F && long(B.stride(0)) == K &&
         (Bacc.extent(0) == 0 || long(Bacc.stride(0)) == K);
}
/// Scratch of cfconv_filter_backward_params: reals (the weight sums) and scalars (bias sums, chunk
/// buffers).
template <class S>
constexpr long cfconv_filter_params_scratch_reals(int F, int K) {
  return detail::ChunkParams<S>::av_size(F, F) + detail::ChunkParams<S>::av_size(K, F);
}
constexpr long cfconv_filter_params_scratch_scalars(int F, int K) {
  return 2 * long(F) + detail::cfconv_filter_chunk_rows * (2 * long(F) + K);
}

/// The backward of a CFConv layer's edge half through its two-layer filter network W = W1 f(W0 B +
/// b0) + b1 with the filter's parameter gradient (training), rows u of W, C, B, a, pre0 per pair of
/// edges (one per edge without pairs):
///   Wbar(u,f) = sum_{e in u} aggbar(dst(e),f) x(src(e),f) C(u);  Cbar(u) += sum aggbar x W  (cfconv_backward_edges)
///   g[W1, b1] += a^T Wbar, sum Wbar;  zbar = f'(pre0) * (Wbar W1);  g[W0, b0] += B^T zbar, sum zbar
///   Bacc += zbar W0                                                     (MLP backward, add_into)
/// with a = f(pre0) (the forward's activations), bitwise those ops (Cbar skipped when empty, Bacc
/// when empty: no geometric gradient). When cfconv_filter_params_fuses (and the rows are contiguous):
/// one pass over chunks of rows, Wbar, zbar and zbar W0 in the chunk buffers of sc (never stored),
/// av and sc of the sizes above. Otherwise the ops, with Wbar, zbar, Bbar as the buffers (U rows;
/// Bbar only with Bacc).
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void cfconv_filter_backward_params(const Exec& exec, const CMat<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& W,
                                   const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& dst,
                                   const CVec<int, mem_t<Exec>>& src, const CMat<S, mem_t<Exec>>& aggbar,
                                   const CVec<T, mem_t<Exec>>& p, const LinearShape& L0, const LinearShape& L1,
                                   Activation act, const CMat<S, mem_t<Exec>>& B, const CMat<S, mem_t<Exec>>& a,
                                   const CMat<S, mem_t<Exec>>& pre0, const Vec<real_t<S>, mem_t<Exec>>& g,
                                   const Vec<S, mem_t<Exec>>& Cbar, const Mat<S, mem_t<Exec>>& Bacc,
                                   const Vec<real_t<S>, mem_t<Exec>>& av, const Vec<S, mem_t<Exec>>& sc,
                                   const Mat<S, mem_t<Exec>>& Wbar, const Mat<S, mem_t<Exec>>& zbar,
                                   const Mat<S, mem_t<Exec>>& Bbar, const EdgePairs<mem_t<Exec>>& pairs = {}) {
  using MS = mem_t<Exec>;
  const long U = long(W.extent(0)), F = long(W.extent(1)), K = long(B.extent(1));
  if constexpr (detail::host_rows_on_host<Mode, Exec>) {
    if (cfconv_filter_params_fuses<Exec, Mode>(exec, int(F), int(K)) &&
        cfconv_filter_params_rows_contiguous<S, MS>(W, a, pre0, B, Bacc)) {
      if (long(av.extent(0)) < cfconv_filter_params_scratch_reals<S>(int(F), int(K)) ||
          long(sc.extent(0)) < cfconv_filter_params_scratch_scalars(int(F), int(K)))
        throw std::logic_error("cfconv_filter_backward_params: scratch smaller than cfconv_filter_params_scratch_*");
      using R = real_t<S>;
      detail::EdgePack<R> bedge_buf;
      const R* bedge = Bacc.extent(0) > 0 && detail::pack_edge_columns<R>(p.data() + L0.w_off, L0.stride(), L0.out, L0.in,
                                                                          bedge_buf)
                           ? &bedge_buf[0][0]
                           : nullptr;
      detail::with_activation(act, [&](auto tag) {
        Kokkos::parallel_for("hydragnn::CFConv::filter_backward_params", Kokkos::RangePolicy<Exec>(exec, 0, 1),
                             detail::CFConvFilterParamsChunks<decltype(tag)::value, S, T, MS>{
                                 x, W, aggbar, B, a, pre0, C, dst, src, p, L0, L1, g, Cbar, Bacc, av, sc, bedge, pairs});
      });
      return;
    }
  }
  if (long(Wbar.extent(0)) != U || long(zbar.extent(0)) != U || (Bacc.extent(0) > 0 && long(Bbar.extent(0)) != U))
    throw std::logic_error("cfconv_filter_backward_params: unfused, it needs Wbar, zbar (and with Bacc, Bbar) with one row per row of W");
  cfconv_backward_edges<Exec, S, Mode>(exec, x, W, C, dst, src, aggbar, Wbar, Cbar, pairs);
  linear_backward_params<Exec, S, Mode>(exec, a, Wbar, L1, g);
  linear_backward_input_act<Exec, S, T, Mode>(exec, Wbar, Weights<T, MS>{p, {}}, L1, act, pre0, zbar);
  linear_backward_params<Exec, S, Mode>(exec, B, zbar, L0, g);
  if (Bacc.extent(0) > 0) {
    linear_backward_input<Exec, S, T, Mode>(exec, zbar, Weights<T, MS>{p, {}}, L0, Bbar, false);
    add_into<Exec, S, Mode>(exec, Bbar, Bacc);
  }
}

namespace detail {
/// HostRow body of cfconv_filter_forward_geometry: chunk t of dense_chunk_rows rows of the filter,
/// its activations in a local buffer.
template <Activation AF, class S, class T, class M>
struct CFConvFilterForwardGeometry {
  CMat<S, M> B;
  CVec<T, M> p, pt;
  LinearShape L0, L1;
  Mat<S, M> pre0, W;
  Mat<S, M> a;  ///< the activations f(pre0), kept (empty: a local buffer)
  KOKKOS_INLINE_FUNCTION void operator()(const long t) const {
    constexpr long CH = dense_chunk_rows;
    const long U = long(W.extent(0)), F = long(W.extent(1)), K = long(B.extent(1));
    const long u0 = t * CH, n = chunk_height(u0, U, CH);
    S abuf[CH * host_row_max];
    S* const ab = a.extent(0) > 0 ? &a(u0, 0) : abuf;
    const Mat<S, M> av(ab, n, F), pv(&pre0(u0, 0), n, F);
    // the next chunk's rows towards the cache: B's (the first product reads a chunk's rows down
    // their columns, several streams at once that the hardware prefetcher follows poorly), and
    // those it writes
    if (u0 + CH < U) {
      const long nn = chunk_height(u0 + CH, U, CH);
      prefetch_rows(B, u0 + CH, nn);
      prefetch_rows<true>(pre0, u0 + CH, nn);
      prefetch_rows<true>(W, u0 + CH, nn);
      if (a.extent(0) > 0) prefetch_rows<true>(a, u0 + CH, nn);
    }
    // pre0 = W0 B + b0, a = f(pre0) (linear_forward_act), W = W1 a + b1 (linear_forward)
    rows_product_here<S>(&B(u0, 0), K, K, pt.data() + L0.wt_off, L0.out, int(F), &pre0(u0, 0), F, n,
                         BiasInit<T, M>{p, L0.b_off}, ActRowsPost<AF, S, M>{pv, av, F});
    rows_product_here<S>(ab, F, F, pt.data() + L1.wt_off, L1.out, int(F), &W(u0, 0), F, n, BiasInit<T, M>{p, L1.b_off},
                         NoRowsPost{});
  }
};
}  // namespace detail

/// Whether cfconv_filter_forward_geometry runs (real activations, the conditions of the fused
/// geometric backward, the filter's transposed weights present).
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
bool cfconv_filter_forward_geometry_fuses(const Weights<T, mem_t<Exec>>& w, const LinearShape& L0, const LinearShape& L1,
                                          int F, int K) {
  return !scalar_traits<S>::is_dual && cfconv_filter_geometry_fuses<Exec, Mode>(F, K) && w.transposed(L0) &&
         w.transposed(L1) && L0.in == K && L0.out == F && L1.in == F && L1.out == F;
}

/// A CFConv layer's filter network W = W1 f(W0 B + b0) + b1 (B: U x K, one row per pair of edges or
/// per edge) and its aggregate (cfconv_forward) for a pass with no parameter gradient to come (forces,
/// stress, inference), when cfconv_filter_forward_geometry_fuses: the filter in chunks of
/// dense_chunk_rows rows, bitwise linear_forward_act and linear_forward, keeping pre0 and W (U x F,
/// what cfconv_filter_geometry_backward reads) but not the activations f(pre0), or, given `a`
/// (U x F, training: what the filter's weight gradient reads), keeping them there too.
///   B: U x K, x: N x F, C: U -> pre0, W: U x F, agg: N x F (all overwritten; a too when given)
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void cfconv_filter_forward_geometry(const Exec& exec, const CMat<S, mem_t<Exec>>& B, const CMat<S, mem_t<Exec>>& x,
                                    const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& row_ptr,
                                    const CVec<int, mem_t<Exec>>& src, const Weights<T, mem_t<Exec>>& w,
                                    const LinearShape& L0, const LinearShape& L1, Activation act,
                                    const Mat<S, mem_t<Exec>>& pre0, const Mat<S, mem_t<Exec>>& W,
                                    const Mat<S, mem_t<Exec>>& agg, const EdgePairs<mem_t<Exec>>& pairs = {},
                                    const Mat<S, mem_t<Exec>>& a = {}) {
  const long U = long(W.extent(0)), F = long(W.extent(1)), K = long(B.extent(1));
  const bool contiguous = long(B.stride(0)) == K && long(pre0.stride(0)) == F && long(W.stride(0)) == F &&
                          (a.extent(0) == 0 || (long(a.extent(0)) == U && long(a.stride(0)) == F));
  if (!cfconv_filter_forward_geometry_fuses<Exec, S, T, Mode>(w, L0, L1, int(F), int(K)) || !contiguous)
    throw std::logic_error("cfconv_filter_forward_geometry: see cfconv_filter_forward_geometry_fuses");
  if constexpr (detail::host_rows_on_host<Mode, Exec>) {
    constexpr long CH = detail::dense_chunk_rows;
    detail::with_activation(act, [&](auto tag) {
      Kokkos::parallel_for("hydragnn::CFConv::filter_forward_geometry", Kokkos::RangePolicy<Exec>(exec, 0, (U + CH - 1) / CH),
                           detail::CFConvFilterForwardGeometry<decltype(tag)::value, S, T, mem_t<Exec>>{B, w.p, w.pt, L0,
                                                                                                     L1, pre0, W, a});
    });
    cfconv_forward<Exec, S, Mode>(exec, x, W, C, row_ptr, src, agg, pairs);
  }
}

}  // namespace kernels
}  // namespace hydragnn
