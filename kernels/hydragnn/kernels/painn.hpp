// SPDX-License-Identifier: BSD-3-Clause
// Ops of the polarizable atom interaction network (HydraGNN's PainnMessage / PainnUpdate, commit
// d251f816), forward and backward, generic in the scalar so that the dual pass differentiates them
// once more.
//
// Conventions: edge e has receiver i = dst(e) (messages are summed there, over its contiguous CSR
// range) and sender j = src(e); r_e = pos[dst] - pos[src] + S_e, d_e = |r_e|. A layer has F channels;
// phi = scalar_message_mlp(s) is N x 3F, W = filter_layer(rbf(d)) is E x 3F, C the cosine cutoff (E)
// and u the edge direction (E x 3, painn_direction). Column blocks of 3F: [gate_state_vector |
// gate_edge_vector | message_scalar].
//
//   message  x(e,k)    = W(e,k) C(e) phi(j,k)                         k < 3F
//            s'(i,f)   = s(i,f) + sum_e x(e,2F+f)
//            v'(i,a,f) = v(i,a,f) + sum_e ( v(j,a,f) x(e,f) + x(e,F+f) u(e,a) )
//   update   inner(i,f) = sum_a Uv(i,a,f) Vv(i,a,f),   blocks of the update MLP output a (N x KF):
//            K = 3: [a_vv | a_sv | a_ss],  K = 2 (last layer): [a_sv | a_ss]
//            s''(i,f)   = s'(i,f) + (a_sv inner + a_ss),   v''(i,a,f) = v'(i,a,f) + a_vv Uv(i,a,f)
//
// Sums over edges run in CSR order (receiver segments forward; sender segments through send_perm
// in the backward), channels in ascending order: deterministic, no atomics. One natural form each;
// every mode (kernels/modes.hpp) is accepted (element kernels through for_each_element).
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/vector.hpp>

namespace hydragnn {
namespace kernels {
namespace detail {
/// Widest layer (channels) whose HostRow message kernels keep a node's sums in local arrays; wider
/// layers take the element-wise form (same sums, same order).
constexpr int painn_row_max = 128;

/// What edge e (sender j) adds to channel f of its receiver's message sums: the scalar as and the
/// vector components a0..a2 (u0..u2 = u(e, :)). Both forms of painn_message fold these.
template <class S, class CM, class CV>
KOKKOS_FORCEINLINE_FUNCTION void painn_message_terms(const CM& W, const CM& phi, const CV& v, long e, long j, long f,
                                                     long F, const S& c, const S& u0, const S& u1, const S& u2, S& as,
                                                     S& a0, S& a1, S& a2) {
  const S x0 = W(e, f) * c * phi(j, f), x1 = W(e, F + f) * c * phi(j, F + f);
  as += W(e, 2 * F + f) * c * phi(j, 2 * F + f);
  a0 += v(j, 0, f) * x0 + x1 * u0;
  a1 += v(j, 1, f) * x0 + x1 * u1;
  a2 += v(j, 2, f) * x0 + x1 * u2;
}

/// What edge e (receiver i, sender j) adds to channel f of its sender's backward sums: phibar's
/// three blocks pb0..pb2 and the gathered vector cotangent v0..v2 (painn_message_backward_nodes,
/// both forms; u0..u2 = u(e, :)).
template <class S, class CM, class CV>
KOKKOS_FORCEINLINE_FUNCTION void painn_message_backward_terms(const CM& W, const CM& phi, const CV& v, const CM& sbar,
                                                              const CV& vbar, long e, long i, long j, long f, long F,
                                                              const S& c, const S& u0, const S& u1, const S& u2, S& pb0,
                                                              S& pb1, S& pb2, S& v0, S& v1, S& v2) {
  const S b0 = vbar(i, 0, f), b1 = vbar(i, 1, f), b2 = vbar(i, 2, f);
  S xb0(0), xb1(0);
  xb0 += b0 * v(j, 0, f);
  xb1 += b0 * u0;
  xb0 += b1 * v(j, 1, f);
  xb1 += b1 * u1;
  xb0 += b2 * v(j, 2, f);
  xb1 += b2 * u2;
  const S a0 = W(e, f) * c;
  pb0 += xb0 * a0;
  pb1 += xb1 * (W(e, F + f) * c);
  pb2 += sbar(i, f) * (W(e, 2 * F + f) * c);
  const S x0 = a0 * phi(j, f);
  v0 += b0 * x0;
  v1 += b1 * x0;
  v2 += b2 * x0;
}
}  // namespace detail

/// HydraGNN's edge direction for PaiNN: its edge vector normalised as r / (d + 1e-9)
/// (get_edge_vectors_and_lengths) and then divided by d once more (PainnMessage: edge_diff /
/// edge_dist); HydraGNN's vector points from the aggregating atom to its neighbour, -r_e here:
///   u(e,a) = (-r(e,a) / (d(e) + eps)) / d(e),  eps = 1e-9.                  r: E x 3, d: E -> u: E x 3
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void painn_direction(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CVec<S, mem_t<Exec>>& d,
                     const Mat<S, mem_t<Exec>>& u) {
  using R = real_t<S>;
  Kokkos::parallel_for(
      "hydragnn::PaiNN::direction", Kokkos::RangePolicy<Exec>(exec, 0, long(r.extent(0))), KOKKOS_LAMBDA(const long e) {
        const S de = d(e), dn = de + R(1e-9);
        for (int a = 0; a < 3; ++a) u(e, a) = (-r(e, a) / dn) / de;
      });
}

/// Backward of painn_direction: with g(d) = 1 / ((d + eps) d),
///   rbar(e,a) += -ubar(e,a) g(d),   dbar(e) += g(d)^2 (2d + eps) sum_a ubar(e,a) r(e,a).
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void painn_direction_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CVec<S, mem_t<Exec>>& d,
                              const CMat<S, mem_t<Exec>>& ubar, const Mat<S, mem_t<Exec>>& rbar,
                              const Vec<S, mem_t<Exec>>& dbar) {
  using R = real_t<S>;
  Kokkos::parallel_for(
      "hydragnn::PaiNN::direction_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(r.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        const S de = d(e), dn = de + R(1e-9);
        const S g = R(1) / (dn * de);
        S dot(0);
        for (int a = 0; a < 3; ++a) {
          rbar(e, a) += -ubar(e, a) * g;
          dot += ubar(e, a) * r(e, a);
        }
        dbar(e) += g * g * (R(2) * de + R(1e-9)) * dot;
      });
}

/// The message: s' = s + sum_e x(e, 2F+f), v' = v + sum_e (v(j) x(e,f) + x(e,F+f) u(e)) (see above).
///   s: N x F, v: N x 3 x F, phi: N x 3F, W: E x 3F, C: E, u: E x 3, row_ptr: N+1, src: E
///   -> s_out: N x F, v_out: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void painn_message(const Exec& exec, const CMat<S, mem_t<Exec>>& s, const CVMat<S, mem_t<Exec>>& v,
                   const CMat<S, mem_t<Exec>>& phi, const CMat<S, mem_t<Exec>>& W, const CVec<S, mem_t<Exec>>& C,
                   const CMat<S, mem_t<Exec>>& u, const CVec<int, mem_t<Exec>>& row_ptr,
                   const CVec<int, mem_t<Exec>>& src, const Mat<S, mem_t<Exec>>& s_out,
                   const VMat<S, mem_t<Exec>>& v_out) {
  const long N = long(s.extent(0)), F = long(s.extent(1));
  if constexpr (detail::is_host_row<Mode>) {
    if (F <= detail::painn_row_max) {
      // one receiver per thread, its edges outermost and the channels innermost (contiguous rows);
      // each (i, f) sums its edges in the same order as below
      Kokkos::parallel_for("hydragnn::PaiNN::message", Kokkos::RangePolicy<Exec>(exec, 0, N), KOKKOS_LAMBDA(const long i) {
        S acc[4][detail::painn_row_max];
        for (int q = 0; q < 4; ++q)
          for (long f = 0; f < F; ++f) acc[q][f] = S(0);
        for (int e = row_ptr(i); e < row_ptr(i + 1); ++e) {
          const long j = src(e);
          const S c = C(e);
          const S u0 = u(e, 0), u1 = u(e, 1), u2 = u(e, 2);
          for (long f = 0; f < F; ++f)
            detail::painn_message_terms(W, phi, v, e, j, f, F, c, u0, u1, u2, acc[3][f], acc[0][f], acc[1][f], acc[2][f]);
        }
        for (long f = 0; f < F; ++f) {
          s_out(i, f) = s(i, f) + acc[3][f];
          for (int a = 0; a < 3; ++a) v_out(i, a, f) = v(i, a, f) + acc[a][f];
        }
      });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::PaiNN::message", N, F, KOKKOS_LAMBDA(const long i, const long f) {
    S as(0), av[3] = {S(0), S(0), S(0)};
    for (int e = row_ptr(i); e < row_ptr(i + 1); ++e)
      detail::painn_message_terms(W, phi, v, e, long(src(e)), f, F, C(e), u(e, 0), u(e, 1), u(e, 2), as, av[0], av[1],
                                  av[2]);
    s_out(i, f) = s(i, f) + as;
    for (int a = 0; a < 3; ++a) v_out(i, a, f) = v(i, a, f) + av[a];
  });
}

/// Backward of painn_message, per edge (receiver i, sender j): with the cotangents of x
///   xbar(e,f) = sum_a vbar(i,a,f) v(j,a,f),  xbar(e,F+f) = sum_a vbar(i,a,f) u(e,a),  xbar(e,2F+f) = sbar(i,f):
///   Wbar(e,k) = xbar(e,k) phi(j,k) C(e)                          (overwritten)
///   Cbar(e)  += sum_k xbar(e,k) phi(j,k) W(e,k)                  (skipped when Cbar is empty)
///   ubar(e,a) += sum_f vbar(i,a,f) x(e,F+f)                      (skipped when ubar is empty)
/// sbar: N x F, vbar: N x 3 x F -> Wbar: E x 3F, Cbar: E, ubar: E x 3
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void painn_message_backward_edges(const Exec& exec, const CVMat<S, mem_t<Exec>>& v, const CMat<S, mem_t<Exec>>& phi,
                                  const CMat<S, mem_t<Exec>>& W, const CVec<S, mem_t<Exec>>& C,
                                  const CMat<S, mem_t<Exec>>& u, const CVec<int, mem_t<Exec>>& dst,
                                  const CVec<int, mem_t<Exec>>& src, const CMat<S, mem_t<Exec>>& sbar,
                                  const CVMat<S, mem_t<Exec>>& vbar, const Mat<S, mem_t<Exec>>& Wbar,
                                  const Vec<S, mem_t<Exec>>& Cbar, const Mat<S, mem_t<Exec>>& ubar) {
  const long E = long(W.extent(0)), F = long(sbar.extent(1));
  const bool want_C = Cbar.extent(0) > 0, want_u = ubar.extent(0) > 0;
  detail::for_each_row<Mode>(exec, "hydragnn::PaiNN::message_backward_edges", E, KOKKOS_LAMBDA(const long e) {
    const long i = dst(e), j = src(e);
    const S c = C(e);
    S cb(0), ub[3] = {S(0), S(0), S(0)};
    for (long f = 0; f < F; ++f) {
      S xb0(0), xb1(0);
      for (int a = 0; a < 3; ++a) {
        xb0 += vbar(i, a, f) * v(j, a, f);
        xb1 += vbar(i, a, f) * u(e, a);
      }
      const S xb2 = sbar(i, f);
      const S p0 = phi(j, f), p1 = phi(j, F + f), p2 = phi(j, 2 * F + f);
      Wbar(e, f) = xb0 * p0 * c;
      Wbar(e, F + f) = xb1 * p1 * c;
      Wbar(e, 2 * F + f) = xb2 * p2 * c;
      if (want_C) cb += xb0 * p0 * W(e, f) + xb1 * p1 * W(e, F + f) + xb2 * p2 * W(e, 2 * F + f);
      if (want_u) {
        const S x1 = W(e, F + f) * c * p1;
        for (int a = 0; a < 3; ++a) ub[a] += vbar(i, a, f) * x1;
      }
    }
    if (want_C) Cbar(e) += cb;
    if (want_u)
      for (int a = 0; a < 3; ++a) ubar(e, a) += ub[a];
  });
}

/// Backward of painn_message, per sender j (its edges through send_perm / send_ptr, i = dst(e)):
///   phibar(j,k) = sum_e xbar(e,k) W(e,k) C(e)                                  (overwritten)
///   vbar_in(j,a,f) = vbar(j,a,f) + sum_e vbar(i,a,f) x(e,f)                    (overwritten; the residual)
/// with xbar as in painn_message_backward_edges.   -> phibar: N x 3F, vbar_in: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void painn_message_backward_nodes(const Exec& exec, const CVMat<S, mem_t<Exec>>& v, const CMat<S, mem_t<Exec>>& phi,
                                  const CMat<S, mem_t<Exec>>& W, const CVec<S, mem_t<Exec>>& C,
                                  const CMat<S, mem_t<Exec>>& u, const CVec<int, mem_t<Exec>>& dst,
                                  const CVec<int, mem_t<Exec>>& send_perm, const CVec<int, mem_t<Exec>>& send_ptr,
                                  const CMat<S, mem_t<Exec>>& sbar, const CVMat<S, mem_t<Exec>>& vbar,
                                  const Mat<S, mem_t<Exec>>& phibar, const VMat<S, mem_t<Exec>>& vbar_in) {
  const long N = long(sbar.extent(0)), F = long(sbar.extent(1));
  if constexpr (detail::is_host_row<Mode>) {
    if (F <= detail::painn_row_max) {
      // one sender per thread, its edges outermost and the channels innermost; same sums per (j, f)
      Kokkos::parallel_for(
          "hydragnn::PaiNN::message_backward_nodes", Kokkos::RangePolicy<Exec>(exec, 0, N), KOKKOS_LAMBDA(const long j) {
            constexpr int FM = detail::painn_row_max;
            S pb[3][FM], vb[3][FM];
            for (int q = 0; q < 3; ++q)
              for (long f = 0; f < F; ++f) pb[q][f] = vb[q][f] = S(0);
            for (int q = send_ptr(j); q < send_ptr(j + 1); ++q) {
              const long e = send_perm(q), i = dst(e);
              const S c = C(e);
              const S u0 = u(e, 0), u1 = u(e, 1), u2 = u(e, 2);
              for (long f = 0; f < F; ++f)
                detail::painn_message_backward_terms(W, phi, v, sbar, vbar, e, i, j, f, F, c, u0, u1, u2, pb[0][f],
                                                     pb[1][f], pb[2][f], vb[0][f], vb[1][f], vb[2][f]);
            }
            for (long f = 0; f < F; ++f) {
              for (int q = 0; q < 3; ++q) phibar(j, q * F + f) = pb[q][f];
              for (int a = 0; a < 3; ++a) vbar_in(j, a, f) = vbar(j, a, f) + vb[a][f];
            }
          });
      return;
    }
  }
  detail::for_each_element<Mode>(
      exec, "hydragnn::PaiNN::message_backward_nodes", N, F, KOKKOS_LAMBDA(const long j, const long f) {
        S pb0(0), pb1(0), pb2(0), vb[3] = {S(0), S(0), S(0)};
        for (int q = send_ptr(j); q < send_ptr(j + 1); ++q) {
          const long e = send_perm(q);
          detail::painn_message_backward_terms(W, phi, v, sbar, vbar, e, long(dst(e)), j, f, F, C(e), u(e, 0), u(e, 1),
                                               u(e, 2), pb0, pb1, pb2, vb[0], vb[1], vb[2]);
        }
        phibar(j, f) = pb0;
        phibar(j, F + f) = pb1;
        phibar(j, 2 * F + f) = pb2;
        for (int a = 0; a < 3; ++a) vbar_in(j, a, f) = vbar(j, a, f) + vb[a];
      });
}

/// The update: s'' = s' + (a_sv inner + a_ss), v'' = v' + a_vv Uv (K = 3; K = 2 has no a_vv and no v'').
///   a: N x KF, Uv, Vv: N x 3 x F, s: N x F, v: N x 3 x F -> s_out: N x F, v_out: N x 3 x F (K = 3)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void painn_update(const Exec& exec, const CMat<S, mem_t<Exec>>& a, const CVMat<S, mem_t<Exec>>& Uv,
                  const CVMat<S, mem_t<Exec>>& Vv, const CMat<S, mem_t<Exec>>& s, const CVMat<S, mem_t<Exec>>& v,
                  const Mat<S, mem_t<Exec>>& s_out, const VMat<S, mem_t<Exec>>& v_out) {
  const long N = long(s.extent(0)), F = long(s.extent(1));
  const int K = int(a.extent(1) / (F > 0 ? F : 1));
  detail::for_each_element<Mode>(exec, "hydragnn::PaiNN::update", N, F, KOKKOS_LAMBDA(const long i, const long f) {
    const long o = K == 3 ? F : 0;  // first column of a_sv
    S inner(0);
    for (int c = 0; c < 3; ++c) inner += Uv(i, c, f) * Vv(i, c, f);
    s_out(i, f) = s(i, f) + (a(i, o + f) * inner + a(i, o + F + f));
    if (K == 3)
      for (int c = 0; c < 3; ++c) v_out(i, c, f) = v(i, c, f) + a(i, f) * Uv(i, c, f);
  });
}

/// Backward of painn_update (overwrites its outputs; the residual cotangents s'bar = s''bar and
/// v'bar = v''bar are the caller's):
///   abar: a_ssbar = sbar, a_svbar = sbar inner, a_vvbar = sum_c vbar Uv
///   Uvbar = sbar a_sv Vv + vbar a_vv,   Vvbar = sbar a_sv Uv
/// sbar: N x F, vbar: N x 3 x F (K = 3; ignored for K = 2) -> abar: N x KF, Uvbar, Vvbar: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void painn_update_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& a, const CVMat<S, mem_t<Exec>>& Uv,
                           const CVMat<S, mem_t<Exec>>& Vv, const CMat<S, mem_t<Exec>>& sbar,
                           const CVMat<S, mem_t<Exec>>& vbar, const Mat<S, mem_t<Exec>>& abar,
                           const VMat<S, mem_t<Exec>>& Uvbar, const VMat<S, mem_t<Exec>>& Vvbar) {
  const long N = long(sbar.extent(0)), F = long(sbar.extent(1));
  const int K = int(a.extent(1) / (F > 0 ? F : 1));
  detail::for_each_element<Mode>(
      exec, "hydragnn::PaiNN::update_backward", N, F, KOKKOS_LAMBDA(const long i, const long f) {
        const long o = K == 3 ? F : 0;
        S inner(0);
        for (int c = 0; c < 3; ++c) inner += Uv(i, c, f) * Vv(i, c, f);
        const S sb = sbar(i, f), ib = sb * a(i, o + f);
        abar(i, o + f) = sb * inner;
        abar(i, o + F + f) = sb;
        if (K == 3) {
          S avb(0);
          for (int c = 0; c < 3; ++c) {
            avb += vbar(i, c, f) * Uv(i, c, f);
            Uvbar(i, c, f) = ib * Vv(i, c, f) + vbar(i, c, f) * a(i, f);
          }
          abar(i, f) = avb;
        } else {
          for (int c = 0; c < 3; ++c) Uvbar(i, c, f) = ib * Vv(i, c, f);
        }
        for (int c = 0; c < 3; ++c) Vvbar(i, c, f) = ib * Uv(i, c, f);
      });
}

}  // namespace kernels
}  // namespace hydragnn
