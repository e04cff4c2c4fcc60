// SPDX-License-Identifier: BSD-3-Clause
// The parameter gradient of a loss, given the cotangents of its outputs (docs/autodiff.md).
//
// force_training_gradient — forward-over-reverse: a dual forward + backward on Dual<T> with edge
// tangent rdot_e = v_src - v_dst + U r_e / V (v = dL/dF, U = dL/dsigma), output cotangent
// 1 + eps a_g on energies (a = dL/dE) and 0 + eps ybar on direct heads; the eps part of the dual
// parameter cotangent is dL/dtheta, and the only part the backward forms (core/dual.hpp param_part).
// direct_gradient — no force or stress term: one real backward of the pass-1 forward.
// Both pass stage_done to Model::backward (called as blocks of grad become final).
#pragma once

#include <hydragnn/autodiff/potential.hpp>
#include <hydragnn/kernels/loss.hpp>

#include <functional>
#include <vector>

namespace hydragnn {

/// Cotangents of a batch's outputs, on the device (kernels/loss.hpp writes them).
template <class M>
struct DeviceCotangents {
  Vec<double, M> energy;               ///< G: dL/dE_g
  Mat<double, M> forces;               ///< N x 3: dL/dF (empty: none)
  Mat<double, M> stress;               ///< G x 9: dL/dsigma (empty: none)
  std::vector<Mat<double, M>> heads;   ///< per direct head: dL/dy (G x dim or N x dim)
};

template <class ModelT>
void force_training_gradient(const typename ModelT::exec_space& exec, const ModelT& model,
                             const Weights<typename ModelT::real_type, typename ModelT::memory_space>& w,
                             const Batch<typename ModelT::memory_space>& b,
                             const DeviceCotangents<typename ModelT::memory_space>& cot,
                             const Vec<typename ModelT::real_type, typename ModelT::memory_space>& grad,
                             Workspace<typename ModelT::memory_space>& ws,
                             const std::function<void(int)>* stage_done = nullptr) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  using Exec = typename ModelT::exec_space;
  using D = Dual<T>;
  const int G = b.num_graphs;
  const std::string lbl = "hydragnn::force_training_gradient";
  auto rdot = ws.template mat<double>(lbl + ".rdot", 0, b.num_edges, 3);
  kernels::edge_tangent<Exec>(exec, b, cot.forces, cot.stress, rdot);
  auto rd = model.template edge_vectors<D>(exec, b, ws, rdot);
  typename ModelT::template Forward<D> fd;
  model.template forward<D>(exec, w, b, rd, fd, ws);
  auto ebar = ws.template vec<D>(lbl + ".ebar", 0, G);
  kernels::energy_cotangent<Exec, D>(exec, cot.energy, ebar);
  std::vector<Mat<D, M>> hb;
  for (std::size_t k = 0; k < cot.heads.size(); ++k) {
    hb.push_back(ws.template mat<D>(lbl + ".head_bar", int(k), cot.heads[k].extent(0), cot.heads[k].extent(1)));
    kernels::head_cotangent<Exec, D>(exec, cot.heads[k], hb.back());
  }
  Kokkos::deep_copy(exec, grad, T(0));
  model.template backward<D>(exec, w, b, fd, ebar, hb, grad, ws, /*geometry=*/false, stage_done);  // only the parameter cotangent
}

template <class ModelT>
void direct_gradient(const typename ModelT::exec_space& exec, const ModelT& model,
                     const Weights<typename ModelT::real_type, typename ModelT::memory_space>& w,
                     const Batch<typename ModelT::memory_space>& b,
                     const typename ModelT::template Forward<typename ModelT::real_type>& f,
                     const DeviceCotangents<typename ModelT::memory_space>& cot, bool with_energy,
                     const Vec<typename ModelT::real_type, typename ModelT::memory_space>& grad,
                     Workspace<typename ModelT::memory_space>& ws, const std::function<void(int)>* stage_done = nullptr) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  using Exec = typename ModelT::exec_space;
  const std::string lbl = "hydragnn::direct_gradient";
  auto ebar = ws.template vec<T>(lbl + ".ebar", 0, b.num_graphs);
  kernels::energy_cotangent<Exec, T>(exec, cot.energy, ebar);
  std::vector<Mat<T, M>> hb;
  for (std::size_t k = 0; k < cot.heads.size(); ++k) {
    hb.push_back(ws.template mat<T>(lbl + ".head_bar", int(k), cot.heads[k].extent(0), cot.heads[k].extent(1)));
    kernels::head_cotangent<Exec, T>(exec, cot.heads[k], hb.back());
  }
  Kokkos::deep_copy(exec, grad, T(0));
  model.template backward<T>(exec, w, b, f, with_energy ? ebar : Vec<T, M>(), hb, grad, ws, /*geometry=*/false,
                             stage_done);
}

}  // namespace hydragnn
