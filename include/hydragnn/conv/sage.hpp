// SPDX-License-Identifier: BSD-3-Clause
// SAGE (HydraGNN's SAGEStack layer = PyTorch Geometric's SAGEConv, mean aggregation, root weight,
// no normalisation, no projection):
//
//   layer l:  h'_i = lin_l(mean_{e in in(i)} h_src(e)) + lin_r(h_i)     lin_l with bias, lin_r without
// A node without incoming edges aggregates 0. No edge features (HydraGNN: is_edge_model = False):
// the energy does not depend on positions. HydraGNN's Base puts a BatchNorm after every layer.
#pragma once

#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/neighbour.hpp>

#include <string>

namespace hydragnn {

/// SAGE has no keys of its own.
using SAGEOptions = conv::NoOptions;

struct SAGEConv : conv::NoEdgeGeometry {
  static constexpr const char* name = "SAGE";
  using options_type = SAGEOptions;
  using node_state = conv::Scalars;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::BatchNormFeatureLayer;  // HydraGNN: BatchNorm

  struct Layer {
    LinearShape lin_l, lin_r;
  };
  std::vector<Layer> layers;

  SAGEConv() = default;
  SAGEConv(ParamAllocator& alloc, const ConvCommon& common, const SAGEOptions&) {
    const int H = common.hidden_dim;
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l) + ".module_0";
      const int I = l == 0 ? common.input_dim : H;
      Layer L;
      L.lin_l = alloc.linear(I, H, true, n + ".lin_l");
      L.lin_r = alloc.linear(I, H, false, n + ".lin_r");
      layers.push_back(L);
    }
  }
  int num_layers() const { return int(layers.size()); }

  template <class S, class M> struct LayerCache {
    Mat<S, M> agg;
  };

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>&, const NodeState<S, mem_t<Exec>>& in, LayerCache<S, mem_t<Exec>>& c,
                     NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms;
    const std::string lbl = "hydragnn::SAGEConv::layer_forward";
    c.agg = ws.template mat<S>(lbl + ".agg", l, N, L.lin_l.in);
    kernels::segment_mean_perm<Exec, S>(exec, in.h, b.src, b.row_ptr, c.agg, false);  // neighbour mean
    out.h = ws.template mat<S>(lbl + ".out", l, N, L.lin_l.out);
    kernels::linear_forward<Exec, S, T>(exec, c.agg, w, L.lin_l, out.h);
    auto root = ws.template mat<S>(lbl + ".root", 0, N, L.lin_r.out);
    kernels::linear_forward<Exec, S, T>(exec, in.h, w, L.lin_r, root);
    kernels::add_into<Exec, S>(exec, root, out.h);
  }

  template <class Exec, class S, class T>
  void layer_backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const EdgeCache<S, mem_t<Exec>>&, const NodeState<S, mem_t<Exec>>& in,
                      const LayerCache<S, mem_t<Exec>>& c, const NodeState<S, mem_t<Exec>>& out_bar,
                      NodeState<S, mem_t<Exec>>& in_bar, const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>&,
                      Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms;
    const std::string lbl = "hydragnn::SAGEConv::layer_backward";
    if (g.extent(0) > 0) {
      kernels::linear_backward_params<Exec, S>(exec, c.agg, out_bar.h, L.lin_l, g);
      kernels::linear_backward_params<Exec, S>(exec, in.h, out_bar.h, L.lin_r, g);
    }
    auto aggbar = ws.template mat<S>(lbl + ".agg_bar", 0, N, L.lin_l.in);
    kernels::linear_backward_input<Exec, S, T>(exec, out_bar.h, w, L.lin_l, aggbar, false);
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, L.lin_r.in);
    kernels::linear_backward_input<Exec, S, T>(exec, out_bar.h, w, L.lin_r, in_bar.h, false);
    kernels::neighbour_backward<Exec, S>(exec, aggbar, b.send_perm, b.send_ptr, b.dst, b.row_ptr, true, in_bar.h, true);
  }
};

}  // namespace hydragnn
