// SPDX-License-Identifier: BSD-3-Clause
// End-to-end training on real DFT data: rMD17 uracil (950 train / 50 validation from uracil_train_01)
// must beat the per-element-mean baseline (least-squares reference energies, zero forces) on the
// 1000 frames of uracil_test_01 by a wide margin.
#include <catch2/catch.hpp>

#include <hydragnn/train/trainer.hpp>

#include "baseline.hpp"
#include "model_test_options.hpp"
#include "test_helpers.hpp"

#include <filesystem>
#include <unistd.h>

using namespace hydragnn;
using Exec = Kokkos::DefaultHostExecutionSpace;

TEST_CASE("SchNet trained on rMD17 uracil beats the per-element-mean baseline", "[training][rmd17]") {
  hydragnn_test::ensure_kokkos();
  const std::string dir = std::string(HYDRAGNN_SHARED_DATA_DIR) + "/real/rmd17/";
  REQUIRE(std::filesystem::exists(dir + "uracil_train_01.extxyz"));
  Config cfg = parse_config(R"({
    "NeuralNetwork": {
      "Architecture": {"mpnn_type": "SchNet", "radius": 5.0, "hidden_dim": 24, "num_conv_layers": 2,
        "num_gaussians": 16, "num_filters": 24,
        "output_heads": {"node": {"num_headlayers": 2, "dim_headlayers": [24, 16], "type": "mlp"}},
        "enable_interatomic_potential": true, "energy_weight": 1.0, "force_weight": 1.0},
      "Variables_of_interest": {"output_names": ["energy"], "type": ["node"], "output_dim": [1]},
      "Training": {"num_epoch": 20, "batch_size": 5, "Optimizer": {"type": "AdamW", "learning_rate": 0.005},
                   "seed": 1}
    }
  })", "uracil-test");
  const double cutoff = cfg.arch.radius;
  Dataset all = load_dataset(dir + "uracil_train_01.extxyz", cutoff, -1, DatasetRequirements{true, true, false});
  REQUIRE(all.size() == 1000);
  Dataset train_ds, val_ds;
  for (std::size_t i = 0; i < all.size(); ++i) {
    Dataset& d = i < 950 ? train_ds : val_ds;
    d.frames.push_back(all.frames[i]);
    d.graphs.push_back(all.graphs[i]);
  }
  const Dataset test_ds = load_dataset(dir + "uracil_test_01.extxyz", cutoff, -1, DatasetRequirements{true, true, false});
  REQUIRE(test_ds.size() == 1000);

  // per-element-mean baseline on the test set
  const SpeciesMap sp = species_of(train_ds);
  const auto [base_e, base_f] = hydragnn_test::baseline_errors(test_ds, sp, fit_reference_energies(train_ds, sp));

  using ModelT = Model<float, SchNetConv, Exec>;
  TrainOptions opt;
  opt.output_dir = (std::filesystem::temp_directory_path() / ("hydragnn_uracil_" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(opt.output_dir);
  const TrainResult r = train<ModelT>(Exec(), cfg, train_ds, val_ds, opt);
  const ModelT best = model_from_checkpoint<ModelT>(read_checkpoint(r.best_checkpoint), r.best_checkpoint);
  const Metrics m = evaluate(Exec(), best, test_ds, loss_from_config(cfg, best.spec()), 50);
  std::printf("uracil test: model E %.2f meV/atom, F %.1f meV/A; per-element-mean baseline E %.2f meV/atom, F %.1f meV/A\n",
              m.epa_mae * 1e3, m.f_mae * 1e3, base_e * 1e3, base_f * 1e3);
  CHECK(m.n_structures == 1000);
  CHECK(m.epa_mae < 0.5 * base_e);
  CHECK(m.f_mae < 0.35 * base_f);
  std::filesystem::remove_all(opt.output_dir);
}

TEST_CASE("two datasets, two head branches: mlearn Si and Ge trained together, each beats its baseline",
          "[training][mlearn][branches]") {
  hydragnn_test::ensure_kokkos();
  const std::string dir = std::string(HYDRAGNN_SHARED_DATA_DIR) + "/real/mlearn/";
  REQUIRE(std::filesystem::exists(dir + "Si_training.extxyz"));
  // one SchNet trunk, an energy head per dataset (HydraGNN's branch lists); branch-1 is narrower
  Config cfg = parse_config(R"({
    "NeuralNetwork": {
      "Architecture": {"mpnn_type": "SchNet", "radius": 4.5, "max_neighbours": 20, "hidden_dim": 16,
        "num_conv_layers": 2, "num_gaussians": 12, "num_filters": 16,
        "output_heads": {"node": [
          {"type": "branch-0", "architecture": {"num_headlayers": 2, "dim_headlayers": [16, 16], "type": "mlp"}},
          {"type": "branch-1", "architecture": {"num_headlayers": 1, "dim_headlayers": [12], "type": "mlp"}}]},
        "enable_interatomic_potential": true, "energy_weight": 0.0, "energy_peratom_weight": 1.0,
        "force_weight": 1.0},
      "Variables_of_interest": {"output_names": ["energy"], "type": ["node"], "output_dim": [1]},
      "Training": {"num_epoch": 12, "batch_size": 4, "Optimizer": {"type": "AdamW", "learning_rate": 0.005},
                   "Scheduler": {"type": "none"}, "seed": 3}
    }
  })", "mlearn-si-ge");
  const DatasetRequirements req{true, true, false};
  Dataset train_ds, val_ds, test_ds[2];
  const char* element[2] = {"Si", "Ge"};
  for (int d = 0; d < 2; ++d) {
    Dataset all = load_dataset(dir + element[d] + "_training.extxyz", cfg.arch.radius, cfg.arch.max_neighbours, req);
    REQUIRE(all.size() >= 120);
    for (std::size_t i = 0; i < 120; ++i) {  // 100 train + 20 validation per dataset, every other frame
      Dataset& to = i < 100 ? train_ds : val_ds;
      to.frames.push_back(all.frames[i * (all.size() / 120)]);
      to.graphs.push_back(all.graphs[i * (all.size() / 120)]);
      to.frames.back().branch = d;
    }
    test_ds[d] = load_dataset(dir + element[d] + "_test.extxyz", cfg.arch.radius, cfg.arch.max_neighbours, req);
    for (auto& f : test_ds[d].frames) f.branch = d;
  }
  using ModelT = Model<float, SchNetConv, Exec>;
  TrainOptions opt;
  opt.output_dir = (std::filesystem::temp_directory_path() / ("hydragnn_sige_" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(opt.output_dir);
  const TrainResult r = train<ModelT>(Exec(), cfg, train_ds, val_ds, opt);
  const ModelT best = model_from_checkpoint<ModelT>(read_checkpoint(r.best_checkpoint), r.best_checkpoint);
  REQUIRE(best.spec().num_branches() == 2);
  const SpeciesMap& sp = best.spec().species;
  REQUIRE(sp.numbers == std::vector<int>{14, 32});
  for (int d = 0; d < 2; ++d) {
    // the branch's reference energies are fitted on its own dataset: the other element's is 0
    std::vector<StructureSummary> mine;
    for (const auto& f : train_ds.frames)
      if (f.branch == d) mine.push_back(summarize(f));
    const std::vector<double> ref = fit_reference_energies(mine, sp);
    for (std::size_t s = 0; s < sp.size(); ++s)
      CHECK(best.spec().ref_energy[std::size_t(d) * sp.size() + s] == Approx(ref[s]).margin(1e-9));
    CHECK(ref[std::size_t(1 - d)] == Approx(0.0).margin(1e-6));
    // per-element-mean baseline (the branch's references, zero forces) on the dataset's test frames
    const auto [base_e, base_f] = hydragnn_test::baseline_errors(test_ds[d], sp, ref);
    const Metrics m = evaluate(Exec(), best, test_ds[d], loss_from_config(cfg, best.spec()), 8);
    std::printf("mlearn %s test (branch-%d): model E %.2f meV/atom, F %.3f eV/A; per-element-mean baseline E %.2f "
                "meV/atom, F %.3f eV/A\n",
                element[d], d, m.epa_mae * 1e3, m.f_mae, base_e * 1e3, base_f);
    CHECK(m.epa_mae < 0.5 * base_e);
    CHECK(m.f_mae < 0.6 * base_f);
  }
  std::filesystem::remove_all(opt.output_dir);
}
