// SPDX-License-Identifier: BSD-3-Clause
// CGCNN's gated message and its sum (PyTorch Geometric's CGConv, aggr "add", no batch norm):
//
//   m_e = sigmoid(F_e) * softplus(S_e)          F, S: E x C (lin_f, lin_s of [x_i, x_j, edge_attr])
//   Y(i,c) = sum_{e in in(i)} m_e(c) + X(i,c)   the residual added after the sum, as CGConv
// Backward (Ybar given; the residual's part is the caller's):
//   Fbar(e,c) = Ybar(dst(e),c) softplus(S) sigmoid'(F),  Sbar(e,c) = Ybar(dst(e),c) sigmoid(F) sigmoid(S)
// softplus with PyTorch's threshold 20 (kernels/pointwise.hpp). Sums over a receiver's edges in CSR
// order: deterministic.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/pointwise.hpp>

namespace hydragnn {
namespace kernels {

namespace detail {
/// Elements of a HostRow block of cgcnn_message_backward: whole edge rows, at most this many
/// scalars (C <= cgcnn_block; wider falls back to a thread per element).
constexpr long cgcnn_block = 256;
/// fb[q], sb[q]: the cotangents of f[q], s[q] given the message's, g[q], q < n: a block of whole
/// edge rows taken flat, so that the loop vectorises over edges and channels alike (HydraGNN's
/// CGCNN keeps C = 1, where a row per thread ran one scalar element at a time).
template <class S>
KOKKOS_INLINE_FUNCTION void cgcnn_message_cotangents(const S* KOKKOS_RESTRICT f, const S* KOKKOS_RESTRICT s,
                                                     const S* KOKKOS_RESTRICT g, S* KOKKOS_RESTRICT fb,
                                                     S* KOKKOS_RESTRICT sb, const long n) {
  for (long q = 0; q < n; ++q) {
    fb[q] = g[q] * act::f(Activation::Softplus, s[q]) * act::df(Activation::Sigmoid, f[q]);
    sb[q] = g[q] * act::f(Activation::Sigmoid, f[q]) * act::df(Activation::Softplus, s[q]);
  }
}
}  // namespace detail

/// Y(i,c) = sum_{e in [ptr(i), ptr(i+1))} sigmoid(F(e,c)) softplus(S(e,c)) + X(i,c)
///                                             // F, S: E x C, ptr: N+1, X: N x C -> Y: N x C
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void cgcnn_message_sum(const Exec& exec, const CMat<S, mem_t<Exec>>& F, const CMat<S, mem_t<Exec>>& Sm,
                       const CVec<int, mem_t<Exec>>& ptr, const CMat<S, mem_t<Exec>>& X, const Mat<S, mem_t<Exec>>& Y) {
  detail::for_each_element<Mode>(exec, "hydragnn::CGCNN::message_sum", long(Y.extent(0)), long(Y.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long c) {
                                   S acc(0);
                                   for (int e = ptr(i); e < ptr(i + 1); ++e)
                                     acc += act::f(Activation::Sigmoid, S(F(e, c))) * act::f(Activation::Softplus, S(Sm(e, c)));
                                   Y(i, c) = acc + X(i, c);
                                 });
}

/// Backward of the gated message (without the residual): Fbar, Sbar (overwritten) from Ybar at each
/// edge's receiver.                          // F, S: E x C, Ybar: N x C, dst: E -> Fbar, Sbar: E x C
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void cgcnn_message_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& F, const CMat<S, mem_t<Exec>>& Sm,
                            const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& dst,
                            const Mat<S, mem_t<Exec>>& Fbar, const Mat<S, mem_t<Exec>>& Sbar) {
  const long E = long(F.extent(0)), C = long(F.extent(1));
  if constexpr (detail::is_host_row<Mode>) {
    if (C <= detail::cgcnn_block) {
      // blocks of whole edge rows taken flat: the receivers' cotangents gathered, then one
      // vectorised pass (the same expressions, element by element, as below)
      const long eb = detail::cgcnn_block / C;
      Kokkos::parallel_for(
          "hydragnn::CGCNN::message_backward", Kokkos::RangePolicy<Exec>(exec, 0, E > 0 ? (E + eb - 1) / eb : 0),
          KOKKOS_LAMBDA(const long b) {
            S g[detail::cgcnn_block];
            const long e0 = b * eb, ne = E - e0 < eb ? E - e0 : eb;
            for (long r = 0; r < ne; ++r)
              for (long c = 0; c < C; ++c) g[r * C + c] = Ybar(dst(e0 + r), c);
            detail::cgcnn_message_cotangents(&F(e0, 0), &Sm(e0, 0), g, &Fbar(e0, 0), &Sbar(e0, 0), ne * C);
          });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::CGCNN::message_backward", long(F.extent(0)), long(F.extent(1)),
                                 KOKKOS_LAMBDA(const long e, const long c) {
                                   const S g = Ybar(dst(e), c), f = F(e, c), s = Sm(e, c);
                                   Fbar(e, c) = g * act::f(Activation::Softplus, s) * act::df(Activation::Sigmoid, f);
                                   Sbar(e, c) = g * act::f(Activation::Sigmoid, f) * act::df(Activation::Softplus, s);
                                 });
}

}  // namespace kernels
}  // namespace hydragnn
