// SPDX-License-Identifier: BSD-3-Clause
// Dense layer kernels: Y = X W^T + b and its backward, generic in the scalar (real or dual).
// Weights are always real; with dual activations each product is a real-times-dual product, so a
// dual GEMM costs two real GEMMs worth of flops. Deterministic: every output element is one thread's
// fixed-order sum.
#pragma once

#include <hydragnn/core/types.hpp>

namespace hydragnn {
namespace kernels {

/// Y(n,o) = sum_c X(n,c) W(o,c) + b(o)            X: N x in, Y: N x out
template <class Exec, class S, class T>
void linear_forward(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<T, mem_t<Exec>>& p,
                    const LinearShape& sh, const Mat<S, mem_t<Exec>>& Y) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off, b = sh.b_off;
  const long n = long(X.extent(0));
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

/// Xbar(n,c) (+)= sum_o Ybar(n,o) W(o,c)
template <class Exec, class S, class T>
void linear_backward_input(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<T, mem_t<Exec>>& p,
                           const LinearShape& sh, const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off;
  const long n = long(Ybar.extent(0));
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
template <class Exec, class S>
void linear_backward_params(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CMat<S, mem_t<Exec>>& Ybar,
                            const LinearShape& sh, const Vec<S, mem_t<Exec>>& g) {
  const int in = sh.in, out = sh.out;
  const long w = sh.w_off, b = sh.b_off;
  const long n = long(X.extent(0));
  const int cols = in + (b >= 0 ? 1 : 0);
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

}  // namespace kernels
}  // namespace hydragnn
