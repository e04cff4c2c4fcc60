// SPDX-License-Identifier: BSD-3-Clause
// Host-side radius graph (neighbour list) with periodic boundary conditions, plain C++17.
//
// Algorithm, O(N) once the cell is larger than the cutoff:
//  1. Basis B: rows are the lattice vectors of the periodic directions; rows of non-periodic
//     directions are replaced by unit vectors orthogonal to the periodic ones, so the cell may be
//     absent or degenerate along directions that are not periodic. Fractional coordinates
//     f_k = x . b_k with reciprocal vectors b_k = (a_l x a_m) / V, |b_k| = 1 / d_k where
//     d_k = V / |a_l x a_m| is the spacing of the lattice planes normal to b_k.
//  2. Every atom is wrapped into [0,1) along the periodic directions (its integer offset is kept
//     so shifts can be reported for the positions exactly as given).
//  3. Periodic images ("ghosts") are added for every image whose fractional coordinate lies within
//     R / d_k of the fractional range occupied by the atoms. Since |df_k| <= |dx| / d_k, no image
//     closer than R to an atom is missed; when the cell is smaller than the cutoff several images of
//     the same atom appear automatically.
//  4. Atoms and ghosts are counting-sorted into a grid of bins in fractional space whose width along
//     k is >= R / d_k, so any pair closer than R lies in neighbouring bins: 27 bins are searched.
//  5. Candidates are confirmed with the exact edge vector computed from the unwrapped positions, and
//     edges are sorted, so the output depends only on the input (no hashing, no thread order).
#pragma once

#include <hydragnn/core/structure.hpp>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace hydragnn {

/// Thrown for invalid input to radius_graph (bad cutoff, non-finite or overlapping atoms, bad cell).
struct GraphError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Edges of one structure, sorted by receiver (CSR).
struct RadiusGraph {
  int num_nodes = 0;
  std::vector<int> row_ptr;               ///< num_nodes+1: edges of receiver i are [row_ptr[i], row_ptr[i+1])
  std::vector<int> receivers, senders;    ///< per edge
  std::vector<std::array<int, 3>> shifts; ///< integer lattice image n_e per edge
  // Edge vector convention:  r_e = x[receivers[e]] - x[senders[e]] + S_e,
  // S_e = n_e[0]*a + n_e[1]*b + n_e[2]*c, using the positions exactly as given (unwrapped),
  // so |r_e| < cutoff (tested as |r_e|^2 < cutoff^2).
  std::vector<int> sender_perm; ///< edge ids sorted by (sender, edge id): a permutation of 0..E-1
  std::vector<int> sender_ptr;  ///< num_nodes+1: edges with sender j are sender_perm[sender_ptr[j] .. sender_ptr[j+1])
  std::size_t num_edges() const { return senders.size(); }
};

namespace radius_graph_detail {

inline double dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
inline double norm(const Vec3& a) { return std::sqrt(dot(a, a)); }
inline Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
inline Vec3 scaled(const Vec3& a, double s) { return {a[0] * s, a[1] * s, a[2] * s}; }

[[noreturn]] inline void fail(const Structure& s, const std::string& msg) {
  throw GraphError(s.source.empty() ? "radius_graph: " + msg : s.source + ": " + msg);
}

template <class T>
std::string str(const T& v) {
  std::ostringstream os;
  os << v;  // default precision (6 significant digits): "0.0001", "0.01"
  return os.str();
}

inline std::string str_shift(const std::array<int, 3>& n) {
  return "(" + std::to_string(n[0]) + ", " + std::to_string(n[1]) + ", " + std::to_string(n[2]) + ")";
}

inline std::string pbc_str(const std::array<bool, 3>& pbc) {
  return std::string(pbc[0] ? "T" : "F") + " " + (pbc[1] ? "T" : "F") + " " + (pbc[2] ? "T" : "F");
}

/// S = n0*a + n1*b + n2*c. Terms with n_k == 0 are skipped: for a finite cell that gives the same
/// value as the full sum, and it ignores whatever is stored in rows of non-periodic directions.
inline Vec3 lattice_shift(const Mat3& cell, const std::array<int, 3>& n) {
  Vec3 S{0.0, 0.0, 0.0};
  for (int k = 0; k < 3; ++k)
    if (n[k] != 0)
      for (int d = 0; d < 3; ++d) S[d] += n[k] * cell[k][d];
  return S;
}

/// Basis used for wrapping and binning (see the file comment). Throws for a missing or degenerate
/// cell along periodic directions.
inline Mat3 search_basis(const Structure& s) {
  static const char* const name[3] = {"a", "b", "c"};
  int per[3], non[3], np = 0, nn = 0;
  for (int k = 0; k < 3; ++k) (s.pbc[k] ? per[np++] : non[nn++]) = k;
  Mat3 B{};
  if (np == 0) {
    for (int k = 0; k < 3; ++k) B[k][k] = 1.0;
    return B;
  }
  if (!s.has_cell)
    fail(s, "pbc = " + pbc_str(s.pbc) + " has a periodic direction but the structure has no cell");
  for (int i = 0; i < np; ++i) {
    const Vec3& v = s.cell[per[i]];
    if (!std::isfinite(v[0]) || !std::isfinite(v[1]) || !std::isfinite(v[2]))
      fail(s, std::string("cell vector ") + name[per[i]] + " has a non-finite component");
    if (!(norm(v) > 0.0))
      fail(s, std::string("cell vector ") + name[per[i]] + " is zero but direction " + name[per[i]] +
                  " is periodic (degenerate cell)");
  }
  const double rel_tol = 1e-8;  // |sin| of the angle / volume fraction below which the cell is degenerate
  if (np == 3) {
    const double V = dot(s.cell[0], cross(s.cell[1], s.cell[2]));
    if (!(std::fabs(V) > rel_tol * norm(s.cell[0]) * norm(s.cell[1]) * norm(s.cell[2])))
      fail(s, "cell has zero volume (degenerate lattice vectors, V = " + str(V) + " A^3) but pbc = " +
                  pbc_str(s.pbc));
    return s.cell;
  }
  if (np == 2) {
    const Vec3& a = s.cell[per[0]];
    const Vec3& b = s.cell[per[1]];
    const Vec3 c = cross(a, b);
    const double nc = norm(c);
    if (!(nc > rel_tol * norm(a) * norm(b)))
      fail(s, std::string("periodic cell vectors ") + name[per[0]] + " and " + name[per[1]] +
                  " are parallel (degenerate cell), pbc = " + pbc_str(s.pbc));
    B[per[0]] = a;
    B[per[1]] = b;
    B[non[0]] = scaled(c, 1.0 / nc);
    return B;
  }
  // np == 1: complete the periodic vector with two orthonormal vectors.
  const Vec3& a = s.cell[per[0]];
  const Vec3 u = scaled(a, 1.0 / norm(a));
  int axis = 0;  // Cartesian axis least aligned with u
  for (int d = 1; d < 3; ++d)
    if (std::fabs(u[d]) < std::fabs(u[axis])) axis = d;
  Vec3 e{0.0, 0.0, 0.0};
  e[axis] = 1.0;
  Vec3 v = cross(u, e);
  v = scaled(v, 1.0 / norm(v));
  B[per[0]] = a;
  B[non[0]] = v;
  B[non[1]] = cross(u, v);
  return B;
}

/// One atom or periodic image in the search grid: wrapped Cartesian position p, atom index, and
/// image m relative to the wrapped atom.
struct Point {
  Vec3 p;
  int atom;
  std::array<int, 3> m;
};

/// Candidate edge of one receiver.
struct Cand {
  int sender;
  std::array<int, 3> n;
  double r2;
};

inline bool key_less(const Cand& x, const Cand& y) {
  return std::tie(x.sender, x.n[0], x.n[1], x.n[2]) < std::tie(y.sender, y.n[0], y.n[1], y.n[2]);
}

}  // namespace radius_graph_detail

/// Edge vector r_e = x[receivers[e]] - x[senders[e]] + S_e of edge e of a graph built from s.
inline Vec3 edge_vector(const Structure& s, const RadiusGraph& g, std::size_t e) {
  const Vec3& xi = s.positions[g.receivers[e]];
  const Vec3& xj = s.positions[g.senders[e]];
  const Vec3 S = radius_graph_detail::lattice_shift(s.cell, g.shifts[e]);
  return {(xi[0] - xj[0]) + S[0], (xi[1] - xj[1]) + S[1], (xi[2] - xj[2]) + S[2]};
}

/// All edges (receiver i, sender j, image n) with 0 < |r| < cutoff over all periodic images,
/// r = x_i - x_j + n.cell. max_neighbours > 0 keeps only that many nearest edges per receiver
/// (ties broken by (sender, n)). Throws GraphError for invalid input and for pairs (including an
/// atom and its own image) closer than min_distance (<= 0 disables that check).
inline RadiusGraph radius_graph(const Structure& s, double cutoff, int max_neighbours = -1,
                                double min_distance = 1e-2) {
  using namespace radius_graph_detail;
  const std::size_t N = s.size();
  if (N == 0) fail(s, "structure has no atoms");
  if (s.positions.size() != N)
    fail(s, "structure has " + std::to_string(N) + " atomic numbers but " +
                std::to_string(s.positions.size()) + " positions");
  if (N > static_cast<std::size_t>(INT_MAX / 2)) fail(s, "too many atoms");
  if (!(cutoff > 0.0) || !std::isfinite(cutoff))
    fail(s, "cutoff must be positive and finite, got " + str(cutoff));
  if (!std::isfinite(min_distance)) fail(s, "min_distance must be finite, got " + str(min_distance));
  for (std::size_t i = 0; i < N; ++i)
    for (int d = 0; d < 3; ++d)
      if (!std::isfinite(s.positions[i][d]))
        fail(s, "atom " + std::to_string(i) + " has a non-finite coordinate");

  const Mat3 B = search_basis(s);
  const bool* const per = s.pbc.data();

  // Reciprocal vectors (rows of B^-T) and plane spacings d_k.
  const double V = dot(B[0], cross(B[1], B[2]));
  Mat3 rec;
  std::array<double, 3> spacing;
  for (int k = 0; k < 3; ++k) {
    const Vec3 c = cross(B[(k + 1) % 3], B[(k + 2) % 3]);
    rec[k] = scaled(c, 1.0 / V);
    spacing[k] = std::fabs(V) / norm(c);
  }

  // Search radius: the cutoff, or min_distance if larger so that every overlap is seen. The small
  // slack (relative to the coordinate scale) covers rounding between wrapped and given positions;
  // every candidate is re-checked exactly, so slack only adds candidates.
  const double md = min_distance > 0.0 ? min_distance : 0.0;
  const double R = std::max(cutoff, md);
  double scale = R;
  for (const Vec3& x : s.positions)
    for (int d = 0; d < 3; ++d) scale = std::max(scale, std::fabs(x[d]));
  for (int k = 0; k < 3; ++k)
    if (per[k]) scale += norm(B[k]);
  const double Rs = R * (1.0 + 1e-9) + 1e-9 * scale;
  const double Rs2 = Rs * Rs;

  // Wrap atoms into [0,1) along periodic directions: x = w + off . cell.
  std::vector<Vec3> fw(N), w(N);
  std::vector<std::array<int, 3>> off(N);
  std::array<double, 3> fmin, fmax;
  fmin.fill(HUGE_VAL);
  fmax.fill(-HUGE_VAL);
  for (std::size_t i = 0; i < N; ++i) {
    const Vec3& x = s.positions[i];
    for (int k = 0; k < 3; ++k) {
      const double f = dot(x, rec[k]);
      if (per[k]) {
        const double fl = std::floor(f);
        if (!(std::fabs(fl) < 1e9))
          fail(s, "atom " + std::to_string(i) + " lies " + str(fl) + " cells away from the origin");
        off[i][k] = static_cast<int>(fl);
        fw[i][k] = f - fl;
      } else {
        off[i][k] = 0;
        fw[i][k] = f;
      }
      fmin[k] = std::min(fmin[k], fw[i][k]);
      fmax[k] = std::max(fmax[k], fw[i][k]);
    }
    const Vec3 O = lattice_shift(B, off[i]);
    w[i] = {x[0] - O[0], x[1] - O[1], x[2] - O[2]};
  }

  // Fractional window containing every atom and every image within Rs of the atoms' range, and the
  // bin grid over it (bin width >= Rs / d_k).
  std::array<double, 3> lo, hi, width;
  std::array<std::int64_t, 3> nb;
  double images_per_atom = 1.0;
  for (int k = 0; k < 3; ++k) {
    const double pad = per[k] ? Rs / spacing[k] : 0.0;
    lo[k] = fmin[k] - pad;
    hi[k] = fmax[k] + pad;
    if (per[k]) images_per_atom *= std::floor(hi[k] - lo[k]) + 1.0;
  }
  if (images_per_atom * static_cast<double>(N) > 2e8)
    fail(s, "cell is too small for cutoff " + str(R) + " A: about " + str(images_per_atom) +
                " periodic images per atom would be needed");
  const double est_points = images_per_atom * static_cast<double>(N);
  const double max_bins = std::max(64.0, 2.0 * est_points);
  for (int k = 0; k < 3; ++k) {
    const double nbins = std::floor((hi[k] - lo[k]) / (Rs / spacing[k]));
    nb[k] = static_cast<std::int64_t>(std::max(1.0, std::min(nbins, max_bins)));
  }
  // Sparse or very elongated systems: merge bins (wider bins stay correct) to bound memory.
  while (static_cast<double>(nb[0]) * static_cast<double>(nb[1]) * static_cast<double>(nb[2]) > max_bins) {
    const int k = static_cast<int>(std::max_element(nb.begin(), nb.end()) - nb.begin());
    nb[k] = (nb[k] + 1) / 2;
  }
  for (int k = 0; k < 3; ++k) width[k] = (hi[k] - lo[k]) / static_cast<double>(nb[k]);
  auto bin_of = [&](int k, double f) -> std::int64_t {
    if (nb[k] == 1) return 0;
    const double t = std::floor((f - lo[k]) / width[k]);
    return t < 0.0 ? 0 : (t >= static_cast<double>(nb[k]) ? nb[k] - 1 : static_cast<std::int64_t>(t));
  };
  const std::size_t nbins = static_cast<std::size_t>(nb[0] * nb[1] * nb[2]);

  // Atoms and ghosts with their bin; image m_k ranges over the window along periodic k.
  std::vector<Point> pts;
  std::vector<std::size_t> pbin;
  pts.reserve(static_cast<std::size_t>(std::min(est_points, 1.5 * static_cast<double>(N) + 1e6)));
  pbin.reserve(pts.capacity());
  for (std::size_t j = 0; j < N; ++j) {
    int mlo[3], mhi[3];
    for (int k = 0; k < 3; ++k) {
      mlo[k] = per[k] ? static_cast<int>(std::ceil(lo[k] - fw[j][k])) : 0;
      mhi[k] = per[k] ? static_cast<int>(std::floor(hi[k] - fw[j][k])) : 0;
    }
    for (int m0 = mlo[0]; m0 <= mhi[0]; ++m0)
      for (int m1 = mlo[1]; m1 <= mhi[1]; ++m1)
        for (int m2 = mlo[2]; m2 <= mhi[2]; ++m2) {
          const std::array<int, 3> m{m0, m1, m2};
          const Vec3 T = lattice_shift(B, m);
          const std::int64_t b0 = bin_of(0, fw[j][0] + m0), b1 = bin_of(1, fw[j][1] + m1),
                             b2 = bin_of(2, fw[j][2] + m2);
          pts.push_back({{w[j][0] + T[0], w[j][1] + T[1], w[j][2] + T[2]}, static_cast<int>(j), m});
          pbin.push_back(static_cast<std::size_t>((b0 * nb[1] + b1) * nb[2] + b2));
        }
  }

  // Stable counting sort of the points by bin.
  std::vector<std::size_t> bin_start(nbins + 1, 0);
  for (std::size_t b : pbin) ++bin_start[b + 1];
  for (std::size_t b = 0; b < nbins; ++b) bin_start[b + 1] += bin_start[b];
  std::vector<Point> sorted(pts.size());
  {
    std::vector<std::size_t> fill(bin_start.begin(), bin_start.end() - 1);
    for (std::size_t q = 0; q < pts.size(); ++q) sorted[fill[pbin[q]]++] = pts[q];
  }
  std::vector<Point>().swap(pts);
  std::vector<std::size_t>().swap(pbin);

  RadiusGraph g;
  g.num_nodes = static_cast<int>(N);
  g.row_ptr.assign(N + 1, 0);
  const double rc2 = cutoff * cutoff;
  const double md2 = md * md;
  std::vector<Cand> cand;
  for (std::size_t i = 0; i < N; ++i) {
    cand.clear();
    const Vec3& xi = s.positions[i];
    const Vec3& wi = w[i];
    bool overlap = false;
    Cand worst{};  // overlap with the smallest (sender, n), reported deterministically
    std::int64_t bc[3];
    for (int k = 0; k < 3; ++k) bc[k] = bin_of(k, fw[i][k]);
    for (std::int64_t b0 = std::max<std::int64_t>(0, bc[0] - 1); b0 <= std::min(nb[0] - 1, bc[0] + 1); ++b0)
      for (std::int64_t b1 = std::max<std::int64_t>(0, bc[1] - 1); b1 <= std::min(nb[1] - 1, bc[1] + 1); ++b1)
        for (std::int64_t b2 = std::max<std::int64_t>(0, bc[2] - 1); b2 <= std::min(nb[2] - 1, bc[2] + 1);
             ++b2) {
          const std::size_t b = static_cast<std::size_t>((b0 * nb[1] + b1) * nb[2] + b2);
          for (std::size_t q = bin_start[b]; q < bin_start[b + 1]; ++q) {
            const Point& P = sorted[q];
            const double dx = wi[0] - P.p[0], dy = wi[1] - P.p[1], dz = wi[2] - P.p[2];
            if (dx * dx + dy * dy + dz * dz >= Rs2) continue;
            const int j = P.atom;
            if (j == static_cast<int>(i) && P.m[0] == 0 && P.m[1] == 0 && P.m[2] == 0) continue;
            // Shift for the given (unwrapped) positions: r = x_i - x_j + S, S = (off_j - off_i - m).cell
            const std::array<int, 3> n{off[j][0] - off[i][0] - P.m[0], off[j][1] - off[i][1] - P.m[1],
                                       off[j][2] - off[i][2] - P.m[2]};
            const Vec3& xj = s.positions[j];
            const Vec3 S = lattice_shift(s.cell, n);
            const double rx = (xi[0] - xj[0]) + S[0], ry = (xi[1] - xj[1]) + S[1],
                         rz = (xi[2] - xj[2]) + S[2];
            const double r2 = rx * rx + ry * ry + rz * rz;
            const Cand c{j, n, r2};
            if (r2 < md2) {
              if (!overlap || key_less(c, worst)) worst = c;
              overlap = true;
            } else if (r2 > 0.0 && r2 < rc2) {
              cand.push_back(c);
            }
          }
        }
    if (overlap) {
      const std::string d = "distance " + str(std::sqrt(worst.r2)) + " A < " + str(md) + " A";
      const bool image = worst.n[0] != 0 || worst.n[1] != 0 || worst.n[2] != 0;
      if (worst.sender == static_cast<int>(i))
        fail(s, "atom " + std::to_string(i) + " and its own periodic image " + str_shift(worst.n) +
                    " overlap: " + d + " (cell too small)");
      fail(s, "atoms " + std::to_string(i) + " and " + std::to_string(worst.sender) + " overlap: " + d +
                  (image ? " (periodic image " + str_shift(worst.n) + " of atom " +
                               std::to_string(worst.sender) + ")"
                         : std::string()));
    }
    if (max_neighbours > 0 && cand.size() > static_cast<std::size_t>(max_neighbours)) {
      // Keep the max_neighbours nearest; ties broken by (sender, n).
      auto nearer = [](const Cand& x, const Cand& y) {
        return x.r2 < y.r2 || (x.r2 == y.r2 && key_less(x, y));
      };
      std::nth_element(cand.begin(), cand.begin() + (max_neighbours - 1), cand.end(), nearer);
      cand.resize(static_cast<std::size_t>(max_neighbours));
    }
    std::sort(cand.begin(), cand.end(), key_less);
    if (g.senders.size() + cand.size() > static_cast<std::size_t>(INT_MAX))
      fail(s, "too many edges for 32-bit edge indices");
    for (const Cand& c : cand) {
      g.receivers.push_back(static_cast<int>(i));
      g.senders.push_back(c.sender);
      g.shifts.push_back(c.n);
    }
    g.row_ptr[i + 1] = static_cast<int>(g.senders.size());
  }

  // Sender-major view: stable counting sort of edge ids by sender.
  const std::size_t E = g.senders.size();
  g.sender_ptr.assign(N + 1, 0);
  for (int j : g.senders) ++g.sender_ptr[j + 1];
  for (std::size_t j = 0; j < N; ++j) g.sender_ptr[j + 1] += g.sender_ptr[j];
  g.sender_perm.resize(E);
  {
    std::vector<int> fill(g.sender_ptr.begin(), g.sender_ptr.end() - 1);
    for (std::size_t e = 0; e < E; ++e) g.sender_perm[fill[g.senders[e]]++] = static_cast<int>(e);
  }
  return g;
}

}  // namespace hydragnn
