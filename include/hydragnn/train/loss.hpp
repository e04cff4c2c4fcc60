// SPDX-License-Identifier: BSD-3-Clause
// Multi-task loss and its exact parameter gradient.
//
// L = w_E mean_g l(E_g - E*_g) + w_e mean_g l((E_g - E*_g)/N_g) + w_F mean_{i,a} l(F_ia - F*_ia)
//   + w_S mean_{g,ab} l(sigma - sigma*) + sum_k w_k mean l(y_k - y*_k),       l = x^2 (mse) or |x| (mae)
//
// Pass 1 (real, no parameter gradient): forward + backward with dE_g = 1 gives F and sigma; the host
// evaluates L and the cotangents a_g = dL/dE_g, v_i = dL/dF_i, U_g = dL/dsigma_g, ybar_k = dL/dy_k.
// Pass 2 (autodiff/force_training.hpp): the dual forward + backward whose eps part is dL/dtheta, or a
// real backward when no force or stress term is trained.
#pragma once

#include <hydragnn/autodiff/force_training.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace hydragnn {

struct LossSpec {
  double energy = 1.0, energy_peratom = 0.0, force = 1.0, stress = 0.0;
  std::vector<double> heads;  ///< weight per direct head
  bool mae = false;
};

/// Per-batch sums for metrics (absolute and squared errors, counts).
struct ErrorSums {
  double e_abs = 0, e_sq = 0, epa_abs = 0, epa_sq = 0, f_abs = 0, f_sq = 0, s_abs = 0, s_sq = 0;
  long n_e = 0, n_f = 0, n_s = 0;
  std::vector<double> h_abs, h_sq;
  std::vector<long> n_h;
  void add(const ErrorSums& o) {
    e_abs += o.e_abs; e_sq += o.e_sq; epa_abs += o.epa_abs; epa_sq += o.epa_sq;
    f_abs += o.f_abs; f_sq += o.f_sq; s_abs += o.s_abs; s_sq += o.s_sq;
    n_e += o.n_e; n_f += o.n_f; n_s += o.n_s;
    h_abs.resize(o.h_abs.size()); h_sq.resize(o.h_sq.size()); n_h.resize(o.n_h.size());
    for (std::size_t k = 0; k < o.h_abs.size(); ++k) { h_abs[k] += o.h_abs[k]; h_sq[k] += o.h_sq[k]; n_h[k] += o.n_h[k]; }
  }
};

struct LossResult {
  double loss = 0;
  ErrorSums errors;
  Prediction pred;
};

namespace detail {
inline double lval(double x, bool mae) { return mae ? std::fabs(x) : x * x; }
inline double lgrad(double x, bool mae) { return mae ? (x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0) : 2 * x; }
}  // namespace detail

/// Loss on a batch; if grad has the model's size, also dL/dtheta (overwritten). Pass a workspace that
/// lives across steps to make steps allocation-free.
template <class ModelT>
LossResult loss_and_grad(const typename ModelT::exec_space& exec, const ModelT& model,
                         const Batch<typename ModelT::memory_space>& b, const LossSpec& w,
                         const Vec<typename ModelT::real_type, typename ModelT::memory_space>& grad,
                         Workspace<typename ModelT::memory_space>* workspace = nullptr) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  std::unique_ptr<Workspace<M>> local;
  if (!workspace) {
    local = std::make_unique<Workspace<M>>();
    workspace = local.get();
  }
  Workspace<M>& ws = *workspace;
  const bool want_grad = grad.extent(0) == model.num_params();
  const bool conservative = model.spec().energy;
  const bool need_forces = conservative && (w.force > 0 || w.stress > 0);
  const int G = b.num_graphs, N = b.num_atoms;

  LossResult res;
  // ---- pass 1 (real, no parameter gradient) ---------------------------------------------------
  const auto wts = model.weights(exec);
  typename ModelT::template Forward<T> f1;
  auto ef = energy_forces(exec, model, wts, b, f1, ws, conservative);
  Prediction& pred = res.pred;
  pred.energy = to_host_vector(ef.energy);
  for (auto& h : f1.head_out) pred.heads.push_back(to_host_vector(h));
  if (conservative) {
    pred.forces = to_host_vector(ef.forces);
    pred.stress = to_host_vector(ef.stress);
  }
  // ---- loss and cotangents (host) ------------------------------------------------------------
  ErrorSums& es = res.errors;
  std::vector<double> abar(G, 0.0), v(3 * std::size_t(N), 0.0), U(9 * std::size_t(G), 0.0);
  if (conservative) {
    for (int g = 0; g < G; ++g)
      if (!std::isnan(b.energy[g])) {
        const double d = pred.energy[g] - b.energy[g];
        es.e_abs += std::fabs(d); es.e_sq += d * d;
        es.epa_abs += std::fabs(d) / b.natoms[g]; es.epa_sq += d * d / (double(b.natoms[g]) * b.natoms[g]);
        ++es.n_e;
      }
    for (int g = 0; g < G; ++g)
      if (!std::isnan(b.energy[g]) && es.n_e > 0) {
        const double d = pred.energy[g] - b.energy[g], n = b.natoms[g];
        res.loss += (w.energy * detail::lval(d, w.mae) + w.energy_peratom * detail::lval(d / n, w.mae)) / es.n_e;
        abar[g] = (w.energy * detail::lgrad(d, w.mae) + w.energy_peratom * detail::lgrad(d / n, w.mae) / n) / es.n_e;
      }
    for (std::size_t k = 0; k < b.forces.size(); ++k)
      if (!std::isnan(b.forces[k])) {
        const double d = pred.forces[k] - b.forces[k];
        es.f_abs += std::fabs(d); es.f_sq += d * d; ++es.n_f;
      }
    for (std::size_t k = 0; k < b.forces.size(); ++k)
      if (!std::isnan(b.forces[k]) && w.force > 0) {
        const double d = pred.forces[k] - b.forces[k];
        res.loss += w.force * detail::lval(d, w.mae) / es.n_f;
        v[k] = w.force * detail::lgrad(d, w.mae) / es.n_f;
      }
    for (std::size_t k = 0; k < b.stress.size(); ++k)
      if (!std::isnan(b.stress[k]) && !std::isnan(pred.stress[k])) {
        const double d = pred.stress[k] - b.stress[k];
        es.s_abs += std::fabs(d); es.s_sq += d * d; ++es.n_s;
      }
    for (std::size_t k = 0; k < b.stress.size(); ++k)
      if (!std::isnan(b.stress[k]) && !std::isnan(pred.stress[k]) && w.stress > 0) {
        const double d = pred.stress[k] - b.stress[k];
        res.loss += w.stress * detail::lval(d, w.mae) / es.n_s;
        U[k] = w.stress * detail::lgrad(d, w.mae) / es.n_s;
      }
  }
  const std::size_t nh = pred.heads.size();
  es.h_abs.assign(nh, 0.0); es.h_sq.assign(nh, 0.0); es.n_h.assign(nh, 0);
  std::vector<std::vector<double>> ybar(nh);
  for (std::size_t k = 0; k < nh; ++k) {
    const auto& y = pred.heads[k];
    const auto& t = b.head_targets[k];
    ybar[k].assign(y.size(), 0.0);
    for (std::size_t q = 0; q < y.size(); ++q)
      if (!std::isnan(t[q])) { es.h_abs[k] += std::fabs(y[q] - t[q]); es.h_sq[k] += (y[q] - t[q]) * (y[q] - t[q]); ++es.n_h[k]; }
    const double wk = k < w.heads.size() ? w.heads[k] : 1.0;
    for (std::size_t q = 0; q < y.size(); ++q)
      if (!std::isnan(t[q])) {
        res.loss += wk * detail::lval(y[q] - t[q], w.mae) / es.n_h[k];
        ybar[k][q] = wk * detail::lgrad(y[q] - t[q], w.mae) / es.n_h[k];
      }
  }
  if (!want_grad) return res;

  // ---- gradient ------------------------------------------------------------------------------
  Cotangents cot;
  cot.energy = std::move(abar);
  cot.forces = std::move(v);
  cot.stress = std::move(U);
  cot.heads = std::move(ybar);
  if (need_forces)
    force_training_gradient(exec, model, wts, b, cot, grad, ws);
  else
    direct_gradient(exec, model, wts, b, f1, cot, conservative, grad, ws);
  return res;
}

}  // namespace hydragnn
