// SPDX-License-Identifier: BSD-3-Clause
// Dense layer kernels: Y = X W^T + b and its backward, generic in the scalar (real or dual).
// Weights are always real; with dual activations each product is a real-times-dual product, so a
// dual GEMM costs two real GEMMs worth of flops. Deterministic: every output element is one thread's
// fixed-order sum.
#pragma once

#include <hydragnn/core/types.hpp>

namespace hydragnn {
namespace kernels {

namespace detail {
/// Host variants keep one row's outputs in a local array (vectorised over the outputs); wider layers
/// fall back to the one-thread-per-element form. Both sum in the same order, so they agree bitwise.
constexpr int host_row_max = 256;
template <class M>
constexpr bool host_space_v = Kokkos::SpaceAccessibility<Kokkos::HostSpace, M>::accessible;
}  // namespace detail

/// Y(n,o) = sum_c X(n,c) W(o,c) + b(o)            X: N x in, Y: N x out
/// (each output sums b(o), then c = 0, 1, ... in order)
template <class Exec, class S, class T>
void linear_forward(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<T, mem_t<Exec>>& p,
                    const LinearShape& sh, const Mat<S, mem_t<Exec>>& Y) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off, b = sh.b_off;
  const long n = long(X.extent(0));
  if constexpr (detail::host_space_v<mem_t<Exec>>) {
    if (out <= detail::host_row_max) {
      // W^T (in x out) so that the inner loop runs over contiguous outputs
      Vec<T, mem_t<Exec>> wt("hydragnn::Linear::forward_wt", std::size_t(in) * out);
      for (int o = 0; o < out; ++o)
        for (int c = 0; c < in; ++c) wt(std::size_t(c) * out + o) = p(w + long(o) * in + c);
      Kokkos::parallel_for(
          "hydragnn::Linear::forward", Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const long i) {
            S acc[detail::host_row_max];
            for (int o = 0; o < out; ++o) acc[o] = b >= 0 ? S(p(b + o)) : S(0);
            for (int c = 0; c < in; ++c) {
              const S x = X(i, c);
              const T* wr = &wt(std::size_t(c) * out);
              for (int o = 0; o < out; ++o) acc[o] += x * wr[o];
            }
            for (int o = 0; o < out; ++o) Y(i, o) = acc[o];
          });
      return;
    }
  }
  Kokkos::parallel_for(
      "hydragnn::Linear::forward", Kokkos::RangePolicy<Exec>(exec, 0, n * out), KOKKOS_LAMBDA(const long k) {
        const long i = k / out;
        const int o = int(k % out);
        S acc = b >= 0 ? S(p(b + o)) : S(0);
        const T* wrow = &p(w + long(o) * in);
        for (int c = 0; c < in; ++c) acc += X(i, c) * wrow[c];
        Y(i, o) = acc;
      });
}

/// Xbar(n,c) (+)= sum_o Ybar(n,o) W(o,c)          (o = 0, 1, ... in order)
template <class Exec, class S, class T>
void linear_backward_input(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<T, mem_t<Exec>>& p,
                           const LinearShape& sh, const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off;
  const long n = long(Ybar.extent(0));
  if constexpr (detail::host_space_v<mem_t<Exec>>) {
    if (in <= detail::host_row_max) {
      Kokkos::parallel_for(
          "hydragnn::Linear::backward_input", Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const long i) {
            S acc[detail::host_row_max];
            for (int c = 0; c < in; ++c) acc[c] = accumulate ? Xbar(i, c) : S(0);
            for (int o = 0; o < out; ++o) {
              const S y = Ybar(i, o);
              const T* wr = &p(w + long(o) * in);
              for (int c = 0; c < in; ++c) acc[c] += y * wr[c];
            }
            for (int c = 0; c < in; ++c) Xbar(i, c) = acc[c];
          });
      return;
    }
  }
  Kokkos::parallel_for(
      "hydragnn::Linear::backward_input", Kokkos::RangePolicy<Exec>(exec, 0, n * in), KOKKOS_LAMBDA(const long k) {
        const long i = k / in;
        const int c = int(k % in);
        S acc = accumulate ? Xbar(i, c) : S(0);
        for (int o = 0; o < out; ++o) acc += Ybar(i, o) * p(w + long(o) * in + c);
        Xbar(i, c) = acc;
      });
}

/// Wbar(o,c) += sum_n Ybar(n,o) X(n,c);  bbar(o) += sum_n Ybar(n,o)
///
/// Every (o,c) sum runs over n in ascending order in both variants, so they agree bitwise.
/// Device spaces: one thread per (o,c) (neighbouring threads read neighbouring columns).
/// Host spaces: one thread per block of 4 outputs x 32 inputs streaming over the rows, so that each
/// row of X and Ybar is read from cache once per block instead of once per weight; biases separately.
template <class Exec, class S>
void linear_backward_params(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CMat<S, mem_t<Exec>>& Ybar,
                            const LinearShape& sh, const Vec<S, mem_t<Exec>>& g) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off, b = sh.b_off;
  const long n = long(X.extent(0));
  const int cols = in + (b >= 0 ? 1 : 0);
  if constexpr (detail::host_space_v<mem_t<Exec>>) {
    constexpr int BO = 4, BC = 32;
    const int nbo = (out + BO - 1) / BO, nbc = (in + BC - 1) / BC;
    Kokkos::parallel_for(
        "hydragnn::Linear::backward_params", Kokkos::RangePolicy<Exec>(exec, 0, long(nbo) * nbc),
        KOKKOS_LAMBDA(const long k) {
          const int o0 = int(k / nbc) * BO, c0 = int(k % nbc) * BC;
          const int no = out - o0 < BO ? out - o0 : BO, nc = in - c0 < BC ? in - c0 : BC;
          S acc[BO][BC];
          for (int a = 0; a < BO; ++a)
            for (int c = 0; c < BC; ++c) acc[a][c] = S(0);
          for (long i = 0; i < n; ++i)
            for (int a = 0; a < no; ++a) {
              const S y = Ybar(i, o0 + a);
              for (int c = 0; c < nc; ++c) acc[a][c] += y * X(i, c0 + c);
            }
          for (int a = 0; a < no; ++a)
            for (int c = 0; c < nc; ++c) g(w + long(o0 + a) * in + c0 + c) += acc[a][c];
        });
    if (b >= 0)
      Kokkos::parallel_for(
          "hydragnn::Linear::backward_bias", Kokkos::RangePolicy<Exec>(exec, 0, out), KOKKOS_LAMBDA(const long o) {
            S acc(0);
            for (long i = 0; i < n; ++i) acc += Ybar(i, o);
            g(b + o) += acc;
          });
  } else {
    Kokkos::parallel_for(
        "hydragnn::Linear::backward_params", Kokkos::RangePolicy<Exec>(exec, 0, long(out) * cols),
        KOKKOS_LAMBDA(const long k) {
          const int o = int(k / cols);
          const int c = int(k % cols);
          S acc(0);
          if (c < in) {
            for (long i = 0; i < n; ++i) acc += Ybar(i, o) * X(i, c);
            g(w + long(o) * in + c) += acc;
          } else {
            for (long i = 0; i < n; ++i) acc += Ybar(i, o);
            g(b + o) += acc;
          }
        });
  }
}

}  // namespace kernels
}  // namespace hydragnn
