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
/// W (out x in, row-major) at w_off, b (out) at b_off (b_off < 0: no bias).
struct LinearShape {
  int in = 0, out = 0;
  long w_off = 0, b_off = -1;
  std::size_t num_params() const { return std::size_t(in) * out + (b_off >= 0 ? out : 0); }
};

/// Hands out consecutive ranges of the model's flat parameter buffer.
/// Each range records the half-width of its uniform initialisation (PyTorch's default for Linear:
/// U(-1/sqrt(in), 1/sqrt(in)) for weights and biases).
struct ParamAllocator {
  struct Range {
    std::size_t offset, size;
    double bound;
  };
  std::size_t size = 0;
  std::vector<Range> ranges;
  LinearShape linear(int in, int out, bool bias) {
    LinearShape s;
    s.in = in;
    s.out = out;
    const double bound = 1.0 / std::sqrt(double(in));
    s.w_off = long(take(std::size_t(in) * out, bound));
    s.b_off = bias ? long(take(out, bound)) : -1;
    return s;
  }
  std::size_t take(std::size_t n, double bound) {
    const std::size_t off = size;
    size += n;
    ranges.push_back({off, n, bound});
    return off;
  }
};

}  // namespace hydragnn
