// SPDX-License-Identifier: BSD-3-Clause
// View aliases and small helpers shared by kernels and layers.
#pragma once

#include <hydragnn/compat/kokkos.hpp>
#include <hydragnn/core/dual.hpp>
#include <cstddef>
#include <cmath>
#include <string>
#include <vector>

namespace hydragnn {

/// Row-major matrix (rows = nodes / edges / graphs, columns = channels) in memory space M.
template <class S, class M> using Mat = Kokkos::View<S**, Kokkos::LayoutRight, M>;
template <class S, class M> using Vec = Kokkos::View<S*, M>;
template <class S, class M> using CMat = Kokkos::View<const S**, Kokkos::LayoutRight, M>;
template <class S, class M> using CVec = Kokkos::View<const S*, M>;

template <class Exec> using mem_t = typename Exec::memory_space;

/// A type as a value, for generic lambdas: f(type_tag<T>{}) and `typename decltype(tag)::type`.
template <class T>
struct type_tag {
  using type = T;
};

/// Allocate with a hydragnn::<Class>::<method> label, zero-initialised.
template <class S, class M>
Mat<S, M> alloc_mat(const std::string& label, std::size_t rows, std::size_t cols) {
  return Mat<S, M>(label, rows, cols);
}
template <class S, class M>
Vec<S, M> alloc_vec(const std::string& label, std::size_t n) {
  return Vec<S, M>(label, n);
}

/// Shape of a dense layer y = x W^T + b whose parameters live in a flat buffer:
/// W (out x in, row-major with row stride ld) at w_off, b (out) at b_off (b_off < 0: no bias).
/// A layer may be a column block of a wider matrix (e.g. the h_i part of W [h_i, h_j, r]): then
/// ld is the wider matrix's row length and w_off points at the block's first column.
/// wt_off: where the block's W^T (in x out, rows of length out) sits in the transposed buffer.
struct LinearShape {
  int in = 0, out = 0;
  long w_off = 0, b_off = -1;
  int ld = 0;        ///< row stride of W (0: in)
  long wt_off = -1;  ///< offset of W^T in the transposed buffer (-1: none, e.g. a strided block)
  KOKKOS_INLINE_FUNCTION long stride() const { return ld > 0 ? ld : in; }
  /// Whether W^T can be read from pt, the transposed buffer of the parameters p: the layer has a
  /// block there and pt is filled (as long as p; empty where no pass reads it).
  template <class V>
  KOKKOS_INLINE_FUNCTION bool transposed_in(const V& p, const V& pt) const {
    return wt_off >= 0 && pt.extent(0) == p.extent(0);
  }
  std::size_t num_params() const { return std::size_t(in) * out + (b_off >= 0 ? out : 0); }
  /// Columns [c0, c0 + n) of this layer as a layer of its own (bias kept only if with_bias).
  LinearShape columns(int c0, int n, bool with_bias) const {
    LinearShape s = *this;
    s.in = n;
    s.ld = int(stride());
    s.w_off = w_off + c0;
    s.b_off = with_bias ? b_off : -1;
    s.wt_off = wt_off >= 0 ? wt_off + long(c0) * out : -1;
    return s;
  }
};

/// A named block of the flat parameter buffer (names follow HydraGNN's state_dict where the block
/// has a HydraGNN counterpart, so that weights can be exchanged by name).
struct NamedParam {
  std::string name;
  std::size_t offset = 0;
  std::vector<int> shape;  ///< row-major
  std::size_t size() const {
    std::size_t n = 1;
    for (int d : shape) n *= std::size_t(d);
    return n;
  }
};

/// Hands out consecutive ranges of the model's flat parameter buffer.
/// Each range records the half-width of its uniform initialisation (PyTorch's default for Linear:
/// U(-1/sqrt(in), 1/sqrt(in)) for weights and biases) or its constant initial value (take_constant),
/// and, when given, its name and shape.
struct ParamAllocator {
  struct Range {
    std::size_t offset, size;
    double bound;
    bool constant = false;  ///< filled with value + i step (i < size) instead of drawn
    double value = 0, step = 0;
  };
  std::size_t size = 0;
  std::vector<Range> ranges;
  std::vector<NamedParam> named;
  std::vector<LinearShape> linears;  ///< every Linear handed out (the model transposes their weights)
  /// Linear layer `name` (HydraGNN/PyTorch: name.weight [out, in], name.bias [out]).
  LinearShape linear(int in, int out, bool bias, const std::string& name = {}) {
    LinearShape s;
    s.in = in;
    s.out = out;
    const double bound = 1.0 / std::sqrt(double(in));
    s.w_off = long(take(std::size_t(in) * out, bound, name.empty() ? name : name + ".weight", {out, in}));
    s.wt_off = s.w_off;
    s.b_off = bias ? long(take(out, bound, name.empty() ? name : name + ".bias", {out})) : -1;
    linears.push_back(s);
    return s;
  }
  std::size_t take(std::size_t n, double bound, const std::string& name = {}, std::vector<int> shape = {}) {
    const std::size_t off = size;
    size += n;
    ranges.push_back({off, n, bound});
    if (!name.empty()) {
      if (shape.empty()) shape = {int(n)};
      named.push_back({name, off, std::move(shape)});
    }
    return off;
  }
  /// A block initialised to `value` (e.g. BatchNorm's weight 1 and bias 0, GIN's eps).
  std::size_t take_constant(std::size_t n, double value, const std::string& name = {}, std::vector<int> shape = {}) {
    const std::size_t off = take(n, 0.0, name, std::move(shape));
    ranges.back().constant = true;
    ranges.back().value = value;
    return off;
  }
  /// A block initialised to first, first + step, first + 2 step, ... (DimeNet's Bessel frequencies).
  std::size_t take_sequence(std::size_t n, double first, double step, const std::string& name = {},
                            std::vector<int> shape = {}) {
    const std::size_t off = take_constant(n, first, name, std::move(shape));
    ranges.back().step = step;
    return off;
  }
};

}  // namespace hydragnn
