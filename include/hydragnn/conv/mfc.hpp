// SPDX-License-Identifier: BSD-3-Clause
// MFC (HydraGNN's MFCStack layer = PyTorch Geometric's MFConv with max_degree = max_neighbours):
//
//   layer l:  s_i = sum_{e in in(i)} h_src(e)                               segment_sum_perm
//             h'_i = lins_l[k_i](s_i) + lins_r[k_i](h_i),  k_i = min(in-degree, max_degree)
// one Linear pair per degree class 0 .. max_degree (lins_l with bias, lins_r without;
// kernels/mfc.hpp). No edge features (HydraGNN: is_edge_model = False): the energy does not depend on
// the positions. HydraGNN's Base puts a BatchNorm after every layer, then the stack activation.
#pragma once

#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/mfc.hpp>
#include <hydragnn/kernels/neighbour.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

/// MFC's max_degree is HydraGNN's max_neighbours (required there).
struct MFCOptions {
  int max_degree = -1;  ///< set by finalize from max_neighbours, for validation only (not a key; the
                        ///< convolution reads ConvCommon::max_neighbours)
  template <class V>
  void visit(V&&) {}
  void finalize(const ConvCommon& c) { max_degree = c.max_neighbours; }
  template <class F>
  void validate(F&& fail) const {
    if (max_degree < 1) fail("max_neighbours", "MFC needs max_neighbours (its max_degree, as HydraGNN)");
  }
};

struct MFCConv : conv::NoEdgeGeometry {
  static constexpr const char* name = "MFC";
  using options_type = MFCOptions;
  using node_state = conv::Scalars;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Pairs;
  using readout = conv::LastLayer;
  using feature_layer = conv::BatchNormFeatureLayer;  // HydraGNN: BatchNorm

  struct Layer {
    int in = 0, out = 0;
  };
  std::vector<Layer> layers;
  int max_degree = 0;
  /// Parameter offsets of every layer's classes: row l (D+1) + k = [Wl, b_l, Wr] of layer l, class k.
  Kokkos::View<long**, Kokkos::LayoutRight, Kokkos::HostSpace> offsets;

  MFCConv() = default;
  MFCConv(ParamAllocator& alloc, const ConvCommon& common, const MFCOptions&) : max_degree(common.max_neighbours) {
    if (max_degree < 1)
      throw std::runtime_error("MFC: max_neighbours (its max_degree) must be >= 1, as HydraGNN requires");
    const int H = common.hidden_dim, D = max_degree, L = common.num_conv_layers;
    offsets = decltype(offsets)("hydragnn::MFCConv::offsets", std::size_t(L) * (D + 1), 3);
    for (int l = 0; l < L; ++l) {
      const std::string n = common.layer_name(l) + ".module_0";
      const int I = l == 0 ? common.input_dim : H;
      for (int k = 0; k <= D; ++k) {
        const LinearShape lin = alloc.linear(I, H, true, n + ".lins_l." + std::to_string(k));
        offsets(l * (D + 1) + k, 0) = lin.w_off;
        offsets(l * (D + 1) + k, 1) = lin.b_off;
      }
      for (int k = 0; k <= D; ++k)
        offsets(l * (D + 1) + k, 2) = alloc.linear(I, H, false, n + ".lins_r." + std::to_string(k)).w_off;
      layers.push_back(Layer{I, H});
    }
  }
  int num_layers() const { return int(layers.size()); }

  /// What every layer shares: the nodes' degree classes and the parameter offsets on the device.
  template <class S, class M> struct EdgeCache {
    Vec<int, M> cls, cls_ptr, cls_perm;
    Mat<long, M> off;
  };
  template <class S, class M> struct LayerCache {
    Mat<S, M> s;
  };

  template <class Exec, class S>
  void edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>&,
                    EdgeCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::MFCConv::edge_forward";
    c.cls = ws.template vec<int>(lbl + ".cls", 0, b.num_atoms);
    c.cls_ptr = ws.template vec<int>(lbl + ".cls_ptr", 0, max_degree + 2);
    c.cls_perm = ws.template vec<int>(lbl + ".cls_perm", 0, b.num_atoms);
    kernels::mfc_classes<Exec>(exec, b.row_ptr, max_degree, c.cls, c.cls_ptr, c.cls_perm);
    c.off = ws.template mat<long>(lbl + ".offsets", 0, offsets.extent(0), 3);
    Kokkos::deep_copy(exec, c.off, offsets);
  }
  template <class Exec, class S>
  void edge_backward(const Exec&, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>&, const EdgeCache<S, mem_t<Exec>>&,
                     EdgeGrad<S, mem_t<Exec>>&, const Mat<S, mem_t<Exec>>&, Workspace<mem_t<Exec>>&) const {}

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms;
    const std::string lbl = "hydragnn::MFCConv::layer_forward";
    c.s = ws.template mat<S>(lbl + ".s", l, N, L.in);
    kernels::segment_sum_perm<Exec, S>(exec, in.h, b.src, b.row_ptr, c.s, false);  // neighbour sum
    out.h = ws.template mat<S>(lbl + ".out", l, N, L.out);
    kernels::mfc_forward<Exec, S, T>(exec, c.s, in.h, ec.cls, layer_offsets(ec, l), w.p, out.h, ec.cls_ptr, ec.cls_perm);
  }

  template <class Exec, class S, class T>
  void layer_backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                      const LayerCache<S, mem_t<Exec>>& c, const NodeState<S, mem_t<Exec>>& out_bar,
                      NodeState<S, mem_t<Exec>>& in_bar, const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>&,
                      Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms;
    const std::string lbl = "hydragnn::MFCConv::layer_backward";
    const auto off = layer_offsets(ec, l);
    if (g.extent(0) > 0)
      kernels::mfc_backward_params<Exec, S>(exec, c.s, in.h, out_bar.h, ec.cls_ptr, ec.cls_perm, off, g);
    auto sbar = ws.template mat<S>(lbl + ".s_bar", 0, N, L.in);
    in_bar.h = ws.template mat<S>(lbl + ".h_bar", l, N, L.in);
    kernels::mfc_backward_input<Exec, S, T>(exec, out_bar.h, ec.cls, off, w.p, sbar, in_bar.h, ec.cls_ptr, ec.cls_perm);
    kernels::neighbour_backward<Exec, S>(exec, sbar, b.send_perm, b.send_ptr, b.dst, b.row_ptr, false, in_bar.h, true);
  }

 private:
  /// Layer l's rows of the device offsets ((D+1) x 3).
  template <class S, class M>
  CMat<long, M> layer_offsets(const EdgeCache<S, M>& ec, int l) const {
    const std::size_t K = std::size_t(max_degree) + 1;
    return Kokkos::subview(ec.off, std::make_pair(l * K, (l + 1) * K), Kokkos::ALL());
  }
};

}  // namespace hydragnn
