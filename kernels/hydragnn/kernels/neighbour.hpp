// SPDX-License-Identifier: BSD-3-Clause
// Node-to-node aggregation over the receiver-sorted edges without an edge-sized intermediate, as the
// invariant layers without edge features use it (GIN's and MFC's sum, SAGE's mean). The forward is
// segment.hpp's reduction through the sender index, items src(e) of receiver segment i:
//   sum:   Y(i,c) (+)= sum_{e: dst(e) = i} X(src(e), c)              segment_sum_perm(X, src, row_ptr)
//   mean:  Y(i,c) (+)= (1/n_i) sum_{e: dst(e) = i} X(src(e), c)      segment_mean_perm(X, src, row_ptr)
// and its backward is here:
//   Xbar(j,c) (+)= sum_{e: src(e) = j} Ybar(dst(e), c) [/ n_dst(e)]
// walking sender segments (send_perm, send_ptr) in ascending order: deterministic.
//
// GIN's self term (PyG GINConv): Z(i,c) += (1 + eps) X(i,c) with a trainable eps.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/segment.hpp>

namespace hydragnn {
namespace kernels {
namespace detail {
/// Sender segment j's items: the receivers dst(send_perm(q)), q = send_ptr(j) .. send_ptr(j+1)-1.
template <class M>
struct ReceiverOfSenderItems {
  CVec<int, M> perm, dst, ptr;
  KOKKOS_INLINE_FUNCTION int begin(long s) const { return ptr(s); }
  KOKKOS_INLINE_FUNCTION int end(long s) const { return ptr(s + 1); }
  KOKKOS_INLINE_FUNCTION long item(int q) const { return dst(perm(q)); }
};

/// Sum of Ybar(k, c) [/ n_k] over the items k (n_k from the receiver CSR).
template <class S, class M, class Items>
struct NeighbourBackRed {
  using acc_t = S;
  Items items;
  CMat<S, M> Ybar;
  CVec<int, M> row_ptr;
  Mat<S, M> Xbar;
  bool mean, accumulate;
  KOKKOS_INLINE_FUNCTION void init(acc_t& a, long s, long c) const { a = accumulate ? S(Xbar(s, c)) : S(0); }
  KOKKOS_INLINE_FUNCTION void step(acc_t& a, long k, long c) const {
    if (mean)
      a += Ybar(k, c) / real_t<S>(row_ptr(k + 1) - row_ptr(k));
    else
      a += Ybar(k, c);
  }
  KOKKOS_INLINE_FUNCTION void finish(acc_t& a, long s, long c, int) const { Xbar(s, c) = a; }
};
}  // namespace detail

/// Backward of the neighbour sum (mean = false) or mean (mean = true):
/// Xbar(j,c) (+)= sum_{e: src(e) = j} Ybar(dst(e), c) [/ n_dst(e)]
///                                  // Ybar: N x F, send_perm: E, send_ptr: N+1, dst: E, row_ptr: N+1 -> Xbar: N x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void neighbour_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& send_perm,
                        const CVec<int, mem_t<Exec>>& send_ptr, const CVec<int, mem_t<Exec>>& dst,
                        const CVec<int, mem_t<Exec>>& row_ptr, bool mean, const Mat<S, mem_t<Exec>>& Xbar,
                        bool accumulate) {
  using Items = detail::ReceiverOfSenderItems<mem_t<Exec>>;
  detail::segment_reduce<Mode>(
      exec, mean ? "hydragnn::Neighbour::mean_backward" : "hydragnn::Neighbour::sum_backward", long(Xbar.extent(0)),
      long(Xbar.extent(1)),
      detail::NeighbourBackRed<S, mem_t<Exec>, Items>{Items{send_perm, dst, send_ptr}, Ybar, row_ptr, Xbar, mean,
                                                      accumulate});
}

/// GIN's self term: Z(i,c) += (1 + eps) X(i,c), eps = p(eps_off)      // X: N x F -> Z: N x F
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void gin_self(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<T, mem_t<Exec>>& p, long eps_off,
              const Mat<S, mem_t<Exec>>& Z) {
  detail::for_each_element<Mode>(exec, "hydragnn::GIN::self", long(X.extent(0)), long(X.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long c) { Z(i, c) += X(i, c) * (T(1) + p(eps_off)); });
}

/// Backward of gin_self: Xbar(i,c) += (1 + eps) Zbar(i,c); g(eps_off) += sum_{i,c} Zbar(i,c) X(i,c)
/// (rows summed into rowsum, then the rows in ascending order; skipped when g is empty).
///                                                  // X, Zbar: N x F, rowsum: N scratch -> Xbar: N x F
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void gin_self_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CMat<S, mem_t<Exec>>& Zbar,
                       const CVec<T, mem_t<Exec>>& p, long eps_off, const Vec<real_t<S>, mem_t<Exec>>& g,
                       const Vec<S, mem_t<Exec>>& rowsum, const Mat<S, mem_t<Exec>>& Xbar) {
  const long N = long(X.extent(0)), F = long(X.extent(1));
  detail::for_each_element<Mode>(exec, "hydragnn::GIN::self_backward", N, F, KOKKOS_LAMBDA(const long i, const long c) {
    Xbar(i, c) += Zbar(i, c) * (T(1) + p(eps_off));
  });
  if (g.extent(0) == 0) return;
  Kokkos::parallel_for(
      "hydragnn::GIN::eps_rows", Kokkos::RangePolicy<Exec>(exec, 0, N), KOKKOS_LAMBDA(const long i) {
        S acc(0);
        for (long c = 0; c < F; ++c) acc += Zbar(i, c) * X(i, c);
        rowsum(i) = acc;
      });
  Kokkos::parallel_for(
      "hydragnn::GIN::eps_grad", Kokkos::RangePolicy<Exec>(exec, 0, 1), KOKKOS_LAMBDA(const long) {
        S acc(0);
        for (long i = 0; i < N; ++i) acc += rowsum(i);
        g(eps_off) += param_part(acc);
      });
}

}  // namespace kernels
}  // namespace hydragnn
