// SPDX-License-Identifier: BSD-3-Clause
// A batch of graphs in device memory: atoms of graph g are [graph_ptr(g), graph_ptr(g+1)), edges are
// sorted by receiver (CSR row_ptr) with a sender permutation, and the edges of one graph are contiguous.
// Built from structures and radius graphs by make_batch (graph/batch_builder.hpp).
#pragma once

#include <hydragnn/core/types.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace hydragnn {

/// Element list of a model: species index s <-> atomic number numbers[s].
struct SpeciesMap {
  std::vector<int> numbers;
  int index_of(int z) const {
    auto it = std::find(numbers.begin(), numbers.end(), z);
    return it == numbers.end() ? -1 : int(it - numbers.begin());
  }
  std::size_t size() const { return numbers.size(); }
};

/// A direct (non-energy) output head: its targets are the extxyz info key `name` (graph heads) or
/// the per-atom column `name` (node heads).
struct HeadDef {
  std::string name;
  bool node = false;  ///< node-level (per atom) or graph-level
  int dim = 1;
  double weight = 1.0;
};

/// Device copy of a triplet CSR (graph/triplets.hpp builds it): for each edge ji = (j -> i), the edges
/// kj = (k -> j) except ji's reverse, in order; plus the permutation sorting them by kj (backward).
template <class M>
struct DeviceTripletCsr {
  int num_edges = 0, num_triplets = 0;
  Vec<int, M> ptr, ji, kj, kj_perm, kj_ptr;
};

template <class M>
struct Batch {
  int num_graphs = 0, num_atoms = 0, num_edges = 0;
  Vec<int, M> graph_ptr;       ///< G+1 atom offsets
  Vec<int, M> graph_edge_ptr;  ///< G+1 edge offsets
  Vec<int, M> atom_graph;      ///< N
  Vec<int, M> species;         ///< N, model species index
  Vec<int, M> species_perm;    ///< atoms sorted by species
  Vec<int, M> species_ptr;     ///< num_species+1
  Mat<double, M> pos;          ///< N x 3
  Vec<double, M> volume;       ///< G (0 unless 3-D periodic)
  Vec<int, M> row_ptr;         ///< N+1 receiver CSR
  Vec<int, M> dst, src;        ///< E receivers / senders
  Mat<double, M> shift;        ///< E x 3 Cartesian shift S_e:  r_e = pos[dst] - pos[src] + S_e
  Vec<int, M> send_perm;       ///< E edges sorted by sender
  Vec<int, M> send_ptr;        ///< N+1
  // Pairs of mutually reverse edges (graph/edge_pairs.hpp), for what depends on |r| only: pair u
  // is edge pair_first(u) (ascending) and its reverse pair_second(u) (-1: none); edge_pair(e) is the
  // pair of edge e. Empty views: no pairing (every edge a pair of its own, pair u = edge u).
  int num_pairs = 0;
  Vec<int, M> pair_first, pair_second, edge_pair;
  Vec<double, M> inv_count;    ///< G, 1 / atoms per graph (mean pooling, per-atom losses)
  // Head branches (host): the graphs of branch k are [branch_graph_ptr[k], branch_graph_ptr[k+1]) and
  // their atoms [branch_atom_ptr[k], branch_atom_ptr[k+1]) (graphs are grouped by branch, ascending);
  // both have (highest branch + 2) entries. Empty: every graph is in branch 0.
  std::vector<int> branch_graph_ptr, branch_atom_ptr;
  bool has_triplets = false;    ///< built on request (convolutions with conv::Triplets connectivity)
  DeviceTripletCsr<M> triplets;
  // Targets on the device (NaN where absent): the loss and its cotangents are computed there.
  Vec<double, M> energy_t;             ///< G
  Mat<double, M> forces_t;             ///< N x 3
  Mat<double, M> stress_t;             ///< G x 9
  std::vector<Mat<double, M>> head_t;  ///< per direct head: G x dim or N x dim
  // Label counts (the loss means' denominators): energies, force components, stress components of
  // 3-D periodic graphs, components per direct head.
  long n_energy = 0, n_force = 0, n_stress = 0;
  std::vector<long> n_head;
  // Host copies of the targets.
  std::vector<double> energy;            ///< G (NaN where absent)
  std::vector<double> forces;            ///< N*3 (NaN where absent)
  std::vector<double> stress;            ///< G*9 (NaN where absent)
  std::vector<int> natoms;               ///< G
  std::vector<int> numbers;              ///< N atomic numbers (host)
  std::vector<std::vector<double>> head_targets;  ///< per extra head: G*dim or N*dim (NaN where absent)
};

}  // namespace hydragnn
