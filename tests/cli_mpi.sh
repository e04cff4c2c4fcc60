#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# MPI data-parallel training through the CLI (Open MPI, ranks oversubscribed on this machine):
#  - `mpiexec -np P hydragnn train` writes bitwise the same checkpoints as one process with
#    `--accumulate P` (P = 2, 3 and 4; force training, structures of 8 to 64 atoms), 2 ranks with
#    `--accumulate 2` as one with `--accumulate 4`, also GAT with its random attention dropout (P = 2);
#  - a run stopped after 2 epochs on 2 ranks resumes on 1 rank with --accumulate 2 and ends bitwise
#    where the uninterrupted 2-rank run ends; it also resumes on 3 ranks (another shard count);
#  - only rank 0 writes and prints;
#  - a failure on one rank (an isolated atom in a frame of rank 1's shard) stops every rank with a
#    message naming that rank, and a diverging loss stops every rank, both well within the timeout;
#  - a rank that stops responding (SIGSTOP) ends the job after HYDRAGNN_COLLECTIVE_TIMEOUT seconds.
set -euo pipefail
exe="$1"; src="$2"; mpiexec="$3"; work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi() { local np="$1"; shift; timeout 300 "$mpiexec" --oversubscribe -np "$np" "$@"; }

data="$src/examples/si_sw/validate.extxyz"
python3 - "$src/examples/si_sw/config.json" "$work/cfg.json" "$data" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["Dataset"]["path"] = {"train": sys.argv[3], "test": sys.argv[3]}
t = c["NeuralNetwork"]["Training"]
t.update(num_epoch=3, batch_size=4, perc_train=0.7)
a = c["NeuralNetwork"]["Architecture"]
a.update(hidden_dim=8, num_filters=8, num_conv_layers=2, num_gaussians=8)
a["output_heads"]["node"]["dim_headlayers"] = [8, 8]
json.dump(c, open(sys.argv[2], "w"))
PY

same() { cmp -s "$1" "$2" || fail "$1 and $2 differ"; }

mpi 2 "$exe" train --config "$work/cfg.json" --output "$work/np2" > "$work/np2.log"
"$exe" train --config "$work/cfg.json" --output "$work/acc2" --accumulate 2 > "$work/acc2.log"
grep -q "data parallel: 2 ranks x 1 micro-batches = global batch of up to 8 structures, 3 steps per epoch; [0-9]* to [0-9]* atoms per shard" "$work/np2.log" || fail "no data-parallel line: $(cat "$work/np2.log")"
grep -q "data parallel: 1 ranks x 2 micro-batches" "$work/acc2.log" || fail "no accumulate line"
[ "$(grep -c "epoch    3/3" "$work/np2.log")" = 1 ] || fail "rank 0 alone prints: $(cat "$work/np2.log")"
same "$work/np2/checkpoint.hgnn" "$work/acc2/checkpoint.hgnn"
# test metrics over both ranks' test shards, printed once, equal to a one-process evaluation
[ "$(grep -c "energy MAE" "$work/np2.log")" = 1 ] || fail "test metrics printed $(grep -c "energy MAE" "$work/np2.log") times"
"$exe" evaluate --checkpoint "$work/np2/checkpoint_best.hgnn" --input "$data" > "$work/eval.log"
for key in "energy MAE" "force  MAE"; do
  [ "$(grep "$key" "$work/np2.log")" = "$(grep "$key" "$work/eval.log")" ] || fail "test $key: $(grep "$key" "$work/np2.log") vs $(grep "$key" "$work/eval.log")"
done
same "$work/np2/checkpoint_best.hgnn" "$work/acc2/checkpoint_best.hgnn"
# the same metrics line by line apart from the wall time
strip() { python3 -c "import json,sys; [print(json.dumps({k: v for k, v in json.loads(l).items() if k != 'seconds'})) for l in open(sys.argv[1])]" "$1"; }
[ "$(strip "$work/np2/metrics.jsonl")" = "$(strip "$work/acc2/metrics.jsonl")" ] || fail "metrics differ"

mpi 3 "$exe" train --config "$work/cfg.json" --output "$work/np3" > "$work/np3.log"
"$exe" train --config "$work/cfg.json" --output "$work/acc3" --accumulate 3 > "$work/acc3.log"
same "$work/np3/checkpoint.hgnn" "$work/acc3/checkpoint.hgnn"
# 4 shards are summed as (g0 + g1) + (g2 + g3) (train/collective.hpp SumTree, not a left fold):
# 4 ranks, 1 rank with --accumulate 4 and 2 ranks with --accumulate 2 all add the same pairs
mpi 4 "$exe" train --config "$work/cfg.json" --output "$work/np4" > /dev/null
"$exe" train --config "$work/cfg.json" --output "$work/acc4" --accumulate 4 > /dev/null
mpi 2 "$exe" train --config "$work/cfg.json" --output "$work/np2acc2" --accumulate 2 > /dev/null
same "$work/np4/checkpoint.hgnn" "$work/acc4/checkpoint.hgnn"
same "$work/np2acc2/checkpoint.hgnn" "$work/acc4/checkpoint.hgnn"
# the sums after the backward instead of during it (HYDRAGNN_OVERLAP_SUMS=0): the same checkpoint
HYDRAGNN_OVERLAP_SUMS=0 mpi 4 -x HYDRAGNN_OVERLAP_SUMS "$exe" train --config "$work/cfg.json" --output "$work/np4s" > /dev/null
same "$work/np4s/checkpoint.hgnn" "$work/acc4/checkpoint.hgnn"

# GAT with HydraGNN's attention dropout: each micro-batch's masks follow (seed, step, global shard),
# so 2 ranks train bitwise as 1 rank with --accumulate 2; without dropout the run differs
python3 - "$work/cfg.json" "$work/gat.json" "$work/gat0.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
a = c["NeuralNetwork"]["Architecture"]
a.update(mpnn_type="GAT", hidden_dim=4, edge_features=["length"])
c["NeuralNetwork"]["Training"]["num_epoch"] = 2
json.dump(c, open(sys.argv[2], "w"))
a["gat_dropout"] = 0.0
json.dump(c, open(sys.argv[3], "w"))
PY
mpi 2 "$exe" train --config "$work/gat.json" --output "$work/gat_np2" > "$work/gat_np2.log"
"$exe" train --config "$work/gat.json" --output "$work/gat_acc2" --accumulate 2 > /dev/null
same "$work/gat_np2/checkpoint.hgnn" "$work/gat_acc2/checkpoint.hgnn"
"$exe" train --config "$work/gat0.json" --output "$work/gat0" --accumulate 2 > /dev/null
cmp -s "$work/gat0/checkpoint.hgnn" "$work/gat_acc2/checkpoint.hgnn" && fail "GAT dropout had no effect"

# stop after 2 epochs on 2 ranks, resume on 1 rank with accumulate 2: where the 3-epoch run ends
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['NeuralNetwork']['Training']['num_epoch']=2; json.dump(c,open(sys.argv[2],'w'))" "$work/cfg.json" "$work/cfg2.json"
mpi 2 "$exe" train --config "$work/cfg2.json" --output "$work/part" > /dev/null
cp -r "$work/part" "$work/part3"
"$exe" train --config "$work/cfg.json" --output "$work/part" --resume --accumulate 2 > "$work/resume.log"
grep -q "epoch    3/3" "$work/resume.log" || fail "resume did not continue at epoch 3"
same "$work/part/checkpoint.hgnn" "$work/np2/checkpoint.hgnn"
mpi 3 "$exe" train --config "$work/cfg.json" --output "$work/part3" --resume > "$work/resume3.log"
grep -q "epoch    3/3" "$work/resume3.log" || fail "3-rank resume did not continue at epoch 3"

# one rank fails: a 1-atom frame (the smallest structure, dealt to shard 1 = rank 1) has no neighbour
cp "$data" "$work/bad.extxyz"
printf '1\nLattice="20 0 0 0 20 0 0 0 20" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 pbc="F F F"\nSi 10 10 10 0 0 0\n' >> "$work/bad.extxyz"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['Dataset']['path']={'train': sys.argv[3]}; c['NeuralNetwork']['Training']['perc_train']=1.0; json.dump(c,open(sys.argv[2],'w'))" \
  "$work/cfg.json" "$work/cfg_bad.json" "$work/bad.extxyz"
start=$SECONDS
if mpi 2 "$exe" train --config "$work/cfg_bad.json" --output "$work/bad" > "$work/bad.log" 2> "$work/bad.err"; then
  fail "a failing rank did not stop the run"
fi
[ $((SECONDS - start)) -lt 120 ] || fail "the failing run took $((SECONDS - start)) s"
grep -q "error on rank 1 of 2" "$work/bad.err" || fail "message does not name rank 1: $(cat "$work/bad.err")"
grep -q "isolated atom" "$work/bad.err" || fail "message does not give the cause: $(cat "$work/bad.err")"

# the loss diverges: every rank stops with the message
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['NeuralNetwork']['Training']['Optimizer']['learning_rate']=1e30; json.dump(c,open(sys.argv[2],'w'))" "$work/cfg.json" "$work/cfg_nan.json"
if mpi 2 "$exe" train --config "$work/cfg_nan.json" --output "$work/nan" > "$work/nan.log" 2> "$work/nan.err"; then
  fail "a diverging run did not stop"
fi
grep -q "training diverged" "$work/nan.err" || fail "no divergence message: $(cat "$work/nan.err")"

# a rank stops responding (SIGSTOP on rank 1 mid-run): rank 0's wait in a collective is bounded by
# HYDRAGNN_COLLECTIVE_TIMEOUT, after which it ends the job with a message instead of hanging
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['NeuralNetwork']['Training']['num_epoch']=5000; json.dump(c,open(sys.argv[2],'w'))" "$work/cfg.json" "$work/cfg_long.json"
HYDRAGNN_COLLECTIVE_TIMEOUT=4 timeout 300 "$mpiexec" --oversubscribe -np 2 -x HYDRAGNN_COLLECTIVE_TIMEOUT \
  "$exe" train --config "$work/cfg_long.json" --output "$work/hang" > "$work/hang.log" 2> "$work/hang.err" &
launcher=$!
for _ in $(seq 600); do grep -q "epoch    2/5000" "$work/hang.log" 2> /dev/null && break; sleep 0.1; done
grep -q "epoch    2/5000" "$work/hang.log" || fail "the long run did not start: $(cat "$work/hang.err")"
stopped=""
for p in $(pgrep -f -- "--output $work/hang" || true); do
  if tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then kill -STOP "$p"; stopped="$p"; fi
done
[ -n "$stopped" ] || fail "rank 1's process not found"
start=$SECONDS
if wait "$launcher"; then fail "the run with a stopped rank ended successfully"; fi
elapsed=$((SECONDS - start))
kill -CONT "$stopped" 2> /dev/null || true; kill -9 "$stopped" 2> /dev/null || true
[ "$elapsed" -lt 60 ] || fail "the job with a stopped rank took $elapsed s to end"
# (which collective rank 0 waits in depends on where rank 1 was stopped: the counts, the gradient sum, a gather)
grep -q "rank 0: a .* over the ranks (MPI_.*) has not completed after [0-9]* s; another rank stopped responding" "$work/hang.err" ||
  fail "no timeout message: $(cat "$work/hang.err")"
if HYDRAGNN_COLLECTIVE_TIMEOUT=soon mpi 2 -x HYDRAGNN_COLLECTIVE_TIMEOUT "$exe" train --config "$work/cfg.json" --output "$work/bad_env" \
  > /dev/null 2> "$work/env.err"; then fail "a bad HYDRAGNN_COLLECTIVE_TIMEOUT was accepted"; fi
grep -q "HYDRAGNN_COLLECTIVE_TIMEOUT = 'soon'" "$work/env.err" || fail "bad timeout value: $(cat "$work/env.err")"
if HYDRAGNN_GPU_AWARE_MPI=yes mpi 2 -x HYDRAGNN_GPU_AWARE_MPI "$exe" train --config "$work/cfg.json" --output "$work/bad_env2" \
  > /dev/null 2> "$work/env2.err"; then fail "a bad HYDRAGNN_GPU_AWARE_MPI was accepted"; fi
grep -q "error on rank [01] of 2: HYDRAGNN_GPU_AWARE_MPI = 'yes'" "$work/env2.err" || fail "bad HYDRAGNN_GPU_AWARE_MPI: $(cat "$work/env2.err")"

# predict and evaluate run as one process
if mpi 2 "$exe" evaluate --checkpoint "$work/np2/checkpoint.hgnn" --input "$data" > /dev/null 2> "$work/ev.err"; then
  fail "evaluate ran on 2 ranks"
fi
grep -q "only 'train' and 'hpo' run on several MPI ranks" "$work/ev.err" || fail "evaluate on 2 ranks: $(cat "$work/ev.err")"
echo "cli_mpi: ok"
