// SPDX-License-Identifier: BSD-3-Clause
// ModelSpec: everything that defines a model's architecture and fixed normalisation, as a plain
// struct (built from a validated Config, stored in checkpoints).
#pragma once

#include <hydragnn/core/batch.hpp>
#include <hydragnn/kernels/pointwise.hpp>
#include <hydragnn/kernels/radial.hpp>

#include <string>
#include <vector>

namespace hydragnn {

enum class Pooling { Mean, Sum, Max };

struct ModelSpec {
  std::string mpnn_type = "SchNet";
  int hidden_dim = 64;
  int num_conv_layers = 3;
  int num_filters = 64;     ///< SchNet filter width
  double cutoff = 5.0;
  int max_neighbours = -1;
  RadialSpec radial{};      ///< radial.cutoff == cutoff
  Activation act = Activation::SiLU;
  Pooling pooling = Pooling::Mean;

  bool energy = true;                 ///< conservative per-atom energy head, summed per graph
  std::vector<int> energy_head_dims{32, 32};
  int graph_num_sharedlayers = 1, graph_dim_sharedlayers = 32;
  std::vector<int> graph_head_dims{32, 32};
  std::vector<int> node_head_dims{32, 32};
  std::vector<HeadDef> heads;         ///< direct heads

  SpeciesMap species;
  std::vector<double> ref_energy;     ///< per species, eV (least-squares fit on the training set)
  double energy_scale = 1.0;          ///< per-atom network output is multiplied by this (eV)
  double energy_shift = 0.0;          ///< per-atom constant added (eV)

  int num_species() const { return int(species.size()); }
};

}  // namespace hydragnn
