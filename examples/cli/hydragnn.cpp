// SPDX-License-Identifier: BSD-3-Clause
// hydragnn: command-line driver (train / predict / evaluate) over the header-only library.
//
//   hydragnn train    --config C.json [--output DIR] [--resume | --overwrite] [--accumulate N]
//   mpirun -np P hydragnn train ...   (data-parallel: batch_size structures per rank and micro-batch)
//   hydragnn predict  --checkpoint P --input in.extxyz --output out.extxyz [--precision float64] [--branch B]
//   hydragnn predict  --ensemble P1,P2,... --input in.extxyz --output out.extxyz
//   hydragnn evaluate --checkpoint P --input test.extxyz [--json] [--branch B]
//   hydragnn import   --config C.json --weights W.json --output ckpt.hgnn [--overwrite]
//   [mpirun -np P] hydragnn hpo --search search.json --output DIR [--max-jobs N]
//   hydragnn convert  --input a.extxyz,b.db --output data.h5 [--dataset-names a,b] [--radius R]
//   hydragnn --version
#include <CLI/CLI.hpp>

#include <hydragnn/compat/kokkos.hpp>
#include <hydragnn/dist/hpo.hpp>
#include <hydragnn/dist/launcher.hpp>
#ifdef HYDRAGNN_HAVE_MPI
#include <hydragnn/dist/mpi.hpp>
#endif
#ifdef HYDRAGNN_HAVE_HDF5
#include <hydragnn/io/hdf5.hpp>
#endif
#ifdef HYDRAGNN_HAVE_SQLITE
#include <hydragnn/io/ase_db.hpp>
#endif
#include <hydragnn/io/config.hpp>
#include <hydragnn/autodiff/potential.hpp>
#include <hydragnn/model/registry.hpp>
#include <hydragnn/sim/potential.hpp>
#include <hydragnn/train/import.hpp>
#include <hydragnn/train/trainer.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#ifndef HYDRAGNN_VERSION
#define HYDRAGNN_VERSION "unknown"
#endif
#ifndef HYDRAGNN_GIT_COMMIT
#define HYDRAGNN_GIT_COMMIT ""
#endif

namespace {

using namespace hydragnn;
using Exec = Kokkos::DefaultExecutionSpace;
using Real = float;  // network maths in float; geometry and energies in double

/// Call f with a Model type for the given mpnn_type (the registry's type list).
template <class R = Real, class F>
void with_model_type(const std::string& mpnn_type, F&& f) {
  const bool found = dispatch_conv(mpnn_type, [&](auto tag) { f(Model<R, typename decltype(tag)::type, Exec>()); });
  if (!found) throw std::runtime_error("mpnn_type '" + mpnn_type + "' is not implemented");
}

std::string version_text() {
  std::string v = std::string("hydragnn ") + HYDRAGNN_VERSION;
  if (std::string(HYDRAGNN_GIT_COMMIT).size()) v += std::string(" (git ") + HYDRAGNN_GIT_COMMIT + ")";
  v += "\nKokkos " + compat::kokkos_version_string() + ", backends: " + compat::kokkos_backends() +
       ", default execution space: " + Exec::name();
  return v;
}

void print_metrics(const Metrics& m, const std::string& what, bool json, const LabelCounts* labels = nullptr) {
  if (json) {
    nlohmann::json j{{"dataset", what},
                     {"structures", m.n_structures},
                     {"energy_mae_eV", detail::num(m.e_mae)},
                     {"energy_rmse_eV", detail::num(m.e_rmse)},
                     {"energy_mae_per_atom_eV", detail::num(m.epa_mae)},
                     {"energy_rmse_per_atom_eV", detail::num(m.epa_rmse)},
                     {"force_mae_eV_per_A", detail::num(m.f_mae)},
                     {"force_rmse_eV_per_A", detail::num(m.f_rmse)},
                     {"stress_mae_eV_per_A3", detail::num(m.s_mae)}};
    if (labels) {
      j["frames"] = labels->frames;
      j["frames_without_energy"] = labels->frames - labels->energy;
      j["frames_without_forces"] = labels->frames - labels->forces;
    }
    std::cout << j.dump(2) << "\n";
    return;
  }
  if (labels)
    std::printf("%s: %zu structures (%zu with energy, %zu with forces)\n", what.c_str(), labels->frames, labels->energy,
                labels->forces);
  else
    std::printf("%s: %ld structures\n", what.c_str(), m.n_structures);
  if (m.n_structures) {
    std::printf("  energy MAE  %10.3f meV/structure  %8.3f meV/atom\n", m.e_mae * 1e3, m.epa_mae * 1e3);
    std::printf("  energy RMSE %10.3f meV/structure  %8.3f meV/atom\n", m.e_rmse * 1e3, m.epa_rmse * 1e3);
  } else {
    std::printf("  energy: no frame has an 'energy' label\n");
  }
  if (m.n_force_components)
    std::printf("  force  MAE  %10.3f meV/A   RMSE %8.3f meV/A  (per component)\n", m.f_mae * 1e3, m.f_rmse * 1e3);
  else
    std::printf("  force: no frame has a 'forces' column\n");
  if (std::isfinite(m.s_mae)) std::printf("  stress MAE  %10.4f meV/A^3\n", m.s_mae * 1e3);
}

Dataset load_for_model(const std::string& path, const ModelSpec& spec) {
  Dataset ds;
  ds.name = path;
  ds.frames = read_extxyz(path);
  if (ds.frames.empty()) throw DataError(path + ": no frames");
  DatasetRequirements req;
  req.allow_isolated = true;  // inference: isolated atoms simply get no messages
  build_graphs(ds, spec.cutoff, spec.max_neighbours, req);
  return ds;
}

/// Directories that create_directories(dir) would create, deepest first.
std::vector<std::filesystem::path> missing_directories(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> out;
  fs::path p = fs::absolute(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // trailing separator
  for (; !p.empty() && !fs::exists(p); p = p.parent_path()) {
    out.push_back(p);
    if (p == p.parent_path()) break;
  }
  return out;
}

/// Remove the directories a failed run created, deepest first, as long as they are empty (a
/// directory holding anything, e.g. a checkpoint this run wrote, is kept with its parents).
void remove_created_directories(const std::vector<std::filesystem::path>& created) {
  namespace fs = std::filesystem;
  for (const auto& d : created) {
    std::error_code ec;
    if (!fs::is_directory(d, ec) || !fs::is_empty(d, ec) || ec) break;
    fs::remove(d, ec);
    if (ec) break;
  }
}

/// The structures of one data file: an extxyz file held in memory, or a hydragnn HDF5 file whose atoms
/// are read on demand.
class StructureSource {
 public:
  virtual ~StructureSource() = default;
  virtual std::size_t size() const = 0;
  virtual StructureSummary summary(std::size_t i) const = 0;
  virtual Structure structure(std::size_t i) const = 0;
  /// Structures idx, in that order (HDF5: runs of consecutive indices read in one piece).
  virtual std::vector<Structure> structures(const std::vector<std::size_t>& idx) const {
    std::vector<Structure> out;
    out.reserve(idx.size());
    for (std::size_t i : idx) out.push_back(structure(i));
    return out;
  }
  /// The datasets a file holds (HDF5 files converted from several inputs) and each structure's;
  /// empty for files of one dataset.
  virtual std::vector<std::string> dataset_names() const { return {}; }
  virtual int dataset_of(std::size_t) const { return 0; }
  /// What was read of the atoms (HDF5: "structures S of T, atoms A of N"; empty for text files,
  /// which every rank parses whole).
  virtual std::string read_report() const { return {}; }
};

/// The frames of an ASE database (SQLite; io/ase_db.hpp).
Dataset read_ase_db_frames(const std::string& path) {
#ifdef HYDRAGNN_HAVE_SQLITE
  Dataset ds;
  ds.name = path;
  ds.frames = read_ase_db(path);
  return ds;
#else
  throw std::runtime_error(path + ": an ASE database, but this hydragnn was built without SQLite (Debian: "
                           "libsqlite3-dev)");
#endif
}

/// An ASE database is named by its format (Dataset.format "ase-db") or, for convert, by its ending ".db".
bool is_ase_db_path(const std::string& path) { return std::filesystem::path(path).extension() == ".db"; }

/// The frames of an extxyz file or (ase_db) an ASE database.
Dataset read_structure_file(const std::string& path, bool ase_db) {
  return ase_db ? read_ase_db_frames(path) : read_frames(path);
}

/// Text files and ASE databases: every rank reads the whole file (HDF5 for datasets too large for that).
class FramesSource final : public StructureSource {
 public:
  FramesSource(const std::string& path, bool ase_db) : ds_(read_structure_file(path, ase_db)) {}
  std::size_t size() const override { return ds_.size(); }
  StructureSummary summary(std::size_t i) const override { return summarize(ds_.frames[i]); }
  Structure structure(std::size_t i) const override { return ds_.frames[i]; }

 private:
  Dataset ds_;
};

#ifdef HYDRAGNN_HAVE_HDF5
class HDF5Source final : public StructureSource {
 public:
  HDF5Source(const std::string& path, hid_t fapl) : file_(path, fapl) {}
  std::size_t size() const override { return file_.size(); }
  StructureSummary summary(std::size_t i) const override { return file_.summary(i); }
  Structure structure(std::size_t i) const override { return file_.read(i); }
  std::vector<Structure> structures(const std::vector<std::size_t>& idx) const override { return file_.read_many(idx); }
  std::vector<std::string> dataset_names() const override { return file_.dataset_names(); }
  int dataset_of(std::size_t i) const override { return file_.dataset_of(i); }
  std::string read_report() const override {
    return "atoms of " + std::to_string(file_.structures_read()) + " of " + std::to_string(file_.size()) +
           " structures (" + std::to_string(file_.atoms_read()) + " of " + std::to_string(file_.num_atoms()) + " atoms)";
  }

 private:
  HDF5Structures file_;
};
#endif

std::shared_ptr<const StructureSource> open_source(const std::string& path, const std::string& format,
                                                   const Collective& coll) {
  if (format == "hdf5") {
#ifdef HYDRAGNN_HAVE_HDF5
    hid_t fapl = H5P_DEFAULT;
#if defined(HYDRAGNN_HAVE_MPI) && defined(H5_HAVE_PARALLEL)
    // every rank opens the file through MPI-IO (collectively) and reads its own structures independently
    h5_detail::Handle mpio(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    if (coll.size() > 1) {
      H5Pset_fapl_mpio(mpio, MPI_COMM_WORLD, MPI_INFO_NULL);
      fapl = mpio;
    }
#else
    (void)coll;
#endif
    return std::make_shared<HDF5Source>(path, fapl);
#else
    (void)coll;
    throw std::runtime_error(path + ": Dataset.format is \"hdf5\" but this hydragnn was built without HDF5");
#endif
  }
  (void)coll;
  return std::make_shared<FramesSource>(path, format == "ase-db");
}

/// Some structures of one or more sources, in a given order (splits of files), each with its
/// dataset (index into Dataset.datasets) and head branch.
struct StructureView {
  struct Item {
    std::shared_ptr<const StructureSource> source;
    std::size_t index = 0;
    int dataset = 0, branch = 0;
  };
  std::vector<Item> items;
  std::size_t size() const { return items.size(); }
  static StructureView all(const std::shared_ptr<const StructureSource>& source, int dataset, int branch) {
    StructureView v;
    for (std::size_t i = 0; i < source->size(); ++i) v.items.push_back(Item{source, i, dataset, branch});
    return v;
  }
  /// The structures of the source's dataset `file_dataset` (an HDF5 file holding several).
  static StructureView of_dataset(const std::shared_ptr<const StructureSource>& source, int file_dataset, int dataset,
                                  int branch) {
    StructureView v;
    for (std::size_t i = 0; i < source->size(); ++i)
      if (source->dataset_of(i) == file_dataset) v.items.push_back(Item{source, i, dataset, branch});
    return v;
  }
  StructureView subset(const std::vector<std::size_t>& k) const {
    StructureView v;
    for (std::size_t j : k) v.items.push_back(items[j]);
    return v;
  }
  void append(const StructureView& o) { items.insert(items.end(), o.items.begin(), o.items.end()); }
  std::vector<StructureSummary> summaries() const {
    std::vector<StructureSummary> out;
    out.reserve(items.size());
    for (const Item& it : items) {
      out.push_back(it.source->summary(it.index));
      out.back().branch = it.branch;
    }
    return out;
  }
  /// Appends items k to ds in that order, each source asked once for all of its structures.
  void load(const std::vector<std::size_t>& k, Dataset& ds) const {
    std::map<const StructureSource*, std::vector<std::size_t>> by_source;  // positions in k
    for (std::size_t p = 0; p < k.size(); ++p) by_source[items[k[p]].source.get()].push_back(p);
    std::vector<Structure> frames(k.size());
    for (const auto& [src, pos] : by_source) {
      std::vector<std::size_t> idx;
      for (std::size_t p : pos) idx.push_back(items[k[p]].index);
      std::vector<Structure> got = src->structures(idx);
      for (std::size_t q = 0; q < pos.size(); ++q) frames[pos[q]] = std::move(got[q]);
    }
    for (std::size_t p = 0; p < k.size(); ++p) {
      ds.frames.push_back(std::move(frames[p]));
      ds.frames.back().branch = items[k[p]].branch;
    }
  }
};

double train_into(const std::string& config_path, const Config& cfg, const std::string& out_dir, bool resume,
                  const Collective& coll, int accumulate);

int cmd_train(const std::string& config_path, const std::string& out_dir, bool resume, bool overwrite,
              const Collective& coll, int accumulate) {
  namespace fs = std::filesystem;
  if (resume && overwrite) throw std::runtime_error("--resume and --overwrite exclude each other");
  if (!resume && !overwrite && fs::exists(out_dir + "/checkpoint.hgnn"))
    throw std::runtime_error(out_dir + "/checkpoint.hgnn exists: pass --resume to continue that run or --overwrite "
                             "to start a new one there (nothing was changed)");
  if (resume && !fs::exists(out_dir + "/checkpoint.hgnn"))
    throw std::runtime_error("--resume: no checkpoint to continue from (" + out_dir + "/checkpoint.hgnn does not exist)");
  Config cfg = load_config(config_path);
  if (cfg.dataset.train.empty() && cfg.dataset.total.empty() && cfg.dataset.datasets.empty())
    throw ConfigError(config_path + ": 'Dataset.path' must name 'train' (or 'total') extxyz files");
  // every named dataset file must exist before anything is created or trained
  for (const DatasetPart& part : cfg.dataset.parts())
    for (const char* key : {"total", "train", "validate", "test"}) {
      if (part.path(key).empty()) continue;
      try {
        cfg.dataset.existing_file(part, key);
      } catch (const ConfigError& e) {
        throw ConfigError(config_path + ": " + e.what());
      }
    }
  // rank 0 alone creates the output directory and writes into it, once every rank has checked it
  coll.barrier();
  const std::vector<fs::path> created = coll.rank() == 0 ? missing_directories(out_dir) : std::vector<fs::path>();
  if (coll.rank() == 0) fs::create_directories(out_dir);
  try {
    train_into(config_path, cfg, out_dir, resume, coll, accumulate);
    return 0;
  } catch (...) {
    remove_created_directories(created);
    throw;
  }
}

/// Train as `hydragnn train` does; returns the best validation loss.
double train_into(const std::string& config_path, const Config& cfg, const std::string& out_dir, bool resume,
                  const Collective& coll, int accumulate) {
  const ModelSpec base = spec_from_config(cfg);
  DatasetRequirements req;
  req.energy = base.energy && (cfg.arch.energy_weight > 0 || cfg.arch.energy_peratom_weight > 0);
  req.forces = base.energy && cfg.arch.force_weight > 0;
  const bool root = coll.rank() == 0;
  // every rank reads the per-structure facts of every file (extxyz: the whole text; hdf5: the
  // per-structure arrays) and splits them identically; a rank loads the atoms of its own shards'
  // structures only and builds their graphs (the test set is cut into one shard per rank)
  std::map<std::string, std::shared_ptr<const StructureSource>> files;
  const std::vector<DatasetPart> parts = cfg.dataset.parts();
  StructureView train_v, val_v, test_v;
  for (std::size_t d = 0; d < parts.size(); ++d) {
    const DatasetPart& part = parts[d];
    int branch = base.branch_index(part.branch);
    if (branch < 0 && cfg.dataset.datasets.empty()) branch = 0;  // Dataset.path: the first branch
    if (branch < 0) throw ConfigError(config_path + ": head branch \"" + part.branch + "\" of dataset \"" + part.name + "\" not found");
    auto open = [&](const char* key) {
      const std::string path = cfg.dataset.existing_file(part, key);
      auto& f = files[path];
      if (!f) f = open_source(path, cfg.dataset.format, coll);
      // one file holding several datasets (hydragnn convert --dataset-names): each entry of
      // Dataset.datasets takes the structures of its own name
      const std::vector<std::string> names = f->dataset_names();
      if (names.size() > 1 && !cfg.dataset.datasets.empty()) {
        const auto it = std::find(names.begin(), names.end(), part.name);
        if (it == names.end()) {
          std::string list;
          for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
          throw ConfigError(config_path + ": " + part.where + "." + key + " = " + path + " holds the datasets " + list +
                            ", not \"" + part.name + "\" (Dataset.datasets[].name picks one)");
        }
        return StructureView::of_dataset(f, int(it - names.begin()), int(d), branch);
      }
      return StructureView::all(f, int(d), branch);
    };
    if (!part.total.empty()) {
      const StructureView all = open("total");
      const SplitSizes sz = split_total(all.size(), cfg.training.perc_train);
      const auto split = split_indices(all.size(), {sz.train, sz.validate, sz.test}, cfg.training.seed);
      train_v.append(all.subset(split[0]));
      val_v.append(all.subset(split[1]));
      test_v.append(all.subset(split[2]));
      continue;
    }
    StructureView tr = open("train");
    if (!part.validate.empty()) {
      val_v.append(open("validate"));
    } else if (cfg.training.perc_train < 1.0) {
      // no validation file: hold out (1 - perc_train) of the training file, shuffled with the seed
      const std::size_t n = tr.size();
      const std::size_t ntrain = std::min(n, std::size_t(std::llround(cfg.training.perc_train * n)));
      const auto split = split_indices(n, {ntrain, n - ntrain}, cfg.training.seed);
      val_v.append(tr.subset(split[1]));
      tr = tr.subset(split[0]);
    }
    train_v.append(tr);
    if (!part.test.empty()) test_v.append(open("test"));
  }
  ShardedData data = shard_structures(train_v.summaries(), val_v.summaries(), coll.rank(), coll.size(), accumulate,
                                      [&](bool is_val, const std::vector<std::size_t>& global, Dataset& ds) {
                                        (is_val ? val_v : train_v).load(global, ds);
                                      });
  const std::size_t test_size = test_v.size();
  std::vector<std::size_t> my_test;
  {
    const std::vector<int> shard = shard_by_atoms(atom_counts(test_v.summaries()), coll.size());
    for (std::size_t i = 0; i < test_v.size(); ++i)
      if (shard[i] == coll.rank()) my_test.push_back(i);
  }
  Dataset test_ds;
  test_v.load(my_test, test_ds);
  std::vector<int> test_dataset;  // dataset of each of test_ds's structures
  for (std::size_t i : my_test) test_dataset.push_back(test_v.items[i].dataset);
  for (const auto& kv : files)
    if (root && !kv.second->read_report().empty())
      std::printf("%s: rank 0 read the %s\n", kv.first.c_str(), kv.second->read_report().c_str());
  files.clear();
  train_v = val_v = test_v = StructureView();  // the extxyz text of other ranks' structures is freed here
  std::vector<std::vector<std::size_t>> test_shard(1);
  for (std::size_t i = 0; i < test_ds.size(); ++i) test_shard[0].push_back(i);
  build_graphs(data.train, base.cutoff, base.max_neighbours, req);
  build_graphs(data.val, base.cutoff, base.max_neighbours, req);
  build_graphs(test_ds, base.cutoff, base.max_neighbours, req);
  if (root)
    std::printf("config %s: %s, hidden %d, %d layers, radius %.2f A; data: %zu train, %zu validate, %zu test\n",
                config_path.c_str(), base.mpnn_type.c_str(), base.hidden_dim, base.num_conv_layers, base.cutoff,
                data.summary.train_size, data.summary.val_size, test_size);
  TrainOptions opt;
  opt.output_dir = out_dir;
  opt.resume = resume;
  opt.collective = &coll;
  Exec exec;
  double best_val = INFINITY;
  with_model_type(base.mpnn_type, [&](auto tag) {
    using ModelT = decltype(tag);
    const TrainResult r = train<ModelT>(exec, cfg, data, opt);
    best_val = r.state.best_val;
    if (root)
      std::printf("checkpoints: %s (latest), %s (best validation, epoch %d)\n", r.latest_checkpoint.c_str(),
                  r.best_checkpoint.c_str(), r.state.best_epoch);
    if (test_size) {
      coll.barrier();  // rank 0 has written the best checkpoint
      const CheckpointData c = read_checkpoint(r.best_checkpoint);
      ModelT best = model_from_checkpoint<ModelT>(c, r.best_checkpoint);
      Workspace<typename ModelT::memory_space> ws;
      const Metrics m = evaluate_shards(exec, best, test_ds, test_shard, loss_from_config(cfg, best.spec()),
                                        cfg.training.batch_size, ws, coll);
      auto test_file = [&](const DatasetPart& part) { return cfg.dataset.resolve(part.test.empty() ? part.total : part.test); };
      if (root) print_metrics(m, parts.size() == 1 ? "test (" + test_file(parts[0]) + ")" : std::string("test (all datasets)"), false);
      for (std::size_t d = 0; parts.size() > 1 && d < parts.size(); ++d) {  // per dataset (every rank takes part)
        std::vector<std::vector<std::size_t>> mine(1);
        for (std::size_t i = 0; i < test_ds.size(); ++i)
          if (test_dataset[i] == int(d)) mine[0].push_back(i);
        const Metrics md = evaluate_shards(exec, best, test_ds, mine, loss_from_config(cfg, best.spec()),
                                           cfg.training.batch_size, ws, coll);
        if (root && md.n_structures > 0)
          print_metrics(md, "test of dataset " + parts[d].name + " (" + test_file(parts[d]) + ", " + parts[d].branch + ")", false);
      }
    }
  });
  return best_val;
}

/// Hyperparameter search (dist/hpo.hpp): the ranks form groups of ranks_per_trial ranks, each group a
/// worker that takes jobs from the shared state until none is left. max_jobs > 0: a worker stops after
/// that many jobs (a batch-queue time limit); running `hpo` again continues the search.
int cmd_hpo(const std::string& search_path, const std::string& out_dir, int max_jobs, const Collective& world) {
  const HpoSpec spec = load_hpo_spec(search_path);
  if (world.size() % spec.ranks_per_trial != 0)
    throw std::runtime_error(search_path + ": ranks_per_trial = " + std::to_string(spec.ranks_per_trial) +
                             " does not divide the " + std::to_string(world.size()) + " ranks");
  const int worker = world.rank() / spec.ranks_per_trial;
#ifdef HYDRAGNN_HAVE_MPI
  MPI_Comm group_comm;
  MPI_Comm_split(MPI_COMM_WORLD, worker, world.rank(), &group_comm);
  const MpiCollective group(group_comm, collective_timeout_from_env());  // checked by main
#else
  const Collective& group = world;
#endif
  HpoState state(spec, out_dir);
  if (world.rank() == 0) {
    std::filesystem::create_directories(out_dir);
    state.recover();  // jobs of an earlier, interrupted search are handed out again
  }
  world.barrier();
  const auto rungs = spec.rungs();
  int jobs = 0;
  while (max_jobs <= 0 || jobs < max_jobs) {
    std::vector<double> msg(3, 0.0);  // trial, rung, done
    if (group.rank() == 0) {
      bool done = false;
      const HpoJob j = state.next(worker, done);
      msg = {double(j.trial), double(j.rung), done ? 1.0 : 0.0};
    }
    if (group.size() > 1) {
      std::vector<double> all = group.gather(msg);  // the leader's message, for every rank of the group
      msg.assign(all.begin(), all.begin() + 3);
    }
    if (msg[2] != 0) break;
    const HpoJob job{int(msg[0]), int(msg[1])};
    if (!job.valid()) {  // the others are still running the jobs that could be promoted
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    const nlohmann::json values = state.snapshot()["trials"][std::size_t(job.trial)]["values"];
    const nlohmann::json cj = trial_config(spec, values, rungs[std::size_t(job.rung)]);
    const std::string dir = out_dir + "/trial_" + std::to_string(job.trial);
    Config cfg = parse_config(cj.dump(), dir + "/config.json");
    cfg.dataset.base_dir = spec.base_dir;
    if (group.rank() == 0) {
      std::filesystem::create_directories(dir);
      std::ofstream(dir + "/config.json") << cj.dump(2) << "\n";
    }
    group.barrier();
    double loss = INFINITY;
    try {
      loss = train_into(dir + "/config.json", cfg, dir, job.rung > 0, group, 1);
    } catch (const std::exception& e) {
      // a trial that fails (e.g. diverges) is a bad trial, not a failed search; in a group of several
      // ranks a failure may be one rank's alone, so it stops the run (every rank) instead
      if (group.size() > 1) throw;
      std::fprintf(stderr, "hydragnn hpo: trial %d failed: %s\n", job.trial, e.what());
    }
    if (group.rank() == 0) {
      state.finish(job, loss);
      std::printf("hpo worker %d: trial %d rung %d (%d epochs): validation loss %.6g\n", worker, job.trial, job.rung,
                  rungs[std::size_t(job.rung)], loss);
      std::fflush(stdout);
    }
    ++jobs;
  }
  world.barrier_unbounded();  // the other workers may still run trials for hours
  if (world.rank() == 0) {
    const nlohmann::json st = state.snapshot();
    write_hpo_results(spec, st, out_dir);
    std::size_t full = 0;
    for (const auto& t : st["trials"]) full += t["losses"].size() == rungs.size();
    std::printf("hpo: %zu trials, %zu trained to %d epochs; results.csv, best_config.json in %s\n", st["trials"].size(),
                full, spec.max_epochs, out_dir.c_str());
  }
#ifdef HYDRAGNN_HAVE_MPI
  MPI_Comm_free(&group_comm);
#endif
  return 0;
}

/// The index of head branch `name` of a model (empty: the first); an error lists the branches.
int branch_of(const ModelSpec& spec, const std::string& name, const std::string& ckpt) {
  const int k = spec.chosen_branch(name);
  if (k >= 0) return k;
  throw std::runtime_error("--branch " + name + ": " + ckpt + " has the head branches " + spec.branch_list());
}

int cmd_evaluate(const std::string& ckpt, const std::string& input, bool json, int batch, const std::string& branch) {
  const CheckpointData c = read_checkpoint(ckpt);
  Exec exec;
  const int k = branch_of(c.spec, branch, ckpt);
  with_model_type(c.spec.mpnn_type, [&](auto tag) {
    using ModelT = decltype(tag);
    ModelT model = model_from_checkpoint<ModelT>(c, ckpt);
    Dataset ds = load_for_model(input, model.spec());
    for (auto& f : ds.frames) f.branch = k;
    const LabelCounts labels = count_labels(ds, model.spec().heads);
    const bool labelled = model.spec().energy ? (labels.energy || labels.forces) : labels.any();
    if (!labelled)
      throw DataError(input + ": no frame has " +
                      (model.spec().energy ? std::string("an 'energy' label or a 'forces' column")
                                           : std::string("a label for the model's heads")) +
                      ", so there is nothing to evaluate against (use 'hydragnn predict' to label it)");
    if (model.spec().energy && (labels.energy < labels.frames || labels.forces < labels.frames))
      std::fprintf(stderr,
                   "hydragnn: note: %s: energy errors over %zu of %zu frames (%zu skipped: no 'energy'), force errors "
                   "over %zu of %zu frames (%zu skipped: no 'forces')\n",
                   input.c_str(), labels.energy, labels.frames, labels.frames - labels.energy, labels.forces,
                   labels.frames, labels.frames - labels.forces);
    LossSpec w;
    print_metrics(evaluate(exec, model, ds, w, batch), input, json, &labels);
  });
  return 0;
}

/// The frames of `input` labelled by the model of `ckpt`: energy, forces and stress (conservative
/// models), the direct heads.
Dataset predict_file(CheckpointData c, const std::string& ckpt, const std::string& input, int batch,
                     const std::string& precision, const std::string& branch) {
  Dataset out;
  const int branch_index = branch_of(c.spec, branch, ckpt);
  // float64 runs a float-trained model in double maths (its parameters widened exactly)
  const bool dbl = resolve_precision(c, precision_from_name(precision));
  Exec exec;
  auto run = [&](auto tag) {
    using ModelT = decltype(tag);
    using M = typename ModelT::memory_space;
    ModelT model = model_from_checkpoint<ModelT>(c, ckpt);
    Dataset ds = load_for_model(input, model.spec());
    for (auto& f : ds.frames) f.branch = branch_index;  // every frame through one head branch
    Workspace<M> ws;
    for (std::size_t s = 0; s < ds.size(); s += batch) {
      std::vector<std::size_t> idx;
      for (std::size_t i = s; i < std::min(ds.size(), s + std::size_t(batch)); ++i) idx.push_back(i);
      auto b = batch_of<M>(ds, idx, model.spec().species, model.spec().heads, ModelT::traits::needs_triplets);
      const Prediction p = predict(exec, model, b, model.spec().energy, &ws);
      std::size_t a0 = 0;
      for (std::size_t k = 0; k < idx.size(); ++k) {
        Structure& f = ds.frames[idx[k]];
        if (model.spec().energy) {
          f.energy = p.energy[k];
          f.forces.assign(f.size(), Vec3{});
          for (std::size_t i = 0; i < f.size(); ++i)
            for (int a = 0; a < 3; ++a) f.forces[i][a] = p.forces[3 * (a0 + i) + a];
          if (!std::isnan(p.stress[9 * k])) {
            std::array<double, 9> st{};
            for (int q = 0; q < 9; ++q) st[q] = p.stress[9 * k + q];
            f.stress = st;
          } else {
            f.stress.reset();
          }
        }
        for (std::size_t h = 0; h < model.spec().heads.size(); ++h) {
          const HeadDef& hd = model.spec().heads[h];
          if (hd.node) {
            auto& arr = f.arrays[hd.name];
            arr.assign(p.heads[h].begin() + (a0 * hd.dim), p.heads[h].begin() + (a0 + f.size()) * hd.dim);
            f.array_cols[hd.name] = hd.dim;
          } else {
            std::string v;
            for (int q = 0; q < hd.dim; ++q) v += (q ? " " : "") + std::to_string(p.heads[h][k * hd.dim + q]);
            f.info[hd.name] = v;
          }
        }
        a0 += f.size();
      }
    }
    out = std::move(ds);
  };
  if (dbl)
    with_model_type<double>(c.spec.mpnn_type, run);
  else
    with_model_type<float>(c.spec.mpnn_type, run);
  return out;
}

int cmd_predict(const std::string& ckpt, const std::string& input, const std::string& output, int batch,
                const std::string& precision, const std::string& branch) {
  const Dataset ds = predict_file(read_checkpoint(ckpt), ckpt, input, batch, precision, branch);
  write_extxyz(output, ds.frames);
  std::printf("wrote %zu frames to %s\n", ds.size(), output.c_str());
  return 0;
}

/// An ensemble of potentials: the mean of the members' energies, forces and stress, and the standard
/// deviation over the members (population, 1/M) of the energy (info `energy_std`) and of every force
/// component (array `forces_std`, 3 columns), per structure and atom.
int cmd_predict_ensemble(const std::vector<std::string>& members, const std::string& input, const std::string& output,
                         int batch, const std::string& precision, const std::string& branch) {
  if (members.size() < 2)
    throw std::runtime_error("--ensemble needs at least two checkpoints (got " + std::to_string(members.size()) + ")");
  // Welford's running mean and sum of squared deviations, per value
  struct Running {
    std::vector<double> mean, m2;
    void resize(std::size_t n) { mean.assign(n, 0.0), m2.assign(n, 0.0); }
    void add(std::size_t i, double x, double count) {
      const double d = x - mean[i];
      mean[i] += d / count;
      m2[i] += d * (x - mean[i]);
    }
  };
  Dataset out;
  out.frames = read_extxyz(input);  // the input's own columns stay as they are
  std::vector<Running> e(out.size()), f(out.size()), st(out.size());
  std::vector<bool> has_stress(out.size(), true);
  for (std::size_t k = 0; k < out.size(); ++k) {
    e[k].resize(1);
    f[k].resize(3 * out.frames[k].size());
    st[k].resize(9);
  }
  for (std::size_t m = 0; m < members.size(); ++m) {
    CheckpointData c = read_checkpoint(members[m]);
    if (!c.spec.energy)
      throw std::runtime_error(members[m] + ": --ensemble averages energies and forces; this model has no energy head");
    const Dataset d = predict_file(std::move(c), members[m], input, batch, precision, branch);
    const double count = double(m + 1);
    for (std::size_t k = 0; k < d.size(); ++k) {
      const Structure& s = d.frames[k];
      e[k].add(0, *s.energy, count);
      for (std::size_t i = 0; i < s.size(); ++i)
        for (int a = 0; a < 3; ++a) f[k].add(3 * i + std::size_t(a), s.forces[i][a], count);
      if (s.stress)
        for (int q = 0; q < 9; ++q) st[k].add(std::size_t(q), (*s.stress)[q], count);
      else
        has_stress[k] = false;
    }
  }
  const double M = double(members.size());
  for (std::size_t k = 0; k < out.size(); ++k) {
    Structure& s = out.frames[k];
    s.energy = e[k].mean[0];
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.10g", std::sqrt(e[k].m2[0] / M));
    s.info["energy_std"] = buf;
    s.info["ensemble_size"] = std::to_string(members.size());
    s.forces.assign(s.size(), Vec3{});
    auto& fs = s.arrays["forces_std"];
    fs.assign(3 * s.size(), 0.0);
    s.array_cols["forces_std"] = 3;
    for (std::size_t i = 0; i < s.size(); ++i)
      for (int a = 0; a < 3; ++a) {
        s.forces[i][a] = f[k].mean[3 * i + std::size_t(a)];
        fs[3 * i + std::size_t(a)] = std::sqrt(f[k].m2[3 * i + std::size_t(a)] / M);
      }
    if (has_stress[k]) {
      std::array<double, 9> v{};
      for (int q = 0; q < 9; ++q) v[std::size_t(q)] = st[k].mean[std::size_t(q)];
      s.stress = v;
    } else {
      s.stress.reset();
    }
  }
  write_extxyz(output, out.frames);
  std::printf("wrote %zu frames to %s (ensemble of %zu models: mean energy, forces, stress; energy_std, forces_std)\n",
              out.size(), output.c_str(), members.size());
  return 0;
}

}  // namespace

#ifdef HYDRAGNN_HAVE_HDF5
/// extxyz files and ASE databases (.db) -> one hydragnn HDF5 file; each input is a dataset (named by --dataset-names or its
/// file stem) with its metadata computed once here.
int cmd_convert(const std::vector<std::string>& inputs, std::vector<std::string> names, const std::string& output,
                double radius, bool overwrite) {
  namespace fs = std::filesystem;
  if (fs::exists(output) && !overwrite) throw std::runtime_error(output + " exists (use --overwrite to replace it)");
  if (!names.empty() && names.size() != inputs.size())
    throw std::runtime_error("--dataset-names: " + std::to_string(names.size()) + " names for " +
                             std::to_string(inputs.size()) + " inputs");
  if (names.empty())
    for (const auto& in : inputs) names.push_back(fs::path(in).stem().string());
  for (const auto& n : names)
    if (n.empty() || n.find(';') != std::string::npos || n.find('/') != std::string::npos)
      throw std::runtime_error("--dataset-names: '" + n + "' (a dataset name is not empty and has no ';' or '/')");
  std::vector<Structure> frames;
  std::vector<int> dataset_of;
  std::vector<HDF5DatasetMetadata> meta;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    Dataset ds = read_structure_file(inputs[k], is_ase_db_path(inputs[k]));
    HDF5DatasetMetadata m;
    m.name = names[k];
    m.num_structures = ds.size();
    m.num_atoms = ds.num_atoms();
    const std::vector<StructureSummary> ss = summaries_of(ds);
    const SpeciesMap sp = species_of(ss);
    m.species = sp.numbers;
    m.reference_energy = fit_reference_energies(ss, sp);
    double e1 = 0, e2 = 0, f2 = 0;
    std::size_t ne = 0, nf = 0;
    for (const auto& s : ss) {
      if (s.energy) {
        const double epa = *s.energy / double(s.natoms);
        e1 += epa;
        e2 += epa * epa;
        ++ne;
      }
      f2 += s.force_sq;
      nf += s.force_components;
    }
    if (ne) {
      m.energy_per_atom_mean = e1 / double(ne);
      m.energy_per_atom_std = std::sqrt(std::max(0.0, e2 / double(ne) - m.energy_per_atom_mean * m.energy_per_atom_mean));
    }
    if (nf) m.force_rms = std::sqrt(f2 / double(nf));
    if (radius > 0) {
      DatasetRequirements req;
      req.allow_isolated = true;
      build_graphs(ds, radius, -1, req);
      m.radius = radius;
      m.degree_histogram = degree_histogram(ds);
    }
    meta.push_back(m);
    for (auto& f : ds.frames) {
      frames.push_back(std::move(f));
      dataset_of.push_back(int(k));
    }
  }
  write_structures_hdf5(output, frames, dataset_of, names, meta);
  std::size_t atoms = 0;
  for (const auto& f : frames) atoms += f.size();
  std::printf("wrote %zu structures (%zu atoms, %zu datasets) to %s\n", frames.size(), atoms, names.size(), output.c_str());
  return 0;
}
#endif

int cmd_import(const std::string& config_path, const std::string& weights_path, const std::string& output,
               bool overwrite) {
  if (std::filesystem::exists(output) && !overwrite)
    throw std::runtime_error(output + " exists (use --overwrite to replace it)");
  const Config cfg = load_config(config_path);
  nlohmann::json weights;
  {
    std::ifstream in(weights_path);
    if (!in) throw std::runtime_error(weights_path + ": cannot open");
    try {
      weights = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(weights_path + ": malformed JSON: " + e.what());
    }
  }
  with_model_type(cfg.arch.mpnn_type, [&](auto tag) {
    using ModelT = decltype(tag);
    const CheckpointData c = import_named_parameters<ModelT>(cfg, weights, weights_path);
    write_checkpoint(output, c);
    std::printf("%s: %zu parameters of a %s model (%zu species) -> %s\n", weights_path.c_str(), c.params.size(),
                cfg.arch.mpnn_type.c_str(), c.spec.species.size(), output.c_str());
  });
  return 0;
}

int main(int argc, char** argv) {
  CLI::App app{"hydragnn: train and run HydraGNN-style graph neural network potentials (Kokkos, C++17)"};
  app.set_version_flag("--version", version_text(), "print the version (hydragnn, git commit, Kokkos) and exit");
  app.require_subcommand(1);
  // CLI::PositiveNumber answers 0 with the whole range of double; say what is wanted instead.
  const CLI::Validator positive_int(
      [](std::string& s) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long v = std::strtol(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || errno == ERANGE || v < 1 || v > INT_MAX)
          return "must be a positive integer (got '" + s + "')";
        return {};
      },
      "POSITIVE_INT");
  std::string config, output = "hydragnn_run", checkpoint, input, out_file;
  bool resume = false, overwrite = false, json = false;
  int batch = 32;
  auto* train_cmd = app.add_subcommand("train", "train a model from a HydraGNN-schema JSON config");
  train_cmd->add_option("--config,-c", config, "config JSON")->required()->check(CLI::ExistingFile);
  train_cmd->add_option("--output,-o", output, "output directory (checkpoints, metrics log)");
  auto* resume_flag = train_cmd->add_flag("--resume", resume, "continue from OUTPUT/checkpoint.hgnn (bit-for-bit)");
  auto* overwrite_flag =
      train_cmd->add_flag("--overwrite", overwrite, "start afresh even if OUTPUT already holds a checkpoint");
  resume_flag->excludes(overwrite_flag);
  int accumulate = 1;
  train_cmd
      ->add_option("--accumulate", accumulate,
                   "micro-batches of batch_size per rank and step, gradients summed in order (one rank with "
                   "--accumulate P computes bitwise what mpirun -np P computes)")
      ->check(positive_int);
  auto* pred_cmd = app.add_subcommand("predict", "write energy, forces and stress for every frame");
  std::vector<std::string> ensemble;
  auto* pred_ckpt = pred_cmd->add_option("--checkpoint", checkpoint, "checkpoint file")->check(CLI::ExistingFile);
  auto* pred_ens = pred_cmd
                       ->add_option("--ensemble", ensemble,
                                    "checkpoints m1.hgnn,m2.hgnn,...: the mean energy, forces and stress and their "
                                    "standard deviation over the models (energy_std, forces_std)")
                       ->delimiter(',')
                       ->check(CLI::ExistingFile);
  pred_ckpt->excludes(pred_ens);
  pred_cmd->callback([&]() {
    if (checkpoint.empty() && ensemble.empty()) throw CLI::RequiredError("--checkpoint or --ensemble");
  });
  pred_cmd->add_option("--input,-i", input, "input extxyz")->required()->check(CLI::ExistingFile);
  pred_cmd->add_option("--output,-o", out_file, "output extxyz")->required();
  pred_cmd->add_option("--batch-size", batch, "structures per batch")->check(positive_int);
  std::string precision = "checkpoint";
  pred_cmd->add_option("--precision", precision, "network maths: checkpoint (as trained), float32 or float64")
      ->check(CLI::IsMember({"checkpoint", "float32", "float64"}));
  std::string branch;
  pred_cmd->add_option("--branch", branch, "head branch for every frame (multi-dataset models; default: the first)");
  auto* eval_cmd = app.add_subcommand("evaluate", "energy and force errors against the labels of an extxyz file");
  eval_cmd->add_option("--branch", branch, "head branch for every frame (multi-dataset models; default: the first)");
  eval_cmd->add_option("--checkpoint", checkpoint, "checkpoint file")->required()->check(CLI::ExistingFile);
  eval_cmd->add_option("--input,-i", input, "labelled extxyz")->required()->check(CLI::ExistingFile);
  eval_cmd->add_flag("--json", json, "print the metrics as JSON");
  eval_cmd->add_option("--batch-size", batch, "structures per batch")->check(positive_int);
  std::string search;
  int max_jobs = 0;
  auto* hpo_cmd = app.add_subcommand(
      "hpo", "hyperparameter search: asynchronous successive halving over workers of ranks_per_trial MPI ranks");
  hpo_cmd->add_option("--search,-s", search, "search JSON (base config, space, trials, rungs)")
      ->required()
      ->check(CLI::ExistingFile);
  hpo_cmd->add_option("--output,-o", output, "search directory (state, trials, results.csv, best_config.json)");
  hpo_cmd->add_option("--max-jobs", max_jobs, "each worker stops after this many jobs (run hpo again to continue)");
  std::vector<std::string> conv_inputs, conv_names;
  double conv_radius = 0;
  auto* convert_cmd = app.add_subcommand(
      "convert", "extxyz files and ASE databases (.db) -> one HDF5 dataset file (random access per structure; Dataset.format \"hdf5\")");
  convert_cmd->add_option("--input,-i", conv_inputs, "extxyz files or ASE databases (.db), comma-separated: one dataset each")
      ->required()
      ->delimiter(',')
      ->check(CLI::ExistingFile);
  convert_cmd->add_option("--output,-o", out_file, "HDF5 file to write")->required();
  convert_cmd->add_option("--dataset-names", conv_names, "a name per input (default: the file stems)")->delimiter(',');
  convert_cmd->add_option("--radius", conv_radius, "also store each dataset's degree histogram at this cutoff (A)");
  convert_cmd->add_flag("--overwrite", overwrite, "replace an existing file");
  std::string weights;
  auto* import_cmd =
      app.add_subcommand("import", "a HydraGNN model's weights (named-parameter JSON) + its config -> a checkpoint");
  import_cmd->add_option("--config,-c", config, "config JSON of the same architecture")->required()->check(CLI::ExistingFile);
  import_cmd->add_option("--weights,-w", weights, "named parameters (tools/golden/convert_state_dict.py)")
      ->required()
      ->check(CLI::ExistingFile);
  import_cmd->add_option("--output,-o", out_file, "checkpoint to write")->required();
  import_cmd->add_flag("--overwrite", overwrite, "replace an existing checkpoint");
#ifdef HYDRAGNN_HAVE_MPI
  // serialized threads: a rank's gradient sums run on a communication thread during its backward
  // (MpiCollective::start_sum); an MPI without that level sums after the backward instead
  int thread_level = MPI_THREAD_SINGLE;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &thread_level);
  int rc = 0;
  {
    // a bad HYDRAGNN_COLLECTIVE_TIMEOUT, HYDRAGNN_OVERLAP_SUMS or HYDRAGNN_GPU_AWARE_MPI is reported
    // below like any error, by every rank
    double collective_timeout = 0;
    bool overlap = true;
    std::string env_error;
    try {
      collective_timeout = collective_timeout_from_env();
      overlap = mpi_detail::overlap_from_env();
      mpi_detail::gpu_aware_mpi();  // HYDRAGNN_GPU_AWARE_MPI, read again by MpiCollective
    } catch (const std::exception& e) {
      env_error = e.what();
    }
    const MpiCollective world(MPI_COMM_WORLD, collective_timeout, std::size_t(64) << 20, overlap);
#else
  int rc = 0;
  {
    const Collective world;
#endif
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      rc = world.rank() == 0 ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 1);
#ifdef HYDRAGNN_HAVE_MPI
      MPI_Finalize();
#endif
      return rc;
    }
    Kokkos::initialize(argc, argv);
    try {
#ifdef HYDRAGNN_HAVE_MPI
      if (!env_error.empty()) throw std::runtime_error(env_error);
#endif
      if (world.size() == 1 && launcher_size() > 1)
        throw std::runtime_error("started as one of " + std::to_string(launcher_size()) +
                                 " processes by an MPI launcher, but this hydragnn was built without MPI: every copy "
                                 "would train alone and overwrite the others' files (rebuild where CMake finds MPI)");
      if (world.size() > 1 && !*train_cmd && !*hpo_cmd)
        throw std::runtime_error("only 'train' and 'hpo' run on several MPI ranks; run predict, evaluate, import and convert as one process");
      if (*train_cmd) rc = cmd_train(config, output, resume, overwrite, world, accumulate);
      else if (*pred_cmd && !ensemble.empty()) rc = cmd_predict_ensemble(ensemble, input, out_file, batch, precision, branch);
      else if (*pred_cmd) rc = cmd_predict(checkpoint, input, out_file, batch, precision, branch);
      else if (*eval_cmd) rc = cmd_evaluate(checkpoint, input, json, batch, branch);
      else if (*import_cmd) rc = cmd_import(config, weights, out_file, overwrite);
      else if (*hpo_cmd) rc = cmd_hpo(search, output, max_jobs, world);
      else if (*convert_cmd) {
#ifdef HYDRAGNN_HAVE_HDF5
        rc = cmd_convert(conv_inputs, conv_names, out_file, conv_radius, overwrite);
#else
        throw std::runtime_error("convert: this hydragnn was built without HDF5 (Debian: libhdf5-openmpi-dev)");
#endif
      }
    } catch (const std::exception& e) {
      // a failure on one rank stops every rank (never a hang in a collective the others wait in)
      if (world.size() > 1)
        world.abort("hydragnn: error on rank " + std::to_string(world.rank()) + " of " + std::to_string(world.size()) +
                    ": " + e.what());
      std::fprintf(stderr, "hydragnn: error: %s\n", e.what());
      rc = 1;
    }
    Kokkos::finalize();
  }
#ifdef HYDRAGNN_HAVE_MPI
  MPI_Finalize();
#endif
  return rc;
}
