#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# ASE databases through the CLI: an ASE database of the si_sw validation frames (written by ASE:
# tests/make_ase_db.py) trains bitwise the model its extxyz file trains, directly (Dataset.format
# "ase-db") and after `hydragnn convert` to HDF5 (mixed with an extxyz input); bad databases are named.
set -euo pipefail
exe="$1"; src="$2"; py="${3:-python3}"; work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMP_NUM_THREADS=1
d="$src/examples/si_sw"
same() { "$py" "$src/tests/ckpt_same.py" "$1" "$2" || fail "$1 and $2 hold different models"; }

"$py" "$src/tests/make_ase_db.py" "$d/validate.extxyz" "$work/db"

# convert: an ASE database and an extxyz file, one dataset each
"$exe" convert --input "$work/db/frames.db,$d/test.extxyz" --dataset-names si_val,si_test --output "$work/mixed.h5" \
  > "$work/convert.log"
grep -q "wrote 90 structures (.* atoms, 2 datasets)" "$work/convert.log" || fail "convert: $(cat "$work/convert.log")"
"$exe" convert --input "$work/db/frames.db" --dataset-names si --output "$work/db.h5" > /dev/null
"$exe" convert --input "$d/validate.extxyz" --dataset-names si --output "$work/x.h5" > /dev/null

"$py" - "$d/config.json" "$work" "$d" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
w, d = sys.argv[2], sys.argv[3]
t = c["NeuralNetwork"]["Training"]
t.update(num_epoch=2, batch_size=4)
a = c["NeuralNetwork"]["Architecture"]
a.update(hidden_dim=8, num_filters=8, num_conv_layers=2, num_gaussians=8)
a["output_heads"]["node"]["dim_headlayers"] = [8, 8]
def save(name, fmt, path):
    c["Dataset"]["format"] = fmt
    c["Dataset"]["path"] = {"train": path}
    json.dump(c, open(f"{w}/{name}.json", "w"))
save("x", "extxyz", d + "/validate.extxyz")
save("db", "ase-db", w + "/db/frames.db")
save("xh", "hdf5", w + "/x.h5")
save("dbh", "hdf5", w + "/db.h5")
save("other", "ase-db", w + "/db/other.db")
PY
"$exe" train --config "$work/x.json" --output "$work/x" > /dev/null
"$exe" train --config "$work/db.json" --output "$work/db_run" > /dev/null
same "$work/x/checkpoint.hgnn" "$work/db_run/checkpoint.hgnn"
"$exe" train --config "$work/xh.json" --output "$work/xh" > /dev/null
"$exe" train --config "$work/dbh.json" --output "$work/dbh" > /dev/null
same "$work/xh/checkpoint.hgnn" "$work/dbh/checkpoint.hgnn"

# bad databases: the file and the row are named, nothing is written
if "$exe" convert --input "$work/db/bad.db" --output "$work/bad.h5" 2> "$work/e1.txt"; then fail "bad.db converted"; fi
grep -q "bad.db:id=2: positions has 5 values for 2 atoms" "$work/e1.txt" || fail "$(cat "$work/e1.txt")"
[ ! -e "$work/bad.h5" ] || fail "a failed convert left its output"
if "$exe" train --config "$work/other.json" --output "$work/other" 2> "$work/e2.txt"; then fail "other.db trained"; fi
grep -q "other.db: not an ASE database" "$work/e2.txt" || fail "$(cat "$work/e2.txt")"
[ ! -e "$work/other" ] || fail "a failed run left its output directory"
echo "cli_ase_db: ok"
