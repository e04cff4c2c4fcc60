// SPDX-License-Identifier: BSD-3-Clause
// MD-style cost of a trained potential through the C++ API (hydragnn/potential.hpp): a random
// Cu/Ni fcc box of nx x ny x nz cells, energy + forces + virial per call, the first call (buffers
// grow) untimed; prints one JSON line per box.
//
//   bench_md CHECKPOINT [--precision float32|float64] [--cells NX NY NZ]... [--steps K]
#include <hydragnn/potential.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  using Exec = Kokkos::DefaultExecutionSpace;
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_md CHECKPOINT [--precision P] [--cells NX NY NZ]... [--steps K]\n");
    return 2;
  }
  std::string precision = "checkpoint";
  std::vector<std::array<int, 3>> boxes;
  int steps = 5;
  for (int k = 2; k < argc; ++k) {
    const std::string a = argv[k];
    if (a == "--precision" && k + 1 < argc) precision = argv[++k];
    else if (a == "--steps" && k + 1 < argc) steps = std::atoi(argv[++k]);
    else if (a == "--cells" && k + 3 < argc) {
      boxes.push_back({std::atoi(argv[k + 1]), std::atoi(argv[k + 2]), std::atoi(argv[k + 3])});
      k += 3;
    } else {
      std::fprintf(stderr, "bench_md: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if (boxes.empty()) boxes.push_back({5, 5, 10});
  hydragnn::Potential<Exec> pot(argv[1], hydragnn::precision_from_name(precision));
  const double a0 = 3.57;
  const double basis[4][3] = {{0, 0, 0}, {0.5, 0.5, 0}, {0.5, 0, 0.5}, {0, 0.5, 0.5}};
  for (const auto& c : boxes) {
    hydragnn::Structure s;
    s.has_cell = true;
    s.pbc = {true, true, true};
    s.cell = {{{c[0] * a0, 0, 0}, {0, c[1] * a0, 0}, {0, 0, c[2] * a0}}};
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> u(-0.05, 0.05);
    for (int i = 0; i < c[0]; ++i)
      for (int j = 0; j < c[1]; ++j)
        for (int k = 0; k < c[2]; ++k)
          for (const auto& b : basis) {
            s.positions.push_back({(i + b[0]) * a0 + u(rng), (j + b[1]) * a0 + u(rng), (k + b[2]) * a0 + u(rng)});
            s.numbers.push_back(rng() % 2 ? 29 : 28);
          }
    pot.compute(Exec(), s);  // buffers grow
    Exec().fence();
    const auto t0 = std::chrono::steady_clock::now();
    double e = 0;
    for (int k = 0; k < steps; ++k) e += pot.compute(Exec(), s).energy;
    Exec().fence();
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"atoms\": %zu, \"steps\": %d, \"us_per_atom_step\": %.2f, \"precision\": \"%s\", \"mpnn_type\": \"%s\", "
                "\"exec\": \"%s\", \"energy\": %.6f}\n",
                s.size(), steps, sec / steps / double(s.size()) * 1e6, pot.precision().c_str(), pot.spec().mpnn_type.c_str(),
                Exec::name(), e / steps);
    std::fflush(stdout);
  }
  return 0;
}
