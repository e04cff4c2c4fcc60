// SPDX-License-Identifier: BSD-3-Clause
// Pairs of mutually reverse edges of a receiver-sorted edge list: edge e = (j -> i, shift S) and
// edge q = (i -> j, shift -S) carry the same distance, r_q = -r_e exactly (r = pos[dst] - pos[src] +
// S, and negation commutes with rounding), so anything that depends only on |r| (a radial filter)
// is computed once per pair. A radius graph lists both directions of every pair unless a
// neighbour cap dropped one; such an edge and an edge whose reverse is absent (a ghost graph) is a
// pair of its own.
#pragma once

#include <cstddef>
#include <vector>

namespace hydragnn {

/// Pairs of the edges [0, E): pair u holds first[u] (the lower edge index; pairs in ascending order
/// of it) and second[u] (the reverse edge, or -1); of_edge[e] is the pair of edge e. row_ptr: N+1
/// receiver CSR of dst; shift: E*3 Cartesian shifts. O(E x degree), deterministic.
inline void edge_pairs(const std::vector<int>& row_ptr, const std::vector<int>& dst, const std::vector<int>& src,
                       const std::vector<double>& shift, std::vector<int>& first, std::vector<int>& second,
                       std::vector<int>& of_edge) {
  const std::size_t E = dst.size();
  first.clear();
  second.clear();
  of_edge.assign(E, -1);
  for (std::size_t e = 0; e < E; ++e) {
    if (of_edge[e] >= 0) continue;  // the reverse of an earlier edge
    const int u = int(first.size()), i = dst[e], j = src[e];
    int partner = -1;
    for (int q = row_ptr[std::size_t(j)]; q < row_ptr[std::size_t(j) + 1]; ++q) {
      const std::size_t qe = std::size_t(q);
      if (qe == e || src[qe] != i || of_edge[qe] >= 0) continue;
      if (shift[3 * qe] == -shift[3 * e] && shift[3 * qe + 1] == -shift[3 * e + 1] && shift[3 * qe + 2] == -shift[3 * e + 2]) {
        partner = q;
        break;
      }
    }
    first.push_back(int(e));
    second.push_back(partner);
    of_edge[e] = u;
    if (partner >= 0) of_edge[std::size_t(partner)] = u;
  }
}

}  // namespace hydragnn
