// SPDX-License-Identifier: BSD-3-Clause
// The update and output blocks that PaiNN and PNAEq share (HydraGNN d251f816: PainnUpdate ->
// node_embed_out / vec_embed_out). From the message's s' (N x I) and v' (N x 3 x I):
//   Uv = U v', Vv = V v'  (no bias, over the channels)                        N x 3 x I
//   a  = update_mlp([|Vv|, s'])     Linear(2I,I) -> SiLU -> Linear(I,KI), K = 3 (2 in the last layer)
//   s'', v'' = painn_update(a, Uv, Vv, s', v')                           (kernels/painn.hpp)
//   h = node_embed_out(s'')         Linear(I,H) -> Tanh -> Linear(H,H)
//   v_out = vec_embed_out(v'')      Linear(I,H), no bias; the last layer passes v' on unchanged
#pragma once

#include <hydragnn/conv/traits.hpp>
#include <hydragnn/kernels/painn.hpp>
#include <hydragnn/kernels/vector.hpp>
#include <hydragnn/nn/mlp.hpp>

#include <string>

namespace hydragnn {
namespace conv {

struct PaiNNUpdateOut {
  int in = 0, hidden = 0;  ///< I, H
  bool last = false;
  LinearShape U, V, up0, up0_norm, up0_s, up2, vec_out;
  MLP embed;  ///< node_embed_out: I -> H -> H (Tanh)

  PaiNNUpdateOut() = default;
  /// Parameters named n + ".module_1.<u_name>", ".module_1.update_V", ".module_1.update_mlp.{0,2}",
  /// ".module_2.{0,2}", ".module_3" (HydraGNN's names; PaiNN calls U update_U, PNAEq update_X).
  PaiNNUpdateOut(ParamAllocator& alloc, const std::string& n, const char* u_name, int I, int H, bool is_last)
      : in(I), hidden(H), last(is_last) {
    U = alloc.linear(I, I, false, n + ".module_1." + u_name);
    V = alloc.linear(I, I, false, n + ".module_1.update_V");
    up0 = alloc.linear(2 * I, I, true, n + ".module_1.update_mlp.0");
    up0_norm = up0.columns(0, I, true);  // |Vv| comes first in the concatenation
    up0_s = up0.columns(I, I, false);
    up2 = alloc.linear(I, (last ? 2 : 3) * I, true, n + ".module_1.update_mlp.2");
    embed = MLP(alloc, {I, H, H}, Activation::Tanh, false, true, n + ".module_2");
    if (!last) vec_out = alloc.linear(I, H, false, n + ".module_3");
  }

  template <class S, class M>
  struct Cache {
    typename MLP::template Cache<S, M> embed;
    Mat<S, M> nrm, pre, act, a, s2;
    VFeat<S, M> Uv, Vv, v2;
  };

  /// out.h, out.v from s1 = s', v1 = v' (workspace views labelled lbl.*, slot l).
  template <class Exec, class S, class T>
  void forward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const std::string& lbl,
               const Mat<S, mem_t<Exec>>& s1, const VFeat<S, mem_t<Exec>>& v1, Cache<S, mem_t<Exec>>& c,
               NodeState<S, mem_t<Exec>>& out, Workspace<mem_t<Exec>>& ws) const {
    using M = mem_t<Exec>;
    const int N = int(s1.extent(0)), I = in;
    c.Uv = ws.template vec3<S>(lbl + ".Uv", l, N, 3, I);
    c.Vv = ws.template vec3<S>(lbl + ".Vv", l, N, 3, I);
    kernels::linear_forward<Exec, S, T>(exec, rows3(v1), w, U, rows3(c.Uv));
    kernels::linear_forward<Exec, S, T>(exec, rows3(v1), w, V, rows3(c.Vv));
    c.nrm = ws.template mat<S>(lbl + ".norm", l, N, I);
    kernels::vec_norm<Exec, S>(exec, c.Vv, real_t<S>(0), c.nrm);
    c.pre = ws.template mat<S>(lbl + ".up_pre", l, N, I);
    kernels::linear_forward<Exec, S, T>(exec, c.nrm, w, up0_norm, c.pre);
    auto tmp = ws.template mat<S>(lbl + ".tmp", 0, N, I);
    kernels::linear_forward<Exec, S, T>(exec, s1, w, up0_s, tmp);
    kernels::add_into<Exec, S>(exec, tmp, c.pre);
    c.act = ws.template mat<S>(lbl + ".up_act", l, N, I);
    kernels::activation_forward<Exec, S>(exec, Activation::SiLU, c.pre, c.act);
    c.a = ws.template mat<S>(lbl + ".a", l, N, up2.out);
    kernels::linear_forward<Exec, S, T>(exec, c.act, w, up2, c.a);
    c.s2 = ws.template mat<S>(lbl + ".s2", l, N, I);
    c.v2 = last ? VFeat<S, M>() : ws.template vec3<S>(lbl + ".v2", l, N, 3, I);
    kernels::painn_update<Exec, S>(exec, c.a, c.Uv, c.Vv, s1, v1, c.s2, c.v2);
    out.h = embed.forward<Exec, S, T>(exec, w, c.s2, c.embed, ws, l);
    if (last) {
      out.v = v1;
    } else {
      out.v = ws.template vec3<S>(lbl + ".v_out", l, N, 3, hidden);
      kernels::linear_forward<Exec, S, T>(exec, rows3(c.v2), w, vec_out, rows3(out.v));
    }
  }

  /// s1bar, v1bar (workspace views labelled lbl.*, overwritten) from out_bar; parameter gradients
  /// into g when it is not empty.
  template <class Exec, class S, class T>
  void backward(const Exec& exec, int l, const Weights<T, mem_t<Exec>>& w, const std::string& lbl,
                const Mat<S, mem_t<Exec>>& s1, const VFeat<S, mem_t<Exec>>& v1, const Cache<S, mem_t<Exec>>& c,
                const NodeState<S, mem_t<Exec>>& out_bar, const Vec<real_t<S>, mem_t<Exec>>& g,
                Workspace<mem_t<Exec>>& ws, Mat<S, mem_t<Exec>>& s1bar, VFeat<S, mem_t<Exec>>& v1bar) const {
    using M = mem_t<Exec>;
    const int N = int(s1.extent(0)), I = in;
    const bool want_params = g.extent(0) > 0;
    auto params = [&](const Mat<S, M>& X, const Mat<S, M>& Yb, const LinearShape& sh) {
      if (want_params) kernels::linear_backward_params<Exec, S>(exec, X, Yb, sh, g);
    };
    // out: h = embed(s''), v_out = vec_out(v'')  (last layer: v_out = v')
    auto s2bar = embed.backward<Exec, S, T>(exec, w, c.embed, out_bar.h, g, ws, l);
    v1bar = ws.template vec3<S>(lbl + ".v1_bar", 0, N, 3, I);
    VFeat<S, M> v2bar;
    if (last) {
      Kokkos::deep_copy(exec, v1bar, out_bar.v);
    } else {
      v2bar = ws.template vec3<S>(lbl + ".v2_bar", 0, N, 3, I);
      params(rows3(c.v2), rows3(out_bar.v), vec_out);
      kernels::linear_backward_input<Exec, S, T>(exec, rows3(out_bar.v), w, vec_out, rows3(v2bar), false);
      Kokkos::deep_copy(exec, v1bar, v2bar);  // residual v'' = v' + ...
    }
    // update
    auto abar = ws.template mat<S>(lbl + ".a_bar", 0, N, up2.out);
    auto Uvbar = ws.template vec3<S>(lbl + ".Uv_bar", 0, N, 3, I);
    auto Vvbar = ws.template vec3<S>(lbl + ".Vv_bar", 0, N, 3, I);
    kernels::painn_update_backward<Exec, S>(exec, c.a, c.Uv, c.Vv, s2bar, v2bar, abar, Uvbar, Vvbar);
    params(c.act, abar, up2);
    auto actbar = ws.template mat<S>(lbl + ".act_bar", 0, N, I);
    kernels::linear_backward_input<Exec, S, T>(exec, abar, w, up2, actbar, false);
    auto prebar = ws.template mat<S>(lbl + ".pre_bar", 0, N, I);
    kernels::activation_backward<Exec, S>(exec, Activation::SiLU, c.pre, actbar, prebar);
    params(c.nrm, prebar, up0_norm);
    params(s1, prebar, up0_s);
    auto nrmbar = ws.template mat<S>(lbl + ".norm_bar", 0, N, I);
    kernels::linear_backward_input<Exec, S, T>(exec, prebar, w, up0_norm, nrmbar, false);
    s1bar = ws.template mat<S>(lbl + ".s1_bar", 0, N, I);
    Kokkos::deep_copy(exec, s1bar, s2bar);  // residual s'' = s' + ...
    kernels::linear_backward_input<Exec, S, T>(exec, prebar, w, up0_s, s1bar, true);
    kernels::vec_norm_backward<Exec, S>(exec, c.Vv, real_t<S>(0), nrmbar, Vvbar, true);
    params(rows3(v1), rows3(Uvbar), U);
    params(rows3(v1), rows3(Vvbar), V);
    kernels::linear_backward_input<Exec, S, T>(exec, rows3(Uvbar), w, U, rows3(v1bar), true);
    kernels::linear_backward_input<Exec, S, T>(exec, rows3(Vvbar), w, V, rows3(v1bar), true);
  }

  /// The (3N) x I matrix of an N x 3 x I vector view (the Linear layers act on the channels).
  template <class S, class M>
  static Mat<S, M> rows3(const VFeat<S, M>& v) {
    return Mat<S, M>(v.data(), v.extent(0) * 3, v.extent(2));
  }
};

}  // namespace conv
}  // namespace hydragnn
