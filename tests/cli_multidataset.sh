#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Several datasets, one trunk, a head branch per dataset through the CLI (Dataset.datasets +
# HydraGNN's output_heads branch lists): dataset "b" holds the structures of "a" with every energy
# raised by 0.25 eV per atom (another code's reference). Each branch's reference energies are fitted
# on its own dataset, test metrics are printed per dataset, metrics.jsonl has per-branch validation
# errors, predict/evaluate choose a branch, and 2 MPI ranks compute bitwise what --accumulate 2 does.
# With HDF5 (5th argument "hdf5"): both datasets in one converted file, picked by name, train bitwise
# as the two extxyz files.
set -euo pipefail
exe="$1"; src="$2"; mpiexec="${3:-}"; py="${4:-python3}"; work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
d="$src/examples/si_sw"

"$py" - "$d" "$work" <<'PY'
import json, re, sys
d, w = sys.argv[1], sys.argv[2]
lines = open(d + "/validate.extxyz").read().splitlines(keepends=True)
out, i = [], 0
while i < len(lines):  # frame by frame: count line, comment line, atoms
    n = int(lines[i])
    comment = re.sub(r"energy=(\S+)", lambda m: "energy=%.10f" % (float(m.group(1)) + 0.25 * n), lines[i + 1])
    out += [lines[i], comment] + lines[i + 2:i + 2 + n]
    i += 2 + n
open(w + "/b.extxyz", "w").write("".join(out))
c = json.load(open(d + "/config.json"))
c["Dataset"] = {"name": "si_two_codes", "format": "extxyz", "datasets": [
    {"name": "a", "path": {"total": d + "/validate.extxyz"}},
    {"name": "b", "path": {"total": w + "/b.extxyz"}}]}
a = c["NeuralNetwork"]["Architecture"]
a.update(hidden_dim=8, num_filters=8, num_conv_layers=2, num_gaussians=8)
a["output_heads"] = {"node": [
    {"type": "branch-0", "architecture": {"num_headlayers": 2, "dim_headlayers": [8, 8], "type": "mlp"}},
    {"type": "branch-1", "architecture": {"num_headlayers": 1, "dim_headlayers": [6], "type": "mlp"}}]}
c["NeuralNetwork"]["Training"].update(num_epoch=3, batch_size=4, perc_train=0.7)
json.dump(c, open(w + "/two.json", "w"))
c["Dataset"]["datasets"][1]["branch"] = "branch-7"
json.dump(c, open(w + "/bad.json", "w"))
PY

"$exe" train --config "$work/two.json" --output "$work/run" > "$work/train.log"
grep -q "data: 42 train, 8 validate, 10 test" "$work/train.log" || fail "split per dataset: $(cat "$work/train.log")"
grep -q "test of dataset a (.*validate.extxyz, branch-0)" "$work/train.log" || fail "no test metrics of a: $(cat "$work/train.log")"
grep -q "test of dataset b (.*b.extxyz, branch-1)" "$work/train.log" || fail "no test metrics of b: $(cat "$work/train.log")"
"$py" - "$work/run" <<'PY' || fail "checkpoint or metrics"
import json, struct, sys
r = sys.argv[1]
data = open(r + "/checkpoint_best.hgnn", "rb").read()
e = data.index(b"\n") + 1
(n,) = struct.unpack("<Q", data[e:e + 8])
spec = json.loads(data[e + 8:e + 8 + n])["spec"]
assert [b["name"] for b in spec["branches"]] == ["branch-0", "branch-1"], spec.get("branches")
assert spec["branches"][1]["energy_head_dims"] == [6]
ref = spec["ref_energy"]  # branches x species (Si only)
assert len(ref) == 2, ref
assert abs(ref[1] - ref[0] - 0.25) < 1e-9, ref  # each branch fitted on its own dataset
for line in open(r + "/metrics.jsonl"):
    rec = json.loads(line)
    assert [b["name"] for b in rec["branches"]] == ["branch-0", "branch-1"], rec
    assert all(b["val_force_mae"] > 0 for b in rec["branches"]), rec
PY

# the same structures through each branch: energies apart by about 0.25 eV per atom (the references)
"$exe" predict --checkpoint "$work/run/checkpoint_best.hgnn" --input "$d/test.extxyz" --output "$work/p0.extxyz" > /dev/null
"$exe" predict --checkpoint "$work/run/checkpoint_best.hgnn" --input "$d/test.extxyz" --output "$work/p1.extxyz" \
  --branch branch-1 > /dev/null
"$py" - "$work/p0.extxyz" "$work/p1.extxyz" <<'PY' || fail "branch-1 predictions"
import re, sys
def frames(path):
    lines, out, i = open(path).read().splitlines(), [], 0
    while i < len(lines):
        n = int(lines[i])
        out.append((n, float(re.search(r"energy=(\S+)", lines[i + 1]).group(1))))
        i += 2 + n
    return out
a, b = frames(sys.argv[1]), frames(sys.argv[2])
assert len(a) == len(b) > 0
for (n, x), (m, y) in zip(a, b):
    assert n == m and abs((y - x) / n - 0.25) < 0.05, (n, x, y)
PY
"$exe" evaluate --checkpoint "$work/run/checkpoint_best.hgnn" --input "$work/b.extxyz" --branch branch-1 --json > "$work/e1.json"
"$exe" evaluate --checkpoint "$work/run/checkpoint_best.hgnn" --input "$work/b.extxyz" --json > "$work/e0.json"
"$py" - "$work/e0.json" "$work/e1.json" <<'PY' || fail "evaluate --branch"
import json, sys
e0, e1 = (json.load(open(p)) for p in sys.argv[1:])
assert e1["energy_mae_per_atom_eV"] + 0.1 < e0["energy_mae_per_atom_eV"], (e0, e1)  # b through branch-0 misses 0.25 eV/atom
PY
if "$exe" predict --checkpoint "$work/run/checkpoint_best.hgnn" --input "$d/test.extxyz" --output "$work/x.extxyz" \
  --branch nope 2> "$work/e2.txt"; then fail "unknown branch accepted"; fi
grep -q "has the head branches branch-0, branch-1" "$work/e2.txt" || fail "$(cat "$work/e2.txt")"
if "$exe" train --config "$work/bad.json" --output "$work/bad" 2> "$work/e3.txt"; then fail "unknown dataset branch accepted"; fi
grep -q "Dataset.datasets\[1\].branch' = \"branch-7\" is not a branch" "$work/e3.txt" || fail "$(cat "$work/e3.txt")"
[ ! -e "$work/bad" ] || fail "a failed run left its output directory"

if [ "${5:-}" = hdf5 ]; then
  # one HDF5 file holding both datasets (convert --dataset-names): each entry of Dataset.datasets takes
  # the structures of its name, and the run is bitwise the one over the two extxyz files
  "$exe" convert --input "$d/validate.extxyz,$work/b.extxyz" --dataset-names a,b --output "$work/ab.h5" > /dev/null
  "$py" - "$work/two.json" "$work/ab.h5" "$work/two_h5.json" "$work/bad_h5.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["Dataset"]["format"] = "hdf5"
for e in c["Dataset"]["datasets"]:
    e["path"] = {"total": sys.argv[2]}
json.dump(c, open(sys.argv[3], "w"))
c["Dataset"]["datasets"][1]["name"] = "c"
json.dump(c, open(sys.argv[4], "w"))
PY
  "$exe" train --config "$work/two_h5.json" --output "$work/h5run" > "$work/h5.log"
  grep -q "data: 42 train, 8 validate, 10 test" "$work/h5.log" || fail "split per dataset of one file: $(cat "$work/h5.log")"
  "$py" "$src/tests/ckpt_same.py" "$work/run/checkpoint.hgnn" "$work/h5run/checkpoint.hgnn" || fail "one HDF5 file != two extxyz files"
  if "$exe" train --config "$work/bad_h5.json" --output "$work/badh5" 2> "$work/e4.txt"; then fail "missing dataset accepted"; fi
  grep -q "holds the datasets a, b, not \"c\"" "$work/e4.txt" || fail "$(cat "$work/e4.txt")"
fi

if [ -n "$mpiexec" ]; then
  timeout 300 "$mpiexec" --oversubscribe -np 2 "$exe" train --config "$work/two.json" --output "$work/mpi" > /dev/null
  "$exe" train --config "$work/two.json" --output "$work/acc" --accumulate 2 > /dev/null
  "$py" "$src/tests/ckpt_same.py" "$work/mpi/checkpoint.hgnn" "$work/acc/checkpoint.hgnn" || fail "2 ranks != accumulate 2"
fi
echo "cli_multidataset: ok"
