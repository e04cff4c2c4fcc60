// SPDX-License-Identifier: BSD-3-Clause
// Small fixtures shared by the model tests.
#pragma once

#include <hydragnn/core/structure.hpp>

#include <Kokkos_Core.hpp>
#include <random>

namespace hydragnn_test {

/// Kokkos is initialised once per test process and finalised at exit.
struct KokkosGuard {
  KokkosGuard() {
    if (!Kokkos::is_initialized()) {
      Kokkos::initialize();
      std::atexit([] { Kokkos::finalize(); });
    }
  }
};
inline void ensure_kokkos() { static KokkosGuard guard; }

/// A random structure: n atoms of the given elements in a (possibly triclinic, periodic) cell,
/// rejecting placements closer than dmin.
inline hydragnn::Structure random_structure(std::uint64_t seed, int n, std::vector<int> elements, bool periodic,
                                            double box = 6.0, double dmin = 1.3) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  hydragnn::Structure s;
  s.source = "random:" + std::to_string(seed);
  if (periodic) {
    s.has_cell = true;
    s.pbc = {true, true, true};
    s.cell = {{{box, 0.0, 0.0}, {0.3 * u(rng), box * (0.9 + 0.2 * u(rng)), 0.0}, {0.2 * u(rng), -0.3 * u(rng), box}}};
  }
  while (int(s.positions.size()) < n) {
    hydragnn::Vec3 x{};
    if (periodic) {
      const double f[3] = {u(rng), u(rng), u(rng)};
      for (int a = 0; a < 3; ++a) x[a] = f[0] * s.cell[0][a] + f[1] * s.cell[1][a] + f[2] * s.cell[2][a];
    } else {
      for (int a = 0; a < 3; ++a) x[a] = box * u(rng);
    }
    bool ok = true;
    for (const auto& y : s.positions) {
      const double d2 = (x[0] - y[0]) * (x[0] - y[0]) + (x[1] - y[1]) * (x[1] - y[1]) + (x[2] - y[2]) * (x[2] - y[2]);
      if (d2 < dmin * dmin) ok = false;
    }
    if (!ok) continue;
    s.positions.push_back(x);
    s.numbers.push_back(elements[s.numbers.size() % elements.size()]);
  }
  return s;
}

}  // namespace hydragnn_test
