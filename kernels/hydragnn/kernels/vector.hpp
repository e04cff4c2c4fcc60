// SPDX-License-Identifier: BSD-3-Clause
// Vector-channel ops (PaiNN / EGNN-style equivariant features) on N x 3 x F views V(i, a, f),
// a = Cartesian component, f = channel. Each op has a hand-written backward written with the generic
// scalar ops (real or Dual), so running it on duals differentiates it once more.
//
// Elementwise ops run one (i, f) pair per work item and treat the three components inside it, in
// every mode. Ops whose output reduces over channels (vec_outer's rbar) are one thread per row in
// every mode (channels ascending). Gathers and segment sums reuse the matrix kernels of segment.hpp
// on the N x 3F view of the same (contiguous, LayoutRight) memory.
// Channel-mixing Linear on vectors is a dense layer on the (3N) x F view and lives with the layers.
#pragma once

#include <hydragnn/kernels/segment.hpp>

#include <stdexcept>

namespace hydragnn {

/// N x 3 x F vector features (index (i, a, f)); the same type as core/workspace.hpp's VFeat.
template <class S, class M> using VMat = Kokkos::View<S***, Kokkos::LayoutRight, M>;
template <class S, class M> using CVMat = Kokkos::View<const S***, Kokkos::LayoutRight, M>;

namespace kernels {
namespace detail {
/// The N x 3F matrix view of an N x 3 x F vector view (same memory; it must be contiguous).
template <class S, class M>
Mat<S, M> flat3(const VMat<S, M>& V) {
  if (!V.span_is_contiguous()) throw std::logic_error("hydragnn::Vector: N x 3 x F view must be contiguous");
  return Mat<S, M>(V.data(), V.extent(0), V.extent(1) * V.extent(2));
}
template <class S, class M>
CMat<S, M> flat3(const CVMat<S, M>& V) {
  if (!V.span_is_contiguous()) throw std::logic_error("hydragnn::Vector: N x 3 x F view must be contiguous");
  return CMat<S, M>(V.data(), V.extent(0), V.extent(1) * V.extent(2));
}
template <class S, class V>
KOKKOS_INLINE_FUNCTION void put3(const V& Y, long i, int a, long f, const S& v, bool accumulate) {
  if (accumulate)
    Y(i, a, f) += v;
  else
    Y(i, a, f) = v;
}
}  // namespace detail

// ---- scale by a scalar channel --------------------------------------------------------------

/// Y(i,a,f) (+)= V(i,a,f) s(i,f)                                // V: N x 3 x F, s: N x F -> Y: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_scale(const Exec& exec, const CVMat<S, mem_t<Exec>>& V, const CMat<S, mem_t<Exec>>& s,
               const VMat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::for_each_element<Mode>(exec, "hydragnn::Vector::scale", long(Y.extent(0)), long(Y.extent(2)),
                                 KOKKOS_LAMBDA(const long i, const long f) {
                                   const S w = s(i, f);
                                   for (int a = 0; a < 3; ++a) detail::put3(Y, i, a, f, S(V(i, a, f) * w), accumulate);
                                 });
}

/// Backward of vec_scale: Vbar(i,a,f) (+)= Ybar(i,a,f) s(i,f); sbar(i,f) (+)= sum_a Ybar(i,a,f) V(i,a,f).
/// Vbar or sbar of extent 0 is skipped.   // V, Ybar: N x 3 x F, s: N x F -> Vbar: N x 3 x F, sbar: N x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_scale_backward(const Exec& exec, const CVMat<S, mem_t<Exec>>& V, const CMat<S, mem_t<Exec>>& s,
                        const CVMat<S, mem_t<Exec>>& Ybar, const VMat<S, mem_t<Exec>>& Vbar,
                        const Mat<S, mem_t<Exec>>& sbar, bool accumulate_v, bool accumulate_s) {
  const bool do_v = Vbar.extent(0) > 0, do_s = sbar.extent(0) > 0;
  detail::for_each_element<Mode>(exec, "hydragnn::Vector::scale_backward", long(Ybar.extent(0)), long(Ybar.extent(2)),
                                 KOKKOS_LAMBDA(const long i, const long f) {
                                   const S w = s(i, f);
                                   S acc = (do_s && accumulate_s) ? S(sbar(i, f)) : S(0);
                                   for (int a = 0; a < 3; ++a) {
                                     const S yb = Ybar(i, a, f);
                                     if (do_v) detail::put3(Vbar, i, a, f, S(yb * w), accumulate_v);
                                     acc += yb * V(i, a, f);
                                   }
                                   if (do_s) sbar(i, f) = acc;
                                 });
}

// ---- dot ------------------------------------------------------------------------------------

/// Y(i,f) (+)= sum_a U(i,a,f) V(i,a,f)                           // U, V: N x 3 x F -> Y: N x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_dot(const Exec& exec, const CVMat<S, mem_t<Exec>>& U, const CVMat<S, mem_t<Exec>>& V,
             const Mat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::for_each_element<Mode>(exec, "hydragnn::Vector::dot", long(Y.extent(0)), long(Y.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long f) {
                                   S acc = accumulate ? S(Y(i, f)) : S(0);
                                   for (int a = 0; a < 3; ++a) acc += U(i, a, f) * V(i, a, f);
                                   Y(i, f) = acc;
                                 });
}

/// Backward of vec_dot: Ubar (+)= Ybar V, Vbar (+)= Ybar U (per component).
///                                        // U, V: N x 3 x F, Ybar: N x F -> Ubar, Vbar: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_dot_backward(const Exec& exec, const CVMat<S, mem_t<Exec>>& U, const CVMat<S, mem_t<Exec>>& V,
                      const CMat<S, mem_t<Exec>>& Ybar, const VMat<S, mem_t<Exec>>& Ubar,
                      const VMat<S, mem_t<Exec>>& Vbar, bool accumulate) {
  const bool do_u = Ubar.extent(0) > 0, do_v = Vbar.extent(0) > 0;
  detail::for_each_element<Mode>(exec, "hydragnn::Vector::dot_backward", long(Ybar.extent(0)), long(Ybar.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long f) {
                                   const S yb = Ybar(i, f);
                                   for (int a = 0; a < 3; ++a) {
                                     if (do_u) detail::put3(Ubar, i, a, f, S(yb * V(i, a, f)), accumulate);
                                     if (do_v) detail::put3(Vbar, i, a, f, S(yb * U(i, a, f)), accumulate);
                                   }
                                 });
}

// ---- norm -----------------------------------------------------------------------------------

/// Y(i,f) = sqrt(sum_a V(i,a,f)^2 + eps)                          // V: N x 3 x F -> Y: N x F
/// With eps = 0 a zero vector has norm 0 and gradient 0 (as torch.linalg.norm), not 0/0.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_norm(const Exec& exec, const CVMat<S, mem_t<Exec>>& V, real_t<S> eps, const Mat<S, mem_t<Exec>>& Y) {
  detail::for_each_element<Mode>(exec, "hydragnn::Vector::norm", long(Y.extent(0)), long(Y.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long f) {
                                   S acc(0);
                                   for (int a = 0; a < 3; ++a) acc += V(i, a, f) * V(i, a, f);
                                   const S n2 = acc + eps;
                                   Y(i, f) = scalar_traits<S>::primal(n2) > real_t<S>(0) ? S(math::sqrt(n2)) : S(0);
                                 });
}

/// Backward of vec_norm: Vbar(i,a,f) (+)= Ybar(i,f) V(i,a,f) / Y(i,f) (Y recomputed from V and eps;
/// 0 where Y = 0).
///                                              // V: N x 3 x F, Ybar: N x F -> Vbar: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_norm_backward(const Exec& exec, const CVMat<S, mem_t<Exec>>& V, real_t<S> eps,
                       const CMat<S, mem_t<Exec>>& Ybar, const VMat<S, mem_t<Exec>>& Vbar, bool accumulate) {
  detail::for_each_element<Mode>(exec, "hydragnn::Vector::norm_backward", long(Ybar.extent(0)), long(Ybar.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long f) {
                                   S acc(0);
                                   for (int a = 0; a < 3; ++a) acc += V(i, a, f) * V(i, a, f);
                                   const S n2 = acc + eps;
                                   const S g = scalar_traits<S>::primal(n2) > real_t<S>(0) ? S(Ybar(i, f) / math::sqrt(n2)) : S(0);
                                   for (int a = 0; a < 3; ++a) detail::put3(Vbar, i, a, f, S(g * V(i, a, f)), accumulate);
                                 });
}

// ---- cross ----------------------------------------------------------------------------------

/// Y(i,:,f) (+)= U(i,:,f) x V(i,:,f)                             // U, V: N x 3 x F -> Y: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_cross(const Exec& exec, const CVMat<S, mem_t<Exec>>& U, const CVMat<S, mem_t<Exec>>& V,
               const VMat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::for_each_element<Mode>(exec, "hydragnn::Vector::cross", long(Y.extent(0)), long(Y.extent(2)),
                                 KOKKOS_LAMBDA(const long i, const long f) {
                                   for (int a = 0; a < 3; ++a) {
                                     const int b = (a + 1) % 3, c = (a + 2) % 3;
                                     detail::put3(Y, i, a, f, S(U(i, b, f) * V(i, c, f) - U(i, c, f) * V(i, b, f)),
                                                  accumulate);
                                   }
                                 });
}

/// Backward of vec_cross: Ubar (+)= V x Ybar, Vbar (+)= Ybar x U (per channel).
///                                           // U, V, Ybar: N x 3 x F -> Ubar, Vbar: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_cross_backward(const Exec& exec, const CVMat<S, mem_t<Exec>>& U, const CVMat<S, mem_t<Exec>>& V,
                        const CVMat<S, mem_t<Exec>>& Ybar, const VMat<S, mem_t<Exec>>& Ubar,
                        const VMat<S, mem_t<Exec>>& Vbar, bool accumulate) {
  const bool do_u = Ubar.extent(0) > 0, do_v = Vbar.extent(0) > 0;
  detail::for_each_element<Mode>(
      exec, "hydragnn::Vector::cross_backward", long(Ybar.extent(0)), long(Ybar.extent(2)),
      KOKKOS_LAMBDA(const long i, const long f) {
        for (int a = 0; a < 3; ++a) {
          const int b = (a + 1) % 3, c = (a + 2) % 3;
          if (do_u) detail::put3(Ubar, i, a, f, S(V(i, b, f) * Ybar(i, c, f) - V(i, c, f) * Ybar(i, b, f)), accumulate);
          if (do_v) detail::put3(Vbar, i, a, f, S(Ybar(i, b, f) * U(i, c, f) - Ybar(i, c, f) * U(i, b, f)), accumulate);
        }
      });
}

// ---- edge outer product ---------------------------------------------------------------------

/// Y(e,a,f) (+)= r(e,a) X(e,f)                              // r: E x 3, X: E x F -> Y: E x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_outer(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CMat<S, mem_t<Exec>>& X,
               const VMat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::for_each_element<Mode>(exec, "hydragnn::Vector::outer", long(Y.extent(0)), long(Y.extent(2)),
                                 KOKKOS_LAMBDA(const long e, const long f) {
                                   const S x = X(e, f);
                                   for (int a = 0; a < 3; ++a) detail::put3(Y, e, a, f, S(r(e, a) * x), accumulate);
                                 });
}

/// Backward of vec_outer: Xbar(e,f) (+)= sum_a Ybar(e,a,f) r(e,a);  rbar(e,a) (+)= sum_f Ybar(e,a,f) X(e,f)
/// (channels ascending, one thread per edge in every mode). rbar or Xbar of extent 0 is skipped.
///                                 // r: E x 3, X: E x F, Ybar: E x 3 x F -> rbar: E x 3, Xbar: E x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_outer_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& r, const CMat<S, mem_t<Exec>>& X,
                        const CVMat<S, mem_t<Exec>>& Ybar, const Mat<S, mem_t<Exec>>& rbar,
                        const Mat<S, mem_t<Exec>>& Xbar, bool accumulate_r, bool accumulate_x) {
  const long E = long(Ybar.extent(0)), F = long(Ybar.extent(2));
  if (Xbar.extent(0) > 0)
    detail::for_each_element<Mode>(exec, "hydragnn::Vector::outer_backward_x", E, F,
                                   KOKKOS_LAMBDA(const long e, const long f) {
                                     S acc = accumulate_x ? S(Xbar(e, f)) : S(0);
                                     for (int a = 0; a < 3; ++a) acc += Ybar(e, a, f) * r(e, a);
                                     Xbar(e, f) = acc;
                                   });
  if (rbar.extent(0) > 0)
    detail::for_each_row<Mode>(exec, "hydragnn::Vector::outer_backward_r", E, KOKKOS_LAMBDA(const long e) {
      for (int a = 0; a < 3; ++a) {
        S acc = accumulate_r ? S(rbar(e, a)) : S(0);
        for (long f = 0; f < F; ++f) acc += Ybar(e, a, f) * X(e, f);
        rbar(e, a) = acc;
      }
    });
}

// ---- gathers and segment sums (the matrix kernels on the N x 3F view) -----------------------

/// Y(e,:,:) (+)= V(idx(e),:,:)                               // V: N x 3 x F, idx: E -> Y: E x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_gather(const Exec& exec, const CVMat<S, mem_t<Exec>>& V, const CVec<int, mem_t<Exec>>& idx,
                const VMat<S, mem_t<Exec>>& Y, bool accumulate = false) {
  detail::gather_impl<Mode>(exec, "hydragnn::Vector::gather", detail::flat3(V), idx, detail::flat3(Y), accumulate);
}

/// Backward of a gather by a sorted idx (by dst): CSR segment sum.   // Ybar: E x 3 x F, ptr: N+1 -> Vbar: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_gather_backward(const Exec& exec, const CVMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& ptr,
                         const VMat<S, mem_t<Exec>>& Vbar, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Vector::gather_backward", detail::flat3(Ybar),
                         detail::CsrItems<mem_t<Exec>>{ptr}, detail::flat3(Vbar), accumulate);
}

/// Backward of a gather by src: segment sum through (send_perm, send_ptr).
///                                           // Ybar: E x 3 x F, perm: E, ptr: N+1 -> Vbar: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_gather_backward_perm(const Exec& exec, const CVMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& perm,
                              const CVec<int, mem_t<Exec>>& ptr, const VMat<S, mem_t<Exec>>& Vbar, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Vector::gather_backward_perm", detail::flat3(Ybar),
                         detail::PermItems<mem_t<Exec>>{perm, ptr}, detail::flat3(Vbar), accumulate);
}

/// Y(s,:,:) (+)= sum_{k in [ptr(s), ptr(s+1))} V(k,:,:)          // V: E x 3 x F, ptr: N+1 -> Y: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_segment_sum(const Exec& exec, const CVMat<S, mem_t<Exec>>& V, const CVec<int, mem_t<Exec>>& ptr,
                     const VMat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Vector::segment_sum", detail::flat3(V), detail::CsrItems<mem_t<Exec>>{ptr},
                         detail::flat3(Y), accumulate);
}

/// Y(s,:,:) (+)= sum_{q in [ptr(s), ptr(s+1))} V(perm(q),:,:)   // V: E x 3 x F, perm: E, ptr: N+1 -> Y: N x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_segment_sum_perm(const Exec& exec, const CVMat<S, mem_t<Exec>>& V, const CVec<int, mem_t<Exec>>& perm,
                          const CVec<int, mem_t<Exec>>& ptr, const VMat<S, mem_t<Exec>>& Y, bool accumulate) {
  detail::sum_impl<Mode>(exec, "hydragnn::Vector::segment_sum_perm", detail::flat3(V),
                         detail::PermItems<mem_t<Exec>>{perm, ptr}, detail::flat3(Y), accumulate);
}

/// Backward of vec_segment_sum: Vbar(k,:,:) (+)= Ybar(s,:,:).    // Ybar: N x 3 x F, ptr: N+1 -> Vbar: E x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_segment_sum_backward(const Exec& exec, const CVMat<S, mem_t<Exec>>& Ybar, const CVec<int, mem_t<Exec>>& ptr,
                              const VMat<S, mem_t<Exec>>& Vbar, bool accumulate) {
  detail::sum_backward_impl<Mode>(exec, "hydragnn::Vector::segment_sum_backward", detail::flat3(Ybar),
                                  detail::CsrItems<mem_t<Exec>>{ptr}, detail::flat3(Vbar), accumulate);
}

/// Backward of vec_segment_sum_perm.                  // Ybar: N x 3 x F, perm: E, ptr: N+1 -> Vbar: E x 3 x F
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void vec_segment_sum_perm_backward(const Exec& exec, const CVMat<S, mem_t<Exec>>& Ybar,
                                   const CVec<int, mem_t<Exec>>& perm, const CVec<int, mem_t<Exec>>& ptr,
                                   const VMat<S, mem_t<Exec>>& Vbar, bool accumulate) {
  detail::sum_backward_impl<Mode>(exec, "hydragnn::Vector::segment_sum_perm_backward", detail::flat3(Ybar),
                                  detail::PermItems<mem_t<Exec>>{perm, ptr}, detail::flat3(Vbar), accumulate);
}

}  // namespace kernels
}  // namespace hydragnn
