// SPDX-License-Identifier: BSD-3-Clause
// Finite-difference reference for the training loss's parameter gradient (tests only).
#pragma once

#include <hydragnn/train/trainer.hpp>

#include <cstddef>

namespace hydragnn_test {

/// dL/dp_k by fourth-order central differences with step h (the model's parameters are host-accessible).
template <class ModelT>
double fd_loss_gradient(const typename ModelT::exec_space& exec, const ModelT& model,
                        const hydragnn::Batch<typename ModelT::memory_space>& batch, const hydragnn::LossSpec& w,
                        std::size_t k, double h) {
  using M = typename ModelT::memory_space;
  auto p = model.params();
  auto L = [&](double d) {
    const double old = p(k);
    p(k) = old + d;
    const double l = hydragnn::loss_and_grad(exec, model, batch, w, hydragnn::Vec<double, M>()).loss;
    p(k) = old;
    return l;
  };
  return (8 * (L(h) - L(-h)) - (L(2 * h) - L(-2 * h))) / (12 * h);
}

}  // namespace hydragnn_test
