// SPDX-License-Identifier: BSD-3-Clause
// Multi-task loss and its exact parameter gradient.
//
// L = w_E mean_g l(E_g - E*_g) + w_e mean_g l((E_g - E*_g)/N_g) + w_F mean_{i,a} l(F_ia - F*_ia)
//   + w_S mean_{g,ab} l(sigma - sigma*) + sum_k w_k mean l(y_k - y*_k)
// with l = x^2 (mse), |x| (mae) or smooth_l1 (HydraGNN's loss_function_type, torch's functions); rmse
// replaces each term's mean l by sqrt(mean x^2) (HydraGNN: sqrt(mse_loss) per term); GaussianNLL
// (direct heads only) gives each head a variance output and the term w_k mean (log v + d^2/v) / 2.
// rmse: the terms' mean squares come from the error sums of an mse pass; the cotangents are then
// those of mse with each weight w scaled by 1 / (2 rmse) (one more launch of the loss kernels).
//
// Pass 1 (real, no parameter gradient): forward + backward with dE_g = 1 gives F and sigma; the device
// evaluates L's terms and the cotangents a_g = dL/dE_g, v_i = dL/dF_i, U_g = dL/dsigma_g,
// ybar_k = dL/dy_k (kernels/loss.hpp). Pass 2 (autodiff/force_training.hpp): the dual forward +
// backward whose eps part is dL/dtheta, or a real backward when no force or stress term is trained.
// The only transfer to the host is the vector of loss and error sums (a few numbers, for logging).
#pragma once

#include <hydragnn/autodiff/force_training.hpp>
#include <hydragnn/kernels/loss.hpp>

#include <cmath>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

/// HydraGNN's loss_function_type.
enum class LossKind { MSE, MAE, RMSE, SmoothL1, GaussianNLL };

/// How many labels a batch's loss terms average over: energies (structures), force components,
/// stress components, and the labelled values of each direct head.
struct LossCounts {
  long energy = 0, force = 0, stress = 0;
  std::vector<long> heads;
};

struct LossSpec {
  double energy = 1.0, energy_peratom = 0.0, force = 1.0, stress = 0.0;
  std::vector<double> heads;  ///< weight per direct head
  LossKind kind = LossKind::MSE;
  /// Average every term over these counts instead of the batch's own: in a data-parallel step, the
  /// counts of the whole global batch, so that the loss and gradient of its micro-batches sum to the
  /// global batch's mean. Not for rmse (its scale needs the global sums before the backward).
  const LossCounts* global = nullptr;
  /// The elementwise function of the kernels (rmse: mse, rescaled afterwards; GaussianNLL: mse for
  /// the energy terms, which it does not reach).
  kernels::ElementLoss element() const {
    return kind == LossKind::MAE ? kernels::ElementLoss::MAE
                                 : kind == LossKind::SmoothL1 ? kernels::ElementLoss::SmoothL1 : kernels::ElementLoss::MSE;
  }
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

/// Loss on a batch; if grad has the model's size, also dL/dtheta (overwritten). Pass a workspace that
/// lives across steps to make steps allocation-free; with_prediction also copies the predictions to
/// the host (res.pred). stage_done: called during the backward with k as the blocks
/// model.gradient_stages()[k] of grad become final (Model::backward).
template <class ModelT>
LossResult loss_and_grad(const typename ModelT::exec_space& exec, const ModelT& model,
                         const Batch<typename ModelT::memory_space>& b, const LossSpec& w,
                         const Vec<typename ModelT::real_type, typename ModelT::memory_space>& grad,
                         Workspace<typename ModelT::memory_space>* workspace = nullptr, bool with_prediction = false,
                         const std::function<void(int)>* stage_done = nullptr) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  using Exec = typename ModelT::exec_space;
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
  const std::size_t nh = model.spec().heads.size();
  const std::string lbl = "hydragnn::loss_and_grad";

  LossResult res;
  // ---- pass 1 (real, no parameter gradient) ---------------------------------------------------
  const auto wts = model.weights(exec);
  typename ModelT::template Forward<T> f1;
  // the parameter gradient is a second, dual pass with force or stress terms (and none without
  // want_grad): pass 1 then keeps only what forces and stress need
  f1.geometry_only = need_forces || !want_grad;
  auto ef = energy_forces(exec, model, wts, b, f1, ws, conservative);
  if (with_prediction) {
    res.pred.energy = to_host_vector(ef.energy);
    for (auto& h : f1.head_out) res.pred.heads.push_back(to_host_vector(h));
    if (conservative) {
      res.pred.forces = to_host_vector(ef.forces);
      res.pred.stress = to_host_vector(ef.stress);
    }
  }

  // ---- loss terms and cotangents (device) ------------------------------------------------------
  // sums: [energy: loss |d| d^2 |d|/n (d/n)^2] [forces: loss |d| d^2] [stress: loss |d| d^2] [head k: loss |d| d^2]
  const long nsum = 11 + 3 * long(nh);
  auto sums = ws.template zeroed_vec<double>(exec, lbl + ".sums", 0, std::size_t(nsum));
  DeviceCotangents<M> cot;
  auto inv = [](long n) { return n > 0 ? 1.0 / double(n) : 0.0; };
  if (w.global && w.kind == LossKind::RMSE)
    throw std::invalid_argument("hydragnn::loss_and_grad: loss_function_type rmse cannot be split into micro-batches "
                                "(data-parallel ranks or --accumulate): use mse, mae or smooth_l1");
  if (w.global && w.global->heads.size() != nh)
    throw std::invalid_argument("hydragnn::loss_and_grad: global counts for " + std::to_string(w.global->heads.size()) +
                                " heads, the model has " + std::to_string(nh));
  const long n_energy = w.global ? w.global->energy : b.n_energy, n_force = w.global ? w.global->force : b.n_force,
             n_stress = w.global ? w.global->stress : b.n_stress;
  auto n_head = [&](std::size_t k) { return w.global ? w.global->heads[k] : b.n_head[k]; };
  const kernels::ElementLoss el = w.element();
  const bool nll = w.kind == LossKind::GaussianNLL;
  if (nll && conservative && (w.energy > 0 || w.energy_peratom > 0 || w.force > 0 || w.stress > 0))
    throw std::invalid_argument("hydragnn::loss_and_grad: GaussianNLL needs a variance output, which the conservative "
                                "energy, forces and stress do not have");
  if (conservative) {
    cot.energy = ws.template vec<double>(lbl + ".abar", 0, G);
    cot.forces = ws.template mat<double>(lbl + ".v", 0, N, 3);
    cot.stress = ws.template mat<double>(lbl + ".U", 0, G, 9);
  } else {
    cot.energy = ws.template zeroed_vec<double>(exec, lbl + ".abar", 0, G);
  }
  for (std::size_t k = 0; k < nh; ++k) {
    const auto& y = f1.head_out[k];
    cot.heads.push_back(ws.template mat<double>(lbl + ".ybar", int(k), y.extent(0), y.extent(1)));
  }
  // every term's partial sums and cotangent with the given weights
  auto terms = [&](double w_e, double w_epa, double w_f, double w_s, const std::vector<double>& w_h) {
    if (conservative) {
      auto part_e = ws.template mat<double>(lbl + ".part_energy", 0, G, 5);
      kernels::energy_loss<Exec>(exec, ef.energy, b.energy_t, b.inv_count, w_e, w_epa, inv(n_energy), el, part_e,
                                 cot.energy);
      kernels::column_sums<Exec>(exec, part_e, sums, 0);
      auto part_f = ws.template mat<double>(lbl + ".part_forces", 0, N, 3);
      kernels::component_loss<Exec, double>(exec, ef.forces, b.forces_t, Vec<double, M>(), w_f, inv(n_force), el, part_f,
                                            cot.forces);
      kernels::column_sums<Exec>(exec, part_f, sums, 5);
      auto part_s = ws.template mat<double>(lbl + ".part_stress", 0, G, 3);
      kernels::component_loss<Exec, double>(exec, ef.stress, b.stress_t, b.volume, w_s, inv(n_stress), el, part_s,
                                            cot.stress);
      kernels::column_sums<Exec>(exec, part_s, sums, 8);
    }
    for (std::size_t k = 0; k < nh; ++k) {
      const auto& y = f1.head_out[k];
      auto part_h = ws.template mat<double>(lbl + ".part_head", int(k), y.extent(0), 3);
      if (nll)
        kernels::gaussian_nll_loss<Exec, T>(exec, y, b.head_t[k], w_h[k], inv(n_head(k)), part_h, cot.heads[k]);
      else
        kernels::component_loss<Exec, T>(exec, y, b.head_t[k], Vec<double, M>(), w_h[k], inv(n_head(k)), el, part_h,
                                         cot.heads[k]);
      kernels::column_sums<Exec>(exec, part_h, sums, 11 + 3 * long(k));
    }
  };
  std::vector<double> w_heads(nh);
  for (std::size_t k = 0; k < nh; ++k) w_heads[k] = k < w.heads.size() ? w.heads[k] : 1.0;
  terms(w.energy, w.energy_peratom, w.force, w.stress, w_heads);
  // the transfer to the host: the sums, for the loss value and the metrics
  std::vector<double> hs(static_cast<std::size_t>(nsum));
  {
    auto h = ws.template host_vec<double>(lbl + ".sums_host", 0, std::size_t(nsum));
    Kokkos::deep_copy(exec, h, sums);
    exec.fence();
    for (long q = 0; q < nsum; ++q) hs[std::size_t(q)] = h(q);
  }
  ErrorSums& es = res.errors;
  if (conservative) {
    es.e_abs = hs[1]; es.e_sq = hs[2]; es.epa_abs = hs[3]; es.epa_sq = hs[4];
    es.f_abs = hs[6]; es.f_sq = hs[7];
    es.s_abs = hs[9]; es.s_sq = hs[10];
    es.n_e = b.n_energy; es.n_f = b.n_force; es.n_s = b.n_stress;
  }
  es.h_abs.assign(nh, 0.0); es.h_sq.assign(nh, 0.0); es.n_h.assign(nh, 0);
  for (std::size_t k = 0; k < nh; ++k) {
    es.h_abs[k] = hs[12 + 3 * k];
    es.h_sq[k] = hs[13 + 3 * k];
    es.n_h[k] = b.n_head[k];
  }
  if (w.kind != LossKind::RMSE) {
    if (conservative) res.loss += hs[0] + hs[5] + hs[8];
    for (std::size_t k = 0; k < nh; ++k) res.loss += hs[11 + 3 * k];
  } else {
    // L = sum_t w_t sqrt(ms_t); dL/dx = w_t / (2 sqrt(ms_t)) d(ms_t)/dx: the mse cotangents rescaled
    auto rms = [](double sq, long n) { return n > 0 ? std::sqrt(sq / double(n)) : 0.0; };
    auto scaled = [](double wt, double r) { return r > 0 ? wt / (2 * r) : 0.0; };
    const double r_e = rms(es.e_sq, es.n_e), r_epa = rms(es.epa_sq, es.n_e), r_f = rms(es.f_sq, es.n_f),
                 r_s = rms(es.s_sq, es.n_s);
    std::vector<double> w_h(nh);
    if (conservative) res.loss += w.energy * r_e + w.energy_peratom * r_epa + w.force * r_f + w.stress * r_s;
    for (std::size_t k = 0; k < nh; ++k) {
      const double r_h = rms(es.h_sq[k], es.n_h[k]);
      res.loss += w_heads[k] * r_h;
      w_h[k] = scaled(w_heads[k], r_h);
    }
    if (want_grad)
      terms(scaled(w.energy, r_e), scaled(w.energy_peratom, r_epa), scaled(w.force, r_f), scaled(w.stress, r_s), w_h);
  }
  if (!want_grad) return res;

  // ---- gradient ------------------------------------------------------------------------------
  if (need_forces)
    force_training_gradient(exec, model, wts, b, cot, grad, ws, stage_done);
  else
    direct_gradient(exec, model, wts, b, f1, cot, conservative, grad, ws, stage_done);
  return res;
}

}  // namespace hydragnn
