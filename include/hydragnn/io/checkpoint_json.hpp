// SPDX-License-Identifier: BSD-3-Clause
// The JSON half of a checkpoint: the header (precision, model spec, training state, config) that
// io/checkpoint.hpp stores in front of the binary arrays. JSON has no infinity: non-finite doubles
// are stored as null.
#pragma once

#include <hydragnn/io/names.hpp>
#include <hydragnn/model/spec.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Training state stored with the weights (everything a bit-for-bit resume needs besides them).
struct TrainState {
  int epoch = 0;  ///< epochs completed
  long step = 0;
  double lr = 1e-3;
  double sched_best = INFINITY;
  int sched_bad = 0;
  double best_val = INFINITY;
  int best_epoch = 0;
  int stop_bad = 0;
};

/// Version 2: layers-v2 parameter layout (named blocks) and the convolution's options in "options".
inline constexpr int checkpoint_format_version = 2;

/// The header of a checkpoint file.
struct CheckpointHeader {
  std::string precision;  ///< "float" or "double"
  ModelSpec spec;
  nlohmann::json options = nlohmann::json::object();  ///< the convolution's own options (io/model_options.hpp)
  TrainState state;
  std::string config_json;  ///< the training config (canonical JSON), informational
};

namespace detail {

inline nlohmann::json spec_to_json(const ModelSpec& s) {
  nlohmann::json j;
  j["mpnn_type"] = s.mpnn_type;
  j["hidden_dim"] = s.hidden_dim;
  j["num_conv_layers"] = s.num_conv_layers;
  j["input_dim"] = s.input_dim;
  j["cutoff"] = s.cutoff;
  j["max_neighbours"] = s.max_neighbours;
  j["activation"] = activation_name(s.act);
  j["pooling"] = pooling_name(s.pooling);
  j["energy"] = s.energy;
  j["energy_pooled"] = s.energy_pooled;
  auto branch_json = [](nlohmann::json& o, const BranchSpec& b) {
    o["energy_head_dims"] = b.energy_head_dims;
    o["graph_num_sharedlayers"] = b.graph_num_sharedlayers;
    o["graph_dim_sharedlayers"] = b.graph_dim_sharedlayers;
    o["graph_head_dims"] = b.graph_head_dims;
    o["node_head_dims"] = b.node_head_dims;
  };
  if (s.branches.size() == 1 && s.branches[0].name == "branch-0") {
    branch_json(j, s.branches[0]);  // the layout of single-branch checkpoints
  } else {
    j["branches"] = nlohmann::json::array();
    for (const BranchSpec& b : s.branches) {
      nlohmann::json o{{"name", b.name}};
      branch_json(o, b);
      j["branches"].push_back(o);
    }
  }
  j["head_variance"] = s.head_variance;
  if (s.num_nodes > 0) j["num_nodes"] = s.num_nodes;  // mlp_per_node heads
  if (s.node_conv) j["node_conv"] = true;              // node heads of type conv
  j["heads"] = nlohmann::json::array();
  for (const auto& h : s.heads)
    j["heads"].push_back({{"name", h.name}, {"node", h.node}, {"dim", h.dim}, {"weight", h.weight}});
  j["species"] = s.species.numbers;
  j["ref_energy"] = s.ref_energy;
  j["energy_scale"] = s.energy_scale;
  j["energy_shift"] = s.energy_shift;
  return j;
}

inline ModelSpec spec_from_json(const nlohmann::json& j) {
  ModelSpec s;
  s.mpnn_type = j.at("mpnn_type").get<std::string>();
  s.hidden_dim = j.at("hidden_dim").get<int>();
  s.num_conv_layers = j.at("num_conv_layers").get<int>();
  s.input_dim = j.at("input_dim").get<int>();
  s.cutoff = j.at("cutoff").get<double>();
  s.max_neighbours = j.at("max_neighbours").get<int>();
  s.act = parse_activation(j.at("activation").get<std::string>());
  s.pooling = parse_pooling(j.at("pooling").get<std::string>());
  s.energy = j.at("energy").get<bool>();
  s.energy_pooled = j.value("energy_pooled", false);  // absent in checkpoints before the pooled energy head
  auto branch_from = [](const nlohmann::json& o, BranchSpec& b) {
    b.energy_head_dims = o.at("energy_head_dims").get<std::vector<int>>();
    b.graph_num_sharedlayers = o.at("graph_num_sharedlayers").get<int>();
    b.graph_dim_sharedlayers = o.at("graph_dim_sharedlayers").get<int>();
    b.graph_head_dims = o.at("graph_head_dims").get<std::vector<int>>();
    b.node_head_dims = o.at("node_head_dims").get<std::vector<int>>();
  };
  s.branches.assign(1, BranchSpec{});
  if (j.contains("branches")) {
    s.branches.clear();
    for (const auto& o : j.at("branches")) {
      BranchSpec b;
      b.name = o.at("name").get<std::string>();
      branch_from(o, b);
      s.branches.push_back(b);
    }
    if (s.branches.empty()) throw std::invalid_argument("'branches' is empty");
  } else {
    branch_from(j, s.branches[0]);
  }
  s.head_variance = j.value("head_variance", false);  // absent in checkpoints before GaussianNLL
  s.num_nodes = j.value("num_nodes", 0);
  s.node_conv = j.value("node_conv", false);
  for (const auto& h : j.at("heads"))
    s.heads.push_back(HeadDef{h.at("name").get<std::string>(), h.at("node").get<bool>(), h.at("dim").get<int>(),
                              h.at("weight").get<double>()});
  s.species.numbers = j.at("species").get<std::vector<int>>();
  s.ref_energy = j.at("ref_energy").get<std::vector<double>>();
  s.energy_scale = j.at("energy_scale").get<double>();
  s.energy_shift = j.at("energy_shift").get<double>();
  return s;
}

// JSON has no infinity: store non-finite doubles as null.
inline nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }
inline double num_from(const nlohmann::json& j) { return j.is_null() ? INFINITY : j.get<double>(); }

}  // namespace detail

/// The header as one line of JSON.
inline std::string checkpoint_header_to_json(const CheckpointHeader& c) {
  nlohmann::json h;
  h["format"] = "hydragnn-checkpoint";
  h["version"] = checkpoint_format_version;
  h["precision"] = c.precision;
  h["spec"] = detail::spec_to_json(c.spec);
  h["options"] = c.options;
  const TrainState& s = c.state;
  h["state"] = {{"epoch", s.epoch}, {"step", s.step}, {"lr", s.lr}, {"sched_best", detail::num(s.sched_best)},
                {"sched_bad", s.sched_bad}, {"best_val", detail::num(s.best_val)}, {"best_epoch", s.best_epoch},
                {"stop_bad", s.stop_bad}};
  h["config"] = c.config_json;
  return h.dump();
}

/// Parse a header; a malformed one gives a CheckpointError naming `path`.
inline CheckpointHeader checkpoint_header_from_json(const std::string& text, const std::string& path) {
  CheckpointHeader c;
  try {
    const nlohmann::json h = nlohmann::json::parse(text);
    const int version = h.value("version", 1);
    if (version != checkpoint_format_version)
      throw CheckpointError(path + ": checkpoint format version " + std::to_string(version) + " (this build reads " +
                            std::to_string(checkpoint_format_version) +
                            "; version 1 predates the layers-v2 parameter layout, retrain or convert the weights by name)");
    c.precision = h.at("precision").get<std::string>();
    c.spec = detail::spec_from_json(h.at("spec"));
    c.options = h.at("options");
    if (!c.options.is_object()) throw CheckpointError(path + ": malformed checkpoint header: 'options' is not an object");
    const auto& s = h.at("state");
    c.state.epoch = s.at("epoch").get<int>();
    c.state.step = s.at("step").get<long>();
    c.state.lr = s.at("lr").get<double>();
    c.state.sched_best = detail::num_from(s.at("sched_best"));
    c.state.sched_bad = s.at("sched_bad").get<int>();
    c.state.best_val = detail::num_from(s.at("best_val"));
    c.state.best_epoch = s.at("best_epoch").get<int>();
    c.state.stop_bad = s.at("stop_bad").get<int>();
    c.config_json = h.at("config").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(path + ": malformed checkpoint header: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(path + ": malformed checkpoint header: " + e.what());
  }
  return c;
}

}  // namespace hydragnn
