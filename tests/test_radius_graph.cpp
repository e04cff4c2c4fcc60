// SPDX-License-Identifier: BSD-3-Clause
// Tests for the host-side periodic radius graph (include/hydragnn/graph/radius_graph.hpp).
// The reference is a brute-force O(N^2 * images) search over a generous image range.
#include <hydragnn/graph/edge_pairs.hpp>
#include <hydragnn/graph/radius_graph.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

using hydragnn::GraphError;
using hydragnn::Mat3;
using hydragnn::radius_graph;
using hydragnn::RadiusGraph;
using hydragnn::Structure;
using hydragnn::Vec3;

namespace {

const double kPi = std::acos(-1.0);

using Shift = std::array<int, 3>;
using Key = std::tuple<int, int, int, int, int>;  // (receiver, sender, n0, n1, n2)
using EdgeMap = std::map<Key, Vec3>;

Key key(int i, int j, const Shift& n) { return Key{i, j, n[0], n[1], n[2]}; }

double norm3(const Vec3& v) { return std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); }
Vec3 cross3(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

Structure make_structure(const Mat3& cell, std::array<bool, 3> pbc, const std::vector<Vec3>& pos,
                         bool has_cell = true) {
  Structure s;
  s.cell = cell;
  s.pbc = pbc;
  s.has_cell = has_cell;
  s.positions = pos;
  s.numbers.assign(pos.size(), 6);
  return s;
}

/// Reference edge vector x_i - x_j + n.cell (only periodic rows contribute, n_k = 0 otherwise).
Vec3 ref_vector(const Structure& s, int i, int j, const Shift& n) {
  Vec3 r;
  for (int d = 0; d < 3; ++d) {
    double S = 0.0;
    for (int k = 0; k < 3; ++k)
      if (n[k] != 0) S += n[k] * s.cell[k][d];
    r[d] = (s.positions[i][d] - s.positions[j][d]) + S;
  }
  return r;
}

/// Plane spacing of the periodic sub-lattice along periodic direction k.
double sublattice_spacing(const Structure& s, int k) {
  std::vector<int> per;
  for (int l = 0; l < 3; ++l)
    if (s.pbc[l]) per.push_back(l);
  if (per.size() == 3) {
    const Vec3 c = cross3(s.cell[(k + 1) % 3], s.cell[(k + 2) % 3]);
    const Vec3& a = s.cell[k];
    return std::fabs(a[0] * c[0] + a[1] * c[1] + a[2] * c[2]) / norm3(c);
  }
  if (per.size() == 2) {
    const int l = per[0] == k ? per[1] : per[0];
    return norm3(cross3(s.cell[k], s.cell[l])) / norm3(s.cell[l]);
  }
  return norm3(s.cell[k]);
}

/// Real lattice coordinates t (periodic directions only) minimising |dx + t.cell|: the projection
/// of -dx onto the periodic sub-lattice, from the normal equations G t = -A dx (Gaussian elimination).
std::array<double, 3> nearest_image(const Structure& s, const Vec3& dx) {
  std::vector<int> per;
  for (int l = 0; l < 3; ++l)
    if (s.pbc[l]) per.push_back(l);
  const int p = static_cast<int>(per.size());
  double G[3][4] = {};
  for (int a = 0; a < p; ++a) {
    for (int b = 0; b < p; ++b)
      for (int d = 0; d < 3; ++d) G[a][b] += s.cell[per[a]][d] * s.cell[per[b]][d];
    for (int d = 0; d < 3; ++d) G[a][3] -= s.cell[per[a]][d] * dx[d];
  }
  for (int c = 0; c < p; ++c) {
    int piv = c;
    for (int r = c + 1; r < p; ++r)
      if (std::fabs(G[r][c]) > std::fabs(G[piv][c])) piv = r;
    for (int q = 0; q < 4; ++q) std::swap(G[c][q], G[piv][q]);
    for (int r = 0; r < p; ++r)
      if (r != c) {
        const double f = G[r][c] / G[c][c];
        for (int q = 0; q < 4; ++q) G[r][q] -= f * G[c][q];
      }
  }
  std::array<double, 3> t{0.0, 0.0, 0.0};
  for (int a = 0; a < p; ++a) t[per[a]] = G[a][3] / G[a][a];
  return t;
}

/// Reference: every pair, every image within a generous window around the nearest image. With t*
/// the minimiser above, any image n with |dx + n.cell| < rc has |n_k - t*_k| <= rc / d_k.
EdgeMap brute_force(const Structure& s, double rc) {
  Shift half{0, 0, 0};
  for (int k = 0; k < 3; ++k)
    if (s.pbc[k]) half[k] = static_cast<int>(std::ceil(rc / sublattice_spacing(s, k))) + 2;
  const int N = static_cast<int>(s.size());
  EdgeMap out;
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < N; ++j) {
      const Vec3 dx{s.positions[i][0] - s.positions[j][0], s.positions[i][1] - s.positions[j][1],
                    s.positions[i][2] - s.positions[j][2]};
      const std::array<double, 3> t = nearest_image(s, dx);
      Shift c;
      for (int k = 0; k < 3; ++k) c[k] = static_cast<int>(std::lround(t[k]));
      for (int n0 = c[0] - half[0]; n0 <= c[0] + half[0]; ++n0)
        for (int n1 = c[1] - half[1]; n1 <= c[1] + half[1]; ++n1)
          for (int n2 = c[2] - half[2]; n2 <= c[2] + half[2]; ++n2) {
            const Shift n{n0, n1, n2};
            const Vec3 r = ref_vector(s, i, j, n);
            const double r2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
            if (r2 > 0.0 && r2 < rc * rc) {
              // The window must be generous: no edge may sit on its boundary.
              for (int k = 0; k < 3; ++k)
                if (s.pbc[k] && std::abs(n[k] - c[k]) >= half[k]) FAIL("brute-force image window too small");
              out.emplace(key(i, j, n), r);
            }
          }
    }
  return out;
}

/// Structural invariants of the CSR / sender-major views.
void check_csr(const RadiusGraph& g) {
  const int N = g.num_nodes;
  const std::size_t E = g.num_edges();
  REQUIRE(g.row_ptr.size() == static_cast<std::size_t>(N) + 1);
  REQUIRE(g.sender_ptr.size() == static_cast<std::size_t>(N) + 1);
  REQUIRE(g.receivers.size() == E);
  REQUIRE(g.shifts.size() == E);
  REQUIRE(g.sender_perm.size() == E);
  REQUIRE(g.row_ptr.front() == 0);
  REQUIRE(static_cast<std::size_t>(g.row_ptr.back()) == E);
  REQUIRE(g.sender_ptr.front() == 0);
  REQUIRE(static_cast<std::size_t>(g.sender_ptr.back()) == E);

  bool ok_rows = true, ok_order = true;
  for (int i = 0; i < N; ++i) {
    ok_rows = ok_rows && g.row_ptr[i] <= g.row_ptr[i + 1];
    for (int e = g.row_ptr[i]; e < g.row_ptr[i + 1]; ++e) {
      ok_rows = ok_rows && g.receivers[e] == i;
      if (e > g.row_ptr[i]) {
        const auto prev = std::tie(g.senders[e - 1], g.shifts[e - 1][0], g.shifts[e - 1][1], g.shifts[e - 1][2]);
        const auto cur = std::tie(g.senders[e], g.shifts[e][0], g.shifts[e][1], g.shifts[e][2]);
        ok_order = ok_order && prev < cur;  // strictly increasing: no duplicate edges
      }
    }
  }
  CHECK(ok_rows);
  CHECK(ok_order);
  CHECK(std::is_sorted(g.receivers.begin(), g.receivers.end()));

  std::vector<int> perm = g.sender_perm;
  std::sort(perm.begin(), perm.end());
  std::vector<int> iota(E);
  std::iota(iota.begin(), iota.end(), 0);
  CHECK(perm == iota);

  bool ok_send = true;
  for (int j = 0; j < N; ++j) {
    ok_send = ok_send && g.sender_ptr[j] <= g.sender_ptr[j + 1];
    for (int p = g.sender_ptr[j]; p < g.sender_ptr[j + 1]; ++p) {
      ok_send = ok_send && g.senders[g.sender_perm[p]] == j;
      if (p > g.sender_ptr[j]) ok_send = ok_send && g.sender_perm[p - 1] < g.sender_perm[p];
    }
  }
  CHECK(ok_send);
}

EdgeMap graph_edges(const Structure& s, const RadiusGraph& g) {
  EdgeMap out;
  for (std::size_t e = 0; e < g.num_edges(); ++e)
    out.emplace(key(g.receivers[e], g.senders[e], g.shifts[e]), hydragnn::edge_vector(s, g, e));
  REQUIRE(out.size() == g.num_edges());
  return out;
}

/// Full comparison against the brute-force reference.
void check_against_brute_force(const Structure& s, double rc) {
  const RadiusGraph g = radius_graph(s, rc);
  REQUIRE(g.num_nodes == static_cast<int>(s.size()));
  check_csr(g);
  const EdgeMap got = graph_edges(s, g);
  const EdgeMap ref = brute_force(s, rc);
  REQUIRE(got.size() == ref.size());
  bool same_keys = true, same_vectors = true, within = true;
  for (const auto& kv : ref) {
    const auto it = got.find(kv.first);
    if (it == got.end()) {
      same_keys = false;
      continue;
    }
    const Vec3& a = kv.second;
    const Vec3& b = it->second;
    for (int d = 0; d < 3; ++d) same_vectors = same_vectors && std::fabs(a[d] - b[d]) <= 1e-12;
    // The edge vector from the graph is checked independently of edge_vector().
    const Vec3 r = ref_vector(s, std::get<0>(kv.first), std::get<1>(kv.first),
                              {std::get<2>(kv.first), std::get<3>(kv.first), std::get<4>(kv.first)});
    within = within && norm3(r) < rc && norm3(r) > 0.0;
  }
  CHECK(same_keys);
  CHECK(same_vectors);
  CHECK(within);
}

/// Random cell with rows L_k e_k + skew * L * (random vector); rejected if too close to degenerate.
Mat3 random_cell(std::mt19937& rng, double lmin, double lmax, double skew) {
  std::uniform_real_distribution<double> len(lmin, lmax), u(-1.0, 1.0);
  for (;;) {
    Mat3 c{};
    for (int k = 0; k < 3; ++k) {
      const double L = len(rng);
      for (int d = 0; d < 3; ++d) c[k][d] = skew * L * u(rng);
      c[k][k] += L;
    }
    const double V = std::fabs(c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1]) -
                               c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0]) +
                               c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]));
    if (V > 0.05 * norm3(c[0]) * norm3(c[1]) * norm3(c[2])) return c;
  }
}

/// Random atoms at fractional coordinates in [0,1) (periodic directions) or [-0.5, 1.5) otherwise.
std::vector<Vec3> random_positions(std::mt19937& rng, const Mat3& cell, std::array<bool, 3> pbc, int n) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<Vec3> pos(n);
  for (auto& x : pos) {
    double f[3];
    for (int k = 0; k < 3; ++k) f[k] = pbc[k] ? u(rng) : 2.0 * u(rng) - 0.5;
    for (int d = 0; d < 3; ++d) x[d] = f[0] * cell[0][d] + f[1] * cell[1][d] + f[2] * cell[2][d];
  }
  return pos;
}

}  // namespace

TEST_CASE("radius_graph matches brute force for random triclinic TTT cells", "[radius_graph]") {
  const std::array<bool, 3> ttt{true, true, true};
  for (unsigned seed = 1; seed <= 8; ++seed) {
    std::mt19937 rng(seed);
    const double skew = seed <= 4 ? 0.3 : 1.2;  // seeds 5..8: strongly skewed cells
    const Mat3 cell = random_cell(rng, 4.0, 9.0, skew);
    const int n = 5 + static_cast<int>((seed * 37) % 56);
    const double rc = 3.0 + 0.4 * seed;
    INFO("seed " << seed << ", atoms " << n << ", cutoff " << rc);
    check_against_brute_force(make_structure(cell, ttt, random_positions(rng, cell, ttt, n)), rc);
  }
}

TEST_CASE("radius_graph handles mixed periodicity", "[radius_graph]") {
  const std::array<std::array<bool, 3>, 3> cases{{{true, true, false}, {false, true, false}, {true, false, true}}};
  unsigned seed = 100;
  for (const auto& pbc : cases) {
    for (int variant = 0; variant < 3; ++variant) {
      std::mt19937 rng(++seed);
      Mat3 cell = random_cell(rng, 4.0, 8.0, variant == 2 ? 1.0 : 0.3);
      const auto pos = random_positions(rng, cell, pbc, 20 + 10 * variant);
      // variant 1: the vectors of non-periodic directions are absent (zero), e.g. a slab.
      if (variant == 1)
        for (int k = 0; k < 3; ++k)
          if (!pbc[k]) cell[k] = {0.0, 0.0, 0.0};
      INFO("pbc " << pbc[0] << pbc[1] << pbc[2] << ", variant " << variant);
      check_against_brute_force(make_structure(cell, pbc, pos), 4.5);
    }
  }
}

TEST_CASE("radius_graph handles cells smaller than the cutoff", "[radius_graph]") {
  const std::array<bool, 3> ttt{true, true, true};
  const Mat3 tri{{{2.0, 0.0, 0.0}, {0.7, 1.9, 0.0}, {-0.4, 0.5, 2.1}}};

  SECTION("one atom: only its own images") {
    const Structure s = make_structure(tri, ttt, {{0.3, 0.2, 0.1}});
    check_against_brute_force(s, 5.0);
    const RadiusGraph g = radius_graph(s, 5.0);
    CHECK(g.num_edges() > 50);  // many images of the same atom
    for (int j : g.senders) CHECK(j == 0);
  }
  SECTION("two atoms") {
    check_against_brute_force(make_structure(tri, ttt, {{0.3, 0.2, 0.1}, {1.1, 1.3, 0.9}}), 5.0);
  }
  SECTION("needle cell, one short vector, slab") {
    const Mat3 needle{{{1.3, 0.1, 0.0}, {0.5, 7.0, 0.0}, {0.2, -1.0, 6.5}}};
    std::mt19937 rng(7);
    check_against_brute_force(make_structure(needle, ttt, random_positions(rng, needle, ttt, 6)), 4.0);
    check_against_brute_force(
        make_structure(needle, {true, true, false}, random_positions(rng, needle, {true, true, false}, 6)), 4.0);
  }
}

TEST_CASE("radius_graph without periodicity (molecule, no cell)", "[radius_graph]") {
  std::mt19937 rng(42);
  std::uniform_real_distribution<double> u(-3.0, 3.0);
  std::vector<Vec3> pos(15);
  for (auto& x : pos) x = {u(rng), u(rng), u(rng)};
  const Structure s = make_structure(Mat3{}, {false, false, false}, pos, false);
  check_against_brute_force(s, 3.0);
  const RadiusGraph g = radius_graph(s, 3.0);
  for (const auto& n : g.shifts) CHECK(n == Shift{0, 0, 0});
  // The cell is ignored without periodicity, even when present.
  Structure with_cell = s;
  with_cell.has_cell = true;
  with_cell.cell = {{{1.0, 0.0, 0.0}, {2.0, 0.0, 0.0}, {0.0, 0.0, 0.0}}};
  const RadiusGraph g2 = radius_graph(with_cell, 3.0);
  CHECK(g2.senders == g.senders);
  CHECK(g2.receivers == g.receivers);
}

TEST_CASE("radius_graph with unwrapped positions", "[radius_graph]") {
  const std::array<std::array<bool, 3>, 2> cases{{{true, true, true}, {true, true, false}}};
  unsigned seed = 200;
  for (const auto& pbc : cases) {
    std::mt19937 rng(++seed);
    const Mat3 cell = random_cell(rng, 4.0, 8.0, 0.8);
    const auto pos = random_positions(rng, cell, pbc, 25);
    const double rc = 5.0;
    const Structure s = make_structure(cell, pbc, pos);

    // Move every atom by a few lattice vectors along periodic directions.
    std::uniform_int_distribution<int> shift(-3, 3);
    std::vector<Shift> k(pos.size());
    Structure moved = s;
    for (std::size_t i = 0; i < pos.size(); ++i) {
      for (int d = 0; d < 3; ++d) k[i][d] = pbc[d] ? shift(rng) : 0;
      for (int d = 0; d < 3; ++d)
        moved.positions[i][d] += k[i][0] * cell[0][d] + k[i][1] * cell[1][d] + k[i][2] * cell[2][d];
    }
    check_against_brute_force(moved, rc);

    // x'_i = x_i + K_i  =>  n' = n - k_i + k_j keeps r unchanged.
    const RadiusGraph g = radius_graph(s, rc);
    const RadiusGraph gm = radius_graph(moved, rc);
    const EdgeMap a = graph_edges(s, g);
    const EdgeMap b = graph_edges(moved, gm);
    REQUIRE(a.size() == b.size());
    bool same = true, same_vec = true;
    for (const auto& kv : a) {
      const int i = std::get<0>(kv.first), j = std::get<1>(kv.first);
      const Shift n{std::get<2>(kv.first) - k[i][0] + k[j][0], std::get<3>(kv.first) - k[i][1] + k[j][1],
                    std::get<4>(kv.first) - k[i][2] + k[j][2]};
      const auto it = b.find(key(i, j, n));
      if (it == b.end()) {
        same = false;
        continue;
      }
      for (int d = 0; d < 3; ++d) same_vec = same_vec && std::fabs(it->second[d] - kv.second[d]) <= 1e-12;
    }
    CHECK(same);
    CHECK(same_vec);
  }
}

TEST_CASE("radius_graph max_neighbours keeps the nearest edges", "[radius_graph]") {
  std::mt19937 rng(5);
  const std::array<bool, 3> ttt{true, true, true};
  const Mat3 cell = random_cell(rng, 6.0, 8.0, 0.4);
  const Structure s = make_structure(cell, ttt, random_positions(rng, cell, ttt, 30));
  const double rc = 5.0;
  const RadiusGraph full = radius_graph(s, rc);
  for (int k : {1, 4, 12, 100000}) {
    INFO("max_neighbours " << k);
    const RadiusGraph g = radius_graph(s, rc, k);
    check_csr(g);
    const EdgeMap all = graph_edges(s, full);
    const EdgeMap kept = graph_edges(s, g);
    bool counts = true, subset = true, nearest = true;
    for (int i = 0; i < full.num_nodes; ++i) {
      const int deg = full.row_ptr[i + 1] - full.row_ptr[i];
      counts = counts && (g.row_ptr[i + 1] - g.row_ptr[i]) == std::min(k, deg);
      double max_kept = 0.0;
      for (int e = g.row_ptr[i]; e < g.row_ptr[i + 1]; ++e) {
        const Key kk = key(i, g.senders[e], g.shifts[e]);
        subset = subset && all.count(kk) == 1;
        max_kept = std::max(max_kept, norm3(kept.at(kk)));
      }
      // Every dropped edge is at least as far as every kept one.
      for (int e = full.row_ptr[i]; e < full.row_ptr[i + 1]; ++e) {
        const Key kk = key(i, full.senders[e], full.shifts[e]);
        if (kept.count(kk) == 0) nearest = nearest && norm3(all.at(kk)) >= max_kept;
      }
    }
    CHECK(counts);
    CHECK(subset);
    CHECK(nearest);
  }
}

TEST_CASE("radius_graph max_neighbours breaks ties by (sender, n)", "[radius_graph]") {
  const std::array<bool, 3> ttt{true, true, true};
  {
    // Simple cubic, one atom: six images at exactly 3 A.
    const Mat3 cubic{{{3.0, 0.0, 0.0}, {0.0, 3.0, 0.0}, {0.0, 0.0, 3.0}}};
    const Structure sc = make_structure(cubic, ttt, {{0.5, 0.5, 0.5}});
    REQUIRE(radius_graph(sc, 3.5).num_edges() == 6);
    const RadiusGraph g = radius_graph(sc, 3.5, 2);
    REQUIRE(g.num_edges() == 2);
    CHECK(g.shifts[0] == Shift{-1, 0, 0});
    CHECK(g.shifts[1] == Shift{0, -1, 0});

    // Two atoms on a line, equidistant from atom 0: sender 1 wins over sender 2.
    const Structure line = make_structure(Mat3{}, {false, false, false},
                                          {{0.0, 0.0, 0.0}, {1.5, 0.0, 0.0}, {-1.5, 0.0, 0.0}}, false);
    const RadiusGraph gl = radius_graph(line, 2.0, 1);
    REQUIRE(gl.row_ptr[1] == 1);
    CHECK(gl.senders[0] == 1);
  }
}

TEST_CASE("radius_graph rejects invalid input", "[radius_graph]") {
  const Mat3 cubic{{{5.0, 0.0, 0.0}, {0.0, 5.0, 0.0}, {0.0, 0.0, 5.0}}};
  std::vector<Vec3> mol;
  for (int i = 0; i < 10; ++i) mol.push_back({1.1 * i, 0.3 * (i % 3), 0.0});
  const Structure base = make_structure(Mat3{}, {false, false, false}, mol, false);

  auto message = [](const Structure& s, double rc) -> std::string {
    try {
      radius_graph(s, rc);
    } catch (const GraphError& e) {
      return e.what();
    }
    return "<no error>";
  };

  SECTION("cutoff") {
    CHECK_THROWS_AS(radius_graph(base, 0.0), GraphError);
    CHECK_THROWS_AS(radius_graph(base, -1.0), GraphError);
    CHECK_THROWS_AS(radius_graph(base, std::numeric_limits<double>::quiet_NaN()), GraphError);
    CHECK_THROWS_AS(radius_graph(base, std::numeric_limits<double>::infinity()), GraphError);
    CHECK_THAT(message(base, 0.0), Catch::Contains("cutoff"));
  }
  SECTION("non-finite coordinate") {
    Structure s = base;
    s.positions[7][1] = std::numeric_limits<double>::quiet_NaN();
    CHECK_THAT(message(s, 3.0), Catch::Contains("atom 7 has a non-finite coordinate"));
    s.positions[7][1] = std::numeric_limits<double>::infinity();
    CHECK_THAT(message(s, 3.0), Catch::Contains("atom 7 has a non-finite coordinate"));
  }
  SECTION("overlapping atoms") {
    Structure s = base;
    s.positions[5] = s.positions[3];
    s.positions[5][2] += 1e-4;
    const std::string msg = message(s, 3.0);
    CHECK_THAT(msg, Catch::Contains("atoms 3 and 5 overlap"));
    CHECK_THAT(msg, Catch::Contains("0.0001 A < 0.01 A"));
    // With the source, the message is prefixed by it.
    s.source = "uracil.extxyz:14";
    CHECK_THAT(message(s, 3.0), Catch::StartsWith("uracil.extxyz:14: atoms 3 and 5 overlap"));
    // Duplicate atoms also overlap; disabling the check drops the zero-length pair instead.
    Structure dup = base;
    dup.positions[5] = dup.positions[3];
    CHECK_THAT(message(dup, 3.0), Catch::Contains("atoms 3 and 5 overlap"));
    const RadiusGraph g = radius_graph(dup, 3.0, -1, 0.0);
    for (std::size_t e = 0; e < g.num_edges(); ++e) CHECK(norm3(hydragnn::edge_vector(dup, g, e)) > 0.0);
  }
  SECTION("overlap with a periodic image") {
    const Structure s = make_structure(cubic, {true, true, true},
                                       {{0.00002, 1.0, 1.0}, {2.5, 2.5, 2.5}, {4.99996, 1.0, 1.0}});
    const std::string msg = message(s, 3.0);
    CHECK_THAT(msg, Catch::Contains("atoms 0 and 2 overlap"));
    CHECK_THAT(msg, Catch::Contains("periodic image (1, 0, 0)"));
    // Not periodic along x: no overlap.
    const Structure open = make_structure(cubic, {false, true, true}, s.positions);
    CHECK_NOTHROW(radius_graph(open, 3.0));
  }
  SECTION("atom overlapping its own image") {
    const Mat3 thin{{{0.005, 0.0, 0.0}, {0.0, 5.0, 0.0}, {0.0, 0.0, 5.0}}};
    const Structure s = make_structure(thin, {true, true, true}, {{0.001, 1.0, 1.0}});
    CHECK_THAT(message(s, 1.0), Catch::Contains("atom 0 and its own periodic image"));
  }
  SECTION("degenerate or missing cell") {
    const Mat3 flat{{{5.0, 0.0, 0.0}, {0.0, 5.0, 0.0}, {5.0, 5.0, 0.0}}};
    const std::vector<Vec3> two{{1.0, 1.0, 0.0}, {3.0, 1.0, 0.0}};
    CHECK_THAT(message(make_structure(flat, {true, true, true}, two), 3.0), Catch::Contains("zero volume"));
    // The same cell is fine as a slab: c is not periodic.
    CHECK_NOTHROW(radius_graph(make_structure(flat, {true, true, false}, two), 3.0));
    const Mat3 parallel{{{5.0, 0.0, 0.0}, {-2.0, 0.0, 0.0}, {0.0, 0.0, 5.0}}};
    CHECK_THAT(message(make_structure(parallel, {true, true, false}, two), 3.0), Catch::Contains("parallel"));
    CHECK_THAT(message(make_structure(Mat3{}, {true, true, true}, two), 3.0), Catch::Contains("degenerate"));
    CHECK_THAT(message(make_structure(cubic, {true, false, false}, two, false), 3.0), Catch::Contains("no cell"));
    CHECK_THROWS_AS(radius_graph(make_structure(flat, {true, true, true}, two), 3.0), GraphError);
  }
  SECTION("empty structure") {
    const Structure empty;
    CHECK_THROWS_AS(radius_graph(empty, 3.0), GraphError);
    CHECK_THAT(message(empty, 3.0), Catch::Contains("no atoms"));
  }
}

TEST_CASE("radius_graph is deterministic", "[radius_graph]") {
  std::mt19937 rng(11);
  const std::array<bool, 3> ttt{true, true, true};
  const Mat3 cell = random_cell(rng, 12.0, 15.0, 0.5);
  const Structure s = make_structure(cell, ttt, random_positions(rng, cell, ttt, 300));
  const RadiusGraph a = radius_graph(s, 4.0);
  const RadiusGraph b = radius_graph(s, 4.0);
  CHECK(a.num_nodes == b.num_nodes);
  CHECK(a.row_ptr == b.row_ptr);
  CHECK(a.receivers == b.receivers);
  CHECK(a.senders == b.senders);
  CHECK(a.shifts == b.shifts);
  CHECK(a.sender_perm == b.sender_perm);
  CHECK(a.sender_ptr == b.sender_ptr);
  CHECK(a.num_edges() > 0);
}

namespace {

Structure random_box(unsigned seed, int n, double L) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, L);
  std::vector<Vec3> pos(n);
  for (auto& x : pos) x = {u(rng), u(rng), u(rng)};
  const Mat3 cell{{{L, 0.0, 0.0}, {0.0, L, 0.0}, {0.0, 0.0, L}}};
  return make_structure(cell, {true, true, true}, pos);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("radius_graph on a 20k-atom periodic box", "[radius_graph]") {
  const int n = 20000;
  const double L = 60.0, rc = 5.0;
  const Structure s = random_box(3, n, L);
  const auto t0 = std::chrono::steady_clock::now();
  const RadiusGraph g = radius_graph(s, rc);
  const double dt = seconds_since(t0);
  std::cout << "radius_graph: " << n << " atoms, " << g.num_edges() << " edges in " << dt << " s\n";
  check_csr(g);

  // Uniform density: mean degree = rho * 4/3 pi rc^3 (about 48.5).
  const double expected = n / (L * L * L) * 4.0 / 3.0 * kPi * rc * rc * rc;
  const double mean = static_cast<double>(g.num_edges()) / n;
  CHECK(mean == Approx(expected).epsilon(0.03));

  // Brute force on a few sampled receivers (L > 2 rc: images -1..1 suffice).
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> pick(0, n - 1);
  for (int t = 0; t < 25; ++t) {
    const int i = pick(rng);
    std::map<Key, Vec3> ref;
    for (int j = 0; j < n; ++j)
      for (int a = -1; a <= 1; ++a)
        for (int b = -1; b <= 1; ++b)
          for (int c = -1; c <= 1; ++c) {
            const Vec3 r = ref_vector(s, i, j, {a, b, c});
            const double r2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
            if (r2 > 0.0 && r2 < rc * rc) ref.emplace(key(i, j, {a, b, c}), r);
          }
    std::map<Key, Vec3> got;
    for (int e = g.row_ptr[i]; e < g.row_ptr[i + 1]; ++e)
      got.emplace(key(i, g.senders[e], g.shifts[e]), hydragnn::edge_vector(s, g, e));
    INFO("receiver " << i);
    REQUIRE(got.size() == ref.size());
    bool same = true;
    for (const auto& kv : ref) {
      const auto it = got.find(kv.first);
      if (it == got.end()) {
        same = false;
        continue;
      }
      for (int d = 0; d < 3; ++d) same = same && std::fabs(it->second[d] - kv.second[d]) <= 1e-12;
    }
    CHECK(same);
  }
}

// Timing only; run with `[.benchmark]` or by name.
TEST_CASE("radius_graph 100k-atom benchmark", "[.benchmark][radius_graph]") {
  const int n = 100000;
  const double L = 60.0 * std::cbrt(5.0), rc = 5.0;  // same density as the 20k test
  const Structure s = random_box(17, n, L);
  const auto t0 = std::chrono::steady_clock::now();
  const RadiusGraph g = radius_graph(s, rc);
  const double dt = seconds_since(t0);
  std::cout << "radius_graph: " << n << " atoms, " << g.num_edges() << " edges in " << dt << " s\n";
  const double expected = n / (L * L * L) * 4.0 / 3.0 * kPi * rc * rc * rc;
  CHECK(static_cast<double>(g.num_edges()) / n == Approx(expected).epsilon(0.03));
}

namespace {
/// edge_pairs of a radius graph, checked: pairs in ascending order of their first edge, every edge
/// in exactly one pair, the second edge the reverse of the first with an exactly negated vector,
/// and an edge left alone only when the graph has no reverse of it. Returns the number of pairs
/// with two edges.
int check_edge_pairs(const Structure& s, const RadiusGraph& g) {
  const int E = int(g.num_edges());
  std::vector<int> dst(g.receivers), src(g.senders), first, second, of_edge;
  std::vector<double> shift(3 * std::size_t(E));
  for (int e = 0; e < E; ++e) {
    const Vec3 S = hydragnn::radius_graph_detail::lattice_shift(s.cell, g.shifts[e]);
    for (int a = 0; a < 3; ++a) shift[3 * e + a] = S[a];
  }
  hydragnn::edge_pairs(g.row_ptr, dst, src, shift, first, second, of_edge);
  REQUIRE(first.size() == second.size());
  REQUIRE(of_edge.size() == std::size_t(E));
  auto vec = [&](int e) {
    Vec3 r;
    for (int a = 0; a < 3; ++a) r[a] = s.positions[dst[e]][a] - s.positions[src[e]][a] + shift[3 * e + a];
    return r;
  };
  std::vector<int> seen(E, 0);
  int two = 0;
  bool ascending = true, consistent = true, reverse = true, alone_ok = true;
  for (std::size_t u = 0; u < first.size(); ++u) {
    ascending = ascending && (u == 0 || first[u] > first[u - 1]);
    ++seen[first[u]];
    consistent = consistent && of_edge[first[u]] == int(u);
    if (second[u] >= 0) {
      ++two;
      ++seen[second[u]];
      const int e = first[u], q = second[u];
      consistent = consistent && of_edge[q] == int(u) && q > e;
      const Vec3 re = vec(e), rq = vec(q);
      reverse = reverse && dst[q] == src[e] && src[q] == dst[e] && rq[0] == -re[0] && rq[1] == -re[1] && rq[2] == -re[2];
    } else {
      const int e = first[u];
      const Shift back{-g.shifts[e][0], -g.shifts[e][1], -g.shifts[e][2]};
      for (int q = g.row_ptr[src[e]]; q < g.row_ptr[src[e] + 1]; ++q)
        alone_ok = alone_ok && !(src[q] == dst[e] && g.shifts[q] == back && q != e);
    }
  }
  CHECK(ascending);
  CHECK(consistent);
  CHECK(reverse);
  CHECK(alone_ok);
  CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
  return two;
}
}  // namespace

TEST_CASE("edge_pairs pairs every edge with its reverse (images of a small cell, a neighbour cap)", "[radius_graph]") {
  std::mt19937 rng(11);
  const std::array<bool, 3> ttt{true, true, true};
  SECTION("a cell smaller than the cutoff: every edge has its reverse, self-images included") {
    const Mat3 tri{{{2.0, 0.0, 0.0}, {0.7, 1.9, 0.0}, {-0.4, 0.5, 2.1}}};
    const Structure s = make_structure(tri, ttt, {{0.3, 0.2, 0.1}, {1.1, 1.3, 0.9}});
    const RadiusGraph g = radius_graph(s, 4.0);
    CHECK(2 * check_edge_pairs(s, g) == int(g.num_edges()));
  }
  SECTION("a molecule") {
    std::uniform_real_distribution<double> u(-3.0, 3.0);
    std::vector<Vec3> pos(25);
    for (auto& x : pos) x = {u(rng), u(rng), u(rng)};
    const Structure s = make_structure(Mat3{}, {false, false, false}, pos, false);
    const RadiusGraph g = radius_graph(s, 3.0);
    CHECK(2 * check_edge_pairs(s, g) == int(g.num_edges()));
  }
  SECTION("a neighbour cap drops some reverses: those edges stand alone") {
    const Mat3 cell = random_cell(rng, 6.0, 8.0, 0.4);
    const Structure s = make_structure(cell, ttt, random_positions(rng, cell, ttt, 30));
    const RadiusGraph g = radius_graph(s, 5.0, 6);
    const int two = check_edge_pairs(s, g);
    CHECK(two > 0);
    CHECK(2 * two < int(g.num_edges()));
  }
}
