# SPDX-License-Identifier: BSD-3-Clause
"""hydragnn_cpp: a trained hydragnn checkpoint as a Python potential and an ASE calculator.

    from hydragnn_cpp import Calculator
    atoms.calc = Calculator("run/checkpoint_best.hgnn", precision="float64")
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()

Potential is the bare interface (numbers, positions, cell, pbc -> dict of numpy arrays).
"""
import numpy as np

from ._core import Potential, kokkos_version  # noqa: F401

try:
    from ase.calculators.calculator import Calculator as _AseCalculator, all_changes
    from ase.stress import full_3x3_to_voigt_6_stress
except ImportError:  # ASE is needed only for Calculator
    _AseCalculator = None


if _AseCalculator is not None:

    class Calculator(_AseCalculator):
        """ASE calculator: energy, free_energy, forces, stress (3-D periodic cells), energies (per atom)."""

        implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

        def __init__(self, checkpoint, precision="checkpoint", branch="", **kwargs):
            _AseCalculator.__init__(self, **kwargs)
            self.potential = Potential(checkpoint, precision, branch)

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            _AseCalculator.calculate(self, atoms, properties, system_changes)
            a = self.atoms
            per_atom = "energies" in properties
            out = self.potential.compute(a.get_atomic_numbers().astype(np.int32), a.get_positions(),
                                         np.asarray(a.get_cell()), [bool(p) for p in a.pbc], per_atom)
            self.results = {"energy": out["energy"], "free_energy": out["energy"], "forces": out["forces"]}
            if a.pbc.all():
                self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"])
            if per_atom:
                self.results["energies"] = out["energies"]

else:

    class Calculator:  # noqa: D101
        def __init__(self, *args, **kwargs):
            raise ImportError("hydragnn_cpp.Calculator needs ASE (Debian: python3-ase; or pip install ase)")
