// SPDX-License-Identifier: BSD-3-Clause
// Debian's LAMMPS 29Sep2021 headers call fmt::make_args_checked, which fmt 9 (Debian's libfmt-dev)
// no longer has; LAMMPS' own bundled fmt headers are not installed. This directory comes first on the
// include path of the pair style only: the real header, then the one missing function.
#pragma once
#include_next <fmt/format.h>
#if FMT_VERSION >= 80000
namespace fmt {
template <typename... Args, typename S>
inline auto make_args_checked(const S&, const Args&... args) {
  return fmt::make_format_args(args...);
}
}  // namespace fmt
#endif
