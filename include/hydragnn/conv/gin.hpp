// SPDX-License-Identifier: BSD-3-Clause
// GIN (HydraGNN's GINStack layer = PyTorch Geometric's GINConv with eps = 100, train_eps = True):
//
//   layer l:  z_i = (1 + eps) h_i + sum_{e in in(i)} h_src(e)        neighbour sum (segment_sum_perm) + gin_self
//             h'_i = nn(z_i),  nn = Linear(I, H) -> ReLU -> Linear(H, H)
// No edge features (HydraGNN: is_edge_model = False): the energy does not depend on positions.
// HydraGNN's Base puts a BatchNorm after every layer (feature_layer), then the stack activation.
#pragma once

#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/neighbour.hpp>
#include <hydragnn/nn/mlp.hpp>

#include <string>

namespace hydragnn {

/// GIN has no keys of its own (HydraGNN fixes eps = 100, trainable).
using GINOptions = conv::NoOptions;

struct GINConv : conv::NoEdgeGeometry {
  static constexpr const char* name = "GIN";
  using options_type = GINOptions;
  using node_state = conv::Scalars;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::BatchNormFeatureLayer;  // HydraGNN: BatchNorm
  static constexpr double initial_eps = 100.0;

  struct Layer {
    long eps_off = 0;
    MLP nn;
  };
  std::vector<Layer> layers;

  GINConv() = default;
  GINConv(ParamAllocator& alloc, const ConvCommon& common, const GINOptions&) {
    const int H = common.hidden_dim;
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l) + ".module_0";
      const int I = l == 0 ? common.input_dim : H;
      Layer L;
      L.eps_off = long(alloc.take_constant(1, initial_eps, n + ".eps", {1}));
      L.nn = MLP(alloc, {I, H, H}, Activation::ReLU, false, true, n + ".nn");
      layers.push_back(L);
    }
  }
  int num_layers() const { return int(layers.size()); }

  template <class S, class M> struct LayerCache {
    Mat<S, M> z;
    typename MLP::template Cache<S, M> nn;
  };

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>&, const NodeState<S, mem_t<Exec>>& in, LayerCache<S, mem_t<Exec>>& c,
                     NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    c.z = ws.template mat<S>("hydragnn::GINConv::layer_forward.z", l, b.num_atoms, in.h.extent(1));
    kernels::segment_sum_perm<Exec, S>(exec, in.h, b.src, b.row_ptr, c.z, false);  // neighbour sum
    kernels::gin_self<Exec, S, T>(exec, in.h, w.p, L.eps_off, c.z);
    out.h = L.nn.forward<Exec, S, T>(exec, w, c.z, c.nn, ws, l);
  }

  template <class Exec, class S, class T>
  void layer_backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const EdgeCache<S, mem_t<Exec>>&, const NodeState<S, mem_t<Exec>>& in,
                      const LayerCache<S, mem_t<Exec>>& c, const NodeState<S, mem_t<Exec>>& out_bar,
                      NodeState<S, mem_t<Exec>>& in_bar, const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>&,
                      Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const std::string lbl = "hydragnn::GINConv::layer_backward";
    auto zbar = L.nn.backward<Exec, S, T>(exec, w, c.nn, out_bar.h, g, ws, l, true);
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, b.num_atoms, in.h.extent(1));
    kernels::neighbour_backward<Exec, S>(exec, zbar, b.send_perm, b.send_ptr, b.dst, b.row_ptr, false, in_bar.h, false);
    auto rowsum = ws.template vec<S>(lbl + ".eps_rows", 0, b.num_atoms);
    kernels::gin_self_backward<Exec, S, T>(exec, in.h, zbar, w.p, L.eps_off, g, rowsum, in_bar.h);
  }
};

}  // namespace hydragnn
