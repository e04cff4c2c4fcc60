// SPDX-License-Identifier: BSD-3-Clause
// Edge ops of the E(n)-equivariant convolution (HydraGNN's E_GCL), forward and backward, generic in
// the scalar. Conventions: edge e has receiver dst(e) (messages are summed there) and sender src(e);
// r_e = pos[dst] - pos[src] + S_e; u is the N x 3 coordinate displacement carried by the layers
// (coordinates x = pos + u), so the layer's edge vector is d_e = r_e + u[dst] - u[src].
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/pointwise.hpp>

namespace hydragnn {
namespace kernels {

// One natural form each (one thread per element or per row); every mode (kernels/modes.hpp) is
// accepted and runs it.

/// d(e,:) = r(e,:) + u(dst(e),:) - u(src(e),:);  len(e) = |d(e)|              r: E x 3, u: N x 3
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void egnn_edge_vectors(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CMat<S, mem_t<Exec>>& u,
                       const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& src,
                       const Mat<S, mem_t<Exec>>& d, const Vec<S, mem_t<Exec>>& len) {
  const bool has_u = u.extent(0) > 0;
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::edge_vectors", Kokkos::RangePolicy<Exec>(exec, 0, long(r.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        for (int a = 0; a < 3; ++a) d(e, a) = has_u ? r(e, a) + u(dst(e), a) - u(src(e), a) : r(e, a);
        len(e) = math::sqrt(d(e, 0) * d(e, 0) + d(e, 1) * d(e, 1) + d(e, 2) * d(e, 2));
      });
}

/// pre(e,f) = A(dst(e),f) + B(src(e),f) + q(e) w(f),  w(f) = p(w_off + f ld)       A, B: N x F -> pre: E x F
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void egnn_edge_pre(const Exec& exec, const CMat<S, mem_t<Exec>>& A, const CMat<S, mem_t<Exec>>& B,
                   const CVec<T, mem_t<Exec>>& p, long w_off, long ld, const CVec<S, mem_t<Exec>>& q,
                   const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& src, const Mat<S, mem_t<Exec>>& pre) {
  const long E = long(pre.extent(0)), F = long(pre.extent(1));
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::edge_pre", Kokkos::RangePolicy<Exec>(exec, 0, E * F), KOKKOS_LAMBDA(const long k) {
        const long e = k / F, f = k % F;
        pre(e, f) = A(dst(e), f) + B(src(e), f) + q(e) * p(w_off + f * ld);
      });
}

namespace detail {
/// The radial column of W1, w(f) = p(w_off + f ld), f < F <= host_row_max, packed contiguous
/// (HostRow kernels; captured by value).
template <class T>
struct EGNNRadialColumn {
  T w[host_row_max];
};
template <class V>
EGNNRadialColumn<typename V::non_const_value_type> egnn_radial_column(const V& p, long w_off, long ld, long F) {
  EGNNRadialColumn<typename V::non_const_value_type> col;
  for (long f = 0; f < F; ++f) col.w[f] = p(w_off + f * ld);
  return col;
}

/// HostRow body of egnn_edge_pre_act for activation AF (F <= host_row_max).
template <Activation AF, class Exec, class S, class T>
void egnn_edge_pre_act_rows(const Exec& exec, const CMat<S, mem_t<Exec>>& A, const CMat<S, mem_t<Exec>>& B,
                            const EGNNRadialColumn<T>& col, const CVec<S, mem_t<Exec>>& q, const CVec<int, mem_t<Exec>>& dst,
                            const CVec<int, mem_t<Exec>>& src, const Mat<S, mem_t<Exec>>& pre, const Mat<S, mem_t<Exec>>& a) {
  const long F = long(pre.extent(1));
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::edge_pre_act", Kokkos::RangePolicy<Exec>(exec, 0, long(pre.extent(0))), KOKKOS_LAMBDA(const long e) {
        const S* ar = &A(dst(e), 0);
        const S* br = &B(src(e), 0);
        S* pr = &pre(e, 0);
        const S qe = q(e);
        for (long f = 0; f < F; ++f) pr[f] = ar[f] + br[f] + qe * col.w[f];
        act_forward_row<AF>(pr, &a(e, 0), F);
      });
}
}  // namespace detail

/// pre as egnn_edge_pre and a(e,f) = act(pre(e,f)), bitwise the two ops. HostRow on the host: one
/// pass over the edges (the radial column of W1 packed once, each row activated while in cache).
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void egnn_edge_pre_act(const Exec& exec, const CMat<S, mem_t<Exec>>& A, const CMat<S, mem_t<Exec>>& B,
                       const CVec<T, mem_t<Exec>>& p, long w_off, long ld, const CVec<S, mem_t<Exec>>& q,
                       const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& src, Activation act,
                       const Mat<S, mem_t<Exec>>& pre, const Mat<S, mem_t<Exec>>& a) {
  const long F = long(pre.extent(1));
  if constexpr (detail::host_rows_on_host<Mode, Exec>) {
    if (F <= detail::host_row_max) {
      const auto col = detail::egnn_radial_column(p, w_off, ld, F);
      detail::with_activation(act, [&](auto tag) {
        detail::egnn_edge_pre_act_rows<decltype(tag)::value, Exec, S>(exec, A, B, col, q, dst, src, pre, a);
      });
      return;
    }
  }
  egnn_edge_pre<Exec, S, T, Mode>(exec, A, B, p, w_off, ld, q, dst, src, pre);
  activation_forward<Exec, S, Mode>(exec, act, pre, a);
}

/// wbar(f) += sum_e prebar(e,f) q(e)  (skipped when g is empty; g real: param_part of the sum);
/// qbar(e) = sum_f prebar(e,f) w(f)
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void egnn_edge_pre_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& prebar, const CVec<T, mem_t<Exec>>& p,
                            long w_off, long ld, const CVec<S, mem_t<Exec>>& q, const Vec<real_t<S>, mem_t<Exec>>& g,
                            const Vec<S, mem_t<Exec>>& qbar) {
  const long E = long(prebar.extent(0)), F = long(prebar.extent(1));
  bool w_done = g.extent(0) == 0;
  if constexpr (detail::is_host_row<Mode>) {
    if (!w_done && F <= detail::host_row_max) {
      // one pass over the rows (contiguous), all F sums in a local row; e ascending per f as below
      Kokkos::parallel_for(
          "hydragnn::EGNNConv::edge_pre_backward_w", Kokkos::RangePolicy<Exec>(exec, 0, 1), KOKKOS_LAMBDA(const long) {
            S acc[detail::host_row_max];
            for (long f = 0; f < F; ++f) acc[f] = S(0);
            for (long e = 0; e < E; ++e) {
              const S qe = q(e);
              for (long f = 0; f < F; ++f) acc[f] += prebar(e, f) * qe;
            }
            for (long f = 0; f < F; ++f) g(w_off + f * ld) += param_part(acc[f]);
          });
      w_done = true;
    }
  }
  if (!w_done)
    Kokkos::parallel_for(
        "hydragnn::EGNNConv::edge_pre_backward_w", Kokkos::RangePolicy<Exec>(exec, 0, F), KOKKOS_LAMBDA(const long f) {
          S acc(0);
          for (long e = 0; e < E; ++e) acc += prebar(e, f) * q(e);
          g(w_off + f * ld) += param_part(acc);
        });
  if constexpr (detail::host_rows_on_host<Mode, Exec>) {
    if (F <= detail::host_row_max) {
      // 8 edges per work item: 8 independent sums (each f ascending, as below) with the radial
      // column of W1 packed once
      const auto col = detail::egnn_radial_column(p, w_off, ld, F);
      constexpr long G = 8;
      Kokkos::parallel_for(
          "hydragnn::EGNNConv::edge_pre_backward_q", Kokkos::RangePolicy<Exec>(exec, 0, (E + G - 1) / G),
          KOKKOS_LAMBDA(const long blk) {
            const long e0 = blk * G, ne = E - e0 < G ? E - e0 : G;
            if (ne == G) {
              S acc[G];
              for (long k = 0; k < G; ++k) acc[k] = S(0);
              const S* row = &prebar(e0, 0);
              const long ldp = long(prebar.stride(0));
              for (long f = 0; f < F; ++f)
                for (long k = 0; k < G; ++k) acc[k] += row[k * ldp + f] * col.w[f];
              for (long k = 0; k < G; ++k) qbar(e0 + k) = acc[k];
            } else {
              for (long e = e0; e < e0 + ne; ++e) {
                S acc(0);
                for (long f = 0; f < F; ++f) acc += prebar(e, f) * col.w[f];
                qbar(e) = acc;
              }
            }
          });
      return;
    }
  }
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::edge_pre_backward_q", Kokkos::RangePolicy<Exec>(exec, 0, E), KOKKOS_LAMBDA(const long e) {
        S acc(0);
        for (long f = 0; f < F; ++f) acc += prebar(e, f) * p(w_off + f * ld);
        qbar(e) = acc;
      });
}

/// Radial input q(e) = |d| (squared = false, HydraGNN) or |d|^2, and the envelope C(e) (1 if none).
template <class Exec, class S, class Env, class Mode = default_mode_t<Exec>>
void egnn_radial(const Exec& exec, const CVec<S, mem_t<Exec>>& len, bool squared, const Env& env,
                 const Vec<S, mem_t<Exec>>& q, const Vec<S, mem_t<Exec>>& C) {
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::radial", Kokkos::RangePolicy<Exec>(exec, 0, long(len.extent(0))), KOKKOS_LAMBDA(const long e) {
        q(e) = squared ? len(e) * len(e) : len(e);
        C(e) = env.value(len(e));
      });
}

/// Coordinate update (HydraGNN coord_model with norm_diff, eps 1, tanh gate, coords_weight 1):
///   trans_e = -d_e / (|d_e| + 1) * phi_e         (HydraGNN's coord_diff points from receiver to sender)
///   u'_i = u_i + (1 / max(1, deg_i)) sum_{e in in(i)} trans_e
/// HydraGNN clamps trans to [-100, 100]; |trans| < 1 here (|d|/(|d|+1) < 1, |tanh| < 1), so the clamp
/// never acts and is omitted.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void egnn_coord_update(const Exec& exec, const CMat<S, mem_t<Exec>>& u, const CMat<S, mem_t<Exec>>& d,
                       const CVec<S, mem_t<Exec>>& len, const CMat<S, mem_t<Exec>>& phi,
                       const CVec<int, mem_t<Exec>>& row_ptr, const Mat<S, mem_t<Exec>>& u_out) {
  const bool has_u = u.extent(0) > 0;
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::coord_update", Kokkos::RangePolicy<Exec>(exec, 0, long(u_out.extent(0)) * 3),
      KOKKOS_LAMBDA(const long k) {
        using R = real_t<S>;
        const long i = k / 3;
        const int a = int(k % 3);
        S acc(0);
        for (int e = row_ptr(i); e < row_ptr(i + 1); ++e) acc += -d(e, a) / (len(e) + R(1)) * phi(e, 0);
        const int deg = row_ptr(i + 1) - row_ptr(i);
        const S upd = acc * (R(1) / R(deg > 1 ? deg : 1));
        u_out(i, a) = has_u ? u(i, a) + upd : upd;
      });
}

/// Backward of the coordinate update: phibar(e) = sum_a transbar(e,a) (-n(e,a)),
/// dbar(e,:) += d/dd [-d/(|d|+1)] applied to transbar(e,:) phi(e); transbar(e,:) = ubar(dst(e),:) / deg.
/// (u' = u + ... passes ubar straight through; the caller keeps it.)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void egnn_coord_update_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& ubar_out, const CMat<S, mem_t<Exec>>& d,
                                const CVec<S, mem_t<Exec>>& len, const CMat<S, mem_t<Exec>>& phi,
                                const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& row_ptr,
                                const Mat<S, mem_t<Exec>>& phibar, const Mat<S, mem_t<Exec>>& dbar) {
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::coord_update_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        using R = real_t<S>;
        const int i = dst(e);
        const int deg = row_ptr(i + 1) - row_ptr(i);
        const R inv = R(1) / R(deg > 1 ? deg : 1);
        const S L = len(e);
        const S s = R(1) / (L + R(1));
        S tb[3];
        S tdot(0), pb(0);
        for (int a = 0; a < 3; ++a) {
          tb[a] = ubar_out(i, a) * inv;
          pb += tb[a] * (-d(e, a) * s);
          tdot += tb[a] * d(e, a);
        }
        phibar(e, 0) = pb;
        // n = d s,  s = 1/(|d|+1):  dn/dd . v = s v - s^2 (d.v) d / |d|;  trans = -n phi
        const S ph = phi(e, 0);
        for (int a = 0; a < 3; ++a) dbar(e, a) += -ph * (s * tb[a] - s * s * tdot * d(e, a) / L);
      });
}

/// dbar(e,:) += [qbar(e) dq/d|d| + Cbar(e) C'(|d|)] d(e,:)/|d(e)|       q = |d| or |d|^2
template <class Exec, class S, class Env, class Mode = default_mode_t<Exec>>
void egnn_radial_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& d, const CVec<S, mem_t<Exec>>& len,
                          bool squared, const Env& env, const CVec<S, mem_t<Exec>>& qbar, const CVec<S, mem_t<Exec>>& Cbar,
                          const Mat<S, mem_t<Exec>>& dbar) {
  const bool has_c = Cbar.extent(0) > 0;
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::radial_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(d.extent(0))),
      KOKKOS_LAMBDA(const long e) {
        using R = real_t<S>;
        S lbar = squared ? R(2) * len(e) * qbar(e) : qbar(e);
        if (has_c) lbar += Cbar(e) * env.derivative(len(e));
        const S s = lbar / len(e);
        for (int a = 0; a < 3; ++a) dbar(e, a) += s * d(e, a);
      });
}

/// rbar(e,:) += dbar(e,:) (skipped when rbar is empty);
/// ubar(i,:) (+)= sum_{dst(e)=i} dbar(e,:) - sum_{src(e)=i} dbar(e,:)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void egnn_edge_vectors_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& dbar, const CVec<int, mem_t<Exec>>& row_ptr,
                                const CVec<int, mem_t<Exec>>& send_perm, const CVec<int, mem_t<Exec>>& send_ptr,
                                const Mat<S, mem_t<Exec>>& rbar, const Mat<S, mem_t<Exec>>& ubar, bool accumulate_u) {
  if (rbar.extent(0) > 0)
    Kokkos::parallel_for(
        "hydragnn::EGNNConv::edge_vectors_backward_r", Kokkos::RangePolicy<Exec>(exec, 0, long(dbar.extent(0)) * 3),
        KOKKOS_LAMBDA(const long k) { rbar(k / 3, k % 3) += dbar(k / 3, k % 3); });
  if (ubar.extent(0) == 0) return;
  Kokkos::parallel_for(
      "hydragnn::EGNNConv::edge_vectors_backward_u", Kokkos::RangePolicy<Exec>(exec, 0, long(ubar.extent(0)) * 3),
      KOKKOS_LAMBDA(const long k) {
        const long i = k / 3;
        const int a = int(k % 3);
        S acc = accumulate_u ? ubar(i, a) : S(0);
        for (int e = row_ptr(i); e < row_ptr(i + 1); ++e) acc += dbar(e, a);
        for (int q = send_ptr(i); q < send_ptr(i + 1); ++q) acc -= dbar(send_perm(q), a);
        ubar(i, a) = acc;
      });
}

}  // namespace kernels
}  // namespace hydragnn
