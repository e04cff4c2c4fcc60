// SPDX-License-Identifier: BSD-3-Clause
// Names <-> enums of the model's options, as written in configs and checkpoint headers. Parsing
// names is I/O: the layers below io only see the enums.
#pragma once

#include <hydragnn/kernels/optimizer.hpp>
#include <hydragnn/kernels/pointwise.hpp>
#include <hydragnn/model/spec.hpp>

#include <stdexcept>
#include <string>

namespace hydragnn {

inline Activation parse_activation(const std::string& name) {
  if (name == "identity" || name == "linear") return Activation::Identity;
  if (name == "relu") return Activation::ReLU;
  if (name == "silu" || name == "swish") return Activation::SiLU;
  if (name == "ssp" || name == "shifted_softplus") return Activation::ShiftedSoftplus;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "softplus") return Activation::Softplus;
  throw std::invalid_argument("unknown activation function '" + name + "'");
}
inline const char* activation_name(Activation a) {
  switch (a) {
    case Activation::Identity: return "identity";
    case Activation::ReLU: return "relu";
    case Activation::SiLU: return "silu";
    case Activation::ShiftedSoftplus: return "ssp";
    case Activation::Tanh: return "tanh";
    case Activation::Sigmoid: return "sigmoid";
    case Activation::Softplus: return "softplus";
  }
  return "?";
}

inline Pooling parse_pooling(const std::string& s) {
  if (s == "mean") return Pooling::Mean;
  if (s == "sum" || s == "add") return Pooling::Sum;
  if (s == "max") return Pooling::Max;
  throw std::invalid_argument("unknown graph_pooling '" + s + "'");
}
inline const char* pooling_name(Pooling p) { return p == Pooling::Mean ? "mean" : p == Pooling::Sum ? "sum" : "max"; }

inline OptimizerType parse_optimizer(const std::string& s) {
  if (s == "SGD" || s == "sgd") return OptimizerType::SGD;
  if (s == "Adam" || s == "adam") return OptimizerType::Adam;
  if (s == "AdamW" || s == "adamw") return OptimizerType::AdamW;
  throw std::invalid_argument("unknown optimizer '" + s + "'");
}

}  // namespace hydragnn
