// SPDX-License-Identifier: BSD-3-Clause
// Multi-layer perceptron: Linear -> act -> Linear -> ... -> Linear [-> act].
// Forward keeps what the hand-written backward needs (each layer's input and pre-activation) in
// views of the caller's workspace; nothing is allocated once the workspace has grown.
//
// Parameter names follow torch.nn.Sequential: Linear k of an MLP named P is "P.<2k>" (the
// activations take the odd indices), e.g. P.0.weight, P.0.bias, P.2.weight, ...
#pragma once

#include <hydragnn/core/workspace.hpp>
#include <hydragnn/kernels/dense.hpp>
#include <hydragnn/kernels/pointwise.hpp>

#include <string>
#include <vector>

namespace hydragnn {

struct MLP {
  std::vector<LinearShape> layers;
  Activation act = Activation::SiLU;
  bool act_last = false;
  std::string label = "hydragnn::MLP";  ///< workspace slot label (unique per MLP instance in a model)

  MLP() = default;
  /// dims = {in, hidden..., out}; name = parameter-name prefix (and workspace label).
  MLP(ParamAllocator& alloc, const std::vector<int>& dims, Activation a, bool activate_last, bool bias = true,
      const std::string& name = {})
      : act(a), act_last(activate_last), label(name.empty() ? "hydragnn::MLP" : "hydragnn::MLP::" + name) {
    for (std::size_t l = 0; l + 1 < dims.size(); ++l)
      layers.push_back(alloc.linear(dims[l], dims[l + 1], bias, name.empty() ? name : name + "." + std::to_string(2 * l)));
  }
  /// The same with one activation per activated layer (acts[l] after Linear l), e.g. HydraGNN's
  /// Linear -> Tanh -> Linear -> SiLU -> Linear.
  MLP(ParamAllocator& alloc, const std::vector<int>& dims, const std::vector<Activation>& acts, bool activate_last,
      bool bias = true, const std::string& name = {})
      : MLP(alloc, dims, acts.empty() ? Activation::SiLU : acts.front(), activate_last, bias, name) {
    per_layer = acts;
  }
  std::vector<Activation> per_layer;  ///< empty: `act` after every activated layer
  Activation act_of(std::size_t l) const { return l < per_layer.size() ? per_layer[l] : act; }
  int in_dim() const { return layers.front().in; }
  int out_dim() const { return layers.back().out; }
  bool activated(std::size_t l) const { return l + 1 < layers.size() || act_last; }

  template <class S, class M>
  struct Cache {
    std::vector<Mat<S, M>> input;  ///< input of layer l
    std::vector<Mat<S, M>> pre;    ///< pre-activation output of layer l
    Mat<S, M> out;                 ///< output of the MLP
  };

  /// Y = mlp(X) into workspace views (slot index `slot`); returns the output view.
  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> forward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Mat<S, mem_t<Exec>>& X,
                              Cache<S, mem_t<Exec>>& cache, Workspace<mem_t<Exec>>& ws, int slot = 0) const {
    using M = mem_t<Exec>;
    const std::size_t n = X.extent(0);
    cache.input.resize(layers.size());
    cache.pre.resize(layers.size());
    Mat<S, M> h = X;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      cache.input[l] = h;
      const int idx = slot * 64 + int(l);
      Mat<S, M> z = ws.template mat<S>(label + ".pre", idx, n, layers[l].out);
      cache.pre[l] = z;
      if (activated(l)) {
        Mat<S, M> a = ws.template mat<S>(label + ".act", idx, n, layers[l].out);
        kernels::linear_forward_act<Exec, S, T>(exec, h, w, layers[l], act_of(l), z, a);
        h = a;
      } else {
        kernels::linear_forward<Exec, S, T>(exec, h, w, layers[l], z);
        h = z;
      }
    }
    cache.out = h;
    return h;
  }

  /// Given Ybar: accumulate parameter gradients into g (skipped when g is empty) and return Xbar
  /// (a workspace view; its contents are overwritten).
  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> backward(const Exec& exec, const Weights<T, mem_t<Exec>>& w, const Cache<S, mem_t<Exec>>& cache,
                               const Mat<S, mem_t<Exec>>& Ybar, const Vec<real_t<S>, mem_t<Exec>>& g, Workspace<mem_t<Exec>>& ws,
                               int slot = 0, bool want_input = true) const {
    using M = mem_t<Exec>;
    const bool want_params = g.extent(0) > 0;
    // zbar: the gradient of layer l's pre-activation. Below the top, it comes from layer l + 1's
    // input gradient and layer l's activation in one pass (linear_backward_input_act).
    const std::size_t top = layers.size() - 1;
    Mat<S, M> zbar = Ybar;
    if (activated(top)) {
      zbar = ws.template mat<S>(label + ".pre_bar", slot * 64 + int(top), Ybar.extent(0), layers[top].out);
      kernels::activation_backward<Exec, S>(exec, act_of(top), cache.pre[top], Ybar, zbar);
    }
    for (std::size_t l = top + 1; l-- > 0;) {
      const std::size_t n = cache.pre[l].extent(0);
      if (want_params) kernels::linear_backward_params<Exec, S>(exec, cache.input[l], zbar, layers[l], g);
      if (l == 0) {
        if (!want_input) return Mat<S, M>();
        Mat<S, M> xbar = ws.template mat<S>(label + ".in_bar", slot * 64, n, layers[0].in);
        kernels::linear_backward_input<Exec, S, T>(exec, zbar, w, layers[0], xbar, false);
        return xbar;
      }
      if (activated(l - 1)) {
        Mat<S, M> next = ws.template mat<S>(label + ".pre_bar", slot * 64 + int(l - 1), n, layers[l].in);
        kernels::linear_backward_input_act<Exec, S, T>(exec, zbar, w, layers[l], act_of(l - 1), cache.pre[l - 1], next);
        zbar = next;
      } else {
        Mat<S, M> xbar = ws.template mat<S>(label + ".in_bar", slot * 64 + int(l), n, layers[l].in);
        kernels::linear_backward_input<Exec, S, T>(exec, zbar, w, layers[l], xbar, false);
        zbar = xbar;
      }
    }
    return zbar;
  }
};

}  // namespace hydragnn
