// SPDX-License-Identifier: BSD-3-Clause
// Must NOT compile: a convolution without `int num_layers() const`. The ctest test conv_traits_message
// builds this target and passes when the compiler prints conv_traits' message naming what is missing.
#include <hydragnn/conv/schnet.hpp>
#include <hydragnn/model/model.hpp>

struct IncompleteConv {
  static constexpr const char* name = "Incomplete";
  using options_type = hydragnn::SchNetOptions;
  using node_state = hydragnn::conv::Scalars;
  using edge_state = hydragnn::conv::NoEdgeState;
  using connectivity = hydragnn::conv::Pairs;
  using readout = hydragnn::conv::LastLayer;
  using feature_layer = hydragnn::conv::IdentityFeatureLayer;
  template <class S, class M> using EdgeCache = hydragnn::SchNetConv::EdgeCache<S, M>;
  template <class S, class M> using EdgeGrad = hydragnn::SchNetConv::EdgeGrad<S, M>;
  template <class S, class M> using LayerCache = hydragnn::SchNetConv::LayerCache<S, M>;
  IncompleteConv(hydragnn::ParamAllocator&, const hydragnn::ConvCommon&, const options_type&) {}
  // num_layers() is missing on purpose
};

int main() {
  hydragnn::Model<double, IncompleteConv, Kokkos::DefaultHostExecutionSpace> m;
  return int(m.num_params());
}
