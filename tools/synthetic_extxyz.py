#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Write N synthetic labelled structures to an extxyz file (for conversion and start-up timings).

    python3 tools/synthetic_extxyz.py N out.extxyz [--seed S]

Each structure: 4 to 20 atoms (H, C, N, O) on a simple cubic lattice (a = 2.5 A) jittered by up to
0.3 A, so every atom has neighbours within 5 A; half of them in a periodic cubic cell; energy
-4 eV per atom plus noise, forces N(0, 1) eV/A. The labels are random: for timings, not for fitting.
Standard library only.
"""
import argparse
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    sym = ["H", "C", "N", "O"]
    with open(args.out, "w") as f:
        for s in range(args.n):
            n = rng.randint(4, 20)
            sites = [(i, j, k) for i in range(3) for j in range(3) for k in range(3)]
            sites.sort(key=lambda p: (p[0] - 1) ** 2 + (p[1] - 1) ** 2 + (p[2] - 1) ** 2 + rng.random() * 0.1)
            e = -4.0 * n + rng.gauss(0, 1)
            if s % 2:
                head = 'Lattice="7.5 0 0 0 7.5 0 0 0 7.5" pbc="T T T"'
            else:
                head = 'pbc="F F F"'
            f.write("%d\n%s Properties=species:S:1:pos:R:3:forces:R:3 energy=%.10f\n" % (n, head, e))
            for i in range(n):
                x = [2.5 * c + rng.uniform(-0.3, 0.3) for c in sites[i]]
                f.write("%s %.8f %.8f %.8f %.6f %.6f %.6f\n" % (sym[rng.randrange(4)], x[0], x[1], x[2],
                                                                  rng.gauss(0, 1), rng.gauss(0, 1), rng.gauss(0, 1)))


if __name__ == "__main__":
    main()
