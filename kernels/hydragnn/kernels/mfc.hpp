// SPDX-License-Identifier: BSD-3-Clause
// MFC's degree-selected dense layers (PyTorch Geometric's MFConv, HydraGNN's MFCStack):
//
//   k_i = min(in-degree of i, D)                                 the node's degree class (0 .. D)
//   Y(i,o) = b_l[k_i](o) + sum_c Wl[k_i](o,c) H(i,c) + sum_c Wr[k_i](o,c) X(i,c)
// with one Linear pair (lins_l.k with bias, lins_r.k without) per class; H = the neighbour sum of X.
// Where class k's blocks live in the parameter buffer: off(k, 0) = Wl, off(k, 1) = b_l, off(k, 2) = Wr
// (each W row-major out x in).
// The parameter gradient of class k sums over its nodes in ascending order: the nodes are grouped by
// class once per batch (mfc_classes, a counting sort), so each weight walks only its class's rows.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/simd.hpp>

#include <type_traits>

namespace hydragnn {
namespace kernels {

/// Degree classes: cls(i) = min(ptr(i+1) - ptr(i), D); cls_ptr (D+2) and cls_perm (N) list the nodes
/// of class k as cls_perm[cls_ptr(k) .. cls_ptr(k+1)), ascending. One thread, O(N + D): a counting
/// sort placing the nodes from the last, each at the end of its class's remaining range.
template <class Exec>
void mfc_classes(const Exec& exec, const CVec<int, mem_t<Exec>>& ptr, int D, const Vec<int, mem_t<Exec>>& cls,
                 const Vec<int, mem_t<Exec>>& cls_ptr, const Vec<int, mem_t<Exec>>& cls_perm) {
  const long N = long(cls.extent(0));
  Kokkos::parallel_for(
      "hydragnn::MFC::classes", Kokkos::RangePolicy<Exec>(exec, 0, 1), KOKKOS_LAMBDA(const long) {
        for (int k = 0; k <= D + 1; ++k) cls_ptr(k) = 0;
        for (long i = 0; i < N; ++i) {
          const int d = ptr(i + 1) - ptr(i);
          cls(i) = d < D ? d : D;
          cls_ptr(cls(i) + 1) += 1;
        }
        for (int k = 0; k <= D; ++k) cls_ptr(k + 1) += cls_ptr(k);  // cls_ptr(k + 1) = end of class k
        for (long i = N; i-- > 0;) cls_perm(--cls_ptr(cls(i) + 1)) = int(i);  // cls_ptr(k + 1) -> start of k
        for (int k = 0; k <= D; ++k) cls_ptr(k) = cls_ptr(k + 1);
        cls_ptr(D + 1) = int(N);
      });
}

/// Work item (class k, block blk) of the lane-per-node HostRow kernels below: the block's nodes
/// cls_perm[cls_ptr(k) + blk L + b] to node[b] (lanes past the class's end repeat its first node,
/// computed and never stored); returns how many are real (0: the block is past the class's end).
namespace detail {
template <int L, class M>
KOKKOS_INLINE_FUNCTION int mfc_block_nodes(const CVec<int, M>& cls_ptr, const CVec<int, M>& cls_perm, long k, long blk,
                                           int (&node)[L]) {
  const long q0 = cls_ptr(k) + blk * L, end = cls_ptr(k + 1);
  if (q0 >= end) return 0;
  const int n = int(end - q0 < L ? end - q0 : L);
  for (int b = 0; b < L; ++b) node[b] = cls_perm(b < n ? q0 + b : q0);
  return n;
}
}  // namespace detail

/// Y = the class-selected layers of (H, X).         // H: N x I, X: N x I, cls: N, off: (D+1) x 3 -> Y: N x O
/// cls_ptr, cls_perm (optional, mfc_classes): with them, HostRow on real scalars takes a class's
/// nodes a vector of lanes at a time (one node per lane, the class's weights read once per block).
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void mfc_forward(const Exec& exec, const CMat<S, mem_t<Exec>>& H, const CMat<S, mem_t<Exec>>& X,
                 const CVec<int, mem_t<Exec>>& cls, const CMat<long, mem_t<Exec>>& off,
                 const CVec<T, mem_t<Exec>>& p, const Mat<S, mem_t<Exec>>& Y,
                 const CVec<int, mem_t<Exec>>& cls_ptr = {}, const CVec<int, mem_t<Exec>>& cls_perm = {}) {
  const long I = long(H.extent(1)), O = long(Y.extent(1));
#ifdef HYDRAGNN_SIMD_PACKS
  if constexpr (detail::is_host_row<Mode> && std::is_same<S, T>::value &&
                (std::is_same<S, float>::value || std::is_same<S, double>::value)) {
    if (cls_perm.extent(0) == Y.extent(0) && cls_ptr.extent(0) >= 2 && I <= detail::host_row_max) {
      // Blocks of L nodes of one class, a node per vector lane: the block's rows of H and X
      // transposed into local buffers (channel-major), then per block of OB outputs 2 OB sums per
      // lane advancing together over the channels, each in the order of the code below (bias, then
      // channels ascending; X's sum from zero; their sum last). Work items: (class, block).
      constexpr int L = simd::lanes<S>, OB = 4;
      const long N = long(Y.extent(0)), nblk = (N + L - 1) / L, K = long(cls_ptr.extent(0)) - 1;
      Kokkos::parallel_for(
          "hydragnn::MFC::forward", Kokkos::RangePolicy<Exec>(exec, 0, K * nblk), KOKKOS_LAMBDA(const long item) {
            using P = simd::pack_t<S>;
            const long k = item / nblk;
            int node[L];
            const int n = detail::mfc_block_nodes<L>(cls_ptr, cls_perm, k, item % nblk, node);
            if (n == 0) return;
            S ht[detail::host_row_max][L], xt[detail::host_row_max][L];
            for (long c = 0; c < I; ++c)
              for (int b = 0; b < L; ++b) ht[c][b] = H(node[b], c), xt[c][b] = X(node[b], c);
            const T* wl = &p(off(k, 0));
            const T* wr = &p(off(k, 2));
            const T* bl = &p(off(k, 1));
            for (long o0 = 0; o0 < O; o0 += OB) {
              const long no = O - o0 < OB ? O - o0 : OB;
              long row[OB];
              P l[OB], r[OB];
              for (int j = 0; j < OB; ++j) {
                const long o = o0 + (j < no ? j : no - 1);
                row[j] = o * I;
                l[j] = P{} + bl[o];
                r[j] = P{};
              }
              for (long c = 0; c < I; ++c) {
                const P hv = simd::load(&ht[c][0]), xv = simd::load(&xt[c][0]);
                for (int j = 0; j < OB; ++j) {
                  l[j] += hv * wl[row[j] + c];
                  r[j] += xv * wr[row[j] + c];
                }
              }
              for (int j = 0; j < no; ++j) {
                const P y = l[j] + r[j];
                for (int b = 0; b < n; ++b) Y(node[b], o0 + j) = y[b];
              }
            }
          });
      return;
    }
  }
#endif
  if constexpr (detail::is_host_row<Mode>) {
    // one node at a time, its outputs in blocks of OB whose sums advance together: each output's
    // two sums in the same order (channels ascending), OB independent chains instead of one
    Kokkos::parallel_for("hydragnn::MFC::forward", Kokkos::RangePolicy<Exec>(exec, 0, long(Y.extent(0))),
                         KOKKOS_LAMBDA(const long i) {
                           constexpr long OB = 8;
                           const int k = cls(i);
                           for (long o0 = 0; o0 < O; o0 += OB) {
                             const long n = O - o0 < OB ? O - o0 : OB;
                             // a fixed-size block (kept in registers); past the last output, lanes
                             // repeat it and are not stored
                             long row[OB];
                             S l[OB], r[OB];
                             for (long j = 0; j < OB; ++j) {
                               row[j] = (j < n ? o0 + j : o0 + n - 1) * I;
                               l[j] = S(p(off(k, 1) + (j < n ? o0 + j : o0 + n - 1))), r[j] = S(0);
                             }
                             const T* wl = &p(off(k, 0));
                             const T* wr = &p(off(k, 2));
                             for (long c = 0; c < I; ++c) {
                               const S h = H(i, c), x = X(i, c);
                               for (long j = 0; j < OB; ++j) {
                                 l[j] += h * wl[row[j] + c];
                                 r[j] += x * wr[row[j] + c];
                               }
                             }
                             for (long j = 0; j < n; ++j) Y(i, o0 + j) = l[j] + r[j];
                           }
                         });
    return;
  }
  detail::for_each_element<Mode>(exec, "hydragnn::MFC::forward", long(Y.extent(0)), long(Y.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long o) {
                                   const int k = cls(i);
                                   const long wl = off(k, 0) + o * I, wr = off(k, 2) + o * I;
                                   S l(p(off(k, 1) + o)), r(0);
                                   for (long c = 0; c < I; ++c) l += H(i, c) * p(wl + c);
                                   for (long c = 0; c < I; ++c) r += X(i, c) * p(wr + c);
                                   Y(i, o) = l + r;
                                 });
}

/// Input cotangents (overwritten): Hbar(i,c) = sum_o Wl[k_i](o,c) Ybar(i,o), Xbar likewise with Wr.
/// Each entry sums over o ascending in every mode; HostRow walks a node's outputs once with the
/// channels as the inner (contiguous) loop, PerElement / TeamTiled one entry per thread.
/// cls_ptr, cls_perm (optional): as mfc_forward, blocks of a class's nodes, a node per lane.
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void mfc_backward_input(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& cls,
                        const CMat<long, mem_t<Exec>>& off, const CVec<T, mem_t<Exec>>& p,
                        const Mat<S, mem_t<Exec>>& Hbar, const Mat<S, mem_t<Exec>>& Xbar,
                        const CVec<int, mem_t<Exec>>& cls_ptr = {}, const CVec<int, mem_t<Exec>>& cls_perm = {}) {
  const long I = long(Hbar.extent(1)), O = long(Ybar.extent(1));
#ifdef HYDRAGNN_SIMD_PACKS
  if constexpr (detail::is_host_row<Mode> && std::is_same<S, T>::value &&
                (std::is_same<S, float>::value || std::is_same<S, double>::value)) {
    if (cls_perm.extent(0) == Ybar.extent(0) && cls_ptr.extent(0) >= 2 && O <= detail::host_row_max) {
      // the block's Ybar rows transposed (output-major), then per block of CB channels 2 CB sums per
      // lane over the outputs ascending (the order of the code below)
      constexpr int L = simd::lanes<S>, CB = 4;
      const long N = long(Ybar.extent(0)), nblk = (N + L - 1) / L, K = long(cls_ptr.extent(0)) - 1;
      Kokkos::parallel_for(
          "hydragnn::MFC::backward_input", Kokkos::RangePolicy<Exec>(exec, 0, K * nblk), KOKKOS_LAMBDA(const long item) {
            using P = simd::pack_t<S>;
            const long k = item / nblk;
            int node[L];
            const int n = detail::mfc_block_nodes<L>(cls_ptr, cls_perm, k, item % nblk, node);
            if (n == 0) return;
            S yt[detail::host_row_max][L];
            for (long o = 0; o < O; ++o)
              for (int b = 0; b < L; ++b) yt[o][b] = Ybar(node[b], o);
            const T* wl = &p(off(k, 0));
            const T* wr = &p(off(k, 2));
            for (long c0 = 0; c0 < I; c0 += CB) {
              const long nc = I - c0 < CB ? I - c0 : CB;
              long col[CB];
              P h[CB], x[CB];
              for (int j = 0; j < CB; ++j) {
                col[j] = c0 + (j < nc ? j : nc - 1);
                h[j] = P{};
                x[j] = P{};
              }
              for (long o = 0; o < O; ++o) {
                const P yv = simd::load(&yt[o][0]);
                for (int j = 0; j < CB; ++j) {
                  h[j] += yv * wl[o * I + col[j]];
                  x[j] += yv * wr[o * I + col[j]];
                }
              }
              for (int j = 0; j < nc; ++j)
                for (int b = 0; b < n; ++b) Hbar(node[b], c0 + j) = h[j][b], Xbar(node[b], c0 + j) = x[j][b];
            }
          });
      return;
    }
  }
#endif
  if constexpr (detail::is_host_row<Mode>) {
    Kokkos::parallel_for(
        "hydragnn::MFC::backward_input", Kokkos::RangePolicy<Exec>(exec, 0, long(Hbar.extent(0))),
        KOKKOS_LAMBDA(const long i) {
          const int k = cls(i);
          if (I <= detail::host_row_max) {
            // the sums in local rows (no aliasing with p or Ybar: the channel loop vectorises)
            S hb[detail::host_row_max], xb[detail::host_row_max];
            for (long c = 0; c < I; ++c) hb[c] = xb[c] = S(0);
            for (long o = 0; o < O; ++o) {
              const S y = Ybar(i, o);
              const T* wl = &p(off(k, 0) + o * I);
              const T* wr = &p(off(k, 2) + o * I);
              for (long c = 0; c < I; ++c) {
                hb[c] += y * wl[c];
                xb[c] += y * wr[c];
              }
            }
            for (long c = 0; c < I; ++c) Hbar(i, c) = hb[c], Xbar(i, c) = xb[c];
            return;
          }
          for (long c = 0; c < I; ++c) Hbar(i, c) = Xbar(i, c) = S(0);
          for (long o = 0; o < O; ++o) {
            const S y = Ybar(i, o);
            const long wl = off(k, 0) + o * I, wr = off(k, 2) + o * I;
            for (long c = 0; c < I; ++c) {
              Hbar(i, c) += y * p(wl + c);
              Xbar(i, c) += y * p(wr + c);
            }
          }
        });
  } else {
    detail::for_each_element<Mode>(exec, "hydragnn::MFC::backward_input", long(Hbar.extent(0)), I,
                                   KOKKOS_LAMBDA(const long i, const long c) {
                                     const int k = cls(i);
                                     S hl(0), xr(0);
                                     for (long o = 0; o < O; ++o) {
                                       hl += Ybar(i, o) * p(off(k, 0) + o * I + c);
                                       xr += Ybar(i, o) * p(off(k, 2) + o * I + c);
                                     }
                                     Hbar(i, c) = hl;
                                     Xbar(i, c) = xr;
                                   });
  }
}

/// Parameter gradients into g (real: param_part): per class k, entry (o, c) sums its nodes in ascending
/// order in every mode. HostRow: one thread per (class, output) walks the class's nodes once, with the
/// 2I + 1 sums of that output as the inner (contiguous) loop (up to kMfcRow of them; wider layers take
/// the PerElement form); PerElement / TeamTiled: one entry per thread.
constexpr long kMfcRow = 513;
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void mfc_backward_params(const Exec& exec, const CMat<S, mem_t<Exec>>& H, const CMat<S, mem_t<Exec>>& X,
                         const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& cls_ptr,
                         const CVec<int, mem_t<Exec>>& cls_perm, const CMat<long, mem_t<Exec>>& off,
                         const Vec<real_t<S>, mem_t<Exec>>& g) {
  const long I = long(H.extent(1)), O = long(Ybar.extent(1)), K = long(off.extent(0));
  if constexpr (detail::is_host_row<Mode>) {
    if (2 * I + 1 <= kMfcRow) {
      Kokkos::parallel_for(
          "hydragnn::MFC::backward_params", Kokkos::RangePolicy<Exec>(exec, 0, K * O), KOKKOS_LAMBDA(const long ko) {
            const long k = ko / O, o = ko % O;
            S acc[kMfcRow];
            for (long j = 0; j <= 2 * I; ++j) acc[j] = S(0);
            for (int q = cls_ptr(k); q < cls_ptr(k + 1); ++q) {
              const int i = cls_perm(q);
              const S y = Ybar(i, o);
              for (long c = 0; c < I; ++c) acc[c] += y * H(i, c);
              for (long c = 0; c < I; ++c) acc[I + c] += y * X(i, c);
              acc[2 * I] += y;
            }
            for (long c = 0; c < I; ++c) g(off(k, 0) + o * I + c) += param_part(acc[c]);
            for (long c = 0; c < I; ++c) g(off(k, 2) + o * I + c) += param_part(acc[I + c]);
            g(off(k, 1) + o) += param_part(acc[2 * I]);
          });
      return;
    }
  }
  // one row per (class, output): the bias and the 2I weights of that output
  detail::for_each_element<Mode>(
      exec, "hydragnn::MFC::backward_params", K * O, 2 * I + 1, KOKKOS_LAMBDA(const long ko, const long j) {
        const long k = ko / O, o = ko % O;
        S acc(0);
        for (int q = cls_ptr(k); q < cls_ptr(k + 1); ++q) {
          const int i = cls_perm(q);
          const S y = Ybar(i, o);
          acc += j == 2 * I ? y : j < I ? y * H(i, j) : y * X(i, j - I);
        }
        const long at = j == 2 * I ? off(k, 1) + o : j < I ? off(k, 0) + o * I + j : off(k, 2) + o * I + (j - I);
        g(at) += param_part(acc);
      });
}

}  // namespace kernels
}  // namespace hydragnn
