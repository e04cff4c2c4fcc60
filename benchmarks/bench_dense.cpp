// SPDX-License-Identifier: BSD-3-Clause
// The three products of a Linear layer (kernels/dense.hpp) on the shapes of the benchmark batch, in
// the default execution space and mode: forward Y = X W^T + b, input gradient Xbar = Ybar W, weight
// gradient Wbar += Ybar^T X, float and Dual<float> (force training's second pass), and the forward
// and input gradient fused with the shifted softplus and with SiLU. Counter GFMA_per_s:
// multiply-adds per second (a dual row counts its two planes; a dual weight gradient its two
// products per element).
//
//   hydragnn_bench_dense [--benchmark_filter=...]      (Google Benchmark flags)
//
// Shapes (rows x in -> out): SchNet's filter network on one row per pair of edges (31,876 x 50 ->
// 128, 31,876 x 128 -> 128), an edge MLP on every edge (63,751 x 128 -> 128; x 64 -> 64), the heads
// on the atoms (3,395 x 64 -> 200, 3,395 x 200 -> 200), DimeNet++'s triplet basis layers on the
// batch's ~1.26 M triplets (lin_sbf1: 42 -> 8, lin_sbf2: 8 -> 64) and its radial layers on the
// edges (lin_rbf and the output block's: 6 -> 64, lin_rbf2: 8 -> 64, lin_rbf1: 6 -> 8).
//
// pna_edge_block/...: PNA's edge block with the length feature, edge_encoder (1 -> F) and pre_nns'
// edge columns (F -> F) composed into a layer 1 -> F on every edge, forward and input cotangent, by
// PNA's dedicated kernels (kernels/pna.hpp: pna_length_compose, pna_length_message[_backward]) and
// by the generic ones (linear_compose, then linear_forward / linear_backward_input on the composed
// layer), the composition included in each.
#include <hydragnn/kernels/dense.hpp>
#include <hydragnn/kernels/pna.hpp>

#include <benchmark/benchmark.h>

#include <string>

namespace {

using namespace hydragnn;
using Exec = Kokkos::DefaultExecutionSpace;
using M = Exec::memory_space;

enum class Product { Forward, BackwardInput, BackwardParams, ForwardSsp, BackwardInputSsp, ForwardSilu, BackwardInputSilu };

template <class S>
void run(benchmark::State& state, Product what, long n, int in, int out) {
  using T = float;
  const long np = long(in) * out + out;
  Kokkos::View<T*, M> p("hydragnn::bench_dense::p", np), pt("hydragnn::bench_dense::pt", np);
  Kokkos::parallel_for("hydragnn::bench_dense::weights", Kokkos::RangePolicy<Exec>(0, np), KOKKOS_LAMBDA(const long i) {
    p(i) = 0.01f * float((i * 37) % 101 - 50);
  });
  LinearShape sh;
  sh.in = in;
  sh.out = out;
  sh.w_off = 0;
  sh.b_off = long(in) * out;
  sh.wt_off = 0;
  Exec exec;
  Kokkos::View<long* [3], M> shapes("hydragnn::bench_dense::shapes", 1);
  auto hs = Kokkos::create_mirror_view(shapes);
  hs(0, 0) = 0, hs(0, 1) = in, hs(0, 2) = out;
  Kokkos::deep_copy(shapes, hs);
  kernels::transpose_weights<Exec, T>(exec, p, shapes, pt);
  const Weights<T, M> w{p, pt};
  Mat<S, M> X("hydragnn::bench_dense::X", n, in), Y("hydragnn::bench_dense::Y", n, out),
      Pre("hydragnn::bench_dense::Pre", n, out), Xbar("hydragnn::bench_dense::Xbar", n, in);
  Kokkos::parallel_for("hydragnn::bench_dense::inputs", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const long i) {
    for (int c = 0; c < in; ++c) X(i, c) = S(0.001f * float((i + c) % 97));
    for (int o = 0; o < out; ++o) Y(i, o) = S(0.002f * float((i * 3 + o) % 89));
  });
  Vec<T, M> g("hydragnn::bench_dense::g", np);
  const Activation ssp = Activation::ShiftedSoftplus, silu = Activation::SiLU;
  for (auto _ : state) {
    switch (what) {
      case Product::Forward: kernels::linear_forward<Exec, S, T>(exec, X, w, sh, Pre); break;
      case Product::BackwardInput: kernels::linear_backward_input<Exec, S, T>(exec, Y, w, sh, Xbar, false); break;
      case Product::BackwardParams: kernels::linear_backward_params<Exec, S>(exec, X, Y, sh, g); break;
      case Product::ForwardSsp: kernels::linear_forward_act<Exec, S, T>(exec, X, w, sh, ssp, Pre, Y); break;
      case Product::BackwardInputSsp:
        kernels::linear_backward_input_act<Exec, S, T>(exec, Y, w, sh, ssp, X, Xbar, false);
        break;
      case Product::ForwardSilu: kernels::linear_forward_act<Exec, S, T>(exec, X, w, sh, silu, Pre, Y); break;
      case Product::BackwardInputSilu:
        kernels::linear_backward_input_act<Exec, S, T>(exec, Y, w, sh, silu, X, Xbar, false);
        break;
    }
    exec.fence();
  }
  const double planes = scalar_traits<S>::is_dual ? 2.0 : 1.0;
  state.counters["GFMA_per_s"] =
      benchmark::Counter(planes * double(n) * in * out * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// PNA's edge block (see the top): generic = linear_compose + the Linear products, else the
/// dedicated kernels; backward = the edge feature's cotangent, else the forward.
template <class S>
void run_edge_block(benchmark::State& state, bool generic, bool backward, long n, int F) {
  using T = float;
  // p = [enc W: F x 1 | enc b: F | pre W: F x 3F, the edge block its columns 2F..3F)
  const long np = 2L * F + 3L * F * F;
  Kokkos::View<T*, M> p("hydragnn::bench_dense::p", np);
  Kokkos::parallel_for("hydragnn::bench_dense::weights", Kokkos::RangePolicy<Exec>(0, np), KOKKOS_LAMBDA(const long i) {
    p(i) = 0.01f * float((i * 37) % 101 - 50);
  });
  LinearShape enc, pre;
  enc.in = 1, enc.out = F, enc.w_off = 0, enc.wt_off = 0, enc.b_off = F;
  pre.in = 3 * F, pre.out = F, pre.w_off = 2L * F, pre.b_off = -1;
  const LinearShape pe = pre.columns(2 * F, F, false), cs = kernels::composed_shape(pe, enc);
  Kokkos::View<T*, M> cd("hydragnn::bench_dense::cd", 2L * F), cp("hydragnn::bench_dense::cp", cs.num_params()),
      cpt("hydragnn::bench_dense::cpt", cs.num_params());
  const Weights<T, M> wc{cp, cpt};
  Mat<S, M> a("hydragnn::bench_dense::a", n, 1), m("hydragnn::bench_dense::m", n, F), ab("hydragnn::bench_dense::ab", n, 1);
  Kokkos::parallel_for("hydragnn::bench_dense::inputs", Kokkos::RangePolicy<Exec>(0, n), KOKKOS_LAMBDA(const long i) {
    a(i, 0) = S(0.01f * float(i % 97));
    for (int o = 0; o < F; ++o) m(i, o) = S(0.002f * float((i * 3 + o) % 89));
  });
  Exec exec;
  for (auto _ : state) {
    if (generic) {
      kernels::linear_compose<Exec, T>(exec, p, pe, enc, cp, cpt);
      if (backward) kernels::linear_backward_input<Exec, S, T>(exec, m, wc, cs, ab, true);
      else kernels::linear_forward<Exec, S, T>(exec, a, wc, cs, m);
    } else {
      kernels::pna_length_compose<Exec, T>(exec, p, enc, pe, cd);
      if (backward) kernels::pna_length_message_backward<Exec, S, T>(exec, m, cd, ab);
      else kernels::pna_length_message<Exec, S, T>(exec, a, cd, m);
    }
    exec.fence();
  }
}

/// Registers head + "/float/" + tail and head + "/dual/" + tail, each running body(state, tag) with
/// tag a type_tag of its scalar (float, Dual<float>).
template <class Body>
void register_float_and_dual(const std::string& head, const std::string& tail, const Body& body) {
  for (int dual = 0; dual < 2; ++dual) {
    const std::string name = head + (dual ? "/dual/" : "/float/") + tail;
    auto* b = dual ? benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { body(st, type_tag<Dual<float>>{}); })
                   : benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { body(st, type_tag<float>{}); });
    b->Unit(benchmark::kMillisecond)->UseRealTime();
  }
}

void register_all() {
  struct Shape {
    long n;
    int in, out;
  };
  const Shape shapes[] = {{31876, 50, 128}, {31876, 128, 128}, {63751, 128, 128}, {63751, 64, 64},
                          {3395, 64, 200},  {3395, 200, 200}, {1260800, 42, 8}, {1260800, 8, 64},
                          {63751, 6, 64},   {63751, 8, 64},   {63751, 6, 8}};
  const std::pair<Product, const char*> products[] = {{Product::Forward, "forward"},
                                                      {Product::BackwardInput, "backward_input"},
                                                      {Product::BackwardParams, "backward_params"},
                                                      {Product::ForwardSsp, "forward_ssp"},
                                                      {Product::BackwardInputSsp, "backward_input_ssp"},
                                                      {Product::ForwardSilu, "forward_silu"},
                                                      {Product::BackwardInputSilu, "backward_input_silu"}};
  for (const auto& s : shapes)
    for (const auto& pr : products) {
      const Product what = pr.first;
      register_float_and_dual(std::string("dense/") + pr.second,
                              std::to_string(s.n) + "x" + std::to_string(s.in) + "x" + std::to_string(s.out),
                              [=](benchmark::State& st, auto tag) { run<typename decltype(tag)::type>(st, what, s.n, s.in, s.out); });
    }
  for (int F : {64, 128})
    for (int generic = 0; generic < 2; ++generic)
      for (int backward = 0; backward < 2; ++backward)
        register_float_and_dual(std::string("pna_edge_block/") + (generic ? "generic" : "dedicated") +
                                    (backward ? "/backward_input" : "/forward"),
                                "63751x1x" + std::to_string(F), [=](benchmark::State& st, auto tag) {
                                  run_edge_block<typename decltype(tag)::type>(st, generic, backward, 63751, F);
                                });
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
