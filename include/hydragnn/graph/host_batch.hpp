// SPDX-License-Identifier: BSD-3-Clause
// The host half of an inference Batch (no targets), built in reusable std::vectors, and its upload
// into workspace slots: a caller that keeps one HostBatch and one Workspace across calls (an MD
// step) allocates nothing once the largest system has been seen.
//
// Two sources:
//  * a structure and its radius graph (one graph);
//  * a host code's neighbour list over owned atoms [0, n_local) and ghost atoms [n_local, n_all)
//    (periodic images or other ranks' atoms, with their own positions): graph 0 = the owned atoms,
//    graph 1 = the ghosts, edges j -> i for every listed pair with |x_i - x_j| < cutoff, no shifts.
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/core/structure.hpp>
#include <hydragnn/core/workspace.hpp>
#include <hydragnn/graph/batch_builder.hpp>
#include <hydragnn/graph/radius_graph.hpp>
#include <hydragnn/graph/triplets.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

/// A neighbour list given by the host code (LAMMPS' layout). Atoms [0, n_local) are owned,
/// [n_local, n_all) are ghosts. Every atom i whose list is given (ilist[0 .. inum), or 0 .. inum-1
/// when ilist is null) has numneigh[i] neighbours firstneigh[i][k] & mask, indices into [0, n_all).
/// Owned atoms must all have lists; ghosts need theirs when the model has more than one
/// message-passing layer (their features feed the owned atoms' energies): then the ghosts must
/// reach Potential::ghost_cutoff() beyond the owned atoms. firstneigh == nullptr: no lists; the
/// Potential then finds every pair closer than the cutoff among all n_all atoms itself.
struct HostNeighborList {
  int n_local = 0, n_all = 0;
  const double* x = nullptr;        ///< n_all x 3, row-major, Angstrom
  const int* numbers = nullptr;     ///< n_all atomic numbers
  int inum = 0;
  const int* ilist = nullptr;
  const int* numneigh = nullptr;
  const int* const* firstneigh = nullptr;
  int mask = ~0;
};

struct HostBatch {
  int num_graphs = 0, num_atoms = 0, num_edges = 0;
  std::vector<int> graph_ptr, graph_edge_ptr, atom_graph, species, species_perm, species_ptr;
  std::vector<int> row_ptr, dst, src, send_perm, send_ptr;
  std::vector<int> pair_first, pair_second, edge_pair;  ///< mutually reverse edges (graph/edge_pairs.hpp)
  std::vector<double> pos, shift, volume, inv_count;  ///< N*3, E*3, G, G
  std::vector<int> numbers;                           ///< N atomic numbers
  std::vector<int> origin;  ///< after ReceptiveField::apply: the host's index of each atom (empty: identity)
  int branch = 0;           ///< the head branch every graph goes through (multi-dataset models)

  /// From graph_ptr, species, row_ptr, dst, src (and the sizes): atom_graph, inv_count, the sender
  /// permutation (stable: by sender, then edge id) and the species grouping.
  void finish(int num_species) {
    const int G = num_graphs, N = num_atoms, E = num_edges;  // N, E: sizes of the sorts below
    atom_graph.resize(N);
    inv_count.resize(G);
    for (int g = 0; g < G; ++g) {
      const int n = graph_ptr[g + 1] - graph_ptr[g];
      inv_count[g] = n > 0 ? 1.0 / n : 0.0;
      for (int i = graph_ptr[g]; i < graph_ptr[g + 1]; ++i) atom_graph[i] = g;
    }
    counting_sort(src, E, N, send_ptr, send_perm, fill_);
    counting_sort(species, N, num_species, species_ptr, species_perm, fill_);
    if (shift.size() == 3 * std::size_t(E)) {
      edge_pairs(row_ptr, dst, src, shift, pair_first, pair_second, edge_pair);
    } else {
      pair_first.clear(), pair_second.clear(), edge_pair.clear();
    }
  }

 private:
  std::vector<int> fill_;
};

/// One structure and its radius graph (volume: the cell's when 3-D periodic, else 0). With
/// 0 <= n_local < N, atoms [0, n_local) are owned and the rest ghosts: two graphs, as from a host list.
inline void host_batch_from_structure(const Structure& s, const RadiusGraph& rg, const SpeciesMap& species,
                                      HostBatch& h, int n_local = -1) {
  const int N = int(s.size()), E = int(rg.num_edges());
  if (rg.num_nodes != N) throw std::logic_error("host_batch_from_structure: graph does not match structure " + s.source);
  h.num_atoms = N;
  h.num_edges = E;
  if (n_local >= 0 && n_local < N) {
    h.num_graphs = 2;
    h.graph_ptr.assign({0, n_local, N});
    h.graph_edge_ptr.assign({0, rg.row_ptr[n_local], E});
  } else {
    h.num_graphs = 1;
    h.graph_ptr.assign({0, N});
    h.graph_edge_ptr.assign({0, E});
  }
  h.species.resize(N);
  h.numbers.assign(s.numbers.begin(), s.numbers.end());
  h.pos.resize(3 * std::size_t(N));
  for (int i = 0; i < N; ++i) {
    h.species[i] = species_index(species, s.numbers[i], i, s.source.empty() ? "structure" : s.source);
    for (int a = 0; a < 3; ++a) h.pos[3 * i + a] = s.positions[i][a];
  }
  h.row_ptr.assign(rg.row_ptr.begin(), rg.row_ptr.end());
  h.dst.assign(rg.receivers.begin(), rg.receivers.end());
  h.src.assign(rg.senders.begin(), rg.senders.end());
  h.shift.resize(3 * std::size_t(E));
  for (int e = 0; e < E; ++e) {
    const Vec3 S = radius_graph_detail::lattice_shift(s.cell, rg.shifts[e]);
    for (int a = 0; a < 3; ++a) h.shift[3 * e + a] = S[a];
  }
  h.volume.assign(std::size_t(h.num_graphs), h.num_graphs == 1 ? stress_volume(s) : 0.0);
  h.finish(int(species.size()));
}

/// A host code's neighbour list (see HostNeighborList). Each listed atom's edges are its listed
/// neighbours closer than the cutoff, in increasing neighbour index; with max_neighbours > 0 only the
/// nearest max_neighbours are kept (ties broken by neighbour index), as radius_graph does.
class HostListBuilder {
 public:
  void build(const HostNeighborList& nl, double cutoff, int max_neighbours, const SpeciesMap& species, HostBatch& h) {
    const int N = nl.n_all, NL = nl.n_local;
    if (NL < 0 || N < NL) throw std::invalid_argument("hydragnn::HostListBuilder: need 0 <= n_local <= n_all");
    h.num_graphs = 2;
    h.num_atoms = N;
    h.graph_ptr.assign({0, NL, N});
    h.species.resize(N);
    h.numbers.assign(nl.numbers, nl.numbers + N);
    h.pos.assign(nl.x, nl.x + 3 * std::size_t(N));
    for (int i = 0; i < N; ++i) h.species[i] = species_index(species, nl.numbers[i], i, "neighbour list");
    // the listed atoms' rows
    has_list_.assign(N, -1);
    for (int k = 0; k < nl.inum; ++k) {
      const int i = nl.ilist ? nl.ilist[k] : k;
      if (i < 0 || i >= N) throw std::invalid_argument("hydragnn::HostListBuilder: ilist entry " + std::to_string(i) + " outside [0, n_all)");
      has_list_[i] = k;
    }
    for (int i = 0; i < NL; ++i)
      if (has_list_[i] < 0)
        throw std::invalid_argument("hydragnn::HostListBuilder: owned atom " + std::to_string(i) + " has no neighbour list");
    const double rc2 = cutoff * cutoff;
    h.row_ptr.assign(N + 1, 0);
    h.dst.clear();
    h.src.clear();
    for (int i = 0; i < N; ++i) {
      h.row_ptr[i] = int(h.dst.size());
      if (has_list_[i] < 0) continue;
      cand_.clear();
      const int* list = nl.firstneigh[i];
      for (int k = 0; k < nl.numneigh[i]; ++k) {
        const int j = list[k] & nl.mask;
        if (j < 0 || j >= N) throw std::invalid_argument("hydragnn::HostListBuilder: neighbour " + std::to_string(j) + " of atom " + std::to_string(i) + " outside [0, n_all)");
        if (j == i) continue;
        double r2 = 0;
        for (int a = 0; a < 3; ++a) {
          const double d = nl.x[3 * std::size_t(i) + a] - nl.x[3 * std::size_t(j) + a];
          r2 += d * d;
        }
        if (r2 < rc2) cand_.push_back({r2, j});
      }
      if (max_neighbours > 0 && cand_.size() > std::size_t(max_neighbours)) {
        std::nth_element(cand_.begin(), cand_.begin() + (max_neighbours - 1), cand_.end());
        cand_.resize(std::size_t(max_neighbours));
      }
      std::sort(cand_.begin(), cand_.end(), [](const Cand& a, const Cand& b) { return a.j < b.j; });
      for (const Cand& c : cand_) {
        h.dst.push_back(i);
        h.src.push_back(c.j);
      }
    }
    h.row_ptr[N] = int(h.dst.size());
    h.num_edges = int(h.dst.size());
    h.graph_edge_ptr.assign({0, h.row_ptr[NL], h.num_edges});
    h.shift.assign(3 * std::size_t(h.num_edges), 0.0);
    h.volume.assign({0.0, 0.0});
    h.finish(int(species.size()));
  }

 private:
  struct Cand {
    double r2;
    int j;
    bool operator<(const Cand& o) const { return r2 < o.r2 || (r2 == o.r2 && j < o.j); }
  };
  std::vector<int> has_list_;
  std::vector<Cand> cand_;
};

/// What an owned atom's energy can read through `layers` message-passing layers, and nothing more:
/// atom i at h hops from the owned atoms (along edges j -> i, i.e. from receiver to sender) needs its
/// layer-(layers - h) features. Ghosts more than `layers` hops away are dropped, and ghosts exactly
/// `layers` hops away keep no incoming edges (only their embeddings are read). The owned atoms'
/// energies, and every force and virial, are those of the full graph; the work is that of the
/// receptive field instead of the whole ghost shell. Applies to a two-graph (owned | ghosts) batch;
/// kept atoms keep their order, origin[k] is the host index of atom k.
class ReceptiveField {
 public:
  void apply(HostBatch& h, int layers, int num_species) {
    h.origin.clear();
    if (h.num_graphs != 2) return;
    const int N = h.num_atoms, NL = h.graph_ptr[1];
    hop_.assign(N, INT_MAX);
    frontier_.clear();
    for (int i = 0; i < NL; ++i) {
      hop_[i] = 0;
      frontier_.push_back(i);
    }
    for (int l = 0; l < layers; ++l) {
      next_.clear();
      for (int i : frontier_)
        for (int e = h.row_ptr[i]; e < h.row_ptr[i + 1]; ++e)
          if (hop_[h.src[e]] == INT_MAX) {
            hop_[h.src[e]] = l + 1;
            next_.push_back(h.src[e]);
          }
      frontier_.swap(next_);
    }
    index_.assign(N, -1);
    for (int i = 0; i < N; ++i)
      if (hop_[i] <= layers) {
        index_[i] = int(h.origin.size());
        h.origin.push_back(i);
      }
    const int K = int(h.origin.size());
    // compact in place (new index <= old index): atoms, then the edges of receivers inside the field
    for (int k = 0; k < K; ++k) {
      const int i = h.origin[k];
      for (int a = 0; a < 3; ++a) h.pos[3 * std::size_t(k) + a] = h.pos[3 * std::size_t(i) + a];
      h.species[k] = h.species[i];
      h.numbers[k] = h.numbers[i];
    }
    row_.assign(K + 1, 0);
    int E2 = 0;
    for (int k = 0; k < K; ++k) {
      const int i = h.origin[k];
      row_[k] = E2;
      if (hop_[i] >= layers) continue;
      for (int e = h.row_ptr[i]; e < h.row_ptr[i + 1]; ++e, ++E2) {
        h.dst[E2] = k;
        h.src[E2] = index_[h.src[e]];  // a sender is at most one hop further: inside the field
        for (int a = 0; a < 3; ++a) h.shift[3 * std::size_t(E2) + a] = h.shift[3 * std::size_t(e) + a];
      }
    }
    row_[K] = E2;
    h.row_ptr.swap(row_);
    h.num_atoms = K;
    h.num_edges = E2;
    h.pos.resize(3 * std::size_t(K));
    h.species.resize(K);
    h.numbers.resize(K);
    h.dst.resize(E2);
    h.src.resize(E2);
    h.shift.resize(3 * std::size_t(E2));
    h.graph_ptr.assign({0, NL, K});
    h.graph_edge_ptr.assign({0, h.row_ptr[NL], E2});
    h.finish(num_species);
  }

 private:
  std::vector<int> hop_, frontier_, next_, index_, row_;
};

namespace host_batch_detail {
/// A host vector into the workspace slot `label` (index 0).
template <class M, class V>
Vec<V, M> upload(Workspace<M>& ws, const char* label, const std::vector<V>& v) {
  auto d = ws.template vec<V>(label, 0, v.size());
  Kokkos::deep_copy(d, Kokkos::View<const V*, Kokkos::HostSpace, Kokkos::MemoryUnmanaged>(v.data(), v.size()));
  return d;
}
}  // namespace host_batch_detail

/// The device Batch of a HostBatch, in slots of ws (no allocation once they have grown). The batch
/// has no targets; it is valid until the same workspace uploads a larger one.
template <class M>
Batch<M> upload_batch(const HostBatch& h, Workspace<M>& ws) {
  Batch<M> b;
  b.num_graphs = h.num_graphs;
  b.num_atoms = h.num_atoms;
  b.num_edges = h.num_edges;
  auto up = [&](const char* label, const auto& v) { return host_batch_detail::upload(ws, label, v); };
  auto up3 = [&](const char* label, const std::vector<double>& v) {
    auto d = ws.template mat<double>(label, 0, v.size() / 3, 3);
    Kokkos::deep_copy(d, Kokkos::View<const double**, Kokkos::LayoutRight, Kokkos::HostSpace, Kokkos::MemoryUnmanaged>(
                             v.data(), v.size() / 3, 3));
    return d;
  };
  b.graph_ptr = up("hydragnn::HostBatch::graph_ptr", h.graph_ptr);
  b.graph_edge_ptr = up("hydragnn::HostBatch::graph_edge_ptr", h.graph_edge_ptr);
  b.atom_graph = up("hydragnn::HostBatch::atom_graph", h.atom_graph);
  b.species = up("hydragnn::HostBatch::species", h.species);
  b.species_perm = up("hydragnn::HostBatch::species_perm", h.species_perm);
  b.species_ptr = up("hydragnn::HostBatch::species_ptr", h.species_ptr);
  b.pos = up3("hydragnn::HostBatch::pos", h.pos);
  b.volume = up("hydragnn::HostBatch::volume", h.volume);
  b.row_ptr = up("hydragnn::HostBatch::row_ptr", h.row_ptr);
  b.dst = up("hydragnn::HostBatch::dst", h.dst);
  b.src = up("hydragnn::HostBatch::src", h.src);
  b.shift = up3("hydragnn::HostBatch::shift", h.shift);
  b.send_perm = up("hydragnn::HostBatch::send_perm", h.send_perm);
  b.send_ptr = up("hydragnn::HostBatch::send_ptr", h.send_ptr);
  if (h.edge_pair.size() == std::size_t(h.num_edges)) {
    b.num_pairs = int(h.pair_first.size());
    b.pair_first = up("hydragnn::HostBatch::pair_first", h.pair_first);
    b.pair_second = up("hydragnn::HostBatch::pair_second", h.pair_second);
    b.edge_pair = up("hydragnn::HostBatch::edge_pair", h.edge_pair);
  }
  b.inv_count = up("hydragnn::HostBatch::inv_count", h.inv_count);
  if (h.branch > 0) {  // every graph in branch h.branch: branches 0 .. h.branch-1 hold none
    b.branch_graph_ptr.assign(std::size_t(h.branch) + 1, 0);
    b.branch_graph_ptr.push_back(h.num_graphs);
    b.branch_atom_ptr.assign(std::size_t(h.branch) + 1, 0);
    b.branch_atom_ptr.push_back(h.num_atoms);
  }
  return b;  // host label copies (natoms, numbers, targets) stay empty: the model does not read them
}

/// Uploads a triplet CSR into workspace slots of b (no allocation once the slots are large enough).
template <class M>
void upload_triplets(const TripletCsr& t, Workspace<M>& ws, Batch<M>& b) {
  auto up = [&](const char* label, const std::vector<int>& v) { return host_batch_detail::upload(ws, label, v); };
  b.triplets.num_edges = t.num_edges;
  b.triplets.num_triplets = int(t.size());
  b.triplets.ptr = up("hydragnn::HostBatch::triplet_ptr", t.ptr);
  b.triplets.ji = up("hydragnn::HostBatch::triplet_ji", t.ji);
  b.triplets.kj = up("hydragnn::HostBatch::triplet_kj", t.kj);
  b.triplets.kj_perm = up("hydragnn::HostBatch::triplet_kj_perm", t.kj_perm);
  b.triplets.kj_ptr = up("hydragnn::HostBatch::triplet_kj_ptr", t.kj_ptr);
  b.has_triplets = true;
}

}  // namespace hydragnn
