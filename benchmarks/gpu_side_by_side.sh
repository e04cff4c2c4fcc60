#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# One call on a GPU machine: correctness first, then hydragnn_bench (a CUDA build) and HydraGNN itself
# (../shared/tools/hydragnn_bench.py, PyTorch on the same card) interleaved on the same workload, then the
# other models, then compute-sanitizer. Every step has its own time limit; all logs and JSON files are
# packed into OUT/gpu_run.tgz after each step, so a step that overruns loses nothing already measured.
#
# usage: gpu_side_by_side.sh BIN_DIR HYDRAGNN_SRC RUNNER_DIR WORKLOAD.extxyz OUT_DIR
#   BIN_DIR: hydragnn_bench, test_backend, test_golden (CUDA build) and lib/ with their shared libraries
set -u
BIN=$(realpath "$1"); HSRC=$(realpath "$2"); RUN=$(realpath "$3"); WL=$(realpath "$4"); OUT=$(realpath "$5")
W=$(mktemp -d /tmp/gpu_side_by_side.XXXXXX)  # packed into OUT/gpu_run.tgz
PY=${PY:-python3}  # the Python that holds PyTorch (with CUDA) and PyTorch Geometric
export LD_LIBRARY_PATH="$BIN/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONUNBUFFERED=1
export PATH="$PATH:/usr/local/cuda/bin" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
HERE=$(dirname "$(realpath "$0")")
T0=$(date +%s); DEADLINE=$(( T0 + ${GPU_RUN_SECONDS:-500} ))  # the whole run ends by then
log() { echo "[$(date +%T) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$W/steps.txt"; }
pack() { tar czf "$OUT/gpu_run.tgz" -C "$W" . 2>/dev/null; }
step() {  # step NAME LIMIT_S CMD...
  local name=$1 limit=$2; shift 2
  local left=$(( DEADLINE - $(date +%s) ))
  (( left < limit )) && limit=$left
  (( limit < 10 )) && { log "skip $name (no time left)"; return; }
  log "start $name (limit ${limit}s)"
  timeout -k 5 "$limit" "$@" > "$W/$name.log" 2>&1
  log "end $name rc=$?"
  tail -n 4 "$W/$name.log" | sed 's/^/    /'
  pack
}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.total,memory.used \
  --format=csv > "$W/gpu.txt" 2>&1; cat "$W/gpu.txt"; nvidia-smi >> "$W/gpu.txt" 2>&1
"$PY" -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__)" 2>&1 | tee -a "$W/gpu.txt"

# 1. correctness on the card: every model's default space (Cuda) against the host space, bitwise repeats
step test_backend 60 "$BIN/test_backend" --durations yes
step test_golden 60 "$BIN/test_golden" --durations yes

OURS_ARGS=(--md_sizes=1000 --warmup=3 --benchmark_min_time=0.3 --benchmark_out_format=json)
HYDRA_ARGS=(--hydragnn-src "$HSRC" --n-batches 1 --repeats 10 --warmup 5 --no-train-fn --no-dist
            --extxyz "$WL" --time-budget 70)
# 2. SchNet and EGNN, h64 and h128, two interleaved rounds (ours, theirs, ours, theirs)
for r in 1 2; do
  step ours_r$r 60 "$BIN/hydragnn_bench" --hidden=64,128 "${OURS_ARGS[@]}" \
    --benchmark_filter='^(train|infer)/(SchNet|EGNN)/' --benchmark_out="$W/ours_r$r.json"
  step hydra_r$r 90 "$PY" "$RUN/hydragnn_bench.py" "${HYDRA_ARGS[@]}" --hidden 64,128 \
    --models SchNet,EGNN --cons-models SchNet,EGNN --no-edge-attr --json "$W/hydra_r$r.json"
done
"$PY" "$HERE/side_by_side_table.py" --ours "$W"/ours_r*.json --hydra "$W"/hydra_r*.json > "$W/table.md" 2>&1
cat "$W/table.md"; pack

# 3. where the time goes: per-kernel times (fenced) of the h128 cases
step profile 45 "$BIN/hydragnn_bench" --hidden=64,128 --warmup=2 --profile_steps=3 \
  --profile=train/SchNet/direct/h128,train/SchNet/conservative/h128,infer/SchNet/h128,train/EGNN/direct/h128,train/EGNN/conservative/h128,infer/EGNN/h128
step profile_others 40 "$BIN/hydragnn_bench" --hidden=64 --warmup=2 --profile_steps=2 \
  --profile=train/PAINN/direct/h64,train/PNAEq/direct/h64,train/PNA/direct/h64,train/PNAPlus/direct/h64,train/DimeNet/direct/h64,train/MFC/direct/h64,train/GAT/direct/h64,train/PAINN/conservative/h64,train/PNAEq/conservative/h64

# 4. compute-sanitizer (memcheck, racecheck) on the backend test of two models
if command -v compute-sanitizer > /dev/null; then
  step sanitizer_memcheck 40 compute-sanitizer --tool memcheck --error-exitcode 7 "$BIN/test_backend" "*conv_registry - 0,*conv_registry - 1"
  step sanitizer_racecheck 40 compute-sanitizer --tool racecheck --error-exitcode 7 "$BIN/test_backend" "*conv_registry - 0,*conv_registry - 1"
  # float and dual kernels at the benchmark's sizes: one force-training step of each model
  step sanitizer_bench 60 compute-sanitizer --tool memcheck --error-exitcode 7 "$BIN/hydragnn_bench" --hidden=64 \
    --warmup=0 --profile_steps=1 --profile=train/SchNet/conservative/h64,train/EGNN/conservative/h64
fi
# 5. the other models, one round each side (hidden: $HIDDEN_OTHERS, default 64,128). The runner's direct
# mode gives edge_attr "length" to its EDGE_MODELS; ours takes it in PNA, PNAPlus, CGCNN, GAT and DimeNet++
# (bench_options), not in SchNet, EGNN, PaiNN and PNAEq: those run with --no-edge-attr, the same architecture
# on both sides (side_by_side_table.py marks a ratio whose parameter counts differ)
OTHERS=PAINN,PNAEq,GIN,SAGE,PNA,PNAPlus,CGCNN,MFC,GAT,DimeNet,MACE
EDGE=PNA,PNAPlus,CGCNN,GAT,DimeNet,MACE; NOEDGE=PAINN,PNAEq,GIN,SAGE,MFC
HO=${HIDDEN_OTHERS:-64,128}
step ours_all 90 "$BIN/hydragnn_bench" --hidden=$HO "${OURS_ARGS[@]}" \
  --benchmark_filter="^(train|infer)/(${OTHERS//,/|})/" --benchmark_out="$W/ours_all.json"
step hydra_all 60 "$PY" "$RUN/hydragnn_bench.py" "${HYDRA_ARGS[@]}" --time-budget 50 --hidden $HO \
  --models "$EDGE" --cons-models PNAPlus,DimeNet,MACE --json "$W/hydra_all.json"
step hydra_noedge 50 "$PY" "$RUN/hydragnn_bench.py" "${HYDRA_ARGS[@]}" --time-budget 40 --hidden $HO \
  --models "$NOEDGE" --cons-models PAINN,PNAEq --no-edge-attr --json "$W/hydra_noedge.json"
"$PY" "$HERE/side_by_side_table.py" --ours "$W/ours_all.json" --hydra "$W/hydra_all.json" "$W/hydra_noedge.json" \
  > "$W/table_all.md" 2>&1

log "all done"; pack
cat "$W/table.md" "$W/table_all.md" | tee "$OUT/tables.md"
