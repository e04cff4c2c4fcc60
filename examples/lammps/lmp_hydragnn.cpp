// SPDX-License-Identifier: BSD-3-Clause
// lmp_hydragnn: Debian's LAMMPS library (no PLUGIN package) with pair_style hydragnn registered
// through Force::pair_map before the input is read. Same command line as lmp:
//
//   mpirun -np 2 build/examples/lmp_hydragnn -in in.lammps [--kokkos-num-threads=2]
//
// Kokkos is initialised before LAMMPS and finalised after it (the pair style holds Kokkos views).
#include "pair_hydragnn.h"

#include <lammps/force.h>
#include <lammps/input.h>
#include <lammps/lammps.h>
#include <mpi.h>

#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  {
    Kokkos::ScopeGuard kokkos(argc, argv);
    // Kokkos' own options (--kokkos-num-threads=2, ...) are Kokkos', not LAMMPS' (Kokkos 3.4 leaves
    // them in argv)
    std::vector<char*> args;
    for (int k = 0; k < argc; ++k)
      if (std::strncmp(argv[k], "--kokkos-", 9) != 0) args.push_back(argv[k]);
    int nargs = int(args.size());
    args.push_back(nullptr);
    auto* lmp = new LAMMPS_NS::LAMMPS(nargs, args.data(), MPI_COMM_WORLD);
    (*lmp->force->pair_map)["hydragnn"] = &LAMMPS_NS::PairHydraGNN::creator;
    lmp->input->file();
    delete lmp;
  }
  MPI_Finalize();
  return 0;
}
