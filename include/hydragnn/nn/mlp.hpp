// SPDX-License-Identifier: BSD-3-Clause
// Multi-layer perceptron: Linear -> act -> Linear -> ... -> Linear [-> act].
// Forward keeps what the hand-written backward needs (each layer's input and pre-activation).
#pragma once

#include <hydragnn/kernels/dense.hpp>
#include <hydragnn/kernels/pointwise.hpp>

#include <vector>

namespace hydragnn {

struct MLP {
  std::vector<LinearShape> layers;
  Activation act = Activation::SiLU;
  bool act_last = false;

  MLP() = default;
  /// dims = {in, hidden..., out}
  MLP(ParamAllocator& alloc, const std::vector<int>& dims, Activation a, bool activate_last, bool bias = true)
      : act(a), act_last(activate_last) {
    for (std::size_t l = 0; l + 1 < dims.size(); ++l) layers.push_back(alloc.linear(dims[l], dims[l + 1], bias));
  }
  int in_dim() const { return layers.front().in; }
  int out_dim() const { return layers.back().out; }
  bool activated(std::size_t l) const { return l + 1 < layers.size() || act_last; }

  template <class S, class M>
  struct Cache {
    std::vector<Mat<S, M>> input;  ///< input of layer l
    std::vector<Mat<S, M>> pre;    ///< pre-activation output of layer l
  };

  /// Y = mlp(X); returns the output view (allocated).
  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> forward(const Exec& exec, const CVec<T, mem_t<Exec>>& p, const Mat<S, mem_t<Exec>>& X,
                              Cache<S, mem_t<Exec>>& cache) const {
    using M = mem_t<Exec>;
    const std::size_t n = X.extent(0);
    cache.input.assign(layers.size(), Mat<S, M>());
    cache.pre.assign(layers.size(), Mat<S, M>());
    Mat<S, M> h = X;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      cache.input[l] = h;
      Mat<S, M> z("hydragnn::MLP::forward", n, layers[l].out);
      kernels::linear_forward<Exec, S, T>(exec, h, p, layers[l], z);
      cache.pre[l] = z;
      if (activated(l)) {
        Mat<S, M> a("hydragnn::MLP::forward", n, layers[l].out);
        kernels::activation_forward<Exec, S>(exec, act, z, a);
        h = a;
      } else {
        h = z;
      }
    }
    return h;
  }

  /// Given Ybar, accumulate parameter gradients into g and return Xbar (allocated).
  template <class Exec, class S, class T>
  Mat<S, mem_t<Exec>> backward(const Exec& exec, const CVec<T, mem_t<Exec>>& p, const Cache<S, mem_t<Exec>>& cache,
                               const Mat<S, mem_t<Exec>>& Ybar, const Vec<S, mem_t<Exec>>& g) const {
    using M = mem_t<Exec>;
    Mat<S, M> hbar = Ybar;
    for (std::size_t l = layers.size(); l-- > 0;) {
      const std::size_t n = cache.pre[l].extent(0);
      Mat<S, M> zbar = hbar;
      if (activated(l)) {
        zbar = Mat<S, M>("hydragnn::MLP::backward", n, layers[l].out);
        kernels::activation_backward<Exec, S>(exec, act, cache.pre[l], hbar, zbar);
      }
      kernels::linear_backward_params<Exec, S>(exec, cache.input[l], zbar, layers[l], g);
      Mat<S, M> xbar("hydragnn::MLP::backward", n, layers[l].in);
      kernels::linear_backward_input<Exec, S, T>(exec, zbar, p, layers[l], xbar, false);
      hbar = xbar;
    }
    return hbar;
  }
};

}  // namespace hydragnn
