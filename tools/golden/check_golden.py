#!/usr/bin/env python3
"""Independent numpy re-evaluation of the golden files (no torch, no HydraGNN).

Reads tests/golden/{schnet,egnn,painn}.json, recomputes every structure's node
features (and EGNN coordinates) layer by layer and the energy from the stored
parameters and edges (our convention: r_e = pos[dst] - pos[src] + shift_e,
aggregation at dst) with the formulas written in the JSON's
conventions.layer, and the forces by central finite differences of that
energy.  This checks the documented maths and edge convention, which is what
the C++ implementation follows.

Usage: python3 tools/golden/check_golden.py [tests/golden/schnet.json ...]
"""

import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def silu(x):
    return x / (1.0 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0.0)


def ssp(x):
    return np.logaddexp(0.0, x) - math.log(2.0)


class Params:
    def __init__(self, doc):
        self.p = {k: np.array(v["data"], dtype=np.float64).reshape(v["shape"])
                  for k, v in doc["parameters"].items()}

    def lin(self, prefix, x, bias=True):
        y = x @ self.p[prefix + ".weight"].T
        return y + self.p[prefix + ".bias"] if bias else y


def node_head(P, h):
    pre = "heads_NN.0.branch-0.mlp.0."
    h = silu(P.lin(pre + "0", h))
    h = silu(P.lin(pre + "2", h))
    return P.lin(pre + "4", h)[:, 0]


def graph_and_embedding(doc, P, st):
    """A structure's edges (dst, src, Cartesian shift) and its atoms' embedding rows."""
    e = st["edges"]
    dst, src = np.array(e["dst"]), np.array(e["src"])
    S = np.array(e["shift"], dtype=np.float64).reshape(-1, 3)
    idx = [doc["species"].index(z) for z in st["numbers"]]
    return dst, src, S, P.p["embedding.weight"][idx]


def schnet(doc, P, st, pos):
    arch = doc["architecture"]
    rc, G = arch["radius"], arch["num_gaussians"]
    dst, src, S, h = graph_and_embedding(doc, P, st)
    d = np.linalg.norm(pos[dst] - pos[src] + S, axis=1)
    offset = np.linspace(0.0, rc, G)
    coeff = -0.5 / (offset[1] - offset[0]) ** 2
    rbf = np.exp(coeff * (d[:, None] - offset[None, :]) ** 2)
    C = 0.5 * (np.cos(d * math.pi / rc) + 1.0)
    feats = []
    for layer in range(arch["num_conv_layers"]):
        pre = "graph_convs.%d.module_2." % layer
        W = P.lin(pre + "nn.2", ssp(P.lin(pre + "nn.0", rbf))) * C[:, None]
        x = P.lin(pre + "lin1", h, bias=False)
        agg = np.zeros((len(h), x.shape[1]))
        np.add.at(agg, dst, x[src] * W)
        h = silu(P.lin(pre + "lin2", agg))
        feats.append(h)
    return node_head(P, h).sum(), feats, []


def egnn(doc, P, st, pos):
    arch = doc["architecture"]
    dst, src, S, h = graph_and_embedding(doc, P, st)
    n = len(h)
    feats, coords = [], []
    for layer in range(arch["num_conv_layers"]):
        pre = "graph_convs.%d.module_0." % layer
        r = pos[dst] - pos[src] + S
        d = np.linalg.norm(r, axis=1)
        m = relu(P.lin(pre + "edge_mlp.2", relu(P.lin(pre + "edge_mlp.0", np.concatenate(
            [h[dst], h[src], d[:, None]], axis=1)))))
        if pre + "coord_mlp.2.weight" in P.p:
            phi = np.tanh(P.lin(pre + "coord_mlp.2", relu(P.lin(pre + "coord_mlp.0", m)),
                                bias=False))
            u = np.clip(-r / (d[:, None] + 1.0) * phi, -100.0, 100.0)
            acc = np.zeros((n, 3))
            np.add.at(acc, dst, u)
            cnt = np.bincount(dst, minlength=n).astype(np.float64)
            pos = pos + acc / np.maximum(cnt, 1.0)[:, None]
        agg = np.zeros((n, m.shape[1]))
        np.add.at(agg, dst, m)
        h = silu(P.lin(pre + "node_mlp.2", relu(P.lin(pre + "node_mlp.0",
                                                      np.concatenate([h, agg], axis=1)))))
        feats.append(h)
        coords.append(pos)
    return node_head(P, h).sum(), feats, coords


def painn(doc, P, st, pos):
    """PaiNN in our edge convention (sums at dst from src, u_e = (-r_e / (d_e + 1e-9)) / d_e)."""
    arch = doc["architecture"]
    rc, K = arch["radius"], arch["num_radial"]
    dst, src, S, s = graph_and_embedding(doc, P, st)
    n = len(s)
    r = pos[dst] - pos[src] + S
    d = np.linalg.norm(r, axis=1)
    u = (-r / (d[:, None] + 1e-9)) / d[:, None]
    B = np.sin(d[:, None] * np.arange(1, K + 1)[None, :] * math.pi / rc) / d[:, None]
    C = np.where(d < rc, 0.5 * (np.cos(math.pi * d / rc) + 1.0), 0.0)
    v = np.zeros((n, 3, s.shape[1]))
    feats, vecs = [], []
    L = arch["num_conv_layers"]
    for layer in range(L):
        pre = "graph_convs.%d." % layer
        F = s.shape[1]
        phi = P.lin(pre + "module_0.scalar_message_mlp.2",
                    silu(P.lin(pre + "module_0.scalar_message_mlp.0", s)))
        x = P.lin(pre + "module_0.filter_layer", B) * C[:, None] * phi[src]
        gsv, gev, ms = x[:, :F], x[:, F:2 * F], x[:, 2 * F:]
        ds = np.zeros((n, F))
        np.add.at(ds, dst, ms)
        dv = np.zeros((n, 3, F))
        np.add.at(dv, dst, v[src] * gsv[:, None, :] + gev[:, None, :] * u[:, :, None])
        s, v = s + ds, v + dv
        v_msg = v
        Uv = v @ P.p[pre + "module_1.update_U.weight"].T
        Vv = v @ P.p[pre + "module_1.update_V.weight"].T
        a = P.lin(pre + "module_1.update_mlp.2", silu(P.lin(
            pre + "module_1.update_mlp.0", np.concatenate([np.linalg.norm(Vv, axis=1), s], axis=1))))
        inner = (Uv * Vv).sum(axis=1)
        last = layer == L - 1
        if last:
            a_sv, a_ss = a[:, :F], a[:, F:]
        else:
            a_vv, a_sv, a_ss = a[:, :F], a[:, F:2 * F], a[:, 2 * F:]
            v = v + a_vv[:, None, :] * Uv
        s = s + (a_sv * inner + a_ss)
        s = silu(P.lin(pre + "module_2.2", np.tanh(P.lin(pre + "module_2.0", s))))
        v = v_msg if last else v @ P.p[pre + "module_3.weight"].T
        feats.append(s)
        vecs.append(v)
    return node_head(P, s).sum(), feats, vecs


def check_file(path):
    with open(path) as fh:
        doc = json.load(fh)
    P = Params(doc)
    model = {"SchNet": schnet, "EGNN": egnn, "PAINN": painn}[doc["model"]]
    worst = {"energy": 0.0, "features": 0.0, "coords": 0.0, "forces": 0.0}
    for st in doc["structures"]:
        pos = np.array(st["positions"], dtype=np.float64)
        E, feats, coords = model(doc, P, st, pos)
        worst["energy"] = max(worst["energy"], abs(E - st["energy"]) / max(1.0, abs(E)))
        for f, g in zip(feats, st["node_features"]):
            worst["features"] = max(worst["features"], np.abs(f - np.array(g)).max())
        for c, g in zip(coords, st.get("coordinates", st.get("vector_features", []))):
            worst["coords"] = max(worst["coords"], np.abs(c - np.array(g)).max())
        F = np.array(st["forces"])
        fmax = np.abs(F).max()
        for a in range(len(pos)):
            for k in range(3):
                h = 1e-5
                p1, p2 = pos.copy(), pos.copy()
                p1[a, k] += h
                p2[a, k] -= h
                fd = -(model(doc, P, st, p1)[0] - model(doc, P, st, p2)[0]) / (2 * h)
                worst["forces"] = max(worst["forces"], abs(fd - F[a, k]) / fmax)
    ok = (worst["energy"] < 1e-13 and worst["features"] < 1e-13 and worst["coords"] < 1e-13
          and worst["forces"] < 1e-6)
    print("%s %s: numpy vs golden: energy rel %.1e, node features %.1e, coordinates / vectors %.1e, "
          "FD forces (all components, rel. to max|F|) %.1e"
          % ("ok  " if ok else "FAIL", os.path.basename(path), worst["energy"],
             worst["features"], worst["coords"], worst["forces"]))
    return ok


def main(argv):
    paths = argv or [os.path.join(REPO, "tests", "golden", n)
                     for n in ("schnet.json", "egnn.json", "painn.json")]
    return 0 if all([check_file(p) for p in paths]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
