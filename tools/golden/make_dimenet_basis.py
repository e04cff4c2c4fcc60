#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Writes tests/golden/dimenet_basis.json: DimeNet's spherical Bessel radial basis as PyTorch
Geometric computes it (torch_geometric.nn.models.dimenet.SphericalBasisLayer, used unchanged by
HydraGNN's DIMEStack), for the C++ test of kernels/spherical.hpp.

Stored: the zeros and normalisers of dimenet_utils.bessel_basis (Jn_zeros, float32 in PyG), and for
a list of distances the radial part R(d)[l K + n] = envelope(d / rc) * bessel_funcs[l K + n](d / rc)
(the layer's own lambdified sympy functions and Envelope, float64), i.e. the `rbf` of
SphericalBasisLayer.forward before the triplet gather and the angular factor; and the same function
evaluated exactly (mpmath, 50 digits, from the same float32 zeros and normalisers) as "R_exact": PyG's
closed forms lose digits for small z x at high l (cancellation), so a test can tell which of two
float64 evaluations is nearer the function.

    python3 tools/golden/make_dimenet_basis.py      # needs torch, torch_geometric, sympy, scipy
"""

import json
import os
import sys

import numpy as np

L, K = 7, 6               # HydraGNN's usual num_spherical, num_radial
CUTOFF, EXPONENT = 5.0, 5


def main():
    import torch
    from torch_geometric.nn.models import dimenet_utils as du
    from torch_geometric.nn.models.dimenet import SphericalBasisLayer

    torch.set_default_dtype(torch.float64)
    layer = SphericalBasisLayer(L, K, CUTOFF, EXPONENT)
    zeros = du.Jn_zeros(L, K)
    norm = []
    for l in range(L):
        tmp = [0.5 * du.Jn(zeros[l, n], l + 1) ** 2 for n in range(K)]
        norm.append(list(1 / np.array(tmp) ** 0.5))
    d = torch.tensor([0.35, 0.8, 1.2, 1.7, 2.3, 2.95, 3.6, 4.2, 4.75, 4.99, 5.0, 5.3], dtype=torch.float64)
    x = d / CUTOFF
    rbf = torch.stack([f(x) for f in layer.bessel_funcs], dim=1)
    rbf = layer.envelope(x).unsqueeze(-1) * rbf
    import mpmath
    mpmath.mp.dps = 50
    exact = []
    p = EXPONENT + 1
    a, b, c = -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2
    for dv in d.tolist():
        xv = mpmath.mpf(dv) / CUTOFF
        env = (1 / xv + a * xv ** (p - 1) + b * xv ** p + c * xv ** (p + 1)) if xv < 1 else mpmath.mpf(0)
        row = []
        for l in range(L):
            for n in range(K):
                y = mpmath.mpf(float(zeros[l, n])) * xv
                jl = mpmath.sqrt(mpmath.pi / (2 * y)) * mpmath.besselj(l + mpmath.mpf(1) / 2, y)
                row.append(float(env * mpmath.mpf(float(norm[l][n])) * jl))
        exact.append(row)
    doc = {
        "source": "torch_geometric %s SphericalBasisLayer(num_spherical=%d, num_radial=%d, cutoff=%g, "
                  "envelope_exponent=%d): radial part envelope(d/rc) * bessel_funcs(d/rc), float64"
                  % (__import__("torch_geometric").__version__, L, K, CUTOFF, EXPONENT),
        "num_spherical": L, "num_radial": K, "cutoff": CUTOFF, "envelope_exponent": EXPONENT,
        "zeros": [float(v) for v in zeros.reshape(-1)],
        "norm": [float(v) for row in norm for v in row],
        "d": [float(v) for v in d],
        "R": [[float(v) for v in row] for row in rbf.tolist()],
        "R_exact": exact,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden",
                       "dimenet_basis.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
