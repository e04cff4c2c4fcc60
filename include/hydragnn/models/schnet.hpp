// SPDX-License-Identifier: BSD-3-Clause
// SchNet convolution policy (HydraGNN's SCFStack layer = PyTorch Geometric's CFConv):
//   x1 = lin1(h)                       (no bias)
//   W  = Linear(G,F) -> ssp -> Linear(F,F) applied to the radial basis of each edge
//   agg_i = sum_{e in in(i)} x1[src(e)] * W(e) * C(d_e)   (cosine cutoff C)
//   h' = act(lin2(agg))                (HydraGNN applies the activation after every conv)
#pragma once

#include <hydragnn/kernels/cfconv.hpp>
#include <hydragnn/kernels/radial.hpp>
#include <hydragnn/models/spec.hpp>
#include <hydragnn/nn/mlp.hpp>

namespace hydragnn {

struct SchNetConv {
  static constexpr const char* name = "SchNet";

  struct Layer {
    LinearShape lin1, lin2;
    MLP filter;
  };
  std::vector<Layer> layers;
  RadialSpec radial;
  Activation act = Activation::SiLU;

  SchNetConv() = default;
  SchNetConv(ParamAllocator& alloc, const ModelSpec& spec) : radial(spec.radial), act(spec.act) {
    const int H = spec.hidden_dim, F = spec.num_filters, G = spec.radial.size;
    for (int l = 0; l < spec.num_conv_layers; ++l) {
      Layer L;
      L.lin1 = alloc.linear(H, F, false);
      L.filter = MLP(alloc, {G, F, F}, Activation::ShiftedSoftplus, false);
      L.lin2 = alloc.linear(F, H, true);
      layers.push_back(L);
    }
  }

  template <class S, class M> struct EdgeCache {
    Vec<S, M> d, C;
    Mat<S, M> B;
  };
  template <class S, class M> struct EdgeGrad {
    Vec<S, M> dbar, Cbar;
    Mat<S, M> Bbar;
  };
  template <class S, class M> struct LayerCache {
    Mat<S, M> x1, W, agg, pre;
    typename MLP::template Cache<S, M> filter;
  };

  template <class Exec, class S>
  EdgeCache<S, mem_t<Exec>> edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b,
                                         const Mat<S, mem_t<Exec>>& r) const {
    using M = mem_t<Exec>;
    EdgeCache<S, M> c;
    c.d = Vec<S, M>("hydragnn::SchNetConv::edge_forward", b.num_edges);
    c.C = Vec<S, M>("hydragnn::SchNetConv::edge_forward", b.num_edges);
    c.B = Mat<S, M>("hydragnn::SchNetConv::edge_forward", b.num_edges, radial.size);
    kernels::edge_lengths<Exec, S>(exec, r, c.d);
    kernels::radial_forward<Exec, S>(exec, radial, c.d, c.B, c.C);
    return c;
  }
  template <class Exec, class S>
  EdgeGrad<S, mem_t<Exec>> edge_grad(const Batch<mem_t<Exec>>& b) const {
    using M = mem_t<Exec>;
    EdgeGrad<S, M> g;
    g.dbar = Vec<S, M>("hydragnn::SchNetConv::edge_grad", b.num_edges);
    g.Cbar = Vec<S, M>("hydragnn::SchNetConv::edge_grad", b.num_edges);
    g.Bbar = Mat<S, M>("hydragnn::SchNetConv::edge_grad", b.num_edges, radial.size);
    return g;
  }
  template <class Exec, class S>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>& r,
                     const EdgeCache<S, mem_t<Exec>>& c, EdgeGrad<S, mem_t<Exec>>& g,
                     const Mat<S, mem_t<Exec>>& rbar) const {
    kernels::radial_backward<Exec, S>(exec, radial, c.d, g.Bbar, g.Cbar, g.dbar);
    kernels::edge_lengths_backward<Exec, S>(exec, r, c.d, g.dbar, rbar);
  }

  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> layer_forward(const Exec& exec, int l, const CVec<T, mem_t<Exec>>& p,
                                    const Batch<mem_t<Exec>>& b, const EdgeCache<S, mem_t<Exec>>& ec,
                                    const Mat<S, mem_t<Exec>>& h, LayerCache<S, mem_t<Exec>>& c) const {
    using M = mem_t<Exec>;
    const Layer& L = layers[l];
    const int N = b.num_atoms;
    c.x1 = Mat<S, M>("hydragnn::SchNetConv::layer_forward", N, L.lin1.out);
    kernels::linear_forward<Exec, S, T>(exec, h, p, L.lin1, c.x1);
    c.W = L.filter.forward<Exec, S, T>(exec, p, ec.B, c.filter);
    c.agg = Mat<S, M>("hydragnn::SchNetConv::layer_forward", N, L.lin1.out);
    kernels::cfconv_forward<Exec, S>(exec, c.x1, c.W, ec.C, b.row_ptr, b.src, c.agg);
    c.pre = Mat<S, M>("hydragnn::SchNetConv::layer_forward", N, L.lin2.out);
    kernels::linear_forward<Exec, S, T>(exec, c.agg, p, L.lin2, c.pre);
    Mat<S, M> out("hydragnn::SchNetConv::layer_forward", N, L.lin2.out);
    kernels::activation_forward<Exec, S>(exec, act, c.pre, out);
    return out;
  }

  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> layer_backward(const Exec& exec, int l, const CVec<T, mem_t<Exec>>& p,
                                     const Batch<mem_t<Exec>>& b, const EdgeCache<S, mem_t<Exec>>& ec,
                                     const Mat<S, mem_t<Exec>>& h, const LayerCache<S, mem_t<Exec>>& c,
                                     const Mat<S, mem_t<Exec>>& hbar_out, const Vec<S, mem_t<Exec>>& g,
                                     EdgeGrad<S, mem_t<Exec>>& eg) const {
    using M = mem_t<Exec>;
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, F = L.lin1.out;
    Mat<S, M> prebar("hydragnn::SchNetConv::layer_backward", N, L.lin2.out);
    kernels::activation_backward<Exec, S>(exec, act, c.pre, hbar_out, prebar);
    kernels::linear_backward_params<Exec, S>(exec, c.agg, prebar, L.lin2, g);
    Mat<S, M> aggbar("hydragnn::SchNetConv::layer_backward", N, F);
    kernels::linear_backward_input<Exec, S, T>(exec, prebar, p, L.lin2, aggbar, false);
    Mat<S, M> x1bar("hydragnn::SchNetConv::layer_backward", N, F);
    Mat<S, M> Wbar("hydragnn::SchNetConv::layer_backward", E, F);
    kernels::cfconv_backward<Exec, S>(exec, c.x1, c.W, ec.C, b.dst, b.src, b.send_perm, b.send_ptr, aggbar, x1bar,
                                      Wbar, eg.Cbar);
    Mat<S, M> Bbar = L.filter.backward<Exec, S, T>(exec, p, c.filter, Wbar, g);
    kernels::add_into<Exec, S>(exec, Bbar, eg.Bbar);
    kernels::linear_backward_params<Exec, S>(exec, h, x1bar, L.lin1, g);
    Mat<S, M> hbar("hydragnn::SchNetConv::layer_backward", N, L.lin1.in);
    kernels::linear_backward_input<Exec, S, T>(exec, x1bar, p, L.lin1, hbar, false);
    return hbar;
  }
};

}  // namespace hydragnn
