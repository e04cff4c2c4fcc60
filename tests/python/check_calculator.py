#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""hydragnn_cpp.Calculator (ASE) against `hydragnn predict`, a BFGS relaxation and NVE MD in ASE.

    check_calculator.py HYDRAGNN_CLI SOURCE_DIR PYTHON_PACKAGE_PARENT

A SchNet trained 10 epochs on the shipped Si data (examples/si_sw) in float, run in float64:
energies, forces and stress of 3 frames equal predict's (1e-10 relative); per-atom energies sum to
the energy; the stress equals a finite difference of the energy under strain; BFGS relaxes a rattled
frame; velocity Verlet (1 fs) conserves the total energy.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

cli, src, pydir = sys.argv[1:4]
sys.path.insert(0, pydir)
import numpy as np  # noqa: E402
from ase.io import read  # noqa: E402
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402
from ase.optimize import BFGS  # noqa: E402
from ase import units  # noqa: E402

import hydragnn_cpp  # noqa: E402

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def main():
    work = tempfile.mkdtemp(prefix="hydragnn_python_")
    try:
        cfg = json.load(open(os.path.join(src, "examples/si_sw/config.json")))
        data = os.path.join(src, "examples/si_sw/validate.extxyz")
        cfg["Dataset"]["path"] = {"train": data}
        tr = cfg["NeuralNetwork"]["Training"]
        tr["num_epoch"] = 10
        tr["Optimizer"] = {"type": "AdamW", "learning_rate": 0.01}
        tr["perc_train"] = 0.9
        tr.pop("EarlyStopping", None)
        arch = cfg["NeuralNetwork"]["Architecture"]
        arch["hidden_dim"] = arch["num_filters"] = 16
        arch.pop("max_neighbours", None)
        json.dump(cfg, open(os.path.join(work, "cfg.json"), "w"))
        subprocess.run([cli, "train", "--config", os.path.join(work, "cfg.json"), "--output", os.path.join(work, "run")],
                       check=True, stdout=subprocess.DEVNULL)
        model = os.path.join(work, "run", "checkpoint_best.hgnn")
        frames = read(data, index=":3")
        pred = os.path.join(work, "pred.extxyz")
        subprocess.run([cli, "predict", "--checkpoint", model, "--input", data, "--output", pred, "--precision", "float64"],
                       check=True, stdout=subprocess.DEVNULL)
        ref = read(pred, index=":3")
        calc = hydragnn_cpp.Calculator(model, precision="float64")
        check(calc.potential.precision == "double" and calc.potential.mpnn_type == "SchNet",
              "loaded %s in %s" % (calc.potential.mpnn_type, calc.potential.precision))
        check(calc.potential.branches == ["branch-0"] and calc.potential.branch == "branch-0",
              "head branches %s, using %s" % (calc.potential.branches, calc.potential.branch))
        try:
            hydragnn_cpp.Calculator(model, branch="nope")
            check(False, "an unknown head branch is refused")
        except Exception as e:  # noqa: BLE001
            check("'nope' not found" in str(e) and "branch-0" in str(e), "an unknown head branch is refused: %s" % e)
        for k, (a, r) in enumerate(zip(frames, ref)):
            a.calc = calc
            e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
            er, fr, sr = r.get_potential_energy(), r.get_forces(), r.get_stress()
            check(abs(e - er) <= 1e-10 * abs(er), "frame %d: energy %.10f = predict %.10f" % (k, e, er))
            fs = np.abs(fr).max()
            check(fs > 1e-3 and np.abs(f - fr).max() <= 1e-10 * fs, "frame %d: forces (max |F| %.3f)" % (k, fs))
            check(np.abs(s - sr).max() <= 1e-10 * np.abs(sr).max(), "frame %d: stress" % k)
            ea = calc.get_property("energies", a)
            check(abs(ea.sum() - e) <= 1e-10 * abs(e), "frame %d: per-atom energies sum to the energy" % k)
        # stress = (1/V) dE/d(strain): central difference of one diagonal and one shear component
        a = frames[0].copy()
        a.calc = calc
        s = a.get_stress(voigt=False)
        cell0, v = a.get_cell().copy(), a.get_volume()
        for (i, j) in ((0, 0), (0, 1)):
            def energy(eps):
                b = a.copy()
                b.calc = calc
                F = np.eye(3)
                F[i, j] += eps / (2 if i != j else 1)
                F[j, i] += eps / 2 if i != j else 0
                b.set_cell(cell0 @ F, scale_atoms=True)
                return b.get_potential_energy()
            h = 1e-5
            fd = (energy(h) - energy(-h)) / (2 * h) / v
            check(abs(fd - s[i, j]) <= 1e-6, "stress[%d,%d] %.8f = finite difference %.8f" % (i, j, s[i, j], fd))
        # BFGS from a rattled frame
        a = frames[1].copy()
        a.rattle(0.05, seed=3)
        a.calc = calc
        e0, f0 = a.get_potential_energy(), np.abs(a.get_forces()).max()
        opt = BFGS(a, logfile=None)
        converged = opt.run(fmax=0.01, steps=300)
        e1, f1 = a.get_potential_energy(), np.abs(a.get_forces()).max()
        check(e1 < e0 and f1 < 0.1 * f0, "BFGS: E %.5f -> %.5f eV, max |F| %.4f -> %.4f eV/A in %d steps (converged: %s)"
              % (e0, e1, f0, f1, opt.nsteps, converged))
        # NVE with velocity Verlet, 1 fs
        a = frames[2].copy()
        a.calc = calc
        MaxwellBoltzmannDistribution(a, temperature_K=600, rng=np.random.default_rng(5))
        md = VelocityVerlet(a, timestep=1.0 * units.fs)
        etot = []
        md.attach(lambda: etot.append(a.get_potential_energy() + a.get_kinetic_energy()), interval=10)
        md.run(200)
        drift = (max(etot) - min(etot)) / len(a)
        check(drift < 1e-4, "NVE 0.2 ps, %d atoms: total energy spread %.2e eV/atom" % (len(a), drift))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
