// SPDX-License-Identifier: BSD-3-Clause
// Options the model tests use for each registered convolution (default: the convolution's defaults).
// EGNN runs with coordinate updates (equivariance) and a smooth inner activation, so that the
// tests exercise its vector stream and its second derivatives.
#pragma once

#include <hydragnn/model/registry.hpp>

namespace hydragnn_test {

/// The model spec's max_neighbours in the tests: MFC's max_degree (4: the random test structures have
/// atoms above and below it; the tests' graphs are not capped), none for the other models.
inline int test_max_neighbours(const std::string& type) { return type == hydragnn::MFCConv::name ? 4 : -1; }

template <class Conv>
typename Conv::options_type test_options() {
  return typename Conv::options_type();
}
template <>
inline hydragnn::SchNetOptions test_options<hydragnn::SchNetConv>() {
  hydragnn::SchNetOptions o;
  o.num_gaussians = 12;
  return o;
}
template <>
inline hydragnn::EGNNOptions test_options<hydragnn::EGNNConv>() {
  hydragnn::EGNNOptions o;
  o.equivariance = true;
  o.inner_activation = hydragnn::Activation::SiLU;
  return o;
}

/// PNAEq with a degree histogram like the test graphs' (in-degrees 0..6).
template <>
inline hydragnn::PNAEqOptions test_options<hydragnn::PNAEqConv>() {
  hydragnn::PNAEqOptions o;
  o.num_radial = 5;
  o.pna_deg = {1, 3, 6, 9, 7, 4, 2};
  return o;
}

/// PNA with the edge-length feature (its energy then depends on the positions).
template <>
inline hydragnn::PNAOptions test_options<hydragnn::PNAConv>() {
  hydragnn::PNAOptions o;
  o.pna_deg = {1, 3, 6, 9, 7, 4, 2};
  o.edge_features = {"length"};
  o.edge_length_scale = 3.5;
  return o;
}

/// PNAPlus with the edge-length feature (its edge block then runs as one composed layer,
/// kernels::linear_compose; the golden conv-head test runs it without), a small basis and a low
/// envelope exponent (its second derivatives are the largest).
template <>
inline hydragnn::PNAPlusOptions test_options<hydragnn::PNAPlusConv>() {
  hydragnn::PNAPlusOptions o;
  o.num_radial = 4;
  o.envelope_exponent = 2;
  o.pna_deg = {1, 3, 6, 9, 7, 4, 2};
  o.edge_features = {"length"};
  o.edge_length_scale = 3.5;
  return o;
}

/// DimeNet++ with small embeddings, l = 0..3 and one residual layer on each side of the skip (the
/// golden test has the edge-length feature and two after the skip).
template <>
inline hydragnn::DimeNetOptions test_options<hydragnn::DimeNetConv>() {
  hydragnn::DimeNetOptions o;
  o.num_radial = 4;
  o.num_spherical = 4;
  o.envelope_exponent = 3;
  o.int_emb_size = 6;
  o.basis_emb_size = 3;
  o.out_emb_size = 10;
  o.num_before_skip = 1;
  o.num_after_skip = 1;
  return o;
}

/// CGCNN with the edge-length feature.
template <>
inline hydragnn::CGCNNOptions test_options<hydragnn::CGCNNConv>() {
  hydragnn::CGCNNOptions o;
  o.edge_features = {"length"};
  o.edge_length_scale = 3.5;
  return o;
}

/// GAT with three heads (HydraGNN fixes six) and the edge-length feature.
template <>
inline hydragnn::GATOptions test_options<hydragnn::GATConv>() {
  hydragnn::GATOptions o;
  o.gat_heads = 3;
  o.edge_features = {"length"};
  o.edge_length_scale = 3.5;
  return o;
}

}  // namespace hydragnn_test
