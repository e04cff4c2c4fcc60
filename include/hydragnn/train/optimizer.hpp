// SPDX-License-Identifier: BSD-3-Clause
// SGD (momentum), Adam and AdamW over the model's flat parameter buffer (the update kernel is
// kernels/optimizer.hpp), plus ReduceLROnPlateau.
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/optimizer.hpp>

#include <algorithm>
#include <cmath>

namespace hydragnn {

template <class T, class Exec>
class Optimizer {
 public:
  using M = mem_t<Exec>;
  OptimizerType type = OptimizerType::AdamW;
  double lr = 1e-3, weight_decay = 0.0, momentum = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  long step_count = 0;
  Vec<T, M> m, v;  ///< first/second moments (SGD: m is the momentum buffer)
  std::size_t frozen = 0;  ///< the parameters [0, frozen) are left unchanged (a frozen trunk)

  Optimizer() = default;
  Optimizer(OptimizerType t, std::size_t n, double lr_, double wd, double mom)
      : type(t), lr(lr_), weight_decay(wd), momentum(mom),
        m("hydragnn::Optimizer::m", n), v("hydragnn::Optimizer::v", n) {}

  void step(const Exec& exec, const Vec<T, M>& p, const Vec<T, M>& g) {
    ++step_count;
    OptimizerStepParams h;
    h.type = type;
    h.lr = lr;
    h.weight_decay = weight_decay;
    h.momentum = momentum;
    h.beta1 = beta1;
    h.beta2 = beta2;
    h.eps = eps;
    h.c1 = 1.0 - std::pow(beta1, double(step_count));
    h.c2 = 1.0 - std::pow(beta2, double(step_count));
    kernels::optimizer_step<Exec, T>(exec, h, p, g, m, v, long(frozen));
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
