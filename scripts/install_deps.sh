#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install the Debian (bookworm) packages needed to build and test hydragnn.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

packages=(
  cmake g++ make
  libtrilinos-kokkos-dev libtrilinos-kokkos-kernels-dev
  libblas-dev liblapack-dev
  catch2 nlohmann-json3-dev libcli11-dev
  python3
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install_deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install_deps: not root and sudo is unavailable; install manually: ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
