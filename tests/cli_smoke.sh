#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# CLI contract: train (1 epoch) -> checkpoint files -> predict writes energy/forces/stress -> evaluate
# (--json) -> resume; and bad input (unknown config key, corrupt checkpoint) fails with a clear message.
# Also what a new user hit: --version, unlabelled / partially labelled evaluate input, --resume with
# --overwrite, --batch-size 0, a missing dataset file, and the output directory of a failed train.
set -euo pipefail
exe="$1"; src="$2"; work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

head -n 400 "$src/examples/si_sw/train.extxyz" > /dev/null
python3 - "$src/examples/si_sw/config.json" "$work/cfg.json" "$src/examples/si_sw" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
d = sys.argv[3]
c["Dataset"]["path"] = {"train": d + "/validate.extxyz", "test": d + "/validate.extxyz"}
c["NeuralNetwork"]["Training"]["num_epoch"] = 1
c["NeuralNetwork"]["Training"]["perc_train"] = 0.8
c["NeuralNetwork"]["Architecture"]["hidden_dim"] = 8
c["NeuralNetwork"]["Architecture"]["num_filters"] = 8
json.dump(c, open(sys.argv[2], "w"))
PY
"$exe" train --config "$work/cfg.json" --output "$work/run" > "$work/train.log"
grep -q "epoch    1/1" "$work/train.log" || fail "no epoch line"
grep -q "energy MAE" "$work/train.log" || fail "no test metrics after training"
for f in checkpoint.hgnn checkpoint_best.hgnn metrics.jsonl; do [ -s "$work/run/$f" ] || fail "missing $f"; done

"$exe" predict --checkpoint "$work/run/checkpoint.hgnn" --input "$src/examples/si_sw/validate.extxyz" --output "$work/out.extxyz"
head -n 2 "$work/out.extxyz" | tail -n 1 | grep -q "forces:R:3" || fail "predict wrote no forces column"
head -n 2 "$work/out.extxyz" | tail -n 1 | grep -q "energy=" || fail "predict wrote no energy"
head -n 2 "$work/out.extxyz" | tail -n 1 | grep -q "stress=" || fail "predict wrote no stress"

"$exe" evaluate --checkpoint "$work/run/checkpoint.hgnn" --input "$src/examples/si_sw/validate.extxyz" --json > "$work/eval.json"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['structures']==30 and j['force_mae_eV_per_A']>0" "$work/eval.json" \
  || fail "evaluate --json"

# resume one more epoch
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['NeuralNetwork']['Training']['num_epoch']=2; json.dump(c,open(sys.argv[1],'w'))" "$work/cfg.json"
"$exe" train --config "$work/cfg.json" --output "$work/run" --resume > "$work/resume.log"
grep -q "epoch    2/2" "$work/resume.log" || fail "resume did not continue at epoch 2"

# an existing run is never overwritten silently
before=$(md5sum < "$work/run/checkpoint.hgnn")
if "$exe" train --config "$work/cfg.json" --output "$work/run" 2> "$work/err0.txt"; then fail "existing run overwritten"; fi
grep -q -- "--resume" "$work/err0.txt" || fail "no hint to --resume: $(cat "$work/err0.txt")"
[ "$before" = "$(md5sum < "$work/run/checkpoint.hgnn")" ] || fail "checkpoint changed by a refused run"

# bad input: unknown key named in the message, non-zero exit
sed 's/"hidden_dim"/"hiden_dim"/' "$work/cfg.json" > "$work/bad.json"
if "$exe" train --config "$work/bad.json" --output "$work/bad" 2> "$work/err.txt"; then fail "unknown key accepted"; fi
grep -q "hiden_dim" "$work/err.txt" || fail "error does not name the key: $(cat "$work/err.txt")"
# corrupt checkpoint
printf 'garbage' > "$work/broken.hgnn"
if "$exe" evaluate --checkpoint "$work/broken.hgnn" --input "$src/examples/si_sw/validate.extxyz" 2> "$work/err2.txt"; then fail "corrupt checkpoint accepted"; fi
grep -q "broken.hgnn" "$work/err2.txt" || fail "error does not name the checkpoint"
# earlier checkpoint untouched by the failed run
[ -s "$work/run/checkpoint.hgnn" ] || fail "checkpoint lost"

# --version: hydragnn's version, the git commit when built from a checkout, Kokkos and its backends
"$exe" --version > "$work/version.txt" || fail "--version exits non-zero"
grep -Eq "^hydragnn [0-9]+\.[0-9]+\.[0-9]+" "$work/version.txt" || fail "--version: $(cat "$work/version.txt")"
grep -q "Kokkos [0-9]*\.[0-9]*\.[0-9]*, backends: " "$work/version.txt" || fail "--version names no Kokkos: $(cat "$work/version.txt")"

# --resume and --overwrite together are refused, nothing changes
before=$(md5sum < "$work/run/checkpoint.hgnn")
if "$exe" train --config "$work/cfg.json" --output "$work/run" --resume --overwrite 2> "$work/err3.txt"; then
  fail "--resume --overwrite accepted"
fi
grep -q "excludes" "$work/err3.txt" || fail "--resume --overwrite: $(cat "$work/err3.txt")"
[ "$before" = "$(md5sum < "$work/run/checkpoint.hgnn")" ] || fail "checkpoint changed by --resume --overwrite"
# --resume where there is no run
if "$exe" train --config "$work/cfg.json" --output "$work/norun" --resume 2> "$work/err3b.txt"; then fail "--resume without a run accepted"; fi
grep -q "no checkpoint to continue from" "$work/err3b.txt" || fail "--resume without a run: $(cat "$work/err3b.txt")"
[ ! -e "$work/norun" ] || fail "--resume without a run created the output directory"

# --batch-size 0: a plain message, not the range of a double
if "$exe" evaluate --checkpoint "$work/run/checkpoint.hgnn" --input "$src/examples/si_sw/validate.extxyz" --batch-size 0 \
  2> "$work/err4.txt"; then fail "--batch-size 0 accepted"; fi
grep -q -- "--batch-size: must be a positive integer (got '0')" "$work/err4.txt" || fail "--batch-size 0: $(cat "$work/err4.txt")"
if grep -q "e+308\|[0-9]\{30\}" "$work/err4.txt"; then fail "--batch-size 0 still prints a range: $(cat "$work/err4.txt")"; fi

# a missing dataset file is named by its config key, with the path it was resolved to
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['Dataset']['path']['train']='nothere.extxyz'; json.dump(c,open(sys.argv[2],'w'))" \
  "$work/cfg.json" "$work/missing.json"
if "$exe" train --config "$work/missing.json" --output "$work/m1/m2" 2> "$work/err5.txt"; then fail "missing dataset accepted"; fi
grep -qF "Dataset.path.train: file 'nothere.extxyz' not found (resolved to $work/nothere.extxyz)" "$work/err5.txt" \
  || fail "missing dataset: $(cat "$work/err5.txt")"
[ ! -e "$work/m1" ] || fail "a train that failed on a missing file left $work/m1 behind"

# labels stripped from frames: python3 strip.py IN OUT N_NO_ENERGY N_NO_FORCES (the first N frames lose
# their energy (and stress) / their forces column)
cat > "$work/strip.py" <<'PY'
import re, sys
src, dst, n_e, n_f = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lines = open(src).read().splitlines()
out, i, k = [], 0, 0
while i < len(lines):
    n = int(lines[i]); comment = lines[i + 1]; atoms = lines[i + 2:i + 2 + n]
    if k < n_e:
        comment = re.sub(r'\s*energy=\S+', '', comment)
        comment = re.sub(r'\s*stress="[^"]*"', '', comment)
    if k < n_f:
        comment = comment.replace(':forces:R:3', '')
        atoms = [" ".join(a.split()[:4]) for a in atoms]
    out += [lines[i], comment] + atoms
    i += 2 + n; k += 1
open(dst, "w").write("\n".join(out) + "\n")
PY
python3 "$work/strip.py" "$src/examples/si_sw/validate.extxyz" "$work/unlabelled.extxyz" 1000 1000
python3 "$work/strip.py" "$src/examples/si_sw/validate.extxyz" "$work/partial.extxyz" 5 3

# evaluate on an unlabelled file is an error naming the file
if "$exe" evaluate --checkpoint "$work/run/checkpoint.hgnn" --input "$work/unlabelled.extxyz" > "$work/out6.txt" 2> "$work/err6.txt"; then
  fail "evaluate on an unlabelled file exits 0: $(cat "$work/out6.txt")"
fi
grep -q "unlabelled.extxyz: no frame has an 'energy' label or a 'forces' column" "$work/err6.txt" \
  || fail "unlabelled evaluate: $(cat "$work/err6.txt")"
if grep -qi "nan" "$work/out6.txt"; then fail "unlabelled evaluate printed NaN metrics"; fi
# partially labelled: evaluates what is labelled and says how many frames were skipped
"$exe" evaluate --checkpoint "$work/run/checkpoint.hgnn" --input "$work/partial.extxyz" --json > "$work/eval7.json" 2> "$work/err7.txt" \
  || fail "evaluate on a partially labelled file: $(cat "$work/err7.txt")"
grep -q "energy errors over 25 of 30 frames (5 skipped: no 'energy'), force errors over 27 of 30 frames (3 skipped: no 'forces')" \
  "$work/err7.txt" || fail "partial evaluate does not report skipped frames: $(cat "$work/err7.txt")"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['structures']==25 and j['frames']==30 and j['frames_without_energy']==5 and j['frames_without_forces']==3 and j['force_mae_eV_per_A']>0, j" \
  "$work/eval7.json" || fail "partial evaluate --json"
"$exe" evaluate --checkpoint "$work/run/checkpoint.hgnn" --input "$work/partial.extxyz" > "$work/eval7.txt" 2> /dev/null
grep -q "partial.extxyz: 30 structures (25 with energy, 27 with forces)" "$work/eval7.txt" || fail "partial evaluate text: $(cat "$work/eval7.txt")"

# a train that fails after creating its output directory removes what it created, and only that
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['Dataset']['path']={'train': sys.argv[3]}; json.dump(c,open(sys.argv[2],'w'))" \
  "$work/cfg.json" "$work/nolabels.json" "$work/unlabelled.extxyz"
if "$exe" train --config "$work/nolabels.json" --output "$work/new1/new2" 2> "$work/err8.txt"; then fail "training on unlabelled data accepted"; fi
grep -q "unlabelled.extxyz" "$work/err8.txt" || fail "unlabelled training data: $(cat "$work/err8.txt")"
[ ! -e "$work/new1" ] || fail "a failed train left the directories it created: $(find "$work/new1")"
mkdir -p "$work/keep/empty" && echo "mine" > "$work/keep/note.txt"
if "$exe" train --config "$work/nolabels.json" --output "$work/keep" 2> /dev/null; then fail "training on unlabelled data accepted"; fi
[ -f "$work/keep/note.txt" ] && [ -d "$work/keep/empty" ] || fail "a failed train removed files it did not create"
if "$exe" train --config "$work/nolabels.json" --output "$work/keep/empty" 2> /dev/null; then fail "training on unlabelled data accepted"; fi
[ -d "$work/keep/empty" ] || fail "a failed train removed an empty directory that existed before it"

# import: HydraGNN's EGNN weights (the golden file carries species + named parameters) + a config of the
# same architecture -> a checkpoint that predicts; an existing output is not overwritten
cat > "$work/egnn_import.json" <<'CFG'
{"NeuralNetwork": {
  "Architecture": {"mpnn_type": "EGNN", "radius": 3.0, "hidden_dim": 8, "num_conv_layers": 3,
                   "activation_function": "silu", "equivariance": true, "enable_interatomic_potential": true,
                   "output_heads": {"node": {"num_headlayers": 2, "dim_headlayers": [8, 8], "type": "mlp"}}},
  "Variables_of_interest": {"output_names": ["energy"], "type": ["node"]}}}
CFG
"$exe" import --config "$work/egnn_import.json" --weights "$src/tests/golden/egnn.json" --output "$work/imported.hgnn" \
  > "$work/import.log" || fail "import: $(cat "$work/import.log")"
grep -q "parameters of a EGNN model (5 species)" "$work/import.log" || fail "import log: $(cat "$work/import.log")"
"$exe" predict --checkpoint "$work/imported.hgnn" --input "$src/examples/si_sw/validate.extxyz" --output "$work/imported.extxyz"
head -n 2 "$work/imported.extxyz" | tail -n 1 | grep -q "energy=" || fail "the imported model predicted no energy"
if "$exe" import --config "$work/egnn_import.json" --weights "$src/tests/golden/egnn.json" --output "$work/imported.hgnn" \
  2> "$work/err9.txt"; then fail "import overwrote an existing checkpoint"; fi
grep -q "overwrite" "$work/err9.txt" || fail "import refusal: $(cat "$work/err9.txt")"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['NeuralNetwork']['Architecture']['equivariance']=False; json.dump(c,open(sys.argv[2],'w'))" \
  "$work/egnn_import.json" "$work/egnn_import_noeq.json"
if "$exe" import --config "$work/egnn_import_noeq.json" --weights "$src/tests/golden/egnn.json" --output "$work/x.hgnn" \
  2> "$work/err10.txt"; then fail "import accepted weights of another architecture"; fi
grep -q "coord_mlp" "$work/err10.txt" || fail "import mismatch message: $(cat "$work/err10.txt")"

echo "cli smoke: all checks passed"
