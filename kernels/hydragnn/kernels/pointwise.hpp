// SPDX-License-Identifier: BSD-3-Clause
// Pointwise activations f and f', generic in the scalar. Because f' is written with the same
// overloaded elementary functions, evaluating it on a dual scalar also carries f'' (needed by the
// dual backward of force training). In float, softplus and sigmoid (and so the shifted softplus,
// SiLU and their derivatives) use kernels/fastmath.hpp instead of libm, so the loops vectorise;
// double uses libm.
#pragma once

#include <hydragnn/compat/unroll.hpp>
#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/fastmath.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/simd.hpp>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace hydragnn {

enum class Activation { Identity, ReLU, SiLU, ShiftedSoftplus, Tanh, Sigmoid, Softplus };

namespace act {

/// 1 / (1 + e^-x); for x < 0 as e^x / (1 + e^x), so that no exponential overflows (a dual's
/// tangent through e^-x = inf would be inf / inf = NaN below x = -709 in double).
template <class S> KOKKOS_INLINE_FUNCTION S sigmoid(const S& x) {
  using R = real_t<S>;
  if (x < R(0)) {
    const S e = math::exp(x);
    return e / (R(1) + e);
  }
  return R(1) / (R(1) + math::exp(-x));
}
/// log(1 + e^x) without overflow.
template <class S> KOKKOS_INLINE_FUNCTION S softplus(const S& x) {
  using R = real_t<S>;
  return x > R(20) ? x : math::log1p(math::exp(x));
}

/// f and f' of activation A on one float or a pack of floats (kernels/simd.hpp). act::f and act::df
/// on a float are these (fast_form below), so the vectorised HostRow loops give the bits of the
/// scalar code.
template <Activation A, class V> KOKKOS_INLINE_FUNCTION V f_fast(V x) {
  if constexpr (A == Activation::Identity) return x;
  if constexpr (A == Activation::ReLU) return fastmath::detail::sel(x > 0.0f, x, V{});
  if constexpr (A == Activation::SiLU) return x * fastmath::sigmoid(x);
  if constexpr (A == Activation::ShiftedSoftplus) return fastmath::softplus(x) - 0.69314718055994530942f;
  if constexpr (A == Activation::Sigmoid) return fastmath::sigmoid(x);
  if constexpr (A == Activation::Softplus) return fastmath::softplus(x);
  if constexpr (A == Activation::Tanh) return fastmath::tanh(x);
}
template <Activation A, class V> KOKKOS_INLINE_FUNCTION V df_fast(V x) {
  if constexpr (A == Activation::Identity) return V{} + 1.0f;
  if constexpr (A == Activation::ReLU) return fastmath::detail::sel(x > 0.0f, V{} + 1.0f, V{});
  if constexpr (A == Activation::SiLU) {
    const V s = fastmath::sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  }
  if constexpr (A == Activation::ShiftedSoftplus || A == Activation::Softplus) return fastmath::sigmoid(x);
  if constexpr (A == Activation::Sigmoid) {
    const V s = fastmath::sigmoid(x);
    return s * (1.0f - s);
  }
  if constexpr (A == Activation::Tanh) {
    const V t = fastmath::tanh(x);
    return 1.0f - t * t;
  }
}

/// f and f' of activation A on a Dual<float> given as planes (v, d) of one float or of packs of
/// floats: f(v + eps d) = f(v) + eps f'(v) d, f'(v + eps d) = f'(v) + eps f''(v) d. act::f and
/// act::df on Dual<float> are these (V = float), so the vectorised HostRow loops give their bits.
template <Activation A, class V> KOKKOS_INLINE_FUNCTION void dual_f_fast(V v, V d, V& fv, V& fd) {
  if constexpr (A == Activation::Identity) {
    fv = v;
    fd = d;
  } else if constexpr (A == Activation::ReLU) {
    fv = fastmath::detail::sel(v > 0.0f, v, V{});
    fd = fastmath::detail::sel(v > 0.0f, d, V{});
  } else if constexpr (A == Activation::Tanh) {
    const V t = fastmath::tanh(v);
    fv = t;
    fd = (1.0f - t * t) * d;
  } else {
    const V s = fastmath::sigmoid(v);
    if constexpr (A == Activation::SiLU) {
      fv = v * s;
      fd = (s * (1.0f + v * (1.0f - s))) * d;
    } else if constexpr (A == Activation::ShiftedSoftplus || A == Activation::Softplus) {
      fv = A == Activation::Softplus ? fastmath::softplus(v) : fastmath::softplus(v) - 0.69314718055994530942f;
      fd = s * d;
    } else {  // Sigmoid
      fv = s;
      fd = (s * (1.0f - s)) * d;
    }
  }
}
template <Activation A, class V> KOKKOS_INLINE_FUNCTION void dual_df_fast(V v, V d, V& gv, V& gd) {
  if constexpr (A == Activation::Identity) {
    gv = V{} + 1.0f;
    gd = V{};
  } else if constexpr (A == Activation::ReLU) {
    gv = fastmath::detail::sel(v > 0.0f, V{} + 1.0f, V{});
    gd = V{};
  } else if constexpr (A == Activation::Tanh) {  // f' = 1 - t^2, f'' = -2 t (1 - t^2)
    const V t = fastmath::tanh(v), t1 = 1.0f - t * t;
    gv = t1;
    gd = (-2.0f * t * t1) * d;
  } else {
    const V s = fastmath::sigmoid(v), s1 = s * (1.0f - s);  // sigma, sigma'
    if constexpr (A == Activation::SiLU) {  // f' = s (1 + v (1 - s)), f'' = s (1 - s) (2 + v (1 - 2 s))
      gv = s * (1.0f + v * (1.0f - s));
      gd = (s1 * (2.0f + v * (1.0f - 2.0f * s))) * d;
    } else if constexpr (A == Activation::ShiftedSoftplus || A == Activation::Softplus) {
      gv = s;
      gd = s1 * d;
    } else {  // Sigmoid: f' = s (1 - s), f'' = s (1 - s) (1 - 2 s)
      gv = s1;
      gd = (s1 * (1.0f - 2.0f * s)) * d;
    }
  }
}

/// Calls f(std::integral_constant<Activation, a>{}), so that code is compiled per activation (no
/// switch in an element loop). Values outside the enumeration go to Identity (host code checks them
/// first: kernels::detail::with_activation).
HYDRAGNN_EXEC_CHECK_DISABLE
template <class F> KOKKOS_INLINE_FUNCTION auto dispatch(Activation a, const F& f) {
  using A = Activation;
  switch (a) {
    case A::ReLU: return f(std::integral_constant<A, A::ReLU>{});
    case A::SiLU: return f(std::integral_constant<A, A::SiLU>{});
    case A::ShiftedSoftplus: return f(std::integral_constant<A, A::ShiftedSoftplus>{});
    case A::Tanh: return f(std::integral_constant<A, A::Tanh>{});
    case A::Sigmoid: return f(std::integral_constant<A, A::Sigmoid>{});
    case A::Softplus: return f(std::integral_constant<A, A::Softplus>{});
    default: return f(std::integral_constant<A, A::Identity>{});
  }
}

/// float and Dual<float> take the libm-free forms above (fastmath.hpp) for every activation.
template <class S>
constexpr bool has_fast_form = std::is_same<S, float>::value || std::is_same<S, Dual<float>>::value;

/// f (Derivative = false) or f' of a float or Dual<float> through f_fast / df_fast / dual_f_fast /
/// dual_df_fast: the very expressions of the vectorised HostRow loops.
template <bool Derivative, class S> KOKKOS_INLINE_FUNCTION S fast_form(Activation a, const S& x) {
  return dispatch(a, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    S y = x;
    if constexpr (std::is_same<S, float>::value) y = Derivative ? df_fast<A>(x) : f_fast<A>(x);
    else if constexpr (Derivative) dual_df_fast<A>(x.v, x.d, y.v, y.d);
    else dual_f_fast<A>(x.v, x.d, y.v, y.d);
    return y;
  });
}

template <class S> KOKKOS_INLINE_FUNCTION S f(Activation a, const S& x) {
  using R = real_t<S>;
  if constexpr (has_fast_form<S>) return fast_form<false>(a, x);
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
  if constexpr (has_fast_form<S>) return fast_form<true>(a, x);
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

/// f'(x) is a function of f(x), with the same bits for every x (ReLU: f(x) > 0 exactly when x > 0;
/// identity): a backward may read the activation's output where it reads its input, so a forward
/// need not keep the input (EGNN writes the two in one buffer).
constexpr bool derivative_from_output(Activation a) { return a == Activation::ReLU || a == Activation::Identity; }

// Pointwise ops have one natural form (one thread per element) and accept every mode.

namespace detail {
/// act::dispatch for kernel launches, refusing values outside the enumeration.
template <class F>
void with_activation(Activation a, const F& f) {
  if (int(a) < int(Activation::Identity) || int(a) > int(Activation::Softplus))
    throw std::logic_error("activation: unknown value " + std::to_string(int(a)));
  act::dispatch(a, f);
}

/// HostRow, float, an activation with a vector form: packs of floats along each row, the row's tail
/// one by one (same bits either way: act::f_fast).
template <Activation A, class Mode, class S>
constexpr bool vector_rows =
#ifdef HYDRAGNN_SIMD_PACKS
    is_host_row<Mode> && std::is_same<S, float>::value;
#else
    false;
#endif
/// The same for Dual<float> rows: packs of L duals split into primal and tangent planes.
template <Activation A, class Mode, class S>
constexpr bool dual_vector_rows =
#ifdef HYDRAGNN_SIMD_PACKS
    is_host_row<Mode> && std::is_same<S, Dual<float>>::value;
#else
    false;
#endif

#ifdef HYDRAGNN_SIMD_PACKS
/// Splits L duals into planes / joins them back (register shuffles, simd::deinterleave / interleave).
inline void split_duals(const Dual<float>* x, simd::pack_t<float>& v, simd::pack_t<float>& d) {
  static_assert(sizeof(Dual<float>) == 2 * sizeof(float), "Dual<float> is two floats");
  simd::deinterleave(reinterpret_cast<const float*>(x), v, d);
}
inline void join_duals(const simd::pack_t<float>& v, const simd::pack_t<float>& d, Dual<float>* x) {
  simd::interleave(v, d, reinterpret_cast<float*>(x));
}
#endif

/// One row of HostRow's activation: y[j] = f(x[j]), j < c (packs of floats where the compiler has
/// them, the same operations per element as act::f). y may be x.
template <Activation A, class S>
KOKKOS_INLINE_FUNCTION void act_forward_row(const S* x, S* y, long c) {
  long j = 0;
#ifdef HYDRAGNN_SIMD_PACKS
  constexpr int L = simd::lanes<float>;
  if constexpr (std::is_same<S, float>::value) {
    for (; j + L <= c; j += L) simd::store(y + j, act::f_fast<A>(simd::load(x + j)));
  } else if constexpr (std::is_same<S, Dual<float>>::value) {
    for (; j + L <= c; j += L) {
      simd::pack_t<float> v, d, fv, fd;
      split_duals(x + j, v, d);
      act::dual_f_fast<A>(v, d, fv, fd);
      join_duals(fv, fd, y + j);
    }
  }
#endif
  for (; j < c; ++j) y[j] = act::f(A, x[j]);
}

/// One row of HostRow's activation backward: xb[j] (+)= f'(x[j]) * yb[j], j < c, as Dual's
/// operators for duals ({g.v yb.v, g.d yb.v + g.v yb.d}). xb may be yb.
template <Activation A, class S>
KOKKOS_INLINE_FUNCTION void act_backward_row(const S* x, const S* yb, S* xb, long c, bool accumulate) {
  long j = 0;
#ifdef HYDRAGNN_SIMD_PACKS
  constexpr int L = simd::lanes<float>;
  if constexpr (std::is_same<S, float>::value) {
    if (accumulate)
      for (; j + L <= c; j += L)
        simd::store(xb + j, simd::load(xb + j) + act::df_fast<A>(simd::load(x + j)) * simd::load(yb + j));
    else
      for (; j + L <= c; j += L) simd::store(xb + j, act::df_fast<A>(simd::load(x + j)) * simd::load(yb + j));
  } else if constexpr (std::is_same<S, Dual<float>>::value) {
    for (; j + L <= c; j += L) {
      simd::pack_t<float> v, d, bv, bd, gv, gd;
      split_duals(x + j, v, d);
      split_duals(yb + j, bv, bd);
      act::dual_df_fast<A>(v, d, gv, gd);
      simd::pack_t<float> ov = gv * bv, od = gd * bv + gv * bd;
      if (accumulate) {
        simd::pack_t<float> av, ad;
        split_duals(xb + j, av, ad);
        ov = av + ov;
        od = ad + od;
      }
      join_duals(ov, od, xb + j);
    }
  }
#endif
  for (; j < c; ++j) {
    const S v = act::df(A, x[j]) * yb[j];
    xb[j] = accumulate ? xb[j] + v : v;
  }
}

template <Activation A, class Mode, class Exec, class S>
void activation_forward_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const Mat<S, mem_t<Exec>>& Y) {
  if constexpr (vector_rows<A, Mode, S> || dual_vector_rows<A, Mode, S>) {
    const long c = long(X.extent(1));
    Kokkos::parallel_for(
        "hydragnn::Activation::forward", Kokkos::RangePolicy<Exec>(exec, 0, long(X.extent(0))),
        KOKKOS_LAMBDA(const long i) { act_forward_row<A>(&X(i, 0), &Y(i, 0), c); });
    return;
  }
  for_each_element<Mode>(exec, "hydragnn::Activation::forward", long(X.extent(0)), long(X.extent(1)),
                         KOKKOS_LAMBDA(const long i, const long j) { Y(i, j) = act::f(A, X(i, j)); });
}

template <Activation A, class Mode, class Exec, class S>
void activation_backward_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CMat<S, mem_t<Exec>>& Ybar,
                              const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  const long n = long(X.extent(0)), c = long(X.extent(1));
  if constexpr (vector_rows<A, Mode, S> || dual_vector_rows<A, Mode, S>) {
    Kokkos::parallel_for(
        "hydragnn::Activation::backward", Kokkos::RangePolicy<Exec>(exec, 0, n),
        KOKKOS_LAMBDA(const long i) { act_backward_row<A>(&X(i, 0), &Ybar(i, 0), &Xbar(i, 0), c, accumulate); });
    return;
  }
  if (accumulate)
    for_each_element<Mode>(exec, "hydragnn::Activation::backward", n, c, KOKKOS_LAMBDA(const long i, const long j) {
      Xbar(i, j) = Xbar(i, j) + act::df(A, X(i, j)) * Ybar(i, j);
    });
  else
    for_each_element<Mode>(exec, "hydragnn::Activation::backward", n, c, KOKKOS_LAMBDA(const long i, const long j) {
      Xbar(i, j) = act::df(A, X(i, j)) * Ybar(i, j);
    });
}
}  // namespace detail

/// Y = f(X), elementwise (Y may alias X only if the caller does not need X afterwards).
/// One kernel per activation (the element loop of kernels/modes.hpp).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void activation_forward(const Exec& exec, Activation a, const CMat<S, mem_t<Exec>>& X, const Mat<S, mem_t<Exec>>& Y) {
  detail::with_activation(a, [&](auto tag) { detail::activation_forward_rows<decltype(tag)::value, Mode, Exec, S>(exec, X, Y); });
}

/// Xbar (+)= f'(X) * Ybar, elementwise.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void activation_backward(const Exec& exec, Activation a, const CMat<S, mem_t<Exec>>& X,
                         const CMat<S, mem_t<Exec>>& Ybar, const Mat<S, mem_t<Exec>>& Xbar, bool accumulate = false) {
  detail::with_activation(a, [&](auto tag) {
    detail::activation_backward_rows<decltype(tag)::value, Mode, Exec, S>(exec, X, Ybar, Xbar, accumulate);
  });
}

/// Y += X, elementwise.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void add_into(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const Mat<S, mem_t<Exec>>& Y) {
  detail::for_each_element<Mode>(exec, "hydragnn::Pointwise::add_into", long(X.extent(0)), long(X.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long j) { Y(i, j) += X(i, j); });
}

}  // namespace kernels
}  // namespace hydragnn
