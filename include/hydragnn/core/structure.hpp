// SPDX-License-Identifier: BSD-3-Clause
// Host-side description of one atomic structure (one extxyz frame).
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hydragnn {

using Vec3 = std::array<double, 3>;
using Mat3 = std::array<Vec3, 3>;  // rows are the lattice vectors a, b, c (ASE convention)

/// One structure as read from / written to extxyz. Plain data, no Kokkos.
/// A stress in Voigt order (xx yy zz yz xz xy) as Structure::stress's row-major symmetric 3x3.
inline std::array<double, 9> stress_from_voigt(const double v[6]) {
  return {v[0], v[5], v[4],  //
          v[5], v[1], v[3],  //
          v[4], v[3], v[2]};
}

struct Structure {
  std::vector<int> numbers;    ///< atomic numbers Z (>= 1)
  std::vector<Vec3> positions; ///< Cartesian, Angstrom (not wrapped)
  Mat3 cell{};                 ///< lattice vectors as rows; all zero when absent
  std::array<bool, 3> pbc{false, false, false};
  bool has_cell = false;

  std::optional<double> energy;       ///< total energy, eV
  std::vector<Vec3> forces;           ///< eV/Angstrom; empty when absent
  std::optional<std::array<double, 9>> stress;  ///< row-major 3x3, eV/A^3, ASE sign

  /// Other comment-line key=value pairs, value kept as written (quotes removed).
  std::map<std::string, std::string> info;
  /// Other per-atom real columns (name -> n_atoms * ncols values, atom-major) and their widths.
  std::map<std::string, std::vector<double>> arrays;
  std::map<std::string, int> array_cols;

  /// Where the frame came from, "file:line" of its atom-count line (for error messages).
  std::string source;
  /// Head branch of the structure's dataset (HydraGNN's dataset_name): its graph and node heads are
  /// branch `branch` of the model's heads (heads/heads.hpp); 0 with one dataset.
  int branch = 0;

  std::size_t size() const { return numbers.size(); }
};

/// What the statistics of a training set need of one structure (the reference-energy fit, the energy
/// scale, the shard plan), without its atoms: a sharded dataset keeps these for every structure and
/// the atoms only for the structures a rank owns.
struct StructureSummary {
  std::size_t natoms = 0;
  std::vector<std::pair<int, int>> composition;  ///< (Z, count), ascending Z
  std::optional<double> energy;
  double force_sq = 0;             ///< sum of the squared force components (0 without forces)
  std::size_t force_components = 0;
  int branch = 0;  ///< Structure::branch
};

inline StructureSummary summarize(const Structure& f) {
  StructureSummary s;
  s.natoms = f.size();
  std::map<int, int> count;
  for (int z : f.numbers) ++count[z];
  s.composition.assign(count.begin(), count.end());
  s.energy = f.energy;
  for (const auto& v : f.forces) s.force_sq += v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
  s.force_components = 3 * f.forces.size();
  s.branch = f.branch;
  return s;
}

}  // namespace hydragnn
