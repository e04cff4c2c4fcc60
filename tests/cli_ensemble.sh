#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `hydragnn predict --ensemble`: three SchNet models trained with different seeds on the Si (SW) set;
# the ensemble's energy/forces are the mean of the members' own predictions, its energy_std and
# forces_std their spread; the spread is larger on structures far from the training data (the test
# frames compressed and stretched by 12 %) than on the test frames themselves.
set -euo pipefail
exe="$1"; src="$2"; py="${3:-python3}"; work="$(mktemp -d)"  # a python3 with numpy and ASE
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
d="$src/examples/si_sw"

for seed in 1 2 3; do
  "$py" - "$d/config.json" "$work/cfg$seed.json" "$d" "$seed" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
d = sys.argv[3]
c["Dataset"]["path"] = {"train": d + "/train.extxyz", "validate": d + "/validate.extxyz"}
t = c["NeuralNetwork"]["Training"]
t.update(num_epoch=12, batch_size=16, seed=int(sys.argv[4]))
a = c["NeuralNetwork"]["Architecture"]
a.update(hidden_dim=16, num_filters=16, num_conv_layers=2, num_gaussians=12)
a["output_heads"]["node"]["dim_headlayers"] = [16, 16]
json.dump(c, open(sys.argv[2], "w"))
PY
  "$exe" train --config "$work/cfg$seed.json" --output "$work/m$seed" > "$work/train$seed.log"
done
m="$work/m1/checkpoint_best.hgnn,$work/m2/checkpoint_best.hgnn,$work/m3/checkpoint_best.hgnn"

# structures far from the training data: the test frames compressed and stretched by 12 %
"$py" - "$d/test.extxyz" "$work/strained.extxyz" <<'PY'
import sys
from ase.io import read, write
frames = []
for k, a in enumerate(read(sys.argv[1], index=":")):
    a.calc = None
    a.info = {}
    a.arrays = {key: v for key, v in a.arrays.items() if key in ("numbers", "positions")}
    a.set_cell(a.cell * (0.88 if k % 2 == 0 else 1.12), scale_atoms=True)
    frames.append(a)
write(sys.argv[2], frames, format="extxyz")
PY

"$exe" predict --ensemble "$m" --input "$d/test.extxyz" --output "$work/ens_in.extxyz" > "$work/ens_in.log"
"$exe" predict --ensemble "$m" --input "$work/strained.extxyz" --output "$work/ens_out.extxyz" > /dev/null
grep -q "ensemble of 3 models" "$work/ens_in.log" || fail "no ensemble line: $(cat "$work/ens_in.log")"
for k in 1 2 3; do
  "$exe" predict --checkpoint "$work/m$k/checkpoint_best.hgnn" --input "$d/test.extxyz" --output "$work/single$k.extxyz" > /dev/null
done

"$py" - "$work" <<'PY'
import sys
import numpy as np
from ase.io import read
w = sys.argv[1]
def load(name):
    return read(f"{w}/{name}", index=":")
ens, out = load("ens_in.extxyz"), load("ens_out.extxyz")
singles = [load(f"single{k}.extxyz") for k in (1, 2, 3)]
def energy(a):
    return a.get_potential_energy()
def forces(a):
    return a.get_forces()
for k, a in enumerate(ens):
    e = np.array([energy(s[k]) for s in singles])
    f = np.array([forces(s[k]) for s in singles])
    assert abs(energy(a) - e.mean()) <= 1e-9 * abs(e.mean()), (k, energy(a), e.mean())
    assert abs(a.info["energy_std"] - e.std()) <= 1e-6 * max(e.std(), 1e-9) + 1e-12, (k, a.info["energy_std"], e.std())
    assert np.allclose(forces(a), f.mean(axis=0), rtol=0, atol=1e-9), k
    assert np.allclose(a.arrays["forces_std"], f.std(axis=0), rtol=1e-6, atol=1e-12), k
    assert a.info["ensemble_size"] == 3
def spread(frames):
    e = np.mean([a.info["energy_std"] / len(a) for a in frames])
    f = np.mean(np.concatenate([a.arrays["forces_std"].ravel() for a in frames]))
    return e, f
ei, fi = spread(ens)
eo, fo = spread(out)
print(f"ensemble spread: test frames E {ei*1e3:.3f} meV/atom, F {fi*1e3:.2f} meV/A; "
      f"strained +-12 %: E {eo*1e3:.3f} meV/atom, F {fo*1e3:.2f} meV/A")
assert ei > 0 and fi > 0
assert eo > 2 * ei, (eo, ei)
assert fo > 2 * fi, (fo, fi)
PY

# errors: one member, or --checkpoint with --ensemble
if "$exe" predict --ensemble "$work/m1/checkpoint_best.hgnn" --input "$d/test.extxyz" --output "$work/x.extxyz" 2> "$work/e1.txt"; then
  fail "an ensemble of one accepted"
fi
grep -q "at least two" "$work/e1.txt" || fail "$(cat "$work/e1.txt")"
if "$exe" predict --checkpoint "$work/m1/checkpoint_best.hgnn" --ensemble "$m" --input "$d/test.extxyz" --output "$work/x.extxyz" 2> /dev/null; then
  fail "--checkpoint with --ensemble accepted"
fi
if "$exe" predict --input "$d/test.extxyz" --output "$work/x.extxyz" 2> "$work/e3.txt"; then
  fail "predict without a model accepted"
fi
echo "cli_ensemble: ok"
