// SPDX-License-Identifier: BSD-3-Clause
// PNAPlus (HydraGNN's PNAPlusStack, commit d251f816): PNA whose messages see the edge length through
// DimeNet's Bessel basis with trainable frequencies, and are gated by a projection of it. Its
// PNAConv: aggregators mean/min/max/std, scalers identity/amplification/attenuation/linear over
// pna_deg as given, towers 1, pre_layers 1, post_layers 1, divide_input False, act ReLU. As a
// composition of ops (receiver i = dst(e), sender j = src(e)):
//
//   edges (once):  d_e = |r_e|,  a_e = d_e / edge_length_scale              (edge_features ["length"] only)
//   layer l:       rbf_e,k = env(d_e / rc) sin(f_k d_e / rc)                k < num_radial, f = rbf.freq
//                  (PyG BesselBasisLayer; one set of frequencies shared by every layer: HydraGNN's
//                  stack-level `rbf` module, recomputed here per layer from the cached d_e)
//                  re_e = relu(rbf_emb(rbf_e))                              Linear R -> I
//                  (with the length feature: re_e = edge_encoder([a_e, re_e])   Linear 1 + I -> I)
//                  m_e  = pre([h_i, h_j, re_e]) * rbf_lin(rbf_e)            Linear 3I -> I; R -> I, no bias
//                       = (pre_i(h)[i] + pre_j(h)[j] + pre_e(re_e)) * q_e  node blocks computed per node;
//                  (with the length feature pre_e and edge_encoder, two linear maps with nothing
//                  between them, run as one: kernels::linear_compose, formed per layer in the
//                  forward and kept in the layer's cache for the backward)
//                  (HostRow forms q a chunk of rows at a time inside the product: kernels::basis_gate)
//                  A_i  = PNA(m) over the edges into i                      N x 16I (kernels/pna.hpp)
//                  out  = lin(post([h_i, A_i]))                             Linear 17I -> H, Linear H -> H
// HydraGNN's Base puts a BatchNorm after every layer, then the stack activation. The energy depends
// on the positions through the basis, so forces, stress and force training all work.
#pragma once

#include <hydragnn/conv/edge_features.hpp>
#include <hydragnn/conv/pna_blocks.hpp>
#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/pna.hpp>
#include <hydragnn/kernels/radial.hpp>
#include <hydragnn/kernels/segment.hpp>

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace hydragnn {

struct PNAPlusOptions : EdgeFeatureOptions {
  int num_radial = 6;            ///< HydraGNN num_radial (required there)
  int envelope_exponent = 5;     ///< HydraGNN envelope_exponent (required there; PyG's default 5)
  std::vector<double> pna_deg;   ///< in-degree histogram of the training set (HydraGNN pna_deg)
  template <class V>
  void visit(V&& v) {
    v("num_radial", num_radial);
    v("envelope_exponent", envelope_exponent);
    v("pna_deg", pna_deg);
    visit_edge_features(v);
  }
  template <class F>
  void validate(F&& fail) const {
    if (num_radial < 1) fail("num_radial", "must be > 0");
    if (envelope_exponent < 1) fail("envelope_exponent", "must be >= 1");
    for (double h : pna_deg)
      if (!(h >= 0) || !std::isfinite(h)) fail("pna_deg", "must hold finite counts >= 0");
    validate_edge_features(fail);
  }
};

struct PNAPlusConv {
  static constexpr const char* name = "PNAPlus";
  using options_type = PNAPlusOptions;
  using node_state = conv::Scalars;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::BatchNormFeatureLayer;  // HydraGNN: BatchNorm

  struct Layer {
    int in = 0;  ///< I
    LinearShape rbf_emb, rbf_lin, enc, pre, pre_i, pre_j, pre_e;  // enc: edge_encoder on [edge_attr, rbf_emb]
    conv::PnaUpdate upd;  ///< post_nns and lin
  };
  std::vector<Layer> layers;
  kernels::PnaScalers scalers;
  conv::EdgeLength length;
  long freq_off = 0;   ///< rbf.freq: num_radial trainable frequencies
  int num_radial = 0, exponent = 0;
  double cutoff = 0;

  PNAPlusConv() = default;
  PNAPlusConv(ParamAllocator& alloc, const ConvCommon& common, const PNAPlusOptions& opt)
      : length(opt, name), num_radial(opt.num_radial), exponent(opt.envelope_exponent), cutoff(common.cutoff) {
    if (opt.pna_deg.empty())
      throw std::runtime_error("PNAPlus: 'pna_deg' (the training set's in-degree histogram) is empty; hydragnn train "
                               "computes it from the training set, or give it in the config");
    using K = kernels::PnaScaler;
    scalers = kernels::PnaScalers::from_histogram({K::Identity, K::Amplification, K::Attenuation, K::Linear}, opt.pna_deg);
    const int H = common.hidden_dim, R = opt.num_radial;
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l) + ".module_0";
      const int I = l == 0 ? common.input_dim : H;
      Layer L;
      L.in = I;
      L.pre = alloc.linear(3 * I, I, true, n + ".pre_nns.0.0");
      L.pre_i = L.pre.columns(0, I, true);  // [x_i, x_j, edge]
      L.pre_j = L.pre.columns(I, I, false);
      L.pre_e = L.pre.columns(2 * I, I, false);
      L.upd = conv::PnaUpdate(alloc, n, I, H, 16);
      L.rbf_lin = alloc.linear(R, I, false, n + ".rbf_lin");
      L.rbf_emb = alloc.linear(R, I, true, n + ".rbf_emb.0");
      if (length.on) {
        L.enc = alloc.linear(1 + I, I, true, n + ".edge_encoder");
      }
      layers.push_back(L);
    }
    const double pi = std::acos(-1.0);
    freq_off = long(alloc.take_sequence(std::size_t(R), pi, pi, "rbf.freq", {R}));  // (k + 1) pi
  }
  int num_layers() const { return int(layers.size()); }

  template <class S, class M> struct EdgeCache {
    Vec<S, M> d;
    Mat<S, M> a;                 ///< E x 1 length feature (edge_features ["length"] only)
    Mat<real_t<S>, M> scale;     ///< N x 4 degree scalers
  };
  template <class S, class M> struct EdgeGrad {
    Vec<S, M> dbar;
    Mat<S, M> abar;
  };
  template <class S, class M> struct LayerCache {
    Mat<S, M> rbf, z, re, m0, q, m;
    Vec<real_t<S>, M> cp, cpt;  ///< the composed edge layer C, c and C^T (length feature; composed_edge)
    conv::PnaUpdate::Cache<S, M> upd;
  };

  /// The length feature's edge input pre_e(edge_encoder([a, re])) = C [a, re] + c as one layer
  /// (kernels::linear_compose; composed_shape's layout, W^T included): an E x I x I product in the
  /// forward and in the input cotangent, one of the weight cotangent's two (see layer_backward).
  /// Formed in layer l's forward into slot l and kept in its cache (c.cp, c.cpt) for the backward.
  template <class Exec, class S, class T>
  Weights<T, mem_t<Exec>> composed_edge(const Exec& exec, int l, const Layer& L, const Weights<T, mem_t<Exec>>& w,
                                        LayerCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws,
                                        const std::string& lbl) const {
    static_assert(std::is_same<T, real_t<S>>::value, "hydragnn::PNAPlusConv: weights of the scalar's real type");
    const std::size_t n = kernels::composed_shape(L.pre_e, L.enc).num_params();
    c.cp = ws.template vec<T>(lbl + ".edge_composed", l, n);
    c.cpt = ws.template vec<T>(lbl + ".edge_composed_t", l, n);
    kernels::linear_compose<Exec, T>(exec, w.p, L.pre_e, L.enc, c.cp, c.cpt);
    return {c.cp, c.cpt};
  }

  template <class Exec, class S>
  void edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                    EdgeCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::PNAPlusConv::edge_forward";
    c.d = ws.template vec<S>(lbl + ".d", 0, b.num_edges);
    kernels::edge_lengths<Exec, S>(exec, r, c.d);
    if (length.on) {
      c.a = ws.template mat<S>(lbl + ".a", 0, b.num_edges, 1);
      kernels::length_feature<Exec, S>(exec, c.d, length.scale, c.a);
    }
    c.scale = ws.template mat<real_t<S>>(lbl + ".scale", 0, b.num_atoms, scalers.n);
    kernels::pna_scales<Exec, real_t<S>>(exec, b.row_ptr, scalers, c.scale);
  }
  template <class Exec, class S>
  void edge_grad_init(const Exec& exec, const Batch<mem_t<Exec>>& b, EdgeGrad<S, mem_t<Exec>>& g,
                      Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::PNAPlusConv::edge_grad";
    g.dbar = ws.template zeroed_vec<S>(exec, lbl + ".d_bar", 0, b.num_edges);
    if (length.on) g.abar = ws.template zeroed_mat<S>(exec, lbl + ".a_bar", 0, b.num_edges, 1);
  }
  template <class Exec, class S>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>& r,
                     const EdgeCache<S, mem_t<Exec>>& c, EdgeGrad<S, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar,
                     Workspace<mem_t<Exec>>&) const {
    if (length.on) kernels::length_feature_backward<Exec, S>(exec, g.abar, length.scale, g.dbar);
    kernels::edge_lengths_backward<Exec, S>(exec, r, c.d, g.dbar, rbar);
  }

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    const Layer& L = layers[l];
    const int E = b.num_edges, I = L.in;
    const std::string lbl = "hydragnn::PNAPlusConv::layer_forward";
    // the basis and the edge input of the message: relu(rbf_emb(rbf)) (through the edge encoder with a_e)
    c.rbf = ws.template mat<S>(lbl + ".rbf", l, E, num_radial);
    kernels::bessel_basis<Exec, S, T>(exec, ec.d, w.p, freq_off, cutoff, exponent, c.rbf);
    c.z = ws.template mat<S>(lbl + ".z", l, E, I);
    c.re = ws.template mat<S>(lbl + ".re", l, E, I);
    kernels::linear_forward<Exec, S, T>(exec, c.rbf, w, L.rbf_emb, c.z);
    kernels::activation_forward<Exec, S>(exec, Activation::ReLU, c.z, c.re);
    // message m = pre([h_i, h_j, edge]) * rbf_lin(rbf): the edge block (with the length feature
    // pre_e(edge_encoder([a, re])) as one composed layer), the node blocks per node, gathered
    c.m0 = ws.template mat<S>(lbl + ".m0", l, E, I);
    if (length.on) {
      const auto wc = composed_edge(exec, l, L, w, c, ws, lbl);
      const LinearShape cs = kernels::composed_shape(L.pre_e, L.enc);
      auto tmp = ws.template mat<S>(lbl + ".enc_tmp", 0, E, I);
      kernels::linear_forward<Exec, S, T>(exec, ec.a, wc, cs.columns(0, 1, true), tmp);
      kernels::linear_forward<Exec, S, T>(exec, c.re, wc, cs.columns(1, I, false), c.m0);
      kernels::add_into<Exec, S>(exec, tmp, c.m0);
    } else {
      kernels::linear_forward<Exec, S, T>(exec, c.re, w, L.pre_e, c.m0);
    }
    conv::NodeBlocks::forward<Exec, S, T>(exec, w, b, in.h, L.pre_i, L.pre_j, c.m0, true, ws, lbl);
    c.m = ws.template mat<S>(lbl + ".m", l, E, I);
    bool fused = false;
    if constexpr (std::is_same<S, T>::value) {
      if (kernels::basis_gate_fuses(exec, w, L.rbf_lin)) {
        // q formed a chunk of rows at a time, never stored (E x I; the backward forms it again);
        // bitwise the op sequence below
        const long parts = kernels::basis_gate_parts(exec);
        auto qb = ws.template mat<S>(lbl + ".q_chunk", 0, kernels::basis_gate_buffer_rows(parts), I);
        c.q = Mat<S, M>();
        kernels::basis_gate<Exec, S>(exec, c.m0, c.rbf, w, L.rbf_lin, c.m, qb, parts);
        fused = true;
      }
    }
    if (!fused) {
      c.q = ws.template mat<S>(lbl + ".q", l, E, I);
      kernels::linear_forward<Exec, S, T>(exec, c.rbf, w, L.rbf_lin, c.q);
      kernels::hadamard<Exec, S>(exec, c.m0, c.q, c.m);
    }
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
    const bool want_params = g.extent(0) > 0, want_geometry = eg.dbar.extent(0) > 0;
    const std::string lbl = "hydragnn::PNAPlusConv::layer_backward";
    auto params = [&](const Mat<S, M>& X, const Mat<S, M>& Yb, const LinearShape& sh) {
      if (want_params) kernels::linear_backward_params<Exec, S>(exec, X, Yb, sh, g);
    };
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, I);
    auto mbar = ws.template mat<S>(lbl + ".m_bar", 0, E, I);
    L.upd.backward<Exec, S, T>(exec, w, b, scalers, ec.scale, in.h, c.m, c.upd, out_bar.h, g, in_bar.h, mbar, ws, lbl);
    // m = m0 * q; m0 = pre_i(h)[dst] + pre_j(h)[src] + pre_e(edge)
    const bool want_basis = want_params || want_geometry;  // the basis feeds the frequencies and dL/dr
    auto m0bar = ws.template mat<S>(lbl + ".m0_bar", 0, E, I);
    auto rbfbar = want_basis ? ws.template mat<S>(lbl + ".rbf_bar", 0, E, num_radial) : Mat<S, M>();
    bool fused = false;
    if constexpr (std::is_same<S, T>::value) {
      if (!want_params && kernels::basis_gate_fuses(exec, w, L.rbf_lin)) {
        // q formed again and qbar a chunk of rows at a time, neither stored; rbfbar = qbar W
        // (bitwise the sequence below)
        const long parts = kernels::basis_gate_parts(exec);
        auto qb = ws.template mat<S>(lbl + ".q_chunk", 0, kernels::basis_gate_buffer_rows(parts), I);
        kernels::basis_gate_backward<Exec, S>(exec, c.m0, c.rbf, w, L.rbf_lin, mbar, m0bar, rbfbar, false, qb, parts);
        fused = true;
      }
    }
    Mat<S, M> qbar;
    if (!fused) {
      Mat<S, M> q = c.q;
      if (q.extent(0) == 0) {  // the forward ran fused and kept no q
        q = ws.template mat<S>(lbl + ".q", 0, E, I);
        kernels::linear_forward<Exec, S, T>(exec, c.rbf, w, L.rbf_lin, q);
      }
      if (want_basis) qbar = ws.template mat<S>(lbl + ".q_bar", 0, E, I);
      kernels::hadamard_backward<Exec, S>(exec, c.m0, q, mbar, m0bar, qbar, false, false);
    }
    conv::NodeBlocks::backward<Exec, S, T>(exec, w, b, in.h, L.pre_i, L.pre_j, m0bar, g, in_bar.h, ws, lbl);
    // the edge block; with the length feature the composed layer C [a, re] + c: its weight
    // cotangent (one E x I x I product), then through C = W_e W_enc and c = W_e b_enc
    const LinearShape cs = kernels::composed_shape(L.pre_e, L.enc);
    if (!length.on) {
      params(c.re, m0bar, L.pre_e);
    } else if (want_params) {
      auto tc = ws.template zeroed_vec<real_t<S>>(exec, lbl + ".edge_composed_bar", 0, cs.num_params());
      kernels::linear_backward_params<Exec, S>(exec, ec.a, m0bar, cs.columns(0, 1, true), tc);
      kernels::linear_backward_params<Exec, S>(exec, c.re, m0bar, cs.columns(1, I, false), tc);
      kernels::linear_compose_backward<Exec, T, real_t<S>>(exec, w, L.pre_e, L.enc, tc, g);
    }
    if (!want_basis) return;
    // q = rbf_lin(rbf) (the fused pass formed rbfbar's share already)
    if (!fused) {
      params(c.rbf, qbar, L.rbf_lin);
      kernels::linear_backward_input<Exec, S, T>(exec, qbar, w, L.rbf_lin, rbfbar, false);
    }
    // the edge block's input [a,] re, re = relu(z), z = rbf_emb(rbf)
    auto rebar = ws.template mat<S>(lbl + ".re_bar", 0, E, I);
    if (length.on) {
      const Weights<T, M> wc{c.cp, c.cpt};  // formed by this layer's forward
      if (want_geometry) kernels::linear_backward_input<Exec, S, T>(exec, m0bar, wc, cs.columns(0, 1, true), eg.abar, true);
      kernels::linear_backward_input<Exec, S, T>(exec, m0bar, wc, cs.columns(1, I, false), rebar, false);
    } else {
      kernels::linear_backward_input<Exec, S, T>(exec, m0bar, w, L.pre_e, rebar, false);
    }
    auto zbar = ws.template mat<S>(lbl + ".z_bar", 0, E, I);
    kernels::activation_backward<Exec, S>(exec, Activation::ReLU, c.z, rebar, zbar);
    params(c.rbf, zbar, L.rbf_emb);
    kernels::linear_backward_input<Exec, S, T>(exec, zbar, w, L.rbf_emb, rbfbar, true);
    kernels::bessel_basis_backward<Exec, S, T>(exec, ec.d, w.p, freq_off, cutoff, exponent, rbfbar, g, eg.dbar);
  }
};

}  // namespace hydragnn
