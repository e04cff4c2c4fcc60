// SPDX-License-Identifier: BSD-3-Clause
// A validated Config -> the model's architecture (ModelSpec) and the loss weights (LossSpec).
#pragma once

#include <hydragnn/io/config.hpp>
#include <hydragnn/io/names.hpp>
#include <hydragnn/model/spec.hpp>
#include <hydragnn/autodiff/loss.hpp>

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
  s.energy_head_dims = a.node_dim_headlayers;
  s.graph_num_sharedlayers = a.graph_num_sharedlayers;
  s.graph_dim_sharedlayers = a.graph_dim_sharedlayers;
  s.graph_head_dims = a.graph_dim_headlayers;
  s.node_head_dims = a.node_dim_headlayers;
  for (const auto& h : a.heads) {
    if (s.energy && h.name == "energy") continue;  // the conservative energy head
    s.heads.push_back(HeadDef{h.name, h.type == "node", h.dim, h.weight});
  }
  return s;
}

inline LossSpec loss_from_config(const Config& cfg, const ModelSpec& spec) {
  LossSpec w;
  double energy_task = 1.0;
  for (const auto& h : cfg.arch.heads)
    if (h.name == "energy") energy_task = h.weight;
  w.energy = spec.energy ? cfg.arch.energy_weight * energy_task : 0.0;
  w.energy_peratom = spec.energy ? cfg.arch.energy_peratom_weight * energy_task : 0.0;
  w.force = spec.energy ? cfg.arch.force_weight : 0.0;
  w.stress = spec.energy ? cfg.arch.stress_weight : 0.0;
  for (const auto& h : spec.heads) w.heads.push_back(h.weight);
  w.mae = cfg.training.loss_function_type == "mae";
  return w;
}

}  // namespace hydragnn
