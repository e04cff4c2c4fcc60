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
// Modes (kernels/modes.hpp): HostRow keeps one row's outputs in a local array and streams the
// transposed weights W^T (in x out, contiguous over outputs; the model transposes all weights once
// per pass, never per call); PerElement is one thread per output; TeamTiled is one team per tile of
// rows with vector lanes over the outputs.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>

namespace hydragnn {

/// The parameters of a pass: the flat buffer p and, at the same offsets, every Linear weight block
/// transposed (pt: W^T, in x out). pt may be empty where no HostRow forward runs.
template <class T, class M>
struct Weights {
  CVec<T, M> p;
  CVec<T, M> pt;
};

namespace kernels {

namespace detail {
/// Weight-gradient tiling (HostRow): register tiles of 4 outputs x 8 inputs (8 SSE / 4 AVX registers),
/// groups of 16 outputs per thread, rows streamed in chunks of 128.
constexpr int dense_tile_out = 4;
constexpr int dense_tile_in = 8;
constexpr int dense_group_out = 16;
constexpr long dense_chunk_rows = 128;

/// acc[a * stride + c] += sum_{i in [i0, i1)} Ybar(i, o0+a) X(i, c0+c) for a < BO, c < BC (i ascending);
/// acc points at the tile's first output row, column 0.
template <class S, int BO, int BC, class XV, class YV>
KOKKOS_INLINE_FUNCTION void params_tile(const XV& X, const YV& Ybar, long i0, long i1, int o0, int c0, S* acc, int stride) {
  S r[BO][BC];
  for (int a = 0; a < BO; ++a)
    for (int c = 0; c < BC; ++c) r[a][c] = acc[a * stride + c0 + c];
  for (long i = i0; i < i1; ++i) {
    const S* xr = &X(i, c0);
    const S* yr = &Ybar(i, o0);
    S x[BC];
    for (int c = 0; c < BC; ++c) x[c] = xr[c];
    for (int a = 0; a < BO; ++a) {
      const S y = yr[a];
      for (int c = 0; c < BC; ++c) r[a][c] += y * x[c];
    }
  }
  for (int a = 0; a < BO; ++a)
    for (int c = 0; c < BC; ++c) acc[a * stride + c0 + c] = r[a][c];
}
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
    if (out <= detail::host_row_max && wt >= 0 && wts.pt.extent(0) == p.extent(0)) {
      const CVec<T, mem_t<Exec>> pt = wts.pt;
      Kokkos::parallel_for(
          "hydragnn::Linear::forward", Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const long i) {
            S acc[detail::host_row_max];
            for (int o = 0; o < out; ++o) acc[o] = b >= 0 ? S(p(b + o)) : S(0);
            for (int c = 0; c < in; ++c) {
              const S x = X(i, c);
              const T* wr = &pt(wt + long(c) * out);
              for (int o = 0; o < out; ++o) acc[o] += x * wr[o];
            }
            for (int o = 0; o < out; ++o) Y(i, o) = acc[o];
          });
      return;
    }
  }
  // PerElement, TeamTiled (and HostRow too wide for its row buffer): one sum per output element
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
    if (in <= detail::host_row_max) {
      Kokkos::parallel_for(
          "hydragnn::Linear::backward_input", Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const long i) {
            S acc[detail::host_row_max];
            for (int c = 0; c < in; ++c) acc[c] = accumulate ? Xbar(i, c) : S(0);
            for (int o = 0; o < out; ++o) {
              const S y = Ybar(i, o);
              const T* wr = &p(w + long(o) * ld);
              for (int c = 0; c < in; ++c) acc[c] += y * wr[c];
            }
            for (int c = 0; c < in; ++c) Xbar(i, c) = acc[c];
          });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::Linear::backward_input", n, in, KOKKOS_LAMBDA(const long i, const long c) {
    S acc = accumulate ? Xbar(i, c) : S(0);
    for (int o = 0; o < out; ++o) acc += Ybar(i, o) * p(w + long(o) * ld + c);
    Xbar(i, c) = acc;
  });
}

/// Wbar(o,c) += sum_n Ybar(n,o) X(n,c);  bbar(o) += sum_n Ybar(n,o)      (n ascending)
///
/// HostRow: one thread per group of 16 outputs, rows in cache-sized chunks, 4 x 8 register tiles
/// (see below); biases separately.
/// PerElement: one thread per weight. TeamTiled: one team per output, lanes over inputs.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void linear_backward_params(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CMat<S, mem_t<Exec>>& Ybar,
                            const LinearShape& sh, const Vec<S, mem_t<Exec>>& g) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off, b = sh.b_off, ld = sh.stride();
  const long n = long(X.extent(0));
  const int cols = in + (b >= 0 ? 1 : 0);
  if constexpr (std::is_same<Mode, exec_mode::HostRow>::value) {
    // One thread per group of GO outputs (all inputs): the group's sums live in a local array, and the
    // rows are streamed in chunks of CH so that a chunk of X and Ybar stays in cache while every
    // BO x BC register tile of the group passes over it (a fixed-size micro-kernel: rank-1 updates
    // with the tile's accumulators in registers). Each sum still runs over n in ascending order.
    constexpr int BO = detail::dense_tile_out, BC = detail::dense_tile_in, GO = detail::dense_group_out;
    constexpr long CH = detail::dense_chunk_rows;
    if (in <= detail::host_row_max) {
      const int ngroups = (out + GO - 1) / GO;
      Kokkos::parallel_for(
          "hydragnn::Linear::backward_params", Kokkos::RangePolicy<Exec>(exec, 0, ngroups), KOKKOS_LAMBDA(const long grp) {
            const int o_begin = int(grp) * GO, o_end = o_begin + GO < out ? o_begin + GO : out;
            S acc[GO][detail::host_row_max];
            for (int a = 0; a < o_end - o_begin; ++a)
              for (int c = 0; c < in; ++c) acc[a][c] = S(0);
            for (long i0 = 0; i0 < n; i0 += CH) {
              const long i1 = i0 + CH < n ? i0 + CH : n;
              for (int o0 = o_begin; o0 < o_end; o0 += BO) {
                const int no = o_end - o0 < BO ? o_end - o0 : BO;
                for (int c0 = 0; c0 < in; c0 += BC) {
                  const int nc = in - c0 < BC ? in - c0 : BC;
                  if (no == BO && nc == BC) {
                    detail::params_tile<S, BO, BC>(X, Ybar, i0, i1, o0, c0, &acc[o0 - o_begin][0], detail::host_row_max);
                  } else {
                    for (long i = i0; i < i1; ++i)
                      for (int a = 0; a < no; ++a) {
                        const S y = Ybar(i, o0 + a);
                        for (int c = 0; c < nc; ++c) acc[o0 - o_begin + a][c0 + c] += y * X(i, c0 + c);
                      }
                  }
                }
              }
            }
            for (int a = 0; a < o_end - o_begin; ++a)
              for (int c = 0; c < in; ++c) g(w + long(o_begin + a) * ld + c) += acc[a][c];
          });
    } else {
      Kokkos::parallel_for(
          "hydragnn::Linear::backward_params", Kokkos::RangePolicy<Exec>(exec, 0, long(out) * in), KOKKOS_LAMBDA(const long k) {
            const int o = int(k / in), c = int(k % in);
            S acc(0);
            for (long i = 0; i < n; ++i) acc += Ybar(i, o) * X(i, c);
            g(w + long(o) * ld + c) += acc;
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
            for (int a = 0; a < no; ++a) g(b + o_begin + a) += acc[a];
          });
    }
    return;
  }
  // one thread (PerElement) or lane (TeamTiled) per weight, plus a last column for the bias
  detail::for_each_element<Mode>(exec, "hydragnn::Linear::backward_params", out, cols, KOKKOS_LAMBDA(const long o, const long c) {
    S acc(0);
    if (c < in) {
      for (long i = 0; i < n; ++i) acc += Ybar(i, o) * X(i, c);
      g(w + o * ld + c) += acc;
    } else {
      for (long i = 0; i < n; ++i) acc += Ybar(i, o);
      g(b + o) += acc;
    }
  });
}

/// pt(w_off + c*out + o) = p(w_off + o*in + c) for every layer in `shapes` (one kernel per pass).
/// shapes: L x 3 (w_off, in, out).
template <class Exec, class T>
void transpose_weights(const Exec& exec, const CVec<T, mem_t<Exec>>& p, const Kokkos::View<const long* [3], mem_t<Exec>>& shapes,
                       const Vec<T, mem_t<Exec>>& pt) {
  Kokkos::parallel_for(
      "hydragnn::Linear::transpose_weights", Kokkos::RangePolicy<Exec>(exec, 0, long(shapes.extent(0))),
      KOKKOS_LAMBDA(const long l) {
        const long w = shapes(l, 0), in = shapes(l, 1), out = shapes(l, 2);
        for (long o = 0; o < out; ++o)
          for (long c = 0; c < in; ++c) pt(w + c * out + o) = p(w + o * in + c);
      });
}

}  // namespace kernels
}  // namespace hydragnn
