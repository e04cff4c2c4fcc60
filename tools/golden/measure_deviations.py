#!/usr/bin/env python3
"""Measures the deliberate deviations of docs/deviations.md with the golden weights.

Optional tooling (never used by the build, the tests or CI).  Loads the
parameters and structures of tests/golden/{schnet,egnn}.json into HydraGNN's
own models (built as tools/golden/make_golden.py builds them) and reports:

 1. SchNet periodic images: HydraGNN's unpatched SCFStack (its own
    non-periodic RadiusInteractionGraph inside every conv) against the
    patched one (= our periodic graph), per structure: energies, max |dF| /
    max |F|, edges each sees.
 2. Neighbour cap K: the edges HydraGNN's data pipeline keeps (periodic runs:
    hydragnn.preprocess RadiusGraphPBC = vesin + `_limit_neighbors`; runs
    without PBC: PyG's RadiusGraph transform -> pyg-lib radius, CPU kernel)
    against ours (include/hydragnn/graph/radius_graph.hpp: nearest K per
    receiver, ties by (sender, image)); the EGNN golden model evaluated on
    both (HydraGNN's edge_index fed to E_GCL as HydraGNN does), and SchNet on
    the molecule (its internal capped radius graph against ours).
 3. The float32 cast of energy and forces in EnhancedModelWrapper.

Needs what make_golden.py needs plus the real `vesin` and `ase` (only for the
periodic pipeline of item 2), e.g.

  pip install --target /tmp/measure_deps vesin ase
  python3 tools/golden/measure_deviations.py --hydragnn-src /opt/hydragnn_src \\
      --deps /tmp/measure_deps

pyg-lib (PyG's radius op) is not needed: its CPU kernel `pyg::radius` is
re-implemented here (registered under the same name, so PyG's radius_graph,
RadiusGraph and RadiusInteractionGraph run unchanged).  The kernel
(pyg_lib/csrc/ops/cpu/radius_kernel.cpp) queries a nanoflann KD-tree with
leaf size 10 and unsorted results, then keeps the first max_num_neighbors
matches that are not the query itself.  For <= 10 points the tree is a single
leaf scanned in index order, so the kept neighbours are the first K by index;
for more points the KD-tree order is not reproduced and the stand-in refuses
a binding cap.
"""

import argparse
import copy
import importlib.util  # noqa: F401  (make_golden.import_hydragnn uses it)
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RADIUS = 3.0


# ---------------------------------------------------------------------------
# pyg::radius stand-in (see the module docstring)
# ---------------------------------------------------------------------------
_LIB = None


def register_pyg_radius():
    global _LIB
    import torch
    import torch_geometric.typing as tgt

    if tgt.WITH_RADIUS:
        return "pyg-lib's radius op (installed)"

    def radius_cpu(x, y, ptr_x, ptr_y, r, max_num_neighbors, num_workers,
                   ignore_same_index):
        assert ptr_x is None or ptr_x.numel() == 2, "single example only"
        n = x.size(0)
        xd = x.detach().double()
        yd = y.detach().double()
        out = []
        for i in range(y.size(0)):
            matches = []
            for j in range(n):  # single nanoflann leaf: index order
                diff = yd[i] - xd[j]
                d2 = float((diff * diff).sum())
                if d2 < r * r:
                    matches.append(j)
            kept = [j for j in matches if not (ignore_same_index and j == i)]
            if n > 10 and len(kept) > max_num_neighbors:
                raise NotImplementedError(
                    "pyg::radius stand-in: %d points form a KD-tree of several leaves, "
                    "whose search order is not reproduced, and the cap %d binds"
                    % (n, max_num_neighbors))
            for j in kept[:max_num_neighbors]:
                out.append((i, j))
        if not out:
            return torch.zeros((2, 0), dtype=torch.long)
        return torch.tensor(out, dtype=torch.long).t().contiguous()  # [y index; x index]

    _LIB = torch.library.Library("pyg", "FRAGMENT")
    _LIB.define("radius(Tensor x, Tensor y, Tensor? ptr_x=None, Tensor? ptr_y=None, "
                "float r=1.0, int max_num_neighbors=32, int num_workers=1, "
                "bool ignore_same_index=False) -> Tensor")
    _LIB.impl("radius", radius_cpu, "CPU")
    tgt.WITH_RADIUS = True
    return ("pyg::radius re-implemented (pyg-lib missing): first max_num_neighbors "
            "matches in index order (nanoflann single leaf, <= 10 points)")


# ---------------------------------------------------------------------------
# Golden files -> structures, models
# ---------------------------------------------------------------------------
def load_golden(name):
    with open(os.path.join(REPO, "tests", "golden", name)) as fh:
        return json.load(fh)


def golden_structures(doc):
    import numpy as np

    out = []
    for rec in doc["structures"]:
        e = rec["edges"]
        dst = np.array(e["dst"], dtype=np.int64)
        src = np.array(e["src"], dtype=np.int64)
        img = np.array(e["image"], dtype=np.int64).reshape(-1, 3)
        S = np.array(e["shift"], dtype=np.float64).reshape(-1, 3)
        pos = np.array(rec["positions"], dtype=np.float64)
        d = np.linalg.norm(pos[dst] - pos[src] + S, axis=1)
        out.append(dict(name=rec["name"], numbers=rec["numbers"], positions=pos,
                        cell=None if rec["cell"] is None else np.array(rec["cell"]),
                        pbc=rec["pbc"], graph=(dst, src, img, S, d),
                        energy=rec["energy"], forces=np.array(rec["forces"])))
    return out


def tensor(v, dtype=None):
    import torch

    return torch.tensor(v["data"], dtype=dtype or torch.float64).view(v["shape"])


def golden_model(mg, hg_create, doc, mpnn_type):
    """HydraGNN model as make_golden builds it, with the golden parameters loaded."""
    import torch

    model, _ = mg.build_model(hg_create, mpnn_type, [])
    sd = {k: tensor(v) for k, v in doc["parameters"].items() if k != "embedding.weight"}
    sd.update({k: tensor(v) for k, v in doc.get("buffers", {}).items()})
    model.model.load_state_dict(sd, strict=True)
    emb = tensor(doc["parameters"]["embedding.weight"])
    return model.double().eval(), emb


def energy_forces(model, st, emb, species, edge_index, edge_shifts, graph_module=None):
    """E (float64 sum of the node head) and F = -dE/dpos for the given HydraGNN
    edge_index / edge_shifts (model convention).  For the patched SchNet,
    graph_module gets them too."""
    import numpy as np
    import torch
    from torch_geometric.data import Data

    ei = torch.as_tensor(np.asarray(edge_index), dtype=torch.long)
    sh = torch.as_tensor(np.asarray(edge_shifts), dtype=torch.float64)
    if graph_module is not None:
        graph_module.set_graph(ei, sh)
    idx = torch.tensor([species.index(z) for z in st["numbers"]], dtype=torch.long)
    pos = torch.tensor(st["positions"], dtype=torch.float64, requires_grad=True)
    data = Data(x=emb[idx].clone(), pos=pos, edge_index=ei, edge_shifts=sh)
    data.batch = torch.zeros(len(st["numbers"]), dtype=torch.long)
    pred = model(data)
    e = pred[0].sum()
    g = torch.autograd.grad(e, pos)[0]
    return float(e.detach()), (-g).detach().numpy()


# ---------------------------------------------------------------------------
# Edge sets
# ---------------------------------------------------------------------------
def lattice_shift(cell, n):
    """As hydragnn::radius_graph_detail::lattice_shift: sum of n_k * cell[k], skipping n_k = 0."""
    S = [0.0, 0.0, 0.0]
    for k in range(3):
        if n[k] != 0:
            for d in range(3):
                S[d] += n[k] * cell[k][d]
    return S


def ours_capped(st, K):
    """Our rule (radius_graph.hpp): per receiver i keep the K nearest candidates,
    ordered by (r^2, sender, image); edges sorted by (dst, src, image)."""
    import numpy as np

    dst, src, img, _, _ = st["graph"]
    pos = st["positions"]
    cell = st["cell"]
    rows = []
    for i in range(len(pos)):
        cand = []
        for e in np.flatnonzero(dst == i):
            j, n = int(src[e]), tuple(int(t) for t in img[e])
            S = lattice_shift(cell, n) if cell is not None else [0.0, 0.0, 0.0]
            v = [(pos[i][d] - pos[j][d]) + S[d] for d in range(3)]
            r2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2]
            cand.append((r2, j, n, S))
        cand.sort(key=lambda c: (c[0], c[1], c[2]))
        kept = sorted(cand[:K], key=lambda c: (c[1], c[2]))
        rows += [(i, c[1], c[2], c[3]) for c in kept]
    d = np.array([t[0] for t in rows], dtype=np.int64)
    s = np.array([t[1] for t in rows], dtype=np.int64)
    n = np.array([t[2] for t in rows], dtype=np.int64).reshape(-1, 3)
    S = np.array([t[3] for t in rows], dtype=np.float64).reshape(-1, 3)
    dd = np.linalg.norm(pos[d] - pos[s] + S, axis=1)
    return d, s, n, S, dd


def hydragnn_pipeline_edges(hg_pre, st, K):
    """What HydraGNN's data pipeline stores: edge_index [2, E] (row 0 = sender
    j = neighbour, row 1 = centre i, r = pos[i] - pos[j] + shift) and
    edge_shifts (Cartesian), integer images n.

    Periodic runs (periodic_boundary_conditions): RadiusGraphPBC(r, loop=False,
    max_num_neighbors=K) with data.pbc forced to [T, T, T] as
    graph_dataset._build_edges / AbstractRawDataset do.  Otherwise PyG's
    RadiusGraph(r, loop=False, max_num_neighbors=K) (no shifts)."""
    import numpy as np
    import torch
    from torch_geometric.data import Data

    pos = torch.tensor(st["positions"], dtype=torch.float64)
    if st["cell"] is not None:
        data = Data(pos=pos, num_nodes=len(pos))
        data.cell = torch.tensor(st["cell"], dtype=torch.float64)
        data.pbc = [True, True, True]
        data = hg_pre.RadiusGraphPBC(r=RADIUS, loop=False, max_num_neighbors=K)(data)
        ei = data.edge_index.numpy()
        sh = data.edge_shifts.numpy()
        n = np.rint(sh @ np.linalg.inv(st["cell"])).astype(np.int64)
        assert np.abs(n @ st["cell"] - sh).max() < 1e-9
    else:
        from torch_geometric.transforms import RadiusGraph

        data = Data(pos=pos, num_nodes=len(pos))
        data = RadiusGraph(r=RADIUS, loop=False, max_num_neighbors=K)(data)
        ei = data.edge_index.numpy()
        sh = np.zeros((ei.shape[1], 3))
        n = np.zeros((ei.shape[1], 3), dtype=np.int64)
    return ei, sh, n


def edge_set(dst, src, img):
    return {(int(a), int(b), tuple(int(t) for t in n)) for a, b, n in zip(dst, src, img)}


def count_ties(st, only_a, only_b):
    """Edges of only_a whose distance equals (bit for bit) that of an edge of only_b
    at the same receiver: differences that are exact ties (e.g. an atom's own
    images +n and -n)."""
    import numpy as np

    def dist(e):
        i, j, n = e
        S = np.zeros(3) if st["cell"] is None else np.array(n, float) @ st["cell"]
        return float(np.linalg.norm(st["positions"][i] - st["positions"][j] + S))

    db = {}
    for e in only_b:
        db.setdefault(e[0], set()).add(dist(e))
    return sum(1 for e in only_a if dist(e) in db.get(e[0], ()))


# ---------------------------------------------------------------------------
def rel_force(F, F_ref):
    import numpy as np

    return float(np.abs(F - F_ref).max() / np.abs(F_ref).max())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hydragnn-src", default=os.environ.get("HYDRAGNN_SRC",
                                                             "/opt/hydragnn_src"))
    ap.add_argument("--deps", default=os.environ.get("MEASURE_DEPS", "/tmp/measure_deps"),
                    help="folder with the real vesin and ase (appended to sys.path)")
    ap.add_argument("--caps", default="4,6,8")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args(argv)

    if args.deps and os.path.isdir(args.deps):
        sys.path.append(os.path.abspath(args.deps))
    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    import make_golden as mg

    hg = mg.import_hydragnn(args.hydragnn_src)  # noqa: F841
    for p in mg.ENV_PATCHES:
        print("env patch:", p)
    print("radius op:", register_pyg_radius())
    hg_create = sys.modules["hydragnn.models.create"]
    scf = sys.modules["hydragnn.models.SCFStack"]
    hg_pre = sys.modules["hydragnn.preprocess.graph_samples_checks_and_updates"]
    have_pbc_pipeline = (not isinstance(sys.modules.get("vesin"), mg._PermModule)
                         and not isinstance(sys.modules.get("ase"), mg._PermModule))
    HydraRIG = scf.RadiusInteractionGraph  # before build_model patches it
    print("SCFStack interaction graph class:", HydraRIG.__module__, HydraRIG.__name__)

    docs = {"SchNet": load_golden("schnet.json"), "EGNN": load_golden("egnn.json")}
    species = docs["SchNet"]["species"]
    structs = golden_structures(docs["SchNet"])
    structs_e = golden_structures(docs["EGNN"])
    for a, b in zip(structs, structs_e):
        assert a["name"] == b["name"] and np.array_equal(a["positions"], b["positions"])
        assert all(np.array_equal(x, y) for x, y in zip(a["graph"], b["graph"]))
        # the edges in the JSON are make_golden's neighbour_list of these positions
        ref = mg.neighbour_list(a["positions"], a["cell"], a["pbc"], RADIUS)
        assert all(np.array_equal(x, y) for x, y in zip(a["graph"][:3], ref[:3]))
    results = {}

    models = {}
    for t in ("SchNet", "EGNN"):
        model, emb = golden_model(mg, hg_create, docs[t], t)
        models[t] = (model, emb)
        worst = 0.0
        for st, stg in zip(structs, golden_structures(docs[t])):
            ei, sh = mg.to_model_graph(t, st["graph"][0], st["graph"][1], st["graph"][3])
            gm = model.model.interaction_graph if t == "SchNet" else None
            E, F = energy_forces(model, st, emb, species, ei, sh, gm)
            worst = max(worst, abs(E - stg["energy"]) / abs(stg["energy"]),
                        rel_force(F, stg["forces"]))
        print("%s: golden weights reload, max rel. deviation from the golden E/F: %.1e"
              % (t, worst))
        assert worst < 1e-13

    # ---------------------------------------------------------------- 1
    print("\n== 1. SchNet: HydraGNN's own (non-periodic) interaction graph vs the patched "
          "(periodic, ours)")
    model, emb = models["SchNet"]
    K_INTERNAL = 32  # PyG's default; SCFStack passes max_neighbours (must be an int)
    unp = copy.deepcopy(model)
    rig = HydraRIG(RADIUS, K_INTERNAL)
    unp.model.interaction_graph = rig
    for conv in unp.model.graph_convs:
        conv.module_0 = rig
    results["schnet_periodic"] = []
    for st in structs:
        dst, src, img, S, _ = st["graph"]
        ei, sh = mg.to_model_graph("SchNet", dst, src, S)
        E_p, F_p = energy_forces(model, st, emb, species, ei, sh,
                                 model.model.interaction_graph)
        E_u, F_u = energy_forces(unp, st, emb, species, ei, sh)
        pos = torch.tensor(st["positions"])
        ei_u, _ = rig(pos, torch.zeros(len(pos), dtype=torch.long))
        nmax = int(np.bincount(ei_u[1].numpy(), minlength=len(pos)).max())
        r = dict(structure=st["name"], E_patched=E_p, E_hydragnn=E_u, dE=E_u - E_p,
                 dE_rel=abs(E_u - E_p) / abs(E_p), dF_rel=rel_force(F_u, F_p),
                 maxF=float(np.abs(F_p).max()), edges_patched=int(len(dst)),
                 edges_hydragnn=int(ei_u.shape[1]), max_deg_hydragnn=nmax)
        results["schnet_periodic"].append(r)
        print("%-8s E ours/patched %.12f  HydraGNN %.12f  dE %+.3e (rel %.2e)  "
              "max|dF|/max|F| %.3g  edges %d vs %d (max in-degree %d < K=%d)"
              % (st["name"], E_p, E_u, E_u - E_p, r["dE_rel"], r["dF_rel"],
                 r["edges_patched"], r["edges_hydragnn"], nmax, K_INTERNAL))

    # ---------------------------------------------------------------- 2
    print("\n== 2. neighbour cap K")
    caps = [int(k) for k in args.caps.split(",") if k]
    egnn, emb_e = models["EGNN"]
    results["cap"] = []
    for st in structs:
        if st["cell"] is not None and not have_pbc_pipeline:
            print("%-8s skipped: the real vesin and ase are needed for RadiusGraphPBC"
                  % st["name"])
            continue
        # no cap: HydraGNN's pipeline gives exactly our edge set
        ei0, _, n0 = hydragnn_pipeline_edges(hg_pre, st, 10 ** 6)
        full = edge_set(st["graph"][0], st["graph"][1], st["graph"][2])
        assert edge_set(ei0[1], ei0[0], n0) == full, st["name"]
        deg = np.bincount(st["graph"][0], minlength=len(st["numbers"]))
        for K in caps:
            d, s, n, S, _ = ours_capped(st, K)
            ours = edge_set(d, s, n)
            ei, sh, nh = hydragnn_pipeline_edges(hg_pre, st, K)
            sel = edge_set(ei[1], ei[0], nh)  # HydraGNN's selection, per centre ei[1]
            # E_GCL aggregates at edge_index[0]: in our convention HydraGNN's EGNN
            # sees (dst = ei[0], src = ei[1], image -n): the transpose
            seen = edge_set(ei[0], ei[1], -nh)
            ei_o, sh_o = mg.to_model_graph("EGNN", d, s, S)
            E_o, F_o = energy_forces(egnn, st, emb_e, species, ei_o, sh_o)
            E_h, F_h = energy_forces(egnn, st, emb_e, species, ei, sh)
            # HydraGNN's selection aggregated at the centre (selection effect alone)
            E_s, F_s = energy_forces(egnn, st, emb_e, species, ei[[1, 0]], -sh)
            indeg_h = np.bincount(ei[0], minlength=len(st["numbers"]))
            ties = count_ties(st, ours - sel, sel - ours)
            r = dict(structure=st["name"], K=K, binds=int((deg > K).sum()),
                     edges_ours=len(ours), edges_hydragnn=len(sel),
                     selection_differs=len(ours - sel), selection_differs_ties=ties,
                     egnn_graph_differs=len(ours ^ seen),
                     egnn_hydragnn_indegree=[int(indeg_h.min()), int(indeg_h.max())],
                     E_ours=E_o, E_hydragnn=E_h, dE=E_h - E_o,
                     dE_rel=abs(E_h - E_o) / abs(E_o), dF_rel=rel_force(F_h, F_o),
                     E_selection_only=E_s, dE_selection_only=E_s - E_o,
                     dF_rel_selection_only=rel_force(F_s, F_o))
            results["cap"].append(r)
            print("%-8s K=%d (binds for %d/%d atoms): edges %d; selection differs in %d "
                  "edges per side (%d of them exact distance ties); graph EGNN sees differs "
                  "in %d of %d+%d (HydraGNN in-degree %d..%d)"
                  % (st["name"], K, r["binds"], len(deg), len(ours), r["selection_differs"],
                     ties, r["egnn_graph_differs"], len(ours), len(seen), indeg_h.min(),
                     indeg_h.max()))
            print("          EGNN E ours %.12f  HydraGNN %.12f  dE %+.3e (rel %.2e)  "
                  "max|dF|/max|F| %.3g;  HydraGNN's selection aggregated at the centre: "
                  "dE %+.3e  max|dF|/max|F| %.3g"
                  % (E_o, E_h, E_h - E_o, r["dE_rel"], r["dF_rel"], E_s - E_o,
                     r["dF_rel_selection_only"]))
    # SchNet on the molecule: HydraGNN's internal capped radius graph vs ours
    results["cap_schnet"] = []
    model, emb = models["SchNet"]
    st = structs[0]
    assert st["cell"] is None and len(st["numbers"]) <= 10
    for K in caps:
        d, s, n, S, _ = ours_capped(st, K)
        ei_o, sh_o = mg.to_model_graph("SchNet", d, s, S)
        E_o, F_o = energy_forces(model, st, emb, species, ei_o, sh_o,
                                 model.model.interaction_graph)
        unp = copy.deepcopy(model)
        rigk = HydraRIG(RADIUS, K)
        unp.model.interaction_graph = rigk
        for conv in unp.model.graph_convs:
            conv.module_0 = rigk
        E_h, F_h = energy_forces(unp, st, emb, species, ei_o, sh_o)
        eih, _ = rigk(torch.tensor(st["positions"]), torch.zeros(len(st["numbers"]),
                                                                 dtype=torch.long))
        sel = edge_set(eih[1].numpy(), eih[0].numpy(), np.zeros((eih.shape[1], 3), int))
        ours = edge_set(d, s, n)
        r = dict(structure=st["name"], K=K, selection_differs=len(ours - sel),
                 edges=len(ours), E_ours=E_o, E_hydragnn=E_h, dE=E_h - E_o,
                 dE_rel=abs(E_h - E_o) / abs(E_o), dF_rel=rel_force(F_h, F_o))
        results["cap_schnet"].append(r)
        print("SchNet %-8s K=%d: selection differs in %d of %d edges; E ours %.12f  "
              "HydraGNN %.12f  dE %+.3e (rel %.2e)  max|dF|/max|F| %.3g"
              % (st["name"], K, r["selection_differs"], len(ours), E_o, E_h, E_h - E_o,
                 r["dE_rel"], r["dF_rel"]))

    # ---------------------------------------------------------------- 3
    print("\n== 3. float32 cast of E and F (EnhancedModelWrapper.energy_force_loss)")
    results["float32"] = []
    for t in ("SchNet", "EGNN"):
        for st in golden_structures(docs[t]):
            E = st["energy"]
            F = st["forces"]
            E32 = float(np.float32(E))
            F32 = F.astype(np.float32).astype(np.float64)
            r = dict(model=t, structure=st["name"], E=E, dE=E32 - E,
                     dE_rel=abs(E32 - E) / abs(E),
                     dF_max=float(np.abs(F32 - F).max()),
                     dF_rel=float(np.abs(F32 - F).max() / np.abs(F).max()),
                     dF_rel_componentwise=float(
                         (np.abs(F32 - F) / np.maximum(np.abs(F), 1e-300)).max()))
            results["float32"].append(r)
            print("%-6s %-8s E %.12f: float32 rounding %+.2e (rel %.1e); forces max %.1e "
                  "(%.1e of max|F|, <= %.1e per component)"
                  % (t, st["name"], E, r["dE"], r["dE_rel"], r["dF_max"], r["dF_rel"],
                     r["dF_rel_componentwise"]))
    big = -11000.0
    ulp = abs(float(np.spacing(np.float32(big))))
    print("for a total of %.0f eV: float32 spacing %.3g eV, rounding <= %.3g eV"
          % (big, ulp, ulp / 2))
    results["float32_at_11000eV"] = dict(spacing=ulp, max_rounding=ulp / 2)

    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
