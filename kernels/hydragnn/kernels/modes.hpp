// SPDX-License-Identifier: BSD-3-Clause
// Execution modes of the differentiable ops, as tags.
//
// Every op in kernels/ takes its mode as a template parameter (after the execution space and the
// scalar), defaulting to default_mode_t<Exec>:
//
//   HostRow    one thread per output row, the row's channels accumulated in a local array (vectorised
//              over channels by the compiler); the CPU default.
//   PerElement one thread per output element (row, channel); the simplest device form.
//   TeamTiled  one team per tile of rows, vector lanes over channels (warp-friendly on GPUs).
//
// Where two modes sum in the same order (every reduction is one thread or one lane walking a
// segment in ascending order) they give bitwise-equal results; the tests check that for each op.
// The default is chosen per execution space by this trait, not by memory accessibility: a host-
// accessible device space (CUDA UVM) still gets the device mode.
#pragma once

#include <hydragnn/core/types.hpp>

#include <tuple>

namespace hydragnn {
namespace exec_mode {
struct HostRow {
  static constexpr const char* name = "HostRow";
};
struct PerElement {
  static constexpr const char* name = "PerElement";
};
struct TeamTiled {
  static constexpr const char* name = "TeamTiled";
};
/// Every mode, for tests that run each op in each mode.
using all = std::tuple<HostRow, PerElement, TeamTiled>;
}  // namespace exec_mode

/// The mode an op uses on execution space Exec when the caller names none.
template <class Exec>
struct default_mode {
  using type = exec_mode::HostRow;
};
#if defined(KOKKOS_ENABLE_CUDA)
template <>
struct default_mode<Kokkos::Cuda> {
  using type = exec_mode::TeamTiled;
};
#endif
#if defined(KOKKOS_ENABLE_HIP)
template <>
struct default_mode<compat::hip_space> {
  using type = exec_mode::TeamTiled;
};
#endif
template <class Exec>
using default_mode_t = typename default_mode<Exec>::type;

namespace kernels {
namespace detail {
/// Largest channel count a HostRow kernel keeps in its local accumulator; wider rows fall back to
/// PerElement (same summation order, so the result is the same).
constexpr int host_row_max = 256;
/// Vector length of TeamTiled kernels (lanes over channels) and rows per team.
constexpr int team_vector = 32;
constexpr int team_rows = 4;

/// Policy of a TeamTiled kernel over `rows` rows: one team per tile of team_rows rows
/// (TeamThreadRange over the tile's rows, ThreadVectorRange over channels). Execution spaces that
/// run on the host get teams of one thread with one lane (the ranges become plain loops there).
template <class Exec>
Kokkos::TeamPolicy<Exec> tiled_policy(const Exec& exec, long rows) {
  const long league = (rows + team_rows - 1) / team_rows;
  constexpr bool on_host = Kokkos::SpaceAccessibility<Exec, Kokkos::HostSpace>::accessible;
  return Kokkos::TeamPolicy<Exec>(exec, league < 1 ? 1 : league, on_host ? 1 : team_rows, on_host ? 1 : team_vector);
}
/// Rows [first, last) of the tile that `team` works on.
template <class Member>
KOKKOS_INLINE_FUNCTION void tile_rows(const Member& team, long rows, long& first, long& last) {
  first = long(team.league_rank()) * team_rows;
  last = first + team_rows < rows ? first + team_rows : rows;
}
}  // namespace detail
}  // namespace kernels

}  // namespace hydragnn
