// SPDX-License-Identifier: BSD-3-Clause
// Pointwise activations f and f', generic in the scalar. Because f' is written with the same
// overloaded elementary functions, evaluating it on a dual scalar also carries f'' (needed by the
// dual backward of force training).
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <stdexcept>
#include <string>

namespace hydragnn {

enum class Activation { Identity, ReLU, SiLU, ShiftedSoftplus, Tanh, Sigmoid, Softplus };

namespace act {

template <class S> KOKKOS_INLINE_FUNCTION S sigmoid(const S& x) {
  using R = real_t<S>;
  return R(1) / (R(1) + math::exp(-x));
}
/// log(1 + e^x) without overflow.
template <class S> KOKKOS_INLINE_FUNCTION S softplus(const S& x) {
  using R = real_t<S>;
  return x > R(20) ? x : math::log1p(math::exp(x));
}

template <class S> KOKKOS_INLINE_FUNCTION S f(Activation a, const S& x) {
  using R = real_t<S>;
  switch (a) {
    case Activation::Identity: return x;
    case Activation::ReLU: return x > R(0) ? x : S(R(0));
    case Activation::SiLU: return x * sigmoid(x);
    case Activation::ShiftedSoftplus: return softplus(x) - R(0.69314718055994530942);
    case Activation::Tanh: return math::tanh(x);
    case Activation::Sigmoid: return sigmoid(x);
    case Activation::Softplus: return softplus(x);
  }
  return x;
}

/// f'(x)
template <class S> KOKKOS_INLINE_FUNCTION S df(Activation a, const S& x) {
  using R = real_t<S>;
  switch (a) {
    case Activation::Identity: return S(R(1));
    case Activation::ReLU: return S(x > R(0) ? R(1) : R(0));
    case Activation::SiLU: {
      const S s = sigmoid(x);
      return s * (R(1) + x * (R(1) - s));
    }
    case Activation::ShiftedSoftplus:
    case Activation::Softplus: return sigmoid(x);
    case Activation::Tanh: {
      const S t = math::tanh(x);
      return R(1) - t * t;
    }
    case Activation::Sigmoid: {
      const S s = sigmoid(x);
      return s * (R(1) - s);
    }
  }
  return S(R(1));
}

}  // namespace act

namespace kernels {

// Pointwise ops have one natural form (one thread per element) and accept every mode.

/// Y = f(X), elementwise (Y may alias X only if the caller does not need X afterwards).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void activation_forward(const Exec& exec, Activation a, const CMat<S, mem_t<Exec>>& X, const Mat<S, mem_t<Exec>>& Y) {
  const long n = long(X.extent(0)), c = long(X.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Activation::forward", Kokkos::RangePolicy<Exec>(exec, 0, n * c),
      KOKKOS_LAMBDA(const long k) { Y(k / c, k % c) = act::f(a, X(k / c, k % c)); });
}

/// Xbar (+)= f'(X) * Ybar, elementwise.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void activation_backward(const Exec& exec, Activation a, const CMat<S, mem_t<Exec>>& X,
                         const CMat<S, mem_t<Exec>>& Ybar, const Mat<S, mem_t<Exec>>& Xbar, bool accumulate = false) {
  const long n = long(X.extent(0)), c = long(X.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Activation::backward", Kokkos::RangePolicy<Exec>(exec, 0, n * c), KOKKOS_LAMBDA(const long k) {
        const long i = k / c, j = k % c;
        const S v = act::df(a, X(i, j)) * Ybar(i, j);
        Xbar(i, j) = accumulate ? Xbar(i, j) + v : v;
      });
}

/// Y += X, elementwise.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void add_into(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const Mat<S, mem_t<Exec>>& Y) {
  const long n = long(X.extent(0)), c = long(X.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Pointwise::add_into", Kokkos::RangePolicy<Exec>(exec, 0, n * c),
      KOKKOS_LAMBDA(const long k) { Y(k / c, k % c) += X(k / c, k % c); });
}

}  // namespace kernels
}  // namespace hydragnn
