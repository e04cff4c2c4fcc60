// SPDX-License-Identifier: BSD-3-Clause
// Fused continuous-filter convolution (SchNet CFConv) message passing.
//
//   agg(i,f) = sum_{e in in(i)} x(src(e), f) * W(e,f) * C(e)
//
// gather -> multiply -> segment-sum in one pass over each receiver's contiguous edge range, so the
// edges x channels message tensor is never stored. Modes: HostRow keeps one receiver's (or sender's)
// F channels in a local array and walks its edges once; PerElement is one thread per (node, channel);
// TeamTiled one team per tile of nodes with lanes over channels. All sum each channel's terms in edge
// order, so they agree bitwise. Backward:
//   xbar(j,f) = sum_{e: src(e)=j} aggbar(dst(e),f) W(e,f) C(e)   (segment over the sender permutation)
//   Wbar(e,f) = aggbar(dst(e),f) x(src(e),f) C(e)
//   Cbar(e)  += sum_f aggbar(dst(e),f) x(src(e),f) W(e,f)
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>

namespace hydragnn {
namespace kernels {

template <class Exec, class S, class Mode = default_mode_t<Exec>>
void cfconv_forward(const Exec& exec, const CMat<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& W,
                    const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& row_ptr,
                    const CVec<int, mem_t<Exec>>& src, const Mat<S, mem_t<Exec>>& agg) {
  // x: N x F, W: E x F, C: E, row_ptr: N+1, src: E -> agg: N x F
  const long n = long(agg.extent(0)), F = long(agg.extent(1));
  if constexpr (std::is_same<Mode, exec_mode::HostRow>::value) {
    if (F <= detail::host_row_max) {
      Kokkos::parallel_for(
          "hydragnn::CFConv::forward", Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const long i) {
            S acc[detail::host_row_max];
            for (long f = 0; f < F; ++f) acc[f] = S(0);
            for (int e = row_ptr(i); e < row_ptr(i + 1); ++e) {
              const long j = src(e);
              const S c = C(e);
              for (long f = 0; f < F; ++f) acc[f] += x(j, f) * W(e, f) * c;
            }
            for (long f = 0; f < F; ++f) agg(i, f) = acc[f];
          });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::CFConv::forward", n, F, KOKKOS_LAMBDA(const long i, const long f) {
    S acc(0);
    for (int e = row_ptr(i); e < row_ptr(i + 1); ++e) acc += x(src(e), f) * W(e, f) * C(e);
    agg(i, f) = acc;
  });
}

/// xbar(j,f) = sum_{e: src(e)=j} aggbar(dst(e),f) W(e,f) C(e)      aggbar: N x F -> xbar: N x F (overwritten)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void cfconv_backward_nodes(const Exec& exec, const CMat<S, mem_t<Exec>>& W, const CVec<S, mem_t<Exec>>& C,
                           const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& send_perm,
                           const CVec<int, mem_t<Exec>>& send_ptr, const CMat<S, mem_t<Exec>>& aggbar,
                           const Mat<S, mem_t<Exec>>& xbar) {
  const long n = long(xbar.extent(0)), F = long(xbar.extent(1));
  if constexpr (std::is_same<Mode, exec_mode::HostRow>::value) {
    if (F <= detail::host_row_max) {
      Kokkos::parallel_for(
          "hydragnn::CFConv::backward_nodes", Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(const long j) {
            S acc[detail::host_row_max];
            for (long f = 0; f < F; ++f) acc[f] = S(0);
            for (int q = send_ptr(j); q < send_ptr(j + 1); ++q) {
              const int e = send_perm(q);
              const long i = dst(e);
              const S c = C(e);
              for (long f = 0; f < F; ++f) acc[f] += aggbar(i, f) * W(e, f) * c;
            }
            for (long f = 0; f < F; ++f) xbar(j, f) = acc[f];
          });
      return;
    }
  }
  detail::for_each_element<Mode>(exec, "hydragnn::CFConv::backward_nodes", n, F, KOKKOS_LAMBDA(const long j, const long f) {
    S acc(0);
    for (int q = send_ptr(j); q < send_ptr(j + 1); ++q) {
      const int e = send_perm(q);
      acc += aggbar(dst(e), f) * W(e, f) * C(e);
    }
    xbar(j, f) = acc;
  });
}

template <class Exec, class S, class Mode = default_mode_t<Exec>>
void cfconv_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& x, const CMat<S, mem_t<Exec>>& W,
                     const CVec<S, mem_t<Exec>>& C, const CVec<int, mem_t<Exec>>& dst,
                     const CVec<int, mem_t<Exec>>& src, const CVec<int, mem_t<Exec>>& send_perm,
                     const CVec<int, mem_t<Exec>>& send_ptr, const CMat<S, mem_t<Exec>>& aggbar,
                     const Mat<S, mem_t<Exec>>& xbar, const Mat<S, mem_t<Exec>>& Wbar, const Vec<S, mem_t<Exec>>& Cbar) {
  // aggbar: N x F -> xbar: N x F (overwritten), Wbar: E x F (overwritten), Cbar: E (accumulated;
  // skipped when Cbar is empty: no geometric gradient wanted)
  const long F = long(xbar.extent(1)), E = long(W.extent(0));
  const bool want_C = Cbar.extent(0) > 0;
  cfconv_backward_nodes<Exec, S, Mode>(exec, W, C, dst, send_perm, send_ptr, aggbar, xbar);
  // edges: one thread per edge in every mode (the channel sum for Cbar runs in channel order)
  Kokkos::parallel_for(
      "hydragnn::CFConv::backward_edges", Kokkos::RangePolicy<Exec>(exec, 0, E), KOKKOS_LAMBDA(const long e) {
        S c_acc(0);
        const int i = dst(e), j = src(e);
        for (long f = 0; f < F; ++f) {
          const S t = aggbar(i, f) * x(j, f);
          Wbar(e, f) = t * C(e);
          c_acc += t * W(e, f);
        }
        if (want_C) Cbar(e) += c_acc;
      });
}

}  // namespace kernels
}  // namespace hydragnn
