// SPDX-License-Identifier: BSD-3-Clause
// Symmetries, determinism, checkpoints and training-state resume.
#include <catch2/catch.hpp>

#include <hydragnn/train/trainer.hpp>

#include "fd_loss.hpp"
#include "model_test_options.hpp"
#include "test_helpers.hpp"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <unistd.h>

using namespace hydragnn;
using Exec = Kokkos::DefaultHostExecutionSpace;
using M = Exec::memory_space;

namespace {

ModelSpec spec_for(const std::string& type) {
  ModelSpec s;
  s.mpnn_type = type;
  s.hidden_dim = 8;
  s.num_conv_layers = 2;
  s.cutoff = 3.0;
  s.branches[0].energy_head_dims = {8};
  s.species.numbers = {6, 14};
  s.ref_energy = {-2.0, -4.5};
  s.energy_scale = 0.5;
  s.max_neighbours = hydragnn_test::test_max_neighbours(type);
  return s;
}

template <class ModelT>
Prediction run(const ModelT& model, const std::vector<Structure>& frames) {
  auto b = make_batch<M>(frames, model.spec().cutoff, -1, model.spec().species, {}, ModelT::traits::needs_triplets);
  return predict(Exec(), model, b, true);
}

Mat3 rotation(double a, double b, double c) {
  const double ca = std::cos(a), sa = std::sin(a), cb = std::cos(b), sb = std::sin(b), cc = std::cos(c), sc = std::sin(c);
  const Mat3 Rz{{{ca, -sa, 0}, {sa, ca, 0}, {0, 0, 1}}}, Ry{{{cb, 0, sb}, {0, 1, 0}, {-sb, 0, cb}}},
      Rx{{{1, 0, 0}, {0, cc, -sc}, {0, sc, cc}}};
  auto mul = [](const Mat3& A, const Mat3& B) {
    Mat3 C{};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 3; ++k) C[i][j] += A[i][k] * B[k][j];
    return C;
  };
  return mul(Rz, mul(Ry, Rx));
}
Vec3 rot_apply(const Mat3& R, const Vec3& x) {
  Vec3 y{};
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 3; ++k) y[i] += R[i][k] * x[k];
  return y;
}

/// The vector features (N x 3 x F) after every layer of a double model's forward, flattened per layer.
template <class ModelT>
std::vector<std::vector<double>> vector_features(const ModelT& model, const Structure& s) {
  auto b = make_batch<M>(std::vector<Structure>{s}, model.spec().cutoff, -1, model.spec().species, {},
                         ModelT::traits::needs_triplets);
  Workspace<M> ws;
  const auto w = model.weights(Exec());
  const auto r = model.template edge_vectors<double>(Exec(), b, ws);
  typename ModelT::template Forward<double> f;
  model.template forward<double>(Exec(), w, b, r, f, ws);
  std::vector<std::vector<double>> out;
  for (std::size_t l = 1; l < f.state.size(); ++l) out.emplace_back(f.state[l].v.data(), f.state[l].v.data() + f.state[l].v.span());
  return out;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("energy is invariant and forces equivariant under rotation, translation, permutation and image choice", "[model][symmetry]", conv_registry) {
  hydragnn_test::ensure_kokkos();
  Model<double, TestType, Exec> model(spec_for(TestType::name), hydragnn_test::test_options<TestType>());
  model.initialize(3);
  const Structure s = hydragnn_test::random_structure(17, 9, {6, 14}, true, 4.5, 1.2);
  const Prediction p0 = run(model, {s});
  const std::size_t n = s.size();

  SECTION("rotation of positions and cell") {
    const Mat3 R = rotation(0.3, -1.1, 2.0);
    Structure r = s;
    for (auto& x : r.positions) x = rot_apply(R, x);
    for (auto& c : r.cell) c = rot_apply(R, c);
    const Prediction p = run(model, {r});
    CHECK(p.energy[0] == Approx(p0.energy[0]).epsilon(1e-11));
    for (std::size_t i = 0; i < n; ++i) {
      const Vec3 f0{p0.forces[3 * i], p0.forces[3 * i + 1], p0.forces[3 * i + 2]};
      const Vec3 rf = rot_apply(R, f0);
      for (int a = 0; a < 3; ++a) CHECK(p.forces[3 * i + a] == Approx(rf[a]).margin(1e-10));
    }
    if constexpr (Model<double, TestType, Exec>::traits::has_vectors) {
      // every vector channel of every layer rotates with the input: v'(i,:,c) = R v(i,:,c)
      const auto v0 = vector_features(model, s), v1 = vector_features(model, r);
      REQUIRE(v0.size() == std::size_t(model.spec().num_conv_layers));
      double vmax = 0, err = 0;
      for (std::size_t l = 0; l < v0.size(); ++l) {
        REQUIRE(v0[l].size() == v1[l].size());
        const std::size_t F = v0[l].size() / (3 * n);
        for (std::size_t i = 0; i < n; ++i)
          for (std::size_t c = 0; c < F; ++c) {
            const Vec3 x{v0[l][(3 * i) * F + c], v0[l][(3 * i + 1) * F + c], v0[l][(3 * i + 2) * F + c]};
            const Vec3 rx = rot_apply(R, x);
            for (int a = 0; a < 3; ++a) {
              vmax = std::max(vmax, std::fabs(x[a]));
              err = std::max(err, std::fabs(v1[l][(3 * i + a) * F + c] - rx[a]));
            }
          }
      }
      INFO(TestType::name << ": max |v| " << vmax << ", max |v(Rx) - R v(x)| " << err);
      CHECK(vmax > 1e-3);
      CHECK(err <= 1e-11 * std::max(1.0, vmax));
    }
  }
  SECTION("translation") {
    Structure t = s;
    for (auto& x : t.positions) x = {x[0] + 7.3, x[1] - 2.1, x[2] + 0.4};
    const Prediction p = run(model, {t});
    CHECK(p.energy[0] == Approx(p0.energy[0]).epsilon(1e-12));
    for (std::size_t k = 0; k < 3 * n; ++k) CHECK(p.forces[k] == Approx(p0.forces[k]).margin(1e-11));
  }
  SECTION("permutation of atoms") {
    std::vector<std::size_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(5);
    std::shuffle(perm.begin(), perm.end(), rng);
    Structure q = s;
    for (std::size_t i = 0; i < n; ++i) {
      q.positions[i] = s.positions[perm[i]];
      q.numbers[i] = s.numbers[perm[i]];
    }
    const Prediction p = run(model, {q});
    CHECK(p.energy[0] == Approx(p0.energy[0]).epsilon(1e-12));
    for (std::size_t i = 0; i < n; ++i)
      for (int a = 0; a < 3; ++a) CHECK(p.forces[3 * i + a] == Approx(p0.forces[3 * perm[i] + a]).margin(1e-11));
  }
  SECTION("periodic image choice (atoms moved by lattice vectors)") {
    Structure w = s;
    for (std::size_t i = 0; i < n; ++i) {
      const int k = int(i % 3) - 1;
      for (int a = 0; a < 3; ++a) w.positions[i][a] += k * s.cell[0][a] + (i % 2) * s.cell[2][a] - 2 * k * s.cell[1][a];
    }
    const Prediction p = run(model, {w});
    CHECK(p.energy[0] == Approx(p0.energy[0]).epsilon(1e-12));
    for (std::size_t k = 0; k < 3 * n; ++k) CHECK(p.forces[k] == Approx(p0.forces[k]).margin(1e-11));
    for (int k = 0; k < 9; ++k) CHECK(p.stress[k] == Approx(p0.stress[k]).margin(1e-11));
  }
  SECTION("a supercell's energy is the sum over the cell's replicas") {
    Structure sc = s;
    sc.positions.clear();
    sc.numbers.clear();
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j)
        for (std::size_t a = 0; a < n; ++a) {
          Vec3 x = s.positions[a];
          for (int c = 0; c < 3; ++c) x[c] += i * s.cell[0][c] + j * s.cell[1][c];
          sc.positions.push_back(x);
          sc.numbers.push_back(s.numbers[a]);
        }
    for (int c = 0; c < 3; ++c) {
      sc.cell[0][c] = 2 * s.cell[0][c];
      sc.cell[1][c] = 3 * s.cell[1][c];
    }
    const Prediction p = run(model, {sc});
    CHECK(p.energy[0] == Approx(6 * p0.energy[0]).epsilon(1e-11));
    for (std::size_t k = 0; k < 3 * n; ++k) CHECK(p.forces[k] == Approx(p0.forces[k]).margin(1e-10));
    for (int k = 0; k < 9; ++k) CHECK(p.stress[k] == Approx(p0.stress[k]).margin(1e-10));
  }
}

namespace {

Config tiny_config(const std::string& type, double force_weight = 1.0) {
  Config c = parse_config(R"({
    "NeuralNetwork": {
      "Architecture": {"mpnn_type": ")" + type + R"(", "radius": 3.0, "hidden_dim": 8, "num_conv_layers": 2,
        "num_gaussians": 8, "num_filters": 8,
        "output_heads": {"node": {"num_headlayers": 1, "dim_headlayers": [8], "type": "mlp"}},
        "enable_interatomic_potential": true, "energy_weight": 1.0, "force_weight": )" + std::to_string(force_weight) +
                             (type == "PNA" || type == "CGCNN" || type == "GAT" ? R"(, "edge_features": ["length"])" : "") +
                             (type == "GAT" ? R"(, "gat_heads": 2)" : "") +
                             (type == "MFC" ? R"(, "max_neighbours": 4)" : "") + R"(},
      "Variables_of_interest": {"output_names": ["energy"], "type": ["node"], "output_dim": [1]},
      "Training": {"num_epoch": 3, "batch_size": 3, "Optimizer": {"type": "AdamW", "learning_rate": 0.003}, "seed": 4}
    }
  })",
                         "tiny");
  return c;
}

Dataset tiny_dataset(std::uint64_t seed, int frames) {
  Dataset ds;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (int k = 0; k < frames; ++k) {
    Structure s = hydragnn_test::random_structure(seed + k, 6, {6, 14}, k % 2 == 0, 3.6, 1.1);
    s.energy = -3.0 * 6 + 0.1 * nd(rng);
    s.forces.resize(s.size());
    for (auto& f : s.forces) f = {nd(rng), nd(rng), nd(rng)};
    ds.frames.push_back(s);
  }
  build_graphs(ds, 3.0, -1, DatasetRequirements{true, true, true});
  return ds;
}

std::string temp_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() / ("hydragnn_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

/// A checkpoint's parameters followed by its buffers (BatchNorm running statistics).
std::vector<double> params_of(const std::string& ckpt) {
  const CheckpointData c = read_checkpoint(ckpt);
  std::vector<double> v = c.params;
  v.insert(v.end(), c.buffers.begin(), c.buffers.end());
  return v;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("training is bitwise deterministic and resumes bit-for-bit", "[model][determinism][checkpoint]", conv_registry) {
  hydragnn_test::ensure_kokkos();
  using ModelT = Model<float, TestType, Exec>;
  // force training where the energy depends on the positions
  constexpr bool position_free = std::is_same<TestType, GINConv>::value || std::is_same<TestType, SAGEConv>::value ||
                                 std::is_same<TestType, MFCConv>::value;
  const Config cfg = tiny_config(TestType::name, position_free ? 0.0 : 1.0);
  const Dataset train_ds = tiny_dataset(100, 7), val_ds = tiny_dataset(200, 3);
  TrainOptions opt;
  opt.verbose = false;
  opt.log = [](const std::string&) {};

  opt.output_dir = temp_dir("a");
  train<ModelT>(Exec(), cfg, train_ds, val_ds, opt);
  const auto a = params_of(opt.output_dir + "/checkpoint.hgnn");
  opt.output_dir = temp_dir("b");
  train<ModelT>(Exec(), cfg, train_ds, val_ds, opt);
  const auto b = params_of(opt.output_dir + "/checkpoint.hgnn");
  if constexpr (std::is_same<TestType, PNAEqConv>::value) {
    // the config has no pna_deg: training takes the training set's in-degree histogram and the
    // checkpoint keeps it
    const std::vector<double> h = read_checkpoint(opt.output_dir + "/checkpoint.hgnn").options.at("pna_deg");
    CHECK(h == degree_histogram(train_ds));
    CHECK(h.size() > 2);
  }
  if constexpr (conv_traits<TestType>::batch_norm) {
    // the running statistics moved away from their initial 0 / 1 and count the 9 steps (3 epochs of
    // 7 structures in batches of 3)
    const CheckpointData ck = read_checkpoint(opt.output_dir + "/checkpoint.hgnn");
    const std::size_t nb = ck.buffers.size();
    // [mean | var] per layer (GAT's first layer is heads x hidden wide), then the step count
    const std::size_t width0 = std::is_same<TestType, GATConv>::value ? 2 * 8 : 8;
    REQUIRE(nb == 2 * width0 + 2 * 8 + 1);
    CHECK(ck.buffers.back() == 9.0);
    CHECK(ck.buffers[0] != 0.0);
    CHECK(ck.buffers[width0] != 1.0);
  }
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);

  // 2 epochs, then resume to 3: identical to 3 straight epochs
  Config two = cfg;
  two.training.num_epoch = 2;
  opt.output_dir = temp_dir("c");
  train<ModelT>(Exec(), two, train_ds, val_ds, opt);
  const auto mid = params_of(opt.output_dir + "/checkpoint.hgnn");
  CHECK(std::memcmp(a.data(), mid.data(), a.size() * sizeof(double)) != 0);
  opt.resume = true;
  const TrainResult r = train<ModelT>(Exec(), cfg, train_ds, val_ds, opt);
  CHECK(r.state.epoch == 3);
  const auto c = params_of(opt.output_dir + "/checkpoint.hgnn");
  CHECK(std::memcmp(a.data(), c.data(), a.size() * sizeof(double)) == 0);
}

TEST_CASE("force training of a model whose energy ignores positions (GIN, SAGE) is refused, naming the keys",
          "[model][badinput]") {
  hydragnn_test::ensure_kokkos();
  const Dataset train_ds = tiny_dataset(100, 4), val_ds = tiny_dataset(200, 2);
  TrainOptions opt;
  opt.verbose = false;
  opt.log = [](const std::string&) {};
  using GIN = Model<float, GINConv, Exec>;
  using SAGE = Model<float, SAGEConv, Exec>;
  auto gin = [&] { return train<GIN>(Exec(), tiny_config("GIN", 1.0), train_ds, val_ds, opt); };
  auto sage = [&] { return train<SAGE>(Exec(), tiny_config("SAGE", 1.0), train_ds, val_ds, opt); };
  opt.output_dir = temp_dir("gin_forces");
  CHECK_THROWS_WITH(gin(), Catch::Contains("GIN's energy does not depend on the atom positions") &&
                               Catch::Contains("force_weight and stress_weight"));
  opt.output_dir = temp_dir("sage_forces");
  CHECK_THROWS_WITH(sage(), Catch::Contains("SAGE's energy does not depend on the atom positions"));
}

TEST_CASE("num_epoch 0 writes the initialised model", "[model][checkpoint]") {
  hydragnn_test::ensure_kokkos();
  using ModelT = Model<float, SchNetConv, Exec>;
  Config cfg = tiny_config("SchNet");
  cfg.training.num_epoch = 0;
  TrainOptions opt;
  opt.verbose = false;
  opt.log = [](const std::string&) {};
  opt.output_dir = temp_dir("zero");
  const Dataset ds = tiny_dataset(300, 4);
  train<ModelT>(Exec(), cfg, ds, Dataset{}, opt);
  const CheckpointData c = read_checkpoint(opt.output_dir + "/checkpoint.hgnn");
  CHECK(c.state.epoch == 0);
  ModelT m = model_from_checkpoint<ModelT>(c, "x");
  CHECK(m.num_params() == c.params.size());
  CHECK(c.spec.species.numbers == std::vector<int>{6, 14});
}

TEST_CASE("corrupt, truncated and mismatched checkpoints give clear errors", "[model][checkpoint][badinput]") {
  hydragnn_test::ensure_kokkos();
  using ModelT = Model<float, SchNetConv, Exec>;
  const std::string dir = temp_dir("bad");
  const std::string path = dir + "/checkpoint.hgnn";
  ModelT model(spec_for("SchNet"));
  model.initialize(1);
  write_checkpoint(path, make_checkpoint(model, (const Optimizer<float, Exec>*)nullptr, TrainState{}, "{}"));
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  auto write = [&](const std::string& p, const std::string& data) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << data;
  };
  using Catch::Matchers::Contains;
  SECTION("round trip") {
    const ModelT back = model_from_checkpoint<ModelT>(read_checkpoint(path), path);
    const auto a = to_host_vector(model.params()), b = to_host_vector(back.params());
    CHECK(a == b);
  }
  SECTION("missing file") { CHECK_THROWS_WITH(read_checkpoint(dir + "/nope.hgnn"), Contains("nope.hgnn")); }
  SECTION("not a checkpoint") {
    write(dir + "/x.hgnn", "hello world, this is not a checkpoint at all");
    CHECK_THROWS_WITH(read_checkpoint(dir + "/x.hgnn"), Contains("x.hgnn") && Contains("bad magic"));
  }
  SECTION("flipped byte") {
    std::string b = bytes;
    b[b.size() / 2] ^= 0x40;
    write(dir + "/c.hgnn", b);
    CHECK_THROWS_WITH(read_checkpoint(dir + "/c.hgnn"), Contains("c.hgnn") && Contains("checksum"));
  }
  SECTION("truncated") {
    write(dir + "/t.hgnn", bytes.substr(0, bytes.size() - 100));
    CHECK_THROWS_AS(read_checkpoint(dir + "/t.hgnn"), CheckpointError);
  }
  SECTION("wrong model type") {
    CHECK_THROWS_WITH((model_from_checkpoint<Model<float, EGNNConv, Exec>>(read_checkpoint(path), path)),
                      Contains("SchNet") && Contains("EGNN"));
  }
  SECTION("wrong precision") {
    CHECK_THROWS_WITH((model_from_checkpoint<Model<double, SchNetConv, Exec>>(read_checkpoint(path), path)),
                      Contains("precision"));
  }
  SECTION("parameter count does not match the architecture") {
    CheckpointData c = read_checkpoint(path);
    c.spec.hidden_dim = 9;
    write_checkpoint(dir + "/m.hgnn", c);
    CHECK_THROWS_WITH((model_from_checkpoint<ModelT>(read_checkpoint(dir + "/m.hgnn"), dir + "/m.hgnn")),
                      Contains("m.hgnn") && Contains("parameters"));
  }
}

TEST_CASE("dataset validation names the frame for isolated atoms, empty frames and missing labels", "[badinput]") {
  using Catch::Matchers::Contains;
  Dataset ds;
  Structure s;
  s.source = "mol.extxyz:12";
  s.numbers = {6, 8};
  s.positions = {Vec3{0, 0, 0}, Vec3{9, 0, 0}};
  s.energy = -1.0;
  ds.frames = {s};
  CHECK_THROWS_WITH(build_graphs(ds, 5.0, -1, DatasetRequirements{true, false, false}),
                    Contains("mol.extxyz:12") && Contains("isolated"));
  CHECK_THROWS_WITH(build_graphs(ds, 5.0, -1, DatasetRequirements{true, true, true}),
                    Contains("mol.extxyz:12") && Contains("forces"));
  ds.frames[0].energy.reset();
  CHECK_THROWS_WITH(build_graphs(ds, 5.0, -1, DatasetRequirements{true, false, true}),
                    Contains("mol.extxyz:12") && Contains("energy"));
  ds.frames[0].numbers.clear();
  ds.frames[0].positions.clear();
  CHECK_THROWS_WITH(build_graphs(ds, 5.0, -1, DatasetRequirements{}), Contains("mol.extxyz:12") && Contains("empty"));
  Structure o = s;
  o.positions[1] = Vec3{0.001, 0, 0};
  ds.frames = {o};
  CHECK_THROWS_WITH(build_graphs(ds, 5.0, -1, DatasetRequirements{}), Contains("mol.extxyz:12") && Contains("overlap"));
}

TEST_CASE("per-element reference energies: least squares recovers exact per-element energies", "[train][reference]") {
  Dataset ds;
  const std::map<int, double> e0{{1, -13.6}, {6, -1029.5}, {8, -2041.2}};
  std::mt19937_64 rng(2);
  std::uniform_int_distribution<int> cnt(0, 5);
  for (int k = 0; k < 12; ++k) {
    Structure s;
    double e = 0;
    for (int z : {1, 6, 8})
      for (int c = cnt(rng) + (z == 6 ? 1 : 0); c > 0; --c) {
        s.numbers.push_back(z);
        e += e0.at(z);
      }
    s.energy = e;
    ds.frames.push_back(s);
  }
  const SpeciesMap sp = species_of(ds);
  REQUIRE(sp.numbers == std::vector<int>{1, 6, 8});
  const auto ref = fit_reference_energies(ds, sp);
  CHECK(ref[0] == Approx(-13.6).epsilon(1e-9));
  CHECK(ref[1] == Approx(-1029.5).epsilon(1e-9));
  CHECK(ref[2] == Approx(-2041.2).epsilon(1e-9));
}

TEST_CASE("optimizers: one step of SGD (momentum), Adam and AdamW by hand", "[train][optimizer]") {
  hydragnn_test::ensure_kokkos();
  const double w0 = 0.5, g0 = 0.2, lr = 0.1, wd = 0.01;
  auto one = [&](OptimizerType t, double mom, int steps) {
    Optimizer<double, Exec> opt(t, 1, lr, wd, mom);
    Vec<double, M> p("p", 1), g("g", 1);
    p(0) = w0;
    g(0) = g0;
    for (int k = 0; k < steps; ++k) opt.step(Exec(), p, g);
    return p(0);
  };
  // SGD with momentum 0.9, two steps: buf1 = g', buf2 = 0.9 buf1 + g'' where g includes weight decay
  {
    const double ga = g0 + wd * w0, w1 = w0 - lr * ga;
    const double gb = g0 + wd * w1, w2 = w1 - lr * (0.9 * ga + gb);
    CHECK(one(OptimizerType::SGD, 0.9, 2) == Approx(w2).epsilon(1e-14));
  }
  // Adam (L2 in the gradient): first step moves by lr * sign(g) (bias-corrected m/sqrt(v) = 1)
  {
    const double ga = g0 + wd * w0;
    CHECK(one(OptimizerType::Adam, 0.0, 1) == Approx(w0 - lr * ga / (std::fabs(ga) + 1e-8)).epsilon(1e-12));
  }
  // AdamW: decoupled decay then the Adam step
  {
    const double w = w0 - lr * wd * w0;
    CHECK(one(OptimizerType::AdamW, 0.0, 1) == Approx(w - lr * g0 / (g0 + 1e-8)).epsilon(1e-12));
  }
}

namespace {
// n parameters through Optimizer::step in one buffer (host packs where the build has them, the tail one
// at a time) and each parameter alone in a buffer of one (always the scalar form): the same bits.
template <class T>
void check_optimizer_lanes(OptimizerType t, int frozen) {
  const int n = 37, steps = 3;
  Optimizer<T, Exec> all(t, n, 0.01, 0.02, 0.0);
  all.frozen = std::size_t(frozen);
  Vec<T, M> p("p", n), g("g", n);
  std::vector<T> p0(n), gk(n);
  for (int k = 0; k < n; ++k) {
    p0[k] = T(0.3 * std::sin(1.7 * k + 0.4));
    gk[k] = T(k % 5 == 0 ? 0.0 : 0.8 * std::cos(2.3 * k) * std::pow(10.0, double(k % 7) - 4.0));
    p(k) = p0[k];
    g(k) = gk[k];
  }
  for (int s = 0; s < steps; ++s) all.step(Exec(), p, g);
  for (int k = 0; k < n; ++k) {
    Optimizer<T, Exec> one(t, 1, 0.01, 0.02, 0.0);
    Vec<T, M> p1("p1", 1), g1("g1", 1);
    p1(0) = p0[k];
    g1(0) = gk[k];
    if (k >= frozen)
      for (int s = 0; s < steps; ++s) one.step(Exec(), p1, g1);
    INFO("parameter " << k);
    CHECK(std::memcmp(&p(k), &p1(0), sizeof(T)) == 0);
    if (k >= frozen) {
      CHECK(std::memcmp(&all.m(k), &one.m(0), sizeof(T)) == 0);
      CHECK(std::memcmp(&all.v(k), &one.v(0), sizeof(T)) == 0);
    } else {
      CHECK(p(k) == p0[k]);
    }
  }
  CHECK(p(n - 1) != p0[n - 1]);  // the tail moved
  CHECK(p(frozen + 1) != p0[frozen + 1]);
}
}  // namespace

TEST_CASE("optimizers: Adam and AdamW give each parameter the bits of its update alone (host packs, tail)",
          "[train][optimizer]") {
  hydragnn_test::ensure_kokkos();
  for (OptimizerType t : {OptimizerType::Adam, OptimizerType::AdamW})
    for (int frozen : {0, 3}) {
      check_optimizer_lanes<float>(t, frozen);
      check_optimizer_lanes<double>(t, frozen);
    }
}

TEST_CASE("ReduceLROnPlateau lowers the rate after `patience` bad epochs and respects min_lr", "[train][scheduler]") {
  PlateauScheduler s;
  s.factor = 0.5;
  s.patience = 2;
  s.min_lr = 0.3;
  double lr = 1.0;
  lr = s.update(1.0, lr);  // best
  CHECK(lr == 1.0);
  lr = s.update(1.0, lr);  // bad 1
  lr = s.update(1.1, lr);  // bad 2
  CHECK(lr == 1.0);
  lr = s.update(1.2, lr);  // bad 3 > patience -> reduce
  CHECK(lr == 0.5);
  lr = s.update(0.5, lr);  // improvement resets
  CHECK(lr == 0.5);
  for (int k = 0; k < 3; ++k) lr = s.update(0.9, lr);
  CHECK(lr == 0.3);  // clamped at min_lr
}

TEST_CASE("early stopping ends training after `patience` epochs without improvement", "[train][early]") {
  hydragnn_test::ensure_kokkos();
  using ModelT = Model<float, SchNetConv, Exec>;
  Config cfg = tiny_config("SchNet");
  cfg.training.num_epoch = 50;
  cfg.training.early_stopping = true;
  cfg.training.patience = 2;
  cfg.training.optimizer.learning_rate = 1e-9;  // nothing improves measurably after the first epoch
  cfg.training.scheduler = false;
  TrainOptions opt;
  opt.verbose = false;
  std::string log;
  opt.log = [&](const std::string& s) { log += s; };
  opt.output_dir = temp_dir("early");
  const TrainResult r = train<ModelT>(Exec(), cfg, tiny_dataset(400, 4), tiny_dataset(500, 2), opt);
  CHECK(r.state.epoch < 50);
  CHECK(r.state.stop_bad == 2);
  CHECK(log.find("early stopping") != std::string::npos);
}

TEST_CASE("names <-> enums (io/names.hpp) round-trip, unknown names are errors", "[io][names]") {
  for (Activation a : {Activation::Identity, Activation::ReLU, Activation::SiLU, Activation::ShiftedSoftplus,
                       Activation::Tanh, Activation::Sigmoid, Activation::Softplus})
    CHECK(parse_activation(activation_name(a)) == a);
  for (Pooling p : {Pooling::Mean, Pooling::Sum, Pooling::Max}) CHECK(parse_pooling(pooling_name(p)) == p);
  CHECK(parse_pooling("add") == Pooling::Sum);
  CHECK(parse_optimizer("adamw") == OptimizerType::AdamW);
  CHECK_THROWS_AS(parse_activation("gelu"), std::invalid_argument);
  CHECK_THROWS_AS(parse_pooling("median"), std::invalid_argument);
  CHECK_THROWS_AS(parse_optimizer("lbfgs"), std::invalid_argument);
}

TEST_CASE("count_labels counts energy, forces, stress and head labels per frame", "[train][labels]") {
  Dataset ds;
  for (int k = 0; k < 5; ++k) {
    Structure f = hydragnn_test::random_structure(k, 4, {6, 14}, k % 2 == 0);
    f.energy = -1.0 * k;
    f.forces.assign(4, Vec3{});
    ds.frames.push_back(f);
  }
  ds.frames[0].energy.reset();
  ds.frames[1].energy.reset();
  ds.frames[2].forces.clear();
  ds.frames[3].info["gap"] = "1.5";
  ds.frames[4].arrays["charge"] = std::vector<double>(4, 0.1);
  ds.frames[4].array_cols["charge"] = 1;
  const LabelCounts c = count_labels(ds, {HeadDef{"gap", false, 1, 1.0}, HeadDef{"charge", true, 1, 1.0}});
  CHECK(c.frames == 5);
  CHECK(c.energy == 3);
  CHECK(c.forces == 4);
  CHECK(c.heads == std::vector<std::size_t>{1, 1});
  CHECK(c.any());
  Dataset bare;
  bare.frames.push_back(ds.frames[0]);
  bare.frames[0].forces.clear();
  bare.frames[0].stress.reset();
  CHECK_FALSE(count_labels(bare).any());
}

namespace {
using hydragnn_test::fd_loss_gradient;

/// A small SchNet (double) with a graph head "gap" and a node head "q" (2 columns), two frames with
/// energies, forces and both heads labelled; errors of both signs above and below 1 (smooth_l1's kink).
struct LossFixture {
  Model<double, SchNetConv, Exec> model;
  std::vector<Structure> frames;
  Batch<M> batch;
  explicit LossFixture(bool energy, bool variance) {
    ModelSpec s;
    s.hidden_dim = 6;
    s.num_conv_layers = 2;
    s.cutoff = 3.0;
    s.energy = energy;
    s.branches[0].energy_head_dims = {5};
    s.branches[0].graph_head_dims = {4};
    s.branches[0].node_head_dims = {4};
    s.branches[0].graph_dim_sharedlayers = 4;
    s.species.numbers = {1, 8};
    s.ref_energy = {0.0, 0.0};
    s.heads = {HeadDef{"gap", false, 1, 1.0}, HeadDef{"q", true, 2, 1.0}};
    s.head_variance = variance;
    SchNetOptions o;
    o.num_gaussians = 6;
    o.num_filters = 5;
    model = Model<double, SchNetConv, Exec>(s, o);
    model.initialize(3);
    std::mt19937_64 rng(8);
    std::normal_distribution<double> nd(0.0, 1.2);
    for (int f = 0; f < 2; ++f) {
      Structure st = hydragnn_test::random_structure(40 + f, 5, {1, 8}, false, 4.0, 1.0);
      st.energy = nd(rng);
      st.forces.clear();
      for (std::size_t i = 0; i < st.size(); ++i) st.forces.push_back(Vec3{nd(rng), nd(rng), nd(rng)});
      st.info["gap"] = std::to_string(nd(rng));
      std::vector<double> q;
      for (std::size_t i = 0; i < 2 * st.size(); ++i) q.push_back(nd(rng));
      st.arrays["q"] = q;
      st.array_cols["q"] = 2;
      frames.push_back(st);
    }
    batch = make_batch<M>(frames, s.cutoff, -1, s.species, s.heads);
  }
  /// The targets of head k, flattened as its prediction (G x dim or N x dim).
  std::vector<double> head_targets(int k) const {
    std::vector<double> t;
    for (const auto& st : frames)
      if (k == 0)
        t.push_back(std::stod(st.info.at("gap")));
      else
        t.insert(t.end(), st.arrays.at("q").begin(), st.arrays.at("q").end());
    return t;
  }
};

double element_loss(LossKind k, double d) {
  if (k == LossKind::MAE) return std::fabs(d);
  if (k == LossKind::SmoothL1) return std::fabs(d) < 1 ? 0.5 * d * d : std::fabs(d) - 0.5;
  return d * d;
}
/// One term, as HydraGNN's loss functions reduce it: mean l(d) (rmse: sqrt(mean d^2)).
double term(LossKind k, const std::vector<double>& d) {
  double s = 0;
  for (double x : d) s += k == LossKind::RMSE ? x * x : element_loss(k, x);
  s /= double(d.size());
  return k == LossKind::RMSE ? std::sqrt(s) : s;
}
}  // namespace

TEST_CASE("loss functions mse, mae, smooth_l1, rmse equal their formulas, with exact gradients", "[train][loss]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  LossFixture fx(true, false);
  LossSpec w;
  w.energy = 0.7;
  w.energy_peratom = 0.4;
  w.force = 1.3;
  w.heads = {0.6, 0.9};
  for (LossKind kind : {LossKind::MSE, LossKind::MAE, LossKind::SmoothL1, LossKind::RMSE}) {
    INFO("kind " << int(kind));
    w.kind = kind;
    Vec<double, M> grad("grad", fx.model.num_params());
    const LossResult r = loss_and_grad(exec, fx.model, fx.batch, w, grad, nullptr, true);
    std::vector<double> de, depa, df, dh0, dh1;
    std::size_t atom = 0;
    bool above = false, below = false;
    for (std::size_t g = 0; g < fx.frames.size(); ++g) {
      const Structure& st = fx.frames[g];
      de.push_back(r.pred.energy[g] - *st.energy);
      depa.push_back(de.back() / double(st.size()));
      for (std::size_t i = 0; i < st.size(); ++i, ++atom)
        for (int a = 0; a < 3; ++a) df.push_back(r.pred.forces[3 * atom + a] - st.forces[i][a]);
    }
    const auto t0 = fx.head_targets(0), t1 = fx.head_targets(1);
    for (std::size_t q = 0; q < t0.size(); ++q) dh0.push_back(r.pred.heads[0][q] - t0[q]);
    for (std::size_t q = 0; q < t1.size(); ++q) dh1.push_back(r.pred.heads[1][q] - t1[q]);
    for (double d : df) (std::fabs(d) < 1 ? below : above) = true;
    CHECK((above && below));  // smooth_l1 sees both branches
    const double expect = w.energy * term(kind, de) + w.energy_peratom * term(kind, depa) + w.force * term(kind, df) +
                          w.heads[0] * term(kind, dh0) + w.heads[1] * term(kind, dh1);
    CHECK(r.loss == Approx(expect).epsilon(1e-12));
    // the gradient (force training: the dual pass) against fourth-order central differences
    for (std::size_t k = 0; k < fx.model.num_params(); k += 17) {
      const double fd = fd_loss_gradient(exec, fx.model, fx.batch, w, k, 1e-5);
      INFO("parameter " << k);
      CHECK(grad(k) == Approx(fd).epsilon(1e-6).margin(1e-9));
    }
  }
}

TEST_CASE("GaussianNLL: heads with a variance output, loss and gradient against torch's formula", "[train][loss]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  LossFixture fx(false, true);
  LossSpec w;
  w.kind = LossKind::GaussianNLL;
  w.heads = {0.6, 0.9};
  Vec<double, M> grad("grad", fx.model.num_params());
  const LossResult r = loss_and_grad(exec, fx.model, fx.batch, w, grad, nullptr, true);
  // each head's rows are [mu | s] (twice the head's dim), var = s^2 clamped to 1e-6
  double expect = 0;
  for (int k = 0; k < 2; ++k) {
    const int dim = k == 0 ? 1 : 2;
    const auto t = fx.head_targets(k);
    const auto& y = r.pred.heads[k];
    REQUIRE(y.size() == 2 * t.size());
    double s = 0;
    for (std::size_t q = 0; q < t.size(); ++q) {
      const std::size_t row = q / dim, c = q % dim;
      const double mu = y[row * 2 * dim + c], sd = y[row * 2 * dim + dim + c];
      REQUIRE(sd * sd > 1e-6);  // the smooth branch (the finite differences below need it)
      const double v = std::max(sd * sd, 1e-6), d = mu - t[q];
      s += 0.5 * (std::log(v) + d * d / v);
    }
    expect += w.heads[k] * s / double(t.size());
  }
  CHECK(r.loss == Approx(expect).epsilon(1e-12));
  for (std::size_t k = 0; k < fx.model.num_params(); k += 7) {
    // the loss is ~50 (d^2 / v with small v): a larger step keeps round-off down
    const double fd = fd_loss_gradient(exec, fx.model, fx.batch, w, k, 1e-4);
    INFO("parameter " << k);
    CHECK(grad(k) == Approx(fd).epsilon(1e-6).margin(1e-9));
  }
  // a conservative energy term cannot use it
  LossFixture fe(true, true);
  w.energy = 1.0;
  CHECK_THROWS_WITH(loss_and_grad(exec, fe.model, fe.batch, w, grad), Catch::Contains("GaussianNLL"));
}

TEST_CASE("task_weights are normalised by their sum as HydraGNN's Base does", "[train][loss][config]") {
  const Config c = parse_config(R"({"NeuralNetwork": {
    "Architecture": {"mpnn_type": "SchNet", "enable_interatomic_potential": false, "task_weights": [1.0, 3.0],
                     "output_heads": {"graph": {"num_sharedlayers": 1, "dim_sharedlayers": 4, "num_headlayers": 1, "dim_headlayers": [4]}}},
    "Variables_of_interest": {"output_names": ["a", "b"], "type": ["graph", "graph"], "output_dim": [1, 1]},
    "Training": {"loss_function_type": "smooth_l1"}}})",
                                "tw");
  const LossSpec w = loss_from_config(c, spec_from_config(c));
  REQUIRE(w.heads.size() == 2);
  CHECK(w.heads[0] == Approx(0.25));
  CHECK(w.heads[1] == Approx(0.75));
  CHECK(w.kind == LossKind::SmoothL1);
  CHECK_THROWS_WITH(parse_config(R"({"NeuralNetwork": {"Architecture": {"task_weights": [0.0]}}})", "tw0"),
                    Catch::Contains("task_weights") && Catch::Contains("sum to 0"));
  CHECK_THROWS_WITH(parse_config(R"({"NeuralNetwork": {"Training": {"loss_function_type": "GaussianNLLLoss"}}})", "nll"),
                    Catch::Contains("GaussianNLLLoss") && Catch::Contains("enable_interatomic_potential"));
  const Config nll = parse_config(R"({"NeuralNetwork": {
    "Architecture": {"enable_interatomic_potential": false},
    "Variables_of_interest": {"output_names": ["gap"], "type": ["graph"], "output_dim": [1]},
    "Training": {"loss_function_type": "gaussiannllloss"}}})",
                                  "nll2");
  CHECK(nll.training.loss_function_type == "GaussianNLLLoss");
  CHECK(spec_from_config(nll).head_variance);
}

TEST_CASE("fine-tuning: start from a checkpoint, freeze the convolutions, add a head", "[train][finetune][checkpoint]") {
  hydragnn_test::ensure_kokkos();
  using ModelT = Model<float, SchNetConv, Exec>;
  Exec exec;
  Dataset train_ds = tiny_dataset(100, 7), val_ds = tiny_dataset(200, 3);
  for (Dataset* ds : {&train_ds, &val_ds})
    for (auto& f : ds->frames) f.info["gap"] = std::to_string(0.3 + 0.05 * f.positions[0][0]);
  const Config base = tiny_config("SchNet");
  TrainOptions opt;
  opt.verbose = false;
  opt.log = [](const std::string&) {};
  opt.output_dir = temp_dir("finetune_a");
  train<ModelT>(exec, base, train_ds, val_ds, opt);
  const std::string trained = opt.output_dir;

  // the trained trunk, a new graph head, convolutions frozen; startfrom a run directory
  Config ft = base;
  ft.arch.heads.push_back(HeadSpec{"gap", "graph", 1, 1.0});
  ft.arch.freeze_conv_layers = true;
  ft.training.continue_run = true;
  ft.training.startfrom = trained;
  std::string log;
  TrainOptions o2 = opt;
  o2.output_dir = temp_dir("finetune_b");
  o2.log = [&](const std::string& s) { log += s; };
  train<ModelT>(exec, ft, train_ds, val_ds, o2);
  CHECK_THAT(log, Catch::Contains("parameter blocks loaded") && Catch::Contains("new: ") && Catch::Contains("heads_NN.1.branch-0"));

  const CheckpointData a = read_checkpoint(trained + "/checkpoint.hgnn");
  const CheckpointData b = read_checkpoint(o2.output_dir + "/checkpoint.hgnn");
  const ModelT ma = model_from_checkpoint<ModelT>(a, "a"), mb = model_from_checkpoint<ModelT>(b, "b");
  std::map<std::string, NamedParam> in_a;
  for (const auto& np : ma.named_parameters()) in_a[np.name] = np;
  int trunk = 0, heads_moved = 0, new_blocks = 0;
  for (const auto& np : mb.named_parameters()) {
    const bool is_trunk = np.offset < mb.num_trunk_params();
    auto it = in_a.find(np.name);
    if (it == in_a.end()) {
      ++new_blocks;
      CHECK(!is_trunk);
      continue;
    }
    bool same = true;
    for (std::size_t k = 0; k < np.size(); ++k) same = same && b.params[np.offset + k] == a.params[it->second.offset + k];
    INFO(np.name);
    if (is_trunk) {
      CHECK(same);  // frozen: bitwise unchanged
      ++trunk;
    } else if (!same) {
      ++heads_moved;
    }
  }
  CHECK(trunk > 4);
  CHECK(heads_moved > 0);  // the energy head kept training
  CHECK(new_blocks > 0);   // the new head and the graph heads' shared layers

  // without freezing, the same start trains the convolutions too
  Config thaw = ft;
  thaw.arch.freeze_conv_layers = false;
  TrainOptions o3 = opt;
  o3.output_dir = temp_dir("finetune_c");
  train<ModelT>(exec, thaw, train_ds, val_ds, o3);
  const CheckpointData c = read_checkpoint(o3.output_dir + "/checkpoint.hgnn");
  bool trunk_moved = false;
  for (std::size_t k = 0; k < mb.num_trunk_params(); ++k) trunk_moved = trunk_moved || c.params[k] != a.params[k];
  CHECK(trunk_moved);

  // continuing the same architecture loads every block (and the optimizer state)
  Config same = base;
  same.training.continue_run = true;
  same.training.startfrom = trained + "/checkpoint.hgnn";
  same.training.num_epoch = 0;
  std::string log2;
  TrainOptions o4 = opt;
  o4.output_dir = temp_dir("finetune_d");
  o4.log = [&](const std::string& s) { log2 += s; };
  train<ModelT>(exec, same, train_ds, val_ds, o4);
  CHECK(read_checkpoint(o4.output_dir + "/checkpoint.hgnn").params == a.params);
  CHECK_THAT(log2, !Catch::Contains("new:"));

  // bad starts name the key
  Config missing = ft;
  missing.training.startfrom = trained + "/no_such.hgnn";
  CHECK_THROWS_WITH(train<ModelT>(exec, missing, train_ds, val_ds, o2), Catch::Contains("NeuralNetwork.Training.startfrom"));
  Config other = tiny_config("EGNN");
  other.training.continue_run = true;
  other.training.startfrom = trained;
  using EgnnModel = Model<float, EGNNConv, Exec>;
  CHECK_THROWS_WITH(train<EgnnModel>(exec, other, train_ds, val_ds, o2), Catch::Contains("startfrom") && Catch::Contains("SchNet"));
  for (const auto& d : {trained, o2.output_dir, o3.output_dir, o4.output_dir}) std::filesystem::remove_all(d);
}

TEST_CASE("Training.continue / startfrom and freeze_conv_layers are parsed and round-trip", "[config][finetune]") {
  const Config c = parse_config(R"({"NeuralNetwork": {"Architecture": {"freeze_conv_layers": true},
    "Training": {"continue": 1, "startfrom": "logs/run"}}})",
                                "ft");
  CHECK(c.arch.freeze_conv_layers);
  CHECK(c.training.continue_run);
  CHECK(c.training.startfrom == "logs/run");
  CHECK(parse_config(to_json(c), "ft2").training == c.training);
  CHECK(parse_config(to_json(c), "ft2").arch == c.arch);
  CHECK_THROWS_WITH(parse_config(R"({"NeuralNetwork": {"Training": {"continue": true}}})", "ft3"),
                    Catch::Contains("startfrom"));
}

TEST_CASE("pooled energy head (HydraGNN's graph head named energy): forces and force-training gradient exact",
          "[model][heads][energy]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  ModelSpec s;
  s.hidden_dim = 6;
  s.num_conv_layers = 2;
  s.cutoff = 3.0;
  s.energy_pooled = true;
  s.pooling = Pooling::Sum;
  s.branches[0].graph_num_sharedlayers = 1;
  s.branches[0].graph_dim_sharedlayers = 5;
  s.branches[0].graph_head_dims = {4};
  s.species.numbers = {1, 8};
  s.ref_energy = {-0.3, -2.0};
  s.energy_scale = 0.8;
  s.energy_shift = 0.05;
  SchNetOptions o;
  o.num_gaussians = 6;
  o.num_filters = 5;
  Model<double, SchNetConv, Exec> model(s, o);
  model.initialize(5);
  std::vector<std::string> names;
  for (const auto& np : model.named_parameters()) names.push_back(np.name);
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  CHECK(has("graph_shared.branch-0.0.weight"));
  CHECK(has("heads_NN.0.branch-0.0.weight"));
  CHECK_FALSE(has("heads_NN.0.branch-0.mlp.0.0.weight"));

  std::vector<Structure> frames;
  std::mt19937_64 rng(12);
  std::normal_distribution<double> nd(0.0, 0.7);
  for (int f = 0; f < 2; ++f) {
    Structure st = hydragnn_test::random_structure(70 + f, 5, {1, 8}, f == 1, 4.0, 1.0);
    st.energy = -4.0 + nd(rng);
    st.forces.clear();
    for (std::size_t i = 0; i < st.size(); ++i) st.forces.push_back(Vec3{nd(rng), nd(rng), nd(rng)});
    frames.push_back(st);
  }
  auto batch_of_frames = [&](const std::vector<Structure>& fr) { return make_batch<M>(fr, s.cutoff, -1, s.species); };
  const auto batch = batch_of_frames(frames);
  const Prediction p = predict(exec, model, batch, true);
  // the energy is scale * head(sum of features) + per-atom constants: forces are its exact derivative
  std::size_t atom = 0;
  for (std::size_t g = 0; g < frames.size(); ++g)
    for (std::size_t i = 0; i < frames[g].size(); ++i, ++atom)
      for (int a = 0; a < 3; ++a) {
        auto E = [&](double h) {
          std::vector<Structure> fr = frames;
          fr[g].positions[i][a] += h;
          return predict(exec, model, batch_of_frames(fr), false).energy[g];
        };
        const double h = 1e-5, fd = -(8 * (E(h) - E(-h)) - (E(2 * h) - E(-2 * h))) / (12 * h);
        CHECK(p.forces[3 * atom + a] == Approx(fd).epsilon(1e-7).margin(1e-10));
      }
  // force training through the pooled head: the dual pass's gradient against finite differences
  LossSpec w;
  w.energy = 1.0;
  w.force = 2.0;
  Vec<double, M> grad("grad", model.num_params());
  loss_and_grad(exec, model, batch, w, grad);
  for (std::size_t k = 0; k < model.num_params(); k += 11) {
    const double fd = fd_loss_gradient(exec, model, batch, w, k, 1e-5);
    INFO("parameter " << k);
    CHECK(grad(k) == Approx(fd).epsilon(1e-6).margin(1e-9));
  }
}

TEST_CASE("energy head type: node = per atom, graph = pooled (graph_pooling add required), trained and checkpointed",
          "[model][heads][energy][config]") {
  hydragnn_test::ensure_kokkos();
  auto cfg_with = [](const std::string& type, const std::string& pooling) {
    return parse_config(R"({"NeuralNetwork": {"Architecture": {"mpnn_type": "SchNet", "radius": 3.0, "hidden_dim": 8,
      "num_conv_layers": 2, "num_gaussians": 8, "num_filters": 8, "graph_pooling": ")" + pooling + R"(",
      "output_heads": {"graph": {"num_sharedlayers": 1, "dim_sharedlayers": 8, "num_headlayers": 1, "dim_headlayers": [8]},
                       "node": {"num_headlayers": 1, "dim_headlayers": [8]}},
      "enable_interatomic_potential": true, "energy_weight": 1.0, "force_weight": 1.0},
      "Variables_of_interest": {"output_names": ["energy"], "type": [")" + type + R"("], "output_dim": [1]},
      "Training": {"num_epoch": 2, "batch_size": 3, "Optimizer": {"type": "AdamW", "learning_rate": 0.003}, "seed": 4}}})",
                        "energy_head");
  };
  CHECK_FALSE(spec_from_config(cfg_with("node", "mean")).energy_pooled);
  CHECK(spec_from_config(cfg_with("graph", "add")).energy_pooled);
  CHECK_THROWS_WITH(cfg_with("graph", "mean"), Catch::Contains("NeuralNetwork.Architecture.graph_pooling") &&
                                                   Catch::Contains("\"add\""));
  // a pooled energy trains with forces and survives its checkpoint
  const Config c = cfg_with("graph", "add");
  const Dataset train_ds = tiny_dataset(300, 6), val_ds = tiny_dataset(400, 3);
  TrainOptions opt;
  opt.verbose = false;
  opt.log = [](const std::string&) {};
  opt.output_dir = temp_dir("pooled_energy");
  Exec exec;
  using ModelT = Model<float, SchNetConv, Exec>;
  const TrainResult r = train<ModelT>(exec, c, train_ds, val_ds, opt);
  CHECK(std::isfinite(r.last_val.loss));
  const CheckpointData ck = read_checkpoint(opt.output_dir + "/checkpoint.hgnn");
  CHECK(ck.spec.energy_pooled);
  const ModelT m = model_from_checkpoint<ModelT>(ck, "pooled");
  const auto b = make_batch<M>(val_ds.frames, m.spec().cutoff, -1, m.spec().species);
  CHECK(std::isfinite(predict(exec, m, b, true).energy[0]));
  std::filesystem::remove_all(opt.output_dir);
}

TEST_CASE("GAT attention dropout: training-mode passes follow the seed, evaluation does not, gradient exact",
          "[model][gat][dropout]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  ModelSpec s;
  s.hidden_dim = 4;
  s.num_conv_layers = 2;
  s.cutoff = 3.0;
  s.species.numbers = {1, 8};
  s.ref_energy = {0.0, 0.0};
  GATOptions o;  // HydraGNN's dropout 0.25
  o.gat_heads = 2;
  o.edge_features = {"length"};
  o.edge_length_scale = 3.0;
  REQUIRE(o.gat_dropout == 0.25);
  Model<double, GATConv, Exec> model(s, o);
  model.initialize(3);
  std::vector<Structure> frames;
  for (int f = 0; f < 3; ++f) {
    Structure st = hydragnn_test::random_structure(500 + f, 5, {1, 8}, f == 1, 4.0, 1.0);
    st.energy = -2.0 + 0.3 * f;
    for (std::size_t i = 0; i < st.size(); ++i) st.forces.push_back(Vec3{0.1 * f, -0.2, 0.05 * double(i)});
    frames.push_back(st);
  }
  const auto batch = make_batch<M>(frames, s.cutoff, -1, s.species);
  LossSpec w;
  w.energy = 1.0;
  w.force = 1.0;
  auto loss = [&](std::uint64_t seed) {
    model.set_random_seed(seed);
    return loss_and_grad(exec, model, batch, w, Vec<double, M>()).loss;
  };
  // evaluation: no dropout, the seed is irrelevant
  CHECK(loss(1) == loss(2));
  model.set_training(true);
  const double l1 = loss(1), l1_again = loss(1), l2 = loss(2);
  CHECK(l1 == l1_again);  // the masks are a function of the seed
  CHECK(l1 != l2);        // and change with it
  // the gradient of a training-mode step (masks fixed by its seed) against finite differences
  model.set_random_seed(1);
  Vec<double, M> grad("grad", model.num_params());
  loss_and_grad(exec, model, batch, w, grad);
  int nonzero = 0;
  for (std::size_t k = 0; k < model.num_params(); k += 5) {
    const double fd = fd_loss_gradient(exec, model, batch, w, k, 3e-6);
    INFO("parameter " << k);
    CHECK(grad(k) == Approx(fd).epsilon(1e-5).margin(1e-8));
    nonzero += std::fabs(fd) > 1e-6;
  }
  CHECK(nonzero > 10);
  // without dropout a training-mode pass does not depend on the seed
  GATOptions o0 = o;
  o0.gat_dropout = 0.0;
  Model<double, GATConv, Exec> m0(s, o0);
  m0.initialize(3);
  m0.set_training(true);
  m0.set_random_seed(1);
  const double a = loss_and_grad(exec, m0, batch, w, Vec<double, M>()).loss;
  m0.set_random_seed(2);
  CHECK(loss_and_grad(exec, m0, batch, w, Vec<double, M>()).loss == a);
}

TEMPLATE_LIST_TEST_CASE("each gradient stage is final when the backward reports it (overlapped rank sums)",
                        "[model][data_parallel]", conv_registry) {
  // DataParallelStep starts summing a block of the gradient over the ranks when Model::backward
  // reports its stage (the heads first, then the trunk's layers from the last one), while the backward
  // goes on: nothing after the report may write the block. Checked for the dual (force training) and
  // the real (energy only) backward, with mlp heads and conv node heads, in evaluation and training mode.
  hydragnn_test::ensure_kokkos();
  Exec exec;
  const Dataset ds = tiny_dataset(31, 3);
  for (const bool conv_head : {false, true}) {
    if (conv_head && std::is_same<TestType, CGCNNConv>::value) continue;  // refused (test_conv_head.cpp)
    ModelSpec s = spec_for(TestType::name);
    s.energy = true;
    s.node_conv = conv_head;
    if (conv_head) s.branches[0].node_head_dims = {6};
    Model<double, TestType, Exec> model(s, hydragnn_test::test_options<TestType>());
    model.initialize(5);
    auto b = make_batch<M>(ds.frames, s.cutoff, -1, s.species, {}, conv_traits<TestType>::needs_triplets);
    const std::size_t N = model.num_params(), split = model.num_trunk_params();
    const auto& stages = model.gradient_stages();
    const int L = s.num_conv_layers;
    // the heads, then one stage per trunk layer, each with parameters, no two overlapping; the embedding
    // in none
    REQUIRE(int(stages.size()) == L + 1);
    REQUIRE(stages[0].size() == 1);
    CHECK(stages[0][0] == std::make_pair(split, N));
    std::vector<char> owner(N, 0);
    std::size_t staged = 0;
    for (const auto& st : stages) {
      CHECK(!st.empty());
      for (const auto& r : st) {
        REQUIRE(r.first < r.second);
        REQUIRE(r.second <= N);
        for (std::size_t k = r.first; k < r.second; ++k) CHECK(owner[k]++ == 0);
        staged += r.second - r.first;
      }
    }
    CHECK(staged < N);
    for (const bool training : {false, true}) {
      model.set_training(training);
      for (const double fw : {0.0, 1.0}) {
        if (fw > 0 && !model.uses_positions()) continue;
        DYNAMIC_SECTION((conv_head ? "conv" : "mlp") << " heads, " << (training ? "training" : "evaluation") << ", force weight " << fw) {
          LossSpec w;
          w.energy = 1.0;
          w.force = fw;
          Vec<double, M> g("g", N);
          std::vector<std::vector<double>> at_report(stages.size());
          std::vector<int> order;
          const std::function<void(int)> stage_done = [&](int k) {
            order.push_back(k);
            exec.fence();
            for (const auto& r : stages[std::size_t(k)]) at_report[std::size_t(k)].insert(at_report[std::size_t(k)].end(), g.data() + r.first, g.data() + r.second);
          };
          loss_and_grad(exec, model, b, w, g, nullptr, false, &stage_done);
          exec.fence();
          REQUIRE(int(order.size()) == L + 1);
          for (int k = 0; k <= L; ++k) {
            CHECK(order[std::size_t(k)] == k);
            std::vector<double> now;
            for (const auto& r : stages[std::size_t(k)]) now.insert(now.end(), g.data() + r.first, g.data() + r.second);
            INFO("stage " << k);
            CHECK(std::memcmp(at_report[std::size_t(k)].data(), now.data(), now.size() * sizeof(double)) == 0);
            double norm = 0;
            for (double x : now) norm += x * x;
            if (k == 0) CHECK(norm > 0);
          }
        }
      }
      model.take_batch_statistics();
    }
  }
}

/// A geometry-only forward (Forward::geometry_only) against the full pass on batch b: energy, forces
/// and stress bitwise equal, forces not all zero, and a parameter gradient of it refused.
/// paths(f_full, f_geo) checks that the fused path ran in f_geo only.
template <class T, class Conv, class Paths>
void check_geometry_only_pass(const Exec& exec, Model<T, Conv, Exec>& model, const Batch<M>& b, const Paths& paths) {
  Workspace<M> ws_full, ws_geo;
  const auto w = model.weights(exec);
  typename Model<T, Conv, Exec>::template Forward<T> f_full, f_geo;
  f_geo.geometry_only = true;
  const auto full = energy_forces(exec, model, w, b, f_full, ws_full, true);
  const auto geo = energy_forces(exec, model, w, b, f_geo, ws_geo, true);
  paths(f_full, f_geo);
  auto same = [](const auto& x, const auto& y) {
    auto hx = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    auto hy = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), y);
    REQUIRE(hx.span() == hy.span());
    return std::memcmp(hx.data(), hy.data(), hx.span() * sizeof(double)) == 0;
  };
  CHECK(same(full.energy, geo.energy));
  CHECK(same(full.forces, geo.forces));
  CHECK(same(full.stress, geo.stress));
  // the forces are not trivially equal: some are non-zero
  auto hf = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), geo.forces);
  double fmax = 0;
  for (std::size_t i = 0; i < hf.span(); ++i) fmax = std::max(fmax, std::abs(hf.data()[i]));
  CHECK(fmax > 0);
  // a parameter gradient needs the activations the geometry-only pass did not keep
  auto ebar = ws_geo.template vec<T>("test.ebar", 0, b.num_graphs);
  Kokkos::deep_copy(ebar, T(1));
  Vec<T, M> grad("grad", model.num_params());
  CHECK_THROWS_WITH(model.template backward<T>(exec, w, b, f_geo, ebar, {}, grad, ws_geo),
                    Catch::Matchers::Contains("geometry_only"));
}

/// A model of 3 layers of width `hidden`, cutoff 3, species H and O.
ModelSpec three_layer_spec(int hidden) {
  ModelSpec s;
  s.hidden_dim = hidden;
  s.num_conv_layers = 3;
  s.cutoff = 3.0;
  s.species.numbers = {1, 8};
  return s;
}

/// check_geometry_only_pass for models of conv Conv (options o, 3 layers, H and O) of widths 8 and 40,
/// in double and float, on three random frames (one molecule, two periodic) of `atoms` atoms.
template <class Conv, class Options, class Paths>
void check_geometry_only_passes(const Options& o, std::uint64_t seed, int atoms, double box, const Paths& paths) {
  Exec exec;
  auto run = [&](auto real_tag, int hidden) {
    using T = decltype(real_tag);
    const ModelSpec s = three_layer_spec(hidden);
    Model<T, Conv, Exec> model(s, o);
    model.initialize(seed);
    std::vector<Structure> frames;
    for (int f = 0; f < 3; ++f)
      frames.push_back(hydragnn_test::random_structure(seed + 50 + f, atoms, {1, 8}, f != 1, box, 1.0));
    const auto b = make_batch<M>(frames, s.cutoff, -1, s.species);
    INFO("hidden " << hidden << ", " << sizeof(T) << "-byte reals");
    check_geometry_only_pass(exec, model, b, [&](const auto& f_full, const auto& f_geo) { paths(b, f_full, f_geo); });
  };
  run(double(), 8);
  run(double(), 40);
  run(float(), 8);
  run(float(), 40);
}

TEST_CASE("EGNN geometry-only forward (ReLU masks, no stored activations) gives the full pass's energy, forces and "
          "stress bitwise, a parameter gradient of it is refused",
          "[model][egnn][fused]") {
  hydragnn_test::ensure_kokkos();
  EGNNOptions o;
  o.equivariance = true;  // coordinate MLPs in the first two layers, none in the last
  check_geometry_only_passes<EGNNConv>(o, 40, 9, 4.0, [](const auto& b, const auto& f_full, const auto& f_geo) {
    REQUIRE(b.num_edges > 2 * kernels::egnn_edge_mlp_chunk_rows);       // several chunks, a partial last one
    REQUIRE(f_geo.layer[0].k1.extent(0) == std::size_t(b.num_edges));  // the fused path ran
    REQUIRE(f_geo.layer[0].a1.extent(0) == 0);                        // and kept no activation
    REQUIRE(f_full.layer[0].k1.extent(0) == 0);
  });
}

TEST_CASE("DimeNet's backward without a parameter gradient (lin_sbf1's input from the triplets, one product for every "
          "layer) gives dL/dr bitwise as the backward with one",
          "[model][dimenet][fused]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  auto run = [&](auto real_tag, int hidden) {
    using T = decltype(real_tag);
    const ModelSpec s = three_layer_spec(hidden);
    DimeNetOptions o;
    o.int_emb_size = 16;
    o.out_emb_size = 24;
    Model<T, DimeNetConv, Exec> model(s, o);
    model.initialize(61);
    std::vector<Structure> frames;
    for (int f = 0; f < 3; ++f)
      frames.push_back(hydragnn_test::random_structure(111 + f, 9, {1, 8}, f != 1, 4.0, 1.0));
    const auto b = make_batch<M>(frames, s.cutoff, -1, s.species, {}, true);
    INFO("hidden " << hidden << ", " << sizeof(T) << "-byte reals");
    REQUIRE(b.triplets.num_triplets % 8 != 0);  // a last, partial group of the fused kernel's triplets
    Workspace<M> ws0, ws1;
    const auto w = model.weights(exec);
    typename Model<T, DimeNetConv, Exec>::template Forward<T> f;
    auto r = model.template edge_vectors<T>(exec, b, ws0);
    model.template forward<T>(exec, w, b, r, f, ws0);
    Vec<T, M> ebar("ebar", b.num_graphs);
    Kokkos::deep_copy(ebar, T(1));
    Vec<T, M> grad("grad", model.num_params());
    const auto rbar_params = model.template backward<T>(exec, w, b, f, ebar, {}, grad, ws1);  // the stored sbar path
    const auto rbar_geo = model.template backward<T>(exec, w, b, f, ebar, {}, Vec<T, M>(), ws0);
    auto h0 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rbar_params);
    auto h1 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rbar_geo);
    REQUIRE(h0.span() == h1.span());
    CHECK(std::memcmp(h0.data(), h1.data(), h0.span() * sizeof(T)) == 0);
    double rmax = 0;
    for (std::size_t i = 0; i < h1.span(); ++i) rmax = std::max(rmax, std::abs(double(h1.data()[i])));
    CHECK(rmax > 0);
  };
  run(double(), 8);
  run(float(), 8);
  run(float(), 40);
}

TEST_CASE("SchNet geometry-only forward (the filter in chunks, no stored activations) gives the full pass's energy, "
          "forces and stress bitwise, a parameter gradient of it is refused",
          "[model][schnet][fused]") {
  hydragnn_test::ensure_kokkos();
  SchNetOptions o;
  o.num_gaussians = 12;
  check_geometry_only_passes<SchNetConv>(o, 23, 30, 6.0, [](const auto& b, const auto& f_full, const auto& f_geo) {
    REQUIRE(b.num_pairs > 2 * kernels::detail::dense_chunk_rows);  // several chunks of filter rows
    REQUIRE(2 * b.num_pairs == b.num_edges);                        // one filter row per pair of edges
    REQUIRE(f_geo.layer[0].filter_fused);                           // the fused path ran
    REQUIRE(f_geo.layer[0].filter.input[1].extent(0) == 0);         // and kept no activation
    REQUIRE(f_geo.layer[0].W.extent(0) == std::size_t(b.num_pairs));
    REQUIRE_FALSE(f_full.layer[0].filter_fused);
  });
}
