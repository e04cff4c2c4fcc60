// SPDX-License-Identifier: BSD-3-Clause
// The registry of convolutions: one type list that drives the CLI dispatch, config validation and
// checkpoints (io/model_options.hpp), the benchmark harness and the templated tests. Adding a model
// touches its own file in conv/ and this list.
#pragma once

#include <hydragnn/conv/cgcnn.hpp>
#include <hydragnn/conv/dimenet.hpp>
#include <hydragnn/conv/egnn.hpp>
#include <hydragnn/conv/gat.hpp>
#include <hydragnn/conv/gin.hpp>
#include <hydragnn/conv/mfc.hpp>
#include <hydragnn/conv/painn.hpp>
#include <hydragnn/conv/pna.hpp>
#include <hydragnn/conv/pnaeq.hpp>
#include <hydragnn/conv/pnaplus.hpp>
#include <hydragnn/conv/sage.hpp>
#include <hydragnn/conv/schnet.hpp>

#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace hydragnn {

/// Every convolution the library implements (HydraGNN mpnn_type names).
using conv_registry = std::tuple<SchNetConv, EGNNConv, PaiNNConv, PNAEqConv, GINConv, SAGEConv, PNAConv, PNAPlusConv, CGCNNConv, MFCConv, GATConv,
                                 DimeNetConv>;

namespace registry_detail {
template <class F, class... C>
void for_each(F& f, std::tuple<C...>*) {
  (f(type_tag<C>{}), ...);
}
}  // namespace registry_detail

/// f(type_tag<Conv>{}) for every registered convolution, in registry order.
template <class F>
void for_each_conv(F&& f) {
  registry_detail::for_each(f, static_cast<conv_registry*>(nullptr));
}

/// f(type_tag<Conv>{}) for the convolution named `name`; false when none is.
template <class F>
bool dispatch_conv(const std::string& name, F&& f) {
  bool found = false;
  for_each_conv([&](auto tag) {
    using C = typename decltype(tag)::type;
    if (!found && name == C::name) {
      found = true;
      f(tag);
    }
  });
  return found;
}

/// The registered names, in registry order.
inline std::vector<std::string> conv_names() {
  std::vector<std::string> out;
  for_each_conv([&](auto tag) { out.push_back(decltype(tag)::type::name); });
  return out;
}

}  // namespace hydragnn
