// SPDX-License-Identifier: BSD-3-Clause
// Training driver: epochs over shuffled batches, validation, ReduceLROnPlateau,
// early stopping, atomic checkpoints (latest + best), bit-for-bit resume, and evaluation metrics.
#pragma once

#include <hydragnn/io/checkpoint.hpp>
#include <hydragnn/io/config.hpp>
#include <hydragnn/io/config_to_spec.hpp>
#include <hydragnn/io/run_log.hpp>
#include <hydragnn/train/dataset.hpp>
#include <hydragnn/autodiff/loss.hpp>
#include <hydragnn/core/random.hpp>
#include <hydragnn/train/collective.hpp>
#include <hydragnn/train/finetune.hpp>
#include <hydragnn/train/shards.hpp>
#include <hydragnn/train/optimizer.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace hydragnn {

/// Errors of a model on a dataset (energies per structure and per atom, force components).
struct Metrics {
  double loss = 0;
  double e_mae = NAN, e_rmse = NAN, epa_mae = NAN, epa_rmse = NAN, f_mae = NAN, f_rmse = NAN, s_mae = NAN;
  long n_structures = 0, n_force_components = 0;
  std::vector<double> head_mae;
};

inline Metrics metrics_from(const ErrorSums& e, double loss) {
  Metrics m;
  m.loss = loss;
  if (e.n_e) {
    m.e_mae = e.e_abs / e.n_e;
    m.e_rmse = std::sqrt(e.e_sq / e.n_e);
    m.epa_mae = e.epa_abs / e.n_e;
    m.epa_rmse = std::sqrt(e.epa_sq / e.n_e);
  }
  if (e.n_f) {
    m.f_mae = e.f_abs / e.n_f;
    m.f_rmse = std::sqrt(e.f_sq / e.n_f);
  }
  if (e.n_s) m.s_mae = e.s_abs / e.n_s;
  m.n_structures = e.n_e;
  m.n_force_components = e.n_f;
  for (std::size_t k = 0; k < e.h_abs.size(); ++k) m.head_mae.push_back(e.n_h[k] ? e.h_abs[k] / e.n_h[k] : NAN);
  return m;
}

/// Loss and errors of a model over the structures idx of a dataset, in batches of batch_size, without
/// gradients: the loss summed over batches (each batch's loss times its structures), the structures,
/// and the error sums.
struct EvalSums {
  double loss_sum = 0;
  std::size_t graphs = 0;
  ErrorSums errors;
  /// As a flat record (counts as doubles, exact below 2^53) for a gather over ranks.
  std::vector<double> flat() const {
    const ErrorSums& e = errors;
    std::vector<double> v{loss_sum, double(graphs), e.e_abs, e.e_sq, e.epa_abs, e.epa_sq, e.f_abs, e.f_sq,
                          e.s_abs,  e.s_sq,         double(e.n_e), double(e.n_f), double(e.n_s), double(e.h_abs.size())};
    for (std::size_t k = 0; k < e.h_abs.size(); ++k) {
      v.push_back(e.h_abs[k]);
      v.push_back(e.h_sq[k]);
      v.push_back(double(e.n_h[k]));
    }
    return v;
  }
  /// Reads one record at v[pos] and advances pos.
  static EvalSums from_flat(const std::vector<double>& v, std::size_t& pos) {
    EvalSums s;
    ErrorSums& e = s.errors;
    const double* p = v.data() + pos;
    s.loss_sum = p[0];
    s.graphs = std::size_t(p[1]);
    e.e_abs = p[2]; e.e_sq = p[3]; e.epa_abs = p[4]; e.epa_sq = p[5]; e.f_abs = p[6]; e.f_sq = p[7];
    e.s_abs = p[8]; e.s_sq = p[9]; e.n_e = long(p[10]); e.n_f = long(p[11]); e.n_s = long(p[12]);
    const std::size_t nh = std::size_t(p[13]);
    for (std::size_t k = 0; k < nh; ++k) {
      e.h_abs.push_back(p[14 + 3 * k]);
      e.h_sq.push_back(p[15 + 3 * k]);
      e.n_h.push_back(long(p[16 + 3 * k]));
    }
    pos += 14 + 3 * nh;
    return s;
  }
  void add(const EvalSums& o) {
    loss_sum += o.loss_sum;
    graphs += o.graphs;
    errors.add(o.errors);
  }
  Metrics metrics() const { return metrics_from(errors, graphs ? loss_sum / double(graphs) : 0.0); }
};

template <class ModelT>
EvalSums evaluate_sums(const typename ModelT::exec_space& exec, const ModelT& model, const Dataset& ds,
                       const std::vector<std::size_t>& members, const LossSpec& w, int batch_size,
                       Workspace<typename ModelT::memory_space>& ws) {
  using M = typename ModelT::memory_space;
  EvalSums out;
  for (std::size_t s = 0; s < members.size(); s += std::size_t(batch_size)) {
    const std::vector<std::size_t> idx(members.begin() + long(s),
                                       members.begin() + long(std::min(members.size(), s + std::size_t(batch_size))));
    auto b = batch_of<M>(ds, idx, model.spec().species, model.spec().heads, ModelT::traits::needs_triplets);
    auto r = loss_and_grad(exec, model, b, w, Vec<typename ModelT::real_type, M>(), &ws);
    out.errors.add(r.errors);
    out.loss_sum += r.loss * idx.size();
    out.graphs += idx.size();
  }
  return out;
}

/// Loss and errors of a model over a whole dataset (no gradients), in batches of batch_size.
template <class ModelT>
Metrics evaluate(const typename ModelT::exec_space& exec, const ModelT& model, const Dataset& ds, const LossSpec& w,
                 int batch_size) {
  Workspace<typename ModelT::memory_space> ws;
  std::vector<std::size_t> all(ds.size());
  std::iota(all.begin(), all.end(), 0);
  return evaluate_sums(exec, model, ds, all, w, batch_size, ws).metrics();
}

/// Loss and errors over the shards of a data-parallel run: each local shard in batches, the shards'
/// sums gathered over the ranks and added in shard order (the same on every rank, and the same for
/// any split of the shards over ranks).
template <class ModelT>
Metrics evaluate_shards(const typename ModelT::exec_space& exec, const ModelT& model, const Dataset& ds,
                        const std::vector<std::vector<std::size_t>>& shards, const LossSpec& w, int batch_size,
                        Workspace<typename ModelT::memory_space>& ws, const Collective& coll) {
  std::vector<double> mine;
  for (const auto& members : shards) {
    const std::vector<double> f = evaluate_sums(exec, model, ds, members, w, batch_size, ws).flat();
    mine.insert(mine.end(), f.begin(), f.end());
  }
  const std::vector<double> all = coll.size() > 1 ? coll.gather(mine) : mine;
  EvalSums total;
  for (std::size_t pos = 0; pos < all.size();) total.add(EvalSums::from_flat(all, pos));
  return total.metrics();
}

template <class T> constexpr const char* precision_name() { return sizeof(T) == 4 ? "float" : "double"; }

/// Copy a model's parameters and optimizer state into a checkpoint record.
template <class ModelT, class Opt>
CheckpointData make_checkpoint(const ModelT& model, const Opt* opt, const TrainState& st, const std::string& cfg) {
  CheckpointData c;
  c.precision = precision_name<typename ModelT::real_type>();
  c.spec = model.spec();
  c.options = options_to_json(model.options());
  c.state = st;
  c.config_json = cfg;
  c.params = to_host_vector(model.params());
  c.buffers = model.buffers();
  if (opt) {
    c.opt_m = to_host_vector(opt->m);
    c.opt_v = to_host_vector(opt->v);
  }
  return c;
}

/// Build a model from a checkpoint (checks precision and architecture).
template <class ModelT>
ModelT model_from_checkpoint(const CheckpointData& c, const std::string& path) {
  using T = typename ModelT::real_type;
  if (c.precision != precision_name<T>())
    throw CheckpointError(path + ": checkpoint precision is " + c.precision + ", expected " + precision_name<T>());
  if (c.spec.mpnn_type != ModelT::conv_type::name)
    throw CheckpointError(path + ": checkpoint holds a " + c.spec.mpnn_type + " model, expected " +
                          ModelT::conv_type::name);
  typename ModelT::options_type options;
  try {
    options = options_from_json<typename ModelT::options_type>(c.options, "options");
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(path + ": malformed checkpoint header: " + e.what());
  }
  ModelT model(c.spec, options);
  if (c.params.size() != model.num_params())
    throw CheckpointError(path + ": checkpoint has " + std::to_string(c.params.size()) +
                          " parameters but its architecture needs " + std::to_string(model.num_params()));
  auto h = Kokkos::create_mirror_view(model.params());
  for (std::size_t i = 0; i < c.params.size(); ++i) h(i) = T(c.params[i]);
  Kokkos::deep_copy(model.params(), h);
  if (c.buffers.size() != model.num_buffers())
    throw CheckpointError(path + ": checkpoint has " + std::to_string(c.buffers.size()) +
                          " buffer values (BatchNorm running statistics) but its architecture needs " +
                          std::to_string(model.num_buffers()));
  model.set_buffers(c.buffers);
  return model;
}

/// The moments and step count of a checkpoint into optim (sizes checked by the caller).
template <class T, class Exec>
void load_optimizer_state(Optimizer<T, Exec>& optim, const CheckpointData& c) {
  auto hm = Kokkos::create_mirror_view(optim.m);
  auto hv = Kokkos::create_mirror_view(optim.v);
  for (std::size_t i = 0; i < c.opt_m.size(); ++i) {
    hm(i) = T(c.opt_m[i]);
    hv(i) = T(c.opt_v[i]);
  }
  Kokkos::deep_copy(optim.m, hm);
  Kokkos::deep_copy(optim.v, hv);
  optim.step_count = c.state.step;
}

struct TrainOptions {
  std::string output_dir = ".";
  bool resume = false;
  bool verbose = true;
  std::function<void(const std::string&)> log = [](const std::string& s) { std::fputs(s.c_str(), stdout); std::fflush(stdout); };
  /// The ranks of a data-parallel run (one rank when null). Rank 0 alone logs and writes checkpoints
  /// and metrics; every rank reads the checkpoint it resumes from.
  const Collective* collective = nullptr;
};

struct TrainResult {
  TrainState state;
  Metrics last_val;
  std::string latest_checkpoint, best_checkpoint;
};

namespace train_detail {
template <class O, class = void>
struct has_pna_deg : std::false_type {};
template <class O>
struct has_pna_deg<O, std::void_t<decltype(std::declval<O&>().pna_deg)>> : std::true_type {};
template <class O, class = void>
struct has_edge_length_scale : std::false_type {};
template <class O>
struct has_edge_length_scale<O, std::void_t<decltype(std::declval<O&>().edge_length_scale)>> : std::true_type {};

/// The statistics of the training set that options take from it (PNA's degree histogram, the edge-length
/// scale), over every rank's shards: histogram counts are summed (exact), the longest edge is the
/// largest of the ranks'.
template <class O>
void fill_options_from_shards(O& o, const Dataset& local, const Collective& coll) {
  if constexpr (has_pna_deg<O>::value) {
    if (o.pna_deg.empty()) {
      std::vector<double> h = degree_histogram(local);
      if (coll.size() > 1) {
        const std::vector<double> n = coll.gather({double(h.size())});
        std::size_t len = 0;
        for (double x : n) len = std::max(len, std::size_t(x));
        std::vector<long> c(len, 0);
        for (std::size_t d = 0; d < h.size(); ++d) c[d] = long(h[d]);
        coll.sum(c.data(), c.size());
        h.assign(c.begin(), c.end());
      }
      o.pna_deg = h;
    }
  }
  if constexpr (has_edge_length_scale<O>::value) {
    if (!o.edge_features.empty() && o.edge_length_scale == 0) {
      double mx = max_edge_length(local);
      if (coll.size() > 1)
        for (double x : coll.gather({mx})) mx = std::max(mx, x);
      o.edge_length_scale = mx;
    }
  }
}
}  // namespace train_detail

/// What one data-parallel step did: the loss of the global batch (its micro-batches' losses added in
/// shard order), its structures, and where this rank's time went (seconds; t_reduce is the time the
/// step waits for the sums over the ranks after its backward, the part not overlapped with it).
struct StepResult {
  double loss = 0;
  long graphs = 0;
  double t_data = 0, t_compute = 0, t_reduce = 0, t_update = 0;
};

/// One optimizer step of data-parallel training over V = ranks x A shards. This rank's A micro-batches
/// (structure indices into its dataset; an empty one contributes zeros) are built, the label counts
/// of the global batch summed over the ranks, every loss term normalised by them (LossSpec::global; a
/// single shard keeps the batch's own), the micro-batches' gradients summed in the order of SumTree
/// (within the rank over its A shards, then Collective::sum over the ranks), BatchNorm statistics of every micro-batch folded in
/// shard order, and the same optimizer step taken on every rank. Buffers live across steps.
template <class ModelT>
class DataParallelStep {
 public:
  using T = typename ModelT::real_type;
  using Exec = typename ModelT::exec_space;
  using M = typename ModelT::memory_space;

  DataParallelStep(const ModelT& model, const Collective& coll, int local_shards, int shards)
      : coll_(coll), A_(local_shards), V_(shards), nh_(model.spec().heads.size()),
        grad_("hydragnn::DataParallelStep::grad", model.num_params()), micro_(std::size_t(local_shards)),
        counts_(4 + nh_) {
    grad_slots_.push_back(grad_);
    for (int k = 1; k <= SumTree(A_).depth(); ++k)  // the partial sums of SumTree(A), depth() + 1 buffers
      grad_slots_.push_back(Vec<T, M>("hydragnn::DataParallelStep::grad_partial", model.num_params()));
    // the sum over the ranks: GPU gradients go to a GPU-aware MPI as they are (Collective::gpu_aware;
    // additions on an instance of their own, as they run during the backward), otherwise through a
    // host mirror (the same view where the gradient is in host memory)
    constexpr bool host_grad = Kokkos::SpaceAccessibility<Kokkos::HostSpace, M>::accessible;
    device_sum_ = !host_grad && coll_.size() > 1 && coll_.gpu_aware() &&
                  std::is_same<Exec, Kokkos::DefaultExecutionSpace>::value;
    // the blocks summed during the backward, and the rest (in order)
    stages_ = model.gradient_stages();
    std::vector<typename ModelT::Block> all;
    for (const auto& st : stages_) all.insert(all.end(), st.begin(), st.end());
    std::sort(all.begin(), all.end());
    std::size_t at = 0;
    for (const auto& r : all) {
      if (r.first > at) rest_.push_back({at, r.first});
      at = std::max(at, r.second);
    }
    if (at < model.num_params()) rest_.push_back({at, model.num_params()});
    if (device_sum_) {
      sum_scratch_ = Vec<T, M>("hydragnn::DataParallelStep::sum_scratch", model.num_params());
      comm_space_ = compat::independent_instance<Exec>();
    } else {
      grad_host_ = Kokkos::create_mirror_view(grad_);
    }
  }

  /// epoch: 1-based, for the message of a diverging loss.
  /// seed: the run's; with the optimizer's step count and the global shard it seeds each micro-batch's
  /// random masks (GAT's attention dropout): a step's masks do not depend on the rank count or a resume.
  StepResult step(const Exec& exec, ModelT& model, Optimizer<T, Exec>& optim, const Dataset& ds,
                  const std::vector<std::vector<std::size_t>>& idx, const LossSpec& w, double lr, int epoch,
                  std::uint64_t seed = 0) {
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
    StepResult res;
    const auto t0 = clock::now();
    // this rank's micro-batches and the label counts of the global batch
    std::fill(counts_.begin(), counts_.end(), 0L);
    for (int a = 0; a < A_; ++a) {
      if (idx[std::size_t(a)].empty()) continue;
      micro_[std::size_t(a)] =
          batch_of<M>(ds, idx[std::size_t(a)], model.spec().species, model.spec().heads, ModelT::traits::needs_triplets);
      const Batch<M>& b = micro_[std::size_t(a)];
      counts_[0] += b.num_graphs;
      counts_[1] += b.n_energy;
      counts_[2] += b.n_force;
      counts_[3] += b.n_stress;
      for (std::size_t k = 0; k < nh_; ++k) counts_[4 + k] += b.n_head[k];
    }
    if (V_ > 1) coll_.sum(counts_.data(), counts_.size());
    global_.energy = counts_[1];
    global_.force = counts_[2];
    global_.stress = counts_[3];
    global_.heads.assign(counts_.begin() + 4, counts_.end());
    LossSpec w_step = w;
    if (V_ > 1) w_step.global = &global_;
    const auto t1 = clock::now();
    // the micro-batches' gradients, summed in the order of SumTree(A) (as the ranks' sums are added).
    // With several ranks the sum over them overlaps the last micro-batch's backward: as each block of
    // its gradient becomes final (Model::gradient_stages: the heads, then the trunk's layers from the
    // last one; Model::backward calls stage_done), the tree's last additions are done on that block and
    // its sum over the ranks started (Collective::start_sum); what no stage holds (the embedding)
    // follows when the backward is done.
    const bool overlap = coll_.size() > 1;
    const std::size_t N = grad_.extent(0);
    std::vector<char> fired(stages_.size(), 0);
    bool any_fired = false;
    int last_slot = 0;
    auto range = [](const auto& v, std::size_t lo, std::size_t hi) { return Kokkos::subview(v, std::make_pair(lo, hi)); };
    auto add_range = [&](int s, int t, std::size_t lo, std::size_t hi) {
      if (lo < hi)
        kernels::accumulate_gradient<Exec, T>(exec, range(grad_slots_[std::size_t(s)], lo, hi),
                                              range(grad_slots_[std::size_t(t)], lo, hi));
    };
    auto start = [&](std::size_t lo, std::size_t hi) {  // start the sum of [lo, hi) of the step's gradient
      if (lo >= hi) return;
      if constexpr (std::is_same<Exec, Kokkos::DefaultExecutionSpace>::value) {
        if (device_sum_) {  // GPU memory handed to a GPU-aware MPI, added on the communication instance
          exec.fence();
          coll_.start_sum_device(comm_space_, grad_.data() + lo, hi - lo, sum_scratch_.data() + lo);
          return;
        }
      }
      if (grad_host_.data() != grad_.data()) Kokkos::deep_copy(exec, range(grad_host_, lo, hi), range(grad_, lo, hi));
      exec.fence();
      coll_.start_sum(grad_host_.data() + lo, hi - lo);
    };
    // stages 0 .. k are final in the last micro-batch's gradient: finish their tree (its right spine)
    // and start their sums, in stage order on every rank
    auto fire = [&](int k) {
      for (int j = 0; j <= k && j < int(stages_.size()); ++j) {
        if (fired[std::size_t(j)]) continue;
        fired[std::size_t(j)] = 1;
        any_fired = true;
        for (const auto& r : stages_[std::size_t(j)]) {
          for (int q = last_slot; q-- > 0;) add_range(q, q + 1, r.first, r.second);
          start(r.first, r.second);
        }
      }
    };
    const std::function<void(int)> stage_done = fire;
    std::vector<double> rec;  // per local shard: [loss, statistics size, statistics...]
    auto micro_batch = [&](int a, const Vec<T, M>& g) {
      if (idx[std::size_t(a)].empty()) {  // contributes zeros, as an idle rank does to the sum over ranks
        Kokkos::deep_copy(exec, g, T(0));
        rec.insert(rec.end(), {0.0, 0.0});
        return;
      }
      const std::uint64_t v = std::uint64_t(coll_.rank()) * std::uint64_t(A_) + std::uint64_t(a);  // global shard
      model.set_random_seed(mix64(mix64(seed, std::uint64_t(optim.step_count)), v));
      const bool last = overlap && a == A_ - 1;
      const auto r = loss_and_grad(exec, model, micro_[std::size_t(a)], w_step, g, &ws_, false, last ? &stage_done : nullptr);
      rec.push_back(r.loss);
      if (V_ > 1) {
        const std::vector<double> stats = model.take_batch_statistics();
        rec.push_back(double(stats.size()));
        rec.insert(rec.end(), stats.begin(), stats.end());
      } else {
        rec.push_back(0.0);
      }
    };
    auto leaf = [&](int a, int slot) {
      if (a == A_ - 1) last_slot = slot;  // the last leaf sits on the tree's right spine
      micro_batch(a, grad_slots_[std::size_t(slot)]);
      if (overlap && a == A_ - 1) fire(int(stages_.size()) - 1);  // stages the backward did not report (empty batch)
    };
    auto add = [&](int s, int t) {
      if (!any_fired) return add_range(s, t, 0, N);
      for (const auto& r : rest_) add_range(s, t, r.first, r.second);  // after the last micro-batch: the rest
    };
    SumTree(A_).evaluate(leaf, add);
    exec.fence();
    const auto t2 = clock::now();
    if (overlap) {
      for (const auto& r : rest_) start(r.first, r.second);
      coll_.wait_sums();
      if (!device_sum_ && grad_host_.data() != grad_.data()) Kokkos::deep_copy(exec, grad_, grad_host_);
    }
    const std::vector<double> all = coll_.size() > 1 ? coll_.gather(rec) : rec;
    const auto t3 = clock::now();
    for (std::size_t pos = 0, v = 0; pos < all.size(); ++v) {
      const double l = all[pos];
      const std::size_t ns = std::size_t(all[pos + 1]);
      if (!std::isfinite(l))
        throw std::runtime_error("training diverged: loss is " + std::to_string(l) + " at epoch " + std::to_string(epoch) +
                                 (V_ > 1 ? " (micro-batch of shard " + std::to_string(v) + ", rank " +
                                               std::to_string(v / std::size_t(A_)) + ")"
                                         : std::string()) +
                                 " (lower the learning rate)");
      res.loss += l;
      if (ns)
        model.fold_batch_statistics(exec, std::vector<double>(all.begin() + long(pos + 2), all.begin() + long(pos + 2 + ns)));
      pos += 2 + ns;
    }
    optim.lr = lr;
    optim.step(exec, model.params(), grad_);
    if (V_ == 1) model.update_running_statistics(exec);
    exec.fence();
    const auto t4 = clock::now();
    res.graphs = counts_[0];
    res.t_data = secs(t0, t1);
    res.t_compute = secs(t1, t2);
    res.t_reduce = secs(t2, t3);
    res.t_update = secs(t3, t4);
    return res;
  }

 private:
  const Collective& coll_;
  int A_, V_;
  std::size_t nh_;
  Vec<T, M> grad_;
  std::vector<Vec<T, M>> grad_slots_;  // grad_, then the partial sums of the micro-batches' tree
  typename Vec<T, M>::HostMirror grad_host_;  // staging of the sums over the ranks (host path)
  std::vector<std::vector<typename ModelT::Block>> stages_;  // Model::gradient_stages
  std::vector<typename ModelT::Block> rest_;                 // the blocks no stage holds
  bool device_sum_ = false;
  Vec<T, M> sum_scratch_;  // the partner's part in the device sums (GPU-aware MPI)
  Exec comm_space_;        // where the device sums' additions run
  Workspace<M> ws_;  // intermediates of every step: allocated while the batches grow, then reused
  std::vector<Batch<M>> micro_;
  std::vector<long> counts_;
  LossCounts global_;
};

/// Train a model of type ModelT (Model<T, Conv, Exec>) according to cfg on this rank's shards of a
/// data-parallel run (shard_datasets; one rank with one shard is plain training). Every step takes one
/// micro-batch of cfg's batch_size from each of the V shards (DataParallelStep).
template <class ModelT>
TrainResult train(const typename ModelT::exec_space& exec, const Config& cfg, const ShardedData& data,
                  const TrainOptions& opt) {
  using T = typename ModelT::real_type;
  using Exec = typename ModelT::exec_space;
  using M = typename ModelT::memory_space;
  const Collective& coll = opt.collective ? *opt.collective : single_rank();
  const bool root = coll.rank() == 0;
  const int A = data.local_shards(), V = data.num_shards;
  if (A < 1 || V != coll.size() * A || data.first_shard != coll.rank() * A || int(data.val_shards.size()) != A)
    throw std::invalid_argument("hydragnn::train: the data are cut into " + std::to_string(V) + " shards with " +
                                std::to_string(A) + " on each rank (first " + std::to_string(data.first_shard) +
                                "), the run has " + std::to_string(coll.size()) + " ranks and this is rank " +
                                std::to_string(coll.rank()));
  const auto log = [&](const std::string& s) {
    if (root) opt.log(s);
  };
  const TrainingConfig& tc = cfg.training;
  const std::string latest = opt.output_dir + "/checkpoint.hgnn";
  const std::string best = opt.output_dir + "/checkpoint_best.hgnn";
  const std::string cfg_json = to_json(cfg);
  const Dataset& train_ds = data.train;

  ModelSpec spec = spec_from_config(cfg);
  spec.species = data.summary.species;
  if (data.summary.ref_energy.size() > spec.species.size() * std::size_t(spec.num_branches()))
    throw std::invalid_argument("hydragnn::train: the training set holds structures of head branch " +
                                std::to_string(data.summary.ref_energy.size() / std::max<std::size_t>(1, spec.species.size()) - 1) +
                                "; NeuralNetwork.Architecture.output_heads has " + std::to_string(spec.num_branches()) +
                                " branch(es)");
  spec.ref_energy = data.summary.ref_energy;
  spec.energy_scale = data.summary.energy_scale;
  if (spec.num_nodes < 0) {  // mlp_per_node: HydraGNN's num_nodes, the atoms of every structure
    if (data.summary.uniform_atoms == 0)
      throw std::invalid_argument("NeuralNetwork.Architecture.output_heads.node.type: mlp_per_node needs every training "
                                  "structure to have the same number of atoms (HydraGNN's num_nodes); use \"mlp\"");
    spec.num_nodes = int(data.summary.uniform_atoms);
  }
  auto conv_options = cfg.arch.template conv_options<typename ModelT::conv_type>();
  // PNA family: pna_deg from the training set; edge_features ["length"]: its normalisation
  train_detail::fill_options_from_shards(conv_options, train_ds, coll);
  ModelT model(spec, conv_options);
  model.initialize(tc.seed);
  Optimizer<T, Exec> optim(parse_optimizer(tc.optimizer.type), model.num_params(), tc.optimizer.learning_rate,
                           tc.optimizer.weight_decay, tc.optimizer.momentum);
  TrainState st;
  st.lr = tc.optimizer.learning_rate;
  if (opt.resume) {
    const CheckpointData c = read_checkpoint(latest);
    model = model_from_checkpoint<ModelT>(c, latest);
    const ModelSpec& cs = c.spec;
    if (cs.hidden_dim != spec.hidden_dim || cs.num_conv_layers != spec.num_conv_layers || cs.cutoff != spec.cutoff ||
        cs.species.numbers != spec.species.numbers || cs.heads.size() != spec.heads.size() ||
        cs.num_branches() != spec.num_branches() || cs.num_nodes != spec.num_nodes ||
        c.options != options_to_json(conv_options))
      throw CheckpointError(latest + ": checkpoint architecture or species do not match the config");
    if (c.opt_m.size() != model.num_params() || c.opt_v.size() != model.num_params())
      throw CheckpointError(latest + ": checkpoint has no optimizer state to resume from");
    load_optimizer_state(optim, c);
    st = c.state;
  }
  if (tc.continue_run && !opt.resume) {
    // fine-tuning (HydraGNN's continue / startfrom): the blocks the checkpoint has, by name
    std::string path = cfg.dataset.resolve(tc.startfrom);
    if (std::filesystem::is_directory(path)) path += "/checkpoint.hgnn";
    CheckpointData c;
    try {
      c = read_checkpoint(path);
    } catch (const CheckpointError& e) {
      throw CheckpointError(std::string("NeuralNetwork.Training.startfrom: ") + e.what());
    }
    if (c.spec.mpnn_type != ModelT::conv_type::name)
      throw CheckpointError("NeuralNetwork.Training.startfrom: " + path + " holds a " + c.spec.mpnn_type +
                            " model, the config trains " + ModelT::conv_type::name);
    const ModelT from = model_from_checkpoint<ModelT>(c, path);
    const StartReport rep = load_matching(model, from);
    std::string fresh;
    for (const auto& n : rep.fresh) fresh += (fresh.empty() ? "" : ", ") + n;
    log("startfrom " + path + ": " + std::to_string(rep.loaded) + " of " + std::to_string(rep.blocks) +
        " parameter blocks loaded" + (fresh.empty() ? "" : "; new: " + fresh) + "\n");
    if (rep.same_architecture && c.opt_m.size() == model.num_params() && c.opt_v.size() == model.num_params()) {
      load_optimizer_state(optim, c);  // the same model: its optimizer state too, as HydraGNN's load_existing_model
    }
  }
  if (cfg.arch.freeze_conv_layers) optim.frozen = model.num_trunk_params();
  const LossSpec w = loss_from_config(cfg, model.spec());
  if (!model.uses_positions() && (w.force > 0 || w.stress > 0))
    throw std::invalid_argument(std::string("NeuralNetwork.Architecture: ") + spec.mpnn_type +
                                  "'s energy does not depend on the atom positions (it takes no edge features, as "
                                  "HydraGNN's), so its forces and stress are zero: set force_weight and stress_weight "
                                  "to 0 or choose a model with edge geometry");
  if (V > 1 && w.kind == LossKind::RMSE)
    throw std::invalid_argument("NeuralNetwork.Training.loss_function_type: rmse cannot be split over " +
                                std::to_string(V) + " micro-batches (ranks x accumulate): its scale needs the sums "
                                "of the whole batch before the backward; use mse, mae or smooth_l1");
  PlateauScheduler sched;
  sched.enabled = tc.scheduler;
  sched.factor = tc.scheduler_factor;
  sched.patience = tc.scheduler_patience;
  sched.min_lr = tc.min_lr;
  sched.best = st.sched_best;
  sched.bad = st.sched_bad;

  std::ofstream mlog;
  if (root) mlog.open(opt.output_dir + "/metrics.jsonl", opt.resume ? std::ios::app : std::ios::trunc);
  auto save = [&](const std::string& path) {
    if (root) write_checkpoint(path, make_checkpoint(model, &optim, st, cfg_json));
  };
  TrainResult res;
  if (!opt.resume) {
    save(latest);
    save(best);
  }
  DataParallelStep<ModelT> stepper(model, coll, A, V);
  Workspace<M> eval_ws;
  const auto t_start = std::chrono::steady_clock::now();
  const int first_epoch = st.epoch;
  const std::size_t bs = std::size_t(tc.batch_size);
  const std::size_t largest = data.largest_shard();
  // oversampling: every shard draws `draws` structures per epoch (default: the largest shard's size)
  const std::size_t draws = tc.oversampling_num_samples > 0 ? std::size_t(tc.oversampling_num_samples) : largest;
  const std::size_t steps = tc.oversampling ? (draws + bs - 1) / bs : data.steps_per_epoch(bs);
  char buf[512];
  std::snprintf(buf, sizeof buf, "training %s: %zu parameters, %zu train / %zu validation structures, batch %d, %d epochs\n",
                spec.mpnn_type.c_str(), model.num_params(), data.summary.train_size, data.summary.val_size,
                tc.batch_size, tc.num_epoch);
  log(buf);
  if (V > 1) {
    const auto [amin, amax] = std::minmax_element(data.train_shard_atoms.begin(), data.train_shard_atoms.end());
    std::snprintf(buf, sizeof buf,
                  "data parallel: %d ranks x %d micro-batches = global batch of up to %zu structures, %zu steps per "
                  "epoch; %zu to %zu atoms per shard\n",
                  coll.size(), A, bs * std::size_t(V), steps, *amin, *amax);
    log(buf);
    if (!data.shards_per_branch.empty()) {
      std::string split;
      for (std::size_t k = 0; k < data.shards_per_branch.size(); ++k)
        split += (split.empty() ? "" : ", ") + std::to_string(data.shards_per_branch[k]) + " for " +
                 (k < spec.branches.size() ? spec.branches[k].name : "branch " + std::to_string(k));
      log("shards per head branch (in proportion to the datasets' sizes): " + split + "\n");
    }
  }
  if (tc.oversampling) {
    std::snprintf(buf, sizeof buf, "oversampling: every shard draws %zu structures per epoch (%zu steps)\n", draws, steps);
    log(buf);
  }
  std::vector<std::vector<std::size_t>> order(static_cast<std::size_t>(A));
  std::vector<std::vector<std::size_t>> idx(static_cast<std::size_t>(A));
  while (st.epoch < tc.num_epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int a = 0; a < A; ++a)
      order[std::size_t(a)] =
          tc.oversampling
              ? oversampled_order(data.train_shards[std::size_t(a)], tc.seed, st.epoch, data.first_shard + a, draws)
              : epoch_order(data.train_shards[std::size_t(a)], train_ds, tc.seed, st.epoch, V, largest);
    double train_loss = 0;
    long train_graphs = 0;
    model.set_training(true);  // feature layers: batch statistics
    for (std::size_t s = 0; s < steps; ++s) {
      for (int a = 0; a < A; ++a) {
        const auto& o = order[std::size_t(a)];
        const std::size_t lo = std::min(o.size(), s * bs), hi = std::min(o.size(), lo + bs);
        idx[std::size_t(a)].clear();
        for (std::size_t k = lo; k < hi; ++k)
          if (o[k] != no_structure) idx[std::size_t(a)].push_back(o[k]);
      }
      const StepResult r = stepper.step(exec, model, optim, train_ds, idx, w, st.lr, st.epoch + 1, tc.seed);
      ++st.step;
      train_loss += r.loss * double(r.graphs);
      train_graphs += r.graphs;
    }
    train_loss /= double(train_graphs);  // every training structure once, or as often as oversampling drew it
    model.set_training(false);  // validation and checkpoints: running statistics
    const Metrics vm = data.summary.val_size
                           ? evaluate_shards(exec, model, data.val, data.val_shards, w, tc.batch_size, eval_ws, coll)
                           : metrics_from({}, train_loss);
    const double val_loss = data.summary.val_size ? vm.loss : train_loss;
    ++st.epoch;
    st.lr = sched.update(val_loss, st.lr);
    st.sched_best = sched.best;
    st.sched_bad = sched.bad;
    const bool improved = val_loss < st.best_val;
    if (improved) {
      st.best_val = val_loss;
      st.best_epoch = st.epoch;
      st.stop_bad = 0;
    } else {
      ++st.stop_bad;
    }
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const double eta = total / (st.epoch - first_epoch) * (tc.num_epoch - st.epoch);
    std::snprintf(buf, sizeof buf,
                  "epoch %4d/%d  train %.4e  val %.4e  E %.2f meV/atom  F %.1f meV/A  lr %.1e  %.1fs  ETA %.0fs%s\n",
                  st.epoch, tc.num_epoch, train_loss, val_loss, vm.epa_mae * 1e3, vm.f_mae * 1e3, optim.lr, dt, eta,
                  improved ? "  *" : "");
    if (opt.verbose) log(buf);
    EpochRecord rec{st.epoch, train_loss, val_loss, vm.epa_mae, vm.f_mae, optim.lr, dt, {}};
    if (data.summary.val_size && spec.num_branches() > 1)
      for (int k = 0; k < spec.num_branches(); ++k) {  // validation metrics of each head branch (every rank takes part)
        std::vector<std::vector<std::size_t>> mine(data.val_shards.size());
        for (std::size_t a = 0; a < mine.size(); ++a)
          for (std::size_t i : data.val_shards[a])
            if (data.val.frames[i].branch == k) mine[a].push_back(i);
        const Metrics bm = evaluate_shards(exec, model, data.val, mine, w, tc.batch_size, eval_ws, coll);
        rec.branches.push_back({spec.branches[std::size_t(k)].name, bm.epa_mae, bm.f_mae});
      }
    if (root) {
      mlog << epoch_record_json(rec) << "\n";
      mlog.flush();
    }
    if (improved) save(best);
    if (tc.checkpoint_every > 0 && (st.epoch % tc.checkpoint_every == 0 || st.epoch == tc.num_epoch)) save(latest);
    res.last_val = vm;
    if (tc.early_stopping && st.stop_bad >= tc.patience) {
      std::snprintf(buf, sizeof buf, "early stopping: no improvement for %d epochs (best epoch %d)\n", st.stop_bad,
                    st.best_epoch);
      log(buf);
      save(latest);
      break;
    }
  }
  res.state = st;
  res.latest_checkpoint = latest;
  res.best_checkpoint = best;
  return res;
}

/// Train on one process: the datasets whole (one shard).
template <class ModelT>
TrainResult train(const typename ModelT::exec_space& exec, const Config& cfg, const Dataset& train_ds,
                  const Dataset& val_ds, const TrainOptions& opt) {
  return train<ModelT>(exec, cfg, shard_datasets(train_ds, val_ds, 0, 1, 1), opt);
}

}  // namespace hydragnn
