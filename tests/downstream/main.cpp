// SPDX-License-Identifier: BSD-3-Clause
#include <hydragnn/autodiff/potential.hpp>  // Model, predict (energy, forces, stress)
#include <hydragnn/train/trainer.hpp>   // extxyz, make_batch, checkpoints, datasets, train()

#include <cstdio>
#include <string>

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);  // Kokkos is initialised first and finalised last
  using Exec  = Kokkos::DefaultExecutionSpace;
  using Model = hydragnn::Model<float, hydragnn::SchNetConv, Exec>;
  const std::string ckpt = argc > 1 ? argv[1] : "run/checkpoint_best.hgnn";
  const std::string xyz  = argc > 2 ? argv[2] : "md.extxyz";
  Model model = hydragnn::model_from_checkpoint<Model>(hydragnn::read_checkpoint(ckpt), ckpt);
  auto frames = hydragnn::read_extxyz(xyz);
  auto batch  = hydragnn::make_batch<Exec::memory_space>(frames, model.spec().cutoff,
                                                         model.spec().max_neighbours, model.spec().species);
  auto out    = hydragnn::predict(Exec(), model, batch);  // host vectors: energy, forces, stress
  std::printf("%zu frames; frame 0: E = %.6f eV, F(atom 0) = (%.4f, %.4f, %.4f) eV/A\n", frames.size(),
              out.energy[0], out.forces[0], out.forces[1], out.forces[2]);
  return 0;
}
