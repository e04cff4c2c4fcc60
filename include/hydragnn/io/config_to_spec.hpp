// SPDX-License-Identifier: BSD-3-Clause
// A validated Config -> the model's architecture (ModelSpec) and the loss weights (LossSpec).
#pragma once

#include <hydragnn/io/config.hpp>
#include <hydragnn/io/names.hpp>
#include <hydragnn/model/spec.hpp>
#include <hydragnn/autodiff/loss.hpp>

#include <cmath>

namespace hydragnn {

/// The architecture keys common to every model, from a validated config (species and normalisation are
/// filled in later); the model's own keys are cfg.arch.conv_options<Conv>().
inline ModelSpec spec_from_config(const Config& cfg) {
  const ArchitectureConfig& a = cfg.arch;
  ModelSpec s;
  s.mpnn_type = a.mpnn_type;
  s.hidden_dim = a.hidden_dim;
  s.input_dim = a.input_dim;
  s.num_conv_layers = a.num_conv_layers;
  s.cutoff = a.radius;
  s.max_neighbours = a.max_neighbours;
  s.act = parse_activation(a.activation_function);
  s.pooling = parse_pooling(a.graph_pooling);
  s.energy = a.enable_interatomic_potential;
  s.branches.clear();
  for (const HeadBranchConfig& b : a.branches) {
    BranchSpec bs;
    bs.name = b.name;
    bs.energy_head_dims = b.node_dim_headlayers;
    bs.graph_num_sharedlayers = b.graph_num_sharedlayers;
    bs.graph_dim_sharedlayers = b.graph_dim_sharedlayers;
    bs.graph_head_dims = b.graph_dim_headlayers;
    bs.node_head_dims = b.node_dim_headlayers;
    s.branches.push_back(bs);
  }
  // mlp_per_node: the atoms per structure come from the training set (train() fills them in)
  if (a.branches[0].node_head_type == "mlp_per_node") s.num_nodes = -1;
  for (const auto& h : a.heads) {
    if (is_energy_head(a, h)) {  // the conservative energy head: per atom (node) or pooled (graph)
      s.energy_pooled = h.type == "graph";
      continue;
    }
    s.heads.push_back(HeadDef{h.name, h.type == "node", h.dim, h.weight});
  }
  s.head_variance = cfg.training.loss_function_type == "GaussianNLLLoss";
  // node heads of type conv, when there is a node output (the per-atom energy or a direct node head)
  bool node_outputs = s.energy && !s.energy_pooled;
  for (const auto& h : s.heads) node_outputs = node_outputs || h.node;
  s.node_conv = a.branches[0].node_head_type == "conv" && node_outputs;
  return s;
}

/// Loss kind of a validated loss_function_type.
inline LossKind loss_kind(const std::string& t) {
  if (t == "mae") return LossKind::MAE;
  if (t == "rmse") return LossKind::RMSE;
  if (t == "smooth_l1") return LossKind::SmoothL1;
  if (t == "GaussianNLLLoss") return LossKind::GaussianNLL;
  return LossKind::MSE;
}

/// The loss weights. task_weights are normalised as HydraGNN's Base does: w_k / sum_j |w_j| (over
/// every head, the conservative energy included; with the energy alone its weight is 1).
inline LossSpec loss_from_config(const Config& cfg, const ModelSpec& spec) {
  LossSpec w;
  double total = 0;
  for (const auto& h : cfg.arch.heads) total += std::fabs(h.weight);
  const double norm = total > 0 ? 1.0 / total : 0.0;
  double energy_task = 1.0;
  for (const auto& h : cfg.arch.heads)
    if (is_energy_head(cfg.arch, h)) energy_task = h.weight * norm;
  w.energy = spec.energy ? cfg.arch.energy_weight * energy_task : 0.0;
  w.energy_peratom = spec.energy ? cfg.arch.energy_peratom_weight * energy_task : 0.0;
  w.force = spec.energy ? cfg.arch.force_weight : 0.0;
  w.stress = spec.energy ? cfg.arch.stress_weight : 0.0;
  for (const auto& h : spec.heads) w.heads.push_back(h.weight * norm);
  w.kind = loss_kind(cfg.training.loss_function_type);
  return w;
}

}  // namespace hydragnn
