// SPDX-License-Identifier: BSD-3-Clause
// The multi-task loss on the device: per-row terms and cotangents, then fixed-order column sums.
//
//   l(x) = x^2 (mse), |x| (mae) or smooth_l1(x) (x^2/2 for |x| < 1, |x| - 1/2 beyond: torch's
//   SmoothL1Loss, beta 1);  d = prediction - target, NaN targets are unlabelled
//   (rmse runs these kernels as mse, then again with rescaled weights: autodiff/loss.hpp)
//   energy (per graph g, n_g atoms):  w_E l(d)/n_e + w_e l(d/n_g)/n_e
//   forces (per component):           w_F l(d)/n_f
//   stress (per component, V_g > 0):  w_S l(d)/n_s
//   direct head k (per component):    w_k l(d)/n_k
//   GaussianNLL direct head k (torch GaussianNLLLoss, eps 1e-6, HydraGNN's variance output): the
//   head's rows hold [mu | s], var = s^2, v = max(var, 1e-6):  w_k (log v + d^2 / v) / 2 / n_k
// Every kernel writes one row of partial sums per graph / atom / head row (columns: loss, |d|, d^2
// and for energies |d|/n, (d/n)^2) and the cotangent dL/d(prediction); column_sums adds each column
// in row order (one thread per column): no atomics, the same result on every backend.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>

#include <cmath>

namespace hydragnn {
namespace kernels {

/// The elementwise loss functions l(d) of the component terms.
enum class ElementLoss { MSE, MAE, SmoothL1 };

namespace loss_detail {
KOKKOS_INLINE_FUNCTION double lval(double x, ElementLoss k) {
  const double a = x < 0 ? -x : x;
  if (k == ElementLoss::MAE) return a;
  if (k == ElementLoss::SmoothL1) return a < 1.0 ? 0.5 * x * x : a - 0.5;
  return x * x;
}
KOKKOS_INLINE_FUNCTION double lgrad(double x, ElementLoss k) {
  const double sign = x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
  if (k == ElementLoss::MAE) return sign;
  if (k == ElementLoss::SmoothL1) return (x < 1.0 && x > -1.0) ? x : sign;
  return 2 * x;
}
KOKKOS_INLINE_FUNCTION bool labelled(double t) { return t == t; }  // not NaN
}  // namespace loss_detail

/// Energies: part(g, 0..4) = {loss, |d|, d^2, |d|/n, (d/n)^2}; abar(g) = dL/dE_g.
template <class Exec>
void energy_loss(const Exec& exec, const CVec<double, mem_t<Exec>>& E, const CVec<double, mem_t<Exec>>& Et,
                 const CVec<double, mem_t<Exec>>& inv_count, double w_e, double w_epa, double inv_n, ElementLoss mae,
                 const Mat<double, mem_t<Exec>>& part, const Vec<double, mem_t<Exec>>& abar) {
  Kokkos::parallel_for(
      "hydragnn::Loss::energy", Kokkos::RangePolicy<Exec>(exec, 0, long(E.extent(0))), KOKKOS_LAMBDA(const long g) {
        using namespace loss_detail;
        for (int q = 0; q < 5; ++q) part(g, q) = 0;
        abar(g) = 0;
        if (!labelled(Et(g))) return;
        const double d = E(g) - Et(g), inv = inv_count(g);
        part(g, 0) = (w_e * lval(d, mae) + w_epa * lval(d * inv, mae)) * inv_n;
        part(g, 1) = d < 0 ? -d : d;
        part(g, 2) = d * d;
        part(g, 3) = (d < 0 ? -d : d) * inv;
        part(g, 4) = d * d * inv * inv;
        abar(g) = (w_e * lgrad(d, mae) + w_epa * lgrad(d * inv, mae) * inv) * inv_n;
      });
}

/// Row-wise terms of a plain component loss (forces, stress, direct heads):
/// part(i, 0..2) = {loss, |d|, d^2} summed over the row's components; cot(i,c) = dL/dY(i,c).
/// valid(i) < 0 marks rows whose prediction is undefined (stress of a non-periodic graph); pass an
/// empty view when every row is valid.
template <class Exec, class S>
void component_loss(const Exec& exec, const CMat<S, mem_t<Exec>>& Y, const CMat<double, mem_t<Exec>>& Yt,
                    const CVec<double, mem_t<Exec>>& valid, double weight, double inv_n, ElementLoss mae,
                    const Mat<double, mem_t<Exec>>& part, const Mat<double, mem_t<Exec>>& cot) {
  const long C = long(Y.extent(1));
  const bool check = valid.extent(0) > 0;
  Kokkos::parallel_for(
      "hydragnn::Loss::components", Kokkos::RangePolicy<Exec>(exec, 0, long(Y.extent(0))), KOKKOS_LAMBDA(const long i) {
        using namespace loss_detail;
        double l = 0, a = 0, s = 0;
        const bool ok = !check || valid(i) > 0;
        for (long c = 0; c < C; ++c) {
          const double t = Yt(i, c);
          double g = 0;
          if (ok && labelled(t)) {
            const double d = double(scalar_traits<S>::primal(Y(i, c))) - t;
            l += weight * lval(d, mae) * inv_n;
            a += d < 0 ? -d : d;
            s += d * d;
            g = weight * lgrad(d, mae) * inv_n;
          }
          cot(i, c) = g;
        }
        part(i, 0) = l;
        part(i, 1) = a;
        part(i, 2) = s;
      });
}

/// GaussianNLL of a direct head whose rows are [mu (C) | s (C)] against targets Yt (n x C): per row
/// part(i, 0..2) = {loss, |d|, d^2} (d = mu - t); cot(i, c) = dL/dmu, cot(i, C + c) = dL/ds. As torch's
/// GaussianNLLLoss (full = False), the variance s^2 is clamped to eps = 1e-6 in the value and the
/// gradient flows through the clamped value.
template <class Exec, class S>
void gaussian_nll_loss(const Exec& exec, const CMat<S, mem_t<Exec>>& Y, const CMat<double, mem_t<Exec>>& Yt, double weight,
                       double inv_n, const Mat<double, mem_t<Exec>>& part, const Mat<double, mem_t<Exec>>& cot) {
  const long C = long(Yt.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Loss::gaussian_nll", Kokkos::RangePolicy<Exec>(exec, 0, long(Y.extent(0))), KOKKOS_LAMBDA(const long i) {
        using namespace loss_detail;
        double l = 0, a = 0, q = 0;
        for (long c = 0; c < C; ++c) {
          const double t = Yt(i, c);
          double gm = 0, gs = 0;
          if (labelled(t)) {
            const double mu = double(scalar_traits<S>::primal(Y(i, c))), s = double(scalar_traits<S>::primal(Y(i, C + c)));
            const double var = s * s, v = var < 1e-6 ? 1e-6 : var, d = mu - t;
            l += weight * 0.5 * (math::log(v) + d * d / v) * inv_n;
            a += d < 0 ? -d : d;
            q += d * d;
            gm = weight * d / v * inv_n;
            gs = weight * 0.5 * (1.0 / v - d * d / (v * v)) * 2.0 * s * inv_n;
          }
          cot(i, c) = gm;
          cot(i, C + c) = gs;
        }
        part(i, 0) = l;
        part(i, 1) = a;
        part(i, 2) = q;
      });
}

/// out(first + q) = sum_i part(i, q), rows in ascending order (one thread per column).
template <class Exec>
void column_sums(const Exec& exec, const CMat<double, mem_t<Exec>>& part, const Vec<double, mem_t<Exec>>& out, long first) {
  const long R = long(part.extent(0));
  Kokkos::parallel_for(
      "hydragnn::Loss::column_sums", Kokkos::RangePolicy<Exec>(exec, 0, long(part.extent(1))), KOKKOS_LAMBDA(const long q) {
        double acc = 0;
        for (long i = 0; i < R; ++i) acc += part(i, q);
        out(first + q) = acc;
      });
}

/// Energy cotangent of the dual pass: ebar(g) = 1 + eps abar(g) (S dual) or abar(g) (S real).
template <class Exec, class S>
void energy_cotangent(const Exec& exec, const CVec<double, mem_t<Exec>>& abar, const Vec<S, mem_t<Exec>>& ebar) {
  Kokkos::parallel_for(
      "hydragnn::Loss::energy_cotangent", Kokkos::RangePolicy<Exec>(exec, 0, long(abar.extent(0))), KOKKOS_LAMBDA(const long g) {
        using R = real_t<S>;
        ebar(g) = scalar_traits<S>::is_dual ? scalar_traits<S>::make(R(1), R(abar(g))) : scalar_traits<S>::make(R(abar(g)), R(0));
      });
}

/// Head cotangent: Y(i,c) = eps cot(i,c) (S dual) or cot(i,c) (S real).
template <class Exec, class S>
void head_cotangent(const Exec& exec, const CMat<double, mem_t<Exec>>& cot, const Mat<S, mem_t<Exec>>& Y) {
  const long C = long(cot.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Loss::head_cotangent", Kokkos::RangePolicy<Exec>(exec, 0, long(cot.extent(0)) * C), KOKKOS_LAMBDA(const long k) {
        using R = real_t<S>;
        const double x = cot(k / C, k % C);
        Y(k / C, k % C) = scalar_traits<S>::is_dual ? scalar_traits<S>::make(R(0), R(x)) : scalar_traits<S>::make(R(x), R(0));
      });
}

}  // namespace kernels
}  // namespace hydragnn
