// SPDX-License-Identifier: BSD-3-Clause
// GAT (HydraGNN's GATStack = PyTorch Geometric's GATv2Conv with K heads, HydraGNN's heads 6,
// negative slope 0.05 and attention dropout 0.25, add_self_loops, bias), written on the op layer:
//
//   layer l:   XL = lin_l(h), XR = lin_r(h)                        Linear I -> K*H each (with bias)
//              Y  = GATv2 attention over the edges into i and a self loop (kernels/gat.hpp)
//              concat (every layer but the last): K*H outputs; mean over the heads (the last): H
//              training mode: attention dropout (kernels/gat.hpp), masks drawn from the model's pass
//              seed (set_pass), this convolution's parameter prefix and the layer
//   edges:     a_e = d_e / edge_length_scale through lin_edge (1 -> K*H, no bias) in the score
//              (edge_features ["length"] only)
// As HydraGNN: the first layer reads the embedding (input_dim), the middle ones K*H features, and
// there are always at least two layers (a first, concatenating one and a last, averaging one:
// num_conv_layers 1 builds two, as GATStack does). HydraGNN's Base puts a BatchNorm after every
// layer (K*H channels, H after the last), then the stack activation. Without edge features the
// energy does not depend on the positions; with them a_e is computed from the positions inside the
// model (conv/edge_features.hpp), so forces and force training work.
#pragma once

#include <hydragnn/conv/edge_features.hpp>
#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/gat.hpp>
#include <hydragnn/kernels/segment.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace hydragnn {

struct GATOptions : EdgeFeatureOptions {
  int gat_heads = 6;                  ///< ours: attention heads (HydraGNN fixes 6)
  double gat_negative_slope = 0.05;   ///< ours: leaky_relu slope of the score (HydraGNN fixes 0.05)
  double gat_dropout = 0.25;          ///< ours: attention dropout in training (HydraGNN fixes Base's dropout 0.25)
  template <class V>
  void visit(V&& v) {
    v("gat_heads", gat_heads);
    v("gat_negative_slope", gat_negative_slope);
    v("gat_dropout", gat_dropout);
    visit_edge_features(v);
  }
  template <class F>
  void validate(F&& fail) const {
    if (gat_heads < 1) fail("gat_heads", "must be >= 1");
    if (!(gat_negative_slope >= 0) || !std::isfinite(gat_negative_slope))
      fail("gat_negative_slope", "must be a finite number >= 0");
    if (!(gat_dropout >= 0 && gat_dropout < 1)) fail("gat_dropout", "must be in [0, 1)");
    validate_edge_features(fail);
  }
};

struct GATConv : conv::EdgeLengthGeometry<GATConv> {
  static constexpr const char* name = "GAT";
  using options_type = GATOptions;
  using node_state = conv::Scalars;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::BatchNormFeatureLayer;  // HydraGNN: BatchNorm

  struct Layer {
    LinearShape lin_l, lin_r;
    kernels::GatShape att;
  };
  std::vector<Layer> layers;

  GATConv() = default;
  GATConv(ParamAllocator& alloc, const ConvCommon& common, const GATOptions& opt)
      : EdgeLengthGeometry(conv::EdgeLength(opt, name)), dropout_(opt.gat_dropout) {
    for (char ch : common.layer_name(0)) stream_ = mix64(stream_, std::uint64_t(static_cast<unsigned char>(ch)));
    const int H = common.hidden_dim, K = opt.gat_heads;
    const int L = common.head ? common.num_conv_layers : std::max(2, common.num_conv_layers);
    for (int l = 0; l < L; ++l) {
      const std::string n = common.layer_name(l) + ".module_0";
      const int I = l == 0 ? common.input_dim : K * H;
      Layer ly;
      ly.lin_l = alloc.linear(I, K * H, true, n + ".lin_l");
      ly.lin_r = alloc.linear(I, K * H, true, n + ".lin_r");
      ly.att.K = K;
      ly.att.C = H;
      ly.att.concat = !common.is_last(l, L);
      ly.att.slope = opt.gat_negative_slope;
      // torch_geometric glorot: U(-sqrt(6 / (K + H)), +) for att [1, K, H]
      ly.att.att = long(alloc.take(std::size_t(K) * H, std::sqrt(6.0 / (K + H)), n + ".att", {1, K, H}));
      if (length.on) {
        const LinearShape e = alloc.linear(1, K * H, false, n + ".lin_edge");
        ly.att.edge = e.w_off;
      }
      ly.att.bias = long(alloc.take_constant(std::size_t(ly.att.width()), 0.0, n + ".bias", {ly.att.width()}));
      layers.push_back(ly);
    }
  }
  int num_layers() const { return int(layers.size()); }
  /// The pass that follows: attention dropout in training mode, its masks drawn from seed (the same
  /// seed gives the same masks: the real and dual passes of a step, its backward).
  void set_pass(bool training, std::uint64_t seed) const {
    training_ = training;
    seed_ = seed;
  }
  /// Width of layer l's output (K*H while concatenating, H after the last layer).
  int layer_width(int l) const { return layers[l].att.width(); }
  template <class S, class M> struct LayerCache {
    Mat<S, M> xl, xr, alpha, alpha_self;
    Mat<double, M> keep;  ///< (E + N) x K attention dropout factors (training with dropout only)
  };

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, KC = L.lin_l.out, K = L.att.K;
    const std::string lbl = "hydragnn::GATConv::layer_forward";
    c.xl = ws.template mat<S>(lbl + ".xl", l, N, KC);
    c.xr = ws.template mat<S>(lbl + ".xr", l, N, KC);
    kernels::linear_forward<Exec, S, T>(exec, in.h, w, L.lin_l, c.xl);
    kernels::linear_forward<Exec, S, T>(exec, in.h, w, L.lin_r, c.xr);
    c.alpha = ws.template mat<S>(lbl + ".alpha", l, E, K);
    c.alpha_self = ws.template mat<S>(lbl + ".alpha_self", l, N, K);
    out.h = ws.template mat<S>(lbl + ".out", l, N, L.att.width());
    const kernels::GatShape sh = pass_shape(l);
    c.keep = sh.dropout > 0 ? ws.template mat<double>(lbl + ".keep", l, std::size_t(E) + N, K) : Mat<double, mem_t<Exec>>();
    kernels::gat_attention<Exec, S, T>(exec, c.xl, c.xr, ec.a, w.p, sh, b.row_ptr, b.src, c.alpha, c.alpha_self, c.keep,
                                       out.h);
  }

  template <class Exec, class S, class T>
  void layer_backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                      const LayerCache<S, mem_t<Exec>>& c, const NodeState<S, mem_t<Exec>>& out_bar,
                      NodeState<S, mem_t<Exec>>& in_bar, const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>& eg,
                      Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, KC = L.lin_l.out, K = L.att.K;
    const bool want_params = g.extent(0) > 0;
    const std::string lbl = "hydragnn::GATConv::layer_backward";
    auto ds = ws.template mat<S>(lbl + ".ds", 0, E, K);
    auto xlbar = ws.template mat<S>(lbl + ".xl_bar", 0, N, KC);
    auto xrbar = ws.template mat<S>(lbl + ".xr_bar", 0, N, KC);
    auto part = want_params ? ws.template mat<S>(lbl + ".param_part", 0, N, length.on ? 2 * KC : KC) : Mat<S, mem_t<Exec>>();
    kernels::gat_attention_backward<Exec, S, T>(exec, c.xl, c.xr, ec.a, w.p, pass_shape(l), b.row_ptr, b.src, b.dst, b.send_perm,
                                                b.send_ptr, c.alpha, c.alpha_self, c.keep, out_bar.h, ds, xlbar, xrbar, eg.abar,
                                                part, g);
    if (want_params) {
      kernels::linear_backward_params<Exec, S>(exec, in.h, xlbar, L.lin_l, g);
      kernels::linear_backward_params<Exec, S>(exec, in.h, xrbar, L.lin_r, g);
    }
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, L.lin_l.in);
    kernels::linear_backward_input<Exec, S, T>(exec, xlbar, w, L.lin_l, in_bar.h, false);
    kernels::linear_backward_input<Exec, S, T>(exec, xrbar, w, L.lin_r, in_bar.h, true);
  }
 private:
  /// Layer l's attention for the current pass (dropout only in training mode).
  kernels::GatShape pass_shape(int l) const {
    kernels::GatShape sh = layers[std::size_t(l)].att;
    sh.dropout = training_ ? dropout_ : 0.0;
    sh.seed = mix64(mix64(seed_, stream_), std::uint64_t(l));
    return sh;
  }
  double dropout_ = 0;
  std::uint64_t stream_ = 0;  ///< from the parameter prefix: the trunk's and a head's layers draw apart
  mutable bool training_ = false;
  mutable std::uint64_t seed_ = 0;
};

}  // namespace hydragnn
