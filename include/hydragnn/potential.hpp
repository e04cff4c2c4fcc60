// SPDX-License-Identifier: BSD-3-Clause
// Energies, forces and stress from one real forward + backward (seed dE_g = 1).
//   g_e   = dE/dr_e (the backward stops at the edge vectors)
//   F_i   = sum_{e: src(e)=i} g_e - sum_{e: dst(e)=i} g_e          (two segmented sums, no atomics)
//   sigma = (1/V) sum_e g_e (x) r_e                                  (ASE sign, eV/A^3)
#pragma once

#include <hydragnn/models/model.hpp>

#include <cmath>
#include <vector>

namespace hydragnn {

/// Host-side results for a batch.
struct Prediction {
  std::vector<double> energy;  ///< G
  std::vector<double> forces;  ///< N*3
  std::vector<double> stress;  ///< G*9 (NaN where the structure is not 3-D periodic)
  std::vector<std::vector<double>> heads;  ///< per direct head, G*dim or N*dim
};

namespace kernels {

/// F_i = sum_{src(e)=i} g_e - sum_{dst(e)=i} g_e, in double.
template <class Exec, class S>
void assemble_forces(const Exec& exec, const Batch<mem_t<Exec>>& b, const CMat<S, mem_t<Exec>>& g,
                     const Mat<double, mem_t<Exec>>& F) {
  auto send_perm = b.send_perm;
  auto send_ptr = b.send_ptr;
  auto row_ptr = b.row_ptr;
  Kokkos::parallel_for(
      "hydragnn::Potential::forces", Kokkos::RangePolicy<Exec>(exec, 0, long(b.num_atoms) * 3),
      KOKKOS_LAMBDA(const long k) {
        const long i = k / 3;
        const int a = int(k % 3);
        double acc = 0;
        for (int q = send_ptr(i); q < send_ptr(i + 1); ++q) acc += double(scalar_traits<S>::primal(g(send_perm(q), a)));
        for (int e = row_ptr(i); e < row_ptr(i + 1); ++e) acc -= double(scalar_traits<S>::primal(g(e, a)));
        F(i, a) = acc;
      });
}

/// sigma_g = (1/V_g) sum_{e in g} g_e r_e^T (per graph; NaN when V_g = 0).
template <class Exec, class S>
void assemble_stress(const Exec& exec, const Batch<mem_t<Exec>>& b, const CMat<S, mem_t<Exec>>& g,
                     const Mat<double, mem_t<Exec>>& sigma) {
  auto gep = b.graph_edge_ptr;
  auto vol = b.volume;
  auto pos = b.pos;
  auto shift = b.shift;
  auto dst = b.dst;
  auto src = b.src;
  Kokkos::parallel_for(
      "hydragnn::Potential::stress", Kokkos::RangePolicy<Exec>(exec, 0, long(b.num_graphs) * 9),
      KOKKOS_LAMBDA(const long k) {
        const long gr = k / 9;
        const int a = int(k % 9) / 3, c = int(k % 9) % 3;
        double acc = 0;
        for (int e = gep(gr); e < gep(gr + 1); ++e) {
          const double rc = pos(dst(e), c) - pos(src(e), c) + shift(e, c);
          acc += double(scalar_traits<S>::primal(g(e, a))) * rc;
        }
        sigma(gr, k % 9) = vol(gr) > 0 ? acc / vol(gr) : double(NAN);
      });
}

}  // namespace kernels

template <class V>
std::vector<double> to_host_vector(const V& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<double> out;
  out.reserve(h.size());
  if constexpr (V::rank == 1) {
    for (std::size_t i = 0; i < h.extent(0); ++i) out.push_back(double(scalar_traits<typename V::non_const_value_type>::primal(h(i))));
  } else {
    for (std::size_t i = 0; i < h.extent(0); ++i)
      for (std::size_t j = 0; j < h.extent(1); ++j)
        out.push_back(double(scalar_traits<typename V::non_const_value_type>::primal(h(i, j))));
  }
  return out;
}

/// Energy, forces (if the model has an energy head) and stress; direct head outputs.
template <class ModelT>
Prediction predict(const typename ModelT::exec_space& exec, const ModelT& model, const Batch<typename ModelT::memory_space>& b,
                   bool forces = true) {
  using T = typename ModelT::real_type;
  using M = typename ModelT::memory_space;
  using Exec = typename ModelT::exec_space;
  Prediction out;
  auto r = model.template edge_vectors<T>(exec, b);
  auto f = model.template forward<T>(exec, b, r);
  out.energy = to_host_vector(f.energy);
  for (auto& h : f.head_out) out.heads.push_back(to_host_vector(h));
  if (forces && model.spec().energy) {
    Vec<T, M> ebar("hydragnn::predict::ebar", b.num_graphs);
    Kokkos::deep_copy(ebar, T(1));
    Vec<T, M> scratch("hydragnn::predict::scratch_grad", model.num_params());
    auto g = model.template backward<T>(exec, b, f, ebar, {}, scratch);
    Mat<double, M> F("hydragnn::predict::forces", b.num_atoms, 3);
    Mat<double, M> sigma("hydragnn::predict::stress", b.num_graphs, 9);
    kernels::assemble_forces<Exec, T>(exec, b, g, F);
    kernels::assemble_stress<Exec, T>(exec, b, g, sigma);
    out.forces = to_host_vector(F);
    out.stress = to_host_vector(sigma);
  }
  return out;
}

}  // namespace hydragnn
