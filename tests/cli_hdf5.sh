#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# HDF5 datasets through the CLI: `hydragnn convert` (two extxyz files -> two datasets in one file),
# training from the HDF5 file gives bitwise the model that training from the extxyz files gives (one
# process; 2 MPI ranks against --accumulate 2; a 'total' file split by the seed), a rank reads only the
# atoms of its own structures, and bad input is named.
set -euo pipefail
exe="$1"; src="$2"; mpiexec="${3:-}"; py="${4:-python3}"; work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
d="$src/examples/si_sw"
same() { "$py" "$src/tests/ckpt_same.py" "$1" "$2" || fail "$1 and $2 hold different models"; }

"$exe" convert --input "$d/validate.extxyz,$d/test.extxyz" --dataset-names si_val,si_test --radius 4.0 \
  --output "$work/si.h5" > "$work/convert.log"
grep -q "wrote 90 structures (.* atoms, 2 datasets)" "$work/convert.log" || fail "convert: $(cat "$work/convert.log")"
if "$exe" convert --input "$d/validate.extxyz" --output "$work/si.h5" 2> "$work/e1.txt"; then fail "existing file replaced"; fi
grep -q "exists" "$work/e1.txt" || fail "$(cat "$work/e1.txt")"
"$exe" convert --input "$d/validate.extxyz" --output "$work/val.h5" > /dev/null

# the same config over extxyz and over HDF5
"$py" - "$d/config.json" "$work" "$d" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
w, d = sys.argv[2], sys.argv[3]
t = c["NeuralNetwork"]["Training"]
t.update(num_epoch=3, batch_size=4, perc_train=0.7)
a = c["NeuralNetwork"]["Architecture"]
a.update(hidden_dim=8, num_filters=8, num_conv_layers=2, num_gaussians=8)
a["output_heads"]["node"]["dim_headlayers"] = [8, 8]
def save(name, fmt, path):
    c["Dataset"]["format"] = fmt
    c["Dataset"]["path"] = path
    json.dump(c, open(f"{w}/{name}.json", "w"))
save("x", "extxyz", {"train": d + "/validate.extxyz"})
save("h", "hdf5", {"train": w + "/val.h5"})
save("xt", "extxyz", {"total": d + "/validate.extxyz"})
save("ht", "hdf5", {"total": w + "/val.h5"})
save("bad", "hdf5", {"train": d + "/validate.extxyz"})
PY
"$exe" train --config "$work/x.json" --output "$work/x" > /dev/null
"$exe" train --config "$work/h.json" --output "$work/h" > "$work/h.log"
same "$work/x/checkpoint.hgnn" "$work/h/checkpoint.hgnn"
same "$work/x/checkpoint_best.hgnn" "$work/h/checkpoint_best.hgnn"
grep -q "rank 0 read the atoms of 30 of 30 structures" "$work/h.log" || fail "one rank reads every structure: $(cat "$work/h.log")"
"$exe" train --config "$work/xt.json" --output "$work/xt" > /dev/null
"$exe" train --config "$work/ht.json" --output "$work/ht" > "$work/ht.log"
same "$work/xt/checkpoint.hgnn" "$work/ht/checkpoint.hgnn"
grep -q "energy MAE" "$work/ht.log" || fail "no test metrics from the 'total' split"

if [ -n "$mpiexec" ]; then
  timeout 300 "$mpiexec" --oversubscribe -np 2 "$exe" train --config "$work/h.json" --output "$work/h2" > "$work/h2.log"
  "$exe" train --config "$work/x.json" --output "$work/x2" --accumulate 2 > /dev/null
  same "$work/h2/checkpoint.hgnn" "$work/x2/checkpoint.hgnn"
  # rank 0 reads the atoms of its own shards only: about half of the 30 structures
  n=$(sed -n 's/.*rank 0 read the atoms of \([0-9]*\) of 30 structures.*/\1/p' "$work/h2.log")
  [ -n "$n" ] && [ "$n" -ge 12 ] && [ "$n" -le 18 ] || fail "rank 0 read $n of 30 structures: $(cat "$work/h2.log")"
fi

# an extxyz file where the config says hdf5: named
if "$exe" train --config "$work/bad.json" --output "$work/bad" 2> "$work/e2.txt"; then fail "extxyz read as hdf5"; fi
grep -q "validate.extxyz: cannot open as HDF5" "$work/e2.txt" || fail "$(cat "$work/e2.txt")"
[ ! -e "$work/bad" ] || fail "a failed run left its output directory"
echo "cli_hdf5: ok"
