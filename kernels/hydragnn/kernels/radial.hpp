// SPDX-License-Identifier: BSD-3-Clause
// Edge geometry: distances, radial bases and cutoff envelopes, forward and backward, generic in the
// scalar so that the dual pass differentiates them once more.
#pragma once

#include <hydragnn/core/types.hpp>

namespace hydragnn {

enum class RadialBasis { Gaussian, Bessel };

/// Radial basis b_k(d), k < K, on [0, cutoff].
/// Gaussian (SchNet / PyG GaussianSmearing): mu_k = k cutoff/(K-1), b_k = exp(-(d-mu_k)^2 / (2 delta^2)),
///   delta = cutoff/(K-1).
/// Bessel (DimeNet / PaiNN): b_k = sqrt(2/cutoff) sin((k+1) pi d / cutoff) / d.
struct RadialSpec {
  RadialBasis type = RadialBasis::Gaussian;
  int size = 50;
  double cutoff = 5.0;
};

namespace radial {

template <class S>
KOKKOS_INLINE_FUNCTION S basis(const RadialSpec& r, int k, const S& d) {
  using R = real_t<S>;
  if (r.type == RadialBasis::Gaussian) {
    const R delta = R(r.cutoff) / R(r.size > 1 ? r.size - 1 : 1);
    const S x = d - R(k) * delta;
    return math::exp(x * x * (R(-0.5) / (delta * delta)));
  }
  const R w = R(k + 1) * math::pi<R>() / R(r.cutoff);
  return R(math::sqrt(2.0 / r.cutoff)) * math::sin(d * w) / d;
}
template <class S>
KOKKOS_INLINE_FUNCTION S dbasis(const RadialSpec& r, int k, const S& d) {
  using R = real_t<S>;
  if (r.type == RadialBasis::Gaussian) {
    const R delta = R(r.cutoff) / R(r.size > 1 ? r.size - 1 : 1);
    const S x = d - R(k) * delta;
    const R c = R(-0.5) / (delta * delta);
    return R(2) * c * x * math::exp(x * x * c);
  }
  const R w = R(k + 1) * math::pi<R>() / R(r.cutoff);
  const R a = R(math::sqrt(2.0 / r.cutoff));
  return a * (math::cos(d * w) * w / d - math::sin(d * w) / (d * d));
}
/// Cosine cutoff 0.5 (cos(pi d / rc) + 1) for d < rc, else 0; and its derivative.
template <class S>
KOKKOS_INLINE_FUNCTION S cosine_cutoff(double rc, const S& d) {
  using R = real_t<S>;
  if (!(d < R(rc))) return S(R(0));
  return R(0.5) * (math::cos(d * (math::pi<R>() / R(rc))) + R(1));
}
template <class S>
KOKKOS_INLINE_FUNCTION S dcosine_cutoff(double rc, const S& d) {
  using R = real_t<S>;
  if (!(d < R(rc))) return S(R(0));
  const R w = math::pi<R>() / R(rc);
  return R(-0.5) * w * math::sin(d * w);
}

}  // namespace radial

namespace kernels {

/// d(e) = |r(e)|
template <class Exec, class S>
void edge_lengths(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const Vec<S, mem_t<Exec>>& d) {
  Kokkos::parallel_for(
      "hydragnn::EdgeGeometry::lengths", Kokkos::RangePolicy<Exec>(exec, 0, long(r.extent(0))),
      KOKKOS_LAMBDA(const long e) { d(e) = math::sqrt(r(e, 0) * r(e, 0) + r(e, 1) * r(e, 1) + r(e, 2) * r(e, 2)); });
}

/// rbar(e,:) += dbar(e) * r(e,:) / d(e)
template <class Exec, class S>
void edge_lengths_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CVec<S, mem_t<Exec>>& d,
                           const CVec<S, mem_t<Exec>>& dbar, const Mat<S, mem_t<Exec>>& rbar) {
  Kokkos::parallel_for(
      "hydragnn::EdgeGeometry::lengths_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(r.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        const S s = dbar(e) / d(e);
        for (int a = 0; a < 3; ++a) rbar(e, a) += s * r(e, a);
      });
}

/// B(e,k) = b_k(d(e)),  C(e) = cosine cutoff(d(e))
template <class Exec, class S>
void radial_forward(const Exec& exec, const RadialSpec& spec, const CVec<S, mem_t<Exec>>& d,
                    const Mat<S, mem_t<Exec>>& B, const Vec<S, mem_t<Exec>>& C) {
  const int K = spec.size;
  Kokkos::parallel_for(
      "hydragnn::RadialBasis::forward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        for (int k = 0; k < K; ++k) B(e, k) = radial::basis(spec, k, d(e));
        C(e) = radial::cosine_cutoff(spec.cutoff, d(e));
      });
}

/// dbar(e) += sum_k Bbar(e,k) b_k'(d) + Cbar(e) C'(d)
template <class Exec, class S>
void radial_backward(const Exec& exec, const RadialSpec& spec, const CVec<S, mem_t<Exec>>& d,
                     const CMat<S, mem_t<Exec>>& Bbar, const CVec<S, mem_t<Exec>>& Cbar, const Vec<S, mem_t<Exec>>& dbar) {
  const int K = spec.size;
  Kokkos::parallel_for(
      "hydragnn::RadialBasis::backward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        S acc = Cbar(e) * radial::dcosine_cutoff(spec.cutoff, d(e));
        for (int k = 0; k < K; ++k) acc += Bbar(e, k) * radial::dbasis(spec, k, d(e));
        dbar(e) += acc;
      });
}

}  // namespace kernels
}  // namespace hydragnn
