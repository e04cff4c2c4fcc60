// SPDX-License-Identifier: BSD-3-Clause
// Hyperparameter search by asynchronous successive halving (ASHA): trials sampled from a search space,
// trained to rungs of min_epochs * eta^r epochs; a worker that is free promotes a trial that is in the
// top 1/eta of the results at its rung, or else starts a new trial. Bad trials therefore stop after
// their first rung. Workers (groups of MPI ranks, or separate processes) share one state file in the
// output directory, read and written under an exclusive file lock, so the search has no coordinator,
// survives a crash (jobs that were running are handed out again) and resumes with `hpo` run again.
//
// search.json:
//   {"base": "config.json",                   // a hydragnn config (relative to search.json)
//    "trials": 8, "seed": 1,
//    "min_epochs": 1, "max_epochs": 8, "reduction_factor": 2,
//    "ranks_per_trial": 1,
//    "space": {"NeuralNetwork.Architecture.hidden_dim": {"choice": [16, 32, 64]},
//              "NeuralNetwork.Architecture.mpnn_type": {"choice": ["SchNet", "PaiNN"]},
//              "NeuralNetwork.Training.Optimizer.learning_rate": {"log_uniform": [1e-4, 1e-2]},
//              "NeuralNetwork.Architecture.radius": {"uniform": [4.0, 6.0]}}}
#pragma once

#include <hydragnn/io/config.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace hydragnn {

struct HpoSpec {
  nlohmann::json base;     ///< the base config (JSON)
  std::string base_dir = ".";
  int trials = 8;
  std::uint64_t seed = 1;
  int min_epochs = 1, max_epochs = 8, eta = 2, ranks_per_trial = 1;
  nlohmann::json space = nlohmann::json::object();
  /// Epochs of each rung: min_epochs * eta^r, the last one max_epochs.
  std::vector<int> rungs() const {
    std::vector<int> r;
    for (long e = min_epochs; e < max_epochs; e *= eta) r.push_back(int(e));
    r.push_back(max_epochs);
    return r;
  }
};

inline HpoSpec load_hpo_spec(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open search file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError(path + ": malformed JSON: " + e.what());
  }
  HpoSpec s;
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  const std::string base_dir = dir.empty() ? "." : dir.string();
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string k = it.key();
    auto num = [&](int& v, int lo) {
      if (!it->is_number_integer() || it->get<long>() < lo)
        throw ConfigError(path + ": '" + k + "' must be an integer >= " + std::to_string(lo));
      v = it->get<int>();
    };
    if (k == "base") {
      if (!it->is_string()) throw ConfigError(path + ": 'base' must name a config file");
      std::string p = it->get<std::string>();
      if (!std::filesystem::path(p).is_absolute()) p = (std::filesystem::path(base_dir) / p).string();
      std::ifstream b(p);
      if (!b) throw ConfigError(path + ": 'base': cannot open " + p);
      try {
        s.base = nlohmann::json::parse(b);
      } catch (const nlohmann::json::parse_error& e) {
        throw ConfigError(p + ": malformed JSON: " + e.what());
      }
      s.base_dir = std::filesystem::path(p).parent_path().string();
      if (s.base_dir.empty()) s.base_dir = ".";
      // dataset paths made absolute, so trial and best configs work from any directory
      if (s.base.contains("Dataset") && s.base["Dataset"].contains("path") && s.base["Dataset"]["path"].is_object())
        for (auto& v : s.base["Dataset"]["path"])
          if (v.is_string() && !std::filesystem::path(v.get<std::string>()).is_absolute())
            v = std::filesystem::absolute(std::filesystem::path(s.base_dir) / v.get<std::string>()).lexically_normal().string();
    } else if (k == "trials") {
      num(s.trials, 1);
    } else if (k == "seed") {
      int v = 0;
      num(v, 0);
      s.seed = std::uint64_t(v);
    } else if (k == "min_epochs") {
      num(s.min_epochs, 1);
    } else if (k == "max_epochs") {
      num(s.max_epochs, 1);
    } else if (k == "reduction_factor") {
      num(s.eta, 2);
    } else if (k == "ranks_per_trial") {
      num(s.ranks_per_trial, 1);
    } else if (k == "space") {
      if (!it->is_object() || it->empty()) throw ConfigError(path + ": 'space' must be a non-empty object");
      for (auto d = it->begin(); d != it->end(); ++d) {
        const auto& v = *d;
        const bool ok = v.is_object() && v.size() == 1 &&
                        ((v.contains("choice") && v["choice"].is_array() && !v["choice"].empty()) ||
                         (v.contains("uniform") && v["uniform"].is_array() && v["uniform"].size() == 2) ||
                         (v.contains("log_uniform") && v["log_uniform"].is_array() && v["log_uniform"].size() == 2 &&
                          v["log_uniform"][0].is_number() && v["log_uniform"][0].get<double>() > 0 &&
                          v["log_uniform"][1].is_number() && v["log_uniform"][1].get<double>() > 0));
        if (!ok)
          throw ConfigError(path + ": 'space." + d.key() + "' must be {\"choice\": [...]}, {\"uniform\": [lo, hi]} or " +
                            "{\"log_uniform\": [lo, hi]} (lo, hi > 0)");
      }
      s.space = *it;
    } else {
      throw ConfigError(path + ": unknown key '" + k + "'");
    }
  }
  if (s.base.is_null()) throw ConfigError(path + ": 'base' (a config file) is required");
  if (s.max_epochs < s.min_epochs) throw ConfigError(path + ": max_epochs < min_epochs");
  return s;
}

/// The values of trial t: a pure function of (seed, t).
inline nlohmann::json sample_trial(const HpoSpec& s, int t) {
  std::mt19937_64 rng(s.seed * 1000003ull + std::uint64_t(t));
  nlohmann::json out = nlohmann::json::object();
  for (auto d = s.space.begin(); d != s.space.end(); ++d) {
    const auto& v = *d;
    if (v.contains("choice")) {
      std::uniform_int_distribution<std::size_t> u(0, v["choice"].size() - 1);
      out[d.key()] = v["choice"][u(rng)];
    } else if (v.contains("uniform")) {
      std::uniform_real_distribution<double> u(v["uniform"][0].get<double>(), v["uniform"][1].get<double>());
      out[d.key()] = u(rng);
    } else {
      std::uniform_real_distribution<double> u(std::log(v["log_uniform"][0].get<double>()),
                                               std::log(v["log_uniform"][1].get<double>()));
      out[d.key()] = std::exp(u(rng));
    }
  }
  return out;
}

/// The base config with a trial's values (dotted paths) and num_epoch set.
inline nlohmann::json trial_config(const HpoSpec& s, const nlohmann::json& values, int epochs) {
  nlohmann::json c = s.base;
  for (auto it = values.begin(); it != values.end(); ++it) {
    nlohmann::json* node = &c;
    std::istringstream path(it.key());
    std::string part;
    std::vector<std::string> parts;
    while (std::getline(path, part, '.')) parts.push_back(part);
    for (std::size_t k = 0; k + 1 < parts.size(); ++k) node = &(*node)[parts[k]];
    (*node)[parts.back()] = *it;
  }
  c["NeuralNetwork"]["Training"]["num_epoch"] = epochs;
  return c;
}

/// One unit of work: train trial `trial` to rung `rung` (from its checkpoint at the rung below).
struct HpoJob {
  int trial = -1, rung = 0;
  bool valid() const { return trial >= 0; }
};

/// The shared state of a search (hpo_state.json), changed only under the lock of hpo_state.lock.
class HpoState {
 public:
  HpoState(const HpoSpec& spec, const std::string& dir) : spec_(spec), dir_(dir) {}

  /// Take the next job for `worker` (invalid when nothing is left to start now); done: nothing runs
  /// and nothing is left.
  HpoJob next(int worker, bool& done) {
    Lock lock(dir_ + "/hpo_state.lock");
    nlohmann::json st = read();
    const auto rungs = spec_.rungs();
    HpoJob job;
    // promote: from the highest rung down, a finished trial in the top 1/eta of its rung
    for (int r = int(rungs.size()) - 2; r >= 0 && !job.valid(); --r) {
      std::vector<std::pair<double, int>> at;  // (loss, trial) of trials that finished rung r
      for (auto& t : st["trials"])
        if (int(t["losses"].size()) > r) at.emplace_back(t["losses"][std::size_t(r)].get<double>(), t["id"].get<int>());
      std::sort(at.begin(), at.end());
      const std::size_t top = at.size() / std::size_t(spec_.eta);
      for (std::size_t k = 0; k < top && !job.valid(); ++k) {
        auto& t = st["trials"][std::size_t(at[k].second)];
        if (int(t["losses"].size()) == r + 1 && t["running"].get<int>() < 0) job = {at[k].second, r + 1};
      }
    }
    if (!job.valid() && int(st["trials"].size()) < spec_.trials) {
      const int id = int(st["trials"].size());
      st["trials"].push_back({{"id", id}, {"values", sample_trial(spec_, id)}, {"losses", nlohmann::json::array()},
                              {"running", -1}});
      job = {id, 0};
    }
    if (job.valid()) st["trials"][std::size_t(job.trial)]["running"] = worker;
    bool any_running = false;
    for (auto& t : st["trials"])
      if (t["running"].get<int>() >= 0) any_running = true;
    done = !job.valid() && !any_running;
    write(st);
    return job;
  }

  /// After a crash: the jobs marked running are handed out again.
  void recover() {
    Lock lock(dir_ + "/hpo_state.lock");
    nlohmann::json st = read();
    for (auto& t : st["trials"]) t["running"] = -1;
    write(st);
  }

  /// Record the validation loss of a finished job.
  void finish(const HpoJob& job, double loss) {
    Lock lock(dir_ + "/hpo_state.lock");
    nlohmann::json st = read();
    auto& t = st["trials"][std::size_t(job.trial)];
    if (int(t["losses"].size()) == job.rung) t["losses"].push_back(std::isfinite(loss) ? loss : 1e300);
    t["running"] = -1;
    write(st);
  }

  nlohmann::json snapshot() const {
    Lock lock(dir_ + "/hpo_state.lock");
    return read();
  }

 private:
  struct Lock {
    int fd;
    explicit Lock(const std::string& path) : fd(::open(path.c_str(), O_CREAT | O_RDWR, 0644)) {
      if (fd < 0 || ::flock(fd, LOCK_EX) != 0) throw std::runtime_error(path + ": cannot lock");
    }
    ~Lock() {
      ::flock(fd, LOCK_UN);
      ::close(fd);
    }
  };
  nlohmann::json read() const {
    std::ifstream in(dir_ + "/hpo_state.json");
    if (!in) return {{"trials", nlohmann::json::array()}};
    return nlohmann::json::parse(in);
  }
  void write(const nlohmann::json& st) const {
    const std::string tmp = dir_ + "/hpo_state.json.tmp";
    std::ofstream(tmp) << st.dump(1) << "\n";
    std::filesystem::rename(tmp, dir_ + "/hpo_state.json");
  }
  HpoSpec spec_;
  std::string dir_;
};

/// results.csv (one row per trial and rung), best_config.json (the trial with the lowest loss at the
/// highest rung any trial reached) and best_configs/<k>.json, the `top` best in that order (highest
/// rung first, then loss), each with num_epoch = max_epochs.
inline void write_hpo_results(const HpoSpec& s, const nlohmann::json& st, const std::string& dir, int top = 3) {
  const auto rungs = s.rungs();
  std::ofstream csv(dir + "/results.csv");
  csv << "trial,rung,epochs,val_loss";
  for (auto d = s.space.begin(); d != s.space.end(); ++d) csv << "," << d.key();
  csv << "\n";
  std::vector<std::pair<std::pair<int, double>, int>> ranked;  // ((-rung, loss), trial)
  for (const auto& t : st["trials"]) {
    const auto& L = t["losses"];
    for (std::size_t r = 0; r < L.size(); ++r) {
      csv << t["id"].get<int>() << "," << r << "," << rungs[r] << "," << L[r].get<double>();
      for (auto d = s.space.begin(); d != s.space.end(); ++d) csv << "," << t["values"][d.key()].dump();
      csv << "\n";
    }
    if (!L.empty()) ranked.push_back({{-int(L.size()), L.back().get<double>()}, t["id"].get<int>()});
  }
  std::sort(ranked.begin(), ranked.end());
  std::filesystem::create_directories(dir + "/best_configs");
  for (std::size_t k = 0; k < ranked.size() && int(k) < top; ++k) {
    const std::string text =
        trial_config(s, st["trials"][std::size_t(ranked[k].second)]["values"], s.max_epochs).dump(2) + "\n";
    std::ofstream(dir + "/best_configs/" + std::to_string(k + 1) + ".json") << text;
    if (k == 0) std::ofstream(dir + "/best_config.json") << text;
  }
}

}  // namespace hydragnn
