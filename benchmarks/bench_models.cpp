// SPDX-License-Identifier: BSD-3-Clause
// Google Benchmark harness: training steps, batched inference and MD-style inference of SchNet and
// EGNN potentials on the reference workload (benchmarks/workload.hpp). T = float, Exec =
// Kokkos::DefaultExecutionSpace, so a CUDA build of Kokkos benchmarks the GPU. See benchmarks/README.md.
#include <hydragnn/autodiff/potential.hpp>
#include <hydragnn/model/registry.hpp>
#include <hydragnn/autodiff/loss.hpp>
#include <hydragnn/train/dataset.hpp>
#include <hydragnn/train/optimizer.hpp>
#include <hydragnn/io/extxyz.hpp>

#include "bench_spec.hpp"
#include "kernel_profile.hpp"
#include "workload.hpp"

#include <Kokkos_Core.hpp>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <sys/resource.h>

#ifdef KOKKOS_ENABLE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

using T = float;
using Exec = Kokkos::DefaultExecutionSpace;
using M = Exec::memory_space;
using namespace hydragnn;
using hydragnn_bench::GraphSet;
using hydragnn_bench::bench_loss;
using hydragnn_bench::bench_spec;
using hydragnn_bench::kConvLayers;
using hydragnn_bench::kRadialSize;

constexpr double kMiB = 1024.0 * 1024.0;
int g_warmup = 1;  // untimed steps before the timed loop (--warmup=N)
bool g_egnn_equivariance = true;  // EGNN with coordinate updates, as the HydraGNN runner builds it (--egnn_equivariance=0|1)

// ---- memory ------------------------------------------------------------------------------------

/// Peak of the bytes Kokkos holds in the benchmarked memory space, through the Kokkos Tools
/// allocation callbacks (active only between start() and stop(), i.e. never while timing).
struct KokkosMemoryTracker {
  static inline long long current = 0, peak = 0;
  static void on_alloc(const Kokkos_Profiling_SpaceHandle h, const char*, const void*, const uint64_t size) {
    if (std::strncmp(h.name, M::name(), sizeof(h.name)) != 0) return;
    current += (long long)size;
    peak = std::max(peak, current);
  }
  static void on_dealloc(const Kokkos_Profiling_SpaceHandle h, const char*, const void*, const uint64_t size) {
    if (std::strncmp(h.name, M::name(), sizeof(h.name)) != 0) return;
    current -= (long long)size;
  }
  static void start() {
    Kokkos::fence();
    current = peak = 0;
    Kokkos::Tools::Experimental::set_allocate_data_callback(&on_alloc);
    Kokkos::Tools::Experimental::set_deallocate_data_callback(&on_dealloc);
  }
  /// Peak bytes allocated (and not yet freed) since start().
  static long long stop() {
    Kokkos::fence();
    Kokkos::Tools::Experimental::set_allocate_data_callback(nullptr);
    Kokkos::Tools::Experimental::set_deallocate_data_callback(nullptr);
    return peak;
  }
};

/// Peak resident set size of the whole process so far (Linux: ru_maxrss is in KiB).
[[maybe_unused]] double peak_rss_mib() {  // only used by non-CUDA builds
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}

/// Device memory in use (total - free), CUDA builds only.
double device_used_mib() {
#ifdef KOKKOS_ENABLE_CUDA
  std::size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  return double(total_b - free_b) / kMiB;
#else
  return 0.0;
#endif
}

/// Memory counters shared by all cases. kokkos_peak_MB is measured over setup + the first step.
void memory_counters(benchmark::State& state, long long kokkos_peak, double dev_used_before) {
  if (kokkos_peak < 0) kokkos_peak = KokkosMemoryTracker::stop();  // no step ran (zero iterations)
  state.counters["kokkos_peak_MB"] = double(kokkos_peak) / kMiB;
#ifdef KOKKOS_ENABLE_CUDA
  state.counters["cuda_used_MB"] = device_used_mib();                          // whole device, after the loop
  state.counters["cuda_delta_MB"] = device_used_mib() - dev_used_before;       // this case's retained growth
#else
  (void)dev_used_before;
  state.counters["peak_rss_MB"] = peak_rss_mib();  // process-wide maximum so far (CPU stand-in)
#endif
}

// ---- workload caches (host data only: no Kokkos views outlive Kokkos::finalize) ------------------

const GraphSet& reference_set() {
  static const GraphSet set = hydragnn_bench::reference_batch();
  return set;
}

const GraphSet& md_set(int n) {
  static std::map<int, std::unique_ptr<GraphSet>> cache;
  auto& p = cache[n];
  if (!p) p = std::make_unique<GraphSet>(hydragnn_bench::md_box(n));
  return *p;
}

// ---- models -------------------------------------------------------------------------------------

/// Each model's own options in the benchmark: SchNet with hidden filters and 50 Gaussians, EGNN as
/// the HydraGNN runner builds it (equivariance: true), PNAEq, PNA and PNAPlus with the reference batch's
/// degree histogram. The edge-length feature where the runner gives HydraGNN edge_attr and our
/// model takes it: PNA, CGCNN and GAT always, PNAPlus and DimeNet++ in direct mode (the runner's
/// direct mode gives every model in its EDGE_MODELS "length"; conservative mode none). SchNet,
/// EGNN, PaiNN and PNAEq take no edge feature here: compare them with the runner's --no-edge-attr.
template <class Conv>
typename Conv::options_type bench_options(int hidden, bool direct) {
  typename Conv::options_type o;
  if constexpr (std::is_same<Conv, SchNetConv>::value) {
    o.num_filters = hidden;
    o.num_gaussians = kRadialSize;
  }
  if constexpr (std::is_same<Conv, EGNNConv>::value) o.equivariance = g_egnn_equivariance;
  if constexpr (std::is_same<Conv, PNAEqConv>::value || std::is_same<Conv, PNAConv>::value ||
                std::is_same<Conv, PNAPlusConv>::value) {
    // the in-degree histogram of the reference batch (HydraGNN's runner: of its data list)
    Dataset d;
    d.graphs = reference_set().graphs;
    o.pna_deg = degree_histogram(d);
  }
  constexpr bool always = std::is_same<Conv, PNAConv>::value || std::is_same<Conv, CGCNNConv>::value ||
                          std::is_same<Conv, GATConv>::value;
  constexpr bool in_direct = std::is_same<Conv, PNAPlusConv>::value || std::is_same<Conv, DimeNetConv>::value;
  if constexpr (always || in_direct) {
    if (always || direct) {
      o.edge_features = {"length"};  // the energy depends on the positions (forces for the conservative cases)
      o.edge_length_scale = hydragnn_bench::reference_workload().cutoff;
    }
  }
  return o;
}

std::string label(const char* conv, const char* what, int hidden) {
  std::ostringstream s;
  s << conv << ' ' << what << " hidden=" << hidden << " layers=" << kConvLayers << " float " << Exec::name();
  return s.str();
}

void size_counters(benchmark::State& state, long graphs, long atoms, long edges, long triplets, std::size_t params) {
  state.counters["graphs_per_s"] = benchmark::Counter(double(graphs), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["atoms_per_s"] = benchmark::Counter(double(atoms), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["atoms_per_batch"] = double(atoms);
  state.counters["edges_per_batch"] = double(edges);
  if (triplets > 0) state.counters["triplets_per_batch"] = double(triplets);
  state.counters["params"] = double(params);
}

// ---- cases --------------------------------------------------------------------------------------

/// What one training step holds: the batch, the model, AdamW, the gradient and the workspace.
template <class Conv>
struct TrainCase {
  Exec exec;
  hydragnn::Batch<M> batch;
  Model<T, Conv, Exec> model;
  Optimizer<T, Exec> opt;
  Vec<T, M> grad;
  Workspace<M> ws;
  LossSpec w;
  TrainCase(const GraphSet& set, int hidden, bool conservative)
      : batch(hydragnn_bench::make_device_batch<M>(set, hydragnn_bench::species_map(), !conservative,
                                                   hydragnn::conv_traits<Conv>::needs_triplets)),
        model(bench_spec(Conv::name, hidden, conservative), bench_options<Conv>(hidden, !conservative)),
        opt(OptimizerType::AdamW, model.num_params(), 1e-3, 1e-2, 0.0),
        grad("hydragnn_bench::grad", model.num_params()),
        w(bench_loss(conservative)) {
    model.initialize(42);
  }
  /// One optimisation step: loss_and_grad (conservative: real pass + dual pass) + AdamW step.
  void step() {
    LossResult r = loss_and_grad(exec, model, batch, w, grad, &ws);
    opt.step(exec, model.params(), grad);
    benchmark::DoNotOptimize(r.loss);
  }
};

/// One optimisation step: loss_and_grad (conservative: real pass + dual pass) + AdamW step.
template <class Conv>
void BM_train(benchmark::State& state, int hidden, bool conservative) {
  const GraphSet& set = reference_set();
  const double dev_before = device_used_mib();
  KokkosMemoryTracker::start();
  TrainCase<Conv> c(set, hidden, conservative);
  // Memory is tracked over setup + the first step: the first warm-up step, or with --warmup=0 the
  // first timed step (the callbacks then run inside it: one compare and add per allocation).
  long long kpeak = -1;
  for (int k = 0; k < g_warmup; ++k) {
    c.step();
    if (kpeak < 0) kpeak = KokkosMemoryTracker::stop();
  }
  for (auto _ : state) {
    c.step();
    Kokkos::fence();
    if (kpeak < 0) kpeak = KokkosMemoryTracker::stop();
  }
  state.SetLabel(label(Conv::name, conservative ? "train conservative" : "train direct", hidden));
  size_counters(state, c.batch.num_graphs, c.batch.num_atoms, c.batch.num_edges, c.batch.triplets.num_triplets,
                c.model.num_params());
  memory_counters(state, kpeak, dev_before);
}

/// What one inference benchmark measured.
struct PredictRun {
  long graphs = 0, atoms = 0, edges = 0, triplets = 0;
  std::size_t params = 0;
  long long kpeak = -1;
  double seconds = 0, dev_before = 0;
};

/// What one inference step holds: the batch, a conservative model and the workspace.
template <class Conv>
struct PredictCase {
  Exec exec;
  hydragnn::Batch<M> batch;
  Model<T, Conv, Exec> model;
  Workspace<M> ws;
  PredictCase(const GraphSet& set, int hidden)
      : batch(hydragnn_bench::make_device_batch<M>(set, hydragnn_bench::species_map(), false,
                                                   hydragnn::conv_traits<Conv>::needs_triplets)),
        model(bench_spec(Conv::name, hidden, true), bench_options<Conv>(hidden, false)) {
    model.initialize(42);
  }
  /// predict() with energies, forces (and stress).
  Prediction step() { return predict(exec, model, batch, true, &ws); }
};

/// Shared body of the inference benchmarks: build the batch and a conservative model, warm up, then
/// time predict() (energy, forces, stress) per iteration.
template <class Conv>
PredictRun run_predict(benchmark::State& state, const GraphSet& set, int hidden) {
  PredictRun r;
  r.dev_before = device_used_mib();
  KokkosMemoryTracker::start();
  PredictCase<Conv> c(set, hidden);
  for (int k = 0; k < g_warmup; ++k) {  // setup + first predict, as in BM_train
    benchmark::DoNotOptimize(c.step().energy.data());
    if (r.kpeak < 0) r.kpeak = KokkosMemoryTracker::stop();
  }
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    Prediction p = c.step();
    benchmark::DoNotOptimize(p.forces.data());
    Kokkos::fence();
    r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r.kpeak < 0) r.kpeak = KokkosMemoryTracker::stop();
  }
  r.graphs = c.batch.num_graphs;
  r.atoms = c.batch.num_atoms;
  r.edges = c.batch.num_edges;
  r.triplets = c.batch.triplets.num_triplets;
  r.params = c.model.num_params();
  return r;
}

/// Batched inference of a conservative model: energies + forces (+ stress) in one forward/backward.
template <class Conv>
void BM_infer(benchmark::State& state, int hidden) {
  const PredictRun r = run_predict<Conv>(state, reference_set(), hidden);
  state.SetLabel(label(Conv::name, "infer energy+forces", hidden));
  size_counters(state, r.graphs, r.atoms, r.edges, r.triplets, r.params);
  memory_counters(state, r.kpeak, r.dev_before);
}

/// MD-style inference: one periodic box of n atoms per step (energy, forces, stress).
template <class Conv>
void BM_md(benchmark::State& state, int hidden, int n) {
  const PredictRun r = run_predict<Conv>(state, md_set(n), hidden);  // graph built outside the timed loop
  state.SetLabel(label(Conv::name, ("MD box n=" + std::to_string(n)).c_str(), hidden));
  const double steps = double(state.iterations());
  state.counters["us_per_atom_step"] = steps > 0 ? 1e6 * r.seconds / (steps * n) : 0.0;
  state.counters["atoms_per_s"] = benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["atoms"] = double(n);
  state.counters["edges"] = double(r.edges);
  state.counters["params"] = double(r.params);
  memory_counters(state, r.kpeak, r.dev_before);
}

// ---- per-kernel profile (--profile=CASE,...) ----------------------------------------------------

/// Runs `step` g_warmup times, then `steps` times with every kernel fenced and timed by label.
template <class Step>
void profile_steps(const std::string& name, int steps, Step&& step) {
  for (int k = 0; k < g_warmup; ++k) step();
  Kokkos::fence();
  hydragnn_bench::KernelProfile::start();
  const auto t0 = std::chrono::steady_clock::now();
  for (int k = 0; k < steps; ++k) step();
  Kokkos::fence();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  hydragnn_bench::KernelProfile::stop();
  hydragnn_bench::KernelProfile::print(name.c_str(), secs, steps);
}

/// The cases --profile can name ("train/SchNet/direct/h64", "infer/EGNN/h128", ...).
std::map<std::string, std::function<void(int)>>& profile_cases() {
  static std::map<std::string, std::function<void(int)>> m;
  return m;
}

// ---- registration -------------------------------------------------------------------------------

template <class Conv>
void register_model(const std::vector<int>& hidden, const std::vector<int>& md_sizes) {
  const std::string c = Conv::name;
  for (int mode = 0; mode < 2; ++mode) {
    const bool cons = mode == 1;
    for (int h : hidden) {
      const std::string name = "train/" + c + (cons ? "/conservative" : "/direct") + "/h" + std::to_string(h);
      profile_cases()[name] = [name, h, cons](int steps) {
        TrainCase<Conv> tc(reference_set(), h, cons);
        profile_steps(name, steps, [&] { tc.step(); });
      };
      benchmark::RegisterBenchmark(name.c_str(),
                                   [h, cons](benchmark::State& s) { BM_train<Conv>(s, h, cons); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
  for (int h : hidden) {
    const std::string name = "infer/" + c + "/h" + std::to_string(h);
    profile_cases()[name] = [name, h](int steps) {
      PredictCase<Conv> pc(reference_set(), h);
      profile_steps(name, steps, [&] { benchmark::DoNotOptimize(pc.step().forces.data()); });
    };
    benchmark::RegisterBenchmark(name.c_str(), [h](benchmark::State& s) { BM_infer<Conv>(s, h); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  for (int h : hidden)
    for (int n : md_sizes)
      benchmark::RegisterBenchmark(("md/" + c + "/h" + std::to_string(h) + "/n" + std::to_string(n)).c_str(),
                                   [h, n](benchmark::State& s) { BM_md<Conv>(s, h, n); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
}

std::vector<int> parse_int_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ','))
    if (!tok.empty()) out.push_back(std::stoi(tok));
  return out;
}

/// Removes "--name=value" from argv and returns value (or def).
std::string take_flag(int& argc, char** argv, const std::string& name, const std::string& def) {
  const std::string prefix = "--" + name + "=";
  std::string value = def;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) value = argv[i] + prefix.size();
    else argv[out++] = argv[i];
  }
  argc = out;
  argv[argc] = nullptr;
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::initialize(argc, argv);
  int rc = 0;
  {
    const auto hidden = parse_int_list(take_flag(argc, argv, "hidden", "64,128"));
    const auto md_sizes = parse_int_list(take_flag(argc, argv, "md_sizes", "1000,8000,64000"));
    g_warmup = std::max(0, std::stoi(take_flag(argc, argv, "warmup", "1")));
    g_egnn_equivariance = std::stoi(take_flag(argc, argv, "egnn_equivariance", "1")) != 0;
    // --write_extxyz=DIR: writes the reference batch (DIR/ref_batch32.extxyz) and each MD box
    // (DIR/box<n>.extxyz) for the peer runners, so they time exactly these frames, then exits.
    const std::string write_dir = take_flag(argc, argv, "write_extxyz", "");
    // --profile=CASE[,CASE...] (names as listed by --benchmark_list_tests, without /real_time):
    // per-kernel times of --profile_steps=N fenced steps of each case, instead of the benchmarks.
    const std::string profile = take_flag(argc, argv, "profile", "");
    const int profile_steps_n = std::max(1, std::stoi(take_flag(argc, argv, "profile_steps", "3")));
    if (!write_dir.empty()) {
      // The direct-head copies of the labels (info["energy"], arrays["forces"]) are the file's own
      // energy and forces columns: drop them before writing.
      auto labels_once = [](std::vector<Structure> frames) {
        for (auto& f : frames) {
          f.info.erase("energy");
          f.arrays.erase("forces");
          f.array_cols.erase("forces");
        }
        return frames;
      };
      write_extxyz(write_dir + "/ref_batch" + std::to_string(reference_set().frames.size()) + ".extxyz",
                   labels_once(reference_set().frames));
      for (int n : md_sizes)
        write_extxyz(write_dir + "/box" + std::to_string(n) + ".extxyz", labels_once(md_set(n).frames));
      Kokkos::finalize();
      return 0;
    }
    if (!profile.empty()) {
      for_each_conv([&](auto tag) { register_model<typename decltype(tag)::type>(hidden, md_sizes); });
      std::stringstream ss(profile);
      std::string name;
      while (std::getline(ss, name, ',')) {
        auto it = profile_cases().find(name);
        if (it == profile_cases().end()) {
          std::fprintf(stderr, "hydragnn_bench: --profile: no case '%s' (train/<Model>/<direct|conservative>/h<H>, "
                               "infer/<Model>/h<H>, with H in --hidden)\n", name.c_str());
          rc = 1;
          continue;
        }
        it->second(profile_steps_n);
      }
      profile_cases().clear();
      Kokkos::finalize();
      return rc;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
      rc = 1;
    } else {
      for_each_conv([&](auto tag) { register_model<typename decltype(tag)::type>(hidden, md_sizes); });
      const auto& w = hydragnn_bench::reference_workload();
      std::ostringstream wl;
      wl << "molecules N~U[" << w.min_atoms << "," << w.max_atoms << "], sc lattice a=" << w.lattice
         << " A jitter +-" << w.jitter << "a, Z in {1,6,7,8}, cutoff " << w.cutoff << " A, max "
         << w.max_neighbours << " neighbours, " << w.batch_size << " graphs/batch, seed " << w.seed;
      benchmark::AddCustomContext("hydragnn_workload", wl.str());
      benchmark::AddCustomContext("kokkos_execution_space", Exec::name());
      benchmark::AddCustomContext("kokkos_version", std::to_string(hydragnn::compat::kokkos_version()));
      benchmark::AddCustomContext("scalar", "float");
      benchmark::RunSpecifiedBenchmarks();
      benchmark::Shutdown();
    }
  }
  Kokkos::finalize();
  return rc;
}
