// SPDX-License-Identifier: BSD-3-Clause
// LAMMPS pair style hydragnn: a trained hydragnn checkpoint (any model type) as a many-body
// potential.
//
//   pair_style hydragnn [precision float32|float64|checkpoint] [ghosts yes|no]
//   pair_coeff * * model.hgnn Cu Ni        (one element per LAMMPS atom type)
//
// On one rank with a box periodic in x, y and z the owned atoms and the box are the whole system:
// the model's own periodic graph, no ghosts (unless `ghosts yes`). Otherwise each step the owned and
// ghost atoms of a rank form one graph (every pair closer than the model's
// cutoff, found here with cell lists; no LAMMPS neighbour list is requested); the energy is the sum
// of the owned atoms' energies, and forces on ghosts go to their owners (LAMMPS' reverse
// communication with newton on; this style's own with newton off). A message-passing model reads
// one cutoff per layer between positions and energy around an atom (num_conv_layers, plus a conv node
// head's convolutions; twice that for a triplet model), so the ghost cutoff (comm_modify cutoff) is raised to that
// plus the neighbour skin. Global and per-atom energy and virial (pressure, fix npt, compute pe/atom,
// compute stress/atom).
#pragma once

#include <hydragnn/potential.hpp>

#include <lammps/pair.h>

#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairHydraGNN : public Pair {
 public:
  explicit PairHydraGNN(LAMMPS* lmp);
  ~PairHydraGNN() override;
  void compute(int eflag, int vflag) override;
  void settings(int narg, char** arg) override;
  void coeff(int narg, char** arg) override;
  void init_style() override;
  double init_one(int i, int j) override;
  int pack_reverse_comm(int n, int first, double* buf) override;
  void unpack_reverse_comm(int n, int* list, double* buf) override;

  /// The creator to put into Force::pair_map.
  static Pair* creator(LAMMPS* lmp) { return new PairHydraGNN(lmp); }

 private:
  void allocate();
  /// One rank and a box periodic in x, y, z (and not `ghosts yes`): the periodic graph of the owned atoms.
  bool single_periodic() const;
  bool force_ghosts_ = false;
  hydragnn::Structure cell_;  ///< the owned atoms and the box (single_periodic)
  std::string precision_ = "checkpoint";
  std::string branch_;  ///< head branch of a multi-dataset model (empty: the first)
  std::unique_ptr<hydragnn::Potential<>> pot_;
  std::vector<int> type_z_;  ///< atomic number of each LAMMPS type (1-based)
  std::vector<int> z_;       ///< per owned + ghost atom
  const hydragnn::PotentialOutput* out_ = nullptr;  ///< the last compute's result
  std::vector<double> acc_;  ///< newton off: per atom [F(3) | virial(6)] of ghosts, summed by reverse comm
  int nlocal_ = 0;
  bool comm_vatom_ = false;
};

}  // namespace LAMMPS_NS
