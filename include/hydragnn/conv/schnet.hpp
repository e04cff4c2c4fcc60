// SPDX-License-Identifier: BSD-3-Clause
// SchNet (HydraGNN's SCFStack layer = its CFConv, PyTorch Geometric's continuous-filter convolution),
// written as a composition of ops:
//
//   edges (once):  d_e = |r_e|,  B_e = GaussianSmearing(d_e) (E x K),  C_e = 0.5 (cos(pi d_e / rc) + 1)
//   layer l:       x1  = lin1(h)                                   Linear   N x H -> N x F (no bias)
//                  W   = nn(B) = Linear(K,F) -> ssp -> Linear(F,F)  MLP      E x K -> E x F
//                  agg = sum_{e in in(i)} x1[src(e)] * W_e * C_e    cfconv   (gather * scale * segment-sum, fused)
//                  out = lin2(agg)                                 Linear   N x F -> N x H
// The stack activation after each layer is applied by the model (HydraGNN's Base.forward).
#pragma once

#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/cfconv.hpp>
#include <hydragnn/kernels/radial.hpp>
#include <hydragnn/nn/mlp.hpp>

#include <string>

namespace hydragnn {

inline constexpr Choice<RadialBasis> radial_basis_choices[] = {{"gaussian", RadialBasis::Gaussian},
                                                               {"bessel", RadialBasis::Bessel}};
inline constexpr Choice<Envelope> envelope_choices[] = {{"cosine", Envelope::Cosine},
                                                        {"polynomial", Envelope::Polynomial}};

/// SchNet's own Architecture keys.
struct SchNetOptions {
  int num_filters = 0;    ///< HydraGNN num_filters (0: hidden_dim, as when the key is absent)
  int num_gaussians = 50; ///< HydraGNN num_gaussians
  RadialBasis radial_type = RadialBasis::Gaussian;  ///< ours: "bessel" replaces the Gaussian smearing
  Envelope envelope = Envelope::Cosine;             ///< ours: "polynomial" replaces CFConv's cosine cutoff
  bool equivariance = false;  ///< HydraGNN's coordinate-updating CFConv: not implemented (must be false)
  template <class V>
  void visit(V&& v) {
    v("num_filters", num_filters);
    v("num_gaussians", num_gaussians);
    v.choice("radial_type", radial_type, radial_basis_choices);
    v.choice("envelope", envelope, envelope_choices);
    v("equivariance", equivariance);
  }
  void finalize(const ConvCommon& c) {
    if (num_filters <= 0) num_filters = c.hidden_dim;
  }
  template <class F>
  void validate(F&& fail) const {
    if (num_filters < 1) fail("num_filters", "must be > 0");
    if (num_gaussians < 1) fail("num_gaussians", "must be > 0");
    if (equivariance)
      fail("equivariance", "true is not implemented for SchNet (HydraGNN's coordinate-updating CFConv); use false");
  }
};

struct SchNetConv {
  static constexpr const char* name = "SchNet";
  using options_type = SchNetOptions;
  using node_state = conv::Scalars;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::IdentityFeatureLayer;  // HydraGNN: Identity

  struct Layer {
    LinearShape lin1, lin2;
    MLP filter;
  };
  std::vector<Layer> layers;
  RadialSpec radial;
  int hidden = 0, filters = 0;

  SchNetConv() = default;
  SchNetConv(ParamAllocator& alloc, const ConvCommon& common, const SchNetOptions& opt)
      : radial{opt.radial_type, opt.num_gaussians, common.cutoff, opt.envelope},
        hidden(common.hidden_dim),
        filters(opt.num_filters > 0 ? opt.num_filters : common.inner_dim()) {
    // Range checks live in SchNetOptions::validate (run by the io layer, which names the key).
    const int H = common.hidden_dim, F = filters, K = opt.num_gaussians;
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l) + ".module_2";
      Layer L;
      L.lin1 = alloc.linear(l == 0 ? common.input_dim : H, F, false, n + ".lin1");
      L.filter = MLP(alloc, {K, F, F}, Activation::ShiftedSoftplus, false, true, n + ".nn");
      L.lin2 = alloc.linear(F, H, true, n + ".lin2");
      layers.push_back(L);
    }
  }
  int num_layers() const { return int(layers.size()); }

  template <class S, class M> struct EdgeCache {
    Vec<S, M> d, C;
    Mat<S, M> B;
  };
  template <class S, class M> struct EdgeGrad {
    Vec<S, M> dbar, Cbar;
    Mat<S, M> Bbar;
  };
  template <class S, class M> struct LayerCache {
    Mat<S, M> x1, W, agg;
    typename MLP::template Cache<S, M> filter;
  };

  template <class Exec, class S>
  void edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                    EdgeCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::SchNetConv::edge_forward";
    c.d = ws.template vec<S>(lbl, 0, b.num_edges);
    c.C = ws.template vec<S>(lbl, 1, b.num_edges);
    c.B = ws.template mat<S>(lbl, 2, b.num_edges, radial.size);
    kernels::edge_lengths<Exec, S>(exec, r, c.d);
    kernels::radial_forward<Exec, S>(exec, radial, c.d, c.B, c.C);
  }
  template <class Exec, class S>
  void edge_grad_init(const Exec& exec, const Batch<mem_t<Exec>>& b, EdgeGrad<S, mem_t<Exec>>& g,
                      Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::SchNetConv::edge_grad";
    g.dbar = ws.template zeroed_vec<S>(exec, lbl, 0, b.num_edges);
    g.Cbar = ws.template zeroed_vec<S>(exec, lbl, 1, b.num_edges);
    g.Bbar = ws.template zeroed_mat<S>(exec, lbl, 2, b.num_edges, radial.size);
  }
  template <class Exec, class S>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>& r,
                     const EdgeCache<S, mem_t<Exec>>& c, EdgeGrad<S, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar,
                     Workspace<mem_t<Exec>>&) const {
    kernels::radial_backward<Exec, S>(exec, radial, c.d, g.Bbar, g.Cbar, g.dbar);
    kernels::edge_lengths_backward<Exec, S>(exec, r, c.d, g.dbar, rbar);
  }

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms;
    const std::string lbl = "hydragnn::SchNetConv::layer_forward";
    c.x1 = ws.template mat<S>(lbl + ".x1", l, N, L.lin1.out);
    kernels::linear_forward<Exec, S, T>(exec, in.h, w, L.lin1, c.x1);
    c.W = L.filter.forward<Exec, S, T>(exec, w, ec.B, c.filter, ws, l);
    c.agg = ws.template mat<S>(lbl + ".agg", l, N, L.lin1.out);
    kernels::cfconv_forward<Exec, S>(exec, c.x1, c.W, ec.C, b.row_ptr, b.src, c.agg);
    out.h = ws.template mat<S>(lbl + ".out", l, N, L.lin2.out);
    kernels::linear_forward<Exec, S, T>(exec, c.agg, w, L.lin2, out.h);
  }

  template <class Exec, class S, class T>
  void layer_backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                      const LayerCache<S, mem_t<Exec>>& c, const NodeState<S, mem_t<Exec>>& out_bar,
                      NodeState<S, mem_t<Exec>>& in_bar, const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>& eg,
                      Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, F = L.lin1.out;
    const bool want_params = g.extent(0) > 0;
    const std::string lbl = "hydragnn::SchNetConv::layer_backward";
    if (want_params) kernels::linear_backward_params<Exec, S>(exec, c.agg, out_bar.h, L.lin2, g);
    auto aggbar = ws.template mat<S>(lbl + ".agg_bar", 0, N, F);
    kernels::linear_backward_input<Exec, S, T>(exec, out_bar.h, w, L.lin2, aggbar, false);
    auto x1bar = ws.template mat<S>(lbl + ".x1_bar", 0, N, F);
    // no geometric gradient wanted (empty EdgeGrad): the filter's input gradient is not computed
    const bool want_geometry = eg.Bbar.extent(0) > 0;
    const int K = L.filter.in_dim();
    if (want_geometry && !want_params && L.filter.layers.size() == 2 && !L.filter.act_last &&
        kernels::cfconv_filter_geometry_fuses<Exec>(F, K) && long(c.filter.pre[0].stride(0)) == F &&
        long(eg.Bbar.stride(0)) == K) {
      // forces and stress only: the edge half of cfconv_backward and the filter's input gradient in
      // one pass over tiles of edges (Wbar and the filter's cotangents never stored)
      kernels::cfconv_backward_nodes<Exec, S>(exec, c.W, ec.C, b.dst, b.send_perm, b.send_ptr, aggbar, x1bar);
      kernels::cfconv_filter_geometry_backward<Exec, S, T>(exec, c.x1, c.W, ec.C, b.dst, b.src, aggbar, w.p,
                                                           L.filter.layers[0], L.filter.layers[1], L.filter.act_of(0),
                                                           c.filter.pre[0], eg.Cbar, eg.Bbar, Mat<S, mem_t<Exec>>(),
                                                           Mat<S, mem_t<Exec>>(), Mat<S, mem_t<Exec>>());
    } else {
      auto Wbar = ws.template mat<S>(lbl + ".W_bar", 0, E, F);
      kernels::cfconv_backward<Exec, S>(exec, c.x1, c.W, ec.C, b.dst, b.src, b.send_perm, b.send_ptr, aggbar, x1bar, Wbar,
                                        eg.Cbar);
      auto Bbar = L.filter.backward<Exec, S, T>(exec, w, c.filter, Wbar, g, ws, l, want_geometry);
      if (want_geometry) kernels::add_into<Exec, S>(exec, Bbar, eg.Bbar);
    }
    if (want_params) kernels::linear_backward_params<Exec, S>(exec, in.h, x1bar, L.lin1, g);
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, L.lin1.in);
    kernels::linear_backward_input<Exec, S, T>(exec, x1bar, w, L.lin1, in_bar.h, false);
  }
};

}  // namespace hydragnn
