#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install dependencies, configure and build into build/, and run the test suite.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

bash scripts/install_deps.sh

cmake_args=(-S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release)
# the Python module is built for Debian's interpreter (whose numpy and ASE install_deps installs),
# not for another python3 that may come first on PATH
if [[ -x /usr/bin/python3 ]]; then
  cmake_args+=("-DPython3_EXECUTABLE=/usr/bin/python3")
fi
if [[ -d "$root/../shared/data" ]]; then
  cmake_args+=("-DHYDRAGNN_SHARED_DATA_DIR=$(cd "$root/../shared/data" && pwd)")
fi

cmake "${cmake_args[@]}"
cmake --build "$root/build" -j"$(nproc)"
cd "$root/build"
ctest --output-on-failure
