// SPDX-License-Identifier: BSD-3-Clause
// Forces and stress from the edge gradients g_e = dE/dr_e (two segmented sums, no atomics), and the
// edge tangent of the dual pass of force/stress training.
//   F_i   = sum_{e: src(e)=i} g_e - sum_{e: dst(e)=i} g_e
//   sigma = (1/V) sum_e g_e (x) r_e                                  (ASE sign, eV/A^3)
//   W_i   = -1/2 sum_{e touching i} r_e (x) g_e                    (per-atom virial, eV)
//   rdot_e = v_src - v_dst + U_g r_e / V_g                           (docs/autodiff.md)
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/kernels/modes.hpp>
#include <hydragnn/kernels/readout.hpp>  // edge_component

#include <cmath>

namespace hydragnn {
namespace kernels {

// One natural form each; every mode (kernels/modes.hpp) is accepted and runs it.

/// F_i = sum_{src(e)=i} g_e - sum_{dst(e)=i} g_e, in double.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
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
template <class Exec, class S, class Mode = default_mode_t<Exec>>
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
        if (!(vol(gr) > 0)) {  // no cell: NaN, without summing edges whose sum would be discarded
          sigma(gr, k % 9) = double(NAN);
          return;
        }
        double acc = 0;
        for (int e = gep(gr); e < gep(gr + 1); ++e)
          acc += double(scalar_traits<S>::primal(g(e, a))) * edge_component(pos, shift, dst, src, e, c);
        sigma(gr, k % 9) = acc / vol(gr);
      });
}

/// Per-atom virial W_i(a,b) = -1/2 sum_{e: dst(e)=i or src(e)=i} r_e(a) g_e(b) (eV; half of each edge
/// to each end, so sum_i W_i = -sum_e r_e g_e^T = sum_i x_i F_i^T for non-periodic graphs), in double.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void assemble_atom_virial(const Exec& exec, const Batch<mem_t<Exec>>& b, const CMat<S, mem_t<Exec>>& g,
                          const Mat<double, mem_t<Exec>>& W) {
  auto send_perm = b.send_perm;
  auto send_ptr = b.send_ptr;
  auto row_ptr = b.row_ptr;
  auto pos = b.pos;
  auto shift = b.shift;
  auto dst = b.dst;
  auto src = b.src;
  Kokkos::parallel_for(
      "hydragnn::Potential::atom_virial", Kokkos::RangePolicy<Exec>(exec, 0, long(b.num_atoms) * 9),
      KOKKOS_LAMBDA(const long k) {
        const long i = k / 9;
        const int a = int(k % 9) / 3, c = int(k % 9) % 3;
        double acc = 0;
        for (int e = row_ptr(i); e < row_ptr(i + 1); ++e)
          acc += edge_component(pos, shift, dst, src, e, a) * double(scalar_traits<S>::primal(g(e, c)));
        for (int q = send_ptr(i); q < send_ptr(i + 1); ++q) {
          const int e = send_perm(q);
          acc += edge_component(pos, shift, dst, src, e, a) * double(scalar_traits<S>::primal(g(e, c)));
        }
        W(i, k % 9) = -0.5 * acc;
      });
}

/// rdot(e,a) = v(src,a) - v(dst,a) + sum_c U(g,3a+c) r(e,c) / V(g)   (no stress term when V(g) = 0)
template <class Exec, class Mode = default_mode_t<Exec>>
void edge_tangent(const Exec& exec, const Batch<mem_t<Exec>>& b, const CMat<double, mem_t<Exec>>& vd,
                  const CMat<double, mem_t<Exec>>& Ud, const Mat<double, mem_t<Exec>>& rdot) {
  auto dst = b.dst;
  auto src = b.src;
  auto ag = b.atom_graph;
  auto vol = b.volume;  // one auto type per declaration (nvcc/clang reject mixed ones)
  auto pos = b.pos;
  auto shift = b.shift;
  Kokkos::parallel_for(
      "hydragnn::Autodiff::edge_tangent", Kokkos::RangePolicy<Exec>(exec, 0, b.num_edges), KOKKOS_LAMBDA(const long e) {
        const int g = ag(dst(e));
        double re[3];
        for (int c = 0; c < 3; ++c) re[c] = edge_component(pos, shift, dst, src, int(e), c);
        for (int a = 0; a < 3; ++a) {
          double t = vd(src(e), a) - vd(dst(e), a);
          if (vol(g) > 0)
            for (int c = 0; c < 3; ++c) t += Ud(g, 3 * a + c) * re[c] / vol(g);
          rdot(e, a) = t;
        }
      });
}

}  // namespace kernels
}  // namespace hydragnn
