// SPDX-License-Identifier: BSD-3-Clause
// Workspaces: after the first step, a predict step and a training step (loss, force-training
// gradient, optimizer) make no Kokkos allocation. Allocations are counted through Kokkos' profiling
// hooks.
#include <catch2/catch.hpp>

#include <hydragnn/conv/egnn.hpp>
#include <hydragnn/conv/schnet.hpp>
#include <hydragnn/autodiff/loss.hpp>
#include <hydragnn/graph/batch_builder.hpp>
#include <hydragnn/train/optimizer.hpp>

#include "model_test_options.hpp"
#include "test_helpers.hpp"

using namespace hydragnn;
using Exec = Kokkos::DefaultExecutionSpace;
using M = Exec::memory_space;

TEMPLATE_LIST_TEST_CASE("steady-state predict and training steps allocate nothing", "[alloc]", conv_registry) {
  hydragnn_test::ensure_kokkos();
  Exec exec;
  ModelSpec spec;
  spec.hidden_dim = 8;
  spec.num_conv_layers = 2;
  spec.cutoff = 3.5;
  spec.branches[0].energy_head_dims = {8};
  spec.species.numbers = {1, 8};
  spec.heads = {HeadDef{"gap", false, 1, 1.0}};
  spec.max_neighbours = hydragnn_test::test_max_neighbours(TestType::name);
  Model<float, TestType, Exec> model(spec, hydragnn_test::test_options<TestType>());
  model.initialize(3);
  std::vector<Structure> frames{hydragnn_test::random_structure(41, 8, {1, 8}, true, 4.5, 1.1),
                                hydragnn_test::random_structure(42, 6, {8, 1}, false, 3.0, 1.1)};
  for (auto& s : frames) {
    s.energy = 0.5;
    s.forces.assign(s.size(), Vec3{0.1, 0.0, -0.1});
    s.info["gap"] = "1.0";
  }
  auto batch = make_batch<M>(frames, spec.cutoff, -1, spec.species, spec.heads, conv_traits<TestType>::needs_triplets);
  LossSpec w;
  w.force = 1.0;
  w.heads = {1.0};
  Vec<float, M> grad("grad", model.num_params());
  Optimizer<float, Exec> opt(OptimizerType::AdamW, model.num_params(), 1e-3, 0.0, 0.0);
  Workspace<M> ws;
  auto step = [&] {
    auto r = loss_and_grad(exec, model, batch, w, grad, &ws);
    opt.step(exec, model.params(), grad);
    return r.loss;
  };
  step();
  predict(exec, model, batch, true, &ws);
  Kokkos::fence();
  const std::size_t slots = ws.num_slots();
  CHECK(slots > 20);

  AllocationCounter::count() = 0;
  AllocationCounter::install();
  const double l2 = step();
  const auto p2 = predict(exec, model, batch, true, &ws);
  Kokkos::fence();
  AllocationCounter::uninstall();
  CHECK(AllocationCounter::count() == 0);
  CHECK(ws.num_slots() == slots);
  CHECK(std::isfinite(l2));
  CHECK(p2.forces.size() == 3 * std::size_t(batch.num_atoms));

  // the counter does see allocations (the test is not vacuous)
  AllocationCounter::count() = 0;
  AllocationCounter::install();
  { Vec<float, M> v("hydragnn::test::probe", 10); }
  AllocationCounter::uninstall();
  CHECK(AllocationCounter::count() == 1);
}
