// SPDX-License-Identifier: BSD-3-Clause
// Datasets: extxyz frames with their radius graphs (built once), validated for training, and the
// per-element reference energies fitted by least squares.
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/core/structure.hpp>
#include <hydragnn/graph/batch_builder.hpp>
#include <hydragnn/graph/radius_graph.hpp>
#include <hydragnn/io/extxyz.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Dataset {
  std::string name;
  std::vector<Structure> frames;
  std::vector<RadiusGraph> graphs;
  std::size_t size() const { return frames.size(); }
  std::size_t num_atoms() const {
    std::size_t n = 0;
    for (const auto& f : frames) n += f.size();
    return n;
  }
};

struct DatasetRequirements {
  bool energy = false, forces = false, allow_isolated = false;
};

/// Build graphs and validate every frame (errors name the frame's file:line).
inline void build_graphs(Dataset& ds, double cutoff, int max_neighbours, const DatasetRequirements& req) {
  ds.graphs.clear();
  ds.graphs.reserve(ds.frames.size());
  for (const auto& f : ds.frames) {
    if (f.size() == 0) throw DataError(f.source + ": empty frame (0 atoms)");
    if (req.energy && !f.energy) throw DataError(f.source + ": frame has no 'energy' but the loss needs energies");
    if (req.forces && f.forces.empty())
      throw DataError(f.source + ": frame has no 'forces' column but force_weight > 0");
    ds.graphs.push_back(radius_graph(f, cutoff, max_neighbours));
    const RadiusGraph& g = ds.graphs.back();
    if (!req.allow_isolated)
      for (int i = 0; i < g.num_nodes; ++i)
        if (g.row_ptr[i + 1] == g.row_ptr[i])
          throw DataError(f.source + ": atom " + std::to_string(i) + " (" + chemical_symbol(f.numbers[i]) +
                          ") has no neighbour within the cutoff radius " + std::to_string(cutoff) +
                          " A (isolated atom); increase 'radius' or remove the frame");
  }
}

/// In-degree histogram of a dataset's graphs: h[d] = how many atoms receive exactly d edges (PyG's
/// PNAConv.get_degree_histogram, as HydraGNN computes `pna_deg` from its training set).
inline std::vector<double> degree_histogram(const Dataset& ds) {
  std::vector<double> h;
  for (const auto& g : ds.graphs)
    for (int i = 0; i < g.num_nodes; ++i) {
      const std::size_t d = std::size_t(g.row_ptr[i + 1] - g.row_ptr[i]);
      if (h.size() <= d) h.resize(d + 1, 0.0);
      h[d] += 1;
    }
  return h;
}

/// The longest edge of a dataset's graphs, |r_e| with r_e = x[receiver] - x[sender] + S_e (HydraGNN
/// divides its edge-length features by this maximum over the dataset).
inline double max_edge_length(const Dataset& ds) {
  double best = 0;
  for (std::size_t k = 0; k < ds.graphs.size(); ++k) {
    const Structure& f = ds.frames[k];
    const RadiusGraph& g = ds.graphs[k];
    for (std::size_t e = 0; e < g.num_edges(); ++e) {
      const Vec3 r = edge_vector(f, g, e);
      best = std::max(best, std::sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]));
    }
  }
  return best;
}

/// The frames of an extxyz file, without graphs yet (build_graphs builds them; a data-parallel rank
/// builds only those of its own shards).
inline Dataset read_frames(const std::string& path) {
  Dataset ds;
  ds.name = path;
  ds.frames = read_extxyz(path);
  if (ds.frames.empty()) throw DataError(path + ": no frames");
  return ds;
}

inline Dataset load_dataset(const std::string& path, double cutoff, int max_neighbours, const DatasetRequirements& req) {
  Dataset ds = read_frames(path);
  build_graphs(ds, cutoff, max_neighbours, req);
  return ds;
}

/// How many frames of a dataset carry each kind of label (a frame without a label is skipped by the
/// metrics of that label).
struct LabelCounts {
  std::size_t frames = 0, energy = 0, forces = 0, stress = 0;
  std::vector<std::size_t> heads;  ///< per direct head
  bool any() const {
    if (energy || forces || stress) return true;
    for (std::size_t h : heads)
      if (h) return true;
    return false;
  }
};

inline LabelCounts count_labels(const Dataset& ds, const std::vector<HeadDef>& heads = {}) {
  LabelCounts c;
  c.frames = ds.size();
  c.heads.assign(heads.size(), 0);
  for (const auto& f : ds.frames) {
    if (f.energy) ++c.energy;
    if (!f.forces.empty()) ++c.forces;
    if (f.stress) ++c.stress;
    for (std::size_t h = 0; h < heads.size(); ++h) {
      const HeadDef& hd = heads[h];
      if (head_label(f, hd) != HeadLabel::None) ++c.heads[h];
    }
  }
  return c;
}

inline std::vector<StructureSummary> summaries_of(const Dataset& ds) {
  std::vector<StructureSummary> out;
  out.reserve(ds.size());
  for (const auto& f : ds.frames) out.push_back(summarize(f));
  return out;
}

/// Sorted atomic numbers present in a set of structures.
inline SpeciesMap species_of(const std::vector<StructureSummary>& ss) {
  std::set<int> z;
  for (const auto& s : ss)
    for (const auto& c : s.composition) z.insert(c.first);
  return SpeciesMap{std::vector<int>(z.begin(), z.end())};
}
inline SpeciesMap species_of(const Dataset& ds) { return species_of(summaries_of(ds)); }

/// Least-squares per-element reference energies: min sum_g (E_g - sum_s n_gs e_s)^2 (tiny ridge
/// for elements whose counts are collinear).
inline std::vector<double> fit_reference_energies(const std::vector<StructureSummary>& ss, const SpeciesMap& sp) {
  const std::size_t ns = sp.size();
  std::vector<double> A(ns * ns, 0.0), rhs(ns, 0.0);
  std::size_t used = 0;
  for (const auto& f : ss) {
    if (!f.energy) continue;
    std::vector<double> n(ns, 0.0);
    for (const auto& c : f.composition) n[sp.index_of(c.first)] += c.second;
    for (std::size_t a = 0; a < ns; ++a) {
      rhs[a] += n[a] * *f.energy;
      for (std::size_t b = 0; b < ns; ++b) A[a * ns + b] += n[a] * n[b];
    }
    ++used;
  }
  if (used == 0) return std::vector<double>(ns, 0.0);
  double tr = 0;
  for (std::size_t a = 0; a < ns; ++a) tr += A[a * ns + a];
  for (std::size_t a = 0; a < ns; ++a) A[a * ns + a] += 1e-12 * tr / ns;
  // Gaussian elimination with partial pivoting
  std::vector<double> x = rhs;
  for (std::size_t c = 0; c < ns; ++c) {
    std::size_t piv = c;
    for (std::size_t r = c + 1; r < ns; ++r)
      if (std::fabs(A[r * ns + c]) > std::fabs(A[piv * ns + c])) piv = r;
    for (std::size_t k = 0; k < ns; ++k) std::swap(A[c * ns + k], A[piv * ns + k]);
    std::swap(x[c], x[piv]);
    for (std::size_t r = c + 1; r < ns; ++r) {
      const double fct = A[r * ns + c] / A[c * ns + c];
      for (std::size_t k = c; k < ns; ++k) A[r * ns + k] -= fct * A[c * ns + k];
      x[r] -= fct * x[c];
    }
  }
  for (std::size_t c = ns; c-- > 0;) {
    for (std::size_t k = c + 1; k < ns; ++k) x[c] -= A[c * ns + k] * x[k];
    x[c] /= A[c * ns + c];
  }
  return x;
}
inline std::vector<double> fit_reference_energies(const Dataset& ds, const SpeciesMap& sp) {
  return fit_reference_energies(summaries_of(ds), sp);
}

/// Reference energies of each head branch, fitted on that branch's structures (StructureSummary::
/// branch), branch-major (branches x species; a branch without energies gets zeros). One branch: the
/// fit above.
inline std::vector<double> fit_reference_energies(const std::vector<StructureSummary>& ss, const SpeciesMap& sp,
                                                  int branches) {
  if (branches <= 1) return fit_reference_energies(ss, sp);
  std::vector<double> out;
  for (int k = 0; k < branches; ++k) {
    std::vector<StructureSummary> mine;
    for (const auto& f : ss)
      if (f.branch == k) mine.push_back(f);
    const std::vector<double> r = fit_reference_energies(mine, sp);
    out.insert(out.end(), r.begin(), r.end());
  }
  return out;
}

/// Scale of the per-atom energy output: RMS force component if forces exist, else the RMS of the
/// per-atom residual energy after the reference fit (ref: per species, or branches x species; never
/// below 1e-3 eV). Sums per structure, then
/// over structures in order.
inline double energy_scale_of(const std::vector<StructureSummary>& ss, const SpeciesMap& sp,
                              const std::vector<double>& ref) {
  double s2 = 0;
  std::size_t n = 0;
  for (const auto& f : ss) {
    s2 += f.force_sq;
    n += f.force_components;
  }
  if (n == 0)
    for (const auto& f : ss) {
      if (!f.energy) continue;
      double e = *f.energy;
      const std::size_t row = ref.size() > sp.size() ? std::size_t(f.branch) * sp.size() : 0;  // per-branch references
      for (const auto& c : f.composition) e -= c.second * ref[row + std::size_t(sp.index_of(c.first))];
      s2 += (e / f.natoms) * (e / f.natoms);
      ++n;
    }
  return n ? std::max(1e-3, std::sqrt(s2 / n)) : 1.0;
}
inline double energy_scale_of(const Dataset& ds, const SpeciesMap& sp, const std::vector<double>& ref) {
  return energy_scale_of(summaries_of(ds), sp, ref);
}

/// Shuffle 0 .. n-1 with `seed` and cut the order into consecutive parts of the given sizes (the last
/// part takes whatever remains).
inline std::vector<std::vector<std::size_t>> split_indices(std::size_t n, const std::vector<std::size_t>& sizes,
                                                           std::uint64_t seed) {
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::vector<std::size_t>> parts(sizes.size());
  std::size_t part = 0, used = 0;
  for (std::size_t k = 0; k < n; ++k) {
    while (part + 1 < parts.size() && used == sizes[part]) {
      ++part;
      used = 0;
    }
    parts[part].push_back(order[k]);
    ++used;
  }
  return parts;
}

/// The batch of frames idx of a dataset (grouped by head branch: a stable sort by Structure::branch).
template <class M>
Batch<M> batch_of(const Dataset& ds, const std::vector<std::size_t>& idx, const SpeciesMap& sp,
                  const std::vector<HeadDef>& heads = {}, bool with_triplets = false) {
  std::vector<const Structure*> f;
  std::vector<const RadiusGraph*> g;
  std::vector<std::size_t> sorted(idx);  // grouped by head branch (make_batch), otherwise in the given order
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](std::size_t a, std::size_t b) { return ds.frames[a].branch < ds.frames[b].branch; });
  for (std::size_t i : sorted) {
    f.push_back(&ds.frames[i]);
    g.push_back(&ds.graphs[i]);
  }
  return make_batch<M>(f, g, sp, heads, with_triplets);
}

}  // namespace hydragnn
