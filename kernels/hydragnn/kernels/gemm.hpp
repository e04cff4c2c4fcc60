// SPDX-License-Identifier: BSD-3-Clause
// Register-blocked micro-kernels of the HostRow dense ops (kernels/dense.hpp).
//
// One shape serves the three products of a Linear layer:
//   acc(r, j) += sum_{k < K} A(r, k) B(k, j)        r < MR, j < NR, k ascending
// with A(r, k) = a[r][k * as] (one pointer per tile row, stride `as` between k) and B(k, j) =
// b[k * ldb + j] (a row of NR contiguous reals). The MR x NR accumulators live in registers for the
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

#include <hydragnn/core/dual.hpp>
#include <hydragnn/compat/kokkos.hpp>
#include <hydragnn/compat/unroll.hpp>

namespace hydragnn {
namespace kernels {
namespace gemm {

/// Bytes of the widest vector register the compiler may use (from its target macros).
#if defined(__AVX512F__)
constexpr int simd_bytes = 64;
#elif defined(__AVX__)
constexpr int simd_bytes = 32;
#else
constexpr int simd_bytes = 16;
#endif
/// Tile: NR reals (two vector registers) per row, MR rows: 2 * MR accumulator registers (12 of the
/// 16 on SSE/AVX2), plus the two B registers and a broadcast.
template <class R>
constexpr int nr = 2 * simd_bytes / int(sizeof(R));
constexpr int mr = 6;

// Host compilers with GCC vector extensions (GCC, Clang; not the CUDA/HIP front ends) get explicit
// vector registers for the accumulators: lane j of a vector is column j, so each output is still
// summed alone, in the same order as the scalar code.
#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(__HIPCC__)
#define HYDRAGNN_GEMM_VECTORS 1
template <class R>
struct pack;
template <>
struct pack<float> {
  typedef float type __attribute__((vector_size(simd_bytes)));
};
template <>
struct pack<double> {
  typedef double type __attribute__((vector_size(simd_bytes)));
};
template <class R>
using pack_t = typename pack<R>::type;
template <class R>
constexpr int lanes = simd_bytes / int(sizeof(R));
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

/// acc(r, j) += sum_k A(r, k) B(k, j) for k in [0, K).
template <class R, int MR, int NR>
inline __attribute__((always_inline)) void tile(const R* const* a, long as, const R* b, long ldb, long K, R (&acc)[MR][NR]) {
  constexpr int L = lanes<R>, NV = NR / L;
  static_assert(NV * L == NR, "gemm::tile: NR must be a multiple of the vector width");
  pack_t<R> c[MR][NV];
  HYDRAGNN_UNROLL
  for (int r = 0; r < MR; ++r)
    HYDRAGNN_UNROLL
    for (int v = 0; v < NV; ++v) c[r][v] = load(&acc[r][v * L]);
  for (long k = 0; k < K; ++k) {
    const R* br = b + k * ldb;
    pack_t<R> bv[NV];
    HYDRAGNN_UNROLL
    for (int v = 0; v < NV; ++v) bv[v] = load(br + v * L);
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r) {
      const R x = a[r][k * as];
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
/// acc(r, j) += sum_k A(r, k) B(k, j) for k in [0, K).
template <class R, int MR, int NR>
KOKKOS_FORCEINLINE_FUNCTION void tile(const R* const* a, long as, const R* b, long ldb, long K, R (&acc)[MR][NR]) {
  for (long k = 0; k < K; ++k) {
    const R* br = b + k * ldb;
    R bv[NR];
    HYDRAGNN_UNROLL
    for (int j = 0; j < NR; ++j) bv[j] = br[j];
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r) {
      const R x = a[r][k * as];
      HYDRAGNN_UNROLL
      for (int j = 0; j < NR; ++j) acc[r][j] += x * bv[j];
    }
  }
}
#endif

/// The same product for a tile narrower than NR (nj < NR columns; edges of a matrix).
template <class R, int MR, int NR>
KOKKOS_FORCEINLINE_FUNCTION void tile_edge(const R* const* a, long as, const R* b, long ldb, long K, int nj,
                                           R (&acc)[MR][NR]) {
  for (long k = 0; k < K; ++k) {
    const R* br = b + k * ldb;
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r) {
      const R x = a[r][k * as];
      for (int j = 0; j < nj; ++j) acc[r][j] += x * br[j];
    }
  }
}

/// Row-major product over whole rows: for each of the MR tile rows r and every column j < ncols,
///   c[r][j * cs] = init(r, j) + sum_{k<K} a[r][k * as] * b[k * ldb + j]
/// init(r, j) gives the starting value (bias, zero, or the value already in C), so that the sum
/// starts from it as every other mode does. Columns in tiles of NR, the last one narrower.
template <class R, int MR, class Init>
KOKKOS_FORCEINLINE_FUNCTION void rows(const R* const* a, long as, const R* b, long ldb, long K, int ncols, R* const* c,
                                      long cs, const Init& init) {
  constexpr int NR = nr<R>;
  int j0 = 0;
  for (; j0 + NR <= ncols; j0 += NR) {
    R acc[MR][NR];
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r)
      HYDRAGNN_UNROLL
      for (int j = 0; j < NR; ++j) acc[r][j] = init(r, j0 + j);
    tile<R, MR, NR>(a, as, b + j0, ldb, K, acc);
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r)
      HYDRAGNN_UNROLL
      for (int j = 0; j < NR; ++j) c[r][(j0 + j) * cs] = acc[r][j];
  }
  if (j0 < ncols) {
    const int nj = ncols - j0;
    R acc[MR][NR];
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < nj; ++j) acc[r][j] = init(r, j0 + j);
    tile_edge<R, MR, NR>(a, as, b + j0, ldb, K, nj, acc);
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < nj; ++j) c[r][(j0 + j) * cs] = acc[r][j];
  }
}

/// Weight gradient of dual activations, one tile of MR outputs x NR inputs over rows [i0, i1):
///   gv(r, j) += sum_i y(i, r).v x(i, j).v
///   gd(r, j) += sum_i (y(i, r).d x(i, j).v + y(i, r).v x(i, j).d)
/// y(i, r) = ybar[i * ldy + r], x(i, j) = x[i * ldx + j] (both in duals).
template <class R, int MR, int NR>
KOKKOS_FORCEINLINE_FUNCTION void dual_params_tile(const Dual<R>* ybar, long ldy, const Dual<R>* x, long ldx, long i0,
                                                  long i1, int nj, R (&gv)[MR][NR], R (&gd)[MR][NR]) {
#ifdef HYDRAGNN_GEMM_VECTORS
  if (nj == NR) {
    constexpr int L = lanes<R>, NV = NR / L;
    pack_t<R> cv[MR][NV], cd[MR][NV];
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r)
      HYDRAGNN_UNROLL
      for (int v = 0; v < NV; ++v) {
        cv[r][v] = load(&gv[r][v * L]);
        cd[r][v] = load(&gd[r][v * L]);
      }
    for (long i = i0; i < i1; ++i) {
      const Dual<R>* xr = x + i * ldx;
      R xs[2][NR];
      HYDRAGNN_UNROLL
      for (int j = 0; j < NR; ++j) {
        xs[0][j] = xr[j].v;
        xs[1][j] = xr[j].d;
      }
      pack_t<R> xv[NV], xd[NV];
      HYDRAGNN_UNROLL
      for (int v = 0; v < NV; ++v) {
        xv[v] = load(&xs[0][v * L]);
        xd[v] = load(&xs[1][v * L]);
      }
      HYDRAGNN_UNROLL
      for (int r = 0; r < MR; ++r) {
        const R yv = ybar[i * ldy + r].v, yd = ybar[i * ldy + r].d;
        HYDRAGNN_UNROLL
        for (int v = 0; v < NV; ++v) {
          cv[r][v] += yv * xv[v];
          cd[r][v] += yd * xv[v] + yv * xd[v];
        }
      }
    }
    HYDRAGNN_UNROLL
    for (int r = 0; r < MR; ++r)
      HYDRAGNN_UNROLL
      for (int v = 0; v < NV; ++v) {
        store(&gv[r][v * L], cv[r][v]);
        store(&gd[r][v * L], cd[r][v]);
      }
    return;
  }
#endif
  for (long i = i0; i < i1; ++i) {
    const Dual<R>* xr = x + i * ldx;
    for (int r = 0; r < MR; ++r) {
      const R yv = ybar[i * ldy + r].v, yd = ybar[i * ldy + r].d;
      for (int j = 0; j < nj; ++j) {
        gv[r][j] += yv * xr[j].v;
        gd[r][j] += yd * xr[j].v + yv * xr[j].d;
      }
    }
  }
}

}  // namespace gemm
}  // namespace kernels
}  // namespace hydragnn
