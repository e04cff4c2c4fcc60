// SPDX-License-Identifier: BSD-3-Clause
// The convolution interface (layers v2): what a message-passing layer declares and provides, and
// the one trait that checks it.
//
// A convolution is a class, composed of the ops in kernels/, that declares as types
//   node_state    conv::Scalars (N x H invariant features) or conv::ScalarsAndVectors (plus
//                 N x 3 x F equivariant vector features, F = vector_channels())
//   edge_state    conv::NoEdgeState or conv::WithEdgeState (E x F_e features carried from layer to
//                 layer, F_e = edge_channels())
//   connectivity  conv::Pairs (the receiver-sorted edges) or conv::Triplets (also k -> j -> i)
//   readout       conv::LastLayer (heads read the last layer) or conv::PerLayer (the energy is a sum
//                 of per-layer readouts)
//   feature_layer conv::IdentityFeatureLayer or conv::BatchNormFeatureLayer: what HydraGNN's Base puts
//                 between a layer's output and the stack activation (its feature_layers: Identity for
//                 the equivariant stacks, PyG BatchNorm for the invariant ones; nn/batchnorm.hpp)
// and provides
//   static constexpr const char* name;            the HydraGNN mpnn_type
//   (optional) bool uses_positions() const;       false: the energy does not depend on the positions
//                                                 (no edge geometry, e.g. GIN; forces are zero)
//   (optional) void set_pass(bool training, std::uint64_t seed) const;
//                                                 stochastic layers (GAT's attention dropout): the
//                                                 mode and the random seed of the passes that follow
//   (optional) int layer_width(int l) const;      width of layer l's invariant output (hidden_dim
//                                                 if absent; GAT's concatenated heads); the last
//                                                 layer's must be hidden_dim (the heads read it)
//   using options_type = ...;                     its own options, with visit(v) listing its keys
//   Conv(ParamAllocator&, const ConvCommon&, const options_type&);
//   int num_layers() const;
//   template <class S, class M> struct EdgeCache / EdgeGrad / LayerCache;
//   edge_forward   (exec, batch, r, EdgeCache&, ws)                 geometry shared by all layers
//   edge_grad_init (exec, batch, EdgeGrad&, ws)                     zeroed accumulators
//   layer_forward  (exec, l, weights, batch, EdgeCache, in, LayerCache&, out, ws)
//   layer_backward (exec, l, weights, batch, EdgeCache, in, LayerCache, out_bar, in_bar, g, EdgeGrad&, ws)
//   edge_backward  (exec, batch, r, EdgeCache, EdgeGrad&, rbar, ws)  rbar += d(...)/dr
// where in/out/in_bar/out_bar are NodeState<S, M>. layer_backward overwrites in_bar and skips
// every parameter gradient when g is empty (inference, the real pass of force training). When no
// gradient with respect to the geometry is wanted (direct training, the dual pass of force
// training) the model calls neither edge_grad_init nor edge_backward and hands layer_backward a
// default-constructed EdgeGrad (empty views): it must then skip what only feeds dL/dr.
// The model applies the feature layer and the stack activation after each layer (as HydraGNN's Base
// does: activation(feature_layer(conv(h)))).
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/core/workspace.hpp>
#include <hydragnn/kernels/dense.hpp>
#include <hydragnn/kernels/pointwise.hpp>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

namespace hydragnn {
namespace conv {
struct Scalars {};
struct ScalarsAndVectors {};
struct NoEdgeState {};
struct WithEdgeState {};
struct Pairs {};
struct Triplets {};
struct LastLayer {};
struct PerLayer {};
struct IdentityFeatureLayer {};
struct BatchNormFeatureLayer {};
}  // namespace conv

/// One named value of an enumerated option (the io layer maps config strings through these).
template <class E>
struct Choice {
  const char* name;
  E value;
};

/// What every convolution gets from the common architecture keys.
struct ConvCommon {
  int hidden_dim = 64;
  int input_dim = 64;  ///< width of the first layer's input (the species embedding)
  int num_conv_layers = 3;
  double cutoff = 5.0;
  Activation act = Activation::SiLU;  ///< the stack activation (HydraGNN activation_function)
  int max_neighbours = -1;            ///< the graph's neighbour cap (-1: none); MFC's max_degree
  // A conv node head (heads/conv_head.hpp) builds each of its convolutions as a one-layer stack of
  // the model's type, as HydraGNN's Base._init_node_conv calls get_conv(input_dim, output_dim):
  std::string prefix = "graph_convs";  ///< parameter names <prefix>.<first_index + l>.<HydraGNN's module path>
  int first_index = 0;
  int stack_hidden_dim = 0;  ///< HydraGNN's self.hidden_dim inside get_conv (EGNN's hidden channels,
                             ///< SchNet's default num_filters); 0: hidden_dim
  bool last_layer = true;    ///< the stack's last layer is HydraGNN's last_layer (no coordinate or
                             ///< vector update; GAT: mean over the heads); false for a head's hidden convs
  bool head = false;         ///< a conv head's convolution: exactly num_conv_layers layers (GAT's trunk has >= 2)

  std::string layer_name(int l) const { return prefix + "." + std::to_string(first_index + l); }
  int inner_dim() const { return stack_hidden_dim > 0 ? stack_hidden_dim : hidden_dim; }
  /// Whether layer l of num_layers is HydraGNN's last_layer.
  bool is_last(int l, int num_layers) const { return last_layer && l + 1 == num_layers; }
  bool is_last(int l) const { return is_last(l, num_conv_layers); }
};

/// The state passed from layer to layer.
template <class S, class M>
struct NodeState {
  Mat<S, M> h;   ///< N x H invariant features
  VFeat<S, M> v;  ///< N x 3 x F vector features (empty unless ScalarsAndVectors)
  Mat<S, M> e;   ///< E x F_e edge features (empty unless WithEdgeState)
};

namespace conv {
/// The options of a convolution with no config keys of its own.
struct NoOptions {
  template <class V>
  void visit(V&&) {}
};

/// Base of a convolution without edge geometry (GIN, SAGE): empty edge caches and no-op edge passes.
struct NoEdgeGeometry {
  template <class S, class M> struct EdgeCache {};
  template <class S, class M> struct EdgeGrad {};
  template <class Exec, class S>
  void edge_forward(const Exec&, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>&, EdgeCache<S, mem_t<Exec>>&,
                    Workspace<mem_t<Exec>>&) const {}
  template <class Exec, class S>
  void edge_grad_init(const Exec&, const Batch<mem_t<Exec>>&, EdgeGrad<S, mem_t<Exec>>&, Workspace<mem_t<Exec>>&) const {}
  template <class Exec, class S>
  void edge_backward(const Exec&, const Batch<mem_t<Exec>>&, const Mat<S, mem_t<Exec>>&, const EdgeCache<S, mem_t<Exec>>&,
                     EdgeGrad<S, mem_t<Exec>>&, const Mat<S, mem_t<Exec>>&, Workspace<mem_t<Exec>>&) const {}
  bool uses_positions() const { return false; }
};
}  // namespace conv

namespace conv_detail {
template <class...>
using void_t = void;

struct KeyProbe {
  template <class V>
  void operator()(const char*, V&) {}
  template <class E, std::size_t K>
  void choice(const char*, E&, const Choice<E> (&)[K]) {}
};

template <class C, class = void> struct has_name : std::false_type {};
template <class C> struct has_name<C, void_t<decltype(std::string(C::name))>> : std::true_type {};
template <class C, class = void> struct has_options : std::false_type {};
template <class C>
struct has_options<C, void_t<decltype(std::declval<typename C::options_type&>().visit(std::declval<KeyProbe&>()))>>
    : std::true_type {};
template <class C, class = void> struct has_node_state : std::false_type {};
template <class C>
struct has_node_state<C, void_t<typename C::node_state>>
    : std::integral_constant<bool, std::is_same<typename C::node_state, conv::Scalars>::value ||
                                       std::is_same<typename C::node_state, conv::ScalarsAndVectors>::value> {};
template <class C, class = void> struct has_edge_state : std::false_type {};
template <class C>
struct has_edge_state<C, void_t<typename C::edge_state>>
    : std::integral_constant<bool, std::is_same<typename C::edge_state, conv::NoEdgeState>::value ||
                                       std::is_same<typename C::edge_state, conv::WithEdgeState>::value> {};
template <class C, class = void> struct has_connectivity : std::false_type {};
template <class C>
struct has_connectivity<C, void_t<typename C::connectivity>>
    : std::integral_constant<bool, std::is_same<typename C::connectivity, conv::Pairs>::value ||
                                       std::is_same<typename C::connectivity, conv::Triplets>::value> {};
template <class C, class = void> struct has_uses_positions : std::false_type {};
template <class C>
struct has_uses_positions<C, void_t<decltype(bool(std::declval<const C&>().uses_positions()))>> : std::true_type {};
template <class C, class = void> struct has_layer_width : std::false_type {};
template <class C>
struct has_layer_width<C, void_t<decltype(int(std::declval<const C&>().layer_width(0)))>> : std::true_type {};
template <class C, class = void> struct has_set_pass : std::false_type {};
template <class C>
struct has_set_pass<C, void_t<decltype(std::declval<const C&>().set_pass(true, std::uint64_t(0)))>> : std::true_type {};
template <class C, class = void> struct has_feature_layer : std::false_type {};
template <class C>
struct has_feature_layer<C, void_t<typename C::feature_layer>>
    : std::integral_constant<bool, std::is_same<typename C::feature_layer, conv::IdentityFeatureLayer>::value ||
                                       std::is_same<typename C::feature_layer, conv::BatchNormFeatureLayer>::value> {};
template <class C, class = void> struct has_readout : std::false_type {};
template <class C>
struct has_readout<C, void_t<typename C::readout>>
    : std::integral_constant<bool, std::is_same<typename C::readout, conv::LastLayer>::value ||
                                       std::is_same<typename C::readout, conv::PerLayer>::value> {};

using PExec = Kokkos::DefaultHostExecutionSpace;
using PM = PExec::memory_space;
template <class C> using EC = typename C::template EdgeCache<double, PM>;
template <class C> using EG = typename C::template EdgeGrad<double, PM>;
template <class C> using LC = typename C::template LayerCache<double, PM>;

template <class C, class = void> struct has_caches : std::false_type {};
template <class C> struct has_caches<C, void_t<EC<C>, EG<C>, LC<C>>> : std::true_type {};
template <class C, class = void> struct has_ctor : std::false_type {};
template <class C>
struct has_ctor<C, void_t<decltype(C(std::declval<ParamAllocator&>(), std::declval<const ConvCommon&>(),
                                     std::declval<const typename C::options_type&>()))>> : std::true_type {};
template <class C, class = void> struct has_num_layers : std::false_type {};
template <class C> struct has_num_layers<C, void_t<decltype(int(std::declval<const C&>().num_layers()))>> : std::true_type {};
template <class C, class = void> struct has_edge_forward : std::false_type {};
template <class C>
struct has_edge_forward<C, void_t<decltype(std::declval<const C&>().template edge_forward<PExec, double>(
                               std::declval<const PExec&>(), std::declval<const Batch<PM>&>(),
                               std::declval<const Mat<double, PM>&>(), std::declval<EC<C>&>(),
                               std::declval<Workspace<PM>&>()))>> : std::true_type {};
template <class C, class = void> struct has_edge_backward : std::false_type {};
template <class C>
struct has_edge_backward<C, void_t<decltype(std::declval<const C&>().template edge_grad_init<PExec, double>(
                                                std::declval<const PExec&>(), std::declval<const Batch<PM>&>(),
                                                std::declval<EG<C>&>(), std::declval<Workspace<PM>&>())),
                                   decltype(std::declval<const C&>().template edge_backward<PExec, double>(
                                       std::declval<const PExec&>(), std::declval<const Batch<PM>&>(),
                                       std::declval<const Mat<double, PM>&>(), std::declval<const EC<C>&>(),
                                       std::declval<EG<C>&>(), std::declval<const Mat<double, PM>&>(),
                                       std::declval<Workspace<PM>&>()))>> : std::true_type {};
template <class C, class = void> struct has_layer_forward : std::false_type {};
template <class C>
struct has_layer_forward<C, void_t<decltype(std::declval<const C&>().template layer_forward<PExec, double, double>(
                                std::declval<const PExec&>(), 0, std::declval<const Weights<double, PM>&>(),
                                std::declval<const Batch<PM>&>(), std::declval<const EC<C>&>(),
                                std::declval<const NodeState<double, PM>&>(), std::declval<LC<C>&>(),
                                std::declval<NodeState<double, PM>&>(), std::declval<Workspace<PM>&>()))>>
    : std::true_type {};
template <class C, class = void> struct has_layer_backward : std::false_type {};
template <class C>
struct has_layer_backward<C, void_t<decltype(std::declval<const C&>().template layer_backward<PExec, double, double>(
                                 std::declval<const PExec&>(), 0, std::declval<const Weights<double, PM>&>(),
                                 std::declval<const Batch<PM>&>(), std::declval<const EC<C>&>(),
                                 std::declval<const NodeState<double, PM>&>(), std::declval<const LC<C>&>(),
                                 std::declval<const NodeState<double, PM>&>(), std::declval<NodeState<double, PM>&>(),
                                 std::declval<const Vec<double, PM>&>(), std::declval<EG<C>&>(),
                                 std::declval<Workspace<PM>&>()))>> : std::true_type {};
template <class C, class = void> struct has_vector_channels : std::false_type {};
template <class C>
struct has_vector_channels<C, void_t<decltype(int(std::declval<const C&>().vector_channels()))>> : std::true_type {};
template <class C, class = void> struct has_edge_channels : std::false_type {};
template <class C>
struct has_edge_channels<C, void_t<decltype(int(std::declval<const C&>().edge_channels()))>> : std::true_type {};
}  // namespace conv_detail

/// The one check of the convolution interface: each missing piece is named by its static_assert.
template <class C>
struct conv_traits {
  static_assert(conv_detail::has_name<C>::value, "convolution: needs `static constexpr const char* name` (its mpnn_type)");
  static_assert(conv_detail::has_options<C>::value,
                "convolution: needs `using options_type = ...` with `template <class V> void visit(V&& v)` listing its "
                "config keys as v(\"key\", member, ...)");
  static_assert(conv_detail::has_node_state<C>::value,
                "convolution: needs `using node_state = conv::Scalars` or `conv::ScalarsAndVectors`");
  static_assert(conv_detail::has_edge_state<C>::value,
                "convolution: needs `using edge_state = conv::NoEdgeState` or `conv::WithEdgeState`");
  static_assert(conv_detail::has_connectivity<C>::value,
                "convolution: needs `using connectivity = conv::Pairs` or `conv::Triplets`");
  static_assert(conv_detail::has_readout<C>::value, "convolution: needs `using readout = conv::LastLayer` or `conv::PerLayer`");
  static_assert(conv_detail::has_feature_layer<C>::value,
                "convolution: needs `using feature_layer = conv::IdentityFeatureLayer` or `conv::BatchNormFeatureLayer`");
  static_assert(conv_detail::has_caches<C>::value,
                "convolution: needs member templates `template <class S, class M> struct EdgeCache`, `EdgeGrad` and "
                "`LayerCache`");
  static_assert(conv_detail::has_ctor<C>::value,
                "convolution: needs a constructor (ParamAllocator&, const ConvCommon&, const options_type&)");
  static_assert(conv_detail::has_num_layers<C>::value, "convolution: needs `int num_layers() const`");
  static_assert(conv_detail::has_edge_forward<C>::value,
                "convolution: needs `template <class Exec, class S> void edge_forward(exec, batch, r, EdgeCache&, ws) const`");
  static_assert(conv_detail::has_edge_backward<C>::value,
                "convolution: needs `edge_grad_init(exec, batch, EdgeGrad&, ws)` and `edge_backward(exec, batch, r, "
                "EdgeCache, EdgeGrad&, rbar, ws)` (both templates on <Exec, S>, const)");
  static_assert(conv_detail::has_layer_forward<C>::value,
                "convolution: needs `template <class Exec, class S, class T> void layer_forward(exec, l, weights, batch, "
                "EdgeCache, const NodeState& in, LayerCache&, NodeState& out, ws) const`");
  static_assert(conv_detail::has_layer_backward<C>::value,
                "convolution: needs `template <class Exec, class S, class T> void layer_backward(exec, l, weights, batch, "
                "EdgeCache, in, LayerCache, out_bar, NodeState& in_bar, g, EdgeGrad&, ws) const`");

  using node_state = typename C::node_state;
  using edge_state = typename C::edge_state;
  using connectivity = typename C::connectivity;
  using readout = typename C::readout;
  using feature_layer = typename C::feature_layer;
  static constexpr bool batch_norm = std::is_same<feature_layer, conv::BatchNormFeatureLayer>::value;
  static constexpr bool has_vectors = std::is_same<node_state, conv::ScalarsAndVectors>::value;
  static constexpr bool has_edge_state = std::is_same<edge_state, conv::WithEdgeState>::value;
  static constexpr bool needs_triplets = std::is_same<connectivity, conv::Triplets>::value;
  static constexpr bool per_layer_readout = std::is_same<readout, conv::PerLayer>::value;
  static_assert(!has_vectors || conv_detail::has_vector_channels<C>::value,
                "convolution: node_state ScalarsAndVectors needs `int vector_channels() const`");
  static_assert(!has_edge_state || conv_detail::has_edge_channels<C>::value,
                "convolution: edge_state WithEdgeState needs `int edge_channels() const`");
  static constexpr bool value = true;
  /// Whether the energy of convolution c depends on the positions (true unless c says otherwise).
  static bool uses_positions(const C& c) {
    if constexpr (conv_detail::has_uses_positions<C>::value)
      return c.uses_positions();
    else
      return true;
  }
  /// Tell a stochastic convolution the mode and seed of the passes that follow (no-op otherwise).
  static void set_pass(const C& c, bool training, std::uint64_t seed) {
    if constexpr (conv_detail::has_set_pass<C>::value)
      c.set_pass(training, seed);
    else
      (void)c, (void)training, (void)seed;
  }
  /// Width of layer l's invariant output (hidden_dim unless c says otherwise).
  static int layer_width(const C& c, int l, int hidden_dim) {
    if constexpr (conv_detail::has_layer_width<C>::value)
      return c.layer_width(l);
    else
      return (void)c, (void)l, hidden_dim;
  }
};

}  // namespace hydragnn
