// SPDX-License-Identifier: BSD-3-Clause
// A HydraGNN model's weights (named-parameter JSON, tools/golden/convert_state_dict.py) + a config of
// the same architecture -> our checkpoint. HydraGNN feeds node features (e.g. Z) into its first layer;
// here they are the rows of embedding.weight, one per species, so the file must carry "species"
// (atomic numbers, in the order of those rows) and "embedding.weight" [species, input_dim].
// Reference energies are zero and the energy scale 1: the model computes HydraGNN's energy as is.
#pragma once

#include <hydragnn/io/config_to_spec.hpp>
#include <hydragnn/io/named_params.hpp>
#include <hydragnn/train/trainer.hpp>

#include <string>
#include <vector>

namespace hydragnn {

/// Checkpoint of ModelT (Model<T, Conv, Exec>) with the named parameters of `weights` (the whole
/// file's JSON; `where` names it in errors).
template <class ModelT>
CheckpointData import_named_parameters(const Config& cfg, const nlohmann::json& weights, const std::string& where) {
  using Conv = typename ModelT::conv_type;
  if (!weights.is_object() || !weights.contains("parameters"))
    throw NamedParamsError(where + ": not a named-parameter file (no 'parameters' object)");
  if (weights.contains("mpnn_type") && weights.at("mpnn_type").is_string() &&
      weights.at("mpnn_type").get<std::string>() != Conv::name)
    throw NamedParamsError(where + ": holds a " + weights.at("mpnn_type").get<std::string>() +
                           " model but the config's mpnn_type is " + Conv::name);
  if (!weights.contains("species") || !weights.at("species").is_array())
    throw NamedParamsError(where + ": no 'species' list (the atomic numbers of embedding.weight's rows; "
                           "tools/golden/convert_state_dict.py --species writes it)");
  ModelSpec spec = spec_from_config(cfg);
  try {
    spec.species.numbers = weights.at("species").get<std::vector<int>>();
  } catch (const nlohmann::json::exception&) {
    throw NamedParamsError(where + ": 'species' must be a list of atomic numbers");
  }
  const auto& params = weights.at("parameters");
  if (params.contains("embedding.weight")) {
    const auto shape = params.at("embedding.weight").value("shape", std::vector<int>{});
    if (shape.size() == 2 && cfg.arch.input_dim == 0) spec.input_dim = shape[1];
  }
  spec.ref_energy.assign(spec.species.size(), 0.0);
  spec.energy_scale = 1.0;
  spec.energy_shift = 0.0;
  ModelT model(spec, cfg.arch.template conv_options<Conv>());
  load_named_parameters(model, params, where);
  return make_checkpoint(model, static_cast<const Optimizer<typename ModelT::real_type, typename ModelT::exec_space>*>(nullptr),
                         TrainState{}, to_json(cfg));
}

}  // namespace hydragnn
