// SPDX-License-Identifier: BSD-3-Clause
// HydraGNN-schema JSON configuration files -> plain, validated structs.
//
// parse_config / load_config / to_json are the only functions here that touch
// nlohmann::json (JSON lives in io/ and the layers above it); the rest of the
// library sees only the structs below. Parsing is strict: every key must be known (or on the
// explicit list of HydraGNN keys that are accepted and ignored), every value
// must have the right JSON type and a valid range. All error messages start
// with the source name (file name, or "<string>") and use full dotted key
// paths such as 'NeuralNetwork.Architecture.hidden_dim'.
#pragma once

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <hydragnn/io/model_options.hpp>

#include <nlohmann/json.hpp>

namespace hydragnn {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One output head, from NeuralNetwork.Variables_of_interest (+ task_weights).
struct HeadSpec {
  std::string name;    ///< output_names[k], e.g. "energy"
  std::string type;    ///< "graph" or "node"
  int dim = 1;         ///< output_dim[k] (1 when output_dim is absent)
  double weight = 1.0; ///< Architecture.task_weights[k]
};

/// The layer widths of one head branch (HydraGNN's output_heads.graph[k] / node[k] "architecture").
struct HeadBranchConfig {
  std::string name = "branch-0";  ///< HydraGNN's "type"
  int graph_num_sharedlayers = 1, graph_dim_sharedlayers = 32, graph_num_headlayers = 2;
  std::vector<int> graph_dim_headlayers{32, 32};
  int node_num_headlayers = 2;
  std::vector<int> node_dim_headlayers{32, 32};
  std::string node_head_type = "mlp";
};
inline bool operator==(const HeadBranchConfig& a, const HeadBranchConfig& b) {
  return std::tie(a.name, a.graph_num_sharedlayers, a.graph_dim_sharedlayers, a.graph_num_headlayers,
                  a.graph_dim_headlayers, a.node_num_headlayers, a.node_dim_headlayers, a.node_head_type) ==
         std::tie(b.name, b.graph_num_sharedlayers, b.graph_dim_sharedlayers, b.graph_num_headlayers,
                  b.graph_dim_headlayers, b.node_num_headlayers, b.node_dim_headlayers, b.node_head_type);
}

struct ArchitectureConfig {
  std::string mpnn_type = "SchNet";  ///< a registered convolution (model/registry.hpp)
  double radius = 5.0;               ///< cutoff, > 0
  int max_neighbours = -1;           ///< -1: unlimited (JSON <= 0 or absent)
  int hidden_dim = 64;
  int input_dim = 0;                 ///< species-embedding width (HydraGNN input_dim); 0: hidden_dim
  int num_conv_layers = 3;
  std::string activation_function = "silu";    ///< relu | silu | ssp | tanh | sigmoid | softplus
  std::string graph_pooling = "mean";          ///< mean | sum | max ("add" -> "sum")
  bool periodic_boundary_conditions = false;
  /// The selected mpnn_type's own keys (its options struct in conv/<model>.hpp, e.g. SchNet's
  /// num_filters, num_gaussians; EGNN's equivariance), every key with its value or default.
  nlohmann::json options = nlohmann::json::object();
  /// Output heads (Architecture.output_heads.{graph,node}): one branch, or HydraGNN's list of
  /// branches {"type": "branch-k", "architecture": {...}} (multi-dataset heads); never empty.
  std::vector<HeadBranchConfig> branches{HeadBranchConfig{}};
  std::vector<HeadSpec> heads;  ///< never empty after parsing
  // Interatomic potential (energy/force) training.
  bool enable_interatomic_potential = true;  ///< JSON default: false with Variables_of_interest (HydraGNN's), true without
  bool freeze_conv_layers = false;  ///< the trunk's parameters are not trained (fine-tuning the heads)
  double energy_weight = 1.0, energy_peratom_weight = 0.0, force_weight = 1.0, stress_weight = 0.0;

  /// The options struct of convolution Conv (mpnn_type must be Conv::name).
  template <class Conv>
  typename Conv::options_type conv_options() const {
    return options_from_json<typename Conv::options_type>(options, "NeuralNetwork.Architecture");
  }
};

struct OptimizerConfig {
  std::string type = "AdamW";  ///< SGD | Adam | AdamW (input case-insensitive)
  double learning_rate = 1e-3;
  double weight_decay = 0.0;
  double momentum = 0.0;       ///< SGD only
};

struct TrainingConfig {
  int num_epoch = 100;
  int batch_size = 32;
  double perc_train = 0.9;  ///< in (0, 1]
  bool early_stopping = false;  ///< JSON "EarlyStopping"
  int patience = 10;            ///< early-stopping patience (epochs)
  std::string loss_function_type = "mse";  ///< mse | mae | rmse | smooth_l1 | GaussianNLLLoss
  OptimizerConfig optimizer;               ///< JSON "Optimizer"
  // ReduceLROnPlateau, JSON "Training.Scheduler" (our extension);
  // {"type": "none"} disables it.
  bool scheduler = true;
  double scheduler_factor = 0.5;  ///< in (0, 1)
  int scheduler_patience = 5;
  double min_lr = 1e-6;
  unsigned long long seed = 42;
  int checkpoint_every = 1;  ///< epochs between checkpoints; 0 = never
  bool continue_run = false;  ///< JSON "continue" (0/1 or bool): start from `startfrom`
  std::string startfrom;      ///< a checkpoint file, or a run directory (its checkpoint.hgnn); relative to the config
  /// HydraGNN's --oversampling: every shard draws oversampling_num_samples structures per epoch (0: as
  /// many as the largest shard holds), whole shuffles of its structures one after another
  bool oversampling = false;
  int oversampling_num_samples = 0;
};

/// Dataset.{name,format,path}. Either `total` is set (then the loader splits it:
/// the first perc_train fraction trains, the remainder is halved between
/// validation and test, see split_total()) or `train` is set (validate/test
/// optional). With no Dataset section all paths are empty (inference use).
/// Paths are stored as written; resolve() makes relative ones relative to the
/// directory of the config file.
/// One of several datasets (Dataset.datasets[i], ours): its files, split as Dataset.path, and the
/// head branch its structures go through (multi-dataset training with per-dataset heads).
struct DatasetPart {
  std::string name;
  std::string branch;  ///< a branch of output_heads; after load_config never empty
  std::string train, validate, test, total;
  std::string where;   ///< "Dataset.path" or "Dataset.datasets[i].path" (messages; not serialized)
  const std::string& path(const std::string& key) const;
};
inline bool operator==(const DatasetPart& a, const DatasetPart& b) {
  return std::tie(a.name, a.branch, a.train, a.validate, a.test, a.total) ==
         std::tie(b.name, b.branch, b.train, b.validate, b.test, b.total);
}

struct DatasetConfig {
  std::string name;
  std::string format = "extxyz";  ///< extxyz, ase-db (ASE databases, SQLite), or hdf5 (files written by `hydragnn convert`)
  std::string train, validate, test, total;
  std::vector<DatasetPart> datasets;  ///< Dataset.datasets (several datasets); empty with Dataset.path
  std::string base_dir = ".";     ///< not serialized by to_json
  /// The datasets to train on: Dataset.datasets, or the one of Dataset.path (branch "branch-0").
  std::vector<DatasetPart> parts() const;
  /// resolve(part.path(key)), checked to name an existing file (ConfigError naming part.where.key).
  std::string existing_file(const DatasetPart& part, const std::string& key) const;
  std::string resolve(const std::string& p) const;
  /// The path stored under `key` (train | validate | test | total); empty when not set.
  const std::string& path(const std::string& key) const;
  /// resolve(path(key)), checked to name an existing file: a ConfigError otherwise, e.g.
  /// "Dataset.path.train: file 'x.extxyz' not found (resolved to /abs/x.extxyz)".
  std::string existing_file(const std::string& key) const;
};

struct Config {
  std::string verbosity_level;  ///< Verbosity.level as text; empty when absent
  DatasetConfig dataset;
  ArchitectureConfig arch;
  TrainingConfig training;
};

/// Sizes of the train/validate/test parts of a `total` dataset of n samples.
struct SplitSizes {
  std::size_t train = 0, validate = 0, test = 0;
};
inline SplitSizes split_total(std::size_t n, double perc_train) {
  SplitSizes s;
  s.train = std::min<std::size_t>(n, static_cast<std::size_t>(std::llround(perc_train * double(n))));
  const std::size_t rest = n - s.train;
  s.validate = rest / 2;
  s.test = rest - s.validate;
  return s;
}

// ---- equality (round-trip checks) -------------------------------------------

inline bool operator==(const HeadSpec& a, const HeadSpec& b) {
  return std::tie(a.name, a.type, a.dim, a.weight) == std::tie(b.name, b.type, b.dim, b.weight);
}
inline bool operator!=(const HeadSpec& a, const HeadSpec& b) { return !(a == b); }

/// Whether head h (one of a.heads) is the conservative energy: with enable_interatomic_potential,
/// the head named "energy", or the only head whatever its name (HydraGNN's MLIP configs allow one
/// head and call it, e.g., "graph_energy"; its target is the structure's energy).
inline bool is_energy_head(const ArchitectureConfig& a, const HeadSpec& h) {
  return a.enable_interatomic_potential && (h.name == "energy" || a.heads.size() == 1);
}

inline bool operator==(const ArchitectureConfig& a, const ArchitectureConfig& b) {
  auto t = [](const ArchitectureConfig& x) {
    return std::tie(x.mpnn_type, x.radius, x.max_neighbours, x.hidden_dim, x.input_dim, x.num_conv_layers,
                    x.activation_function, x.graph_pooling, x.periodic_boundary_conditions,
                    x.options, x.branches, x.heads,
                    x.enable_interatomic_potential, x.energy_weight, x.energy_peratom_weight,
                    x.force_weight, x.stress_weight, x.freeze_conv_layers);
  };
  return t(a) == t(b);
}
inline bool operator!=(const ArchitectureConfig& a, const ArchitectureConfig& b) { return !(a == b); }

inline bool operator==(const OptimizerConfig& a, const OptimizerConfig& b) {
  return std::tie(a.type, a.learning_rate, a.weight_decay, a.momentum) ==
         std::tie(b.type, b.learning_rate, b.weight_decay, b.momentum);
}
inline bool operator!=(const OptimizerConfig& a, const OptimizerConfig& b) { return !(a == b); }

inline bool operator==(const TrainingConfig& a, const TrainingConfig& b) {
  auto t = [](const TrainingConfig& x) {
    return std::tie(x.num_epoch, x.batch_size, x.perc_train, x.early_stopping, x.patience,
                    x.loss_function_type, x.optimizer, x.scheduler, x.scheduler_factor,
                    x.scheduler_patience, x.min_lr, x.seed, x.checkpoint_every, x.continue_run, x.startfrom,
                    x.oversampling, x.oversampling_num_samples);
  };
  return t(a) == t(b);
}
inline bool operator!=(const TrainingConfig& a, const TrainingConfig& b) { return !(a == b); }

inline bool operator==(const DatasetConfig& a, const DatasetConfig& b) {
  return std::tie(a.name, a.format, a.train, a.validate, a.test, a.total, a.datasets, a.base_dir) ==
         std::tie(b.name, b.format, b.train, b.validate, b.test, b.total, b.datasets, b.base_dir);
}
inline bool operator!=(const DatasetConfig& a, const DatasetConfig& b) { return !(a == b); }

inline bool operator==(const Config& a, const Config& b) {
  return std::tie(a.verbosity_level, a.dataset, a.arch, a.training) ==
         std::tie(b.verbosity_level, b.dataset, b.arch, b.training);
}
inline bool operator!=(const Config& a, const Config& b) { return !(a == b); }

inline std::string DatasetConfig::resolve(const std::string& p) const {
  namespace fs = std::filesystem;
  if (p.empty() || base_dir.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

inline const std::string& DatasetConfig::path(const std::string& key) const {
  if (key == "train") return train;
  if (key == "validate") return validate;
  if (key == "test") return test;
  if (key == "total") return total;
  throw std::logic_error("DatasetConfig::path: no dataset key '" + key + "'");
}

inline const std::string& DatasetPart::path(const std::string& key) const {
  if (key == "train") return train;
  if (key == "validate") return validate;
  if (key == "test") return test;
  if (key == "total") return total;
  throw std::logic_error("DatasetPart::path: no dataset key '" + key + "'");
}

inline std::vector<DatasetPart> DatasetConfig::parts() const {
  if (!datasets.empty()) return datasets;
  return {DatasetPart{name, "branch-0", train, validate, test, total, "Dataset.path"}};
}

inline std::string DatasetConfig::existing_file(const std::string& key) const { return existing_file(parts().front(), key); }

inline std::string DatasetConfig::existing_file(const DatasetPart& part, const std::string& key) const {
  namespace fs = std::filesystem;
  const std::string& p = part.path(key);
  const std::string where = part.where + "." + key;
  if (p.empty()) throw ConfigError(where + ": not set");
  const std::string r = resolve(p);
  std::error_code ec;
  const std::string abs = fs::absolute(r, ec).lexically_normal().string();
  const fs::file_status st = fs::status(r, ec);
  if (!fs::exists(st)) throw ConfigError(where + ": file '" + p + "' not found (resolved to " + abs + ")");
  if (fs::is_directory(st)) throw ConfigError(where + ": '" + p + "' is a directory, not a file (resolved to " + abs + ")");
  return r;
}

// ---- parsing machinery --------------------------------------------------------

namespace config_detail {

using json = nlohmann::json;

enum : unsigned {
  kNull = 1, kBool = 2, kInt = 4, kFloat = 8, kStr = 16, kArr = 32, kObj = 64,
  kNum = kInt | kFloat
};

inline unsigned kind_of(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return kNull;
    case json::value_t::boolean: return kBool;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return kInt;
    case json::value_t::number_float: return kFloat;
    case json::value_t::string: return kStr;
    case json::value_t::array: return kArr;
    case json::value_t::object: return kObj;
    default: return 0;
  }
}

/// "integer or boolean"-style description of a set of kinds.
inline std::string kinds_str(unsigned m) {
  std::vector<const char*> p;
  if ((m & kNum) == kNum) p.push_back("number");
  else if (m & kInt) p.push_back("integer");
  else if (m & kFloat) p.push_back("floating-point number");
  if (m & kBool) p.push_back("boolean");
  if (m & kStr) p.push_back("string");
  if (m & kArr) p.push_back("array");
  if (m & kObj) p.push_back("object");
  if (m & kNull) p.push_back("null");
  std::string s;
  for (std::size_t i = 0; i < p.size(); ++i) s += (i ? " or " : "") + std::string(p[i]);
  return s.empty() ? "unknown" : s;
}

/// Actual type and (shortened) value, e.g. `string "64"`.
inline std::string describe(const json& v) {
  const unsigned k = kind_of(v);
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return std::string(k == kFloat ? "number" : kinds_str(k)) + " " + s;
}

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// Case-insensitive Levenshtein distance (for "did you mean" hints).
inline std::size_t edit_distance(const std::string& a, const std::string& b) {
  const std::string x = lower(a), y = lower(b);
  std::vector<std::size_t> row(y.size() + 1);
  for (std::size_t j = 0; j <= y.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= x.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= y.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (x[i - 1] != y[j - 1] ? 1u : 0u)});
      diag = up;
    }
  }
  return row[y.size()];
}

/// Consumes one JSON object: every key read through it is recorded as known,
/// so finish() can reject everything else.
class Reader {
 public:
  Reader(const json& obj, std::string path, const std::string& src)
      : obj_(&obj), path_(std::move(path)), src_(&src) {}

  std::string key_path(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }

  [[noreturn]] void fail(const std::string& msg) const { throw ConfigError(*src_ + ": " + msg); }

  /// Range/choice failure for `key` with offending value v (already JSON-printable).
  template <class T>
  [[noreturn]] void bad_value(const std::string& key, const T& v, const std::string& why) const {
    fail("invalid value " + json(v).dump() + " for '" + key_path(key) + "' (" + why + ")");
  }

  void check_type(const json& v, const std::string& path, unsigned mask) const {
    if (!(kind_of(v) & mask))
      fail("key '" + path + "': expected " + kinds_str(mask) + ", got " + describe(v));
  }

  /// Declares `key` known; returns its (type-checked) value or nullptr if absent.
  const json* take(const std::string& key, unsigned mask) {
    known_.push_back(key);
    auto it = obj_->find(key);
    if (it == obj_->end()) return nullptr;
    check_type(*it, key_path(key), mask);
    return &*it;
  }

  /// Reads `key` into `out` if present; returns whether it was present.
  template <class T>
  bool get(const std::string& key, T& out) {
    const json* v = take(key, mask_of(out));
    if (!v) return false;
    convert(*v, key_path(key), out);
    return true;
  }
  template <class T>
  bool get(const std::string& key, std::vector<T>& out) {
    const json* v = take(key, kArr);
    if (!v) return false;
    out.clear();
    const std::string p = key_path(key);
    for (std::size_t i = 0; i < v->size(); ++i) {
      const std::string ip = p + "[" + std::to_string(i) + "]";
      T x{};
      check_type((*v)[i], ip, mask_of(x));
      convert((*v)[i], ip, x);
      out.push_back(std::move(x));
    }
    return true;
  }

  /// Sub-object reader, or nullopt when the key is absent.
  std::optional<Reader> child(const std::string& key) {
    const json* v = take(key, kObj);
    if (!v) return std::nullopt;
    return Reader(*v, key_path(key), *src_);
  }

  /// `key` as an object (one reader) or an array of objects (one reader each, path key[i]); nothing
  /// when absent.
  std::vector<Reader> objects(const std::string& key) {
    const json* v = take(key, kObj | kArr);
    std::vector<Reader> out;
    if (!v) return out;
    if (v->is_object()) {
      out.emplace_back(*v, key_path(key), *src_);
      return out;
    }
    for (std::size_t i = 0; i < v->size(); ++i) {
      const std::string ip = key_path(key) + "[" + std::to_string(i) + "]";
      check_type((*v)[i], ip, kObj);
      out.emplace_back((*v)[i], ip, *src_);
    }
    return out;
  }
  /// The value under `key` as written (nullptr when absent); does not declare it known.
  const json* raw(const std::string& key) const {
    auto it = obj_->find(key);
    return it == obj_->end() ? nullptr : &*it;
  }
  bool is_array(const std::string& key) const {
    auto it = obj_->find(key);
    return it != obj_->end() && it->is_array();
  }

  /// Accepted-but-unused HydraGNN key: only its type is checked (and, for
  /// arrays, the element type when elem != 0).
  void ignore(const std::string& key, unsigned mask, unsigned elem = 0) {
    const json* v = take(key, mask);
    if (!v || !elem || !v->is_array()) return;
    for (std::size_t i = 0; i < v->size(); ++i)
      check_type((*v)[i], key_path(key) + "[" + std::to_string(i) + "]", elem);
  }

  /// Rejects keys never declared by take/get/child/ignore.
  void finish() const {
    for (auto it = obj_->begin(); it != obj_->end(); ++it) {
      if (std::find(known_.begin(), known_.end(), it.key()) != known_.end()) continue;
      std::string msg = "unknown key '" + key_path(it.key()) + "'";
      std::string best;
      std::size_t best_d = std::max<std::size_t>(2, it.key().size() / 3) + 1;
      for (const auto& k : known_) {
        const std::size_t d = edit_distance(it.key(), k);
        if (d < best_d) best_d = d, best = k;
      }
      if (!best.empty()) msg += " (did you mean '" + best + "'?)";
      fail(msg);
    }
  }

 private:
  static unsigned mask_of(const bool&) { return kBool; }
  static unsigned mask_of(const int&) { return kInt; }
  static unsigned mask_of(const unsigned long long&) { return kInt; }
  static unsigned mask_of(const double&) { return kNum; }
  static unsigned mask_of(const std::string&) { return kStr; }

  void convert(const json& v, const std::string&, bool& out) const { out = v.get<bool>(); }
  void convert(const json& v, const std::string&, double& out) const { out = v.get<double>(); }
  void convert(const json& v, const std::string&, std::string& out) const {
    out = v.get<std::string>();
  }
  void convert(const json& v, const std::string& p, int& out) const {
    const bool ok = v.is_number_unsigned() ? v.get<std::uint64_t>() <= std::uint64_t(INT_MAX)
                                           : v.get<std::int64_t>() >= INT_MIN &&
                                                 v.get<std::int64_t>() <= INT_MAX;
    if (!ok) fail("invalid value " + v.dump() + " for '" + p + "' (out of int range)");
    out = static_cast<int>(v.get<std::int64_t>());
  }
  void convert(const json& v, const std::string& p, unsigned long long& out) const {
    if (!v.is_number_unsigned()) fail("invalid value " + v.dump() + " for '" + p + "' (must be >= 0)");
    out = v.get<std::uint64_t>();
  }

  const json* obj_;
  std::string path_;
  const std::string* src_;
  std::vector<std::string> known_;
};

/// Returns the canonical spelling of `v` among `allowed` (optionally
/// case-insensitive); HydraGNN values we lack raise "not implemented yet".
inline std::string choose(const Reader& r, const std::string& key, const std::string& v,
                          std::initializer_list<const char*> allowed, bool case_insensitive = false,
                          std::initializer_list<const char*> not_implemented = {}) {
  auto same = [&](const char* a) { return case_insensitive ? lower(v) == lower(a) : v == a; };
  for (const char* a : allowed)
    if (same(a)) return a;
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  for (const char* a : not_implemented)
    if (same(a))
      r.fail("'" + r.key_path(key) + "' = " + json(v).dump() +
             " is not implemented yet (supported: " + list + ")");
  r.bad_value(key, v, "allowed: " + list);
}

template <class T, class Pred>
void check(const Reader& r, const std::string& key, const T& v, Pred ok, const char* why) {
  if (!ok(v)) r.bad_value(key, v, why);
}
inline bool positive(double x) { return x > 0; }
inline bool non_negative(double x) { return x >= 0; }

inline void parse_dataset(Reader& root, DatasetConfig& ds) {
  auto d = root.child("Dataset");
  if (!d) return;
  d->get("name", ds.name);
  if (d->get("format", ds.format)) {
    const std::string f = lower(ds.format);
    if (f != "extxyz" && f != "hdf5" && f != "ase-db")
      d->fail("'" + d->key_path("format") + "' = " + json(ds.format).dump() +
              " is not supported (\"extxyz\", \"ase-db\" or \"hdf5\")");
    ds.format = f;
  }
  auto read_paths = [](Reader& d, DatasetPart& part) {
    auto p = d.child("path");
    if (!p) return false;
    for (auto [key, field] : {std::pair<const char*, std::string*>{"train", &part.train},
                              {"validate", &part.validate}, {"test", &part.test},
                              {"total", &part.total}})
      if (p->get(key, *field) && field->empty()) p->bad_value(key, *field, "must not be empty");
    p->finish();
    if (!part.total.empty() && !(part.train.empty() && part.validate.empty() && part.test.empty()))
      p->fail("'" + d.key_path("path") + "': give either 'total' or 'train' (+ 'validate', 'test'), not both");
    if (part.total.empty() && part.train.empty()) p->fail("'" + d.key_path("path") + "' must contain 'total' or 'train'");
    part.where = d.key_path("path");
    return true;
  };
  DatasetPart single;
  const bool has_path = read_paths(*d, single);
  ds.train = single.train, ds.validate = single.validate, ds.test = single.test, ds.total = single.total;
  for (Reader& e : d->objects("datasets")) {  // several datasets, each with its head branch (ours)
    if (!d->is_array("datasets")) e.fail("'" + d->key_path("datasets") + "' must be a list of datasets");
    DatasetPart part;
    e.get("name", part.name);
    if (part.name.empty()) e.fail("'" + e.key_path("name") + "' is missing or empty");
    for (const DatasetPart& q : ds.datasets)
      if (q.name == part.name) e.fail("'" + e.key_path("name") + "': dataset \"" + part.name + "\" is listed twice");
    e.get("branch", part.branch);
    if (!read_paths(e, part)) e.fail("'" + e.key_path("path") + "' is missing");
    e.finish();
    ds.datasets.push_back(part);
  }
  if (has_path && !ds.datasets.empty())
    d->fail("'" + d->key_path("path") + "' and '" + d->key_path("datasets") + "' exclude each other");
  // HydraGNN keys accepted and ignored.
  d->ignore("node_features", kObj);
  d->ignore("graph_features", kObj);
  d->ignore("compositional_stratified_splitting", kBool);
  d->ignore("rotational_invariance", kBool);
  d->finish();
}

inline void parse_head_layers(Reader& h, int& num, std::vector<int>& dims) {
  h.get("num_headlayers", num);
  h.get("dim_headlayers", dims);
  check(h, "num_headlayers", num, [](int x) { return x >= 1; }, "must be >= 1");
  if (static_cast<int>(dims.size()) != num)
    h.fail("'" + h.key_path("dim_headlayers") + "' has " + std::to_string(dims.size()) +
           " entries but '" + h.key_path("num_headlayers") + "' is " + std::to_string(num));
  for (std::size_t i = 0; i < dims.size(); ++i)
    check(h, std::string("dim_headlayers[") + std::to_string(i) + "]", dims[i],
          [](int x) { return x > 0; }, "must be > 0");
}

/// output_heads.graph / .node: an object (one branch, "branch-0") or HydraGNN's list of branches
/// {"type": name, "architecture": {...}}. With lists for both, they name the same branches; an object
/// beside a list of several branches applies to every branch (ours: HydraGNN builds branch-0 only).
inline void parse_output_heads(Reader& oh, ArchitectureConfig& c) {
  struct Part {
    std::string name;
    std::optional<Reader> arch;
  };
  auto parts = [&](const char* key) {
    const bool listed = oh.is_array(key);
    std::vector<Part> out;
    for (Reader& r : oh.objects(key)) {
      if (!listed) {
        out.push_back(Part{"branch-0", r});
        continue;
      }
      Part p;
      if (!r.get("type", p.name)) r.fail("'" + r.key_path("type") + "' is missing (a branch name, e.g. \"branch-0\")");
      for (const Part& q : out)
        if (q.name == p.name) r.fail("'" + r.key_path("type") + "': branch \"" + p.name + "\" is listed twice");
      p.arch = r.child("architecture");
      if (!p.arch) r.fail("'" + r.key_path("architecture") + "' is missing");
      r.finish();
      out.push_back(std::move(p));
    }
    if (listed && out.empty()) oh.fail("'" + oh.key_path(key) + "' lists no branch");
    return std::pair<std::vector<Part>, bool>(std::move(out), listed);
  };
  auto [graph, graph_listed] = parts("graph");
  auto [node, node_listed] = parts("node");
  const std::vector<Part>& listed = graph_listed || !node_listed ? graph : node;  // the branch names
  c.branches.clear();
  for (const Part& p : listed.empty() ? node : listed) c.branches.push_back(HeadBranchConfig{p.name});
  if (c.branches.empty()) c.branches.push_back(HeadBranchConfig{});
  if (graph_listed && node_listed) {
    bool same = graph.size() == node.size();
    for (std::size_t k = 0; same && k < graph.size(); ++k) same = graph[k].name == node[k].name;
    if (!same)
      oh.fail("'" + oh.key_path("graph") + "' and '" + oh.key_path("node") +
              "' must list the same branches in the same order");
  }
  // one object (or a list of one) holds the widths of every branch
  auto arch_of = [](const std::vector<Part>& ps, std::size_t k) -> std::optional<Reader> { return ps.empty() ? std::nullopt : ps[ps.size() == 1 ? 0 : k].arch; };
  for (std::size_t k = 0; k < c.branches.size(); ++k) {
    HeadBranchConfig& b = c.branches[k];
    if (auto g = arch_of(graph, k)) {
      g->get("num_sharedlayers", b.graph_num_sharedlayers);
      g->get("dim_sharedlayers", b.graph_dim_sharedlayers);
      parse_head_layers(*g, b.graph_num_headlayers, b.graph_dim_headlayers);
      check(*g, "num_sharedlayers", b.graph_num_sharedlayers, [](int x) { return x >= 0; }, "must be >= 0");
      check(*g, "dim_sharedlayers", b.graph_dim_sharedlayers, [](int x) { return x > 0; }, "must be > 0");
      g->finish();
    }
    if (auto n = arch_of(node, k)) {
      parse_head_layers(*n, b.node_num_headlayers, b.node_dim_headlayers);
      if (n->get("type", b.node_head_type))
        b.node_head_type = choose(*n, "type", b.node_head_type, {"mlp", "mlp_per_node", "conv"});
      n->ignore("num_sharedlayers", kInt);
      n->ignore("dim_sharedlayers", kInt);
      n->finish();
    }
  }
  for (const HeadBranchConfig& b : c.branches)
    if (b.node_head_type != c.branches[0].node_head_type)
      oh.fail("'" + oh.key_path("node") + "': every branch's node heads must be of one type (\"" +
              c.branches[0].node_head_type + "\" and \"" + b.node_head_type + "\"), as HydraGNN assumes");
  if (c.branches[0].node_head_type == "conv") {
    if (c.branches.size() > 1)
      oh.fail("'" + oh.key_path("node") + "': node heads of type \"conv\" need one head branch (HydraGNN d251f816 runs "
              "a branch's convolutions on its atoms with the whole batch's edges, which is not a graph); use \"mlp\"");
    if (c.mpnn_type == "CGCNN")
      oh.fail("'" + oh.key_path("node") + "': node heads of type \"conv\" are not defined for CGCNN (a CGConv keeps its "
              "width; HydraGNN d251f816 raises for them too); use \"mlp\"");
    if (c.branches[0].node_dim_headlayers.empty())
      oh.fail("'" + oh.key_path("node") + "': a \"conv\" node head needs at least one hidden layer (dim_headlayers)");
  }
  oh.finish();
}

inline const json* top_json_child(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() || !it->is_object() ? nullptr : &*it;
}

/// Reads the selected convolution's option keys (type-checked; enumerations by name,
/// case-insensitive), and type-checks then ignores the option keys of the other convolutions.
struct OptionKeys {
  Reader& r;
  std::vector<std::string>& seen;
  bool active;
  template <class V>
  void operator()(const char* key, V& v) {
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) return;
    seen.push_back(key);
    if constexpr (std::is_same<V, std::vector<double>>::value) {
      const json* j = r.raw(key);
      if (j && j->is_null()) {  // HydraGNN writes e.g. "pna_deg": null for "from the data": absent
        r.ignore(key, kNull);
        return;
      }
    }
    if (active) {
      r.get(key, v);
    } else if constexpr (std::is_same<V, std::vector<double>>::value) {
      r.ignore(key, kArr, kNum);
    } else if constexpr (std::is_same<V, std::vector<std::string>>::value) {
      r.ignore(key, kArr, kStr);
    } else {
      r.ignore(key, std::is_same<V, bool>::value ? kBool : std::is_same<V, int>::value ? kInt
                    : std::is_same<V, double>::value ? kNum : kStr);
    }
  }
  template <class E, std::size_t K>
  void choice(const char* key, E& v, const Choice<E> (&table)[K]) {
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) return;
    seen.push_back(key);
    if (!active) {
      r.ignore(key, kStr);
      return;
    }
    std::string s;
    if (!r.get(key, s)) return;
    for (const auto& c : table)
      if (lower(s) == lower(c.name)) {
        v = c.value;
        return;
      }
    std::string list;
    for (const auto& c : table) list += (list.empty() ? "" : ", ") + std::string(c.name);
    r.bad_value(key, s, "allowed: " + list);
  }
};

/// The selected mpnn_type's options as canonical JSON (defaults filled, finalized, validated).
inline json parse_model_options(Reader& a, const ArchitectureConfig& c) {
  std::vector<std::string> seen;
  json out = json::object();
  dispatch_conv(c.mpnn_type, [&](auto tag) {
    using O = typename decltype(tag)::type::options_type;
    O o;
    o.visit(OptionKeys{a, seen, true});
    const ConvCommon common{c.hidden_dim, c.input_dim > 0 ? c.input_dim : c.hidden_dim, c.num_conv_layers, c.radius,
                            Activation::SiLU, c.max_neighbours};
    finalize_options(o, common, [&](const char* key, const char* why) {
      a.fail("invalid value for '" + a.key_path(key) + "' (" + why + ")");
    });
    out = options_to_json(o);
  });
  for_each_conv([&](auto tag) {
    using O = typename decltype(tag)::type::options_type;
    O o;
    o.visit(OptionKeys{a, seen, false});
  });
  return out;
}

/// Architecture; task_weights are returned separately (heads need them).
inline void parse_architecture(Reader& a, ArchitectureConfig& c,
                               std::optional<std::vector<double>>& task_weights) {
  if (a.get("mpnn_type", c.mpnn_type)) {
    const std::vector<std::string> names = conv_names();
    if (std::find(names.begin(), names.end(), c.mpnn_type) == names.end()) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      for (const char* n : {"MACE"})
        if (c.mpnn_type == n)
          a.fail("'" + a.key_path("mpnn_type") + "' = " + json(c.mpnn_type).dump() +
                 " is not implemented yet (supported: " + list + ")");
      a.bad_value("mpnn_type", c.mpnn_type, "allowed: " + list);
    }
  }
  a.get("radius", c.radius);
  check(a, "radius", c.radius, [](double x) { return x > 0 && std::isfinite(x); }, "must be > 0");
  if (a.get("max_neighbours", c.max_neighbours) && c.max_neighbours <= 0) c.max_neighbours = -1;
  a.get("hidden_dim", c.hidden_dim);
  check(a, "hidden_dim", c.hidden_dim, [](int x) { return x > 0; }, "must be > 0");
  if (a.get("input_dim", c.input_dim))
    check(a, "input_dim", c.input_dim, [](int x) { return x > 0; }, "must be > 0");
  a.get("num_conv_layers", c.num_conv_layers);
  check(a, "num_conv_layers", c.num_conv_layers, [](int x) { return x >= 1; }, "must be >= 1");
  if (a.get("activation_function", c.activation_function))
    c.activation_function = choose(a, "activation_function", c.activation_function,
                                   {"relu", "silu", "ssp", "tanh", "sigmoid", "softplus"}, true);
  if (a.get("graph_pooling", c.graph_pooling)) {
    c.graph_pooling = choose(a, "graph_pooling", c.graph_pooling, {"mean", "sum", "add", "max"}, true);
    if (c.graph_pooling == "add") c.graph_pooling = "sum";
  }
  a.get("periodic_boundary_conditions", c.periodic_boundary_conditions);
  c.options = parse_model_options(a, c);

  if (auto oh = a.child("output_heads")) parse_output_heads(*oh, c);

  std::vector<double> tw;
  if (a.get("task_weights", tw)) {
    for (std::size_t i = 0; i < tw.size(); ++i)
      check(a, "task_weights[" + std::to_string(i) + "]", tw[i], non_negative, "must be >= 0");
    task_weights = tw;
  }

  a.get("enable_interatomic_potential", c.enable_interatomic_potential);
  for (auto [key, field] : {std::pair<const char*, double*>{"energy_weight", &c.energy_weight},
                            {"energy_peratom_weight", &c.energy_peratom_weight},
                            {"force_weight", &c.force_weight},
                            {"stress_weight", &c.stress_weight}}) {
    a.get(key, *field);
    check(a, key, *field, non_negative, "must be >= 0");
  }

  // HydraGNN keys for models/features we do not implement: type-checked only.
  for (const char* k : {"global_attn_engine", "global_attn_type"}) a.ignore(k, kStr | kNull);
  for (const char* k : {"global_attn_heads", "pe_dim", "max_ell", "node_max_ell"})
    a.ignore(k, kInt);
  a.ignore("correlation", kInt | kArr, kInt);
  a.ignore("avg_num_neighbors", kNum | kNull);
  a.ignore("edge_dim", kInt | kNull);  // HydraGNN overwrites it from edge_features (config_utils)
  // what HydraGNN's update_config writes into the configs it saves (the GFM260 examples carry them):
  // copies of Variables_of_interest and the data's atoms per structure (mlp_per_node takes it from
  // the training set here)
  a.ignore("output_dim", kArr, kInt);
  a.ignore("output_type", kArr, kStr);
  a.ignore("num_nodes", kInt | kNull);
  a.ignore("initial_bias", kNum | kNull);
  a.get("freeze_conv_layers", c.freeze_conv_layers);
  a.ignore("SyncBatchNorm", kBool);
  a.finish();
}

inline void parse_variables(std::optional<Reader> v, const std::string& arch_path,
                            const std::optional<std::vector<double>>& task_weights,
                            const Reader& nn, ArchitectureConfig& c) {
  c.heads.clear();
  if (!v) {
    c.heads.push_back(HeadSpec{"energy", "node", 1, 1.0});  // the per-atom energy (HydraGNN's node head)
  } else {
    std::vector<std::string> names, types;
    std::vector<int> dims, index;
    const bool has_names = v->get("output_names", names);
    const bool has_types = v->get("type", types);
    const bool has_dims = v->get("output_dim", dims);
    const bool has_index = v->get("output_index", index);
    v->ignore("input_node_features", kArr, kInt);
    v->ignore("denormalize_output", kBool);
    // HydraGNN's update_config copies the dataset's feature lists here (the configs it saves)
    for (const char* k : {"graph_feature_names", "node_feature_names"}) v->ignore(k, kArr, kStr);
    for (const char* k : {"graph_feature_dims", "node_feature_dims"}) v->ignore(k, kArr, kInt);
    v->finish();
    if (!has_names) v->fail("'" + v->key_path("output_names") + "' is required");
    if (!has_types) v->fail("'" + v->key_path("type") + "' is required");
    if (names.empty()) v->fail("'" + v->key_path("output_names") + "' must not be empty");
    std::string lens;
    bool equal = true;
    auto add = [&](const char* key, bool present, std::size_t n) {
      if (!present) return;
      lens += (lens.empty() ? "" : ", ") + std::string(key) + " has " + std::to_string(n);
      equal = equal && n == names.size();
    };
    add("output_names", true, names.size());
    add("type", has_types, types.size());
    add("output_dim", has_dims, dims.size());
    add("output_index", has_index, index.size());
    if (!equal)
      v->fail("arrays in '" + nn.key_path("Variables_of_interest") +
              "' must have equal lengths (" + lens + ")");
    for (std::size_t i = 0; i < names.size(); ++i) {
      const std::string at = "[" + std::to_string(i) + "]";
      if (names[i].empty()) v->bad_value("output_names" + at, names[i], "must not be empty");
      for (std::size_t j = 0; j < i; ++j)
        if (names[j] == names[i]) v->bad_value("output_names" + at, names[i], "duplicate name");
      if (types[i] != "graph" && types[i] != "node")
        v->bad_value("type" + at, types[i], "allowed: graph, node");
      if (has_dims && dims[i] <= 0) v->bad_value("output_dim" + at, dims[i], "must be > 0");
      if (has_index && index[i] < 0) v->bad_value("output_index" + at, index[i], "must be >= 0");
      c.heads.push_back(HeadSpec{names[i], types[i], has_dims ? dims[i] : 1, 1.0});
    }
  }
  if (task_weights) {
    if (task_weights->size() != c.heads.size())
      nn.fail("'" + arch_path + ".task_weights' has " + std::to_string(task_weights->size()) +
              " entries but there are " + std::to_string(c.heads.size()) + " output heads");
    for (std::size_t k = 0; k < c.heads.size(); ++k) c.heads[k].weight = (*task_weights)[k];
    double total = 0;
    for (double x : *task_weights) total += x;
    if (!(total > 0))
      nn.fail("'" + arch_path + ".task_weights' sum to 0: HydraGNN normalises them by their sum");
  }
}

inline void parse_training(Reader& t, TrainingConfig& c) {
  t.get("num_epoch", c.num_epoch);
  check(t, "num_epoch", c.num_epoch, [](int x) { return x >= 0; }, "must be >= 0");
  t.get("batch_size", c.batch_size);
  check(t, "batch_size", c.batch_size, [](int x) { return x >= 1; }, "must be >= 1");
  t.get("perc_train", c.perc_train);
  check(t, "perc_train", c.perc_train, [](double x) { return x > 0 && x <= 1; }, "must be in (0, 1]");
  t.get("EarlyStopping", c.early_stopping);
  t.get("patience", c.patience);
  check(t, "patience", c.patience, [](int x) { return x >= 1; }, "must be >= 1");
  if (t.get("loss_function_type", c.loss_function_type))
    c.loss_function_type = choose(t, "loss_function_type", c.loss_function_type,
                                  {"mse", "mae", "rmse", "smooth_l1", "GaussianNLLLoss"}, true);
  if (auto o = t.child("Optimizer")) {
    if (o->get("type", c.optimizer.type))
      c.optimizer.type = choose(*o, "type", c.optimizer.type, {"SGD", "Adam", "AdamW"}, true);
    o->get("learning_rate", c.optimizer.learning_rate);
    check(*o, "learning_rate", c.optimizer.learning_rate, positive, "must be > 0");
    o->get("weight_decay", c.optimizer.weight_decay);
    check(*o, "weight_decay", c.optimizer.weight_decay, non_negative, "must be >= 0");
    o->get("momentum", c.optimizer.momentum);
    check(*o, "momentum", c.optimizer.momentum, [](double x) { return x >= 0 && x < 1; },
          "must be in [0, 1)");
    o->ignore("use_zero_redundancy", kBool);
    o->finish();
  }
  if (auto s = t.child("Scheduler")) {
    std::string type = "ReduceLROnPlateau";
    if (s->get("type", type)) type = choose(*s, "type", type, {"ReduceLROnPlateau", "none"}, true);
    c.scheduler = type != "none";
    s->get("factor", c.scheduler_factor);
    check(*s, "factor", c.scheduler_factor, [](double x) { return x > 0 && x < 1; }, "must be in (0, 1)");
    s->get("patience", c.scheduler_patience);
    check(*s, "patience", c.scheduler_patience, [](int x) { return x >= 0; }, "must be >= 0");
    s->get("min_lr", c.min_lr);
    check(*s, "min_lr", c.min_lr, non_negative, "must be >= 0");
    s->finish();
  }
  t.get("seed", c.seed);
  t.get("checkpoint_every", c.checkpoint_every);
  check(t, "checkpoint_every", c.checkpoint_every, [](int x) { return x >= 0; }, "must be >= 0");
  if (const json* v = t.take("continue", kInt | kBool)) c.continue_run = v->is_boolean() ? v->get<bool>() : v->get<long>() != 0;
  t.get("startfrom", c.startfrom);
  if (c.continue_run && c.startfrom.empty())
    t.fail("'" + t.key_path("continue") + "' is set but '" + t.key_path("startfrom") + "' names no checkpoint");
  t.get("oversampling", c.oversampling);
  t.get("oversampling_num_samples", c.oversampling_num_samples);
  check(t, "oversampling_num_samples", c.oversampling_num_samples, [](int x) { return x >= 0; },
        "must be >= 0 (0: as many as the largest shard holds)");
  if (c.oversampling_num_samples > 0 && !c.oversampling)
    t.fail("'" + t.key_path("oversampling_num_samples") + "' is set but '" + t.key_path("oversampling") +
           "' is not true");
  // HydraGNN keys accepted and ignored.
  t.ignore("Checkpoint", kBool | kInt);  // checkpoints (latest and best) are always written
  t.ignore("checkpoint_warmup", kInt);
  t.ignore("epoch_start", kInt);         // HydraGNN records its resume epoch in the configs it saves
  t.ignore("early_stopping", kBool);     // HydraGNN's LJ example: HydraGNN reads EarlyStopping only
  t.ignore("conv_checkpointing", kBool);
  t.ignore("compute_grad_energy", kBool);
  t.finish();
}

/// 1-based line and column of byte offset `pos` in `text`.
inline std::pair<std::size_t, std::size_t> line_col(const std::string& text, std::size_t pos) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < std::min(pos, text.size()); ++i) {
    if (text[i] == '\n') ++line, col = 1;
    else ++col;
  }
  return {line, col};
}

inline bool is_decimal_integer(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  std::size_t i = (s[0] == '-') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return std::to_string(std::stoll(s)) == s;
}

}  // namespace config_detail

// ---- public API -----------------------------------------------------------------

/// Parses HydraGNN-schema JSON text. base_dir is "."; errors start with source_name.
inline Config parse_config(const std::string& json_text, const std::string& source_name = "<string>") {
  using namespace config_detail;
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::parse_error& e) {
    const auto [line, col] = line_col(json_text, e.byte > 0 ? e.byte - 1 : 0);
    throw ConfigError(source_name + ": malformed JSON at line " + std::to_string(line) +
                      ", column " + std::to_string(col) + " (byte " + std::to_string(e.byte) +
                      "): " + e.what());
  }
  if (!root.is_object())
    throw ConfigError(source_name + ": top level must be a JSON object, got " + describe(root));

  Config cfg;
  Reader top(root, "", source_name);

  if (auto v = top.child("Verbosity")) {
    if (const json* lvl = v->take("level", kInt | kStr))
      cfg.verbosity_level = lvl->is_string() ? lvl->get<std::string>() : lvl->dump();
    v->finish();
  }

  parse_dataset(top, cfg.dataset);

  const std::string arch_path = "NeuralNetwork.Architecture";
  std::optional<std::vector<double>> task_weights;
  if (auto nn = top.child("NeuralNetwork")) {
    if (auto a = nn->child("Architecture")) parse_architecture(*a, cfg.arch, task_weights);
    const auto voi = nn->child("Variables_of_interest");
    // enable_interatomic_potential defaults to HydraGNN's false when the outputs are listed; without
    // Variables_of_interest the default model is ours: a per-atom energy potential
    const json* nnj = top_json_child(root, "NeuralNetwork");
    const json* aj = nnj ? top_json_child(*nnj, "Architecture") : nullptr;
    if (voi && !(aj && aj->contains("enable_interatomic_potential"))) cfg.arch.enable_interatomic_potential = false;
    parse_variables(voi, arch_path, task_weights, *nn, cfg.arch);
    if (auto t = nn->child("Training")) parse_training(*t, cfg.training);
    for (const HeadSpec& h : cfg.arch.heads)
      if (is_energy_head(cfg.arch, h) && h.type == "graph" && cfg.arch.graph_pooling != "sum")
        nn->fail("the energy is a graph head (" + arch_path.substr(0, arch_path.rfind('.')) +
                 ".Variables_of_interest.type \"graph\": pooling -> MLP) with enable_interatomic_potential: '" +
                 arch_path + ".graph_pooling' must be \"add\" (it is \"" + cfg.arch.graph_pooling +
                 "\"), as HydraGNN requires; type \"node\" is the per-atom energy");
    if (cfg.training.loss_function_type == "GaussianNLLLoss" && cfg.arch.enable_interatomic_potential)
      nn->fail("'NeuralNetwork.Training.loss_function_type' = \"GaussianNLLLoss\" trains direct heads with a variance "
               "output; the conservative energy (" + arch_path + ".enable_interatomic_potential = true) has none "
               "(HydraGNN's energy_force_loss cannot use it either)");
    if (auto p = nn->child("Profile")) {
      p->ignore("enable", kInt | kBool);
      p->finish();
    }
    nn->finish();
  } else {
    parse_variables(std::nullopt, arch_path, std::nullopt, top, cfg.arch);
  }
  bool have_arch = false;
  if (const json* nnj = top_json_child(root, "NeuralNetwork")) have_arch = top_json_child(*nnj, "Architecture") != nullptr;
  if (!have_arch) {  // no Architecture object: the default model with its default options
    const json empty = json::object();
    Reader a(empty, arch_path, source_name);
    cfg.arch.options = parse_model_options(a, cfg.arch);
  }

  if (auto vis = top.child("Visualization")) {
    for (const char* k : {"plot_init_solution", "plot_hist_solution", "create_plots"})
      vis->ignore(k, kBool);
    vis->finish();
  }
  top.finish();
  // each dataset's head branch: named, or by position when there are as many branches as datasets,
  // or the one branch
  const std::vector<HeadBranchConfig>& br = cfg.arch.branches;
  for (std::size_t i = 0; i < cfg.dataset.datasets.size(); ++i) {
    DatasetPart& part = cfg.dataset.datasets[i];
    const std::string key = "Dataset.datasets[" + std::to_string(i) + "].branch";
    std::string names;
    for (const auto& b : br) names += (names.empty() ? "\"" : ", \"") + b.name + "\"";
    if (part.branch.empty()) {
      if (br.size() == 1)
        part.branch = br[0].name;
      else if (br.size() == cfg.dataset.datasets.size())
        part.branch = br[i].name;
      else
        throw ConfigError(source_name + ": '" + key + "' is missing: " + std::to_string(cfg.dataset.datasets.size()) +
                          " datasets, " + std::to_string(br.size()) + " head branches (" + names +
                          "): name the branch of each dataset");
    }
    if (std::none_of(br.begin(), br.end(), [&](const HeadBranchConfig& b) { return b.name == part.branch; }))
      throw ConfigError(source_name + ": '" + key + "' = \"" + part.branch + "\" is not a branch of " + arch_path +
                        ".output_heads (" + names + ")");
  }
  cfg.dataset.base_dir = ".";
  return cfg;
}

/// Reads and parses a config file; base_dir is the file's directory.
inline Config load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": error reading config file");
  Config cfg = parse_config(ss.str(), path);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  cfg.dataset.base_dir = dir.empty() ? "." : dir.string();
  return cfg;
}

/// Canonical HydraGNN-layout JSON; parse_config(to_json(c)) == c (base_dir aside,
/// which parse_config sets to ".").
inline std::string to_json(const Config& c) {
  using oj = nlohmann::ordered_json;
  oj root = oj::object();
  if (!c.verbosity_level.empty()) {
    root["Verbosity"]["level"] = config_detail::is_decimal_integer(c.verbosity_level)
                                     ? oj(std::stoll(c.verbosity_level))
                                     : oj(c.verbosity_level);
  }
  const DatasetConfig& d = c.dataset;
  const bool any_path = !(d.train.empty() && d.validate.empty() && d.test.empty() && d.total.empty());
  if (!d.name.empty() || any_path || !d.datasets.empty()) {
    oj ds = oj::object();
    if (!d.name.empty()) ds["name"] = d.name;
    ds["format"] = d.format;
    auto paths = [](const DatasetPart& part) {
      oj p = oj::object();
      for (auto [key, val] : {std::pair<const char*, const std::string*>{"train", &part.train},
                              {"validate", &part.validate}, {"test", &part.test}, {"total", &part.total}})
        if (!val->empty()) p[key] = *val;
      return p;
    };
    if (any_path) ds["path"] = paths(d.parts().front());
    for (const DatasetPart& part : d.datasets)
      ds["datasets"].push_back(oj{{"name", part.name}, {"branch", part.branch}, {"path", paths(part)}});
    root["Dataset"] = ds;
  }

  const ArchitectureConfig& a = c.arch;
  oj arch = oj::object();
  arch["mpnn_type"] = a.mpnn_type;
  arch["radius"] = a.radius;
  if (a.max_neighbours > 0) arch["max_neighbours"] = a.max_neighbours;
  arch["hidden_dim"] = a.hidden_dim;
  if (a.input_dim > 0) arch["input_dim"] = a.input_dim;
  arch["num_conv_layers"] = a.num_conv_layers;
  arch["activation_function"] = a.activation_function;
  arch["graph_pooling"] = a.graph_pooling;
  arch["periodic_boundary_conditions"] = a.periodic_boundary_conditions;
  for (auto it = a.options.begin(); it != a.options.end(); ++it) arch[it.key()] = it.value();
  auto graph_of = [](const HeadBranchConfig& b) {
    return oj{{"num_sharedlayers", b.graph_num_sharedlayers},
              {"dim_sharedlayers", b.graph_dim_sharedlayers},
              {"num_headlayers", b.graph_num_headlayers},
              {"dim_headlayers", b.graph_dim_headlayers}};
  };
  auto node_of = [](const HeadBranchConfig& b) {
    return oj{{"num_headlayers", b.node_num_headlayers}, {"dim_headlayers", b.node_dim_headlayers}, {"type", b.node_head_type}};
  };
  if (a.branches.size() == 1 && a.branches[0].name == "branch-0") {
    arch["output_heads"]["graph"] = graph_of(a.branches[0]);
    arch["output_heads"]["node"] = node_of(a.branches[0]);
  } else {
    oj g = oj::array(), n = oj::array();
    for (const HeadBranchConfig& b : a.branches) {
      g.push_back(oj{{"type", b.name}, {"architecture", graph_of(b)}});
      n.push_back(oj{{"type", b.name}, {"architecture", node_of(b)}});
    }
    arch["output_heads"]["graph"] = g;
    arch["output_heads"]["node"] = n;
  }
  oj names = oj::array(), types = oj::array(), dims = oj::array(), weights = oj::array();
  for (const HeadSpec& h : a.heads) {
    names.push_back(h.name);
    types.push_back(h.type);
    dims.push_back(h.dim);
    weights.push_back(h.weight);
  }
  arch["task_weights"] = weights;
  arch["enable_interatomic_potential"] = a.enable_interatomic_potential;
  arch["freeze_conv_layers"] = a.freeze_conv_layers;
  arch["energy_weight"] = a.energy_weight;
  arch["energy_peratom_weight"] = a.energy_peratom_weight;
  arch["force_weight"] = a.force_weight;
  arch["stress_weight"] = a.stress_weight;

  oj nn = oj::object();
  nn["Architecture"] = arch;
  nn["Variables_of_interest"] = oj{{"output_names", names}, {"type", types}, {"output_dim", dims}};

  const TrainingConfig& t = c.training;
  oj tr = oj::object();
  tr["num_epoch"] = t.num_epoch;
  tr["batch_size"] = t.batch_size;
  tr["perc_train"] = t.perc_train;
  tr["EarlyStopping"] = t.early_stopping;
  tr["patience"] = t.patience;
  tr["loss_function_type"] = t.loss_function_type;
  tr["Optimizer"] = oj{{"type", t.optimizer.type},
                       {"learning_rate", t.optimizer.learning_rate},
                       {"weight_decay", t.optimizer.weight_decay},
                       {"momentum", t.optimizer.momentum}};
  tr["Scheduler"] = oj{{"type", t.scheduler ? "ReduceLROnPlateau" : "none"},
                       {"factor", t.scheduler_factor},
                       {"patience", t.scheduler_patience},
                       {"min_lr", t.min_lr}};
  tr["seed"] = t.seed;
  tr["checkpoint_every"] = t.checkpoint_every;
  if (t.continue_run || !t.startfrom.empty()) {
    tr["continue"] = t.continue_run ? 1 : 0;
    tr["startfrom"] = t.startfrom;
  }
  if (t.oversampling) {
    tr["oversampling"] = true;
    tr["oversampling_num_samples"] = t.oversampling_num_samples;
  }
  nn["Training"] = tr;
  root["NeuralNetwork"] = nn;
  return root.dump(4) + "\n";
}

}  // namespace hydragnn
