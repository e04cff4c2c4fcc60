#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `hydragnn hpo`: asynchronous successive halving over 2 workers (2 MPI ranks, one per trial) on the Si
# (SW) set: 6 trials of width x learning rate, rungs of 1, 2 and 4 epochs. Every trial finishes its
# first rung, the better ones are promoted and the worst never, results.csv and
# best_config.json are written and the best config trains; a search stopped after one job per worker
# (--max-jobs 1) and a job left "running" by a crash are picked up by running hpo again.
set -euo pipefail
exe="$1"; src="$2"; mpiexec="${3:-}"; py="${4:-python3}"; work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
d="$src/examples/si_sw"
run() {  # run hpo on 2 ranks (or one process without MPI)
  if [ -n "$mpiexec" ]; then timeout 600 "$mpiexec" --oversubscribe -np 2 "$exe" hpo "$@"; else "$exe" hpo "$@"; fi
}

"$py" - "$d" "$work" <<'PY'
import json, sys
d, w = sys.argv[1], sys.argv[2]
c = json.load(open(d + "/config.json"))
c["Dataset"]["path"] = {"train": "validate.extxyz"}  # relative to the base config's directory
t = c["NeuralNetwork"]["Training"]
t.update(batch_size=8, perc_train=0.7, EarlyStopping=False)
a = c["NeuralNetwork"]["Architecture"]
a.update(num_conv_layers=2, num_gaussians=8)
a["output_heads"]["node"]["dim_headlayers"] = [8, 8]
json.dump(c, open(w + "/base.json", "w"))
s = {"base": "base.json", "trials": 6, "seed": 3, "min_epochs": 1, "max_epochs": 4, "reduction_factor": 2,
     "space": {"NeuralNetwork.Architecture.hidden_dim": {"choice": [4, 8, 16]},
               "NeuralNetwork.Architecture.num_filters": {"choice": [8]},
               "NeuralNetwork.Training.Optimizer.learning_rate": {"log_uniform": [1e-4, 3e-2]}}}
json.dump(s, open(w + "/search.json", "w"))
PY
# the base config names validate.extxyz relative to itself
cp "$d/validate.extxyz" "$work/validate.extxyz"

run --search "$work/search.json" --output "$work/hpo" --max-jobs 1 > "$work/part.log"
[ "$(grep -c "hpo worker" "$work/part.log")" -le 2 ] || fail "more than one job per worker with --max-jobs 1"
# a crash: trial 0 marked as running, as a worker killed during its job leaves it
"$py" - "$work/hpo/hpo_state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["trials"][0]["running"] = 1
json.dump(s, open(sys.argv[1], "w"))
PY
run --search "$work/search.json" --output "$work/hpo" > "$work/hpo.log"

"$py" - "$work/hpo" <<'PY'
import csv, json, sys
w = sys.argv[1]
st = json.load(open(w + "/hpo_state.json"))
trials = st["trials"]
assert len(trials) == 6, len(trials)
assert all(t["running"] == -1 for t in trials), "a job is still marked running"
assert all(len(t["losses"]) >= 1 for t in trials), "a trial never finished its first rung"
n1 = sum(len(t["losses"]) >= 2 for t in trials)
n2 = sum(len(t["losses"]) >= 3 for t in trials)
# asynchronous halving, whatever the timing: the final top half of a rung is promoted; the worst
# trial of a rung is never in the top half of any set of its results, so it is never promoted
assert 3 <= n1 <= 5, ("promoted to rung 1", n1)
assert 1 <= n2 <= n1 - 1, ("promoted to rung 2", n2)
worst = max(trials, key=lambda t: t["losses"][0])
assert len(worst["losses"]) == 1, ("the worst trial was promoted", worst)
rows = list(csv.DictReader(open(w + "/results.csv")))
assert len(rows) == sum(len(t["losses"]) for t in trials)
assert {"trial", "rung", "epochs", "val_loss", "NeuralNetwork.Architecture.hidden_dim"} <= set(rows[0])
best = json.load(open(w + "/best_config.json"))
assert best["NeuralNetwork"]["Training"]["num_epoch"] == 4
assert json.load(open(w + "/best_configs/1.json")) == best
# the best trial reached the highest rung of all
assert max(len(t["losses"]) for t in trials) == 3
top = [t for t in trials if len(t["losses"]) == 3]
b = min(top, key=lambda t: t["losses"][2])
assert best["NeuralNetwork"]["Training"]["Optimizer"]["learning_rate"] == b["values"]["NeuralNetwork.Training.Optimizer.learning_rate"]
assert len([1 for k in (1, 2, 3) if __import__("os").path.exists(w + "/best_configs/%d.json" % k)]) == 3
print("hpo: %d trials, %d at rung 1, %d at rung 2" % (len(trials), n1, n2))
PY
grep -q "hpo: 6 trials" "$work/hpo.log" || fail "no summary: $(cat "$work/hpo.log")"
"$exe" train --config "$work/hpo/best_config.json" --output "$work/best" > "$work/best.log" || fail "best config does not train"
grep -q "epoch    4/4" "$work/best.log" || fail "best config: $(cat "$work/best.log")"
# running the finished search again changes nothing
before=$(md5sum < "$work/hpo/hpo_state.json")
run --search "$work/search.json" --output "$work/hpo" > /dev/null
[ "$before" = "$(md5sum < "$work/hpo/hpo_state.json")" ] || fail "a finished search changed"
# a bad search file names the key
echo '{"base": "base.json", "trails": 3}' > "$work/bad.json"
if "$exe" hpo --search "$work/bad.json" --output "$work/x" 2> "$work/e.txt"; then fail "unknown key accepted"; fi
grep -q "unknown key 'trails'" "$work/e.txt" || fail "$(cat "$work/e.txt")"
echo "cli_hpo: ok"
