#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Cu-Ni end to end: EAM data from LAMMPS (generate.py), a conservative SchNet trained without a
# neighbour cap, then 10 ps of NVE MD in LAMMPS with pair_style hydragnn. Run from the repository
# root after building (cmake --build build): bash examples/lammps_cuni/run.sh [build]
set -euo pipefail
build="${1:-build}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lmp="$build/examples/lmp_hydragnn"
mkdir -p "$here/data"
python3 "$here/generate.py" --lmp "$lmp" --runs 40 --seed 1 --out "$here/data/train.extxyz"
python3 "$here/generate.py" --lmp "$lmp" --runs 5 --seed 2 --out "$here/data/validate.extxyz"
python3 "$here/generate.py" --lmp "$lmp" --runs 5 --seed 3 --out "$here/data/test.extxyz"
"$build/examples/hydragnn" train --config "$here/config.json" --output "$here/run" --overwrite
(cd "$here" && "$OLDPWD/$lmp" -in in.nve.lammps -var model run/checkpoint_best.hgnn -log run/nve.log)
