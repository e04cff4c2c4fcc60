// SPDX-License-Identifier: BSD-3-Clause
// What an MPI launcher tells a process about the job it started, read without MPI: a program built
// without MPI uses it to refuse to run as one of many copies that would each train alone and write
// over each other's files.
#pragma once

#include <cstdlib>

namespace hydragnn {

/// The number of processes a launcher (Open MPI, MPICH/Hydra, MVAPICH) started this one with; 1 when
/// none did.
inline int launcher_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"}) {
    if (const char* s = std::getenv(v)) {
      const int n = std::atoi(s);
      if (n > 1) return n;
    }
  }
  return 1;
}

}  // namespace hydragnn
