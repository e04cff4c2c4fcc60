// SPDX-License-Identifier: BSD-3-Clause
// lmp_hydragnn: Debian's LAMMPS library (no PLUGIN package) with pair_style hydragnn registered
// through Force::pair_map before the input is read. Same command line as lmp:
//
//   mpirun -np 2 build/examples/lmp_hydragnn -in in.lammps
//
// Kokkos is initialised before LAMMPS and finalised after it (the pair style holds Kokkos views).
#include "pair_hydragnn.h"

#include <lammps/force.h>
#include <lammps/input.h>
#include <lammps/lammps.h>
#include <mpi.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  {
    Kokkos::ScopeGuard kokkos(argc, argv);
    auto* lmp = new LAMMPS_NS::LAMMPS(argc, argv, MPI_COMM_WORLD);
    (*lmp->force->pair_map)["hydragnn"] = &LAMMPS_NS::PairHydraGNN::creator;
    lmp->input->file();
    delete lmp;
  }
  MPI_Finalize();
  return 0;
}
