// SPDX-License-Identifier: BSD-3-Clause
// The architecture and loss of the benchmark cases, as the HydraGNN runner (../shared/tools/
// hydragnn_bench.py) builds them, shared by hydragnn_bench and hydragnn_bench_scaling.
#pragma once

#include <hydragnn/autodiff/loss.hpp>
#include <hydragnn/model/spec.hpp>

#include "workload.hpp"

#include <string>

namespace hydragnn_bench {

constexpr int kConvLayers = 4;
constexpr int kRadialSize = 50;  // Gaussians of the SchNet filter (HydraGNN's num_gaussians default)

/// The architecture of the HydraGNN runner (../shared/tools/hydragnn_bench.py), so that parameter
/// counts agree: ReLU; direct mode = graph head (2 shared layers of 50, then [50, 25]) for the
/// energy and node head [200, 200] for the forces, task weights 1 : 100; conservative mode = one
/// node head [200, 200] -> per-atom energy, summed.
inline hydragnn::ModelSpec bench_spec(const std::string& type, int hidden, bool conservative) {
  const auto& w = reference_workload();
  using namespace hydragnn;
  ModelSpec s;
  s.mpnn_type = type;
  s.hidden_dim = hidden;
  s.num_conv_layers = kConvLayers;
  s.cutoff = w.cutoff;
  s.max_neighbours = w.max_neighbours;
  s.species = species_map(w);
  s.ref_energy.assign(s.species.size(), 0.0);
  s.act = Activation::ReLU;
  s.input_dim = 1;  // HydraGNN's node input is one feature (Z); ours a one-wide species embedding
  // HydraGNN (and so the runner) sets hidden_dim = input_dim for CGCNN: its layers keep width 1
  if (type == "CGCNN") s.hidden_dim = s.input_dim;
  s.energy = conservative;
  s.branches[0].energy_head_dims = {200, 200};
  s.branches[0].graph_num_sharedlayers = 2;
  s.branches[0].graph_dim_sharedlayers = 50;
  s.branches[0].graph_head_dims = {50, 25};
  s.branches[0].node_head_dims = {200, 200};
  if (!conservative) s.heads = {HeadDef{"energy", false, 1, 1.0}, HeadDef{"forces", true, 3, 1.0}};  // task weights in bench_loss
  return s;
}

inline hydragnn::LossSpec bench_loss(bool conservative) {
  using namespace hydragnn;
  LossSpec w;
  if (conservative) {
    w.energy = w.energy_peratom = w.force = 1.0;  // L(E) + L(E/N) + L(F), as the runner
  } else {
    w.energy = w.energy_peratom = w.force = w.stress = 0.0;
    w.heads = {1.0, 100.0};
  }
  w.kind = LossKind::MAE;  // the runner's loss_function_type
  return w;
}

}  // namespace hydragnn_bench
