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
#include <type_traits>

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
template <class Mode>
constexpr bool is_host_row = std::is_same<Mode, exec_mode::HostRow>::value;
/// HostRow on an execution space that runs on the host: the fused row kernels (host stack arrays,
/// host vector packs) are compiled only there; elsewhere the ops fall back to their separate forms.
template <class Mode, class Exec>
constexpr bool host_rows_on_host = is_host_row<Mode> && Kokkos::SpaceAccessibility<Exec, Kokkos::HostSpace>::accessible;
/// Columns one thread sums down the rows of a row-major matrix (BatchNorm's statistics, GAT's
/// parameter sums): HostRow takes a block of column_block, reading the block's row segment per
/// step; the other modes one column. Each column walks the rows in ascending order either way.
constexpr int column_block = 16;
template <class Mode>
constexpr long columns_per_thread = is_host_row<Mode> ? column_block : 1;
template <class Mode>
constexpr bool is_per_element = std::is_same<Mode, exec_mode::PerElement>::value;
template <class Mode>
constexpr bool is_team_tiled = std::is_same<Mode, exec_mode::TeamTiled>::value;
template <class Mode>
constexpr void check_mode() {
  static_assert(is_host_row<Mode> || is_per_element<Mode> || is_team_tiled<Mode>,
                "Mode must be exec_mode::HostRow, PerElement or TeamTiled");
}

/// body(r, c) for every r < rows, c < cols (independent elements).
/// HostRow: a thread per row walks its channels; PerElement: a thread per (r, c); TeamTiled: a team
/// per tile of rows, lanes over channels.
template <class Mode, class Exec, class Body>
void for_each_element(const Exec& exec, const char* label, long rows, long cols, const Body& body) {
  check_mode<Mode>();
  if (rows <= 0 || cols <= 0) return;
  if constexpr (is_host_row<Mode>) {
    Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, rows), KOKKOS_LAMBDA(const long r) {
      for (long c = 0; c < cols; ++c) body(r, c);
    });
  } else if constexpr (is_per_element<Mode>) {
    Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, rows * cols),
                         KOKKOS_LAMBDA(const long k) { body(k / cols, k % cols); });
  } else {
    using member = typename Kokkos::TeamPolicy<Exec>::member_type;
    Kokkos::parallel_for(label, tiled_policy(exec, rows), KOKKOS_LAMBDA(const member& team) {
      long first, last;
      tile_rows(team, rows, first, last);
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, first, last), [&](const long r) {
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, cols), [&](const long c) { body(r, c); });
      });
    });
  }
}

/// body(r) for every r < rows: ops whose natural form is one thread per row (a reduction over the
/// row's channels in ascending order, or a recurrence). Every mode runs the same sequential body:
/// HostRow and PerElement as a range over rows, TeamTiled as one lane per team thread.
template <class Mode, class Exec, class Body>
void for_each_row(const Exec& exec, const char* label, long rows, const Body& body) {
  check_mode<Mode>();
  if (rows <= 0) return;
  if constexpr (is_team_tiled<Mode>) {
    using member = typename Kokkos::TeamPolicy<Exec>::member_type;
    Kokkos::parallel_for(label, tiled_policy(exec, rows), KOKKOS_LAMBDA(const member& team) {
      long first, last;
      tile_rows(team, rows, first, last);
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, first, last),
                           [&](const long r) { Kokkos::single(Kokkos::PerThread(team), [&]() { body(r); }); });
    });
  } else {
    Kokkos::parallel_for(label, Kokkos::RangePolicy<Exec>(exec, 0, rows), KOKKOS_LAMBDA(const long r) { body(r); });
  }
}

}  // namespace detail
}  // namespace kernels

}  // namespace hydragnn
