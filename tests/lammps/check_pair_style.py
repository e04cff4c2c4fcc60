#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""pair_style hydragnn against `hydragnn predict` (issue: simulation codes).

1. Cu-Ni frames from LAMMPS' EAM (examples/lammps_cuni/generate.py), a SchNet model trained on
   them for 3 epochs (a float checkpoint whose forces are not trivial).
2. Two frames (triclinic cells) through LAMMPS with `pair_style hydragnn precision float64`:
   newton on and off; 1 rank (the periodic graph, and ghost atoms with `ghosts yes`) and 2 MPI
   ranks (ghost atoms). Energy, every force, the virial (compute pressure NULL
   virial), sum of pe/atom and of stress/atom equal `hydragnn predict --precision float64` on the
   same frames (relative 1e-9 of the largest value).
3. NVE, 10 ps of 1 fs steps, double-precision maths: the total energy drift is printed and bounded.
4. fix npt runs (the volume responds); a model with a max_neighbours cap makes the style warn.

    check_pair_style.py LMP HYDRAGNN SOURCE_DIR [MPIEXEC]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

NKTV2P = 1.6021765e6
lmp, cli, src = sys.argv[1:4]
mpiexec = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def read_extxyz(path):
    frames = []
    with open(path) as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines) and lines[i].strip():
        n = int(lines[i])
        head = lines[i + 1]
        kv = {}
        rest = head
        while rest.strip():
            rest = rest.strip()
            k, _, rest = rest.partition("=")
            if rest.startswith('"'):
                v, _, rest = rest[1:].partition('"')
            else:
                v, _, rest = rest.partition(" ")
            kv[k.strip()] = v
        rows = [lines[i + 2 + k].split() for k in range(n)]
        frames.append((kv, rows))
        i += 2 + n
    return frames


def data_file(path, kv, rows):
    c = list(map(float, kv["Lattice"].split()))
    a, b, cc = c[0:3], c[3:6], c[6:9]
    assert a[1] == a[2] == b[2] == 0.0, "lower-triangular cells only"
    types = {"Cu": 1, "Ni": 2}
    with open(path, "w") as f:
        f.write("frame\n\n%d atoms\n2 atom types\n0 %.15g xlo xhi\n0 %.15g ylo yhi\n0 %.15g zlo zhi\n"
                "%.15g %.15g %.15g xy xz yz\n\nMasses\n\n1 63.546\n2 58.693\n\nAtoms # atomic\n\n"
                % (len(rows), a[0], b[1], cc[2], b[0], cc[0], cc[1]))
        for k, r in enumerate(rows):
            f.write("%d %d %s %s %s\n" % (k + 1, types[r[0]], r[1], r[2], r[3]))


def setup(data, model, style, newton="on"):
    """The start of every input: one frame, pair_style hydragnn `style`."""
    return ("units metal\nboundary p p p\natom_modify map array\nnewton %s\nread_data %s\n"
            "pair_style hydragnn %s\npair_coeff * * %s Cu Ni\n" % (newton, data, style, model))


LAMMPS_RUN = """compute vir all pressure NULL virial
compute pe all pe/atom
compute st all stress/atom NULL virial
compute spe all reduce sum c_pe
compute sst all reduce sum c_st[1] c_st[2] c_st[3] c_st[4] c_st[5] c_st[6]
thermo_style custom step pe c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6] c_spe c_sst[1] c_sst[2] c_sst[3] c_sst[4] c_sst[5] c_sst[6] vol
thermo_modify format float %.15g
dump d all custom 1 {dump} id fx fy fz
dump_modify d sort id format float %.15g
run 0
"""


def thermo_rows(log, ncols):
    rows = []
    with open(log) as f:
        lines = f.read().split("\n")
    for k, line in enumerate(lines):
        if line.split()[:2] == ["Step", "PotEng"] or line.split()[:2] == ["Step", "TotEng"]:
            for row in lines[k + 1:]:
                p = row.split()
                if len(p) != ncols:
                    break
                try:
                    rows.append(list(map(float, p)))
                except ValueError:
                    break
    return rows


def run_lammps(work, tag, text, ranks):
    inp = os.path.join(work, "in.%s" % tag)
    with open(inp, "w") as f:
        f.write(text)
    log = os.path.join(work, "log.%s" % tag)
    cmd = [lmp, "-in", inp, "-log", log, "-screen", "none", "-nocite"]
    if ranks > 1:
        cmd = [mpiexec, "--oversubscribe", "-np", str(ranks)] + cmd
    subprocess.run(cmd, check=True, env=env)
    return log


def main():
    work = tempfile.mkdtemp(prefix="hydragnn_lammps_")
    try:
        data = os.path.join(work, "cuni.extxyz")
        subprocess.run([sys.executable, os.path.join(src, "examples/lammps_cuni/generate.py"), "--lmp", lmp,
                        "--runs", "2", "--steps", "200", "--out", data], check=True, env=env)
        cfg = {"Dataset": {"name": "cuni", "format": "extxyz", "path": {"train": data}},
               "NeuralNetwork": {
                   "Architecture": {"mpnn_type": "SchNet", "radius": 4.0, "hidden_dim": 16, "num_conv_layers": 2,
                                    "num_gaussians": 10, "num_filters": 16,
                                    "output_heads": {"node": {"num_headlayers": 1, "dim_headlayers": [16], "type": "mlp"}},
                                    "enable_interatomic_potential": True, "energy_weight": 0.0,
                                    "energy_peratom_weight": 1.0, "force_weight": 1.0},
                   "Variables_of_interest": {"output_names": ["energy"], "type": ["node"], "output_dim": [1]},
                   "Training": {"num_epoch": 3, "batch_size": 2, "perc_train": 1.0,
                                "Optimizer": {"type": "AdamW", "learning_rate": 0.01}}}}
        with open(os.path.join(work, "cfg.json"), "w") as f:
            json.dump(cfg, f)
        subprocess.run([cli, "train", "--config", os.path.join(work, "cfg.json"), "--output", os.path.join(work, "run")],
                       check=True, stdout=subprocess.DEVNULL)
        model = os.path.join(work, "run", "checkpoint_best.hgnn")
        frames = read_extxyz(data)
        for fi in (3, 8):
            kv, rows = frames[fi]
            one = os.path.join(work, "frame%d.extxyz" % fi)
            # the frame alone, then predict in double
            with open(one, "w") as f:
                f.write("%d\n" % len(rows))
                f.write('Lattice="%s" Properties=species:S:1:pos:R:3 pbc="T T T"\n' % kv["Lattice"])
                for r in rows:
                    f.write(" ".join(r[:4]) + "\n")
            pred = os.path.join(work, "pred%d.extxyz" % fi)
            subprocess.run([cli, "predict", "--checkpoint", model, "--input", one, "--output", pred,
                            "--precision", "float64"], check=True, stdout=subprocess.DEVNULL)
            pkv, prows = read_extxyz(pred)[0]
            e_ref = float(pkv["energy"])
            f_ref = [list(map(float, r[4:7])) for r in prows]
            s_ref = list(map(float, pkv["stress"].split()))
            fscale = max(abs(v) for r in f_ref for v in r)
            check(fscale > 1e-2, "frame %d: the model's forces are not trivial (max |F| %.3f eV/A)" % (fi, fscale))
            datap = os.path.join(work, "frame%d.data" % fi)
            data_file(datap, kv, rows)
            for newton in ("on", "off"):
                for ranks, ghosts in [(1, "no"), (1, "yes")] + ([(2, "no")] if mpiexec else []):
                    tag = "%d_%s_%d_%s" % (fi, newton, ranks, ghosts)
                    dump = os.path.join(work, "f.%s" % tag)
                    text = setup(datap, model, "precision float64 ghosts " + ghosts, newton) + LAMMPS_RUN.format(dump=dump)
                    log = run_lammps(work, tag, text, ranks)
                    t = thermo_rows(log, 16)[-1]
                    pe, pvir, spe, sst, vol = t[1], t[2:8], t[8], t[9:15], t[15]
                    with open(dump) as f:
                        dl = f.read().split("\n")
                    n = int(dl[3])
                    forces = {int(r.split()[0]): list(map(float, r.split()[1:4])) for r in dl[9:9 + n]}
                    what = "frame %d, newton %s, %d rank(s), %s" % (
                        fi, newton, ranks, "periodic graph" if ranks == 1 and ghosts == "no" else "ghost atoms")
                    check(abs(pe - e_ref) <= 1e-9 * abs(e_ref), "%s: energy %.12f vs predict %.12f" % (what, pe, e_ref))
                    check(abs(spe - pe) <= 1e-9 * abs(pe), "%s: sum of pe/atom %.12f = pe" % (what, spe))
                    df = max(abs(forces[k + 1][a] - f_ref[k][a]) for k in range(len(f_ref)) for a in range(3))
                    check(df <= 1e-9 * fscale, "%s: forces, max |dF| = %.2e eV/A (max |F| %.3f)" % (what, df, fscale))
                    # virial pressure P = W / V (bar), W = -sigma^T V: P_ab = -sigma_ba * NKTV2P
                    idx = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
                    p_ref = [-s_ref[3 * b + a] * NKTV2P for a, b in idx]
                    pscale = max(abs(v) for v in p_ref)
                    dp = max(abs(x - y) for x, y in zip(pvir, p_ref))
                    check(dp <= 1e-9 * pscale, "%s: virial pressure, max diff %.2e bar (max %.1f)" % (what, dp, pscale))
                    # stress/atom (virial part) sums to -P_vir V
                    ds = max(abs(x + y * vol) for x, y in zip(sst, pvir))
                    check(ds <= 1e-9 * pscale * vol, "%s: sum of stress/atom = -P_vir V (max diff %.2e)" % (what, ds))
        # NVE with 1 fs steps in double: energy conservation
        kv, rows = frames[3]
        frame3 = os.path.join(work, "frame3.data")
        nve = setup(frame3, model, "precision float64") + """velocity all create 600 4 mom yes rot yes dist gaussian
timestep 0.001
fix nve all nve
thermo_style custom step etotal pe ke
thermo_modify format float %.15g
thermo 500
run 10000
"""
        log = run_lammps(work, "nve", nve, 1)
        rows_t = thermo_rows(log, 4)
        e0 = rows_t[0][1]
        drift = max(abs(r[1] - e0) for r in rows_t) / len(rows)
        trend = abs(rows_t[-1][1] - rows_t[1][1]) / len(rows)
        print("NVE 10 ps (1 fs steps, %d atoms, double): max |E_tot - E_0| = %.3e eV/atom, E(10 ps) - E(0.5 ps) = %.3e eV/atom"
              % (len(rows), drift, trend))
        check(len(rows_t) == 21 and drift < 3e-5, "NVE 10 ps: energy conserved (max deviation %.2e eV/atom < 3e-5)" % drift)
        # fix npt runs on the model's virial: the volume responds to a target pressure of 0
        npt = setup(frame3, model, "") + """velocity all create 300 5
timestep 0.001
fix npt all npt temp 300 300 0.1 iso 0.0 0.0 0.5
thermo_style custom step pe press vol
thermo_modify format float %.10g
thermo 50
run 200
"""
        log = run_lammps(work, "npt", npt, 1)
        rows_t = thermo_rows(log, 4)
        v0, v1 = rows_t[0][3], rows_t[-1][3]
        check(len(rows_t) == 5 and abs(v1 - v0) > 1e-3 * v0,
              "fix npt: volume %.2f -> %.2f A^3 in 0.2 ps (pressure %.0f -> %.0f bar)" % (v0, v1, rows_t[0][2], rows_t[-1][2]))
        # a model with a nearest-K cap: the pair style warns
        cfg["NeuralNetwork"]["Architecture"]["max_neighbours"] = 12
        cfg["NeuralNetwork"]["Training"]["num_epoch"] = 0
        with open(os.path.join(work, "cfg_cap.json"), "w") as f:
            json.dump(cfg, f)
        subprocess.run([cli, "train", "--config", os.path.join(work, "cfg_cap.json"), "--output", os.path.join(work, "cap")],
                       check=True, stdout=subprocess.DEVNULL)
        capped = (setup(frame3, os.path.join(work, "cap", "checkpoint_best.hgnn"), "precision float64 ghosts no branch branch-0")
                  + LAMMPS_RUN.format(dump=os.path.join(work, "f.cap")))
        log = run_lammps(work, "cap", capped, 1)
        with open(log) as f:
            text = f.read()
        check("WARNING: Pair hydragnn: the model keeps only the 12 nearest neighbours" in text,
              "a model with max_neighbours 12: the pair style warns")
        # a head branch the model does not have: named in LAMMPS' error
        bad = setup(frame3, os.path.join(work, "cap", "checkpoint_best.hgnn"), "branch nope") + "run 0\n"
        inp = os.path.join(work, "in.branch")
        with open(inp, "w") as f:
            f.write(bad)
        r = subprocess.run([lmp, "-in", inp, "-log", os.path.join(work, "log.branch"), "-screen", "none", "-nocite"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(work, "log.branch")) as f:
            text = f.read()
        check(r.returncode != 0 and "head branch 'nope' not found; the model has branch-0" in text,
              "pair_style hydragnn branch nope: an error naming the branches")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
