// SPDX-License-Identifier: BSD-3-Clause
#include <hydragnn/potential.hpp>  // Potential: any checkpoint -> energy, forces, virial, per-atom terms

#include <cstdio>
#include <string>

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);  // Kokkos is initialised first and finalised last
  using Exec = Kokkos::DefaultExecutionSpace;
  const std::string ckpt = argc > 1 ? argv[1] : "run/checkpoint_best.hgnn";
  const std::string xyz  = argc > 2 ? argv[2] : "md.extxyz";
  hydragnn::Potential<Exec> pot(ckpt, hydragnn::Precision::Float64);  // double maths, any model type
  const std::vector<hydragnn::Structure> frames = hydragnn::read_extxyz(xyz);
  for (const hydragnn::Structure& s : frames) {
    const hydragnn::PotentialOutput& out = pot.compute(Exec(), s, /*per_atom=*/true);
    std::printf("E = %.6f eV  F(atom 0) = (%.4f, %.4f, %.4f) eV/A  W_xx = %.4f eV  e(atom 0) = %.4f eV\n",
                out.energy, out.forces[0], out.forces[1], out.forces[2], out.virial[0], out.atom_energy[0]);
  }
  return 0;
}
