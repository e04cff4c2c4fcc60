// SPDX-License-Identifier: BSD-3-Clause
// Every LAMMPS error/warning message is passed as a std::string: the non-template Error overloads; the
// templated ones would need the fmt library LAMMPS was built with.
// pair_style hydragnn (pair_hydragnn.h).
#include "pair_hydragnn.h"

#include <lammps/atom.h>
#include <lammps/comm.h>
#include <lammps/domain.h>
#include <lammps/error.h>
#include <lammps/force.h>
#include <lammps/memory.h>
#include <lammps/neighbor.h>

#include <algorithm>
#include <cstring>
#include <exception>

using namespace LAMMPS_NS;

PairHydraGNN::PairHydraGNN(LAMMPS* lmp) : Pair(lmp) {
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;  // the virial comes from the model's edge gradients
  centroidstressflag = CENTROID_NOTAVAIL;
  comm_reverse = comm_reverse_off = 9;  // newton off: forces (3) and per-atom virial (6) of ghosts
  if (!Kokkos::is_initialized())
    error->all(FLERR, std::string("Pair hydragnn: Kokkos is not initialised (run LAMMPS through lmp_hydragnn, which initialises it)"));
}

PairHydraGNN::~PairHydraGNN() {
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairHydraGNN::allocate() {
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 1; i <= n; ++i)
    for (int j = i; j <= n; ++j) setflag[i][j] = 0;
}

void PairHydraGNN::settings(int narg, char** arg) {
  const std::string usage = "Illegal pair_style hydragnn command: expected 'pair_style hydragnn [precision float32|float64|checkpoint] [ghosts yes|no] [branch NAME]'";
  for (int k = 0; k < narg; k += 2) {
    if (k + 1 >= narg) error->all(FLERR, usage);
    const std::string key = arg[k], value = arg[k + 1];
    if (key == "precision") {
      precision_ = value;
      try {
        hydragnn::precision_from_name(precision_);
      } catch (const std::exception& e) {
        error->all(FLERR, std::string("pair_style hydragnn: ") + e.what());
      }
    } else if (key == "branch") {
      branch_ = value;
    } else if (key == "ghosts" && (value == "yes" || value == "no")) {
      force_ghosts_ = value == "yes";
    } else {
      error->all(FLERR, usage);
    }
  }
}

void PairHydraGNN::coeff(int narg, char** arg) {
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes || std::strcmp(arg[0], "*") != 0 || std::strcmp(arg[1], "*") != 0)
    error->all(FLERR, std::string("Incorrect args for pair_coeff hydragnn: expected 'pair_coeff * * model.hgnn' and one element per atom type (") +
                          std::to_string(ntypes) + ")");
  try {
    pot_ = std::make_unique<hydragnn::Potential<>>(arg[2], hydragnn::precision_from_name(precision_));
    pot_->set_branch(branch_);
  } catch (const std::exception& e) {
    error->all(FLERR, std::string("pair_coeff hydragnn: ") + e.what());
  }
  type_z_.assign(ntypes + 1, 0);
  for (int t = 1; t <= ntypes; ++t) {
    const std::string sym = arg[2 + t];
    int z = -1;
    try {
      z = hydragnn::atomic_number(sym);
    } catch (const std::exception&) {
      error->all(FLERR, std::string("pair_coeff hydragnn: '") + sym + "' (atom type " + std::to_string(t) + ") is not an element symbol");
    }
    const auto& el = pot_->elements();
    if (std::find(el.begin(), el.end(), z) == el.end())
      error->all(FLERR, std::string("pair_coeff hydragnn: element ") + sym + " (atom type " + std::to_string(t) + ") is not among the model's species in " +
                            std::string(arg[2]));
    type_z_[t] = z;
  }
  for (int i = 1; i <= ntypes; ++i)
    for (int j = i; j <= ntypes; ++j) setflag[i][j] = 1;
  if (comm->me == 0) {
    if (pot_->max_neighbours() > 0)
      error->warning(FLERR, std::string("Pair hydragnn: the model keeps only the ") + std::to_string(pot_->max_neighbours()) +
                                " nearest neighbours of each atom (max_neighbours); its energy jumps where neighbours swap at that cap. "
                                "Train MD models without max_neighbours.");
    if (!pot_->atom_energies())
      error->all(FLERR, std::string("pair_coeff hydragnn: the model's energy is a pooled graph head, not a sum of atom energies; "
                                    "train it with Variables_of_interest type \"node\" for MD"));
  }
}

void PairHydraGNN::init_style() {
  if (!pot_) error->all(FLERR, std::string("Pair hydragnn: pair_coeff * * model.hgnn ... has not been given"));
  // No LAMMPS neighbour list: the potential finds the pairs among owned and ghost atoms itself (or,
  // on one rank with a periodic box, among the owned atoms and their periodic images). Ghosts must cover every atom an owned atom's energy reads, through all layers, between
  // reneighbourings: ghost_cutoff() (a cutoff per layer between positions and energy, conv node heads
  // included; twice that for DimeNet's triplets) + skin.
  const double need = pot_->ghost_cutoff() + neighbor->skin;
  if (!single_periodic() && comm->cutghostuser < need) {
    comm->cutghostuser = need;
    if (comm->me == 0)
      error->warning(FLERR, std::string("Pair hydragnn: ghost cutoff (comm_modify cutoff) set to ") + std::to_string(need) +
                                " A = the model's ghost cutoff + neighbour skin");
  }
}

double PairHydraGNN::init_one(int, int) { return pot_->cutoff(); }

void PairHydraGNN::compute(int eflag, int vflag) {
  ev_init(eflag, vflag);
  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  const int* type = atom->type;
  const bool per_atom = eflag_atom || vflag_atom;
  // One rank, periodic in x, y and z: the owned atoms and the cell are the whole system; the
  // periodic graph needs no ghosts (many fewer nodes than ghosts to num_conv_layers x cutoff).
  const bool whole = single_periodic();
  try {
    if (whole) {
      cell_.has_cell = true;
      cell_.pbc = {true, true, true};
      cell_.cell = {{{domain->xprd, 0.0, 0.0}, {domain->xy, domain->yprd, 0.0}, {domain->xz, domain->yz, domain->zprd}}};
      cell_.numbers.resize(nlocal);
      cell_.positions.resize(nlocal);
      for (int i = 0; i < nlocal; ++i) {
        cell_.numbers[i] = type_z_[type[i]];
        for (int a = 0; a < 3; ++a) cell_.positions[i][a] = atom->x[i][a];
      }
      if (nlocal == 0) return;
      cell_.source = "LAMMPS atoms";
      out_ = &pot_->compute(Kokkos::DefaultExecutionSpace(), cell_, per_atom);
    } else {
      z_.resize(nall);
      for (int i = 0; i < nall; ++i) z_[i] = type_z_[type[i]];
      hydragnn::HostNeighborList atoms;  // no lists: the potential finds the pairs
      atoms.n_local = nlocal;
      atoms.n_all = nall;
      atoms.x = nall ? &atom->x[0][0] : nullptr;
      atoms.numbers = z_.data();
      out_ = &pot_->compute(Kokkos::DefaultExecutionSpace(), atoms, per_atom);
    }
  } catch (const std::exception& e) {
    error->one(FLERR, std::string("Pair hydragnn: ") + e.what());
  }
  const hydragnn::PotentialOutput& out = *out_;
  if (nall == 0) return;
  const int nout = whole ? nlocal : nall;  // atoms with forces in out
  static constexpr int voigt[6] = {0, 4, 8, 1, 2, 5};  // xx yy zz xy xz yz of the row-major 3x3
  if (eflag_global) eng_vdwl += out.energy;
  if (eflag_atom)
    for (int i = 0; i < nlocal; ++i) eatom[i] += out.atom_energy[i];
  if (vflag_global)
    for (int k = 0; k < 6; ++k) virial[k] += out.virial[voigt[k]];
  // Straight into f / vatom: every atom of out with newton on (LAMMPS adds the ghosts' terms to
  // their owners; compute stress/atom the virials) or with the periodic graph; only the owned atoms
  // with newton off, when LAMMPS neither clears nor communicates ghost forces and this style sends
  // the ghosts' terms to their owners itself.
  const bool own_comm = !force->newton_pair && !whole;
  const int ndirect = own_comm ? nlocal : nout;
  double** f = atom->f;
  for (int i = 0; i < ndirect; ++i)
    for (int a = 0; a < 3; ++a) f[i][a] += out.forces[3 * std::size_t(i) + a];
  if (vflag_atom)
    for (int i = 0; i < ndirect; ++i)
      for (int k = 0; k < 6; ++k) vatom[i][k] += out.atom_virial[9 * std::size_t(i) + voigt[k]];
  if (own_comm && nall > nlocal) {
    comm_vatom_ = vflag_atom != 0;
    acc_.assign(9 * std::size_t(nall), 0.0);
    for (int i = nlocal; i < nall; ++i) {
      for (int a = 0; a < 3; ++a) acc_[9 * std::size_t(i) + a] = out.forces[3 * std::size_t(i) + a];
      if (comm_vatom_)
        for (int k = 0; k < 6; ++k) acc_[9 * std::size_t(i) + 3 + k] = out.atom_virial[9 * std::size_t(i) + voigt[k]];
    }
    nlocal_ = nlocal;
    comm->reverse_comm_pair(this);
  }
}

bool PairHydraGNN::single_periodic() const {
  return comm->nprocs == 1 && domain->xperiodic && domain->yperiodic && domain->zperiodic && !force_ghosts_;
}

// Reverse communication (newton off): a ghost's accumulated values go to the atom it copies, which
// is an owned atom (added to f / vatom) or, across several swaps, another ghost (added to acc_).
int PairHydraGNN::pack_reverse_comm(int n, int first, double* buf) {
  const int w = comm_vatom_ ? 9 : 3;
  int m = 0;
  for (int i = first; i < first + n; ++i)
    for (int k = 0; k < w; ++k) buf[m++] = acc_[9 * std::size_t(i) + k];
  return m;
}

void PairHydraGNN::unpack_reverse_comm(int n, int* list, double* buf) {
  const int w = comm_vatom_ ? 9 : 3;
  int m = 0;
  for (int q = 0; q < n; ++q) {
    const int j = list[q];
    if (j < nlocal_) {
      for (int a = 0; a < 3; ++a) atom->f[j][a] += buf[m + a];
      if (comm_vatom_)
        for (int k = 0; k < 6; ++k) vatom[j][k] += buf[m + 3 + k];
    } else {
      for (int k = 0; k < w; ++k) acc_[9 * std::size_t(j) + k] += buf[m + k];
    }
    m += w;
  }
}
