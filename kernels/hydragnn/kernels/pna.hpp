// SPDX-License-Identifier: BSD-3-Clause
// Ops of principal neighbourhood aggregation (PyG DegreeScalerAggregation as HydraGNN's PNA family
// uses it, commit d251f816) and of PNAEq's vector message, forward and backward, generic in the
// scalar so that the dual pass differentiates them once more.
//
// PNA: per receiver i (in-degree n_i = its CSR segment) and channel f the aggregators mean, min, max
// and std (kernels/segment.hpp: PyG's semantics, empty segments give 0) are multiplied by degree
// scalers, one block of 4F columns per scaler, aggregators in that order inside a block:
//   A(i, s 4F + a F + f) = scale_s(n_i) G_a(i, f)
//   identity 1, amplification log(n+1) / avg_log, attenuation avg_log / log(max(n,1)+1),
//   linear n / avg_lin, inverse_linear avg_lin / max(n,1)
// with avg_lin = sum_d d h_d / sum_d h_d and avg_log = sum_d log(d+1) h_d / sum_d h_d over the
// training set's in-degree histogram h. The scales depend on the graph only (not differentiated).
//
// Max and min pass their cotangent as PyTorch's scatter_reduce amax / amin do: shared evenly by
// every row equal to the extreme (segment_select_backward_ties).
//
// PNAEq's vector message (receiver i = dst(e), sender j = src(e), u the edge direction):
//   v'(i,a,f) = v(i,a,f) + sum_e ( v(j,a,f) X0(e,f) + X1(e,f) u(e,a) )
// Sums over edges run in CSR order (receiver segments forward; sender segments through send_perm
// in the backward), channels ascending: deterministic, no atomics.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/dense.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/kernels/simd.hpp>
#include <hydragnn/kernels/vector.hpp>

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace hydragnn {
namespace kernels {

/// PyG's degree scalers, by name.
enum class PnaScaler : int { Identity = 0, Amplification = 1, Attenuation = 2, Linear = 3, InverseLinear = 4 };

/// The scalers of a PNA aggregation and the training set's degree averages.
struct PnaScalers {
  static constexpr int max_scalers = 5;
  static constexpr int aggregators = 4;  ///< mean, min, max, std
  int n = 0;
  PnaScaler kind[max_scalers] = {};
  double avg_lin = 1, avg_log = 1;

  /// From an in-degree histogram h (h[d] = how many training nodes have in-degree d), as PyG's
  /// DegreeScalerAggregation.__init__ computes its avg_deg_lin / avg_deg_log.
  static PnaScalers from_histogram(const std::vector<PnaScaler>& kinds, const std::vector<double>& h) {
    if (kinds.empty() || int(kinds.size()) > max_scalers) throw std::runtime_error("PNA: 1 to 5 scalers");
    PnaScalers s;
    s.n = int(kinds.size());
    for (int k = 0; k < s.n; ++k) s.kind[k] = kinds[k];
    double N = 0, lin = 0, lg = 0;
    for (std::size_t d = 0; d < h.size(); ++d) {
      N += h[d];
      lin += double(d) * h[d];
      lg += std::log(double(d) + 1) * h[d];
    }
    if (!(N > 0)) throw std::runtime_error("PNA: the degree histogram is empty");
    s.avg_lin = lin / N;
    s.avg_log = lg / N;
    return s;
  }
  /// Output columns for F input channels.
  int width(int F) const { return n * aggregators * F; }
  /// scale_k for in-degree deg.
  KOKKOS_INLINE_FUNCTION double scale(int k, int deg) const {
    const double d = double(deg), dc = deg < 1 ? 1.0 : double(deg);
    switch (kind[k]) {
      case PnaScaler::Amplification: return math::log(d + 1) / avg_log;
      case PnaScaler::Attenuation: return avg_log / math::log(dc + 1);
      case PnaScaler::Linear: return d / avg_lin;
      case PnaScaler::InverseLinear: return avg_lin / dc;
      default: return 1.0;
    }
  }
};

/// scale(i, k) = scaler k of node i's in-degree (ptr(i+1) - ptr(i)).   ptr: N+1 -> scale: N x n
template <class Exec, class R, class Mode = default_mode_t<Exec>>
void pna_scales(const Exec& exec, const CVec<int, mem_t<Exec>>& ptr, const PnaScalers& sc,
                const Mat<R, mem_t<Exec>>& scale) {
  const long N = long(scale.extent(0)), n = sc.n;
  detail::for_each_element<Mode>(exec, "hydragnn::PNA::scales", N, n, KOKKOS_LAMBDA(const long i, const long k) {
    scale(i, k) = R(sc.scale(int(k), ptr(i + 1) - ptr(i)));
  });
}

/// A(i, k 4F + a F + f) = scale(i, k) G_a(i, f),  G = (mean, min, max, std)    G_a: N x F -> A: N x 4nF
template <class Exec, class S, class R, class Mode = default_mode_t<Exec>>
void pna_scale(const Exec& exec, const CMat<S, mem_t<Exec>>& mean, const CMat<S, mem_t<Exec>>& mn,
               const CMat<S, mem_t<Exec>>& mx, const CMat<S, mem_t<Exec>>& sd, const CMat<R, mem_t<Exec>>& scale,
               const Mat<S, mem_t<Exec>>& A) {
  const long N = long(A.extent(0)), F = long(mean.extent(1)), n = long(scale.extent(1));
  if constexpr (detail::is_host_row<Mode>) {
    // one row at a time, blocks of F contiguous channels (no index arithmetic per element)
    Kokkos::parallel_for("hydragnn::PNA::scale", Kokkos::RangePolicy<Exec>(exec, 0, N), KOKKOS_LAMBDA(const long i) {
      for (long k = 0; k < n; ++k) {
        const R sk = scale(i, k);
        for (long a = 0; a < 4; ++a) {
          const S* g = &(a == 0 ? mean : a == 1 ? mn : a == 2 ? mx : sd)(i, 0);
          S* y = &A(i, k * 4 * F + a * F);
          for (long f = 0; f < F; ++f) y[f] = S(g[f]) * sk;
        }
      }
    });
    return;
  }
  detail::for_each_element<Mode>(exec, "hydragnn::PNA::scale", N, 4 * n * F, KOKKOS_LAMBDA(const long i, const long c) {
    const long k = c / (4 * F), a = (c / F) % 4, f = c % F;
    const S g = a == 0 ? S(mean(i, f)) : a == 1 ? S(mn(i, f)) : a == 2 ? S(mx(i, f)) : S(sd(i, f));
    A(i, c) = g * scale(i, k);
  });
}

/// Gbar_a(i, f) = sum_k scale(i, k) Abar(i, k 4F + a F + f)   (k ascending; overwrites the four Gbar)
template <class Exec, class S, class R, class Mode = default_mode_t<Exec>>
void pna_scale_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Abar, const CMat<R, mem_t<Exec>>& scale,
                        const Mat<S, mem_t<Exec>>& meanbar, const Mat<S, mem_t<Exec>>& mnbar,
                        const Mat<S, mem_t<Exec>>& mxbar, const Mat<S, mem_t<Exec>>& sdbar) {
  const long N = long(Abar.extent(0)), F = long(meanbar.extent(1)), n = long(scale.extent(1));
  if constexpr (detail::is_host_row<Mode>) {
    // one row at a time: each output's sum over k in the same order, channels inner
    Kokkos::parallel_for("hydragnn::PNA::scale_backward", Kokkos::RangePolicy<Exec>(exec, 0, N), KOKKOS_LAMBDA(const long i) {
      for (long a = 0; a < 4; ++a) {
        S* y = &(a == 0 ? meanbar : a == 1 ? mnbar : a == 2 ? mxbar : sdbar)(i, 0);
        for (long f = 0; f < F; ++f) y[f] = S(0);
        for (long k = 0; k < n; ++k) {
          const R sk = scale(i, k);
          const S* x = &Abar(i, k * 4 * F + a * F);
          for (long f = 0; f < F; ++f) y[f] += x[f] * sk;
        }
      }
    });
    return;
  }
  detail::for_each_element<Mode>(exec, "hydragnn::PNA::scale_backward", N, 4 * F, KOKKOS_LAMBDA(const long i, const long c) {
    const long a = c / F, f = c % F;
    S acc(0);
    for (long k = 0; k < n; ++k) acc += Abar(i, k * 4 * F + a * F + f) * scale(i, k);
    (a == 0 ? meanbar : a == 1 ? mnbar : a == 2 ? mxbar : sdbar)(i, f) = acc;
  });
}

/// Backward of segment_max / segment_min with PyTorch's rule at ties (scatter_reduce amax / amin,
/// include_self = False): Ybar(s,c) is shared evenly by every row of segment s whose (primal) value
/// equals Y(s,c); the other rows get 0.           M: E x F, ptr: S+1, Y, Ybar: S x F -> Mbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void segment_select_backward_ties(const Exec& exec, const CMat<S, mem_t<Exec>>& M, const CVec<int, mem_t<Exec>>& ptr,
                                  const CMat<S, mem_t<Exec>>& Y, const CMat<S, mem_t<Exec>>& Ybar,
                                  const Mat<S, mem_t<Exec>>& Mbar, bool accumulate) {
  using R = real_t<S>;
  const long N = long(Y.extent(0)), F = long(Y.extent(1));
  if constexpr (detail::is_host_row<Mode>) {
    if (F <= detail::host_row_max) {
      // one segment at a time, its rows walked whole (channels inner): the same counts and shares
      Kokkos::parallel_for("hydragnn::PNA::select_backward_ties", Kokkos::RangePolicy<Exec>(exec, 0, N), KOKKOS_LAMBDA(const long s) {
        R y[detail::host_row_max];
        int ties[detail::host_row_max];
        S share[detail::host_row_max];
        for (long c = 0; c < F; ++c) y[c] = scalar_traits<S>::primal(Y(s, c)), ties[c] = 0;
        for (int k = ptr(s); k < ptr(s + 1); ++k)
          for (long c = 0; c < F; ++c) ties[c] += scalar_traits<S>::primal(M(k, c)) == y[c] ? 1 : 0;
        for (long c = 0; c < F; ++c) share[c] = ties[c] > 0 ? S(Ybar(s, c) / R(ties[c])) : S(0);
        for (int k = ptr(s); k < ptr(s + 1); ++k)
          for (long c = 0; c < F; ++c) detail::put(Mbar, k, c, scalar_traits<S>::primal(M(k, c)) == y[c] ? share[c] : S(0), accumulate);
      });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::PNA::select_backward_ties", N, F, KOKKOS_LAMBDA(const long s, const long c) {
    const R y = scalar_traits<S>::primal(Y(s, c));
    int ties = 0;
    for (int k = ptr(s); k < ptr(s + 1); ++k) ties += scalar_traits<S>::primal(M(k, c)) == y ? 1 : 0;
    const S share = ties > 0 ? S(Ybar(s, c) / R(ties)) : S(0);
    for (int k = ptr(s); k < ptr(s + 1); ++k)
      detail::put(Mbar, k, c, scalar_traits<S>::primal(M(k, c)) == y ? share : S(0), accumulate);
  });
}

/// The per-node intermediates of pna_aggregate (kept for its backward; the mean is segment_std's
/// own, which sums in the order segment_mean does, so it is computed once).
template <class S, class M>
struct PnaCache {
  Mat<S, M> mean, mn, mx, sd;
  Mat<int, M> arg_mn, arg_mx;
  /// The N x F matrices as views of a workspace (core/workspace.hpp) slot.
  template <class WS>
  static PnaCache in(WS& ws, const std::string& lbl, int slot, int N, int F) {
    PnaCache p;
    p.mean = ws.template mat<S>(lbl + ".mean", slot, N, F);
    p.mn = ws.template mat<S>(lbl + ".min", slot, N, F);
    p.mx = ws.template mat<S>(lbl + ".max", slot, N, F);
    p.sd = ws.template mat<S>(lbl + ".std", slot, N, F);
    p.arg_mn = ws.template mat<int>(lbl + ".arg_min", slot, N, F);
    p.arg_mx = ws.template mat<int>(lbl + ".arg_max", slot, N, F);
    return p;
  }
};

#ifdef HYDRAGNN_SIMD_PACKS
namespace detail {
/// segment_std (and its mean), segment_min and segment_max of real or dual messages in one walk of
/// each receiver's rows, L channels (a vector register of reals) at a time: each lane's sum and sum of squares
/// from zero over the rows ascending, its minimum and maximum taken by the reducers' rule (the
/// first row of the order wins ties), finished as StdRed finishes (std_finish), the channels past
/// the last whole vector by the reducers themselves: the bits of the three kernels. The N x F
/// outputs' rows must be contiguous (PnaCache's are).
template <class Exec, class S>
void pna_moments_select(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<int, mem_t<Exec>>& ptr,
                        const PnaCache<S, mem_t<Exec>>& c) {
  using Items = CsrItems<mem_t<Exec>>;
  const StdRed<S, mem_t<Exec>, Items> sd{Items{ptr}, X, c.sd, c.mean, real_t<S>(1e-5)};  // segment_std's eps
  const SelectRed<S, mem_t<Exec>, Items, -1> lo{Items{ptr}, X, c.mn, c.arg_mn};
  const SelectRed<S, mem_t<Exec>, Items, +1> hi{Items{ptr}, X, c.mx, c.arg_mx};
  const long N = long(c.mean.extent(0)), F = long(X.extent(1));
  Kokkos::parallel_for("hydragnn::PNA::aggregate", Kokkos::RangePolicy<Exec>(exec, 0, N), KOKKOS_LAMBDA(const long i) {
    using Rl = real_t<S>;
    using P = simd::pack_t<Rl>;
    using Q = simd::mask_t<Rl>;
    constexpr int L = simd::lanes<Rl>;
    const int k0 = ptr(i), k1 = ptr(i + 1), n = k1 - k0;
    long f0 = 0;
    if constexpr (scalar_traits<S>::is_dual) {
      // dual messages: L channels' primal and tangent planes (a row's 2L reals deinterleaved), each
      // Dual operation as its two plane operations (x x = (v v, d v + v d)), the minimum and
      // maximum taken by the primal; finished lane by lane by the reducers
      for (; f0 + L <= F; f0 += L) {
        P sv{}, sdt{}, qv{}, qd{}, mnv{}, mnd{}, mxv{}, mxd{};
        Q amn = Q{} - 1, amx = Q{} - 1;
        if (n > 0)
          simd::deinterleave(reinterpret_cast<const Rl*>(&X(k0, f0)), mnv, mnd), mxv = mnv, mxd = mnd,
              amn = amx = Q{} + k0;
        for (int k = k0; k < k1; ++k) {
          P v, d;
          simd::deinterleave(reinterpret_cast<const Rl*>(&X(k, f0)), v, d);
          sv += v, sdt += d;
          qv += v * v;
          qd += d * v + v * d;
          const Q tl = v < mnv, th = v > mxv;
          mnv = tl ? v : mnv, mnd = tl ? d : mnd;
          amn = tl ? Q{} + k : amn;
          mxv = th ? v : mxv, mxd = th ? d : mxd;
          amx = th ? Q{} + k : amx;
        }
        for (int j = 0; j < L; ++j) {
          MomentAcc<S> m{S(sv[j], sdt[j]), S(qv[j], qd[j])};
          ArgAcc<S> a{S(mnv[j], mnd[j]), int(amn[j])}, b{S(mxv[j], mxd[j]), int(amx[j])};
          sd.finish(m, i, f0 + j, n), lo.finish(a, i, f0 + j, n), hi.finish(b, i, f0 + j, n);
        }
      }
    } else
      for (; f0 + L <= F; f0 += L) {
        P s{}, q{}, mn{}, mx{};
        Q amn = Q{} - 1, amx = Q{} - 1;  // empty: 0 and -1, as the reducers' init
        if (n > 0) mn = mx = simd::load(&X(k0, f0)), amn = amx = Q{} + k0;
        for (int k = k0; k < k1; ++k) {
          const P x = simd::load(&X(k, f0));
          s += x;
          q += x * x;
          const Q tl = x < mn, th = x > mx;
          mn = tl ? x : mn;
          amn = tl ? Q{} + k : amn;
          mx = th ? x : mx;
          amx = th ? Q{} + k : amx;
        }
        P mean, out;
        std_finish<S>(s, q, n, sd.eps, mean, out);  // StdRed's finish, lane by lane
        simd::store(&c.mean(i, f0), mean);
        simd::store(&c.sd(i, f0), out);
        simd::store(&c.mn(i, f0), mn);
        simd::store(&c.mx(i, f0), mx);
        for (int j = 0; j < L; ++j) c.arg_mn(i, f0 + j) = int(amn[j]), c.arg_mx(i, f0 + j) = int(amx[j]);
      }
    for (; f0 < F; ++f0) {
      MomentAcc<S> m;
      ArgAcc<S> a, b;
      sd.init(m, i, f0), lo.init(a, i, f0), hi.init(b, i, f0);
      for (int k = k0; k < k1; ++k) sd.step(m, k, f0), lo.step(a, k, f0), hi.step(b, k, f0);
      sd.finish(m, i, f0, n), lo.finish(a, i, f0, n), hi.finish(b, i, f0, n);
    }
  });
}
}  // namespace detail
#endif

/// PNA aggregation of messages X (E x F) at their receivers: A = pna_scale(mean, min, max, std).
/// c's matrices (N x F) and A (N x 4nF) are the caller's. HostRow (host vector builds) walks each
/// receiver's rows once for the four statistics; otherwise one kernel each.
template <class Exec, class S, class R, class Mode = default_mode_t<Exec>>
void pna_aggregate(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<int, mem_t<Exec>>& ptr,
                   const CMat<R, mem_t<Exec>>& scale, const PnaCache<S, mem_t<Exec>>& c, const Mat<S, mem_t<Exec>>& A) {
  detail::check_mode<Mode>();
  bool fused = false;
#ifdef HYDRAGNN_SIMD_PACKS
  if constexpr (detail::is_host_row<Mode> && std::is_floating_point<real_t<S>>::value) {
    detail::pna_moments_select(exec, X, ptr, c);
    fused = true;
  }
#endif
  if (!fused) {
    segment_std<Exec, S, Mode>(exec, X, ptr, c.sd, c.mean);
    segment_min<Exec, S, Mode>(exec, X, ptr, c.mn, c.arg_mn);
    segment_max<Exec, S, Mode>(exec, X, ptr, c.mx, c.arg_mx);
  }
  pna_scale<Exec, S, R, Mode>(exec, c.mean, c.mn, c.mx, c.sd, scale, A);
}

/// Backward of pna_aggregate: Xbar (E x F) (+)= dA/dX^T Abar. gbar: four N x F scratch matrices
/// (mean, min, max, std cotangents), overwritten.
template <class Exec, class S, class R, class Mode = default_mode_t<Exec>>
void pna_aggregate_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<int, mem_t<Exec>>& ptr,
                            const CMat<R, mem_t<Exec>>& scale, const PnaCache<S, mem_t<Exec>>& c,
                            const CMat<S, mem_t<Exec>>& Abar, const PnaCache<S, mem_t<Exec>>& gbar,
                            const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  pna_scale_backward<Exec, S, R, Mode>(exec, Abar, scale, gbar.mean, gbar.mn, gbar.mx, gbar.sd);
  const long N = long(c.mean.extent(0)), F = long(X.extent(1));
  if constexpr (detail::is_host_row<Mode>) {
    if (F <= detail::host_row_max) {
      // one receiver per thread: its rows walked once to count the tied minima and maxima, once to
      // write Xbar, each element's terms added in the order of the sequence below (mean, min, max,
      // std), bitwise
      using Rl = real_t<S>;
      Kokkos::parallel_for("hydragnn::PNA::aggregate_backward", Kokkos::RangePolicy<Exec>(exec, 0, N), KOKKOS_LAMBDA(const long i) {
        const int k0 = ptr(i), k1 = ptr(i + 1), n = k1 - k0;
        Rl ymn[detail::host_row_max], ymx[detail::host_row_max];
        int tmn[detail::host_row_max], tmx[detail::host_row_max];
        S smn[detail::host_row_max], smx[detail::host_row_max];
        for (long f = 0; f < F; ++f) {
          ymn[f] = scalar_traits<S>::primal(c.mn(i, f)), ymx[f] = scalar_traits<S>::primal(c.mx(i, f));
          tmn[f] = 0, tmx[f] = 0;
        }
        for (int k = k0; k < k1; ++k)
          for (long f = 0; f < F; ++f) {
            const Rl x = scalar_traits<S>::primal(X(k, f));
            tmn[f] += x == ymn[f] ? 1 : 0;
            tmx[f] += x == ymx[f] ? 1 : 0;
          }
        // the terms that depend only on the receiver, once per receiver (the same operations)
        S sm[detail::host_row_max], ny[detail::host_row_max];
        for (long f = 0; f < F; ++f) {
          smn[f] = tmn[f] > 0 ? S(gbar.mn(i, f) / Rl(tmn[f])) : S(0);
          smx[f] = tmx[f] > 0 ? S(gbar.mx(i, f) / Rl(tmx[f])) : S(0);
          sm[f] = S(gbar.mean(i, f) / Rl(n));
          ny[f] = Rl(n) * c.sd(i, f);
        }
        for (int k = k0; k < k1; ++k)
          for (long f = 0; f < F; ++f) {
            const S xk = X(k, f);
            const Rl xp = scalar_traits<S>::primal(xk);
            S v = sm[f];
            if (accumulate) v = Xbar(k, f), v += sm[f];
            v += xp == ymn[f] ? smn[f] : S(0);
            v += xp == ymx[f] ? smx[f] : S(0);
            v += c.sd(i, f) > Rl(0) ? S(gbar.sd(i, f) * (xk - c.mean(i, f)) / ny[f]) : S(0);
            Xbar(k, f) = v;
          }
      });
      return;
    }
  }
  segment_mean_backward<Exec, S, Mode>(exec, gbar.mean, ptr, Xbar, accumulate);
  segment_select_backward_ties<Exec, S, Mode>(exec, X, ptr, c.mn, gbar.mn, Xbar, true);
  segment_select_backward_ties<Exec, S, Mode>(exec, X, ptr, c.mx, gbar.mx, Xbar, true);
  segment_std_backward<Exec, S, Mode>(exec, X, ptr, c.mean, c.sd, gbar.sd, Xbar, true);
}

/// PNA's edge term with a one-column edge feature a (the scaled edge length): the edge encoder
/// enc = Linear(1 -> F) and the edge block W_e (F x F, no bias) of pre_nns' one linear layer
/// compose, with no nonlinearity between them, to a rank-one map:
///   pre_e(enc(a))(e, o) = sum_k W_e(o, k) (a_e w_k + b_k) = a_e c_o + d_o,
///   c = W_e w, d = W_e b   (w, b: enc's weight column and bias),
/// one multiply-add per edge and channel in place of an E x F x F product (and of its two in the
/// backward). cd = [c; d] (2F); each sum over k ascending, in the weights' type.
/// The same layer 1 -> F comes out of the generic linear_compose (composed_shape, as PNAPlus uses
/// it) run by linear_forward / linear_backward_input; these kernels stay because that ran slower
/// on 63,751 edges at F = 128: forward 13 % (float) and 28 % (dual), the edge feature's cotangent
/// 30 % and 36 % (hydragnn_bench_dense --benchmark_filter=pna_edge_block, one Zen 3 core,
/// 2026-12-07; at F = 64 from 6 % faster to 12 % slower).
template <class Exec, class T, class Mode = default_mode_t<Exec>>
void pna_length_compose(const Exec& exec, const CVec<T, mem_t<Exec>>& p, const LinearShape& enc,
                        const LinearShape& pre_e, const Vec<T, mem_t<Exec>>& cd) {
  if (enc.in != 1 || enc.out != pre_e.in || pre_e.out != pre_e.in || pre_e.b_off >= 0)
    throw std::logic_error("hydragnn::PNA::length_compose: needs enc: 1 -> F and an edge block F -> F without bias");
  const long F = pre_e.out, we = pre_e.w_off, ld = pre_e.stride(), wenc = enc.w_off, ldenc = enc.stride(),
             benc = enc.b_off;
  detail::for_each_row<Mode>(exec, "hydragnn::PNA::length_compose", F, KOKKOS_LAMBDA(const long o) {
    T c(0), d(0);
    for (long k = 0; k < F; ++k) {
      const T wk = p(we + o * ld + k);
      c += wk * p(wenc + k * ldenc);
      if (benc >= 0) d += wk * p(benc + k);
    }
    cd(o) = c;
    cd(F + o) = d;
  });
}

/// m(e, o) = a(e, 0) c_o + d_o (pna_length_compose's cd; overwrites m).      a: E x 1 -> m: E x F
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void pna_length_message(const Exec& exec, const CMat<S, mem_t<Exec>>& a, const CVec<T, mem_t<Exec>>& cd,
                        const Mat<S, mem_t<Exec>>& m) {
  const long E = long(m.extent(0)), F = long(m.extent(1));
  detail::for_each_element<Mode>(exec, "hydragnn::PNA::length_message", E, F, KOKKOS_LAMBDA(const long e, const long o) {
    m(e, o) = a(e, 0) * cd(o) + cd(F + o);
  });
}

/// Backward of pna_length_message to the edge feature: abar(e, 0) += sum_o mbar(e, o) c_o (o ascending).
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void pna_length_message_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& mbar, const CVec<T, mem_t<Exec>>& cd,
                                 const Mat<S, mem_t<Exec>>& abar) {
  const long E = long(mbar.extent(0)), F = long(mbar.extent(1));
  detail::for_each_row<Mode>(exec, "hydragnn::PNA::length_message_backward", E, KOKKOS_LAMBDA(const long e) {
    S acc(0);
    for (long o = 0; o < F; ++o) acc += mbar(e, o) * cd(o);
    abar(e, 0) += acc;
  });
}

/// The sums pna_length_compose_backward takes: t(o) += sum_e a(e, 0) mbar(e, o) and
/// t(F + o) += sum_e mbar(e, o) (their parameter parts; e ascending), i.e. the weight and bias
/// cotangent of a 1 -> F linear layer, which linear_backward_params writes for this shape.
///                                                          a: E x 1, mbar: E x F -> t: 2F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void pna_length_sums(const Exec& exec, const CMat<S, mem_t<Exec>>& a, const CMat<S, mem_t<Exec>>& mbar,
                     const Vec<real_t<S>, mem_t<Exec>>& t) {
  const int F = int(mbar.extent(1));
  if (a.extent(1) != 1 || a.extent(0) != mbar.extent(0) || t.extent(0) != 2 * std::size_t(F))
    throw std::logic_error("hydragnn::PNA::length_sums: needs a: E x 1, mbar: E x F and t: 2F");
  LinearShape ts;
  ts.in = 1;
  ts.out = F;
  ts.w_off = 0;
  ts.b_off = F;
  linear_backward_params<Exec, S, Mode>(exec, a, mbar, ts, t);
}

/// Parameter cotangent of pna_length_message through c and d, given t = [t1; t0] (2F, real: the
/// parameter parts of sum_e a_e mbar(e, o) and of sum_e mbar(e, o), as linear_backward_params of a
/// 1 -> F layer writes them): with t1, t0 linear in mbar,
///   gW_e(o, k) += t1_o w_k + t0_o b_k,   gw_k += sum_o W_e(o, k) t1_o,   gb_k += sum_o W_e(o, k) t0_o
/// (o ascending). Row r writes W_e's row r and enc's entry r.
template <class Exec, class T, class R, class Mode = default_mode_t<Exec>>
void pna_length_compose_backward(const Exec& exec, const CVec<T, mem_t<Exec>>& p, const LinearShape& enc,
                                 const LinearShape& pre_e, const CVec<R, mem_t<Exec>>& t, const Vec<R, mem_t<Exec>>& g) {
  const long F = pre_e.out, we = pre_e.w_off, ld = pre_e.stride(), wenc = enc.w_off, ldenc = enc.stride(),
             benc = enc.b_off;
  detail::for_each_row<Mode>(exec, "hydragnn::PNA::length_compose_backward", F, KOKKOS_LAMBDA(const long r) {
    const R t1 = t(r), t0 = t(F + r);
    for (long k = 0; k < F; ++k) {
      R v = t1 * R(p(wenc + k * ldenc));
      if (benc >= 0) v += t0 * R(p(benc + k));
      g(we + r * ld + k) += v;
    }
    R gw(0), gb(0);
    for (long o = 0; o < F; ++o) {
      const R wo = R(p(we + o * ld + r));
      gw += wo * t(o);
      gb += wo * t(F + o);
    }
    g(wenc + r * ldenc) += gw;
    if (benc >= 0) g(benc + r) += gb;
  });
}

/// PNAEq's edge direction: HydraGNN's normalised edge vector (get_edge_vectors_and_lengths with
/// normalize=True), which points from the aggregating atom to its neighbour, -r_e here:
///   u(e,a) = -r(e,a) / (d(e) + eps),  eps = 1e-9.                           r: E x 3, d: E -> u: E x 3
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void pnaeq_direction(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CVec<S, mem_t<Exec>>& d,
                     const Mat<S, mem_t<Exec>>& u) {
  using R = real_t<S>;
  detail::for_each_row<Mode>(exec, "hydragnn::PNAEqConv::direction", long(r.extent(0)), KOKKOS_LAMBDA(const long e) {
    const S dn = d(e) + R(1e-9);
    for (int a = 0; a < 3; ++a) u(e, a) = -r(e, a) / dn;
  });
}

/// Backward of pnaeq_direction: rbar(e,a) += -ubar(e,a) / (d + eps),
/// dbar(e) += sum_a ubar(e,a) r(e,a) / (d + eps)^2.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void pnaeq_direction_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CVec<S, mem_t<Exec>>& d,
                              const CMat<S, mem_t<Exec>>& ubar, const Mat<S, mem_t<Exec>>& rbar,
                              const Vec<S, mem_t<Exec>>& dbar) {
  using R = real_t<S>;
  detail::for_each_row<Mode>(exec, "hydragnn::PNAEqConv::direction_backward", long(r.extent(0)), KOKKOS_LAMBDA(const long e) {
    const S dn = d(e) + R(1e-9);
    S dot(0);
    for (int a = 0; a < 3; ++a) {
      rbar(e, a) += -ubar(e, a) / dn;
      dot += ubar(e, a) * r(e, a);
    }
    dbar(e) += dot / (dn * dn);
  });
}

namespace detail {
/// y[f] = a[f] b[f], f < n: one row block of pnaeq_filter, the basis gate and their backward
/// (restrict: the stores change neither input, so the loop vectorises).
template <class S>
KOKKOS_INLINE_FUNCTION void product_row(const S* KOKKOS_RESTRICT a, const S* KOKKOS_RESTRICT b, S* KOKKOS_RESTRICT y,
                                        const long n) {
  for (long f = 0; f < n; ++f) y[f] = a[f] * b[f];
}
}  // namespace detail

/// PNAEq's filter: the product of the message MLP output and the projected basis, split into its
/// three column blocks [gate_state_vector | gate_edge_vector | message_scalar]:
///   Y_k(e,f) = P(e, kF+f) Q(e, kF+f),  k = 0, 1, 2.            P, Q: E x 3F -> Y0, Y1, Y2: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void pnaeq_filter(const Exec& exec, const CMat<S, mem_t<Exec>>& P, const CMat<S, mem_t<Exec>>& Q,
                  const Mat<S, mem_t<Exec>>& Y0, const Mat<S, mem_t<Exec>>& Y1, const Mat<S, mem_t<Exec>>& Y2) {
  const long E = long(Y0.extent(0)), F = long(Y0.extent(1));
  if constexpr (detail::is_host_row<Mode>) {
    // a row per thread, each column block a contiguous run (the same products)
    Kokkos::parallel_for("hydragnn::PNAEqConv::filter", Kokkos::RangePolicy<Exec>(exec, 0, E), KOKKOS_LAMBDA(const long e) {
      detail::product_row(&P(e, 0), &Q(e, 0), &Y0(e, 0), F);
      detail::product_row(&P(e, F), &Q(e, F), &Y1(e, 0), F);
      detail::product_row(&P(e, 2 * F), &Q(e, 2 * F), &Y2(e, 0), F);
    });
    return;
  }
  detail::for_each_element<Mode>(exec, "hydragnn::PNAEqConv::filter", E, 3 * F, KOKKOS_LAMBDA(const long e, const long c) {
    const long k = c / F, f = c % F;
    (k == 0 ? Y0 : k == 1 ? Y1 : Y2)(e, f) = P(e, c) * Q(e, c);
  });
}

/// Backward of pnaeq_filter: Pbar(e, kF+f) = Ybar_k(e,f) Q(e, kF+f), Qbar likewise with P
/// (overwritten; Qbar of extent 0 is skipped).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void pnaeq_filter_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& P, const CMat<S, mem_t<Exec>>& Q,
                           const CMat<S, mem_t<Exec>>& Y0bar, const CMat<S, mem_t<Exec>>& Y1bar,
                           const CMat<S, mem_t<Exec>>& Y2bar, const Mat<S, mem_t<Exec>>& Pbar,
                           const Mat<S, mem_t<Exec>>& Qbar) {
  const long E = long(Y0bar.extent(0)), F = long(Y0bar.extent(1));
  const bool want_q = Qbar.extent(0) > 0;
  if constexpr (detail::is_host_row<Mode>) {
    Kokkos::parallel_for(
        "hydragnn::PNAEqConv::filter_backward", Kokkos::RangePolicy<Exec>(exec, 0, E), KOKKOS_LAMBDA(const long e) {
          const S* yb[3] = {&Y0bar(e, 0), &Y1bar(e, 0), &Y2bar(e, 0)};
          for (int k = 0; k < 3; ++k) {
            detail::product_row(yb[k], &Q(e, k * F), &Pbar(e, k * F), F);
            if (want_q) detail::product_row(yb[k], &P(e, k * F), &Qbar(e, k * F), F);
          }
        });
    return;
  }
  detail::for_each_element<Mode>(exec, "hydragnn::PNAEqConv::filter_backward", E, 3 * F, KOKKOS_LAMBDA(const long e, const long c) {
    const long k = c / F, f = c % F;
    const S yb = (k == 0 ? Y0bar : k == 1 ? Y1bar : Y2bar)(e, f);
    Pbar(e, c) = yb * Q(e, c);
    if (want_q) Qbar(e, c) = yb * P(e, c);
  });
}

/// A message gated by a projection of the radial basis, Y = P * (rbf W^T) (Linear(K, C), no bias:
/// PNAPlus's m = m0 * rbf_lin(rbf), PNAEq's filter), HostRow: the projection Q formed a chunk of
/// rows at a time in a cache-resident buffer instead of stored as an E x C matrix, and its backward
/// forming Q again and Qbar a chunk at a time. basis_gate_fuses: whether these run (HostRow on a
/// host space, with W^T in wts.pt as linear_forward's HostRow path reads it; else the op sequence).
template <class Exec, class T, class Mode = default_mode_t<Exec>>
bool basis_gate_fuses(const Exec& exec, const Weights<T, mem_t<Exec>>& wts, const LinearShape& sh) {
  (void)exec;
  if constexpr (detail::host_rows_on_host<Mode, Exec>)
    return sh.b_off < 0 && wts.transposed(sh) && wts.p.extent(0) > 0;
  else
    return (void)wts, (void)sh, false;
}
/// Parts of the fused basis-gate passes: one per thread of exec (rows split evenly; no sum crosses a row).
template <class Exec>
long basis_gate_parts(const Exec& exec) {
  const long c = long(exec.concurrency());
  return c < 1 ? 1 : c;
}
/// Rows of the fused basis-gate passes' chunk buffer (its columns: C, the projection's outputs).
inline long basis_gate_buffer_rows(long parts) { return parts * detail::dense_chunk_rows; }

namespace detail {
/// Rows [e0, e1) of part `part` of P over E rows.
KOKKOS_INLINE_FUNCTION void basis_gate_part_rows(long E, long P, long part, long& e0, long& e1) {
  e0 = E * part / P;
  e1 = E * (part + 1) / P;
}

/// Rows [i0, i0 + n) of the projection Q = rbf W^T into q (n x C; linear_forward's HostRow product,
/// no bias, bitwise).
template <class S, class M>
KOKKOS_INLINE_FUNCTION void basis_chunk(const CMat<S, M>& rbf, const CVec<S, M>& p, const CVec<S, M>& pt,
                                        const LinearShape& sh, long i0, long n, S* q) {
  rows_product_here<S>(&rbf(i0, 0), long(rbf.stride(0)), long(rbf.extent(1)), pt.data() + sh.wt_off, sh.out, sh.out, q,
                       sh.out, n, BiasInit<S, M>{p, -1}, NoRowsPost());
}

/// The fused basis gate's forward, a work item per part: Y's nb column blocks of F in Y0, Y1, Y2.
template <class S, class M>
struct BasisGate {
  CMat<S, M> P, rbf;
  CVec<S, M> p, pt;
  LinearShape sh;
  Mat<S, M> Y0, Y1, Y2, qb;
  long parts;
  KOKKOS_INLINE_FUNCTION void operator()(const long part) const {
    constexpr long CH = dense_chunk_rows;
    const long E = long(Y0.extent(0)), F = long(Y0.extent(1)), C = sh.out;
    const Mat<S, M> Y[3] = {Y0, Y1, Y2};
    long e0, e1;
    basis_gate_part_rows(E, parts, part, e0, e1);
    S* const q = part_chunk(qb, part);
    for (long i0 = e0; i0 < e1; i0 += CH) {
      const long n = chunk_height(i0, e1, CH);
      basis_chunk(rbf, p, pt, sh, i0, n, q);  // Q rows, then the products
      for (long r = 0; r < n; ++r)
        for (long k = 0; k * F < C; ++k) product_row(&P(i0 + r, k * F), q + r * C + k * F, &Y[k](i0 + r, 0), F);
    }
  }
};

/// The fused basis gate's backward, a work item per part: Pbar = Ybar Q (overwritten) and, unless
/// rbfbar is empty, rbfbar (+)= (Ybar P) W, the row's Q turned into its Qbar in the buffer.
template <class S, class M>
struct BasisGateBackward {
  CMat<S, M> P, rbf;
  CVec<S, M> p, pt;
  LinearShape sh;
  CMat<S, M> Y0bar, Y1bar, Y2bar;
  Mat<S, M> Pbar, rbfbar, qb;
  bool accumulate;
  long parts;
  const S* bedge;  // W's packed last column tile (pack_edge_columns), or null
  KOKKOS_INLINE_FUNCTION void operator()(const long part) const {
    constexpr long CH = dense_chunk_rows;
    const long E = long(Y0bar.extent(0)), F = long(Y0bar.extent(1)), C = sh.out, K = long(rbf.extent(1));
    const bool want_rbf = rbfbar.extent(0) > 0;
    const CMat<S, M> Yb[3] = {Y0bar, Y1bar, Y2bar};
    long e0, e1;
    basis_gate_part_rows(E, parts, part, e0, e1);
    S* const q = part_chunk(qb, part);
    for (long i0 = e0; i0 < e1; i0 += CH) {
      const long n = chunk_height(i0, e1, CH);
      basis_chunk(rbf, p, pt, sh, i0, n, q);
      for (long r = 0; r < n; ++r) {
        const long e = i0 + r;
        for (long k = 0; k * F < C; ++k) {
          S* qr = q + r * C + k * F;
          product_row(&Yb[k](e, 0), qr, &Pbar(e, k * F), F);    // Pbar = Ybar Q
          if (want_rbf) product_row(&Yb[k](e, 0), &P(e, k * F), qr, F);  // Qbar = Ybar P
        }
      }
      // rbfbar rows (+)= Qbar W (linear_backward_input's HostRow product)
      if (want_rbf)
        rows_product_here<S>(q, C, C, p.data() + sh.w_off, sh.stride(), sh.in, &rbfbar(i0, 0), long(rbfbar.stride(0)), n,
                             AccumulateInit<S, M>{Mat<S, M>(&rbfbar(i0, 0), n, K), accumulate}, NoRowsPost(), bedge);
    }
  }
};

/// The checks and launches of the fused basis gate (Y: nb blocks of F columns, nb F = C).
template <class Exec, class S>
void basis_gate_run(const Exec& exec, const char* what, const CMat<S, mem_t<Exec>>& P, const CMat<S, mem_t<Exec>>& rbf,
                    const Weights<S, mem_t<Exec>>& wts, const LinearShape& sh, const Mat<S, mem_t<Exec>>& Y0,
                    const Mat<S, mem_t<Exec>>& Y1, const Mat<S, mem_t<Exec>>& Y2, const Mat<S, mem_t<Exec>>& qb, long parts) {
  const long nb = Y2.extent(0) > 0 ? 3 : 1, F = long(Y0.extent(1));
  if (!basis_gate_fuses<Exec>(exec, wts, sh))
    throw std::logic_error(std::string(what) + ": runs fused only (HostRow on the host, W^T present, no bias)");
  if (parts < 1 || long(qb.extent(0)) < basis_gate_buffer_rows(parts) || long(qb.extent(1)) != sh.out ||
      sh.out != nb * F || long(sh.in) != long(rbf.extent(1)) || long(P.extent(1)) != sh.out)
    throw std::logic_error(std::string(what) + ": shapes or buffer do not match (qb: a chunk per part x the outputs)");
  Kokkos::parallel_for(what, Kokkos::RangePolicy<Exec>(exec, 0, parts),
                       BasisGate<S, mem_t<Exec>>{P, rbf, wts.p, wts.pt, sh, Y0, Y1, Y2, qb, parts});
}
template <class Exec, class S>
void basis_gate_backward_run(const Exec& exec, const char* what, const CMat<S, mem_t<Exec>>& P,
                             const CMat<S, mem_t<Exec>>& rbf, const Weights<S, mem_t<Exec>>& wts, const LinearShape& sh,
                             const CMat<S, mem_t<Exec>>& Y0bar, const CMat<S, mem_t<Exec>>& Y1bar,
                             const CMat<S, mem_t<Exec>>& Y2bar, const Mat<S, mem_t<Exec>>& Pbar,
                             const Mat<S, mem_t<Exec>>& rbfbar, bool accumulate, const Mat<S, mem_t<Exec>>& qb, long parts) {
  const long nb = Y2bar.extent(0) > 0 ? 3 : 1, F = long(Y0bar.extent(1));
  if (!basis_gate_fuses<Exec>(exec, wts, sh))
    throw std::logic_error(std::string(what) + ": runs fused only (HostRow on the host, W^T present, no bias)");
  if (parts < 1 || long(qb.extent(0)) < basis_gate_buffer_rows(parts) || long(qb.extent(1)) != sh.out ||
      sh.out != nb * F || long(sh.in) != long(rbf.extent(1)) || long(P.extent(1)) != sh.out ||
      long(Pbar.extent(1)) != sh.out || (rbfbar.extent(0) > 0 && long(rbfbar.extent(1)) != sh.in))
    throw std::logic_error(std::string(what) + ": shapes or buffer do not match (qb: a chunk per part x the outputs)");
  if constexpr (host_rows_on_host<default_mode_t<Exec>, Exec>) {
    // W's narrow last column tile packed once, as host_rows_product does
    EdgePack<S> bedge_buf;
    const S* bedge = pack_edge_columns<S>(wts.p.data() + sh.w_off, sh.stride(), sh.out, sh.in, bedge_buf) ? &bedge_buf[0][0]
                                                                                                         : nullptr;
    Kokkos::parallel_for(what, Kokkos::RangePolicy<Exec>(exec, 0, parts),
                         BasisGateBackward<S, mem_t<Exec>>{P, rbf, wts.p, wts.pt, sh, Y0bar, Y1bar, Y2bar, Pbar, rbfbar,
                                                           qb, accumulate, parts, bedge});
    exec.fence();  // bedge_buf lives on this stack
  }
}
}  // namespace detail

/// Y = P * (rbf W^T), fused (basis_gate_fuses): hadamard(P, linear_forward(rbf)) bitwise without
/// the E x C projection; the rows in `parts` parts, a thread each (basis_gate_parts); qb:
/// basis_gate_buffer_rows(parts) x C.                     P: E x C, rbf: E x K -> Y: E x C
template <class Exec, class S>
void basis_gate(const Exec& exec, const CMat<S, mem_t<Exec>>& P, const CMat<S, mem_t<Exec>>& rbf,
                const Weights<S, mem_t<Exec>>& wts, const LinearShape& sh, const Mat<S, mem_t<Exec>>& Y,
                const Mat<S, mem_t<Exec>>& qb, long parts) {
  const Mat<S, mem_t<Exec>> none;
  detail::basis_gate_run<Exec, S>(exec, "hydragnn::Segment::basis_gate", P, rbf, wts, sh, Y, none, none, qb, parts);
}
/// Backward of basis_gate without the projection's weight gradient: Pbar = Ybar Q (overwritten;
/// hadamard_backward) and rbfbar (+)= Qbar W (linear_backward_input, accumulate or not), bitwise,
/// Q and Qbar formed a chunk at a time in qb (rbfbar of extent 0: Pbar only).
template <class Exec, class S>
void basis_gate_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& P, const CMat<S, mem_t<Exec>>& rbf,
                         const Weights<S, mem_t<Exec>>& wts, const LinearShape& sh, const CMat<S, mem_t<Exec>>& Ybar,
                         const Mat<S, mem_t<Exec>>& Pbar, const Mat<S, mem_t<Exec>>& rbfbar, bool accumulate,
                         const Mat<S, mem_t<Exec>>& qb, long parts) {
  const CMat<S, mem_t<Exec>> none;
  detail::basis_gate_backward_run<Exec, S>(exec, "hydragnn::Segment::basis_gate_backward", P, rbf, wts, sh, Ybar, none,
                                           none, Pbar, rbfbar, accumulate, qb, parts);
}

/// PNAEq's filter with its basis projection Q = rbf W^T (Linear(K, 3F), no bias) fused: the
/// basis gate split into pnaeq_filter's three column blocks, pnaeq_filter(P, linear_forward(rbf))
/// bitwise.                                   P: E x 3F, rbf: E x K -> Y0, Y1, Y2: E x F
template <class Exec, class S>
void pnaeq_filter_basis(const Exec& exec, const CMat<S, mem_t<Exec>>& P, const CMat<S, mem_t<Exec>>& rbf,
                        const Weights<S, mem_t<Exec>>& wts, const LinearShape& sh, const Mat<S, mem_t<Exec>>& Y0,
                        const Mat<S, mem_t<Exec>>& Y1, const Mat<S, mem_t<Exec>>& Y2, const Mat<S, mem_t<Exec>>& qb,
                        long parts) {
  if (Y1.extent(0) != Y0.extent(0) || Y2.extent(0) != Y0.extent(0))
    throw std::logic_error("pnaeq_filter_basis: Y0, Y1, Y2 must have the same rows");
  detail::basis_gate_run<Exec, S>(exec, "hydragnn::PNAEqConv::filter_basis", P, rbf, wts, sh, Y0, Y1, Y2, qb, parts);
}
/// Backward of pnaeq_filter_basis without the projection's weight gradient: Pbar as
/// pnaeq_filter_backward and rbfbar += Qbar W as linear_backward_input (accumulate), bitwise.
template <class Exec, class S>
void pnaeq_filter_basis_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& P, const CMat<S, mem_t<Exec>>& rbf,
                                 const Weights<S, mem_t<Exec>>& wts, const LinearShape& sh,
                                 const CMat<S, mem_t<Exec>>& Y0bar, const CMat<S, mem_t<Exec>>& Y1bar,
                                 const CMat<S, mem_t<Exec>>& Y2bar, const Mat<S, mem_t<Exec>>& Pbar,
                                 const Mat<S, mem_t<Exec>>& rbfbar, const Mat<S, mem_t<Exec>>& qb, long parts) {
  if (Y1bar.extent(0) != Y0bar.extent(0) || Y2bar.extent(0) != Y0bar.extent(0))
    throw std::logic_error("pnaeq_filter_basis_backward: Y0bar, Y1bar, Y2bar must have the same rows");
  detail::basis_gate_backward_run<Exec, S>(exec, "hydragnn::PNAEqConv::filter_basis_backward", P, rbf, wts, sh, Y0bar,
                                           Y1bar, Y2bar, Pbar, rbfbar, true, qb, parts);
}

/// PNAEq's vector message (see the top): vout = v + sum over each receiver's edges.
///                   v: N x 3 x F, X0, X1: E x F, u: E x 3, ptr: N+1, src: E -> vout: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void pnaeq_vector_message(const Exec& exec, const CVMat<S, mem_t<Exec>>& v, const CMat<S, mem_t<Exec>>& X0,
                          const CMat<S, mem_t<Exec>>& X1, const CMat<S, mem_t<Exec>>& u,
                          const CVec<int, mem_t<Exec>>& ptr, const CVec<int, mem_t<Exec>>& src,
                          const VMat<S, mem_t<Exec>>& vout) {
  const long N = long(vout.extent(0)), F = long(vout.extent(2));
  if constexpr (detail::is_host_row<Mode>) {
    if (F <= detail::host_row_max) {
      // one receiver per thread, its edges outermost and the channels innermost (contiguous rows);
      // each (i, a, f) sums its edges in the same order as below
      Kokkos::parallel_for("hydragnn::PNAEqConv::vector_message", Kokkos::RangePolicy<Exec>(exec, 0, N), KOKKOS_LAMBDA(const long i) {
        S acc[3][detail::host_row_max];
        for (int a = 0; a < 3; ++a)
          for (long f = 0; f < F; ++f) acc[a][f] = v(i, a, f);
        for (int e = ptr(i); e < ptr(i + 1); ++e) {
          const int j = src(e);
          const S u0 = u(e, 0), u1 = u(e, 1), u2 = u(e, 2);
          for (long f = 0; f < F; ++f) {
            const S x0 = X0(e, f), x1 = X1(e, f);
            acc[0][f] += v(j, 0, f) * x0 + x1 * u0;
            acc[1][f] += v(j, 1, f) * x0 + x1 * u1;
            acc[2][f] += v(j, 2, f) * x0 + x1 * u2;
          }
        }
        for (int a = 0; a < 3; ++a)
          for (long f = 0; f < F; ++f) vout(i, a, f) = acc[a][f];
      });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::PNAEqConv::vector_message", N, F, KOKKOS_LAMBDA(const long i, const long f) {
    S a0 = v(i, 0, f), a1 = v(i, 1, f), a2 = v(i, 2, f);
    for (int e = ptr(i); e < ptr(i + 1); ++e) {
      const int j = src(e);
      const S x0 = X0(e, f), x1 = X1(e, f);
      a0 += v(j, 0, f) * x0 + x1 * u(e, 0);
      a1 += v(j, 1, f) * x0 + x1 * u(e, 1);
      a2 += v(j, 2, f) * x0 + x1 * u(e, 2);
    }
    vout(i, 0, f) = a0;
    vout(i, 1, f) = a1;
    vout(i, 2, f) = a2;
  });
}

/// Backward of pnaeq_vector_message given voutbar:
///   X0bar(e,f) = sum_a voutbar(i,a,f) v(j,a,f),  X1bar(e,f) = sum_a voutbar(i,a,f) u(e,a)   (overwritten)
///   ubar(e,a) += sum_f voutbar(i,a,f) X1(e,f)                       (f ascending; skipped if empty)
///   vbar(j,a,f) = voutbar(j,a,f) + sum_{e: src(e)=j} voutbar(dst(e),a,f) X0(e,f)   (overwritten)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void pnaeq_vector_message_backward(const Exec& exec, const CVMat<S, mem_t<Exec>>& v, const CMat<S, mem_t<Exec>>& X0,
                                   const CMat<S, mem_t<Exec>>& X1, const CMat<S, mem_t<Exec>>& u,
                                   const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& src,
                                   const CVec<int, mem_t<Exec>>& send_perm, const CVec<int, mem_t<Exec>>& send_ptr,
                                   const CVMat<S, mem_t<Exec>>& voutbar, const Mat<S, mem_t<Exec>>& X0bar,
                                   const Mat<S, mem_t<Exec>>& X1bar, const Mat<S, mem_t<Exec>>& ubar,
                                   const VMat<S, mem_t<Exec>>& vbar) {
  const long E = long(X0.extent(0)), F = long(X0.extent(1)), N = long(v.extent(0));
  detail::for_each_element<Mode>(exec, "hydragnn::PNAEqConv::vector_message_backward_edges", E, F,
                                 KOKKOS_LAMBDA(const long e, const long f) {
                                   const int i = dst(e), j = src(e);
                                   const S b0 = voutbar(i, 0, f), b1 = voutbar(i, 1, f), b2 = voutbar(i, 2, f);
                                   S x0(0), x1(0);
                                   x0 += b0 * v(j, 0, f);
                                   x1 += b0 * u(e, 0);
                                   x0 += b1 * v(j, 1, f);
                                   x1 += b1 * u(e, 1);
                                   x0 += b2 * v(j, 2, f);
                                   x1 += b2 * u(e, 2);
                                   X0bar(e, f) = x0;
                                   X1bar(e, f) = x1;
                                 });
  if (ubar.extent(0) > 0)
    detail::for_each_element<Mode>(exec, "hydragnn::PNAEqConv::vector_message_backward_u", E, 3,
                                   KOKKOS_LAMBDA(const long e, const long a) {
                                     const int i = dst(e);
                                     S acc = ubar(e, a);
                                     for (long f = 0; f < F; ++f) acc += voutbar(i, a, f) * X1(e, f);
                                     ubar(e, a) = acc;
                                   });
  if constexpr (detail::is_host_row<Mode>) {
    if (F <= detail::host_row_max) {
      // one sender per thread, its edges outermost and the channels innermost; same sums per (j, a, f)
      Kokkos::parallel_for(
          "hydragnn::PNAEqConv::vector_message_backward_nodes", Kokkos::RangePolicy<Exec>(exec, 0, N),
          KOKKOS_LAMBDA(const long j) {
            S acc[3][detail::host_row_max];
            for (int a = 0; a < 3; ++a)
              for (long f = 0; f < F; ++f) acc[a][f] = voutbar(j, a, f);
            for (int q = send_ptr(j); q < send_ptr(j + 1); ++q) {
              const int e = send_perm(q), i = dst(e);
              for (long f = 0; f < F; ++f) {
                const S x0 = X0(e, f);
                acc[0][f] += voutbar(i, 0, f) * x0;
                acc[1][f] += voutbar(i, 1, f) * x0;
                acc[2][f] += voutbar(i, 2, f) * x0;
              }
            }
            for (int a = 0; a < 3; ++a)
              for (long f = 0; f < F; ++f) vbar(j, a, f) = acc[a][f];
          });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::PNAEqConv::vector_message_backward_nodes", N, F,
                                 KOKKOS_LAMBDA(const long j, const long f) {
                                   S a0 = voutbar(j, 0, f), a1 = voutbar(j, 1, f), a2 = voutbar(j, 2, f);
                                   for (int q = send_ptr(j); q < send_ptr(j + 1); ++q) {
                                     const int e = send_perm(q), i = dst(e);
                                     const S x0 = X0(e, f);
                                     a0 += voutbar(i, 0, f) * x0;
                                     a1 += voutbar(i, 1, f) * x0;
                                     a2 += voutbar(i, 2, f) * x0;
                                   }
                                   vbar(j, 0, f) = a0;
                                   vbar(j, 1, f) = a1;
                                   vbar(j, 2, f) = a2;
                                 });
}

}  // namespace kernels
}  // namespace hydragnn
