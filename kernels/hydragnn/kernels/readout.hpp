// SPDX-License-Identifier: BSD-3-Clause
// Model-level ops: species embedding, the per-graph energy sum, graph pooling and their backwards.
// Fixed-order reductions only (atoms of a graph are contiguous; atoms of a species are listed by
// the batch's species permutation).
#pragma once

#include <hydragnn/core/types.hpp>
#include <hydragnn/kernels/modes.hpp>

namespace hydragnn {
namespace kernels {

// One natural form each; every mode (kernels/modes.hpp) is accepted and runs it.

/// h(i,c) = p(off + species(i) H + c)                                     -> h: N x H
template <class Exec, class S, class T, class Mode = default_mode_t<Exec>>
void embedding_forward(const Exec& exec, const CVec<T, mem_t<Exec>>& p, long off, const CVec<int, mem_t<Exec>>& species,
                       const Mat<S, mem_t<Exec>>& h) {
  const long N = long(h.extent(0)), H = long(h.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Embedding::forward", Kokkos::RangePolicy<Exec>(exec, 0, N * H), KOKKOS_LAMBDA(const long k) {
        const long i = k / H, c = k % H;
        h(i, c) = S(p(off + long(species(i)) * H + c));
      });
}

/// g(off + s H + c) += sum over the atoms of species s (in species_perm order) of hbar(i,c)
/// (g real: param_part of the sum, core/dual.hpp)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void embedding_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& hbar, const CVec<int, mem_t<Exec>>& species_perm,
                        const CVec<int, mem_t<Exec>>& species_ptr, long off, const Vec<real_t<S>, mem_t<Exec>>& g) {
  const long ns = long(species_ptr.extent(0)) - 1, H = long(hbar.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Embedding::backward", Kokkos::RangePolicy<Exec>(exec, 0, ns * H), KOKKOS_LAMBDA(const long k) {
        const long s = k / H, c = k % H;
        S acc(0);
        for (int q = species_ptr(s); q < species_ptr(s + 1); ++q) acc += hbar(species_perm(q), c);
        g(off + s * H + c) += param_part(acc);
      });
}

/// E(g) = sum_{i in g} (scale e(i,0) + shift + ref(species(i))), accumulated in double (SD).
template <class Exec, class S, class SD, class Mode = default_mode_t<Exec>>
void energy_sum(const Exec& exec, const CMat<S, mem_t<Exec>>& e_atom, const CVec<int, mem_t<Exec>>& graph_ptr,
                const CVec<int, mem_t<Exec>>& species, const CVec<double, mem_t<Exec>>& ref, double scale, double shift,
                const Vec<SD, mem_t<Exec>>& energy) {
  Kokkos::parallel_for(
      "hydragnn::Energy::sum", Kokkos::RangePolicy<Exec>(exec, 0, long(energy.extent(0))), KOKKOS_LAMBDA(const long g) {
        SD acc(0.0);
        for (int i = graph_ptr(g); i < graph_ptr(g + 1); ++i)
          acc += scalar_cast<SD>(e_atom(i, 0)) * scale + (shift + ref(species(i)));
        energy(g) = acc;
      });
}

/// E(g) = scale y(g,0) + sum_{i in g} (shift + ref(species(i))), in double (SD): the energy of a
/// graph head (pooling -> MLP) with the per-atom constants of the model's normalisation.
template <class Exec, class S, class SD>
void graph_energy(const Exec& exec, const CMat<S, mem_t<Exec>>& y, const CVec<int, mem_t<Exec>>& graph_ptr,
                  const CVec<int, mem_t<Exec>>& species, const CVec<double, mem_t<Exec>>& ref, double scale, double shift,
                  const Vec<SD, mem_t<Exec>>& energy) {
  Kokkos::parallel_for(
      "hydragnn::Energy::graph", Kokkos::RangePolicy<Exec>(exec, 0, long(energy.extent(0))), KOKKOS_LAMBDA(const long g) {
        SD acc = scalar_cast<SD>(y(g, 0)) * scale;
        for (int i = graph_ptr(g); i < graph_ptr(g + 1); ++i) acc += shift + ref(species(i));
        energy(g) = acc;
      });
}

/// ybar(g,0) = Ebar(g) scale  (backward of graph_energy)
template <class Exec, class S>
void graph_energy_backward(const Exec& exec, const CVec<S, mem_t<Exec>>& Ebar, double scale, const Mat<S, mem_t<Exec>>& ybar) {
  Kokkos::parallel_for(
      "hydragnn::Energy::graph_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(ybar.extent(0))),
      KOKKOS_LAMBDA(const long g) { ybar(g, 0) = Ebar(g) * real_t<S>(scale); });
}

/// ebar(i,0) = Ebar(graph(i)) scale
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void energy_sum_backward(const Exec& exec, const CVec<S, mem_t<Exec>>& Ebar, const CVec<int, mem_t<Exec>>& atom_graph,
                         double scale, const Mat<S, mem_t<Exec>>& ebar) {
  Kokkos::parallel_for(
      "hydragnn::Energy::sum_backward", Kokkos::RangePolicy<Exec>(exec, 0, long(ebar.extent(0))),
      KOKKOS_LAMBDA(const long i) { ebar(i, 0) = Ebar(atom_graph(i)) * real_t<S>(scale); });
}

/// Y(g,c) *= inv(g)   (mean pooling after a segment sum)
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void scale_by_graph(const Exec& exec, const CVec<double, mem_t<Exec>>& inv, const Mat<S, mem_t<Exec>>& Y) {
  const long G = long(Y.extent(0)), H = long(Y.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Pooling::mean", Kokkos::RangePolicy<Exec>(exec, 0, G * H),
      KOKKOS_LAMBDA(const long k) { Y(k / H, k % H) = Y(k / H, k % H) * real_t<S>(inv(k / H)); });
}

/// hbar(i,c) += pbar(graph(i),c) [* inv(graph(i)) when mean]
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void pool_backward(const Exec& exec, const CMat<S, mem_t<Exec>>& pbar, const CVec<int, mem_t<Exec>>& atom_graph,
                   const CVec<double, mem_t<Exec>>& inv, bool mean, const Mat<S, mem_t<Exec>>& hbar) {
  const long N = long(hbar.extent(0)), H = long(hbar.extent(1));
  Kokkos::parallel_for(
      "hydragnn::Pooling::backward", Kokkos::RangePolicy<Exec>(exec, 0, N * H), KOKKOS_LAMBDA(const long k) {
        const long i = k / H, c = k % H;
        const int gi = atom_graph(i);
        hbar(i, c) += mean ? pbar(gi, c) * real_t<S>(inv(gi)) : pbar(gi, c);
      });
}

/// Component a of the edge vector r_e = pos(dst(e)) - pos(src(e)) + shift(e), in double (the
/// batch's views, captured by the kernels: a Batch itself holds host vectors).
template <class P, class I>
KOKKOS_INLINE_FUNCTION double edge_component(const P& pos, const P& shift, const I& dst, const I& src, int e, int a) {
  return pos(dst(e), a) - pos(src(e), a) + shift(e, a);
}

/// r(e,:) = pos(dst(e),:) - pos(src(e),:) + shift(e,:)  (double geometry), tangent from rdot if given.
template <class Exec, class S, class Mode = default_mode_t<Exec>>
void edge_vectors(const Exec& exec, const CMat<double, mem_t<Exec>>& pos, const CMat<double, mem_t<Exec>>& shift,
                  const CVec<int, mem_t<Exec>>& dst, const CVec<int, mem_t<Exec>>& src,
                  const CMat<double, mem_t<Exec>>& rdot, const Mat<S, mem_t<Exec>>& r) {
  const bool has_t = rdot.extent(0) > 0;
  Kokkos::parallel_for(
      "hydragnn::Model::edge_vectors", Kokkos::RangePolicy<Exec>(exec, 0, long(r.extent(0))), KOKKOS_LAMBDA(const long e) {
        for (int a = 0; a < 3; ++a) {
          const double v = edge_component(pos, shift, dst, src, int(e), a);
          r(e, a) = scalar_traits<S>::make(real_t<S>(v), real_t<S>(has_t ? rdot(e, a) : 0.0));
        }
      });
}

}  // namespace kernels
}  // namespace hydragnn
