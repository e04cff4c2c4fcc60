// SPDX-License-Identifier: BSD-3-Clause
// Tests for the HydraGNN-schema JSON config parser (include/hydragnn/io/config.hpp).
#include <catch2/catch.hpp>

#include <hydragnn/io/config.hpp>
#include <hydragnn/io/config_to_spec.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

using hydragnn::Config;
using hydragnn::ConfigError;
using hydragnn::load_config;
using hydragnn::parse_config;
using hydragnn::to_json;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

using hydragnn::Activation;
using hydragnn::EdgeEnvelope;
using hydragnn::EGNNConv;
using hydragnn::EGNNOptions;
using hydragnn::RadialInput;
using hydragnn::SchNetConv;

namespace {

const char* const kExample = R"({ "Verbosity": {"level": 2},
  "Dataset": {"name": "uracil", "format": "extxyz", "path": {"train": "a.extxyz", "validate": "b.extxyz", "test": "c.extxyz"}},
  "NeuralNetwork": {
    "Architecture": {"mpnn_type": "SchNet", "radius": 5.0, "max_neighbours": 32, "hidden_dim": 64, "num_conv_layers": 3,
       "num_gaussians": 50, "num_filters": 64, "activation_function": "silu", "graph_pooling": "mean",
       "periodic_boundary_conditions": false,
       "output_heads": {"graph": {"num_sharedlayers": 2, "dim_sharedlayers": 32, "num_headlayers": 2, "dim_headlayers": [32, 32]},
                        "node": {"num_headlayers": 2, "dim_headlayers": [32, 32], "type": "mlp"}},
       "task_weights": [1.0],
       "enable_interatomic_potential": true, "energy_weight": 1.0, "energy_peratom_weight": 0.0, "force_weight": 10.0},
    "Variables_of_interest": {"output_names": ["energy"], "type": ["node"], "output_dim": [1], "output_index": [0], "input_node_features": [0], "denormalize_output": false},
    "Training": {"num_epoch": 100, "batch_size": 32, "perc_train": 0.9, "EarlyStopping": true, "patience": 20,
                 "loss_function_type": "mse", "Optimizer": {"type": "AdamW", "learning_rate": 0.001},
                 "Scheduler": {"type": "ReduceLROnPlateau", "factor": 0.5, "patience": 5, "min_lr": 1e-6}, "seed": 42}
  }
})";

// Message of the ConfigError thrown by parse_config(text, src); fails the test if none.
std::string error_of(const std::string& text, const std::string& src = "cfg.json") {
  try {
    parse_config(text, src);
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("expected ConfigError for: " << text);
  return {};
}

// {"NeuralNetwork": {"Architecture": {<body>}}}
std::string arch(const std::string& body) {
  return R"({"NeuralNetwork": {"Architecture": {)" + body + "}}}";
}
std::string training(const std::string& body) {
  return R"({"NeuralNetwork": {"Training": {)" + body + "}}}";
}
std::string variables(const std::string& body) {
  return R"({"NeuralNetwork": {"Variables_of_interest": {)" + body + "}}}";
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("hydragnn_test_config_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

TEST_CASE("config: the reference example parses to the expected values", "[config]") {
  const Config c = parse_config(kExample);
  CHECK(c.verbosity_level == "2");

  CHECK(c.dataset.name == "uracil");
  CHECK(c.dataset.format == "extxyz");
  CHECK(c.dataset.train == "a.extxyz");
  CHECK(c.dataset.validate == "b.extxyz");
  CHECK(c.dataset.test == "c.extxyz");
  CHECK(c.dataset.total.empty());
  CHECK(c.dataset.base_dir == ".");

  const auto& a = c.arch;
  CHECK(a.mpnn_type == "SchNet");
  CHECK(a.radius == 5.0);
  CHECK(a.max_neighbours == 32);
  CHECK(a.hidden_dim == 64);
  CHECK(a.num_conv_layers == 3);
  CHECK(a.options.at("num_gaussians") == 50);
  CHECK(a.options.at("num_filters") == 64);
  CHECK(a.conv_options<SchNetConv>().num_gaussians == 50);
  CHECK(a.activation_function == "silu");
  CHECK(a.graph_pooling == "mean");
  CHECK_FALSE(a.periodic_boundary_conditions);
  CHECK(a.branches[0].graph_num_sharedlayers == 2);
  CHECK(a.branches[0].graph_dim_sharedlayers == 32);
  CHECK(a.branches[0].graph_num_headlayers == 2);
  CHECK(a.branches[0].graph_dim_headlayers == std::vector<int>{32, 32});
  CHECK(a.branches[0].node_num_headlayers == 2);
  CHECK(a.branches[0].node_dim_headlayers == std::vector<int>{32, 32});
  CHECK(a.branches[0].node_head_type == "mlp");
  REQUIRE(a.heads.size() == 1);
  CHECK(a.heads[0].name == "energy");
  CHECK(a.heads[0].type == "node");
  CHECK(a.heads[0].dim == 1);
  CHECK(a.heads[0].weight == 1.0);
  CHECK(a.enable_interatomic_potential);
  CHECK(a.energy_weight == 1.0);
  CHECK(a.energy_peratom_weight == 0.0);
  CHECK(a.force_weight == 10.0);
  CHECK(a.stress_weight == 0.0);

  const auto& t = c.training;
  CHECK(t.num_epoch == 100);
  CHECK(t.batch_size == 32);
  CHECK(t.perc_train == 0.9);
  CHECK(t.early_stopping);
  CHECK(t.patience == 20);
  CHECK(t.loss_function_type == "mse");
  CHECK(t.optimizer.type == "AdamW");
  CHECK(t.optimizer.learning_rate == 0.001);
  CHECK(t.scheduler);
  CHECK(t.scheduler_factor == 0.5);
  CHECK(t.scheduler_patience == 5);
  CHECK(t.min_lr == 1e-6);
  CHECK(t.seed == 42ULL);
}

TEST_CASE("config: defaults when keys are absent", "[config]") {
  const Config c = parse_config("{}");
  const Config d;  // struct defaults
  CHECK(c.verbosity_level.empty());
  CHECK(c.dataset.name.empty());
  CHECK(c.dataset.train.empty());
  CHECK(c.dataset.validate.empty());
  CHECK(c.dataset.test.empty());
  CHECK(c.dataset.total.empty());
  CHECK(c.arch.mpnn_type == "SchNet");
  CHECK(c.arch.radius == 5.0);
  CHECK(c.arch.max_neighbours == -1);
  CHECK(c.arch.hidden_dim == 64);
  CHECK(c.arch.options.at("num_filters") == 64);
  CHECK(c.arch.activation_function == "silu");
  CHECK(c.arch.enable_interatomic_potential);
  REQUIRE(c.arch.heads.size() == 1);
  CHECK(c.arch.heads[0].name == "energy");
  CHECK(c.arch.heads[0].type == "node");  // the default energy: per atom
  CHECK(c.arch.heads[0].dim == 1);
  CHECK(c.arch.heads[0].weight == 1.0);
  CHECK(c.training == d.training);
  CHECK(c.training.optimizer.type == "AdamW");

  SECTION("num_filters follows hidden_dim when absent") {
    CHECK(parse_config(arch(R"("hidden_dim": 16)")).arch.options.at("num_filters") == 16);
    CHECK(parse_config(arch(R"("hidden_dim": 16, "num_filters": 8)")).arch.options.at("num_filters") == 8);
  }
  SECTION("max_neighbours <= 0 means unlimited") {
    CHECK(parse_config(arch(R"("max_neighbours": 0)")).arch.max_neighbours == -1);
    CHECK(parse_config(arch(R"("max_neighbours": -5)")).arch.max_neighbours == -1);
  }
  SECTION("each model's own keys: parsed for the selected mpnn_type, type-checked and ignored for the others") {
    const Config e = parse_config(arch(R"("mpnn_type": "EGNN", "equivariance": true, "edge_envelope": "Cosine",
                                           "radial_input": "distance_squared", "residual": true, "num_filters": 8)"));
    const EGNNOptions o = e.arch.conv_options<EGNNConv>();
    CHECK(o.equivariance);
    CHECK(o.edge_envelope == EdgeEnvelope::Cosine);
    CHECK(o.radial_input == RadialInput::DistanceSquared);
    CHECK(o.residual);
    CHECK(o.inner_activation == Activation::ReLU);  // HydraGNN's E_GCL default
    CHECK_FALSE(e.arch.options.contains("num_filters"));
    CHECK(parse_config(to_json(e)) == e);
    // SchNet: EGNN's keys are accepted when well-typed, errors name the key otherwise
    CHECK(parse_config(arch(R"("residual": false)")).arch.options.at("num_filters") == 64);
    CHECK_THROWS_WITH(parse_config(arch(R"("residual": 3)")), Catch::Matchers::Contains("NeuralNetwork.Architecture.residual"));
    CHECK_THROWS_WITH(parse_config(arch(R"("mpnn_type": "EGNN", "radial_input": "cubed")")),
                      Catch::Matchers::Contains("NeuralNetwork.Architecture.radial_input") &&
                          Catch::Matchers::Contains("distance_squared"));
    CHECK_THROWS_WITH(parse_config(arch(R"("equivariance": true)")),
                      Catch::Matchers::Contains("NeuralNetwork.Architecture.equivariance") &&
                          Catch::Matchers::Contains("SchNet"));
    CHECK_THROWS_WITH(parse_config(arch(R"("num_gaussians": 0)")),
                      Catch::Matchers::Contains("NeuralNetwork.Architecture.num_gaussians"));
    CHECK(parse_config(arch(R"("num_radial": 8)")).arch.options.at("num_gaussians") == 50);  // other models' key
  }
  SECTION("output_dim absent -> 1; task_weights absent -> 1.0") {
    const Config v = parse_config(variables(R"("output_names": ["e", "f"], "type": ["graph", "node"])"));
    REQUIRE(v.arch.heads.size() == 2);
    CHECK(v.arch.heads[1].name == "f");
    CHECK(v.arch.heads[1].type == "node");
    CHECK(v.arch.heads[1].dim == 1);
    CHECK(v.arch.heads[1].weight == 1.0);
  }
}

TEST_CASE("config: normalisation of spellings", "[config]") {
  CHECK(parse_config(arch(R"("graph_pooling": "add")")).arch.graph_pooling == "sum");
  CHECK(parse_config(arch(R"("activation_function": "ReLU")")).arch.activation_function == "relu");
  CHECK(parse_config(training(R"("Optimizer": {"type": "adamw"})")).training.optimizer.type == "AdamW");
  CHECK(parse_config(training(R"("Optimizer": {"type": "sgd", "momentum": 0.9})")).training.optimizer.type == "SGD");
  CHECK(parse_config(training(R"("loss_function_type": "MAE")")).training.loss_function_type == "mae");
  CHECK_FALSE(parse_config(training(R"("Scheduler": {"type": "none"})")).training.scheduler);
  CHECK(parse_config(R"({"Dataset": {"format": "EXTXYZ", "path": {"total": "x"}}})").dataset.format == "extxyz");
  CHECK(parse_config(R"({"Dataset": {"format": "ASE-DB", "path": {"total": "x.db"}}})").dataset.format == "ase-db");
  CHECK_THAT(error_of(R"({"Dataset": {"format": "pickle", "path": {"total": "x"}}})"),
             Contains("Dataset.format") && Contains("\"ase-db\""));
}

TEST_CASE("config: to_json round trip", "[config]") {
  SECTION("reference example") {
    const Config c = parse_config(kExample);
    const std::string j = to_json(c);
    const Config r = parse_config(j);
    CHECK(r == c);
    CHECK(to_json(r) == j);
  }
  SECTION("non-default values in every section") {
    Config c = parse_config(R"({
      "Verbosity": {"level": "debug"},
      "Dataset": {"name": "lj", "path": {"total": "/data/all.extxyz"}},
      "NeuralNetwork": {
        "Architecture": {"mpnn_type": "EGNN", "radius": 6.25, "hidden_dim": 48, "num_conv_layers": 5,
          "num_radial": 12, "radial_type": "bessel", "envelope": "polynomial", "activation_function": "ssp",
          "edge_envelope": "polynomial",
          "graph_pooling": "max", "periodic_boundary_conditions": true, "equivariance": true,
          "output_heads": {"graph": {"num_sharedlayers": 1, "dim_sharedlayers": 8, "num_headlayers": 3, "dim_headlayers": [8, 4, 2]},
                           "node": {"num_headlayers": 1, "dim_headlayers": [7]}},
          "task_weights": [2.0, 0.125],
          "enable_interatomic_potential": false, "energy_peratom_weight": 0.3, "stress_weight": 0.1},
        "Variables_of_interest": {"output_names": ["energy", "charges"], "type": ["graph", "node"], "output_dim": [1, 3]},
        "Training": {"num_epoch": 7, "batch_size": 3, "perc_train": 0.7, "patience": 3, "loss_function_type": "mae",
          "Optimizer": {"type": "SGD", "learning_rate": 0.1, "weight_decay": 1e-4, "momentum": 0.9},
          "Scheduler": {"type": "none", "factor": 0.25, "patience": 2, "min_lr": 1e-8},
          "seed": 18446744073709551615, "checkpoint_every": 0}
      }})");
    CHECK(c.training.seed == 18446744073709551615ULL);
    CHECK(c.arch.conv_options<EGNNConv>().edge_envelope == EdgeEnvelope::Polynomial);
    CHECK(c.arch.conv_options<EGNNConv>().equivariance);
    CHECK_THROWS_WITH(parse_config(R"({"NeuralNetwork": {"Architecture": {"envelope": "gaussian"}}})"),
                      Catch::Matchers::Contains("NeuralNetwork.Architecture.envelope"));
    CHECK(c.arch.heads[1].dim == 3);
    CHECK(c.arch.heads[1].weight == 0.125);
    const Config r = parse_config(to_json(c));
    CHECK(r == c);

    // A programmatically built config with an integer verbosity and a 3-way split.
    c.verbosity_level = "3";
    c.dataset.total.clear();
    c.dataset.train = "t.extxyz";
    c.dataset.test = "u.extxyz";
    c.arch.max_neighbours = 12;
    c.training.scheduler = true;
    CHECK(parse_config(to_json(c)) == c);
  }
  SECTION("defaults") {
    const Config c = parse_config("{}");
    CHECK(parse_config(to_json(c)) == c);
  }
}

TEST_CASE("config: unknown keys name the full dotted path", "[config]") {
  CHECK_THAT(error_of(R"({"Verbosty": {"level": 1}})"),
             StartsWith("cfg.json: ") && Contains("unknown key 'Verbosty'") &&
                 Contains("did you mean 'Verbosity'?"));
  CHECK_THAT(error_of(arch(R"("hiden_dim": 64)")),
             StartsWith("cfg.json: unknown key 'NeuralNetwork.Architecture.hiden_dim'") &&
                 Contains("did you mean 'hidden_dim'?"));
  CHECK_THAT(error_of(arch(R"("output_heads": {"graph": {"num_headlayer": 2}})")),
             Contains("'NeuralNetwork.Architecture.output_heads.graph.num_headlayer'") &&
                 Contains("did you mean 'num_headlayers'?"));
  CHECK_THAT(error_of(training(R"("Optimizer": {"lr": 0.1})")),
             Contains("unknown key 'NeuralNetwork.Training.Optimizer.lr'"));
  CHECK_THAT(error_of(training(R"("Scheduler": {"factr": 0.1})")),
             Contains("unknown key 'NeuralNetwork.Training.Scheduler.factr'") &&
                 Contains("did you mean 'factor'?"));
  CHECK_THAT(error_of(R"({"Dataset": {"path": {"trian": "a.extxyz"}}})"),
             Contains("unknown key 'Dataset.path.trian'") && Contains("did you mean 'train'?"));
  CHECK_THAT(error_of(variables(R"("output_names": ["e"], "type": ["graph"], "zzz_completely_different": 1)")),
             Contains("unknown key 'NeuralNetwork.Variables_of_interest.zzz_completely_different'") &&
                 !Contains("did you mean"));
  CHECK_THAT(error_of(R"({"NeuralNetwork": {"Architecture": {}, "Archtecture": {}}})"),
             Contains("unknown key 'NeuralNetwork.Archtecture'"));
}

TEST_CASE("config: accepted HydraGNN keys are ignored but type-checked", "[config]") {
  const std::string ok = R"({
    "Verbosity": {"level": 0},
    "Dataset": {"name": "x", "path": {"total": "d"}, "node_features": {"name": ["Z"]}, "graph_features": {},
                "compositional_stratified_splitting": true, "rotational_invariance": false},
    "NeuralNetwork": {
      "Profile": {"enable": 1},
      "Architecture": {"global_attn_engine": "", "global_attn_type": "", "pe_dim": 6, "global_attn_heads": 8,
                       "int_emb_size": 32, "out_emb_size": 16, "basis_emb_size": 8, "num_before_skip": 1,
                       "num_after_skip": 1, "envelope_exponent": 5, "max_ell": 1, "node_max_ell": 1, "num_spherical": 2,
                       "output_heads": {"node": {"num_sharedlayers": 2, "dim_sharedlayers": 32, "num_headlayers": 2,
                                                 "dim_headlayers": [32, 16], "type": "mlp"}}},
      "Variables_of_interest": {"input_node_features": [0], "output_names": ["e"], "output_index": [0],
                                "type": ["node"], "denormalize_output": false},
      "Training": {"continue": 0, "startfrom": "existing_model", "conv_checkpointing": false}},
    "Visualization": {"plot_init_solution": true, "plot_hist_solution": false, "create_plots": true}})";
  const Config c = parse_config(ok);
  CHECK(c.arch.branches[0].node_dim_headlayers == std::vector<int>{32, 16});
  CHECK(c.arch.heads[0].type == "node");

  CHECK_THAT(error_of(variables(R"("output_names": ["e"], "type": ["graph"], "denormalize_output": 1)")),
             Contains("'NeuralNetwork.Variables_of_interest.denormalize_output'") &&
                 Contains("expected boolean, got integer 1"));
  CHECK_THAT(error_of(variables(R"("output_names": ["e"], "type": ["graph"], "input_node_features": [0, "x"])")),
             Contains("'NeuralNetwork.Variables_of_interest.input_node_features[1]'") &&
                 Contains("expected integer"));
  CHECK_THAT(error_of(R"({"Dataset": {"node_features": [1, 2]}})"),
             Contains("'Dataset.node_features'") && Contains("expected object, got array"));
  CHECK_THAT(error_of(training(R"("startfrom": 3)")),
             Contains("'NeuralNetwork.Training.startfrom'") && Contains("expected string"));
  CHECK_THAT(error_of(R"({"Verbosity": {"level": [2]}})"),
             Contains("'Verbosity.level'") && Contains("expected integer or string"));
}

TEST_CASE("config: wrong JSON types name the key, expected and actual type", "[config]") {
  CHECK_THAT(error_of(arch(R"("hidden_dim": "64")")),
             StartsWith("cfg.json: ") && Contains("'NeuralNetwork.Architecture.hidden_dim'") &&
                 Contains("expected integer, got string \"64\""));
  CHECK_THAT(error_of(arch(R"("hidden_dim": 64.5)")),
             Contains("'NeuralNetwork.Architecture.hidden_dim'") && Contains("expected integer, got number 64.5"));
  CHECK_THAT(error_of(arch(R"("radius": true)")),
             Contains("'NeuralNetwork.Architecture.radius'") && Contains("expected number, got boolean true"));
  CHECK_THAT(error_of(arch(R"("output_heads": {"graph": {"dim_headlayers": [32, "a"]}})")),
             Contains("'NeuralNetwork.Architecture.output_heads.graph.dim_headlayers[1]'") &&
                 Contains("expected integer, got string"));
  CHECK_THAT(error_of(R"({"NeuralNetwork": []})"),
             Contains("'NeuralNetwork'") && Contains("expected object, got array"));
  CHECK_THAT(error_of(training(R"("EarlyStopping": "yes")")),
             Contains("'NeuralNetwork.Training.EarlyStopping'") && Contains("expected boolean"));
  CHECK_THAT(error_of(training(R"("seed": -1)")),
             Contains("'NeuralNetwork.Training.seed'") && Contains("-1"));
  CHECK_THAT(error_of(arch(R"("hidden_dim": 4294967296)")),
             Contains("'NeuralNetwork.Architecture.hidden_dim'") && Contains("out of int range"));
  CHECK_THAT(error_of(R"({"Dataset": {"path": "a.extxyz"}})"),
             Contains("'Dataset.path'") && Contains("expected object, got string"));
  CHECK_THAT(error_of("[1, 2]"), StartsWith("cfg.json: ") && Contains("object"));
}

TEST_CASE("config: out-of-range values name the key and the value", "[config]") {
  CHECK_THAT(error_of(arch(R"("radius": 0)")),
             Contains("'NeuralNetwork.Architecture.radius'") && Contains("invalid value 0"));
  CHECK_THAT(error_of(arch(R"("radius": -1.5)")), Contains("radius") && Contains("-1.5"));
  CHECK_THAT(error_of(arch(R"("hidden_dim": -1)")),
             Contains("'NeuralNetwork.Architecture.hidden_dim'") && Contains("-1"));
  CHECK_THAT(error_of(arch(R"("num_conv_layers": 0)")), Contains("num_conv_layers"));
  CHECK_THAT(error_of(training(R"("perc_train": 0)")),
             Contains("'NeuralNetwork.Training.perc_train'") && Contains("(0, 1]"));
  CHECK_THAT(error_of(training(R"("perc_train": 1.5)")), Contains("perc_train") && Contains("1.5"));
  CHECK(parse_config(training(R"("perc_train": 1.0)")).training.perc_train == 1.0);
  CHECK_THAT(error_of(arch(R"("force_weight": -2.0)")),
             Contains("'NeuralNetwork.Architecture.force_weight'") && Contains("-2.0"));
  CHECK_THAT(error_of(arch(R"("task_weights": [-1.0])")),
             Contains("'NeuralNetwork.Architecture.task_weights[0]'"));
  CHECK_THAT(error_of(arch(R"("activation_function": "swish")")),
             Contains("'NeuralNetwork.Architecture.activation_function'") && Contains("\"swish\"") &&
                 Contains("silu"));
  CHECK_THAT(error_of(arch(R"("graph_pooling": "median")")),
             Contains("graph_pooling") && Contains("\"median\""));
  CHECK_THAT(error_of(training(R"("Optimizer": {"type": "Lion"})")),
             Contains("'NeuralNetwork.Training.Optimizer.type'") && Contains("\"Lion\""));
  CHECK_THAT(error_of(training(R"("Optimizer": {"learning_rate": 0})")),
             Contains("'NeuralNetwork.Training.Optimizer.learning_rate'"));
  CHECK_THAT(error_of(training(R"("loss_function_type": "huber")")),
             Contains("'NeuralNetwork.Training.loss_function_type'") && Contains("\"huber\""));
  CHECK_THAT(error_of(training(R"("Scheduler": {"factor": 1.0})")),
             Contains("'NeuralNetwork.Training.Scheduler.factor'"));
  CHECK_THAT(error_of(arch(R"("output_heads": {"graph": {"num_headlayers": 3, "dim_headlayers": [8, 8]}})")),
             Contains("'NeuralNetwork.Architecture.output_heads.graph.dim_headlayers' has 2 entries"));
  CHECK_THAT(error_of(R"({"Dataset": {"format": "LSMS"}})"),
             Contains("'Dataset.format'") && Contains("\"LSMS\"") && Contains("not supported"));
}

TEST_CASE("config: unimplemented and unknown mpnn_type", "[config]") {
  CHECK(parse_config(arch(R"("mpnn_type": "EGNN")")).arch.mpnn_type == "EGNN");
  const Config painn = parse_config(arch(R"("mpnn_type": "PAINN", "num_radial": 5)"));
  CHECK(painn.arch.mpnn_type == "PAINN");
  CHECK(painn.arch.conv_options<hydragnn::PaiNNConv>().num_radial == 5);
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PAINN", "num_radial": 0)")),
             Contains("NeuralNetwork.Architecture.num_radial") && Contains("must be > 0"));
  const Config pnaeq = parse_config(arch(R"("mpnn_type": "PNAEq", "num_radial": 5, "pna_deg": [0, 2, 7, 1])"));
  CHECK(pnaeq.arch.conv_options<hydragnn::PNAEqConv>().pna_deg == std::vector<double>{0, 2, 7, 1});
  CHECK(parse_config(arch(R"("mpnn_type": "PNAEq")")).arch.conv_options<hydragnn::PNAEqConv>().pna_deg.empty());
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PNAEq", "pna_deg": [1, "x"])")),
             Contains("NeuralNetwork.Architecture.pna_deg[1]"));
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PNAEq", "pna_deg": [1, -2])")),
             Contains("NeuralNetwork.Architecture.pna_deg") && Contains(">= 0"));
  const Config pnaplus = parse_config(arch(R"("mpnn_type": "PNAPlus", "num_radial": 4, "envelope_exponent": 3)"));
  CHECK(pnaplus.arch.conv_options<hydragnn::PNAPlusConv>().num_radial == 4);
  CHECK(pnaplus.arch.conv_options<hydragnn::PNAPlusConv>().envelope_exponent == 3);
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PNAPlus", "envelope_exponent": 0)")),
             Contains("NeuralNetwork.Architecture.envelope_exponent") && Contains(">= 1"));
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PNAPlus", "envelope_exponent": 2.5)")), Contains("envelope_exponent"));
  // DimeNet reads HydraGNN's DimeNet++ keys (defaults: the values of HydraGNN's example configs)
  const Config dime = parse_config(arch(R"("mpnn_type": "DimeNet", "num_spherical": 5, "int_emb_size": 32,
      "basis_emb_size": 4, "out_emb_size": 16, "num_before_skip": 2, "num_after_skip": 0, "num_radial": 3)"));
  const auto& od = dime.arch.conv_options<hydragnn::DimeNetConv>();
  CHECK((od.num_spherical == 5 && od.int_emb_size == 32 && od.basis_emb_size == 4 && od.out_emb_size == 16 &&
         od.num_before_skip == 2 && od.num_after_skip == 0 && od.num_radial == 3 && od.envelope_exponent == 5));
  const auto& dd = parse_config(arch(R"("mpnn_type": "DimeNet")")).arch.conv_options<hydragnn::DimeNetConv>();
  CHECK((dd.num_spherical == 7 && dd.num_radial == 6 && dd.int_emb_size == 64 && dd.basis_emb_size == 8 &&
         dd.out_emb_size == 128 && dd.num_before_skip == 1 && dd.num_after_skip == 2));
  CHECK_THAT(error_of(arch(R"("mpnn_type": "DimeNet", "num_spherical": 17)")),
             Contains("NeuralNetwork.Architecture.num_spherical") && Contains("1 .. 16"));
  CHECK_THAT(error_of(arch(R"("mpnn_type": "DimeNet", "int_emb_size": 0)")),
             Contains("NeuralNetwork.Architecture.int_emb_size"));
  CHECK_THAT(error_of(arch(R"("mpnn_type": "DimeNet", "num_after_skip": -1)")),
             Contains("NeuralNetwork.Architecture.num_after_skip"));
  // another model's config may carry DimeNet's keys: type-checked, ignored
  CHECK(parse_config(arch(R"("mpnn_type": "PAINN", "num_spherical": 7, "int_emb_size": 64)")).arch.mpnn_type == "PAINN");
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PAINN", "int_emb_size": "big")")), Contains("int_emb_size"));
  // another model's config may carry envelope_exponent (DimeNet's key): type-checked, ignored
  CHECK(parse_config(arch(R"("mpnn_type": "PAINN", "envelope_exponent": 5)")).arch.mpnn_type == "PAINN");
  // another model's config may carry pna_deg (HydraGNN writes it for every PNA-family run): type-checked, ignored
  CHECK(parse_config(arch(R"("mpnn_type": "PAINN", "pna_deg": [1, 2])")).arch.mpnn_type == "PAINN");
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PAINN", "pna_deg": "many")")), Contains("pna_deg"));
  CHECK_THAT(error_of(arch(R"("mpnn_type": "MACE")")),
             Contains("'NeuralNetwork.Architecture.mpnn_type'") && Contains("\"MACE\"") &&
                 Contains("not implemented yet"));
  // GAT: HydraGNN's fixed heads and slope as defaults of our own keys
  const Config gat = parse_config(arch(R"("mpnn_type": "GAT", "edge_features": ["length"])"));
  CHECK(gat.arch.conv_options<hydragnn::GATConv>().gat_heads == 6);
  CHECK(gat.arch.conv_options<hydragnn::GATConv>().gat_negative_slope == 0.05);
  CHECK(gat.arch.conv_options<hydragnn::GATConv>().edge_features == std::vector<std::string>{"length"});
  CHECK(parse_config(arch(R"("mpnn_type": "GAT", "gat_heads": 2)")).arch.conv_options<hydragnn::GATConv>().gat_heads == 2);
  CHECK_THAT(error_of(arch(R"("mpnn_type": "GAT", "gat_heads": 0)")),
             Contains("NeuralNetwork.Architecture.gat_heads") && Contains(">= 1"));
  CHECK(gat.arch.conv_options<hydragnn::GATConv>().gat_dropout == 0.25);  // HydraGNN's attention dropout
  CHECK(parse_config(arch(R"("mpnn_type": "GAT", "gat_dropout": 0)")).arch.conv_options<hydragnn::GATConv>().gat_dropout == 0.0);
  CHECK_THAT(error_of(arch(R"("mpnn_type": "GAT", "gat_dropout": 1.0)")),
             Contains("NeuralNetwork.Architecture.gat_dropout") && Contains("[0, 1)"));
  // PNA, GIN, SAGE
  const Config pna = parse_config(arch(R"("mpnn_type": "PNA", "pna_deg": [0, 3, 1], "edge_features": ["length"])"));
  CHECK(pna.arch.conv_options<hydragnn::PNAConv>().pna_deg == std::vector<double>{0, 3, 1});
  CHECK(pna.arch.conv_options<hydragnn::PNAConv>().edge_features == std::vector<std::string>{"length"});
  CHECK(pna.arch.conv_options<hydragnn::PNAConv>().edge_length_scale == 0.0);  // filled by training
  CHECK(parse_config(arch(R"("mpnn_type": "PNA")")).arch.conv_options<hydragnn::PNAConv>().edge_features.empty());
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PNA", "edge_features": ["angle"])")),
             Contains("NeuralNetwork.Architecture.edge_features") && Contains("\"angle\""));
  // HydraGNN's example configs spell the length feature three ways; all are the edge length
  for (const char* name : {"lengths", "bond_length"}) {
    const Config alias = parse_config(arch(std::string(R"("mpnn_type": "PNA", "pna_deg": [0, 3, 1], "edge_features": [")") +
                                           name + "\"]"));
    CHECK(alias.arch.conv_options<hydragnn::PNAConv>().edge_features == std::vector<std::string>{name});
    CHECK(hydragnn::EdgeFeatureOptions::is_length_name(name));
  }
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PNA", "edge_features": "length")")), Contains("edge_features"));
  CHECK_THAT(error_of(arch(R"("mpnn_type": "PNA", "edge_length_scale": -1.0)")),
             Contains("NeuralNetwork.Architecture.edge_length_scale") && Contains(">= 0"));
  CHECK(parse_config(arch(R"("mpnn_type": "GIN")")).arch.mpnn_type == "GIN");
  CHECK(parse_config(arch(R"("mpnn_type": "SAGE")")).arch.mpnn_type == "SAGE");
  CHECK(parse_config(arch(R"("mpnn_type": "MFC", "max_neighbours": 12)")).arch.max_neighbours == 12);  // MFC's max_degree
  CHECK_THAT(error_of(R"({"NeuralNetwork": {"Architecture": {"mpnn_type": "MFC", "radius": 5.0}}})"),
             Contains("NeuralNetwork.Architecture.max_neighbours") && Contains("MFC needs max_neighbours"));
  CHECK(parse_config(arch(R"("mpnn_type": "CGCNN", "edge_features": ["length"])"))
            .arch.conv_options<hydragnn::CGCNNConv>()
            .edge_features.size() == 1);
  CHECK_THAT(error_of(arch(R"("mpnn_type": "CGCNN", "input_dim": 4)")),
             Contains("NeuralNetwork.Architecture.input_dim") && Contains("must equal hidden_dim"));
  // another model's config may carry edge_features: type-checked, ignored
  CHECK(parse_config(arch(R"("mpnn_type": "SchNet", "edge_features": ["length"])")).arch.mpnn_type == "SchNet");
  CHECK_THAT(error_of(arch(R"("mpnn_type": "MACE")")), Contains("not implemented yet"));
  const std::string unknown = error_of(arch(R"("mpnn_type": "Foo")"));
  CHECK_THAT(unknown, Contains("\"Foo\"") && Contains("SchNet") && !Contains("not implemented"));
  CHECK(parse_config(arch(R"("output_heads": {"node": {"num_headlayers": 1, "dim_headlayers": [4], "type": "conv"}})"))
            .arch.branches[0].node_head_type == "conv");
  CHECK_THAT(error_of(arch(R"("output_heads": {"node": {"num_headlayers": 1, "dim_headlayers": [4], "type": "conf"}})")),
             Contains("output_heads.node.type") && Contains("mlp, mlp_per_node, conv"));
}

TEST_CASE("config: Variables_of_interest consistency", "[config]") {
  CHECK_THAT(error_of(variables(R"("output_names": ["e", "f"], "type": ["graph"])")),
             Contains("'NeuralNetwork.Variables_of_interest'") && Contains("equal lengths") &&
                 Contains("output_names has 2") && Contains("type has 1"));
  CHECK_THAT(error_of(variables(R"("output_names": ["e"], "type": ["graph"], "output_dim": [1, 1])")),
             Contains("equal lengths") && Contains("output_dim has 2"));
  CHECK_THAT(error_of(variables(R"("output_names": ["e"], "type": ["edge"])")),
             Contains("'NeuralNetwork.Variables_of_interest.type[0]'") && Contains("\"edge\""));
  CHECK_THAT(error_of(variables(R"("output_names": ["e"], "type": ["graph"], "output_dim": [0])")),
             Contains("'NeuralNetwork.Variables_of_interest.output_dim[0]'"));
  CHECK_THAT(error_of(variables(R"("type": ["graph"])")), Contains("output_names' is required"));
  CHECK_THAT(error_of(variables(R"("output_names": ["e", "e"], "type": ["graph", "graph"])")),
             Contains("duplicate"));
  CHECK_THAT(error_of(R"({"NeuralNetwork": {"Architecture": {"task_weights": [1.0, 2.0]},
      "Variables_of_interest": {"output_names": ["e"], "type": ["graph"]}}})"),
             Contains("'NeuralNetwork.Architecture.task_weights' has 2 entries") && Contains("1 output heads"));
  // task_weights without Variables_of_interest applies to the default energy head.
  CHECK(parse_config(arch(R"("task_weights": [3.0])")).arch.heads.at(0).weight == 3.0);
}

TEST_CASE("config: Dataset path rules", "[config]") {
  const Config t = parse_config(R"({"Dataset": {"path": {"total": "all.extxyz"}}})");
  CHECK(t.dataset.total == "all.extxyz");
  CHECK(t.dataset.train.empty());
  CHECK_THAT(error_of(R"({"Dataset": {"path": {"total": "a", "train": "b"}}})"),
             Contains("'Dataset.path'") && Contains("not both"));
  CHECK_THAT(error_of(R"({"Dataset": {"path": {"validate": "b"}}})"),
             Contains("'Dataset.path' must contain 'total' or 'train'"));
  CHECK_THAT(error_of(R"({"Dataset": {"path": {"train": ""}}})"), Contains("'Dataset.path.train'"));

  const auto s = hydragnn::split_total(100, 0.8);
  CHECK(s.train == 80);
  CHECK(s.validate == 10);
  CHECK(s.test == 10);
  const auto s2 = hydragnn::split_total(7, 0.9);
  CHECK(s2.train + s2.validate + s2.test == 7);
}

TEST_CASE("config: malformed JSON reports source and line", "[config]") {
  const std::string msg = error_of("{\n  \"Dataset\": {\n    \"name\": \"x\",\n  }\n}", "broken.json");
  CHECK_THAT(msg, StartsWith("broken.json: malformed JSON") && Contains("line 4"));
  CHECK_THAT(error_of("", "empty.json"), StartsWith("empty.json: malformed JSON"));
  CHECK_THAT(error_of("{\"a\": 1} trailing"), StartsWith("cfg.json: malformed JSON") && Contains("line 1"));
}

TEST_CASE("config: load_config", "[config]") {
  SECTION("missing file names the path") {
    const std::string p = "/nonexistent/dir/hydragnn_missing_config.json";
    try {
      load_config(p);
      FAIL("load_config should throw");
    } catch (const ConfigError& e) {
      CHECK_THAT(std::string(e.what()), StartsWith(p) && Contains("cannot open"));
    }
  }

  SECTION("relative dataset paths resolve against the config file's directory") {
    TempDir tmp;
    const auto sub = tmp.path / "configs";
    std::filesystem::create_directories(sub);
    const std::string file = (sub / "run.json").string();
    std::ofstream(file) << R"({"Dataset": {"name": "u", "path": {"train": "../data/train.extxyz",
                                "validate": "val.extxyz", "test": "/abs/test.extxyz"}}})";
    const Config c = load_config(file);
    CHECK(c.dataset.base_dir == sub.string());
    CHECK(c.dataset.train == "../data/train.extxyz");  // stored as written
    CHECK(c.dataset.resolve(c.dataset.train) == (tmp.path / "data" / "train.extxyz").string());
    CHECK(c.dataset.resolve(c.dataset.validate) == (sub / "val.extxyz").string());
    CHECK(c.dataset.resolve(c.dataset.test) == "/abs/test.extxyz");
    CHECK(c.dataset.resolve("").empty());
  }

  SECTION("errors in a file name the file") {
    TempDir tmp;
    const std::string file = (tmp.path / "bad.json").string();
    std::ofstream(file) << R"({"NeuralNetwork": {"Training": {"num_epochs": 5}}})";
    try {
      load_config(file);
      FAIL("load_config should throw");
    } catch (const ConfigError& e) {
      CHECK_THAT(std::string(e.what()),
                 StartsWith(file + ": unknown key 'NeuralNetwork.Training.num_epochs'") &&
                     Contains("did you mean 'num_epoch'?"));
    }
  }

  SECTION("parse_config without a file resolves against '.'") {
    const Config c = parse_config(R"({"Dataset": {"path": {"train": "a.extxyz"}}})");
    CHECK(c.dataset.resolve("a.extxyz") == "a.extxyz");
    CHECK(c.dataset.resolve("/x/a.extxyz") == "/x/a.extxyz");
  }
}

TEST_CASE("a dataset file is checked under its config key", "[config][dataset]") {
  TempDir tmp;
  const std::string cfg_file = (tmp.path / "cfg.json").string();
  std::ofstream(cfg_file) << R"({"Dataset": {"path": {"train": "x.extxyz", "validate": "sub", "test": "t.extxyz"}}})";
  std::filesystem::create_directory(tmp.path / "sub");
  std::ofstream((tmp.path / "t.extxyz").string()) << "";
  const Config c = load_config(cfg_file);
  const std::string abs_dir = std::filesystem::absolute(tmp.path).lexically_normal().string();
  CHECK_THROWS_WITH(c.dataset.existing_file("train"),
                    "Dataset.path.train: file 'x.extxyz' not found (resolved to " + abs_dir + "/x.extxyz)");
  CHECK_THROWS_WITH(c.dataset.existing_file("validate"), StartsWith("Dataset.path.validate: 'sub' is a directory"));
  CHECK(c.dataset.existing_file("test") == c.dataset.resolve("t.extxyz"));
  CHECK_THROWS_WITH(c.dataset.existing_file("total"), "Dataset.path.total: not set");
  CHECK(c.dataset.path("train") == "x.extxyz");
}

TEST_CASE("config: HydraGNN's MLIP layout — one head of any name is the energy, and Checkpoint keys are accepted", "[config]") {
  // the Variables_of_interest / Training blocks of HydraGNN's examples/qm7x/qm7x_mlip.json
  const Config c = parse_config(R"({"NeuralNetwork": {
    "Architecture": {"mpnn_type": "EGNN", "enable_interatomic_potential": true, "energy_weight": 1.0, "force_weight": 10.0},
    "Variables_of_interest": {"input_node_features": [0], "output_index": [1], "type": ["node"], "output_dim": [1],
                              "output_names": ["graph_energy"], "denormalize_output": false},
    "Training": {"Checkpoint": true, "checkpoint_warmup": 5, "num_epoch": 20, "batch_size": 32, "continue": 0,
                 "startfrom": "./logs/qm7x/qm7x", "Optimizer": {"learning_rate": 0.001}}}})",
                                "qm7x_mlip");
  REQUIRE(c.arch.heads.size() == 1);
  CHECK(is_energy_head(c.arch, c.arch.heads[0]));
  CHECK_FALSE(c.training.continue_run);  // continue 0: startfrom is kept but not acted on
  CHECK(c.training.startfrom == "./logs/qm7x/qm7x");
  // beside other heads only "energy" is the energy; without the interatomic potential nothing is
  const Config two = parse_config(R"({"NeuralNetwork": {"Architecture": {"enable_interatomic_potential": true},
    "Variables_of_interest": {"output_names": ["graph_energy", "gap"], "type": ["node", "graph"]}}})",
                                  "two");
  CHECK_FALSE(is_energy_head(two.arch, two.arch.heads[0]));
  const Config direct = parse_config(R"({"NeuralNetwork": {"Architecture": {"enable_interatomic_potential": false},
    "Variables_of_interest": {"output_names": ["energy"], "type": ["graph"]}}})",
                                     "direct");
  CHECK_FALSE(is_energy_head(direct.arch, direct.arch.heads[0]));
  CHECK_NOTHROW(parse_config(R"({"NeuralNetwork": {"Training": {"Checkpoint": 1}}})", "ck"));  // HydraGNN's zinc.json
  // keys of HydraGNN's GFM260 / multibranch configs: edge_dim (overwritten by HydraGNN), pna_deg null
  const Config gfm = parse_config(R"({"NeuralNetwork": {"Architecture": {"mpnn_type": "PNA", "edge_dim": null,
    "pna_deg": null, "output_dim": [1], "output_type": ["graph"], "num_nodes": 24},
    "Variables_of_interest": {"output_names": ["energy"], "type": ["graph"], "graph_feature_names": ["energy"],
      "graph_feature_dims": [1], "node_feature_names": ["atomic_number"], "node_feature_dims": [1]},
    "Training": {"epoch_start": 3}}})", "gfm");
  CHECK(gfm.arch.options.at("pna_deg").empty());
  CHECK_THROWS_WITH(parse_config(R"({"NeuralNetwork": {"Architecture": {"edge_dim": "x"}}})", "ed"),
                    Catch::Contains("NeuralNetwork.Architecture.edge_dim"));
  CHECK_THROWS_WITH(parse_config(R"({"NeuralNetwork": {"Training": {"Checkpoint": "yes"}}})", "ck"),
                    Catch::Contains("NeuralNetwork.Training.Checkpoint"));
  // HydraGNN's LJ example writes early_stopping, which HydraGNN does not read (it reads EarlyStopping)
  CHECK_FALSE(parse_config(R"({"NeuralNetwork": {"Training": {"early_stopping": true}}})", "lj").training.early_stopping);
  CHECK_THROWS_WITH(parse_config(R"({"NeuralNetwork": {"Training": {"early_stopping": 3}}})", "lj"),
                    Catch::Contains("NeuralNetwork.Training.early_stopping"));
}

TEST_CASE("config: oversampling (HydraGNN's --oversampling and --oversampling_num_samples)", "[config]") {
  const Config off = parse_config(R"({"NeuralNetwork": {"Training": {}}})", "o");
  CHECK_FALSE(off.training.oversampling);
  CHECK(off.training.oversampling_num_samples == 0);
  CHECK(to_json(off).find("oversampling") == std::string::npos);
  const Config on = parse_config(R"({"NeuralNetwork": {"Training": {"oversampling": true, "oversampling_num_samples": 64}}})", "o");
  CHECK(on.training.oversampling);
  CHECK(on.training.oversampling_num_samples == 64);
  CHECK(parse_config(to_json(on), "o") == on);
  CHECK_THROWS_WITH(parse_config(R"({"NeuralNetwork": {"Training": {"oversampling": true, "oversampling_num_samples": -1}}})", "o"),
                    Catch::Contains("NeuralNetwork.Training.oversampling_num_samples") && Catch::Contains(">= 0"));
  CHECK_THROWS_WITH(parse_config(R"({"NeuralNetwork": {"Training": {"oversampling_num_samples": 8}}})", "o"),
                    Catch::Contains("NeuralNetwork.Training.oversampling") && Catch::Contains("not true"));
}

TEST_CASE("config: output_heads as HydraGNN's branch lists, Dataset.datasets and their branches", "[config][branches]") {
  // the layout of HydraGNN's multibranch examples: graph and node heads listed per branch
  const std::string heads = R"("output_heads": {
      "graph": [{"type": "branch-0", "architecture": {"num_sharedlayers": 2, "dim_sharedlayers": 50,
                                                      "num_headlayers": 2, "dim_headlayers": [50, 25]}},
                {"type": "branch-1", "architecture": {"num_sharedlayers": 1, "dim_sharedlayers": 20,
                                                      "num_headlayers": 1, "dim_headlayers": [50]}}],
      "node": [{"type": "branch-0", "architecture": {"num_headlayers": 2, "dim_headlayers": [200, 200], "type": "mlp"}},
               {"type": "branch-1", "architecture": {"num_headlayers": 1, "dim_headlayers": [100], "type": "mlp"}}]})";
  auto config = [&](const std::string& dataset, const std::string& h) {
    // as HydraGNN's multibranch examples: no enable_interatomic_potential (HydraGNN's default false)
    return "{" + dataset + R"("NeuralNetwork": {"Architecture": {"mpnn_type": "SchNet", )" + h +
           R"(, "task_weights": [1.0, 1.0]},
        "Variables_of_interest": {"output_names": ["energy", "force"], "output_index": [0, 2], "output_dim": [1, 3],
                                  "type": ["graph", "node"]}}})";
  };
  const Config c = parse_config(config("", heads));
  CHECK_FALSE(c.arch.enable_interatomic_potential);  // HydraGNN's default with Variables_of_interest
  CHECK_FALSE(is_energy_head(c.arch, c.arch.heads[0]));  // energy and force: direct heads
  REQUIRE(c.arch.branches.size() == 2);
  CHECK(c.arch.branches[0].name == "branch-0");
  CHECK(c.arch.branches[0].graph_num_sharedlayers == 2);
  CHECK(c.arch.branches[0].graph_dim_headlayers == std::vector<int>{50, 25});
  CHECK(c.arch.branches[0].node_dim_headlayers == std::vector<int>{200, 200});
  CHECK(c.arch.branches[1].name == "branch-1");
  CHECK(c.arch.branches[1].graph_dim_sharedlayers == 20);
  CHECK(c.arch.branches[1].graph_dim_headlayers == std::vector<int>{50});
  CHECK(c.arch.branches[1].node_dim_headlayers == std::vector<int>{100});
  const hydragnn::ModelSpec s = hydragnn::spec_from_config(c);
  REQUIRE(s.num_branches() == 2);
  CHECK(s.branches[1].node_head_dims == std::vector<int>{100});
  CHECK(s.branch_index("branch-1") == 1);
  CHECK(parse_config(to_json(c)) == c);  // the lists round-trip
  // one object beside a list: the same widths for every branch
  const Config one = parse_config(config("", R"("output_heads": {
      "graph": [{"type": "a", "architecture": {"num_sharedlayers": 1, "dim_sharedlayers": 8, "num_headlayers": 1, "dim_headlayers": [4]}},
                {"type": "b", "architecture": {"num_sharedlayers": 1, "dim_sharedlayers": 6, "num_headlayers": 1, "dim_headlayers": [3]}}],
      "node": {"num_headlayers": 1, "dim_headlayers": [7], "type": "mlp"}})"));
  REQUIRE(one.arch.branches.size() == 2);
  CHECK(one.arch.branches[1].name == "b");
  CHECK(one.arch.branches[0].node_dim_headlayers == std::vector<int>{7});
  CHECK(one.arch.branches[1].node_dim_headlayers == std::vector<int>{7});
  CHECK(parse_config(to_json(one)) == one);
  // errors name the key
  CHECK_THROWS_WITH(parse_config(config("", R"("output_heads": {
      "graph": [{"type": "branch-0", "architecture": {"num_sharedlayers": 1, "dim_sharedlayers": 8, "num_headlayers": 1, "dim_headlayers": [4]}}],
      "node": [{"type": "branch-1", "architecture": {"num_headlayers": 1, "dim_headlayers": [7]}}]})")),
                    Catch::Contains("must list the same branches"));
  CHECK_THROWS_WITH(parse_config(config("", R"("output_heads": {"graph": [{"architecture": {}}]})")),
                    Catch::Contains("output_heads.graph[0].type' is missing"));
  CHECK_THROWS_WITH(parse_config(config("", R"("output_heads": {"graph": [{"type": "x", "architecture": {"num_sharedlayers": 1,
      "dim_sharedlayers": 8, "num_headlayers": 1, "dim_headlayers": [4]}, "widths": 3}]})")),
                    Catch::Contains("unknown key 'NeuralNetwork.Architecture.output_heads.graph[0].widths'"));

  // node head types: mlp or mlp_per_node, one type for every branch; conv not yet
  CHECK(parse_config(config("", R"("output_heads": {"node": {"num_headlayers": 1, "dim_headlayers": [7], "type": "mlp_per_node"}})"))
            .arch.branches[0].node_head_type == "mlp_per_node");
  CHECK_THROWS_WITH(parse_config(config("", R"("output_heads": {"node": [
      {"type": "branch-0", "architecture": {"num_headlayers": 1, "dim_headlayers": [7], "type": "mlp"}},
      {"type": "branch-1", "architecture": {"num_headlayers": 1, "dim_headlayers": [7], "type": "mlp_per_node"}}]})")),
                    Catch::Contains("every branch's node heads must be of one type"));
  CHECK_THROWS_WITH(parse_config(config("", R"("output_heads": {"node": [
      {"type": "branch-0", "architecture": {"num_headlayers": 1, "dim_headlayers": [7], "type": "conv"}},
      {"type": "branch-1", "architecture": {"num_headlayers": 1, "dim_headlayers": [7], "type": "conv"}}]})")),
                    Catch::Contains("need one head branch"));

  // several datasets: branches by position, by name, or the only branch
  const std::string two = R"("Dataset": {"name": "SiGe", "datasets": [
      {"name": "Si", "path": {"train": "si.extxyz", "test": "si_test.extxyz"}},
      {"name": "Ge", "path": {"total": "ge.extxyz"}}]}, )";
  const Config d = parse_config(config(two, heads));
  REQUIRE(d.dataset.datasets.size() == 2);
  CHECK(d.dataset.datasets[0].branch == "branch-0");
  CHECK(d.dataset.datasets[1].branch == "branch-1");
  CHECK(d.dataset.datasets[1].total == "ge.extxyz");
  CHECK(d.dataset.parts().size() == 2);
  CHECK(parse_config(to_json(d)) == d);
  const Config named = parse_config(config(R"("Dataset": {"datasets": [
      {"name": "Si", "branch": "branch-1", "path": {"train": "si.extxyz"}},
      {"name": "Ge", "branch": "branch-1", "path": {"train": "ge.extxyz"}},
      {"name": "C", "branch": "branch-0", "path": {"train": "c.extxyz"}}]}, )", heads));
  CHECK(named.dataset.datasets[1].branch == "branch-1");
  CHECK(named.dataset.datasets[2].branch == "branch-0");
  const Config shared = parse_config(config(two, R"("output_heads": {"node": {"num_headlayers": 1, "dim_headlayers": [7]}})"));
  CHECK(shared.dataset.datasets[1].branch == "branch-0");
  CHECK(parse_config(config("", R"("output_heads": {"node": {"num_headlayers": 1, "dim_headlayers": [7]}})")).dataset.parts().front().branch ==
        "branch-0");
  CHECK_THROWS_WITH(parse_config(config(R"("Dataset": {"datasets": [{"name": "Si", "path": {"train": "a"}},
      {"name": "Ge", "path": {"train": "b"}}, {"name": "C", "path": {"train": "c"}}]}, )", heads)),
                    Catch::Contains("Dataset.datasets[0].branch' is missing: 3 datasets, 2 head branches"));
  CHECK_THROWS_WITH(parse_config(config(R"("Dataset": {"datasets": [{"name": "Si", "branch": "branch-7", "path": {"train": "a"}}]}, )", heads)),
                    Catch::Contains("'Dataset.datasets[0].branch' = \"branch-7\" is not a branch") &&
                        Catch::Contains("\"branch-0\", \"branch-1\""));
  CHECK_THROWS_WITH(parse_config(config(R"("Dataset": {"path": {"train": "x"}, "datasets": [{"name": "Si", "path": {"train": "a"}}]}, )", heads)),
                    Catch::Contains("exclude each other"));
  CHECK_THROWS_WITH(parse_config(config(R"("Dataset": {"datasets": [{"name": "Si", "path": {"train": "a"}}, {"name": "Si", "path": {"train": "b"}}]}, )", heads)),
                    Catch::Contains("Dataset.datasets[1].name': dataset \"Si\" is listed twice"));
  CHECK_THROWS_WITH(parse_config(config(R"("Dataset": {"datasets": [{"name": "Si", "path": {"validate": "a"}}]}, )", heads)),
                    Catch::Contains("Dataset.datasets[0].path' must contain 'total' or 'train'"));
  CHECK_THROWS_WITH(parse_config(config(R"("Dataset": {"datasets": [{"path": {"train": "a"}}]}, )", heads)),
                    Catch::Contains("Dataset.datasets[0].name' is missing"));
}
