# SPDX-License-Identifier: BSD-3-Clause
"""ASE databases (SQLite) written by ASE itself, for the tests of hydragnn's reader (io/ase_db.hpp).

    python3 make_ase_db.py <extxyz> <out dir>

writes in <out dir>:
  frames.db   every frame of <extxyz> (read by ASE: energy, forces, stress through its calculator)
  extras.db   three rows: a water molecule without cell (energy, forces, key-value pairs), a periodic
              frame with int64 atomic numbers and a 3x3 stress, a frame without any calculator
  bad.db      extras.db with the positions of row 2 cut to 5 values
  empty.db    an ASE database whose only row was deleted
  other.db    an SQLite file without ASE's tables
"""
import os
import sqlite3
import sys

import numpy as np
import ase.io
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for name in ("frames", "extras", "bad", "empty", "other"):
    path = os.path.join(out, name + ".db")
    if os.path.exists(path):
        os.remove(path)

with connect(os.path.join(out, "frames.db")) as db:
    for atoms in ase.io.read(src, ":"):
        db.write(atoms)

water = Atoms("OH2", positions=[[0.0, 0.0, 0.125], [0.75, 0.0, -0.5], [-0.75, 0.0, -0.5]])
water.calc = SinglePointCalculator(water, energy=-14.25,
                                   forces=[[0.0, 0.0, 0.5], [0.25, 0.0, -0.25], [-0.25, 0.0, -0.25]])
cu = Atoms(numbers=np.array([29, 29], dtype=np.int64), positions=[[0.0, 0.0, 0.0], [1.75, 1.75, 0.0]],
           cell=[[3.5, 0.0, 0.0], [0.0, 3.5, 0.0], [0.0, 0.0, 2.5]], pbc=[True, True, False])
cu.calc = SinglePointCalculator(cu, energy=-7.5, forces=np.zeros((2, 3)),
                                stress=np.array([[0.5, 0.125, 0.0], [0.125, -0.25, 0.0], [0.0, 0.0, 1.0]]))
bare = Atoms("Si", positions=[[0.5, 0.25, 0.125]], cell=[4.0, 4.0, 4.0], pbc=True)
with connect(os.path.join(out, "extras.db")) as db:
    db.write(water, config_type="water", temperature=300.5, index=3, relaxed=True)
    db.write(cu)
    db.write(bare)

with open(os.path.join(out, "extras.db"), "rb") as f, open(os.path.join(out, "bad.db"), "wb") as g:
    g.write(f.read())
con = sqlite3.connect(os.path.join(out, "bad.db"))
con.execute("UPDATE systems SET positions = ? WHERE id = 2", (np.zeros(5).tobytes(),))
con.commit()
con.close()

db = connect(os.path.join(out, "empty.db"))
db.delete([db.write(bare)])

con = sqlite3.connect(os.path.join(out, "other.db"))
con.execute("CREATE TABLE foo (x INTEGER)")
con.commit()
con.close()
