// SPDX-License-Identifier: BSD-3-Clause
// Output heads beyond one MLP per head. Branches (HydraGNN's multi-dataset heads): every structure goes
// through its own branch's heads, the parameters of a branch get exactly zero gradient from another
// branch's structures, derivatives through branched heads against finite differences, per-branch
// reference energies, checkpoints. mlp_per_node node heads: atom slot i of every structure through
// MLP i, against a one-MLP model holding MLP i's weights; derivatives; training resolves num_nodes.
#include <catch2/catch.hpp>

#include <hydragnn/io/config_to_spec.hpp>
#include <hydragnn/train/trainer.hpp>

#include "fd_loss.hpp"
#include "test_helpers.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <unistd.h>

using namespace hydragnn;
using Exec = Kokkos::DefaultHostExecutionSpace;
using M = Exec::memory_space;
using ModelT = Model<double, SchNetConv, Exec>;

namespace {

/// Two branches of different widths; a graph head "gap" and a node head "q" (2 columns) beside the energy.
ModelSpec branched_spec(bool pooled_energy) {
  ModelSpec s;
  s.hidden_dim = 6;
  s.num_conv_layers = 2;
  s.cutoff = 3.0;
  s.energy_pooled = pooled_energy;
  s.pooling = pooled_energy ? Pooling::Sum : Pooling::Mean;
  BranchSpec b0, b1;
  b0.name = "branch-0";
  b0.energy_head_dims = {5};
  b0.graph_num_sharedlayers = 1;
  b0.graph_dim_sharedlayers = 5;
  b0.graph_head_dims = {4};
  b0.node_head_dims = {4};
  b1.name = "branch-1";
  b1.energy_head_dims = {3, 3};
  b1.graph_num_sharedlayers = 2;
  b1.graph_dim_sharedlayers = 4;
  b1.graph_head_dims = {3};
  b1.node_head_dims = {5};
  s.branches = {b0, b1};
  s.heads = {HeadDef{"gap", false, 1, 1.0}, HeadDef{"q", true, 2, 1.0}};
  s.species.numbers = {1, 8};
  s.ref_energy = {-0.3, -2.0, 0.4, -5.0};  // branch 0: H, O; branch 1: H, O
  s.energy_scale = 0.8;
  s.energy_shift = 0.05;
  return s;
}

ModelT branched_model(bool pooled_energy) {
  SchNetOptions o;
  o.num_gaussians = 6;
  o.num_filters = 5;
  ModelT model(branched_spec(pooled_energy), o);
  model.initialize(5);
  return model;
}

/// Four labelled structures: 0 and 1 in branch 0, 2 and 3 in branch 1.
std::vector<Structure> labelled_frames() {
  std::vector<Structure> frames;
  std::mt19937_64 rng(12);
  std::normal_distribution<double> nd(0.0, 0.7);
  for (int f = 0; f < 4; ++f) {
    Structure st = hydragnn_test::random_structure(90 + f, 4 + f % 2, {1, 8}, f % 2 == 1, 4.0, 1.0);
    st.branch = f / 2;
    st.energy = -4.0 + nd(rng);
    for (std::size_t i = 0; i < st.size(); ++i) st.forces.push_back(Vec3{nd(rng), nd(rng), nd(rng)});
    st.info["gap"] = std::to_string(1.5 + nd(rng));
    st.arrays["q"].clear();
    for (std::size_t i = 0; i < 2 * st.size(); ++i) st.arrays["q"].push_back(nd(rng));
    st.array_cols["q"] = 2;
    frames.push_back(st);
  }
  return frames;
}

Batch<M> batch_of_frames(const ModelT& model, const std::vector<Structure>& fr) {
  return make_batch<M>(fr, model.spec().cutoff, -1, model.spec().species, model.spec().heads);
}

/// Whether parameter block `name` belongs to branch `branch` (its name holds ".branch-<k>").
bool in_branch(const std::string& name, int branch) {
  return name.find(".branch-" + std::to_string(branch)) != std::string::npos;
}

double max_abs_grad(const Vec<double, M>& g, const NamedParam& np) {
  double m = 0;
  for (std::size_t i = 0; i < np.size(); ++i) m = std::max(m, std::fabs(g(np.offset + i)));
  return m;
}

using hydragnn_test::fd_loss_gradient;

}  // namespace

TEST_CASE("head branches: parameter names and shapes per branch", "[heads][branches]") {
  hydragnn_test::ensure_kokkos();
  const ModelT model = branched_model(false);
  std::map<std::string, std::vector<int>> shape;
  for (const auto& np : model.named_parameters()) shape[np.name] = np.shape;
  // torch's Linear weight is out x in
  CHECK(shape.at("heads_NN.0.branch-0.mlp.0.0.weight") == std::vector<int>{5, 6});
  CHECK(shape.at("heads_NN.0.branch-1.mlp.0.2.weight") == std::vector<int>{3, 3});
  CHECK(shape.at("graph_shared.branch-0.0.weight") == std::vector<int>{5, 6});
  CHECK(shape.at("graph_shared.branch-1.2.weight") == std::vector<int>{4, 4});
  CHECK(shape.at("heads_NN.1.branch-1.0.weight") == std::vector<int>{3, 4});
  CHECK(shape.at("heads_NN.2.branch-0.mlp.0.2.weight") == std::vector<int>{2, 4});
  CHECK(shape.at("heads_NN.2.branch-1.mlp.0.0.weight") == std::vector<int>{5, 6});
  // branch-major: every block of branch 0 precedes every block of branch 1, both after the trunk
  std::size_t last0 = 0, first1 = model.num_params();
  for (const auto& np : model.named_parameters()) {
    if (in_branch(np.name, 0)) last0 = std::max(last0, np.offset);
    if (in_branch(np.name, 1)) first1 = std::min(first1, np.offset);
    if (in_branch(np.name, 0) || in_branch(np.name, 1)) CHECK(np.offset >= model.num_trunk_params());
  }
  CHECK(last0 < first1);
}

TEST_CASE("head branches: a structure's outputs do not depend on the other branch's structures in its batch",
          "[heads][branches]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  for (bool pooled : {false, true}) {
    INFO((pooled ? "pooled" : "per-atom") << " energy head");
    const ModelT model = branched_model(pooled);
    const std::vector<Structure> frames = labelled_frames();
    const Prediction mixed = predict(exec, model, batch_of_frames(model, frames), true);
    std::size_t atom = 0;
    for (std::size_t g = 0; g < frames.size(); ++g) {
      const Prediction one = predict(exec, model, batch_of_frames(model, {frames[g]}), true);
      CHECK(mixed.energy[g] == Approx(one.energy[0]).epsilon(1e-13));
      for (std::size_t i = 0; i < 3 * frames[g].size(); ++i)
        CHECK(mixed.forces[3 * atom + i] == Approx(one.forces[i]).epsilon(1e-12).margin(1e-14));
      CHECK(mixed.heads[0][g] == Approx(one.heads[0][0]).epsilon(1e-13));
      for (std::size_t i = 0; i < 2 * frames[g].size(); ++i)
        CHECK(mixed.heads[1][2 * atom + i] == Approx(one.heads[1][i]).epsilon(1e-13));
      // the same structure through the other branch: other heads, other reference energies
      Structure other = frames[g];
      other.branch = 1 - other.branch;
      const Prediction swapped = predict(exec, model, batch_of_frames(model, {other}), true);
      CHECK(std::fabs(swapped.energy[0] - one.energy[0]) > 1e-3);
      CHECK(std::fabs(swapped.heads[0][0] - one.heads[0][0]) > 1e-6);
      atom += frames[g].size();
    }
  }
}

TEST_CASE("head branches: per-branch reference energies enter each branch's energies", "[heads][branches][reference]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  ModelT model = branched_model(false);
  const std::vector<Structure> frames = labelled_frames();
  const auto batch = batch_of_frames(model, frames);
  const Prediction before = predict(exec, model, batch, false);
  std::vector<double> ref = model.spec().ref_energy;
  ref[3] += 1.0;  // branch 1, O
  model.set_reference_energies(ref);
  const Prediction after = predict(exec, model, batch, false);
  for (std::size_t g = 0; g < frames.size(); ++g) {
    const double n_o = double(std::count(frames[g].numbers.begin(), frames[g].numbers.end(), 8));
    CHECK(after.energy[g] - before.energy[g] == Approx(frames[g].branch == 1 ? n_o : 0.0).margin(1e-12));
  }
  CHECK_THROWS_WITH(model.set_reference_energies(std::vector<double>(5, 0.0)),
                    Catch::Contains("5 values for 2 branch(es) x 2 species"));
}

TEST_CASE("head branches: a branch's parameters get exactly zero gradient from the other branch's structures",
          "[heads][branches][gradient]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  for (bool pooled : {false, true}) {
    INFO((pooled ? "pooled" : "per-atom") << " energy head");
    const ModelT model = branched_model(pooled);
    const std::vector<Structure> frames = labelled_frames();
    LossSpec w;
    w.energy = 1.0;
    w.force = 2.0;
    w.heads = {0.5, 0.7};
    for (int only : {0, 1}) {
      std::vector<Structure> sub;
      for (const auto& f : frames)
        if (f.branch == only) sub.push_back(f);
      Vec<double, M> grad("grad", model.num_params());
      loss_and_grad(exec, model, batch_of_frames(model, sub), w, grad);
      double trunk = 0;
      for (std::size_t k = 0; k < model.num_trunk_params(); ++k) trunk = std::max(trunk, std::fabs(grad(k)));
      CHECK(trunk > 0);
      int own_blocks = 0;
      for (const auto& np : model.named_parameters()) {
        INFO(np.name << " from structures of branch " << only);
        if (in_branch(np.name, 1 - only)) CHECK(max_abs_grad(grad, np) == 0.0);
        if (in_branch(np.name, only) && max_abs_grad(grad, np) > 0) ++own_blocks;
      }
      CHECK(own_blocks >= 8);
    }
  }
}

TEST_CASE("head branches: force-training gradient through both branches against finite differences",
          "[heads][branches][gradient]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  for (bool pooled : {false, true}) {
    INFO((pooled ? "pooled" : "per-atom") << " energy head");
    const ModelT model = branched_model(pooled);
    const auto batch = batch_of_frames(model, labelled_frames());
    LossSpec w;
    w.energy = 1.0;
    w.energy_peratom = 0.5;
    w.force = 2.0;
    w.heads = {0.5, 0.7};
    Vec<double, M> grad("grad", model.num_params());
    loss_and_grad(exec, model, batch, w, grad);
    for (std::size_t k = 0; k < model.num_params(); k += 7) {
      const double fd = fd_loss_gradient(exec, model, batch, w, k, 1e-5);
      INFO("parameter " << k);
      CHECK(grad(k) == Approx(fd).epsilon(1e-6).margin(1e-9));
    }
  }
}

TEST_CASE("head branches: batches group structures by branch, unknown branches are errors", "[heads][branches][badinput]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  const ModelT model = branched_model(false);
  std::vector<Structure> frames = labelled_frames();
  std::vector<Structure> unsorted{frames[2], frames[0]};
  CHECK_THROWS_WITH(batch_of_frames(model, unsorted), Catch::Contains("grouped by head branch") &&
                                                         Catch::Contains(frames[0].source));
  // batch_of orders a dataset's indices by branch (stably)
  Dataset ds;
  ds.frames = {frames[2], frames[0], frames[3], frames[1]};
  build_graphs(ds, model.spec().cutoff, -1, DatasetRequirements{});
  const auto b = batch_of<M>(ds, {0, 1, 2, 3}, model.spec().species, model.spec().heads);
  CHECK(b.branch_graph_ptr == std::vector<int>{0, 2, 4});
  CHECK(b.natoms == std::vector<int>{int(frames[0].size()), int(frames[1].size()), int(frames[2].size()), int(frames[3].size())});
  const Prediction p = predict(exec, model, b, false);
  const Prediction q = predict(exec, model, batch_of_frames(model, frames), false);
  CHECK(p.energy == q.energy);
  // a structure of a branch the model does not have
  Structure bad = frames[0];
  bad.branch = 2;
  CHECK_THROWS_WITH(predict(exec, model, batch_of_frames(model, {bad}), false),
                    Catch::Contains("head branch 2") && Catch::Contains("2 branch(es)"));
}

TEST_CASE("head branches: checkpoints keep every branch", "[heads][branches][checkpoint]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  const ModelT model = branched_model(false);
  const std::string path = "test_branches_ckpt.hgnn";
  write_checkpoint(path, make_checkpoint(model, static_cast<const Optimizer<double, Exec>*>(nullptr), TrainState{}, "{}"));
  const CheckpointData c = read_checkpoint(path);
  REQUIRE(c.spec.branches.size() == 2);
  CHECK(c.spec.branches[1].name == "branch-1");
  CHECK(c.spec.branches[1].energy_head_dims == std::vector<int>{3, 3});
  CHECK(c.spec.branches[1].graph_num_sharedlayers == 2);
  CHECK(c.spec.ref_energy == model.spec().ref_energy);
  const ModelT back = model_from_checkpoint<ModelT>(c, path);
  const auto batch = batch_of_frames(model, labelled_frames());
  const Prediction a = predict(exec, model, batch, true), b = predict(exec, back, batch, true);
  CHECK(a.energy == b.energy);
  CHECK(a.forces == b.forces);
  CHECK(a.heads == b.heads);
  std::remove(path.c_str());
}

namespace {

/// One branch; per-atom energy and a node head "q" (2 columns), mlp_per_node (num_nodes > 0) or mlp.
ModelT node_model(int num_nodes) {
  ModelSpec s;
  s.hidden_dim = 6;
  s.num_conv_layers = 2;
  s.cutoff = 3.0;
  s.branches[0].energy_head_dims = {5};
  s.branches[0].node_head_dims = {4, 3};
  s.heads = {HeadDef{"q", true, 2, 1.0}};
  s.num_nodes = num_nodes;
  s.species.numbers = {1, 8};
  s.ref_energy = {-0.3, -2.0};
  s.energy_scale = 0.8;
  SchNetOptions o;
  o.num_gaussians = 6;
  o.num_filters = 5;
  ModelT model(s, o);
  model.initialize(9);
  return model;
}

/// Three labelled structures of 5 atoms.
std::vector<Structure> five_atom_frames() {
  std::vector<Structure> frames = labelled_frames();
  std::vector<Structure> out;
  for (const auto& f : frames)
    if (f.size() == 5) out.push_back(f);
  Structure extra = hydragnn_test::random_structure(77, 5, {1, 8}, false, 4.0, 1.0);
  extra.energy = -3.0;
  for (std::size_t i = 0; i < 5; ++i) extra.forces.push_back(Vec3{0.1 * double(i), -0.2, 0.3});
  extra.arrays["q"].assign(10, 0.5);
  extra.array_cols["q"] = 2;
  out.push_back(extra);
  for (auto& f : out) f.branch = 0;
  return out;
}

}  // namespace

TEST_CASE("mlp_per_node: atom slot i of every structure goes through MLP i", "[heads][mlp_per_node]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  const ModelT per = node_model(5);
  const std::vector<Structure> frames = five_atom_frames();
  REQUIRE(frames.size() == 3);
  std::map<std::string, NamedParam> blocks;
  for (const auto& np : per.named_parameters()) blocks[np.name] = np;
  for (int i = 0; i < 5; ++i) {
    CHECK(blocks.count("heads_NN.0.branch-0.mlp." + std::to_string(i) + ".0.weight"));  // the per-atom energy
    CHECK(blocks.count("heads_NN.1.branch-0.mlp." + std::to_string(i) + ".4.weight"));  // q: [4, 3] -> 2
  }
  CHECK_FALSE(blocks.count("heads_NN.0.branch-0.mlp.5.0.weight"));
  const auto batch = batch_of_frames(per, frames);
  Workspace<M> ws;
  const auto w = per.weights(exec);
  typename ModelT::template Forward<double> f;
  per.template forward<double>(exec, w, batch, per.template edge_vectors<double>(exec, batch, ws), f, ws);
  const std::vector<double> e_per = to_host_vector(f.heads.e_atom), q_per = to_host_vector(f.head_out[0]);
  for (int i = 0; i < 5; ++i) {
    // a one-MLP model with the trunk of `per` and MLP i of every node head
    ModelT one = node_model(0);
    auto dst = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), one.params());
    auto src = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), per.params());
    for (const auto& np : one.named_parameters()) {
      std::string from = np.name;
      const std::size_t at = from.find(".mlp.0.");
      if (at != std::string::npos) from.replace(at, 7, ".mlp." + std::to_string(i) + ".");
      const NamedParam& s = blocks.at(from);
      REQUIRE(s.shape == np.shape);
      for (std::size_t k = 0; k < np.size(); ++k) dst(np.offset + k) = src(s.offset + k);
    }
    Kokkos::deep_copy(one.params(), dst);
    Workspace<M> ws1;
    const auto w1 = one.weights(exec);
    typename ModelT::template Forward<double> f1;
    one.template forward<double>(exec, w1, batch, one.template edge_vectors<double>(exec, batch, ws1), f1, ws1);
    const std::vector<double> e_one = to_host_vector(f1.heads.e_atom), q_one = to_host_vector(f1.head_out[0]);
    for (std::size_t g = 0; g < frames.size(); ++g) {
      const std::size_t atom = 5 * g + std::size_t(i);
      CHECK(e_per[atom] == e_one[atom]);
      CHECK(q_per[2 * atom] == q_one[2 * atom]);
      CHECK(q_per[2 * atom + 1] == q_one[2 * atom + 1]);
    }
  }
  // the slots are distinct networks: atom 0 and atom 1 of a structure with swapped positions differ
  Structure swapped = frames[0];
  std::swap(swapped.positions[0], swapped.positions[1]);
  std::swap(swapped.numbers[0], swapped.numbers[1]);
  const Prediction a = predict(exec, per, batch_of_frames(per, {frames[0]}), false);
  const Prediction b = predict(exec, per, batch_of_frames(per, {swapped}), false);
  CHECK(std::fabs(a.energy[0] - b.energy[0]) > 1e-8);
  // a structure of another size is an error naming both sizes
  std::vector<Structure> mixed = frames;
  mixed.push_back(labelled_frames()[0]);  // 4 atoms
  mixed.back().branch = 0;
  CHECK_THROWS_WITH(predict(exec, per, batch_of_frames(per, mixed), false),
                    Catch::Contains("mlp_per_node for structures of 5 atoms") && Catch::Contains("has 4"));
}

TEST_CASE("mlp_per_node: force-training gradient against finite differences", "[heads][mlp_per_node][gradient]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  const ModelT per = node_model(5);
  const auto batch = batch_of_frames(per, five_atom_frames());
  LossSpec w;
  w.energy = 1.0;
  w.force = 2.0;
  w.heads = {0.7};
  Vec<double, M> grad("grad", per.num_params());
  loss_and_grad(exec, per, batch, w, grad);
  for (std::size_t k = per.num_trunk_params() % 3; k < per.num_params(); k += 3) {
    const double fd = fd_loss_gradient(exec, per, batch, w, k, 1e-5);
    INFO("parameter " << k);
    CHECK(grad(k) == Approx(fd).epsilon(1e-6).margin(1e-9));
  }
}

TEST_CASE("mlp_per_node: the trainer takes num_nodes from the training set", "[heads][mlp_per_node][train]") {
  hydragnn_test::ensure_kokkos();
  Config cfg = parse_config(R"({"NeuralNetwork": {
      "Architecture": {"mpnn_type": "SchNet", "radius": 3.0, "hidden_dim": 6, "num_conv_layers": 1,
        "num_gaussians": 6, "num_filters": 6,
        "output_heads": {"node": {"num_headlayers": 1, "dim_headlayers": [4], "type": "mlp_per_node"}},
        "enable_interatomic_potential": true, "energy_weight": 1.0, "force_weight": 1.0},
      "Variables_of_interest": {"output_names": ["energy"], "type": ["node"], "output_dim": [1]},
      "Training": {"num_epoch": 1, "batch_size": 2, "seed": 1}}})", "per-node");
  CHECK(spec_from_config(cfg).num_nodes == -1);
  Dataset train_ds, val_ds;
  train_ds.frames = five_atom_frames();
  val_ds.frames = {train_ds.frames.back()};
  build_graphs(train_ds, 3.0, -1, DatasetRequirements{true, true, false});
  build_graphs(val_ds, 3.0, -1, DatasetRequirements{true, true, false});
  TrainOptions opt;
  opt.verbose = false;
  opt.output_dir = (std::filesystem::temp_directory_path() / ("hydragnn_pernode_" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(opt.output_dir);
  const TrainResult r = train<ModelT>(Exec(), cfg, train_ds, val_ds, opt);
  const CheckpointData c = read_checkpoint(r.latest_checkpoint);
  CHECK(c.spec.num_nodes == 5);
  const ModelT back = model_from_checkpoint<ModelT>(c, r.latest_checkpoint);
  bool slot4 = false;
  for (const auto& np : back.named_parameters()) slot4 = slot4 || np.name == "heads_NN.0.branch-0.mlp.4.0.weight";
  CHECK(slot4);
  train_ds.frames.push_back(labelled_frames()[0]);  // 4 atoms
  train_ds.frames.back().branch = 0;
  build_graphs(train_ds, 3.0, -1, DatasetRequirements{true, true, false});
  CHECK_THROWS_WITH(train<ModelT>(Exec(), cfg, train_ds, val_ds, opt), Catch::Contains("same number of atoms"));
  std::filesystem::remove_all(opt.output_dir);
}

TEST_CASE("direct heads named energy and forces read the structure's energy and forces (HydraGNN's GFM configs)",
          "[heads][labels]") {
  hydragnn_test::ensure_kokkos();
  std::vector<Structure> frames = five_atom_frames();
  frames[1].info["energy_alt"] = "1.5";
  const std::vector<HeadDef> heads{HeadDef{"energy", false, 1, 1.0}, HeadDef{"forces", true, 3, 1.0},
                                   HeadDef{"force", true, 3, 1.0}, HeadDef{"q", true, 2, 1.0}};
  const SpeciesMap sp{{1, 8}};
  const auto b = make_batch<M>(frames, 3.0, -1, sp, heads);
  for (std::size_t g = 0; g < frames.size(); ++g) {
    CHECK(b.head_targets[0][g] == *frames[g].energy);
    for (std::size_t i = 0; i < 5; ++i)
      for (std::size_t a = 0; a < 3; ++a) {
        CHECK(b.head_targets[1][3 * (5 * g + i) + a] == frames[g].forces[i][a]);
        CHECK(b.head_targets[2][3 * (5 * g + i) + a] == frames[g].forces[i][a]);
      }
  }
  CHECK(b.n_head == std::vector<long>{3, 45, 45, 30});
  // an info key or a per-atom column of the head's name wins; no energy, no label
  frames[0].info["energy"] = "7.25";
  frames[2].energy.reset();
  const auto c = make_batch<M>(frames, 3.0, -1, sp, heads);
  CHECK(c.head_targets[0][0] == 7.25);
  CHECK(std::isnan(c.head_targets[0][2]));
  Dataset ds;
  ds.frames = frames;
  const LabelCounts n = count_labels(ds, heads);
  CHECK(n.heads == std::vector<std::size_t>{2, 3, 3, 3});
  // dimensions other than HydraGNN's (energy 1, forces 3) are not mapped
  const auto d = make_batch<M>(frames, 3.0, -1, sp, {HeadDef{"forces", true, 2, 1.0}});
  CHECK(d.n_head == std::vector<long>{0});
}
