// SPDX-License-Identifier: BSD-3-Clause
// hydragnn_bench_scaling: data-parallel training over MPI ranks on the reference workload, and the
// pieces of a performance model (docs/scaling.md, benchmarks/scaling_model.py).
//
//   mpirun -np P hydragnn_bench_scaling [--model=SchNet] [--hidden=64] [--batch=32] [--steps=6]
//                                       [--warmup=1] [--allreduce_max_mib=64] [--overlap=1]
//                                       [--out=scaling_P.json]
//
// For each of
//   strong: a global batch of `batch` structures cut into P shards (batch / P per rank),
//   weak:   `batch` structures per rank (a global batch of P x batch),
// and each sampling of a shard's structures over the steps of an epoch
//   size_ranks: the trainer's (epoch_order: all shards draw the same size ranks at each step),
//   random:     each shard shuffled independently (what plain per-rank shuffling gives),
// it runs warmup + steps training steps (DataParallelStep: the trainer's own step; conservative
// model and loss of the HydraGNN runner, the reference molecules of 20-200 atoms, shards balanced by
// atom count) and records per step the wall time and, per rank, the time spent building
// and uploading the batch (data), in forward/backward (compute), in the gradient sum and gather
// (reduce: includes waiting for the slowest rank; with --overlap=1, the default, the sums of the heads'
// and the later layers' gradients run during the backward and reduce is what is left after it) and in
// the optimizer (update). Then the time of
// MpiCollective::sum on float buffers from 1 KiB to `allreduce_max_mib` MiB and on the model's own
// gradient buffer (median of repeats, the slowest rank's time), and the time to build the radius graph
// of one structure. Rank 0 writes the JSON.
#include <hydragnn/dist/mpi.hpp>
#include <hydragnn/model/registry.hpp>
#include <hydragnn/train/trainer.hpp>

#include "bench_spec.hpp"
#include "workload.hpp"

#include <Kokkos_Core.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

using namespace hydragnn;
using Exec = Kokkos::DefaultExecutionSpace;
using clk = std::chrono::steady_clock;

std::string flag(int argc, char** argv, const std::string& name, const std::string& dflt) {
  const std::string key = "--" + name + "=";
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], key.c_str(), key.size()) == 0) return argv[i] + key.size();
  return dflt;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

/// The largest value of x over the ranks.
double max_over_ranks(const Collective& c, double x) {
  double m = x;
  for (double y : c.gather({x})) m = std::max(m, y);
  return m;
}

/// Parameters whose sum over the ranks cannot overlap the backward: the first trunk layer's (the last
/// stage Model::backward reports) and those no stage holds (the embedding).
template <class ModelT>
std::size_t tail_params(const ModelT& model) {
  const auto& stages = model.gradient_stages();
  std::size_t overlapped = 0;  // the stages before the last
  for (std::size_t k = 0; k + 1 < stages.size(); ++k)
    for (const auto& r : stages[k]) overlapped += r.second - r.first;
  return model.num_params() - overlapped;
}

template <class Conv>
nlohmann::json run_mode(const MpiCollective& coll, const std::string& mode, const std::string& sampling, int hidden,
                        int batch, int steps, int warmup, const hydragnn_bench::GraphSet& all) {
  using ModelT = Model<float, Conv, Exec>;
  const int P = coll.size();
  const std::size_t global = mode == "strong" ? std::size_t(batch) : std::size_t(batch) * std::size_t(P);
  const std::size_t local = (global + std::size_t(P) - 1) / std::size_t(P);
  const std::size_t n = global * std::size_t(steps + warmup);
  Dataset ds;
  ds.frames.assign(all.frames.begin(), all.frames.begin() + long(n));
  ds.graphs.assign(all.graphs.begin(), all.graphs.begin() + long(n));
  const ShardedData d = shard_datasets(ds, Dataset(), coll.rank(), P, 1);
  ModelSpec spec = hydragnn_bench::bench_spec(Conv::name, hidden, true);
  typename Conv::options_type opt;
  if constexpr (std::is_same<Conv, SchNetConv>::value) {
    opt.num_filters = hidden;
    opt.num_gaussians = hydragnn_bench::kRadialSize;
  }
  ModelT model(spec, opt);
  model.initialize(1);
  Optimizer<float, Exec> optim(OptimizerType::AdamW, model.num_params(), 1e-5, 0.0, 0.0);
  const LossSpec w = hydragnn_bench::bench_loss(true);
  model.set_training(true);
  DataParallelStep<ModelT> stepper(model, coll, 1, P);
  Exec exec;
  const std::vector<std::size_t> mine = sampling == "random" ? epoch_order(d.train_shards[0], d.train, 1, 0, 1, 0)
                                                             : epoch_order(d.train_shards[0], d.train, 1, 0, P, d.largest_shard());
  std::vector<double> wall, data, compute, reduce, update;
  long atoms = 0;
  for (int s = 0; s < steps + warmup; ++s) {
    const std::size_t lo = std::min(mine.size(), std::size_t(s) * local), hi = std::min(mine.size(), lo + local);
    std::vector<std::vector<std::size_t>> idx(1);
    for (std::size_t k = lo; k < hi; ++k)
      if (mine[k] != no_structure) idx[0].push_back(mine[k]);
    coll.barrier();
    const auto t0 = clk::now();
    const StepResult r = stepper.step(exec, model, optim, d.train, idx, w, 1e-5, 1);
    const double dt = std::chrono::duration<double>(clk::now() - t0).count();
    if (s < warmup) continue;
    wall.push_back(max_over_ranks(coll, dt));
    data.push_back(r.t_data);
    compute.push_back(r.t_compute);
    reduce.push_back(r.t_reduce);
    update.push_back(r.t_update);
    for (std::size_t i : idx[0]) atoms += long(d.train.frames[i].size());
  }
  // per rank medians, gathered
  const std::vector<double> per_rank =
      coll.gather({median(data), median(compute), median(reduce), median(update), double(atoms) / steps});
  const std::vector<double> compute_steps = coll.gather(compute);  // rank-major
  nlohmann::json ranks = nlohmann::json::array();
  for (int r = 0; r < P; ++r)
    ranks.push_back({{"rank", r},
                     {"data_s", per_rank[5 * r]},
                     {"compute_s", per_rank[5 * r + 1]},
                     {"reduce_s", per_rank[5 * r + 2]},
                     {"update_s", per_rank[5 * r + 3]},
                     {"atoms_per_step", per_rank[5 * r + 4]},
                     {"compute_s_per_step", std::vector<double>(compute_steps.begin() + long(r) * steps,
                                                                compute_steps.begin() + long(r + 1) * steps)}});
  const double step = median(wall);
  return {{"mode", mode},
          {"sampling", sampling},
          {"ranks", P},
          {"model", Conv::name},
          {"overlap", coll.overlaps()},
          {"hidden", hidden},
          {"params", model.num_params()},
          {"trunk_params", model.num_trunk_params()},
          {"tail_params", tail_params(model)},
          {"global_batch", global},
          {"local_batch", local},
          {"steps", steps},
          {"step_s", step},
          {"step_s_per_step", wall},
          {"graphs_per_s", double(global) / step},
          {"per_rank", ranks}};
}

nlohmann::json allreduce_times(const MpiCollective& coll, std::size_t max_mib, std::size_t params) {
  nlohmann::json out = nlohmann::json::array();
  std::vector<std::size_t> sizes;
  for (std::size_t n = 256; n * sizeof(float) <= max_mib << 20; n *= 4) sizes.push_back(n);
  sizes.push_back(params);
  for (std::size_t n : sizes) {
    std::vector<float> buf(n, 1.0f);
    const int reps = n * sizeof(float) > (std::size_t(8) << 20) ? 5 : 20;
    std::vector<double> t;
    for (int r = 0; r < reps + 1; ++r) {
      coll.barrier();
      const auto t0 = clk::now();
      coll.sum(buf.data(), n);
      const double dt = max_over_ranks(coll, std::chrono::duration<double>(clk::now() - t0).count());
      if (r > 0) t.push_back(dt);
    }
    out.push_back({{"bytes", n * sizeof(float)}, {"seconds", median(t)}, {"model_gradient", n == params}});
  }
  return out;
}

template <class Conv>
int run(int argc, char** argv, const MpiCollective& coll) {
  const int hidden = std::stoi(flag(argc, argv, "hidden", "64"));
  const int batch = std::stoi(flag(argc, argv, "batch", "32"));
  const int steps = std::stoi(flag(argc, argv, "steps", "6"));
  const int warmup = std::stoi(flag(argc, argv, "warmup", "1"));
  const std::size_t max_mib = std::size_t(std::stoul(flag(argc, argv, "allreduce_max_mib", "64")));
  const std::string out_path = flag(argc, argv, "out", "");
  const int P = coll.size();
  const std::size_t need = std::size_t(batch) * std::size_t(P) * std::size_t(steps + warmup);
  // the molecules and the time to build one structure's graph
  hydragnn_bench::GraphSet all = hydragnn_bench::reference_molecules(int(need));
  const auto tg = clk::now();
  hydragnn_bench::build_graphs(all);
  const double graph_s = std::chrono::duration<double>(clk::now() - tg).count() / double(need);
  nlohmann::json j;
  j["kokkos_execution_space"] = Exec::name();
  j["ranks"] = P;
  j["graph_build_s_per_structure"] = graph_s;
  double sum = 0, sq = 0;
  for (const auto& f : all.frames) {
    sum += double(f.size());
    sq += double(f.size()) * double(f.size());
  }
  const double mean = sum / double(all.frames.size());
  j["structure_atoms_mean"] = mean;
  j["structure_atoms_cv"] = std::sqrt(std::max(0.0, sq / double(all.frames.size()) - mean * mean)) / mean;
  j["runs"] = nlohmann::json::array();
  for (const char* mode : {"strong", "weak"})
    for (const char* sampling : {"size_ranks", "random"})
      j["runs"].push_back(run_mode<Conv>(coll, mode, sampling, hidden, batch, steps, warmup, all));
  std::size_t params = j["runs"][0]["params"];
  j["allreduce"] = allreduce_times(coll, max_mib, params);
  if (coll.rank() == 0) {
    const std::string text = j.dump(2);
    if (out_path.empty()) {
      std::puts(text.c_str());
    } else {
      std::ofstream(out_path) << text << "\n";
      std::printf("wrote %s\n", out_path.c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int thread_level = MPI_THREAD_SINGLE;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &thread_level);
  Kokkos::initialize(argc, argv);
  int rc = 0;
  {
    const bool overlap = flag(argc, argv, "overlap", "1") != "0";
    const MpiCollective coll(MPI_COMM_WORLD, 0.0, std::size_t(64) << 20, overlap);
    try {
      const std::string model = flag(argc, argv, "model", "SchNet");
      const bool found = dispatch_conv(model, [&](auto tag) { rc = run<typename decltype(tag)::type>(argc, argv, coll); });
      if (!found) throw std::runtime_error("--model=" + model + " is not a registered mpnn_type");
    } catch (const std::exception& e) {
      coll.abort("hydragnn_bench_scaling: error on rank " + std::to_string(coll.rank()) + ": " + e.what());
      rc = 1;
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return rc;
}
