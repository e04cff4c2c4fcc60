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
//   XR(i) gets sum_e dz_e, a_e gets <W_e, dz_e> (the self loop's share divided over its edges),
//   att gets sum_e ds_e,k leaky(z_e), W_e gets sum_e dz_e a_e, bias gets Ybar (column sums over the
//   receivers in ascending order: deterministic);
// then per sender j, XL(j) gets alpha_e,k Ybar_k(i) + dz_e of each edge e = (j -> i) in the sender
// permutation's order (ds kept per edge and head from the receivers' pass, z recomputed).
// The sums over channels (scores, dalpha, <W_e, dz_e>) run in 16 interleaved partial sums folded
// pairwise (detail::gat_channel_sum); the sums over edges in CSR (receivers) or sender-permutation
// (senders) order, the self loop last. One thread per receiver (sender) in every mode, the same
// code: the modes agree bitwise.
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
/// The channel sums of the attention (scores, the softmax cotangent, the edge attribute's cotangent):
/// sum over c in [0, n) as gat_lanes partial sums, lane l taking c = l, l + gat_lanes, ... in
/// ascending order, then folded pairwise (lane l += lane l + w for w = gat_lanes/2, ..., 1). One
/// order in every mode and on every backend; gat_lanes independent chains (a vector register of
/// floats with AVX-512) instead of one.
constexpr int gat_lanes = 16;
/// Channels a thread sums over the edges at once (the output and the senders' pass): a local array
/// of this many scalars per thread.
constexpr int gat_block = 64;

/// Calls f(c, lane) for c in [0, n) ascending, lane = c mod gat_lanes.
template <class F>
KOKKOS_INLINE_FUNCTION void gat_lane_loop(int n, const F& f) {
  int c = 0;
  for (; c + gat_lanes <= n; c += gat_lanes)
    for (int l = 0; l < gat_lanes; ++l) f(c + l, l);
  for (int l = 0; c + l < n; ++l) f(c + l, l);
}
template <class S>
KOKKOS_INLINE_FUNCTION S gat_fold(S (&part)[gat_lanes]) {
  for (int w = gat_lanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) part[l] += part[l + w];
  return part[0];
}
/// leaky_relu'(z): 1 or the slope, so leaky_relu(z) = z times it (x 1 is exact). A select, not a
/// branch on two expressions: the compiler vectorises the channel loops around it.
template <class S, class R>
KOKKOS_INLINE_FUNCTION R gat_leak(const S& z, R slope) {
  return z > R(0) ? R(1) : slope;
}
template <class S, class F>
KOKKOS_INLINE_FUNCTION S gat_channel_sum(int n, const F& f) {
  S part[gat_lanes];
  for (int l = 0; l < gat_lanes; ++l) part[l] = S(0);
  gat_lane_loop(n, [&](int c, int l) { part[l] += f(c); });
  return gat_fold(part);
}

/// s = sum_c att(k,c) leaky_relu(XR(i,kC+c) + XL(j,kC+c) + W(kC+c) a)   (gat_channel_sum's order)
template <class S, class T, class M>
KOKKOS_INLINE_FUNCTION S gat_score(const CMat<S, M>& XL, const CMat<S, M>& XR, const CVec<T, M>& p, const GatShape& sh,
                                   long i, long j, int k, const S& a) {
  using R = real_t<S>;
  const long q0 = long(k) * sh.C;
  const S* xr = &XR(i, q0);
  const S* xl = &XL(j, q0);
  const T* att = &p(sh.att + q0);
  const R slope = R(sh.slope);
  if (sh.edge >= 0) {
    const T* w = &p(sh.edge + q0);
    return gat_channel_sum<S>(sh.C, [&](int c) {
      S z = xr[c] + xl[c];
      z += a * w[c];
      const S t = z * gat_leak(z, slope);
      return S(t * att[c]);
    });
  }
  return gat_channel_sum<S>(sh.C, [&](int c) {
    const S z = xr[c] + xl[c];
    const S t = z * gat_leak(z, slope);
    return S(t * att[c]);
  });
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
      // the output, gat_block channels at a time: each channel sums its edges in CSR order, then the
      // self loop
      const long q0 = long(k) * C;
      for (int c0 = 0; c0 < C; c0 += detail::gat_block) {
        const int nb = C - c0 < detail::gat_block ? C - c0 : detail::gat_block;
        S acc[detail::gat_block];
        for (int b = 0; b < nb; ++b) acc[b] = S(0);
        for (int e = e0; e < e1; ++e) {
          if (src(e) == i) continue;
          const S f = alpha(e, k) * (drop ? R(keep(e, k)) : R(1));
          const S* xl = &XL(src(e), q0 + c0);
          for (int b = 0; b < nb; ++b) acc[b] += f * xl[b];
        }
        {
          const S f = a_self * m_self;
          const S* xl = &XL(i, q0 + c0);
          for (int b = 0; b < nb; ++b) acc[b] += f * xl[b];
        }
        for (int b = 0; b < nb; ++b) {
          const int c = c0 + b;
          if (sh.concat)
            Y(i, q0 + c) = acc[b] + (sh.bias >= 0 ? S(p(sh.bias + q0 + c)) : S(0));
          else
            Y(i, c) = k == 0 ? acc[b] : S(Y(i, c) + acc[b]);
        }
      }
    }
    if (!sh.concat)
      for (int c = 0; c < C; ++c) Y(i, c) = Y(i, c) / R(K) + (sh.bias >= 0 ? S(p(sh.bias + c)) : S(0));
  });
}

/// Backward of gat_attention (see above), given Ybar, in two passes:
///   receivers (a thread per receiver i): dalpha, the softmax backward, ds (E x K: kept in DS for
///     the second pass), XRbar(i) (overwritten), XLbar(i) = the self loop's share (overwritten),
///     Abar (E x 1, accumulated; skipped when empty) and the per-receiver parameter partial sums P
///     (N x KC scratch, N x 2KC with an edge attribute; only when g is not empty);
///   senders (a thread per sender j): XLbar(j) += what each edge e out of j adds (alpha_e m_e Ybar(i)
///     + dz_e, z recomputed), the edges in the sender permutation's order (dst: the receivers, send_perm
///     and send_ptr: the sender segments);
/// then g (skipped when empty) += att, lin_edge and bias gradients: the columns of P (and of Ybar
/// for the bias) summed over the receivers in ascending order (deterministic).
/// keep: the forward's dropout factors (read when sh.dropout > 0). Nothing edge x channel is stored.
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void gat_attention_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& XL, const CMat<S, mem_t<Exec>>& XR,
                            const CMat<S, mem_t<Exec>>& A, const CVec<T, mem_t<Exec>>& p, const GatShape& sh,
                            const CVec<int, mem_t<Exec>>& row_ptr, const CVec<int, mem_t<Exec>>& src,
                            const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& send_perm,
                            const CVec<int, mem_t<Exec>>& send_ptr, const CMat<S, mem_t<Exec>>& alpha,
                            const CMat<S, mem_t<Exec>>& alpha_self, const CMat<double, mem_t<Exec>>& keep,
                            const CMat<S, mem_t<Exec>>& Ybar, const Mat<S, mem_t<Exec>>& DS,
                            const Mat<S, mem_t<Exec>>& XLbar, const Mat<S, mem_t<Exec>>& XRbar,
                            const Mat<S, mem_t<Exec>>& Abar, const Mat<S, mem_t<Exec>>& P,
                            const Vec<real_t<S>, mem_t<Exec>>& g) {
  using R = real_t<S>;
  const bool want_a = Abar.extent(0) > 0 && sh.edge >= 0;
  const bool want_g = g.extent(0) > 0;
  const long N = long(XL.extent(0)), KC = long(sh.K) * sh.C, E = long(alpha.extent(0));
  const bool drop = sh.dropout > 0;
  const R inv_k = sh.concat ? R(1) : R(1) / R(sh.K);
  detail::for_each_row<Mode>(exec, "hydragnn::GAT::attention_backward", N, KOKKOS_LAMBDA(const long i) {
    const int e0 = row_ptr(i), e1 = row_ptr(i + 1), K = sh.K, C = sh.C;
    int n;
    const S abar = detail::gat_self_attribute<S, mem_t<Exec>>(A, src, sh, e0, e1, i, n);
    const R slope = R(sh.slope);
    S abar_self_bar(0);  // cotangent of the self loop's attribute
    for (int k = 0; k < K; ++k) {
      const long q0 = long(k) * C;
      const S* yb = sh.concat ? &Ybar(i, q0) : &Ybar(i, 0);  // times inv_k (1 when concatenating)
      const T* att = &p(sh.att + q0);
      const T* w = sh.edge >= 0 ? &p(sh.edge + q0) : att;
      const S* xr = &XR(i, q0);
      // dalpha (in DS) and the softmax backward: ds (in DS)
      auto dalpha = [&](long j) {
        const S* xl = &XL(j, q0);
        return detail::gat_channel_sum<S>(C, [&](int c) { return S(S(yb[c] * inv_k) * xl[c]); });
      };
      S dot(0);
      for (int e = e0; e < e1; ++e) {
        if (src(e) == i) continue;
        S d = dalpha(src(e));
        if (drop) d = d * R(keep(e, k));  // the cotangent of the (undropped) softmax output
        DS(e, k) = d;
        dot += alpha(e, k) * d;
      }
      S d_self = dalpha(i);
      if (drop) d_self = d_self * R(keep(E + i, k));
      dot += alpha_self(i, k) * d_self;
      for (int e = e0; e < e1; ++e)
        if (src(e) != i) DS(e, k) = alpha(e, k) * (DS(e, k) - dot);
      const S al_self = alpha_self(i, k);
      const S ds_self = al_self * (d_self - dot);
      const S alm_self = drop ? S(al_self * R(keep(E + i, k))) : al_self;  // XL(i)'s coefficient in the output
      // dz of edge e (the self loop: e = e1) at channel c
      auto dz_of = [&](const S& ds, const S& a, const S* xl, int c) {
        S z = xr[c] + xl[c];
        if (sh.edge >= 0) z += a * w[c];
        return S(ds * att[c] * detail::gat_leak(z, slope));
      };
      if (want_a)  // the edge attributes' cotangents: <W, dz_e>
        for (int e = e0; e <= e1; ++e) {
          const bool self = e == e1;
          if (!self && src(e) == i) continue;
          const S ds = self ? ds_self : S(DS(e, k)), a = self ? abar : S(A(e, 0));
          const S* xl = &XL(self ? i : long(src(e)), q0);
          const S abar_e = detail::gat_channel_sum<S>(C, [&](int c) { return S(dz_of(ds, a, xl, c) * w[c]); });
          if (self)
            abar_self_bar += abar_e;
          else
            Abar(e, 0) += abar_e;
        }
      // XRbar(i) = sum_e dz_e, P(i) = sum_e (ds_e leaky(z_e), dz_e a_e) over the edges in CSR order and
      // the self loop last, XLbar(i) = the self loop's share; gat_block channels at a time
      for (int c0 = 0; c0 < C; c0 += detail::gat_block) {
        const int nb = C - c0 < detail::gat_block ? C - c0 : detail::gat_block;
        S xrb[detail::gat_block], pt[detail::gat_block], pa[detail::gat_block];
        for (int b = 0; b < nb; ++b) xrb[b] = pt[b] = pa[b] = S(0);
        auto edge_terms = [&](const S& ds, const S& a, const S* xl) {
          for (int b = 0; b < nb; ++b) {
            const int c = c0 + b;
            S z = xr[c] + xl[c];
            if (sh.edge >= 0) z += a * w[c];
            const R f = detail::gat_leak(z, slope);
            const S t = z * f;
            const S dz = S(ds * att[c] * f);
            xrb[b] += dz;
            pt[b] += ds * t;
            pa[b] += dz * a;
          }
        };
        for (int e = e0; e < e1; ++e)
          if (src(e) != i) edge_terms(DS(e, k), sh.edge >= 0 ? S(A(e, 0)) : S(0), &XL(src(e), q0));
        const S* xl_self = &XL(i, q0);
        edge_terms(ds_self, abar, xl_self);
        for (int b = 0; b < nb; ++b) {
          const int c = c0 + b;
          XRbar(i, q0 + c) = xrb[b];
          XLbar(i, q0 + c) = alm_self * S(yb[c] * inv_k) + dz_of(ds_self, abar, xl_self, c);
          if (want_g) {
            P(i, q0 + c) = pt[b];
            if (sh.edge >= 0) P(i, KC + q0 + c) = pa[b];
          }
        }
      }
    }
    if (want_a && n > 0) {
      const S share = abar_self_bar / R(n);
      for (int e = e0; e < e1; ++e)
        if (src(e) != i) Abar(e, 0) += share;
    }
  });
  // the senders: XLbar(j) += alpha_e m_e Ybar_k(i) + dz_e over the edges e = (j -> i), i != j, in the
  // sender permutation's order, gat_block channels at a time
  const CMat<S, mem_t<Exec>> DSc = DS;
  detail::for_each_row<Mode>(exec, "hydragnn::GAT::attention_backward_senders", N, KOKKOS_LAMBDA(const long j) {
    const int m0 = send_ptr(j), m1 = send_ptr(j + 1), K = sh.K, C = sh.C;
    const R slope = R(sh.slope);
    for (int k = 0; k < K; ++k) {
      const long q0 = long(k) * C;
      const T* att = &p(sh.att + q0);
      const T* w = sh.edge >= 0 ? &p(sh.edge + q0) : att;
      const S* xl = &XL(j, q0);
      for (int c0 = 0; c0 < C; c0 += detail::gat_block) {
        const int nb = C - c0 < detail::gat_block ? C - c0 : detail::gat_block;
        S acc[detail::gat_block];
        for (int b = 0; b < nb; ++b) acc[b] = XLbar(j, q0 + c0 + b);
        for (int m = m0; m < m1; ++m) {
          const long e = send_perm(m), i = dst(e);
          if (i == j) continue;
          const S al = alpha(e, k);
          const S alm = drop ? S(al * R(keep(e, k))) : al;
          const S ds = DSc(e, k);
          const S a = sh.edge >= 0 ? S(A(e, 0)) : S(0);
          const S* xr = &XR(i, q0);
          const S* yb = sh.concat ? &Ybar(i, q0) : &Ybar(i, 0);
          for (int b = 0; b < nb; ++b) {
            const int c = c0 + b;
            S z = xr[c] + xl[c];
            if (sh.edge >= 0) z += a * w[c];
            const S dz = S(ds * att[c] * detail::gat_leak(z, slope));
            acc[b] += alm * S(yb[c] * inv_k) + dz;
          }
        }
        for (int b = 0; b < nb; ++b) XLbar(j, q0 + c0 + b) = acc[b];
      }
    }
  });
  if (!want_g) return;
  // the parameter gradients: each column summed over the receivers in ascending order, a block of
  // columns per thread (a row of the block per step: HostRow) or a column per thread
  constexpr long blk = detail::columns_per_thread<Mode>;
  const long pcols = sh.edge >= 0 ? 2 * KC : KC, bcols = sh.bias >= 0 ? sh.width() : 0;
  const long pblocks = (pcols + blk - 1) / blk, bblocks = (bcols + blk - 1) / blk;
  const CMat<S, mem_t<Exec>> Pc = P;
  Kokkos::parallel_for(
      "hydragnn::GAT::param_sums", Kokkos::RangePolicy<Exec>(exec, 0, pblocks + bblocks), KOKKOS_LAMBDA(const long b) {
        const bool bias = b >= pblocks;
        const long c0 = (bias ? b - pblocks : b) * blk, cols = bias ? bcols : pcols;
        const int nc = int(cols - c0 < blk ? cols - c0 : blk);
        S acc[blk];
        for (int u = 0; u < nc; ++u) acc[u] = S(0);
        for (long i = 0; i < N; ++i) {
          const S* row = bias ? &Ybar(i, c0) : &Pc(i, c0);
          for (int u = 0; u < nc; ++u) acc[u] += row[u];
        }
        for (int u = 0; u < nc; ++u) {
          const long col = c0 + u;
          const long off = bias ? sh.bias + col : (col < KC ? sh.att + col : sh.edge + (col - KC));
          g(off) += param_part(acc[u]);
        }
      });
}

}  // namespace kernels
}  // namespace hydragnn
