// SPDX-License-Identifier: BSD-3-Clause
// Reading the golden files of tools/golden/ (tests only): the files, their structures, and each
// convolution's options from a file's "architecture" (the keys HydraGNN's config would carry).
#pragma once

#include <catch2/catch.hpp>

#include <hydragnn/conv/cgcnn.hpp>
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
#include <hydragnn/autodiff/potential.hpp>
#include <hydragnn/core/structure.hpp>
#include <hydragnn/graph/batch_builder.hpp>
#include <hydragnn/io/named_params.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

namespace hydragnn_test {

inline nlohmann::json load_golden(const std::string& name) {
  const std::string path = std::string(HYDRAGNN_SOURCE_DIR) + "/tests/golden/" + name;
  std::ifstream in(path);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

inline hydragnn::Structure golden_structure(const nlohmann::json& js) {
  hydragnn::Structure s;
  s.source = "golden:" + js.at("name").get<std::string>();
  s.numbers = js.at("numbers").get<std::vector<int>>();
  for (const auto& p : js.at("positions")) s.positions.push_back({p[0].get<double>(), p[1].get<double>(), p[2].get<double>()});
  if (!js.at("cell").is_null()) {
    s.has_cell = true;
    for (int a = 0; a < 3; ++a)
      for (int c = 0; c < 3; ++c) s.cell[a][c] = js["cell"][a][c].get<double>();
  }
  for (int a = 0; a < 3; ++a) s.pbc[a] = js.at("pbc")[a].get<bool>();
  return s;
}

/// Convolution Conv's options from a golden "architecture": its own keys, and the edge-length feature
/// where the file has one. GAT's attention dropout off: the generators set HydraGNN's to 0 for the
/// training-mode steps they record (its masks are torch's random draws).
template <class Conv>
typename Conv::options_type golden_options(const nlohmann::json& a) {
  using namespace hydragnn;
  using O = typename Conv::options_type;
  O o;
  auto get = [&](const char* key, auto& v) {
    if (a.contains(key) && !a.at(key).is_null()) v = a.at(key).get<std::decay_t<decltype(v)>>();
  };
  if constexpr (std::is_same<Conv, SchNetConv>::value) {
    get("num_filters", o.num_filters);
    get("num_gaussians", o.num_gaussians);
  }
  if constexpr (std::is_same<Conv, EGNNConv>::value) get("equivariance", o.equivariance);
  if constexpr (std::is_same<Conv, PaiNNConv>::value) get("num_radial", o.num_radial);
  if constexpr (std::is_same<Conv, PNAEqConv>::value || std::is_same<Conv, PNAPlusConv>::value) get("num_radial", o.num_radial);
  if constexpr (std::is_same<Conv, PNAPlusConv>::value) get("envelope_exponent", o.envelope_exponent);
  if constexpr (std::is_same<Conv, PNAEqConv>::value || std::is_same<Conv, PNAConv>::value ||
                std::is_same<Conv, PNAPlusConv>::value)
    get("pna_deg", o.pna_deg);
  if constexpr (std::is_same<Conv, DimeNetConv>::value) {
    get("num_radial", o.num_radial);
    get("num_spherical", o.num_spherical);
    get("envelope_exponent", o.envelope_exponent);
    get("int_emb_size", o.int_emb_size);
    get("basis_emb_size", o.basis_emb_size);
    get("out_emb_size", o.out_emb_size);
    get("num_before_skip", o.num_before_skip);
    get("num_after_skip", o.num_after_skip);
  }
  if constexpr (std::is_base_of<EdgeFeatureOptions, O>::value) {
    get("edge_features", o.edge_features);
    get("edge_length_scale", o.edge_length_scale);
  }
  if constexpr (std::is_same<Conv, GATConv>::value) o.gat_dropout = 0.0;  // HydraGNN's set to 0 for the recorded steps
  return o;
}

/// One training-mode step of HydraGNN's record `tm` (tools/golden: the golden structures as one batch
/// through model.train()): our energies (1e-10 relative) and forces (1e-9 eV/A) with the batch's
/// BatchNorm statistics, and the running statistics after the step by name (1e-12). Leaves the model
/// in evaluation mode; returns the names of the buffers compared.
template <class ModelT>
std::vector<std::string> check_golden_train_mode(const typename ModelT::exec_space& exec, ModelT& model,
                                                 const nlohmann::json& structures, const nlohmann::json& tm) {
  using namespace hydragnn;
  using M = typename ModelT::memory_space;
  std::vector<Structure> all;
  for (const auto& js : structures) all.push_back(golden_structure(js));
  const ModelSpec& spec = model.spec();
  auto batch = make_batch<M>(all, spec.cutoff, -1, spec.species, {}, ModelT::traits::needs_triplets);
  Workspace<M> ws;
  model.set_training(true);
  const auto w = model.weights(exec);
  typename ModelT::template Forward<double> f;
  auto ef = energy_forces(exec, model, w, batch, f, ws, true);
  model.update_running_statistics(exec);
  model.set_training(false);
  Kokkos::fence();
  for (std::size_t k = 0; k < all.size(); ++k) {
    const double E_ref = tm.at("energies")[k].get<double>();
    INFO("structure " << k << ": " << ef.energy(k) << " vs " << E_ref);
    CHECK(std::fabs(ef.energy(k) - E_ref) <= 1e-10 * std::fabs(E_ref));
  }
  double ferr = 0;
  for (int i = 0; i < batch.num_atoms; ++i)
    for (int a = 0; a < 3; ++a) ferr = std::max(ferr, std::fabs(ef.forces(i, a) - tm.at("forces")[i][a].get<double>()));
  CHECK(ferr <= 1e-9);
  // the running statistics after the step, by name, against torch's
  const nlohmann::json after = named_parameters_json(model);
  double serr = 0;
  std::vector<std::string> names;
  for (auto it = tm.at("buffers_after").begin(); it != tm.at("buffers_after").end(); ++it) {
    const auto ref = it->at("data").get<std::vector<double>>();
    const auto ours = after.at(it.key()).at("data").get<std::vector<double>>();
    REQUIRE(ours.size() == ref.size());
    for (std::size_t k = 0; k < ref.size(); ++k) serr = std::max(serr, std::fabs(ours[k] - ref[k]));
    names.push_back(it.key());
  }
  CHECK(serr <= 1e-12);
  return names;
}

}  // namespace hydragnn_test
