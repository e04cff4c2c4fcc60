#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# CLI contract: train (1 epoch) -> checkpoint files -> predict writes energy/forces/stress -> evaluate
# (--json) -> resume; and bad input (unknown config key, corrupt checkpoint) fails with a clear message.
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
echo "cli smoke: all checks passed"
