#!/usr/bin/python3
"""Small silicon dataset for the HydraGNN quick-start example.

Reference data: diamond-cubic silicon with the Stillinger-Weber potential
(Stillinger & Weber, Phys. Rev. B 31, 5262 (1985); parameter file Si.sw from
Debian's ``lammps-data``), evaluated through Debian's LAMMPS python module.

Structures (all fully periodic, possibly triclinic):

* diamond supercells 1x1x1 (8 atoms), 2x1x1 (16), 2x2x1 (32), 2x2x2 (64),
  each deformed by a random deformation gradient F = 1 + E, |E_ij| <= 3 %
  (normal strain and shear; the cell is generally NOT in LAMMPS'
  lower-triangular orientation - it is rotated into it internally and all
  vectors/tensors are rotated back);
* ``bulk_rattle``   : Gaussian displacements, sigma uniform in [0.02, 0.15] A;
* ``bulk_md``       : last frame of a short Nose-Hoover NVT run (dt = 1 fs,
                      200-500 steps) at T uniform in [300, 1500] K;
* ``vacancy_rattle``/``vacancy_md`` : same with 1-2 atoms removed (>= 16-atom
                      cells only).

Output: extended XYZ in ASE conventions.  Units eV, A, eV/A, eV/A^3.
``stress`` = -virial/V = -(pressure tensor, potential part only) = (1/V) dE/d(strain),
row-major 3x3, in the same (unrotated) frame as ``Lattice``/``pos``/``forces``.

Usage::

    python3 generate.py --seed 7 --n-train 240 --n-val 30 --n-test 60 --outdir .
    python3 generate.py --selfcheck

Deterministic for a given --seed: every frame draws from its own
numpy.random.default_rng([seed, split, index]) and LAMMPS runs serially.
"""

import argparse
import os
import subprocess
import sys
import time

# Debian's python3-lammps / python3-numpy live in /usr/lib/python3/dist-packages,
# which only the system interpreter sees.  If we were started by another
# python3 (pyenv, venv) that cannot import them, re-run under /usr/bin/python3.
try:
    import numpy as np
    import lammps as _lammps_pkg
except ImportError:
    if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") \
            and os.path.exists("/usr/bin/python3") \
            and not os.environ.get("SI_SW_GEN_REEXEC"):
        os.environ["SI_SW_GEN_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

import lammps.core as _lammps_core
from lammps import lammps

# Debian ships liblammps.so.0 in liblammps0, but the python module dlopen()s the
# unversioned liblammps.so, which only the -dev package provides.  Fall back to
# the versioned soname instead of requiring liblammps-dev.
_orig_cdll = _lammps_core.CDLL


def _cdll_with_soname_fallback(name, *args, **kwargs):
    try:
        return _orig_cdll(name, *args, **kwargs)
    except OSError:
        if os.path.basename(str(name)) == "liblammps.so":
            return _orig_cdll("liblammps.so.0", *args, **kwargs)
        raise


_lammps_core.CDLL = _cdll_with_soname_fallback

# --------------------------------------------------------------------------
# constants
# --------------------------------------------------------------------------
A0_SW = 5.431                   # SW equilibrium lattice constant of diamond Si (A)
MASS_SI = 28.0855               # g/mol
# 1 bar = 1e5 Pa;  1 eV/A^3 = 1.602176634e-19 J / 1e-30 m^3 = 1.602176634e11 Pa
BAR_TO_EV_PER_A3 = 1.0e5 / 1.602176634e11   # = 6.241509074e-7
SUPERCELLS = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]
SUPERCELL_WEIGHTS = [0.15, 0.25, 0.30, 0.30]
KIND_SHARES = [("bulk_rattle", 0.30), ("bulk_md", 0.40),
               ("vacancy_rattle", 0.15), ("vacancy_md", 0.15)]
SPLIT_IDS = {"train": 0, "validate": 1, "test": 2}
LMP_ARGS = ["-log", "none", "-screen", "none", "-nocite"]


def find_si_sw():
    cands = ["/usr/share/lammps/potentials/Si.sw"]
    for c in cands:
        if os.path.isfile(c):
            return c
    try:
        out = subprocess.run(["dpkg", "-L", "lammps-data"], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            if line.endswith("/Si.sw"):
                return line
    except (OSError, subprocess.CalledProcessError):
        pass
    sys.exit("Si.sw not found: apt-get install -y lammps-data")


# --------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------
def diamond_supercell(n1, n2, n3, a=A0_SW):
    """Cubic diamond supercell; returns (cell rows 3x3, positions Nx3)."""
    basis = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                      [.25, .25, .25], [.25, .75, .75], [.75, .25, .75],
                      [.75, .75, .25]])
    frac = []
    for i in range(n1):
        for j in range(n2):
            for k in range(n3):
                frac.append(basis + np.array([i, j, k]))
    frac = np.concatenate(frac)
    cell = np.diag([n1 * a, n2 * a, n3 * a]).astype(float)
    pos = frac * a
    return cell, pos


def lammps_prism(cell):
    """Rotate a general right-handed cell (rows a, b, c) into LAMMPS' form.

    Returns (lx, ly, lz, xy, xz, yz, R) with H_lmp = H @ R, R orthogonal, so
    a row vector v maps as v_lmp = v @ R and back as v = v_lmp @ R.T.
    """
    a, b, c = cell
    if np.dot(np.cross(a, b), c) <= 0:
        raise ValueError("cell must be right-handed")
    lx = np.linalg.norm(a)
    ahat = a / lx
    xy = np.dot(b, ahat)
    ly = np.linalg.norm(np.cross(ahat, b))
    xz = np.dot(c, ahat)
    yz = (np.dot(b, c) - xy * xz) / ly
    lz = np.sqrt(np.dot(c, c) - xz * xz - yz * yz)
    h_lmp = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
    rot = np.linalg.solve(cell, h_lmp)           # H @ R = H_lmp
    # re-orthogonalise against round-off (polar decomposition)
    u, _, vt = np.linalg.svd(rot)
    rot = u @ vt
    return lx, ly, lz, xy, xz, yz, rot


def wrap(cell, pos):
    frac = np.linalg.solve(cell.T, pos.T).T
    frac -= np.floor(frac)
    frac[frac >= 1.0] -= 1.0
    return frac @ cell


# --------------------------------------------------------------------------
# LAMMPS driver
# --------------------------------------------------------------------------
class SW:
    def __init__(self, potfile):
        self.potfile = potfile

    def _setup(self, cell, pos):
        lx, ly, lz, xy, xz, yz, rot = lammps_prism(cell)
        h_lmp = np.array([[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]])
        frac = np.linalg.solve(cell.T, pos.T).T
        frac -= np.floor(frac)
        x_lmp = frac @ h_lmp
        lmp = lammps(cmdargs=list(LMP_ARGS))   # (lammps() mutates the list)
        cmds = [
            "units metal",
            "atom_style atomic",
            "atom_modify map array sort 0 0",
            "boundary p p p",
            "region cell prism 0 {:.16g} 0 {:.16g} 0 {:.16g} {:.16g} {:.16g} {:.16g} units box"
            .format(lx, ly, lz, xy, xz, yz),
            "create_box 1 cell",
            "mass 1 {}".format(MASS_SI),
            "pair_style sw",
            "pair_coeff * * {} Si".format(self.potfile),
            "neighbor 1.0 bin",
            "neigh_modify every 1 delay 0 check yes",
            # potential (virial) part of the pressure tensor only
            "compute pv all pressure NULL virial",
            "thermo_style custom step pe c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6]",
            "thermo_modify norm no",
        ]
        for c in cmds:
            lmp.command(c)
        n = len(pos)
        made = lmp.create_atoms(n, list(range(1, n + 1)), [1] * n,
                                x_lmp.ravel().tolist())
        if made != n or lmp.get_natoms() != n:
            lmp.close()
            raise RuntimeError("LAMMPS created %s of %d atoms" % (made, n))
        return lmp, rot

    def _results(self, lmp, rot, cell):
        n = lmp.get_natoms()
        energy = lmp.get_thermo("pe")
        f = np.array(lmp.gather_atoms("f", 1, 3)[:], dtype=float).reshape(n, 3)
        x = np.array(lmp.gather_atoms("x", 1, 3)[:], dtype=float).reshape(n, 3)
        pv = lmp.extract_compute("pv", 0, 1)
        pxx, pyy, pzz, pxy, pxz, pyz = [pv[i] for i in range(6)]
        p_lmp = np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]])
        stress_lmp = -p_lmp * BAR_TO_EV_PER_A3
        # rotate back to the frame of `cell`
        forces = f @ rot.T
        positions = wrap(cell, x @ rot.T)
        stress = rot @ stress_lmp @ rot.T
        return energy, forces, stress, positions

    def evaluate(self, cell, pos):
        lmp, rot = self._setup(cell, pos)
        try:
            lmp.command("run 0")
            e, f, s, _ = self._results(lmp, rot, cell)
        finally:
            lmp.close()
        return e, f, s

    def md(self, cell, pos, temp, nsteps, seed):
        """Nose-Hoover NVT; returns (energy, forces, stress, positions) of the last step."""
        lmp, rot = self._setup(cell, pos)
        try:
            for c in [
                "timestep 0.001",
                "velocity all create {:.6f} {:d} mom yes rot no dist gaussian".format(2.0 * temp, seed),
                "fix nvt all nvt temp {0:.6f} {0:.6f} 0.05".format(temp),
                "thermo {:d}".format(nsteps),
                "run {:d}".format(nsteps),
            ]:
                lmp.command(c)
            e, f, s, x = self._results(lmp, rot, cell)
        finally:
            lmp.close()
        return e, f, s, x


# --------------------------------------------------------------------------
# structure generation
# --------------------------------------------------------------------------
def random_deformation(rng, cell, pos, max_strain=0.03):
    """Apply F = 1 + E (|E_ij| <= max_strain, general: strain + shear + a small
    rotation).  Row-vector convention: h' = h F^T, r' = r F^T."""
    F = np.eye(3) + rng.uniform(-max_strain, max_strain, size=(3, 3))
    return cell @ F.T, pos @ F.T


def make_frame(sw, rng, kind):
    vacancy = kind.startswith("vacancy")
    weights = np.array(SUPERCELL_WEIGHTS)
    if vacancy:
        weights[0] = 0.0                          # no vacancies in 8-atom cells
    weights /= weights.sum()
    sc = SUPERCELLS[rng.choice(len(SUPERCELLS), p=weights)]
    cell, pos = diamond_supercell(*sc)
    info = {"supercell": "x".join(map(str, sc))}
    if vacancy:
        nvac = int(rng.integers(1, 3))
        drop = rng.choice(len(pos), size=nvac, replace=False)
        pos = np.delete(pos, drop, axis=0)
        info["vacancies"] = nvac
    cell, pos = random_deformation(rng, cell, pos)
    if kind.endswith("rattle"):
        sigma = rng.uniform(0.02, 0.15)
        pos = pos + rng.normal(0.0, sigma, size=pos.shape)
        pos = wrap(cell, pos)
        e, f, s = sw.evaluate(cell, pos)
        info["rattle_sigma"] = sigma
    else:
        temp = rng.uniform(300.0, 1500.0)
        nsteps = int(rng.integers(200, 501))
        pos = wrap(cell, pos + rng.normal(0.0, 0.01, size=pos.shape))
        seed = int(rng.integers(1, 2**31 - 1))
        e, f, s, pos = sw.md(cell, pos, temp, nsteps, seed)
        info["temperature"] = temp
        info["steps"] = nsteps
    return dict(cell=cell, pos=pos, energy=e, forces=f, stress=s,
                config_type=kind, info=info)


def kinds_for(n, rng):
    counts = [int(round(share * n)) for _, share in KIND_SHARES]
    counts[0] += n - sum(counts)
    kinds = [k for (k, _), c in zip(KIND_SHARES, counts) for _ in range(c)]
    return [kinds[i] for i in rng.permutation(n)]


def fmt(x):
    return "%.10f" % x


def write_extxyz(path, frames):
    with open(path, "w") as fh:
        for fr in frames:
            n = len(fr["pos"])
            lat = " ".join(fmt(v) for v in fr["cell"].ravel())
            st = " ".join("%.10e" % v for v in fr["stress"].ravel())
            fh.write("%d\n" % n)
            fh.write('Lattice="%s" Properties=species:S:1:pos:R:3:forces:R:3 '
                     'energy=%s stress="%s" pbc="T T T" config_type=%s\n'
                     % (lat, fmt(fr["energy"]), st, fr["config_type"]))
            for p, f in zip(fr["pos"], fr["forces"]):
                fh.write("Si %16.10f %16.10f %16.10f %16.10f %16.10f %16.10f\n"
                         % (p[0], p[1], p[2], f[0], f[1], f[2]))


# --------------------------------------------------------------------------
# self-check: finite differences in the (rotated, unconverted) input frame
# --------------------------------------------------------------------------
def selfcheck(sw, seed):
    rng = np.random.default_rng([seed, 99])
    cell, pos = diamond_supercell(2, 1, 1)
    cell, pos = random_deformation(rng, cell, pos)     # triclinic, rotated
    pos = wrap(cell, pos + rng.normal(0.0, 0.08, size=pos.shape))
    lx, ly, lz, xy, xz, yz, _ = lammps_prism(cell)
    print("self-check frame: %d atoms, cell rows\n%s" % (len(pos), np.array2string(cell, precision=5)))
    print("LAMMPS prism: lx=%.5f ly=%.5f lz=%.5f xy=%.5f xz=%.5f yz=%.5f" % (lx, ly, lz, xy, xz, yz))
    e0, f0, s0 = sw.evaluate(cell, pos)
    print("E = %.10f eV, max|F| = %.4f eV/A, stress (eV/A^3) =\n%s"
          % (e0, np.abs(f0).max(), np.array2string(s0, precision=6)))

    h = 1e-4
    f_fd = np.zeros_like(pos)
    for i in range(len(pos)):
        for k in range(3):
            p = pos.copy(); p[i, k] += h
            ep = sw.evaluate(cell, p)[0]
            p[i, k] -= 2 * h
            em = sw.evaluate(cell, p)[0]
            f_fd[i, k] = -(ep - em) / (2 * h)
    dF = np.abs(f_fd - f0).max()
    print("forces: max |F_lammps - (-dE/dx)_fd| = %.3e eV/A  (h = %g A, max|F| = %.3f)"
          % (dF, h, np.abs(f0).max()))

    vol = abs(np.linalg.det(cell))
    d = 1e-5
    s_fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            es = []
            for sgn in (1, -1):
                F = np.eye(3); F[a, b] += sgn * d
                es.append(sw.evaluate(cell @ F.T, pos @ F.T)[0])
            s_fd[a, b] = (es[0] - es[1]) / (2 * d) / vol
    dS = np.abs(s_fd - s0).max()
    rel = dS / np.abs(s0).max()
    print("stress: max |sigma_lammps - (1/V) dE/dF_fd| = %.3e eV/A^3, relative to max|sigma| = %.3e  (d = %g)"
          % (dS, rel, d))
    print("stress asymmetry of the FD tensor: %.3e eV/A^3" % np.abs(s_fd - s_fd.T).max())
    ok = dF < 1e-5 and rel < 1e-5
    print("SELF-CHECK", "PASSED" if ok else "FAILED")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n-train", type=int, default=240)
    ap.add_argument("--n-val", type=int, default=30)
    ap.add_argument("--n-test", type=int, default=60)
    ap.add_argument("--outdir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--potential", default=None, help="path to Si.sw (default: from lammps-data)")
    ap.add_argument("--selfcheck", action="store_true",
                    help="finite-difference check of forces and stress, then exit")
    args = ap.parse_args()

    sw = SW(args.potential or find_si_sw())
    if args.selfcheck:
        sys.exit(0 if selfcheck(sw, args.seed) else 1)

    os.makedirs(args.outdir, exist_ok=True)
    t0 = time.time()
    for split, n in (("train", args.n_train), ("validate", args.n_val), ("test", args.n_test)):
        sid = SPLIT_IDS[split]
        kinds = kinds_for(n, np.random.default_rng([args.seed, sid, 1 << 20]))
        frames = [make_frame(sw, np.random.default_rng([args.seed, sid, i]), kinds[i])
                  for i in range(n)]
        path = os.path.join(args.outdir, split + ".extxyz")
        write_extxyz(path, frames)
        natoms = sum(len(fr["pos"]) for fr in frames)
        byk = {}
        for fr in frames:
            byk[fr["config_type"]] = byk.get(fr["config_type"], 0) + 1
        print("%-8s %4d frames %6d atoms %8d bytes  %s  -> %s"
              % (split, n, natoms, os.path.getsize(path),
                 " ".join("%s=%d" % kv for kv in sorted(byk.items())), path))
    print("total time %.1f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
