// SPDX-License-Identifier: BSD-3-Clause
// PNA (HydraGNN's PNAStack layer = PyTorch Geometric's PNAConv with aggregators mean/min/max/std,
// scalers identity/amplification/attenuation/linear, towers 1, pre_layers 1, post_layers 1,
// divide_input False), written as a composition of ops (receiver i = dst(e), sender j = src(e)):
//
//   edges (once):  d_e = |r_e|, a_e = d_e / edge_length_scale            (edge_features ["length"] only)
//   layer l:       m_e  = pre([h_i, h_j, edge_encoder(a_e)])            Linear 3I -> I (2I without edge features)
//                       = pre_i(h)[i] + pre_j(h)[j] + pre_e(edge_encoder(a_e))   node blocks computed per node
//                       pre_e(edge_encoder(a_e)) = a_e c + d: two linear maps composed (kernels::pna_length_compose)
//                  A_i  = PNA(m) over the edges into i                   N x 16I (kernels/pna.hpp)
//                  out  = lin(post([h_i, A_i]))                          Linear 17I -> H, Linear H -> H
// HydraGNN's Base puts a BatchNorm after every layer, then the stack activation. Without edge features
// the energy does not depend on the positions (as HydraGNN's PNA without edge_attr). With them the edge
// attribute is computed from the positions inside the model, so forces and force training work (in
// HydraGNN edge_attr is a precomputed input and cannot be used with interatomic potentials).
#pragma once

#include <hydragnn/conv/edge_features.hpp>
#include <hydragnn/conv/pna_blocks.hpp>
#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/pna.hpp>
#include <hydragnn/kernels/segment.hpp>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct PNAOptions : EdgeFeatureOptions {
  std::vector<double> pna_deg;  ///< in-degree histogram of the training set (HydraGNN pna_deg)
  template <class V>
  void visit(V&& v) {
    v("pna_deg", pna_deg);
    visit_edge_features(v);
  }
  template <class F>
  void validate(F&& fail) const {
    for (double h : pna_deg)
      if (!(h >= 0) || !std::isfinite(h)) fail("pna_deg", "must hold finite counts >= 0");
    validate_edge_features(fail);
  }
};

struct PNAConv : conv::EdgeLengthGeometry<PNAConv> {
  static constexpr const char* name = "PNA";
  using options_type = PNAOptions;
  using node_state = conv::Scalars;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::BatchNormFeatureLayer;  // HydraGNN: BatchNorm

  struct Layer {
    int in = 0;  ///< I
    LinearShape enc, pre, pre_i, pre_j, pre_e;
    conv::PnaUpdate upd;  ///< post_nns and lin
  };
  std::vector<Layer> layers;
  kernels::PnaScalers scalers;

  PNAConv() = default;
  PNAConv(ParamAllocator& alloc, const ConvCommon& common, const PNAOptions& opt)
      : EdgeLengthGeometry(conv::EdgeLength(opt, name)) {
    if (opt.pna_deg.empty())
      throw std::runtime_error("PNA: 'pna_deg' (the training set's in-degree histogram) is empty; hydragnn train "
                               "computes it from the training set, or give it in the config");
    using K = kernels::PnaScaler;
    scalers = kernels::PnaScalers::from_histogram({K::Identity, K::Amplification, K::Attenuation, K::Linear}, opt.pna_deg);
    const int H = common.hidden_dim;
    const int parts = length.on ? 3 : 2;
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l) + ".module_0";
      const int I = l == 0 ? common.input_dim : H;
      Layer L;
      L.in = I;
      if (length.on) L.enc = alloc.linear(1, I, true, n + ".edge_encoder");
      L.pre = alloc.linear(parts * I, I, true, n + ".pre_nns.0.0");
      L.pre_i = L.pre.columns(0, I, true);  // [x_i, x_j, edge]
      L.pre_j = L.pre.columns(I, I, false);
      if (length.on) L.pre_e = L.pre.columns(2 * I, I, false);
      L.upd = conv::PnaUpdate(alloc, n, I, H, 16);
      layers.push_back(L);
    }
  }
  int num_layers() const { return int(layers.size()); }
  template <class S, class M> struct EdgeCache : conv::EdgeLength::Cache<S, M> {
    Mat<real_t<S>, M> scale;  ///< N x 4 degree scalers
  };
  template <class S, class M> struct LayerCache {
    Mat<S, M> m;
    conv::PnaUpdate::Cache<S, M> upd;
  };

  template <class Exec, class S>
  void edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                    EdgeCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::PNAConv::edge_forward";
    c.scale = ws.template mat<real_t<S>>(lbl + ".scale", 0, b.num_atoms, scalers.n);
    kernels::pna_scales<Exec, real_t<S>>(exec, b.row_ptr, scalers, c.scale);
    length.forward<Exec, S>(exec, b, r, c, ws, lbl);
  }

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int E = b.num_edges, I = L.in;
    const std::string lbl = "hydragnn::PNAConv::layer_forward";
    // message m = pre([h_i, h_j, enc(a)]): the node blocks per node, gathered; the edge block
    // pre_e(enc(a)) = a c + d, its two linear maps composed (kernels::pna_length_compose)
    c.m = ws.template mat<S>(lbl + ".m", l, E, I);
    if (length.on) {
      auto cd = ws.template vec<T>(lbl + ".length_cd", 0, 2 * std::size_t(I));
      kernels::pna_length_compose<Exec, T>(exec, w.p, L.enc, L.pre_e, cd);
      kernels::pna_length_message<Exec, S, T>(exec, ec.a, cd, c.m);
    }
    conv::NodeBlocks::forward<Exec, S, T>(exec, w, b, in.h, L.pre_i, L.pre_j, c.m, length.on, ws, lbl);
    L.upd.forward<Exec, S, T>(exec, l, w, b, scalers, ec.scale, in.h, c.m, c.upd, out.h, ws, lbl);
  }

  template <class Exec, class S, class T>
  void layer_backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                      const LayerCache<S, mem_t<Exec>>& c, const NodeState<S, mem_t<Exec>>& out_bar,
                      NodeState<S, mem_t<Exec>>& in_bar, const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>& eg,
                      Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, I = L.in;
    const bool want_params = g.extent(0) > 0;
    const std::string lbl = "hydragnn::PNAConv::layer_backward";
    auto params = [&](const Mat<S, M>& X, const Mat<S, M>& Yb, const LinearShape& sh) {
      if (want_params) kernels::linear_backward_params<Exec, S>(exec, X, Yb, sh, g);
    };
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, I);
    auto mbar = ws.template mat<S>(lbl + ".m_bar", 0, E, I);
    L.upd.backward<Exec, S, T>(exec, w, b, scalers, ec.scale, in.h, c.m, c.upd, out_bar.h, g, in_bar.h, mbar, ws, lbl);
    // m = pre_i(h)[dst] + pre_j(h)[src] + pre_e(enc(a))
    conv::NodeBlocks::backward<Exec, S, T>(exec, w, b, in.h, L.pre_i, L.pre_j, mbar, g, in_bar.h, ws, lbl);
    if (!length.on) return;
    // the edge block a c + d: t = the parameter parts of sum_e a_e mbar(e, .) and sum_e mbar(e, .)
    // (a 1 -> I layer's weight and bias cotangent), then through c = W_e w and d = W_e b
    const bool want_geometry = eg.abar.extent(0) > 0;
    if (want_params) {
      auto t = ws.template zeroed_vec<real_t<S>>(exec, lbl + ".length_sums", 0, 2 * std::size_t(I));
      kernels::pna_length_sums<Exec, S>(exec, ec.a, mbar, t);
      kernels::pna_length_compose_backward<Exec, T, real_t<S>>(exec, w.p, L.enc, L.pre_e, t, g);
    }
    if (want_geometry) {
      auto cd = ws.template vec<T>(lbl + ".length_cd", 0, 2 * std::size_t(I));
      kernels::pna_length_compose<Exec, T>(exec, w.p, L.enc, L.pre_e, cd);
      kernels::pna_length_message_backward<Exec, S, T>(exec, mbar, cd, eg.abar);
    }
  }

};

}  // namespace hydragnn
