#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Cu-Ni training data from LAMMPS' EAM potential (Onat & Durukanoglu's CuNi.eam.alloy, Debian's
lammps-data), written as extxyz with energy, forces and stress (ASE conventions).

Each run: a random fcc Cu(1-x)Ni(x) alloy of 3x3x3 cells (108 atoms), a random lattice constant and
small random strain (lattice constant within 1% of Vegard's law), Nose-Hoover MD at a random
temperature; every `--every` steps a frame. Runs go
through lmp_hydragnn (any LAMMPS executable with the MANYBODY package works: --lmp).

    python3 generate.py --lmp build/examples/lmp_hydragnn --runs 20 --out cuni.extxyz [--seed 1]

Python 3 standard library only.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

NKTV2P = 1.6021765e6  # LAMMPS metal units: bar per eV/A^3
POTENTIAL = "/usr/share/lammps/potentials/CuNi.eam.alloy"

INPUT = """units metal
boundary p p p
atom_modify map array sort 0 0.0
lattice fcc {a}
region box prism 0 3 0 3 0 3 0 0 0
create_box 2 box
create_atoms 1 box
set type 1 type/fraction 2 {x_ni} {seed}
mass 1 63.546
mass 2 58.693
change_box all x scale {sx} y scale {sy} z scale {sz} xy final {xy} remap units box
pair_style eam/alloy
pair_coeff * * {potential} Cu Ni
compute vir all pressure NULL virial
velocity all create {temp} {seed} mom yes rot yes dist gaussian
fix md all nvt temp {temp} {temp} 0.1
timestep 0.002
thermo_style custom step pe c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6]
thermo_modify format float %.12g
thermo {every}
dump d all custom {every} {dump} id type x y z fx fy fz
dump_modify d sort id format float %.12g
run {steps}
"""


def read_dump(path):
    """Frames of a LAMMPS custom dump: (step, box lines, rows sorted by id)."""
    frames = []
    with open(path) as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("ITEM: TIMESTEP"):
            step = int(lines[i + 1])
            n = int(lines[i + 3])
            box_head = lines[i + 4]
            box = [list(map(float, lines[i + 5 + k].split())) for k in range(3)]
            rows = [lines[i + 9 + k].split() for k in range(n)]
            frames.append((step, box_head, box, rows))
            i += 9 + n
        else:
            i += 1
    return frames


def cell_of(box_head, box):
    """LAMMPS bounds (possibly triclinic, with tilt factors) -> lattice vectors (rows)."""
    if "xy" in box_head:
        (xlo_b, xhi_b, xy), (ylo_b, yhi_b, xz), (zlo, zhi, yz) = box
        xlo = xlo_b - min(0.0, xy, xz, xy + xz)
        xhi = xhi_b - max(0.0, xy, xz, xy + xz)
        ylo = ylo_b - min(0.0, yz)
        yhi = yhi_b - max(0.0, yz)
    else:
        (xlo, xhi), (ylo, yhi), (zlo, zhi) = [b[:2] for b in box]
        xy = xz = yz = 0.0
    return [[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]]


def read_thermo(log):
    """step -> (pe, virial pressure xx yy zz xy xz yz in bar) from a LAMMPS log."""
    out = {}
    with open(log) as f:
        lines = f.read().split("\n")
    for k, line in enumerate(lines):
        if line.split()[:2] == ["Step", "PotEng"]:
            for row in lines[k + 1:]:
                p = row.split()
                if len(p) != 8:
                    break
                try:
                    out[int(p[0])] = tuple(map(float, p[1:]))
                except ValueError:
                    break
    return out


def run_one(lmp, rng, every, steps, workdir, index):
    x_ni = rng.uniform(0.05, 0.95)
    a0 = 3.615 * (1 - x_ni) + 3.524 * x_ni  # Vegard's law between Cu and Ni
    params = dict(a=a0 * rng.uniform(0.99, 1.01), x_ni=x_ni, seed=rng.randint(1, 10**6),
                  sx=1 + rng.uniform(-0.02, 0.02), sy=1 + rng.uniform(-0.02, 0.02), sz=1 + rng.uniform(-0.02, 0.02),
                  xy=rng.uniform(-0.3, 0.3), temp=rng.uniform(300, 1400), every=every, steps=steps,
                  potential=POTENTIAL)
    dump = os.path.join(workdir, "run%d.dump" % index)
    log = os.path.join(workdir, "run%d.log" % index)
    params["dump"] = dump
    inp = os.path.join(workdir, "in%d.lammps" % index)
    with open(inp, "w") as f:
        f.write(INPUT.format(**params))
    subprocess.run([lmp, "-in", inp, "-log", log, "-screen", "none", "-nocite"], check=True)
    thermo = read_thermo(log)
    frames = []
    for step, head, box, rows in read_dump(dump):
        pe, *pv = thermo[step]
        xx, yy, zz, xy, xz, yz = (-v / NKTV2P for v in pv)  # ASE stress = -virial pressure
        frames.append((cell_of(head, box), rows, pe, [xx, xy, xz, xy, yy, yz, xz, yz, zz], params))
    return frames


def write_extxyz(path, frames):
    sym = {"1": "Cu", "2": "Ni"}
    with open(path, "w") as f:
        for cell, rows, pe, stress, params in frames:
            lattice = " ".join("%.12g" % v for row in cell for v in row)
            f.write("%d\n" % len(rows))
            f.write('Lattice="%s" Properties=species:S:1:pos:R:3:forces:R:3 energy=%.12g stress="%s" '
                    'pbc="T T T" temperature=%.1f\n' % (lattice, pe, " ".join("%.12g" % s for s in stress),
                                                         params["temp"]))
            for r in rows:
                f.write("%s %s %s %s %s %s %s\n" % (sym[r[1]], r[2], r[3], r[4], r[5], r[6], r[7]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lmp", required=True, help="LAMMPS executable (e.g. build/examples/lmp_hydragnn)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--every", type=int, default=50, help="MD steps between frames")
    ap.add_argument("--steps", type=int, default=500, help="MD steps per run (2 fs)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if not os.path.isfile(POTENTIAL):
        sys.exit("generate.py: %s not found (Debian package lammps-data)" % POTENTIAL)
    rng = random.Random(a.seed)
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.runs):
            frames += run_one(a.lmp, rng, a.every, a.steps, tmp, k)
    write_extxyz(a.out, frames)
    print("wrote %d frames to %s" % (len(frames), a.out))


if __name__ == "__main__":
    main()
