// SPDX-License-Identifier: BSD-3-Clause
// The op-test harness shared by test_ops.cpp and test_ops_model.cpp.
//
// check_op(op, seed) checks one differentiable op:
//   - forward against a brute-force host reference;
//   - hand-written backward against central finite differences of  L = sum(w * forward(x));
//   - every execution mode against HostRow, bitwise, for forward and backward, in double and in Dual;
//   - Dual forward: tangents equal the finite-difference JVP of the double forward;
//   - Dual backward (tangents on the inputs and on the cotangent): tangents equal the
//     finite-difference JVP of the double backward (the second-order path of force training).
// An op provides name, inputs(rng), ref(x), fwd<S, Mode>(x) and bwd<S, Mode>(x, ybar) (one gradient
// per input). Optional members:
//   real_inputs()  std::vector<bool>: inputs that are real parameters (weights: T = double even in a
//                  dual pass); they get no tangent in the dual checks, and the op reads their primal;
//   fd_samples     check the backward against finite differences on this many elements per input
//                  only (first, last and random ones), for large ops;
//   dual_primal_rel the dual forward's primal equals the double forward to this relative tolerance
//                  instead of bitwise: for ops that divide by a dual, since Dual's a / b is
//                  a.v * (1 / b.v) (core/dual.hpp), not a.v / b.v (0: bitwise).
// check_acc checks the accumulate / overwrite contract of an op writing into an existing view.
// The random graphs have a receiver with no incoming edges (an empty segment) and isolated atoms.
#pragma once

#include <catch2/catch.hpp>

#include <hydragnn/graph/triplets.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/vector.hpp>

#include "test_helpers.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <tuple>
#include <type_traits>

using namespace hydragnn;
namespace km = hydragnn::kernels;
using Exec = Kokkos::DefaultHostExecutionSpace;
using M = Exec::memory_space;
using D = Dual<double>;
using HostRow = exec_mode::HostRow;

namespace {

template <class S> using Arr = std::vector<S>;
template <class S> using Args = std::vector<std::vector<S>>;
using Rng = std::mt19937_64;

// ---- views <-> flat host vectors ------------------------------------------------------------
template <class S>
Mat<S, M> mat(const Arr<S>& v, long r, long c) {
  Mat<S, M> m("test::mat", r, c);
  REQUIRE(v.size() == std::size_t(r * c));
  std::copy(v.begin(), v.end(), m.data());
  return m;
}
template <class S>
VMat<S, M> vmat(const Arr<S>& v, long n, long f) {
  VMat<S, M> m("test::vmat", n, 3, f);
  REQUIRE(v.size() == std::size_t(n * 3 * f));
  std::copy(v.begin(), v.end(), m.data());
  return m;
}
template <class S>
Vec<S, M> vec(const Arr<S>& v) {
  Vec<S, M> m("test::vec", v.size());
  std::copy(v.begin(), v.end(), m.data());
  return m;
}
template <class V>
auto flat(const V& v) {
  using S = typename V::non_const_value_type;
  return Arr<S>(v.data(), v.data() + v.span());
}
Vec<int, M> ivec(const std::vector<int>& v) { return vec<int>(v); }

Arr<double> randn(Rng& rng, std::size_t n, double scale = 1.0) {
  std::normal_distribution<double> nd(0.0, scale);
  Arr<double> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}
Arr<double> randu(Rng& rng, std::size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  Arr<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// ---- the random graph -----------------------------------------------------------------------
struct Graph {
  int N = 0, E = 0, G = 1;
  std::vector<int> dst, src, row_ptr, send_perm, send_ptr;
  std::vector<int> graph_ptr, atom_graph, graph_edge_ptr;  ///< atoms / edges of each graph (contiguous)
  Vec<int, M> d_dst, d_src, d_row_ptr, d_send_perm, d_send_ptr;
  Vec<int, M> d_graph_ptr, d_atom_graph, d_graph_edge_ptr;
  TripletCsr trip;
  DeviceTripletCsr<M> d_trip;
  int T() const { return int(trip.size()); }
};

/// Random edges inside each graph [graph_ptr(g), graph_ptr(g+1)): every atom not in `no_in` and not in
/// `isolated` receives 1..4 edges from random non-isolated atoms of its graph (edges sorted by receiver).
Graph build_graph(std::uint64_t seed, const std::vector<int>& graph_ptr, const std::set<int>& no_in,
                  const std::set<int>& isolated) {
  Rng rng(seed);
  Graph g;
  g.N = graph_ptr.back();
  g.G = int(graph_ptr.size()) - 1;
  g.graph_ptr = graph_ptr;
  g.atom_graph.resize(g.N);
  g.graph_edge_ptr.assign(g.G + 1, 0);
  std::uniform_int_distribution<int> deg(1, 4);
  for (int gr = 0; gr < g.G; ++gr) {
    std::vector<int> active;
    for (int i = graph_ptr[gr]; i < graph_ptr[gr + 1]; ++i) {
      g.atom_graph[i] = gr;
      if (!isolated.count(i)) active.push_back(i);
    }
    for (int i = graph_ptr[gr]; i < graph_ptr[gr + 1]; ++i) {
      if (no_in.count(i) || isolated.count(i)) continue;
      std::uniform_int_distribution<int> pick(0, int(active.size()) - 1);
      const int d = deg(rng);
      for (int k = 0; k < d; ++k) {
        g.dst.push_back(i);
        g.src.push_back(active[pick(rng)]);
      }
    }
    g.graph_edge_ptr[gr + 1] = int(g.dst.size());
  }
  g.E = int(g.dst.size());
  g.row_ptr.assign(g.N + 1, 0);
  g.send_ptr.assign(g.N + 1, 0);
  for (int e = 0; e < g.E; ++e) {
    ++g.row_ptr[g.dst[e] + 1];
    ++g.send_ptr[g.src[e] + 1];
  }
  for (int i = 0; i < g.N; ++i) {
    g.row_ptr[i + 1] += g.row_ptr[i];
    g.send_ptr[i + 1] += g.send_ptr[i];
  }
  g.send_perm.resize(g.E);
  std::iota(g.send_perm.begin(), g.send_perm.end(), 0);
  std::stable_sort(g.send_perm.begin(), g.send_perm.end(), [&](int a, int b) { return g.src[a] < g.src[b]; });
  g.d_dst = ivec(g.dst);
  g.d_src = ivec(g.src);
  g.d_row_ptr = ivec(g.row_ptr);
  g.d_send_perm = ivec(g.send_perm);
  g.d_send_ptr = ivec(g.send_ptr);
  g.d_graph_ptr = ivec(g.graph_ptr);
  g.d_atom_graph = ivec(g.atom_graph);
  g.d_graph_edge_ptr = ivec(g.graph_edge_ptr);
  g.trip = build_triplets(g.dst, g.src, std::vector<std::array<int, 3>>(g.E, {0, 0, 0}), g.N);
  g.d_trip = to_device<M>(g.trip);
  return g;
}

/// 9 atoms in one graph: 3 and 7 isolated, atom 0 sends but receives nothing (empty receiver segment).
Graph make_graph(std::uint64_t seed) { return build_graph(seed, {0, 9}, {0}, {3, 7}); }

/// 12 atoms in three graphs {0..4}, {} (no atoms), {5..11}: 3 and 8 isolated, atoms 0 and 6 receive
/// nothing.
Graph make_batch_graph(std::uint64_t seed) { return build_graph(seed, {0, 5, 5, 12}, {0, 6}, {3, 8}); }

/// Items of segment s: CSR rows or perm rows.
std::vector<int> items(const std::vector<int>& ptr, const std::vector<int>* perm, int s) {
  std::vector<int> r;
  for (int q = ptr[s]; q < ptr[s + 1]; ++q) r.push_back(perm ? (*perm)[q] : q);
  return r;
}

// ---- comparison helpers ---------------------------------------------------------------------
struct Mismatch {
  int count = 0;
  std::string first;
  void check(bool ok, const std::string& what) {
    if (!ok && count++ == 0) first = what;
  }
};
bool close(double a, double b, double rel, double abs) { return std::fabs(a - b) <= abs + rel * std::fabs(b); }
std::string where(const char* what, std::size_t i, std::size_t k, double got, double want) {
  std::ostringstream os;
  os.precision(17);
  os << what << " input " << i << " element " << k << ": got " << got << ", want " << want;
  return os.str();
}
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }
bool same_bits(const D& a, const D& b) { return same_bits(a.v, b.v) && same_bits(a.d, b.d); }
bool same_bits(const Dual<float>& a, const Dual<float>& b) { return same_bits(a.v, b.v) && same_bits(a.d, b.d); }

template <class F>
void each_mode(F&& f) {
  f(exec_mode::HostRow{});
  f(exec_mode::PerElement{});
  f(exec_mode::TeamTiled{});
}

Args<D> make_dual(const Args<double>& x, const Args<double>& t) {
  Args<D> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    for (std::size_t k = 0; k < x[i].size(); ++k) r[i].push_back(D(x[i][k], t[i][k]));
  return r;
}
Arr<D> make_dual(const Arr<double>& x, const Arr<double>& t) { return make_dual(Args<double>{x}, Args<double>{t})[0]; }
Args<double> axpy(const Args<double>& x, double h, const Args<double>& t) {
  Args<double> r = x;
  for (std::size_t i = 0; i < x.size(); ++i)
    for (std::size_t k = 0; k < x[i].size(); ++k) r[i][k] += h * t[i][k];
  return r;
}
Arr<double> axpy(const Arr<double>& x, double h, const Arr<double>& t) { return axpy(Args<double>{x}, h, Args<double>{t})[0]; }

/// The primal parts (a real parameter input read by an op in a dual pass).
template <class S>
Arr<double> primal(const Arr<S>& x) {
  Arr<double> r(x.size());
  for (std::size_t k = 0; k < x.size(); ++k) r[k] = scalar_traits<S>::primal(x[k]);
  return r;
}

// optional members of an op (see the file comment)
template <class Op, class = void>
struct has_real_inputs : std::false_type {};
template <class Op>
struct has_real_inputs<Op, std::void_t<decltype(std::declval<const Op&>().real_inputs())>> : std::true_type {};
template <class Op, class = void>
struct has_dual_primal_rel : std::false_type {};
template <class Op>
struct has_dual_primal_rel<Op, std::void_t<decltype(std::declval<const Op&>().dual_primal_rel)>> : std::true_type {};
template <class Op>
double dual_primal_rel(const Op& op) {
  if constexpr (has_dual_primal_rel<Op>::value) return op.dual_primal_rel;
  return 0.0;
}
template <class Op, class = void>
struct has_fd_samples : std::false_type {};
template <class Op>
struct has_fd_samples<Op, std::void_t<decltype(std::declval<const Op&>().fd_samples)>> : std::true_type {};

/// Elements of input i checked against finite differences: all, or fd_samples of them.
template <class Op>
std::vector<std::size_t> fd_elements(const Op& op, std::size_t n, Rng& rng) {
  std::vector<std::size_t> ks;
  if constexpr (has_fd_samples<Op>::value) {
    if (n > std::size_t(op.fd_samples)) {
      std::uniform_int_distribution<std::size_t> u(0, n - 1);
      std::set<std::size_t> pick = {0, n - 1};
      while (pick.size() < std::size_t(op.fd_samples)) pick.insert(u(rng));
      return {pick.begin(), pick.end()};
    }
  }
  ks.resize(n);
  std::iota(ks.begin(), ks.end(), std::size_t(0));
  return ks;
}

/// The harness (see the file comment). Op provides inputs(rng), ref(x), fwd<S, Mode>(x), bwd<S, Mode>(x, ybar).
template <class Op>
void check_op(const Op& op, std::uint64_t seed) {
  INFO("op: " << op.name);
  Rng rng(seed);
  const Args<double> x = op.inputs(rng);
  const Arr<double> y = op.template fwd<double, HostRow>(x);
  const Arr<double> w = randn(rng, y.size());
  const Args<double> g = op.template bwd<double, HostRow>(x, w);
  REQUIRE(g.size() == x.size());
  const double h = 1e-6, rel = 1e-6, abs = 1e-7;

  {  // forward vs brute force
    const Arr<double> r = op.ref(x);
    REQUIRE(r.size() == y.size());
    Mismatch mm;
    for (std::size_t k = 0; k < y.size(); ++k) mm.check(close(y[k], r[k], 1e-12, 1e-12), where("forward", 0, k, y[k], r[k]));
    INFO(mm.first);
    CHECK(mm.count == 0);
  }
  auto loss = [&](const Args<double>& xx) {
    const Arr<double> yy = op.template fwd<double, HostRow>(xx);
    double s = 0;
    for (std::size_t k = 0; k < yy.size(); ++k) s += w[k] * yy[k];
    return s;
  };
  {  // (a) backward vs central differences
    Mismatch mm;
    for (std::size_t i = 0; i < x.size(); ++i) {
      REQUIRE(g[i].size() == x[i].size());
      for (std::size_t k : fd_elements(op, x[i].size(), rng)) {
        Args<double> xp = x, xm = x;
        xp[i][k] += h;
        xm[i][k] -= h;
        const double fd = (loss(xp) - loss(xm)) / (2 * h);
        mm.check(close(g[i][k], fd, rel, abs), where("backward", i, k, g[i][k], fd));
      }
    }
    INFO(mm.first);
    CHECK(mm.count == 0);
  }
  // tangents for the dual checks
  Args<double> xt;
  for (const auto& xi : x) xt.push_back(randn(rng, xi.size()));
  if constexpr (has_real_inputs<Op>::value) {
    const std::vector<bool> real = op.real_inputs();
    REQUIRE(real.size() == x.size());
    for (std::size_t i = 0; i < x.size(); ++i)
      if (real[i]) std::fill(xt[i].begin(), xt[i].end(), 0.0);
  }
  const Arr<double> wt = randn(rng, w.size());
  const Args<D> xd = make_dual(x, xt);
  const Arr<D> wd = make_dual(w, wt);
  const Arr<D> yd = op.template fwd<D, HostRow>(xd);
  const Args<D> gd = op.template bwd<D, HostRow>(xd, wd);
  {  // (c) dual forward = JVP of the forward; dual backward = JVP of the backward
    Mismatch mm;
    const Arr<double> yp = op.template fwd<double, HostRow>(axpy(x, h, xt));
    const Arr<double> ym = op.template fwd<double, HostRow>(axpy(x, -h, xt));
    for (std::size_t k = 0; k < y.size(); ++k) {
      const double prel = dual_primal_rel(op);
      mm.check(prel > 0 ? close(yd[k].v, y[k], prel, 1e-300) : same_bits(yd[k].v, y[k]),
               where("dual forward primal", 0, k, yd[k].v, y[k]));
      const double fd = (yp[k] - ym[k]) / (2 * h);
      mm.check(close(yd[k].d, fd, rel, abs), where("dual forward tangent", 0, k, yd[k].d, fd));
    }
    const Args<double> gp = op.template bwd<double, HostRow>(axpy(x, h, xt), axpy(w, h, wt));
    const Args<double> gm = op.template bwd<double, HostRow>(axpy(x, -h, xt), axpy(w, -h, wt));
    for (std::size_t i = 0; i < x.size(); ++i)
      for (std::size_t k = 0; k < x[i].size(); ++k) {
        mm.check(close(gd[i][k].v, g[i][k], 1e-14, 1e-14), where("dual backward primal", i, k, gd[i][k].v, g[i][k]));
        const double fd = (gp[i][k] - gm[i][k]) / (2 * h);
        mm.check(close(gd[i][k].d, fd, rel, abs), where("dual backward tangent", i, k, gd[i][k].d, fd));
      }
    INFO(mm.first);
    CHECK(mm.count == 0);
  }
  // (b) every mode against HostRow, bitwise, double and dual, forward and backward
  each_mode([&](auto mode) {
    using Mode = decltype(mode);
    INFO("mode " << Mode::name);
    Mismatch mm;
    const Arr<double> ym = op.template fwd<double, Mode>(x);
    const Args<double> gm = op.template bwd<double, Mode>(x, w);
    const Arr<D> ydm = op.template fwd<D, Mode>(xd);
    const Args<D> gdm = op.template bwd<D, Mode>(xd, wd);
    for (std::size_t k = 0; k < y.size(); ++k) {
      mm.check(same_bits(ym[k], y[k]), where("mode forward", 0, k, ym[k], y[k]));
      mm.check(same_bits(ydm[k], yd[k]), where("mode dual forward", 0, k, ydm[k].d, yd[k].d));
    }
    for (std::size_t i = 0; i < x.size(); ++i)
      for (std::size_t k = 0; k < x[i].size(); ++k) {
        mm.check(same_bits(gm[i][k], g[i][k]), where("mode backward", i, k, gm[i][k], g[i][k]));
        mm.check(same_bits(gdm[i][k], gd[i][k]), where("mode dual backward", i, k, gdm[i][k].d, gd[i][k].d));
      }
    INFO(mm.first);
    CHECK(mm.count == 0);
  });
}


/// The accumulate / overwrite contract of an op writing `out`: run(out, accumulate) on a zeroed view
/// and on one prefilled with random values must give prefill + result (accumulate) or the result
/// (overwrite), to rounding; an op that always accumulates is run with accumulate = true.
enum class Writes { Accumulate, Overwrite };
template <class MakeOut, class Run>
void check_acc(const char* name, Rng& rng, Writes writes, bool accumulate, MakeOut make_out, Run run) {
  INFO(name << (accumulate ? " (accumulate)" : " (overwrite)"));
  auto plain = make_out();
  run(plain, accumulate);
  auto out = make_out();
  const Arr<double> pre = randn(rng, out.span());
  std::copy(pre.begin(), pre.end(), out.data());
  run(out, accumulate);
  Mismatch mm;
  for (std::size_t k = 0; k < pre.size(); ++k) {
    const double want = writes == Writes::Accumulate ? pre[k] + plain.data()[k] : plain.data()[k];
    mm.check(close(out.data()[k], want, 1e-13, 1e-13), where(name, 0, k, out.data()[k], want));
  }
  INFO(mm.first);
  CHECK(mm.count == 0);
}

}  // namespace
