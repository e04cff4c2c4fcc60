// SPDX-License-Identifier: BSD-3-Clause
// The reference benchmark workload (deterministic, fixed seeds; see benchmarks/README.md).
//
// Molecules (no pbc): N ~ U{20..200} atoms; simple cubic lattice with a = 2.5 A; a random centre
// (uniform in one lattice cell; the lattice is translation invariant); the N lattice sites nearest
// that centre; every coordinate jittered by U(-0.15a, +0.15a); species uniform from {H, C, N, O}
// = Z in {1, 6, 7, 8}; radius graph with cutoff 5 A and at most 32 neighbours per atom.
// Labels (random, only so the losses have something to fit): energy ~ -4 eV * N + N(0, 1) and forces
// ~ N(0, 1) eV/A per component, stored both as the conservative labels (Structure::energy/forces)
// and as the direct-head targets (info["energy"], arrays["forces"] with 3 columns).
//
// MD box (pbc in x, y, z): n = m^3 atoms on the same jittered simple cubic lattice filling a periodic
// cubic box of side m*a (n = 1000, 8000, 64000, 512000 for m = 10, 20, 40, 80).
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/core/structure.hpp>
#include <hydragnn/graph/batch_builder.hpp>
#include <hydragnn/graph/radius_graph.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn_bench {

struct WorkloadSpec {
  int min_atoms = 20, max_atoms = 200;  ///< N uniform in [min_atoms, max_atoms]
  double lattice = 2.5;                 ///< simple cubic lattice constant a (A)
  double jitter = 0.15;                 ///< each coordinate += U(-jitter*a, +jitter*a)
  double cutoff = 5.0;                  ///< radius graph cutoff (A)
  int max_neighbours = 32;              ///< nearest neighbours kept per receiver
  std::vector<int> elements{1, 6, 7, 8};
  int batch_size = 32;                  ///< graphs per batch
  std::uint64_t seed = 20261128;        ///< std::mt19937_64 seed of the molecule set
};

inline const WorkloadSpec& reference_workload() {
  static const WorkloadSpec w;
  return w;
}

/// Random labels in every form the library reads (conservative and direct-head targets).
inline void attach_random_labels(hydragnn::Structure& s, std::mt19937_64& rng) {
  std::normal_distribution<double> nd(0.0, 1.0);
  const std::size_t n = s.size();
  s.energy = -4.0 * double(n) + nd(rng);
  s.forces.resize(n);
  std::vector<double> flat(3 * n);
  for (std::size_t i = 0; i < n; ++i)
    for (int a = 0; a < 3; ++a) s.forces[i][a] = flat[3 * i + a] = nd(rng);
  std::ostringstream e;
  e.precision(17);
  e << *s.energy;
  s.info["energy"] = e.str();
  s.arrays["forces"] = std::move(flat);
  s.array_cols["forces"] = 3;
}

/// One molecule-like cluster: the n lattice sites nearest a random centre, jittered.
inline hydragnn::Structure lattice_cluster(std::mt19937_64& rng, int n, const WorkloadSpec& w = reference_workload()) {
  const double a = w.lattice;
  std::uniform_real_distribution<double> uc(0.0, a), uj(-w.jitter * a, w.jitter * a);
  std::uniform_int_distribution<int> us(0, int(w.elements.size()) - 1);
  const hydragnn::Vec3 c{uc(rng), uc(rng), uc(rng)};
  // Candidate sites: a cube of lattice points around the centre, large enough to hold n sites in the
  // sphere that is taken (radius of the n-site sphere ~ a * (3n / 4pi)^(1/3), plus a margin).
  const int K = int(std::ceil(std::cbrt(3.0 * n / (4.0 * 3.14159265358979323846)))) + 2;
  struct Site { double d2; int i, j, k; };
  std::vector<Site> sites;
  sites.reserve(std::size_t(2 * K + 1) * (2 * K + 1) * (2 * K + 1));
  for (int i = -K; i <= K; ++i)
    for (int j = -K; j <= K; ++j)
      for (int k = -K; k <= K; ++k) {
        const double dx = i * a - c[0], dy = j * a - c[1], dz = k * a - c[2];
        sites.push_back({dx * dx + dy * dy + dz * dz, i, j, k});
      }
  if (int(sites.size()) < n) throw std::logic_error("lattice_cluster: candidate cube too small");
  // Deterministic order (distance, then lattice indices) so equal distances cannot reorder.
  std::sort(sites.begin(), sites.end(), [](const Site& p, const Site& q) {
    if (p.d2 != q.d2) return p.d2 < q.d2;
    if (p.i != q.i) return p.i < q.i;
    if (p.j != q.j) return p.j < q.j;
    return p.k < q.k;
  });
  hydragnn::Structure s;
  s.source = "bench:cluster";
  for (int q = 0; q < n; ++q) {
    const Site& t = sites[q];
    const double x = t.i * a + uj(rng), y = t.j * a + uj(rng), z = t.k * a + uj(rng);
    s.positions.push_back({x, y, z});
    s.numbers.push_back(w.elements[us(rng)]);
  }
  attach_random_labels(s, rng);
  return s;
}

/// n = m^3 atoms on the jittered simple cubic lattice in a periodic cubic box of side m*a.
inline hydragnn::Structure periodic_box(int n, std::uint64_t seed, const WorkloadSpec& w = reference_workload()) {
  const int m = int(std::lround(std::cbrt(double(n))));
  if (m < 1 || m * m * m != n)
    throw std::invalid_argument("periodic_box: n must be a perfect cube (m^3 atoms), got " + std::to_string(n));
  const double a = w.lattice, L = m * a;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uj(-w.jitter * a, w.jitter * a);
  std::uniform_int_distribution<int> us(0, int(w.elements.size()) - 1);
  hydragnn::Structure s;
  s.source = "bench:box" + std::to_string(n);
  s.has_cell = true;
  s.pbc = {true, true, true};
  s.cell = {{{L, 0.0, 0.0}, {0.0, L, 0.0}, {0.0, 0.0, L}}};
  s.positions.reserve(std::size_t(n));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      for (int k = 0; k < m; ++k) {
        s.positions.push_back({i * a + uj(rng), j * a + uj(rng), k * a + uj(rng)});
        s.numbers.push_back(w.elements[us(rng)]);
      }
  attach_random_labels(s, rng);
  return s;
}

/// Structures with their radius graphs (host side; turned into device batches by make_batch).
struct GraphSet {
  std::vector<hydragnn::Structure> frames;
  std::vector<hydragnn::RadiusGraph> graphs;
  long num_atoms() const {
    long n = 0;
    for (const auto& f : frames) n += long(f.size());
    return n;
  }
  long num_edges() const {
    long e = 0;
    for (const auto& g : graphs) e += long(g.num_edges());
    return e;
  }
};

inline void build_graphs(GraphSet& set, const WorkloadSpec& w = reference_workload()) {
  set.graphs.clear();
  set.graphs.reserve(set.frames.size());
  for (const auto& f : set.frames) set.graphs.push_back(hydragnn::radius_graph(f, w.cutoff, w.max_neighbours));
}

/// `count` molecules from the reference workload: molecule k of a given seed is always the same.
inline GraphSet reference_molecules(int count, const WorkloadSpec& w = reference_workload()) {
  std::mt19937_64 rng(w.seed);
  std::uniform_int_distribution<int> un(w.min_atoms, w.max_atoms);
  GraphSet set;
  for (int k = 0; k < count; ++k) {
    const int n = un(rng);
    set.frames.push_back(lattice_cluster(rng, n, w));
  }
  build_graphs(set, w);
  return set;
}

/// The reference batch: the first batch_size molecules.
inline GraphSet reference_batch(const WorkloadSpec& w = reference_workload()) { return reference_molecules(w.batch_size, w); }

/// One periodic MD box of n = m^3 atoms with its graph.
inline GraphSet md_box(int n, const WorkloadSpec& w = reference_workload()) {
  GraphSet set;
  set.frames.push_back(periodic_box(n, w.seed + std::uint64_t(n), w));
  build_graphs(set, w);
  return set;
}

inline hydragnn::SpeciesMap species_map(const WorkloadSpec& w = reference_workload()) {
  hydragnn::SpeciesMap s;
  s.numbers = w.elements;
  return s;
}

/// Device batch of a graph set. direct_heads: also collect the targets of the two direct heads
/// (graph "energy" dim 1, node "forces" dim 3); triplets: build the triplet CSR (DimeNet).
template <class M>
hydragnn::Batch<M> make_device_batch(const GraphSet& set, const hydragnn::SpeciesMap& species, bool direct_heads,
                                     bool triplets = false) {
  std::vector<const hydragnn::Structure*> fp;
  std::vector<const hydragnn::RadiusGraph*> gp;
  for (std::size_t i = 0; i < set.frames.size(); ++i) {
    fp.push_back(&set.frames[i]);
    gp.push_back(&set.graphs[i]);
  }
  if (!direct_heads) return hydragnn::make_batch<M>(fp, gp, species, {}, triplets);
  return hydragnn::make_batch<M>(fp, gp, species,
                                 {hydragnn::HeadDef{"energy", false, 1}, hydragnn::HeadDef{"forces", true, 3}}, triplets);
}

}  // namespace hydragnn_bench
