// SPDX-License-Identifier: BSD-3-Clause
// EGNN: HydraGNN's EGCLStack / E_GCL (commit d251f816), as a composition of ops. For edge e
// (receiver i = dst, sender j = src) and layer coordinates x = pos + u:
//
//   d_e   = x_i - x_j + S_e,  q_e = |d_e|                                   (radial input)
//   m_e   = act(W2 act(W1 [h_i, h_j, q_e] + b1) + b2)                        edge_mlp, act = ReLU
//   agg_i = sum_{e in in(i)} m_e
//   h'_i  = W4 act(W3 [h_i, agg_i] + b3) + b4                                node_mlp (no residual)
//   equivariant layers (equivariance: true, every layer but the last):
//   phi_e = tanh(w6 . act(W5 m_e + b5))                                      coord_mlp
//   u'_i  = u_i + mean_{e in in(i)} ( -d_e / (|d_e| + 1) phi_e )             coord_model
// The model applies the stack activation to h' after each layer (HydraGNN's Base.forward).
// W1 [h_i, h_j, q] is applied as A h_i + B h_j + w q with A h, B h computed per node (N x H GEMMs).
//
// Our variants, off by default (docs/deviations.md): radial_input "distance_squared" (|d|^2),
// residual (h' += h), edge_envelope (messages times a cosine or polynomial cutoff envelope, which
// makes the potential smooth at the cutoff), inner_activation (instead of HydraGNN's hard-coded ReLU).
#pragma once

#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/egnn.hpp>
#include <hydragnn/kernels/radial.hpp>
#include <hydragnn/kernels/segment.hpp>

#include <stdexcept>
#include <string>

namespace hydragnn {

enum class EdgeEnvelope { None, Cosine, Polynomial };
enum class RadialInput { Distance, DistanceSquared };
inline constexpr Choice<EdgeEnvelope> edge_envelope_choices[] = {
    {"none", EdgeEnvelope::None}, {"cosine", EdgeEnvelope::Cosine}, {"polynomial", EdgeEnvelope::Polynomial}};
inline constexpr Choice<RadialInput> radial_input_choices[] = {{"distance", RadialInput::Distance},
                                                               {"distance_squared", RadialInput::DistanceSquared}};
inline constexpr Choice<Activation> inner_activation_choices[] = {
    {"relu", Activation::ReLU}, {"silu", Activation::SiLU}, {"tanh", Activation::Tanh}, {"ssp", Activation::ShiftedSoftplus}};

/// EGNN's own Architecture keys.
struct EGNNOptions {
  bool equivariance = false;  ///< HydraGNN's key: coordinate updates in every layer but the last
  RadialInput radial_input = RadialInput::Distance;
  bool residual = false;                          ///< HydraGNN: recurrent = False
  EdgeEnvelope edge_envelope = EdgeEnvelope::None;  ///< HydraGNN: none
  Activation inner_activation = Activation::ReLU;  ///< HydraGNN hard-codes nn.ReLU() in E_GCL
  template <class V>
  void visit(V&& v) {
    v("equivariance", equivariance);
    v.choice("radial_input", radial_input, radial_input_choices);
    v("residual", residual);
    v.choice("edge_envelope", edge_envelope, edge_envelope_choices);
    v.choice("inner_activation", inner_activation, inner_activation_choices);
  }
};

/// Envelope functor for the EGNN edge kernels (1 when none).
struct EGNNEnvelopeFn {
  RadialSpec spec;
  bool on = false;
  template <class S>
  KOKKOS_INLINE_FUNCTION S value(const S& d) const {
    return on ? radial::envelope(spec, d) : S(real_t<S>(1));
  }
  template <class S>
  KOKKOS_INLINE_FUNCTION S derivative(const S& d) const {
    return on ? radial::denvelope(spec, d) : S(real_t<S>(0));
  }
};

struct EGNNConv {
  static constexpr const char* name = "EGNN";
  using options_type = EGNNOptions;
  using node_state = conv::ScalarsAndVectors;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::IdentityFeatureLayer;  // HydraGNN: Identity

  struct Layer {
    LinearShape edge0, A, B, W2, node0, C, D, W4, coord0, coord2;
    long w_off = 0, w_ld = 0;  ///< radial column of W1
    int in = 0;                ///< input width (the embedding width for layer 0)
    bool equivariant = false;
  };
  std::vector<Layer> layers;
  EGNNOptions opt;
  EGNNEnvelopeFn env;
  int hidden = 0;

  EGNNConv() = default;
  EGNNConv(ParamAllocator& alloc, const ConvCommon& common, const EGNNOptions& o) : opt(o), hidden(common.inner_dim()) {
    env.on = o.edge_envelope != EdgeEnvelope::None;
    env.spec = RadialSpec{RadialBasis::Gaussian, 1, common.cutoff,
                          o.edge_envelope == EdgeEnvelope::Polynomial ? Envelope::Polynomial : Envelope::Cosine};
    const int H = common.inner_dim(), O = common.hidden_dim;  // E_GCL hidden_channels, output_channels
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l) + ".module_0";
      const int I = l == 0 ? common.input_dim : H;  // input width of this layer
      Layer L;
      L.in = I;
      L.equivariant = o.equivariance && !common.is_last(l);
      L.edge0 = alloc.linear(2 * I + 1, H, true, n + ".edge_mlp.0");
      L.A = L.edge0.columns(0, I, true);
      L.B = L.edge0.columns(I, I, false);
      L.w_off = L.edge0.w_off + 2 * I;
      L.w_ld = 2 * I + 1;
      L.W2 = alloc.linear(H, H, true, n + ".edge_mlp.2");
      L.node0 = alloc.linear(I + H, H, true, n + ".node_mlp.0");
      L.C = L.node0.columns(0, I, true);
      L.D = L.node0.columns(I, H, false);
      L.W4 = alloc.linear(H, O, true, n + ".node_mlp.2");
      if (L.equivariant) {
        L.coord0 = alloc.linear(H, H, true, n + ".coord_mlp.0");
        L.coord2 = alloc.linear(H, 1, false, n + ".coord_mlp.2");
      }
      layers.push_back(L);
    }
  }
  int num_layers() const { return int(layers.size()); }
  int vector_channels() const { return 1; }  ///< the coordinate displacement u (N x 3 x 1)

  template <class S, class M> struct EdgeCache {
    Mat<S, M> r;  ///< E x 3 edge vectors of the input geometry
  };
  template <class S, class M> struct EdgeGrad {
    Mat<S, M> rbar;  ///< E x 3, accumulated over the layers
  };
  template <class S, class M> struct LayerCache {
    Mat<S, M> d, A, B, pre1, a1, pre2, m_raw, m, agg, pre3, a3, c1, a5, c2, phi;
    Vec<S, M> len, q, C;
    /// Set by Model::forward: the pass needs no parameter gradient (forces, stress, inference).
    bool geometry_only = false;
    /// ReLU masks of the edge MLP in place of pre1 / pre2 / c1 (kernels::egnn_edge_forward_geometry;
    /// empty: the activations are kept)
    kernels::EGNNMask<M> k1, k2, k3;
  };

  template <class Exec, class S>
  void edge_forward(const Exec&, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>& r, EdgeCache<S, mem_t<Exec>>& c,
                    Workspace<mem_t<Exec>>&) const {
    c.r = r;
  }
  template <class Exec, class S>
  void edge_grad_init(const Exec& exec, const Batch<mem_t<Exec>>& b, EdgeGrad<S, mem_t<Exec>>& g,
                      Workspace<mem_t<Exec>>& ws) const {
    g.rbar = ws.template zeroed_mat<S>(exec, "hydragnn::EGNNConv::edge_grad", 0, b.num_edges, 3);
  }
  template <class Exec, class S>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>&,
                     const EdgeCache<S, mem_t<Exec>>&, EdgeGrad<S, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar,
                     Workspace<mem_t<Exec>>&) const {
    kernels::add_into<Exec, S>(exec, g.rbar, rbar);
  }

  /// u as an N x 3 matrix (vector channel 0).
  template <class S, class M>
  static Mat<S, M> coords(const VFeat<S, M>& v) {
    return v.extent(0) ? Mat<S, M>(v.data(), v.extent(0), 3) : Mat<S, M>();
  }

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, H = hidden;
    const std::string lbl = "hydragnn::EGNNConv::layer_forward";
    const Activation inner = opt.inner_activation;
    const Mat<S, mem_t<Exec>> u = coords(in.v);
    c.d = ws.template mat<S>(lbl + ".d", l, E, 3);
    c.len = ws.template vec<S>(lbl + ".len", l, E);
    kernels::egnn_edge_vectors<Exec, S>(exec, ec.r, u, b.dst, b.src, c.d, c.len);
    c.q = ws.template vec<S>(lbl + ".q", l, E);
    c.C = ws.template vec<S>(lbl + ".C", l, E);
    kernels::egnn_radial<Exec, S>(exec, c.len, opt.radial_input == RadialInput::DistanceSquared, env, c.q, c.C);
    c.A = ws.template mat<S>(lbl + ".A", l, N, H);
    c.B = ws.template mat<S>(lbl + ".B", l, N, H);
    kernels::linear_forward<Exec, S, T>(exec, in.h, w, L.A, c.A);
    kernels::linear_forward<Exec, S, T>(exec, in.h, w, L.B, c.B);
    c.k1 = c.k2 = c.k3 = kernels::EGNNMask<mem_t<Exec>>();
    if constexpr (std::is_same<S, T>::value) {
      // no parameter gradient to come: the edge MLP in one pass over the edges, no E x H activation
      // stored, only which ReLU inputs were active (bitwise the op sequence below)
      if (c.geometry_only && !env.on && kernels::egnn_edge_forward_geometry_fuses<Exec, S>(exec, inner, H, H)) {
        const long parts = kernels::egnn_edge_mlp_parts(exec, false);  // a part of whole receivers per thread
        const long CH = kernels::egnn_edge_mlp_chunk_buffer_rows(parts);
        c.k1 = ws.template mat<std::uint8_t>(lbl + ".k1", l, E, H);
        c.k2 = ws.template mat<std::uint8_t>(lbl + ".k2", l, E, H);
        c.agg = ws.template mat<S>(lbl + ".agg", l, N, H);
        auto a1b = ws.template mat<S>(lbl + ".a1_chunk", 0, CH, H);
        auto mb = ws.template mat<S>(lbl + ".m_chunk", 0, CH, H);
        auto a5b = ws.template mat<S>(lbl + ".a5_chunk", 0, CH, H);
        c.pre1 = c.a1 = c.pre2 = c.m_raw = c.m = c.a5 = c.c1 = Mat<S, mem_t<Exec>>();
        c.c2 = Mat<S, mem_t<Exec>>();
        if (L.equivariant) {
          c.k3 = ws.template mat<std::uint8_t>(lbl + ".k3", l, E, H);
          c.c2 = ws.template mat<S>(lbl + ".c2", l, E, 1);
        }
        kernels::egnn_edge_forward_geometry<Exec, S>(exec, w, c.A, c.B, c.q, b.dst, b.src, b.row_ptr, L.W2, L.coord0,
                                                     L.coord2, L.w_off, L.w_ld, c.agg, c.c2, c.k1, c.k2, c.k3, a1b, mb,
                                                     a5b, parts);
        coord_forward(exec, L, b, in, c, out, ws, l);
        node_forward(exec, L, w, b, in, c, out, ws, l);
        return;
      }
    }
    // pre-activations kept apart from the activations only where the backward needs them (not ReLU)
    const bool keep_pre = !kernels::derivative_from_output(inner);
    const bool transposed = w.transposed(L.W2) && (!L.equivariant || w.transposed(L.coord0));
    if (!env.on && transposed && kernels::egnn_edge_forward_fuses<Exec, S>(exec, inner, H, H)) {
      // training: the edge MLP in one pass over chunks of the edges, its activations kept (ReLU:
      // pre1, pre2, c1 are a1, m, a5), bitwise the op sequence below
      c.a1 = c.pre1 = ws.template mat<S>(lbl + ".a1", l, E, H);
      c.m = c.m_raw = c.pre2 = ws.template mat<S>(lbl + ".m_raw", l, E, H);
      c.a5 = c.c1 = L.equivariant ? ws.template mat<S>(lbl + ".a5", l, E, H) : Mat<S, mem_t<Exec>>();
      c.c2 = L.equivariant ? ws.template mat<S>(lbl + ".c2", l, E, 1) : Mat<S, mem_t<Exec>>();
      c.agg = ws.template mat<S>(lbl + ".agg", l, N, H);
      kernels::egnn_edge_forward<Exec, S, T>(exec, w, c.A, c.B, c.q, b.dst, b.src, b.row_ptr, L.W2, L.coord0, L.coord2,
                                             L.w_off, L.w_ld, c.a1, c.m, c.agg, c.a5, c.c2,
                                             kernels::egnn_edge_mlp_parts(exec, false));
      coord_forward(exec, L, b, in, c, out, ws, l);
      node_forward(exec, L, w, b, in, c, out, ws, l);
      return;
    }
    c.a1 = ws.template mat<S>(lbl + ".a1", l, E, H);
    c.pre1 = keep_pre ? ws.template mat<S>(lbl + ".pre1", l, E, H) : c.a1;
    kernels::egnn_edge_pre_act<Exec, S, T>(exec, c.A, c.B, w.p, L.w_off, L.w_ld, c.q, b.dst, b.src, inner, c.pre1, c.a1);
    c.m_raw = ws.template mat<S>(lbl + ".m_raw", l, E, H);
    c.pre2 = keep_pre ? ws.template mat<S>(lbl + ".pre2", l, E, H) : c.m_raw;
    kernels::linear_forward_act<Exec, S, T>(exec, c.a1, w, L.W2, inner, c.pre2, c.m_raw);
    if (env.on) {
      c.m = ws.template mat<S>(lbl + ".m", l, E, H);
      kernels::scale_rows<Exec, S>(exec, c.m_raw, c.C, c.m, false);
    } else {
      c.m = c.m_raw;
    }
    // coordinates
    if (L.equivariant) {
      c.a5 = ws.template mat<S>(lbl + ".a5", l, E, H);
      c.c1 = keep_pre ? ws.template mat<S>(lbl + ".c1", l, E, H) : c.a5;
      c.c2 = ws.template mat<S>(lbl + ".c2", l, E, 1);
      kernels::linear_forward_act_dot<Exec, S, T>(exec, c.m, w, L.coord0, inner, c.c1, c.a5, L.coord2, c.c2);
    }
    coord_forward(exec, L, b, in, c, out, ws, l);
    // nodes
    c.agg = ws.template mat<S>(lbl + ".agg", l, N, H);
    kernels::segment_sum<Exec, S>(exec, c.m, b.row_ptr, c.agg, false);
    node_forward(exec, L, w, b, in, c, out, ws, l);
  }

  /// The coordinate update of layer l from the coordinate MLP's output c.c2 (none: u passes through).
  template <class Exec, class S>
  void coord_forward(const Exec& exec, const Layer& L, const Batch<mem_t<Exec>>& b, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws,
                     int l) const {
    if (!L.equivariant) {
      out.v = in.v;
      return;
    }
    const std::string lbl = "hydragnn::EGNNConv::layer_forward";
    c.phi = ws.template mat<S>(lbl + ".phi", l, b.num_edges, 1);
    kernels::activation_forward<Exec, S>(exec, Activation::Tanh, c.c2, c.phi);
    out.v = ws.template vec3<S>(lbl + ".u", l, b.num_atoms, 3, 1);
    kernels::egnn_coord_update<Exec, S>(exec, coords(in.v), c.d, c.len, c.phi, b.row_ptr, coords(out.v));
  }

  /// The node MLP of layer l on the aggregate c.agg: h' = W4 act(C h + D agg) [+ h].
  template <class Exec, class S, class T>
  void node_forward(const Exec& exec, const Layer& L, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                    const NodeState<S, mem_t<Exec>>& in, LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out,
                    Workspace<mem_t<Exec>>& ws, int l) const {
    const int N = b.num_atoms, H = hidden;
    const std::string lbl = "hydragnn::EGNNConv::layer_forward";
    const Activation inner = opt.inner_activation;
    c.pre3 = ws.template mat<S>(lbl + ".pre3", l, N, H);
    kernels::linear_forward<Exec, S, T>(exec, in.h, w, L.C, c.pre3);
    auto tmp = ws.template mat<S>(lbl + ".tmp", 0, N, H);
    kernels::linear_forward<Exec, S, T>(exec, c.agg, w, L.D, tmp);
    kernels::add_into<Exec, S>(exec, tmp, c.pre3);
    c.a3 = ws.template mat<S>(lbl + ".a3", l, N, H);
    kernels::activation_forward<Exec, S>(exec, inner, c.pre3, c.a3);
    out.h = ws.template mat<S>(lbl + ".out", l, N, L.W4.out);
    kernels::linear_forward<Exec, S, T>(exec, c.a3, w, L.W4, out.h);
    if (opt.residual && L.in == L.W4.out) kernels::add_into<Exec, S>(exec, in.h, out.h);  // as recurrent E_GCL (same widths)
  }

  template <class Exec, class S, class T>
  void layer_backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const EdgeCache<S, mem_t<Exec>>&, const NodeState<S, mem_t<Exec>>& in,
                      const LayerCache<S, mem_t<Exec>>& c, const NodeState<S, mem_t<Exec>>& out_bar,
                      NodeState<S, mem_t<Exec>>& in_bar, const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>& eg,
                      Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, H = hidden;
    const bool want_params = g.extent(0) > 0;
    const Activation inner = opt.inner_activation;
    const std::string lbl = "hydragnn::EGNNConv::layer_backward";
    if (want_params && c.geometry_only)
      throw std::logic_error("hydragnn::EGNNConv::layer_backward: a parameter gradient of a forward pass made without "
                             "one (Forward::geometry_only)");
    auto params = [&](const Mat<S, M>& X, const Mat<S, M>& Yb, const LinearShape& sh) {
      if (want_params) kernels::linear_backward_params<Exec, S>(exec, X, Yb, sh, g);
    };
    // h' = W4 act(pre3) [+ h]
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, L.in);
    if (opt.residual && L.in == L.W4.out)
      Kokkos::deep_copy(exec, in_bar.h, out_bar.h);
    else
      Kokkos::deep_copy(exec, in_bar.h, S(0));
    params(c.a3, out_bar.h, L.W4);
    auto pre3bar = ws.template mat<S>(lbl + ".pre3_bar", 0, N, H);
    kernels::linear_backward_input_act<Exec, S, T>(exec, out_bar.h, w, L.W4, inner, c.pre3, pre3bar);
    params(in.h, pre3bar, L.C);
    kernels::linear_backward_input<Exec, S, T>(exec, pre3bar, w, L.C, in_bar.h, true);
    params(c.agg, pre3bar, L.D);
    auto aggbar = ws.template mat<S>(lbl + ".agg_bar", 0, N, H);
    kernels::linear_backward_input<Exec, S, T>(exec, pre3bar, w, L.D, aggbar, false);
    // edge messages
    auto dbar = ws.template zeroed_mat<S>(exec, lbl + ".d_bar", 0, E, 3);
    const Mat<S, M> u_out_bar = coords(out_bar.v);
    const bool has_ubar = u_out_bar.extent(0) > 0;
    const bool coord_grad = L.equivariant && has_ubar;
    Mat<S, M> c2bar;
    if (coord_grad) {
      auto phibar = ws.template mat<S>(lbl + ".phi_bar", 0, E, 1);
      kernels::egnn_coord_update_backward<Exec, S>(exec, u_out_bar, c.d, c.len, c.phi, b.dst, b.row_ptr, phibar, dbar);
      c2bar = ws.template mat<S>(lbl + ".c2_bar", 0, E, 1);
      kernels::activation_backward<Exec, S>(exec, Activation::Tanh, c.c2, phibar, c2bar);
    }
    auto qbar = ws.template vec<S>(lbl + ".q_bar", 0, E);
    auto Abar = ws.template mat<S>(lbl + ".A_bar", 0, N, H);
    auto Bbar = ws.template mat<S>(lbl + ".B_bar", 0, N, H);
    Vec<S, M> Cbar;
    if (!env.on) {
      // the edge MLP's backward in one op (HostRow: one pass over the edges in chunks, in a part of
      // whole receivers per thread without a parameter gradient, else on one thread or, dual, as a
      // pipeline of two)
      const bool fused = kernels::egnn_edge_mlp_backward_fuses<Exec, S>(exec, H, H, want_params);
      const long parts = fused ? kernels::egnn_edge_mlp_parts(exec, want_params) : 1;
      const long rows = fused ? kernels::egnn_edge_mlp_backward_buffer_rows<Exec, S>(exec, want_params, parts) : E;
      auto mbar = ws.template mat<S>(lbl + ".m_bar", 0, rows, H);
      auto c1bar = coord_grad ? ws.template mat<S>(lbl + ".c1_bar", 0, rows, H) : Mat<S, M>();
      auto pre1bar = ws.template mat<S>(lbl + ".pre1_bar", 0, rows, H);
      auto cross = ws.template mat<S>(lbl + ".pre1_bar_cross", 0, fused ? kernels::egnn_edge_mlp_cross_rows(parts, E) : 0, H);
      auto sc = ws.template vec<S>(lbl + ".edge_mlp_sums", 0, fused ? kernels::egnn_edge_mlp_scratch_scalars(H, H) : 0);
      auto av = ws.template vec<real_t<S>>(lbl + ".edge_mlp_weight_sums", 0,
                                           fused ? kernels::egnn_edge_mlp_scratch_reals<S>(H, H) : 0);
      kernels::EGNNEdgeMLPBackward<S, T, M> a{aggbar, b.dst, b.src, b.row_ptr, b.send_perm, b.send_ptr,
                                              c2bar, c.c1, c.a5, c.m, c.pre2, c.a1, c.pre1, c.q, w.p,
                                              L.W2, L.coord0, L.coord2, L.w_off, L.w_ld, want_params ? g : Vec<real_t<S>, M>(),
                                              qbar, Abar, Bbar, c.k1, c.k2, c.k3};
      kernels::egnn_edge_mlp_backward<Exec, S, T>(exec, a, inner, mbar, c1bar, pre1bar, sc, av, parts, cross);
    } else {
      auto mbar = ws.template mat<S>(lbl + ".m_bar", 0, E, H);
      kernels::gather_rows<Exec, S>(exec, aggbar, b.dst, mbar);
      if (coord_grad) {
        params(c.a5, c2bar, L.coord2);
        auto c1bar = ws.template mat<S>(lbl + ".c1_bar", 0, E, H);
        kernels::linear_backward_input_act<Exec, S, T>(exec, c2bar, w, L.coord2, inner, c.c1, c1bar);
        params(c.m, c1bar, L.coord0);
        kernels::linear_backward_input<Exec, S, T>(exec, c1bar, w, L.coord0, mbar, true);
      }
      Cbar = ws.template vec<S>(lbl + ".C_bar", 0, E);
      auto m_rawbar = ws.template mat<S>(lbl + ".m_raw_bar", 0, E, H);
      kernels::scale_rows_backward<Exec, S>(exec, c.m_raw, c.C, mbar, m_rawbar, Cbar, false, false);
      auto pre2bar = ws.template mat<S>(lbl + ".pre2_bar", 0, E, H);
      kernels::activation_backward<Exec, S>(exec, inner, c.pre2, m_rawbar, pre2bar);
      params(c.a1, pre2bar, L.W2);
      auto pre1bar = ws.template mat<S>(lbl + ".pre1_bar", 0, E, H);
      kernels::linear_backward_input_act<Exec, S, T>(exec, pre2bar, w, L.W2, inner, c.pre1, pre1bar);
      kernels::egnn_edge_pre_backward<Exec, S, T>(exec, pre1bar, w.p, L.w_off, L.w_ld, c.q, g, qbar);
      kernels::segment_sum<Exec, S>(exec, pre1bar, b.row_ptr, Abar, false);
      kernels::segment_sum_perm<Exec, S>(exec, pre1bar, b.send_perm, b.send_ptr, Bbar, false);
    }
    params(in.h, Abar, L.A);
    kernels::linear_backward_input<Exec, S, T>(exec, Abar, w, L.A, in_bar.h, true);
    params(in.h, Bbar, L.B);
    kernels::linear_backward_input<Exec, S, T>(exec, Bbar, w, L.B, in_bar.h, true);
    // geometry: q(|d|), C(|d|), d = r + u[dst] - u[src]
    kernels::egnn_radial_backward<Exec, S>(exec, c.d, c.len, opt.radial_input == RadialInput::DistanceSquared, env, qbar,
                                           Cbar, dbar);
    const bool has_u = in.v.extent(0) > 0;
    if (has_u) {
      in_bar.v = ws.template vec3<S>(lbl + ".u_bar", l, N, 3, 1);
      auto ubar_in = coords(in_bar.v);
      if (has_ubar)
        Kokkos::deep_copy(exec, ubar_in, u_out_bar);
      else
        Kokkos::deep_copy(exec, ubar_in, S(0));
      kernels::egnn_edge_vectors_backward<Exec, S>(exec, dbar, b.row_ptr, b.send_perm, b.send_ptr, eg.rbar, ubar_in, true);
    } else {
      in_bar.v = VFeat<S, M>();
      kernels::egnn_edge_vectors_backward<Exec, S>(exec, dbar, b.row_ptr, b.send_perm, b.send_ptr, eg.rbar, Mat<S, M>(),
                                                   false);
    }
  }

};

}  // namespace hydragnn
