// SPDX-License-Identifier: BSD-3-Clause
// Potential: a trained model behind one runtime interface, for simulation codes (the C++ API, the
// LAMMPS pair style, the Python calculator). Load a checkpoint of any registered model type once,
// choose float or double network maths at load time, then per call get the energy, forces, virial
// and optionally per-atom energies and virials:
//
//  * compute(exec, structure): the neighbour list is built here (periodic images of the cell);
//  * compute(exec, host_list): the host code's list over owned atoms [0, n_local) and ghosts
//    [n_local, n_all). The energy is the sum over the owned atoms' energies; forces are returned
//    for every atom, the ghosts' ones to be added to their owners by the host (LAMMPS' reverse
//    communication). The ghosts must reach receptive_hops() x cutoff (ghost_cutoff()) beyond the
//    owned atoms and carry their own lists, so that every feature an owned atom's energy reads is
//    computed from a complete neighbourhood. Without lists (firstneigh null) every pair among all
//    the atoms is found here (cell lists): what the LAMMPS pair style does. Only the owned atoms'
//    receptive field is computed (graph/host_batch.hpp, ReceptiveField): ghosts more than
//    receptive_hops() hops away are dropped, the outermost kept ghosts get no incoming edges.
//    receptive_hops() is the number of message-passing layers between positions and energy
//    (num_conv_layers; plus a conv node head's convolutions when it gives the per-atom energy), twice
//    that for triplet models (DimeNet: a layer's output at i reads k -> j -> i, two neighbour shells).
//
// A multi-dataset model (head branches) answers through one branch, set_branch(name) (default: the
// first), as `hydragnn predict --branch` does.
//
// Virial convention (LAMMPS'): W = sum_i x_i F_i^T = -sum_e r_e (dE/dr_e)^T, eV; per atom half of
// each edge's term to each end (sum_i W_i = W). The stress (ASE sign, eV/A^3) is -W^T / V.
// Buffers (the batch, every intermediate, the outputs) live in the Potential: after the first call
// at a given size a call allocates nothing (Kokkos or output vectors).
#pragma once

#include <hydragnn/autodiff/potential.hpp>
#include <hydragnn/graph/host_batch.hpp>
#include <hydragnn/model/registry.hpp>
#include <hydragnn/train/trainer.hpp>

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace hydragnn {

/// Network arithmetic of a loaded potential: the checkpoint's, or forced (a float-trained model
/// runs exactly in double: its parameters are widened without rounding).
enum class Precision { Checkpoint, Float32, Float64 };

/// "checkpoint", "float32" (or "float"), "float64" (or "double").
inline Precision precision_from_name(const std::string& s) {
  if (s == "checkpoint") return Precision::Checkpoint;
  if (s == "float32" || s == "float") return Precision::Float32;
  if (s == "float64" || s == "double") return Precision::Float64;
  throw std::invalid_argument("precision '" + s + "': expected float32, float64 or checkpoint");
}

/// The network arithmetic p asks for a checkpoint: sets c.precision to "float" or "double" (the
/// stored values are exact in either) and returns whether it is double.
inline bool resolve_precision(CheckpointData& c, Precision p) {
  const bool dbl = p == Precision::Float64 || (p == Precision::Checkpoint && c.precision == "double");
  c.precision = dbl ? "double" : "float";
  return dbl;
}

struct PotentialOutput {
  double energy = 0;                 ///< eV (host list: the owned atoms' energies)
  std::vector<double> forces;        ///< n x 3, eV/A (host list: n_all, ghosts included)
  std::array<double, 9> virial{};    ///< eV, row-major W(a,b) = sum_i x_ia F_ib
  std::array<double, 9> stress{};    ///< eV/A^3, ASE sign, only for a 3-D periodic structure (else NaN)
  std::vector<double> atom_energy;   ///< per_atom: n (host list: n_local) atom energies, eV
  std::vector<double> atom_virial;   ///< per_atom: n x 9 (host list: n_all), eV
};

template <class Exec = Kokkos::DefaultExecutionSpace>
class Potential {
 public:
  using exec_space = Exec;
  using memory_space = mem_t<Exec>;

  explicit Potential(const std::string& checkpoint, Precision precision = Precision::Checkpoint) {
    CheckpointData c = read_checkpoint(checkpoint);
    if (!c.spec.energy)
      throw CheckpointError(checkpoint + ": the model has no energy head (enable_interatomic_potential), so it is not a potential");
    const bool dbl = resolve_precision(c, precision);
    const bool found = dispatch_conv(c.spec.mpnn_type, [&](auto tag) {
      using C = typename decltype(tag)::type;
      if (dbl)
        impl_ = std::make_unique<ModelImpl<Model<double, C, Exec>>>(model_from_checkpoint<Model<double, C, Exec>>(c, checkpoint));
      else
        impl_ = std::make_unique<ModelImpl<Model<float, C, Exec>>>(model_from_checkpoint<Model<float, C, Exec>>(c, checkpoint));
    });
    if (!found) throw CheckpointError(checkpoint + ": mpnn_type '" + c.spec.mpnn_type + "' is not implemented");
    precision_ = c.precision;
  }

  const ModelSpec& spec() const { return impl_->spec(); }
  /// "float" or "double": the network arithmetic in use.
  const std::string& precision() const { return precision_; }
  double cutoff() const { return spec().cutoff; }
  /// Neighbour shells an owned atom's energy reads: one per message-passing layer between the
  /// positions and the energy (Model::energy_layers: the trunk's, and a conv node head's when it
  /// gives the per-atom energy), twice that for triplet models.
  int receptive_hops() const { return impl_->receptive_hops(); }
  /// How far ghost atoms must reach beyond the owned ones: receptive_hops() x cutoff.
  double ghost_cutoff() const { return receptive_hops() * spec().cutoff; }
  /// The nearest-K cap of the training graphs (-1: none). With a cap the energy is discontinuous
  /// where neighbours swap at the cap; models for MD should be trained without one.
  int max_neighbours() const { return spec().max_neighbours; }
  /// Atomic numbers the model knows.
  const std::vector<int>& elements() const { return spec().species.numbers; }
  /// Whether the energy is a sum of atom energies (type "node"); a pooled graph energy head is not,
  /// and then neither per-atom energies nor a host code's domain decomposition are available.
  bool atom_energies() const { return !spec().energy_pooled; }
  /// Head branches of a multi-dataset model (HydraGNN's output_heads branches; one for most models).
  std::vector<std::string> branches() const {
    std::vector<std::string> names;
    for (const auto& b : spec().branches) names.push_back(b.name);
    return names;
  }
  /// The head branch every call goes through (default and empty name: the first); an unknown name
  /// is an error listing the branches.
  void set_branch(const std::string& name) {
    const int k = spec().chosen_branch(name);
    if (k < 0)
      throw std::invalid_argument("hydragnn::Potential: head branch '" + name + "' not found; the model has " +
                                  spec().branch_list());
    branch_ = k;
  }
  const std::string& branch() const { return spec().branches[std::size_t(branch_)].name; }
  /// Size of the last call's graph (host list: the owned atoms' receptive field), for cost estimates.
  int last_num_nodes() const { return host_.num_atoms; }
  int last_num_edges() const { return host_.num_edges; }

  /// A structure (its own periodic neighbour list, as in training).
  const PotentialOutput& compute(const Exec& exec, const Structure& s, bool per_atom = false) {
    const RadiusGraph rg = radius_graph(s, spec().cutoff, spec().max_neighbours);
    host_batch_from_structure(s, rg, spec().species, host_);
    host_.branch = branch_;
    impl_->run(exec, host_, int(s.size()), per_atom, out_);
    const double vol = host_.volume[0];
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b) out_.stress[3 * a + b] = vol > 0 ? -out_.virial[3 * b + a] / vol : std::nan("");
    return out_;
  }

  /// A host code's neighbour list with ghosts (see HostNeighborList).
  const PotentialOutput& compute(const Exec& exec, const HostNeighborList& nl, bool per_atom = false) {
    if (!atom_energies())
      throw std::invalid_argument("hydragnn::Potential: the model's energy is a pooled graph head (Variables_of_interest type "
                                  "\"graph\"), not a sum of atom energies; it cannot be split over owned and ghost atoms "
                                  "(train the MD model with type \"node\")");
    if (nl.n_all == 0) {  // e.g. a rank that owns no atoms
      out_.energy = 0;
      out_.forces.clear();
      out_.virial.fill(0.0);
      out_.atom_energy.clear();
      out_.atom_virial.clear();
      out_.stress.fill(std::nan(""));
      return out_;
    }
    if (nl.firstneigh) {
      lists_.build(nl, spec().cutoff, spec().max_neighbours, spec().species, host_);
    } else {  // no lists: every pair among the n_all atoms (cell lists, no periodicity)
      if (nl.n_local < 0 || nl.n_all < nl.n_local)
        throw std::invalid_argument("hydragnn::Potential: need 0 <= n_local <= n_all");
      all_.numbers.assign(nl.numbers, nl.numbers + nl.n_all);
      all_.positions.resize(std::size_t(nl.n_all));
      for (int i = 0; i < nl.n_all; ++i)
        for (int a = 0; a < 3; ++a) all_.positions[i][a] = nl.x[3 * std::size_t(i) + a];
      all_.source = "owned and ghost atoms";
      const RadiusGraph rg = radius_graph(all_, spec().cutoff, spec().max_neighbours);
      host_batch_from_structure(all_, rg, spec().species, host_, nl.n_local);
    }
    field_.apply(host_, receptive_hops(), int(spec().species.size()));
    host_.branch = branch_;
    impl_->run(exec, host_, nl.n_local, per_atom, field_out_);
    // back to the host's atom indices (atoms outside the receptive field: zero force and virial)
    out_.energy = field_out_.energy;
    out_.virial = field_out_.virial;
    out_.stress.fill(std::nan(""));
    out_.forces.assign(3 * std::size_t(nl.n_all), 0.0);
    const int K = host_.num_atoms;
    auto host_index = [&](int k) { return std::size_t(host_.origin.empty() ? k : host_.origin[k]); };
    for (int k = 0; k < K; ++k)
      for (int a = 0; a < 3; ++a) out_.forces[3 * host_index(k) + a] = field_out_.forces[3 * std::size_t(k) + a];
    out_.atom_energy.assign(field_out_.atom_energy.begin(), field_out_.atom_energy.end());  // owned atoms keep their indices
    out_.atom_virial.clear();
    if (per_atom) {
      out_.atom_virial.assign(9 * std::size_t(nl.n_all), 0.0);
      for (int k = 0; k < K; ++k)
        for (int q = 0; q < 9; ++q)
          out_.atom_virial[9 * host_index(k) + q] = field_out_.atom_virial[9 * std::size_t(k) + q];
    }
    return out_;
  }

 private:
  struct Impl {
    virtual ~Impl() = default;
    virtual const ModelSpec& spec() const = 0;
    virtual int receptive_hops() const = 0;
    /// Energy of graph 0 (the structure, or the owned atoms) and its derivatives; n_energy atoms
    /// (the first ones) get per-atom energies.
    virtual void run(const Exec& exec, const HostBatch& h, int n_energy, bool per_atom, PotentialOutput& out) = 0;
  };

  template <class ModelT>
  struct ModelImpl final : Impl {
    using T = typename ModelT::real_type;
    using M = memory_space;
    explicit ModelImpl(ModelT&& m) : model(std::move(m)) {}
    const ModelSpec& spec() const override { return model.spec(); }
    int receptive_hops() const override { return (ModelT::traits::needs_triplets ? 2 : 1) * model.energy_layers(); }

    void run(const Exec& exec, const HostBatch& h, int n_energy, bool per_atom, PotentialOutput& out) override {
      const int G = h.num_graphs, N = h.num_atoms;
      Batch<M> b = upload_batch(h, batch_ws);
      if constexpr (ModelT::traits::needs_triplets) {
        triplets = build_triplets(h.dst, h.src, h.shift, h.num_atoms);
        upload_triplets(triplets, batch_ws, b);
      }
      const auto w = model.weights(exec);
      auto r = model.template edge_vectors<T>(exec, b, ws);
      f.geometry_only = true;  // forces and stress only
      model.template forward<T>(exec, w, b, r, f, ws);
      // dE_0 / d(everything): seed 1 on graph 0 only
      auto hseed = ws.template host_vec<T>("hydragnn::Potential::seed_host", 0, G);
      for (int g = 0; g < G; ++g) hseed(g) = T(g == 0 ? 1 : 0);
      auto seed = ws.template vec<T>("hydragnn::Potential::seed", 0, G);
      Kokkos::deep_copy(exec, seed, hseed);
      auto rbar = model.template backward<T>(exec, w, b, f, seed, {}, Vec<T, M>(), ws);
      auto F = ws.template mat<double>("hydragnn::Potential::forces", 0, N, 3);
      auto W = ws.template mat<double>("hydragnn::Potential::atom_virial", 0, N, 9);
      kernels::assemble_forces<Exec, T>(exec, b, rbar, F);
      kernels::assemble_atom_virial<Exec, T>(exec, b, rbar, W);
      copy_out(exec, f.energy, 1, "energy", energy_);
      copy_out(exec, F, 3 * std::size_t(N), "forces", out.forces);
      copy_out(exec, W, 9 * std::size_t(N), "atom_virial", out.atom_virial);
      out.energy = energy_[0];
      out.virial.fill(0.0);
      for (int i = 0; i < N; ++i)
        for (int k = 0; k < 9; ++k) out.virial[k] += out.atom_virial[9 * std::size_t(i) + k];
      if (!per_atom) {
        out.atom_virial.clear();
        out.atom_energy.clear();
        return;
      }
      if (model.spec().energy_pooled)
        throw std::invalid_argument("hydragnn::Potential: per-atom energies need an energy that is a sum of atom "
                                    "energies (Variables_of_interest type \"node\"); this model pools a graph head");
      // e_i = scale * (network output of atom i) + shift + ref[species_i]
      copy_out(exec, f.heads.e_atom, std::size_t(n_energy), "atom_energy", out.atom_energy);
      const ModelSpec& sp = model.spec();
      for (int i = 0; i < n_energy; ++i)
        out.atom_energy[i] = sp.energy_scale * out.atom_energy[i] + sp.energy_shift + sp.ref_energy[h.species[i]];
    }

    /// The first n values of a contiguous device view into dst (as double), through a host slot.
    template <class V>
    void copy_out(const Exec& exec, const V& v, std::size_t n, const char* what, std::vector<double>& dst) {
      using S = typename V::non_const_value_type;
      auto hv = ws.template host_vec<S>(std::string("hydragnn::Potential::") + what, 0, n);
      Kokkos::deep_copy(exec, hv, Kokkos::View<const S*, M, Kokkos::MemoryUnmanaged>(v.data(), n));
      exec.fence();
      dst.resize(n);
      for (std::size_t i = 0; i < n; ++i) dst[i] = double(hv(i));
    }

    ModelT model;
    Workspace<M> ws, batch_ws;
    typename ModelT::template Forward<T> f;
    std::vector<double> energy_;
    TripletCsr triplets;  ///< host triplets of the last call (triplet models)
  };

  std::unique_ptr<Impl> impl_;
  std::string precision_;
  int branch_ = 0;  ///< set_branch
  HostBatch host_;
  HostListBuilder lists_;
  Structure all_;  ///< owned + ghost atoms when the host gives no lists
  ReceptiveField field_;
  PotentialOutput out_, field_out_;
};

}  // namespace hydragnn
