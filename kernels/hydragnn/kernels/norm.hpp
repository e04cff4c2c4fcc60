// SPDX-License-Identifier: BSD-3-Clause
// Batch normalisation over the rows (nodes) of a batch, PyTorch BatchNorm1d semantics as PyG's
// BatchNorm (eps 1e-5, momentum 0.1, affine, running statistics tracked) — forward, hand-written
// backward, generic in the scalar so that the dual pass differentiates them once more.
//
//   X: N x C.  Per channel c:
//   training (batch statistics):  mu_c = (1/N) sum_i X(i,c),  var_c = (1/N) sum_i (X(i,c) - mu_c)^2
//   evaluation (running):         mu_c = running_mean_c,      var_c = running_var_c
//   Xhat(i,c) = (X(i,c) - mu_c) r_c,  r_c = 1 / sqrt(var_c + eps);   Y(i,c) = gamma_c Xhat(i,c) + beta_c
//
// Backward (Ybar given): gbar_c = sum_i Ybar(i,c) Xhat(i,c), bbar_c = sum_i Ybar(i,c) and
//   training:    Xbar(i,c) = gamma_c r_c (Ybar(i,c) - bbar_c / N - Xhat(i,c) gbar_c / N)
//   evaluation:  Xbar(i,c) = gamma_c r_c Ybar(i,c)
// Running update (training step): running_mean <- (1 - m) running_mean + m mu,
//   running_var <- (1 - m) running_var + m var N / (N - 1)  (unbiased, as PyTorch).
// Column sums walk the rows in ascending order, one thread per channel (HostRow: per block of 16
// channels): deterministic, no atomics, the same sums in every mode.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>

#include <cmath>

namespace hydragnn {
namespace kernels {

/// Training-mode statistics: mu(c), r(c) = 1/sqrt(var(c) + eps) of the columns of X; when `record`
/// is not empty the primal mean and unbiased variance go to record(off + c), record(off + C + c).
///                                                     // X: N x C -> mu, r: C; record: >= off + 2C
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void batchnorm_batch_statistics(const Exec& exec, const CMat<S, mem_t<Exec>>& X, double eps,
                                const Vec<S, mem_t<Exec>>& mu, const Vec<S, mem_t<Exec>>& r,
                                const Vec<double, mem_t<Exec>>& record, long off) {
  const long N = long(X.extent(0)), C = long(X.extent(1));
  const bool rec = record.extent(0) > 0;
  constexpr long blk = detail::columns_per_thread<Mode>;
  Kokkos::parallel_for(
      "hydragnn::BatchNorm::batch_statistics", Kokkos::RangePolicy<Exec>(exec, 0, (C + blk - 1) / blk),
      KOKKOS_LAMBDA(const long b) {
        using R = real_t<S>;
        const long c0 = b * blk;
        const int nc = int(C - c0 < blk ? C - c0 : blk);
        S sum[blk], m[blk], sq[blk];
        for (int u = 0; u < nc; ++u) sum[u] = sq[u] = S(0);
        for (long i = 0; i < N; ++i)
          for (int u = 0; u < nc; ++u) sum[u] += X(i, c0 + u);
        for (int u = 0; u < nc; ++u) m[u] = sum[u] / R(N);
        for (long i = 0; i < N; ++i)
          for (int u = 0; u < nc; ++u) {
            const S d = X(i, c0 + u) - m[u];
            sq[u] += d * d;
          }
        for (int u = 0; u < nc; ++u) {
          const long c = c0 + u;
          const S var = sq[u] / R(N);
          mu(c) = m[u];
          r(c) = R(1) / math::sqrt(var + R(eps));
          if (rec) {
            record(off + c) = double(scalar_traits<S>::primal(m[u]));
            record(off + C + c) = N > 1 ? double(scalar_traits<S>::primal(sq[u])) / double(N - 1) : 0.0;
          }
        }
      });
}

/// Evaluation-mode statistics from the running buffers: mu(c) = stats(off + c), r(c) = 1/sqrt(stats(off + C + c) + eps).
template <class Exec, class S>
void batchnorm_running_statistics(const Exec& exec, const CVec<double, mem_t<Exec>>& stats, long off, double eps,
                                  const Vec<S, mem_t<Exec>>& mu, const Vec<S, mem_t<Exec>>& r) {
  const long C = long(mu.extent(0));
  Kokkos::parallel_for(
      "hydragnn::BatchNorm::running_statistics", Kokkos::RangePolicy<Exec>(exec, 0, C), KOKKOS_LAMBDA(const long c) {
        using R = real_t<S>;
        mu(c) = S(R(stats(off + c)));
        r(c) = S(R(1.0 / std::sqrt(stats(off + C + c) + eps)));
      });
}

/// Xhat = (X - mu) r, Y = gamma Xhat + beta with gamma = p(w_off + c), beta = p(b_off + c).
///                                                               // X: N x C -> Xhat, Y: N x C
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void batchnorm_forward(const Exec& exec, const CMat<S, mem_t<Exec>>& X, const CVec<S, mem_t<Exec>>& mu,
                       const CVec<S, mem_t<Exec>>& r, const CVec<T, mem_t<Exec>>& p, long w_off, long b_off,
                       const Mat<S, mem_t<Exec>>& Xhat, const Mat<S, mem_t<Exec>>& Y) {
  detail::for_each_element<Mode>(exec, "hydragnn::BatchNorm::forward", long(X.extent(0)), long(X.extent(1)),
                                 KOKKOS_LAMBDA(const long i, const long c) {
                                   const S xh = (X(i, c) - mu(c)) * r(c);
                                   Xhat(i, c) = xh;
                                   Y(i, c) = xh * p(w_off + c) + p(b_off + c);
                                 });
}

/// Backward: gamma/beta gradients into g (skipped when g is empty; g real: param_part) and Xbar
/// (overwritten), batch statistics (training) or running ones (evaluation).
///                                             // Xhat, Ybar: N x C, r: C -> Xbar: N x C; colsum: 2C scratch
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void batchnorm_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& Xhat, const CVec<S, mem_t<Exec>>& r,
                        const CMat<S, mem_t<Exec>>& Ybar, const CVec<T, mem_t<Exec>>& p, long w_off, long b_off,
                        bool batch_statistics, const Vec<real_t<S>, mem_t<Exec>>& g, const Vec<S, mem_t<Exec>>& colsum,
                        const Mat<S, mem_t<Exec>>& Xbar) {
  const long N = long(Xhat.extent(0)), C = long(Xhat.extent(1));
  const bool want_params = g.extent(0) > 0;
  constexpr long blk = detail::columns_per_thread<Mode>;
  Kokkos::parallel_for(
      "hydragnn::BatchNorm::backward_sums", Kokkos::RangePolicy<Exec>(exec, 0, (C + blk - 1) / blk),
      KOKKOS_LAMBDA(const long b) {
        const long c0 = b * blk;
        const int nc = int(C - c0 < blk ? C - c0 : blk);
        S sb[blk], sg[blk];
        for (int u = 0; u < nc; ++u) sb[u] = sg[u] = S(0);
        for (long i = 0; i < N; ++i)
          for (int u = 0; u < nc; ++u) {
            sb[u] += Ybar(i, c0 + u);
            sg[u] += Ybar(i, c0 + u) * Xhat(i, c0 + u);
          }
        for (int u = 0; u < nc; ++u) {
          const long c = c0 + u;
          colsum(c) = sb[u];
          colsum(C + c) = sg[u];
          if (want_params) {
            g(w_off + c) += param_part(sg[u]);
            g(b_off + c) += param_part(sb[u]);
          }
        }
      });
  using R = real_t<S>;
  const R invN = R(1) / R(N > 0 ? N : 1);
  detail::for_each_element<Mode>(exec, "hydragnn::BatchNorm::backward", N, C, KOKKOS_LAMBDA(const long i, const long c) {
    const S scale = r(c) * p(w_off + c);
    if (batch_statistics)
      Xbar(i, c) = scale * (Ybar(i, c) - colsum(c) * invN - Xhat(i, c) * (colsum(C + c) * invN));
    else
      Xbar(i, c) = scale * Ybar(i, c);
  });
}

/// Fold recorded batch statistics into the running ones: stats = (1 - m) stats + m record (both laid
/// out as [mean C | var C] per layer); count(k) += 1 for each layer's num_batches_tracked slot.
template <class Exec>
void batchnorm_update_running(const Exec& exec, const CVec<double, mem_t<Exec>>& record, double momentum,
                              const Vec<double, mem_t<Exec>>& stats) {
  Kokkos::parallel_for(
      "hydragnn::BatchNorm::update_running", Kokkos::RangePolicy<Exec>(exec, 0, long(stats.extent(0))),
      KOKKOS_LAMBDA(const long k) { stats(k) = (1.0 - momentum) * stats(k) + momentum * record(k); });
}

}  // namespace kernels
}  // namespace hydragnn
