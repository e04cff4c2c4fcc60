// SPDX-License-Identifier: BSD-3-Clause
// The model-level ops of kernels/ (dense, pointwise, cfconv, radial, egnn, readout, forces) under the
// harness of tests/op_harness.hpp (check_op: forward vs brute force, backward vs central differences,
// every mode bitwise against HostRow in double and Dual, Dual forward / backward tangents vs
// finite-difference JVPs), the accumulate / overwrite contract of every op writing into an existing
// view (check_acc), and the ops that are not differentiated (edge vectors, tangents, forces, stress)
// against brute force in every mode.
//
// Weights are real (T = double) in every pass: an op's parameter input is marked real_inputs(), gets
// no tangent in the dual checks, and its gradient is the op's (dual) parameter cotangent.
#include <catch2/catch.hpp>

#include <hydragnn/conv/egnn.hpp>  // EGNNEnvelopeFn
#include <hydragnn/kernels/cfconv.hpp>
#include <hydragnn/kernels/dense.hpp>
#include <hydragnn/kernels/egnn.hpp>
#include <hydragnn/kernels/forces.hpp>
#include <hydragnn/kernels/gat.hpp>
#include <hydragnn/kernels/pointwise.hpp>
#include <hydragnn/kernels/painn.hpp>
#include <hydragnn/kernels/cgcnn.hpp>
#include <hydragnn/kernels/mfc.hpp>
#include <hydragnn/kernels/neighbour.hpp>
#include <hydragnn/kernels/norm.hpp>
#include <hydragnn/kernels/pna.hpp>
#include <hydragnn/kernels/radial.hpp>
#include <hydragnn/kernels/readout.hpp>
#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/kernels/spherical.hpp>

#include <cmath>
#include <tuple>

#include "op_harness.hpp"

namespace {

template <class S>
Arr<S> cat(Arr<S> a, const Arr<S>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
template <class S>
Arr<S> slice(const Arr<S>& a, std::size_t first, std::size_t n) {
  REQUIRE(first + n <= a.size());
  return Arr<S>(a.begin() + first, a.begin() + first + n);
}
/// A real parameter buffer from an op input (its primal in a dual pass).
template <class S>
Vec<double, M> params(const Arr<S>& x) {
  return vec(primal(x));
}
/// Random vectors with lengths uniform in [lo, hi] (no edge of length near 0).
/// A parameter cotangent as the harness compares it. A dual pass's kernels add only the tangent of
/// their sums to the (real) parameter gradient (core/dual.hpp param_part); the harness checks that
/// tangent against the finite-difference JVP and the modes bitwise, and its primal check gets the
/// real kernel's result on the primal inputs (primal_run()), joined here.
template <class S, class PrimalRun>
Arr<S> param_cotangent(const Vec<double, M>& g, const PrimalRun& primal_run) {
  if constexpr (std::is_same<S, double>::value) {
    return flat(g);
  } else {
    const Vec<double, M> p = primal_run();
    Arr<S> out(g.extent(0));
    for (std::size_t k = 0; k < out.size(); ++k) out[k] = S(p(k), g(k));
    return out;
  }
}

Arr<double> rand_vectors(Rng& rng, int n, double lo, double hi) {
  Arr<double> v = randn(rng, 3 * std::size_t(n));
  const Arr<double> len = randu(rng, n, lo, hi);
  for (int e = 0; e < n; ++e) {
    const double s = std::sqrt(v[3 * e] * v[3 * e] + v[3 * e + 1] * v[3 * e + 1] + v[3 * e + 2] * v[3 * e + 2]);
    for (int a = 0; a < 3; ++a) v[3 * e + a] *= len[e] / s;
  }
  return v;
}

// =============================================================================================
// dense.hpp
// =============================================================================================

/// A Linear layer in a flat buffer p = [3 pad | W: out x ldf | b: out | 2 pad]; the op's layer is the
/// whole matrix (ld = 0) or its column block [c0, c0 + in) (ld = ldf > in, via LinearShape::columns).
/// HostRow's forward streams W^T from pt (filled by transpose_weights) unless with_pt is false.
struct LinearOp {
  const char* name;
  int n, in, out;
  bool bias;
  int ld = 0, c0 = 0;
  bool with_pt = true;
  int fd_samples = 1 << 30;

  int ldf() const { return ld > 0 ? ld : in; }
  long P() const { return 3 + long(out) * ldf() + out + 2; }
  LinearShape full() const {
    LinearShape s;
    s.in = ldf();
    s.out = out;
    s.w_off = 3;
    s.wt_off = 3;
    s.b_off = bias ? 3 + long(out) * ldf() : -1;
    return s;
  }
  LinearShape shape() const { return ld > 0 ? full().columns(c0, in, bias) : full(); }
  std::vector<bool> real_inputs() const { return {false, true}; }
  Args<double> inputs(Rng& rng) const { return {randn(rng, std::size_t(n) * in), randn(rng, P(), 0.5)}; }
  Arr<double> ref(const Args<double>& x) const {
    const auto& p = x[1];
    const LinearShape f = full();
    Arr<double> y(std::size_t(n) * out);
    for (int i = 0; i < n; ++i)
      for (int o = 0; o < out; ++o) {
        double s = bias ? p[f.b_off + o] : 0.0;
        for (int c = 0; c < in; ++c) s += x[0][i * in + c] * p[f.w_off + long(o) * ldf() + c0 + c];
        y[i * out + o] = s;
      }
    return y;
  }
  Weights<double, M> weights(const Vec<double, M>& p) const {
    Vec<double, M> pt("pt", with_pt ? p.extent(0) : 0);
    if (with_pt) {
      Kokkos::View<long* [3], M> shapes("shapes", 1);
      shapes(0, 0) = full().w_off;
      shapes(0, 1) = ldf();
      shapes(0, 2) = out;
      km::transpose_weights<Exec, double>(Exec(), p, shapes, pt);
    }
    return {p, pt};
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", n, out);
    km::linear_forward<Exec, S, double, Mode>(Exec(), mat(x[0], n, in), weights(params(x[1])), shape(), Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto p = params(x[1]);
    Mat<S, M> Xb("Xb", n, in);
    Vec<double, M> g("g", P());
    const auto Yb = mat(yb, n, out);
    km::linear_backward_input<Exec, S, double, Mode>(Exec(), Yb, weights(p), shape(), Xb, false);
    km::linear_backward_params<Exec, S, Mode>(Exec(), mat(x[0], n, in), Yb, shape(), g);
    return {flat(Xb), param_cotangent<S>(g, [&] {
              Vec<double, M> gp("gp", P());
              km::linear_backward_params<Exec, double, Mode>(Exec(), mat(primal(x[0]), n, in), mat(primal(yb), n, out),
                                                             shape(), gp);
              return gp;
            })};
  }
};

/// Two linear layers composed (linear_compose), then run as one on the rows of X: y = W2 (W1 x + b1),
/// W1: G x in (bias optional), W2 the column block [2, 2 + G) of an F x (G + 3) matrix without
/// bias (a block of pre_nns, as in PNAPlus). p = [3 pad | W1 | b1 | W2 full | 2 pad]. The forward
/// streams the composed W^T; the backward runs linear_backward_input and linear_backward_params on
/// the composed layer and linear_compose_backward, reading W1^T and W2^T from pt unless with_pt is
/// false.
struct LinearComposeOp {
  const char* name;
  int n, in, G, F;
  bool bias;
  bool with_pt = true;
  int fd_samples = 1 << 30;

  int ld2() const { return G + 3; }
  long w2_off() const { return 3 + long(G) * in + (bias ? G : 0); }
  long P() const { return w2_off() + long(F) * ld2() + 2; }
  LinearShape inner() const {
    LinearShape s;
    s.in = in;
    s.out = G;
    s.w_off = 3;
    s.wt_off = 3;
    s.b_off = bias ? 3 + long(G) * in : -1;
    return s;
  }
  LinearShape outer() const {
    LinearShape s;
    s.in = ld2();
    s.out = F;
    s.w_off = w2_off();
    s.wt_off = w2_off();
    return s.columns(2, G, false);
  }
  std::vector<bool> real_inputs() const { return {false, true}; }
  Args<double> inputs(Rng& rng) const { return {randn(rng, std::size_t(n) * in), randn(rng, P(), 0.5)}; }
  Arr<double> ref(const Args<double>& x) const {
    const auto& p = x[1];
    const LinearShape a = inner(), b = outer();
    Arr<double> y(std::size_t(n) * F);
    for (int r = 0; r < n; ++r)
      for (int o = 0; o < F; ++o) {
        double s = 0;
        for (int k = 0; k < G; ++k) {
          double h = bias ? p[a.b_off + k] : 0.0;
          for (int i = 0; i < in; ++i) h += p[a.w_off + long(k) * in + i] * x[0][std::size_t(r) * in + i];
          s += p[b.w_off + long(o) * b.stride() + k] * h;
        }
        y[std::size_t(r) * F + o] = s;
      }
    return y;
  }
  Weights<double, M> weights(const Vec<double, M>& p) const {
    Vec<double, M> pt("pt", with_pt ? p.extent(0) : 0);
    if (with_pt) {
      // both layers' W^T (the outer one of its full F x (G + 3) matrix, as the models transpose it)
      Kokkos::View<long* [3], M> shapes("shapes", 2);
      shapes(0, 0) = inner().w_off;
      shapes(0, 1) = in;
      shapes(0, 2) = G;
      shapes(1, 0) = w2_off();
      shapes(1, 1) = ld2();
      shapes(1, 2) = F;
      km::transpose_weights<Exec, double>(Exec(), p, shapes, pt);
    }
    return {p, pt};
  }
  template <class Mode>
  Weights<double, M> composed(const Vec<double, M>& p) const {
    const std::size_t nc = km::composed_shape(outer(), inner()).num_params();
    Vec<double, M> cp("cp", nc), cpt("cpt", nc);
    km::linear_compose<Exec, double, Mode>(Exec(), p, outer(), inner(), cp, cpt);
    return {cp, cpt};
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", n, F);
    km::linear_forward<Exec, S, double, Mode>(Exec(), mat(x[0], n, in), composed<Mode>(params(x[1])),
                                              km::composed_shape(outer(), inner()), Y);
    return flat(Y);
  }
  template <class S, class Mode>
  static Vec<double, M> param_grad(const LinearComposeOp& op, const Vec<double, M>& p, const Arr<S>& X, const Arr<S>& yb) {
    const LinearShape cs = km::composed_shape(op.outer(), op.inner());
    Vec<double, M> tc("tc", cs.num_params()), g("g", op.P());
    km::linear_backward_params<Exec, S, Mode>(Exec(), mat(X, op.n, op.in), mat(yb, op.n, op.F), cs, tc);
    km::linear_compose_backward<Exec, double, double, Mode>(Exec(), op.weights(p), op.outer(), op.inner(), tc, g);
    return g;
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto p = params(x[1]);
    Mat<S, M> Xb("Xb", n, in);
    km::linear_backward_input<Exec, S, double, Mode>(Exec(), mat(yb, n, F), composed<Mode>(p),
                                                     km::composed_shape(outer(), inner()), Xb, false);
    const auto g = param_grad<S, Mode>(*this, p, x[0], yb);
    return {flat(Xb), param_cotangent<S>(g, [&] { return param_grad<double, Mode>(*this, p, primal(x[0]), primal(yb)); })};
  }
};

// =============================================================================================
// pointwise.hpp
// =============================================================================================

double ref_activation(Activation a, double x) {
  const double sp = x > 20 ? x : std::log1p(std::exp(x));  // PyTorch's softplus threshold (20)
  switch (a) {
    case Activation::Identity: return x;
    case Activation::ReLU: return x > 0 ? x : 0.0;
    case Activation::SiLU: return x / (1 + std::exp(-x));
    case Activation::ShiftedSoftplus: return sp - std::log(2.0);
    case Activation::Tanh: return std::tanh(x);
    case Activation::Sigmoid: return 1 / (1 + std::exp(-x));
    case Activation::Softplus: return sp;
  }
  return 0;
}

struct ActivationOp {
  Activation act;
  const char* name;
  int n = 4, c = 6;
  Args<double> inputs(Rng& rng) const {
    // |x| in [0.05, 3] (ReLU away from 0), and +-22 (softplus' x > 20 branch)
    Arr<double> x = randu(rng, std::size_t(n) * c, 0.05, 3.0);
    const Arr<double> sign = randn(rng, x.size());
    for (std::size_t k = 0; k < x.size(); ++k) x[k] *= sign[k] < 0 ? -1 : 1;
    x[0] = 22.0;
    x[1] = -22.0;
    return {x};
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(x[0].size());
    for (std::size_t k = 0; k < y.size(); ++k) y[k] = ref_activation(act, x[0][k]);
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", n, c);
    km::activation_forward<Exec, S, Mode>(Exec(), act, mat(x[0], n, c), Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> Xb("Xb", n, c);
    km::activation_backward<Exec, S, Mode>(Exec(), act, mat(x[0], n, c), mat(yb, n, c), Xb, false);
    return {flat(Xb)};
  }
};

/// The fused dense ops with an activation (dense.hpp), on LinearOp's shapes and weights.
/// act_after: [Pre | Y] of linear_forward_act (Y = f(Pre)); backward through both outputs.
/// Otherwise y = linear(f(x)), backward by linear_backward_input_act (x's gradient) and
/// linear_backward_params on f(x).
struct LinearActOp : LinearOp {
  Activation act;
  bool act_after;
  LinearActOp(const char* nm, int n_, int in_, int out_, Activation a, bool after)
      : LinearOp{nm, n_, in_, out_, true}, act(a), act_after(after) {
    fd_samples = 24;
  }
  Arr<double> ref(const Args<double>& x) const {
    if (act_after) {
      Arr<double> pre = LinearOp::ref(x), y(pre.size());
      for (std::size_t k = 0; k < y.size(); ++k) y[k] = ref_activation(act, pre[k]);
      pre.insert(pre.end(), y.begin(), y.end());
      return pre;
    }
    Args<double> fx = x;
    for (double& v : fx[0]) v = ref_activation(act, v);
    return LinearOp::ref(fx);
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    const auto w = weights(params(x[1]));
    Mat<S, M> Pre("Pre", n, out), Y("Y", n, out);
    if (act_after) {
      km::linear_forward_act<Exec, S, double, Mode>(Exec(), mat(x[0], n, in), w, shape(), act, Pre, Y);
      Arr<S> r = flat(Pre), y = flat(Y);
      r.insert(r.end(), y.begin(), y.end());
      return r;
    }
    Mat<S, M> A("A", n, in);
    km::activation_forward<Exec, S, Mode>(Exec(), act, mat(x[0], n, in), A);
    km::linear_forward<Exec, S, double, Mode>(Exec(), A, w, shape(), Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto p = params(x[1]);
    const auto X = mat(x[0], n, in);
    Mat<S, M> Xb("Xb", n, in);
    Vec<double, M> g("g", P());
    auto grad_params = [&](auto&& input, auto&& ybar) {
      return param_cotangent<S>(g, [&] {
        Vec<double, M> gp("gp", P());
        km::linear_backward_params<Exec, double, Mode>(Exec(), input(), ybar(), shape(), gp);
        return gp;
      });
    };
    if (act_after) {
      // Pre's cotangent: its own plus f'(Pre) * Y's
      const Arr<S> yb_pre(yb.begin(), yb.begin() + std::ptrdiff_t(n) * out), yb_y(yb.begin() + std::ptrdiff_t(n) * out, yb.end());
      Mat<S, M> Pre("Pre", n, out), Y("Y", n, out);
      km::linear_forward_act<Exec, S, double, Mode>(Exec(), X, weights(p), shape(), act, Pre, Y);
      const auto Zb = mat(yb_pre, n, out);
      km::activation_backward<Exec, S, Mode>(Exec(), act, Pre, mat(yb_y, n, out), Zb, true);
      km::linear_backward_input<Exec, S, double, Mode>(Exec(), Zb, weights(p), shape(), Xb, false);
      km::linear_backward_params<Exec, S, Mode>(Exec(), X, Zb, shape(), g);
      return {flat(Xb), grad_params([&] { return mat(primal(x[0]), n, in); }, [&] {
                Mat<double, M> pre0("pre0", n, out), y0("y0", n, out);
                km::linear_forward_act<Exec, double, double, Mode>(Exec(), mat(primal(x[0]), n, in),
                                                                    weights(params(x[1])), shape(), act, pre0, y0);
                const auto zb0 = mat(primal(yb_pre), n, out);
                km::activation_backward<Exec, double, Mode>(Exec(), act, pre0, mat(primal(yb_y), n, out), zb0, true);
                return zb0;
              })};
    }
    Mat<S, M> A("A", n, in);
    km::activation_forward<Exec, S, Mode>(Exec(), act, X, A);
    const auto Yb = mat(yb, n, out);
    km::linear_backward_input_act<Exec, S, double, Mode>(Exec(), Yb, weights(p), shape(), act, X, Xb);
    km::linear_backward_params<Exec, S, Mode>(Exec(), A, Yb, shape(), g);
    return {flat(Xb), grad_params(
                          [&] {
                            Mat<double, M> a0("a0", n, in);
                            km::activation_forward<Exec, double, Mode>(Exec(), act, mat(primal(x[0]), n, in), a0);
                            return a0;
                          },
                          [&] { return mat(primal(yb), n, out); })};
  }
};

/// linear_forward_act_dot: [Pre | Y | Z] of Pre = X W^T + b, Y = f(Pre), Z = Y w1 + b1 (one output);
/// the one-output layer's weights w1 (out) and bias b1 sit after the first layer's buffer.
struct LinearActDotOp : LinearOp {
  Activation act;
  bool bias1;
  LinearActDotOp(const char* nm, int n_, int in_, int out_, Activation a, bool b1)
      : LinearOp{nm, n_, in_, out_, true}, act(a), bias1(b1) {
    fd_samples = 24;
  }
  long P1() const { return LinearOp::P(); }
  long P() const { return P1() + out + 1; }
  LinearShape dot_shape() const {
    LinearShape s;
    s.in = out;
    s.out = 1;
    s.w_off = P1();
    s.b_off = bias1 ? P1() + out : -1;
    return s;  // no W^T: a one-output layer needs none
  }
  Args<double> inputs(Rng& rng) const { return {randn(rng, std::size_t(n) * in), randn(rng, P(), 0.5)}; }
  Arr<double> ref(const Args<double>& x) const {
    const Arr<double> pre = LinearOp::ref(x);
    Arr<double> y(pre.size()), z(n);
    for (std::size_t k = 0; k < y.size(); ++k) y[k] = ref_activation(act, pre[k]);
    for (int i = 0; i < n; ++i) {
      double s = bias1 ? x[1][P1() + out] : 0.0;
      for (int o = 0; o < out; ++o) s += y[std::size_t(i) * out + o] * x[1][P1() + o];
      z[i] = s;
    }
    return cat(cat(pre, y), z);
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Pre("Pre", n, out), Y("Y", n, out), Z("Z", n, 1);
    km::linear_forward_act_dot<Exec, S, double, Mode>(Exec(), mat(x[0], n, in), weights(params(x[1])), shape(), act, Pre,
                                                      Y, dot_shape(), Z);
    return cat(cat(flat(Pre), flat(Y)), flat(Z));
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const std::size_t nf = std::size_t(n) * out;
    const auto p = params(x[1]);
    const auto X = mat(x[0], n, in);
    Mat<S, M> Xb("Xb", n, in);
    Vec<double, M> g("g", P());
    // Y's cotangent: its own plus Z's through w1; Pre's: its own plus f'(Pre) * Y's
    auto backward = [&](auto zero, const auto& Xs, const Arr<decltype(zero)>& ybs, const Vec<double, M>& gs, auto&& Xbs) {
      using Sx = decltype(zero);
      Mat<Sx, M> Pre("Pre", n, out), Y("Y", n, out), Z("Z", n, 1);
      km::linear_forward_act_dot<Exec, Sx, double, Mode>(Exec(), Xs, weights(p), shape(), act, Pre, Y, dot_shape(), Z);
      const auto Prb = mat(slice(ybs, 0, nf), n, out), Yb = mat(slice(ybs, nf, nf), n, out);
      const auto Zb = mat(slice(ybs, 2 * nf, n), n, 1);
      km::linear_backward_params<Exec, Sx, Mode>(Exec(), Y, Zb, dot_shape(), gs);
      km::linear_backward_input<Exec, Sx, double, Mode>(Exec(), Zb, weights(p), dot_shape(), Yb, true);
      km::activation_backward<Exec, Sx, Mode>(Exec(), act, Pre, Yb, Prb, true);
      km::linear_backward_params<Exec, Sx, Mode>(Exec(), Xs, Prb, shape(), gs);
      if (Xbs.extent(0)) km::linear_backward_input<Exec, Sx, double, Mode>(Exec(), Prb, weights(p), shape(), Xbs, false);
    };
    backward(S(0), X, yb, g, Xb);
    return {flat(Xb), param_cotangent<S>(g, [&] {
              Vec<double, M> gp("gp", P());
              backward(0.0, mat(primal(x[0]), n, in), primal(yb), gp, Mat<double, M>());
              return gp;
            })};
  }
};

/// Y = Y0 + X by add_into (its backward is the identity on both inputs).
struct AddIntoOp {
  const char* name = "add_into";
  int n = 5, c = 4;
  Args<double> inputs(Rng& rng) const { return {randn(rng, std::size_t(n) * c), randn(rng, std::size_t(n) * c)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(x[0].size());
    for (std::size_t k = 0; k < y.size(); ++k) y[k] = x[1][k] + x[0][k];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    auto Y = mat(x[1], n, c);
    km::add_into<Exec, S, Mode>(Exec(), mat(x[0], n, c), Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    return {yb, yb};
  }
};

// =============================================================================================
// cfconv.hpp
// =============================================================================================

struct CFConvOp {
  const Graph& g;
  int F;
  const char* name;
  int fd_samples = 1 << 30;
  Args<double> inputs(Rng& rng) const {
    return {randn(rng, std::size_t(g.N) * F), randn(rng, std::size_t(g.E) * F), randn(rng, g.E)};
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(std::size_t(g.N) * F, 0.0);
    for (int e = 0; e < g.E; ++e)
      for (int f = 0; f < F; ++f) y[g.dst[e] * F + f] += x[0][g.src[e] * F + f] * x[1][e * F + f] * x[2][e];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> agg("agg", g.N, F);
    km::cfconv_forward<Exec, S, Mode>(Exec(), mat(x[0], g.N, F), mat(x[1], g.E, F), vec(x[2]), g.d_row_ptr, g.d_src, agg);
    return flat(agg);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> xb("xb", g.N, F), Wb("Wb", g.E, F);
    Vec<S, M> Cb("Cb", g.E);
    km::cfconv_backward<Exec, S, Mode>(Exec(), mat(x[0], g.N, F), mat(x[1], g.E, F), vec(x[2]), g.d_dst, g.d_src,
                                       g.d_send_perm, g.d_send_ptr, mat(yb, g.N, F), xb, Wb, Cb);
    return {flat(xb), flat(Wb), flat(Cb)};
  }
};

/// Pairs of edges sharing W and C rows (kernels::EdgePairs): any grouping of the edges into pairs and
/// singles serves the kernels; here edge e goes with the next free edge q = e + 2 (mod 3), every
/// fourth first edge alone.
struct TestPairs {
  std::vector<int> first, second, of_edge;
  Vec<int, M> d_first, d_second, d_of_edge;
  int U() const { return int(first.size()); }
  km::EdgePairs<M> views() const { return {d_first, d_second, d_of_edge}; }
};
TestPairs make_test_pairs(int E) {
  TestPairs t;
  t.of_edge.assign(E, -1);
  for (int e = 0; e < E; ++e) {
    if (t.of_edge[e] >= 0) continue;
    const int u = t.U();
    int q = -1;
    if (u % 4 != 3)
      for (int c = e + 1; c < E && q < 0; ++c)
        if (t.of_edge[c] < 0 && (c - e) % 3 == 2) q = c;
    t.first.push_back(e), t.second.push_back(q);
    t.of_edge[e] = u;
    if (q >= 0) t.of_edge[q] = u;
  }
  t.d_first = ivec(t.first), t.d_second = ivec(t.second), t.d_of_edge = ivec(t.of_edge);
  return t;
}

/// A CFConv layer with its two-layer filter network (fixed weights), agg of cfconv_forward with
/// W = W1 ssp(W0 B + b0) + b1; backward for the geometry only: xbar (cfconv_backward_nodes), Bbar
/// and Cbar by cfconv_filter_geometry_backward (HostRow: one pass over tiles of rows); rows of B, C
/// and W per edge, or per pair of edges (`pairs`). p = [2 pad |
/// W0: F x K | b0 | W1: F x F | b1].
struct CFConvFilterOp {
  const Graph& g;
  int F = 9, K = 7;
  const char* name;
  int fd_samples = 24;
  const TestPairs* pairs = nullptr;  ///< rows of B, C, W per pair of edges (null: per edge)
  int U() const { return pairs ? pairs->U() : g.E; }
  int row(int e) const { return pairs ? pairs->of_edge[e] : e; }
  km::EdgePairs<M> pv() const { return pairs ? pairs->views() : km::EdgePairs<M>{}; }
  long o0() const { return 2; }
  long o1() const { return o0() + long(F) * K + F; }
  long P() const { return o1() + long(F) * F + F; }
  LinearShape l0() const {
    LinearShape s;
    s.in = K, s.out = F, s.w_off = o0(), s.wt_off = o0(), s.b_off = o0() + long(F) * K;
    return s;
  }
  LinearShape l1() const {
    LinearShape s;
    s.in = F, s.out = F, s.w_off = o1(), s.wt_off = o1(), s.b_off = o1() + long(F) * F;
    return s;
  }
  Arr<double> p() const {
    Arr<double> v(P());
    for (long k = 0; k < P(); ++k) v[k] = 0.6 * std::cos(0.9 * double(k) + 0.3);
    return v;
  }
  Weights<double, M> weights() const { return weights_of(vec(p())); }
  Weights<double, M> weights_of(const Vec<double, M>& pv) const {
    Vec<double, M> pt("pt", P());
    Kokkos::View<long* [3], M> shapes("shapes", 2);
    shapes(0, 0) = o0(), shapes(0, 1) = K, shapes(0, 2) = F;
    shapes(1, 0) = o1(), shapes(1, 1) = F, shapes(1, 2) = F;
    km::transpose_weights<Exec, double>(Exec(), pv, shapes, pt);
    return {pv, pt};
  }
  Args<double> inputs(Rng& rng) const {
    return {randn(rng, std::size_t(g.N) * F), randn(rng, std::size_t(U()) * K), randn(rng, U())};
  }
  Arr<double> ref(const Args<double>& x) const { return ref_with(x, p()); }
  Arr<double> ref_with(const Args<double>& x, const Arr<double>& pv) const {
    Arr<double> y(std::size_t(g.N) * F, 0.0);
    for (int e = 0; e < g.E; ++e) {
      const int u = row(e);
      std::vector<double> a0(F);
      for (int o = 0; o < F; ++o) {
        double s = pv[l0().b_off + o];
        for (int k = 0; k < K; ++k) s += x[1][std::size_t(u) * K + k] * pv[o0() + long(o) * K + k];
        a0[o] = ref_activation(Activation::ShiftedSoftplus, s);
      }
      for (int f = 0; f < F; ++f) {
        double w = pv[l1().b_off + f];
        for (int c = 0; c < F; ++c) w += a0[c] * pv[o1() + long(f) * F + c];
        y[std::size_t(g.dst[e]) * F + f] += x[0][std::size_t(g.src[e]) * F + f] * w * x[2][u];
      }
    }
    return y;
  }
  template <class S, class Mode>
  void filter(const Args<S>& x, const Weights<double, M>& w, Mat<S, M> pre0, Mat<S, M> W) const {
    Mat<S, M> a0("a0", U(), F);
    km::linear_forward_act<Exec, S, double, Mode>(Exec(), mat(x[1], U(), K), w, l0(), Activation::ShiftedSoftplus, pre0, a0);
    km::linear_forward<Exec, S, double, Mode>(Exec(), a0, w, l1(), W);
  }
  /// The forward: HostRow's fused filter and aggregate (cfconv_filter_forward_geometry) where it
  /// runs, the ops otherwise (the modes then compare the two bitwise).
  template <class S, class Mode>
  void forward(const Args<S>& x, const Weights<double, M>& w, Mat<S, M> pre0, Mat<S, M> W, Mat<S, M> agg) const {
    if (km::cfconv_filter_forward_geometry_fuses<Exec, S, double, Mode>(w, l0(), l1(), F, K)) {
      km::cfconv_filter_forward_geometry<Exec, S, double, Mode>(Exec(), mat(x[1], U(), K), mat(x[0], g.N, F), vec(x[2]),
                                                                g.d_row_ptr, g.d_src, w, l0(), l1(),
                                                                Activation::ShiftedSoftplus, pre0, W, agg, pv());
    } else {
      filter<S, Mode>(x, w, pre0, W);
      km::cfconv_forward<Exec, S, Mode>(Exec(), mat(x[0], g.N, F), W, vec(x[2]), g.d_row_ptr, g.d_src, agg, pv());
    }
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> pre0("pre0", U(), F), W("W", U(), F), agg("agg", g.N, F);
    forward<S, Mode>(x, weights(), pre0, W, agg);
    return flat(agg);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto w = weights();
    Mat<S, M> pre0("pre0", U(), F), W("W", U(), F), agg("agg", g.N, F);
    forward<S, Mode>(x, w, pre0, W, agg);
    Mat<S, M> xb("xb", g.N, F), Bb("Bb", U(), K), Wb("Wb", U(), F), zb("zb", U(), F), Bt("Bt", U(), K);
    Vec<S, M> Cb("Cb", U());
    const auto aggbar = mat(yb, g.N, F);
    km::cfconv_backward_nodes<Exec, S, Mode>(Exec(), W, vec(x[2]), g.d_dst, g.d_send_perm, g.d_send_ptr, aggbar, xb, pv());
    km::cfconv_filter_geometry_backward<Exec, S, double, Mode>(Exec(), mat(x[0], g.N, F), W, vec(x[2]), g.d_dst, g.d_src,
                                                               aggbar, w.p, l0(), l1(), Activation::ShiftedSoftplus, pre0,
                                                               Cb, Bb, Wb, zb, Bt, pv());
    return {flat(xb), flat(Bb), flat(Cb)};
  }
};

/// The same layer in training: the filter's parameters an input (p, real), the backward by
/// cfconv_filter_backward_params (HostRow on one thread: one pass over chunks of rows, the weight
/// sums of W0, b0, W1, b1 and, with `geometry`, Bbar and Cbar in it; the other modes and more threads:
/// the op sequence). Without `geometry` the pass computes neither, and Bbar, Cbar come from
/// cfconv_filter_geometry_backward.
struct CFConvFilterParamsOp {
  CFConvFilterOp f;
  bool geometry;
  const char* name;
  int fd_samples = 24;
  std::vector<bool> real_inputs() const { return {false, false, false, true}; }
  Args<double> inputs(Rng& rng) const {
    Args<double> x = f.inputs(rng);
    x.push_back(randn(rng, f.P(), 0.4));
    return x;
  }
  Arr<double> ref(const Args<double>& x) const { return f.ref_with(x, x[3]); }
  template <class S, class Mode>
  void forward(const Args<S>& x, const Weights<double, M>& w, Mat<S, M> pre0, Mat<S, M> a0, Mat<S, M> W,
               Mat<S, M> agg) const {
    // HostRow's filter in chunks keeping the activations where it runs (real scalars), the ops otherwise
    if (km::cfconv_filter_forward_geometry_fuses<Exec, S, double, Mode>(w, f.l0(), f.l1(), f.F, f.K)) {
      km::cfconv_filter_forward_geometry<Exec, S, double, Mode>(Exec(), mat(x[1], f.U(), f.K), mat(x[0], f.g.N, f.F),
                                                                vec(x[2]), f.g.d_row_ptr, f.g.d_src, w, f.l0(), f.l1(),
                                                                Activation::ShiftedSoftplus, pre0, W, agg, f.pv(), a0);
      return;
    }
    km::linear_forward_act<Exec, S, double, Mode>(Exec(), mat(x[1], f.U(), f.K), w, f.l0(), Activation::ShiftedSoftplus,
                                                  pre0, a0);
    km::linear_forward<Exec, S, double, Mode>(Exec(), a0, w, f.l1(), W);
    km::cfconv_forward<Exec, S, Mode>(Exec(), mat(x[0], f.g.N, f.F), W, vec(x[2]), f.g.d_row_ptr, f.g.d_src, agg, f.pv());
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    const int U = f.U(), F = f.F;
    Mat<S, M> pre0("pre0", U, F), a0("a0", U, F), W("W", U, F), agg("agg", f.g.N, F);
    forward<S, Mode>(x, f.weights_of(params(x[3])), pre0, a0, W, agg);
    return flat(agg);
  }
  template <class S, class Mode>
  void grads(const Args<S>& x, const Arr<S>& yb, Mat<S, M> xb, Mat<S, M> Bb, Vec<S, M> Cb, Vec<double, M> gp) const {
    const int U = f.U(), F = f.F, K = f.K;
    const auto w = f.weights_of(params(x[3]));
    Mat<S, M> pre0("pre0", U, F), a0("a0", U, F), W("W", U, F), agg("agg", f.g.N, F);
    forward<S, Mode>(x, w, pre0, a0, W, agg);
    const auto aggbar = mat(yb, f.g.N, F);
    Mat<S, M> Wb("Wb", U, F), zb("zb", U, F), Bt("Bt", U, K);
    Vec<double, M> av("av", km::cfconv_filter_params_scratch_reals<S>(F, K));
    Vec<S, M> sc("sc", km::cfconv_filter_params_scratch_scalars(F, K));
    km::cfconv_backward_nodes<Exec, S, Mode>(Exec(), W, vec(x[2]), f.g.d_dst, f.g.d_send_perm, f.g.d_send_ptr, aggbar, xb,
                                             f.pv());
    km::cfconv_filter_backward_params<Exec, S, double, Mode>(
        Exec(), mat(x[0], f.g.N, F), W, vec(x[2]), f.g.d_dst, f.g.d_src, aggbar, w.p, f.l0(), f.l1(),
        Activation::ShiftedSoftplus, mat(x[1], U, K), a0, pre0, gp, geometry ? Cb : Vec<S, M>(),
        geometry ? Bb : Mat<S, M>(), av, sc, Wb, zb, Bt, f.pv());
    if (!geometry)
      km::cfconv_filter_geometry_backward<Exec, S, double, Mode>(Exec(), mat(x[0], f.g.N, F), W, vec(x[2]), f.g.d_dst,
                                                                 f.g.d_src, aggbar, w.p, f.l0(), f.l1(),
                                                                 Activation::ShiftedSoftplus, pre0, Cb, Bb, Wb, zb, Bt,
                                                                 f.pv());
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const int U = f.U(), F = f.F, K = f.K, N = f.g.N;
    Mat<S, M> xb("xb", N, F), Bb("Bb", U, K);
    Vec<S, M> Cb("Cb", U);
    Vec<double, M> gp("g", f.P());
    grads<S, Mode>(x, yb, xb, Bb, Cb, gp);
    return {flat(xb), flat(Bb), flat(Cb), param_cotangent<S>(gp, [&] {
              Mat<double, M> xb0("xb0", N, F), Bb0("Bb0", U, K);
              Vec<double, M> Cb0("Cb0", U), g0("g0", f.P());
              grads<double, Mode>(Args<double>{primal(x[0]), primal(x[1]), primal(x[2]), primal(x[3])}, primal(yb), xb0,
                                  Bb0, Cb0, g0);
              return g0;
            })};
  }
};

// =============================================================================================
// radial.hpp
// =============================================================================================

struct EdgeLengthsOp {
  const char* name = "edge_lengths";
  int E = 17;
  Args<double> inputs(Rng& rng) const { return {rand_vectors(rng, E, 0.5, 3.0)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> d(E);
    for (int e = 0; e < E; ++e)
      d[e] = std::sqrt(x[0][3 * e] * x[0][3 * e] + x[0][3 * e + 1] * x[0][3 * e + 1] + x[0][3 * e + 2] * x[0][3 * e + 2]);
    return d;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Vec<S, M> d("d", E);
    km::edge_lengths<Exec, S, Mode>(Exec(), mat(x[0], E, 3), d);
    return flat(d);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto r = mat(x[0], E, 3);
    Vec<S, M> d("d", E);
    Mat<S, M> rb("rb", E, 3);
    km::edge_lengths<Exec, S, Mode>(Exec(), r, d);
    km::edge_lengths_backward<Exec, S, Mode>(Exec(), r, d, vec(yb), rb);
    return {flat(rb)};
  }
};

/// The edge-length feature a_e = d_e / scale and its backward (radial.hpp; edge_features ["length"]).
struct LengthFeatureOp {
  const char* name = "length_feature";
  int E = 13;
  double scale = 2.7;
  Args<double> inputs(Rng& rng) const { return {randu(rng, std::size_t(E), 0.4, 3.0)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> a(E);
    for (int e = 0; e < E; ++e) a[e] = x[0][e] / scale;
    return a;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> a("a", E, 1);
    km::length_feature<Exec, S>(Exec(), vec(x[0]), scale, a);
    return flat(a);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    Vec<S, M> db("db", E);
    km::length_feature_backward<Exec, S>(Exec(), mat(yb, E, 1), scale, db);
    return {flat(db)};
  }
};

double ref_basis(const RadialSpec& s, int k, double d) {
  if (s.type == RadialBasis::Gaussian) {
    const double delta = s.cutoff / (s.size - 1), mu = k * delta;
    return std::exp(-(d - mu) * (d - mu) / (2 * delta * delta));
  }
  const double a = s.type == RadialBasis::Sinc ? 1.0 : std::sqrt(2 / s.cutoff);
  return a * std::sin((k + 1) * M_PI * d / s.cutoff) / d;
}
double ref_envelope(const RadialSpec& s, double d) {
  if (d >= s.cutoff) return 0;
  const double x = d / s.cutoff;
  if (s.envelope == Envelope::Cosine) return 0.5 * (std::cos(M_PI * x) + 1);
  const double p = 6;  // DimeNet's polynomial envelope, p = 6
  return 1 - (p + 1) * (p + 2) / 2 * std::pow(x, p) + p * (p + 2) * std::pow(x, p + 1) - p * (p + 1) / 2 * std::pow(x, p + 2);
}

/// PyG's DimeNet envelope divided by x (radial::dimenet_envelope), p = exponent + 1; 0 from x = 1 on.
double ref_dimenet_envelope(int exponent, double x) {
  if (x >= 1) return 0.0;
  const int P = exponent + 1;
  const double a = -(P + 1) * (P + 2) / 2.0, b = P * (P + 2), c = -P * (P + 1) / 2.0;
  return 1 / x + a * std::pow(x, P - 1) + b * std::pow(x, P) + c * std::pow(x, P + 1);
}

/// [B (E x K), C (E)] of radial_forward; distances in [0.4, 0.95 rc] and two beyond the cutoff.
struct RadialOp {
  RadialSpec spec;
  const char* name;
  int E = 13;
  double dual_primal_rel = 0.0;  // Dual division keeps the real quotient (core/dual.hpp): bitwise
  Args<double> inputs(Rng& rng) const {
    Arr<double> d = randu(rng, E, 0.4, 0.95 * spec.cutoff);
    d[3] = 1.1 * spec.cutoff;
    d[7] = 1.3 * spec.cutoff;
    return {d};
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> B(std::size_t(E) * spec.size), C(E);
    for (int e = 0; e < E; ++e) {
      for (int k = 0; k < spec.size; ++k) B[e * spec.size + k] = ref_basis(spec, k, x[0][e]);
      C[e] = ref_envelope(spec, x[0][e]);
    }
    return cat(B, C);
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> B("B", E, spec.size);
    Vec<S, M> C("C", E);
    km::radial_forward<Exec, S, Mode>(Exec(), spec, vec(x[0]), B, C);
    return cat(flat(B), flat(C));
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const std::size_t nb = std::size_t(E) * spec.size;
    Vec<S, M> db("db", E);
    Mat<S, M> B("B", E, spec.size);
    Vec<S, M> C("C", E);
    km::radial_forward<Exec, S, Mode>(Exec(), spec, vec(x[0]), B, C);
    km::radial_backward<Exec, S, Mode>(Exec(), spec, vec(x[0]), B, mat(slice(yb, 0, nb), E, spec.size),
                                       vec(slice(yb, nb, E)), db);
    return {flat(db)};
  }
};

/// [B (E x K)] of bessel_basis (DimeNet's BesselBasisLayer, trainable frequencies p[2 .. 2 + K));
/// distances in [0.4, 0.95 rc] and two beyond the cutoff; frequencies near (k + 1) pi.
struct BesselBasisOp {
  int exponent;
  const char* name;
  int E = 13, K = 5;
  double rc = 3.0;
  static constexpr long f_off = 2;
  std::vector<bool> real_inputs() const { return {false, true}; }
  Args<double> inputs(Rng& rng) const {
    Arr<double> d = randu(rng, E, 0.4, 0.95 * rc);
    d[3] = 1.1 * rc;
    d[7] = 1.3 * rc;
    Arr<double> p = randn(rng, f_off + K + 1, 0.3);
    for (int k = 0; k < K; ++k) p[f_off + k] += (k + 1) * M_PI;
    return {d, p};
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> B(std::size_t(E) * K);
    for (int e = 0; e < E; ++e) {
      const double t = x[0][e] / rc;
      const double env = ref_dimenet_envelope(exponent, t);
      for (int k = 0; k < K; ++k) B[e * K + k] = env * std::sin(x[1][f_off + k] * t);
    }
    return B;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> B("B", E, K);
    km::bessel_basis<Exec, S, double, Mode>(Exec(), vec(x[0]), params(x[1]), f_off, rc, exponent, B);
    return flat(B);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const long P = long(x[1].size());
    auto run = [&](const auto& d, const auto& Bb, const Vec<double, M>& g) {
      using SS = typename std::decay_t<decltype(d)>::non_const_value_type;
      Vec<SS, M> db("db", E);
      km::bessel_basis_backward<Exec, SS, double, Mode>(Exec(), d, params(x[1]), f_off, rc, exponent, Bb, g, db);
      return db;
    };
    Vec<double, M> g("g", P);
    const auto db = run(vec(x[0]), mat(yb, E, K), g);
    return {flat(db), param_cotangent<S>(g, [&] {
              Vec<double, M> gp("gp", P);
              run(vec(primal(x[0])), mat(primal(yb), E, K), gp);
              return gp;
            })};
  }
};

/// [R (E x L K)] of spherical_bessel_basis (DimeNet's radial spherical Bessel basis, kernels/spherical.hpp)
/// against std::sph_bessel; distances in [0.3, 0.95 rc] and two beyond the cutoff. (Below, the upward
/// recurrence for j_l - like PyG's closed forms of the same expressions - loses relative digits in the
/// smallest high-order entries, beyond the harness's 1e-12; the golden test compares with PyG there.)
struct SphericalBesselOp {
  SphericalBesselTable t;
  int exponent;
  const char* name;
  int E = 11;
  double rc = 3.0;
  double dual_primal_rel = 0.0;
  Args<double> inputs(Rng& rng) const {
    Arr<double> d = randu(rng, E, 0.3 * rc, 0.95 * rc);
    d[3] = 1.1 * rc;
    d[7] = 1.3 * rc;
    return {d};
  }
  Arr<double> ref(const Args<double>& x) const {
    const int W = t.L * t.K;
    Arr<double> R(std::size_t(E) * W);
    for (int e = 0; e < E; ++e) {
      const double s = x[0][e] / rc;
      const double env = ref_dimenet_envelope(exponent, s);
      for (int l = 0; l < t.L; ++l)
        for (int n = 0; n < t.K; ++n)
          R[e * W + l * t.K + n] = env * t.norm[l * t.K + n] * std::sph_bessel(unsigned(l), t.zeros[l * t.K + n] * s);
    }
    return R;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> R("R", E, t.L * t.K);
    km::spherical_bessel_basis<Exec, S, Mode>(Exec(), vec(x[0]), vec(t.zeros), vec(t.norm), t.L, t.K, rc, exponent, R);
    return flat(R);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Vec<S, M> db("db", E);
    km::spherical_bessel_basis_backward<Exec, S, Mode>(Exec(), vec(x[0]), vec(t.zeros), vec(t.norm), t.L, t.K, rc,
                                                       exponent, mat(yb, E, t.L * t.K), db);
    return {flat(db)};
  }
};

/// [sbf (T x L K)] of triplet_spherical_basis from [cos (T), Rb (E x L K)]: Y_l^0 = sqrt((2l+1)/4pi)
/// P_l (std::legendre) times the kj edge's row; backward through the kj segments.
struct TripletSphericalOp {
  const Graph& g;
  int L, K;
  const char* name;
  Args<double> inputs(Rng& rng) const { return {randu(rng, g.T(), -0.98, 0.98), randn(rng, g.E * L * K)}; }
  Arr<double> ref(const Args<double>& x) const {
    const int W = L * K;
    Arr<double> y(std::size_t(g.T()) * W);
    for (int t = 0; t < g.T(); ++t)
      for (int l = 0; l < L; ++l) {
        const double Y = std::sqrt((2 * l + 1) / (4 * std::acos(-1.0))) * std::legendre(unsigned(l), x[0][t]);
        for (int n = 0; n < K; ++n) y[t * W + l * K + n] = Y * x[1][g.trip.kj[t] * W + l * K + n];
      }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> y("sbf", g.T(), L * K);
    km::triplet_spherical_basis<Exec, S, Mode>(Exec(), vec(x[0]), mat(x[1], g.E, L * K), g.d_trip.kj, L, y);
    return flat(y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Vec<S, M> cb("cb", g.T());
    Mat<S, M> Rb("Rb", g.E, L * K);
    const auto& t = g.d_trip;
    km::triplet_spherical_basis_backward<Exec, S, Mode>(Exec(), vec(x[0]), mat(x[1], g.E, L * K), t.kj, t.kj_perm,
                                                        t.kj_ptr, L, mat(yb, g.T(), L * K), cb, Rb, false);
    return {flat(cb), flat(Rb)};
  }
};

// =============================================================================================
// egnn.hpp
// =============================================================================================

/// [d (E x 3), len (E)] of egnn_edge_vectors; backward: len through edge_lengths_backward, then
/// egnn_edge_vectors_backward (rbar, and ubar when the layer has coordinates u).
struct EGNNEdgeVectorsOp {
  const Graph& g;
  bool with_u;
  const char* name;
  Args<double> inputs(Rng& rng) const {
    Args<double> x = {rand_vectors(rng, g.E, 1.0, 3.0)};
    if (with_u) x.push_back(randn(rng, std::size_t(g.N) * 3, 0.2));
    return x;
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> d(std::size_t(g.E) * 3), len(g.E);
    for (int e = 0; e < g.E; ++e) {
      double s = 0;
      for (int a = 0; a < 3; ++a) {
        d[3 * e + a] = x[0][3 * e + a] + (with_u ? x[1][3 * g.dst[e] + a] - x[1][3 * g.src[e] + a] : 0.0);
        s += d[3 * e + a] * d[3 * e + a];
      }
      len[e] = std::sqrt(s);
    }
    return cat(d, len);
  }
  template <class S, class Mode>
  void run_fwd(const Args<S>& x, const Mat<S, M>& d, const Vec<S, M>& len) const {
    const Mat<S, M> u = with_u ? mat(x[1], g.N, 3) : Mat<S, M>();
    km::egnn_edge_vectors<Exec, S, Mode>(Exec(), mat(x[0], g.E, 3), u, g.d_dst, g.d_src, d, len);
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> d("d", g.E, 3);
    Vec<S, M> len("len", g.E);
    run_fwd<S, Mode>(x, d, len);
    return cat(flat(d), flat(len));
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> d("d", g.E, 3), rb("rb", g.E, 3), ub("ub", with_u ? g.N : 0, 3);
    Vec<S, M> len("len", g.E);
    run_fwd<S, Mode>(x, d, len);
    auto db = mat(slice(yb, 0, 3 * std::size_t(g.E)), g.E, 3);
    km::edge_lengths_backward<Exec, S, Mode>(Exec(), d, len, vec(slice(yb, 3 * std::size_t(g.E), g.E)), db);
    km::egnn_edge_vectors_backward<Exec, S, Mode>(Exec(), db, g.d_row_ptr, g.d_send_perm, g.d_send_ptr, rb, ub, false);
    if (with_u) return {flat(rb), flat(ub)};
    return {flat(rb)};
  }
};

/// pre(e,f) = A(dst,f) + B(src,f) + q(e) p(w_off + f ld); A and B go back through the gathers'
/// backwards (as in the EGNN layer), q and the strided radial column of W through egnn_edge_pre_backward
/// (without a parameter-gradient view the weights are a fixed, non-input buffer).
struct EGNNEdgePreOp {
  const Graph& g;
  bool with_g;
  const char* name;
  int F = 4;
  long w_off = 3, ld = 7;
  long P() const { return w_off + (F - 1) * ld + 1 + 2; }
  Arr<double> fixed_p() const {
    Arr<double> p(P());
    for (long k = 0; k < P(); ++k) p[k] = 0.7 * std::cos(1.3 * double(k) + 0.4);
    return p;
  }
  std::vector<bool> real_inputs() const {
    if (with_g) return {false, false, false, true};
    return {false, false, false};
  }
  Args<double> inputs(Rng& rng) const {
    Args<double> x = {randn(rng, std::size_t(g.N) * F), randn(rng, std::size_t(g.N) * F), randu(rng, g.E, 0.5, 3.0)};
    if (with_g) x.push_back(randn(rng, P()));
    return x;
  }
  template <class S>
  Arr<double> p_of(const Args<S>& x) const {
    return with_g ? primal(x[3]) : fixed_p();
  }
  Arr<double> ref(const Args<double>& x) const {
    const Arr<double> p = p_of(x);
    Arr<double> y(std::size_t(g.E) * F);
    for (int e = 0; e < g.E; ++e)
      for (int f = 0; f < F; ++f) y[e * F + f] = x[0][g.dst[e] * F + f] + x[1][g.src[e] * F + f] + x[2][e] * p[w_off + f * ld];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> pre("pre", g.E, F);
    km::egnn_edge_pre<Exec, S, double, Mode>(Exec(), mat(x[0], g.N, F), mat(x[1], g.N, F), vec(p_of(x)), w_off, ld,
                                             vec(x[2]), g.d_dst, g.d_src, pre);
    return flat(pre);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto Yb = mat(yb, g.E, F);
    Mat<S, M> Ab("Ab", g.N, F), Bb("Bb", g.N, F);
    Vec<S, M> qb("qb", g.E);
    Vec<double, M> gp("g", with_g ? P() : 0);
    km::gather_rows_backward<Exec, S, Mode>(Exec(), Yb, g.d_row_ptr, Ab, false);
    km::gather_rows_backward_perm<Exec, S, Mode>(Exec(), Yb, g.d_send_perm, g.d_send_ptr, Bb, false);
    km::egnn_edge_pre_backward<Exec, S, double, Mode>(Exec(), Yb, vec(p_of(x)), w_off, ld, vec(x[2]), gp, qb);
    if (with_g)
      return {flat(Ab), flat(Bb), flat(qb), param_cotangent<S>(gp, [&] {
                Vec<double, M> g0("g0", P());
                Vec<double, M> qb0("qb0", g.E);
                km::egnn_edge_pre_backward<Exec, double, double, Mode>(Exec(), mat(primal(yb), g.E, F), vec(primal(p_of(x))),
                                                                       w_off, ld, vec(primal(x[2])), g0, qb0);
                return g0;
              })};
    return {flat(Ab), flat(Bb), flat(qb)};
  }
};

/// [pre | a] of egnn_edge_pre_act (a = f(pre)); backward through both outputs by EGNNEdgePreOp's.
struct EGNNEdgePreActOp : EGNNEdgePreOp {
  Activation act;
  EGNNEdgePreActOp(const Graph& g_, bool with_g_, const char* nm, Activation a, int F_)
      : EGNNEdgePreOp{g_, with_g_, nm, F_}, act(a) {}
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> pre = EGNNEdgePreOp::ref(x), a(pre.size());
    for (std::size_t k = 0; k < a.size(); ++k) a[k] = ref_activation(act, pre[k]);
    pre.insert(pre.end(), a.begin(), a.end());
    return pre;
  }
  template <class S, class Mode>
  Mat<S, M> pre_of(const Args<S>& x, const Mat<S, M>& a) const {
    Mat<S, M> pre("pre", g.E, F);
    km::egnn_edge_pre_act<Exec, S, double, Mode>(Exec(), mat(x[0], g.N, F), mat(x[1], g.N, F), vec(p_of(x)), w_off, ld,
                                                 vec(x[2]), g.d_dst, g.d_src, act, pre, a);
    return pre;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> a("a", g.E, F);
    Arr<S> r = flat(pre_of<S, Mode>(x, a)), y = flat(a);
    r.insert(r.end(), y.begin(), y.end());
    return r;
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const std::ptrdiff_t half = std::ptrdiff_t(g.E) * F;
    Mat<S, M> a("a", g.E, F);
    const Mat<S, M> pre = pre_of<S, Mode>(x, a);
    const auto Zb = mat(Arr<S>(yb.begin(), yb.begin() + half), g.E, F);
    km::activation_backward<Exec, S, Mode>(Exec(), act, pre, mat(Arr<S>(yb.begin() + half, yb.end()), g.E, F), Zb, true);
    return EGNNEdgePreOp::bwd<S, Mode>(x, flat(Zb));
  }
};

/// The edge MLP of an E_GCL layer from the per-node halves of its first layer, [agg (N x H) | c2 (E),
/// with coordinates]:  pre1 = A[dst] + B[src] + q w,  m = f(W2 f(pre1) + b2),  agg = receiver sums of m,
/// c2 = w6 . f(W5 m + b5);  backward by egnn_edge_mlp_backward (HostRow: the fused pass, dual on two threads its pipeline,
/// over edge chunks; the other modes: the op sequence). p = [3 pad | w at stride 2 | W2 | b2 | W5 | b5
/// | w6 | 2 pad].
struct EGNNEdgeMLPOp {
  const Graph& g;
  bool coord;
  Activation act;
  const char* name;
  int H = 9;
  int fd_samples = 24;
  long w_off = 3, ld = 2;
  long o2() const { return w_off + ld * H; }
  long o5() const { return o2() + long(H) * H + H; }
  long o6() const { return o5() + long(H) * H + H; }
  long P() const { return o6() + H + 2; }
  LinearShape lin(long off, bool bias) const {
    LinearShape s;
    s.in = H;
    s.out = H;
    s.w_off = off;
    s.wt_off = off;
    s.b_off = bias ? off + long(H) * H : -1;
    return s;
  }
  LinearShape dot() const {
    LinearShape s;
    s.in = H;
    s.out = 1;
    s.w_off = o6();
    return s;
  }
  std::vector<bool> real_inputs() const { return {false, false, false, true}; }
  Args<double> inputs(Rng& rng) const {
    return {randn(rng, std::size_t(g.N) * H), randn(rng, std::size_t(g.N) * H), randu(rng, g.E, 0.5, 3.0),
            randn(rng, P(), 0.4)};
  }
  Arr<double> ref(const Args<double>& x) const {
    const Arr<double>& p = x[3];
    auto layer = [&](const Arr<double>& in, long off) {
      Arr<double> out(in.size());
      for (int e = 0; e < g.E; ++e)
        for (int o = 0; o < H; ++o) {
          double s = p[off + long(H) * H + o];
          for (int c = 0; c < H; ++c) s += in[std::size_t(e) * H + c] * p[off + long(o) * H + c];
          out[std::size_t(e) * H + o] = ref_activation(act, s);
        }
      return out;
    };
    Arr<double> a1(std::size_t(g.E) * H);
    for (int e = 0; e < g.E; ++e)
      for (int f = 0; f < H; ++f)
        a1[std::size_t(e) * H + f] = ref_activation(
            act, x[0][g.dst[e] * H + f] + x[1][g.src[e] * H + f] + x[2][e] * p[w_off + f * ld]);
    const Arr<double> m = layer(a1, o2());
    Arr<double> agg(std::size_t(g.N) * H, 0.0);
    for (int e = 0; e < g.E; ++e)
      for (int f = 0; f < H; ++f) agg[std::size_t(g.dst[e]) * H + f] += m[std::size_t(e) * H + f];
    if (!coord) return agg;
    const Arr<double> a5 = layer(m, o5());
    Arr<double> c2(g.E, 0.0);
    for (int e = 0; e < g.E; ++e)
      for (int c = 0; c < H; ++c) c2[e] += a5[std::size_t(e) * H + c] * p[o6() + c];
    return cat(agg, c2);
  }
  template <class S>
  struct Caches {
    Mat<S, M> pre1, a1, pre2, m, c1, a5, c2, agg;
  };
  Weights<double, M> weights(const Vec<double, M>& p) const {
    Vec<double, M> pt("pt", p.extent(0));
    Kokkos::View<long* [3], M> shapes("shapes", 2);
    shapes(0, 0) = o2(), shapes(0, 1) = H, shapes(0, 2) = H;
    shapes(1, 0) = o5(), shapes(1, 1) = H, shapes(1, 2) = H;
    km::transpose_weights<Exec, double>(Exec(), p, shapes, pt);
    return {p, pt};
  }
  template <class S, class Mode>
  Caches<S> forward(const Args<S>& x, const Weights<double, M>& w) const {
    Caches<S> c{Mat<S, M>("pre1", g.E, H), Mat<S, M>("a1", g.E, H), Mat<S, M>("pre2", g.E, H), Mat<S, M>("m", g.E, H),
                Mat<S, M>("c1", g.E, H),   Mat<S, M>("a5", g.E, H), Mat<S, M>("c2", g.E, 1), Mat<S, M>("agg", g.N, H)};
    km::egnn_edge_pre_act<Exec, S, double, Mode>(Exec(), mat(x[0], g.N, H), mat(x[1], g.N, H), w.p, w_off, ld, vec(x[2]),
                                                 g.d_dst, g.d_src, act, c.pre1, c.a1);
    km::linear_forward_act<Exec, S, double, Mode>(Exec(), c.a1, w, lin(o2(), true), act, c.pre2, c.m);
    if (coord) km::linear_forward_act_dot<Exec, S, double, Mode>(Exec(), c.m, w, lin(o5(), true), act, c.c1, c.a5, dot(), c.c2);
    km::segment_sum<Exec, S, Mode>(Exec(), c.m, g.d_row_ptr, c.agg, false);
    return c;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    const Caches<S> c = forward<S, Mode>(x, weights(params(x[3])));
    return coord ? cat(flat(c.agg), flat(c.c2)) : flat(c.agg);
  }
  template <class S, class Mode>
  void grad_params(const Args<S>& x, const Arr<S>& yb, Mat<S, M> Ab, Mat<S, M> Bb, Vec<S, M> qb,
                          Vec<double, M> gp) const {
    const auto w = weights(params(x[3]));
    const Caches<S> c = forward<S, Mode>(x, w);
    const std::size_t NH = std::size_t(g.N) * H;
    const bool fused = km::egnn_edge_mlp_backward_fuses<Exec, S, Mode>(Exec(), H, H);
    const long rows = fused ? km::egnn_edge_mlp_backward_buffer_rows<Exec, S>(Exec(), true, 1) : g.E;
    Mat<S, M> mb("mb", rows, H), c1b("c1b", rows, H), p1b("p1b", rows, H);
    Vec<S, M> sc("sc", km::egnn_edge_mlp_scratch_scalars(H, H));
    Vec<double, M> av("av", km::egnn_edge_mlp_scratch_reals<S>(H, H));
    const Mat<S, M> c2b = coord ? mat(slice(yb, NH, g.E), g.E, 1) : Mat<S, M>();
    km::EGNNEdgeMLPBackward<S, double, M> a{mat(slice(yb, 0, NH), g.N, H), g.d_dst, g.d_src, g.d_row_ptr, g.d_send_perm,
                                            g.d_send_ptr, c2b, c.c1, c.a5, c.m, c.pre2, c.a1, c.pre1, vec(x[2]), w.p,
                                            lin(o2(), true), lin(o5(), true), dot(), w_off, ld, gp, qb, Ab, Bb};
    km::egnn_edge_mlp_backward<Exec, S, double, Mode>(Exec(), a, act, mb, c1b, p1b, sc, av);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> Ab("Ab", g.N, H), Bb("Bb", g.N, H);
    Vec<S, M> qb("qb", g.E);
    Vec<double, M> gp("g", P());
    grad_params<S, Mode>(x, yb, Ab, Bb, qb, gp);
    return {flat(Ab), flat(Bb), flat(qb), param_cotangent<S>(gp, [&] {
              Mat<double, M> Ab0("Ab0", g.N, H), Bb0("Bb0", g.N, H);
              Vec<double, M> qb0("qb0", g.E), g0("g0", P());
              grad_params<double, Mode>(Args<double>{primal(x[0]), primal(x[1]), primal(x[2]), primal(x[3])}, primal(yb), Ab0,
                                        Bb0, qb0, g0);
              return g0;
            })};
  }
};

/// [q (E), C (E)] of egnn_radial on len = |d| (edge_lengths), backward by egnn_radial_backward into d.
struct EGNNRadialOp {
  bool squared;
  EGNNEnvelopeFn env;
  bool pass_cbar;  ///< false: no Cbar view (the layer without an envelope)
  const char* name;
  int E = 15;
  Args<double> inputs(Rng& rng) const {
    Arr<double> d = rand_vectors(rng, E, 0.4, 0.95 * env.spec.cutoff);
    for (int e : {2, 9}) {  // beyond the cutoff
      const Arr<double> far = rand_vectors(rng, 1, 1.1 * env.spec.cutoff, 1.4 * env.spec.cutoff);
      std::copy(far.begin(), far.end(), d.begin() + 3 * e);
    }
    return {d};
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> q(E), C(E);
    for (int e = 0; e < E; ++e) {
      const double l2 = x[0][3 * e] * x[0][3 * e] + x[0][3 * e + 1] * x[0][3 * e + 1] + x[0][3 * e + 2] * x[0][3 * e + 2];
      q[e] = squared ? l2 : std::sqrt(l2);
      C[e] = env.on ? ref_envelope(env.spec, std::sqrt(l2)) : 1.0;
    }
    return cat(q, C);
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Vec<S, M> len("len", E), q("q", E), C("C", E);
    km::edge_lengths<Exec, S, Mode>(Exec(), mat(x[0], E, 3), len);
    km::egnn_radial<Exec, S, EGNNEnvelopeFn, Mode>(Exec(), len, squared, env, q, C);
    return cat(flat(q), flat(C));
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto d = mat(x[0], E, 3);
    Vec<S, M> len("len", E);
    Mat<S, M> db("db", E, 3);
    km::edge_lengths<Exec, S, Mode>(Exec(), d, len);
    const Vec<S, M> Cb = pass_cbar ? vec(slice(yb, E, E)) : Vec<S, M>();
    km::egnn_radial_backward<Exec, S, EGNNEnvelopeFn, Mode>(Exec(), d, len, squared, env, vec(slice(yb, 0, E)), Cb, db);
    return {flat(db)};
  }
};

/// u' = u + mean_{e in in(i)} (-d_e / (|d_e| + 1) phi_e), len = |d| by edge_lengths.
struct EGNNCoordOp {
  const Graph& g;
  bool with_u;
  const char* name;
  double dual_primal_rel = 0.0;
  Args<double> inputs(Rng& rng) const {
    Args<double> x = {rand_vectors(rng, g.E, 0.5, 3.0), randu(rng, g.E, -0.9, 0.9)};
    if (with_u) x.push_back(randn(rng, std::size_t(g.N) * 3));
    return x;
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> u(std::size_t(g.N) * 3, 0.0);
    for (int i = 0; i < g.N; ++i) {
      const int deg = g.row_ptr[i + 1] - g.row_ptr[i];
      for (int a = 0; a < 3; ++a) {
        double s = 0;
        for (int e = g.row_ptr[i]; e < g.row_ptr[i + 1]; ++e) {
          const double* d = &x[0][3 * e];
          const double L = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
          s += -d[a] / (L + 1) * x[1][e];
        }
        u[3 * i + a] = (with_u ? x[2][3 * i + a] : 0.0) + s / std::max(deg, 1);
      }
    }
    return u;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    const auto d = mat(x[0], g.E, 3);
    Vec<S, M> len("len", g.E);
    Mat<S, M> u_out("u_out", g.N, 3);
    km::edge_lengths<Exec, S, Mode>(Exec(), d, len);
    km::egnn_coord_update<Exec, S, Mode>(Exec(), with_u ? mat(x[2], g.N, 3) : Mat<S, M>(), d, len, mat(x[1], g.E, 1),
                                         g.d_row_ptr, u_out);
    return flat(u_out);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto d = mat(x[0], g.E, 3);
    Vec<S, M> len("len", g.E);
    Mat<S, M> phib("phib", g.E, 1), db("db", g.E, 3);
    km::edge_lengths<Exec, S, Mode>(Exec(), d, len);
    km::egnn_coord_update_backward<Exec, S, Mode>(Exec(), mat(yb, g.N, 3), d, len, mat(x[1], g.E, 1), g.d_dst,
                                                  g.d_row_ptr, phib, db);
    if (with_u) return {flat(db), flat(phib), yb};  // u' = u + ...: ubar passes straight through
    return {flat(db), flat(phib)};
  }
};

// =============================================================================================
// readout.hpp
// =============================================================================================

/// Species of the batch graph's atoms (species 2 of 4 has no atoms) and the stable species sort.
struct Species {
  std::vector<int> sp, perm, ptr;
  Vec<int, M> d_sp, d_perm, d_ptr;
  int ns = 4;
  explicit Species(const Graph& g) {
    for (int i = 0; i < g.N; ++i) sp.push_back((i * 7 + 1) % 5 == 2 ? 3 : (i * 7 + 1) % 5 % 2);  // 0, 1 or 3
    ptr.assign(ns + 1, 0);
    for (int s : sp) ++ptr[s + 1];
    for (int s = 0; s < ns; ++s) ptr[s + 1] += ptr[s];
    std::vector<int> fill(ptr.begin(), ptr.end() - 1);
    perm.resize(g.N);
    for (int i = 0; i < g.N; ++i) perm[fill[sp[i]]++] = i;
    d_sp = ivec(sp);
    d_perm = ivec(perm);
    d_ptr = ivec(ptr);
  }
};

/// h(i,c) = p(off + species(i) H + c); the table is the op's (real) input.
struct EmbeddingOp {
  const Graph& g;
  const Species& sp;
  const char* name = "embedding";
  int H = 4;
  long off = 5;
  long P() const { return off + long(sp.ns) * H + 3; }
  std::vector<bool> real_inputs() const { return {true}; }
  Args<double> inputs(Rng& rng) const { return {randn(rng, P())}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> h(std::size_t(g.N) * H);
    for (int i = 0; i < g.N; ++i)
      for (int c = 0; c < H; ++c) h[i * H + c] = x[0][off + sp.sp[i] * H + c];
    return h;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> h("h", g.N, H);
    km::embedding_forward<Exec, S, double, Mode>(Exec(), params(x[0]), off, sp.d_sp, h);
    return flat(h);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    Vec<double, M> gp("g", P());
    km::embedding_backward<Exec, S, Mode>(Exec(), mat(yb, g.N, H), sp.d_perm, sp.d_ptr, off, gp);
    return {param_cotangent<S>(gp, [&] {
      Vec<double, M> g0("g0", P());
      km::embedding_backward<Exec, double, Mode>(Exec(), mat(primal(yb), g.N, H), sp.d_perm, sp.d_ptr, off, g0);
      return g0;
    })};
  }
};

/// The model's energy normalisation in the readout ops: scale on the network output, shift + ref
/// (per species) on every atom.
struct EnergyConstants {
  double scale = 1.7, shift = -0.3;
  Arr<double> refs = {0.25, -1.5, 7.0, 0.125};
  /// shift + ref(species(i)) of atom i
  double atom(const Species& sp, int i) const { return shift + refs[sp.sp[i]]; }
};

/// E(g) = sum_{i in g} (scale e(i) + shift + ref(species(i))) in rebind_t<S, double>.
struct EnergySumOp {
  const Graph& g;
  const Species& sp;
  const char* name = "energy_sum";
  EnergyConstants k;
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.N)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> E(g.G, 0.0);
    for (int i = 0; i < g.N; ++i) E[g.atom_graph[i]] += x[0][i] * k.scale + k.atom(sp, i);
    return E;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    using SD = rebind_t<S, double>;
    static_assert(std::is_same<SD, S>::value, "double-based scalars");
    Vec<SD, M> E("E", g.G);
    km::energy_sum<Exec, S, SD, Mode>(Exec(), mat(x[0], g.N, 1), g.d_graph_ptr, sp.d_sp, vec(k.refs), k.scale, k.shift, E);
    return flat(E);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    Mat<S, M> eb("eb", g.N, 1);
    km::energy_sum_backward<Exec, S, Mode>(Exec(), vec(yb), g.d_atom_graph, k.scale, eb);
    return {flat(eb)};
  }
};

/// E(g) = scale y(g) + sum_{i in g} (shift + ref(species(i))) in rebind_t<S, double> (the pooled
/// energy head); backward ybar(g) = scale Ebar(g). One natural form: every mode runs it.
struct GraphEnergyOp {
  const Graph& g;
  const Species& sp;
  const char* name = "graph_energy";
  EnergyConstants k;
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.G)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> E(g.G, 0.0);
    for (int q = 0; q < g.G; ++q) E[q] = x[0][q] * k.scale;
    for (int i = 0; i < g.N; ++i) E[g.atom_graph[i]] += k.atom(sp, i);
    return E;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    using SD = rebind_t<S, double>;
    static_assert(std::is_same<SD, S>::value, "double-based scalars");
    Vec<SD, M> E("E", g.G);
    km::graph_energy<Exec, S, SD>(Exec(), mat(x[0], g.G, 1), g.d_graph_ptr, sp.d_sp, vec(k.refs), k.scale, k.shift, E);
    return flat(E);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    Mat<S, M> ybar("ybar", g.G, 1);
    km::graph_energy_backward<Exec, S>(Exec(), vec(yb), k.scale, ybar);
    return {flat(ybar)};
  }
};

/// 1 / atoms per graph (0 for a graph without atoms: see the report on make_batch's 1/0).
Arr<double> inv_counts(const Graph& g) {
  Arr<double> inv(g.G);
  for (int k = 0; k < g.G; ++k) {
    const int n = g.graph_ptr[k + 1] - g.graph_ptr[k];
    inv[k] = n > 0 ? 1.0 / n : 0.0;
  }
  return inv;
}

/// Graph pooling: segment_sum over graph_ptr, scale_by_graph when mean; backward: pool_backward.
struct PoolOp {
  const Graph& g;
  bool mean;
  const char* name;
  int H = 3;
  Args<double> inputs(Rng& rng) const { return {randn(rng, std::size_t(g.N) * H)}; }
  Arr<double> ref(const Args<double>& x) const {
    const Arr<double> inv = inv_counts(g);
    Arr<double> y(std::size_t(g.G) * H, 0.0);
    for (int i = 0; i < g.N; ++i)
      for (int c = 0; c < H; ++c) y[g.atom_graph[i] * H + c] += x[0][i * H + c];
    if (mean)
      for (int k = 0; k < g.G; ++k)
        for (int c = 0; c < H; ++c) y[k * H + c] *= inv[k];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.G, H);
    km::segment_sum<Exec, S, Mode>(Exec(), mat(x[0], g.N, H), g.d_graph_ptr, Y, false);
    if (mean) km::scale_by_graph<Exec, S, Mode>(Exec(), vec(inv_counts(g)), Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    Mat<S, M> hb("hb", g.N, H);
    km::pool_backward<Exec, S, Mode>(Exec(), mat(yb, g.G, H), g.d_atom_graph, vec(inv_counts(g)), mean, hb);
    return {flat(hb)};
  }
};

// =============================================================================================
// forces.hpp: a Batch over the batch graph
// =============================================================================================

/// Graph 0 is a molecule (volume 0), graph 1 has no atoms (volume 12.5), graph 2 is periodic
/// (volume 37.5, some edges cross the cell: nonzero shifts).
Batch<M> make_test_batch(const Graph& g, Rng& rng) {
  Batch<M> b;
  b.num_graphs = g.G;
  b.num_atoms = g.N;
  b.num_edges = g.E;
  b.graph_ptr = ivec(g.graph_ptr);
  b.graph_edge_ptr = ivec(g.graph_edge_ptr);
  b.atom_graph = ivec(g.atom_graph);
  b.row_ptr = ivec(g.row_ptr);
  b.dst = ivec(g.dst);
  b.src = ivec(g.src);
  b.send_perm = ivec(g.send_perm);
  b.send_ptr = ivec(g.send_ptr);
  b.pos = mat(randn(rng, std::size_t(g.N) * 3, 2.0), g.N, 3);
  Arr<double> shift(std::size_t(g.E) * 3, 0.0);
  const Arr<double> s = randn(rng, shift.size(), 3.0);
  for (int e = g.graph_edge_ptr[2]; e < g.E; e += 2)
    for (int a = 0; a < 3; ++a) shift[3 * e + a] = s[3 * e + a];
  b.shift = mat(shift, g.E, 3);
  b.volume = vec(Arr<double>{0.0, 12.5, 37.5});
  b.inv_count = vec(inv_counts(g));
  REQUIRE(g.G == 3);
  return b;
}
Arr<double> ref_edge_vectors(const Graph& g, const Batch<M>& b) {
  Arr<double> r(std::size_t(g.E) * 3);
  for (int e = 0; e < g.E; ++e)
    for (int a = 0; a < 3; ++a) r[3 * e + a] = b.pos(g.dst[e], a) - b.pos(g.src[e], a) + b.shift(e, a);
  return r;
}

}  // namespace

// =============================================================================================
// Test cases
// =============================================================================================

TEST_CASE("ops model: the batch graph has graphs without atoms and edges, isolated atoms, empty segments",
          "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  REQUIRE(g.G == 3);
  CHECK(g.graph_ptr[1] == g.graph_ptr[2]);            // graph 1 has no atoms
  CHECK(g.graph_edge_ptr[1] == g.graph_edge_ptr[2]);  // nor edges
  for (int i : {0, 6}) CHECK(g.row_ptr[i + 1] == g.row_ptr[i]);
  for (int i : {3, 8}) {
    CHECK(g.row_ptr[i + 1] == g.row_ptr[i]);
    CHECK(g.send_ptr[i + 1] == g.send_ptr[i]);
  }
  for (int e = 0; e < g.E; ++e) CHECK(g.atom_graph[g.dst[e]] == g.atom_graph[g.src[e]]);
  const Species sp(g);
  CHECK(sp.ptr[3] == sp.ptr[2]);  // species 2 has no atoms
  for (int s : {0, 1, 3}) CHECK(sp.ptr[s + 1] > sp.ptr[s]);
  CHECK(g.E > 15);
}

TEST_CASE("ops model: linear (dense.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  check_op(LinearOp{"linear, bias", 6, 5, 7, true}, 101);
  check_op(LinearOp{"linear, no bias", 6, 5, 7, false}, 102);
  check_op(LinearOp{"linear, column block of a wider matrix, bias", 5, 4, 6, true, 11, 3}, 103);
  check_op(LinearOp{"linear, column block, no bias, no W^T", 5, 4, 6, false, 9, 5, false}, 104);
  check_op(LinearOp{"linear, no W^T (HostRow falls back to PerElement)", 4, 6, 5, true, 0, 0, false}, 105);
  // HostRow's micro-kernels (kernels/gemm.hpp) work in register tiles: layers narrower than a tile,
  // tiles cut at the edges, and a layer smaller than one tile
  check_op(LinearOp{"linear, in 37 x out 6 (partial tiles)", 5, 37, 6, true}, 106);
  check_op(LinearOp{"linear, in 70 x out 9, no bias", 3, 70, 9, false}, 107);
  check_op(LinearOp{"linear, in 3 x out 2 (smaller than a block)", 3, 3, 2, true}, 108);
  // HostRow's register tiles (kernels/gemm.hpp): rows in tiles of 6 (3 duals), columns in tiles of
  // gemm::nr, weight gradient in tiles of 4 (2 dual) outputs: full tiles and every kind of edge
  LinearOp tiles{"linear, 13 rows, in 40 x out 37 (full and edge register tiles)", 13, 40, 37, true};
  tiles.fd_samples = 24;
  check_op(tiles, 110);
  LinearOp tiles_nb{"linear, 7 rows, in 33 x out 18, no bias", 7, 33, 18, false};
  tiles_nb.fd_samples = 24;
  check_op(tiles_nb, 111);
  // an edge tile of at most half a vector register (gemm::narrow_edge; with AVX-512, doubles: 4):
  // a layer of 3 outputs over a long sum, and 20 = 16 + 4 outputs (forward) and inputs (gradient)
  check_op(LinearOp{"linear, 13 rows, in 40 x out 3 (edge in half a register)", 13, 40, 3, true}, 122);
  check_op(LinearOp{"linear, 7 rows, in 300 x out 6 (an edge of more rows than HostRow's row, packed once)", 7, 300, 6,
                    false},
           127);
  LinearOp half{"linear, 11 rows, in 36 x out 20, no bias (edges in half a register)", 11, 36, 20, false};
  half.fd_samples = 24;
  check_op(half, 123);
  // wider than HostRow's weight-gradient row buffer (backward_params: in > 256 runs in blocks of
  // 256 inputs; forward and input gradient: more columns than a row of accumulators)
  LinearOp wide{"linear, in 260 x out 258 (two input blocks of the weight gradient)", 2, 260, 258, true};
  wide.fd_samples = 24;
  check_op(wide, 109);
  // fused with an activation: the epilogue on each register tile's rows (full and partial tiles)
  check_op(LinearActOp{"linear_forward_act, ReLU, 13 rows, in 40 x out 37", 13, 40, 37, Activation::ReLU, true}, 114);
  check_op(LinearActOp{"linear_forward_act, shifted softplus, 7 rows", 7, 9, 18, Activation::ShiftedSoftplus, true}, 115);
  check_op(LinearActOp{"linear_backward_input_act, ReLU, 13 rows, in 37 x out 40", 13, 37, 40, Activation::ReLU, false}, 116);
  check_op(LinearActOp{"linear_backward_input_act, tanh, 5 rows", 5, 18, 3, Activation::Tanh, false}, 117);
  // a Linear layer, its activation and a one-output layer in the epilogue (full and partial tiles)
  check_op(LinearActDotOp{"linear_forward_act_dot, ReLU, 13 rows, in 40 x out 37, bias", 13, 40, 37, Activation::ReLU, true}, 118);
  check_op(LinearActDotOp{"linear_forward_act_dot, tanh, 7 rows, no bias", 7, 9, 18, Activation::Tanh, false}, 119);
  // one output: the weight gradient as a GEMV
  check_op(LinearOp{"linear, in 37 x out 1 (one output)", 9, 37, 1, true}, 112);
  check_op(LinearOp{"linear, in 5 x out 1, no bias", 4, 5, 1, false}, 113);
  // two layers composed into one (PNAPlus's edge encoder and pre_nns' edge block)
  check_op(LinearComposeOp{"linear_compose, inner bias, W1^T and W2^T from pt", 7, 6, 5, 4, true}, 221);
  check_op(LinearComposeOp{"linear_compose, inner bias, W1 and W2 read strided", 5, 9, 7, 6, true, false}, 222);
  check_op(LinearComposeOp{"linear_compose, no bias, 1 -> 5 -> 5", 6, 1, 5, 5, false}, 223);
}

/// TeamTiled's weight gradient over more rows than one chunk: the rows summed per chunk of
/// params_chunk_rows, then the chunks in ascending order (a fixed order, the other modes' sums over
/// all rows differ in rounding only). Checked bitwise against a host sum in that order, and against
/// HostRow to rounding, in double and in Dual (tangent part), on a column block with a bias.
template <class S>
void check_chunked_weight_gradient(std::uint64_t seed) {
  using R = double;
  const long kc = km::detail::params_chunk_rows;
  const int n = int(2 * kc + 77), in = 70, out = 67, ld = 75, c0 = 2;
  LinearShape sh;
  sh.in = ld;
  sh.out = out;
  sh.w_off = 3;
  sh.b_off = 3 + long(out) * ld;
  sh = sh.columns(c0, in, true);
  const long P = 3 + long(out) * ld + out + 2;
  Rng rng(seed);
  auto rand_s = [&](std::size_t k) {
    const Arr<double> v = randn(rng, k), t = randn(rng, k);
    Arr<S> r(k);
    for (std::size_t i = 0; i < k; ++i) {
      if constexpr (std::is_same<S, D>::value) r[i] = D(v[i], t[i]);
      else r[i] = v[i];
    }
    return r;
  };
  const Arr<S> x = rand_s(std::size_t(n) * in), yb = rand_s(std::size_t(n) * out);
  const Arr<double> g0 = randn(rng, std::size_t(P));
  const auto X = mat(x, n, in), Yb = mat(yb, n, out);
  auto run = [&](auto mode) {
    Vec<R, M> g("g", P);
    for (long k = 0; k < P; ++k) g(k) = g0[k];
    km::linear_backward_params<Exec, S, decltype(mode)>(Exec(), X, Yb, sh, g);
    Kokkos::fence();
    return g;
  };
  const auto gt = run(exec_mode::TeamTiled{});
  const auto gh = run(exec_mode::HostRow{});
  Mismatch bits, close_hr;
  long checked = 0;
  for (int o = 0; o < out; ++o)
    for (int c = 0; c <= in; ++c) {
      R acc(0);
      for (long ch = 0; ch * kc < n; ++ch) {
        S part(0);
        for (long i = ch * kc; i < std::min<long>(n, (ch + 1) * kc); ++i)
          part += yb[i * out + o] * (c < in ? x[i * in + c] : S(1));
        acc += param_part(part);
      }
      const long k = c < in ? sh.w_off + long(o) * ld + c : sh.b_off + o;
      const R want = g0[k] + acc;
      bits.check(same_bits(gt(k), want), where("TeamTiled chunked sum", 0, k, gt(k), want));
      close_hr.check(close(gt(k), gh(k), 1e-12, 1e-12), where("TeamTiled vs HostRow", 0, k, gt(k), gh(k)));
      ++checked;
    }
  // the weights outside the column block and the padding are left alone
  for (long k = 0; k < P; ++k) {
    const bool in_block = (k >= sh.w_off && k < 3 + long(out) * ld && (k - 3) % ld >= c0 && (k - 3) % ld < c0 + in) ||
                          (k >= sh.b_off && k < sh.b_off + out);
    if (!in_block) bits.check(same_bits(gt(k), g0[k]), where("untouched", 0, k, gt(k), g0[k]));
  }
  CHECK(checked == long(out) * (in + 1));
  INFO(bits.first);
  CHECK(bits.count == 0);
  INFO(close_hr.first);
  CHECK(close_hr.count == 0);
}

TEST_CASE("ops model: TeamTiled weight gradient over several row chunks", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  check_chunked_weight_gradient<double>(133);
  check_chunked_weight_gradient<D>(134);
}

TEST_CASE("ops model: activations and add_into (pointwise.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  check_op(ActivationOp{Activation::Identity, "identity"}, 120);
  check_op(ActivationOp{Activation::ReLU, "relu"}, 121);
  check_op(ActivationOp{Activation::SiLU, "silu"}, 122);
  check_op(ActivationOp{Activation::ShiftedSoftplus, "shifted softplus"}, 123);
  check_op(ActivationOp{Activation::Tanh, "tanh"}, 124);
  check_op(ActivationOp{Activation::Sigmoid, "sigmoid"}, 125);
  check_op(ActivationOp{Activation::Softplus, "softplus"}, 126);
  check_op(AddIntoOp{}, 130);
}

TEST_CASE("ops model: cfconv (cfconv.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  check_op(CFConvOp{g, 5, "cfconv"}, 140);
  check_op(CFConvOp{g, km::detail::host_row_max + 4, "cfconv, more channels than HostRow's row", 20}, 141);
  // the geometric backward through a two-layer filter network in one pass over tiles of edges
  // (K = 7, F = 9: full and partial register tiles in both products)
  check_op(CFConvFilterOp{g, 9, 7, "cfconv_filter_geometry_backward (+ cfconv_backward_nodes)"}, 132);
  // rows of B, C and W per pair of edges (EdgePairs): forward, fused forward and backward
  const TestPairs pairs = make_test_pairs(g.E);
  REQUIRE(pairs.U() < g.E);
  check_op(CFConvFilterOp{g, 9, 7, "cfconv filter and geometric backward, rows per pair of edges", 24, &pairs}, 133);
  check_op(CFConvFilterOp{g, 40, 12, "cfconv filter, rows per pair of edges, wider than a register tile", 24, &pairs}, 134);
  // training: the filter's parameter gradient in the same pass (HostRow, one thread), with and
  // without the geometric gradient; rows in more than two chunks, the last one partial
  CHECK(km::cfconv_filter_params_fuses<Exec, HostRow>(Exec(), 9, 7) == (Exec().concurrency() == 1));
  const Graph big = build_graph(37, {0, 23, 23, 52}, {0, 30}, {5, 40});
  const TestPairs big_pairs = make_test_pairs(big.E);
  CHECK(big.E > 2 * km::detail::cfconv_filter_chunk_rows);
  CHECK(big.E % km::detail::cfconv_filter_chunk_rows != 0);
  CHECK(big_pairs.U() > km::detail::cfconv_filter_chunk_rows);
  check_op(CFConvFilterParamsOp{CFConvFilterOp{big, 9, 7, ""}, false, "cfconv_filter_backward_params, no geometry"}, 135);
  check_op(CFConvFilterParamsOp{CFConvFilterOp{big, 9, 7, ""}, true, "cfconv_filter_backward_params with Bbar, Cbar"}, 136);
  check_op(CFConvFilterParamsOp{CFConvFilterOp{big, 40, 12, "", 24, &big_pairs}, true,
                                "cfconv_filter_backward_params, rows per pair of edges, wider than a register tile"},
           137);
}

TEST_CASE("ops model: edge lengths, radial bases and envelopes (radial.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  check_op(EdgeLengthsOp{}, 150);
  check_op(LengthFeatureOp{}, 208);
  check_op(RadialOp{{RadialBasis::Gaussian, 6, 3.0, Envelope::Cosine}, "radial Gaussian, cosine envelope"}, 151);
  check_op(RadialOp{{RadialBasis::Gaussian, 6, 3.0, Envelope::Polynomial}, "radial Gaussian, polynomial envelope"}, 152);
  check_op(RadialOp{{RadialBasis::Bessel, 6, 3.0, Envelope::Cosine}, "radial Bessel, cosine envelope"}, 153);
  check_op(RadialOp{{RadialBasis::Bessel, 6, 3.0, Envelope::Polynomial}, "radial Bessel, polynomial envelope"}, 154);
  check_op(RadialOp{{RadialBasis::Sinc, 6, 3.0, Envelope::Cosine}, "radial sinc (PaiNN), cosine envelope"}, 155);
  check_op(BesselBasisOp{5, "Bessel basis, trainable frequencies, envelope exponent 5 (PNAPlus)"}, 209);
  check_op(BesselBasisOp{2, "Bessel basis, trainable frequencies, envelope exponent 2"}, 210);
  check_op(SphericalBesselOp{radial::dimenet_bessel_table(7, 6), 5, "spherical Bessel basis 7 x 6 (DimeNet)"}, 212);
  check_op(SphericalBesselOp{radial::dimenet_bessel_table(3, 4), 2, "spherical Bessel basis 3 x 4, envelope exponent 2"}, 213);
}

TEST_CASE("ops model: DimeNet's triplet spherical basis (spherical.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  // some edges are the kj of several triplets, some of none (the backward's segments)
  int longest = 0, empty = 0;
  for (int e = 0; e < g.E; ++e) {
    longest = std::max(longest, g.trip.kj_ptr[e + 1] - g.trip.kj_ptr[e]);
    empty += g.trip.kj_ptr[e + 1] == g.trip.kj_ptr[e];
  }
  REQUIRE(g.T() >= 10);
  REQUIRE(longest >= 2);
  REQUIRE(empty > 0);
  check_op(TripletSphericalOp{g, 7, 6, "triplet spherical basis 7 x 6 (DimeNet)"}, 214);
  check_op(TripletSphericalOp{g, 3, 2, "triplet spherical basis 3 x 2"}, 215);
  // the accumulate contract: both outputs += when asked, overwritten otherwise
  Rng rng(216);
  const int L = 3, K = 2, W = L * K;
  const auto c = vec(randu(rng, g.T(), -0.9, 0.9));
  const auto R = mat(randn(rng, g.E * W), g.E, W);
  const auto yb = mat(randn(rng, g.T() * W), g.T(), W);
  const auto& t = g.d_trip;
  Vec<double, M> cb0("cb0", g.T()), cb1("cb1", g.T());
  Mat<double, M> Rb0("Rb0", g.E, W), Rb1("Rb1", g.E, W);
  km::triplet_spherical_basis_backward<Exec, double>(Exec(), c, R, t.kj, t.kj_perm, t.kj_ptr, L, yb, cb0, Rb0, false);
  Kokkos::deep_copy(cb1, 1.5);
  Kokkos::deep_copy(Rb1, -2.0);
  km::triplet_spherical_basis_backward<Exec, double>(Exec(), c, R, t.kj, t.kj_perm, t.kj_ptr, L, yb, cb1, Rb1, true);
  for (int q = 0; q < g.T(); ++q) CHECK(cb1(q) == Approx(cb0(q) + 1.5).epsilon(1e-14));
  for (int e = 0; e < g.E; ++e)
    for (int k = 0; k < W; ++k) CHECK(Rb1(e, k) == Approx(Rb0(e, k) - 2.0).epsilon(1e-14));
  km::triplet_spherical_basis_backward<Exec, double>(Exec(), c, R, t.kj, t.kj_perm, t.kj_ptr, L, yb, cb1, Rb1, false);
  for (int q = 0; q < g.T(); ++q) CHECK(cb1(q) == cb0(q));
}

TEST_CASE("ops model: EGNN edge ops (egnn.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  check_op(EGNNEdgeVectorsOp{g, true, "egnn_edge_vectors with u (+ backward)"}, 160);
  check_op(EGNNEdgeVectorsOp{g, false, "egnn_edge_vectors without u (+ backward)"}, 161);
  check_op(EGNNEdgePreOp{g, true, "egnn_edge_pre, strided radial column, with g"}, 162);
  check_op(EGNNEdgePreOp{g, false, "egnn_edge_pre, strided radial column, without g"}, 163);
  // fused with the activation; F = 9 and the graph's edge count cover full and partial blocks of the
  // HostRow radial-column gradient (8 edges per work item)
  check_op(EGNNEdgePreActOp{g, true, "egnn_edge_pre_act, ReLU, with g", Activation::ReLU, 9}, 170);
  check_op(EGNNEdgePreActOp{g, false, "egnn_edge_pre_act, SiLU, without g", Activation::SiLU, 4}, 171);
  CHECK(g.E % 8 != 0);
  CHECK(g.E > 8);
  const RadialSpec cos_spec{RadialBasis::Gaussian, 1, 3.0, Envelope::Cosine};
  const RadialSpec poly_spec{RadialBasis::Gaussian, 1, 3.0, Envelope::Polynomial};
  check_op(EGNNRadialOp{false, EGNNEnvelopeFn{cos_spec, false}, false, "egnn_radial |d|, no envelope, no Cbar"}, 164);
  check_op(EGNNRadialOp{true, EGNNEnvelopeFn{cos_spec, false}, true, "egnn_radial |d|^2, no envelope, Cbar"}, 165);
  check_op(EGNNRadialOp{false, EGNNEnvelopeFn{cos_spec, true}, true, "egnn_radial |d|, cosine envelope"}, 166);
  check_op(EGNNRadialOp{true, EGNNEnvelopeFn{poly_spec, true}, true, "egnn_radial |d|^2, polynomial envelope"}, 167);
  check_op(EGNNCoordOp{g, true, "egnn_coord_update with u"}, 168);
  check_op(EGNNCoordOp{g, false, "egnn_coord_update without u"}, 169);
  // the edge MLP's backward in one op: HostRow fuses it over chunks of edges (two threads, dual: the pipeline); a
  // graph of more than three chunks (full and partial), H = 9 (full and partial register tiles)
  const Graph big = build_graph(37, {0, 23, 23, 52}, {0, 30}, {5, 40});
  CHECK(big.E > 3 * km::egnn_edge_mlp_chunk_rows);
  CHECK(big.E % km::egnn_edge_mlp_chunk_rows != 0);
  // a chunk count that is not a whole number of pipeline steps: the pipeline's last step is partial
  const long big_chunks = (big.E + km::egnn_edge_mlp_chunk_rows - 1) / km::egnn_edge_mlp_chunk_rows;
  CHECK(big_chunks % km::egnn_edge_mlp_pipeline_chunks != 0);
  // (two threads or more: real scalars run the op sequence, dual ones the two-thread pipeline)
  CHECK(km::egnn_edge_mlp_backward_fuses<Exec, double, exec_mode::HostRow>(Exec(), 9, 9) == (Exec().concurrency() == 1));
  CHECK(km::egnn_edge_mlp_backward_fuses<Exec, Dual<double>, exec_mode::HostRow>(Exec(), 9, 9));
  CHECK(km::egnn_edge_mlp_pipelined<Exec, Dual<double>>(Exec(), true) == (Exec().concurrency() > 1));
  CHECK(!km::egnn_edge_mlp_pipelined<Exec, double>(Exec(), true));
  check_op(EGNNEdgeMLPOp{big, true, Activation::ReLU, "egnn_edge_mlp_backward, coordinates, ReLU"}, 172);
  check_op(EGNNEdgeMLPOp{big, false, Activation::ReLU, "egnn_edge_mlp_backward, no coordinates, ReLU"}, 173);
  check_op(EGNNEdgeMLPOp{big, true, Activation::SiLU, "egnn_edge_mlp_backward, coordinates, SiLU"}, 174);
}

/// Elements of a and b (the same size) whose bits differ.
template <class A>
long mismatches(const A& a, const A& b) {
  REQUIRE(a.size() == b.size());
  long n = 0;
  for (std::size_t k = 0; k < a.size(); ++k) n += same_bits(a[k], b[k]) ? 0 : 1;
  return n;
}

TEST_CASE("ops model: EGNN's fused geometry-only edge pass and its masked backward give the same bits in one part "
          "of the receivers as in several, and as the op sequence",
          "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  // more than three chunks of 30 edges, receivers without edges (0, 30; isolated 5, 40): parts of
  // whole receivers, some empty when there are more parts than receivers
  const Graph big = build_graph(37, {0, 23, 23, 52}, {0, 30}, {5, 40});
  const long N = big.N, E = big.E;
  for (const bool coord : {true, false}) {
    const EGNNEdgeMLPOp op{big, coord, Activation::ReLU, "egnn_edge_forward_geometry"};
    const int H = op.H;
    const std::size_t NH = std::size_t(N) * H;
    Rng rng(coord ? 220 : 221);
    const Args<double> x = op.inputs(rng);
    const Arr<double> yb = randn(rng, NH + (coord ? std::size_t(E) : 0));
    const auto w = op.weights(params(x[3]));
    const LinearShape W2 = op.lin(op.o2(), true), W5 = op.lin(op.o5(), true), w6 = op.dot();
    const Mat<double, M> A = mat(x[0], N, H), B = mat(x[1], N, H), aggbar = mat(slice(yb, 0, NH), N, H);
    const Vec<double, M> q = vec(x[2]);
    const Mat<double, M> c2bar = coord ? mat(slice(yb, NH, std::size_t(E)), E, 1) : Mat<double, M>();
    // the op sequence forward; its backward reading the stored activations (one part, no parameter gradient)
    const auto c = op.forward<double, HostRow>(x, w);
    Mat<double, M> Ab0("Ab0", N, H), Bb0("Bb0", N, H);
    Vec<double, M> qb0("qb0", E);
    {
      const long R = km::egnn_edge_mlp_chunk_buffer_rows(1);
      Mat<double, M> mb("mb", R, H), c1b("c1b", R, H), p1b("p1b", R, H);
      Vec<double, M> sc("sc", km::egnn_edge_mlp_scratch_scalars(H, H));
      Vec<double, M> av("av", km::egnn_edge_mlp_scratch_reals<double>(H, H));
      km::EGNNEdgeMLPBackward<double, double, M> a{aggbar, big.d_dst, big.d_src, big.d_row_ptr, big.d_send_perm,
                                                   big.d_send_ptr, c2bar, c.c1, c.a5, c.m, c.pre2, c.a1, c.pre1, q, w.p,
                                                   W2, W5, w6, op.w_off, op.ld, Vec<double, M>(), qb0, Ab0, Bb0};
      km::egnn_edge_mlp_backward<Exec, double, double, HostRow>(Exec(), a, Activation::ReLU, mb, c1b, p1b, sc, av);
    }
    Arr<std::uint8_t> k1_1, k2_1, k3_1;
    for (const long parts : {1L, 2L, 3L, 7L, 64L}) {
      INFO((coord ? "coordinates, " : "no coordinates, ") << parts << " parts");
      if (parts > 1 && parts < N) {  // senders whose sums a part adds, and senders across parts
        long across = 0, within = 0;
        for (long j = 0; j < N; ++j) {
          const int k0 = big.send_ptr[j], k1 = big.send_ptr[j + 1];
          if (k1 == k0) continue;
          const bool one = km::detail::edge_part(big.d_row_ptr, parts, big.send_perm[k0]) ==
                           km::detail::edge_part(big.d_row_ptr, parts, big.send_perm[k1 - 1]);
          (one ? within : across) += 1;
        }
        CHECK(across > 0);
        CHECK(within > 0);
      }
      const long R = km::egnn_edge_mlp_chunk_buffer_rows(parts);
      Mat<double, M> agg("agg", N, H), c2 = coord ? Mat<double, M>("c2", E, 1) : Mat<double, M>();
      km::EGNNMask<M> k1("k1", E, H), k2("k2", E, H), k3 = coord ? km::EGNNMask<M>("k3", E, H) : km::EGNNMask<M>();
      Mat<double, M> a1b("a1b", R, H), mb("mb", R, H), a5b("a5b", R, H);
      km::egnn_edge_forward_geometry<Exec, double>(Exec(), w, A, B, q, big.d_dst, big.d_src, big.d_row_ptr, W2, W5, w6,
                                                   op.w_off, op.ld, agg, c2, k1, k2, k3, a1b, mb, a5b, parts);
      CHECK(mismatches(flat(agg), flat(c.agg)) == 0);
      if (coord) CHECK(mismatches(flat(c2), flat(c.c2)) == 0);
      if (parts == 1) {
        k1_1 = flat(k1), k2_1 = flat(k2), k3_1 = coord ? flat(k3) : Arr<std::uint8_t>();
      } else {
        CHECK(flat(k1) == k1_1);
        CHECK(flat(k2) == k2_1);
        if (coord) CHECK(flat(k3) == k3_1);
      }
      Mat<double, M> mbar("mbar", R, H), c1bar("c1bar", R, H), p1b("p1b", R, H);
      Mat<double, M> cross("cross", km::egnn_edge_mlp_cross_rows(parts, E), H);
      Vec<double, M> sc("sc", km::egnn_edge_mlp_scratch_scalars(H, H));
      Vec<double, M> av("av", km::egnn_edge_mlp_scratch_reals<double>(H, H));
      Mat<double, M> Ab("Ab", N, H), Bb("Bb", N, H);
      Vec<double, M> qb("qb", E);
      Kokkos::deep_copy(Ab, 7.0);  // overwritten, not accumulated
      Kokkos::deep_copy(Bb, 7.0);
      const Mat<double, M> none;
      km::EGNNEdgeMLPBackward<double, double, M> a{aggbar, big.d_dst, big.d_src, big.d_row_ptr, big.d_send_perm,
                                                   big.d_send_ptr, c2bar, none, none, none, none, none, none, q, w.p,
                                                   W2, W5, w6, op.w_off, op.ld, Vec<double, M>(), qb, Ab, Bb,
                                                   k1, k2, k3};
      km::egnn_edge_mlp_backward<Exec, double, double, HostRow>(Exec(), a, Activation::ReLU, mbar, c1bar, p1b, sc, av,
                                                                parts, cross);
      CHECK(mismatches(flat(Ab), flat(Ab0)) == 0);
      CHECK(mismatches(flat(Bb), flat(Bb0)) == 0);
      CHECK(mismatches(flat(qb), flat(qb0)) == 0);
    }
  }
  // several parts only without a parameter gradient; buffers of a part's chunk each
  {
    const EGNNEdgeMLPOp op{big, false, Activation::ReLU, "egnn_edge_forward_geometry"};
    const int H = op.H;
    Rng rng(222);
    const Args<double> x = op.inputs(rng);
    const auto w = op.weights(params(x[3]));
    const Mat<double, M> A = mat(x[0], N, H), B = mat(x[1], N, H);
    Mat<double, M> agg("agg", N, H), small("small", km::egnn_edge_mlp_chunk_buffer_rows(1), H);
    km::EGNNMask<M> k1("k1", E, H), k2("k2", E, H);
    const auto two_parts_in_one_chunk = [&] {
      km::egnn_edge_forward_geometry<Exec, double>(Exec(), w, A, B, vec(x[2]), big.d_dst, big.d_src, big.d_row_ptr,
                                                   op.lin(op.o2(), true), op.lin(op.o5(), true), op.dot(), op.w_off,
                                                   op.ld, agg, Mat<double, M>(), k1, k2, km::EGNNMask<M>(), small, small,
                                                   small, 2);
    };
    CHECK_THROWS_AS(two_parts_in_one_chunk(), std::logic_error);
    const auto c = op.forward<double, HostRow>(x, w);
    const long R = km::egnn_edge_mlp_chunk_buffer_rows(2);
    Mat<double, M> mb("mb", R, H), p1b("p1b", R, H), cross("cross", E, H), Ab("Ab", N, H), Bb("Bb", N, H);
    Vec<double, M> qb("qb", E), gp("g", op.P());
    Vec<double, M> sc("sc", km::egnn_edge_mlp_scratch_scalars(H, H));
    Vec<double, M> av("av", km::egnn_edge_mlp_scratch_reals<double>(H, H));
    km::EGNNEdgeMLPBackward<double, double, M> a{mat(randn(rng, std::size_t(N) * H), N, H), big.d_dst, big.d_src,
                                                 big.d_row_ptr, big.d_send_perm, big.d_send_ptr, Mat<double, M>(), c.c1,
                                                 c.a5, c.m, c.pre2, c.a1, c.pre1, vec(x[2]), w.p, op.lin(op.o2(), true),
                                                 op.lin(op.o5(), true), op.dot(), op.w_off, op.ld, gp, qb, Ab, Bb};
    const auto two_parts_with_gradient = [&] {
      km::egnn_edge_mlp_backward<Exec, double, double, HostRow>(Exec(), a, Activation::ReLU, mb, mb, p1b, sc, av, 2,
                                                                cross);
    };
    if (Exec().concurrency() == 1) CHECK_THROWS_AS(two_parts_with_gradient(), std::logic_error);
  }
}

TEST_CASE("ops model: EGNN's fused training edge forward keeps the activations of the op sequence, the same bits in "
          "any number of parts, real and dual",
          "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph big = build_graph(37, {0, 23, 23, 52}, {0, 30}, {5, 40});
  const long N = big.N, E = big.E;
  CHECK(E > 3 * km::egnn_edge_mlp_chunk_rows);
  CHECK(E % km::egnn_edge_mlp_chunk_rows != 0);
  CHECK(km::egnn_edge_forward_fuses<Exec, D, exec_mode::HostRow>(Exec(), Activation::ReLU, 9, 9));
  CHECK(!km::egnn_edge_forward_fuses<Exec, D, exec_mode::HostRow>(Exec(), Activation::SiLU, 9, 9));
  CHECK(!km::egnn_edge_forward_fuses<Exec, D, exec_mode::PerElement>(Exec(), Activation::ReLU, 9, 9));
  auto run = [&](auto tag, bool coord, std::uint64_t seed) {
    using S = decltype(tag);
    const EGNNEdgeMLPOp op{big, coord, Activation::ReLU, "egnn_edge_forward"};
    const int H = op.H;
    Rng rng(seed);
    const Args<double> x0 = op.inputs(rng);
    Args<S> x;
    if constexpr (std::is_same<S, double>::value) {
      x = x0;
    } else {
      Args<double> t = x0;  // tangents of the node inputs and the radial input; the weights are real
      for (std::size_t i = 0; i < 3; ++i) t[i] = randn(rng, x0[i].size());
      t[3] = Arr<double>(x0[3].size(), 0.0);
      x = make_dual(x0, t);
    }
    const auto w = op.weights(params(x0[3]));
    const auto c = op.forward<S, HostRow>(x, w);  // the op sequence
    const LinearShape W2 = op.lin(op.o2(), true), W5 = op.lin(op.o5(), true), w6 = op.dot();
    long active = 0;  // the ReLUs see inputs of both signs
    for (const auto& v : flat(c.m)) active += scalar_traits<S>::primal(v) > 0 ? 1 : 0;
    CHECK(active > 0);
    CHECK(active < E * H);
    for (const long parts : {1L, 2L, 3L, 7L, 64L}) {
      INFO((coord ? "coordinates, " : "no coordinates, ") << parts << " parts, "
                                                          << (scalar_traits<S>::is_dual ? "dual" : "real"));
      Mat<S, M> a1("a1", E, H), m("m", E, H), agg("agg", N, H);
      Mat<S, M> a5 = coord ? Mat<S, M>("a5", E, H) : Mat<S, M>(), c2 = coord ? Mat<S, M>("c2", E, 1) : Mat<S, M>();
      Kokkos::deep_copy(agg, S(7.0));  // overwritten, not accumulated
      km::egnn_edge_forward<Exec, S, double>(Exec(), w, mat(x[0], N, H), mat(x[1], N, H), vec(x[2]), big.d_dst,
                                             big.d_src, big.d_row_ptr, W2, W5, w6, op.w_off, op.ld, a1, m, agg, a5, c2,
                                             parts);
      CHECK(mismatches(flat(a1), flat(c.a1)) == 0);
      CHECK(mismatches(flat(m), flat(c.m)) == 0);
      CHECK(mismatches(flat(agg), flat(c.agg)) == 0);
      if (coord) {
        CHECK(mismatches(flat(a5), flat(c.a5)) == 0);
        CHECK(mismatches(flat(c2), flat(c.c2)) == 0);
      }
    }
    // outputs of the wrong height are refused
    Mat<S, M> short_m("m", E - 1, H), a1("a1", E, H), agg("agg", N, H);
    CHECK_THROWS_AS((km::egnn_edge_forward<Exec, S, double>(Exec(), w, mat(x[0], N, H), mat(x[1], N, H), vec(x[2]),
                                                            big.d_dst, big.d_src, big.d_row_ptr, W2, W5, w6, op.w_off,
                                                            op.ld, a1, short_m, agg, Mat<S, M>(), Mat<S, M>(), 1)),
                    std::logic_error);
  };
  run(double(), true, 230);
  run(double(), false, 231);
  run(D(), true, 232);
  run(D(), false, 233);
}

// =============================================================================================
// painn.hpp
// =============================================================================================

/// Two outputs as the one array the harness compares: a's elements, then b's.
template <class S>
Arr<S> concat(Arr<S> a, const Arr<S>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// painn_direction: u = (-r / (d + 1e-9)) / d, d = |r| (+ backward through d).
/// The edge directions of PaiNN (painn_direction: -r / (d + eps) / d) and PNAEq (pnaeq_direction:
/// -r / (d + eps)), each with edge_lengths in front.
struct DirectionOp {
  bool painn;
  const char* name;
  int E = 17;
  int fd_samples = 1 << 30;
  Args<double> inputs(Rng& rng) const { return {rand_vectors(rng, E, 0.5, 3.0)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> u(3 * std::size_t(E));
    for (int e = 0; e < E; ++e) {
      const double* r = &x[0][3 * e];
      const double d = std::sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
      for (int a = 0; a < 3; ++a) u[3 * e + a] = -r[a] / (d + 1e-9) / (painn ? d : 1.0);
    }
    return u;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Vec<S, M> d("d", E);
    Mat<S, M> u("u", E, 3);
    km::edge_lengths<Exec, S, Mode>(Exec(), mat(x[0], E, 3), d);
    if (painn) km::painn_direction<Exec, S, Mode>(Exec(), mat(x[0], E, 3), d, u);
    else km::pnaeq_direction<Exec, S, Mode>(Exec(), mat(x[0], E, 3), d, u);
    return flat(u);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto r = mat(x[0], E, 3);
    Vec<S, M> d("d", E), db("db", E);
    Mat<S, M> rb("rb", E, 3);
    km::edge_lengths<Exec, S, Mode>(Exec(), r, d);
    if (painn) km::painn_direction_backward<Exec, S, Mode>(Exec(), r, d, mat(yb, E, 3), rb, db);
    else km::pnaeq_direction_backward<Exec, S, Mode>(Exec(), r, d, mat(yb, E, 3), rb, db);
    km::edge_lengths_backward<Exec, S, Mode>(Exec(), r, d, db, rb);
    return {flat(rb)};
  }
};

/// painn_message: [s' | v'] from s, v, phi, W, C, u on a batch graph.
struct PaiNNMessageOp {
  const Graph& g;
  int F;
  const char* name;
  int fd_samples = 1 << 30;
  Args<double> inputs(Rng& rng) const {
    const std::size_t N = g.N, E = g.E;
    return {randn(rng, N * F), randn(rng, N * 3 * F), randn(rng, N * 3 * F), randn(rng, E * 3 * F), randn(rng, E),
            randn(rng, E * 3)};
  }
  Arr<double> ref(const Args<double>& x) const {
    const std::size_t N = g.N;
    Arr<double> y(N * F + N * 3 * F);
    for (std::size_t i = 0; i < N * F; ++i) y[i] = x[0][i];
    for (std::size_t i = 0; i < N * 3 * F; ++i) y[N * F + i] = x[1][i];
    for (int e = 0; e < g.E; ++e) {
      const int i = g.dst[e], j = g.src[e];
      for (int f = 0; f < F; ++f) {
        auto xk = [&](int k) { return x[3][e * 3 * F + k] * x[4][e] * x[2][j * 3 * F + k]; };
        y[i * F + f] += xk(2 * F + f);
        for (int a = 0; a < 3; ++a)
          y[N * F + (i * 3 + a) * F + f] += x[1][(j * 3 + a) * F + f] * xk(f) + xk(F + f) * x[5][3 * e + a];
      }
    }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> so("s_out", g.N, F);
    VMat<S, M> vo("v_out", g.N, 3, F);
    km::painn_message<Exec, S, Mode>(Exec(), mat(x[0], g.N, F), vmat(x[1], g.N, F), mat(x[2], g.N, 3 * F),
                                     mat(x[3], g.E, 3 * F), vec(x[4]), mat(x[5], g.E, 3), g.d_row_ptr, g.d_src, so, vo);
    return concat(flat(so), flat(vo));
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const std::size_t NF = std::size_t(g.N) * F;
    const Arr<S> sb(yb.begin(), yb.begin() + NF), vb(yb.begin() + NF, yb.end());
    const auto v = vmat(x[1], g.N, F);
    const auto phi = mat(x[2], g.N, 3 * F), W = mat(x[3], g.E, 3 * F), u = mat(x[5], g.E, 3);
    const auto C = vec(x[4]);
    const auto sbar = mat(sb, g.N, F);
    const auto vbar = vmat(vb, g.N, F);
    Mat<S, M> Wb("Wb", g.E, 3 * F), ub("ub", g.E, 3), phib("phib", g.N, 3 * F);
    Vec<S, M> Cb("Cb", g.E);
    VMat<S, M> vin("vin", g.N, 3, F);
    km::painn_message_backward_edges<Exec, S, Mode>(Exec(), v, phi, W, C, u, g.d_dst, g.d_src, sbar, vbar, Wb, Cb, ub);
    km::painn_message_backward_nodes<Exec, S, Mode>(Exec(), v, phi, W, C, u, g.d_dst, g.d_send_perm, g.d_send_ptr, sbar,
                                                    vbar, phib, vin);
    return {sb, flat(vin), flat(phib), flat(Wb), flat(Cb), flat(ub)};
  }
};

/// painn_update: [s'' | v''] (K = 3) or s'' (K = 2) from a, Uv, Vv, s', v'.
struct PaiNNUpdateOp {
  int K;
  const char* name;
  int N = 7, F = 5;
  Args<double> inputs(Rng& rng) const {
    const std::size_t n = N;
    return {randn(rng, n * K * F), randn(rng, n * 3 * F), randn(rng, n * 3 * F), randn(rng, n * F), randn(rng, n * 3 * F)};
  }
  Arr<double> ref(const Args<double>& x) const {
    const std::size_t NF = std::size_t(N) * F;
    Arr<double> y(K == 3 ? 4 * NF : NF);
    const int o = K == 3 ? F : 0;
    for (int i = 0; i < N; ++i)
      for (int f = 0; f < F; ++f) {
        double inner = 0;
        for (int a = 0; a < 3; ++a) inner += x[1][(i * 3 + a) * F + f] * x[2][(i * 3 + a) * F + f];
        y[i * F + f] = x[3][i * F + f] + (x[0][i * K * F + o + f] * inner + x[0][i * K * F + o + F + f]);
        if (K == 3)
          for (int a = 0; a < 3; ++a)
            y[NF + (i * 3 + a) * F + f] = x[4][(i * 3 + a) * F + f] + x[0][i * K * F + f] * x[1][(i * 3 + a) * F + f];
      }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> so("s_out", N, F);
    VMat<S, M> vo("v_out", K == 3 ? N : 0, 3, F);
    km::painn_update<Exec, S, Mode>(Exec(), mat(x[0], N, K * F), vmat(x[1], N, F), vmat(x[2], N, F), mat(x[3], N, F),
                                    vmat(x[4], N, F), so, vo);
    return concat(flat(so), flat(vo));
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const std::size_t NF = std::size_t(N) * F;
    const Arr<S> sb(yb.begin(), yb.begin() + NF);
    const Arr<S> vb = K == 3 ? Arr<S>(yb.begin() + NF, yb.end()) : Arr<S>(3 * NF, S(0));
    Mat<S, M> ab("ab", N, K * F);
    VMat<S, M> Ub("Ub", N, 3, F), Vb("Vb", N, 3, F);
    km::painn_update_backward<Exec, S, Mode>(Exec(), mat(x[0], N, K * F), vmat(x[1], N, F), vmat(x[2], N, F),
                                             mat(sb, N, F), K == 3 ? vmat(vb, N, F) : VMat<S, M>(), ab, Ub, Vb);
    return {flat(ab), flat(Ub), flat(Vb), sb, vb};
  }
};

TEST_CASE("ops model: PaiNN message, update and edge direction (painn.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  check_op(DirectionOp{true, "painn_direction (+ edge_lengths)"}, 190);
  check_op(PaiNNMessageOp{g, 4, "painn_message"}, 191);
  check_op(PaiNNUpdateOp{3, "painn_update (K = 3)"}, 192);
  check_op(PaiNNUpdateOp{2, "painn_update (K = 2, last layer)"}, 193);
}

// =============================================================================================
// pna.hpp
// =============================================================================================

/// The five degree scalers over a histogram with a zero bin (avg_lin 13/6, avg_log from it).
km::PnaScalers test_scalers() {
  using K = km::PnaScaler;
  return km::PnaScalers::from_histogram({K::Identity, K::Amplification, K::Attenuation, K::Linear, K::InverseLinear},
                                        {1, 0, 2, 1, 2});
}

/// pna_aggregate: A (N x 4nF) from messages X (E x F) at their receivers; the graph has receivers
/// with no edge (aggregators 0) and with one edge (std 0).
struct PnaAggregateOp {
  const Graph& g;
  int F;
  const char* name;
  int fd_samples = 1 << 30;
  km::PnaScalers sc = test_scalers();
  Args<double> inputs(Rng& rng) const { return {randn(rng, std::size_t(g.E) * F)}; }
  Arr<double> ref(const Args<double>& x) const {
    const int n = sc.n, W = 4 * n * F;
    Arr<double> y(std::size_t(g.N) * W, 0.0);
    for (int i = 0; i < g.N; ++i) {
      const int b = g.row_ptr[i], e1 = g.row_ptr[i + 1], deg = e1 - b;
      for (int f = 0; f < F; ++f) {
        double sum = 0, sq = 0, mn = 0, mx = 0;
        for (int e = b; e < e1; ++e) {
          const double v = x[0][std::size_t(e) * F + f];
          sum += v;
          sq += v * v;
          mn = e == b ? v : std::min(mn, v);
          mx = e == b ? v : std::max(mx, v);
        }
        double mean = 0, sd = 0;
        if (deg > 0) {
          mean = sum / deg;
          const double var = sq / deg - mean * mean;
          sd = std::sqrt(std::max(var, 1e-5));
          if (sd <= std::sqrt(1e-5)) sd = 0;
        }
        const double G[4] = {mean, mn, mx, sd};
        const double d = deg, dc = std::max(deg, 1);
        const double scale[5] = {1, std::log(d + 1) / sc.avg_log, sc.avg_log / std::log(dc + 1), d / sc.avg_lin,
                                 sc.avg_lin / dc};
        for (int k = 0; k < n; ++k)
          for (int a = 0; a < 4; ++a) y[std::size_t(i) * W + k * 4 * F + a * F + f] = scale[k] * G[a];
      }
    }
    return y;
  }
  template <class S>
  km::PnaCache<S, M> cache() const {
    return {Mat<S, M>("mean", g.N, F), Mat<S, M>("mn", g.N, F), Mat<S, M>("mx", g.N, F), Mat<S, M>("sd", g.N, F),
            Mat<int, M>("arg_mn", g.N, F), Mat<int, M>("arg_mx", g.N, F)};
  }
  template <class S>
  Mat<S, M> scales() const {
    Mat<S, M> s("scale", g.N, sc.n);
    km::pna_scales<Exec, S>(Exec(), g.d_row_ptr, sc, s);
    return s;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> A("A", g.N, sc.width(F));
    km::pna_aggregate<Exec, S, S, Mode>(Exec(), mat(x[0], g.E, F), g.d_row_ptr, scales<S>(), cache<S>(), A);
    return flat(A);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto X = mat(x[0], g.E, F);
    const auto sc_ = scales<S>();
    const auto c = cache<S>();
    Mat<S, M> A("A", g.N, sc.width(F)), Xb("Xb", g.E, F);
    km::pna_aggregate<Exec, S, S, Mode>(Exec(), X, g.d_row_ptr, sc_, c, A);
    km::pna_aggregate_backward<Exec, S, S, Mode>(Exec(), X, g.d_row_ptr, sc_, c, mat(yb, g.N, sc.width(F)), cache<S>(),
                                                 Xb, false);
    return {flat(Xb)};
  }
};

/// pnaeq_vector_message: v' from v, X0, X1, u on a batch graph.
struct PnaEqVectorMessageOp {
  const Graph& g;
  int F;
  const char* name;
  int fd_samples = 1 << 30;
  Args<double> inputs(Rng& rng) const {
    const std::size_t N = g.N, E = g.E;
    return {randn(rng, N * 3 * F), randn(rng, E * F), randn(rng, E * F), randn(rng, E * 3)};
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y = x[0];
    for (int e = 0; e < g.E; ++e) {
      const int i = g.dst[e], j = g.src[e];
      for (int f = 0; f < F; ++f)
        for (int a = 0; a < 3; ++a)
          y[(i * 3 + a) * F + f] += x[0][(j * 3 + a) * F + f] * x[1][e * F + f] + x[2][e * F + f] * x[3][3 * e + a];
    }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    VMat<S, M> vo("v_out", g.N, 3, F);
    km::pnaeq_vector_message<Exec, S, Mode>(Exec(), vmat(x[0], g.N, F), mat(x[1], g.E, F), mat(x[2], g.E, F),
                                            mat(x[3], g.E, 3), g.d_row_ptr, g.d_src, vo);
    return flat(vo);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> X0b("X0b", g.E, F), X1b("X1b", g.E, F), ub("ub", g.E, 3);
    VMat<S, M> vb("vb", g.N, 3, F);
    km::pnaeq_vector_message_backward<Exec, S, Mode>(Exec(), vmat(x[0], g.N, F), mat(x[1], g.E, F), mat(x[2], g.E, F),
                                                     mat(x[3], g.E, 3), g.d_dst, g.d_src, g.d_send_perm, g.d_send_ptr,
                                                     vmat(yb, g.N, F), X0b, X1b, ub, vb);
    return {flat(vb), flat(X0b), flat(X1b), flat(ub)};
  }
};

/// pnaeq_filter: [Y0 | Y1 | Y2] from P, Q.
struct PnaEqFilterOp {
  const char* name = "pnaeq_filter";
  int E = 6, F = 4;
  int fd_samples = 1 << 30;
  Args<double> inputs(Rng& rng) const { return {randn(rng, std::size_t(E) * 3 * F), randn(rng, std::size_t(E) * 3 * F)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(3 * std::size_t(E) * F);
    for (int k = 0; k < 3; ++k)
      for (int e = 0; e < E; ++e)
        for (int f = 0; f < F; ++f)
          y[std::size_t(k) * E * F + e * F + f] = x[0][e * 3 * F + k * F + f] * x[1][e * 3 * F + k * F + f];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y0("Y0", E, F), Y1("Y1", E, F), Y2("Y2", E, F);
    km::pnaeq_filter<Exec, S, Mode>(Exec(), mat(x[0], E, 3 * F), mat(x[1], E, 3 * F), Y0, Y1, Y2);
    return concat(concat(flat(Y0), flat(Y1)), flat(Y2));
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const std::size_t n = std::size_t(E) * F;
    const Arr<S> b0(yb.begin(), yb.begin() + n), b1(yb.begin() + n, yb.begin() + 2 * n), b2(yb.begin() + 2 * n, yb.end());
    Mat<S, M> Pb("Pb", E, 3 * F), Qb("Qb", E, 3 * F);
    km::pnaeq_filter_backward<Exec, S, Mode>(Exec(), mat(x[0], E, 3 * F), mat(x[1], E, 3 * F), mat(b0, E, F),
                                             mat(b1, E, F), mat(b2, E, F), Pb, Qb);
    return {flat(Pb), flat(Qb)};
  }
};

/// PNA's edge block from the edge length, its encoder and pre_nns' edge columns composed:
/// m = pre_e(enc(a)) = a c + d (pna_length_compose, pna_length_message, pna_length_sums and the
/// backward kernels). p =
/// [3 pad | enc W: F x 1 | enc b: F | pre W: F x (F + 3), the edge block its columns 3.. | 2 pad].
struct PnaLengthMessageOp {
  const char* name = "pna_length_message (+ compose)";
  int E = 9, F = 5;
  int fd_samples = 1 << 30;
  int ldf() const { return F + 3; }
  long P() const { return 3 + 2L * F + long(F) * ldf() + 2; }
  LinearShape enc() const {
    LinearShape s;
    s.in = 1;
    s.out = F;
    s.w_off = 3;
    s.b_off = 3 + F;
    return s;
  }
  LinearShape pre_e() const {
    LinearShape s;
    s.in = ldf();
    s.out = F;
    s.w_off = 3 + 2L * F;
    s.b_off = -1;
    return s.columns(3, F, false);
  }
  std::vector<bool> real_inputs() const { return {false, true}; }
  Args<double> inputs(Rng& rng) const { return {randu(rng, E, 0.1, 1.0), randn(rng, P(), 0.5)}; }
  Arr<double> ref(const Args<double>& x) const {
    const auto& p = x[1];
    const LinearShape en = enc(), pe = pre_e();
    Arr<double> y(std::size_t(E) * F);
    for (int e = 0; e < E; ++e)
      for (int o = 0; o < F; ++o) {
        double s = 0;
        for (int k = 0; k < F; ++k)
          s += p[pe.w_off + long(o) * pe.stride() + k] * (x[0][e] * p[en.w_off + k] + p[en.b_off + k]);
        y[std::size_t(e) * F + o] = s;
      }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Vec<double, M> cd("cd", 2 * F);
    Mat<S, M> m("m", E, F);
    km::pna_length_compose<Exec, double, Mode>(Exec(), params(x[1]), enc(), pre_e(), cd);
    km::pna_length_message<Exec, S, double, Mode>(Exec(), mat(x[0], E, 1), cd, m);
    return flat(m);
  }
  template <class S, class Mode>
  static Vec<double, M> param_grad(const PnaLengthMessageOp& op, const Vec<double, M>& p, const Arr<S>& a, const Arr<S>& yb) {
    Vec<double, M> t("t", 2 * op.F), g("g", op.P());
    km::pna_length_sums<Exec, S, Mode>(Exec(), mat(a, op.E, 1), mat(yb, op.E, op.F), t);
    km::pna_length_compose_backward<Exec, double, double, Mode>(Exec(), p, op.enc(), op.pre_e(), t, g);
    return g;
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const auto p = params(x[1]);
    Vec<double, M> cd("cd", 2 * F);
    Mat<S, M> ab("ab", E, 1);
    km::pna_length_compose<Exec, double, Mode>(Exec(), p, enc(), pre_e(), cd);
    km::pna_length_message_backward<Exec, S, double, Mode>(Exec(), mat(yb, E, F), cd, ab);
    const auto g = param_grad<S, Mode>(*this, p, x[0], yb);
    return {flat(ab), param_cotangent<S>(g, [&] { return param_grad<double, Mode>(*this, p, primal(x[0]), primal(yb)); })};
  }
};

TEST_CASE("ops model: PNA aggregation and PNAEq's vector message (pna.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(37);
  check_op(PnaAggregateOp{g, 3, "pna_aggregate (5 scalers)"}, 194);
  check_op(PnaAggregateOp{g, 20, "pna_aggregate (20 channels)", 24}, 220);
  check_op(PnaEqVectorMessageOp{g, 4, "pnaeq_vector_message"}, 195);
  check_op(DirectionOp{false, "pnaeq_direction (+ edge_lengths)"}, 196);
  check_op(PnaEqFilterOp{}, 197);
  check_op(PnaLengthMessageOp{}, 198);
  check_op(PnaLengthMessageOp{"pna_length_message (37 channels)", 7, 37}, 218);
  // wider than a vector register and not a multiple of one (HostRow's row loops and their tails)
  check_op(PnaEqVectorMessageOp{g, 37, "pnaeq_vector_message (37 channels)", 24}, 216);
  check_op(PnaEqFilterOp{"pnaeq_filter (37 channels)", 5, 37, 24}, 217);
}

TEST_CASE("ops model: the basis gate (PNAPlus's message, PNAEq's filter) with its projection formed a chunk of rows "
          "at a time gives the bits of linear_forward and the products, and of their backward, in one part of the "
          "rows or several",
          "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const int K = 6;
  for (const int nb : {1, 3})  // one block (basis_gate) or PNAEq's three (pnaeq_filter_basis)
    for (const int F : {4, 37, 130}) {  // 3 x 130: the basis cotangent sums more than HostRow's row
      // more than three chunks of 32 rows, the last one partial
      const long E = 101;
      const int C = nb * F;
      INFO(nb << " blocks of " << F << " channels");
      REQUIRE(E % km::detail::dense_chunk_rows != 0);
      const LinearOp lin{"rbf_lin", int(E), K, C, false};
      Rng rng(230 + F + nb);
      const Arr<double> rbf_a = randn(rng, std::size_t(E) * K), p_a = randn(rng, std::size_t(lin.P()), 0.5);
      const Arr<double> P_a = randn(rng, std::size_t(E) * C), yb_a = randn(rng, std::size_t(E) * C);
      const Arr<double> rb0_a = randn(rng, std::size_t(E) * K);  // rbfbar before: accumulated into
      const auto w = lin.weights(params(p_a));
      const LinearShape sh = lin.shape();
      REQUIRE(km::basis_gate_fuses(Exec(), w, sh));
      const Mat<double, M> P = mat(P_a, E, C), rbf = mat(rbf_a, E, K);
      const std::size_t n = std::size_t(E) * F;
      std::vector<Mat<double, M>> Yb(3);
      for (int k = 0; k < nb; ++k) Yb[k] = mat(slice(yb_a, k * n, n), E, F);
      // the op sequence: Q = linear_forward(rbf), the products; their backward and rbfbar (+)= Qbar W
      Mat<double, M> Q("Q", E, C), Pb0("Pb0", E, C), Qb0("Qb0", E, C);
      std::vector<Mat<double, M>> Y(3);
      km::linear_forward<Exec, double, double, HostRow>(Exec(), rbf, w, sh, Q);
      if (nb == 3) {
        for (auto& y : Y) y = Mat<double, M>("Y", E, F);
        km::pnaeq_filter<Exec, double, HostRow>(Exec(), P, Q, Y[0], Y[1], Y[2]);
        km::pnaeq_filter_backward<Exec, double, HostRow>(Exec(), P, Q, Yb[0], Yb[1], Yb[2], Pb0, Qb0);
      } else {
        Y[0] = Mat<double, M>("Y", E, F);
        km::hadamard<Exec, double, HostRow>(Exec(), P, Q, Y[0]);
        km::hadamard_backward<Exec, double, HostRow>(Exec(), P, Q, Yb[0], Pb0, Qb0, false, false);
      }
      Mat<double, M> rb_acc = mat(rb0_a, E, K), rb_new("rb_new", E, K);
      km::linear_backward_input<Exec, double, double, HostRow>(Exec(), Qb0, w, sh, rb_acc, true);
      km::linear_backward_input<Exec, double, double, HostRow>(Exec(), Qb0, w, sh, rb_new, false);
      // and the products themselves, to a rounding (the sequence is checked on its own elsewhere)
      double worst = 0;
      for (long e = 0; e < E; ++e)
        for (int c = 0; c < C; ++c) {
          double q = 0;
          for (int k = 0; k < K; ++k) q += rbf_a[e * K + k] * p_a[sh.w_off + long(c) * K + k];
          worst = std::max(worst, std::abs(Y[c / F](e, c % F) - P_a[e * C + c] * q));
        }
      CHECK(worst < 1e-12);
      for (const long parts : {1L, 2L, 3L, 7L, 200L}) {
        INFO(parts << " parts");
        Mat<double, M> qb("qb", km::basis_gate_buffer_rows(parts), C);
        std::vector<Mat<double, M>> X(3);
        for (int k = 0; k < nb; ++k) X[k] = Mat<double, M>("X", E, F);
        if (nb == 3)
          km::pnaeq_filter_basis<Exec, double>(Exec(), P, rbf, w, sh, X[0], X[1], X[2], qb, parts);
        else
          km::basis_gate<Exec, double>(Exec(), P, rbf, w, sh, X[0], qb, parts);
        for (int k = 0; k < nb; ++k) CHECK(flat(X[k]) == flat(Y[k]));
        for (const bool accumulate : {true, false}) {
          if (nb == 3 && !accumulate) continue;  // PNAEq's adds to the basis cotangent
          Mat<double, M> Pb("Pb", E, C), rb = mat(rb0_a, E, K);
          Kokkos::deep_copy(Pb, 7.0);  // overwritten
          if (nb == 3)
            km::pnaeq_filter_basis_backward<Exec, double>(Exec(), P, rbf, w, sh, Yb[0], Yb[1], Yb[2], Pb, rb, qb, parts);
          else
            km::basis_gate_backward<Exec, double>(Exec(), P, rbf, w, sh, Yb[0], Pb, rb, accumulate, qb, parts);
          CHECK(flat(Pb) == flat(Pb0));
          CHECK(flat(rb) == flat(accumulate ? rb_acc : rb_new));
        }
        // no basis cotangent: Pbar alone
        Mat<double, M> Pb2("Pb2", E, C);
        if (nb == 3)
          km::pnaeq_filter_basis_backward<Exec, double>(Exec(), P, rbf, w, sh, Yb[0], Yb[1], Yb[2], Pb2, Mat<double, M>(),
                                                        qb, parts);
        else
          km::basis_gate_backward<Exec, double>(Exec(), P, rbf, w, sh, Yb[0], Pb2, Mat<double, M>(), false, qb, parts);
        CHECK(flat(Pb2) == flat(Pb0));
      }
      // a chunk buffer short of a chunk per part, and a projection with a bias, refused
      Mat<double, M> small("small", km::basis_gate_buffer_rows(1), C), X0("X0", E, F);
      const auto forward_short = [&] { km::basis_gate<Exec, double>(Exec(), P, rbf, w, sh, Pb0, small, 2); };
      const auto backward_short = [&] {
        km::basis_gate_backward<Exec, double>(Exec(), P, rbf, w, sh, Pb0, Qb0, rbf, true, small, 2);
      };
      CHECK_THROWS_AS(forward_short(), std::logic_error);
      CHECK_THROWS_AS(backward_short(), std::logic_error);
      const LinearOp biased{"rbf_lin", int(E), K, C, true};
      const auto wb = biased.weights(params(randn(rng, std::size_t(biased.P()))));
      CHECK_FALSE(km::basis_gate_fuses(Exec(), wb, biased.shape()));
      const auto with_bias = [&] { km::basis_gate<Exec, double>(Exec(), P, rbf, wb, biased.shape(), Pb0, small, 1); };
      CHECK_THROWS_AS(with_bias(), std::logic_error);
    }
}

TEST_CASE("ops model: PNA aggregation in one pass per receiver (HostRow), forward and backward, real and dual, "
          "gives the bits of the statistic-by-statistic kernels, ties included",
          "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(37);
  auto run = [&](auto zero, int F, bool ties, std::uint64_t seed) {
    using S = decltype(zero);
    const PnaAggregateOp op{g, F, "pna_aggregate"};
    Rng rng(seed);
    Arr<double> x = randn(rng, std::size_t(g.E) * F, 1.5);
    if (ties)  // small integers: most receivers have tied minima and maxima
      for (auto& v : x) v = std::round(v);
    const Arr<double> ab = randn(rng, std::size_t(g.N) * op.sc.width(F)), x0 = randn(rng, std::size_t(g.E) * F);
    auto as_s = [](const Arr<double>& a) {
      Arr<S> r(a.size());
      for (std::size_t k = 0; k < a.size(); ++k) r[k] = S(a[k]);
      if constexpr (scalar_traits<S>::is_dual)
        for (std::size_t k = 0; k < a.size(); ++k) r[k].d = 0.25 * a[(k * 7) % a.size()];
      return r;
    };
    const auto X = mat(as_s(x), g.E, F);
    const auto sc = op.scales<S>();
    auto pass = [&](auto mode, bool accumulate) {
      using Mode = decltype(mode);
      const auto c = op.cache<S>();
      Mat<S, M> A("A", g.N, op.sc.width(F));
      km::pna_aggregate<Exec, S, S, Mode>(Exec(), X, g.d_row_ptr, sc, c, A);
      auto Xb = mat(as_s(x0), g.E, F);
      km::pna_aggregate_backward<Exec, S, S, Mode>(Exec(), X, g.d_row_ptr, sc, c, mat(as_s(ab), g.N, op.sc.width(F)),
                                                   op.cache<S>(), Xb, accumulate);
      return std::make_tuple(flat(A), flat(c.mean), flat(c.mn), flat(c.mx), flat(c.sd), flat(c.arg_mn), flat(c.arg_mx),
                             flat(Xb));
    };
    long tied = 0;
    {
      const auto c = op.cache<S>();
      Mat<S, M> A("A", g.N, op.sc.width(F));
      km::pna_aggregate<Exec, S, S, exec_mode::PerElement>(Exec(), X, g.d_row_ptr, sc, c, A);
      for (int i = 0; i < g.N; ++i)
        for (int f = 0; f < F && g.row_ptr[i + 1] > g.row_ptr[i]; ++f) {
          int n = 0;
          for (int k = g.row_ptr[i]; k < g.row_ptr[i + 1]; ++k) n += x[std::size_t(k) * F + f] == x[std::size_t(c.arg_mx(i, f)) * F + f];
          tied += n > 1 ? 1 : 0;
        }
    }
    if (ties) CHECK(tied > 0);
    for (const bool accumulate : {false, true}) {
      INFO(F << " channels, ties " << ties << ", accumulate " << accumulate);
      const auto h = pass(HostRow(), accumulate), e = pass(exec_mode::PerElement(), accumulate);
      CHECK(mismatches(std::get<0>(h), std::get<0>(e)) == 0);  // A
      CHECK(mismatches(std::get<1>(h), std::get<1>(e)) == 0);  // mean
      CHECK(mismatches(std::get<2>(h), std::get<2>(e)) == 0);  // min
      CHECK(mismatches(std::get<3>(h), std::get<3>(e)) == 0);  // max
      CHECK(mismatches(std::get<4>(h), std::get<4>(e)) == 0);  // std
      CHECK(std::get<5>(h) == std::get<5>(e));                 // arg min
      CHECK(std::get<6>(h) == std::get<6>(e));                 // arg max
      CHECK(mismatches(std::get<7>(h), std::get<7>(e)) == 0);  // Xbar
    }
  };
  // 3 and 37 channels: whole vectors and a rest (the forward's vector walk and its scalar tail)
  for (const int F : {3, 37, 64})
    for (const bool ties : {false, true}) {
      run(0.0, F, ties, 240 + F + ties);
      run(0.0f, F, ties, 260 + F + ties);
      run(D(0), F, ties, 250 + F + ties);
      run(Dual<float>(0), F, ties, 270 + F + ties);
    }
}

TEST_CASE("ops model: the Bessel basis in float, HostRow a vector of edges at a time, gives the bits of one edge at "
          "a time, forward and the distances' cotangent",
          "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  Rng rng(271);
  const double rc = 5.0;
  for (const long E : {1L, 16L, 37L})
    for (const int exponent : {5, 2}) {
      INFO(E << " edges, envelope exponent " << exponent);
      const int K = 6;
      const long f_off = 3;
      Arr<double> dd = randu(rng, std::size_t(E), 0.3, 1.2 * rc);  // some beyond the cutoff
      if (E > 5) dd[5] = rc;
      Arr<float> d(dd.size()), p(std::size_t(f_off + K)), bb(std::size_t(E) * K), db0(dd.size());
      for (std::size_t e = 0; e < d.size(); ++e) d[e] = float(dd[e]);
      const Arr<double> pn = randn(rng, p.size(), 0.2), bn = randn(rng, bb.size()), dn = randn(rng, db0.size());
      for (std::size_t k = 0; k < p.size(); ++k) p[k] = float(pn[k] + double(k + 1 - f_off) * M_PI);
      for (std::size_t k = 0; k < bb.size(); ++k) bb[k] = float(bn[k]);
      for (std::size_t k = 0; k < db0.size(); ++k) db0[k] = float(dn[k]);
      auto run = [&](auto mode) {
        using Mode = decltype(mode);
        Mat<float, M> B("B", E, K);
        km::bessel_basis<Exec, float, float, Mode>(Exec(), vec(d), vec(p), f_off, rc, exponent, B);
        auto db = vec(db0);  // added to
        km::bessel_basis_backward<Exec, float, float, Mode>(Exec(), vec(d), vec(p), f_off, rc, exponent, mat(bb, E, K),
                                                            Vec<float, M>(), db);
        return std::make_pair(flat(B), flat(db));
      };
      const auto h = run(HostRow()), o = run(exec_mode::PerElement());
      long mismatches = 0;
      for (std::size_t k = 0; k < h.first.size(); ++k) mismatches += same_bits(h.first[k], o.first[k]) ? 0 : 1;
      for (std::size_t k = 0; k < h.second.size(); ++k) mismatches += same_bits(h.second[k], o.second[k]) ? 0 : 1;
      CHECK(mismatches == 0);
      // and the basis itself, to float's accuracy
      double worst = 0;
      for (long e = 0; e < E; ++e)
        for (int k = 0; k < K; ++k) {
          const double t = double(d[e]) / rc;
          const double ref = ref_dimenet_envelope(exponent, t) * std::sin(double(p[f_off + k]) * t);
          worst = std::max(worst, std::abs(double(h.first[std::size_t(e) * K + k]) - ref) / (1 + std::abs(ref)));
        }
      CHECK(worst < 1e-5);
    }
}

TEST_CASE("ops model: PNA min / max share their cotangent evenly between tied rows, as torch's scatter_reduce", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  // one receiver with four edges: values 2, 5, 5, -1 (max tied twice) and 3, 3, 3, 4 (min tied three times)
  const std::vector<int> ptr = {0, 4};
  const Arr<double> X = {2, 3, 5, 3, 5, 3, -1, 4};
  Vec<int, M> dptr = ivec(ptr);
  auto run = [&](auto zero) {
    using S = decltype(zero);
    Arr<S> xs(X.size());
    for (std::size_t k = 0; k < X.size(); ++k) xs[k] = S(X[k]);
    const auto Xm = mat(xs, 4, 2);
    Mat<S, M> mn("mn", 1, 2), mx("mx", 1, 2), Xb("Xb", 4, 2);
    Mat<int, M> amn("amn", 1, 2), amx("amx", 1, 2);
    km::segment_min<Exec, S>(Exec(), Xm, dptr, mn, amn);
    km::segment_max<Exec, S>(Exec(), Xm, dptr, mx, amx);
    const Arr<S> gb = {S(6), S(3)};
    km::segment_select_backward_ties<Exec, S>(Exec(), Xm, dptr, mx, mat(gb, 1, 2), Xb, false);
    km::segment_select_backward_ties<Exec, S>(Exec(), Xm, dptr, mn, mat(gb, 1, 2), Xb, true);
    return flat(Xb);
  };
  const Arr<double> got = run(0.0);
  // column 0: max 5 at rows 1, 2 (6 / 2 each), min -1 at row 3 (6); column 1: min 3 at rows 0..2 (3 / 3), max 4 at row 3
  const Arr<double> want = {0, 1, 3, 1, 3, 1, 6, 3};
  CHECK(got == want);
  const Arr<D> gd = run(D(0));
  for (std::size_t k = 0; k < want.size(); ++k) CHECK(gd[k].v == want[k]);
}

TEST_CASE("ops model: vec_norm of a zero vector is 0 with gradient 0 (eps = 0), in double and dual", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  auto run = [](auto zero) {
    using S = decltype(zero);
    VMat<S, M> V("V", 2, 3, 2);
    for (int a = 0; a < 3; ++a) V(1, a, 1) = S(a + 1.0);
    Mat<S, M> Y("Y", 2, 2), Yb("Yb", 2, 2);
    Kokkos::deep_copy(Yb, S(1.0));
    VMat<S, M> Vb("Vb", 2, 3, 2);
    km::vec_norm<Exec, S>(Exec(), V, 0.0, Y);
    km::vec_norm_backward<Exec, S>(Exec(), V, 0.0, Yb, Vb, false);
    CHECK(scalar_traits<S>::primal(Y(0, 0)) == 0.0);
    CHECK(scalar_traits<S>::tangent(Y(0, 0)) == 0.0);
    CHECK(scalar_traits<S>::primal(Y(1, 1)) == Approx(std::sqrt(14.0)));
    for (int a = 0; a < 3; ++a) {
      CHECK(scalar_traits<S>::primal(Vb(0, a, 0)) == 0.0);
      CHECK(scalar_traits<S>::tangent(Vb(0, a, 0)) == 0.0);
      CHECK(scalar_traits<S>::primal(Vb(1, a, 1)) == Approx((a + 1.0) / std::sqrt(14.0)));
    }
  };
  run(0.0);
  run(Dual<double>(0.0, 0.0));
}

TEST_CASE("ops model: embedding, energy sum, graph energy, pooling (readout.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  const Species sp(g);
  check_op(EmbeddingOp{g, sp}, 180);
  check_op(EnergySumOp{g, sp}, 181);
  check_op(GraphEnergyOp{g, sp}, 184);
  check_op(PoolOp{g, false, "sum pooling (segment_sum + pool_backward)"}, 182);
  check_op(PoolOp{g, true, "mean pooling (segment_sum + scale_by_graph + pool_backward)"}, 183);
}

TEST_CASE("ops model: energy_sum accumulates float atoms in double (S -> rebind_t<S, double>)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  const Species sp(g);
  Rng rng(185);
  const Arr<double> e = randn(rng, g.N), t = randn(rng, g.N);
  const Arr<double> refs = {0.25, -1.5, 7.0, 0.125};
  const double scale = 1.7, shift = -0.3;
  using DF = Dual<float>;
  static_assert(std::is_same<rebind_t<float, double>, double>::value, "");
  static_assert(std::is_same<rebind_t<DF, double>, Dual<double>>::value, "");
  Arr<float> ef(g.N);
  Arr<DF> edf(g.N);
  for (int i = 0; i < g.N; ++i) {
    ef[i] = float(e[i]);
    edf[i] = DF(float(e[i]), float(t[i]));
  }
  each_mode([&](auto mode) {
    using Mode = decltype(mode);
    INFO("mode " << Mode::name);
    Vec<double, M> E("E", g.G);
    Vec<Dual<double>, M> ED("ED", g.G);
    km::energy_sum<Exec, float, double, Mode>(Exec(), mat(ef, g.N, 1), g.d_graph_ptr, sp.d_sp, vec(refs), scale, shift, E);
    km::energy_sum<Exec, DF, Dual<double>, Mode>(Exec(), mat(edf, g.N, 1), g.d_graph_ptr, sp.d_sp, vec(refs), scale,
                                                 shift, ED);
    for (int k = 0; k < g.G; ++k) {
      double want = 0, want_t = 0;  // the kernel's order: atoms ascending, in double
      for (int i = g.graph_ptr[k]; i < g.graph_ptr[k + 1]; ++i) {
        want += double(ef[i]) * scale + (shift + refs[sp.sp[i]]);
        want_t += double(float(t[i])) * scale;
      }
      CHECK(same_bits(E(k), want));
      CHECK(same_bits(ED(k).v, want));
      CHECK(same_bits(ED(k).d, want_t));
    }
  });
}

TEST_CASE("ops model: edge_vectors with and without a tangent (readout.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  Rng rng(190);
  const Batch<M> b = make_test_batch(g, rng);
  const Arr<double> r = ref_edge_vectors(g, b), rdot = randn(rng, r.size());
  each_mode([&](auto mode) {
    using Mode = decltype(mode);
    INFO("mode " << Mode::name);
    Mat<double, M> rd("r", g.E, 3);
    Mat<D, M> rD("rD", g.E, 3), rD0("rD0", g.E, 3);
    km::edge_vectors<Exec, double, Mode>(Exec(), b.pos, b.shift, g.d_dst, g.d_src, Mat<double, M>(), rd);
    km::edge_vectors<Exec, D, Mode>(Exec(), b.pos, b.shift, g.d_dst, g.d_src, mat(rdot, g.E, 3), rD);
    km::edge_vectors<Exec, D, Mode>(Exec(), b.pos, b.shift, g.d_dst, g.d_src, Mat<double, M>(), rD0);
    Mismatch mm;
    for (std::size_t k = 0; k < r.size(); ++k) {
      mm.check(same_bits(rd.data()[k], r[k]), where("edge_vectors", 0, k, rd.data()[k], r[k]));
      mm.check(same_bits(rD.data()[k], D(r[k], rdot[k])), where("edge_vectors dual", 0, k, rD.data()[k].d, rdot[k]));
      mm.check(same_bits(rD0.data()[k], D(r[k], 0.0)), where("edge_vectors dual, no tangent", 0, k, rD0.data()[k].d, 0));
    }
    INFO(mm.first);
    CHECK(mm.count == 0);
  });
}

TEST_CASE("ops model: forces, stress and the edge tangent vs brute force (forces.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  Rng rng(200);
  const Batch<M> b = make_test_batch(g, rng);
  const Arr<double> r = ref_edge_vectors(g, b);
  const Arr<double> ge = randn(rng, std::size_t(g.E) * 3), gt = randn(rng, ge.size());
  const Arr<double> v = randn(rng, std::size_t(g.N) * 3), U = randn(rng, std::size_t(g.G) * 9);
  const Arr<double> vol = {0.0, 12.5, 37.5};
  // brute force
  Arr<double> F(std::size_t(g.N) * 3, 0.0), sigma(std::size_t(g.G) * 9, 0.0), rdot(std::size_t(g.E) * 3);
  for (int i = 0; i < g.N; ++i)
    for (int a = 0; a < 3; ++a) {
      double s = 0;
      for (int e : items(g.send_ptr, &g.send_perm, i)) s += ge[3 * e + a];
      for (int e : items(g.row_ptr, nullptr, i)) s -= ge[3 * e + a];
      F[3 * i + a] = s;
    }
  for (int k = 0; k < g.G; ++k)
    for (int a = 0; a < 3; ++a)
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int e = g.graph_edge_ptr[k]; e < g.graph_edge_ptr[k + 1]; ++e) s += ge[3 * e + a] * r[3 * e + c];
        sigma[9 * k + 3 * a + c] = vol[k] > 0 ? s / vol[k] : NAN;
      }
  for (int e = 0; e < g.E; ++e) {
    const int k = g.atom_graph[g.dst[e]];
    for (int a = 0; a < 3; ++a) {
      double t = v[3 * g.src[e] + a] - v[3 * g.dst[e] + a];
      if (vol[k] > 0)
        for (int c = 0; c < 3; ++c) t += U[9 * k + 3 * a + c] * r[3 * e + c] / vol[k];
      rdot[3 * e + a] = t;
    }
  }
  // the forces of a graph sum to zero
  for (int a = 0; a < 3; ++a) {
    double s = 0;
    for (int i = 0; i < g.N; ++i) s += F[3 * i + a];
    CHECK(std::fabs(s) < 1e-12);
  }
  auto same = [](const Arr<double>& got, const Arr<double>& want, const char* what) {
    Mismatch mm;
    REQUIRE(got.size() == want.size());
    for (std::size_t k = 0; k < got.size(); ++k)
      mm.check(std::isnan(want[k]) ? std::isnan(got[k]) : close(got[k], want[k], 1e-13, 1e-13),
               where(what, 0, k, got[k], want[k]));
    INFO(mm.first);
    CHECK(mm.count == 0);
  };
  auto bits = [](const Arr<double>& got, const Arr<double>& want, const char* what) {
    Mismatch mm;
    REQUIRE(got.size() == want.size());
    for (std::size_t k = 0; k < got.size(); ++k) mm.check(same_bits(got[k], want[k]), where(what, 0, k, got[k], want[k]));
    INFO(mm.first);
    CHECK(mm.count == 0);
  };
  Arr<double> F0, s0, t0;
  each_mode([&](auto mode) {
    using Mode = decltype(mode);
    INFO("mode " << Mode::name);
    Mat<double, M> Fd("F", g.N, 3), FD("FD", g.N, 3), sd("s", g.G, 9), sD("sD", g.G, 9), td("t", g.E, 3);
    km::assemble_forces<Exec, double, Mode>(Exec(), b, mat(ge, g.E, 3), Fd);
    km::assemble_forces<Exec, D, Mode>(Exec(), b, mat(make_dual(ge, gt), g.E, 3), FD);
    km::assemble_stress<Exec, double, Mode>(Exec(), b, mat(ge, g.E, 3), sd);
    km::assemble_stress<Exec, D, Mode>(Exec(), b, mat(make_dual(ge, gt), g.E, 3), sD);
    km::edge_tangent<Exec, Mode>(Exec(), b, mat(v, g.N, 3), mat(U, g.G, 9), td);
    same(flat(Fd), F, "forces");
    same(flat(sd), sigma, "stress");
    same(flat(td), rdot, "edge_tangent");
    bits(flat(FD), flat(Fd), "forces from a dual g use its primal");
    bits(flat(sD), flat(sd), "stress from a dual g uses its primal");
    if (F0.empty()) {
      F0 = flat(Fd);
      s0 = flat(sd);
      t0 = flat(td);
    } else {  // modes agree bitwise
      bits(flat(Fd), F0, "forces, mode vs HostRow");
      bits(flat(sd), s0, "stress, mode vs HostRow");
      bits(flat(td), t0, "edge_tangent, mode vs HostRow");
    }
  });
  CHECK(std::isnan(s0[0]));  // graph 0 is not periodic
  CHECK(s0[9] == 0.0);       // graph 1 has no edges
}

// =============================================================================================
// norm.hpp, neighbour.hpp
// =============================================================================================

/// batchnorm_forward / backward on X (n x C) with gamma, beta in a real buffer p = [1 pad | gamma C |
/// beta C]: batch statistics (training) or fixed running statistics (evaluation).
struct BatchNormOp {
  int n, C;
  bool batch;
  const char* name;
  std::vector<bool> real_inputs() const { return {false, true}; }
  long P() const { return 1 + 2 * long(C); }
  Args<double> inputs(Rng& rng) const {
    Arr<double> p = randn(rng, std::size_t(P()), 0.5);
    for (int c = 0; c < C; ++c) p[1 + c] += 1.0;  // gamma around 1
    return {randn(rng, std::size_t(n) * C), p};
  }
  /// running statistics [mean C | var C]
  std::vector<double> running() const {
    std::vector<double> r(2 * std::size_t(C));
    for (int c = 0; c < C; ++c) {
      r[c] = 0.3 * std::sin(1.0 + c);
      r[C + c] = 0.7 + 0.1 * c;
    }
    return r;
  }
  Arr<double> ref(const Args<double>& x) const {
    const auto st = running();
    Arr<double> y(std::size_t(n) * C);
    for (int c = 0; c < C; ++c) {
      double mu = st[c], var = st[C + c];
      if (batch) {
        mu = 0;
        for (int i = 0; i < n; ++i) mu += x[0][i * C + c];
        mu /= n;
        var = 0;
        for (int i = 0; i < n; ++i) var += (x[0][i * C + c] - mu) * (x[0][i * C + c] - mu);
        var /= n;
      }
      for (int i = 0; i < n; ++i)
        y[i * C + c] = (x[0][i * C + c] - mu) / std::sqrt(var + 1e-5) * x[1][1 + c] + x[1][1 + C + c];
    }
    return y;
  }
  template <class S, class Mode>
  void stats(const Mat<S, M>& X, const Vec<S, M>& mu, const Vec<S, M>& r) const {
    if (batch)
      km::batchnorm_batch_statistics<Exec, S, Mode>(Exec(), X, 1e-5, mu, r, Vec<double, M>(), 0);
    else
      km::batchnorm_running_statistics<Exec, S>(Exec(), vec(running()), 0, 1e-5, mu, r);
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    const auto X = mat(x[0], n, C);
    Vec<S, M> mu("mu", C), r("r", C);
    stats<S, Mode>(X, mu, r);
    Mat<S, M> Xh("Xh", n, C), Y("Y", n, C);
    km::batchnorm_forward<Exec, S, double, Mode>(Exec(), X, mu, r, params(x[1]), 1, 1 + C, Xh, Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Mat<S, M> run_bwd(const Args<S>& x, const Arr<S>& yb, const Vec<real_t<S>, M>& g) const {
    const auto X = mat(x[0], n, C);
    Vec<S, M> mu("mu", C), r("r", C), cs("cs", 2 * C);
    stats<S, Mode>(X, mu, r);
    Mat<S, M> Xh("Xh", n, C), Y("Y", n, C), Xb("Xb", n, C);
    const auto p = params(x[1]);
    km::batchnorm_forward<Exec, S, double, Mode>(Exec(), X, mu, r, p, 1, 1 + C, Xh, Y);
    km::batchnorm_backward<Exec, S, double, Mode>(Exec(), Xh, r, mat(yb, n, C), p, 1, 1 + C, batch, g, cs, Xb);
    return Xb;
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Vec<double, M> g("g", P());
    const auto Xb = run_bwd<S, Mode>(x, yb, g);
    return {flat(Xb), param_cotangent<S>(g, [&] {
              Vec<double, M> gp("gp", P());
              run_bwd<double, Mode>({primal(x[0]), primal(x[1])}, primal(yb), gp);
              return gp;
            })};
  }
};

/// The neighbour sum / mean (node -> node over the batch graph: segment_sum_perm / segment_mean_perm
/// through the sender index) and their backward (neighbour_backward).
struct NeighbourOp {
  const Graph& g;
  bool mean;
  const char* name;
  static constexpr int Fn = 5;
  Args<double> inputs(Rng& rng) const { return {randn(rng, std::size_t(g.N) * Fn)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(std::size_t(g.N) * Fn, 0.0);
    for (int i = 0; i < g.N; ++i) {
      const int deg = g.row_ptr[i + 1] - g.row_ptr[i];
      for (int e = g.row_ptr[i]; e < g.row_ptr[i + 1]; ++e)
        for (int c = 0; c < Fn; ++c) y[i * Fn + c] += x[0][g.src[e] * Fn + c] / (mean ? deg : 1);
    }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.N, Fn);
    if (mean)
      km::segment_mean_perm<Exec, S, Mode>(Exec(), mat(x[0], g.N, Fn), g.d_src, g.d_row_ptr, Y, false);
    else
      km::segment_sum_perm<Exec, S, Mode>(Exec(), mat(x[0], g.N, Fn), g.d_src, g.d_row_ptr, Y, false);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    Mat<S, M> Xb("Xb", g.N, Fn);
    km::neighbour_backward<Exec, S, Mode>(Exec(), mat(yb, g.N, Fn), g.d_send_perm, g.d_send_ptr, g.d_dst, g.d_row_ptr,
                                          mean, Xb, false);
    return {flat(Xb)};
  }
};

/// GIN's self term Z = Z0 + (1 + eps) X with eps = p(2) real.
struct GinSelfOp {
  int n = 7, C = 4;
  const char* name = "gin_self";
  std::vector<bool> real_inputs() const { return {false, false, true}; }
  Args<double> inputs(Rng& rng) const {
    return {randn(rng, std::size_t(n) * C), randn(rng, std::size_t(n) * C), randn(rng, 4, 0.5)};
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(std::size_t(n) * C);
    for (std::size_t k = 0; k < y.size(); ++k) y[k] = x[1][k] + (1 + x[2][2]) * x[0][k];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    auto Z = mat(x[1], n, C);
    km::gin_self<Exec, S, double, Mode>(Exec(), mat(x[0], n, C), params(x[2]), 2, Z);
    return flat(Z);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    auto run = [&](const auto& X, const auto& Yb, const auto& g) {
      using SS = typename std::decay_t<decltype(X)>::non_const_value_type;
      Mat<SS, M> Xb("Xb", n, C);
      Vec<SS, M> rows("rows", n);
      km::gin_self_backward<Exec, SS, double, Mode>(Exec(), X, Yb, params(x[2]), 2, g, rows, Xb);
      return Xb;
    };
    Vec<double, M> g("g", 4);
    const auto Xb = run(mat(x[0], n, C), mat(yb, n, C), g);
    return {flat(Xb), yb, param_cotangent<S>(g, [&] {
              Vec<double, M> gp("gp", 4);
              run(mat(primal(x[0]), n, C), mat(primal(yb), n, C), gp);
              return gp;
            })};
  }
};

/// MFC's degree-selected layers on a batch graph, max_degree 2: p = [Wl | b_l | Wr] per class.
struct MfcOp {
  const Graph& g;
  int D = 2, I = 3, O = 4;
  const char* name = "mfc (degree-selected layers)";
  std::vector<bool> real_inputs() const { return {false, false, true}; }
  long per_class() const { return 2L * O * I + O; }
  Args<double> inputs(Rng& rng) const {
    return {randn(rng, std::size_t(g.N) * I), randn(rng, std::size_t(g.N) * I),
            randn(rng, std::size_t((D + 1) * per_class()), 0.5)};
  }
  int cls(int i) const { return std::min(g.row_ptr[i + 1] - g.row_ptr[i], D); }
  Mat<long, M> offsets() const {
    Mat<long, M> off("off", D + 1, 3);
    for (int k = 0; k <= D; ++k) {
      off(k, 0) = k * per_class();
      off(k, 1) = k * per_class() + long(O) * I;
      off(k, 2) = k * per_class() + long(O) * I + O;
    }
    return off;
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(std::size_t(g.N) * O);
    const auto off = offsets();
    for (int i = 0; i < g.N; ++i)
      for (int o = 0; o < O; ++o) {
        const int k = cls(i);
        double s = x[2][off(k, 1) + o];
        for (int c = 0; c < I; ++c)
          s += x[0][i * I + c] * x[2][off(k, 0) + o * I + c] + x[1][i * I + c] * x[2][off(k, 2) + o * I + c];
        y[i * O + o] = s;
      }
    return y;
  }
  void classes(Vec<int, M>& c, Vec<int, M>& cp, Vec<int, M>& perm) const {
    c = Vec<int, M>("cls", g.N);
    cp = Vec<int, M>("cls_ptr", D + 2);
    perm = Vec<int, M>("cls_perm", g.N);
    km::mfc_classes<Exec>(Exec(), g.d_row_ptr, D, c, cp, perm);
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Vec<int, M> c, cp, perm;
    classes(c, cp, perm);
    Mat<S, M> Y("Y", g.N, O);
    km::mfc_forward<Exec, S, double, Mode>(Exec(), mat(x[0], g.N, I), mat(x[1], g.N, I), c, offsets(), params(x[2]), Y, cp,
                                              perm);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Vec<int, M> c, cp, perm;
    classes(c, cp, perm);
    Mat<S, M> Hb("Hb", g.N, I), Xb("Xb", g.N, I);
    km::mfc_backward_input<Exec, S, double, Mode>(Exec(), mat(yb, g.N, O), c, offsets(), params(x[2]), Hb, Xb, cp,
                                                     perm);
    Vec<double, M> gr("g", (D + 1) * per_class());
    km::mfc_backward_params<Exec, S, Mode>(Exec(), mat(x[0], g.N, I), mat(x[1], g.N, I), mat(yb, g.N, O), cp, perm,
                                           offsets(), gr);
    return {flat(Hb), flat(Xb), param_cotangent<S>(gr, [&] {
              Vec<double, M> gp("gp", (D + 1) * per_class());
              km::mfc_backward_params<Exec, double, Mode>(Exec(), mat(primal(x[0]), g.N, I), mat(primal(x[1]), g.N, I),
                                                          mat(primal(yb), g.N, O), cp, perm, offsets(), gp);
              return gp;
            })};
  }
};

/// CGCNN's gated message sum with the residual: Y = sum_e sigmoid(F) softplus(S) + X; backward Fbar,
/// Sbar from cgcnn_message_backward, Xbar = Ybar (the residual, the caller's).
struct CgcnnOp {
  const Graph& g;
  int C = 3;
  const char* name = "cgcnn_message_sum";
  int fd_samples = 1 << 30;
  Args<double> inputs(Rng& rng) const {
    return {randn(rng, std::size_t(g.E) * C), randn(rng, std::size_t(g.E) * C, 3.0), randn(rng, std::size_t(g.N) * C)};
  }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y = x[2];
    for (int e = 0; e < g.E; ++e)
      for (int c = 0; c < C; ++c) {
        const double f = x[0][e * C + c], s = x[1][e * C + c];
        const double sp = s > 20 ? s : std::log1p(std::exp(s));
        y[g.dst[e] * C + c] += sp / (1 + std::exp(-f));
      }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.N, C);
    km::cgcnn_message_sum<Exec, S, Mode>(Exec(), mat(x[0], g.E, C), mat(x[1], g.E, C), g.d_row_ptr, mat(x[2], g.N, C), Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> Fb("Fb", g.E, C), Sb("Sb", g.E, C);
    km::cgcnn_message_backward<Exec, S, Mode>(Exec(), mat(x[0], g.E, C), mat(x[1], g.E, C), mat(yb, g.N, C), g.d_dst, Fb, Sb);
    return {flat(Fb), flat(Sb), yb};
  }
};

/// GATv2 attention on a batch graph (self edges dropped, a self loop per receiver), K heads of C
/// channels; p = [att KC | lin_edge KC | bias width]. The XL cotangent is the self loop's share plus
/// the edges' gathered over sender segments.
struct GatOp {
  const Graph& g;
  bool concat, edge;
  const char* name;
  int K = 2, C = 3;
  double dropout = 0;  ///< attention dropout (training mode), masks from seed
  std::uint64_t seed = 0;
  double slope = 0.05;
  double dual_primal_rel = 1e-14;  // the softmax divides by a dual
  int fd_samples = 400;             // the wide heads: XL and XR have N x K*C elements
  std::vector<bool> real_inputs() const { return {false, false, false, true}; }
  int KC() const { return K * C; }
  int width() const { return concat ? KC() : C; }
  km::GatShape shape() const {
    km::GatShape sh;
    sh.K = K;
    sh.C = C;
    sh.concat = concat;
    sh.slope = slope;
    sh.att = 0;
    sh.edge = edge ? KC() : -1;
    sh.bias = 2 * KC();
    sh.dropout = dropout;
    sh.seed = seed;
    return sh;
  }
  long P() const { return 2L * KC() + width(); }
  Args<double> inputs(Rng& rng) const {
    return {randn(rng, std::size_t(g.N) * KC()), randn(rng, std::size_t(g.N) * KC()), randu(rng, std::size_t(g.E), 0.2, 1.5),
            randn(rng, std::size_t(P()), 0.8)};
  }
  Arr<double> ref(const Args<double>& x) const {
    const auto &XL = x[0], &XR = x[1], &A = x[2], &p = x[3];
    Arr<double> y(std::size_t(g.N) * width(), 0.0);
    for (int i = 0; i < g.N; ++i) {
      std::vector<int> js;
      std::vector<long> keys;  // the dropout keys: the edge, E + i for the self loop
      std::vector<double> as;
      double am = 0;
      for (int e = g.row_ptr[i]; e < g.row_ptr[i + 1]; ++e)
        if (g.src[e] != i) {
          js.push_back(g.src[e]);
          keys.push_back(e);
          as.push_back(A[e]);
          am += A[e];
        }
      if (!as.empty()) am /= double(as.size());
      js.push_back(i);
      keys.push_back(long(g.E) + i);
      as.push_back(am);
      for (int k = 0; k < K; ++k) {
        std::vector<double> sc;
        for (std::size_t m = 0; m < js.size(); ++m) {
          double s = 0;
          for (int c = 0; c < C; ++c) {
            const int q = k * C + c;
            double z = XR[i * KC() + q] + XL[js[m] * KC() + q] + (edge ? p[KC() + q] * as[m] : 0.0);
            s += p[q] * (z > 0 ? z : slope * z);
          }
          sc.push_back(s);
        }
        double den = 0;
        for (double s : sc) den += std::exp(s);
        for (int c = 0; c < C; ++c) {
          double acc = 0;
          for (std::size_t m = 0; m < js.size(); ++m)
            acc += std::exp(sc[m]) / den * shape().keep(keys[m], k) * XL[js[m] * KC() + k * C + c];
          if (concat)
            y[i * width() + k * C + c] = acc;
          else
            y[i * width() + c] += acc / K;
        }
      }
      for (int o = 0; o < width(); ++o) y[i * width() + o] += p[2 * KC() + o];
    }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.N, width()), al("alpha", g.E, K), als("alpha_self", g.N, K);
    Mat<double, M> keep("keep", g.E + g.N, K);
    km::gat_attention<Exec, S, double, Mode>(Exec(), mat(x[0], g.N, KC()), mat(x[1], g.N, KC()), mat(x[2], g.E, 1), params(x[3]),
                                             shape(), g.d_row_ptr, g.d_src, al, als, keep, Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    auto run = [&](const auto& XL, const auto& XR, const auto& A, const auto& Yb, const Vec<double, M>& gp) {
      using SS = typename std::decay_t<decltype(XL)>::non_const_value_type;
      const int N = g.N, E = g.E;
      Mat<SS, M> Y("Y", N, width()), al("alpha", E, K), als("alpha_self", N, K);
      Mat<double, M> keep("keep", E + N, K);
      const auto p = params(x[3]);
      km::gat_attention<Exec, SS, double, Mode>(Exec(), XL, XR, A, p, shape(), g.d_row_ptr, g.d_src, al, als, keep, Y);
      Mat<SS, M> ds("ds", E, K), xlb("xlb", N, KC()), xrb("xrb", N, KC());
      Mat<SS, M> ab("ab", E, 1), part("part", N, 2 * KC());
      km::gat_attention_backward<Exec, SS, double, Mode>(Exec(), XL, XR, A, p, shape(), g.d_row_ptr, g.d_src, g.d_dst, g.d_send_perm,
                                                         g.d_send_ptr, al, als, keep, Yb, ds, xlb, xrb, ab, part, gp);
      return std::make_tuple(xlb, xrb, ab);
    };
    Vec<double, M> gp("g", P());
    const auto [xlb, xrb, ab] = run(mat(x[0], g.N, KC()), mat(x[1], g.N, KC()), mat(x[2], g.E, 1), mat(yb, g.N, width()), gp);
    return {flat(xlb), flat(xrb), flat(ab), param_cotangent<S>(gp, [&] {
              Vec<double, M> g0("g0", P());
              run(mat(primal(x[0]), g.N, KC()), mat(primal(x[1]), g.N, KC()), mat(primal(x[2]), g.E, 1),
                  mat(primal(yb), g.N, width()), g0);
              return g0;
            })};
  }
};

TEST_CASE("ops model: BatchNorm (norm.hpp), neighbour aggregation and GIN's self term (neighbour.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(41);
  check_op(BatchNormOp{9, 4, true, "batchnorm (batch statistics)"}, 198);
  check_op(BatchNormOp{9, 4, false, "batchnorm (running statistics)"}, 199);
  check_op(BatchNormOp{9, 37, true, "batchnorm, 37 channels (HostRow: two blocks of 16 and a tail)"}, 212);
  check_op(NeighbourOp{g, false, "neighbour sum (+ neighbour_backward)"}, 200);
  check_op(NeighbourOp{g, true, "neighbour mean (+ neighbour_backward)"}, 201);
  check_op(GinSelfOp{}, 202);
  check_op(MfcOp{g}, 203);
  check_op(CgcnnOp{g}, 204);
  // HydraGNN's width (C = 1: HostRow's blocks hold 256 edges), and rows wider than a vector register
  check_op(CgcnnOp{g, 1, "cgcnn_message_sum (1 channel)"}, 218);
  check_op(CgcnnOp{g, 37, "cgcnn_message_sum (37 channels)", 24}, 219);
}

TEST_CASE("ops model: GATv2 attention (gat.hpp)", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(43);
  // the random graph has self edges (dropped, as PyG's remove_self_loops) and repeated pairs
  bool self_edge = false;
  for (int e = 0; e < g.E; ++e) self_edge = self_edge || g.src[e] == g.dst[e];
  REQUIRE(self_edge);
  check_op(GatOp{g, true, true, "gat attention (concat, edge attribute)"}, 205);
  check_op(GatOp{g, false, true, "gat attention (mean over heads, edge attribute)"}, 206);
  check_op(GatOp{g, true, false, "gat attention (concat, no edge attribute)"}, 207);
  // with attention dropout 0.3, concatenating and then averaging the heads
  auto dropout_pair = [&](int C, std::uint64_t mask_seed, const char* concat_name, const char* mean_name, std::uint64_t seed) {
    GatOp op{g, true, true, concat_name};
    op.C = C;
    op.dropout = 0.3;
    op.seed = mask_seed;
    check_op(op, seed);
    op.concat = false;
    op.name = mean_name;
    check_op(op, seed + 1);
  };
  dropout_pair(3, 11, "gat attention with dropout 0.3 (concat, edge attribute)", "gat attention with dropout 0.3 (mean over heads)",
               208);
  // heads wider than a channel block (64) and than the channel sums' 16 lanes, with a tail of each
  dropout_pair(70, 5, "gat attention, 2 heads of 70 channels (concat, edge attribute, dropout 0.3)",
               "gat attention, 2 heads of 70 channels (mean over heads, edge attribute, dropout 0.3)", 210);
}

TEST_CASE("ops model: GAT attention dropout masks: rate, scale, repeatable per seed", "[ops][model][dropout]") {
  km::GatShape sh;
  sh.K = 3;
  sh.dropout = 0.25;
  sh.seed = 5;
  const long n = 200000;
  long zeros = 0, same = 0, differ = 0;
  double sum = 0;
  km::GatShape other = sh;
  other.seed = 6;
  for (long key = 0; key < n; ++key)
    for (int k = 0; k < sh.K; ++k) {
      const double m = sh.keep(key, k);
      REQUIRE((m == 0.0 || m == 1.0 / 0.75));
      zeros += m == 0.0;
      sum += m;
      same += m == sh.keep(key, k);
      differ += m != other.keep(key, k);
    }
  const double N = double(n) * sh.K;
  INFO("dropped fraction " << zeros / N << ", mean factor " << sum / N);
  CHECK(std::fabs(zeros / N - 0.25) < 0.005);  // binomial sd 0.0006
  CHECK(std::fabs(sum / N - 1.0) < 0.007);     // inverted dropout: unbiased
  CHECK(same == long(N));                      // a pure function of (seed, key, head)
  CHECK(std::fabs(differ / N - 2 * 0.25 * 0.75) < 0.005);  // another seed: independent masks
  km::GatShape off = sh;
  off.dropout = 0;
  CHECK(off.keep(17, 1) == 1.0);
}

TEST_CASE("ops model: BatchNorm running update folds the unbiased batch variance with momentum 0.1", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const int n = 6, C = 3;
  Rng rng(5);
  const Arr<double> x = randn(rng, n * C);
  Vec<double, M> mu("mu", C), r("r", C), rec("rec", 2 * C), st("st", 2 * C);
  for (int c = 0; c < C; ++c) {
    st(c) = 0.2 * c;
    st(C + c) = 1.0 + c;
  }
  km::batchnorm_batch_statistics<Exec, double>(Exec(), mat(x, n, C), 1e-5, mu, r, rec, 0);
  km::batchnorm_update_running<Exec>(Exec(), rec, 0.1, st);
  Kokkos::fence();
  for (int c = 0; c < C; ++c) {
    double m = 0, v = 0;
    for (int i = 0; i < n; ++i) m += x[i * C + c];
    m /= n;
    for (int i = 0; i < n; ++i) v += (x[i * C + c] - m) * (x[i * C + c] - m);
    CHECK(st(c) == Approx(0.9 * 0.2 * c + 0.1 * m).margin(1e-14));
    CHECK(st(C + c) == Approx(0.9 * (1.0 + c) + 0.1 * v / (n - 1)).epsilon(1e-13));
    CHECK(r(c) == Approx(1 / std::sqrt(v / n + 1e-5)).epsilon(1e-13));
  }
}

TEST_CASE("ops model: accumulate flags and overwrite contracts", "[ops][model]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_batch_graph(31);
  const Species sp(g);
  Rng rng(210);
  const int H = 4, N = g.N, E = g.E;
  const Exec ex;
  // a layer: in 5 x out 6 column block of an 6 x 9 matrix with bias, W^T present
  const LinearOp lin{"", 7, 5, 6, true, 9, 2};
  const auto p = vec(randn(rng, lin.P()));
  const auto wts = lin.weights(p);
  const auto X = mat(randn(rng, 7 * 5), 7, 5), Yb = mat(randn(rng, 7 * 6), 7, 6);
  const auto XN = mat(randn(rng, std::size_t(N) * H), N, H), YN = mat(randn(rng, std::size_t(N) * H), N, H);
  const auto WE = mat(randn(rng, std::size_t(E) * H), E, H), YE = mat(randn(rng, std::size_t(E) * H), E, H);
  const auto CE = vec(randu(rng, E, 0.1, 1.0)), qE = vec(randu(rng, E, 0.5, 2.0)), sE = vec(randn(rng, E));
  const auto d = mat(rand_vectors(rng, E, 0.5, 2.5), E, 3), phi = mat(randn(rng, E), E, 1);
  const auto uN = mat(randn(rng, std::size_t(N) * 3), N, 3), u3 = mat(randn(rng, std::size_t(N) * 3), N, 3);
  Vec<double, M> len("len", E);
  km::edge_lengths<Exec, double>(ex, d, len);
  const RadialSpec spec{RadialBasis::Bessel, 5, 3.0, Envelope::Polynomial};
  const auto BbE = mat(randn(rng, std::size_t(E) * 5), E, 5);
  const EGNNEnvelopeFn env{spec, true};
  const auto inv = vec(inv_counts(g));
  const auto PG = mat(randn(rng, std::size_t(g.G) * H), g.G, H);
  const auto EbG = vec(randn(rng, g.G));
  const long ep_off = 3, ep_ld = 7, ep_P = ep_off + (H - 1) * ep_ld + 3;
  const auto pe = vec(randn(rng, ep_P));

  auto matN = [&] { return Mat<double, M>("o", N, H); };
  auto matE = [&] { return Mat<double, M>("o", E, H); };
  auto matE3 = [&] { return Mat<double, M>("o", E, 3); };
  auto matN3 = [&] { return Mat<double, M>("o", N, 3); };
  auto vecE = [&] { return Vec<double, M>("o", E); };
  const Mat<double, M> noM;
  const Vec<double, M> noV;
  const auto A = Writes::Accumulate, O = Writes::Overwrite;

  each_mode([&](auto mode) {
    using Mode = decltype(mode);
    INFO("mode " << Mode::name);
    // dense
    check_acc("linear_forward Y", rng, O, false, [&] { return Mat<double, M>("o", 7, 6); },
              [&](auto& o, bool) { km::linear_forward<Exec, double, double, Mode>(ex, X, wts, lin.shape(), o); });
    for (bool acc : {false, true})
      check_acc("linear_backward_input Xbar", rng, acc ? A : O, acc, [&] { return Mat<double, M>("o", 7, 5); },
                [&](auto& o, bool a) { km::linear_backward_input<Exec, double, double, Mode>(ex, Yb, wts, lin.shape(), o, a); });
    check_acc("linear_backward_params g", rng, A, true, [&] { return Vec<double, M>("o", lin.P()); },
              [&](auto& o, bool) { km::linear_backward_params<Exec, double, Mode>(ex, X, Yb, lin.shape(), o); });
    // pointwise
    check_acc("activation_forward Y", rng, O, false, matN,
              [&](auto& o, bool) { km::activation_forward<Exec, double, Mode>(ex, Activation::SiLU, XN, o); });
    for (bool acc : {false, true})
      check_acc("activation_backward Xbar", rng, acc ? A : O, acc, matN, [&](auto& o, bool a) {
        km::activation_backward<Exec, double, Mode>(ex, Activation::SiLU, XN, YN, o, a);
      });
    check_acc("add_into Y", rng, A, true, matN, [&](auto& o, bool) { km::add_into<Exec, double, Mode>(ex, XN, o); });
    // cfconv: xbar and Wbar overwritten, Cbar accumulated
    check_acc("cfconv_forward agg", rng, O, false, matN, [&](auto& o, bool) {
      km::cfconv_forward<Exec, double, Mode>(ex, XN, WE, CE, g.d_row_ptr, g.d_src, o);
    });
    check_acc("cfconv_backward xbar", rng, O, false, matN, [&](auto& o, bool) {
      km::cfconv_backward<Exec, double, Mode>(ex, XN, WE, CE, g.d_dst, g.d_src, g.d_send_perm, g.d_send_ptr, YN, o,
                                              matE(), vecE());
    });
    check_acc("cfconv_backward Wbar", rng, O, false, matE, [&](auto& o, bool) {
      km::cfconv_backward<Exec, double, Mode>(ex, XN, WE, CE, g.d_dst, g.d_src, g.d_send_perm, g.d_send_ptr, YN, matN(),
                                              o, vecE());
    });
    check_acc("cfconv_backward Cbar", rng, A, true, vecE, [&](auto& o, bool) {
      km::cfconv_backward<Exec, double, Mode>(ex, XN, WE, CE, g.d_dst, g.d_src, g.d_send_perm, g.d_send_ptr, YN, matN(),
                                              matE(), o);
    });
    // radial
    check_acc("edge_lengths_backward rbar", rng, A, true, matE3,
              [&](auto& o, bool) { km::edge_lengths_backward<Exec, double, Mode>(ex, d, len, sE, o); });
    check_acc("radial_backward dbar", rng, A, true, vecE, [&](auto& o, bool) {
      Mat<double, M> B("B", E, spec.size);
      km::radial_forward<Exec, double, Mode>(ex, spec, len, B, vecE());
      km::radial_backward<Exec, double, Mode>(ex, spec, len, B, BbE, sE, o);
    });
    // egnn
    check_acc("egnn_edge_pre pre", rng, O, false, matE, [&](auto& o, bool) {
      km::egnn_edge_pre<Exec, double, double, Mode>(ex, XN, YN, pe, ep_off, ep_ld, qE, g.d_dst, g.d_src, o);
    });
    check_acc("egnn_edge_pre_backward g", rng, A, true, [&] { return Vec<double, M>("o", ep_P); }, [&](auto& o, bool) {
      km::egnn_edge_pre_backward<Exec, double, double, Mode>(ex, YE, pe, ep_off, ep_ld, qE, o, vecE());
    });
    check_acc("egnn_edge_pre_backward qbar", rng, O, false, vecE, [&](auto& o, bool) {
      km::egnn_edge_pre_backward<Exec, double, double, Mode>(ex, YE, pe, ep_off, ep_ld, qE, noV, o);
    });
    check_acc("egnn_radial_backward dbar", rng, A, true, matE3, [&](auto& o, bool) {
      km::egnn_radial_backward<Exec, double, EGNNEnvelopeFn, Mode>(ex, d, len, true, env, qE, sE, o);
    });
    check_acc("egnn_coord_update u_out", rng, O, false, matN3, [&](auto& o, bool) {
      km::egnn_coord_update<Exec, double, Mode>(ex, uN, d, len, phi, g.d_row_ptr, o);
    });
    check_acc("egnn_coord_update_backward dbar", rng, A, true, matE3, [&](auto& o, bool) {
      km::egnn_coord_update_backward<Exec, double, Mode>(ex, u3, d, len, phi, g.d_dst, g.d_row_ptr,
                                                         Mat<double, M>("phib", E, 1), o);
    });
    check_acc("egnn_coord_update_backward phibar", rng, O, false, [&] { return Mat<double, M>("o", E, 1); },
              [&](auto& o, bool) {
                km::egnn_coord_update_backward<Exec, double, Mode>(ex, u3, d, len, phi, g.d_dst, g.d_row_ptr, o, matE3());
              });
    check_acc("egnn_edge_vectors_backward rbar", rng, A, true, matE3, [&](auto& o, bool) {
      km::egnn_edge_vectors_backward<Exec, double, Mode>(ex, d, g.d_row_ptr, g.d_send_perm, g.d_send_ptr, o, noM, false);
    });
    for (bool acc : {false, true})
      check_acc("egnn_edge_vectors_backward ubar", rng, acc ? A : O, acc, matN3, [&](auto& o, bool a) {
        km::egnn_edge_vectors_backward<Exec, double, Mode>(ex, d, g.d_row_ptr, g.d_send_perm, g.d_send_ptr, matE3(), o, a);
      });
    // readout
    check_acc("embedding_backward g", rng, A, true, [&] { return Vec<double, M>("o", 5 + 4 * H + 3); },
              [&](auto& o, bool) { km::embedding_backward<Exec, double, Mode>(ex, YN, sp.d_perm, sp.d_ptr, 5, o); });
    check_acc("energy_sum_backward ebar", rng, O, false, [&] { return Mat<double, M>("o", N, 1); },
              [&](auto& o, bool) { km::energy_sum_backward<Exec, double, Mode>(ex, EbG, g.d_atom_graph, 1.7, o); });
    for (bool mean : {false, true})
      check_acc(mean ? "pool_backward hbar (mean)" : "pool_backward hbar (sum)", rng, A, true, matN,
                [&](auto& o, bool) { km::pool_backward<Exec, double, Mode>(ex, PG, g.d_atom_graph, inv, mean, o); });
  });
}
