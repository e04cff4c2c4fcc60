// SPDX-License-Identifier: BSD-3-Clause
// The default execution space (Cuda/HIP/OpenMP/Serial, whatever Kokkos was built with) against the
// host space: same energies, forces, stress and training gradient (double), and bitwise-repeatable
// on the default space. In a Serial-only build both spaces are Serial and this checks run-to-run
// determinism of the whole forward/backward/dual pipeline.
#include <catch2/catch.hpp>

#include <hydragnn/graph/batch_builder.hpp>
#include <hydragnn/autodiff/loss.hpp>

#include "model_test_options.hpp"
#include "test_helpers.hpp"

#include <cstring>

using namespace hydragnn;
using Host = Kokkos::DefaultHostExecutionSpace;
using Dev = Kokkos::DefaultExecutionSpace;

namespace {

ModelSpec backend_spec(const std::string& type) {
  ModelSpec s;
  s.mpnn_type = type;
  s.hidden_dim = 16;
  s.num_conv_layers = 3;
  s.cutoff = 3.5;
  s.branches[0].energy_head_dims = {16, 8};
  s.species.numbers = {1, 8};
  s.ref_energy = {-0.5, -75.0};
  s.energy_scale = 0.3;
  s.heads = {HeadDef{"dipole", false, 3, 0.5}, HeadDef{"charge", true, 1, 0.5}};
  s.max_neighbours = hydragnn_test::test_max_neighbours(type);
  return s;
}

template <class Exec, class Conv>
LossResult run_on(const ModelSpec& spec, const std::vector<double>& params, const std::vector<Structure>& frames,
                  std::vector<double>& grad_out) {
  using M = typename Exec::memory_space;
  Model<double, Conv, Exec> model(spec, hydragnn_test::test_options<Conv>());
  {
    auto h = Kokkos::create_mirror_view(model.params());
    for (std::size_t i = 0; i < params.size(); ++i) h(i) = params[i];
    Kokkos::deep_copy(model.params(), h);
  }
  auto b = make_batch<M>(frames, spec.cutoff, -1, spec.species, spec.heads, conv_traits<Conv>::needs_triplets);
  LossSpec w;
  w.energy = 1.0;
  w.force = 2.0;
  w.stress = 3.0;
  w.heads = {0.5, 0.5};
  Vec<double, M> grad("grad", model.num_params());
  LossResult r = loss_and_grad(Exec(), model, b, w, grad, nullptr, true);
  grad_out = to_host_vector(grad);
  return r;
}

}  // namespace

TEMPLATE_LIST_TEST_CASE("default execution space matches the host space and repeats bitwise", "[backend][determinism]", conv_registry) {
  hydragnn_test::ensure_kokkos();
  const ModelSpec spec = backend_spec(TestType::name);
  std::vector<double> params;
  {
    Model<double, TestType, Host> m(spec, hydragnn_test::test_options<TestType>());
    m.initialize(77);
    params = to_host_vector(m.params());
  }
  std::vector<Structure> frames;
  std::mt19937_64 rng(4);
  std::normal_distribution<double> nd(0.0, 1.0);
  for (int k = 0; k < 4; ++k) {
    Structure s = hydragnn_test::random_structure(50 + k, 7 + k, {8, 1}, k % 2 == 0, 4.2, 1.0);
    s.energy = -150.0 + nd(rng);
    s.forces.resize(s.size());
    for (auto& f : s.forces) f = {nd(rng), nd(rng), nd(rng)};
    if (s.has_cell) s.stress = std::array<double, 9>{0.01, 0, 0, 0, 0.02, 0, 0, 0, -0.01};
    s.info["dipole"] = "0.1 -0.2 0.3";
    for (std::size_t i = 0; i < s.size(); ++i) s.arrays["charge"].push_back(nd(rng));
    s.array_cols["charge"] = 1;
    frames.push_back(s);
  }
  std::vector<double> gh, gd, gd2;
  const LossResult rh = run_on<Host, TestType>(spec, params, frames, gh);
  const LossResult rd = run_on<Dev, TestType>(spec, params, frames, gd);
  const LossResult rd2 = run_on<Dev, TestType>(spec, params, frames, gd2);
  INFO("default execution space: " << Dev::name());
  // bitwise repeatable on the default space
  REQUIRE(gd.size() == gd2.size());
  CHECK(std::memcmp(gd.data(), gd2.data(), gd.size() * sizeof(double)) == 0);
  CHECK(rd.loss == rd2.loss);
  CHECK(rd.pred.forces == rd2.pred.forces);
  // the same numbers as the host space (bitwise when both are host spaces; FMA contraction on a GPU
  // may change the last bits)
  CHECK(rd.loss == Approx(rh.loss).epsilon(1e-12));
  for (std::size_t g = 0; g < rh.pred.energy.size(); ++g) CHECK(rd.pred.energy[g] == Approx(rh.pred.energy[g]).epsilon(1e-13));
  for (std::size_t k = 0; k < rh.pred.forces.size(); ++k) CHECK(rd.pred.forces[k] == Approx(rh.pred.forces[k]).margin(1e-11));
  for (std::size_t k = 0; k < rh.pred.stress.size(); ++k)
    if (!std::isnan(rh.pred.stress[k])) CHECK(rd.pred.stress[k] == Approx(rh.pred.stress[k]).margin(1e-11));
  for (std::size_t k = 0; k < gh.size(); ++k) CHECK(gd[k] == Approx(gh[k]).epsilon(1e-10).margin(1e-12));
}
