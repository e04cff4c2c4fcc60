// SPDX-License-Identifier: BSD-3-Clause
// The differentiable graph ops of kernels/ (segment, vector, triplet, angular) and the triplet builder.
//
// Every op is checked by one harness (check_op, tests/op_harness.hpp):
//   - forward against a brute-force host reference;
//   - hand-written backward against central finite differences of  L = sum(w * forward(x));
//   - every execution mode against HostRow, bitwise, for forward and backward, in double and in Dual;
//   - Dual forward: tangents equal the finite-difference JVP of the double forward;
//   - Dual backward (tangents on the inputs and on the cotangent): tangents equal the
//     finite-difference JVP of the double backward (the second-order path of force training).
// The random graph has a receiver with no incoming edges (an empty segment) and isolated atoms.
#include <catch2/catch.hpp>

#include <hydragnn/graph/radius_graph.hpp>
#include <hydragnn/kernels/angular.hpp>
#include <hydragnn/kernels/segment.hpp>
#include <hydragnn/kernels/triplet.hpp>
#include <hydragnn/kernels/vector.hpp>

#include <array>
#include <cmath>
#include <random>
#include <set>
#include <tuple>

#include "op_harness.hpp"

namespace {

// =============================================================================================
// The ops, as (inputs, ref, fwd, bwd)
// =============================================================================================
constexpr int F = 3;

/// Gather by dst (backward: CSR) or by src (backward: sender permutation).
struct GatherOp {
  const Graph& g;
  bool by_src;
  const char* name;
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.N * F)}; }
  const std::vector<int>& idx() const { return by_src ? g.src : g.dst; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(g.E * F);
    for (int e = 0; e < g.E; ++e)
      for (int c = 0; c < F; ++c) y[e * F + c] = x[0][idx()[e] * F + c];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.E, F);
    km::gather_rows<Exec, S, Mode>(Exec(), mat(x[0], g.N, F), by_src ? g.d_src : g.d_dst, Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    Mat<S, M> Xb("Xb", g.N, F);
    if (by_src)
      km::gather_rows_backward_perm<Exec, S, Mode>(Exec(), mat(yb, g.E, F), g.d_send_perm, g.d_send_ptr, Xb, false);
    else
      km::gather_rows_backward<Exec, S, Mode>(Exec(), mat(yb, g.E, F), g.d_row_ptr, Xb, false);
    return {flat(Xb)};
  }
};

enum class Red { Sum, Mean, Max, Min, Std };

/// Segment reductions over the receiver CSR or through the sender permutation.
struct SegmentOp {
  const Graph& g;
  Red red;
  bool perm;
  const char* name;
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.E * F)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(g.N * F, 0.0);
    for (int s = 0; s < g.N; ++s) {
      const auto it = perm ? items(g.send_ptr, &g.send_perm, s) : items(g.row_ptr, nullptr, s);
      const int n = int(it.size());
      for (int c = 0; c < F; ++c) {
        double sum = 0, sq = 0, best = 0;
        int arg = -1;
        for (int k : it) {
          const double v = x[0][k * F + c];
          sum += v;
          sq += v * v;
          if (arg < 0 || (red == Red::Max ? v > best : v < best)) {
            best = v;
            arg = k;
          }
        }
        double out = 0;
        switch (red) {
          case Red::Sum: out = sum; break;
          case Red::Mean: out = n ? sum / n : 0.0; break;
          case Red::Max:
          case Red::Min: out = best; break;
          case Red::Std:
            if (n) {
              const double mean = sum / n, var = sq / n - mean * mean;
              out = std::sqrt(std::max(var, 1e-5));
              if (out <= std::sqrt(1e-5)) out = 0;
            }
            break;
        }
        y[s * F + c] = out;
      }
    }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.N, F), Mean("Mean", g.N, F);
    Mat<int, M> arg("arg", g.N, F);
    run_fwd<S, Mode>(mat(x[0], g.E, F), Y, Mean, arg);
    return flat(Y);
  }
  template <class S, class Mode>
  void run_fwd(const Mat<S, M>& X, const Mat<S, M>& Y, const Mat<S, M>& Mean, const Mat<int, M>& arg) const {
    const Exec ex;
    const auto &pp = g.d_send_perm, &sp = g.d_send_ptr, &rp = g.d_row_ptr;
    switch (red) {
      case Red::Sum:
        perm ? km::segment_sum_perm<Exec, S, Mode>(ex, X, pp, sp, Y, false) : km::segment_sum<Exec, S, Mode>(ex, X, rp, Y, false);
        break;
      case Red::Mean:
        perm ? km::segment_mean_perm<Exec, S, Mode>(ex, X, pp, sp, Y, false) : km::segment_mean<Exec, S, Mode>(ex, X, rp, Y, false);
        break;
      case Red::Max:
        perm ? km::segment_max_perm<Exec, S, Mode>(ex, X, pp, sp, Y, arg) : km::segment_max<Exec, S, Mode>(ex, X, rp, Y, arg);
        break;
      case Red::Min:
        perm ? km::segment_min_perm<Exec, S, Mode>(ex, X, pp, sp, Y, arg) : km::segment_min<Exec, S, Mode>(ex, X, rp, Y, arg);
        break;
      case Red::Std:
        perm ? km::segment_std_perm<Exec, S, Mode>(ex, X, pp, sp, Y, Mean) : km::segment_std<Exec, S, Mode>(ex, X, rp, Y, Mean);
        break;
    }
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const Exec ex;
    const auto &pp = g.d_send_perm, &sp = g.d_send_ptr, &rp = g.d_row_ptr;
    auto X = mat(x[0], g.E, F);
    auto Yb = mat(yb, g.N, F);
    Mat<S, M> Y("Y", g.N, F), Mean("Mean", g.N, F), Xb("Xb", g.E, F);
    Mat<int, M> arg("arg", g.N, F);
    run_fwd<S, Mode>(X, Y, Mean, arg);
    switch (red) {
      case Red::Sum:
        perm ? km::segment_sum_perm_backward<Exec, S, Mode>(ex, Yb, pp, sp, Xb, false)
             : km::segment_sum_backward<Exec, S, Mode>(ex, Yb, rp, Xb, false);
        break;
      case Red::Mean:
        perm ? km::segment_mean_perm_backward<Exec, S, Mode>(ex, Yb, pp, sp, Xb, false)
             : km::segment_mean_backward<Exec, S, Mode>(ex, Yb, rp, Xb, false);
        break;
      case Red::Max:
      case Red::Min:
        perm ? km::segment_select_perm_backward<Exec, S, Mode>(ex, Yb, arg, pp, sp, Xb, false)
             : km::segment_select_backward<Exec, S, Mode>(ex, Yb, arg, rp, Xb, false);
        break;
      case Red::Std:
        perm ? km::segment_std_perm_backward<Exec, S, Mode>(ex, X, pp, sp, Mean, Y, Yb, Xb, false)
             : km::segment_std_backward<Exec, S, Mode>(ex, X, rp, Mean, Y, Yb, Xb, false);
        break;
    }
    return {flat(Xb)};
  }
};

struct ScaleRowsOp {
  const Graph& g;
  const char* name = "scale_rows";
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.E * F), randn(rng, g.E)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(g.E * F);
    for (int e = 0; e < g.E; ++e)
      for (int c = 0; c < F; ++c) y[e * F + c] = x[0][e * F + c] * x[1][e];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.E, F);
    km::scale_rows<Exec, S, Mode>(Exec(), mat(x[0], g.E, F), vec(x[1]), Y, false);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> Xb("Xb", g.E, F);
    Vec<S, M> sb("sb", g.E);
    km::scale_rows_backward<Exec, S, Mode>(Exec(), mat(x[0], g.E, F), vec(x[1]), mat(yb, g.E, F), Xb, sb, false, false);
    return {flat(Xb), flat(sb)};
  }
};

/// Y = A * B (hadamard + hadamard_backward).
struct HadamardOp {
  const Graph& g;
  const char* name = "hadamard";
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.E * F), randn(rng, g.E * F)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(g.E * F);
    for (std::size_t k = 0; k < y.size(); ++k) y[k] = x[0][k] * x[1][k];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.E, F);
    km::hadamard<Exec, S, Mode>(Exec(), mat(x[0], g.E, F), mat(x[1], g.E, F), Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> Ab("Ab", g.E, F), Bb("Bb", g.E, F);
    km::hadamard_backward<Exec, S, Mode>(Exec(), mat(x[0], g.E, F), mat(x[1], g.E, F), mat(yb, g.E, F), Ab, Bb, false, false);
    return {flat(Ab), flat(Bb)};
  }
};

// ---- vector ops -----------------------------------------------------------------------------
enum class VOp { Scale, Dot, Norm, Cross };
struct VectorOp {
  const Graph& g;
  VOp op;
  const char* name;
  static constexpr double eps = 1e-3;
  int N() const { return g.N; }
  Args<double> inputs(Rng& rng) const {
    if (op == VOp::Norm) return {randn(rng, N() * 3 * F)};
    if (op == VOp::Scale) return {randn(rng, N() * 3 * F), randn(rng, N() * F)};
    return {randn(rng, N() * 3 * F), randn(rng, N() * 3 * F)};
  }
  Arr<double> ref(const Args<double>& x) const {
    const bool vec_out = op == VOp::Scale || op == VOp::Cross;
    Arr<double> y(N() * (vec_out ? 3 : 1) * F, 0.0);
    auto at = [](int i, int a, int f) { return (i * 3 + a) * F + f; };
    for (int i = 0; i < N(); ++i)
      for (int f = 0; f < F; ++f) {
        if (op == VOp::Scale)
          for (int a = 0; a < 3; ++a) y[at(i, a, f)] = x[0][at(i, a, f)] * x[1][i * F + f];
        if (op == VOp::Dot)
          for (int a = 0; a < 3; ++a) y[i * F + f] += x[0][at(i, a, f)] * x[1][at(i, a, f)];
        if (op == VOp::Norm) {
          double s = 0;
          for (int a = 0; a < 3; ++a) s += x[0][at(i, a, f)] * x[0][at(i, a, f)];
          y[i * F + f] = std::sqrt(s + eps);
        }
        if (op == VOp::Cross) {
          const double u[3] = {x[0][at(i, 0, f)], x[0][at(i, 1, f)], x[0][at(i, 2, f)]};
          const double v[3] = {x[1][at(i, 0, f)], x[1][at(i, 1, f)], x[1][at(i, 2, f)]};
          y[at(i, 0, f)] = u[1] * v[2] - u[2] * v[1];
          y[at(i, 1, f)] = u[2] * v[0] - u[0] * v[2];
          y[at(i, 2, f)] = u[0] * v[1] - u[1] * v[0];
        }
      }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    const Exec ex;
    auto U = vmat(x[0], N(), F);
    switch (op) {
      case VOp::Scale: {
        VMat<S, M> Y("Y", N(), 3, F);
        km::vec_scale<Exec, S, Mode>(ex, U, mat(x[1], N(), F), Y, false);
        return flat(Y);
      }
      case VOp::Dot: {
        Mat<S, M> Y("Y", N(), F);
        km::vec_dot<Exec, S, Mode>(ex, U, vmat(x[1], N(), F), Y, false);
        return flat(Y);
      }
      case VOp::Norm: {
        Mat<S, M> Y("Y", N(), F);
        km::vec_norm<Exec, S, Mode>(ex, U, eps, Y);
        return flat(Y);
      }
      case VOp::Cross: {
        VMat<S, M> Y("Y", N(), 3, F);
        km::vec_cross<Exec, S, Mode>(ex, U, vmat(x[1], N(), F), Y, false);
        return flat(Y);
      }
    }
    return {};
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    const Exec ex;
    auto U = vmat(x[0], N(), F);
    VMat<S, M> Ub("Ub", N(), 3, F), Vb("Vb", N(), 3, F);
    switch (op) {
      case VOp::Scale: {
        Mat<S, M> sb("sb", N(), F);
        km::vec_scale_backward<Exec, S, Mode>(ex, U, mat(x[1], N(), F), vmat(yb, N(), F), Ub, sb, false, false);
        return {flat(Ub), flat(sb)};
      }
      case VOp::Dot:
        km::vec_dot_backward<Exec, S, Mode>(ex, U, vmat(x[1], N(), F), mat(yb, N(), F), Ub, Vb, false);
        return {flat(Ub), flat(Vb)};
      case VOp::Norm:
        km::vec_norm_backward<Exec, S, Mode>(ex, U, eps, mat(yb, N(), F), Ub, false);
        return {flat(Ub)};
      case VOp::Cross:
        km::vec_cross_backward<Exec, S, Mode>(ex, U, vmat(x[1], N(), F), vmat(yb, N(), F), Ub, Vb, false);
        return {flat(Ub), flat(Vb)};
    }
    return {};
  }
};

struct OuterOp {
  const Graph& g;
  const char* name = "vec_outer";
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.E * 3), randn(rng, g.E * F)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(g.E * 3 * F);
    for (int e = 0; e < g.E; ++e)
      for (int a = 0; a < 3; ++a)
        for (int f = 0; f < F; ++f) y[(e * 3 + a) * F + f] = x[0][e * 3 + a] * x[1][e * F + f];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    VMat<S, M> Y("Y", g.E, 3, F);
    km::vec_outer<Exec, S, Mode>(Exec(), mat(x[0], g.E, 3), mat(x[1], g.E, F), Y, false);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> rb("rb", g.E, 3), Xb("Xb", g.E, F);
    km::vec_outer_backward<Exec, S, Mode>(Exec(), mat(x[0], g.E, 3), mat(x[1], g.E, F), vmat(yb, g.E, F), rb, Xb, false,
                                          false);
    return {flat(rb), flat(Xb)};
  }
};

/// Vector gathers (by dst / by src) and vector segment sums (CSR / perm).
struct VecGraphOp {
  const Graph& g;
  bool gather, perm;
  const char* name;
  Args<double> inputs(Rng& rng) const { return {randn(rng, (gather ? g.N : g.E) * 3 * F)}; }
  Arr<double> ref(const Args<double>& x) const {
    const int W = 3 * F;
    if (gather) {
      Arr<double> y(g.E * W);
      for (int e = 0; e < g.E; ++e)
        for (int c = 0; c < W; ++c) y[e * W + c] = x[0][(perm ? g.src : g.dst)[e] * W + c];
      return y;
    }
    Arr<double> y(g.N * W, 0.0);
    for (int s = 0; s < g.N; ++s)
      for (int k : perm ? items(g.send_ptr, &g.send_perm, s) : items(g.row_ptr, nullptr, s))
        for (int c = 0; c < W; ++c) y[s * W + c] += x[0][k * W + c];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    const Exec ex;
    if (gather) {
      VMat<S, M> Y("Y", g.E, 3, F);
      km::vec_gather<Exec, S, Mode>(ex, vmat(x[0], g.N, F), perm ? g.d_src : g.d_dst, Y);
      return flat(Y);
    }
    VMat<S, M> Y("Y", g.N, 3, F);
    if (perm)
      km::vec_segment_sum_perm<Exec, S, Mode>(ex, vmat(x[0], g.E, F), g.d_send_perm, g.d_send_ptr, Y, false);
    else
      km::vec_segment_sum<Exec, S, Mode>(ex, vmat(x[0], g.E, F), g.d_row_ptr, Y, false);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    const Exec ex;
    if (gather) {
      VMat<S, M> Xb("Xb", g.N, 3, F);
      if (perm)
        km::vec_gather_backward_perm<Exec, S, Mode>(ex, vmat(yb, g.E, F), g.d_send_perm, g.d_send_ptr, Xb, false);
      else
        km::vec_gather_backward<Exec, S, Mode>(ex, vmat(yb, g.E, F), g.d_row_ptr, Xb, false);
      return {flat(Xb)};
    }
    VMat<S, M> Xb("Xb", g.E, 3, F);
    if (perm)
      km::vec_segment_sum_perm_backward<Exec, S, Mode>(ex, vmat(yb, g.N, F), g.d_send_perm, g.d_send_ptr, Xb, false);
    else
      km::vec_segment_sum_backward<Exec, S, Mode>(ex, vmat(yb, g.N, F), g.d_row_ptr, Xb, false);
    return {flat(Xb)};
  }
};

// ---- triplet ops ----------------------------------------------------------------------------
struct TripletGatherOp {
  const Graph& g;
  const char* name = "triplet_gather";
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.E * F)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(g.T() * F);
    for (int t = 0; t < g.T(); ++t)
      for (int c = 0; c < F; ++c) y[t * F + c] = x[0][g.trip.kj[t] * F + c];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.T(), F);
    km::triplet_gather<Exec, S, Mode>(Exec(), mat(x[0], g.E, F), g.d_trip.kj, Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    Mat<S, M> Xb("Xb", g.E, F);
    km::triplet_gather_backward<Exec, S, Mode>(Exec(), mat(yb, g.T(), F), g.d_trip.kj_perm, g.d_trip.kj_ptr, Xb, false);
    return {flat(Xb)};
  }
};

struct TripletSumOp {
  const Graph& g;
  const char* name = "triplet_sum";
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.T() * F)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(g.E * F, 0.0);
    for (int t = 0; t < g.T(); ++t)
      for (int c = 0; c < F; ++c) y[g.trip.ji[t] * F + c] += x[0][t * F + c];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.E, F);
    km::triplet_sum<Exec, S, Mode>(Exec(), mat(x[0], g.T(), F), g.d_trip.ptr, Y, false);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>&, const Arr<S>& yb) const {
    Mat<S, M> Xb("Xb", g.T(), F);
    km::triplet_sum_backward<Exec, S, Mode>(Exec(), mat(yb, g.E, F), g.d_trip.ptr, Xb, false);
    return {flat(Xb)};
  }
};

/// DimeNet's fused triplet message: agg(ji) = sum_t X(kj(t)) * Sm(t) (triplet_message_sum + backward).
struct TripletMessageOp {
  const Graph& g;
  const char* name = "triplet_message_sum";
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.E * F), randn(rng, g.T() * F)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(g.E * F, 0.0);
    for (int t = 0; t < g.T(); ++t)
      for (int c = 0; c < F; ++c) y[g.trip.ji[t] * F + c] += x[0][g.trip.kj[t] * F + c] * x[1][t * F + c];
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> Y("Y", g.E, F);
    km::triplet_message_sum<Exec, S, Mode>(Exec(), mat(x[0], g.E, F), mat(x[1], g.T(), F), g.d_trip.kj, g.d_trip.ptr, Y);
    return flat(Y);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> Xb("Xb", g.E, F), Sb("Sb", g.T(), F);
    const auto& t = g.d_trip;
    km::triplet_message_sum_backward<Exec, S, Mode>(Exec(), mat(x[0], g.E, F), mat(x[1], g.T(), F), t.kj, t.ptr, t.ji,
                                                    t.kj_perm, t.kj_ptr, mat(yb, g.E, F), Xb, Sb);
    return {flat(Xb), flat(Sb)};
  }
};

// ---- angular --------------------------------------------------------------------------------
struct TripletCosOp {
  const Graph& g;
  TripletAngle kind;
  const char* name;
  Args<double> inputs(Rng& rng) const { return {randn(rng, g.E * 3)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(g.T());
    for (int t = 0; t < g.T(); ++t) {
      double u[3], w[3];
      for (int a = 0; a < 3; ++a) {
        u[a] = x[0][g.trip.ji[t] * 3 + a];
        w[a] = x[0][g.trip.kj[t] * 3 + a] + (kind == TripletAngle::AtI ? u[a] : 0.0);
      }
      // PyG: angle = atan2(|u x w|, u.w)
      const double cx = u[1] * w[2] - u[2] * w[1], cy = u[2] * w[0] - u[0] * w[2], cz = u[0] * w[1] - u[1] * w[0];
      y[t] = std::cos(std::atan2(std::sqrt(cx * cx + cy * cy + cz * cz), u[0] * w[0] + u[1] * w[1] + u[2] * w[2]));
    }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Vec<S, M> c("c", g.T());
    km::triplet_cos<Exec, S, Mode>(Exec(), mat(x[0], g.E, 3), g.d_trip.ji, g.d_trip.kj, c, kind);
    return flat(c);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Mat<S, M> rb("rb", g.E, 3);
    const auto& t = g.d_trip;
    km::triplet_cos_backward<Exec, S, Mode>(Exec(), mat(x[0], g.E, 3), t.ji, t.kj, t.ptr, t.kj_perm, t.kj_ptr, vec(yb),
                                            rb, false, kind);
    return {flat(rb)};
  }
};

struct LegendreOp {
  int T = 11, L = 6;
  const char* name = "legendre";
  Args<double> inputs(Rng& rng) const { return {randu(rng, T, -0.95, 0.95)}; }
  Arr<double> ref(const Args<double>& x) const {
    Arr<double> y(T * L);
    for (int t = 0; t < T; ++t) {
      const double c = x[0][t];
      const double p[6] = {1, c, (3 * c * c - 1) / 2, (5 * c * c * c - 3 * c) / 2, (35 * std::pow(c, 4) - 30 * c * c + 3) / 8,
                           (63 * std::pow(c, 5) - 70 * c * c * c + 15 * c) / 8};
      for (int l = 0; l < L; ++l) y[t * L + l] = p[l];
    }
    return y;
  }
  template <class S, class Mode>
  Arr<S> fwd(const Args<S>& x) const {
    Mat<S, M> P("P", T, L), dP("dP", 0, 0);
    km::legendre<Exec, S, Mode>(Exec(), vec(x[0]), P, dP);
    return flat(P);
  }
  template <class S, class Mode>
  Args<S> bwd(const Args<S>& x, const Arr<S>& yb) const {
    Vec<S, M> xb("xb", T);
    km::legendre_backward<Exec, S, Mode>(Exec(), vec(x[0]), mat(yb, T, L), xb, false);
    return {flat(xb)};
  }
};

}  // namespace

// =============================================================================================
// Test cases
// =============================================================================================

TEST_CASE("ops: the test graph has an empty segment, isolated atoms and triplets", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_graph(11);
  CHECK(g.row_ptr[1] == g.row_ptr[0]);  // atom 0 receives nothing
  for (int i : {3, 7}) {
    CHECK(g.row_ptr[i + 1] == g.row_ptr[i]);
    CHECK(g.send_ptr[i + 1] == g.send_ptr[i]);
  }
  CHECK(g.E > 10);
  CHECK(g.T() > 10);
}

TEST_CASE("ops: gathers", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_graph(11);
  check_op(GatherOp{g, false, "gather_rows by dst"}, 1);
  check_op(GatherOp{g, true, "gather_rows by src"}, 2);
}

TEST_CASE("ops: segment reductions (CSR and permutation)", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_graph(11);
  check_op(SegmentOp{g, Red::Sum, false, "segment_sum"}, 3);
  check_op(SegmentOp{g, Red::Sum, true, "segment_sum_perm"}, 4);
  check_op(SegmentOp{g, Red::Mean, false, "segment_mean"}, 5);
  check_op(SegmentOp{g, Red::Mean, true, "segment_mean_perm"}, 6);
  check_op(SegmentOp{g, Red::Max, false, "segment_max"}, 7);
  check_op(SegmentOp{g, Red::Max, true, "segment_max_perm"}, 8);
  check_op(SegmentOp{g, Red::Min, false, "segment_min"}, 9);
  check_op(SegmentOp{g, Red::Min, true, "segment_min_perm"}, 10);
  check_op(SegmentOp{g, Red::Std, false, "segment_std"}, 11);
  check_op(SegmentOp{g, Red::Std, true, "segment_std_perm"}, 12);
}

TEST_CASE("ops: per-edge scaling", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_graph(11);
  check_op(ScaleRowsOp{g}, 13);
  check_op(HadamardOp{g}, 211);
}

TEST_CASE("ops: vector channels", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_graph(11);
  check_op(VectorOp{g, VOp::Scale, "vec_scale"}, 14);
  check_op(VectorOp{g, VOp::Dot, "vec_dot"}, 15);
  check_op(VectorOp{g, VOp::Norm, "vec_norm"}, 16);
  check_op(VectorOp{g, VOp::Cross, "vec_cross"}, 17);
  check_op(OuterOp{g}, 18);
  check_op(VecGraphOp{g, true, false, "vec_gather by dst"}, 19);
  check_op(VecGraphOp{g, true, true, "vec_gather by src"}, 20);
  check_op(VecGraphOp{g, false, false, "vec_segment_sum"}, 21);
  check_op(VecGraphOp{g, false, true, "vec_segment_sum_perm"}, 22);
}

TEST_CASE("ops: triplet gather / sum, triplet cosine, Legendre", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_graph(11);
  check_op(TripletGatherOp{g}, 23);
  check_op(TripletSumOp{g}, 24);
  check_op(TripletMessageOp{g}, 28);
  check_op(TripletCosOp{g, TripletAngle::Bonds, "triplet_cos (Bonds)"}, 25);
  check_op(TripletCosOp{g, TripletAngle::AtI, "triplet_cos (AtI)"}, 26);
  check_op(LegendreOp{}, 27);
}

/// v as scalars S; a dual's tangents from tv.
template <class S>
Arr<S> scalars_of(const Arr<double>& v, const Arr<double>& tv) {
  Arr<S> r(v.size());
  for (std::size_t k = 0; k < v.size(); ++k) {
    if constexpr (scalar_traits<S>::is_dual)
      r[k] = S(real_t<S>(v[k]), real_t<S>(tv[k]));
    else
      r[k] = S(v[k]);
  }
  return r;
}

/// The fused triplet message and its backward against the composed ops they replace in DimeNet
/// (triplet_gather -> hadamard -> triplet_sum and back), and the filter version against
/// linear_forward followed by the fused message: bitwise, in float and in Dual<float>.
template <class S, class Mode>
void check_triplet_message_composed(const Graph& g) {
  const Exec ex;
  Rng rng(31);
  const Arr<double> xd = randn(rng, g.E * F), sd = randn(rng, g.T() * F), ad = randn(rng, g.E * F);
  auto as = [](const Arr<double>& v, const Arr<double>& tv) { return scalars_of<S>(v, tv); };
  const Arr<S> x = as(xd, sd), sm = as(sd, ad), ab = as(ad, xd);  // tangents: other random arrays
  const auto X = mat(x, g.E, F), Sm = mat(sm, g.T(), F), Ab = mat(ab, g.E, F);
  const auto& t = g.d_trip;
  Mat<S, M> gk("gk", g.T(), F), tm("tm", g.T(), F), agg0("agg0", g.E, F), agg1("agg1", g.E, F);
  km::triplet_gather<Exec, S, Mode>(ex, X, t.kj, gk);
  km::hadamard<Exec, S, Mode>(ex, gk, Sm, tm);
  km::triplet_sum<Exec, S, Mode>(ex, tm, t.ptr, agg0, false);
  km::triplet_message_sum<Exec, S, Mode>(ex, X, Sm, t.kj, t.ptr, agg1);
  Mat<S, M> tmb("tmb", g.T(), F), gkb("gkb", g.T(), F), sb0("sb0", g.T(), F), xb0("xb0", g.E, F);
  km::triplet_sum_backward<Exec, S, Mode>(ex, Ab, t.ptr, tmb, false);
  km::hadamard_backward<Exec, S, Mode>(ex, gk, Sm, tmb, gkb, sb0, false, false);
  km::triplet_gather_backward<Exec, S, Mode>(ex, gkb, t.kj_perm, t.kj_ptr, xb0, false);
  Mat<S, M> sb1("sb1", g.T(), F), xb1("xb1", g.E, F);
  km::triplet_message_sum_backward<Exec, S, Mode>(ex, X, Sm, t.kj, t.ptr, t.ji, t.kj_perm, t.kj_ptr, Ab, xb1, sb1);
  auto same = [](const Arr<S>& a, const Arr<S>& b) {
    REQUIRE(a.size() == b.size());
    return std::memcmp(a.data(), b.data(), a.size() * sizeof(S)) == 0;
  };
  CHECK(same(flat(agg0), flat(agg1)));
  CHECK(same(flat(sb0), flat(sb1)));
  CHECK(same(flat(xb0), flat(xb1)));
  // the filter recomputed per triplet, s = lin(S1) (with and without a bias, with and without W^T),
  // against the stored one; Fo = 16, 48, 80: whole vectors of every host build, in one to five
  // registers (HostRow's register path takes up to four at a time)
  using T = real_t<S>;
  const int in = 5;
  const Arr<S> s1 = as(randn(rng, g.T() * in), randn(rng, g.T() * in));
  const auto S1 = mat(s1, g.T(), in);
  for (const int Fo : {F, 16, 48, 80}) {
    const Arr<S> xo = as(randn(rng, g.E * Fo), randn(rng, g.E * Fo)), abo = as(randn(rng, g.E * Fo), randn(rng, g.E * Fo));
    const auto Xo = mat(xo, g.E, Fo), Abo = mat(abo, g.E, Fo);
    for (const bool bias : {true, false}) {
      LinearShape sh;
      sh.in = in;
      sh.out = Fo;
      sh.w_off = 3;  // not at the buffer's start
      sh.b_off = bias ? 3 + long(in) * Fo : -1;
      sh.wt_off = 3;
      const long np = 3 + long(in) * Fo + Fo;
      Vec<T, M> p("p", np), pt("pt", np);
      const Arr<double> pd = randn(rng, np);
      for (long k = 0; k < np; ++k) p(k) = T(pd[k]);
      for (int o = 0; o < Fo; ++o)
        for (int c = 0; c < in; ++c) pt(sh.wt_off + long(c) * Fo + o) = p(sh.w_off + long(o) * in + c);
      for (const bool transposed : {true, false}) {  // HostRow's row paths need W^T; without it, per element
        INFO("F " << Fo << ", bias " << bias << ", W^T given " << transposed);
        const Weights<T, M> w{p, transposed ? CVec<T, M>(pt) : CVec<T, M>()};
        Mat<S, M> sm("sm", g.T(), Fo), agg2("agg2", g.E, Fo), agg3("agg3", g.E, Fo), xb2("xb2", g.E, Fo),
            xb3("xb3", g.E, Fo);
        km::linear_forward<Exec, S, T, Mode>(ex, S1, w, sh, sm);
        km::triplet_message_sum<Exec, S, Mode>(ex, Xo, sm, t.kj, t.ptr, agg2);
        km::triplet_filter_message_sum<Exec, S, T, Mode>(ex, Xo, S1, w, sh, t.kj, t.ptr, agg3);
        CHECK(same(flat(agg2), flat(agg3)));
        km::triplet_message_sum_backward<Exec, S, Mode>(ex, Xo, sm, t.kj, t.ptr, t.ji, t.kj_perm, t.kj_ptr, Abo, xb2,
                                                        Mat<S, M>());
        km::triplet_filter_message_backward_x<Exec, S, T, Mode>(ex, S1, w, sh, t.ji, t.kj_perm, t.kj_ptr, Abo, xb3);
        CHECK(same(flat(xb2), flat(xb3)));
      }
    }
  }
}

/// The filter-input backward (DimeNet without a parameter gradient): S1bar from the triplets, bitwise
/// triplet_message_sum_backward's Smbar followed by linear_backward_input, for filter inputs of a
/// half register, a whole one and wider (HostRow's two register widths and its per-element path)
/// and a strided W (a column block of a wider layer).
template <class S, class Mode>
void check_filter_input_backward(const Graph& g) {
  const Exec ex;
  Rng rng(47);
  using T = real_t<S>;
  auto as = [](const Arr<double>& v, const Arr<double>& tv) { return scalars_of<S>(v, tv); };
  const auto& t = g.d_trip;
  for (const int Fo : {F, 48})
    for (const int in : {2, 3, 5, 8, 12, 20})
      for (const int ld : {0, in + 3}) {
        INFO("F " << Fo << ", in " << in << ", ld " << ld);
        const Arr<S> xo = as(randn(rng, g.E * Fo), randn(rng, g.E * Fo)), abo = as(randn(rng, g.E * Fo), randn(rng, g.E * Fo));
        const auto Xo = mat(xo, g.E, Fo), Abo = mat(abo, g.E, Fo);
        LinearShape sh;
        sh.in = in;
        sh.out = Fo;
        sh.ld = ld;
        sh.w_off = 2;
        const long np = 2 + long(sh.stride()) * Fo;
        Vec<T, M> p("p", np);
        const Arr<double> pd = randn(rng, np);
        for (long k = 0; k < np; ++k) p(k) = T(pd[k]);
        const Weights<T, M> w{p, CVec<T, M>()};
        Mat<S, M> smb("smb", g.T(), Fo), s1b0("s1b0", g.T(), in), s1b1("s1b1", g.T(), in);
        km::triplet_message_sum_backward<Exec, S, Mode>(ex, Xo, Mat<S, M>(), t.kj, t.ptr, t.ji, t.kj_perm, t.kj_ptr, Abo,
                                                        Mat<S, M>(), smb);
        km::linear_backward_input<Exec, S, T, Mode>(ex, smb, w, sh, s1b0, false);
        km::triplet_message_backward_filter_input<Exec, S, T, Mode>(ex, Xo, t.kj, t.ji, Abo, w, sh, s1b1);
        const Arr<S> a = flat(s1b0), b = flat(s1b1);
        REQUIRE(a.size() == b.size());
        CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(S)) == 0);
        // into columns [2, 2 + in) of a wider matrix: the same bits there, the other columns untouched
        Mat<S, M> wide("wide", g.T(), in + 5);
        Kokkos::deep_copy(wide, S(7));
        const S seven(7);
        km::triplet_message_backward_filter_input<Exec, S, T, Mode>(ex, Xo, t.kj, t.ji, Abo, w, sh, wide, 2);
        bool block_same = true, rest_kept = true;
        for (long r = 0; r < g.T(); ++r)
          for (int c = 0; c < in + 5; ++c) {
            if (c >= 2 && c < 2 + in)
              block_same = block_same && std::memcmp(&wide(r, c), &s1b0(r, c - 2), sizeof(S)) == 0;
            else
              rest_kept = rest_kept && std::memcmp(&wide(r, c), &seven, sizeof(S)) == 0;
          }
        CHECK(block_same);
        CHECK(rest_kept);
      }
}

TEMPLATE_LIST_TEST_CASE("ops: DimeNet's filter-input backward from the triplets is bitwise the stored cotangent's product",
                        "[ops]", exec_mode::all) {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_graph(13);
  REQUIRE(g.T() % 8 != 0);  // a last, partial group of triplets
  check_filter_input_backward<float, TestType>(g);
  check_filter_input_backward<double, TestType>(g);
  check_filter_input_backward<Dual<float>, TestType>(g);
}

TEMPLATE_LIST_TEST_CASE("ops: the fused triplet message (stored or recomputed filter) is bitwise the composed ops", "[ops]",
                        exec_mode::all) {
  hydragnn_test::ensure_kokkos();
  const Graph g = make_graph(13);
  REQUIRE(g.T() > 0);
  check_triplet_message_composed<float, TestType>(g);
  check_triplet_message_composed<Dual<float>, TestType>(g);
}

TEST_CASE("ops: max/min ties, empty segments and the arg index", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Exec ex;
  // segments: {0,1,2} (tie at 0 and 2 for max, 1 for min), {} , {3,4} (all equal)
  const std::vector<int> ptr = {0, 3, 3, 5}, perm = {4, 2, 0, 1, 3};
  auto X = mat<double>({5, -1, 5, 2, 2}, 5, 1);
  Mat<double, M> Y("Y", 3, 1);
  Mat<int, M> arg("arg", 3, 1);
  each_mode([&](auto mode) {
    using Mode = decltype(mode);
    km::segment_max<Exec, double, Mode>(ex, X, ivec(ptr), Y, arg);
    CHECK(arg(0, 0) == 0);
    CHECK(Y(0, 0) == 5);
    CHECK(arg(1, 0) == -1);
    CHECK(Y(1, 0) == 0);
    CHECK(arg(2, 0) == 3);
    km::segment_min<Exec, double, Mode>(ex, X, ivec(ptr), Y, arg);
    CHECK(arg(0, 0) == 1);
    CHECK(Y(0, 0) == -1);
    CHECK(arg(1, 0) == -1);
    // through the permutation: segment 0 = rows 4, 2, 0 -> first max is row 2 (value 5)
    km::segment_max_perm<Exec, double, Mode>(ex, X, ivec(perm), ivec(ptr), Y, arg);
    CHECK(arg(0, 0) == 2);
    CHECK(arg(2, 0) == 3);  // rows 1 (-1), 3 (2)
    // backward: the seg-based form agrees with the segment walk
    auto Yb = mat<double>({1.5, 2.5, -3.0}, 3, 1);
    Mat<double, M> A("A", 5, 1), B("B", 5, 1);
    km::segment_max<Exec, double, Mode>(ex, X, ivec(ptr), Y, arg);
    km::segment_select_backward<Exec, double, Mode>(ex, Yb, arg, ivec(ptr), A, false);
    km::segment_max_backward<Exec, double, Mode>(ex, Yb, arg, ivec({0, 0, 0, 2, 2}), B, false);
    CHECK(flat(A) == Arr<double>({1.5, 0, 0, -3.0, 0}));
    CHECK(flat(B) == flat(A));
  });
}

TEST_CASE("ops: segment_std follows PyG's clamp semantics", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Exec ex;
  // {1,2,3,4}: var 1.25;  {7,7,7}: var 0 -> 0;  {}: 0;  {0, 2e-3}: var 1e-6 < 1e-5 -> 0;  {0, 1e-2}: var 2.5e-5 -> 5e-3
  const std::vector<int> ptr = {0, 4, 7, 7, 9, 11};
  auto X = mat<double>({1, 2, 3, 4, 7, 7, 7, 0, 2e-3, 0, 1e-2}, 11, 1);
  Mat<double, M> Y("Y", 5, 1), Mean("Mean", 5, 1), Xb("Xb", 11, 1);
  km::segment_std<Exec, double>(ex, X, ivec(ptr), Y, Mean);
  CHECK(Y(0, 0) == Approx(std::sqrt(1.25)).epsilon(1e-14));
  CHECK(Mean(0, 0) == Approx(2.5).epsilon(1e-14));
  CHECK(Y(1, 0) == 0.0);
  CHECK(Mean(1, 0) == 7.0);
  CHECK(Y(2, 0) == 0.0);
  CHECK(Mean(2, 0) == 0.0);
  CHECK(Y(3, 0) == 0.0);
  CHECK(Y(4, 0) == Approx(5e-3).epsilon(1e-10));
  // no gradient where the output is masked to 0
  km::segment_std_backward<Exec, double>(ex, X, ivec(ptr), Mean, Y, mat<double>({1, 1, 1, 1, 1}, 5, 1), Xb, false);
  for (int k = 4; k < 9; ++k) CHECK(Xb(k, 0) == 0.0);
  CHECK(Xb(9, 0) == Approx(-0.5).epsilon(1e-10));  // (x - mean) / (n std) = -5e-3 / (2 * 5e-3)
}

TEMPLATE_LIST_TEST_CASE("ops: more channels than HostRow's accumulator row", "[ops]", exec_mode::all) {
  hydragnn_test::ensure_kokkos();
  using Mode = TestType;
  const Exec ex;
  const Graph g = make_graph(5);
  const int W = km::detail::host_row_max + 37;
  Rng rng(99);
  const Arr<double> x = randn(rng, g.E * W);
  Mat<double, M> Y("Y", g.N, W), Ys("Ys", g.N, W), Mean("Mean", g.N, W);
  km::segment_sum_perm<Exec, double, Mode>(ex, mat(x, g.E, W), g.d_send_perm, g.d_send_ptr, Y, false);
  km::segment_std<Exec, double, Mode>(ex, mat(x, g.E, W), g.d_row_ptr, Ys, Mean);
  Mismatch mm;
  for (int s = 0; s < g.N; ++s)
    for (int c = 0; c < W; ++c) {
      double sum = 0, msum = 0;
      for (int k : items(g.send_ptr, &g.send_perm, s)) sum += x[k * W + c];
      const auto it = items(g.row_ptr, nullptr, s);
      for (int k : it) msum += x[k * W + c];
      mm.check(same_bits(Y(s, c), sum), where("wide segment_sum_perm", 0, s * W + c, Y(s, c), sum));
      const double mean = it.empty() ? 0.0 : msum / double(it.size());
      mm.check(same_bits(Mean(s, c), mean), where("wide segment_std mean", 0, s * W + c, Mean(s, c), mean));
    }
  INFO(mm.first);
  CHECK(mm.count == 0);
}

TEST_CASE("ops: accumulate flags add to the output", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Exec ex;
  const Graph g = make_graph(11);
  Rng rng(7);
  // run(out, accumulate) for an op writing `out`; accumulate must give prefill + plain result.
  auto check_acc = [&](const char* name, auto make_out, auto run) {
    INFO(name);
    auto plain = make_out();
    run(plain, false);
    auto acc = make_out();
    const Arr<double> pre = randn(rng, acc.span());
    std::copy(pre.begin(), pre.end(), acc.data());
    run(acc, true);
    for (std::size_t k = 0; k < pre.size(); ++k) CHECK(acc.data()[k] == Approx(pre[k] + plain.data()[k]).epsilon(1e-13).margin(1e-13));
  };
  const auto X = mat(randn(rng, g.N * F), g.N, F);
  const auto Me = mat(randn(rng, g.E * F), g.E, F);
  const auto Yn = mat(randn(rng, g.N * F), g.N, F);
  const auto s = vec(randn(rng, g.E));
  const auto r = mat(randn(rng, g.E * 3), g.E, 3);
  const auto U = vmat(randn(rng, g.N * 3 * F), g.N, F);
  const auto V = vmat(randn(rng, g.N * 3 * F), g.N, F);
  const auto Ye = vmat(randn(rng, g.E * 3 * F), g.E, F);
  const auto cbar = vec(randn(rng, g.T()));
  auto matE = [&] { return Mat<double, M>("o", g.E, F); };
  auto matN = [&] { return Mat<double, M>("o", g.N, F); };
  check_acc("gather_rows", matE, [&](auto& o, bool a) { km::gather_rows<Exec, double>(ex, X, g.d_src, o, a); });
  check_acc("segment_sum", matN, [&](auto& o, bool a) { km::segment_sum<Exec, double>(ex, Me, g.d_row_ptr, o, a); });
  check_acc("segment_mean_perm", matN,
            [&](auto& o, bool a) { km::segment_mean_perm<Exec, double>(ex, Me, g.d_send_perm, g.d_send_ptr, o, a); });
  check_acc("segment_mean_backward", matE,
            [&](auto& o, bool a) { km::segment_mean_backward<Exec, double>(ex, Yn, g.d_row_ptr, o, a); });
  check_acc("scale_rows", matE, [&](auto& o, bool a) { km::scale_rows<Exec, double>(ex, Me, s, o, a); });
  check_acc("scale_rows_backward x", matE, [&](auto& o, bool a) {
    km::scale_rows_backward<Exec, double>(ex, Me, s, Me, o, Vec<double, M>("none", 0), a, false);
  });
  check_acc("scale_rows_backward s", [&] { return Vec<double, M>("o", g.E); }, [&](auto& o, bool a) {
    km::scale_rows_backward<Exec, double>(ex, Me, s, Me, Mat<double, M>("none", 0, 0), o, false, a);
  });
  check_acc("hadamard_backward a", matE, [&](auto& o, bool a) {
    km::hadamard_backward<Exec, double>(ex, Me, Me, Me, o, Mat<double, M>("none", 0, 0), a, false);
  });
  check_acc("hadamard_backward b", matE, [&](auto& o, bool a) {
    km::hadamard_backward<Exec, double>(ex, Me, Me, Me, Mat<double, M>("none", 0, 0), o, false, a);
  });
  check_acc("vec_dot", matN, [&](auto& o, bool a) { km::vec_dot<Exec, double>(ex, U, V, o, a); });
  check_acc("vec_outer_backward r", [&] { return Mat<double, M>("o", g.E, 3); }, [&](auto& o, bool a) {
    km::vec_outer_backward<Exec, double>(ex, r, Me, Ye, o, Mat<double, M>("none", 0, 0), a, false);
  });
  check_acc("triplet_cos_backward", [&] { return Mat<double, M>("o", g.E, 3); }, [&](auto& o, bool a) {
    const auto& t = g.d_trip;
    km::triplet_cos_backward<Exec, double>(ex, r, t.ji, t.kj, t.ptr, t.kj_perm, t.kj_ptr, cbar, o, a);
  });
}

TEST_CASE("ops: Legendre derivatives and the triplet angle convention", "[ops]") {
  hydragnn_test::ensure_kokkos();
  const Exec ex;
  const Arr<double> xs = {-0.9, -0.3, 0.1, 0.77};
  Mat<double, M> P("P", 4, 7), dP("dP", 4, 7), Pp("Pp", 4, 7), Pm("Pm", 4, 7), none("none", 0, 0);
  const double h = 1e-6;
  km::legendre<Exec, double>(ex, vec(xs), P, dP);
  km::legendre<Exec, double>(ex, vec(axpy(xs, h, Arr<double>(4, 1.0))), Pp, none);
  km::legendre<Exec, double>(ex, vec(axpy(xs, -h, Arr<double>(4, 1.0))), Pm, none);
  for (int t = 0; t < 4; ++t)
    for (int l = 0; l < 7; ++l) CHECK(dP(t, l) == Approx((Pp(t, l) - Pm(t, l)) / (2 * h)).epsilon(1e-7).margin(1e-8));

  // i at 0, j at (1,0,0), k at (2,1,0): r_ji = x_i - x_j, r_kj = x_j - x_k (one triplet)
  auto r = mat<double>({-1, 0, 0, -1, -1, 0}, 2, 3);  // edge 0 = ji, edge 1 = kj
  Vec<double, M> c("c", 1);
  const auto ji = ivec({0}), kj = ivec({1});
  km::triplet_cos<Exec, double>(ex, r, ji, kj, c, TripletAngle::Bonds);
  CHECK(c(0) == Approx(std::cos(std::acos(-1.0) / 4)).epsilon(1e-14));  // pi minus the 135 deg bond angle at j
  km::triplet_cos<Exec, double>(ex, r, ji, kj, c, TripletAngle::AtI);
  CHECK(c(0) == Approx(2 / std::sqrt(5.0)).epsilon(1e-14));  // angle at i between j and k
}

// =============================================================================================
// Triplet builder vs brute force
// =============================================================================================
namespace {
void check_triplets_brute_force(const Structure& s, double cutoff, bool expect_images) {
  const RadiusGraph g = radius_graph(s, cutoff, -1);
  const int E = int(g.num_edges());
  const TripletCsr t = build_triplets(g);
  // brute force over all edge pairs
  std::vector<std::pair<int, int>> want;
  int kept_k_is_i = 0, self_image_edges = 0;
  for (int a = 0; a < E; ++a) {
    if (g.senders[a] == g.receivers[a]) ++self_image_edges;
    for (int b = 0; b < E; ++b) {
      if (g.receivers[b] != g.senders[a]) continue;
      const bool reverse = g.senders[b] == g.receivers[a] && g.shifts[b][0] == -g.shifts[a][0] &&
                           g.shifts[b][1] == -g.shifts[a][1] && g.shifts[b][2] == -g.shifts[a][2];
      if (reverse) continue;
      want.emplace_back(a, b);
      if (g.senders[b] == g.receivers[a]) ++kept_k_is_i;
    }
  }
  REQUIRE(t.size() == want.size());
  for (std::size_t q = 0; q < want.size(); ++q) {
    CHECK(t.ji[q] == want[q].first);
    CHECK(t.kj[q] == want[q].second);
  }
  REQUIRE(int(t.ptr.size()) == E + 1);
  for (int a = 0; a < E; ++a)
    for (int q = t.ptr[a]; q < t.ptr[a + 1]; ++q) CHECK(t.ji[q] == a);
  // kj permutation: sorted by (kj, t), ptr over edges
  REQUIRE(t.kj_perm.size() == t.size());
  for (int e = 0; e < E; ++e)
    for (int q = t.kj_ptr[e]; q < t.kj_ptr[e + 1]; ++q) {
      CHECK(t.kj[t.kj_perm[q]] == e);
      if (q > t.kj_ptr[e]) CHECK(t.kj_perm[q] > t.kj_perm[q - 1]);
    }
  CHECK(t.kj_ptr[E] == int(t.size()));
  // geometry: edge vectors r_e = x_dst - x_src + n.cell; the excluded pair is exactly r_kj = -r_ji
  auto rvec = [&](int e) {
    Vec3 v{};
    for (int a = 0; a < 3; ++a) {
      v[a] = s.positions[g.receivers[e]][a] - s.positions[g.senders[e]][a];
      for (int k = 0; k < 3; ++k) v[a] += g.shifts[e][k] * (s.has_cell ? s.cell[k][a] : 0.0);
    }
    return v;
  };
  for (std::size_t q = 0; q < t.size(); ++q) {
    const Vec3 u = rvec(t.ji[q]), w = rvec(t.kj[q]);
    CHECK(std::fabs(u[0] + w[0]) + std::fabs(u[1] + w[1]) + std::fabs(u[2] + w[2]) > 1e-9);
  }
  // the reverse-map overload gives the same triplets
  std::vector<int> rev(E, -1);
  for (int a = 0; a < E; ++a)
    for (int b = 0; b < E; ++b)
      if (g.senders[b] == g.receivers[a] && g.receivers[b] == g.senders[a] && g.shifts[b][0] == -g.shifts[a][0] &&
          g.shifts[b][1] == -g.shifts[a][1] && g.shifts[b][2] == -g.shifts[a][2])
        rev[a] = b;
  for (int a = 0; a < E; ++a) CHECK(rev[a] >= 0);  // a radius graph is symmetric
  const TripletCsr t2 = build_triplets(g.receivers, g.senders, rev, g.num_nodes);
  CHECK(t2.ji == t.ji);
  CHECK(t2.kj == t.kj);
  CHECK(t2.kj_perm == t.kj_perm);
  if (expect_images) {
    CHECK(self_image_edges > 0);  // atoms see their own images
    CHECK(kept_k_is_i > 0);       // k = i through another image is kept
  } else {
    CHECK(kept_k_is_i == 0);  // without images this is PyG's "k != i"
    CHECK(self_image_edges == 0);
  }
}
}  // namespace

TEST_CASE("triplets: builder vs brute force on a molecule", "[ops][triplets]") {
  const Structure s = hydragnn_test::random_structure(21, 10, {1, 6, 8}, false, 4.0, 1.0);
  check_triplets_brute_force(s, 2.6, false);
}

TEST_CASE("triplets: builder vs brute force on a small periodic cell (atoms see their own images)",
          "[ops][triplets]") {
  const Structure s = hydragnn_test::random_structure(22, 3, {14, 8}, true, 2.7, 1.2);
  check_triplets_brute_force(s, 3.3, true);
}

TEST_CASE("triplets: equal to a geometric brute force on random triclinic cells with mixed pbc", "[ops][triplets]") {
  // Independent of the radius graph: every point triple i <- j' <- k'' in space (j', k'' periodic
  // images in the periodic directions only) with |x_j' - x_i| < rc, |x_k'' - x_j'| < rc and k'' not the
  // point i itself, keyed by (i, j, k, r_ji, r_kj) rounded; ours mapped through the edges' vectors.
  using Key = std::tuple<int, int, int, long, long, long, long, long, long>;
  auto lr = [](double v) { return std::lround(v * 1e6); };
  const std::array<std::array<bool, 3>, 4> pbcs{{{true, true, true}, {true, true, false}, {true, false, true},
                                                 {false, true, false}}};
  for (int c = 0; c < 4; ++c) {
    std::mt19937_64 rng(300 + c);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    Structure s;
    s.has_cell = true;
    s.pbc = pbcs[c];
    const double L = 3.4;  // below 2 rc: atoms see their own images, k = i through images occurs
    s.cell = {{{L, 0.0, 0.0}, {0.7 * u(rng) - 0.35, L * (0.9 + 0.2 * u(rng)), 0.0},
               {0.6 * u(rng) - 0.3, 0.6 * u(rng) - 0.3, L * (0.95 + 0.1 * u(rng))}}};
    const int n = 4;
    while (int(s.positions.size()) < n) {
      const double f[3] = {u(rng), u(rng), u(rng)};
      Vec3 x{};
      for (int a = 0; a < 3; ++a) x[a] = f[0] * s.cell[0][a] + f[1] * s.cell[1][a] + f[2] * s.cell[2][a];
      bool ok = true;
      for (const Vec3& y : s.positions)
        if ((x[0] - y[0]) * (x[0] - y[0]) + (x[1] - y[1]) * (x[1] - y[1]) + (x[2] - y[2]) * (x[2] - y[2]) < 1.0) ok = false;
      if (ok) s.positions.push_back(x);
    }
    s.numbers.assign(n, 14);
    const double rc = 2.9;
    // points: atom a at image m (m in -3..3 along periodic directions only)
    struct P {
      int atom;
      Vec3 x;
    };
    std::vector<P> pts;
    const int M = 3;
    for (int a = 0; a < n; ++a)
      for (int m0 = s.pbc[0] ? -M : 0; m0 <= (s.pbc[0] ? M : 0); ++m0)
        for (int m1 = s.pbc[1] ? -M : 0; m1 <= (s.pbc[1] ? M : 0); ++m1)
          for (int m2 = s.pbc[2] ? -M : 0; m2 <= (s.pbc[2] ? M : 0); ++m2) {
            Vec3 x = s.positions[a];
            for (int k = 0; k < 3; ++k) x[k] += m0 * s.cell[0][k] + m1 * s.cell[1][k] + m2 * s.cell[2][k];
            pts.push_back({a, x});
          }
    auto dist = [](const Vec3& p, const Vec3& q) {
      return std::sqrt((p[0] - q[0]) * (p[0] - q[0]) + (p[1] - q[1]) * (p[1] - q[1]) + (p[2] - q[2]) * (p[2] - q[2]));
    };
    std::multiset<Key> want;
    for (int i = 0; i < n; ++i) {
      const Vec3& xi = s.positions[i];
      for (const P& pj : pts) {
        const double dji = dist(pj.x, xi);
        if (dji < 1e-9 || dji >= rc) continue;
        for (const P& pk : pts) {
          const double dkj = dist(pk.x, pj.x);
          if (dkj < 1e-9 || dkj >= rc || dist(pk.x, xi) < 1e-9) continue;
          want.insert({i, pj.atom, pk.atom, lr(xi[0] - pj.x[0]), lr(xi[1] - pj.x[1]), lr(xi[2] - pj.x[2]),
                       lr(pj.x[0] - pk.x[0]), lr(pj.x[1] - pk.x[1]), lr(pj.x[2] - pk.x[2])});
        }
      }
    }
    const RadiusGraph g = radius_graph(s, rc, -1);
    const TripletCsr t = build_triplets(g);
    auto rvec = [&](int e) {
      Vec3 v{};
      for (int a = 0; a < 3; ++a) {
        v[a] = s.positions[g.receivers[e]][a] - s.positions[g.senders[e]][a];
        for (int k = 0; k < 3; ++k) v[a] += g.shifts[e][k] * s.cell[k][a];
      }
      return v;
    };
    std::multiset<Key> got;
    int k_is_i = 0;
    for (std::size_t q = 0; q < t.size(); ++q) {
      const int ji = t.ji[q], kj = t.kj[q];
      const Vec3 u1 = rvec(ji), w1 = rvec(kj);
      got.insert({g.receivers[ji], g.senders[ji], g.senders[kj], lr(u1[0]), lr(u1[1]), lr(u1[2]), lr(w1[0]), lr(w1[1]),
                  lr(w1[2])});
      if (g.senders[kj] == g.receivers[ji]) ++k_is_i;
    }
    INFO("pbc " << s.pbc[0] << s.pbc[1] << s.pbc[2] << ": " << want.size() << " triplets");
    CHECK(want.size() > 30);
    CHECK(k_is_i > 0);
    CHECK(got == want);
    // deterministic: built again, the same list
    const TripletCsr t2 = build_triplets(radius_graph(s, rc, -1));
    CHECK(t2.ji == t.ji);
    CHECK(t2.kj == t.kj);
  }
}

TEST_CASE("triplets: a batch of graphs is the per-graph triplets with offsets", "[ops][triplets]") {
  const Structure a = hydragnn_test::random_structure(23, 6, {1, 8}, false, 3.0, 1.0);
  const Structure b = hydragnn_test::random_structure(24, 3, {14}, true, 2.7, 1.2);
  const RadiusGraph ga = radius_graph(a, 2.4, -1), gb = radius_graph(b, 3.3, -1);
  const TripletCsr ta = build_triplets(ga), tb = build_triplets(gb), t = build_triplets({&ga, &gb});
  const int Ea = int(ga.num_edges());
  REQUIRE(t.size() == ta.size() + tb.size());
  for (std::size_t q = 0; q < ta.size(); ++q) {
    CHECK(t.ji[q] == ta.ji[q]);
    CHECK(t.kj[q] == ta.kj[q]);
  }
  for (std::size_t q = 0; q < tb.size(); ++q) {
    CHECK(t.ji[ta.size() + q] == Ea + tb.ji[q]);
    CHECK(t.kj[ta.size() + q] == Ea + tb.kj[q]);
  }
}
