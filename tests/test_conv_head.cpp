// SPDX-License-Identifier: BSD-3-Clause
// Node heads of type conv (heads/conv_head.hpp): golden tests against HydraGNN itself for every
// mpnn_type whose conv head HydraGNN's CI trains (tests/golden/conv_heads.json, written by
// tools/golden/make_golden_conv_head.py: energies, forces, per-atom outputs in evaluation mode, and one
// training-mode forward with the running statistics after it), force-training gradients against
// finite differences (vector, equivariant and multi-head convolutions, evaluation and training mode),
// configuration errors, and training from a config with a checkpoint round trip.
#include <catch2/catch.hpp>

#include <hydragnn/autodiff/potential.hpp>
#include <hydragnn/conv/dimenet.hpp>
#include <hydragnn/conv/egnn.hpp>
#include <hydragnn/conv/gat.hpp>
#include <hydragnn/conv/gin.hpp>
#include <hydragnn/conv/mfc.hpp>
#include <hydragnn/conv/painn.hpp>
#include <hydragnn/conv/pna.hpp>
#include <hydragnn/conv/pnaeq.hpp>
#include <hydragnn/conv/pnaplus.hpp>
#include <hydragnn/conv/sage.hpp>
#include <hydragnn/conv/schnet.hpp>
#include <hydragnn/graph/batch_builder.hpp>
#include <hydragnn/io/checkpoint_json.hpp>
#include <hydragnn/io/config_to_spec.hpp>
#include <hydragnn/io/named_params.hpp>
#include <hydragnn/train/trainer.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>

#include "baseline.hpp"
#include "fd_loss.hpp"
#include "golden_io.hpp"
#include "test_helpers.hpp"

using namespace hydragnn;
using Exec = Kokkos::DefaultHostExecutionSpace;
using M = Exec::memory_space;
using json = nlohmann::json;

namespace {

const json& golden() {
  static const json g = hydragnn_test::load_golden("conv_heads.json");
  return g;
}

Structure structure_of(const json& js) { return hydragnn_test::golden_structure(js); }

ModelSpec conv_head_spec(const json& a) {
  ModelSpec s;
  s.hidden_dim = a.at("hidden_dim").get<int>();
  s.input_dim = a.at("input_dim").get<int>();
  s.num_conv_layers = a.at("num_conv_layers").get<int>();
  s.cutoff = a.at("radius").get<double>();
  REQUIRE(a.at("activation_function").get<std::string>() == "silu");
  s.act = Activation::SiLU;
  s.energy = true;
  s.node_conv = true;
  REQUIRE(a.at("node_head").at("type").get<std::string>() == "conv");
  s.branches[0].node_head_dims = a.at("node_head").at("dim_headlayers").get<std::vector<int>>();
  s.branches[0].energy_head_dims = s.branches[0].node_head_dims;
  s.species.numbers = golden().at("species").get<std::vector<int>>();
  s.ref_energy.assign(s.species.size(), 0.0);
  if (!a.at("max_neighbours").is_null()) s.max_neighbours = a.at("max_neighbours").get<int>();  // MFC's max_degree
  return s;
}

template <class Conv>
void run_conv_head_golden() {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  const std::string type = Conv::name;
  const json& g = golden().at("models").at(type);
  const json& a = g.at("architecture");
  const ModelSpec spec = conv_head_spec(a);
  using ModelT = Model<double, Conv, Exec>;
  ModelT model(spec, hydragnn_test::golden_options<Conv>(a));
  json p = g.at("parameters");
  for (auto it = g.at("buffers").begin(); it != g.at("buffers").end(); ++it) p[it.key()] = *it;
  load_named_parameters(model, p, "conv_heads.json:" + type);  // every block, every entry
  const json& structures = golden().at("structures");
  SECTION("evaluation mode: energies, forces and per-atom outputs of each structure") {
    for (std::size_t k = 0; k < structures.size(); ++k) {
      const Structure s = structure_of(structures[k]);
      auto batch = make_batch<M>(std::vector<Structure>{s}, spec.cutoff, -1, spec.species, {},
                                 conv_traits<Conv>::needs_triplets);
      Workspace<M> ws;
      const auto w = model.weights(exec);
      typename ModelT::template Forward<double> f;
      auto ef = energy_forces(exec, model, w, batch, f, ws, true);
      Kokkos::fence();
      const double E = ef.energy(0), E_ref = g.at("energies")[k].get<double>();
      INFO(type << " " << s.source << ": E " << E << " vs HydraGNN " << E_ref);
      CHECK(std::fabs(E - E_ref) <= 1e-10 * std::fabs(E_ref));
      double ferr = 0, fmax = 0, eerr = 0;
      for (std::size_t i = 0; i < s.size(); ++i) {
        eerr = std::max(eerr, std::fabs(f.heads.e_atom(i, 0) - g.at("node_energies")[k][i].get<double>()));
        for (int c = 0; c < 3; ++c) {
          const double ref = g.at("forces")[k][i][c].get<double>();
          fmax = std::max(fmax, std::fabs(ref));
          ferr = std::max(ferr, std::fabs(ef.forces(i, c) - ref));
        }
      }
      INFO("max |F| " << fmax << ", max force error " << ferr << ", max per-atom output error " << eerr);
      CHECK(ferr <= 1e-9);
      CHECK(eerr <= 1e-10 * std::max(1.0, std::fabs(E_ref)));
      if (model.uses_positions())
        CHECK(fmax > 1e-4);
      else
        CHECK(fmax == 0.0);
    }
  }
  SECTION("training mode: BatchNorm with the batch's statistics, running statistics after the step") {
    const auto names = hydragnn_test::check_golden_train_mode(exec, model, structures, g.at("train_mode"));
    int head_blocks = 0;
    for (const auto& n : names) head_blocks += n.find("_node_") != std::string::npos;
    CHECK(head_blocks == 3 * 3);  // two hidden BatchNorms and the output's: mean, var, count each
  }
}

/// Labelled random frames (energy, forces) for gradient and training tests.
std::vector<Structure> frames(int n, std::uint64_t seed) {
  std::vector<Structure> out;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 0.5);
  for (int f = 0; f < n; ++f) {
    Structure st = hydragnn_test::random_structure(seed + std::uint64_t(f), 4 + f % 3, {1, 8}, f % 2 == 1, 4.0, 1.0);
    st.energy = -3.0 + nd(rng);
    for (std::size_t i = 0; i < st.size(); ++i) st.forces.push_back(Vec3{nd(rng), nd(rng), nd(rng)});
    st.arrays["q"].clear();
    for (std::size_t i = 0; i < 2 * st.size(); ++i) st.arrays["q"].push_back(nd(rng));
    st.array_cols["q"] = 2;
    out.push_back(st);
  }
  return out;
}

ModelSpec small_conv_head_spec(bool node_head) {
  ModelSpec s;
  s.hidden_dim = 5;
  s.num_conv_layers = 2;
  s.cutoff = 3.0;
  s.node_conv = true;
  s.branches[0].node_head_dims = {4, 3};
  s.branches[0].energy_head_dims = {4, 3};
  if (node_head) s.heads = {HeadDef{"q", true, 2, 1.0}};
  s.species.numbers = {1, 8};
  s.ref_energy = {-0.3, -2.0};
  s.energy_scale = 0.8;
  s.energy_shift = 0.05;
  return s;
}

/// Force training (energy, forces and a direct node head through the dual pass) against finite
/// differences of the loss, in evaluation and in training mode (batch statistics).
template <class Conv>
void check_conv_head_gradient(const typename Conv::options_type& o, bool node_head) {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  Model<double, Conv, Exec> model(small_conv_head_spec(node_head), o);
  model.initialize(17);
  const auto fr = frames(3, 40);
  const auto batch = make_batch<M>(fr, model.spec().cutoff, -1, model.spec().species, model.spec().heads,
                                   conv_traits<Conv>::needs_triplets);
  LossSpec w;
  w.energy = 1.0;
  w.force = model.uses_positions() ? 2.0 : 0.0;
  if (node_head) w.heads = {0.7};
  // the conv head's parameters follow the trunk's; check every block of both
  std::size_t head_first = model.num_params();
  for (const auto& np : model.named_parameters())
    if (np.name.rfind("convs_node_", 0) == 0 || np.name.rfind("batch_norms_node_", 0) == 0)
      head_first = std::min(head_first, np.offset);
  REQUIRE(head_first >= model.num_trunk_params());
  REQUIRE(head_first < model.num_params());
  for (bool training : {false, true}) {
    INFO(Conv::name << (training ? " training mode" : " evaluation mode"));
    model.set_training(training);
    Vec<double, M> grad("grad", model.num_params());
    loss_and_grad(exec, model, batch, w, grad);
    int nonzero = 0;
    for (std::size_t k = 0; k < model.num_params(); k += (k >= head_first ? 3 : 9)) {
      // batch statistics over a few atoms make the loss sharply curved (the BatchNorm of a one-channel
      // output divides by the spread of a few values): a smaller step there, and its round-off margin
      const double fd = hydragnn_test::fd_loss_gradient(exec, model, batch, w, k, training ? 3e-6 : 1e-5);
      INFO("parameter " << k << (k >= head_first ? " (conv head)" : " (trunk)"));
      CHECK(grad(k) == Approx(fd).epsilon(training ? 1e-5 : 1e-6).margin(training ? 1e-8 : 1e-9));
      nonzero += std::fabs(fd) > 1e-6;
    }
    CHECK(nonzero > 10);
  }
  model.set_training(false);
}

}  // namespace

TEST_CASE("golden conv head: SchNet", "[golden][conv_head]") { run_conv_head_golden<SchNetConv>(); }
TEST_CASE("golden conv head: EGNN (equivariant: the hidden head convolutions update coordinates)", "[golden][conv_head]") {
  run_conv_head_golden<EGNNConv>();
}
TEST_CASE("golden conv head: PaiNN (vectors through the head)", "[golden][conv_head]") { run_conv_head_golden<PaiNNConv>(); }
TEST_CASE("golden conv head: PNAEq (vectors through the head)", "[golden][conv_head]") { run_conv_head_golden<PNAEqConv>(); }
TEST_CASE("golden conv head: GIN", "[golden][conv_head]") { run_conv_head_golden<GINConv>(); }
TEST_CASE("golden conv head: SAGE", "[golden][conv_head]") { run_conv_head_golden<SAGEConv>(); }
TEST_CASE("golden conv head: PNA", "[golden][conv_head]") { run_conv_head_golden<PNAConv>(); }
TEST_CASE("golden conv head: PNAPlus", "[golden][conv_head]") { run_conv_head_golden<PNAPlusConv>(); }
TEST_CASE("golden conv head: MFC", "[golden][conv_head]") { run_conv_head_golden<MFCConv>(); }
TEST_CASE("golden conv head: GAT (concatenating hidden convolutions, averaging output)", "[golden][conv_head]") {
  run_conv_head_golden<GATConv>();
}
TEST_CASE("golden conv head: DimeNet (triplets)", "[golden][conv_head]") { run_conv_head_golden<DimeNetConv>(); }

TEST_CASE("conv head: force-training gradient against finite differences (SchNet, with a direct node head)",
          "[conv_head][gradient]") {
  SchNetOptions o;
  o.num_gaussians = 6;
  o.num_filters = 4;
  check_conv_head_gradient<SchNetConv>(o, true);
}
TEST_CASE("conv head: force-training gradient against finite differences (equivariant EGNN)", "[conv_head][gradient]") {
  EGNNOptions o;
  o.equivariance = true;
  check_conv_head_gradient<EGNNConv>(o, false);
}
TEST_CASE("conv head: force-training gradient against finite differences (PaiNN, with a direct node head)",
          "[conv_head][gradient]") {
  PaiNNOptions o;
  o.num_radial = 4;
  check_conv_head_gradient<PaiNNConv>(o, true);
}
TEST_CASE("conv head: force-training gradient against finite differences (GAT, two attention heads)",
          "[conv_head][gradient]") {
  GATOptions o;
  o.gat_heads = 2;
  o.edge_features = {"length"};
  o.edge_length_scale = 3.0;  // the trunk's length feature; the head has none (as HydraGNN)
  check_conv_head_gradient<GATConv>(o, true);
}

TEST_CASE("conv head: config keys, errors naming the key, checkpoint spec round trip", "[conv_head][config][badinput]") {
  auto cfg_text = [](const std::string& mpnn, const std::string& node_heads) {
    return std::string(R"({"NeuralNetwork": {"Architecture": {"mpnn_type": ")") + mpnn +
           R"(", "radius": 3.0, "hidden_dim": 6, "num_conv_layers": 2, "output_heads": {"node": )" + node_heads +
           R"(}, "enable_interatomic_potential": true},
           "Variables_of_interest": {"output_names": ["energy"], "type": ["node"], "output_dim": [1]},
           "Training": {"num_epoch": 1, "batch_size": 2}}})";
  };
  const Config ok = parse_config(cfg_text("SchNet", R"({"num_headlayers": 2, "dim_headlayers": [5, 4], "type": "conv"})"), "t");
  const ModelSpec s = spec_from_config(ok);
  CHECK(s.node_conv);
  CHECK(s.branches[0].node_head_dims == std::vector<int>{5, 4});
  CHECK(detail::spec_from_json(detail::spec_to_json(s)).node_conv);  // checkpoints keep the head type
  CHECK_THROWS_WITH(parse_config(cfg_text("CGCNN", R"({"num_headlayers": 1, "dim_headlayers": [4], "type": "conv"})"), "t"),
                    Catch::Matchers::Contains("output_heads.node") && Catch::Matchers::Contains("CGCNN"));
  CHECK_THROWS_WITH(
      parse_config(cfg_text("SchNet", R"([{"type": "branch-0", "architecture": {"num_headlayers": 1, "dim_headlayers": [4], "type": "conv"}},
                                          {"type": "branch-1", "architecture": {"num_headlayers": 1, "dim_headlayers": [4], "type": "conv"}}])"),
                   "t"),
      Catch::Matchers::Contains("output_heads.node") && Catch::Matchers::Contains("one head branch"));
  CHECK_THROWS_WITH(parse_config(cfg_text("SchNet", R"({"num_headlayers": 1, "dim_headlayers": [4], "type": "convolution"})"), "t"),
                    Catch::Matchers::Contains("output_heads.node.type") && Catch::Matchers::Contains("conv"));
}

TEST_CASE("conv head: SchNet with a conv energy head trained on rMD17 uracil: forces beat the zero-force baseline, "
          "its checkpoint predicts bit for bit",
          "[conv_head][training][rmd17]") {
  hydragnn_test::ensure_kokkos();
  const std::string dir = std::string(HYDRAGNN_SHARED_DATA_DIR) + "/real/rmd17/";
  REQUIRE(std::filesystem::exists(dir + "uracil_train_01.extxyz"));
  Config cfg = parse_config(R"({
    "NeuralNetwork": {
      "Architecture": {"mpnn_type": "SchNet", "radius": 5.0, "hidden_dim": 24, "num_conv_layers": 2,
        "num_gaussians": 16, "num_filters": 24,
        "output_heads": {"node": {"num_headlayers": 2, "dim_headlayers": [24, 16], "type": "conv"}},
        "enable_interatomic_potential": true, "energy_weight": 1.0, "force_weight": 1.0},
      "Variables_of_interest": {"output_names": ["energy"], "type": ["node"], "output_dim": [1]},
      "Training": {"num_epoch": 20, "batch_size": 5, "Optimizer": {"type": "AdamW", "learning_rate": 0.005},
                   "seed": 1}
    }
  })", "uracil-conv-head");
  Dataset all = load_dataset(dir + "uracil_train_01.extxyz", cfg.arch.radius, -1, DatasetRequirements{true, true, false});
  Dataset train_ds, val_ds;
  for (std::size_t i = 0; i < 1000; ++i) {
    Dataset& d = i < 950 ? train_ds : val_ds;
    d.frames.push_back(all.frames[i]);
    d.graphs.push_back(all.graphs[i]);
  }
  const SpeciesMap sp = species_of(train_ds);
  const auto [base_e, base_f] = hydragnn_test::baseline_errors(val_ds, sp, fit_reference_energies(train_ds, sp));

  using ModelT = Model<double, SchNetConv, Exec>;
  TrainOptions opt;
  opt.output_dir = (std::filesystem::temp_directory_path() / ("hydragnn_conv_head_" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(opt.output_dir);
  const TrainResult r = train<ModelT>(Exec(), cfg, train_ds, val_ds, opt);
  const ModelT best = model_from_checkpoint<ModelT>(read_checkpoint(r.best_checkpoint), r.best_checkpoint);
  REQUIRE(best.spec().node_conv);
  const Metrics m = evaluate(Exec(), best, val_ds, loss_from_config(cfg, best.spec()), 25);
  std::printf("uracil, SchNet with a conv energy head (950 training frames, %d epochs): validation E MAE %.2f meV/atom "
              "(per-element-mean baseline %.2f), F MAE %.1f meV/A (zero-force baseline %.1f)\n",
              cfg.training.num_epoch, m.epa_mae * 1e3, base_e * 1e3, m.f_mae * 1e3, base_f * 1e3);
  // HydraGNN's conv head ends in a BatchNorm of the one-channel per-atom energy: evaluated with the
  // running statistics its energies carry an offset per atom (docs/config.md); the forces learn. The
  // validation error jumps from epoch to epoch at this learning rate: the best of the first 10 epochs
  // was 0.54 of the baseline at commit dbbd2df and 0.68 at 4d178aa (not bisected: the trajectory
  // follows every rounding), 0.40 after 20 epochs (the best checkpoint, epoch 20). This case ran
  // under ctest only from 2026-12-05 (its name held a ';': tests/check_test_names.py)
  CHECK(m.f_mae < 0.6 * base_f);
  // the running statistics of the head's BatchNorms travel with the checkpoint: a reloaded model predicts
  // bit for bit what the trainer's best model predicts after another reload
  const ModelT again = model_from_checkpoint<ModelT>(read_checkpoint(r.best_checkpoint), r.best_checkpoint);
  CHECK(again.buffers() == best.buffers());
  bool moved = false;
  const auto buf = best.buffers();
  for (const auto& nb : best.named_buffers())
    if (nb.name.find("batch_norms_node_") == 0 && nb.name.find("running_mean") != std::string::npos)
      for (std::size_t k = 0; k < nb.size(); ++k) moved = moved || buf[nb.offset + k] != 0.0;
  CHECK(moved);  // the training updated the head's running means (they start at 0)
  auto batch = make_batch<M>(std::vector<Structure>(val_ds.frames.begin(), val_ds.frames.begin() + 5), cfg.arch.radius, -1,
                             best.spec().species);
  const Prediction p1 = predict(Exec(), best, batch, true), p2 = predict(Exec(), again, batch, true);
  CHECK(p1.energy == p2.energy);
  CHECK(p1.forces == p2.forces);
  std::filesystem::remove_all(opt.output_dir);
}
