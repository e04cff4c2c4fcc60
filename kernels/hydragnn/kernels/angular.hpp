// SPDX-License-Identifier: BSD-3-Clause
// Angular features of triplets (DimeNet): the cosine of the triplet angle from the edge vectors, and
// Legendre polynomials of it, each with a backward written in the generic scalar ops.
//
// Edge vectors follow the library's convention r_e = x_dst(e) - x_src(e) + S_e (batch.hpp). For a
// triplet k -> j -> i with edges ji (j -> i) and kj (k -> j):
//   r_ji = x_i - x_j (+ shift),  r_kj = x_j - x_k (+ shift).
// TripletAngle::Bonds (the default) is PyG's DimeNetPlusPlus angle: the angle between
//   pos_ij = x_i - x_j = r_ji and pos_jk = x_j - x_k = r_kj  (atan2(|a x b|, a.b) with a = r_ji,
//   b = r_kj), i.e. pi minus the bond angle at j; cos = r_ji . r_kj / (|r_ji| |r_kj|).
// TripletAngle::AtI is the angle of PyG's DimeNet and of HydraGNN's DIMEStack (which computes
//   pos_ki = pos_kj + pos_ji from the edge vectors): the angle between r_ji and r_ki = r_ji + r_kj,
//   i.e. the angle at atom i of the triangle (i, j, k).
// Both are well defined with periodic images since only edge vectors enter. Zero-length vectors are
// not guarded (they cannot occur in a radius graph without overlapping atoms).
#pragma once

#include <hydragnn/kernels/segment.hpp>

namespace hydragnn {

enum class TripletAngle { Bonds, AtI };

namespace kernels {
namespace detail {
/// c = u.w / (|u||w|) and its gradients gu = dc/du, gw = dc/dw.
template <class S>
KOKKOS_INLINE_FUNCTION S cos_and_grad(const S u[3], const S w[3], S gu[3], S gw[3]) {
  S uu(0), ww(0), uw(0);
  for (int a = 0; a < 3; ++a) {
    uu += u[a] * u[a];
    ww += w[a] * w[a];
    uw += u[a] * w[a];
  }
  const S nu = math::sqrt(uu), nw = math::sqrt(ww);
  const S inv = real_t<S>(1) / (nu * nw);
  const S c = uw * inv;
  for (int a = 0; a < 3; ++a) {
    gu[a] = w[a] * inv - c * u[a] / uu;
    gw[a] = u[a] * inv - c * w[a] / ww;
  }
  return c;
}

/// One step of the Legendre recurrence at x: (P_{l-1}, P_l, P_l') -> (P_l, P_{l+1}, P_{l+1}') by
/// (l+1) P_{l+1} = (2l+1) x P_l - l P_{l-1} and P_{l+1}' = (l+1) P_l + x P_l'; start (0, 1, 0) at l = 0.
template <class S>
KOKKOS_INLINE_FUNCTION void legendre_step(int l, const S& x, S& p_prev, S& p, S& d) {
  using R = real_t<S>;
  const S p_next = (R(2 * l + 1) * x * p - R(l) * p_prev) / R(l + 1);
  const S d_next = R(l + 1) * p + x * d;
  p_prev = p;
  p = p_next;
  d = d_next;
}

/// The two vectors of triplet (ji, kj) under the convention.
template <class S, class R>
KOKKOS_INLINE_FUNCTION void triplet_vectors(const R& r, int ji, int kj, TripletAngle kind, S u[3], S w[3]) {
  for (int a = 0; a < 3; ++a) {
    u[a] = r(ji, a);
    w[a] = kind == TripletAngle::Bonds ? S(r(kj, a)) : S(r(ji, a) + r(kj, a));
  }
}
}  // namespace detail

/// cosv(t) = cos of the triplet angle of (ji(t), kj(t)) (see TripletAngle).
///                                                    // r: E x 3, ji, kj: T -> cosv: T
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_cos(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CVec<int, mem_t<Exec>>& ji,
                 const CVec<int, mem_t<Exec>>& kj, const Vec<S, mem_t<Exec>>& cosv,
                 TripletAngle kind = TripletAngle::Bonds) {
  // One natural form (a per-triplet scalar): one thread per triplet in every mode.
  detail::for_each_row<Mode>(exec, "hydragnn::Angular::triplet_cos", long(cosv.extent(0)), KOKKOS_LAMBDA(const long t) {
    S u[3], w[3], gu[3], gw[3];
    detail::triplet_vectors(r, ji(t), kj(t), kind, u, w);
    cosv(t) = detail::cos_and_grad(u, w, gu, gw);
  });
}

/// Backward of triplet_cos to the edge vectors, without atomics: edge e collects, in this order, its
/// triplets as ji (t ascending over [ptr(e), ptr(e+1))) and then as kj (kj_perm order over
/// [kj_ptr(e), kj_ptr(e+1))); the per-triplet partials are recomputed from r.
///   Bonds: rbar_ji += cbar dc/du, rbar_kj += cbar dc/dw           (u = r_ji, w = r_kj)
///   AtI:   rbar_ji += cbar (dc/du + dc/dw), rbar_kj += cbar dc/dw (u = r_ji, w = r_ji + r_kj)
///          // r: E x 3, ji, kj: T, ptr: E+1, kj_perm: T, kj_ptr: E+1, cbar: T -> rbar: E x 3
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_cos_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CVec<int, mem_t<Exec>>& ji,
                          const CVec<int, mem_t<Exec>>& kj, const CVec<int, mem_t<Exec>>& ptr,
                          const CVec<int, mem_t<Exec>>& kj_perm, const CVec<int, mem_t<Exec>>& kj_ptr,
                          const CVec<S, mem_t<Exec>>& cbar, const Mat<S, mem_t<Exec>>& rbar, bool accumulate,
                          TripletAngle kind = TripletAngle::Bonds) {
  // edge e's components [a0, a0 + na): its triplets as ji, then as kj
  auto edge = KOKKOS_LAMBDA(const long e, const int a0, const int na) {
    S acc[3];
    for (int a = 0; a < na; ++a) acc[a] = accumulate ? S(rbar(e, a0 + a)) : S(0);
    S u[3], w[3], gu[3], gw[3];
    for (int t = ptr(e); t < ptr(e + 1); ++t) {  // e is the triplet's ji edge
      detail::triplet_vectors(r, int(e), kj(t), kind, u, w);
      detail::cos_and_grad(u, w, gu, gw);
      for (int a = 0; a < na; ++a)
        acc[a] += cbar(t) * (kind == TripletAngle::Bonds ? gu[a0 + a] : S(gu[a0 + a] + gw[a0 + a]));
    }
    for (int q = kj_ptr(e); q < kj_ptr(e + 1); ++q) {  // e is the triplet's kj edge
      const int t = kj_perm(q);
      detail::triplet_vectors(r, ji(t), int(e), kind, u, w);
      detail::cos_and_grad(u, w, gu, gw);
      for (int a = 0; a < na; ++a) acc[a] += cbar(t) * gw[a0 + a];
    }
    for (int a = 0; a < na; ++a) rbar(e, a0 + a) = acc[a];
  };
  const char* label = "hydragnn::Angular::triplet_cos_backward";
  if constexpr (detail::is_host_row<Mode>)  // a thread per edge: each triplet's gradient once for the three
    detail::for_each_row<Mode>(exec, label, long(rbar.extent(0)), KOKKOS_LAMBDA(const long e) { edge(e, 0, 3); });
  else
    detail::for_each_element<Mode>(exec, label, long(rbar.extent(0)), 3L,
                                   KOKKOS_LAMBDA(const long e, const long a) { edge(e, int(a), 1); });
}

/// Legendre polynomials P(t,l) = P_l(x(t)), l < L, by (l+1) P_{l+1} = (2l+1) x P_l - l P_{l-1}, and
/// (if dP has extent > 0) their derivatives dP(t,l) = P_l'(x) by P_l' = l P_{l-1} + x P_{l-1}'.
/// A recurrence: one thread per row in every mode.          // x: T -> P: T x L, dP: T x L or empty
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void legendre(const Exec& exec, const CVec<S, mem_t<Exec>>& x, const Mat<S, mem_t<Exec>>& P,
              const Mat<S, mem_t<Exec>>& dP) {
  const int L = int(P.extent(1));
  const bool deriv = dP.extent(0) > 0;
  detail::for_each_row<Mode>(exec, "hydragnn::Angular::legendre", long(P.extent(0)), KOKKOS_LAMBDA(const long t) {
    const S xt = x(t);
    S p_prev(0), p(1), d(0);  // P_{l-1}, P_l, P'_l at l = 0
    for (int l = 0; l < L; ++l) {
      P(t, l) = p;
      if (deriv) dP(t, l) = d;
      detail::legendre_step(l, xt, p_prev, p, d);
    }
  });
}

/// Backward of legendre: xbar(t) (+)= sum_l Pbar(t,l) P_l'(x(t)) (l ascending, recomputed from x).
///                                                          // x: T, Pbar: T x L -> xbar: T
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void legendre_backward(const Exec& exec, const CVec<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& Pbar,
                       const Vec<S, mem_t<Exec>>& xbar, bool accumulate) {
  const int L = int(Pbar.extent(1));
  detail::for_each_row<Mode>(exec, "hydragnn::Angular::legendre_backward", long(Pbar.extent(0)),
                             KOKKOS_LAMBDA(const long t) {
                               const S xt = x(t);
                               S acc = accumulate ? S(xbar(t)) : S(0);
                               S p_prev(0), p(1), d(0);
                               for (int l = 0; l < L; ++l) {
                                 acc += Pbar(t, l) * d;
                                 detail::legendre_step(l, xt, p_prev, p, d);
                               }
                               xbar(t) = acc;
                             });
}

}  // namespace kernels
}  // namespace hydragnn
