// SPDX-License-Identifier: BSD-3-Clause
// DimeNet++ (HydraGNN's DIMEStack, commit d251f816, built from PyG's InteractionPPBlock and
// OutputPPBlock): directional message passing over triplets k -> j -> i. Each layer maps node
// features to node features (HydraGNN's Sequential lin -> embedding -> interaction -> output block);
// edge messages live inside a layer only. Receiver i = dst(e), sender j = src(e); every activation
// inside the layer is SiLU (HydraGNN hard-codes it), Hd = I unless I = 1 (then Hd = H).
//
//   edges (once):  d_e = |r_e|, sbf_t,lK+n = Y_l^0(cos a_t) R_l,n(d_kj(t))   (kernels/spherical.hpp; a_t the
//                  angle at i between r_ji and r_ki = r_ji + r_kj, TripletAngle::AtI)
//                  a_e = d_e / edge_length_scale                            (edge_features ["length"] only)
//   layer l:       rbf_e,k = env(d_e / rc) sin(f_k d_e / rc)                 BesselBasisLayer, f = rbf.freq (shared)
//                  x0  = lin(h)                                             Linear I -> Hd
//     embedding:   x1_e = silu(lin([x0_i, x0_j, silu(lin_rbf(rbf_e)) (, silu(edge_lin(a_e)))]))
//     interaction: xji = silu(lin_ji(x1)), xkj = silu(lin_kj(x1)) * lin_rbf2(lin_rbf1(rbf))
//                  xd  = silu(lin_down(xkj))                                 Hd -> int_emb_size
//                  agg_ji = sum_{t in ji} xd[kj(t)] * lin_sbf2(lin_sbf1(sbf_t))
//                  h0 = xji + silu(lin_up(agg)); num_before_skip residual layers;
//                  hs = silu(lin(h)) + x1; num_after_skip residual layers -> x2
//                  (residual layer: h + silu(lin2(silu(lin1(h)))))
//     output:      n_i = sum_{e into i} lin_rbf(rbf_e) * x2_e; out = lin(silu(lins.0(lin_up(n))))
//                                                                          Hd -> out_emb_size -> H
// HydraGNN's Base puts Identity feature layers between layers, then the stack activation. The triplet
// list keeps k == i through another periodic image (graph/triplets.hpp); HydraGNN's triplets() drops
// every k == i, which differs only with periodic images (docs/deviations.md).
#pragma once

#include <hydragnn/conv/edge_features.hpp>
#include <hydragnn/conv/pna_blocks.hpp>
#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/angular.hpp>
#include <hydragnn/kernels/radial.hpp>
#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/kernels/spherical.hpp>
#include <hydragnn/kernels/triplet.hpp>

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace hydragnn {

struct DimeNetOptions : EdgeFeatureOptions {
  // HydraGNN requires every key; the defaults are the values of its example configs.
  int num_radial = 6;
  int num_spherical = 7;
  int envelope_exponent = 5;
  int int_emb_size = 64;
  int basis_emb_size = 8;
  int out_emb_size = 128;
  int num_before_skip = 1;
  int num_after_skip = 2;
  template <class V>
  void visit(V&& v) {
    v("num_radial", num_radial);
    v("num_spherical", num_spherical);
    v("envelope_exponent", envelope_exponent);
    v("int_emb_size", int_emb_size);
    v("basis_emb_size", basis_emb_size);
    v("out_emb_size", out_emb_size);
    v("num_before_skip", num_before_skip);
    v("num_after_skip", num_after_skip);
    visit_edge_features(v);
  }
  template <class F>
  void validate(F&& fail) const {
    if (num_radial < 1 || num_radial > 64) fail("num_radial", "must be in 1 .. 64 (PyG's SphericalBasisLayer)");
    if (num_spherical < 1 || num_spherical > kernels::detail::kMaxSpherical) fail("num_spherical", "must be in 1 .. 16");
    if (envelope_exponent < 1) fail("envelope_exponent", "must be >= 1");
    if (int_emb_size < 1) fail("int_emb_size", "must be > 0");
    if (basis_emb_size < 1) fail("basis_emb_size", "must be > 0");
    if (out_emb_size < 1) fail("out_emb_size", "must be > 0");
    if (num_before_skip < 0) fail("num_before_skip", "must be >= 0");
    if (num_after_skip < 0) fail("num_after_skip", "must be >= 0");
    validate_edge_features(fail);
  }
};

namespace conv {
/// PyG's ResidualLayer h + silu(lin2(silu(lin1(h)))) with its forward cache and backward.
struct ResidualLayer {
  LinearShape lin1, lin2;
  ResidualLayer() = default;
  ResidualLayer(ParamAllocator& alloc, const std::string& n, int H)
      : lin1(alloc.linear(H, H, true, n + ".lin1")), lin2(alloc.linear(H, H, true, n + ".lin2")) {}

  template <class S, class M> struct Cache {
    Mat<S, M> h, p1, q1, p2;  ///< input, lin1(h), silu(p1), lin2(q1)
  };
  /// out = h + silu(lin2(silu(lin1(h)))); c.h keeps h (the caller's matrix).
  template <class Exec, class S, class T>
  void forward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Mat<S, mem_t<Exec>>& h, Cache<S, mem_t<Exec>>& c,
               const Mat<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws, const std::string& lbl, int slot) const {
    const long n = long(h.extent(0));
    c.h = h;
    c.p1 = ws.template mat<S>(lbl + ".p1", slot, n, lin1.out);
    c.q1 = ws.template mat<S>(lbl + ".q1", slot, n, lin1.out);
    c.p2 = ws.template mat<S>(lbl + ".p2", slot, n, lin2.out);
    kernels::linear_forward_act<Exec, S, T>(exec, h, w, lin1, Activation::SiLU, c.p1, c.q1);
    kernels::linear_forward_act<Exec, S, T>(exec, c.q1, w, lin2, Activation::SiLU, c.p2, out);
    kernels::add_into<Exec, S>(exec, h, out);
  }
  /// hbar = outbar + d/dh of the branch (hbar must not alias outbar).
  template <class Exec, class S, class T>
  void backward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Cache<S, mem_t<Exec>>& c,
                const Mat<S, mem_t<Exec>>& outbar, const Vec<real_t<S>, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& hbar,
                Workspace<mem_t<Exec>>& ws, const std::string& lbl) const {
    const long n = long(outbar.extent(0));
    auto p2bar = ws.template mat<S>(lbl + ".p2_bar", 0, n, lin2.out);
    auto q1bar = ws.template mat<S>(lbl + ".q1_bar", 0, n, lin1.out);
    kernels::activation_backward<Exec, S>(exec, Activation::SiLU, c.p2, outbar, p2bar);
    if (g.extent(0) > 0) kernels::linear_backward_params<Exec, S>(exec, c.q1, p2bar, lin2, g);
    kernels::linear_backward_input_act<Exec, S, T>(exec, p2bar, w, lin2, Activation::SiLU, c.p1, q1bar, false);
    if (g.extent(0) > 0) kernels::linear_backward_params<Exec, S>(exec, c.h, q1bar, lin1, g);
    Kokkos::deep_copy(exec, hbar, outbar);
    kernels::linear_backward_input<Exec, S, T>(exec, q1bar, w, lin1, hbar, true);
  }

  /// A stack of residual layers on h (E x H): outs[k] is layer k's output (workspace slot `slot`,
  /// labels lbl + k); returns the last output (h itself for an empty stack).
  template <class Exec, class S, class T>
  static Mat<S, mem_t<Exec>> forward_stack(const Exec& exec, const Weights<T, mem_t<Exec>>& w,
                                           const std::vector<ResidualLayer>& stack, Mat<S, mem_t<Exec>> h,
                                           std::vector<Cache<S, mem_t<Exec>>>& caches,
                                           std::vector<Mat<S, mem_t<Exec>>>& outs, Workspace<mem_t<Exec>>& ws,
                                           const std::string& lbl, int slot) {
    caches.resize(stack.size());
    outs.resize(stack.size());
    for (std::size_t k = 0; k < stack.size(); ++k) {
      const std::string n = lbl + std::to_string(k);
      outs[k] = ws.template mat<S>(n + ".out", slot, h.extent(0), h.extent(1));
      stack[k].forward<Exec, S, T>(exec, w, h, caches[k], outs[k], ws, n, slot);
      h = outs[k];
    }
    return h;
  }
  /// Backward of forward_stack: hbar, the cotangent of the last output, becomes that of the stack's
  /// input; spare is a second buffer of hbar's shape (the two are swapped per layer).
  template <class Exec, class S, class T>
  static void backward_stack(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const std::vector<ResidualLayer>& stack,
                             const std::vector<Cache<S, mem_t<Exec>>>& caches, Mat<S, mem_t<Exec>>& hbar,
                             Mat<S, mem_t<Exec>>& spare, const Vec<real_t<S>, mem_t<Exec>>& g,
                             Workspace<mem_t<Exec>>& ws, const std::string& lbl) {
    for (int k = int(stack.size()) - 1; k >= 0; --k) {
      stack[k].backward<Exec, S, T>(exec, w, caches[k], hbar, g, spare, ws, lbl);
      std::swap(hbar, spare);
    }
  }
};
}  // namespace conv

struct DimeNetConv {
  static constexpr const char* name = "DimeNet";
  using options_type = DimeNetOptions;
  using node_state = conv::Scalars;
  using edge_state = conv::NoEdgeState;
  using connectivity = conv::Triplets;
  using readout = conv::LastLayer;
  using feature_layer = conv::IdentityFeatureLayer;  // HydraGNN: Identity

  struct Layer {
    int in = 0, hd = 0;  ///< I, Hd
    LinearShape lin0;
    // embedding block
    LinearShape emb_rbf, emb_lin, emb_i, emb_j, emb_r, emb_a, emb_edge;
    // interaction block
    LinearShape rbf1, rbf2, sbf1, sbf2, kj, ji, down, up, lin;
    std::vector<conv::ResidualLayer> before, after;
    // output block
    LinearShape out_rbf, out_up, out_lin0, out_lin;
  };
  std::vector<Layer> layers;
  conv::EdgeLength length;
  SphericalBesselTable table;
  long freq_off = 0;  ///< rbf.freq: num_radial trainable frequencies
  int num_radial = 0, num_spherical = 0, exponent = 0, int_emb = 0;
  double cutoff = 0;

  DimeNetConv() = default;
  DimeNetConv(ParamAllocator& alloc, const ConvCommon& common, const DimeNetOptions& opt)
      : length(opt, name),
        table(radial::dimenet_bessel_table(opt.num_spherical, opt.num_radial)),
        num_radial(opt.num_radial),
        num_spherical(opt.num_spherical),
        exponent(opt.envelope_exponent),
        int_emb(opt.int_emb_size),
        cutoff(common.cutoff) {
    const int H = common.hidden_dim, R = opt.num_radial, B = opt.basis_emb_size, O = opt.out_emb_size;
    for (int l = 0; l < common.num_conv_layers; ++l) {
      const std::string n = common.layer_name(l);
      const int I = l == 0 ? common.input_dim : H;
      const int Hd = I == 1 ? H : I;  // DIMEStack.get_conv
      if (Hd < 2) throw std::runtime_error("DimeNet: needs a hidden width above 1 (hidden_dim or input_dim)");
      Layer L;
      L.in = I;
      L.hd = Hd;
      L.lin0 = alloc.linear(I, Hd, true, n + ".module_0");
      const std::string e = n + ".module_1", it = n + ".module_2", o = n + ".module_3";
      L.emb_rbf = alloc.linear(R, Hd, true, e + ".lin_rbf");
      const int parts = length.on ? 4 : 3;
      L.emb_lin = alloc.linear(parts * Hd, Hd, true, e + ".lin");
      L.emb_i = L.emb_lin.columns(0, Hd, true);  // [x_i, x_j, rbf (, edge_attr)]
      L.emb_j = L.emb_lin.columns(Hd, Hd, false);
      L.emb_r = L.emb_lin.columns(2 * Hd, Hd, false);
      if (length.on) {
        L.emb_a = L.emb_lin.columns(3 * Hd, Hd, false);
        L.emb_edge = alloc.linear(1, Hd, true, e + ".edge_lin");
      }
      L.rbf1 = alloc.linear(R, B, false, it + ".lin_rbf1");
      L.rbf2 = alloc.linear(B, Hd, false, it + ".lin_rbf2");
      L.sbf1 = alloc.linear(opt.num_spherical * R, B, false, it + ".lin_sbf1");
      L.sbf2 = alloc.linear(B, opt.int_emb_size, false, it + ".lin_sbf2");
      L.kj = alloc.linear(Hd, Hd, true, it + ".lin_kj");
      L.ji = alloc.linear(Hd, Hd, true, it + ".lin_ji");
      L.down = alloc.linear(Hd, opt.int_emb_size, false, it + ".lin_down");
      L.up = alloc.linear(opt.int_emb_size, Hd, false, it + ".lin_up");
      for (int k = 0; k < opt.num_before_skip; ++k)
        L.before.emplace_back(alloc, it + ".layers_before_skip." + std::to_string(k), Hd);
      L.lin = alloc.linear(Hd, Hd, true, it + ".lin");
      for (int k = 0; k < opt.num_after_skip; ++k)
        L.after.emplace_back(alloc, it + ".layers_after_skip." + std::to_string(k), Hd);
      L.out_rbf = alloc.linear(R, Hd, false, o + ".lin_rbf");
      L.out_up = alloc.linear(Hd, O, false, o + ".lin_up");
      L.out_lin0 = alloc.linear(O, O, true, o + ".lins.0");
      L.out_lin = alloc.linear(O, H, false, o + ".lin");
      layers.push_back(std::move(L));
    }
    const double pi = std::acos(-1.0);
    freq_off = long(alloc.take_sequence(std::size_t(R), pi, pi, "rbf.freq", {R}));  // (k + 1) pi
  }
  int num_layers() const { return int(layers.size()); }

  template <class S, class M> struct EdgeCache {
    Vec<S, M> d, cosv;  ///< E lengths, T cosines of the triplet angles
    Mat<S, M> a;        ///< E x 1 length feature (edge_features ["length"] only)
    Mat<S, M> Rb, sbf;  ///< E x LK radial spherical Bessel basis, T x LK triplet basis
    Vec<double, M> zeros, norm;
  };
  template <class S, class M> struct EdgeGrad {
    Vec<S, M> dbar;
    Mat<S, M> abar, sbfbar;  ///< sbfbar: summed over the layers
    /// T x (layers x basis_emb_size), a backward without a parameter gradient: the cotangents of every
    /// layer's lin_sbf1 output side by side (layer l's at columns (layers - 1 - l) x basis_emb_size,
    /// the order the backward reaches them), whose product with the stacked weights layer 0 adds to
    /// sbfbar at once: the sums of one product per layer, in their order, without reading and
    /// writing sbfbar (T x num_spherical num_radial) once per layer.
    Mat<S, M> s1bar;
  };
  template <class S, class M> struct LayerCache {
    Mat<S, M> rbf, x0, z1, rb, za, ea, y1, x1, yji, ykj, xkj, rr1, rr, a, yd, xd, s1, agg, yu, h0, yl, x2, o1, n0, n1,
        n2, n3;
    std::vector<conv::ResidualLayer::Cache<S, M>> before, after;
    std::vector<Mat<S, M>> hb, ha;  ///< outputs of the residual layers before / after the skip
    Mat<S, M> hb_last;              ///< input of lin: h0 through the layers before the skip
  };

  template <class Exec, class S>
  void edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                    EdgeCache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    const std::string lbl = "hydragnn::DimeNetConv::edge_forward";
    const int E = b.num_edges, T = b.triplets.num_triplets, LK = num_spherical * num_radial;
    c.d = ws.template vec<S>(lbl + ".d", 0, E);
    kernels::edge_lengths<Exec, S>(exec, r, c.d);
    if (length.on) {
      c.a = ws.template mat<S>(lbl + ".a", 0, E, 1);
      kernels::length_feature<Exec, S>(exec, c.d, length.scale, c.a);
    }
    // the basis constants: copied into the workspace from the host table (no allocation)
    c.zeros = ws.template vec<double>(lbl + ".zeros", 0, table.zeros.size());
    c.norm = ws.template vec<double>(lbl + ".norm", 0, table.norm.size());
    using HostV = Kokkos::View<const double*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    Kokkos::deep_copy(exec, c.zeros, HostV(table.zeros.data(), table.zeros.size()));
    Kokkos::deep_copy(exec, c.norm, HostV(table.norm.data(), table.norm.size()));
    c.Rb = ws.template mat<S>(lbl + ".Rb", 0, E, LK);
    kernels::spherical_bessel_basis<Exec, S>(exec, c.d, c.zeros, c.norm, num_spherical, num_radial, cutoff, exponent, c.Rb);
    const DeviceTripletCsr<M>& t = b.triplets;
    c.cosv = ws.template vec<S>(lbl + ".cos", 0, T);
    kernels::triplet_cos<Exec, S>(exec, r, t.ji, t.kj, c.cosv, TripletAngle::AtI);
    c.sbf = ws.template mat<S>(lbl + ".sbf", 0, T, LK);
    kernels::triplet_spherical_basis<Exec, S>(exec, c.cosv, c.Rb, t.kj, num_spherical, c.sbf);
  }
  template <class Exec, class S>
  void edge_grad_init(const Exec& exec, const Batch<mem_t<Exec>>& b, EdgeGrad<S, mem_t<Exec>>& g,
                      Workspace<mem_t<Exec>>& ws) const {
    const std::string lbl = "hydragnn::DimeNetConv::edge_grad";
    g.dbar = ws.template zeroed_vec<S>(exec, lbl + ".d_bar", 0, b.num_edges);
    g.sbfbar = ws.template zeroed_mat<S>(exec, lbl + ".sbf_bar", 0, b.triplets.num_triplets, num_spherical * num_radial);
    if (length.on) g.abar = ws.template zeroed_mat<S>(exec, lbl + ".a_bar", 0, b.num_edges, 1);
  }
  template <class Exec, class S>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                     const EdgeCache<S, mem_t<Exec>>& c, EdgeGrad<S, mem_t<Exec>>& g, const Mat<S, mem_t<Exec>>& rbar,
                     Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    const std::string lbl = "hydragnn::DimeNetConv::edge_backward";
    const DeviceTripletCsr<M>& t = b.triplets;
    const int E = b.num_edges, T = t.num_triplets, LK = num_spherical * num_radial;
    auto cosbar = ws.template vec<S>(lbl + ".cos_bar", 0, T);
    auto Rbbar = ws.template mat<S>(lbl + ".Rb_bar", 0, E, LK);
    kernels::triplet_spherical_basis_backward<Exec, S>(exec, c.cosv, c.Rb, t.kj, t.kj_perm, t.kj_ptr, num_spherical,
                                                       g.sbfbar, cosbar, Rbbar, false);
    kernels::spherical_bessel_basis_backward<Exec, S>(exec, c.d, c.zeros, c.norm, num_spherical, num_radial, cutoff,
                                                      exponent, Rbbar, g.dbar);
    if (length.on) kernels::length_feature_backward<Exec, S>(exec, g.abar, length.scale, g.dbar);
    kernels::edge_lengths_backward<Exec, S>(exec, r, c.d, g.dbar, rbar);
    kernels::triplet_cos_backward<Exec, S>(exec, r, t.ji, t.kj, t.ptr, t.kj_perm, t.kj_ptr, cosbar, rbar, true,
                                           TripletAngle::AtI);
  }

  template <class Exec, class S, class T>
  void layer_forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                     const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                     LayerCache<S, mem_t<Exec>>& c, NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, Tn = b.triplets.num_triplets, Hd = L.hd;
    const int Bsz = L.rbf1.out, O = L.out_up.out;
    const std::string lbl = "hydragnn::DimeNetConv::layer_forward";
    auto mat = [&](const char* k, long rows, int cols) { return ws.template mat<S>(lbl + "." + k, l, rows, cols); };
    auto lin = [&](const Mat<S, mem_t<Exec>>& X, const LinearShape& sh, const Mat<S, mem_t<Exec>>& Y) {
      kernels::linear_forward<Exec, S, T>(exec, X, w, sh, Y);
    };
    auto silu = [&](const Mat<S, mem_t<Exec>>& X, const Mat<S, mem_t<Exec>>& Y) {
      kernels::activation_forward<Exec, S>(exec, Activation::SiLU, X, Y);
    };
    // Pre = lin(X), Y = silu(Pre) in one pass (bitwise lin then silu)
    auto lin_silu = [&](const Mat<S, mem_t<Exec>>& X, const LinearShape& sh, const Mat<S, mem_t<Exec>>& Pre,
                        const Mat<S, mem_t<Exec>>& Y) {
      kernels::linear_forward_act<Exec, S, T>(exec, X, w, sh, Activation::SiLU, Pre, Y);
    };
    c.rbf = mat("rbf", E, num_radial);
    kernels::bessel_basis<Exec, S, T>(exec, ec.d, w.p, freq_off, cutoff, exponent, c.rbf);
    c.x0 = mat("x0", N, Hd);
    lin(in.h, L.lin0, c.x0);
    // embedding block
    c.z1 = mat("z1", E, Hd);
    c.rb = mat("rb", E, Hd);
    lin_silu(c.rbf, L.emb_rbf, c.z1, c.rb);
    c.y1 = mat("y1", E, Hd);
    lin(c.rb, L.emb_r, c.y1);
    if (length.on) {
      c.za = mat("za", E, Hd);
      c.ea = mat("ea", E, Hd);
      lin_silu(ec.a, L.emb_edge, c.za, c.ea);
      auto tmp = ws.template mat<S>(lbl + ".tmp", 0, E, Hd);
      lin(c.ea, L.emb_a, tmp);
      kernels::add_into<Exec, S>(exec, tmp, c.y1);
    }
    conv::NodeBlocks::forward<Exec, S, T>(exec, w, b, c.x0, L.emb_i, L.emb_j, c.y1, true, ws, lbl);
    c.x1 = mat("x1", E, Hd);
    silu(c.y1, c.x1);
    // interaction block
    c.yji = mat("yji", E, Hd);
    c.ykj = mat("ykj", E, Hd);
    c.xkj = mat("xkj", E, Hd);
    c.h0 = mat("h0", E, Hd);
    lin_silu(c.x1, L.ji, c.yji, c.h0);  // h0 = silu(yji) + silu(yu), the second added below
    lin_silu(c.x1, L.kj, c.ykj, c.xkj);
    c.rr1 = mat("rr1", E, Bsz);
    c.rr = mat("rr", E, Hd);
    lin(c.rbf, L.rbf1, c.rr1);
    lin(c.rr1, L.rbf2, c.rr);
    c.a = mat("a", E, Hd);
    kernels::hadamard<Exec, S>(exec, c.xkj, c.rr, c.a);
    c.yd = mat("yd", E, int_emb);
    c.xd = mat("xd", E, int_emb);
    lin_silu(c.a, L.down, c.yd, c.xd);
    c.s1 = mat("s1", Tn, Bsz);
    lin(ec.sbf, L.sbf1, c.s1);
    // the T x int_emb filter s = lin_sbf2(s1) is never stored: recomputed per triplet where read
    c.agg = mat("agg", E, int_emb);
    kernels::triplet_filter_message_sum<Exec, S, T>(exec, c.xd, c.s1, w, L.sbf2, b.triplets.kj, b.triplets.ptr, c.agg);
    c.yu = mat("yu", E, Hd);
    auto u = ws.template mat<S>(lbl + ".u", 0, E, Hd);
    lin_silu(c.agg, L.up, c.yu, u);
    kernels::add_into<Exec, S>(exec, u, c.h0);
    c.hb_last = conv::ResidualLayer::forward_stack<Exec, S, T>(exec, w, L.before, c.h0, c.before, c.hb, ws,
                                                                lbl + ".before", l);
    c.yl = mat("yl", E, Hd);
    auto hs = mat("hs", E, Hd);
    lin_silu(c.hb_last, L.lin, c.yl, hs);
    kernels::add_into<Exec, S>(exec, c.x1, hs);
    c.x2 = conv::ResidualLayer::forward_stack<Exec, S, T>(exec, w, L.after, hs, c.after, c.ha, ws, lbl + ".after", l);
    // output block
    c.o1 = mat("o1", E, Hd);
    lin(c.rbf, L.out_rbf, c.o1);
    auto o = ws.template mat<S>(lbl + ".o", 0, E, Hd);
    kernels::hadamard<Exec, S>(exec, c.o1, c.x2, o);
    c.n0 = mat("n0", N, Hd);
    kernels::segment_sum<Exec, S>(exec, o, b.row_ptr, c.n0, false);
    c.n1 = mat("n1", N, O);
    c.n2 = mat("n2", N, O);
    c.n3 = mat("n3", N, O);
    lin(c.n0, L.out_up, c.n1);
    lin_silu(c.n1, L.out_lin0, c.n2, c.n3);
    out.h = mat("out", N, L.out_lin.out);
    lin(c.n3, L.out_lin, out.h);
  }

  /// sbfbar += eg.s1bar [W_sbf1 of layer L-1; ...; of layer 0] (layers x basis_emb_size -> LK): every
  /// layer's lin_sbf1 input gradient as one product, bitwise one accumulating product per layer from
  /// layer L-1 down (each element's terms in the same order from the same start).
  template <class Exec, class S, class T>
  void sbf1_backward_layers(const Exec& exec, const Weights<T, mem_t<Exec>>& w, EdgeGrad<S, mem_t<Exec>>& eg,
                            Workspace<mem_t<Exec>>& ws) const {
    const int nl = num_layers(), Bsz = layers[0].sbf1.out, LK = layers[0].sbf1.in;
    auto stack = ws.template vec<T>("hydragnn::DimeNetConv::sbf1_backward_layers.w", 0, long(nl) * Bsz * LK);
    for (int j = 0; j < nl; ++j)  // rows [j B, (j + 1) B): W_sbf1 of layer nl - 1 - j
      kernels::copy_weights<Exec, T>(exec, w.p, layers[nl - 1 - j].sbf1, stack, long(j) * Bsz * LK);
    LinearShape st;
    st.in = LK;
    st.out = nl * Bsz;
    st.w_off = 0;
    kernels::linear_backward_input<Exec, S, T>(exec, eg.s1bar, Weights<T, mem_t<Exec>>{stack, {}}, st, eg.sbfbar, true);
  }

  template <class Exec, class S, class T>
  void layer_backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const EdgeCache<S, mem_t<Exec>>& ec, const NodeState<S, mem_t<Exec>>& in,
                      const LayerCache<S, mem_t<Exec>>& c, const NodeState<S, mem_t<Exec>>& out_bar,
                      NodeState<S, mem_t<Exec>>& in_bar, const Vec<real_t<S>, mem_t<Exec>>& g, EdgeGrad<S, mem_t<Exec>>& eg,
                      Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, Tn = b.triplets.num_triplets, Hd = L.hd;
    const int Bsz = L.rbf1.out, O = L.out_up.out;
    const bool want_params = g.extent(0) > 0, want_geometry = eg.dbar.extent(0) > 0;
    const bool want_basis = want_params || want_geometry;  // rbf feeds the frequencies and dL/dr
    const std::string lbl = "hydragnn::DimeNetConv::layer_backward";
    auto tmp = [&](const char* k, long rows, int cols) { return ws.template mat<S>(lbl + "." + k, 0, rows, cols); };
    auto params = [&](const Mat<S, M>& X, const Mat<S, M>& Yb, const LinearShape& sh) {
      if (want_params) kernels::linear_backward_params<Exec, S>(exec, X, Yb, sh, g);
    };
    auto back_in = [&](const Mat<S, M>& Yb, const LinearShape& sh, const Mat<S, M>& Xb, bool acc) {
      kernels::linear_backward_input<Exec, S, T>(exec, Yb, w, sh, Xb, acc);
    };
    auto dsilu = [&](const Mat<S, M>& X, const Mat<S, M>& Yb, const Mat<S, M>& Xb) {
      kernels::activation_backward<Exec, S>(exec, Activation::SiLU, X, Yb, Xb);
    };
    auto rbfbar = want_basis ? tmp("rbf_bar", E, num_radial) : Mat<S, M>();
    bool rbf_started = false;
    auto to_rbf = [&](const Mat<S, M>& Yb, const LinearShape& sh) {  // rbf = input of sh
      params(c.rbf, Yb, sh);
      if (want_basis) back_in(Yb, sh, rbfbar, rbf_started);
      rbf_started = true;
    };
    // output block
    auto n2bar = tmp("n2_bar", N, O), n1bar = tmp("n1_bar", N, O);
    params(c.n3, out_bar.h, L.out_lin);
    kernels::linear_backward_input_act<Exec, S, T>(exec, out_bar.h, w, L.out_lin, Activation::SiLU, c.n2, n2bar);
    params(c.n1, n2bar, L.out_lin0);
    back_in(n2bar, L.out_lin0, n1bar, false);
    auto n0bar = tmp("n0_bar", N, Hd);
    params(c.n0, n1bar, L.out_up);
    back_in(n1bar, L.out_up, n0bar, false);
    auto obar = tmp("o_bar", E, Hd);
    kernels::segment_sum_backward<Exec, S>(exec, n0bar, b.row_ptr, obar, false);
    auto hbar = tmp("h_bar", E, Hd);  // d/dx2
    auto o1bar = want_basis ? tmp("o1_bar", E, Hd) : Mat<S, M>();
    kernels::hadamard_backward<Exec, S>(exec, c.o1, c.x2, obar, o1bar, hbar, false, false);
    if (want_basis) to_rbf(o1bar, L.out_rbf);
    // interaction block, from its end
    auto hbar2 = tmp("h_bar2", E, Hd);
    conv::ResidualLayer::backward_stack<Exec, S, T>(exec, w, L.after, c.after, hbar, hbar2, g, ws, lbl + ".after");
    // hs = silu(yl) + x1
    auto x1bar = tmp("x1_bar", E, Hd);
    Kokkos::deep_copy(exec, x1bar, hbar);
    auto ylbar = tmp("yl_bar", E, Hd);
    dsilu(c.yl, hbar, ylbar);
    params(c.hb_last, ylbar, L.lin);
    back_in(ylbar, L.lin, hbar, false);
    conv::ResidualLayer::backward_stack<Exec, S, T>(exec, w, L.before, c.before, hbar, hbar2, g, ws, lbl + ".before");
    // h0 = silu(yji) + silu(yu)
    auto yjibar = tmp("yji_bar", E, Hd);
    dsilu(c.yji, hbar, yjibar);
    params(c.x1, yjibar, L.ji);
    back_in(yjibar, L.ji, x1bar, true);
    auto yubar = tmp("yu_bar", E, Hd);
    dsilu(c.yu, hbar, yubar);
    params(c.agg, yubar, L.up);
    auto aggbar = tmp("agg_bar", E, int_emb);
    back_in(yubar, L.up, aggbar, false);
    // agg = sum_t xd(kj(t)) * s(t), s = lin_sbf2(s1)
    auto xdbar = tmp("xd_bar", E, int_emb);
    const auto& tr = b.triplets;
    kernels::triplet_filter_message_backward_x<Exec, S, T>(exec, c.s1, w, L.sbf2, tr.ji, tr.kj_perm, tr.kj_ptr, aggbar,
                                                           xdbar);
    if (want_params) {  // sbar(t) = aggbar(ji(t)) * xd(kj(t)) (reads no s), stored for lin_sbf2's gradient
      auto sbar = tmp("s_bar", Tn, int_emb);
      kernels::triplet_message_sum_backward<Exec, S>(exec, c.xd, Mat<S, M>(), tr.kj, tr.ptr, tr.ji, tr.kj_perm, tr.kj_ptr,
                                                     aggbar, Mat<S, M>(), sbar);
      params(c.s1, sbar, L.sbf2);
      auto s1bar = tmp("s1_bar", Tn, Bsz);
      back_in(sbar, L.sbf2, s1bar, false);
      params(ec.sbf, s1bar, L.sbf1);
      if (want_geometry) back_in(s1bar, L.sbf1, eg.sbfbar, true);
    } else if (want_geometry) {  // s1bar straight from the triplets (no T x int_emb sbar), into eg.s1bar
      const int nl = num_layers();
      if (l == nl - 1) eg.s1bar = ws.template mat<S>(lbl + ".s1_bar_layers", 0, Tn, nl * Bsz);
      if (long(eg.s1bar.extent(0)) != Tn || long(eg.s1bar.extent(1)) != long(nl) * Bsz)
        throw std::logic_error("DimeNetConv::layer_backward: without a parameter gradient the layers run from the last "
                               "to the first (the last makes eg.s1bar, layer 0 uses it)");
      kernels::triplet_message_backward_filter_input<Exec, S, T>(exec, c.xd, tr.kj, tr.ji, aggbar, w, L.sbf2, eg.s1bar,
                                                                 (nl - 1 - l) * Bsz);
      if (l == 0) sbf1_backward_layers<Exec, S, T>(exec, w, eg, ws);
    }
    auto ydbar = tmp("yd_bar", E, int_emb);
    dsilu(c.yd, xdbar, ydbar);
    params(c.a, ydbar, L.down);
    auto abar = tmp("a_bar", E, Hd);
    back_in(ydbar, L.down, abar, false);
    auto xkjbar = tmp("xkj_bar", E, Hd);
    auto rrbar = want_basis ? tmp("rr_bar", E, Hd) : Mat<S, M>();
    kernels::hadamard_backward<Exec, S>(exec, c.xkj, c.rr, abar, xkjbar, rrbar, false, false);
    auto ykjbar = tmp("ykj_bar", E, Hd);
    dsilu(c.ykj, xkjbar, ykjbar);
    params(c.x1, ykjbar, L.kj);
    back_in(ykjbar, L.kj, x1bar, true);
    if (want_basis) {
      params(c.rr1, rrbar, L.rbf2);
      auto rr1bar = tmp("rr1_bar", E, Bsz);
      back_in(rrbar, L.rbf2, rr1bar, false);
      to_rbf(rr1bar, L.rbf1);
    }
    // embedding block: x1 = silu(y1), y1 = emb_i(x0)[dst] + emb_j(x0)[src] + emb_r(rb) (+ emb_a(ea))
    auto y1bar = tmp("y1_bar", E, Hd);
    dsilu(c.y1, x1bar, y1bar);
    auto x0bar = ws.template zeroed_mat<S>(exec, lbl + ".x0_bar", 0, N, Hd);
    conv::NodeBlocks::backward<Exec, S, T>(exec, w, b, c.x0, L.emb_i, L.emb_j, y1bar, g, x0bar, ws, lbl);
    if (length.on) {
      params(c.ea, y1bar, L.emb_a);
      auto eabar = tmp("ea_bar", E, Hd);
      kernels::linear_backward_input_act<Exec, S, T>(exec, y1bar, w, L.emb_a, Activation::SiLU, c.za, eabar);
      params(ec.a, eabar, L.emb_edge);
      if (want_geometry) back_in(eabar, L.emb_edge, eg.abar, true);
    }
    params(c.rb, y1bar, L.emb_r);
    if (want_basis) {
      auto rbbar = tmp("rb_bar", E, Hd);
      kernels::linear_backward_input_act<Exec, S, T>(exec, y1bar, w, L.emb_r, Activation::SiLU, c.z1, rbbar);
      to_rbf(rbbar, L.emb_rbf);
      kernels::bessel_basis_backward<Exec, S, T>(exec, ec.d, w.p, freq_off, cutoff, exponent, rbfbar, g, eg.dbar);
    }
    // x0 = lin0(h)
    params(in.h, x0bar, L.lin0);
    in_bar.h = ws.template mat<S>(lbl + ".h_in_bar", l, N, L.in);
    back_in(x0bar, L.lin0, in_bar.h, false);
  }
};

}  // namespace hydragnn
