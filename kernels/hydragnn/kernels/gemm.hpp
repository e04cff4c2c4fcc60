// SPDX-License-Identifier: BSD-3-Clause
// Register-blocked micro-kernels of the HostRow dense ops (kernels/dense.hpp).
//
// One shape serves the three products of a Linear layer:
//   acc(r, j) += sum_{k < K} A(r, k) B(k, j)        r < MR, j < NR, k ascending
// with A(r, k) = a[(r / P) * ars + r % P + k * as] (P = 2: a dual matrix row is two tile rows,
// primal and tangent) and B(k, j) = b[k * ldb + j] (a row of NR contiguous reals). The MR x NR accumulators live in registers for the
// whole k loop (fixed-size loops the compiler unrolls and vectorises over j; with
// -DHYDRAGNN_NATIVE=ON it may use the machine's FMA and AVX registers).
//
//   forward          A = X rows,       k = input,  B = W^T rows (contiguous over outputs)
//   backward_input   A = Ybar rows,    k = output, B = W rows   (contiguous over inputs)
//   backward_params  A = Ybar columns, k = row n,  B = X rows   (contiguous over inputs)
//
// Dual activations (weights are real) split into two real tile rows, primal and tangent: the
// product dual x real is (x.v w, x.d w), so the two planes are independent real GEMM rows with the
// same summation order as Dual's own operators. The weight gradient of dual activations mixes the
// planes (d += y.d x.v + y.v x.d, the tangent of the product summed first, exactly as Dual's
// operator*), so it has its own micro-kernel. Every output is summed in the same order as the
// PerElement and TeamTiled modes, so the modes agree bitwise.
#pragma once

#include <cstddef>
#include <type_traits>

#include <hydragnn/core/dual.hpp>
#include <hydragnn/compat/kokkos.hpp>
#include <hydragnn/compat/unroll.hpp>
#include <hydragnn/kernels/simd.hpp>

namespace hydragnn {
namespace kernels {
namespace gemm {

/// Tile: NR reals (two vector registers) per row, MR rows: 2 * MR accumulator registers (12 of the
/// 16 on SSE/AVX2), plus the two B registers and a broadcast.
template <class R>
constexpr int nr = 2 * simd::bytes / int(sizeof(R));
constexpr int mr = 6;

#ifdef HYDRAGNN_SIMD_PACKS
using simd::lanes;
using simd::load;
using simd::pack_t;
using simd::store;
template <class R, int MR, int NR, int P, class InitP>
inline __attribute__((always_inline)) void tile_from(const R* a, long ars, long as, const R* b, long ldb, long K,
                                                     R (&acc)[MR][NR], const InitP& initp);
/// acc(r, j) += sum_k A(r, k) B(k, j) for k in [0, K), j < nj (EDGE: nj < NR columns, the edge of
/// a matrix; B's rows are then copied, a block of rows at a time before the block's products, into
/// a zero-padded buffer so the same vector code runs, and the lanes past nj are never stored).
template <class R, int MR, int NR, int P = 1, bool EDGE = false>
inline __attribute__((always_inline)) void tile(const R* a, long ars, long as, const R* b, long ldb, long K,
                                                R (&acc)[MR][NR], int nj = NR) {
  constexpr int L = lanes<R>, NV = NR / L;
  static_assert(NV * L == NR, "gemm::tile: NR must be a multiple of the vector width");
  if constexpr (EDGE) {
    // Filled whole before it is read: no vector load waits on the scalar stores just made.
    constexpr long KB = 64;
    R buf[KB][NR];
    for (long k0 = 0; k0 < K; k0 += KB) {
      const long kn = K - k0 < KB ? K - k0 : KB;
      for (long k = 0; k < kn; ++k)
        for (int j = 0; j < NR; ++j) buf[k][j] = j < nj ? b[(k0 + k) * ldb + j] : R(0);
      tile<R, MR, NR, P, false>(a + k0 * as, ars, as, &buf[0][0], NR, kn, acc);
    }
    return;
  }
  tile_from<R, MR, NR, P>(a, ars, as, b, ldb, K, acc, [&](int r, int j) { return load(&acc[r][j]); });
}
/// tile() with the accumulators started in registers from packs, c(r, lanes from j) = initp(r, j),
/// instead of loaded from acc (acc is only written): a start value stored element by element and
/// then loaded whole stalls the pipeline on the failed store-to-load forward.
template <class R, int MR, int NR, int P, class InitP>
inline __attribute__((always_inline)) void tile_from(const R* a, long ars, long as, const R* b, long ldb, long K,
                                                     R (&acc)[MR][NR], const InitP& initp) {
  constexpr int L = lanes<R>, NV = NR / L;
  static_assert(NV * L == NR, "gemm::tile: NR must be a multiple of the vector width");
  pack_t<R> c[MR][NV];
  HYDRAGNN_UNROLL
  for (int r = 0; r < MR; ++r)
    HYDRAGNN_UNROLL
    for (int v = 0; v < NV; ++v) c[r][v] = initp(r, v * L);
  for (long k = 0; k < K; ++k) {
    const R* br = b + k * ldb;
    pack_t<R> bv[NV];
    HYDRAGNN_UNROLL
    for (int v = 0; v < NV; ++v) bv[v] = load(br + v * L);
    const R* ak = a + k * as;
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r) {
      const R x = ak[(r / P) * ars + r % P];
      HYDRAGNN_UNROLL
      for (int v = 0; v < NV; ++v) c[r][v] += x * bv[v];
    }
  }
  HYDRAGNN_UNROLL
  for (int r = 0; r < MR; ++r)
    HYDRAGNN_UNROLL
    for (int v = 0; v < NV; ++v) store(&acc[r][v * L], c[r][v]);
}
#else
/// acc(r, j) += sum_k A(r, k) B(k, j) for k in [0, K), j < nj.
template <class R, int MR, int NR, int P = 1, bool EDGE = false>
KOKKOS_FORCEINLINE_FUNCTION void tile(const R* a, long ars, long as, const R* b, long ldb, long K, R (&acc)[MR][NR],
                                      int nj = NR) {
  for (long k = 0; k < K; ++k) {
    const R* br = b + k * ldb;
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r) {
      const R x = a[(r / P) * ars + r % P + k * as];
      if constexpr (EDGE) {
        for (int j = 0; j < nj; ++j) acc[r][j] += x * br[j];
      } else {
        HYDRAGNN_UNROLL
        for (int j = 0; j < NR; ++j) acc[r][j] += x * br[j];
      }
    }
  }
}
#endif

#ifdef HYDRAGNN_SIMD_PACKS
/// The edge tile of rows() when its nj columns fit half a vector register (EW lanes: 8 floats with
/// AVX-512): one register of EW lanes per tile row instead of the NR-lane tile, whose lanes past nj
/// would be padding (a Linear of 8 outputs, DimeNet++'s basis_emb_size, used a quarter of the
/// tile's multiply-adds). bedge: B's edge columns packed by the caller (K rows of NR reals,
/// zero-padded). Each element is init(r, j) + sum_k A(r, k) B(k, j), k ascending, as in tile().
template <class R, int MR, int P, int EW, class Init>
inline __attribute__((always_inline)) void narrow_edge(const R* a, long ars, long as, const R* bedge, long K, int nj,
                                                       int j0, R* c, long crs, const Init& init) {
  typedef R half_t __attribute__((vector_size(EW * sizeof(R))));
  half_t cv[MR];
  HYDRAGNN_UNROLL
  for (int r = 0; r < MR; ++r) {
    R t[EW];
    for (int j = 0; j < EW; ++j) t[j] = j < nj ? init(r, j0 + j) : R(0);
    __builtin_memcpy(&cv[r], t, sizeof(half_t));
  }
  for (long k = 0; k < K; ++k) {
    half_t bv;
    __builtin_memcpy(&bv, bedge + k * nr<R>, sizeof(half_t));
    const R* ak = a + k * as;
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r) cv[r] += ak[(r / P) * ars + r % P] * bv;
  }
  HYDRAGNN_UNROLL
  for (int r = 0; r < MR; ++r) {
    if (P == 1 && nj == EW) {
      __builtin_memcpy(c + r * crs + j0, &cv[r], sizeof(half_t));
    } else {
      for (int j = 0; j < nj; ++j) c[(r / P) * crs + r % P + (j0 + j) * P] = cv[r][j];
    }
  }
}
#endif

/// Row-major product over whole rows: for each of the MR tile rows r and every column j < ncols,
///   C(r, j) = init(r, j) + sum_{k<K} A(r, k) b[k * ldb + j],   C(r, j) = c[(r / P) * crs + r % P + j * P]
/// with A as in tile(). init(r, j) gives the starting value (bias, zero, or the value already in C),
/// so that the sum starts from it as every other mode does. Columns in tiles of NR, the last one
/// narrower.
///
/// bedge (optional): B's last, narrow column tile packed once by the caller, K rows of NR reals
/// zero-padded past the matrix edge; without it the edge tile packs B itself.
///
/// initp (optional, vector builds): the start values of the whole column tiles as packs,
/// initp(r, j) = lanes init(r, j .. j + lanes - 1), so that they go straight into registers.
template <class R, int MR, int P, class Init, class InitP = std::nullptr_t>
KOKKOS_FORCEINLINE_FUNCTION void rows(const R* a, long ars, long as, const R* b, long ldb, long K, int ncols, R* c,
                                      long crs, const Init& init, const R* bedge = nullptr, const InitP& initp = nullptr) {
  constexpr int NR = nr<R>;
  int j0 = 0;
  for (; j0 + NR <= ncols; j0 += NR) {
    R acc[MR][NR];
#ifdef HYDRAGNN_SIMD_PACKS
    if constexpr (!std::is_same<InitP, std::nullptr_t>::value) {
      tile_from<R, MR, NR, P>(a, ars, as, b + j0, ldb, K, acc, [&](int r, int j) { return initp(r, j0 + j); });
    } else
#endif
    {
      HYDRAGNN_UNROLL
      for (int r = 0; r < MR; ++r)
        HYDRAGNN_UNROLL
        for (int j = 0; j < NR; ++j) acc[r][j] = init(r, j0 + j);
      tile<R, MR, NR, P>(a, ars, as, b + j0, ldb, K, acc);
    }
#ifdef HYDRAGNN_SIMD_PACKS
    if constexpr (P == 2) {  // dual rows: the primal and tangent tile rows interleaved by shuffles
      constexpr int L = simd::lanes<R>;
      HYDRAGNN_UNROLL
      for (int r = 0; r < MR; r += 2)
        HYDRAGNN_UNROLL
        for (int v = 0; v < NR / L; ++v)
          simd::interleave(simd::load(&acc[r][v * L]), simd::load(&acc[r + 1][v * L]), c + (r / 2) * crs + (j0 + v * L) * 2);
      continue;
    }
#endif
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r)
      HYDRAGNN_UNROLL
      for (int j = 0; j < NR; ++j) c[(r / P) * crs + r % P + (j0 + j) * P] = acc[r][j];
  }
  if (j0 < ncols) {
    const int nj = ncols - j0;
#ifdef HYDRAGNN_SIMD_PACKS
    if constexpr (lanes<R> >= 4) {
      if (bedge && nj <= lanes<R> / 2) {  // half a vector register holds the edge: see narrow_edge
        narrow_edge<R, MR, P, lanes<R> / 2>(a, ars, as, bedge, K, nj, j0, c, crs, init);
        return;
      }
    }
#endif
    R acc[MR][NR];
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] = j < nj ? init(r, j0 + j) : R(0);
    if (bedge) tile<R, MR, NR, P>(a, ars, as, bedge, NR, K, acc);
    else tile<R, MR, NR, P, true>(a, ars, as, b + j0, ldb, K, acc, nj);
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < nj; ++j) c[(r / P) * crs + r % P + (j0 + j) * P] = acc[r][j];
  }
}

/// Weight gradient of dual activations, transposed (rows = inputs c, vector lanes = outputs o), over
/// the K rows of a chunk whose Ybar block the caller has split into planes (ybuf row k: NR primals,
/// then NR tangents, zero-padded past the matrix edge); the tangent only (the primal sum is never
/// needed, core/dual.hpp param_part):
///   gd(r, j) += sum_k (y(k, j).d x(k, r).v + y(k, j).v x(k, r).d)     (Dual's operator*(y, x))
/// x(k, r) = x[k * ldx + r] (duals).
template <class R, int MR, int NR>
KOKKOS_FORCEINLINE_FUNCTION void dual_params_tile(const Dual<R>* x, long ldx, const R* ybuf, long K, R (&gd)[MR][NR]) {
#ifdef HYDRAGNN_SIMD_PACKS
  constexpr int L = lanes<R>, NV = NR / L;
  pack_t<R> cd[MR][NV];
  HYDRAGNN_UNROLL
  for (int r = 0; r < MR; ++r)
    HYDRAGNN_UNROLL
    for (int v = 0; v < NV; ++v) cd[r][v] = load(&gd[r][v * L]);
  for (long k = 0; k < K; ++k) {
    const R* yr = ybuf + k * 2 * NR;
    pack_t<R> yv[NV], yd[NV];
    HYDRAGNN_UNROLL
    for (int v = 0; v < NV; ++v) {
      yv[v] = simd::pinned_load(yr + v * L);  // in registers for the MR rows: the k loop is then
      yd[v] = simd::pinned_load(yr + NR + v * L);  // bound by the FMA ports, not the load ports
    }
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r) {
      const R xv = x[k * ldx + r].v, xd = x[k * ldx + r].d;
      HYDRAGNN_UNROLL
      for (int v = 0; v < NV; ++v) cd[r][v] += yd[v] * xv + yv[v] * xd;
    }
  }
  HYDRAGNN_UNROLL
  for (int r = 0; r < MR; ++r)
    HYDRAGNN_UNROLL
    for (int v = 0; v < NV; ++v) store(&gd[r][v * L], cd[r][v]);
#else
  for (long k = 0; k < K; ++k) {
    const R* yr = ybuf + k * 2 * NR;
    for (int r = 0; r < MR; ++r) {
      const R xv = x[k * ldx + r].v, xd = x[k * ldx + r].d;
      for (int j = 0; j < NR; ++j) gd[r][j] += yr[NR + j] * xv + yr[j] * xd;
    }
  }
#endif
}

}  // namespace gemm
}  // namespace kernels
}  // namespace hydragnn
