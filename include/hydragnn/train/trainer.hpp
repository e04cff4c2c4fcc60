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
#include <hydragnn/train/finetune.hpp>
#include <hydragnn/train/optimizer.hpp>

#include <chrono>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
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

/// Loss and errors of a model over a whole dataset (no gradients), in batches of batch_size.
template <class ModelT>
Metrics evaluate(const typename ModelT::exec_space& exec, const ModelT& model, const Dataset& ds, const LossSpec& w,
                 int batch_size) {
  using M = typename ModelT::memory_space;
  ErrorSums sums;
  double loss = 0;
  std::size_t graphs = 0;
  Workspace<M> ws;
  for (std::size_t s = 0; s < ds.size(); s += batch_size) {
    std::vector<std::size_t> idx;
    for (std::size_t i = s; i < std::min(ds.size(), s + batch_size); ++i) idx.push_back(i);
    auto b = batch_of<M>(ds, idx, model.spec().species, model.spec().heads, ModelT::traits::needs_triplets);
    auto r = loss_and_grad(exec, model, b, w, Vec<typename ModelT::real_type, M>(), &ws);
    sums.add(r.errors);
    loss += r.loss * idx.size();
    graphs += idx.size();
  }
  return metrics_from(sums, graphs ? loss / graphs : 0.0);
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
};

struct TrainResult {
  TrainState state;
  Metrics last_val;
  std::string latest_checkpoint, best_checkpoint;
};

/// Train a model of type ModelT (Model<T, Conv, Exec>) according to cfg.
template <class ModelT>
TrainResult train(const typename ModelT::exec_space& exec, const Config& cfg, const Dataset& train_ds,
                  const Dataset& val_ds, const TrainOptions& opt) {
  using T = typename ModelT::real_type;
  using Exec = typename ModelT::exec_space;
  using M = typename ModelT::memory_space;
  const TrainingConfig& tc = cfg.training;
  const std::string latest = opt.output_dir + "/checkpoint.hgnn";
  const std::string best = opt.output_dir + "/checkpoint_best.hgnn";
  const std::string cfg_json = to_json(cfg);

  ModelSpec spec = spec_from_config(cfg);
  spec.species = species_of(train_ds);
  spec.ref_energy = fit_reference_energies(train_ds, spec.species);
  spec.energy_scale = energy_scale_of(train_ds, spec.species, spec.ref_energy);
  auto conv_options = cfg.arch.template conv_options<typename ModelT::conv_type>();
  fill_degree_histogram(conv_options, train_ds);   // PNA family: pna_deg from the training set
  fill_edge_length_scale(conv_options, train_ds);  // edge_features ["length"]: its normalisation
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
    opt.log("startfrom " + path + ": " + std::to_string(rep.loaded) + " of " + std::to_string(rep.blocks) +
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
  PlateauScheduler sched;
  sched.enabled = tc.scheduler;
  sched.factor = tc.scheduler_factor;
  sched.patience = tc.scheduler_patience;
  sched.min_lr = tc.min_lr;
  sched.best = st.sched_best;
  sched.bad = st.sched_bad;

  std::ofstream mlog(opt.output_dir + "/metrics.jsonl", opt.resume ? std::ios::app : std::ios::trunc);
  TrainResult res;
  if (!opt.resume) {
    write_checkpoint(latest, make_checkpoint(model, &optim, st, cfg_json));
    write_checkpoint(best, make_checkpoint(model, &optim, st, cfg_json));
  }
  Vec<T, M> grad("hydragnn::train::grad", model.num_params());
  Workspace<M> ws;  // intermediates of every step: allocated while the batches grow, then reused
  const auto t_start = std::chrono::steady_clock::now();
  const int first_epoch = st.epoch;
  char buf[512];
  std::snprintf(buf, sizeof buf, "training %s: %zu parameters, %zu train / %zu validation structures, batch %d, %d epochs\n",
                spec.mpnn_type.c_str(), model.num_params(), train_ds.size(), val_ds.size(), tc.batch_size, tc.num_epoch);
  opt.log(buf);
  while (st.epoch < tc.num_epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    // shuffle: a pure function of (seed, epoch), so a resumed run sees the same order
    std::vector<std::size_t> order(train_ds.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(tc.seed * 1000003ull + std::uint64_t(st.epoch));
    std::shuffle(order.begin(), order.end(), rng);
    double train_loss = 0;
    model.set_training(true);  // feature layers: batch statistics
    for (std::size_t s = 0; s < order.size(); s += tc.batch_size) {
      std::vector<std::size_t> idx(order.begin() + s, order.begin() + std::min(order.size(), s + tc.batch_size));
      auto b = batch_of<M>(train_ds, idx, model.spec().species, model.spec().heads, ModelT::traits::needs_triplets);
      auto r = loss_and_grad(exec, model, b, w, grad, &ws);
      if (!std::isfinite(r.loss))
        throw std::runtime_error("training diverged: loss is " + std::to_string(r.loss) + " at epoch " +
                                 std::to_string(st.epoch + 1) + " (lower the learning rate)");
      optim.lr = st.lr;
      optim.step(exec, model.params(), grad);
      model.update_running_statistics(exec);
      ++st.step;
      train_loss += r.loss * idx.size();
    }
    train_loss /= double(order.size());
    model.set_training(false);  // validation and checkpoints: running statistics
    const Metrics vm = val_ds.size() ? evaluate(exec, model, val_ds, w, tc.batch_size) : metrics_from({}, train_loss);
    const double val_loss = val_ds.size() ? vm.loss : train_loss;
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
    if (opt.verbose) opt.log(buf);
    mlog << epoch_record_json(EpochRecord{st.epoch, train_loss, val_loss, vm.epa_mae, vm.f_mae, optim.lr, dt}) << "\n";
    mlog.flush();
    if (improved) write_checkpoint(best, make_checkpoint(model, &optim, st, cfg_json));
    if (tc.checkpoint_every > 0 && (st.epoch % tc.checkpoint_every == 0 || st.epoch == tc.num_epoch))
      write_checkpoint(latest, make_checkpoint(model, &optim, st, cfg_json));
    res.last_val = vm;
    if (tc.early_stopping && st.stop_bad >= tc.patience) {
      std::snprintf(buf, sizeof buf, "early stopping: no improvement for %d epochs (best epoch %d)\n", st.stop_bad,
                    st.best_epoch);
      opt.log(buf);
      write_checkpoint(latest, make_checkpoint(model, &optim, st, cfg_json));
      break;
    }
  }
  res.state = st;
  res.latest_checkpoint = latest;
  res.best_checkpoint = best;
  return res;
}

}  // namespace hydragnn
