// SPDX-License-Identifier: BSD-3-Clause
// The interface for simulation codes: #include <hydragnn/potential.hpp>, then
//
//   Kokkos::ScopeGuard kokkos(argc, argv);
//   hydragnn::Potential<> pot("model.hgnn", hydragnn::Precision::Float64);
//   const auto& out = pot.compute(Kokkos::DefaultExecutionSpace(), structure_or_host_list, per_atom);
//
// (sim/potential.hpp: energies, forces, virials, per-atom energies and virials; the host code's
// neighbour list with ghost atoms, or one built here.)
#pragma once

#include <hydragnn/sim/potential.hpp>
