// SPDX-License-Identifier: BSD-3-Clause
// ModelSpec: the architecture keys common to every model, and the model's fixed normalisation, as a
// plain struct (built from a validated config by io/, stored in checkpoints). What belongs to one
// convolution only lives in that convolution's options struct (conv/<model>.hpp).
#pragma once

#include <hydragnn/conv/traits.hpp>
#include <hydragnn/heads/heads.hpp>

#include <string>
#include <vector>

namespace hydragnn {

/// The heads' keys (heads/heads.hpp: HeadsSpec) plus the trunk's and the data's.
struct ModelSpec : HeadsSpec {
  std::string mpnn_type = "SchNet";
  int input_dim = 0;  ///< width of the species embedding = the first layer's input (HydraGNN input_dim; 0: hidden_dim)
  int num_conv_layers = 3;
  double cutoff = 5.0;
  int max_neighbours = -1;

  SpeciesMap species;
  std::vector<double> ref_energy;     ///< per branch and species (branch-major), eV (least-squares fit on the training set)

  int num_species() const { return int(species.size()); }
  int embedding_dim() const { return input_dim > 0 ? input_dim : hidden_dim; }
  ConvCommon conv_common() const { return ConvCommon{hidden_dim, embedding_dim(), num_conv_layers, cutoff, act, max_neighbours}; }
};

}  // namespace hydragnn
