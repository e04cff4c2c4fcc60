// SPDX-License-Identifier: BSD-3-Clause
// The per-element-mean baseline of the training tests (tests only): energies from per-species
// reference energies, zero forces.
#pragma once

#include <hydragnn/train/dataset.hpp>

#include <cmath>
#include <vector>

namespace hydragnn_test {

struct BaselineErrors {
  double epa_mae = 0;  ///< energy MAE per atom, eV/atom
  double f_mae = 0;    ///< force-component MAE of zero forces, eV/A
};

/// The errors on `eval` of E = sum_i ref[species(Z_i)] and F = 0.
inline BaselineErrors baseline_errors(const hydragnn::Dataset& eval, const hydragnn::SpeciesMap& sp,
                                      const std::vector<double>& ref) {
  BaselineErrors b;
  long nf = 0;
  for (const auto& f : eval.frames) {
    double e = 0;
    for (int z : f.numbers) e += ref[std::size_t(sp.index_of(z))];
    b.epa_mae += std::fabs(e - *f.energy) / double(f.size());
    for (const auto& v : f.forces)
      for (double c : v) b.f_mae += std::fabs(c), ++nf;
  }
  b.epa_mae /= double(eval.size());
  b.f_mae /= double(nf);
  return b;
}

}  // namespace hydragnn_test
