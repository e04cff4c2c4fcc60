// SPDX-License-Identifier: BSD-3-Clause
// Dense layer op: Y = X W^T + b and its backward, generic in the scalar (real or dual).
//
// Weights are always real; with dual activations each product is real x dual, so a dual GEMM costs
// two real GEMMs of flops. Deterministic: every output element is the sum of its terms in one fixed
// order in every mode, so the modes agree bitwise:
//   forward          Y(n,o)  = b(o) + X(n,0) W(o,0) + X(n,1) W(o,1) + ...        (c ascending)
//   backward_input   Xbar(n,c) (+)= Ybar(n,0) W(0,c) + Ybar(n,1) W(1,c) + ...   (o ascending)
//   backward_params  Wbar(o,c) += Ybar(0,o) X(0,c) + Ybar(1,o) X(1,c) + ...     (n ascending)
//
// Modes (kernels/modes.hpp): HostRow runs register-blocked micro-kernels (kernels/gemm.hpp) over
// tiles of rows; its forward streams the transposed weights W^T (in x out, contiguous over outputs;
// the model transposes all weights once per pass, never per call); PerElement is one thread per
// output; TeamTiled runs the shared-memory tiled products of kernels/team_gemm.hpp (the GPU mode).
// The weight gradient of TeamTiled sums the rows in chunks (a GPU needs the rows split across
// teams), then the chunks in ascending order: a fixed order, but another one than the other modes'
// once there are more rows than one chunk.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/gemm.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/pointwise.hpp>
#include <hydragnn/kernels/team_gemm.hpp>

#include <stdexcept>
#include <string>
#include <type_traits>

namespace hydragnn {

/// The parameters of a pass: the flat buffer p and, at the same offsets, every Linear weight block
/// transposed (pt: W^T, in x out). pt may be empty where no HostRow forward runs.
template <class T, class M>
struct Weights {
  CVec<T, M> p;
  CVec<T, M> pt;
  /// Whether layer sh's W^T can be read from pt (LinearShape::transposed_in).
  KOKKOS_INLINE_FUNCTION bool transposed(const LinearShape& sh) const { return sh.transposed_in(p, pt); }
};

/// W(o, c) of one layer: read from its W^T in pt (contiguous over o) where it has one, else from p.
template <class T, class M>
struct WeightAt {
  CVec<T, M> p, pt;
  long w = 0, ld = 0, wt = -1, out = 0;  ///< wt: W^T's offset in pt, -1 where W is read from p
  WeightAt(const Weights<T, M>& wts, const LinearShape& sh)
      : p(wts.p), pt(wts.pt), w(sh.w_off), ld(sh.stride()), wt(wts.transposed(sh) ? sh.wt_off : -1), out(sh.out) {}
  KOKKOS_INLINE_FUNCTION T operator()(long o, long c) const { return wt >= 0 ? pt(wt + c * out + o) : p(w + o * ld + c); }
};

namespace kernels {

namespace detail {
/// Weight-gradient tiling (HostRow): rows streamed in chunks of 32 so that a chunk of X and Ybar
/// stays in cache while every register tile passes over it.
constexpr long dense_chunk_rows = 32;
/// Part `part`'s chunk rows of a (parts x CH) x width buffer of a fused pass that runs a part per
/// thread: rows [part CH, (part + 1) CH), or null for an empty buffer (EGNN's absent coordinate MLP).
template <class S, class M>
KOKKOS_INLINE_FUNCTION S* part_chunk(const Mat<S, M>& x, long part, long CH = dense_chunk_rows) {
  return x.data() ? x.data() + part * CH * long(x.extent(1)) : nullptr;
}

/// Rows of the chunk of height CH that starts at row i0 of the rows [.., e1): CH, or the rows left.
KOKKOS_INLINE_FUNCTION long chunk_height(long i0, long e1, long CH) { return e1 - i0 < CH ? e1 - i0 : CH; }

/// Reals per scalar: 1, or 2 for a dual (primal and tangent planes).
template <class S>
constexpr int planes = scalar_traits<S>::is_dual ? 2 : 1;

/// Plane `plane` of a scalar (the value itself for a real).
template <class S>
KOKKOS_INLINE_FUNCTION real_t<S> plane_of(const S& s, int plane) {
  if constexpr (scalar_traits<S>::is_dual) return plane == 0 ? s.v : s.d;
  else return (void)plane, s;
}

/// No epilogue.
struct NoRowsPost {
  KOKKOS_INLINE_FUNCTION void operator()(long, long) const {}
};
/// Epilogue of linear_forward_act: rows [i0, i1) of Y = f(rows of Pre).
template <Activation A, class S, class M>
struct ActRowsPost {
  Mat<S, M> pre, y;
  long c;
  KOKKOS_INLINE_FUNCTION void operator()(long i0, long i1) const {
    if (long(pre.stride(0)) == c && long(y.stride(0)) == c)  // contiguous rows: one run (pointwise: the same values)
      act_forward_row<A>(&pre(i0, 0), &y(i0, 0), (i1 - i0) * c);
    else
      for (long i = i0; i < i1; ++i) act_forward_row<A>(&pre(i, 0), &y(i, 0), c);
  }
};
/// Epilogue of linear_backward_input_act: rows [i0, i1) of Xbar times f'(rows of Pre), in place.
template <Activation A, class S, class M>
struct ActBackwardRowsPost {
  CMat<S, M> pre;
  Mat<S, M> xb;
  long c;
  KOKKOS_INLINE_FUNCTION void operator()(long i0, long i1) const {
    if (long(pre.stride(0)) == c && long(xb.stride(0)) == c)  // contiguous rows: one run (pointwise)
      act_backward_row<A>(&pre(i0, 0), &xb(i0, 0), &xb(i0, 0), (i1 - i0) * c, false);
    else
      for (long i = i0; i < i1; ++i) act_backward_row<A>(&pre(i, 0), &xb(i, 0), &xb(i, 0), c, false);
  }
};
/// Epilogue of linear_forward_act_dot: ActRowsPost, then z(i) = b1 + sum_k y(i,k) w1(k) on the same
/// rows (k ascending from the bias, as linear_forward), the rows' sums interleaved.
template <Activation A, class S, class T, class M>
struct ActDotRowsPost {
  Mat<S, M> pre, y;
  long c;
  CVec<T, M> p;
  long w1, b1;  ///< the one-output layer's weight row (c reals) and bias (< 0: none)
  Mat<S, M> z;
  template <int NRW>
  KOKKOS_INLINE_FUNCTION void dots(long i0) const {
    S acc[NRW];
    for (int r = 0; r < NRW; ++r) acc[r] = b1 >= 0 ? S(p(b1)) : S(0);
    for (long k = 0; k < c; ++k) {
      const T wk = p(w1 + k);
      for (int r = 0; r < NRW; ++r) acc[r] += y(i0 + r, k) * wk;
    }
    for (int r = 0; r < NRW; ++r) z(i0 + r, 0) = acc[r];
  }
  KOKKOS_INLINE_FUNCTION void operator()(long i0, long i1) const {
    ActRowsPost<A, S, M>{pre, y, c}(i0, i1);
    constexpr int MT = gemm::mr / planes<S>;  // rows of a full tile of host_rows_product
    if (i1 - i0 == MT) {
      dots<MT>(i0);
    } else {
      for (long i = i0; i < i1; ++i) dots<1>(i);
    }
  }
};
/// Rows [r0, r0 + n) of a row-contiguous host matrix towards the cache, to be read (or, Write, to
/// be written) (a hint; nothing where the compiler has no prefetch builtin or the matrix is empty).
template <bool Write = false, class V>
KOKKOS_INLINE_FUNCTION void prefetch_rows(const V& x, long r0, long n) {
#ifdef HYDRAGNN_SIMD_PACKS
  if (x.extent(0) == 0) return;
  const char* p = reinterpret_cast<const char*>(x.data() + r0 * long(x.stride(0)));
  const long bytes = n * long(x.stride(0)) * long(sizeof(typename V::value_type));
  for (long o = 0; o < bytes; o += 64) __builtin_prefetch(p + o, Write ? 1 : 0);
#else
  (void)x, (void)r0, (void)n;
#endif
}

/// Start values: the bias in the primal plane (forward), or zero.
template <class T, class M>
struct BiasInit {
  CVec<T, M> p;
  long b;
  KOKKOS_INLINE_FUNCTION T operator()(long, int plane, int o) const { return b >= 0 && plane == 0 ? p(b + o) : T(0); }
#ifdef HYDRAGNN_SIMD_PACKS
  /// lanes o, o + 1, ... of operator() as one pack (host, vector builds)
  template <class R>
  simd::pack_t<R> pack(long, int plane, int o) const {
    simd::pack_t<R> v{};
    if (b >= 0 && plane == 0) {
      if constexpr (std::is_same<T, R>::value) {
        v = simd::load(&p(b + o));
      } else {
        for (int l = 0; l < simd::lanes<R>; ++l) v[l] = R(p(b + o + l));
      }
    }
    return v;
  }
#endif
};
/// Start values: the values in X (accumulate), or zero.
template <class S, class M>
struct AccumulateInit {
  Mat<S, M> x;
  bool accumulate;
  KOKKOS_INLINE_FUNCTION real_t<S> operator()(long i, int plane, int col) const {
    return accumulate ? plane_of(x(i, col), plane) : real_t<S>(0);
  }
#ifdef HYDRAGNN_SIMD_PACKS
  /// lanes col, col + 1, ... of operator() as one pack (host, vector builds)
  template <class R>
  simd::pack_t<R> pack(long i, int plane, int col) const {
    if (!accumulate) return simd::pack_t<R>{};
    if constexpr (scalar_traits<S>::is_dual) {
      simd::pack_t<R> v, d;
      simd::deinterleave(reinterpret_cast<const R*>(&x(i, col)), v, d);
      return plane == 0 ? v : d;
    } else {
      return simd::load(&x(i, col));
    }
  }
#endif
};

/// Rows [i0, i0 + MT) of host_rows_product below as one register tile of MT * planes tile rows.
template <int MT, class S, class Init>
KOKKOS_FORCEINLINE_FUNCTION void host_rows_block(long i0, const S* A, long lda, long K, const real_t<S>* B, long ldb,
                                                 int ncols, S* C, long ldc, const Init& init, const real_t<S>* bedge) {
  using R = real_t<S>;
  constexpr int P = planes<S>;
  const R* Ar = reinterpret_cast<const R*>(A);
  R* Cr = reinterpret_cast<R*>(C);
#ifdef HYDRAGNN_SIMD_PACKS
  gemm::rows<R, MT * P, P>(Ar + i0 * lda * P, lda * P, P, B, ldb, K, ncols, Cr + i0 * ldc * P, ldc * P,
                           [&](int r, int j) { return init(i0 + r / P, r % P, j); }, bedge,
                           [&](int r, int j) { return init.template pack<R>(i0 + r / P, r % P, j); });
#else
  gemm::rows<R, MT * P, P>(Ar + i0 * lda * P, lda * P, P, B, ldb, K, ncols, Cr + i0 * ldc * P, ldc * P,
                           [&](int r, int j) { return init(i0 + r / P, r % P, j); }, bedge);
#endif
}

/// host_rows_block<rows> for 0 < rows <= MT (a last, partial tile as one register tile of its rows).
template <int MT, class S, class Init>
KOKKOS_FORCEINLINE_FUNCTION void host_rows_blocks(int rows, long i0, const S* A, long lda, long K, const real_t<S>* B,
                                                  long ldb, int ncols, S* C, long ldc, const Init& init,
                                                  const real_t<S>* bedge) {
  if constexpr (MT > 0) {
    if (rows == MT) host_rows_block<MT>(i0, A, lda, K, B, ldb, ncols, C, ldc, init, bedge);
    else host_rows_blocks<MT - 1>(rows, i0, A, lda, K, B, ldb, ncols, C, ldc, init, bedge);
  }
}

/// Whether host_rows_tile computes a product one column at a time (host_rows_narrow) instead of in
/// vector register tiles whose NR lanes would be mostly padding: one or two columns, or up to four
/// over a short sum. On a Zen 4 core (NR = 32 floats) a one-output layer over 63,751 rows (CGCNN's
/// gates at width 1) took 1.7 ms in a register tile and 0.26 ms here; 3,395 x 200 -> 3 stays in
/// the register tiles (0.47 ms against 0.56).
KOKKOS_INLINE_FUNCTION constexpr bool host_rows_narrow_fits(int ncols, long K) { return ncols <= 2 || (ncols <= 4 && K <= 32); }

/// Rows [i0, i0 + rows), rows <= MT, of host_rows_product for a narrow C: each column's sums as
/// scalars, the tile's rows side by side (independent chains), k ascending from init — the sums of
/// the register tiles, in the same order.
template <int MT, class S, class Init>
KOKKOS_INLINE_FUNCTION void host_rows_narrow(int rows, long i0, const S* A, long lda, long K, const real_t<S>* B, long ldb,
                                             int ncols, S* C, long ldc, const Init& init) {
  using R = real_t<S>;
  constexpr int P = planes<S>;
  const R* Ar = reinterpret_cast<const R*>(A) + i0 * lda * P;
  R* Cr = reinterpret_cast<R*>(C) + i0 * ldc * P;
  long at[MT];  // each tile row's first real; rows past the last read the last row's (never stored)
  for (int r = 0; r < MT; ++r) at[r] = (r < rows ? r : rows - 1) * lda * P;
  for (int pl = 0; pl < P; ++pl)
    for (int j = 0; j < ncols; ++j) {
      R acc[MT];
      for (int r = 0; r < MT; ++r) acc[r] = r < rows ? init(i0 + r, pl, j) : R(0);
      for (long k = 0; k < K; ++k) {
        const R bk = B[k * ldb + j];
        for (int r = 0; r < MT; ++r) acc[r] += Ar[at[r] + pl + k * P] * bk;
      }
      for (int r = 0; r < rows; ++r) Cr[r * ldc * P + pl + j * P] = acc[r];
    }
}

/// Tile t of host_rows_product below (rows [t MT, min(n, (t + 1) MT)), MT = gemm::mr / planes),
/// on the calling thread. A last, partial tile is one register tile of its rows too (a tile of one
/// row reloads B for every row: a 32-row chunk of the fused kernels would spend a fifth of its
/// time on its last two rows). Each row's sums are the same whatever the tile height.
template <class S, class Init, class Post>
KOKKOS_FORCEINLINE_FUNCTION void host_rows_tile(long t, const S* A, long lda, long K, const real_t<S>* B, long ldb,
                                                int ncols, S* C, long ldc, long n, const Init& init, const Post& post,
                                                const real_t<S>* bedge) {
  constexpr int MT = gemm::mr / planes<S>;  // matrix rows per tile
  const long i0 = t * MT;
  const long rows = n - i0 < MT ? n - i0 : MT;
  if (rows == MT) host_rows_block<MT>(i0, A, lda, K, B, ldb, ncols, C, ldc, init, bedge);
  else host_rows_blocks<MT - 1>(int(rows), i0, A, lda, K, B, ldb, ncols, C, ldc, init, bedge);
  post(i0, i0 + rows);
}

/// host_rows_tile for a narrow product (host_rows_narrow_fits), a function of its own: the
/// narrow path inside host_rows_tile changed how the compiler laid out the register tiles of dual
/// rows (their forward fell from 45 to 40 GFMA/s).
template <class S, class Init, class Post>
KOKKOS_INLINE_FUNCTION void host_rows_tile_narrow(long t, const S* A, long lda, long K, const real_t<S>* B, long ldb,
                                                  int ncols, S* C, long ldc, long n, const Init& init, const Post& post) {
  constexpr int MT = gemm::mr / planes<S>;
  const long i0 = t * MT;
  const long rows = n - i0 < MT ? n - i0 : MT;
  host_rows_narrow<MT>(int(rows), i0, A, lda, K, B, ldb, ncols, C, ldc, init);
  post(i0, i0 + rows);
}

/// Rows of the buffer of pack_edge_columns (on the launching thread's stack, 128 KiB): a sum of up
/// to this many terms has its edge packed once (PNAEq's basis cotangent at h128 sums 384); longer
/// ones pack B a block at a time in every tile (gemm::tile's EDGE path, several times slower).
constexpr long edge_pack_rows = 1024;
template <class R>
using EdgePack = R[edge_pack_rows][gemm::nr<R>];

/// B's last column tile (ncols % NR columns of K rows, K <= edge_pack_rows), zero-padded to NR, as
/// host_rows_product packs it for its edge tiles; false (nothing packed) when there is none.
template <class R>
bool pack_edge_columns(const R* B, long ldb, long K, int ncols, EdgePack<R>& buf) {
  constexpr int NR = gemm::nr<R>;
  const int j0 = ncols - ncols % NR;
  if (ncols % NR == 0 || K > edge_pack_rows) return false;
  for (long k = 0; k < K; ++k)
    for (int j = 0; j < NR; ++j) buf[k][j] = j0 + j < ncols ? B[k * ldb + j0 + j] : R(0);
  return true;
}

/// Row tiles ahead of the current one whose rows host_rows_product sends towards the cache.
constexpr long tile_prefetch_distance = 2;

/// Rows [i0, i0 + m) of A (their K scalars) and of C (their ncols scalars, for writing) towards the
/// cache, rows past n skipped: a tile reads its MT rows of A down their columns, MT streams at once
/// that the hardware prefetcher follows poorly in a matrix larger than the cache (a hint; nothing
/// where the compiler has no prefetch builtin).
template <class S>
KOKKOS_INLINE_FUNCTION void prefetch_tile_rows(const S* A, long lda, long K, const S* C, long ldc, int ncols, long n,
                                               long i0, long m) {
#ifdef HYDRAGNN_SIMD_PACKS
  for (long i = i0; i < i0 + m && i < n; ++i) {
    const char* a = reinterpret_cast<const char*>(A + i * lda);
    for (long o = 0; o < long(K * sizeof(S)); o += 64) __builtin_prefetch(a + o);
    const char* c = reinterpret_cast<const char*>(C + i * ldc);
    for (long o = 0; o < long(ncols * sizeof(S)); o += 64) __builtin_prefetch(c + o, 1);
  }
#else
  (void)A, (void)lda, (void)K, (void)C, (void)ldc, (void)ncols, (void)n, (void)i0, (void)m;
#endif
}

/// HostRow product over rows: for every row i < n of A (n x K, row stride lda scalars) and every
/// column j < ncols,  C(i, j) = init(i, plane, j) + sum_k A(i, k) B(k, j)  per plane, k ascending;
/// B is real (K x ncols, row stride ldb). Dual rows are two real tile rows (gemm.hpp).
/// post(i0, i1), if given, runs on the rows [i0, i1) of C right after their tile is written (while
/// they are in cache): the fused epilogues of linear_forward_act / linear_backward_input_act.
template <class Exec, class S, class Init, class Post = NoRowsPost>
void host_rows_product(const Exec& exec, const char* label, const S* A, long lda, long K, const real_t<S>* B,
                       long ldb, int ncols, S* C, long ldc, long n, const Init& init, const Post& post = Post()) {
  using R = real_t<S>;
  constexpr int MT = gemm::mr / planes<S>;  // matrix rows per tile
  const long ntiles = (n + MT - 1) / MT;
  // B's narrow last column tile, packed once for every row tile (host memory: HostRow runs on the
  // host only)
  EdgePack<R> bedge_buf;
  const R* bedge = pack_edge_columns<R>(B, ldb, K, ncols, bedge_buf) ? &bedge_buf[0][0] : nullptr;
  if (host_rows_narrow_fits(ncols, K)) {
    Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, ntiles), KOKKOS_LAMBDA(const long t) {
      host_rows_tile_narrow(t, A, lda, K, B, ldb, ncols, C, ldc, n, init, post);
    });
    return;
  }
  Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, ntiles), KOKKOS_LAMBDA(const long t) {
    // real rows only: dual rows ran 4-5 % slower with it (Zen 4, hydragnn_bench_dense)
    if (planes<S> == 1) prefetch_tile_rows<S>(A, lda, K, C, ldc, ncols, n, (t + tile_prefetch_distance) * MT, MT);
    host_rows_tile(t, A, lda, K, B, ldb, ncols, C, ldc, n, init, post, bedge);
  });
}

/// host_rows_product on the calling thread, inside a kernel (the fused HostRow kernels: rows of a
/// chunk in cache-resident buffers). Bitwise host_rows_product.
/// bedge (optional): B's last, narrow column tile packed by pack_edge_columns.
template <class S, class Init, class Post>
KOKKOS_INLINE_FUNCTION void rows_product_here(const S* A, long lda, long K, const real_t<S>* B, long ldb, int ncols,
                                              S* C, long ldc, long n, const Init& init, const Post& post,
                                              const real_t<S>* bedge = nullptr) {
  constexpr int MT = gemm::mr / planes<S>;
  if (host_rows_narrow_fits(ncols, K))
    for (long t = 0; t * MT < n; ++t) host_rows_tile_narrow(t, A, lda, K, B, ldb, ncols, C, ldc, n, init, post);
  else
    for (long t = 0; t * MT < n; ++t) host_rows_tile(t, A, lda, K, B, ldb, ncols, C, ldc, n, init, post, bedge);
}

/// Tiling of HostRow's weight gradient: the dual one splits the chunk's Ybar block into primal and
/// tangent planes once (ybuf), then tiles of MR inputs x NR outputs of tangent accumulators (MR = 4
/// with 16 vector registers: 8 accumulators plus 4 for the Ybar planes); the real one MR = 6
/// inputs x NR outputs (12 accumulators). With 32 vector registers both take MR = 8.
template <class S>
struct params_tiling {
  using R = real_t<S>;
  static constexpr bool dual = scalar_traits<S>::is_dual;
  static constexpr int NR = gemm::nr<R>;
#ifdef HYDRAGNN_SIMD_PACKS
  /// 32 vector registers (AVX-512): taller register tiles (16 accumulators) and chunks of 128 rows
  /// (L2-resident) — 31 -> 36 (dual) and 36 -> 45 (real) GFMA/s for 31,876 x 128 x 128 on a Zen 4
  /// core (docs/performance.md); the sums and their order are the same.
  static constexpr bool wide = simd::bytes == 64;
#else
  static constexpr bool wide = false;
#endif
  static constexpr int MR = wide ? 8 : dual ? 4 : gemm::mr;
  static constexpr long CH = (wide ? 4 : 1) * dense_chunk_rows;
  static constexpr int GB = 8;  ///< most blocks of NR outputs per thread (local sums: GB x 256 x NR reals)

};

/// run(integral_constant<int, rest>, c0) for 0 < rest <= TR: the narrower last tile of a row of
/// register tiles (its width a compile-time constant).
template <int TR, class Run>
KOKKOS_FORCEINLINE_FUNCTION void run_rest(int rest, int c0, const Run& run) {
  if constexpr (TR > 0) {
    if (rest == TR) run(std::integral_constant<int, TR>{}, c0);
    else run_rest<TR - 1>(rest, c0, run);
  }
}

/// One block of NR outputs [o0, o0 + nj) of the weight gradient over `rows` rows (<= CH), x and y
/// at the rows' first: the rows' Ybar block packed (dual: split into planes; real: only when the
/// block is narrow), zero-padded past the matrix edge so that every tile is a full one, then
/// register tiles of MR inputs and one narrower tile of the rest added to avb (nin x NR reals: the
/// block's sums; dual: their tangents). Each sum runs over the rows in ascending order.
template <class S>
KOKKOS_INLINE_FUNCTION void params_block(const S* x, long lx, int nin, const S* y, long ly, int o0, int nj, long rows,
                                         real_t<S>* avb) {
  using Tl = params_tiling<S>;
  using R = typename Tl::R;
  constexpr int NR = Tl::NR, MR = Tl::MR;
  R ybuf[Tl::CH][2 * NR];
  const bool packed = Tl::dual || nj < NR;
  if (packed)
    for (long i = 0; i < rows; ++i) {
#ifdef HYDRAGNN_SIMD_PACKS
      if constexpr (Tl::dual) {
        if (nj == NR) {  // a whole block: the two planes by shuffles
          constexpr int L = simd::lanes<R>;
          const R* yr = reinterpret_cast<const R*>(y + i * ly + o0);
          for (int v = 0; v < NR / L; ++v) {
            simd::pack_t<R> pv, pd;
            simd::deinterleave(yr + 2 * v * L, pv, pd);
            simd::store(&ybuf[i][v * L], pv);
            simd::store(&ybuf[i][NR + v * L], pd);
          }
          continue;
        }
      }
#endif
      for (int j = 0; j < NR; ++j) {
        const bool in_range = j < nj;
        ybuf[i][j] = in_range ? plane_of(y[i * ly + o0 + j], 0) : R(0);
        if (Tl::dual) ybuf[i][NR + j] = in_range ? plane_of(y[i * ly + o0 + j], 1) : R(0);
      }
    }
  auto run = [&](auto mr_tag, int c0) {
    constexpr int TR = decltype(mr_tag)::value;
    auto& tv = *reinterpret_cast<R(*)[TR][NR]>(avb + long(c0) * NR);
    if constexpr (Tl::dual) {
      gemm::dual_params_tile<R, TR, NR>(x + c0, lx, &ybuf[0][0], rows, tv);
    } else {
      if (packed) gemm::tile<R, TR, NR, 1>(x + c0, 1, lx, &ybuf[0][0], 2 * NR, rows, tv);
      else gemm::tile<R, TR, NR, 1>(x + c0, 1, lx, y + o0, ly, rows, tv);
    }
  };
  int c0 = 0;
  for (; c0 + MR <= nin; c0 += MR) run(std::integral_constant<int, MR>{}, c0);
  run_rest<MR - 1>(nin - c0, c0, run);
}

/// One thread's weight gradient of a Linear layer, fed chunk after chunk of rows in ascending order
/// (the fused HostRow kernels, whose rows pass through cache-sized buffers):
///   Wbar(o,c) += sum_n Ybar(n,o) X(n,c),  bbar(o) += sum_n Ybar(n,o)
/// with the tiles, sums and order of linear_backward_params' HostRow path (bitwise). Host only.
/// av: ceil(out / NR) x in x NR reals, bacc: out scalars (nullptr: no bias); in <= host_row_max.
template <class S>
struct ChunkParams {
  using Tl = params_tiling<S>;
  using R = typename Tl::R;
  R* av;
  S* bacc;
  int in, out;
  KOKKOS_INLINE_FUNCTION static constexpr long av_size(int in, int out) { return long((out + Tl::NR - 1) / Tl::NR) * in * Tl::NR; }
  KOKKOS_INLINE_FUNCTION int nblocks() const { return (out + Tl::NR - 1) / Tl::NR; }
  KOKKOS_INLINE_FUNCTION void start() const {
    for (long k = 0; k < av_size(in, out); ++k) av[k] = R(0);
    if (bacc)
      for (int o = 0; o < out; ++o) bacc[o] = S(0);
  }
  /// The next `rows` rows (<= Tl::CH) of X (row stride lx) and Ybar (row stride ly).
  KOKKOS_INLINE_FUNCTION void add(const S* xp, long lx, const S* yp, long ly, long rows) const {
    for (int bb = 0; bb < nblocks(); ++bb) {
      const int o0 = bb * Tl::NR, nj = out - o0 < Tl::NR ? out - o0 : Tl::NR;
      params_block<S>(xp, lx, in, yp, ly, o0, nj, rows, av + long(bb) * in * Tl::NR);
    }
    if (bacc)
      for (long i = 0; i < rows; ++i)
        for (int o = 0; o < out; ++o) bacc[o] += yp[i * ly + o];
  }
  /// g(w + o ld + c) += Wbar(o, c);  g(b + o) += bbar(o) (tangents of dual sums: param_part)
  template <class G>
  KOKKOS_INLINE_FUNCTION void finish(const G& g, long w, long ld, long b) const {
    for (int bb = 0; bb < nblocks(); ++bb) {
      const int o0 = bb * Tl::NR, nj = out - o0 < Tl::NR ? out - o0 : Tl::NR;
      for (int j = 0; j < nj; ++j)
        for (int c = 0; c < in; ++c) g(w + long(o0 + j) * ld + c) += av[(long(bb) * in + c) * Tl::NR + j];
    }
    if (bacc && b >= 0)
      for (int o = 0; o < out; ++o) g(b + o) += param_part(bacc[o]);
  }
};

}  // namespace detail

/// Y(n,o) = b(o) + sum_c X(n,c) W(o,c)              X: n x in -> Y: n x out
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void linear_forward(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const Weights<T, mem_t<Exec>>& wts,
                    const LinearShape& sh, const Mat<S, mem_t<Exec>>& Y) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off, b = sh.b_off, ld = sh.stride(), wt = sh.wt_off;
  const long n = long(X.extent(0));
  const CVec<T, mem_t<Exec>> p = wts.p;
  if constexpr (std::is_same<Mode, exec_mode::HostRow>::value) {
    if (wts.transposed(sh)) {
      // bias in the primal plane only (S(bias) has a zero tangent)
      detail::host_rows_product<Exec, S>(exec, "hydragnn::Linear::forward", X.data(), long(X.stride(0)), in, wts.pt.data() + wt,
                                         out, out, Y.data(), long(Y.stride(0)), n,
                                         detail::BiasInit<T, mem_t<Exec>>{p, b});
      return;
    }
  }
  if constexpr (detail::is_team_tiled<Mode>) {
    // shared-memory tiles (team_gemm.hpp); each element's sum in the order below
    using detail::Contig;
    detail::team_gemm<Exec, S, S, T, Contig::k, Contig::k>(
        exec, "hydragnn::Linear::forward", n, out, in, 0, KOKKOS_LAMBDA(const long i, const long c) { return X(i, c); },
        KOKKOS_LAMBDA(const long c, const long o) { return p(w + o * ld + c); },
        KOKKOS_LAMBDA(const long, const long, const long o) { return b >= 0 ? S(p(b + o)) : S(0); },
        KOKKOS_LAMBDA(const long, const long i, const long o, const S& v) { Y(i, o) = v; });
    return;
  }
  // PerElement (and HostRow without W^T): one sum per output element
  detail::for_each_element<Mode>(exec, "hydragnn::Linear::forward", n, out, KOKKOS_LAMBDA(const long i, const long o) {
    S acc = b >= 0 ? S(p(b + o)) : S(0);
    const T* wrow = &p(w + o * ld);
    for (int c = 0; c < in; ++c) acc += X(i, c) * wrow[c];
    Y(i, o) = acc;
  });
}

/// Xbar(n,c) (+)= sum_o Ybar(n,o) W(o,c)              Ybar: n x out -> Xbar: n x in
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void linear_backward_input(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const Weights<T, mem_t<Exec>>& wts,
                           const LinearShape& sh, const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off, ld = sh.stride();
  const long n = long(Ybar.extent(0));
  const CVec<T, mem_t<Exec>> p = wts.p;
  if constexpr (std::is_same<Mode, exec_mode::HostRow>::value) {
    detail::host_rows_product<Exec, S>(exec, "hydragnn::Linear::backward_input", Ybar.data(), long(Ybar.stride(0)), out,
                                       p.data() + w, ld, in, Xbar.data(), long(Xbar.stride(0)), n,
                                       detail::AccumulateInit<S, mem_t<Exec>>{Xbar, accumulate});
    return;
  }
  if constexpr (detail::is_team_tiled<Mode>) {
    using detail::Contig;
    detail::team_gemm<Exec, S, S, T, Contig::k, Contig::mn>(
        exec, "hydragnn::Linear::backward_input", n, in, out, 0, KOKKOS_LAMBDA(const long i, const long o) { return Ybar(i, o); },
        KOKKOS_LAMBDA(const long o, const long c) { return p(w + o * ld + c); },
        KOKKOS_LAMBDA(const long, const long i, const long c) { return accumulate ? S(Xbar(i, c)) : S(0); },
        KOKKOS_LAMBDA(const long, const long i, const long c, const S& v) { Xbar(i, c) = v; });
    return;
  }
  detail::for_each_element<Mode>(exec, "hydragnn::Linear::backward_input", n, in, KOKKOS_LAMBDA(const long i, const long c) {
    S acc = accumulate ? Xbar(i, c) : S(0);
    for (int o = 0; o < out; ++o) acc += Ybar(i, o) * p(w + long(o) * ld + c);
    Xbar(i, c) = acc;
  });
}

/// Pre = X W^T + b and Y = f(Pre) (Y may be Pre): linear_forward then activation_forward, bitwise.
/// HostRow runs the activation on each tile's rows right after the tile is written, while they are
/// in cache (one pass over Pre instead of two).                    X: n x in -> Pre, Y: n x out
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void linear_forward_act(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const Weights<T, mem_t<Exec>>& wts,
                        const LinearShape& sh, Activation a, const Mat<S, mem_t<Exec>>& Pre, const Mat<S, mem_t<Exec>>& Y) {
  using M = mem_t<Exec>;
  if constexpr (detail::host_rows_on_host<Mode, Exec>) {
    if (wts.transposed(sh)) {
      detail::with_activation(a, [&](auto tag) {
        detail::host_rows_product<Exec, S>(exec, "hydragnn::Linear::forward_act", X.data(), long(X.stride(0)), sh.in,
                                           wts.pt.data() + sh.wt_off, sh.out, sh.out, Pre.data(), long(Pre.stride(0)),
                                           long(X.extent(0)), detail::BiasInit<T, M>{wts.p, sh.b_off},
                                           detail::ActRowsPost<decltype(tag)::value, S, M>{Pre, Y, long(Pre.extent(1))});
      });
      return;
    }
  }
  linear_forward<Exec, S, T, Mode>(exec, X, wts, sh, Pre);
  activation_forward<Exec, S, Mode>(exec, a, Pre, Y);
}

/// linear_forward_act followed by a Linear layer to one output on its activations, bitwise the two
/// ops:  Pre = X W^T + b,  Y = f(Pre),  Z(n, 0) = b1 + sum_c Y(n,c) W1(0,c).  HostRow on the host
/// runs the one-output layer in the epilogue of each register tile, on rows still in cache (a
/// one-output Linear on its own wastes the other columns of its register tiles).
///                                                     X: n x in -> Pre, Y: n x out -> Z: n x 1
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void linear_forward_act_dot(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const Weights<T, mem_t<Exec>>& wts,
                            const LinearShape& sh, Activation a, const Mat<S, mem_t<Exec>>& Pre, const Mat<S, mem_t<Exec>>& Y,
                            const LinearShape& sh1, const Mat<S, mem_t<Exec>>& Z) {
  using M = mem_t<Exec>;
  if (sh1.out != 1 || sh1.in != sh.out)
    throw std::logic_error("linear_forward_act_dot: the second layer must map the " + std::to_string(sh.out) +
                           " activations to one output");
  if constexpr (detail::host_rows_on_host<Mode, Exec>) {
    if (wts.transposed(sh)) {
      detail::with_activation(a, [&](auto tag) {
        detail::host_rows_product<Exec, S>(
            exec, "hydragnn::Linear::forward_act_dot", X.data(), long(X.stride(0)), sh.in, wts.pt.data() + sh.wt_off,
            sh.out, sh.out, Pre.data(), long(Pre.stride(0)), long(X.extent(0)), detail::BiasInit<T, M>{wts.p, sh.b_off},
            detail::ActDotRowsPost<decltype(tag)::value, S, T, M>{Pre, Y, long(Pre.extent(1)), wts.p, sh1.w_off, sh1.b_off, Z});
      });
      return;
    }
  }
  linear_forward_act<Exec, S, T, Mode>(exec, X, wts, sh, a, Pre, Y);
  linear_forward<Exec, S, T, Mode>(exec, Y, wts, sh1, Z);
}

/// Xbar = f'(Pre) * ([Xbar +] Ybar W), elementwise after the product: linear_backward_input into
/// Xbar (accumulate: onto the values in it), then activation_backward in place, bitwise (HostRow:
/// on each tile's rows while they are in cache). The backward of a Linear layer fed by f(Pre).
///                                                         Ybar: n x out, Pre: n x in -> Xbar: n x in
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void linear_backward_input_act(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const Weights<T, mem_t<Exec>>& wts,
                               const LinearShape& sh, Activation a, const CMat<S, mem_t<Exec>>& Pre,
                               const Mat<S, mem_t<Exec>>& Xbar, bool accumulate = false) {
  using M = mem_t<Exec>;
  if constexpr (detail::host_rows_on_host<Mode, Exec>) {
    detail::with_activation(a, [&](auto tag) {
      detail::host_rows_product<Exec, S>(exec, "hydragnn::Linear::backward_input_act", Ybar.data(), long(Ybar.stride(0)),
                                         sh.out, wts.p.data() + sh.w_off, sh.stride(), sh.in, Xbar.data(),
                                         long(Xbar.stride(0)), long(Ybar.extent(0)), detail::AccumulateInit<S, M>{Xbar, accumulate},
                                         detail::ActBackwardRowsPost<decltype(tag)::value, S, M>{Pre, Xbar, long(Xbar.extent(1))});
    });
    return;
  }
  linear_backward_input<Exec, S, T, Mode>(exec, Ybar, wts, sh, Xbar, accumulate);
  activation_backward<Exec, S, Mode>(exec, a, Pre, Xbar, Xbar, false);
}

/// Wbar(o,c) += sum_n Ybar(n,o) X(n,c);  bbar(o) += sum_n Ybar(n,o)      (n ascending)
/// g is real: a dual pass adds the tangents of these sums only (param_part, core/dual.hpp).
///
/// HostRow: one thread per block of gemm::nr outputs, rows in cache-sized chunks, register tiles
/// of gemm::mr inputs x gemm::nr outputs (see below); biases separately.
/// PerElement: one thread per weight. TeamTiled: shared-memory tiles over chunks of
/// params_chunk_rows rows, the chunks' sums added in ascending order (bitwise equal to the other
/// modes up to one chunk of rows; beyond, the same sums in another fixed order).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void linear_backward_params(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CMat<S, mem_t<Exec>>& Ybar,
                            const LinearShape& sh, const Vec<real_t<S>, mem_t<Exec>>& g) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off, b = sh.b_off, ld = sh.stride();
  const long n = long(X.extent(0));
  const int cols = in + (b >= 0 ? 1 : 0);
  if constexpr (std::is_same<Mode, exec_mode::HostRow>::value) {
    // Transposed: Wbar^T(c, o) = sum_n X(n, c) Ybar(n, o). One thread per block of NR outputs (the
    // vector lanes: contiguous in Ybar's rows), all inputs; the block's sums live in a local array
    // (inputs x NR), the rows are streamed in chunks of CH so that a chunk of X and Ybar stays in
    // cache while every tile of MR inputs passes over it (gemm.hpp micro-kernels, accumulators in
    // registers for the chunk). Each sum still runs over n in ascending order.
    // (Tiling constants are static members of a type, not locals: nvcc refuses an extended lambda
    // that first captures a variable inside `if constexpr`.)
    using Tl = detail::params_tiling<S>;
    using R = typename Tl::R;
    if (out == 1 && in <= detail::host_row_max) {
      // one output (a GEMV): the register tiles would waste all but one of their columns; one pass
      // over the rows, the inputs' sums along each row (vector lanes), i ascending per input
      const long cin = in;
      Kokkos::parallel_for(
          "hydragnn::Linear::backward_params_gemv", Kokkos::RangePolicy<Exec>(exec, 0, 1), KOKKOS_LAMBDA(const long) {
            S acc[detail::host_row_max];
            for (long c = 0; c < cin; ++c) acc[c] = S(0);
            for (long i = 0; i < n; ++i) {
              const S y = Ybar(i, 0);
              const S* xr = &X(i, 0);
              for (long c = 0; c < cin; ++c) acc[c] += y * xr[c];
            }
            for (long c = 0; c < cin; ++c) g(w + c) += param_part(acc[c]);
          });
    } else {
      // Groups of up to GB blocks of NR outputs, as many groups as the space runs threads (at
      // least one block each): a thread streams X and Ybar once, chunk by chunk, and every block of
      // its group passes over the chunk while it is in cache (X is read once per group, not once
      // per block). Inputs in blocks of host_row_max (the local sums' extent): one work item per
      // (group, input block).
      const int nblocks = (out + Tl::NR - 1) / Tl::NR;
      const int conc = int(exec.concurrency()) > 0 ? int(exec.concurrency()) : 1;
      const int per = (nblocks + conc - 1) / conc;
      const int gb = per < Tl::GB ? per : Tl::GB;
      const int ngroups = (nblocks + gb - 1) / gb;
      constexpr int CB = detail::host_row_max;
      const int ncb = (in + CB - 1) / CB;
      const long ldx = long(X.stride(0)), ldy = long(Ybar.stride(0));
      const S* Xp = X.data();
      const S* Yp = Ybar.data();
      Kokkos::parallel_for(
          "hydragnn::Linear::backward_params", Kokkos::RangePolicy<Exec>(exec, 0, long(ngroups) * ncb), KOKKOS_LAMBDA(const long item) {
            constexpr int NR = Tl::NR, GB = Tl::GB;
            constexpr long CH = Tl::CH;
            const long grp = item / ncb;
            const int c_first = int(item % ncb) * CB, nin = in - c_first < CB ? in - c_first : CB;
            const S* const xp = Xp + c_first;  // captured here, outside every `if constexpr`
            const S* const yp = Yp;
            const long lx = ldx, ly = ldy;
            const int b0 = int(grp) * gb, nb = nblocks - b0 < gb ? nblocks - b0 : gb;
            R av[GB][detail::host_row_max][NR];  // the sums (dual: their tangents), per block
            for (int bb = 0; bb < nb; ++bb)
              for (int c = 0; c < nin; ++c)
                for (int j = 0; j < NR; ++j) av[bb][c][j] = R(0);
            for (long i0 = 0; i0 < n; i0 += CH) {
              const long i1 = i0 + CH < n ? i0 + CH : n;
#ifdef HYDRAGNN_SIMD_PACKS
              // the next chunk's rows of X and Ybar on their way to the cache while this one is
              // summed (the tiles read X down a column of rows: a new cache line at every row)
              for (long i = i1; i < i1 + CH && i < n; ++i) {
                const char* xr = reinterpret_cast<const char*>(xp + i * lx);
                for (long o = 0; o < long(nin * sizeof(S)); o += 64) __builtin_prefetch(xr + o);
                const char* yr = reinterpret_cast<const char*>(yp + i * ly + b0 * NR);
                for (long o = 0; o < long(nb * NR * sizeof(S)); o += 64) __builtin_prefetch(yr + o);
              }
#endif
              for (int bb = 0; bb < nb; ++bb) {
                const int o0 = (b0 + bb) * NR, nj = out - o0 < NR ? out - o0 : NR;
                detail::params_block<S>(xp + i0 * lx, lx, nin, yp + i0 * ly, ly, o0, nj, i1 - i0, &av[bb][0][0]);
              }
            }
            for (int bb = 0; bb < nb; ++bb) {
              const int o0 = (b0 + bb) * NR, nj = out - o0 < NR ? out - o0 : NR;
              for (int j = 0; j < nj; ++j)
                for (int c = 0; c < nin; ++c) g(w + long(o0 + j) * ld + c_first + c) += av[bb][c][j];
            }
          });
    }
    if (b >= 0) {
      // one thread per group of outputs, streaming the rows once (contiguous in o); i ascending per o
      constexpr int GB = detail::host_row_max;
      const int nb = (out + GB - 1) / GB;
      Kokkos::parallel_for(
          "hydragnn::Linear::backward_bias", Kokkos::RangePolicy<Exec>(exec, 0, nb), KOKKOS_LAMBDA(const long grp) {
            const int o_begin = int(grp) * GB, no = out - o_begin < GB ? out - o_begin : GB;
            S acc[GB];
            for (int a = 0; a < no; ++a) acc[a] = S(0);
            for (long i = 0; i < n; ++i) {
              const S* yr = &Ybar(i, o_begin);
              for (int a = 0; a < no; ++a) acc[a] += yr[a];
            }
            for (int a = 0; a < no; ++a) g(b + o_begin + a) += param_part(acc[a]);
          });
    }
    return;
  }
  if constexpr (detail::is_team_tiled<Mode>) {
    // Wbar^T as a product over the rows in chunks (team_gemm.hpp: team_row_sums); the bias is a
    // last column of ones
    using detail::Contig;
    detail::team_row_sums<Exec, S, Contig::mn, Contig::mn>(
        exec, "hydragnn::Linear::backward_params", "hydragnn::Linear::backward_params_chunks", out, cols, n,
        KOKKOS_LAMBDA(const long o, const long i) { return Ybar(i, o); },
        KOKKOS_LAMBDA(const long i, const long c) { return c < in ? S(X(i, c)) : S(1); },
        KOKKOS_LAMBDA(const long o, const long c, const real_t<S>& v) {
          if (c < in) g(w + o * ld + c) += v;
          else g(b + o) += v;
        });
    return;
  }
  // one thread per weight, plus a last column for the bias
  detail::for_each_element<Mode>(exec, "hydragnn::Linear::backward_params", out, cols, KOKKOS_LAMBDA(const long o, const long c) {
    S acc(0);
    if (c < in) {
      for (long i = 0; i < n; ++i) acc += Ybar(i, o) * X(i, c);
      g(w + o * ld + c) += param_part(acc);
    } else {
      for (long i = 0; i < n; ++i) acc += Ybar(i, o);
      g(b + o) += param_part(acc);
    }
  });
}

/// The shape of two linear layers composed (linear_compose): inner.in -> outer.out, W at 0 (rows of
/// length in), the bias after it if the inner layer has one, W^T at 0 of the transposed buffer.
inline LinearShape composed_shape(const LinearShape& outer, const LinearShape& inner) {
  LinearShape s;
  s.in = inner.in;
  s.out = outer.out;
  s.w_off = 0;
  s.wt_off = 0;
  s.b_off = inner.b_off >= 0 ? long(s.in) * s.out : -1;
  return s;
}

/// Two linear layers with nothing between them as one: inner x -> W1 x + b1 (in -> G) and outer
/// y -> W2 y (G -> F, no bias) compose to x -> C x + c,
///   C = W2 W1 (F x in),   c = W2 b1 (no inner bias: no c),
/// written in composed_shape's layout: C and c into cp, C^T into cpt (both of its num_params()
/// or longer). Worth it where the layers act on many rows (edges) and F, G ~ in: one n x in x F
/// product in place of two, and fewer in the backward (linear_compose_backward). Each element sums
/// over k ascending, in the weights' type. HostRow: a thread per row o of C (an axpy of W1's row k
/// per k, vectorised over in); the other modes a thread (PerElement) or a lane (TeamTiled) per
/// element of [C | c] (F x (in + 1)), the same sums, so every mode gives the same bits.
template <class Exec, class T, class Mode = default_mode_t<Exec>>
void linear_compose(const Exec& exec, const CVec<T, mem_t<Exec>>& p, const LinearShape& outer, const LinearShape& inner,
                    const Vec<T, mem_t<Exec>>& cp, const Vec<T, mem_t<Exec>>& cpt) {
  const LinearShape cs = composed_shape(outer, inner);
  if (outer.in != inner.out || outer.b_off >= 0 || cp.extent(0) < cs.num_params() || cpt.extent(0) < cs.num_params())
    throw std::logic_error("hydragnn::Linear::compose: needs outer.in == inner.out, an outer layer without bias and "
                           "buffers of composed_shape's size");
  const long F = outer.out, G = inner.out, in = inner.in, w2 = outer.w_off, ld2 = outer.stride(), w1 = inner.w_off,
             ld1 = inner.stride(), b1 = inner.b_off, cb = cs.b_off;
  if constexpr (detail::is_host_row<Mode>) {
    detail::for_each_row<Mode>(exec, "hydragnn::Linear::compose", F, KOKKOS_LAMBDA(const long o) {
      T* crow = &cp(o * in);
      for (long i = 0; i < in; ++i) crow[i] = T(0);
      T c(0);
      for (long k = 0; k < G; ++k) {
        const T wk = p(w2 + o * ld2 + k);
        const T* r1 = &p(w1 + k * ld1);
        for (long i = 0; i < in; ++i) crow[i] += wk * r1[i];
        if (b1 >= 0) c += wk * p(b1 + k);
      }
      if (cb >= 0) cp(cb + o) = c;
      for (long i = 0; i < in; ++i) cpt(i * F + o) = crow[i];
    });
  } else {
    // column i < in: C(o, i) = sum_k W2(o, k) W1(k, i); column in: c_o = sum_k W2(o, k) b1_k
    detail::for_each_element<Mode>(exec, "hydragnn::Linear::compose", F, in + 1, KOKKOS_LAMBDA(const long o, const long i) {
      if (i < in) {
        T s(0);
        for (long k = 0; k < G; ++k) s += p(w2 + o * ld2 + k) * p(w1 + k * ld1 + i);
        cp(o * in + i) = s;
        cpt(i * F + o) = s;
      } else if (cb >= 0) {
        T c(0);
        for (long k = 0; k < G; ++k) c += p(w2 + o * ld2 + k) * p(b1 + k);
        cp(cb + o) = c;
      }
    });
  }
}

/// Parameter cotangent through linear_compose, given tc: the composed layer's (real, in
/// composed_shape's layout, as linear_backward_params writes it: gC F x in, gc F):
///   gW2(o, k) += sum_i gC(o, i) W1(k, i) + gc_o b1_k          (i ascending, then the bias term)
///   gW1(k, i) += sum_o W2(o, k) gC(o, i),   gb1_k += sum_o W2(o, k) gc_o     (o ascending)
/// A layer's W^T is read from pt where it has one (wt_off >= 0 and pt as long as p: W1's columns
/// and W2's columns contiguous), else from p. HostRow: row o writes W2's row o, row k W1's row k
/// and b1_k; the other modes a thread (PerElement) or a lane (TeamTiled) per element of gW2 and
/// per element of [gW1 | gb1], the same sums (the same bits).
template <class Exec, class T, class R, class Mode = default_mode_t<Exec>>
void linear_compose_backward(const Exec& exec, const Weights<T, mem_t<Exec>>& wts, const LinearShape& outer,
                             const LinearShape& inner, const CVec<R, mem_t<Exec>>& tc, const Vec<R, mem_t<Exec>>& g) {
  const LinearShape cs = composed_shape(outer, inner);
  if (outer.in != inner.out || outer.b_off >= 0 || tc.extent(0) < cs.num_params())
    throw std::logic_error("hydragnn::Linear::compose_backward: needs outer.in == inner.out, an outer layer without "
                           "bias and the composed cotangent in composed_shape's layout");
  const CVec<T, mem_t<Exec>> p = wts.p, pt = wts.pt;
  const long F = outer.out, G = inner.out, in = inner.in, w2 = outer.w_off, ld2 = outer.stride(), w1 = inner.w_off,
             ld1 = inner.stride(), b1 = inner.b_off, cb = cs.b_off;
  const WeightAt<T, mem_t<Exec>> W1(wts, inner), W2(wts, outer);
  if constexpr (detail::is_host_row<Mode>) {
    detail::for_each_row<Mode>(exec, "hydragnn::Linear::compose_backward_outer", F, KOKKOS_LAMBDA(const long o) {
      R* grow = &g(w2 + o * ld2);
      for (long i = 0; i < in; ++i) {
        const R gci = tc(o * in + i);
        if (W1.wt >= 0) {
          const T* r1t = &pt(W1.wt + i * G);  // W1(., i)
          for (long k = 0; k < G; ++k) grow[k] += gci * R(r1t[k]);
        } else {
          for (long k = 0; k < G; ++k) grow[k] += gci * R(p(w1 + k * ld1 + i));
        }
      }
      if (cb >= 0) {
        const R gc = tc(cb + o);
        for (long k = 0; k < G; ++k) grow[k] += gc * R(p(b1 + k));
      }
    });
    detail::for_each_row<Mode>(exec, "hydragnn::Linear::compose_backward_inner", G, KOKKOS_LAMBDA(const long k) {
      R* grow = &g(w1 + k * ld1);
      R gb(0);
      for (long o = 0; o < F; ++o) {
        const R wok = R(W2(o, k));
        const R* gcrow = &tc(o * in);
        for (long i = 0; i < in; ++i) grow[i] += wok * gcrow[i];
        if (cb >= 0) gb += wok * tc(cb + o);
      }
      if (b1 >= 0) g(b1 + k) += gb;
    });
  } else {
    detail::for_each_element<Mode>(exec, "hydragnn::Linear::compose_backward_outer", F, G,
                                   KOKKOS_LAMBDA(const long o, const long k) {
                                     R acc = g(w2 + o * ld2 + k);
                                     for (long i = 0; i < in; ++i) acc += tc(o * in + i) * R(W1(k, i));
                                     if (cb >= 0) acc += tc(cb + o) * R(p(b1 + k));
                                     g(w2 + o * ld2 + k) = acc;
                                   });
    // column i < in: gW1(k, i); column in: gb1_k
    detail::for_each_element<Mode>(exec, "hydragnn::Linear::compose_backward_inner", G, in + 1,
                                   KOKKOS_LAMBDA(const long k, const long i) {
                                     if (i < in) {
                                       R acc = g(w1 + k * ld1 + i);
                                       for (long o = 0; o < F; ++o) acc += R(W2(o, k)) * tc(o * in + i);
                                       g(w1 + k * ld1 + i) = acc;
                                     } else if (b1 >= 0) {
                                       R gb(0);
                                       if (cb >= 0)
                                         for (long o = 0; o < F; ++o) gb += R(W2(o, k)) * tc(cb + o);
                                       g(b1 + k) += gb;
                                     }
                                   });
  }
}

/// dst(off + o*in + c) = W(o, c) = p(sh.w_off + o*sh.stride() + c) for o < sh.out, c < sh.in: a layer's
/// weights as a row-contiguous block of a matrix of stacked layers (DimeNet's lin_sbf1 of every layer).
template <class Exec, class T>
void copy_weights(const Exec& exec, const CVec<T, mem_t<Exec>>& p, const LinearShape& sh, const Vec<T, mem_t<Exec>>& dst,
                  long off) {
  const long w0 = sh.w_off, ld = sh.stride(), in = sh.in;
  Kokkos::parallel_for("hydragnn::Linear::copy_weights", Kokkos::RangePolicy<Exec>(exec, 0, long(sh.out) * in),
                       KOKKOS_LAMBDA(const long k) { dst(off + k) = p(w0 + (k / in) * ld + k % in); });
}

/// pt(w_off + c*out + o) = p(w_off + o*in + c) for every layer in `shapes` (one kernel per pass).
/// shapes: L x 3 (w_off, in, out).
template <class Exec, class T>
void transpose_weights(const Exec& exec, const CVec<T, mem_t<Exec>>& p, const Kokkos::View<const long* [3], mem_t<Exec>>& shapes,
                       const Vec<T, mem_t<Exec>>& pt) {
  constexpr bool on_host = Kokkos::SpaceAccessibility<Exec, Kokkos::HostSpace>::accessible;
  if constexpr (on_host) {
    // a thread per layer, 16 outputs at a time: their 16 rows of p are read down the inputs while
    // they stay in cache (a whole column at once would map rows of 2^k floats onto a few cache sets)
    Kokkos::parallel_for(
        "hydragnn::Linear::transpose_weights", Kokkos::RangePolicy<Exec>(exec, 0, long(shapes.extent(0))),
        KOKKOS_LAMBDA(const long l) {
          constexpr long OB = 16;
          const long w = shapes(l, 0), in = shapes(l, 1), out = shapes(l, 2);
          for (long o0 = 0; o0 < out; o0 += OB) {
            const long o1 = o0 + OB < out ? o0 + OB : out;
            for (long c = 0; c < in; ++c)
              for (long o = o0; o < o1; ++o) pt(w + c * out + o) = p(w + o * in + c);
          }
        });
  } else {
    // one team per layer, its threads over the layer's inputs c, lanes over the outputs o
    using member = typename Kokkos::TeamPolicy<Exec>::member_type;
    Kokkos::parallel_for(
        "hydragnn::Linear::transpose_weights",
        Kokkos::TeamPolicy<Exec>(exec, long(shapes.extent(0)), Kokkos::AUTO, detail::team_vector),
        KOKKOS_LAMBDA(const member& t) {
          const long l = t.league_rank();
          const long w = shapes(l, 0), in = shapes(l, 1), out = shapes(l, 2);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(t, in), [&](const long c) {
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(t, out),
                                 [&](const long o) { pt(w + c * out + o) = p(w + o * in + c); });
          });
        });
  }
}

}  // namespace kernels
}  // namespace hydragnn
