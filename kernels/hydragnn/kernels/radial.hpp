// SPDX-License-Identifier: BSD-3-Clause
// Edge geometry: distances, radial bases and cutoff envelopes, forward and backward, generic in the
// scalar so that the dual pass differentiates them once more.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/fastmath.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/team_gemm.hpp>

#include <type_traits>

namespace hydragnn {

enum class RadialBasis { Gaussian, Bessel, Sinc };
/// Smooth cutoff envelope multiplying the messages: cosine 0.5 (cos(pi d/rc) + 1), or the DimeNet
/// polynomial u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = d/rc, p = 6.
enum class Envelope { Cosine, Polynomial };

/// Radial basis b_k(d), k < K, on [0, cutoff].
/// Gaussian (SchNet / PyG GaussianSmearing): mu_k = k cutoff/(K-1), b_k = exp(-(d-mu_k)^2 / (2 delta^2)),
///   delta = cutoff/(K-1).
/// Bessel (DimeNet): b_k = sqrt(2/cutoff) sin((k+1) pi d / cutoff) / d.
/// Sinc (HydraGNN's PaiNN sinc_expansion): b_k = sin((k+1) pi d / cutoff) / d.
struct RadialSpec {
  RadialBasis type = RadialBasis::Gaussian;
  int size = 50;
  double cutoff = 5.0;
  Envelope envelope = Envelope::Cosine;
};

namespace radial {

/// e^a of a Gaussian's exponent a <= 0. In float, exactly 0 below a = -40 (e^-40 = 4.2e-18): each
/// edge has a Gaussian within half a spacing of its length (value >= e^-1/8 for any spacing), so a
/// dropped term is below 5e-18 of that one, far under float resolution (6e-8),
/// while its products with the small gradients of the backward would be subnormal floats, each a
/// ~100-cycle microcode assist on Intel cores (a 4.6x slower SchNet force-training step measured).
/// Double keeps every value.
template <class S>
KOKKOS_INLINE_FUNCTION S gaussian_exp(const S& a) {
  // selects, not branches: the loop over the basis may be vectorised
  if constexpr (std::is_same<S, float>::value) {
    const float e = fastmath::exp(a);
    return a < -40.0f ? 0.0f : e;
  } else if constexpr (std::is_same<S, Dual<float>>::value) {
    const float e = fastmath::exp(a.v);
    const bool drop = a.v < -40.0f;
    return S(drop ? 0.0f : e, drop ? 0.0f : e * a.d);
  } else {
    return fastmath::exp_of(a);
  }
}

/// The Gaussian basis's spacing delta = cutoff / (K - 1) and exponent factor c = -1 / (2 delta^2),
/// as radial::basis computes them.
template <class R>
struct GaussianGrid {
  R delta, c;
  KOKKOS_INLINE_FUNCTION explicit GaussianGrid(const RadialSpec& r)
      : delta(R(r.cutoff) / R(r.size > 1 ? r.size - 1 : 1)), c(R(-0.5) / (delta * delta)) {}
};

template <class S>
KOKKOS_INLINE_FUNCTION S basis(const RadialSpec& r, int k, const S& d) {
  using R = real_t<S>;
  if (r.type == RadialBasis::Gaussian) {
    const GaussianGrid<R> g(r);
    const S x = d - R(k) * g.delta;
    return gaussian_exp(x * x * g.c);
  }
  const R w = R(k + 1) * math::pi<R>() / R(r.cutoff);
  if (r.type == RadialBasis::Sinc) return math::sin(d * w) / d;
  return R(math::sqrt(2.0 / r.cutoff)) * math::sin(d * w) / d;
}
template <class S>
KOKKOS_INLINE_FUNCTION S dbasis(const RadialSpec& r, int k, const S& d) {
  using R = real_t<S>;
  if (r.type == RadialBasis::Gaussian) {
    const GaussianGrid<R> g(r);
    const S x = d - R(k) * g.delta;
    return R(2) * g.c * x * gaussian_exp(x * x * g.c);
  }
  const R w = R(k + 1) * math::pi<R>() / R(r.cutoff);
  const R a = r.type == RadialBasis::Sinc ? R(1) : R(math::sqrt(2.0 / r.cutoff));
  return a * (math::cos(d * w) * w / d - math::sin(d * w) / (d * d));
}
/// Cutoff envelope C(d) (zero beyond rc) and its derivative.
template <class S>
KOKKOS_INLINE_FUNCTION S envelope(const RadialSpec& r, const S& d) {
  using R = real_t<S>;
  if (!(d < R(r.cutoff))) return S(R(0));
  if (r.envelope == Envelope::Cosine) return R(0.5) * (math::cos(d * (math::pi<R>() / R(r.cutoff))) + R(1));
  const S x = d / R(r.cutoff);
  const S x2 = x * x, x3 = x2 * x, x6 = x3 * x3;
  return R(1) - R(28) * x6 + R(48) * x6 * x - R(21) * x6 * x2;
}
template <class S>
KOKKOS_INLINE_FUNCTION S denvelope(const RadialSpec& r, const S& d) {
  using R = real_t<S>;
  if (!(d < R(r.cutoff))) return S(R(0));
  const R w = R(1) / R(r.cutoff);
  if (r.envelope == Envelope::Cosine) return R(-0.5) * math::pi<R>() * w * math::sin(d * (math::pi<R>() * w));
  const S x = d * w;
  const S x2 = x * x, x5 = x2 * x2 * x;
  return (R(-168) * x5 + R(336) * x5 * x - R(168) * x5 * x2) * w;
}

/// x^n for a small integer n >= 0 (repeated products from one), x a scalar or a vector V of reals R.
template <class R, class V>
KOKKOS_INLINE_FUNCTION V ipow(const V& x, int n) {
  V y = V{} + R(1);
  for (int i = 0; i < n; ++i) y = y * x;
  return y;
}
/// DimeNet's envelope (PyG Envelope, p = envelope_exponent + 1) as PyG writes it, divided by x:
///   env(x) = 1/x + a x^(p-1) + b x^p + c x^(p+1) for x < 1, 0 beyond;
///   a = -(p+1)(p+2)/2, b = p(p+2), c = -p(p+1)/2,
/// and its derivative env'(x) = -1/x^2 + a (p-1) x^(p-2) + b p x^(p-1) + c (p+1) x^p.
/// The two expressions for x < 1, for a scalar or a vector V of reals R.
template <class R, class V>
KOKKOS_INLINE_FUNCTION V dimenet_envelope_below_one(int p, const V& x) {
  const R a = -R((p + 1) * (p + 2)) / R(2), b = R(p * (p + 2)), c = -R(p * (p + 1)) / R(2);
  const V x0 = ipow<R>(x, p - 1), x1 = x0 * x, x2 = x1 * x;
  return R(1) / x + a * x0 + b * x1 + c * x2;
}
template <class R, class V>
KOKKOS_INLINE_FUNCTION V ddimenet_envelope_below_one(int p, const V& x) {
  const R a = -R((p + 1) * (p + 2)) / R(2), b = R(p * (p + 2)), c = -R(p * (p + 1)) / R(2);
  const V x0 = ipow<R>(x, p - 2), x1 = x0 * x, x2 = x1 * x;
  return R(-1) / (x * x) + (a * R(p - 1)) * x0 + (b * R(p)) * x1 + (c * R(p + 1)) * x2;
}
template <class S>
KOKKOS_INLINE_FUNCTION S dimenet_envelope(int p, const S& x) {
  using R = real_t<S>;
  if (!(x < R(1))) return S(R(0));
  return dimenet_envelope_below_one<R>(p, x);
}
template <class S>
KOKKOS_INLINE_FUNCTION S ddimenet_envelope(int p, const S& x) {
  using R = real_t<S>;
  if (!(x < R(1))) return S(R(0));
  return ddimenet_envelope_below_one<R>(p, x);
}

}  // namespace radial

namespace kernels {

// One natural form each (one thread per edge); every mode (kernels/modes.hpp) is accepted and runs it.

/// d(u) = |r(e)|, e = first(u) (first: one edge per pair of mutually reverse edges, Batch::pair_first;
/// empty: every edge, e = u)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void edge_lengths(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const Vec<S, mem_t<Exec>>& d,
                  const CVec<int, mem_t<Exec>>& first = {}) {
  const bool all = first.extent(0) == 0;
  Kokkos::parallel_for(
      "hydragnn::EdgeGeometry::lengths", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))), KOKKOS_LAMBDA(const long u) {
        const long e = all ? u : long(first(u));
        d(u) = math::sqrt(r(e, 0) * r(e, 0) + r(e, 1) * r(e, 1) + r(e, 2) * r(e, 2));
      });
}

/// The edge feature "length" (HydraGNN edge_features ["length"], normalised by a fixed scale):
/// X(e,0) = d(e) / scale                                                     // d: E -> X: E x 1
template <class Exec, class S>
void length_feature(const Exec& exec, const CVec<S, mem_t<Exec>>& d, double scale, const Mat<S, mem_t<Exec>>& X) {
  Kokkos::parallel_for(
      "hydragnn::EdgeGeometry::length_feature", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) { X(e, 0) = d(e) / real_t<S>(scale); });
}

/// Backward of length_feature: dbar(e) += Xbar(e,0) / scale              // Xbar: E x 1 -> dbar: E
template <class Exec, class S>
void length_feature_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Xbar, double scale,
                             const Vec<S, mem_t<Exec>>& dbar) {
  Kokkos::parallel_for(
      "hydragnn::EdgeGeometry::length_feature_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(dbar.extent(0))),
      KOKKOS_LAMBDA(const long e) { dbar(e) += Xbar(e, 0) / real_t<S>(scale); });
}

/// rbar(e,:) += dbar(u) * r(e,:) / d(u), e = first(u) (as edge_lengths: the pair's first edge
/// carries the pair's gradient; empty first: e = u)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void edge_lengths_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CVec<S, mem_t<Exec>>& d,
                           const CVec<S, mem_t<Exec>>& dbar, const Mat<S, mem_t<Exec>>& rbar,
                           const CVec<int, mem_t<Exec>>& first = {}) {
  const bool all = first.extent(0) == 0;
  Kokkos::parallel_for(
      "hydragnn::EdgeGeometry::lengths_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long u) {
        const long e = all ? u : long(first(u));
        const S s = dbar(u) / d(u);
        for (int a = 0; a < 3; ++a) rbar(e, a) += s * r(e, a);
      });
}

/// B(e,k) = b_k(d(e)),  C(e) = envelope(d(e))
/// (Gaussian: the basis loop on the row's pointer with the spacing hoisted, so it vectorises; the
/// same expression as radial::basis, so the same values.)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void radial_forward(const Exec& exec, const RadialSpec& spec, const CVec<S, mem_t<Exec>>& d,
                    const Mat<S, mem_t<Exec>>& B, const Vec<S, mem_t<Exec>>& C) {
  using R = real_t<S>;
  const int K = spec.size;
  if (spec.type == RadialBasis::Gaussian) {
    const radial::GaussianGrid<R> grid(spec);
    Kokkos::parallel_for(
        "hydragnn::RadialBasis::forward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
        KOKKOS_LAMBDA(const long e) {
          const S de = d(e);
          S* Br = &B(e, 0);  // LayoutRight: the row is contiguous
          for (int k = 0; k < K; ++k) {
            const S x = de - R(k) * grid.delta;
            Br[k] = radial::gaussian_exp(x * x * grid.c);
          }
          C(e) = radial::envelope(spec, de);
        });
    return;
  }
  Kokkos::parallel_for(
      "hydragnn::RadialBasis::forward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        for (int k = 0; k < K; ++k) B(e, k) = radial::basis(spec, k, d(e));
        C(e) = radial::envelope(spec, d(e));
      });
}

/// dbar(e) += sum_k Bbar(e,k) b_k'(d) + Cbar(e) C'(d), with B = radial_forward's basis (Gaussian:
/// b_k' = 2 c x b_k, c = -1 / (2 delta^2), x = d - mu_k, read from B instead of recomputing the
/// exponential; radial::dbasis's expression, so the same values).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void radial_backward(const Exec& exec, const RadialSpec& spec, const CVec<S, mem_t<Exec>>& d,
                     const CMat<S, mem_t<Exec>>& B, const CMat<S, mem_t<Exec>>& Bbar, const CVec<S, mem_t<Exec>>& Cbar,
                     const Vec<S, mem_t<Exec>>& dbar) {
  using R = real_t<S>;
  const int K = spec.size;
  if (spec.type == RadialBasis::Gaussian) {
    const radial::GaussianGrid<R> grid(spec);
    Kokkos::parallel_for(
        "hydragnn::RadialBasis::backward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
        KOKKOS_LAMBDA(const long e) {
          const S de = d(e);
          const S* Br = &B(e, 0);
          const S* Bb = &Bbar(e, 0);
          S acc = Cbar(e) * radial::denvelope(spec, de);
          for (int k = 0; k < K; ++k) {
            const S x = de - R(k) * grid.delta;
            acc += Bb[k] * (R(2) * grid.c * x * Br[k]);
          }
          dbar(e) += acc;
        });
    return;
  }
  Kokkos::parallel_for(
      "hydragnn::RadialBasis::backward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        S acc = Cbar(e) * radial::denvelope(spec, d(e));
        for (int k = 0; k < K; ++k) acc += Bbar(e, k) * radial::dbasis(spec, k, d(e));
        dbar(e) += acc;
      });
}

#ifdef HYDRAGNN_SIMD_PACKS
namespace detail {
/// Edges a vector of S at a time: the number of vectors; vector b's first edge e0, its edges m (the
/// last vector may be short) and their x = d / rc (lanes past the last edge repeat it: finite,
/// never stored).
template <class S>
inline long edge_packs(long E) {
  return (E + simd::lanes<S> - 1) / simd::lanes<S>;
}
template <class S, class V>
inline simd::pack_t<S> edge_pack_x(const V& d, long E, long b, double rc, long& e0, int& m) {
  e0 = b * simd::lanes<S>;
  m = E - e0 < simd::lanes<S> ? int(E - e0) : simd::lanes<S>;
  simd::pack_t<S> x;
  for (int j = 0; j < simd::lanes<S>; ++j) x[j] = d(e0 + (j < m ? j : m - 1));
  return x / real_t<S>(rc);
}
}  // namespace detail
#endif

/// DimeNet's BesselBasisLayer (PyG; HydraGNN's PNAPlus) with trainable frequencies f_k = p(f_off + k)
/// (initialised (k+1) pi): B(e,k) = env(x) sin(f_k x), x = d(e) / rc, env = radial::dimenet_envelope
/// with p = exponent + 1.                                                    // d: E -> B: E x K
///
/// HostRow in float (host vector builds) takes a vector of edges at a time, the same operations
/// lane by lane (fastmath's sin of a vector is its sin of each float).
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void bessel_basis(const Exec& exec, const CVec<S, mem_t<Exec>>& d, const CVec<T, mem_t<Exec>>& p, long f_off,
                  double rc, int exponent, const Mat<S, mem_t<Exec>>& B) {
  using R = real_t<S>;
  const int K = int(B.extent(1));
#ifdef HYDRAGNN_SIMD_PACKS
  if constexpr (detail::is_host_row<Mode> && std::is_same<S, float>::value) {
    const long E = long(d.extent(0));
    Kokkos::parallel_for(
        "hydragnn::RadialBasis::bessel", Kokkos::RangePolicy<Exec>(exec, 0, detail::edge_packs<S>(E)),
        KOKKOS_LAMBDA(const long b) {
          using P = simd::pack_t<S>;
          long e0;
          int m;
          const P x = detail::edge_pack_x<S>(d, E, b, rc, e0, m);
          const P env = x < R(1) ? radial::dimenet_envelope_below_one<R>(exponent + 1, x) : P{};
          for (int k = 0; k < K; ++k) {
            P sn, cs;
            fastmath::sincos(P(x * R(p(f_off + k))), sn, cs);
            const P y = env * sn;
            for (int j = 0; j < m; ++j) B(e0 + j, k) = y[j];
          }
        });
    return;
  }
#endif
  Kokkos::parallel_for(
      "hydragnn::RadialBasis::bessel", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        const S x = d(e) / R(rc);
        const S env = radial::dimenet_envelope(exponent + 1, x);
        for (int k = 0; k < K; ++k) B(e, k) = env * fastmath::sin_of(S(x * R(p(f_off + k))));
      });
}

/// Backward of bessel_basis: dbar(e) += sum_k Bbar(e,k) (env'(x) sin(f_k x) + env(x) f_k cos(f_k x)) / rc
/// (skipped when dbar is empty); g(f_off + k) += sum_e Bbar(e,k) env(x) x cos(f_k x), edges in
/// ascending order, one thread per frequency (TeamTiled: in chunks of edges over teams, the chunks
/// added in order) (skipped when g is empty; g real: param_part).
///                                                       // d, Bbar: E x K -> dbar: E, g: frequencies
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void bessel_basis_backward(const Exec& exec, const CVec<S, mem_t<Exec>>& d, const CVec<T, mem_t<Exec>>& p, long f_off,
                           double rc, int exponent, const CMat<S, mem_t<Exec>>& Bbar, const Vec<real_t<S>, mem_t<Exec>>& g,
                           const Vec<S, mem_t<Exec>>& dbar) {
  using R = real_t<S>;
  const long E = long(d.extent(0));
  const int K = int(Bbar.extent(1));
  bool dbar_done = dbar.extent(0) == 0;
#ifdef HYDRAGNN_SIMD_PACKS
  if constexpr (detail::is_host_row<Mode> && std::is_same<S, float>::value) {
    // a vector of edges at a time, as bessel_basis
    if (!dbar_done)
      Kokkos::parallel_for(
          "hydragnn::RadialBasis::bessel_backward", Kokkos::RangePolicy<Exec>(exec, 0, detail::edge_packs<S>(E)),
          KOKKOS_LAMBDA(const long b) {
            using P = simd::pack_t<S>;
            long e0;
            int m;
            const P x = detail::edge_pack_x<S>(d, E, b, rc, e0, m);
            const auto in = x < R(1);
            const P env = in ? radial::dimenet_envelope_below_one<R>(exponent + 1, x) : P{};
            const P denv = in ? radial::ddimenet_envelope_below_one<R>(exponent + 1, x) : P{};
            P acc{};
            for (int k = 0; k < K; ++k) {
              const R f = R(p(f_off + k));
              P sn, cs, bb{};
              fastmath::sincos(P(x * f), sn, cs);
              for (int j = 0; j < m; ++j) bb[j] = Bbar(e0 + j, k);
              acc += bb * (denv * sn + env * f * cs);
            }
            const P y = acc / R(rc);
            for (int j = 0; j < m; ++j) dbar(e0 + j) += y[j];
          });
    dbar_done = true;
  }
#endif
  if (!dbar_done)
    Kokkos::parallel_for(
        "hydragnn::RadialBasis::bessel_backward", Kokkos::RangePolicy<Exec>(exec, 0, E), KOKKOS_LAMBDA(const long e) {
          const S x = d(e) / R(rc);
          const S env = radial::dimenet_envelope(exponent + 1, x), denv = radial::ddimenet_envelope(exponent + 1, x);
          S acc(R(0));
          for (int k = 0; k < K; ++k) {
            const R f = R(p(f_off + k));
            S sn, cs;
            fastmath::sincos_of(S(x * f), sn, cs);
            acc += Bbar(e, k) * (denv * sn + env * f * cs);
          }
          dbar(e) += acc / R(rc);
        });
  if (g.extent(0) == 0) return;
  if constexpr (detail::is_team_tiled<Mode>) {
    // the edges in chunks over teams (team_gemm.hpp: team_row_sums, each term times 1), the chunks
    // added in order: a GPU runs K threads otherwise, each over every edge
    using detail::Contig;
    detail::team_row_sums<Exec, S, Contig::mn, Contig::mn>(
        exec, "hydragnn::RadialBasis::bessel_frequencies", "hydragnn::RadialBasis::bessel_frequencies_chunks", K, 1, E,
        KOKKOS_LAMBDA(const long k, const long e) {
          const S x = d(e) / R(rc);
          return S(Bbar(e, k) * radial::dimenet_envelope(exponent + 1, x) * x * fastmath::cos_of(S(x * R(p(f_off + k)))));
        },
        KOKKOS_LAMBDA(const long, const long) { return S(R(1)); },
        KOKKOS_LAMBDA(const long k, const long, const R& v) { g(f_off + k) += v; });
    return;
  }
  if constexpr (detail::is_host_row<Mode>) {
    if (K <= detail::host_row_max) {
      // one pass over the edges, the envelope once per edge (not once per frequency): each
      // frequency's sum is the same expression over the edges in ascending order
      Kokkos::parallel_for(
          "hydragnn::RadialBasis::bessel_frequencies", Kokkos::RangePolicy<Exec>(exec, 0, 1), KOKKOS_LAMBDA(const long) {
            S acc[detail::host_row_max];
            R f[detail::host_row_max];
            for (int k = 0; k < K; ++k) acc[k] = S(R(0)), f[k] = R(p(f_off + k));
            for (long e = 0; e < E; ++e) {
              const S x = d(e) / R(rc);
              const S env = radial::dimenet_envelope(exponent + 1, x);
              for (int k = 0; k < K; ++k) acc[k] += Bbar(e, k) * env * x * fastmath::cos_of(S(x * f[k]));
            }
            for (int k = 0; k < K; ++k) g(f_off + k) += param_part(acc[k]);
          });
      return;
    }
  }
  Kokkos::parallel_for(
      "hydragnn::RadialBasis::bessel_frequencies", Kokkos::RangePolicy<Exec>(exec, 0, K), KOKKOS_LAMBDA(const long k) {
        const R f = R(p(f_off + k));
        S acc(R(0));
        for (long e = 0; e < E; ++e) {
          const S x = d(e) / R(rc);
          acc += Bbar(e, k) * radial::dimenet_envelope(exponent + 1, x) * x * fastmath::cos_of(S(x * f));
        }
        g(f_off + k) += param_part(acc);
      });
}

}  // namespace kernels
}  // namespace hydragnn
