// SPDX-License-Identifier: BSD-3-Clause
// Checkpoints: one binary file, written atomically (temp file + rename).
//
//   "HYDRAGNN-CKPT 1\n"
//   u64 header_bytes, header (JSON: precision, model spec, training state, config)
//   u64 n, params[n] (T), u64 n_opt, m[n_opt], v[n_opt] (T)
//   u64 FNV-1a-64 checksum of everything above
//
// Everything needed to resume bit-for-bit (weights, optimizer moments, step count, learning rate,
// scheduler and early-stopping counters, epoch) is stored. Corrupt, truncated or mismatched files
// give a CheckpointError naming the file and what is wrong.
#pragma once

#include <hydragnn/models/spec.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

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

struct CheckpointData {
  std::string precision;  ///< "float" or "double"
  ModelSpec spec;
  TrainState state;
  std::string config_json;  ///< the training config (canonical JSON), informational
  std::vector<double> params, opt_m, opt_v;  ///< stored in `precision`
};

namespace detail {

inline std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline nlohmann::json spec_to_json(const ModelSpec& s) {
  nlohmann::json j;
  j["mpnn_type"] = s.mpnn_type;
  j["hidden_dim"] = s.hidden_dim;
  j["num_conv_layers"] = s.num_conv_layers;
  j["num_filters"] = s.num_filters;
  j["cutoff"] = s.cutoff;
  j["max_neighbours"] = s.max_neighbours;
  j["radial_type"] = s.radial.type == RadialBasis::Gaussian ? "gaussian" : "bessel";
  j["radial_size"] = s.radial.size;
  j["envelope"] = s.radial.envelope == Envelope::Cosine ? "cosine" : "polynomial";
  j["activation"] = activation_name(s.act);
  j["pooling"] = pooling_name(s.pooling);
  j["energy"] = s.energy;
  j["energy_head_dims"] = s.energy_head_dims;
  j["graph_num_sharedlayers"] = s.graph_num_sharedlayers;
  j["graph_dim_sharedlayers"] = s.graph_dim_sharedlayers;
  j["graph_head_dims"] = s.graph_head_dims;
  j["node_head_dims"] = s.node_head_dims;
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
  s.num_filters = j.at("num_filters").get<int>();
  s.cutoff = j.at("cutoff").get<double>();
  s.max_neighbours = j.at("max_neighbours").get<int>();
  s.radial.type = j.at("radial_type").get<std::string>() == "bessel" ? RadialBasis::Bessel : RadialBasis::Gaussian;
  s.radial.size = j.at("radial_size").get<int>();
  s.radial.cutoff = s.cutoff;
  s.radial.envelope = j.value("envelope", std::string("cosine")) == "polynomial" ? Envelope::Polynomial : Envelope::Cosine;
  s.act = parse_activation(j.at("activation").get<std::string>());
  s.pooling = parse_pooling(j.at("pooling").get<std::string>());
  s.energy = j.at("energy").get<bool>();
  s.energy_head_dims = j.at("energy_head_dims").get<std::vector<int>>();
  s.graph_num_sharedlayers = j.at("graph_num_sharedlayers").get<int>();
  s.graph_dim_sharedlayers = j.at("graph_dim_sharedlayers").get<int>();
  s.graph_head_dims = j.at("graph_head_dims").get<std::vector<int>>();
  s.node_head_dims = j.at("node_head_dims").get<std::vector<int>>();
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

template <class T>
void put_array(std::string& out, const std::vector<double>& v) {
  const std::uint64_t n = v.size();
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  for (double x : v) {
    const T t = T(x);
    out.append(reinterpret_cast<const char*>(&t), sizeof t);
  }
}

}  // namespace detail

inline void write_checkpoint(const std::string& path, const CheckpointData& c) {
  nlohmann::json h;
  h["format"] = "hydragnn-checkpoint";
  h["precision"] = c.precision;
  h["spec"] = detail::spec_to_json(c.spec);
  const TrainState& s = c.state;
  h["state"] = {{"epoch", s.epoch}, {"step", s.step}, {"lr", s.lr}, {"sched_best", detail::num(s.sched_best)},
                {"sched_bad", s.sched_bad}, {"best_val", detail::num(s.best_val)}, {"best_epoch", s.best_epoch},
                {"stop_bad", s.stop_bad}};
  h["config"] = c.config_json;
  const std::string header = h.dump();
  std::string out = "HYDRAGNN-CKPT 1\n";
  const std::uint64_t hn = header.size();
  out.append(reinterpret_cast<const char*>(&hn), sizeof hn);
  out += header;
  if (c.precision == "float") {
    detail::put_array<float>(out, c.params);
    detail::put_array<float>(out, c.opt_m);
    detail::put_array<float>(out, c.opt_v);
  } else {
    detail::put_array<double>(out, c.params);
    detail::put_array<double>(out, c.opt_m);
    detail::put_array<double>(out, c.opt_v);
  }
  const std::uint64_t sum = detail::fnv1a(out);
  out.append(reinterpret_cast<const char*>(&sum), sizeof sum);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw CheckpointError("cannot write checkpoint '" + tmp + "'");
    f.write(out.data(), std::streamsize(out.size()));
    f.flush();
    if (!f) throw CheckpointError("error while writing checkpoint '" + tmp + "' (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw CheckpointError("cannot rename '" + tmp + "' to '" + path + "'");
  }
}

inline CheckpointData read_checkpoint(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw CheckpointError("cannot open checkpoint '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string data = ss.str();
  const std::string magic = "HYDRAGNN-CKPT 1\n";
  if (data.compare(0, magic.size(), magic) != 0)
    throw CheckpointError(path + ": not a hydragnn checkpoint (bad magic)");
  if (data.size() < magic.size() + 16) throw CheckpointError(path + ": truncated checkpoint");
  std::uint64_t sum;
  std::memcpy(&sum, data.data() + data.size() - 8, 8);
  if (detail::fnv1a(data.substr(0, data.size() - 8)) != sum)
    throw CheckpointError(path + ": checksum mismatch (file corrupt or truncated)");
  std::size_t pos = magic.size();
  auto get_u64 = [&](const char* what) {
    if (pos + 8 > data.size() - 8) throw CheckpointError(path + ": truncated while reading " + std::string(what));
    std::uint64_t v;
    std::memcpy(&v, data.data() + pos, 8);
    pos += 8;
    return v;
  };
  const std::uint64_t hn = get_u64("header size");
  if (pos + hn > data.size() - 8) throw CheckpointError(path + ": truncated header");
  CheckpointData c;
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(data.substr(pos, hn));
    pos += hn;
    c.precision = h.at("precision").get<std::string>();
    c.spec = detail::spec_from_json(h.at("spec"));
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
  const std::size_t tsize = c.precision == "float" ? 4 : c.precision == "double" ? 8 : 0;
  if (tsize == 0) throw CheckpointError(path + ": unknown precision '" + c.precision + "'");
  auto get_array = [&](std::vector<double>& v, const char* what) {
    const std::uint64_t n = get_u64(what);
    if (pos + n * tsize > data.size() - 8) throw CheckpointError(path + ": truncated " + std::string(what));
    v.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      if (tsize == 4) {
        float x;
        std::memcpy(&x, data.data() + pos, 4);
        v[i] = x;
      } else {
        std::memcpy(&v[i], data.data() + pos, 8);
      }
      pos += tsize;
    }
  };
  get_array(c.params, "parameters");
  get_array(c.opt_m, "optimizer state m");
  get_array(c.opt_v, "optimizer state v");
  if (pos != data.size() - 8) throw CheckpointError(path + ": trailing bytes after the optimizer state");
  return c;
}

}  // namespace hydragnn
