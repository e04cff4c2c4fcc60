// SPDX-License-Identifier: BSD-3-Clause
// SGD (momentum), Adam and AdamW over the model's flat parameter buffer, plus ReduceLROnPlateau.
#pragma once

#include <hydragnn/core/types.hpp>

#include <cmath>
#include <stdexcept>
#include <string>

namespace hydragnn {

enum class OptimizerType { SGD, Adam, AdamW };

inline OptimizerType parse_optimizer(const std::string& s) {
  if (s == "SGD" || s == "sgd") return OptimizerType::SGD;
  if (s == "Adam" || s == "adam") return OptimizerType::Adam;
  if (s == "AdamW" || s == "adamw") return OptimizerType::AdamW;
  throw std::invalid_argument("unknown optimizer '" + s + "'");
}

template <class T, class Exec>
class Optimizer {
 public:
  using M = mem_t<Exec>;
  OptimizerType type = OptimizerType::AdamW;
  double lr = 1e-3, weight_decay = 0.0, momentum = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  long step_count = 0;
  Vec<T, M> m, v;  ///< first/second moments (SGD: m is the momentum buffer)

  Optimizer() = default;
  Optimizer(OptimizerType t, std::size_t n, double lr_, double wd, double mom)
      : type(t), lr(lr_), weight_decay(wd), momentum(mom),
        m("hydragnn::Optimizer::m", n), v("hydragnn::Optimizer::v", n) {}

  void step(const Exec& exec, const Vec<T, M>& p, const Vec<T, M>& g) {
    ++step_count;
    const OptimizerType t = type;
    const double lr_ = lr, wd = weight_decay, mom = momentum, b1 = beta1, b2 = beta2, ep = eps;
    const double c1 = 1.0 - std::pow(beta1, double(step_count)), c2 = 1.0 - std::pow(beta2, double(step_count));
    auto m_ = m, v_ = v;
    Kokkos::parallel_for(
        "hydragnn::Optimizer::step", Kokkos::RangePolicy<Exec>(exec, 0, long(p.extent(0))), KOKKOS_LAMBDA(const long k) {
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
};

/// ReduceLROnPlateau (mode min, relative threshold 1e-4) on the validation loss.
struct PlateauScheduler {
  bool enabled = true;
  double factor = 0.5, min_lr = 1e-6;
  int patience = 5;
  double best = INFINITY;
  int bad = 0;
  /// Returns the new learning rate.
  double update(double val_loss, double lr) {
    if (!enabled) return lr;
    if (val_loss < best * (1 - 1e-4)) {
      best = val_loss;
      bad = 0;
    } else if (++bad > patience) {
      bad = 0;
      lr = std::max(lr * factor, min_lr);
    }
    return lr;
  }
};

}  // namespace hydragnn
