// SPDX-License-Identifier: BSD-3-Clause
// PNAEq: HydraGNN's PNAEqStack layer (PainnMessage with principal neighbourhood aggregation ->
// PainnUpdate -> node_embed_out / vec_embed_out, commit d251f816), as a composition of ops. Layer l
// has I input channels (the embedding width for l = 0, hidden_dim after) and H = hidden_dim output
// channels; scalars s (N x I) and vectors v (N x 3 x I; zero entering the first layer).
//
//   edges (once):  d_e = |r_e|,  rbf_e = sinc(d_e) C(d_e)  (sin(k pi d / rc) / d, k = 1..num_radial,
//                  times the cosine cutoff),  u_e = -r_e / (d_e + 1e-9),  per-node degree scalers
//   message:       re  = tanh(rbf_emb(rbf))                       Linear(K, I)              E x I
//                  m   = pre_nn([s_i, s_j, re])                   Linear(3I, I)             E x I
//                  P   = scalar_message_mlp(m)    Linear(I,I) -> Tanh -> Linear(I,I) -> SiLU -> Linear(I,3I)
//                  Q   = rbf_lin(rbf)                             Linear(K, 3I), no bias
//                  X0 | X1 | X2 = P * Q                           (pnaeq_filter; HostRow forms Q a
//                                                                  chunk at a time inside it: pnaeq_filter_basis)
//                  v'  = v + sum_e (v_j X0 + X1 u_e)              (pnaeq_vector_message)
//                  s'  = s + post_nn([s, PNA(X2)])                Linear(21I, I); PNA: mean, min, max,
//                        std x identity, amplification, attenuation, linear, inverse_linear (pna.hpp)
//   update, out:   as PaiNN (conv/painn.hpp: update_X / update_V, update MLP, painn_update,
//                  node_embed_out, vec_embed_out; the last layer passes v' on unchanged)
// The model applies the stack activation to h after each layer (HydraGNN's Base.forward).
//
// i = dst(e) receives, j = src(e) sends; HydraGNN's PainnMessage aggregates at edge_index[0] and
// gathers the neighbour from edge_index[1], so the golden tests feed it edge_index = [dst; src] with
// shifts -S_e (as for PaiNN; docs/deviations.md). The degree histogram `pna_deg` is the training
// set's in-degree histogram (hydragnn train computes it when the config has none); HydraGNN's
// PNAEqStack raises every bin to at least 1 before forming the averages, and so does this layer.
#pragma once

#include <hydragnn/conv/painn_update.hpp>
#include <hydragnn/conv/pna_blocks.hpp>
#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/pna.hpp>
#include <hydragnn/kernels/radial.hpp>
#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/kernels/vector.hpp>
#include <hydragnn/nn/mlp.hpp>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

namespace hydragnn {

/// PNAEq's own Architecture keys.
struct PNAEqOptions {
  int num_radial = 6;            ///< HydraGNN num_radial (required there)
  std::vector<double> pna_deg;   ///< in-degree histogram of the training set (HydraGNN pna_deg)
  template <class V>
  void visit(V&& v) {
    v("num_radial", num_radial);
    v("pna_deg", pna_deg);
  }
  template <class F>
  void validate(F&& fail) const {
    if (num_radial < 1) fail("num_radial", "must be > 0");
    for (double h : pna_deg)
      if (!(h >= 0) || !std::isfinite(h)) fail("pna_deg", "must hold finite counts >= 0");
  }
};

struct PNAEqConv {
  static constexpr const char* name = "PNAEq";
  using options_type = PNAEqOptions;
  using node_state = conv::ScalarsAndVectors;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::IdentityFeatureLayer;  // HydraGNN: Identity

  struct Layer {
    int in = 0;  ///< I
    bool last = false;
    LinearShape rbf_emb, pre, pre_i, pre_j, pre_e, rbf_lin, post, post_s, post_a;
    MLP message;  ///< scalar_message_mlp: I -> I (Tanh) -> I (SiLU) -> 3I
    conv::PaiNNUpdateOut upd;  ///< PaiNN's update and output blocks (conv/painn_update.hpp)
  };
  std::vector<Layer> layers;
  RadialSpec radial;
  kernels::PnaScalers scalers;
  int hidden = 0, input = 0;

  PNAEqConv() = default;
  PNAEqConv(ParamAllocator& alloc, const ConvCommon& common, const PNAEqOptions& opt)
      : radial{RadialBasis::Sinc, opt.num_radial, common.cutoff, Envelope::Cosine},
        hidden(common.hidden_dim),
        input(common.input_dim) {
    if (opt.pna_deg.empty())
      throw std::runtime_error("PNAEq: 'pna_deg' (the training set's in-degree histogram) is empty; hydragnn train "
                                  "computes it from the training set, or give it in the config");
    // HydraGNN's PNAEqStack._sanitize_degree: every bin at least 1
    std::vector<double> h = opt.pna_deg;
    for (double& x : h) x = x < 1 ? 1 : x;
    using K = kernels::PnaScaler;
    scalers = kernels::PnaScalers::from_histogram(
        {K::Identity, K::Amplification, K::Attenuation, K::Linear, K::InverseLinear}, h);
    const int H = common.hidden_dim, R = opt.num_radial;
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l);
      const int I = l == 0 ? common.input_dim : H;
      Layer L;
      L.in = I;
      L.last = common.is_last(l);
      L.pre = alloc.linear(3 * I, I, true, n + ".module_0.pre_nns.0.0");
      L.pre_i = L.pre.columns(0, I, true);  // [s_i, s_j, re]
      L.pre_j = L.pre.columns(I, I, false);
      L.pre_e = L.pre.columns(2 * I, I, false);
      L.post = alloc.linear(21 * I, I, true, n + ".module_0.post_nns.0.0");
      L.post_s = L.post.columns(0, I, true);  // [s, PNA]
      L.post_a = L.post.columns(I, 20 * I, false);
      L.rbf_emb = alloc.linear(R, I, true, n + ".module_0.rbf_emb.0");
      L.rbf_lin = alloc.linear(R, 3 * I, false, n + ".module_0.rbf_lin");
      L.message = MLP(alloc, {I, I, I, 3 * I}, {Activation::Tanh, Activation::SiLU}, false, true,
                      n + ".module_0.scalar_message_mlp");
      L.upd = conv::PaiNNUpdateOut(alloc, n, "update_X", I, H, L.last);
      layers.push_back(L);
    }
  }
  int num_layers() const { return int(layers.size()); }
  /// Vector channels entering the first layer (zeros, as HydraGNN's PNAEqStack._embedding).
  int vector_channels() const { return input; }

  template <class S, class M> struct EdgeCache {
    Vec<S, M> d, C;
    Mat<S, M> B, rbf, u;
    Mat<real_t<S>, M> scale;  ///< N x 5 degree scalers
  };
  template <class S, class M> struct EdgeGrad {
    Vec<S, M> dbar, Cbar;
    Mat<S, M> Bbar, rbfbar, ubar;
  };
  template <class S, class M> struct LayerCache {
    typename MLP::template Cache<S, M> message;
    Mat<S, M> re_pre, re, m, Q, X0, X1, X2, agg, s1;
    kernels::PnaCache<S, M> pna;
    VFeat<S, M> v1;
    conv::PaiNNUpdateOut::Cache<S, M> upd;
  };

  template <class Exec, class S>
  void edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                    EdgeCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::PNAEqConv::edge_forward";
    const long E = b.num_edges;
    c.d = ws.template vec<S>(lbl, 0, E);
    c.C = ws.template vec<S>(lbl, 1, E);
    c.B = ws.template mat<S>(lbl, 2, E, radial.size);
    c.rbf = ws.template mat<S>(lbl, 3, E, radial.size);
    c.u = ws.template mat<S>(lbl, 4, E, 3);
    c.scale = ws.template mat<real_t<S>>(lbl + ".scale", 0, b.num_atoms, scalers.n);
    kernels::edge_lengths<Exec, S>(exec, r, c.d);
    kernels::radial_forward<Exec, S>(exec, radial, c.d, c.B, c.C);
    kernels::scale_rows<Exec, S>(exec, c.B, c.C, c.rbf, false);
    kernels::pnaeq_direction<Exec, S>(exec, r, c.d, c.u);
    kernels::pna_scales<Exec, real_t<S>>(exec, b.row_ptr, scalers, c.scale);
  }
  template <class Exec, class S>
  void edge_grad_init(const Exec& exec, const Batch<mem_t<Exec>>& b, EdgeGrad<S, mem_t<Exec>>& g,
                      Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::PNAEqConv::edge_grad";
    g.dbar = ws.template zeroed_vec<S>(exec, lbl, 0, b.num_edges);
    g.Cbar = ws.template zeroed_vec<S>(exec, lbl, 1, b.num_edges);
    g.Bbar = ws.template zeroed_mat<S>(exec, lbl, 2, b.num_edges, radial.size);
    g.rbfbar = ws.template zeroed_mat<S>(exec, lbl, 3, b.num_edges, radial.size);
    g.ubar = ws.template zeroed_mat<S>(exec, lbl, 4, b.num_edges, 3);
  }
  template <class Exec, class S>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>& r,
                     const EdgeCache<S, mem_t<Exec>>& c, EdgeGrad<S, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar,
                     Workspace<mem_t<Exec>>&) const {
    kernels::scale_rows_backward<Exec, S>(exec, c.B, c.C, g.rbfbar, g.Bbar, g.Cbar, true, true);
    kernels::radial_backward<Exec, S>(exec, radial, c.d, c.B, g.Bbar, g.Cbar, g.dbar);
    kernels::pnaeq_direction_backward<Exec, S>(exec, r, c.d, g.ubar, rbar, g.dbar);
    kernels::edge_lengths_backward<Exec, S>(exec, r, c.d, g.dbar, rbar);
  }

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, I = L.in;
    const std::string lbl = "hydragnn::PNAEqConv::layer_forward";
    // the edge input of the message MLP: pre_nn([s_i, s_j, tanh(rbf_emb(rbf))]), the node blocks per node
    c.re_pre = ws.template mat<S>(lbl + ".re_pre", l, E, I);
    c.re = ws.template mat<S>(lbl + ".re", l, E, I);
    kernels::linear_forward<Exec, S, T>(exec, ec.rbf, w, L.rbf_emb, c.re_pre);
    kernels::activation_forward<Exec, S>(exec, Activation::Tanh, c.re_pre, c.re);
    c.m = ws.template mat<S>(lbl + ".m", l, E, I);
    kernels::linear_forward<Exec, S, T>(exec, c.re, w, L.pre_e, c.m);
    conv::NodeBlocks::forward<Exec, S, T>(exec, w, b, in.h, L.pre_i, L.pre_j, c.m, true, ws, lbl);
    // filter and messages
    const Mat<S, M> P = L.message.forward<Exec, S, T>(exec, w, c.m, c.message, ws, l);
    c.X0 = ws.template mat<S>(lbl + ".X0", l, E, I);
    c.X1 = ws.template mat<S>(lbl + ".X1", l, E, I);
    c.X2 = ws.template mat<S>(lbl + ".X2", l, E, I);
    bool fused = false;
    if constexpr (std::is_same<S, T>::value) {
      if (kernels::basis_gate_fuses(exec, w, L.rbf_lin)) {
        // Q formed a chunk of rows at a time inside the filter, never stored (E x 3I; the backward
        // forms it again); bitwise the op sequence below
        const long parts = kernels::basis_gate_parts(exec);
        auto qb = ws.template mat<S>(lbl + ".Q_chunk", 0, kernels::basis_gate_buffer_rows(parts), 3 * I);
        c.Q = Mat<S, M>();
        kernels::pnaeq_filter_basis<Exec, S>(exec, P, ec.rbf, w, L.rbf_lin, c.X0, c.X1, c.X2, qb, parts);
        fused = true;
      }
    }
    if (!fused) {
      c.Q = ws.template mat<S>(lbl + ".Q", l, E, 3 * I);
      kernels::linear_forward<Exec, S, T>(exec, ec.rbf, w, L.rbf_lin, c.Q);
      kernels::pnaeq_filter<Exec, S>(exec, P, c.Q, c.X0, c.X1, c.X2);
    }
    c.v1 = ws.template vec3<S>(lbl + ".v1", l, N, 3, I);
    kernels::pnaeq_vector_message<Exec, S>(exec, in.v, c.X0, c.X1, ec.u, b.row_ptr, b.src, c.v1);
    c.pna = kernels::PnaCache<S, M>::in(ws, lbl + ".pna", l, N, I);
    c.agg = ws.template mat<S>(lbl + ".agg", l, N, scalers.width(I));
    kernels::pna_aggregate<Exec, S, real_t<S>>(exec, c.X2, b.row_ptr, ec.scale, c.pna, c.agg);
    c.s1 = ws.template mat<S>(lbl + ".s1", l, N, I);
    kernels::linear_forward<Exec, S, T>(exec, in.h, w, L.post_s, c.s1);
    auto tmp = ws.template mat<S>(lbl + ".tmp", 0, N, I);
    kernels::linear_forward<Exec, S, T>(exec, c.agg, w, L.post_a, tmp);
    kernels::add_into<Exec, S>(exec, tmp, c.s1);
    kernels::add_into<Exec, S>(exec, in.h, c.s1);  // residual s' = s + post_nn(...)
    // update and out (as PaiNN)
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
    const std::string lbl = "hydragnn::PNAEqConv::layer_backward";
    auto params = [&](const Mat<S, M>& X, const Mat<S, M>& Yb, const LinearShape& sh) {
      if (want_params) kernels::linear_backward_params<Exec, S>(exec, X, Yb, sh, g);
    };
    // update and out (as PaiNN)
    Mat<S, M> s1bar;
    VFeat<S, M> v1bar;
    L.upd.backward<Exec, S, T>(exec, l, w, lbl, c.s1, c.v1, c.upd, out_bar, g, ws, s1bar, v1bar);
    // message, scalar side: s' = s + post_s(s) + post_a(PNA(X2))
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, I);
    Kokkos::deep_copy(exec, in_bar.h, s1bar);
    params(in.h, s1bar, L.post_s);
    params(c.agg, s1bar, L.post_a);
    kernels::linear_backward_input<Exec, S, T>(exec, s1bar, w, L.post_s, in_bar.h, true);
    auto aggbar = ws.template mat<S>(lbl + ".agg_bar", 0, N, scalers.width(I));
    kernels::linear_backward_input<Exec, S, T>(exec, s1bar, w, L.post_a, aggbar, false);
    auto X0bar = ws.template mat<S>(lbl + ".X0_bar", 0, E, I);
    auto X1bar = ws.template mat<S>(lbl + ".X1_bar", 0, E, I);
    auto X2bar = ws.template mat<S>(lbl + ".X2_bar", 0, E, I);
    kernels::pna_aggregate_backward<Exec, S, real_t<S>>(exec, c.X2, b.row_ptr, ec.scale, c.pna, aggbar,
                                                         kernels::PnaCache<S, M>::in(ws, lbl + ".pna_bar", 0, N, I), X2bar, false);
    // vector side
    in_bar.v = ws.template vec3<S>(lbl + ".v_bar", l, N, 3, I);
    kernels::pnaeq_vector_message_backward<Exec, S>(exec, in.v, c.X0, c.X1, ec.u, b.dst, b.src, b.send_perm, b.send_ptr,
                                                    v1bar, X0bar, X1bar, eg.ubar, in_bar.v);
    // filter: X = P * Q, P = message MLP(m), Q = rbf_lin(rbf)
    auto Pbar = ws.template mat<S>(lbl + ".P_bar", 0, E, 3 * I);
    bool fused = false;
    if constexpr (std::is_same<S, T>::value) {
      if (!want_params && kernels::basis_gate_fuses(exec, w, L.rbf_lin)) {
        // Q formed again and Qbar a chunk of rows at a time, neither stored; bitwise the sequence below
        const long parts = kernels::basis_gate_parts(exec);
        auto qb = ws.template mat<S>(lbl + ".Q_chunk", 0, kernels::basis_gate_buffer_rows(parts), 3 * I);
        kernels::pnaeq_filter_basis_backward<Exec, S>(exec, c.message.out, ec.rbf, w, L.rbf_lin, X0bar, X1bar, X2bar,
                                                      Pbar, eg.rbfbar, qb, parts);
        fused = true;
      }
    }
    if (!fused) {
      Mat<S, M> Q = c.Q;
      if (Q.extent(0) == 0) {  // the forward ran fused and kept no Q
        Q = ws.template mat<S>(lbl + ".Q", 0, E, 3 * I);
        kernels::linear_forward<Exec, S, T>(exec, ec.rbf, w, L.rbf_lin, Q);
      }
      auto Qbar = ws.template mat<S>(lbl + ".Q_bar", 0, E, 3 * I);
      kernels::pnaeq_filter_backward<Exec, S>(exec, c.message.out, Q, X0bar, X1bar, X2bar, Pbar, Qbar);
      params(ec.rbf, Qbar, L.rbf_lin);
      if (eg.rbfbar.extent(0) > 0) kernels::linear_backward_input<Exec, S, T>(exec, Qbar, w, L.rbf_lin, eg.rbfbar, true);
    }
    const Mat<S, M> mbar = L.message.backward<Exec, S, T>(exec, w, c.message, Pbar, g, ws, l);
    // m = pre_e(re) + A[dst] + Bn[src]
    conv::NodeBlocks::backward<Exec, S, T>(exec, w, b, in.h, L.pre_i, L.pre_j, mbar, g, in_bar.h, ws, lbl);
    params(c.re, mbar, L.pre_e);
    auto rebar = ws.template mat<S>(lbl + ".re_bar", 0, E, I);
    kernels::linear_backward_input<Exec, S, T>(exec, mbar, w, L.pre_e, rebar, false);
    auto reprebar = ws.template mat<S>(lbl + ".re_pre_bar", 0, E, I);
    kernels::activation_backward<Exec, S>(exec, Activation::Tanh, c.re_pre, rebar, reprebar);
    params(ec.rbf, reprebar, L.rbf_emb);
    if (eg.rbfbar.extent(0) > 0) kernels::linear_backward_input<Exec, S, T>(exec, reprebar, w, L.rbf_emb, eg.rbfbar, true);
  }

};

}  // namespace hydragnn
