// SPDX-License-Identifier: BSD-3-Clause
// Fine-tuning: a training run that starts from a trained model (HydraGNN's Training.continue /
// startfrom) and may freeze the trunk (Architecture.freeze_conv_layers).
//
//  * load_matching copies every parameter and buffer block of the checkpoint's model whose name and
//    shape the new model has (HydraGNN state_dict names, model.named_parameters()); the species
//    embedding row by row for the elements both know. What the new model has and the checkpoint
//    does not (a new head, a new element's row) keeps its initialisation: that is how a head or a
//    branch is added to a trained trunk.
//  * freezing: the trunk's parameters (embedding, convolutions, feature layers) come first in the
//    model's buffer, [0, Model::num_trunk_params()); the optimizer leaves that prefix unchanged
//    (Optimizer::frozen), as HydraGNN's _freeze_conv sets requires_grad = False on graph_convs and
//    feature_layers. The BatchNorm running statistics are buffers and keep updating in training
//    mode (as torch's do).
#pragma once

#include <hydragnn/model/model.hpp>

#include <map>
#include <string>
#include <vector>

namespace hydragnn {

struct StartReport {
  std::size_t blocks = 0;              ///< parameter blocks of the new model
  std::size_t loaded = 0;              ///< of them, loaded from the checkpoint (whole or by element)
  std::vector<std::string> fresh;      ///< blocks kept at their initialisation
  bool same_architecture = false;      ///< every block loaded whole, at the same offsets
};

/// Copy the blocks of `from` (a checkpoint's model) that `model` has under the same name and shape.
template <class ModelT>
StartReport load_matching(ModelT& model, const ModelT& from) {
  StartReport rep;
  auto dst = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.params());
  auto src = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), from.params());
  std::map<std::string, const NamedParam*> old;
  for (const auto& np : from.named_parameters()) old[np.name] = &np;
  bool same = model.num_params() == from.num_params();
  for (const auto& np : model.named_parameters()) {
    ++rep.blocks;
    auto it = old.find(np.name);
    if (it == old.end()) {
      rep.fresh.push_back(np.name);
      same = false;
      continue;
    }
    const NamedParam& op = *it->second;
    if (op.shape == np.shape) {
      for (std::size_t k = 0; k < np.size(); ++k) dst(np.offset + k) = src(op.offset + k);
      ++rep.loaded;
      same = same && op.offset == np.offset;
    } else if (np.name == "embedding.weight" && np.shape.size() == 2 && op.shape.size() == 2 && np.shape[1] == op.shape[1]) {
      // the species embedding: rows of the elements both models know
      const int D = np.shape[1];
      const auto& zn = model.spec().species.numbers;
      const auto& zo = from.spec().species.numbers;
      bool any = false;
      for (std::size_t i = 0; i < zn.size(); ++i)
        for (std::size_t j = 0; j < zo.size(); ++j)
          if (zn[i] == zo[j]) {
            for (int d = 0; d < D; ++d) dst(np.offset + i * D + d) = src(op.offset + j * D + d);
            any = true;
          }
      if (any) ++rep.loaded;
      else rep.fresh.push_back(np.name);
      same = false;
    } else {
      rep.fresh.push_back(np.name);
      same = false;
    }
  }
  Kokkos::deep_copy(model.params(), dst);
  // buffers (BatchNorm running statistics, then the step count) by name and shape
  if (model.num_buffers() > 0 && from.num_buffers() > 0) {
    std::vector<double> b = model.buffers();
    const std::vector<double> ob = from.buffers();
    std::map<std::string, const NamedParam*> oldb;
    for (const auto& np : from.named_buffers()) oldb[np.name] = &np;
    for (const auto& np : model.named_buffers()) {
      auto it = oldb.find(np.name);
      if (it == oldb.end() || it->second->shape != np.shape) continue;
      for (std::size_t k = 0; k < np.size(); ++k) b[np.offset + k] = ob[it->second->offset + k];
    }
    model.set_buffers(b);
  }
  rep.same_architecture = same && rep.fresh.empty();
  return rep;
}

}  // namespace hydragnn
