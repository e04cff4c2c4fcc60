// SPDX-License-Identifier: BSD-3-Clause
// DimeNet's radial spherical Bessel basis (PyG SphericalBasisLayer, the part that depends on the edge
// length; HydraGNN's DIMEStack uses PyG's layer): for l < L (num_spherical), n < K (num_radial),
//   R(e, l K + n) = env(x) N_{l,n} j_l(z_{l,n} x),   x = d(e) / rc,
// with j_l the spherical Bessel function of the first kind, z_{l,n} its n-th positive zero, N_{l,n} =
// 1 / sqrt(0.5 j_{l+1}(z_{l,n})^2) and env PyG's envelope (radial.hpp, dimenet_envelope). The triplet
// basis of DimeNet is R[kj(t)] times Y_l(angle(t)) per block l.
//
// The constants follow PyG's dimenet_utils exactly, including its single precision: Jn_zeros keeps
// the zeros in float32 (z_{0,n} = float32((n + 1) pi); for l >= 1 each root of j_l, bracketed by the
// roots of j_{l-1}, rounded to float32), and the normalisers are computed from those float32 zeros in
// float32 arithmetic (numpy with a float32 argument): N = 1 / sqrt(0.5 Jn^2), Jn =
// sqrt(pi / (2 z)) * float32(J_{l+3/2}(z)). Both are then used as double constants.
//
// The triplet basis (triplet_spherical_basis) multiplies R of a triplet's kj edge, block l, by the
// zonal spherical harmonic Y_l^0(angle) = sqrt((2l + 1) / (4 pi)) P_l(cos angle) (PyG real_sph_harm
// with zero_m_only); the cosine comes from kernels/angular.hpp (TripletAngle::AtI for DimeNet).
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/angular.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/radial.hpp>
#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/kernels/simd.hpp>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace hydragnn {

/// Zeros z_{l,n} and normalisers N_{l,n} (row-major L x K) of DimeNet's spherical Bessel basis.
struct SphericalBesselTable {
  int L = 0, K = 0;
  std::vector<double> zeros, norm;
};

namespace radial {

/// j_l(y) for l = 0 .. lmax into j[0 .. lmax] (upward recurrence from sin y / y; y > 0), and if dj is
/// not null the derivatives j_l'(y) = j_{l-1}(y) - (l + 1) / y j_l(y), j_0' = -j_1 (j needs lmax + 1
/// entries for that).
template <class S>
KOKKOS_INLINE_FUNCTION void spherical_jn(int lmax, const S& y, S* j, S* dj) {
  using R = real_t<S>;
  const int top = dj ? lmax + 1 : lmax;
  const S s = math::sin(y), c = math::cos(y);
  j[0] = s / y;
  if (top >= 1) j[1] = s / (y * y) - c / y;
  for (int l = 1; l < top; ++l) j[l + 1] = R(2 * l + 1) / y * j[l] - j[l - 1];
  if (!dj) return;
  dj[0] = -j[1];
  for (int l = 1; l <= lmax; ++l) dj[l] = j[l - 1] - R(l + 1) / y * j[l];
}

/// The zeros and normalisers of PyG's dimenet_utils.bessel_basis(L, K) (see the top of this file).
inline SphericalBesselTable dimenet_bessel_table(int L, int K) {
  if (L < 1 || K < 1) throw std::runtime_error("dimenet_bessel_table: num_spherical and num_radial must be > 0");
  const double pi = std::acos(-1.0);
  auto jl = [](int l, double y) {
    std::vector<double> j(std::size_t(l) + 1);
    spherical_jn(l, y, j.data(), static_cast<double*>(nullptr));
    return j[std::size_t(l)];
  };
  SphericalBesselTable t;
  t.L = L;
  t.K = K;
  t.zeros.assign(std::size_t(L) * K, 0.0);
  t.norm.assign(std::size_t(L) * K, 0.0);
  for (int n = 0; n < K; ++n) t.zeros[std::size_t(n)] = double(float((n + 1) * pi));
  // brackets: multiples of pi (double), then the previous order's float32 roots
  std::vector<double> points(std::size_t(K + L - 1));
  for (std::size_t j = 0; j < points.size(); ++j) points[j] = double(j + 1) * pi;
  for (int l = 1; l < L; ++l) {
    const int roots = K + L - 1 - l;
    std::vector<double> next(static_cast<std::size_t>(roots));
    for (int j = 0; j < roots; ++j) {
      double a = points[std::size_t(j)], b = points[std::size_t(j) + 1], fa = jl(l, a);
      for (int it = 0; it < 200 && b - a > 1e-15 * b; ++it) {  // bisection to the last bits
        const double m = 0.5 * (a + b), fm = jl(l, m);
        if ((fm < 0) == (fa < 0)) {
          a = m;
          fa = fm;
        } else {
          b = m;
        }
      }
      next[std::size_t(j)] = double(float(0.5 * (a + b)));
    }
    for (int n = 0; n < K; ++n) t.zeros[std::size_t(l) * K + n] = next[std::size_t(n)];
    points = next;
  }
  for (int l = 0; l < L; ++l)
    for (int n = 0; n < K; ++n) {
      const float z = float(t.zeros[std::size_t(l) * K + n]);
      // Jn(z, l + 1) = sqrt(pi / (2 z)) J_{l+3/2}(z) in float32, J computed in double and rounded
      const float pref = std::sqrt(float(pi) / (2.0f * z));
      const double pref_d = std::sqrt(pi / (2.0 * double(z)));
      const float J = float(jl(l + 1, double(z)) / pref_d);
      const float jn = pref * J;
      const float half_sq = 0.5f * (jn * jn);
      t.norm[std::size_t(l) * K + n] = double(1.0f / std::sqrt(half_sq));
    }
  return t;
}

}  // namespace radial

namespace kernels {
namespace detail {
/// Largest num_spherical of the kernels below (their per-thread arrays of j_l).
constexpr int kMaxSpherical = 16;
inline void check_num_spherical(int L) {
  if (L > kMaxSpherical) throw std::runtime_error("spherical_bessel_basis: num_spherical above 16");
}
}  // namespace detail

/// R(e, l K + n) = env(d(e) / rc) N_{l,n} j_l(z_{l,n} d(e) / rc) (see the top); zeros and norm hold the
/// table's L x K constants on the device.                                  // d: E -> R: E x L K
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void spherical_bessel_basis(const Exec& exec, const CVec<S, mem_t<Exec>>& d, const CVec<double, mem_t<Exec>>& zeros,
                            const CVec<double, mem_t<Exec>>& norm, int L, int K, double rc, int exponent,
                            const Mat<S, mem_t<Exec>>& Rb) {
  using R = real_t<S>;
  constexpr int kMaxL = detail::kMaxSpherical;
  detail::check_num_spherical(L);
  Kokkos::parallel_for(
      "hydragnn::SphericalBasis::radial", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        const S x = d(e) / R(rc);
        const S env = radial::dimenet_envelope(exponent + 1, x);
        S j[kMaxL];
        for (int l = 0; l < L; ++l)
          for (int n = 0; n < K; ++n) {
            radial::spherical_jn(l, x * R(zeros(l * K + n)), j, static_cast<S*>(nullptr));
            Rb(e, l * K + n) = env * (R(norm(l * K + n)) * j[l]);
          }
      });
}

/// Backward: dbar(e) += sum_{l,n} Rbar(e, l K + n) dR/dd (terms in (l, n) order).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void spherical_bessel_basis_backward(const Exec& exec, const CVec<S, mem_t<Exec>>& d,
                                     const CVec<double, mem_t<Exec>>& zeros, const CVec<double, mem_t<Exec>>& norm,
                                     int L, int K, double rc, int exponent, const CMat<S, mem_t<Exec>>& Rbar,
                                     const Vec<S, mem_t<Exec>>& dbar) {
  using R = real_t<S>;
  constexpr int kMaxL = detail::kMaxSpherical;
  detail::check_num_spherical(L);
  Kokkos::parallel_for(
      "hydragnn::SphericalBasis::radial_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        const S x = d(e) / R(rc);
        const S env = radial::dimenet_envelope(exponent + 1, x), denv = radial::ddimenet_envelope(exponent + 1, x);
        S j[kMaxL + 1], dj[kMaxL];
        S acc(R(0));
        for (int l = 0; l < L; ++l)
          for (int n = 0; n < K; ++n) {
            const R z = R(zeros(l * K + n));
            radial::spherical_jn(l, x * z, j, dj);
            acc += Rbar(e, l * K + n) * (R(norm(l * K + n)) * (denv * j[l] + env * z * dj[l]));
          }
        dbar(e) += acc / R(rc);
      });
}

namespace detail {
/// Y(l) = sqrt((2l + 1) / (4 pi)) P_l(x), and dY(l) = dY/dx if dY is not null, l < L.
template <class S>
KOKKOS_INLINE_FUNCTION void zonal_harmonics(int L, const S& x, S* Y, S* dY) {
  using R = real_t<S>;
  const R inv4pi = R(0.07957747154594767);  // 1 / (4 pi)
  S p_prev(R(0)), p(R(1)), d(R(0));          // P_{l-1}, P_l, P_l'
  for (int l = 0; l < L; ++l) {
    const R c = math::sqrt(R(2 * l + 1) * inv4pi);
    Y[l] = c * p;
    if (dY) dY[l] = c * d;
    legendre_step(l, x, p_prev, p, d);
  }
}
}  // namespace detail

/// DimeNet's triplet basis: sbf(t, l K + n) = Y_l^0(cosv(t)) Rb(kj(t), l K + n), with Y_l^0 the zonal
/// harmonic of the top.                          // cosv: T, Rb: E x L K, kj: T -> sbf: T x L K
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_spherical_basis(const Exec& exec, const CVec<S, mem_t<Exec>>& cosv, const CMat<S, mem_t<Exec>>& Rb,
                             const CVec<int, mem_t<Exec>>& kj, int L, const Mat<S, mem_t<Exec>>& sbf) {
  constexpr int kMaxL = detail::kMaxSpherical;
  detail::check_num_spherical(L);
  const int K = int(Rb.extent(1)) / L;
  detail::for_each_row<Mode>(exec, "hydragnn::SphericalBasis::triplet", long(sbf.extent(0)), KOKKOS_LAMBDA(const long t) {
    S Y[kMaxL];
    detail::zonal_harmonics(L, S(cosv(t)), Y, static_cast<S*>(nullptr));
    const int e = kj(t);
    for (int l = 0; l < L; ++l)
      for (int n = 0; n < K; ++n) sbf(t, l * K + n) = Y[l] * Rb(e, l * K + n);
  });
}

/// Backward of triplet_spherical_basis: cosbar(t) (+)= sum_l Y_l'(cos) sum_n sbfbar(t, lK+n) Rb(kj, lK+n)
/// and Rbbar(e, lK+n) (+)= sum over the triplets q of e (kj_perm[kj_ptr(e) .. kj_ptr(e+1)), in order) of
/// Y_l(cos(q)) sbfbar(q, lK+n); an output of extent 0 is skipped.
///                                  // sbfbar: T x L K -> cosbar: T, Rbbar: E x L K
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_spherical_basis_backward(const Exec& exec, const CVec<S, mem_t<Exec>>& cosv, const CMat<S, mem_t<Exec>>& Rb,
                                      const CVec<int, mem_t<Exec>>& kj, const CVec<int, mem_t<Exec>>& kj_perm,
                                      const CVec<int, mem_t<Exec>>& kj_ptr, int L, const CMat<S, mem_t<Exec>>& sbfbar,
                                      const Vec<S, mem_t<Exec>>& cosbar, const Mat<S, mem_t<Exec>>& Rbbar,
                                      bool accumulate) {
  using R = real_t<S>;
  constexpr int kMaxL = detail::kMaxSpherical;
  detail::check_num_spherical(L);
  const int K = int(Rb.extent(1)) / L;
  if (cosbar.extent(0) > 0)
    detail::for_each_row<Mode>(exec, "hydragnn::SphericalBasis::triplet_backward_cos", long(sbfbar.extent(0)),
                               KOKKOS_LAMBDA(const long t) {
                                 S Y[kMaxL], dY[kMaxL];
                                 detail::zonal_harmonics(L, S(cosv(t)), Y, dY);
                                 const int e = kj(t);
                                 S acc = accumulate ? S(cosbar(t)) : S(R(0));
                                 for (int l = 0; l < L; ++l) {
                                   S dot(R(0));
                                   for (int n = 0; n < K; ++n) dot += sbfbar(t, l * K + n) * Rb(e, l * K + n);
                                   acc += dY[l] * dot;
                                 }
                                 cosbar(t) = acc;
                               });
  const long nT = long(kj_perm.extent(0));
  if (Rbbar.extent(0) > 0)
    detail::for_each_row<Mode>(exec, "hydragnn::SphericalBasis::triplet_backward_radial", long(Rbbar.extent(0)),
                               KOKKOS_LAMBDA(const long e) {
                                 if (!accumulate)
                                   for (int c = 0; c < L * K; ++c) Rbbar(e, c) = S(R(0));
                                 for (int q = kj_ptr(e); q < kj_ptr(e + 1); ++q) {
#ifdef HYDRAGNN_SIMD_PACKS
                                   // the rows of sbfbar come in kj order, scattered over T x LK: ask for
                                   // the one a few triplets ahead (host vector builds; a hint only)
                                   if (q + detail::triplet_prefetch_ahead < nT) {
                                     const long ta = kj_perm(q + detail::triplet_prefetch_ahead);
                                     const char* pr = reinterpret_cast<const char*>(&sbfbar(ta, 0));
                                     for (long o = 0; o < long(L * K * sizeof(S)); o += 64) __builtin_prefetch(pr + o);
                                     __builtin_prefetch(&cosv(ta));
                                   }
#endif
                                   const int t = kj_perm(q);
                                   S Y[kMaxL];
                                   detail::zonal_harmonics(L, S(cosv(t)), Y, static_cast<S*>(nullptr));
                                   for (int l = 0; l < L; ++l)
                                     for (int n = 0; n < K; ++n) Rbbar(e, l * K + n) += Y[l] * sbfbar(t, l * K + n);
                                 }
                               });
}

}  // namespace kernels
}  // namespace hydragnn
