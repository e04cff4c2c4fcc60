// SPDX-License-Identifier: BSD-3-Clause
// Triplet message passing of DimeNet (graph/triplets.hpp builds the CSR): a triplet t = (kj, ji)
// gathers the features of its kj edge, and triplet messages are summed onto their ji edge. Triplets
// are sorted by ji (ptr), so the sum is a CSR segment sum; the backward of the gather by kj is a
// segment sum through (kj_perm, kj_ptr). No atomics; every mode folds in the same order.
#pragma once

#include <hydragnn/kernels/segment.hpp>

namespace hydragnn {
namespace kernels {

/// T(t,:) (+)= X(kj(t),:)                                          // X: E x F, kj: T -> T: T x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_gather(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<int, mem_t<Exec>>& kj,
                    const Mat<S, mem_t<Exec>>& Tm, bool accumulate = false) {
  detail::gather_impl<Mode>(exec, "hydragnn::Triplet::gather", X, kj, Tm, accumulate);
}

/// Backward of triplet_gather: Xbar(e,:) (+)= sum_{q in [kj_ptr(e), kj_ptr(e+1))} Tbar(kj_perm(q),:)
///                                         // Tbar: T x F, kj_perm: T, kj_ptr: E+1 -> Xbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_gather_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Tbar, const CVec<int, mem_t<Exec>>& kj_perm,
                             const CVec<int, mem_t<Exec>>& kj_ptr, const Mat<S, mem_t<Exec>>& Xbar, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Triplet::gather_backward", Tbar,
                         detail::PermItems<mem_t<Exec>>{kj_perm, kj_ptr}, Xbar, accumulate);
}

/// Y(ji,:) (+)= sum_{t in [ptr(ji), ptr(ji+1))} T(t,:)                // T: T x F, ptr: E+1 -> Y: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_sum(const Exec& exec, const CMat<S, mem_t<Exec>>& Tm, const CVec<int, mem_t<Exec>>& ptr,
                 const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Triplet::sum", Tm, detail::CsrItems<mem_t<Exec>>{ptr}, Y, accumulate);
}

/// Backward of triplet_sum: Tbar(t,:) (+)= Ybar(ji(t),:)              // Ybar: E x F, ptr: E+1 -> Tbar: T x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void triplet_sum_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& ptr,
                          const Mat<S, mem_t<Exec>>& Tbar, bool accumulate) {
  detail::sum_backward_impl<Mode>(exec, "hydragnn::Triplet::sum_backward", Ybar, detail::CsrItems<mem_t<Exec>>{ptr},
                                  Tbar, accumulate);
}

}  // namespace kernels
}  // namespace hydragnn
