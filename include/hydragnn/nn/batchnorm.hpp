// SPDX-License-Identifier: BSD-3-Clause
// BatchNorm: PyG's BatchNorm (torch BatchNorm1d over the nodes of a batch; kernels/norm.hpp) as a
// layer of the flat parameter buffer. Trainable: NAME.module.weight (gamma, init 1) and
// NAME.module.bias (beta, init 0). Running statistics are not parameters: they live in the model's
// buffer (running_mean, running_var per layer) at `stats_off`, laid out [mean C | var C].
// Batch statistics in training, running ones otherwise; the caller says which.
#pragma once

#include <hydragnn/core/workspace.hpp>
#include <hydragnn/kernels/norm.hpp>

#include <string>

namespace hydragnn {

struct BatchNorm {
  static constexpr double eps = 1e-5;       ///< PyG / torch default
  static constexpr double momentum = 0.1;   ///< PyG / torch default
  int channels = 0;
  long w_off = 0, b_off = 0;  ///< gamma, beta in the parameter buffer
  long stats_off = 0;         ///< running mean and variance in the model's statistics buffer
  std::string label = "hydragnn::BatchNorm";

  BatchNorm() = default;
  /// name: the module's prefix (HydraGNN: feature_layers.<l>); stats_offset: where its 2C running
  /// statistics start in the model's statistics buffer.
  BatchNorm(ParamAllocator& alloc, int C, long stats_offset, const std::string& name)
      : channels(C), stats_off(stats_offset), label("hydragnn::BatchNorm::" + name) {
    w_off = long(alloc.take_constant(std::size_t(C), 1.0, name + ".module.weight", {C}));
    b_off = long(alloc.take_constant(std::size_t(C), 0.0, name + ".module.bias", {C}));
  }
  std::size_t num_statistics() const { return 2 * std::size_t(channels); }

  template <class S, class M>
  struct Cache {
    Vec<S, M> mu, r;  ///< C: mean and 1/sqrt(var + eps) used
    Mat<S, M> xhat;   ///< N x C
    bool batch_statistics = false;
  };

  /// Y = BN(X) into a workspace view (slot `slot`); with batch statistics, `record` (when not
  /// empty) receives the batch's mean and unbiased variance at stats_off for the running update.
  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> forward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Mat<S, mem_t<Exec>>& X,
                              bool batch_statistics, const Vec<double, mem_t<Exec>>& running,
                              const Vec<double, mem_t<Exec>>& record, Cache<S, mem_t<Exec>>& c, Workspace<mem_t<Exec>>& ws,
                              int slot) const {
    const long N = long(X.extent(0));
    c.batch_statistics = batch_statistics;
    c.mu = ws.template vec<S>(label + ".mu", slot, channels);
    c.r = ws.template vec<S>(label + ".r", slot, channels);
    c.xhat = ws.template mat<S>(label + ".xhat", slot, N, channels);
    if (batch_statistics)
      kernels::batchnorm_batch_statistics<Exec, S>(exec, X, eps, c.mu, c.r, record, stats_off);
    else
      kernels::batchnorm_running_statistics<Exec, S>(exec, running, stats_off, eps, c.mu, c.r);
    auto Y = ws.template mat<S>(label + ".out", slot, N, channels);
    kernels::batchnorm_forward<Exec, S, T>(exec, X, c.mu, c.r, w.p, w_off, b_off, c.xhat, Y);
    return Y;
  }

  /// Given Ybar: gamma/beta gradients into g (skipped when empty) and Xbar (a workspace view).
  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> backward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Cache<S, mem_t<Exec>>& c,
                               const Mat<S, mem_t<Exec>>& Ybar, const Vec<real_t<S>, mem_t<Exec>>& g,
                               Workspace<mem_t<Exec>>& ws, int slot) const {
    auto colsum = ws.template vec<S>(label + ".colsum", slot, 2 * std::size_t(channels));
    auto Xbar = ws.template mat<S>(label + ".x_bar", slot, Ybar.extent(0), channels);
    kernels::batchnorm_backward<Exec, S, T>(exec, c.xhat, c.r, Ybar, w.p, w_off, b_off, c.batch_statistics, g, colsum, Xbar);
    return Xbar;
  }
};

}  // namespace hydragnn
