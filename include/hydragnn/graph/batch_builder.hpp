// SPDX-License-Identifier: BSD-3-Clause
// Structures + radius graphs -> a device Batch (core/batch.hpp), with the targets of the energy,
// force, stress and direct heads (NaN where a frame has no label).
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/core/structure.hpp>
#include <hydragnn/core/types.hpp>
#include <hydragnn/graph/edge_pairs.hpp>
#include <hydragnn/graph/radius_graph.hpp>
#include <hydragnn/graph/triplets.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

/// Volume of a 3-D periodic cell, 0 for anything else (stress is defined only for 3-D periodic cells).
inline double stress_volume(const Structure& s) {
  if (!(s.has_cell && s.pbc[0] && s.pbc[1] && s.pbc[2])) return 0.0;
  const Mat3& c = s.cell;
  const double v = c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1]) - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0]) +
                   c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]);
  return std::fabs(v);
}

/// Where the label of direct head hd lives in structure s: the extxyz info key (graph head) or per-atom
/// column (node head) of the head's name; for HydraGNN's names of the potential's labels, when no
/// such key exists, the structure's energy (graph head "energy", dim 1) or forces (node head "forces"
/// or "force", dim 3), which the extxyz reader keeps apart. None: the structure has no label for it.
enum class HeadLabel { None, Info, Array, Energy, Forces };
inline HeadLabel head_label(const Structure& s, const HeadDef& hd) {
  if (hd.node) {
    auto it = s.array_cols.find(hd.name);
    if (it != s.array_cols.end()) return it->second == hd.dim ? HeadLabel::Array : HeadLabel::None;
    if ((hd.name == "forces" || hd.name == "force") && hd.dim == 3 && !s.forces.empty()) return HeadLabel::Forces;
    return HeadLabel::None;
  }
  if (s.info.count(hd.name)) return HeadLabel::Info;
  if (hd.name == "energy" && hd.dim == 1 && s.energy) return HeadLabel::Energy;
  return HeadLabel::None;
}

/// The model's species index of atomic number z, or an error naming `where` and the atom.
inline int species_index(const SpeciesMap& species, int z, int atom, const std::string& where) {
  const int sp = species.index_of(z);
  if (sp < 0)
    throw std::runtime_error(where + ": element Z=" + std::to_string(z) + " (atom " + std::to_string(atom) +
                             ") is not among the model's species");
  return sp;
}

/// Stable counting sort of the ids 0..n-1 by key[id] in [0, n_keys): ptr gets the n_keys+1 offsets,
/// perm the ids in key order; fill is scratch (kept by callers that sort every step).
inline void counting_sort(const std::vector<int>& key, int n, int n_keys, std::vector<int>& ptr, std::vector<int>& perm,
                          std::vector<int>& fill) {
  ptr.assign(n_keys + 1, 0);
  for (int i = 0; i < n; ++i) ++ptr[key[i] + 1];
  for (int k = 0; k < n_keys; ++k) ptr[k + 1] += ptr[k];
  perm.resize(n);
  fill.assign(ptr.begin(), ptr.end() - 1);
  for (int i = 0; i < n; ++i) perm[fill[key[i]]++] = i;
}

/// Build a batch from structures and their (precomputed) radius graphs, collecting the targets of
/// the direct heads.
template <class M>
Batch<M> make_batch(const std::vector<const Structure*>& frames, const std::vector<const RadiusGraph*>& graphs,
                    const SpeciesMap& species, const std::vector<HeadDef>& heads = {}, bool with_triplets = false) {
  const double nan = std::nan("");
  Batch<M> b;
  const int G = int(frames.size());
  int N = 0, E = 0;
  for (int g = 0; g < G; ++g) {
    N += int(frames[g]->size());
    E += int(graphs[g]->num_edges());
  }
  b.num_graphs = G;
  b.num_atoms = N;
  b.num_edges = E;
  auto h_graph_ptr = std::vector<int>(G + 1), h_gedge = std::vector<int>(G + 1), h_atom_graph = std::vector<int>(N),
       h_species = std::vector<int>(N), h_row_ptr = std::vector<int>(N + 1), h_dst = std::vector<int>(E),
       h_src = std::vector<int>(E), h_send_perm = std::vector<int>(E), h_send_ptr = std::vector<int>(N + 1);
  std::vector<double> h_pos(3 * std::size_t(N)), h_shift(3 * std::size_t(E)), h_vol(G), h_inv(G);
  b.energy.assign(G, nan);
  b.forces.assign(3 * std::size_t(N), nan);
  b.stress.assign(9 * std::size_t(G), nan);
  b.natoms.resize(G);
  b.numbers.resize(N);
  b.head_targets.resize(heads.size());
  for (std::size_t h = 0; h < heads.size(); ++h)
    b.head_targets[h].assign(std::size_t(heads[h].dim) * (heads[h].node ? N : G), nan);

  int a0 = 0, e0 = 0;
  for (int g = 0; g < G; ++g) {
    const Structure& s = *frames[g];
    const RadiusGraph& rg = *graphs[g];
    const int n = int(s.size());
    if (rg.num_nodes != n) throw std::logic_error("make_batch: graph does not match structure " + s.source);
    if (s.branch < 0) throw std::invalid_argument("make_batch: structure " + s.source + " has head branch " + std::to_string(s.branch));
    if (s.branch > 0 || !b.branch_graph_ptr.empty()) {  // graphs grouped by branch, ascending
      if (b.branch_graph_ptr.empty()) b.branch_graph_ptr.push_back(0), b.branch_atom_ptr.push_back(0);
      const int current = int(b.branch_graph_ptr.size()) - 1;
      if (s.branch < current)
        throw std::invalid_argument("make_batch: the structures of a batch must be grouped by head branch in ascending "
                                    "order (structure " + s.source + " of branch " + std::to_string(s.branch) +
                                    " follows branch " + std::to_string(current) + ")");
      while (int(b.branch_graph_ptr.size()) < s.branch + 1) b.branch_graph_ptr.push_back(g), b.branch_atom_ptr.push_back(a0);
    }
    h_graph_ptr[g] = a0;
    h_gedge[g] = e0;
    b.natoms[g] = n;
    h_vol[g] = stress_volume(s);
    h_inv[g] = n > 0 ? 1.0 / n : 0.0;
    if (s.energy) b.energy[g] = *s.energy;
    if (s.stress) std::copy(s.stress->begin(), s.stress->end(), b.stress.begin() + 9 * g);
    for (int i = 0; i < n; ++i) {
      const int z = s.numbers[i];
      h_species[a0 + i] = species_index(species, z, i, s.source);
      b.numbers[a0 + i] = z;
      h_atom_graph[a0 + i] = g;
      for (int a = 0; a < 3; ++a) {
        h_pos[3 * (a0 + i) + a] = s.positions[i][a];
        if (!s.forces.empty()) b.forces[3 * (a0 + i) + a] = s.forces[i][a];
      }
      h_row_ptr[a0 + i] = e0 + rg.row_ptr[i];
      h_send_ptr[a0 + i] = e0 + rg.sender_ptr[i];
    }
    for (std::size_t e = 0; e < rg.num_edges(); ++e) {
      h_dst[e0 + e] = a0 + rg.receivers[e];
      h_src[e0 + e] = a0 + rg.senders[e];
      h_send_perm[e0 + e] = e0 + rg.sender_perm[e];
      const Vec3 S = radius_graph_detail::lattice_shift(s.cell, rg.shifts[e]);
      for (int a = 0; a < 3; ++a) h_shift[3 * (e0 + e) + a] = S[a];
    }
    for (std::size_t h = 0; h < heads.size(); ++h) {
      const std::string& key = heads[h].name;
      const int dim = heads[h].dim;
      auto& t = b.head_targets[h];
      const HeadLabel label = head_label(s, heads[h]);
      if (label == HeadLabel::Array) {
        const auto& v = s.arrays.at(key);
        std::copy(v.begin(), v.end(), t.begin() + std::size_t(a0) * dim);
      } else if (label == HeadLabel::Forces) {
        for (int i = 0; i < n; ++i)
          for (int a = 0; a < 3; ++a) t[3 * std::size_t(a0 + i) + std::size_t(a)] = s.forces[std::size_t(i)][std::size_t(a)];
      } else if (label == HeadLabel::Energy) {
        t[std::size_t(g)] = *s.energy;
      } else if (label == HeadLabel::Info) {
        const char* p = s.info.at(key).c_str();
        for (int k = 0; k < dim; ++k) {
          char* end = nullptr;
          const double v = std::strtod(p, &end);
          if (end == p) throw std::runtime_error(s.source + ": cannot read " + std::to_string(dim) +
                                                 " number(s) from key '" + key + "'");
          t[std::size_t(g) * dim + k] = v;
          p = end;
        }
      }
    }
    a0 += n;
    e0 += int(rg.num_edges());
  }
  h_graph_ptr[G] = N;
  h_gedge[G] = E;
  if (!b.branch_graph_ptr.empty()) b.branch_graph_ptr.push_back(G), b.branch_atom_ptr.push_back(N);
  h_row_ptr[N] = E;
  h_send_ptr[N] = E;

  // Atoms grouped by species (a stable counting sort), for the embedding's deterministic backward.
  std::vector<int> h_sp_ptr, h_sp_perm, fill;
  counting_sort(h_species, N, int(species.size()), h_sp_ptr, h_sp_perm, fill);

  auto to_dev = [](const std::string& label, const auto& v) {
    using V = typename std::decay_t<decltype(v)>::value_type;
    Vec<V, M> d(label, v.size());
    auto h = Kokkos::create_mirror_view(d);
    for (std::size_t i = 0; i < v.size(); ++i) h(i) = v[i];
    Kokkos::deep_copy(d, h);
    return d;
  };
  auto to_dev_m3 = [](const std::string& label, const std::vector<double>& v) {
    Mat<double, M> d(label, v.size() / 3, 3);
    auto h = Kokkos::create_mirror_view(d);
    for (std::size_t i = 0; i < v.size() / 3; ++i)
      for (int a = 0; a < 3; ++a) h(i, a) = v[3 * i + a];
    Kokkos::deep_copy(d, h);
    return d;
  };
  b.graph_ptr = to_dev("hydragnn::Batch::graph_ptr", h_graph_ptr);
  b.graph_edge_ptr = to_dev("hydragnn::Batch::graph_edge_ptr", h_gedge);
  b.atom_graph = to_dev("hydragnn::Batch::atom_graph", h_atom_graph);
  b.species = to_dev("hydragnn::Batch::species", h_species);
  b.species_perm = to_dev("hydragnn::Batch::species_perm", h_sp_perm);
  b.species_ptr = to_dev("hydragnn::Batch::species_ptr", h_sp_ptr);
  b.pos = to_dev_m3("hydragnn::Batch::pos", h_pos);
  b.volume = to_dev("hydragnn::Batch::volume", h_vol);
  b.row_ptr = to_dev("hydragnn::Batch::row_ptr", h_row_ptr);
  b.dst = to_dev("hydragnn::Batch::dst", h_dst);
  b.src = to_dev("hydragnn::Batch::src", h_src);
  b.shift = to_dev_m3("hydragnn::Batch::shift", h_shift);
  b.send_perm = to_dev("hydragnn::Batch::send_perm", h_send_perm);
  b.send_ptr = to_dev("hydragnn::Batch::send_ptr", h_send_ptr);
  b.inv_count = to_dev("hydragnn::Batch::inv_count", h_inv);
  {
    std::vector<int> first, second, of_edge;
    edge_pairs(h_row_ptr, h_dst, h_src, h_shift, first, second, of_edge);
    b.num_pairs = int(first.size());
    b.pair_first = to_dev("hydragnn::Batch::pair_first", first);
    b.pair_second = to_dev("hydragnn::Batch::pair_second", second);
    b.edge_pair = to_dev("hydragnn::Batch::edge_pair", of_edge);
  }
  if (with_triplets) {
    b.triplets = to_device<M>(build_triplets(graphs));
    b.has_triplets = true;
  }
  // targets and label counts
  auto to_dev_rows = [](const std::string& label, const std::vector<double>& v, std::size_t cols) {
    Mat<double, M> d(Kokkos::view_alloc(Kokkos::WithoutInitializing, label), v.size() / cols, cols);
    auto h = Kokkos::create_mirror_view(d);
    for (std::size_t i = 0; i < v.size() / cols; ++i)
      for (std::size_t c = 0; c < cols; ++c) h(i, c) = v[i * cols + c];
    Kokkos::deep_copy(d, h);
    return d;
  };
  b.energy_t = to_dev("hydragnn::Batch::energy_t", b.energy);
  b.forces_t = to_dev_rows("hydragnn::Batch::forces_t", b.forces, 3);
  b.stress_t = to_dev_rows("hydragnn::Batch::stress_t", b.stress, 9);
  for (double e : b.energy) b.n_energy += !std::isnan(e);
  for (double f : b.forces) b.n_force += !std::isnan(f);
  for (int g = 0; g < G; ++g)
    if (h_vol[g] > 0)
      for (int k = 0; k < 9; ++k) b.n_stress += !std::isnan(b.stress[9 * std::size_t(g) + k]);
  for (std::size_t h = 0; h < heads.size(); ++h) {
    b.head_t.push_back(to_dev_rows("hydragnn::Batch::head_t", b.head_targets[h], std::size_t(heads[h].dim)));
    long n = 0;
    for (double t : b.head_targets[h]) n += !std::isnan(t);
    b.n_head.push_back(n);
  }
  return b;
}

/// Convenience: radius graphs (cutoff, max_neighbours) and the batch of a list of structures.
template <class M>
Batch<M> make_batch(const std::vector<Structure>& frames, double cutoff, int max_neighbours, const SpeciesMap& species,
                    const std::vector<HeadDef>& heads = {}, bool with_triplets = false) {
  std::vector<RadiusGraph> graphs;
  graphs.reserve(frames.size());
  std::vector<const Structure*> fp;
  std::vector<const RadiusGraph*> gp;
  for (const auto& f : frames) {
    graphs.push_back(radius_graph(f, cutoff, max_neighbours));
    fp.push_back(&f);
  }
  for (const auto& g : graphs) gp.push_back(&g);
  return make_batch<M>(fp, gp, species, heads, with_triplets);
}

}  // namespace hydragnn
