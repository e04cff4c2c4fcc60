// SPDX-License-Identifier: BSD-3-Clause
// Optimizer update kernels over a flat parameter buffer: SGD (momentum), Adam (L2 weight decay) and
// AdamW (decoupled weight decay). The Optimizer class (train/optimizer.hpp) owns the moments and the
// step count and calls optimizer_step once per step.
#pragma once

#include <hydragnn/core/dual.hpp>
#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/simd.hpp>

namespace hydragnn {

enum class OptimizerType { SGD, Adam, AdamW };

/// Hyper-parameters of one update; c1 = 1 - beta1^t and c2 = 1 - beta2^t are the bias corrections.
struct OptimizerStepParams {
  OptimizerType type = OptimizerType::AdamW;
  double lr = 1e-3, weight_decay = 0.0, momentum = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double c1 = 1.0, c2 = 1.0;
};

namespace kernels {

namespace detail {
KOKKOS_INLINE_FUNCTION double opt_sqrt(double x) { return math::sqrt(x); }
#ifdef HYDRAGNN_SIMD_PACKS
inline simd::pack_t<double> opt_sqrt(const simd::pack_t<double>& x) { return simd::sqrt(x); }
#endif
/// One Adam / AdamW update in double on one value or on a pack of them (the same operations in the
/// same order: each lane gets the bits of the scalar form; sqrt and division are correctly rounded).
template <class V>
KOKKOS_INLINE_FUNCTION void adam_update(V& w, V& mk, V& vk, V grad, bool decoupled, double lr, double wd, double b1,
                                        double b2, double ep, double c1, double c2) {
  if (!decoupled) grad += wd * w;
  else w -= lr * wd * w;  // decoupled weight decay
  mk = b1 * mk + (1 - b1) * grad;
  vk = b2 * vk + (1 - b2) * grad * grad;
  w -= lr * (mk / c1) / (opt_sqrt(vk / c2) + ep);
}
}  // namespace detail

/// One update of every parameter k (arithmetic in double, storage in T):
///   p, g, m, v : n      (m: first moment or SGD momentum buffer, v: second moment; updated in place)
///   frozen     : the parameters k < frozen are left untouched (no step, no decay: parameters without
///                requires_grad in torch; the model's trunk comes first in its buffer)
/// On the host, Adam and AdamW take packs of lanes<double> parameters (the tail one at a time): the
/// same bits per parameter, the square roots and divisions vectorised.
template <class Exec, class T>
void optimizer_step(const Exec& exec, const OptimizerStepParams& h, const Vec<T, mem_t<Exec>>& p,
                    const Vec<T, mem_t<Exec>>& g, const Vec<T, mem_t<Exec>>& m, const Vec<T, mem_t<Exec>>& v,
                    long frozen = 0) {
  const OptimizerType t = h.type;
  const double lr_ = h.lr, wd = h.weight_decay, mom = h.momentum, b1 = h.beta1, b2 = h.beta2, ep = h.eps;
  const double c1 = h.c1, c2 = h.c2;
  const bool decoupled = t == OptimizerType::AdamW;
  auto m_ = m, v_ = v;
  long first = frozen;
#ifdef HYDRAGNN_SIMD_PACKS
  if constexpr (Kokkos::SpaceAccessibility<Exec, Kokkos::HostSpace>::accessible) {
    constexpr int L = simd::lanes<double>;
    const long packs = t == OptimizerType::SGD ? 0 : (long(p.extent(0)) - frozen) / L;
    T* pp = p.data();
    const T* gp = g.data();
    T* mp = m.data();
    T* vp = v.data();
    Kokkos::parallel_for(
        "hydragnn::Optimizer::step", Kokkos::RangePolicy<Exec>(exec, 0, packs), KOKKOS_LAMBDA(const long q) {
          const long k = frozen + q * L;
          auto w = simd::load_as_double(pp + k), mk = simd::load_as_double(mp + k), vk = simd::load_as_double(vp + k);
          detail::adam_update(w, mk, vk, simd::load_as_double(gp + k), decoupled, lr_, wd, b1, b2, ep, c1, c2);
          simd::store_from_double(mp + k, mk);
          simd::store_from_double(vp + k, vk);
          simd::store_from_double(pp + k, w);
        });
    first = frozen + packs * L;
  }
#endif
  Kokkos::parallel_for(
      "hydragnn::Optimizer::step", Kokkos::RangePolicy<Exec>(exec, first, long(p.extent(0))), KOKKOS_LAMBDA(const long k) {
        double grad = double(g(k));
        double w = double(p(k));
        if (t == OptimizerType::SGD) {
          grad += wd * w;
          const double buf = mom > 0 ? mom * double(m_(k)) + grad : grad;
          m_(k) = T(buf);
          w -= lr_ * buf;
        } else {
          double mk = double(m_(k)), vk = double(v_(k));
          detail::adam_update(w, mk, vk, grad, decoupled, lr_, wd, b1, b2, ep, c1, c2);
          m_(k) = T(mk);
          v_(k) = T(vk);
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
