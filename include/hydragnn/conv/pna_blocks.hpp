// SPDX-License-Identifier: BSD-3-Clause
// The blocks the PNA family shares (HydraGNN d251f816: PNAStack, PNAPlusStack, PNAEqStack, all built on
// PyG's PNAConv with towers 1, pre_layers 1, post_layers 1):
//   NodeBlocks  the node part of the pre-layer on [h_i, h_j, edge]: pre_i(h)[i] + pre_j(h)[j], computed
//               per node and gathered to the edges (receiver i = dst(e), sender j = src(e));
//   PnaUpdate   the aggregation and update out = lin(post([h, PNA(m)])) (PNA, PNAPlus).
#pragma once

#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/pna.hpp>
#include <hydragnn/kernels/segment.hpp>

#include <string>

namespace hydragnn {
namespace conv {

/// m(e) (+)= pre_i(h)[dst(e)] + pre_j(h)[src(e)], and its backward.
struct NodeBlocks {
  template <class Exec, class S, class T>
  static void forward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                      const Mat<S, mem_t<Exec>>& h, const LinearShape& pre_i, const LinearShape& pre_j,
                      const Mat<S, mem_t<Exec>>& m, bool accumulate, Workspace<mem_t<Exec>>& ws,
                      const std::string& lbl) {
    auto A = ws.template mat<S>(lbl + ".A", 0, b.num_atoms, pre_i.out);
    auto Bn = ws.template mat<S>(lbl + ".Bn", 0, b.num_atoms, pre_j.out);
    kernels::linear_forward<Exec, S, T>(exec, h, w, pre_i, A);
    kernels::linear_forward<Exec, S, T>(exec, h, w, pre_j, Bn);
    kernels::gather_rows<Exec, S>(exec, A, b.dst, m, accumulate);
    kernels::gather_rows<Exec, S>(exec, Bn, b.src, m, true);
  }
  /// hbar += d/dh of the gathered blocks (the parameter gradients into g unless it is empty).
  template <class Exec, class S, class T>
  static void backward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                       const Mat<S, mem_t<Exec>>& h, const LinearShape& pre_i, const LinearShape& pre_j,
                       const Mat<S, mem_t<Exec>>& mbar, const Vec<real_t<S>, mem_t<Exec>>& g,
                       const Mat<S, mem_t<Exec>>& hbar, Workspace<mem_t<Exec>>& ws, const std::string& lbl) {
    auto Abar = ws.template mat<S>(lbl + ".A_bar", 0, b.num_atoms, pre_i.out);
    auto Bnbar = ws.template mat<S>(lbl + ".Bn_bar", 0, b.num_atoms, pre_j.out);
    kernels::gather_rows_backward<Exec, S>(exec, mbar, b.row_ptr, Abar, false);
    kernels::gather_rows_backward_perm<Exec, S>(exec, mbar, b.send_perm, b.send_ptr, Bnbar, false);
    if (g.extent(0) > 0) {
      kernels::linear_backward_params<Exec, S>(exec, h, Abar, pre_i, g);
      kernels::linear_backward_params<Exec, S>(exec, h, Bnbar, pre_j, g);
    }
    kernels::linear_backward_input<Exec, S, T>(exec, Abar, w, pre_i, hbar, true);
    kernels::linear_backward_input<Exec, S, T>(exec, Bnbar, w, pre_j, hbar, true);
  }
};

/// out = lin(post([h, PNA(m)])) with PNA = mean, min, max, std at the receiver times the scalers
/// (kernels/pna.hpp); post is one Linear on [h | A] split into its two column blocks.
struct PnaUpdate {
  LinearShape post, post_s, post_a, lin;

  PnaUpdate() = default;
  /// post_nns.0.0: (1 + aggregates) I -> H, then lin: H -> H (HydraGNN's names under prefix n).
  PnaUpdate(ParamAllocator& alloc, const std::string& n, int I, int H, int aggregates) {
    post = alloc.linear((1 + aggregates) * I, H, true, n + ".post_nns.0.0");
    post_s = post.columns(0, I, true);  // [h, PNA]
    post_a = post.columns(I, aggregates * I, false);
    lin = alloc.linear(H, H, true, n + ".lin");
  }

  template <class S, class M> struct Cache {
    Mat<S, M> agg, o1;
    kernels::PnaCache<S, M> pna;
  };

  template <class Exec, class S, class T>
  void forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
               const kernels::PnaScalers& scalers, const Mat<real_t<S>, mem_t<Exec>>& scale,
               const Mat<S, mem_t<Exec>>& h, const Mat<S, mem_t<Exec>>& m, Cache<S, mem_t<Exec>>& c,
               Mat<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws, const std::string& lbl) const {
    using M = mem_t<Exec>;
    const int N = b.num_atoms, I = post_s.in, H = lin.out;
    c.pna = kernels::PnaCache<S, M>::in(ws, lbl + ".pna", l, N, I);
    c.agg = ws.template mat<S>(lbl + ".agg", l, N, scalers.width(I));
    kernels::pna_aggregate<Exec, S, real_t<S>>(exec, m, b.row_ptr, scale, c.pna, c.agg);
    c.o1 = ws.template mat<S>(lbl + ".o1", l, N, H);
    kernels::linear_forward<Exec, S, T>(exec, h, w, post_s, c.o1);
    auto tmp = ws.template mat<S>(lbl + ".tmp", 0, N, H);
    kernels::linear_forward<Exec, S, T>(exec, c.agg, w, post_a, tmp);
    kernels::add_into<Exec, S>(exec, tmp, c.o1);
    out = ws.template mat<S>(lbl + ".out", l, N, H);
    kernels::linear_forward<Exec, S, T>(exec, c.o1, w, lin, out);
  }

  /// hbar = d/dh through post_s (overwritten), mbar = d/dm (overwritten); parameter gradients into g
  /// unless it is empty.
  template <class Exec, class S, class T>
  void backward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Batch<mem_t<Exec>>& b,
                const kernels::PnaScalers& scalers, const Mat<real_t<S>, mem_t<Exec>>& scale,
                const Mat<S, mem_t<Exec>>& h, const Mat<S, mem_t<Exec>>& m, const Cache<S, mem_t<Exec>>& c,
                const Mat<S, mem_t<Exec>>& out_bar, const Vec<real_t<S>, mem_t<Exec>>& g,
                const Mat<S, mem_t<Exec>>& hbar, const Mat<S, mem_t<Exec>>& mbar, Workspace<mem_t<Exec>>& ws,
                const std::string& lbl) const {
    using M = mem_t<Exec>;
    const int N = b.num_atoms, I = post_s.in, H = lin.out;
    const bool want_params = g.extent(0) > 0;
    if (want_params) kernels::linear_backward_params<Exec, S>(exec, c.o1, out_bar, lin, g);
    auto o1bar = ws.template mat<S>(lbl + ".o1_bar", 0, N, H);
    kernels::linear_backward_input<Exec, S, T>(exec, out_bar, w, lin, o1bar, false);
    if (want_params) {
      kernels::linear_backward_params<Exec, S>(exec, h, o1bar, post_s, g);
      kernels::linear_backward_params<Exec, S>(exec, c.agg, o1bar, post_a, g);
    }
    kernels::linear_backward_input<Exec, S, T>(exec, o1bar, w, post_s, hbar, false);
    auto aggbar = ws.template mat<S>(lbl + ".agg_bar", 0, N, scalers.width(I));
    kernels::linear_backward_input<Exec, S, T>(exec, o1bar, w, post_a, aggbar, false);
    kernels::pna_aggregate_backward<Exec, S, real_t<S>>(exec, m, b.row_ptr, scale, c.pna, aggbar,
                                                         kernels::PnaCache<S, M>::in(ws, lbl + ".pna_bar", 0, N, I), mbar,
                                                         false);
  }
};

}  // namespace conv
}  // namespace hydragnn
