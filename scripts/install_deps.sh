#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install the Debian (bookworm) packages needed to build and test hydragnn.
# Idempotent: does nothing when every package is already installed.
# Waits (up to HYDRAGNN_APT_LOCK_TIMEOUT seconds, default 600) when another apt/dpkg (e.g. unattended
# upgrades on a fresh machine) holds the package-manager locks instead of failing at once.
set -euo pipefail

lock_timeout="${HYDRAGNN_APT_LOCK_TIMEOUT:-600}"
poll_s="${HYDRAGNN_APT_LOCK_POLL:-5}"

packages=(
  cmake g++ make
  libtrilinos-kokkos-dev libtrilinos-kokkos-kernels-dev
  libblas-dev liblapack-dev
  catch2 nlohmann-json3-dev libcli11-dev
  python3 pkg-config
  liblammps-dev lammps-data libfmt-dev libopenmpi-dev openmpi-bin libhdf5-openmpi-dev libsqlite3-dev
  pybind11-dev python3-dev python3-numpy python3-ase
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
apt_opts=(-o "DPkg::Lock::Timeout=${lock_timeout}")

# apt-get update takes the lists lock (/var/lib/apt/lists/lock), which DPkg::Lock::Timeout does not
# cover on every apt version: retry while the failure is a lock held by another process.
start=$SECONDS
log=$(mktemp)
trap 'rm -f "$log"' EXIT
until "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update 2> "$log"; do
  cat "$log" >&2
  if ! grep -qiE "could not get lock|unable to lock|is held by process|unable to acquire" "$log"; then
    echo "install_deps: apt-get update failed" >&2
    exit 1
  fi
  if (( SECONDS - start >= lock_timeout )); then
    echo "install_deps: the package lists lock is still held after ${lock_timeout}s; giving up" >&2
    exit 1
  fi
  echo "install_deps: another apt/dpkg holds the package lists lock; waiting ($((SECONDS - start))s of ${lock_timeout}s)" >&2
  sleep "$poll_s"
done
cat "$log" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
