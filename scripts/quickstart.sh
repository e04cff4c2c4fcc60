#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Build the hydragnn command-line tool, train the Si Stillinger-Weber example and evaluate it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install_deps.sh

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build --target hydragnn_cli -j"$(nproc)"

build/examples/hydragnn train --config examples/si_sw/config.json --output runs/si_sw --overwrite
build/examples/hydragnn evaluate --checkpoint runs/si_sw/checkpoint_best.hgnn --input examples/si_sw/test.extxyz
