// SPDX-License-Identifier: BSD-3-Clause
// Multi-task loss and its exact parameter gradient.
//
// L = w_E mean_g l(E_g - E*_g) + w_e mean_g l((E_g - E*_g)/N_g) + w_F mean_{i,a} l(F_ia - F*_ia)
//   + w_S mean_{g,ab} l(sigma - sigma*) + sum_k w_k mean l(y_k - y*_k),       l = x^2 (mse) or |x| (mae)
//
// Pass 1 (real): forward + backward with dE_g = 1 gives F and sigma; the host evaluates L and the
// cotangents a_g = dL/dE_g, v_i = dL/dF_i, U_g = dL/dsigma_g, ybar_k = dL/dy_k.
// Pass 2 (dual): forward + backward on Dual<T> with edge tangent  rdot_e = v_src - v_dst + U r_e / V,
// output cotangent 1 + eps a_g on energies and 0 + eps ybar on direct heads; the eps part of the
// parameter cotangent is dL/dtheta (forward-over-reverse, see docs/autodiff.md).
#pragma once

#include <hydragnn/potential.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace hydragnn {

struct LossSpec {
  double energy = 1.0, energy_peratom = 0.0, force = 1.0, stress = 0.0;
  std::vector<double> heads;  ///< weight per direct head
  bool mae = false;
};

/// Per-batch sums for metrics (absolute and squared errors, counts).
struct ErrorSums {
  double e_abs = 0, e_sq = 0, epa_abs = 0, epa_sq = 0, f_abs = 0, f_sq = 0, s_abs = 0, s_sq = 0;
  long n_e = 0, n_f = 0, n_s = 0;
  std::vector<double> h_abs, h_sq;
  std::vector<long> n_h;
  void add(const ErrorSums& o) {
    e_abs += o.e_abs; e_sq += o.e_sq; epa_abs += o.epa_abs; epa_sq += o.epa_sq;
    f_abs += o.f_abs; f_sq += o.f_sq; s_abs += o.s_abs; s_sq += o.s_sq;
    n_e += o.n_e; n_f += o.n_f; n_s += o.n_s;
    h_abs.resize(o.h_abs.size()); h_sq.resize(o.h_sq.size()); n_h.resize(o.n_h.size());
    for (std::size_t k = 0; k < o.h_abs.size(); ++k) { h_abs[k] += o.h_abs[k]; h_sq[k] += o.h_sq[k]; n_h[k] += o.n_h[k]; }
  }
};

struct LossResult {
  double loss = 0;
  ErrorSums errors;
  Prediction pred;
};

namespace detail {
inline double lval(double x, bool mae) { return mae ? std::fabs(x) : x * x; }
inline double lgrad(double x, bool mae) { return mae ? (x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0) : 2 * x; }
}  // namespace detail

/// Loss on a batch; if grad has the model's size, also dL/dtheta (overwritten).
template <class ModelT>
LossResult loss_and_grad(const typename ModelT::exec_space& exec, const ModelT& model,
                         const Batch<typename ModelT::memory_space>& b, const LossSpec& w,
                         const Vec<typename ModelT::real_type, typename ModelT::memory_space>& grad) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  using Exec = typename ModelT::exec_space;
  using D = Dual<T>;
  const bool want_grad = grad.extent(0) == model.num_params();
  const bool conservative = model.spec().energy;
  const bool need_forces = conservative && (w.force > 0 || w.stress > 0);
  const int G = b.num_graphs, N = b.num_atoms;

  LossResult res;
  // ---- pass 1 (real) -------------------------------------------------------------------------
  auto r = model.template edge_vectors<T>(exec, b);
  auto f1 = model.template forward<T>(exec, b, r);
  Prediction& pred = res.pred;
  pred.energy = to_host_vector(f1.energy);
  for (auto& h : f1.head_out) pred.heads.push_back(to_host_vector(h));
  Mat<T, M> g1;
  if (conservative) {
    Vec<T, M> ones("hydragnn::loss_and_grad::ones", G);
    Kokkos::deep_copy(ones, T(1));
    Vec<T, M> scratch("hydragnn::loss_and_grad::scratch", model.num_params());
    g1 = model.template backward<T>(exec, b, f1, ones, {}, scratch);
    Mat<double, M> F("hydragnn::loss_and_grad::forces", N, 3);
    Mat<double, M> sigma("hydragnn::loss_and_grad::stress", G, 9);
    kernels::assemble_forces<Exec, T>(exec, b, g1, F);
    kernels::assemble_stress<Exec, T>(exec, b, g1, sigma);
    pred.forces = to_host_vector(F);
    pred.stress = to_host_vector(sigma);
  }

  // ---- loss and cotangents (host) ------------------------------------------------------------
  ErrorSums& es = res.errors;
  std::vector<double> abar(G, 0.0), v(3 * std::size_t(N), 0.0), U(9 * std::size_t(G), 0.0);
  if (conservative) {
    for (int g = 0; g < G; ++g)
      if (!std::isnan(b.energy[g])) {
        const double d = pred.energy[g] - b.energy[g];
        es.e_abs += std::fabs(d); es.e_sq += d * d;
        es.epa_abs += std::fabs(d) / b.natoms[g]; es.epa_sq += d * d / (double(b.natoms[g]) * b.natoms[g]);
        ++es.n_e;
      }
    for (int g = 0; g < G; ++g)
      if (!std::isnan(b.energy[g]) && es.n_e > 0) {
        const double d = pred.energy[g] - b.energy[g], n = b.natoms[g];
        res.loss += (w.energy * detail::lval(d, w.mae) + w.energy_peratom * detail::lval(d / n, w.mae)) / es.n_e;
        abar[g] = (w.energy * detail::lgrad(d, w.mae) + w.energy_peratom * detail::lgrad(d / n, w.mae) / n) / es.n_e;
      }
    for (std::size_t k = 0; k < b.forces.size(); ++k)
      if (!std::isnan(b.forces[k])) {
        const double d = pred.forces[k] - b.forces[k];
        es.f_abs += std::fabs(d); es.f_sq += d * d; ++es.n_f;
      }
    for (std::size_t k = 0; k < b.forces.size(); ++k)
      if (!std::isnan(b.forces[k]) && w.force > 0) {
        const double d = pred.forces[k] - b.forces[k];
        res.loss += w.force * detail::lval(d, w.mae) / es.n_f;
        v[k] = w.force * detail::lgrad(d, w.mae) / es.n_f;
      }
    for (std::size_t k = 0; k < b.stress.size(); ++k)
      if (!std::isnan(b.stress[k]) && !std::isnan(pred.stress[k])) {
        const double d = pred.stress[k] - b.stress[k];
        es.s_abs += std::fabs(d); es.s_sq += d * d; ++es.n_s;
      }
    for (std::size_t k = 0; k < b.stress.size(); ++k)
      if (!std::isnan(b.stress[k]) && !std::isnan(pred.stress[k]) && w.stress > 0) {
        const double d = pred.stress[k] - b.stress[k];
        res.loss += w.stress * detail::lval(d, w.mae) / es.n_s;
        U[k] = w.stress * detail::lgrad(d, w.mae) / es.n_s;
      }
  }
  const std::size_t nh = pred.heads.size();
  es.h_abs.assign(nh, 0.0); es.h_sq.assign(nh, 0.0); es.n_h.assign(nh, 0);
  std::vector<std::vector<double>> ybar(nh);
  for (std::size_t k = 0; k < nh; ++k) {
    const auto& y = pred.heads[k];
    const auto& t = b.head_targets[k];
    ybar[k].assign(y.size(), 0.0);
    for (std::size_t q = 0; q < y.size(); ++q)
      if (!std::isnan(t[q])) { es.h_abs[k] += std::fabs(y[q] - t[q]); es.h_sq[k] += (y[q] - t[q]) * (y[q] - t[q]); ++es.n_h[k]; }
    const double wk = k < w.heads.size() ? w.heads[k] : 1.0;
    for (std::size_t q = 0; q < y.size(); ++q)
      if (!std::isnan(t[q])) {
        res.loss += wk * detail::lval(y[q] - t[q], w.mae) / es.n_h[k];
        ybar[k][q] = wk * detail::lgrad(y[q] - t[q], w.mae) / es.n_h[k];
      }
  }
  if (!want_grad) return res;

  // ---- gradient ------------------------------------------------------------------------------
  auto upload_mat = [](const std::vector<double>& host, std::size_t rows, std::size_t cols, auto tag) {
    using S = decltype(tag);
    Mat<S, M> d("hydragnn::loss_and_grad::cotangent", rows, cols);
    auto h = Kokkos::create_mirror_view(d);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < cols; ++j) {
        const double x = host[i * cols + j];
        if constexpr (scalar_traits<S>::is_dual) h(i, j) = S(T(0), T(x));
        else h(i, j) = S(x);
      }
    Kokkos::deep_copy(d, h);
    return d;
  };
  auto head_dims = [&](std::size_t k) { return std::size_t(model.spec().heads[k].dim); };
  if (need_forces) {
    // tangent on the edge vectors
    Mat<double, M> vd("hydragnn::loss_and_grad::v", N, 3);
    Mat<double, M> Ud("hydragnn::loss_and_grad::U", G, 9);
    {
      auto hv = Kokkos::create_mirror_view(vd);
      for (int i = 0; i < N; ++i) for (int a = 0; a < 3; ++a) hv(i, a) = v[3 * i + a];
      Kokkos::deep_copy(vd, hv);
      auto hU = Kokkos::create_mirror_view(Ud);
      for (int g = 0; g < G; ++g) for (int k = 0; k < 9; ++k) hU(g, k) = U[9 * g + k];
      Kokkos::deep_copy(Ud, hU);
    }
    Mat<double, M> rdot("hydragnn::loss_and_grad::rdot", b.num_edges, 3);
    {
      auto dst = b.dst, src = b.src, ag = b.atom_graph;
      auto vol = b.volume;              // Vec<double>: its own declaration, one auto type per
      auto pos = b.pos, shift = b.shift;  // declaration (ill-formed otherwise; nvcc/clang reject it)
      Kokkos::parallel_for(
          "hydragnn::loss_and_grad::edge_tangent", Kokkos::RangePolicy<Exec>(exec, 0, b.num_edges),
          KOKKOS_LAMBDA(const long e) {
            const int g = ag(dst(e));
            double re[3];
            for (int c = 0; c < 3; ++c) re[c] = pos(dst(e), c) - pos(src(e), c) + shift(e, c);
            for (int a = 0; a < 3; ++a) {
              double t = vd(src(e), a) - vd(dst(e), a);
              if (vol(g) > 0)
                for (int c = 0; c < 3; ++c) t += Ud(g, 3 * a + c) * re[c] / vol(g);
              rdot(e, a) = t;
            }
          });
    }
    auto rd = model.template edge_vectors<D>(exec, b, rdot);
    auto fd = model.template forward<D>(exec, b, rd);
    Vec<D, M> ebar("hydragnn::loss_and_grad::ebar", G);
    {
      auto h = Kokkos::create_mirror_view(ebar);
      for (int g = 0; g < G; ++g) h(g) = D(T(1), T(abar[g]));
      Kokkos::deep_copy(ebar, h);
    }
    std::vector<Mat<D, M>> hb;
    for (std::size_t k = 0; k < nh; ++k)
      hb.push_back(upload_mat(ybar[k], ybar[k].size() / head_dims(k), head_dims(k), D()));
    Vec<D, M> gd("hydragnn::loss_and_grad::dual_grad", model.num_params());
    model.template backward<D>(exec, b, fd, ebar, hb, gd);
    Kokkos::parallel_for(
        "hydragnn::loss_and_grad::tangent", Kokkos::RangePolicy<Exec>(exec, 0, long(grad.extent(0))),
        KOKKOS_LAMBDA(const long k) { grad(k) = gd(k).d; });
  } else {
    Vec<T, M> ebar("hydragnn::loss_and_grad::ebar", G);
    {
      auto h = Kokkos::create_mirror_view(ebar);
      for (int g = 0; g < G; ++g) h(g) = T(abar[g]);
      Kokkos::deep_copy(ebar, h);
    }
    std::vector<Mat<T, M>> hb;
    for (std::size_t k = 0; k < nh; ++k)
      hb.push_back(upload_mat(ybar[k], ybar[k].size() / head_dims(k), head_dims(k), T()));
    Kokkos::deep_copy(grad, T(0));
    model.template backward<T>(exec, b, f1, conservative ? ebar : Vec<T, M>(), hb, grad);
  }
  return res;
}

}  // namespace hydragnn
