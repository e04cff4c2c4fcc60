// SPDX-License-Identifier: BSD-3-Clause
// Host-side triplet CSR of DimeNet (k -> j -> i), deterministic.
//
// Edge e = (src j -> dst i) with integer image shift n_e has the edge vector
// r_e = x_dst - x_src + n_e . cell (radius_graph.hpp). For each edge ji (j -> i) the triplets are all
// edges kj (k -> j, i.e. dst(kj) = j = src(ji)) except the reverse of ji itself: the edge with
// src(kj) = i, dst(kj) = j and n_kj = -n_ji (same atoms, opposite image). With periodic images k may
// be i through another image (or even j itself, or kj may be ji itself for an atom bonded to its own
// image); those triplets are kept. (PyG/HydraGNN's triplets() drop every k == i instead, which is only
// right without periodic images.)
//
// Order: triplets sorted by ji (ptr over edges), then by kj within a ji. kj_perm lists the triplets
// sorted by (kj, t) with kj_ptr over edges: the segments for the deterministic backward of a gather
// by kj. Edges must be sorted by receiver (dst non-decreasing), as radius_graph and Batch produce.
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/core/types.hpp>
#include <hydragnn/graph/radius_graph.hpp>

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct TripletCsr {
  int num_edges = 0;
  std::vector<int> ptr;      ///< E+1: triplets of edge ji are [ptr[ji], ptr[ji+1])
  std::vector<int> ji, kj;   ///< T: the two edges of triplet t (k -> j -> i)
  std::vector<int> kj_perm;  ///< T: triplet ids sorted by (kj, t)
  std::vector<int> kj_ptr;   ///< E+1: triplets with kj = e are kj_perm[kj_ptr[e] .. kj_ptr[e+1])
  std::size_t size() const { return ji.size(); }
};

namespace triplets_detail {
/// Receiver CSR of a receiver-sorted edge list.
inline std::vector<int> receiver_ptr(const std::vector<int>& dst, int num_nodes) {
  std::vector<int> ptr(std::size_t(num_nodes) + 1, 0);
  for (std::size_t e = 0; e < dst.size(); ++e) {
    if (dst[e] < 0 || dst[e] >= num_nodes) throw std::invalid_argument("build_triplets: receiver out of range");
    if (e > 0 && dst[e] < dst[e - 1]) throw std::invalid_argument("build_triplets: edges are not sorted by receiver");
    ++ptr[dst[e] + 1];
  }
  for (int i = 0; i < num_nodes; ++i) ptr[i + 1] += ptr[i];
  return ptr;
}

/// Triplets given a predicate is_reverse(ji, kj).
template <class IsReverse>
TripletCsr build(const std::vector<int>& dst, const std::vector<int>& src, int num_nodes, IsReverse&& is_reverse) {
  if (dst.size() != src.size()) throw std::invalid_argument("build_triplets: dst and src differ in length");
  const int E = int(dst.size());
  const std::vector<int> rptr = receiver_ptr(dst, num_nodes);
  TripletCsr t;
  t.num_edges = E;
  t.ptr.assign(std::size_t(E) + 1, 0);
  for (int a = 0; a < E; ++a) {
    const int j = src[a];
    if (j < 0 || j >= num_nodes) throw std::invalid_argument("build_triplets: sender out of range");
    for (int b = rptr[j]; b < rptr[j + 1]; ++b) {  // edges k -> j, ascending
      if (is_reverse(a, b)) continue;
      t.ji.push_back(a);
      t.kj.push_back(b);
    }
    t.ptr[a + 1] = int(t.ji.size());
  }
  // Counting sort of triplets by kj (stable: ascending t within each kj).
  const std::size_t T = t.ji.size();
  t.kj_ptr.assign(std::size_t(E) + 1, 0);
  for (std::size_t q = 0; q < T; ++q) ++t.kj_ptr[t.kj[q] + 1];
  for (int e = 0; e < E; ++e) t.kj_ptr[e + 1] += t.kj_ptr[e];
  t.kj_perm.resize(T);
  std::vector<int> fill(t.kj_ptr.begin(), t.kj_ptr.end() - 1);
  for (std::size_t q = 0; q < T; ++q) t.kj_perm[fill[t.kj[q]]++] = int(q);
  return t;
}
}  // namespace triplets_detail

/// Triplets from receiver-sorted edges with integer image shifts (the reverse of ji is the edge
/// i -> j with the opposite shift).
inline TripletCsr build_triplets(const std::vector<int>& dst, const std::vector<int>& src,
                               const std::vector<std::array<int, 3>>& shifts, int num_nodes) {
  if (shifts.size() != dst.size()) throw std::invalid_argument("build_triplets: shifts and dst differ in length");
  return triplets_detail::build(dst, src, num_nodes, [&](int a, int b) {
    return src[b] == dst[a] && shifts[b][0] == -shifts[a][0] && shifts[b][1] == -shifts[a][1] &&
           shifts[b][2] == -shifts[a][2];
  });
}

/// Triplets from receiver-sorted edges with Cartesian shifts (E x 3, row-major; the reverse of ji is
/// the edge i -> j with the negated shift: exact, since (-n) . cell == -(n . cell) in floating point).
inline TripletCsr build_triplets(const std::vector<int>& dst, const std::vector<int>& src,
                               const std::vector<double>& shift, int num_nodes) {
  if (shift.size() != 3 * dst.size()) throw std::invalid_argument("build_triplets: shift is not E x 3");
  return triplets_detail::build(dst, src, num_nodes, [&](int a, int b) {
    return src[b] == dst[a] && shift[3 * b] == -shift[3 * a] && shift[3 * b + 1] == -shift[3 * a + 1] &&
           shift[3 * b + 2] == -shift[3 * a + 2];
  });
}

/// Triplets from receiver-sorted edges and an edge-reverse map (reverse[e] = the edge opposite to e,
/// or -1 if it has none).
inline TripletCsr build_triplets(const std::vector<int>& dst, const std::vector<int>& src,
                               const std::vector<int>& reverse, int num_nodes) {
  if (reverse.size() != dst.size()) throw std::invalid_argument("build_triplets: reverse and dst differ in length");
  return triplets_detail::build(dst, src, num_nodes, [&](int a, int b) { return reverse[a] == b; });
}

/// Triplets of one radius graph.
inline TripletCsr build_triplets(const RadiusGraph& g) {
  return build_triplets(g.receivers, g.senders, g.shifts, g.num_nodes);
}

/// Triplets of a batch of radius graphs concatenated in order, as make_batch lays them out (atoms of
/// graph g offset by the atoms before it, edges by the edges before it).
inline TripletCsr build_triplets(const std::vector<const RadiusGraph*>& graphs) {
  std::vector<int> dst, src;
  std::vector<std::array<int, 3>> shifts;
  int a0 = 0;
  for (const RadiusGraph* g : graphs) {
    for (std::size_t e = 0; e < g->num_edges(); ++e) {
      dst.push_back(a0 + g->receivers[e]);
      src.push_back(a0 + g->senders[e]);
      shifts.push_back(g->shifts[e]);
    }
    a0 += g->num_nodes;
  }
  return build_triplets(dst, src, shifts, a0);
}

template <class M>
DeviceTripletCsr<M> to_device(const TripletCsr& t) {
  auto up = [](const std::string& label, const std::vector<int>& v) {
    Vec<int, M> d(label, v.size());
    auto h = Kokkos::create_mirror_view(d);
    for (std::size_t i = 0; i < v.size(); ++i) h(i) = v[i];
    Kokkos::deep_copy(d, h);
    return d;
  };
  DeviceTripletCsr<M> d;
  d.num_edges = t.num_edges;
  d.num_triplets = int(t.size());
  d.ptr = up("hydragnn::TripletCsr::ptr", t.ptr);
  d.ji = up("hydragnn::TripletCsr::ji", t.ji);
  d.kj = up("hydragnn::TripletCsr::kj", t.kj);
  d.kj_perm = up("hydragnn::TripletCsr::kj_perm", t.kj_perm);
  d.kj_ptr = up("hydragnn::TripletCsr::kj_ptr", t.kj_ptr);
  return d;
}

}  // namespace hydragnn
