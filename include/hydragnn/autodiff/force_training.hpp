// SPDX-License-Identifier: BSD-3-Clause
// The parameter gradient of a loss, given the cotangents of its outputs (docs/autodiff.md).
//
// force_training_gradient — forward-over-reverse: a dual forward + backward on Dual<T> with edge
// tangent rdot_e = v_src - v_dst + U r_e / V (v = dL/dF, U = dL/dsigma), output cotangent
// 1 + eps a_g on energies (a = dL/dE) and 0 + eps ybar on direct heads; the eps part of the dual
// parameter cotangent is dL/dtheta.
// direct_gradient — no force or stress term: one real backward of the pass-1 forward.
#pragma once

#include <hydragnn/autodiff/potential.hpp>

#include <vector>

namespace hydragnn {

/// Host cotangents of a batch's outputs.
struct Cotangents {
  std::vector<double> energy;               ///< G: dL/dE_g
  std::vector<double> forces;               ///< N*3: dL/dF
  std::vector<double> stress;               ///< G*9: dL/dsigma
  std::vector<std::vector<double>> heads;   ///< per direct head: dL/dy (G*dim or N*dim)
};

namespace autodiff_detail {
/// Host values into a workspace view (S real or dual: value = primal, or tangent when dual).
template <class S, class Exec, class M>
Mat<S, M> upload(const Exec& exec, Workspace<M>& ws, const std::string& label, int index, const std::vector<double>& host,
                 std::size_t rows, std::size_t cols, bool as_tangent) {
  auto d = ws.template mat<S>(label, index, rows, cols);
  auto h = Kokkos::create_mirror_view(d);
  using R = real_t<S>;
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      const double x = host[i * cols + j];
      h(i, j) = as_tangent ? scalar_traits<S>::make(R(0), R(x)) : scalar_traits<S>::make(R(x), R(0));
    }
  Kokkos::deep_copy(exec, d, h);
  return d;
}
}  // namespace autodiff_detail

template <class ModelT>
void force_training_gradient(const typename ModelT::exec_space& exec, const ModelT& model,
                             const Weights<typename ModelT::real_type, typename ModelT::memory_space>& w,
                             const Batch<typename ModelT::memory_space>& b, const Cotangents& cot,
                             const Vec<typename ModelT::real_type, typename ModelT::memory_space>& grad,
                             Workspace<typename ModelT::memory_space>& ws) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  using Exec = typename ModelT::exec_space;
  using D = Dual<T>;
  const int G = b.num_graphs, N = b.num_atoms;
  const std::string lbl = "hydragnn::force_training_gradient";
  auto vd = autodiff_detail::upload<double>(exec, ws, lbl + ".v", 0, cot.forces, N, 3, false);
  auto Ud = autodiff_detail::upload<double>(exec, ws, lbl + ".U", 0, cot.stress, G, 9, false);
  auto rdot = ws.template mat<double>(lbl + ".rdot", 0, b.num_edges, 3);
  kernels::edge_tangent<Exec>(exec, b, vd, Ud, rdot);
  auto rd = model.template edge_vectors<D>(exec, b, ws, rdot);
  typename ModelT::template Forward<D> fd;
  model.template forward<D>(exec, w, b, rd, fd, ws);
  std::vector<double> ones(G, 1.0);
  auto ebar_m = ws.template mat<D>(lbl + ".ebar", 0, G, 1);
  {
    auto h = Kokkos::create_mirror_view(ebar_m);
    for (int g = 0; g < G; ++g) h(g, 0) = D(T(1), T(cot.energy[g]));
    Kokkos::deep_copy(exec, ebar_m, h);
  }
  Vec<D, M> ebar(ebar_m.data(), G);
  std::vector<Mat<D, M>> hb;
  for (std::size_t k = 0; k < cot.heads.size(); ++k) {
    const std::size_t dim = std::size_t(model.spec().heads[k].dim);
    hb.push_back(autodiff_detail::upload<D>(exec, ws, lbl + ".head_bar", int(k), cot.heads[k], cot.heads[k].size() / dim, dim, true));
  }
  auto gd = ws.template zeroed_vec<D>(exec, lbl + ".dual_grad", 0, model.num_params());
  model.template backward<D>(exec, w, b, fd, ebar, hb, gd, ws);
  kernels::take_tangent<Exec, D, T>(exec, gd, grad);
}

template <class ModelT>
void direct_gradient(const typename ModelT::exec_space& exec, const ModelT& model,
                     const Weights<typename ModelT::real_type, typename ModelT::memory_space>& w,
                     const Batch<typename ModelT::memory_space>& b,
                     const typename ModelT::template Forward<typename ModelT::real_type>& f, const Cotangents& cot,
                     bool with_energy, const Vec<typename ModelT::real_type, typename ModelT::memory_space>& grad,
                     Workspace<typename ModelT::memory_space>& ws) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  const int G = b.num_graphs;
  const std::string lbl = "hydragnn::direct_gradient";
  auto ebar_m = autodiff_detail::upload<T>(exec, ws, lbl + ".ebar", 0, cot.energy, G, 1, false);
  Vec<T, M> ebar(ebar_m.data(), G);
  std::vector<Mat<T, M>> hb;
  for (std::size_t k = 0; k < cot.heads.size(); ++k) {
    const std::size_t dim = std::size_t(model.spec().heads[k].dim);
    hb.push_back(autodiff_detail::upload<T>(exec, ws, lbl + ".head_bar", int(k), cot.heads[k], cot.heads[k].size() / dim, dim, false));
  }
  Kokkos::deep_copy(exec, grad, T(0));
  model.template backward<T>(exec, w, b, f, with_energy ? ebar : Vec<T, M>(), hb, grad, ws);
}

}  // namespace hydragnn
