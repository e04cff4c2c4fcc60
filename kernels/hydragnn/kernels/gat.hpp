// SPDX-License-Identifier: BSD-3-Clause
// GATv2 attention (PyTorch Geometric's GATv2Conv with add_self_loops, fill_value "mean", dropout 0,
// share_weights False, residual False), given the two node projections XL = lin_l(h), XR = lin_r(h)
// (N x K*C: K heads of C channels, head-major):
//
//   edges into i:  the receiver-sorted edges e with dst(e) = i and src(e) != i (PyG removes self
//                  loops first: a periodic edge to the atom's own image is dropped), then the self
//                  loop j = i with attribute abar_i = mean of the kept a_e (0 without any)
//   score          z_e = XR(i) + XL(j) + W_e a_e  (K x C; W_e = lin_edge, edge features only)
//                  s_e,k = sum_c att(k,c) leaky_relu(z_e(k,c), slope)
//   softmax        alpha_e,k = exp(s_e,k - max) / (sum_e' exp(s_e',k - max) + 1e-16)    (PyG softmax)
//   output         concat:  Y(i, kC+c) = sum_e alpha_e,k XL(j, kC+c) + bias(kC+c)
//                  mean:    Y(i, c)    = (1/K) sum_k sum_e alpha_e,k XL(j, kC+c) + bias(c)
// Attention dropout (PyG's F.dropout of alpha in training mode; GatShape::dropout p > 0): every
// coefficient alpha_e,k of the output sum (the self loop's too) is multiplied by m = 0 with
// probability p, 1 / (1 - p) otherwise, m drawn from (seed, edge, head) by a counter-based hash
// (core/random.hpp; the self loop of i has key E + i): the same masks in the backward, in a dual
// pass and on every backend. The forward draws each factor once into `keep` ((E + N) x K, by key),
// which the aggregation and the backward read. The softmax itself is not masked.
// The max is taken on the primal (a dual tangent sees a constant shift, as PyG's detached max).
// The backward recomputes z from XL, XR and a (nothing edge x channel is kept): per receiver,
//   dalpha_e,k = <Ybar_k(i), XL_k(j)>,  ds_e,k = alpha_e,k (dalpha_e,k - sum_e' alpha_e',k dalpha_e',k)
//   dz_e = ds_e,k att(k,:) leaky'(z_e)
//   XL(j) gets alpha_e,k Ybar_k(i) + dz_e (per edge, gathered over sender segments by the caller),
//   XR(i) gets sum_e dz_e, a_e gets <W_e, dz_e> (the self loop's share divided over its edges),
//   att gets sum_e ds_e,k leaky(z_e), W_e gets sum_e dz_e a_e, bias gets Ybar (column sums over the
//   receivers in ascending order: deterministic).
// One thread per receiver walks its edges in CSR order with the self loop last (every mode).
#pragma once

#include <hydragnn/core/random.hpp>
#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>

#include <cstdint>

namespace hydragnn {
namespace kernels {

/// Shape and parameter offsets of one GATv2 attention (offsets into the parameter buffer p).
struct GatShape {
  int K = 1;             ///< heads
  int C = 1;             ///< channels per head
  bool concat = true;    ///< concatenate the heads (K*C outputs) or average them (C outputs)
  double slope = 0.2;    ///< leaky_relu negative slope
  long att = -1;         ///< att: K x C
  long edge = -1;        ///< lin_edge.weight: K*C x 1 (-1: no edge attribute)
  long bias = -1;        ///< bias: width() (-1: none)
  double dropout = 0;    ///< attention dropout probability (training mode; 0: none)
  std::uint64_t seed = 0;  ///< the masks' seed (one per pass and layer)
  KOKKOS_INLINE_FUNCTION int width() const { return concat ? K * C : C; }
  /// The dropout factor of coefficient (key, head): 0 or 1 / (1 - dropout); 1 without dropout.
  KOKKOS_INLINE_FUNCTION double keep(long key, int k) const {
    if (!(dropout > 0)) return 1.0;
    return uniform01(mix64(seed, std::uint64_t(key) * std::uint64_t(K) + std::uint64_t(k))) < dropout ? 0.0
                                                                                                      : 1.0 / (1.0 - dropout);
  }
};

namespace detail {
/// s = sum_c att(k,c) leaky_relu(XR(i,kC+c) + XL(j,kC+c) + W(kC+c) a)
template <class S, class T, class M>
KOKKOS_INLINE_FUNCTION S gat_score(const CMat<S, M>& XL, const CMat<S, M>& XR, const CVec<T, M>& p, const GatShape& sh,
                                   long i, long j, int k, const S& a) {
  using R = real_t<S>;
  S s(0);
  for (int c = 0; c < sh.C; ++c) {
    const long q = long(k) * sh.C + c;
    S z = XR(i, q) + XL(j, q);
    if (sh.edge >= 0) z += a * p(sh.edge + q);
    const S t = z > R(0) ? z : z * R(sh.slope);
    s += t * p(sh.att + q);
  }
  return s;
}

/// The self loop's edge attribute: the mean of A over receiver i's kept edges (src != i), 0 without
/// any; n receives their count (0 without an edge attribute).
template <class S, class M>
KOKKOS_INLINE_FUNCTION S gat_self_attribute(const CMat<S, M>& A, const CVec<int, M>& src, const GatShape& sh, int e0,
                                            int e1, long i, int& n) {
  S a(0);
  n = 0;
  if (sh.edge < 0) return a;
  for (int e = e0; e < e1; ++e)
    if (src(e) != i) {
      a += A(e, 0);
      ++n;
    }
  return n > 0 ? S(a / real_t<S>(n)) : a;
}
}  // namespace detail

/// The attention and its output (see above). alpha (E x K; 0 at dropped self edges), alpha_self
/// (N x K) and, with dropout, the dropout factors keep are kept for the backward.
///            // XL, XR: N x KC, A: E x 1 (empty without edge attribute), row_ptr: N+1, src: E
///            //   -> alpha: E x K, alpha_self: N x K, keep: (E + N) x K (written when sh.dropout > 0,
///            //      may be empty otherwise), Y: N x width
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void gat_attention(const Exec& exec, const CMat<S, mem_t<Exec>>& XL, const CMat<S, mem_t<Exec>>& XR,
                   const CMat<S, mem_t<Exec>>& A, const CVec<T, mem_t<Exec>>& p, const GatShape& sh,
                   const CVec<int, mem_t<Exec>>& row_ptr, const CVec<int, mem_t<Exec>>& src,
                   const Mat<S, mem_t<Exec>>& alpha, const Mat<S, mem_t<Exec>>& alpha_self,
                   const Mat<double, mem_t<Exec>>& keep, const Mat<S, mem_t<Exec>>& Y) {
  using R = real_t<S>;
  using M = mem_t<Exec>;
  const long E = long(alpha.extent(0));
  const bool drop = sh.dropout > 0;
  detail::for_each_row<Mode>(exec, "hydragnn::GAT::attention", long(Y.extent(0)), KOKKOS_LAMBDA(const long i) {
    const int e0 = row_ptr(i), e1 = row_ptr(i + 1), K = sh.K, C = sh.C;
    int n;
    const S abar = detail::gat_self_attribute<S, M>(A, src, sh, e0, e1, i, n);
    for (int k = 0; k < K; ++k) {
      const S s_self = detail::gat_score<S, T, M>(XL, XR, p, sh, i, i, k, abar);
      R mx = scalar_traits<S>::primal(s_self);
      for (int e = e0; e < e1; ++e) {
        if (src(e) == i) continue;
        const S s = detail::gat_score<S, T, M>(XL, XR, p, sh, i, src(e), k, sh.edge >= 0 ? S(A(e, 0)) : S(0));
        alpha(e, k) = s;
        if (scalar_traits<S>::primal(s) > mx) mx = scalar_traits<S>::primal(s);
      }
      S sum(0);
      for (int e = e0; e < e1; ++e) {
        if (src(e) == i) {
          alpha(e, k) = S(0);
          continue;
        }
        alpha(e, k) = math::exp(alpha(e, k) - mx);
        sum += alpha(e, k);
      }
      S a_self = math::exp(s_self - mx);
      sum += a_self;
      sum += R(1e-16);
      for (int e = e0; e < e1; ++e) alpha(e, k) = alpha(e, k) / sum;
      a_self = a_self / sum;
      alpha_self(i, k) = a_self;
      if (drop) {  // each factor drawn once, read below and by the backward
        for (int e = e0; e < e1; ++e) keep(e, k) = sh.keep(e, k);
        keep(E + i, k) = sh.keep(E + i, k);
      }
      const R m_self = drop ? R(keep(E + i, k)) : R(1);
      for (int c = 0; c < C; ++c) {
        const long q = long(k) * C + c;
        S acc(0);
        for (int e = e0; e < e1; ++e)
          if (src(e) != i) acc += alpha(e, k) * (drop ? R(keep(e, k)) : R(1)) * XL(src(e), q);
        acc += a_self * m_self * XL(i, q);
        if (sh.concat)
          Y(i, q) = acc + (sh.bias >= 0 ? S(p(sh.bias + q)) : S(0));
        else
          Y(i, c) = k == 0 ? acc : S(Y(i, c) + acc);
      }
    }
    if (!sh.concat)
      for (int c = 0; c < C; ++c) Y(i, c) = Y(i, c) / R(K) + (sh.bias >= 0 ? S(p(sh.bias + c)) : S(0));
  });
}

/// Backward of gat_attention (see above), given Ybar:
///   XLe (E x KC, overwritten): what edge e adds to XL's cotangent at src(e) (0 at dropped edges);
///   XLbar, XRbar (N x KC, overwritten): the self loop's share of XL's cotangent, and XR's;
///   Abar (E x 1, accumulated; skipped when empty): the edge attributes' cotangent;
///   g (skipped when empty): att, lin_edge and bias gradients, through the per-receiver partial
///   sums P (N x KC scratch, N x 2KC with an edge attribute) summed over the receivers in
///   ascending order.
/// keep: the forward's dropout factors (read when sh.dropout > 0). dalpha (E x K) and dalpha_self
/// (N x K) are scratch.
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void gat_attention_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& XL, const CMat<S, mem_t<Exec>>& XR,
                            const CMat<S, mem_t<Exec>>& A, const CVec<T, mem_t<Exec>>& p, const GatShape& sh,
                            const CVec<int, mem_t<Exec>>& row_ptr, const CVec<int, mem_t<Exec>>& src,
                            const CMat<S, mem_t<Exec>>& alpha, const CMat<S, mem_t<Exec>>& alpha_self,
                            const CMat<double, mem_t<Exec>>& keep,
                            const CMat<S, mem_t<Exec>>& Ybar, const Mat<S, mem_t<Exec>>& dalpha,
                            const Mat<S, mem_t<Exec>>& dalpha_self, const Mat<S, mem_t<Exec>>& XLe,
                            const Mat<S, mem_t<Exec>>& XLbar, const Mat<S, mem_t<Exec>>& XRbar,
                            const Mat<S, mem_t<Exec>>& Abar, const Mat<S, mem_t<Exec>>& P,
                            const Vec<real_t<S>, mem_t<Exec>>& g) {
  using R = real_t<S>;
  const bool want_a = Abar.extent(0) > 0 && sh.edge >= 0;
  const bool want_g = g.extent(0) > 0;
  const long N = long(XL.extent(0)), KC = long(sh.K) * sh.C, E = long(alpha.extent(0));
  const bool drop = sh.dropout > 0;
  detail::for_each_row<Mode>(exec, "hydragnn::GAT::attention_backward", N, KOKKOS_LAMBDA(const long i) {
    const int e0 = row_ptr(i), e1 = row_ptr(i + 1), K = sh.K, C = sh.C;
    int n;
    const S abar = detail::gat_self_attribute<S, mem_t<Exec>>(A, src, sh, e0, e1, i, n);
    const R inv_k = sh.concat ? R(1) : R(1) / R(K);
    auto yb = [&](int k, int c) -> S { return sh.concat ? S(Ybar(i, long(k) * C + c)) : S(Ybar(i, c) * inv_k); };
    for (long q = 0; q < KC; ++q) {
      XRbar(i, q) = S(0);
      if (want_g) P(i, q) = S(0);
      if (want_g && sh.edge >= 0) P(i, KC + q) = S(0);
    }
    S abar_self_bar(0);  // cotangent of the self loop's attribute
    for (int k = 0; k < K; ++k) {
      // dalpha and the softmax backward
      S dot(0);
      for (int e = e0; e < e1; ++e) {
        if (src(e) == i) continue;
        S d(0);
        for (int c = 0; c < C; ++c) d += yb(k, c) * XL(src(e), long(k) * C + c);
        if (drop) d = d * R(keep(e, k));  // the cotangent of the (undropped) softmax output
        dalpha(e, k) = d;
        dot += alpha(e, k) * d;
      }
      {
        S d(0);
        for (int c = 0; c < C; ++c) d += yb(k, c) * XL(i, long(k) * C + c);
        if (drop) d = d * R(keep(E + i, k));
        dalpha_self(i, k) = d;
        dot += alpha_self(i, k) * d;
      }
      // per edge (the self loop last): dz, and its contributions
      for (int e = e0; e <= e1; ++e) {
        const bool self = e == e1;
        if (!self && src(e) == i) {
          for (int c = 0; c < C; ++c) XLe(e, long(k) * C + c) = S(0);
          continue;
        }
        const long j = self ? i : long(src(e));
        const S al = self ? S(alpha_self(i, k)) : S(alpha(e, k));
        const S ds = al * ((self ? S(dalpha_self(i, k)) : S(dalpha(e, k))) - dot);
        const S alm = drop ? S(al * R(keep(self ? E + i : long(e), k))) : al;  // the coefficient of XL(j) in the output
        const S a = sh.edge >= 0 ? (self ? abar : S(A(e, 0))) : S(0);
        S abar_e(0);
        for (int c = 0; c < C; ++c) {
          const long q = long(k) * C + c;
          S z = XR(i, q) + XL(j, q);
          if (sh.edge >= 0) z += a * p(sh.edge + q);
          const bool pos = z > R(0);
          const S t = pos ? z : z * R(sh.slope);
          const S dz = pos ? S(ds * p(sh.att + q)) : S(ds * p(sh.att + q) * R(sh.slope));
          const S xl = alm * yb(k, c) + dz;
          if (self)
            XLbar(i, q) = xl;
          else
            XLe(e, q) = xl;
          XRbar(i, q) += dz;
          if (sh.edge >= 0) abar_e += dz * p(sh.edge + q);
          if (want_g) {
            P(i, q) += ds * t;
            if (sh.edge >= 0) P(i, KC + q) += dz * a;
          }
        }
        if (want_a) {
          if (self)
            abar_self_bar += abar_e;
          else
            Abar(e, 0) += abar_e;
        }
      }
    }
    if (want_a && n > 0) {
      const S share = abar_self_bar / R(n);
      for (int e = e0; e < e1; ++e)
        if (src(e) != i) Abar(e, 0) += share;
    }
  });
  if (!want_g) return;
  const int width = sh.width();
  const long cols = (sh.edge >= 0 ? 2 * KC : KC) + (sh.bias >= 0 ? width : 0);
  Kokkos::parallel_for(
      "hydragnn::GAT::param_sums", Kokkos::RangePolicy<Exec>(exec, 0, cols), KOKKOS_LAMBDA(const long col) {
        S acc(0);
        long off;
        if (col < KC) {
          for (long i = 0; i < N; ++i) acc += P(i, col);
          off = sh.att + col;
        } else if (sh.edge >= 0 && col < 2 * KC) {
          for (long i = 0; i < N; ++i) acc += P(i, col);
          off = sh.edge + (col - KC);
        } else {
          const long q = col - (sh.edge >= 0 ? 2 * KC : KC);
          for (long i = 0; i < N; ++i) acc += Ybar(i, q);
          off = sh.bias + q;
        }
        g(off) += param_part(acc);
      });
}

}  // namespace kernels
}  // namespace hydragnn
