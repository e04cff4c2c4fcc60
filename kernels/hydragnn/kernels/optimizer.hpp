// SPDX-License-Identifier: BSD-3-Clause
// Optimizer update kernels over a flat parameter buffer: SGD (momentum), Adam (L2 weight decay) and
// AdamW (decoupled weight decay). The Optimizer class (train/optimizer.hpp) owns the moments and the
// step count and calls optimizer_step once per step.
#pragma once

#include <hydragnn/core/types.hpp>

namespace hydragnn {

enum class OptimizerType { SGD, Adam, AdamW };

/// Hyper-parameters of one update; c1 = 1 - beta1^t and c2 = 1 - beta2^t are the bias corrections.
struct OptimizerStepParams {
  OptimizerType type = OptimizerType::AdamW;
  double lr = 1e-3, weight_decay = 0.0, momentum = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double c1 = 1.0, c2 = 1.0;
};

namespace kernels {

/// One update of every parameter k (arithmetic in double, storage in T):
///   p, g, m, v : n      (m: first moment or SGD momentum buffer, v: second moment; updated in place)
///   frozen     : the parameters k < frozen are left untouched (no step, no decay: parameters without
///                requires_grad in torch; the model's trunk comes first in its buffer)
template <class Exec, class T>
void optimizer_step(const Exec& exec, const OptimizerStepParams& h, const Vec<T, mem_t<Exec>>& p,
                    const Vec<T, mem_t<Exec>>& g, const Vec<T, mem_t<Exec>>& m, const Vec<T, mem_t<Exec>>& v,
                    long frozen = 0) {
  const OptimizerType t = h.type;
  const double lr_ = h.lr, wd = h.weight_decay, mom = h.momentum, b1 = h.beta1, b2 = h.beta2, ep = h.eps;
  const double c1 = h.c1, c2 = h.c2;
  auto m_ = m, v_ = v;
  Kokkos::parallel_for(
      "hydragnn::Optimizer::step", Kokkos::RangePolicy<Exec>(exec, frozen, long(p.extent(0))), KOKKOS_LAMBDA(const long k) {
        double grad = double(g(k));
        double w = double(p(k));
        if (t == OptimizerType::SGD) {
          grad += wd * w;
          const double buf = mom > 0 ? mom * double(m_(k)) + grad : grad;
          m_(k) = T(buf);
          w -= lr_ * buf;
        } else {
          if (t == OptimizerType::Adam) grad += wd * w;
          else w -= lr_ * wd * w;  // decoupled weight decay
          const double mk = b1 * double(m_(k)) + (1 - b1) * grad;
          const double vk = b2 * double(v_(k)) + (1 - b2) * grad * grad;
          m_(k) = T(mk);
          v_(k) = T(vk);
          w -= lr_ * (mk / c1) / (math::sqrt(vk / c2) + ep);
        }
        p(k) = T(w);
      });
}

/// g += h, elementwise (the gradients of the micro-batches of one step, summed in their order).
template <class Exec, class T>
void accumulate_gradient(const Exec& exec, const Vec<T, mem_t<Exec>>& g, const Vec<T, mem_t<Exec>>& h) {
  Kokkos::parallel_for(
      "hydragnn::Optimizer::accumulate_gradient", Kokkos::RangePolicy<Exec>(exec, 0, long(g.extent(0))),
      KOKKOS_LAMBDA(const long k) { g(k) += h(k); });
}

}  // namespace kernels
}  // namespace hydragnn
