// SPDX-License-Identifier: BSD-3-Clause
// Fused continuous-filter convolution (SchNet CFConv) message passing.
//
//   agg(i,f) = sum_{e in in(i)} x(src(e), f) * W(e,f) * C(e)
//
// gather -> multiply -> segment-sum in one pass over each receiver's contiguous edge range, so the
// edges x channels message tensor is never stored. Backward:
//   xbar(j,f) = sum_{e: src(e)=j} aggbar(dst(e),f) W(e,f) C(e)   (segment over the sender permutation)
//   Wbar(e,f) = aggbar(dst(e),f) x(src(e),f) C(e)
//   Cbar(e)  += sum_f aggbar(dst(e),f) x(src(e),f) W(e,f)
#pragma once

#include <hydragnn/core/types.hpp>

namespace hydragnn {
namespace kernels {

template <class Exec, class S>
void cfconv_forward(const Exec& exec, const CMat<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& W,
                    const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& row_ptr,
                    const CVec<int, mem_t<Exec>>& src, const Mat<S, mem_t<Exec>>& agg) {
  const long n = long(agg.extent(0)), F = long(agg.extent(1));
  Kokkos::parallel_for(
      "hydragnn::CFConv::forward", Kokkos::RangePolicy<Exec>(exec, 0, n * F), KOKKOS_LAMBDA(const long k) {
        const long i = k / F, f = k % F;
        S acc(0);
        for (int e = row_ptr(i); e < row_ptr(i + 1); ++e) acc += x(src(e), f) * W(e, f) * C(e);
        agg(i, f) = acc;
      });
}

template <class Exec, class S>
void cfconv_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& W,
                     const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& dst,
                     const CVec<int, mem_t<Exec>>& src, const CVec<int, mem_t<Exec>>& send_perm,
                     const CVec<int, mem_t<Exec>>& send_ptr, const CMat<S, mem_t<Exec>>& aggbar,
                     const Mat<S, mem_t<Exec>>& xbar, const Mat<S, mem_t<Exec>>& Wbar, const Vec<S, mem_t<Exec>>& Cbar) {
  const long n = long(xbar.extent(0)), F = long(xbar.extent(1)), E = long(W.extent(0));
  Kokkos::parallel_for(
      "hydragnn::CFConv::backward_nodes", Kokkos::RangePolicy<Exec>(exec, 0, n * F), KOKKOS_LAMBDA(const long k) {
        const long j = k / F, f = k % F;
        S acc(0);
        for (int q = send_ptr(j); q < send_ptr(j + 1); ++q) {
          const int e = send_perm(q);
          acc += aggbar(dst(e), f) * W(e, f) * C(e);
        }
        xbar(j, f) = acc;
      });
  Kokkos::parallel_for(
      "hydragnn::CFConv::backward_edges", Kokkos::RangePolicy<Exec>(exec, 0, E), KOKKOS_LAMBDA(const long e) {
        S c_acc(0);
        const int i = dst(e), j = src(e);
        for (long f = 0; f < F; ++f) {
          const S t = aggbar(i, f) * x(j, f);
          Wbar(e, f) = t * C(e);
          c_acc += t * W(e, f);
        }
        Cbar(e) += c_acc;
      });
}

}  // namespace kernels
}  // namespace hydragnn
