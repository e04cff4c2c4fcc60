// SPDX-License-Identifier: BSD-3-Clause
// Dual numbers x + eps*t (eps^2 = 0) for forward-over-reverse second derivatives.
//
// Every layer's forward and backward is written once, generic in its scalar type S. Run on
// S = Dual<T> with a tangent on the edge vectors, the backward returns J^T c + eps (J^T cdot +
// [d(J^T c)/dx] xdot): its eps part is the Hessian-vector product that force and stress training
// need (see docs/autodiff.md). Elementary functions below carry f' so that a generic backward
// written with f'(x) automatically carries f'' in its tangent.
#pragma once

#include <hydragnn/compat/kokkos.hpp>
#include <type_traits>

namespace hydragnn {

template <class T>
struct Dual {
  T v;  ///< primal
  T d;  ///< tangent
  KOKKOS_INLINE_FUNCTION constexpr Dual() : v(0), d(0) {}
  KOKKOS_INLINE_FUNCTION constexpr Dual(T value) : v(value), d(0) {}  // NOLINT: implicit on purpose
  KOKKOS_INLINE_FUNCTION constexpr Dual(T value, T tangent) : v(value), d(tangent) {}

  KOKKOS_INLINE_FUNCTION Dual& operator+=(const Dual& o) { v += o.v; d += o.d; return *this; }
  KOKKOS_INLINE_FUNCTION Dual& operator-=(const Dual& o) { v -= o.v; d -= o.d; return *this; }
  KOKKOS_INLINE_FUNCTION Dual& operator*=(const Dual& o) { d = d * o.v + v * o.d; v *= o.v; return *this; }
  KOKKOS_INLINE_FUNCTION Dual& operator*=(T s) { v *= s; d *= s; return *this; }
};

template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator-(const Dual<T>& a) { return {-a.v, -a.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator+(const Dual<T>& a, const Dual<T>& b) { return {a.v + b.v, a.d + b.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator-(const Dual<T>& a, const Dual<T>& b) { return {a.v - b.v, a.d - b.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator*(const Dual<T>& a, const Dual<T>& b) { return {a.v * b.v, a.d * b.v + a.v * b.d}; }
// The primal is a.v / b.v exactly as in real arithmetic, so a dual pass's primal equals the real pass bitwise.
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator/(const Dual<T>& a, const Dual<T>& b) {
  const T v = a.v / b.v;
  return {v, (a.d - v * b.d) / b.v};
}
// Mixed with the real type (weights are real even in a dual pass).
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator+(const Dual<T>& a, T b) { return {a.v + b, a.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator+(T a, const Dual<T>& b) { return {a + b.v, b.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator-(const Dual<T>& a, T b) { return {a.v - b, a.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator-(T a, const Dual<T>& b) { return {a - b.v, -b.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator*(const Dual<T>& a, T b) { return {a.v * b, a.d * b}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator*(T a, const Dual<T>& b) { return {a * b.v, a * b.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator/(const Dual<T>& a, T b) { return {a.v / b, a.d / b}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> operator/(T a, const Dual<T>& b) {
  const T v = a / b.v;
  return {v, -v * b.d / b.v};
}
// Comparisons act on the primal (used by max pooling / relu masks).
template <class T> KOKKOS_INLINE_FUNCTION bool operator>(const Dual<T>& a, const Dual<T>& b) { return a.v > b.v; }
template <class T> KOKKOS_INLINE_FUNCTION bool operator<(const Dual<T>& a, const Dual<T>& b) { return a.v < b.v; }
template <class T> KOKKOS_INLINE_FUNCTION bool operator>(const Dual<T>& a, T b) { return a.v > b; }
template <class T> KOKKOS_INLINE_FUNCTION bool operator<(const Dual<T>& a, T b) { return a.v < b; }

namespace math {
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> sqrt(const Dual<T>& a) {
  const T s = sqrt(a.v);
  return {s, a.d / (T(2) * s)};
}
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> exp(const Dual<T>& a) { const T e = exp(a.v); return {e, e * a.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> log(const Dual<T>& a) { return {log(a.v), a.d / a.v}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> log1p(const Dual<T>& a) { return {log1p(a.v), a.d / (T(1) + a.v)}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> tanh(const Dual<T>& a) { const T t = tanh(a.v); return {t, (T(1) - t * t) * a.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> cos(const Dual<T>& a) { return {cos(a.v), -sin(a.v) * a.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> sin(const Dual<T>& a) { return {sin(a.v), cos(a.v) * a.d}; }
template <class T> KOKKOS_INLINE_FUNCTION Dual<T> fabs(const Dual<T>& a) { return a.v < T(0) ? -a : a; }
}  // namespace math

/// Scalar traits: the real type under a (possibly dual) scalar, and rebinding to another real type.
template <class S> struct scalar_traits {
  using real = S;
  static constexpr bool is_dual = false;
  template <class R> using rebind = R;
  KOKKOS_INLINE_FUNCTION static S make(real v, real /*t*/) { return v; }
  KOKKOS_INLINE_FUNCTION static real primal(const S& s) { return s; }
  KOKKOS_INLINE_FUNCTION static real tangent(const S&) { return real(0); }
};
template <class T> struct scalar_traits<Dual<T>> {
  using real = T;
  static constexpr bool is_dual = true;
  template <class R> using rebind = Dual<R>;
  KOKKOS_INLINE_FUNCTION static Dual<T> make(real v, real t) { return {v, t}; }
  KOKKOS_INLINE_FUNCTION static real primal(const Dual<T>& s) { return s.v; }
  KOKKOS_INLINE_FUNCTION static real tangent(const Dual<T>& s) { return s.d; }
};
template <class S> using real_t = typename scalar_traits<S>::real;

/// What a pass adds to the parameter cotangent (real, like the parameters): the value itself in a
/// real pass, the tangent in a dual one: the dual pass of force training needs only the eps part of
/// its parameter cotangent (docs/autodiff.md), so its real part is never formed.
template <class S>
KOKKOS_INLINE_FUNCTION real_t<S> param_part(const S& s) {
  if constexpr (scalar_traits<S>::is_dual) return s.d;
  else return s;
}
/// Same dual-ness as S, real type R (e.g. energies accumulated in double).
template <class S, class R> using rebind_t = typename scalar_traits<S>::template rebind<R>;

/// Convert between scalars of different real types keeping the dual part.
template <class To, class From>
KOKKOS_INLINE_FUNCTION To scalar_cast(const From& x) {
  using TT = scalar_traits<To>;
  using TF = scalar_traits<From>;
  return TT::make(typename TT::real(TF::primal(x)), typename TT::real(TF::tangent(x)));
}

}  // namespace hydragnn
