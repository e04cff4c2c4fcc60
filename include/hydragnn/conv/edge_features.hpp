// SPDX-License-Identifier: BSD-3-Clause
// HydraGNN's edge features for the invariant convolutions that accept them (PNA, CGCNN):
// `edge_features: ["length"]` gives each edge the attribute a_e = d_e / edge_length_scale (E x 1),
// computed here from the edge vectors so that the energy, forces and force training differentiate
// through it (HydraGNN precomputes edge_attr in its datasets and rejects it with interatomic
// potentials). The scale defaults to the training set's longest edge (HydraGNN's normalisation of
// non-periodic data; the trainer fills it: train/trainer.hpp, fill_options_from_shards).
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/core/workspace.hpp>
#include <hydragnn/kernels/radial.hpp>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

/// The options of an edge-length feature, and its validation (fail(key, why)).
struct EdgeFeatureOptions {
  std::vector<std::string> edge_features;  ///< HydraGNN edge_features: [] or ["length"] (or an alias)
  double edge_length_scale = 0;           ///< ours: a_e = d_e / scale (0: the training set's longest edge)
  template <class V>
  void visit_edge_features(V&& v) {
    v("edge_features", edge_features);
    v("edge_length_scale", edge_length_scale);
  }
  /// HydraGNN only counts the names (edge_dim = len(edge_features)) and its datasets store the edge
  /// length as edge_attr; its example configs spell it "length", "lengths" or "bond_length".
  static bool is_length_name(const std::string& f) { return f == "length" || f == "lengths" || f == "bond_length"; }
  template <class F>
  void validate_edge_features(F&& fail) const {
    if (edge_features.size() > 1) fail("edge_features", "at most one edge feature (\"length\") is implemented");
    for (const auto& f : edge_features)
      if (!is_length_name(f))
        fail("edge_features", (std::string("only the edge length (\"length\", or HydraGNN's \"lengths\" / "
                                           "\"bond_length\") is implemented, not \"") + f + "\"").c_str());
    if (!(edge_length_scale >= 0) || !std::isfinite(edge_length_scale))
      fail("edge_length_scale", "must be >= 0 (0: the training set's longest edge)");
  }
};

namespace conv {

/// The edge-length feature of a convolution: off (no edge features) or a_e = d_e / scale.
struct EdgeLength {
  bool on = false;
  double scale = 1;

  EdgeLength() = default;
  EdgeLength(const EdgeFeatureOptions& o, const char* model) : on(!o.edge_features.empty()), scale(o.edge_length_scale) {
    if (on && !(scale > 0))
      throw std::runtime_error(std::string(model) + ": 'edge_length_scale' is 0; hydragnn train sets it to the "
                               "training set's longest edge, or give it in the config");
  }
  int dim() const { return on ? 1 : 0; }

  template <class S, class M> struct Cache {
    Vec<S, M> d;
    Mat<S, M> a;  ///< E x 1
  };
  template <class S, class M> struct Grad {
    Vec<S, M> dbar;
    Mat<S, M> abar;  ///< E x 1
  };

  template <class Exec, class S>
  void forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r, Cache<S, mem_t<Exec>>& c,
               Workspace<mem_t<Exec>>& ws, const std::string& lbl) const {
    if (!on) return;
    c.d = ws.template vec<S>(lbl + ".d", 0, b.num_edges);
    c.a = ws.template mat<S>(lbl + ".a", 0, b.num_edges, 1);
    kernels::edge_lengths<Exec, S>(exec, r, c.d);
    kernels::length_feature<Exec, S>(exec, c.d, scale, c.a);
  }
  template <class Exec, class S>
  void grad_init(const Exec& exec, const Batch<mem_t<Exec>>& b, Grad<S, mem_t<Exec>>& g, Workspace<mem_t<Exec>>& ws,
                 const std::string& lbl) const {
    if (!on) return;
    g.dbar = ws.template zeroed_vec<S>(exec, lbl + ".d_bar", 0, b.num_edges);
    g.abar = ws.template zeroed_mat<S>(exec, lbl + ".a_bar", 0, b.num_edges, 1);
  }
  template <class Exec, class S>
  void backward(const Exec& exec, const Mat<S, mem_t<Exec>>& r, const Cache<S, mem_t<Exec>>& c,
                Grad<S, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar) const {
    if (!on) return;
    kernels::length_feature_backward<Exec, S>(exec, g.abar, scale, g.dbar);
    kernels::edge_lengths_backward<Exec, S>(exec, r, c.d, g.dbar, rbar);
  }
};

/// Base of a convolution whose only edge geometry is the optional length feature (CGCNN, GAT; PNA
/// adds its degree scalers to the cache): the edge caches and the three edge passes, labelled
/// hydragnn::<Derived::name>Conv::... The energy depends on the positions exactly when the feature is on.
template <class Derived>
struct EdgeLengthGeometry {
  EdgeLength length;

  EdgeLengthGeometry() = default;
  explicit EdgeLengthGeometry(const EdgeLength& l) : length(l) {}
  bool uses_positions() const { return length.on; }

  template <class S, class M> struct EdgeCache : EdgeLength::Cache<S, M> {};
  template <class S, class M> struct EdgeGrad : EdgeLength::Grad<S, M> {};

  static std::string edge_label(const char* what) { return std::string("hydragnn::") + Derived::name + "Conv::" + what; }
  template <class Exec, class S, class Cache>
  void edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r, Cache& c,
                    Workspace<mem_t<Exec>>& ws) const {
    length.forward<Exec, S>(exec, b, r, c, ws, edge_label("edge_forward"));
  }
  template <class Exec, class S>
  void edge_grad_init(const Exec& exec, const Batch<mem_t<Exec>>& b, EdgeGrad<S, mem_t<Exec>>& g,
                      Workspace<mem_t<Exec>>& ws) const {
    length.grad_init<Exec, S>(exec, b, g, ws, edge_label("edge_grad"));
  }
  template <class Exec, class S, class Cache>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>& r, const Cache& c,
                     EdgeGrad<S, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar, Workspace<mem_t<Exec>>&) const {
    length.backward<Exec, S>(exec, r, c, g, rbar);
  }
};

}  // namespace conv
}  // namespace hydragnn
