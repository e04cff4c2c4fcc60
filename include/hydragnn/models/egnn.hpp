// SPDX-License-Identifier: BSD-3-Clause
// EGNN convolution policy (HydraGNN's EGCLStack / E_GCL layer, invariant variant without coordinate
// updates, as used for energies):
//   m_e   = act(W2 act(W1 [h_i, h_j, |r_ij|^2] + b1) + b2)        i = dst(e), j = src(e)
//   agg_i = sum_{e in in(i)} m_e
//   h'_i  = h_i + W4 act(W3 [h_i, agg_i] + b3) + b4              (residual)
// The concatenations are applied as sums of blocks, W1 [h_i, h_j, q] = A h_i + B h_j + w q, with
// A h and B h computed per node (N x H GEMMs) instead of per edge.
#pragma once

#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/models/spec.hpp>
#include <hydragnn/nn/mlp.hpp>

namespace hydragnn {

namespace kernels {
/// pre(e,f) = A(dst(e),f) + B(src(e),f) + w(f) q(e)
template <class Exec, class S, class T>
void egnn_edge_pre(const Exec& exec, const CMat<S, mem_t<Exec>>& A, const CMat<S, mem_t<Exec>>& B,
                   const CVec<T, mem_t<Exec>>& p, long w_off, const CVec<S, mem_t<Exec>>& q,
                   const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& src, const Mat<S, mem_t<Exec>>& pre) {
  const long E = long(pre.extent(0)), F = long(pre.extent(1));
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::edge_pre", Kokkos::RangePolicy<Exec>(exec, 0, E * F), KOKKOS_LAMBDA(const long k) {
        const long e = k / F, f = k % F;
        pre(e, f) = A(dst(e), f) + B(src(e), f) + q(e) * p(w_off + f);
      });
}
/// wbar(f) += sum_e prebar(e,f) q(e);   qbar(e) = sum_f prebar(e,f) w(f)
template <class Exec, class S, class T>
void egnn_edge_pre_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& prebar, const CVec<T, mem_t<Exec>>& p,
                            long w_off, const CVec<S, mem_t<Exec>>& q, const Vec<S, mem_t<Exec>>& g,
                            const Vec<S, mem_t<Exec>>& qbar) {
  const long E = long(prebar.extent(0)), F = long(prebar.extent(1));
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::edge_pre_backward_w", Kokkos::RangePolicy<Exec>(exec, 0, F), KOKKOS_LAMBDA(const long f) {
        S acc(0);
        for (long e = 0; e < E; ++e) acc += prebar(e, f) * q(e);
        g(w_off + f) += acc;
      });
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::edge_pre_backward_q", Kokkos::RangePolicy<Exec>(exec, 0, E), KOKKOS_LAMBDA(const long e) {
        S acc(0);
        for (long f = 0; f < F; ++f) acc += prebar(e, f) * p(w_off + f);
        qbar(e) = acc;
      });
}
}  // namespace kernels

struct EGNNConv {
  static constexpr const char* name = "EGNN";

  struct Layer {
    LinearShape A, B, W2, C, D, W4;
    long w_off = 0;  // radial column of W1
  };
  std::vector<Layer> layers;
  Activation act = Activation::SiLU;

  EGNNConv() = default;
  EGNNConv(ParamAllocator& alloc, const ModelSpec& spec) : act(spec.act) {
    const int H = spec.hidden_dim;
    for (int l = 0; l < spec.num_conv_layers; ++l) {
      Layer L;
      L.A = alloc.linear(H, H, true);
      L.B = alloc.linear(H, H, false);
      L.w_off = long(alloc.take(H, 1.0 / std::sqrt(2.0 * H + 1.0)));
      L.W2 = alloc.linear(H, H, true);
      L.C = alloc.linear(H, H, true);
      L.D = alloc.linear(H, H, false);
      L.W4 = alloc.linear(H, H, true);
      layers.push_back(L);
    }
  }

  template <class S, class M> struct EdgeCache { Vec<S, M> q; };     // q = |r|^2
  template <class S, class M> struct EdgeGrad { Vec<S, M> qbar; };
  template <class S, class M> struct LayerCache {
    Mat<S, M> A, B, pre1, a1, pre2, m, agg, q, a3;
  };

  template <class Exec, class S>
  EdgeCache<S, mem_t<Exec>> edge_forward(const Exec& exec, const Batch<mem_t<Exec>>& b,
                                         const Mat<S, mem_t<Exec>>& r) const {
    EdgeCache<S, mem_t<Exec>> c;
    c.q = Vec<S, mem_t<Exec>>("hydragnn::EGNNConv::edge_forward", b.num_edges);
    auto q = c.q;
    Kokkos::parallel_for(
        "hydragnn::EGNNConv::edge_forward", Kokkos::RangePolicy<Exec>(exec, 0, b.num_edges),
        KOKKOS_LAMBDA(const long e) { q(e) = r(e, 0) * r(e, 0) + r(e, 1) * r(e, 1) + r(e, 2) * r(e, 2); });
    return c;
  }
  template <class Exec, class S>
  EdgeGrad<S, mem_t<Exec>> edge_grad(const Batch<mem_t<Exec>>& b) const {
    EdgeGrad<S, mem_t<Exec>> g;
    g.qbar = Vec<S, mem_t<Exec>>("hydragnn::EGNNConv::edge_grad", b.num_edges);
    return g;
  }
  template <class Exec, class S>
  void edge_backward(const Exec& exec, const Batch<mem_t<Exec>>& b, const Mat<S, mem_t<Exec>>& r,
                     const EdgeCache<S, mem_t<Exec>>&, EdgeGrad<S, mem_t<Exec>>& g,
                     const Mat<S, mem_t<Exec>>& rbar) const {
    auto qbar = g.qbar;
    Kokkos::parallel_for(
        "hydragnn::EGNNConv::edge_backward", Kokkos::RangePolicy<Exec>(exec, 0, b.num_edges),
        KOKKOS_LAMBDA(const long e) {
          using R = real_t<S>;
          for (int a = 0; a < 3; ++a) rbar(e, a) += R(2) * qbar(e) * r(e, a);
        });
  }

  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> layer_forward(const Exec& exec, int l, const CVec<T, mem_t<Exec>>& p,
                                    const Batch<mem_t<Exec>>& b, const EdgeCache<S, mem_t<Exec>>& ec,
                                    const Mat<S, mem_t<Exec>>& h, LayerCache<S, mem_t<Exec>>& c) const {
    using M = mem_t<Exec>;
    const Layer& L = layers[l];
    const int N = b.num_atoms, E = b.num_edges, H = L.A.out;
    const std::string lbl = "hydragnn::EGNNConv::layer_forward";
    c.A = Mat<S, M>(lbl, N, H);
    c.B = Mat<S, M>(lbl, N, H);
    kernels::linear_forward<Exec, S, T>(exec, h, p, L.A, c.A);
    kernels::linear_forward<Exec, S, T>(exec, h, p, L.B, c.B);
    c.pre1 = Mat<S, M>(lbl, E, H);
    kernels::egnn_edge_pre<Exec, S, T>(exec, c.A, c.B, p, L.w_off, ec.q, b.dst, b.src, c.pre1);
    c.a1 = Mat<S, M>(lbl, E, H);
    kernels::activation_forward<Exec, S>(exec, act, c.pre1, c.a1);
    c.pre2 = Mat<S, M>(lbl, E, H);
    kernels::linear_forward<Exec, S, T>(exec, c.a1, p, L.W2, c.pre2);
    c.m = Mat<S, M>(lbl, E, H);
    kernels::activation_forward<Exec, S>(exec, act, c.pre2, c.m);
    c.agg = Mat<S, M>(lbl, N, H);
    kernels::segment_sum<Exec, S>(exec, c.m, b.row_ptr, c.agg, false);
    c.q = Mat<S, M>(lbl, N, H);
    kernels::linear_forward<Exec, S, T>(exec, h, p, L.C, c.q);
    Mat<S, M> tmp(lbl, N, H);
    kernels::linear_forward<Exec, S, T>(exec, c.agg, p, L.D, tmp);
    kernels::add_into<Exec, S>(exec, tmp, c.q);
    c.a3 = Mat<S, M>(lbl, N, H);
    kernels::activation_forward<Exec, S>(exec, act, c.q, c.a3);
    Mat<S, M> out(lbl, N, H);
    kernels::linear_forward<Exec, S, T>(exec, c.a3, p, L.W4, out);
    kernels::add_into<Exec, S>(exec, h, out);
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
    const int N = b.num_atoms, E = b.num_edges, H = L.A.out;
    const std::string lbl = "hydragnn::EGNNConv::layer_backward";
    // residual
    Mat<S, M> hbar(lbl, N, H);
    Kokkos::deep_copy(exec, hbar, hbar_out);
    // node MLP
    kernels::linear_backward_params<Exec, S>(exec, c.a3, hbar_out, L.W4, g);
    Mat<S, M> a3bar(lbl, N, H);
    kernels::linear_backward_input<Exec, S, T>(exec, hbar_out, p, L.W4, a3bar, false);
    Mat<S, M> qbar(lbl, N, H);
    kernels::activation_backward<Exec, S>(exec, act, c.q, a3bar, qbar);
    kernels::linear_backward_params<Exec, S>(exec, h, qbar, L.C, g);
    kernels::linear_backward_input<Exec, S, T>(exec, qbar, p, L.C, hbar, true);
    kernels::linear_backward_params<Exec, S>(exec, c.agg, qbar, L.D, g);
    Mat<S, M> aggbar(lbl, N, H);
    kernels::linear_backward_input<Exec, S, T>(exec, qbar, p, L.D, aggbar, false);
    // edge MLP
    Mat<S, M> mbar(lbl, E, H);
    kernels::gather_rows<Exec, S>(exec, aggbar, b.dst, mbar);
    Mat<S, M> pre2bar(lbl, E, H);
    kernels::activation_backward<Exec, S>(exec, act, c.pre2, mbar, pre2bar);
    kernels::linear_backward_params<Exec, S>(exec, c.a1, pre2bar, L.W2, g);
    Mat<S, M> a1bar(lbl, E, H);
    kernels::linear_backward_input<Exec, S, T>(exec, pre2bar, p, L.W2, a1bar, false);
    Mat<S, M> pre1bar(lbl, E, H);
    kernels::activation_backward<Exec, S>(exec, act, c.pre1, a1bar, pre1bar);
    Vec<S, M> qe_bar(lbl, E);
    kernels::egnn_edge_pre_backward<Exec, S, T>(exec, pre1bar, p, L.w_off, ec.q, g, qe_bar);
    auto egq = eg.qbar;
    Kokkos::parallel_for(
        "hydragnn::EGNNConv::layer_backward_q", Kokkos::RangePolicy<Exec>(exec, 0, E),
        KOKKOS_LAMBDA(const long e) { egq(e) += qe_bar(e); });
    Mat<S, M> Abar(lbl, N, H), Bbar(lbl, N, H);
    kernels::segment_sum<Exec, S>(exec, pre1bar, b.row_ptr, Abar, false);
    kernels::segment_sum_perm<Exec, S>(exec, pre1bar, b.send_perm, b.send_ptr, Bbar, false);
    kernels::linear_backward_params<Exec, S>(exec, h, Abar, L.A, g);
    kernels::linear_backward_input<Exec, S, T>(exec, Abar, p, L.A, hbar, true);
    kernels::linear_backward_params<Exec, S>(exec, h, Bbar, L.B, g);
    kernels::linear_backward_input<Exec, S, T>(exec, Bbar, p, L.B, hbar, true);
    return hbar;
  }
};

}  // namespace hydragnn
