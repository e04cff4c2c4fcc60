// SPDX-License-Identifier: BSD-3-Clause
// Weights by name: a model's named parameter blocks (HydraGNN state_dict names where a block has a
// HydraGNN counterpart) <-> the "named parameters" JSON written by tools/golden/convert_state_dict.py
//   {"format": "hydragnn-named-params-1", "mpnn_type": ..., "species": [Z...] (optional),
//    "parameters": {name: {"shape": [...], "data": [flat, row-major]}}}
// Loading is strict: every block of the model must be present with its shape, and every entry of the
// file must be used, except buffers our model recomputes (SchNet's Gaussian ".offset", PNA's degree
// averages). The model's own buffers (BatchNorm running statistics and num_batches_tracked,
// Model::named_buffers()) are read the same way from the same object, and required.
#pragma once

#include <hydragnn/core/types.hpp>

#include <nlohmann/json.hpp>

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct NamedParamsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace named_params_detail {
/// Buffers our model recomputes: SchNet's Gaussian ".offset", the PNA degree averages (from the
/// architecture's pna_deg).
inline bool recomputed_buffer(const std::string& name) {
  for (const std::string suffix : {".offset", ".aggr_module.avg_deg_lin", ".aggr_module.avg_deg_log"})
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  return false;
}
}  // namespace named_params_detail

namespace named_params_detail {
/// Copy every block of `blocks` from `params` into `dst` (host, indexed by NamedParam::offset).
template <class Dst>
void read_blocks(const std::vector<NamedParam>& blocks, const nlohmann::json& params, const std::string& where,
                 const std::string& mpnn_type, std::set<std::string>& used, Dst&& dst) {
  for (const NamedParam& np : blocks) {
    auto it = params.find(np.name);
    if (it == params.end())
      throw NamedParamsError(where + ": no parameter '" + np.name + "' (needed by this " + mpnn_type +
                             " architecture)");
    try {
      const auto shape = it->at("shape").get<std::vector<int>>();
      if (shape != np.shape) {
        std::string a, b;
        for (int d : shape) a += (a.empty() ? "" : ", ") + std::to_string(d);
        for (int d : np.shape) b += (b.empty() ? "" : ", ") + std::to_string(d);
        throw NamedParamsError(where + ": parameter '" + np.name + "' has shape [" + a + "], the architecture needs [" +
                               b + "]");
      }
      const auto& data = it->at("data");
      if (!data.is_array() || data.size() != np.size())
        throw NamedParamsError(where + ": parameter '" + np.name + "' has " + std::to_string(data.size()) +
                               " values, its shape needs " + std::to_string(np.size()));
      for (std::size_t k = 0; k < np.size(); ++k) dst(np.offset + k, data[k].get<double>());
    } catch (const nlohmann::json::exception& e) {
      throw NamedParamsError(where + ": parameter '" + np.name + "' is malformed: " + e.what());
    }
    used.insert(np.name);
  }
}
}  // namespace named_params_detail

/// Copy the blocks of `params` (the "parameters" object) into the model's parameter buffer (and
/// its buffers: BatchNorm running statistics).
template <class ModelT>
void load_named_parameters(ModelT& model, const nlohmann::json& params, const std::string& where) {
  using T = typename ModelT::real_type;
  if (!params.is_object()) throw NamedParamsError(where + ": 'parameters' must be an object");
  auto h = Kokkos::create_mirror_view(model.params());
  Kokkos::deep_copy(h, model.params());
  std::set<std::string> used;
  const std::string type = model.spec().mpnn_type;
  named_params_detail::read_blocks(model.named_parameters(), params, where, type, used,
                                   [&](std::size_t i, double v) { h(i) = T(v); });
  std::vector<double> buf = model.buffers();
  named_params_detail::read_blocks(model.named_buffers(), params, where, type, used,
                                   [&](std::size_t i, double v) { buf[i] = v; });
  for (auto it = params.begin(); it != params.end(); ++it)
    if (!used.count(it.key()) && !named_params_detail::recomputed_buffer(it.key()))
      throw NamedParamsError(where + ": parameter '" + it.key() + "' has no counterpart in this " +
                             model.spec().mpnn_type + " architecture");
  Kokkos::deep_copy(model.params(), h);
  model.set_buffers(buf);
}

/// The model's parameters as a named-parameter JSON object.
template <class ModelT>
nlohmann::json named_parameters_json(const ModelT& model) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.params());
  nlohmann::json out = nlohmann::json::object();
  for (const NamedParam& np : model.named_parameters()) {
    std::vector<double> v(np.size());
    for (std::size_t k = 0; k < np.size(); ++k) v[k] = double(h(np.offset + k));
    out[np.name] = {{"shape", np.shape}, {"data", v}};
  }
  const std::vector<double> buf = model.buffers();
  for (const NamedParam& np : model.named_buffers())
    out[np.name] = {{"shape", np.shape}, {"data", std::vector<double>(buf.begin() + long(np.offset),
                                                                      buf.begin() + long(np.offset + np.size()))}};
  return out;
}

}  // namespace hydragnn
