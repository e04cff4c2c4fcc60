// SPDX-License-Identifier: BSD-3-Clause
// CGCNN (HydraGNN's CGCNNStack layer = PyTorch Geometric's CGConv, aggr "add", batch_norm False,
// bias True), written as a composition of ops (receiver i = dst(e), sender j = src(e)):
//
//   edges (once):  a_e = d_e / edge_length_scale                  (edge_features ["length"] only)
//   layer l:       F_e = lin_f([h_i, h_j, a_e]),  S_e = lin_s([h_i, h_j, a_e])   Linear 2C(+1) -> C each,
//                       node blocks computed per node and gathered
//                  h'_i = sum_{e in in(i)} sigmoid(F_e) softplus(S_e) + h_i      kernels/cgcnn.hpp
// The width C never changes (HydraGNN sets hidden_dim = input_dim for CGCNN). HydraGNN's Base puts a
// BatchNorm after every layer, then the stack activation. Without edge features the energy does not
// depend on the positions.
#pragma once

#include <hydragnn/conv/edge_features.hpp>
#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/cgcnn.hpp>
#include <hydragnn/kernels/segment.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct CGCNNOptions : EdgeFeatureOptions {
  bool same_width = true;  ///< set by finalize: input_dim == hidden_dim (not a key)
  template <class V>
  void visit(V&& v) {
    visit_edge_features(v);
  }
  void finalize(const ConvCommon& c) { same_width = c.input_dim == c.hidden_dim; }
  template <class F>
  void validate(F&& fail) const {
    if (!same_width)
      fail("input_dim", "CGCNN keeps the width of its input: input_dim must equal hidden_dim (HydraGNN sets "
                        "hidden_dim = input_dim for CGCNN)");
    validate_edge_features(fail);
  }
};

struct CGCNNConv : conv::EdgeLengthGeometry<CGCNNConv> {
  static constexpr const char* name = "CGCNN";
  using options_type = CGCNNOptions;
  using node_state = conv::Scalars;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::BatchNormFeatureLayer;  // HydraGNN: BatchNorm

  struct Gate {
    LinearShape full, i, j, a;  ///< Linear(2C + dim, C) and its [x_i | x_j | edge_attr] column blocks
  };
  struct Layer {
    Gate f, s;
  };
  std::vector<Layer> layers;
  int channels = 0;

  CGCNNConv() = default;
  CGCNNConv(ParamAllocator& alloc, const ConvCommon& common, const CGCNNOptions& opt)
      : EdgeLengthGeometry(conv::EdgeLength(opt, name)) {
    if (common.input_dim != common.hidden_dim)
      throw std::runtime_error("CGCNN: input_dim (" + std::to_string(common.input_dim) + ") must equal hidden_dim (" +
                               std::to_string(common.hidden_dim) + "): the layer keeps its width");
    const int C = common.hidden_dim, D = length.dim();
    channels = C;
    auto gate = [&](const std::string& n) {
      Gate g;
      g.full = alloc.linear(2 * C + D, C, true, n);
      g.i = g.full.columns(0, C, true);
      g.j = g.full.columns(C, C, false);
      if (D > 0) g.a = g.full.columns(2 * C, D, false);
      return g;
    };
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l) + ".module_0";
      Layer L;
      L.f = gate(n + ".lin_f");
      L.s = gate(n + ".lin_s");
      layers.push_back(L);
    }
  }
  int num_layers() const { return int(layers.size()); }
  template <class S, class M> struct LayerCache {
    Mat<S, M> F, Sg;  ///< E x C gate inputs
  };

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const std::string lbl = "hydragnn::CGCNNConv::layer_forward";
    c.F = gate_input<Exec, S, T>(exec, L.f, w, b, ec, in.h, ws, lbl + ".F", l);
    c.Sg = gate_input<Exec, S, T>(exec, L.s, w, b, ec, in.h, ws, lbl + ".S", l);
    out.h = ws.template mat<S>(lbl + ".out", l, b.num_atoms, channels);
    kernels::cgcnn_message_sum<Exec, S>(exec, c.F, c.Sg, b.row_ptr, in.h, out.h);
  }

  template <class Exec, class S, class T>
  void layer_backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                      const LayerCache<S, mem_t<Exec>>& c, const NodeState<S, mem_t<Exec>>& out_bar,
                      NodeState<S, mem_t<Exec>>& in_bar, const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>& eg,
                      Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, C = channels;
    const std::string lbl = "hydragnn::CGCNNConv::layer_backward";
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, C);
    Kokkos::deep_copy(exec, in_bar.h, out_bar.h);  // the residual
    auto Fbar = ws.template mat<S>(lbl + ".F_bar", 0, E, C);
    auto Sbar = ws.template mat<S>(lbl + ".S_bar", 0, E, C);
    kernels::cgcnn_message_backward<Exec, S>(exec, c.F, c.Sg, out_bar.h, b.dst, Fbar, Sbar);
    gate_backward<Exec, S, T>(exec, L.f, w, b, ec, in.h, Fbar, g, eg, in_bar.h, ws, lbl + ".F");
    gate_backward<Exec, S, T>(exec, L.s, w, b, ec, in.h, Sbar, g, eg, in_bar.h, ws, lbl + ".S");
  }

 private:
  /// G = lin([h_i, h_j, a]) per edge: the node blocks per node, gathered (E x C).
  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> gate_input(const Exec& exec, const Gate& gt, const Weights<T, mem_t<Exec>>& w,
                                 const Batch<mem_t<Exec>>& b, const EdgeCache<S, mem_t<Exec>>& ec,
                                 const Mat<S, mem_t<Exec>>& h, Workspace<mem_t<Exec>>& ws, const std::string& lbl,
                                 int l) const {
    const int N = b.num_atoms, E = b.num_edges, C = channels;
    auto A = ws.template mat<S>(lbl + ".node_i", 0, N, C);
    auto Bn = ws.template mat<S>(lbl + ".node_j", 0, N, C);
    kernels::linear_forward<Exec, S, T>(exec, h, w, gt.i, A);
    kernels::linear_forward<Exec, S, T>(exec, h, w, gt.j, Bn);
    auto G = ws.template mat<S>(lbl, l, E, C);
    if (length.on) kernels::linear_forward<Exec, S, T>(exec, ec.a, w, gt.a, G);
    kernels::gather_rows<Exec, S>(exec, A, b.dst, G, length.on);
    kernels::gather_rows<Exec, S>(exec, Bn, b.src, G, true);
    return G;
  }
  /// Backward of gate_input: parameter gradients, hbar += the node blocks' input cotangents, the
  /// edge attribute's cotangent into eg.abar (when the geometry gradient is wanted).
  template <class Exec, class S, class T>
  void gate_backward(const Exec& exec, const Gate& gt, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const Mat<S, mem_t<Exec>>& h, const Mat<S, mem_t<Exec>>& Gbar,
                     const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>& eg, const Mat<S, mem_t<Exec>>& hbar,
                     Workspace<mem_t<Exec>>& ws, const std::string& lbl) const {
    const int N = b.num_atoms, C = channels;
    const bool want_params = g.extent(0) > 0;
    auto Abar = ws.template mat<S>(lbl + ".node_i_bar", 0, N, C);
    auto Bnbar = ws.template mat<S>(lbl + ".node_j_bar", 0, N, C);
    kernels::gather_rows_backward<Exec, S>(exec, Gbar, b.row_ptr, Abar, false);
    kernels::gather_rows_backward_perm<Exec, S>(exec, Gbar, b.send_perm, b.send_ptr, Bnbar, false);
    if (want_params) {
      kernels::linear_backward_params<Exec, S>(exec, h, Abar, gt.i, g);
      kernels::linear_backward_params<Exec, S>(exec, h, Bnbar, gt.j, g);
      if (length.on) kernels::linear_backward_params<Exec, S>(exec, ec.a, Gbar, gt.a, g);
    }
    kernels::linear_backward_input<Exec, S, T>(exec, Abar, w, gt.i, hbar, true);
    kernels::linear_backward_input<Exec, S, T>(exec, Bnbar, w, gt.j, hbar, true);
    if (length.on && eg.abar.extent(0) > 0) kernels::linear_backward_input<Exec, S, T>(exec, Gbar, w, gt.a, eg.abar, true);
  }
};

}  // namespace hydragnn
