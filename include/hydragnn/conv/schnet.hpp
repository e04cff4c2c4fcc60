// SPDX-License-Identifier: BSD-3-Clause
// SchNet (HydraGNN's SCFStack layer = its CFConv, PyTorch Geometric's continuous-filter convolution),
// written as a composition of ops:
//
//   edges (once):  d_e = |r_e|,  B_e = GaussianSmearing(d_e) (E x K),  C_e = 0.5 (cos(pi d_e / rc) + 1)
//                  (all three, and the filter W below, depend on d_e only: they are computed once per
//                  pair of mutually reverse edges, Batch::pair_first: U rows instead of E)
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

#include <stdexcept>
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
    bool geometry_only = false;   ///< set by Model::forward (Forward::geometry_only)
    bool filter_fused = false;    ///< the forward ran cfconv_filter_forward_geometry (no activations kept)
  };

  /// Whether the fused geometric kernels serve this layer (a two-layer filter ending linearly, widths
  /// within a HostRow register row, on the host).
  template <class Exec>
  bool filter_geometry_fuses(const Layer& L) const {
    return L.filter.layers.size() == 2 && !L.filter.act_last &&
           kernels::cfconv_filter_geometry_fuses<Exec>(L.lin1.out, L.filter.in_dim());
  }

  /// The rows of d, B, C, W: one per pair of mutually reverse edges (one per edge when the batch
  /// has no pairing).
  template <class M>
  static kernels::EdgePairs<M> pairs_of(const Batch<M>& b) {
    if (long(b.edge_pair.extent(0)) != long(b.num_edges)) return {};
    return {b.pair_first, b.pair_second, b.edge_pair};
  }
  template <class M>
  static long rows_of(const Batch<M>& b) {
    return long(b.edge_pair.extent(0)) == long(b.num_edges) ? long(b.num_pairs) : long(b.num_edges);
  }

  template <class Exec, class S>
  void edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                    EdgeCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::SchNetConv::edge_forward";
    const long U = rows_of(b);
    c.d = ws.template vec<S>(lbl, 0, U);
    c.C = ws.template vec<S>(lbl, 1, U);
    c.B = ws.template mat<S>(lbl, 2, U, radial.size);
    kernels::edge_lengths<Exec, S>(exec, r, c.d, pairs_of(b).first);
    kernels::radial_forward<Exec, S>(exec, radial, c.d, c.B, c.C);
  }
  template <class Exec, class S>
  void edge_grad_init(const Exec& exec, const Batch<mem_t<Exec>>& b, EdgeGrad<S, mem_t<Exec>>& g,
                      Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::SchNetConv::edge_grad";
    const long U = rows_of(b);
    g.dbar = ws.template zeroed_vec<S>(exec, lbl, 0, U);
    g.Cbar = ws.template zeroed_vec<S>(exec, lbl, 1, U);
    g.Bbar = ws.template zeroed_mat<S>(exec, lbl, 2, U, radial.size);
  }
  template <class Exec, class S>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                     const EdgeCache<S, mem_t<Exec>>& c, EdgeGrad<S, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar,
                     Workspace<mem_t<Exec>>&) const {
    kernels::radial_backward<Exec, S>(exec, radial, c.d, c.B, g.Bbar, g.Cbar, g.dbar);
    kernels::edge_lengths_backward<Exec, S>(exec, r, c.d, g.dbar, rbar, pairs_of(b).first);  // onto each pair's first edge
  }

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms;
    const std::string lbl = "hydragnn::SchNetConv::layer_forward";
    const int F = L.lin1.out, K = L.filter.in_dim();
    c.x1 = ws.template mat<S>(lbl + ".x1", l, N, F);
    kernels::linear_forward<Exec, S, T>(exec, in.h, w, L.lin1, c.x1);
    c.agg = ws.template mat<S>(lbl + ".agg", l, N, F);
    const bool filter_chunks =
        filter_geometry_fuses<Exec>(L) &&
        kernels::cfconv_filter_forward_geometry_fuses<Exec, S, T>(w, L.filter.layers[0], L.filter.layers[1], F, K);
    c.filter_fused = c.geometry_only && filter_chunks;
    if (filter_chunks) {
      // the filter in chunks of rows (each chunk's activations read from cache by the second
      // product), then the aggregate; MLP::forward's slots. The activations are kept for the
      // weight gradient, and not stored when no parameter gradient is to come (geometry_only: the
      // geometric backward reads pre0 and W only)
      const long U = rows_of(b);
      auto pre0 = ws.template mat<S>(L.filter.label + ".pre", l * 64, U, F);
      c.W = ws.template mat<S>(L.filter.label + ".pre", l * 64 + 1, U, F);
      const auto a = c.filter_fused ? Mat<S, mem_t<Exec>>() : ws.template mat<S>(L.filter.label + ".act", l * 64, U, F);
      c.filter.input = {ec.B, a};
      c.filter.pre = {pre0, c.W};
      c.filter.out = c.W;
      kernels::cfconv_filter_forward_geometry<Exec, S, T>(exec, ec.B, c.x1, ec.C, b.row_ptr, b.src, w, L.filter.layers[0],
                                                          L.filter.layers[1], L.filter.act_of(0), pre0, c.W, c.agg,
                                                          pairs_of(b), a);
    } else {
      c.W = L.filter.forward<Exec, S, T>(exec, w, ec.B, c.filter, ws, l);
      kernels::cfconv_forward<Exec, S>(exec, c.x1, c.W, ec.C, b.row_ptr, b.src, c.agg, pairs_of(b));
    }
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
    const int N = b.num_atoms, F = L.lin1.out;
    const long U = rows_of(b);
    const auto pairs = pairs_of(b);
    const bool want_params = g.extent(0) > 0;
    const std::string lbl = "hydragnn::SchNetConv::layer_backward";
    if (want_params) kernels::linear_backward_params<Exec, S>(exec, c.agg, out_bar.h, L.lin2, g);
    auto aggbar = ws.template mat<S>(lbl + ".agg_bar", 0, N, F);
    kernels::linear_backward_input<Exec, S, T>(exec, out_bar.h, w, L.lin2, aggbar, false);
    auto x1bar = ws.template mat<S>(lbl + ".x1_bar", 0, N, F);
    // no geometric gradient wanted (empty EdgeGrad): the filter's input gradient is not computed
    const bool want_geometry = eg.Bbar.extent(0) > 0;
    const int K = L.filter.in_dim();
    const bool fused = want_geometry && !want_params && filter_geometry_fuses<Exec>(L) &&
                       long(c.filter.pre[0].stride(0)) == F && long(eg.Bbar.stride(0)) == K;
    if (c.filter_fused && !fused)
      throw std::logic_error("SchNetConv::layer_backward: the forward kept no filter activations (Forward::geometry_only); "
                             "only the geometric gradient (forces, stress) can follow it");
    if (fused) {
      // forces and stress only: the edge half of cfconv_backward and the filter's input gradient in
      // one pass over tiles of rows (Wbar and the filter's cotangents never stored)
      kernels::cfconv_backward_nodes<Exec, S>(exec, c.W, ec.C, b.dst, b.send_perm, b.send_ptr, aggbar, x1bar, pairs);
      kernels::cfconv_filter_geometry_backward<Exec, S, T>(exec, c.x1, c.W, ec.C, b.dst, b.src, aggbar, w.p,
                                                           L.filter.layers[0], L.filter.layers[1], L.filter.act_of(0),
                                                           c.filter.pre[0], eg.Cbar, eg.Bbar, Mat<S, mem_t<Exec>>(),
                                                           Mat<S, mem_t<Exec>>(), Mat<S, mem_t<Exec>>(), pairs);
    } else if (want_params && filter_geometry_fuses<Exec>(L) &&
               kernels::cfconv_filter_params_fuses<Exec>(exec, F, K)) {
      // training on one thread: the edge half of cfconv_backward and the filter's backward (its
      // parameter gradient, and with forces its input gradient) in one pass over chunks of rows
      // (Wbar and the filter's cotangents never stored); the ops where the rows are not contiguous
      kernels::cfconv_backward_nodes<Exec, S>(exec, c.W, ec.C, b.dst, b.send_perm, b.send_ptr, aggbar, x1bar, pairs);
      auto av = ws.template vec<real_t<S>>(lbl + ".filter_param_sums", 0, kernels::cfconv_filter_params_scratch_reals<S>(F, K));
      auto sc = ws.template vec<S>(lbl + ".filter_chunks", 0, kernels::cfconv_filter_params_scratch_scalars(F, K));
      const Mat<S, mem_t<Exec>> Bacc = want_geometry ? eg.Bbar : Mat<S, mem_t<Exec>>();
      Mat<S, mem_t<Exec>> Wbar, zbar, Bbar;
      if (!kernels::cfconv_filter_params_rows_contiguous<S, mem_t<Exec>>(c.W, c.filter.input[1], c.filter.pre[0],
                                                                         c.filter.input[0], Bacc)) {
        Wbar = ws.template mat<S>(lbl + ".W_bar", 0, U, F);
        zbar = ws.template mat<S>(L.filter.label + ".pre_bar", l * 64, U, F);
        if (want_geometry) Bbar = ws.template mat<S>(L.filter.label + ".in_bar", l * 64, U, K);
      }
      kernels::cfconv_filter_backward_params<Exec, S, T>(exec, c.x1, c.W, ec.C, b.dst, b.src, aggbar, w.p, L.filter.layers[0],
                                                         L.filter.layers[1], L.filter.act_of(0), c.filter.input[0],
                                                         c.filter.input[1], c.filter.pre[0], g, eg.Cbar, Bacc, av,
                                                         sc, Wbar, zbar, Bbar, pairs);
    } else {
      auto Wbar = ws.template mat<S>(lbl + ".W_bar", 0, U, F);
      kernels::cfconv_backward<Exec, S>(exec, c.x1, c.W, ec.C, b.dst, b.src, b.send_perm, b.send_ptr, aggbar, x1bar, Wbar,
                                        eg.Cbar, pairs);
      auto Bbar = L.filter.backward<Exec, S, T>(exec, w, c.filter, Wbar, g, ws, l, want_geometry);
      if (want_geometry) kernels::add_into<Exec, S>(exec, Bbar, eg.Bbar);
    }
    if (want_params) kernels::linear_backward_params<Exec, S>(exec, in.h, x1bar, L.lin1, g);
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, L.lin1.in);
    kernels::linear_backward_input<Exec, S, T>(exec, x1bar, w, L.lin1, in_bar.h, false);
  }
};

}  // namespace hydragnn
