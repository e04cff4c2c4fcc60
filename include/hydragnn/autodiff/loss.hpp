// SPDX-License-Identifier: BSD-3-Clause
// Multi-task loss and its exact parameter gradient.
//
// L = w_E mean_g l(E_g - E*_g) + w_e mean_g l((E_g - E*_g)/N_g) + w_F mean_{i,a} l(F_ia - F*_ia)
//   + w_S mean_{g,ab} l(sigma - sigma*) + sum_k w_k mean l(y_k - y*_k),       l = x^2 (mse) or |x| (mae)
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

/// Loss on a batch; if grad has the model's size, also dL/dtheta (overwritten). Pass a workspace that
/// lives across steps to make steps allocation-free; with_prediction also copies the predictions to
/// the host (res.pred).
template <class ModelT>
LossResult loss_and_grad(const typename ModelT::exec_space& exec, const ModelT& model,
                         const Batch<typename ModelT::memory_space>& b, const LossSpec& w,
                         const Vec<typename ModelT::real_type, typename ModelT::memory_space>& grad,
                         Workspace<typename ModelT::memory_space>* workspace = nullptr, bool with_prediction = false) {
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
  if (conservative) {
    auto part_e = ws.template mat<double>(lbl + ".part_energy", 0, G, 5);
    cot.energy = ws.template vec<double>(lbl + ".abar", 0, G);
    kernels::energy_loss<Exec>(exec, ef.energy, b.energy_t, b.inv_count, w.energy, w.energy_peratom, inv(b.n_energy),
                               w.mae, part_e, cot.energy);
    kernels::column_sums<Exec>(exec, part_e, sums, 0);
    auto part_f = ws.template mat<double>(lbl + ".part_forces", 0, N, 3);
    cot.forces = ws.template mat<double>(lbl + ".v", 0, N, 3);
    kernels::component_loss<Exec, double>(exec, ef.forces, b.forces_t, Vec<double, M>(), w.force, inv(b.n_force), w.mae,
                                          part_f, cot.forces);
    kernels::column_sums<Exec>(exec, part_f, sums, 5);
    auto part_s = ws.template mat<double>(lbl + ".part_stress", 0, G, 3);
    cot.stress = ws.template mat<double>(lbl + ".U", 0, G, 9);
    kernels::component_loss<Exec, double>(exec, ef.stress, b.stress_t, b.volume, w.stress, inv(b.n_stress), w.mae, part_s,
                                          cot.stress);
    kernels::column_sums<Exec>(exec, part_s, sums, 8);
  } else {
    cot.energy = ws.template zeroed_vec<double>(exec, lbl + ".abar", 0, G);
  }
  for (std::size_t k = 0; k < nh; ++k) {
    const auto& y = f1.head_out[k];
    auto part_h = ws.template mat<double>(lbl + ".part_head", int(k), y.extent(0), 3);
    cot.heads.push_back(ws.template mat<double>(lbl + ".ybar", int(k), y.extent(0), y.extent(1)));
    const double wk = k < w.heads.size() ? w.heads[k] : 1.0;
    kernels::component_loss<Exec, T>(exec, y, b.head_t[k], Vec<double, M>(), wk, inv(b.n_head[k]), w.mae, part_h,
                                     cot.heads[k]);
    kernels::column_sums<Exec>(exec, part_h, sums, 11 + 3 * long(k));
  }
  // the one transfer to the host: the sums, for the loss value and the metrics
  std::vector<double> hs(static_cast<std::size_t>(nsum));
  {
    auto h = ws.template host_vec<double>(lbl + ".sums_host", 0, std::size_t(nsum));
    Kokkos::deep_copy(exec, h, sums);
    exec.fence();
    for (long q = 0; q < nsum; ++q) hs[std::size_t(q)] = h(q);
  }
  ErrorSums& es = res.errors;
  if (conservative) {
    res.loss += hs[0] + hs[5] + hs[8];
    es.e_abs = hs[1]; es.e_sq = hs[2]; es.epa_abs = hs[3]; es.epa_sq = hs[4];
    es.f_abs = hs[6]; es.f_sq = hs[7];
    es.s_abs = hs[9]; es.s_sq = hs[10];
    es.n_e = b.n_energy; es.n_f = b.n_force; es.n_s = b.n_stress;
  }
  es.h_abs.assign(nh, 0.0); es.h_sq.assign(nh, 0.0); es.n_h.assign(nh, 0);
  for (std::size_t k = 0; k < nh; ++k) {
    res.loss += hs[11 + 3 * k];
    es.h_abs[k] = hs[12 + 3 * k];
    es.h_sq[k] = hs[13 + 3 * k];
    es.n_h[k] = b.n_head[k];
  }
  if (!want_grad) return res;

  // ---- gradient ------------------------------------------------------------------------------
  if (need_forces)
    force_training_gradient(exec, model, wts, b, cot, grad, ws);
  else
    direct_gradient(exec, model, wts, b, f1, cot, conservative, grad, ws);
  return res;
}

}  // namespace hydragnn
