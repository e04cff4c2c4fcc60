// SPDX-License-Identifier: BSD-3-Clause
// Energies, forces and stress from one real forward + backward (seed dE_g = 1, no parameter
// gradient), and the host-side Prediction of a batch.
#pragma once

#include <hydragnn/kernels/forces.hpp>
#include <hydragnn/model/model.hpp>

#include <memory>
#include <string>
#include <vector>

namespace hydragnn {

/// Host-side results for a batch.
struct Prediction {
  std::vector<double> energy;  ///< G
  std::vector<double> forces;  ///< N*3
  std::vector<double> stress;  ///< G*9 (NaN where the structure is not 3-D periodic)
  std::vector<std::vector<double>> heads;  ///< per direct head, G*dim or N*dim
};

template <class V>
std::vector<double> to_host_vector(const V& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<double> out;
  out.reserve(h.size());
  using S = typename V::non_const_value_type;
  if constexpr (V::rank == 1) {
    for (std::size_t i = 0; i < h.extent(0); ++i) out.push_back(double(scalar_traits<S>::primal(h(i))));
  } else {
    for (std::size_t i = 0; i < h.extent(0); ++i)
      for (std::size_t j = 0; j < h.extent(1); ++j) out.push_back(double(scalar_traits<S>::primal(h(i, j))));
  }
  return out;
}

/// Same through a host slot of the workspace (no allocation once the slot has grown).
template <class V, class M>
std::vector<double> to_host_vector(const V& v, Workspace<M>& ws, const std::string& label) {
  using S = typename V::non_const_value_type;
  const std::size_t n = v.size();
  auto h = ws.template host_vec<S>(label, 0, n);
  Kokkos::deep_copy(h, Kokkos::View<const S*, M>(v.data(), n));  // v is contiguous (LayoutRight or 1-D)
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = double(scalar_traits<S>::primal(h(i)));
  return out;
}

/// Device-side results of the real pass of a conservative model.
template <class T, class M>
struct EnergyForces {
  Vec<double, M> energy;  ///< G
  Mat<double, M> forces;  ///< N x 3
  Mat<double, M> stress;  ///< G x 9
};

/// Real forward + backward (dE_g = 1, no parameter gradient); forces and stress into the workspace.
template <class ModelT>
EnergyForces<typename ModelT::real_type, typename ModelT::memory_space> energy_forces(
    const typename ModelT::exec_space& exec, const ModelT& model, const Weights<typename ModelT::real_type, typename ModelT::memory_space>& w,
    const Batch<typename ModelT::memory_space>& b, typename ModelT::template Forward<typename ModelT::real_type>& f,
    Workspace<typename ModelT::memory_space>& ws, bool forces = true) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  using Exec = typename ModelT::exec_space;
  auto r = model.template edge_vectors<T>(exec, b, ws);
  model.template forward<T>(exec, w, b, r, f, ws);
  EnergyForces<T, M> out;
  out.energy = ws.template vec<double>("hydragnn::energy_forces::energy", 0, b.num_graphs);
  {
    auto src = f.energy;
    auto dst = out.energy;
    Kokkos::deep_copy(exec, dst, src);
  }
  if (forces && model.spec().energy) {
    auto ebar = ws.template vec<T>("hydragnn::energy_forces::ebar", 0, b.num_graphs);
    Kokkos::deep_copy(exec, ebar, T(1));
    auto g = model.template backward<T>(exec, w, b, f, ebar, {}, Vec<T, M>(), ws);
    out.forces = ws.template mat<double>("hydragnn::energy_forces::forces", 0, b.num_atoms, 3);
    out.stress = ws.template mat<double>("hydragnn::energy_forces::stress", 0, b.num_graphs, 9);
    kernels::assemble_forces<Exec, T>(exec, b, g, out.forces);
    kernels::assemble_stress<Exec, T>(exec, b, g, out.stress);
  }
  return out;
}

/// Energy, forces (if the model has an energy head) and stress; direct head outputs. Pass a workspace
/// that lives across calls to make repeated predictions allocation-free.
template <class ModelT>
Prediction predict(const typename ModelT::exec_space& exec, const ModelT& model, const Batch<typename ModelT::memory_space>& b,
                   bool forces = true, Workspace<typename ModelT::memory_space>* workspace = nullptr) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  std::unique_ptr<Workspace<M>> local;
  if (!workspace) {
    local = std::make_unique<Workspace<M>>();
    workspace = local.get();
  }
  Prediction out;
  const auto w = model.weights(exec);
  typename ModelT::template Forward<T> f;
  f.geometry_only = true;  // no parameter gradient of a prediction
  auto ef = energy_forces(exec, model, w, b, f, *workspace, forces);
  Workspace<M>& ws = *workspace;
  out.energy = to_host_vector(ef.energy, ws, "hydragnn::predict::energy");
  for (std::size_t k = 0; k < f.head_out.size(); ++k)
    out.heads.push_back(to_host_vector(f.head_out[k], ws, "hydragnn::predict::head" + std::to_string(k)));
  if (ef.forces.extent(0) > 0 || (forces && model.spec().energy)) {
    out.forces = to_host_vector(ef.forces, ws, "hydragnn::predict::forces");
    out.stress = to_host_vector(ef.stress, ws, "hydragnn::predict::stress");
  }
  return out;
}

}  // namespace hydragnn
