// SPDX-License-Identifier: BSD-3-Clause
// Finite-difference checks (double) of every layer's hand-written backward, of forces and stress,
// and of the dual-number (forward-over-reverse) parameter gradient of a force loss.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

#include <hydragnn/autodiff/potential.hpp>
#include <hydragnn/conv/egnn.hpp>
#include <hydragnn/conv/schnet.hpp>
#include <hydragnn/graph/batch_builder.hpp>

#include "model_test_options.hpp"
#include "test_helpers.hpp"

using namespace hydragnn;
using Exec = Kokkos::DefaultHostExecutionSpace;
using M = Exec::memory_space;
using D = Dual<double>;

namespace {

template <class F>
double central(F&& f, double h) { return (f(h) - f(-h)) / (2 * h); }

Mat<double, M> random_mat(std::uint64_t seed, int n, int c, double scale = 1.0) {
  Mat<double, M> X("X", n, c);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, scale);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < c; ++j) X(i, j) = nd(rng);
  return X;
}

double dot(const Mat<double, M>& a, const Mat<double, M>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.extent(0); ++i)
    for (std::size_t j = 0; j < a.extent(1); ++j) s += a(i, j) * b(i, j);
  return s;
}

}  // namespace

TEST_CASE("activations: f' and f'' (through duals) match finite differences", "[layers]") {
  for (Activation a : {Activation::SiLU, Activation::ShiftedSoftplus, Activation::Tanh, Activation::Sigmoid,
                       Activation::Softplus, Activation::Identity}) {
    for (double x : {-3.1, -0.7, 0.2, 1.4, 25.0}) {
      const double h = 1e-5;
      const double fd1 = (act::f(a, x + h) - act::f(a, x - h)) / (2 * h);
      CHECK(act::df(a, x) == Approx(fd1).epsilon(1e-7).margin(1e-9));
      const double fd2 = (act::df(a, x + h) - act::df(a, x - h)) / (2 * h);
      const D dd = act::df(a, D(x, 1.0));
      CHECK(dd.d == Approx(fd2).epsilon(1e-6).margin(1e-8));
    }
  }
}

TEST_CASE("double activations: no overflow to NaN in value, derivative or dual tangent at |x| = 800", "[layers]") {
  using DD = Dual<double>;
  for (Activation a : {Activation::SiLU, Activation::Sigmoid, Activation::Softplus, Activation::ShiftedSoftplus,
                       Activation::Tanh})
    for (double x : {-800.0, -40.0, 40.0, 800.0}) {
      INFO(int(a) << " at " << x);
      const DD f = act::f(a, DD(x, 1.0)), g = act::df(a, DD(x, 1.0));
      CHECK(std::isfinite(f.v));
      CHECK(std::isfinite(f.d));
      CHECK(std::isfinite(g.v));
      CHECK(std::isfinite(g.d));
      CHECK(f.d == Approx(g.v).margin(1e-12));  // the tangent of f is f'
    }
}

TEST_CASE("float activations without libm (fastmath.hpp) agree with double libm", "[layers]") {
  // worst relative error over a dense sweep, in float ulps (2^-23 = 1.19e-7)
  const double ulp = 1.0 / (1 << 23);
  double e_exp = 0, e_sp = 0, e_sig = 0, e_log1p = 0, e_tanh = 0;
  for (int k = -200000; k <= 200000; ++k) {
    const float x = float(k) * 4.3e-4f;  // [-86, 86]
    const double xd = double(x);
    e_exp = std::max(e_exp, std::abs(double(fastmath::exp(x)) - std::exp(xd)) / std::exp(xd));
    const double sp = std::log1p(std::exp(xd));
    e_sp = std::max(e_sp, std::abs(double(fastmath::softplus(x)) - sp) / sp);
    const double sg = 1.0 / (1.0 + std::exp(-xd));
    e_sig = std::max(e_sig, std::abs(double(fastmath::sigmoid(x)) - sg) / sg);
    const double th = std::tanh(xd);
    if (th != 0) e_tanh = std::max(e_tanh, std::abs(double(fastmath::tanh(x)) - th) / std::abs(th));
    const float y = float(k + 200000) / 400000.0f;  // [0, 1]
    if (y > 0) e_log1p = std::max(e_log1p, std::abs(double(fastmath::log1p_unit(y)) - std::log1p(double(y))) / std::log1p(double(y)));
  }
  CHECK(e_exp < 3 * ulp);
  CHECK(e_sp < 4 * ulp);
  CHECK(e_sig < 4 * ulp);
  CHECK(e_log1p < 3 * ulp);
  CHECK(e_tanh < 6 * ulp);
  for (float t : {1e-30f, 1e-6f, 0.2499f, 0.2501f, 3.0f})  // both sides of the switch at 0.25, odd
    CHECK(fastmath::tanh(-t) == -fastmath::tanh(t));
  CHECK(fastmath::tanh(1e30f) == 1.0f);
  CHECK(fastmath::tanh(-1e30f) == -1.0f);
  CHECK(fastmath::tanh(1e-30f) == 1e-30f);
  // limits: no overflow, no NaN
  CHECK(fastmath::softplus(1e30f) == 1e30f);
  CHECK(fastmath::softplus(-1e30f) >= 0.0f);
  CHECK(fastmath::sigmoid(-1e30f) >= 0.0f);
  CHECK(fastmath::sigmoid(1e30f) == 1.0f);
  // the float activations take this path, the Dual<float> tangent too
  CHECK(act::f(Activation::ShiftedSoftplus, 0.3f) == fastmath::softplus(0.3f) - 0.69314718055994530942f);
  const Dual<float> sd = act::f(Activation::ShiftedSoftplus, Dual<float>(0.3f, 2.0f));
  CHECK(sd.d == fastmath::sigmoid(0.3f) * 2.0f);
  INFO("max errors in ulps: exp " << e_exp / ulp << ", softplus " << e_sp / ulp << ", sigmoid " << e_sig / ulp
                                  << ", log1p " << e_log1p / ulp << ", tanh " << e_tanh / ulp);
  CHECK(e_exp > 0);  // the sweep ran
}

namespace {
/// Forward and backward (overwrite and accumulate) of every activation in HostRow and PerElement on
/// S matrices; returns how many elements differ in their bits (all three products compared).
template <class S>
long activation_mode_bit_diffs(Activation a, const Mat<S, M>& X, const Mat<S, M>& Yb, const Mat<S, M>& Acc) {
  Exec exec;
  const long n = long(X.extent(0)), c = long(X.extent(1));
  Mat<S, M> row("row", n, c), el("el", n, c);
  long diff = 0;
  auto compare = [&] {
    Kokkos::fence();
    for (long i = 0; i < n; ++i)
      for (long j = 0; j < c; ++j) diff += std::memcmp(&row(i, j), &el(i, j), sizeof(S)) != 0;
  };
  kernels::activation_forward<Exec, S, exec_mode::HostRow>(exec, a, X, row);
  kernels::activation_forward<Exec, S, exec_mode::PerElement>(exec, a, X, el);
  compare();
  for (bool accumulate : {false, true}) {
    Kokkos::deep_copy(row, Acc);
    Kokkos::deep_copy(el, Acc);
    kernels::activation_backward<Exec, S, exec_mode::HostRow>(exec, a, X, Yb, row, accumulate);
    kernels::activation_backward<Exec, S, exec_mode::PerElement>(exec, a, X, Yb, el, accumulate);
    compare();
  }
  return diff;
}
constexpr Activation all_activations[] = {Activation::Identity, Activation::ReLU, Activation::SiLU,
                                          Activation::ShiftedSoftplus, Activation::Tanh, Activation::Sigmoid,
                                          Activation::Softplus};
}  // namespace

TEST_CASE("float sin and cos without libm (fastmath.hpp) agree with double libm, packs give the scalar bits", "[layers]") {
  // absolute error over a dense sweep of |x| <= 8192 (the radial bases' arguments stay below ~30)
  double e_sin = 0, e_cos = 0;
  for (int k = -2000000; k <= 2000000; ++k) {
    const float x = float(k) * 4.096e-3f;
    float s, c;
    fastmath::sincos(x, s, c);
    e_sin = std::max(e_sin, std::abs(double(s) - std::sin(double(x))));
    e_cos = std::max(e_cos, std::abs(double(c) - std::cos(double(x))));
  }
  CHECK(e_sin < 2e-7);
  CHECK(e_cos < 2e-7);
  // odd and even, exact at 0, and the quadrant boundaries
  for (float t : {1e-30f, 0.5f, 0.78539816f, 1.5707964f, 3.1415927f, 4.712389f, 29.0f}) {
    float s1, c1, s2, c2;
    fastmath::sincos(t, s1, c1);
    fastmath::sincos(-t, s2, c2);
    CHECK(s2 == -s1);
    CHECK(c2 == c1);
  }
  float s0, c0;
  fastmath::sincos(0.0f, s0, c0);
  CHECK(s0 == 0.0f);
  CHECK(c0 == 1.0f);
  // a dual: tangents cos(x) dx and -sin(x) dx
  Dual<float> ds, dc;
  fastmath::sincos_of(Dual<float>(0.7f, 2.0f), ds, dc);
  float s7, c7;
  fastmath::sincos(0.7f, s7, c7);
  CHECK(ds.v == s7);
  CHECK(ds.d == c7 * 2.0f);
  CHECK(dc.v == c7);
  CHECK(dc.d == -s7 * 2.0f);
#ifdef HYDRAGNN_SIMD_PACKS
  using P = kernels::simd::pack_t<float>;
  constexpr int L = kernels::simd::lanes<float>;
  long mismatches = 0;
  for (int k = -20000; k <= 20000; ++k) {
    P x;
    for (int l = 0; l < L; ++l) x[l] = float(k * L + l) * 1.3e-3f;
    P s, c;
    fastmath::sincos(x, s, c);
    for (int l = 0; l < L; ++l) {
      float s1, c1;
      fastmath::sincos(float(x[l]), s1, c1);
      mismatches += (s1 != s[l]) || (c1 != c[l]);
    }
  }
  CHECK(mismatches == 0);
#endif
}

#ifdef HYDRAGNN_SIMD_PACKS
namespace {
/// simd::deinterleave, interleave and pinned_load against element moves, for R's packs.
template <class R>
long simd_shuffle_mismatches() {
  namespace simd = kernels::simd;
  constexpr int L = simd::lanes<R>;
  R in[2 * L], out[2 * L];
  for (int j = 0; j < 2 * L; ++j) in[j] = R(j) * R(1.25) - R(3);
  simd::pack_t<R> v, d;
  simd::deinterleave(in, v, d);
  const simd::pack_t<R> pv = simd::pinned_load(in), pd = simd::pinned_load(in + L);
  long bad = 0;
  for (int j = 0; j < L; ++j) {
    bad += v[j] != in[2 * j] || d[j] != in[2 * j + 1];
    bad += pv[j] != in[j] || pd[j] != in[L + j];
  }
  simd::interleave(v, d, out);
  for (int j = 0; j < 2 * L; ++j) bad += out[j] != in[j];
  return bad;
}
}  // namespace

TEST_CASE("simd packs: deinterleave splits pairs into planes, interleave joins them, pinned_load loads", "[layers]") {
  CHECK(simd_shuffle_mismatches<float>() == 0);
  CHECK(simd_shuffle_mismatches<double>() == 0);
}
#endif

TEST_CASE("float activations: HostRow's vector rows give the bits of the scalar modes", "[layers]") {
  hydragnn_test::ensure_kokkos();
  const long n = 5, c = 37;  // packs and a tail in every row
  Mat<float, M> X("X", n, c), Yb("Yb", n, c), Acc("Acc", n, c);
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < c; ++j) {
      X(i, j) = float(0.37 * double(j - 18) + 0.11 * double(i)) * (j % 5 == 0 ? 40.0f : 1.0f);  // incl. |x| > 87
      Yb(i, j) = float(1.0 - 0.05 * double(i + j));
      Acc(i, j) = float(0.01 * double(j));
    }
  for (Activation a : all_activations) {
    INFO("activation " << int(a));
    CHECK(activation_mode_bit_diffs<float>(a, X, Yb, Acc) == 0);
    long finite = 0;
    for (long i = 0; i < n; ++i)
      for (long j = 0; j < c; ++j) {
        const float y = act::f(a, X(i, j));
        finite += std::isfinite(y);
        if (a == Activation::ShiftedSoftplus) CHECK(y == fastmath::softplus(X(i, j)) - 0.69314718055994530942f);
      }
    CHECK(finite == n * c);
  }
}

TEST_CASE("Dual<float> activations: vector rows bitwise as the scalar modes, values as double duals", "[layers]") {
  hydragnn_test::ensure_kokkos();
  using DF = Dual<float>;
  const long n = 4, c = 29;  // packs and a tail in every row
  Mat<DF, M> X("X", n, c), Yb("Yb", n, c), Acc("Acc", n, c);
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < c; ++j) {
      X(i, j) = DF(float(0.41 * double(j - 14) + 0.13 * double(i)) * (j % 7 == 0 ? 30.0f : 1.0f), float(0.3 - 0.07 * double(j)));
      Yb(i, j) = DF(float(1.0 - 0.05 * double(i + j)), float(0.2 + 0.01 * double(j)));
      Acc(i, j) = DF(float(0.01 * double(j)), float(-0.02 * double(i)));
    }
  for (Activation a : all_activations) {
    INFO("activation " << int(a));
    CHECK(activation_mode_bit_diffs<DF>(a, X, Yb, Acc) == 0);
    // f, f' and their tangents against the double duals (float accuracy)
    for (long j = 0; j < c; ++j) {
      const DF xf = X(1, j);
      const D xd(double(xf.v), double(xf.d));
      const DF f1 = act::f(a, xf), g1 = act::df(a, xf);
      const D f2 = act::f(a, xd), g2 = act::df(a, xd);
      CHECK(double(f1.v) == Approx(f2.v).epsilon(2e-6).margin(1e-6));
      CHECK(double(f1.d) == Approx(f2.d).epsilon(2e-6).margin(1e-6));
      CHECK(double(g1.v) == Approx(g2.v).epsilon(2e-6).margin(1e-6));
      CHECK(double(g1.d) == Approx(g2.d).epsilon(2e-6).margin(1e-6));
    }
  }
}

TEST_CASE("MLP backward matches finite differences (inputs and parameters)", "[layers]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  ParamAllocator alloc;
  MLP mlp(alloc, {5, 7, 3}, Activation::SiLU, true);
  Vec<double, M> p("p", alloc.size);
  {
    std::mt19937_64 rng(3);
    std::normal_distribution<double> nd(0.0, 0.5);
    for (std::size_t i = 0; i < p.extent(0); ++i) p(i) = nd(rng);
  }
  auto X = random_mat(1, 4, 5);
  auto Ybar = random_mat(2, 4, 3);
  const Weights<double, M> wts{p, {}};
  Workspace<M> ws;
  auto loss = [&](const Mat<double, M>& x) {
    MLP::Cache<double, M> c;
    Workspace<M> ws2;
    return dot(mlp.forward<Exec, double, double>(exec, wts, x, c, ws2), Ybar);
  };
  MLP::Cache<double, M> cache;
  mlp.forward<Exec, double, double>(exec, wts, X, cache, ws);
  Vec<double, M> g("g", alloc.size);
  auto Xbar = mlp.backward<Exec, double, double>(exec, wts, cache, Ybar, g, ws);
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 5; ++c) {
      const double fd = central([&](double h) {
        Mat<double, M> Xp("Xp", 4, 5);
        Kokkos::deep_copy(Xp, X);
        Xp(i, c) += h;
        return loss(Xp);
      }, 1e-6);
      CHECK(Xbar(i, c) == Approx(fd).epsilon(1e-6).margin(1e-9));
    }
  for (std::size_t k = 0; k < alloc.size; ++k) {
    const double fd = central([&](double h) {
      const double old = p(k);
      p(k) = old + h;
      const double v = loss(X);
      p(k) = old;
      return v;
    }, 1e-6);
    CHECK(g(k) == Approx(fd).epsilon(1e-6).margin(1e-9));
  }
}

namespace {

ModelSpec small_spec(const std::string& type, const std::vector<int>& species) {
  ModelSpec s;
  s.mpnn_type = type;
  s.hidden_dim = 6;
  s.input_dim = 4;  // embedding narrower than the hidden layers (HydraGNN's input_dim != hidden_dim)
  if (type == CGCNNConv::name) s.input_dim = 0;  // CGCNN keeps its width: the embedding is hidden_dim wide
  s.max_neighbours = hydragnn_test::test_max_neighbours(type);
  s.num_conv_layers = 2;
  s.cutoff = 3.2;
  s.act = Activation::SiLU;
  s.branches[0].energy_head_dims = {5};
  s.species.numbers = species;
  s.ref_energy.assign(species.size(), 0.0);
  s.ref_energy[0] = -1.5;
  s.energy_scale = 0.7;
  s.energy_shift = 0.1;
  return s;
}

/// Test-only convolutions beside the registry: SchNet with per-layer readouts (the energy is a sum of
/// one head per layer: conv::PerLayer), and EGNN with every non-HydraGNN variant switched on.
struct PerLayerSchNet : SchNetConv {
  using readout = conv::PerLayer;
  using SchNetConv::SchNetConv;
};
struct EGNNVariants : EGNNConv {
  using EGNNConv::EGNNConv;
};
static_assert(conv_traits<PerLayerSchNet>::per_layer_readout, "PerLayerSchNet declares per-layer readout");
using layer_test_types = decltype(std::tuple_cat(std::declval<conv_registry>(),
                                                 std::declval<std::tuple<PerLayerSchNet, EGNNVariants>>()));

/// Test options: the model tests' options (tests/model_test_options.hpp: EGNN with coordinate updates
/// and a smooth inner activation), SchNet smaller; `polynomial` switches the cutoff envelope where a
/// convolution has one.
inline void shrink(SchNetOptions& o) {
  o.num_filters = 5;
  o.num_gaussians = 7;
}
template <class O> void shrink(O&) {}
inline void use_polynomial(SchNetOptions& o) { o.envelope = Envelope::Polynomial; }
inline void use_polynomial(EGNNOptions& o) { o.edge_envelope = EdgeEnvelope::Polynomial; }
template <class O> void use_polynomial(O&) {}
template <class Conv>
typename Conv::options_type base_options() {
  return hydragnn_test::test_options<Conv>();
}
template <>
SchNetOptions base_options<PerLayerSchNet>() {
  return hydragnn_test::test_options<SchNetConv>();
}
template <>
EGNNOptions base_options<EGNNVariants>() {
  EGNNOptions o = hydragnn_test::test_options<EGNNConv>();
  o.residual = true;
  o.radial_input = RadialInput::DistanceSquared;
  o.edge_envelope = EdgeEnvelope::Cosine;
  o.inner_activation = Activation::Tanh;
  return o;
}
template <class Conv>
typename Conv::options_type test_options(bool polynomial = false) {
  auto o = base_options<Conv>();
  shrink(o);
  if (polynomial) use_polynomial(o);
  return o;
}

/// Models with BatchNorm feature layers: running statistics set to a training-mode forward's batch
/// statistics (momentum 1), so that evaluation mode normalises as a trained model does. At
/// initialisation (running mean 0, variance 1) GIN's features grow by its eps + 1 = 101 per layer,
/// and finite differences of a loss of size 1e7 lose the digits the checks need.
template <class ModelT>
void calibrate_batchnorm(const Exec& exec, ModelT& model, const Batch<M>& batch) {
  if constexpr (ModelT::traits::batch_norm) {
    model.set_training(true);
    predict(exec, model, batch, false);
    model.update_running_statistics(exec, 1.0);
    model.set_training(false);
  }
}

template <class Conv>
struct Fixture {
  int kokkos_ready_ = (hydragnn_test::ensure_kokkos(), 0);  // before any member that allocates views
  Exec exec;
  Model<double, Conv, Exec> model;
  std::vector<Structure> frames;
  Batch<M> batch;

  explicit Fixture(const char* type, std::uint64_t seed = 5) : model(small_spec(type, {1, 8}), test_options<Conv>()) {
    hydragnn_test::ensure_kokkos();
    model.initialize(seed);
    frames.push_back(hydragnn_test::random_structure(seed, 5, {1, 8}, true, 4.0, 1.1));
    frames.push_back(hydragnn_test::random_structure(seed + 1, 4, {8, 1}, false, 2.6, 1.1));
    rebuild();
    calibrate_batchnorm(exec, model, batch);
  }
  void rebuild() {
    batch = make_batch<M>(frames, model.spec().cutoff, -1, model.spec().species, {}, conv_traits<Conv>::needs_triplets);
  }
  std::vector<double> energies() { return predict(exec, model, batch, false).energy; }
};

}  // namespace

TEMPLATE_LIST_TEST_CASE("forces and stress are derivatives of the energy", "[layers][forces]", layer_test_types) {
  Fixture<TestType> fx(TestType::name);
  const auto pred = predict(fx.exec, fx.model, fx.batch, true);
  // forces: central differences of E wrt each coordinate (graph lists are rebuilt, no edge crosses the cutoff)
  int atom0 = 0;
  for (std::size_t g = 0; g < fx.frames.size(); ++g) {
    for (std::size_t i = 0; i < fx.frames[g].size(); ++i)
      for (int a = 0; a < 3; ++a) {
        const double fd = central([&](double h) {
          const double old = fx.frames[g].positions[i][a];
          fx.frames[g].positions[i][a] = old + h;
          fx.rebuild();
          const double e = fx.energies()[g];
          fx.frames[g].positions[i][a] = old;
          return e;
        }, 1e-5);
        CHECK(pred.forces[3 * (atom0 + i) + a] == Approx(-fd).epsilon(1e-6).margin(1e-8));
      }
    atom0 += int(fx.frames[g].size());
  }
  fx.rebuild();
  // stress of the periodic frame: sigma_ab = (1/V) dE/d eps_ab under x -> (1+eps) x for cell and positions
  const double V = stress_volume(fx.frames[0]);
  REQUIRE(V > 0);
  for (int a = 0; a < 3; ++a)
    for (int c = 0; c < 3; ++c) {
      const Structure ref = fx.frames[0];
      const double fd = central([&](double h) {
        Structure s = ref;
        auto strain = [&](Vec3& x) {
          Vec3 y = x;
          y[a] += h * x[c];
          x = y;
        };
        for (auto& x : s.positions) strain(x);
        for (auto& x : s.cell) strain(x);
        fx.frames[0] = s;
        fx.rebuild();
        return fx.energies()[0];
      }, 1e-6);
      fx.frames[0] = ref;
      CHECK(pred.stress[3 * a + c] == Approx(fd / V).epsilon(1e-6).margin(1e-8));
    }
  fx.rebuild();
  // the non-periodic frame has no stress
  CHECK(std::isnan(pred.stress[9]));
}

/// Convolutions whose messages carry a cutoff envelope that vanishes with its slope at the cutoff
/// (SchNet's and PaiNN's cosine cutoff; DimeNet's polynomial envelope of the Bessel bases, which
/// multiplies every path from an edge to the energy: the output block's lin_rbf(rbf), the triplet
/// message's lin_rbf2(lin_rbf1(rbf)) and the triplet basis): energies and forces are continuous
/// where an edge appears.
using smooth_cutoff_types = std::tuple<SchNetConv, PerLayerSchNet, PaiNNConv, DimeNetConv>;

TEMPLATE_LIST_TEST_CASE("an atom crossing the cutoff changes energy and forces continuously", "[layers][cutoff]",
                        smooth_cutoff_types) {
  Fixture<TestType> fx(TestType::name);
  const double rc = fx.model.spec().cutoff;
  // a molecule of three atoms: A and B bonded, C moved along x so that |C - A| crosses rc while C
  // stays bonded to B
  Structure s;
  s.numbers = {8, 1, 1};
  auto at = [&](double dx) {
    Structure t = s;
    t.positions = {{0.0, 0.0, 0.0}, {1.6, 0.4, 0.0}, {rc + dx, 0.0, 0.3}};
    t.positions[2][0] = std::sqrt((rc + dx) * (rc + dx) - 0.09);  // |C - A| = rc + dx exactly
    return t;
  };
  auto eval = [&](double dx) {
    fx.frames = {at(dx)};
    fx.rebuild();
    return predict(fx.exec, fx.model, fx.batch, true);
  };
  const auto inside = eval(-1e-7), outside = eval(1e-7), far_in = eval(-0.3);
  auto edges = [&](double dx) { return make_batch<M>(std::vector<Structure>{at(dx)}, rc, -1, fx.model.spec().species).num_edges; };
  CHECK(edges(1e-7) + 2 == edges(-1e-7));  // the pair A-C (both directions) is inside only on one side
  // the pair's contribution is smooth: across the cutoff E changes by -F . dx to first order (no
  // jump), while moving 0.3 A inside changes the energy visibly
  const Structure a = at(-1e-7), b = at(1e-7);
  double work = 0;
  for (int k = 0; k < 3; ++k)
    work -= 0.5 * (inside.forces[6 + k] + outside.forces[6 + k]) * (b.positions[2][k] - a.positions[2][k]);
  const double dE = std::fabs(outside.energy[0] - inside.energy[0] - work);
  const double dE_far = std::fabs(far_in.energy[0] - outside.energy[0]);
  INFO(TestType::name << ": |E(rc+) - E(rc-) + F.dx| = " << dE << ", |E(rc - 0.3) - E(rc+)| = " << dE_far);
  CHECK(dE_far > 1e-6);
  CHECK(dE <= 1e-13);
  double dF = 0, F_far = 0;
  for (int k = 0; k < 9; ++k) {
    dF = std::max(dF, std::fabs(inside.forces[k] - outside.forces[k]));
    F_far = std::max(F_far, std::fabs(far_in.forces[k] - outside.forces[k]));
  }
  INFO("max |F(rc-) - F(rc+)| = " << dF << ", max |F(rc - 0.3) - F(rc+)| = " << F_far);
  CHECK(F_far > 1e-5);
  CHECK(dF <= 1e-7);
}

TEST_CASE("PaiNN with one layer (its first layer is its last: no vector update, embedding-wide vectors out)",
          "[layers][forces]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  ModelSpec spec = small_spec(PaiNNConv::name, {1, 8});
  spec.num_conv_layers = 1;
  Model<double, PaiNNConv, Exec> model(spec, test_options<PaiNNConv>());
  model.initialize(9);
  std::vector<Structure> frames = {hydragnn_test::random_structure(9, 5, {1, 8}, true, 4.0, 1.1)};
  auto energy = [&]() {
    auto b = make_batch<M>(frames, spec.cutoff, -1, spec.species);
    return predict(exec, model, b, false).energy[0];
  };
  auto b = make_batch<M>(frames, spec.cutoff, -1, spec.species);
  const auto pred = predict(exec, model, b, true);
  double fmax = 0;
  for (double f : pred.forces) fmax = std::max(fmax, std::fabs(f));
  INFO("max |F| " << fmax);
  CHECK(fmax > 1e-4);  // the comparison below is not between zeros
  for (std::size_t i = 0; i < frames[0].size(); ++i)
    for (int a = 0; a < 3; ++a) {
      const double fd = central([&](double h) {
        const double old = frames[0].positions[i][a];
        frames[0].positions[i][a] = old + h;
        const double e = energy();
        frames[0].positions[i][a] = old;
        return e;
      }, 1e-5);
      CHECK(pred.forces[3 * i + a] == Approx(-fd).epsilon(1e-6).margin(1e-8));
    }
}

#include <hydragnn/autodiff/loss.hpp>

TEMPLATE_LIST_TEST_CASE("dual-number gradient of an energy+force+stress+heads loss matches finite differences", "[layers][dual]", layer_test_types) {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  ModelSpec spec = small_spec(TestType::name, {1, 8});
  spec.heads = {HeadDef{"gap", false, 2, 0.7}, HeadDef{"charge", true, 1, 0.4}};
  spec.pooling = Pooling::Mean;
  Model<double, TestType, Exec> model(spec, test_options<TestType>());
  model.initialize(11);
  std::vector<Structure> frames{hydragnn_test::random_structure(21, 5, {1, 8}, true, 4.0, 1.1),
                                hydragnn_test::random_structure(22, 4, {8, 1}, false, 2.6, 1.1)};
  std::mt19937_64 rng(9);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (auto& s : frames) {
    s.energy = nd(rng);
    s.forces.resize(s.size());
    for (auto& f : s.forces) f = {nd(rng), nd(rng), nd(rng)};
    if (s.has_cell) s.stress = std::array<double, 9>{nd(rng), 0.1, 0.2, 0.1, nd(rng), 0.3, 0.2, 0.3, nd(rng)};
    s.info["gap"] = std::to_string(nd(rng)) + " " + std::to_string(nd(rng));
    s.arrays["charge"].clear();
    for (std::size_t i = 0; i < s.size(); ++i) s.arrays["charge"].push_back(nd(rng));
    s.array_cols["charge"] = 1;
  }
  auto batch = make_batch<M>(frames, spec.cutoff, -1, spec.species, spec.heads, conv_traits<TestType>::needs_triplets);
  calibrate_batchnorm(exec, model, batch);
  LossSpec w;
  w.energy = 0.8;
  w.energy_peratom = 0.3;
  w.force = 1.7;
  w.stress = 2.5;
  w.heads = {0.7, 0.4};
  // feature layers (BatchNorm): evaluation mode (running statistics) and training mode (the batch's)
  for (bool training : {false, true}) {
    if (training && !conv_traits<TestType>::batch_norm) continue;
    INFO((training ? "training mode" : "evaluation mode"));
    model.set_training(training);
    Vec<double, M> grad("grad", model.num_params());
    const auto res = loss_and_grad(exec, model, batch, w, grad);
    REQUIRE(res.loss > 0);
    auto p = model.params();
    Vec<double, M> none;
    int checked = 0;
    for (std::size_t k = 0; k < model.num_params(); k += 1 + k % 3) {
      const double fd = central([&](double h) {
        const double old = p(k);
        p(k) = old + h;
        const double l = loss_and_grad(exec, model, batch, w, none).loss;
        p(k) = old;
        return l;
      }, 1e-6);
      CHECK(grad(k) == Approx(fd).epsilon(2e-6).margin(1e-8));
      ++checked;
    }
    CHECK(checked > 50);
  }
}

TEST_CASE("radial bases and cutoff envelopes: derivatives match finite differences", "[layers][radial]") {
  for (RadialBasis basis : {RadialBasis::Gaussian, RadialBasis::Bessel})
    for (Envelope env : {Envelope::Cosine, Envelope::Polynomial}) {
      const RadialSpec spec{basis, 6, 4.5, env};
      for (double d : {0.7, 1.9, 3.3, 4.4}) {
        const double h = 1e-6;
        for (int k = 0; k < spec.size; ++k) {
          const double fd = (radial::basis(spec, k, d + h) - radial::basis(spec, k, d - h)) / (2 * h);
          CHECK(radial::dbasis(spec, k, d) == Approx(fd).epsilon(1e-6).margin(1e-9));
          // second derivative through the dual evaluation of the first
          const double fd2 = (radial::dbasis(spec, k, d + h) - radial::dbasis(spec, k, d - h)) / (2 * h);
          CHECK(radial::dbasis(spec, k, D(d, 1.0)).d == Approx(fd2).epsilon(1e-5).margin(1e-7));
        }
        const double fe = (radial::envelope(spec, d + h) - radial::envelope(spec, d - h)) / (2 * h);
        CHECK(radial::denvelope(spec, d) == Approx(fe).epsilon(1e-6).margin(1e-9));
      }
      // smooth at the cutoff: value and slope vanish
      CHECK(radial::envelope(spec, 4.5 - 1e-9) == Approx(0.0).margin(1e-8));
      CHECK(radial::denvelope(spec, 4.5 - 1e-9) == Approx(0.0).margin(1e-6));
      CHECK(radial::envelope(spec, 5.0) == 0.0);
    }
}

TEST_CASE("float exp and the Gaussian basis never return subnormals, dropped terms are below 1e-17", "[layers][radial]") {
  // fastmath::exp: the smallest normal float or exactly 0, never in between
  for (int k = 0; k <= 40000; ++k) {
    const float x = -120.0f + float(k) * 3e-3f;  // [-120, 0]
    const float e = fastmath::exp(x);
    INFO("x = " << x);
    CHECK(std::fpclassify(e) != FP_SUBNORMAL);
    if (x < -87.3f) CHECK(e == 0.0f);
  }
  // Gaussian basis in float (value and dual tangent) against double, default SchNet spacing and a
  // coarse one: never subnormal; a term is dropped only where double gives < e^-40 (4.2e-18)
  for (int K : {50, 6}) {
    const RadialSpec spec{RadialBasis::Gaussian, K, 5.0, Envelope::Cosine};
    long zeros = 0;
    for (int s = 0; s <= 5000; ++s) {
      const double d = 5.0 * s / 5000.0;
      double biggest = 0;
      for (int k = 0; k < K; ++k) {
        const double bd = radial::basis(spec, k, d);
        biggest = std::max(biggest, bd);
        const Dual<float> bf = radial::basis(spec, k, Dual<float>(float(d), 1.0f));
        const float dbf = radial::dbasis(spec, k, float(d));
        INFO("K = " << K << ", d = " << d << ", k = " << k);
        CHECK(std::fpclassify(bf.v) != FP_SUBNORMAL);
        CHECK(std::fpclassify(bf.d) != FP_SUBNORMAL);
        CHECK(std::fpclassify(dbf) != FP_SUBNORMAL);
        if (bf.v == 0.0f) {
          ++zeros;
          CHECK(bd < 4.3e-18);
          CHECK(bf.d == 0.0f);
          CHECK(dbf == 0.0f);
        } else {
          CHECK(double(bf.v) == Approx(bd).epsilon(1e-4));
        }
      }
      CHECK(biggest > 0.88);  // a Gaussian within half a spacing of every length
    }
    if (K == 50) CHECK(zeros > 0);  // the sweep reaches the dropped range
  }
}

TEMPLATE_LIST_TEST_CASE("graph-head pooling (sum, mean, max): dual gradient matches finite differences", "[layers][pooling]", layer_test_types) {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  for (Pooling pool : {Pooling::Sum, Pooling::Mean, Pooling::Max}) {
    ModelSpec spec = small_spec(TestType::name, {1, 8});
    spec.heads = {HeadDef{"gap", false, 1, 1.0}};
    spec.pooling = pool;
    Model<double, TestType, Exec> model(spec, test_options<TestType>(true));
    model.initialize(13);
    std::vector<Structure> frames{hydragnn_test::random_structure(31, 6, {1, 8}, true, 4.0, 1.1)};
    frames[0].energy = 0.3;
    frames[0].forces.assign(6, Vec3{0.1, -0.2, 0.3});
    frames[0].info["gap"] = "0.5";
    auto batch = make_batch<M>(frames, spec.cutoff, -1, spec.species, spec.heads, conv_traits<TestType>::needs_triplets);
    calibrate_batchnorm(exec, model, batch);
    LossSpec w;
    w.force = 0.9;
    w.heads = {1.0};
    Vec<double, M> grad("grad", model.num_params());
    loss_and_grad(exec, model, batch, w, grad);
    auto p = model.params();
    // GAT's scores pass leaky_relu: its forces jump where a score's argument crosses 0, and so does a
    // force loss; the step must not cross such a point (at 1e-5 one does here, at 1e-7 none; the
    // round-off of that step, ~1e-16 |L| / 1e-7, sets the margin)
    const bool gat = std::is_same<TestType, GATConv>::value;
    const double step = gat ? 1e-7 : 1e-5, margin = gat ? 5e-7 : 1e-8;
    for (std::size_t k = 0; k < model.num_params(); k += 3) {
      const double fd = central([&](double h) {
        const double old = p(k);
        p(k) = old + h;
        const double l = loss_and_grad(exec, model, batch, w, Vec<double, M>()).loss;
        p(k) = old;
        return l;
      }, step);
      INFO("pooling " << int(pool) << " parameter " << k);
      CHECK(grad(k) == Approx(fd).epsilon(2e-6).margin(margin));
    }
  }
}

namespace {
/// SchNet declaring triplet connectivity (it does not use them): the model must ask for them.
struct TripletSchNet : SchNetConv {
  using connectivity = conv::Triplets;
  using SchNetConv::SchNetConv;
};
}  // namespace

TEST_CASE("triplet connectivity: the batch carries the triplet CSR on request and the model insists on it",
          "[layers][triplets]") {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  static_assert(conv_traits<TripletSchNet>::needs_triplets, "declared");
  ModelSpec spec = small_spec("SchNet", {1, 8});
  Model<double, TripletSchNet, Exec> model(spec, test_options<SchNetConv>());
  model.initialize(3);
  std::vector<Structure> frames{hydragnn_test::random_structure(51, 5, {1, 8}, true, 4.0, 1.1),
                                hydragnn_test::random_structure(52, 4, {8, 1}, false, 2.6, 1.1)};
  auto plain = make_batch<M>(frames, spec.cutoff, -1, spec.species);
  CHECK_FALSE(plain.has_triplets);
  CHECK_THROWS_WITH(predict(exec, model, plain, true), Catch::Matchers::Contains("triplets"));
  auto with = make_batch<M>(frames, spec.cutoff, -1, spec.species, {}, true);
  REQUIRE(with.has_triplets);
  // the batch's CSR is the builder's over the batch's graphs
  std::vector<RadiusGraph> graphs;
  std::vector<const RadiusGraph*> gp;
  for (const auto& f : frames) graphs.push_back(radius_graph(f, spec.cutoff, -1));
  for (const auto& g : graphs) gp.push_back(&g);
  const TripletCsr ref = build_triplets(gp);
  REQUIRE(with.triplets.num_triplets == int(ref.size()));
  CHECK(with.triplets.num_triplets > 0);
  auto host = [](const Vec<int, M>& v) { return std::vector<int>(v.data(), v.data() + v.extent(0)); };
  CHECK(host(with.triplets.ptr) == ref.ptr);
  CHECK(host(with.triplets.ji) == ref.ji);
  CHECK(host(with.triplets.kj) == ref.kj);
  CHECK(host(with.triplets.kj_perm) == ref.kj_perm);
  // and the model runs on it (SchNet's function: same energies as plain SchNet with the same weights)
  Model<double, SchNetConv, Exec> plain_model(spec, test_options<SchNetConv>());
  plain_model.initialize(3);
  CHECK(predict(exec, model, with, true).energy == predict(exec, plain_model, plain, true).energy);
}
