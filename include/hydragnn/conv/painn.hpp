// SPDX-License-Identifier: BSD-3-Clause
// PaiNN: HydraGNN's PAINNStack layer (PainnMessage -> PainnUpdate -> node_embed_out / vec_embed_out,
// commit d251f816), as a composition of ops. Layer l has I input channels (the embedding width for
// l = 0, hidden_dim after) and H = hidden_dim output channels; scalars s (N x I) and vectors
// v (N x 3 x I; zero entering the first layer).
//
//   edges (once):  d_e = |r_e|,  B_e = sinc basis sin(k pi d_e / rc) / d_e (k = 1..num_radial),
//                  C_e = 0.5 (cos(pi d_e / rc) + 1) (0 beyond rc),  u_e = (-r_e / (d_e + 1e-9)) / d_e
//   message:       phi = scalar_message_mlp(s)        Linear(I,I) -> SiLU -> Linear(I,3I)   N x 3I
//                  W   = filter_layer(B)              Linear(num_radial, 3I)                E x 3I
//                  s', v' = painn_message(s, v, phi, W, C, u)    (kernels/painn.hpp)
//   update:        Uv = update_U v', Vv = update_V v'  (no bias, over the channels)         N x 3 x I
//                  a  = update_mlp([|Vv|, s'])        Linear(2I,I) -> SiLU -> Linear(I,KI), K = 3 (2 last)
//                  s'', v'' = painn_update(a, Uv, Vv, s', v')
//   out:           h = node_embed_out(s'')            Linear(I,H) -> Tanh -> Linear(H,H)
//                  v_out = vec_embed_out(v'')         Linear(I,H), no bias; the last layer has no
//                                                     update of v and passes v' on unchanged
// The model applies the stack activation to h after each layer (HydraGNN's Base.forward).
//
// HydraGNN aggregates PaiNN's messages at edge_index[0] with the neighbour's features from
// edge_index[1]; here messages are summed at the receiver dst from the sender src over the
// receiver-sorted CSR (deterministic, no atomics). Both are the same function on a symmetric
// graph (every edge with its reverse: no neighbour cap); the golden tests feed HydraGNN
// edge_index = [dst; src] with shifts -S_e (docs/design.md, deviations).
#pragma once

#include <hydragnn/conv/painn_update.hpp>
#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/painn.hpp>
#include <hydragnn/kernels/radial.hpp>
#include <hydragnn/kernels/vector.hpp>
#include <hydragnn/nn/mlp.hpp>

#include <string>

namespace hydragnn {

/// PaiNN's own Architecture keys.
struct PaiNNOptions {
  int num_radial = 6;  ///< HydraGNN num_radial (required there; its examples use 5-6)
  template <class V>
  void visit(V&& v) {
    v("num_radial", num_radial);
  }
  void finalize(const ConvCommon&) {}
  template <class F>
  void validate(F&& fail) const {
    if (num_radial < 1) fail("num_radial", "must be > 0");
  }
};

struct PaiNNConv {
  static constexpr const char* name = "PAINN";
  using options_type = PaiNNOptions;
  using node_state = conv::ScalarsAndVectors;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::IdentityFeatureLayer;  // HydraGNN: Identity

  struct Layer {
    int in = 0;  ///< I
    bool last = false;
    MLP message;  ///< scalar_message_mlp: I -> I -> 3I
    LinearShape filter;
    conv::PaiNNUpdateOut upd;  ///< update and output blocks (conv/painn_update.hpp)
  };
  std::vector<Layer> layers;
  RadialSpec radial;
  int hidden = 0, input = 0;

  PaiNNConv() = default;
  PaiNNConv(ParamAllocator& alloc, const ConvCommon& common, const PaiNNOptions& opt)
      : radial{RadialBasis::Sinc, opt.num_radial, common.cutoff, Envelope::Cosine},
        hidden(common.hidden_dim),
        input(common.input_dim) {
    const int H = common.hidden_dim, K = opt.num_radial;
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l);
      const int I = l == 0 ? common.input_dim : H;
      Layer L;
      L.in = I;
      L.last = common.is_last(l);
      L.message = MLP(alloc, {I, I, 3 * I}, Activation::SiLU, false, true, n + ".module_0.scalar_message_mlp");
      L.filter = alloc.linear(K, 3 * I, true, n + ".module_0.filter_layer");
      L.upd = conv::PaiNNUpdateOut(alloc, n, "update_U", I, H, L.last);
      layers.push_back(L);
    }
  }
  int num_layers() const { return int(layers.size()); }
  /// Vector channels entering the first layer (zeros, as HydraGNN's PAINNStack._embedding).
  int vector_channels() const { return input; }

  template <class S, class M> struct EdgeCache {
    Vec<S, M> d, C;
    Mat<S, M> B, u;
  };
  template <class S, class M> struct EdgeGrad {
    Vec<S, M> dbar, Cbar;
    Mat<S, M> Bbar, ubar;
  };
  template <class S, class M> struct LayerCache {
    typename MLP::template Cache<S, M> message;
    Mat<S, M> phi, W, s1;
    VFeat<S, M> v1;
    conv::PaiNNUpdateOut::Cache<S, M> upd;
  };

  template <class Exec, class S>
  void edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                    EdgeCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::PaiNNConv::edge_forward";
    c.d = ws.template vec<S>(lbl, 0, b.num_edges);
    c.C = ws.template vec<S>(lbl, 1, b.num_edges);
    c.B = ws.template mat<S>(lbl, 2, b.num_edges, radial.size);
    c.u = ws.template mat<S>(lbl, 3, b.num_edges, 3);
    kernels::edge_lengths<Exec, S>(exec, r, c.d);
    kernels::radial_forward<Exec, S>(exec, radial, c.d, c.B, c.C);
    kernels::painn_direction<Exec, S>(exec, r, c.d, c.u);
  }
  template <class Exec, class S>
  void edge_grad_init(const Exec& exec, const Batch<mem_t<Exec>>& b, EdgeGrad<S, mem_t<Exec>>& g,
                      Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::PaiNNConv::edge_grad";
    g.dbar = ws.template zeroed_vec<S>(exec, lbl, 0, b.num_edges);
    g.Cbar = ws.template zeroed_vec<S>(exec, lbl, 1, b.num_edges);
    g.Bbar = ws.template zeroed_mat<S>(exec, lbl, 2, b.num_edges, radial.size);
    g.ubar = ws.template zeroed_mat<S>(exec, lbl, 3, b.num_edges, 3);
  }
  template <class Exec, class S>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>& r,
                     const EdgeCache<S, mem_t<Exec>>& c, EdgeGrad<S, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar,
                     Workspace<mem_t<Exec>>&) const {
    kernels::radial_backward<Exec, S>(exec, radial, c.d, c.B, g.Bbar, g.Cbar, g.dbar);
    kernels::painn_direction_backward<Exec, S>(exec, r, c.d, g.ubar, rbar, g.dbar);
    kernels::edge_lengths_backward<Exec, S>(exec, r, c.d, g.dbar, rbar);
  }

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, I = L.in;
    const std::string lbl = "hydragnn::PaiNNConv::layer_forward";
    // message
    c.phi = L.message.forward<Exec, S, T>(exec, w, in.h, c.message, ws, l);
    c.W = ws.template mat<S>(lbl + ".W", l, E, 3 * I);
    kernels::linear_forward<Exec, S, T>(exec, ec.B, w, L.filter, c.W);
    c.s1 = ws.template mat<S>(lbl + ".s1", l, N, I);
    c.v1 = ws.template vec3<S>(lbl + ".v1", l, N, 3, I);
    kernels::painn_message<Exec, S>(exec, in.h, in.v, c.phi, c.W, ec.C, ec.u, b.row_ptr, b.src, c.s1, c.v1);
    // update and out
    L.upd.forward<Exec, S, T>(exec, l, w, lbl, c.s1, c.v1, c.upd, out, ws);
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
    const std::string lbl = "hydragnn::PaiNNConv::layer_backward";
    auto params = [&](const Mat<S, M>& X, const Mat<S, M>& Yb, const LinearShape& sh) {
      if (want_params) kernels::linear_backward_params<Exec, S>(exec, X, Yb, sh, g);
    };
    // update and out
    Mat<S, M> s1bar;
    VFeat<S, M> v1bar;
    L.upd.backward<Exec, S, T>(exec, l, w, lbl, c.s1, c.v1, c.upd, out_bar, g, ws, s1bar, v1bar);
    // message
    auto Wbar = ws.template mat<S>(lbl + ".W_bar", 0, E, 3 * I);
    kernels::painn_message_backward_edges<Exec, S>(exec, in.v, c.phi, c.W, ec.C, ec.u, b.dst, b.src, s1bar, v1bar, Wbar,
                                                   eg.Cbar, eg.ubar);
    auto phibar = ws.template mat<S>(lbl + ".phi_bar", 0, N, 3 * I);
    in_bar.v = ws.template vec3<S>(lbl + ".v_bar", l, N, 3, I);
    kernels::painn_message_backward_nodes<Exec, S>(exec, in.v, c.phi, c.W, ec.C, ec.u, b.dst, b.send_perm, b.send_ptr,
                                                   s1bar, v1bar, phibar, in_bar.v);
    params(ec.B, Wbar, L.filter);
    if (eg.Bbar.extent(0) > 0) kernels::linear_backward_input<Exec, S, T>(exec, Wbar, w, L.filter, eg.Bbar, true);
    // the message MLP's input cotangent (its own per-layer workspace view) plus the residual s' = s + ...
    in_bar.h = L.message.backward<Exec, S, T>(exec, w, c.message, phibar, g, ws, l);
    kernels::add_into<Exec, S>(exec, s1bar, in_bar.h);
  }

};

}  // namespace hydragnn
