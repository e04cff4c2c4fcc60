// SPDX-License-Identifier: BSD-3-Clause
// Host-side description of one atomic structure (one extxyz frame).
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hydragnn {

using Vec3 = std::array<double, 3>;
using Mat3 = std::array<Vec3, 3>;  // rows are the lattice vectors a, b, c (ASE convention)

/// One structure as read from / written to extxyz. Plain data, no Kokkos.
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

  std::size_t size() const { return numbers.size(); }
};

}  // namespace hydragnn
