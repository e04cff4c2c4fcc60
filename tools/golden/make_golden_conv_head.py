#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Golden data for HydraGNN's node heads of type "conv" (Base._init_node_conv, commit d251f816).

For every mpnn_type whose conv node head HydraGNN's own CI trains (tests/test_graphs.py,
pytest_train_model_conv_head): the model of make_golden.py (hidden 8, 3 layers, float64) with
output_heads.node = {"type": "conv", "dim_headlayers": [5, 4]}: the energy per atom is
act(BN(conv_out(act(BN(conv_1(act(BN(conv_0(h))))))))) on the trunk's output, E = its sum over the
atoms. Per model: parameters and buffers (the head's modules under their unique names
convs_node_*/batch_norms_node_*; HydraGNN's state_dict lists them once more under heads_NN.0, left
out), per structure the energy, forces and per-atom energies (eval mode), and one training-mode
forward of the three structures as a batch (BatchNorm with batch statistics; running statistics
after it). No edge features (HydraGNN's conv heads fail with them: see architecture()). Writes tests/golden/conv_heads.json, read by tests/test_golden.cpp ("conv node heads").

    python3 tools/golden/make_golden_conv_head.py [--hydragnn-src /opt/hydragnn_src]

Needs what make_golden.py needs (torch, torch_geometric, HydraGNN's sources; see README.md).
"""
import argparse
import importlib.util  # noqa: F401  (make_golden uses importlib.util)
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_golden as mg  # noqa: E402

HEAD_DIMS = [5, 4]
# HydraGNN's CI list for conv heads (tests/test_graphs.py)
MODELS = ("SchNet", "EGNN", "PAINN", "PNAEq", "GIN", "SAGE", "PNA", "PNAPlus", "MFC", "GAT", "DimeNet")


def architecture(mpnn_type, base=mg.architecture):
    arch = base(mpnn_type)
    arch["output_heads"] = {"node": [{"type": "branch-0", "architecture": {
        "type": "conv", "num_headlayers": len(HEAD_DIMS), "dim_headlayers": list(HEAD_DIMS)}}]}
    arch.pop("node_head_dims", None)
    # no edge features: HydraGNN builds the head's convolutions without edge_dim and its PNAConv
    # then fails on the edge_attr it is handed (no edge_encoder)
    for k in ("edge_features", "edge_length_scale"):
        arch.pop(k, None)
    arch["edge_dim"] = None
    return arch


def head_batchnorms(stack):
    """(state_dict prefix, torch BatchNorm1d) of every BatchNorm: feature layers, then the conv head's."""
    out = mg.batchnorm_modules(stack)
    for what in ("hidden", "output"):
        for branch, mods in getattr(stack, "batch_norms_node_" + what).items():
            for i, bn in enumerate(mods):
                out.append(("batch_norms_node_%s.%s.%d.module" % (what, branch, i), bn.module))
    return out


def adjust(model, mpnn_type, seed, patches):
    import torch

    mg.adjust_weights(model, mpnn_type if mpnn_type != "GAT" else "GAT without lin_edge", seed, patches)
    stack = model.model
    gen = torch.Generator().manual_seed(seed + 50)
    with torch.no_grad():
        for name, bn in head_batchnorms(stack)[len(mg.batchnorm_modules(stack)):]:
            bn.weight.copy_(torch.empty_like(bn.weight).uniform_(0.5, 1.5, generator=gen))
            bn.bias.copy_(torch.empty_like(bn.bias).uniform_(-0.2, 0.2, generator=gen))
            bn.running_mean.copy_(torch.empty_like(bn.running_mean).uniform_(-0.5, 0.5, generator=gen))
            bn.running_var.copy_(torch.empty_like(bn.running_var).uniform_(0.5, 2.0, generator=gen))
    patches.append("conv head BatchNorms: weight U(0.5, 1.5), bias U(-0.2, 0.2), running_mean U(-0.5, 0.5), "
                   "running_var U(0.5, 2) (init 1, 0, 0, 1 would hide them from a test)")


def evaluate(model, st, emb, species, mpnn_type):
    res, pred, data = mg.evaluate(model, st, emb, species, mpnn_type, record=False)
    return res


def train_record(model, structures, emb, species, mpnn_type):
    import torch

    # on the model itself (a deepcopy fails on the SchNet stand-in graph), restored afterwards
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    m = model
    m.train()
    dropouts = []
    if mpnn_type == "GAT":
        for mod in m.model.modules():
            if type(mod).__name__ == "GATv2Conv":
                dropouts.append((mod, mod.dropout))
                mod.dropout = 0.0
    if mpnn_type == "SchNet":
        import make_golden_heads as mgh
        mgh.set_batch_graph(m, structures)
    data = mg.batch_data(structures, emb, species, mpnn_type)
    if mpnn_type == "DimeNet":  # the image shifts of the batch's edge list, for the triplets
        import numpy as np
        mg._TRIPLET_IMAGES["img"] = np.concatenate([st["graph"][2] for st in structures])
    pred = m(data)
    energy = sys.modules["torch_scatter"].scatter_add(pred[0], data.batch, dim=0).squeeze(-1)
    grad = torch.autograd.grad(energy.sum(), data.pos, allow_unused=mpnn_type in mg.POSITION_FREE)[0]
    if grad is None:
        grad = torch.zeros_like(data.pos)
    running = {}
    for name, bn in head_batchnorms(m.model):
        running[name + ".running_mean"] = mg.tensor_entry(bn.running_mean)
        running[name + ".running_var"] = mg.tensor_entry(bn.running_var)
        running[name + ".num_batches_tracked"] = mg.tensor_entry(bn.num_batches_tracked)
    model.load_state_dict(saved)
    model.eval()
    for mod, p in dropouts:
        mod.dropout = p
    return {"energies": [float(e) for e in energy.detach()], "forces": mg._f((-grad).detach().numpy()),
            "buffers_after": running}


def unique_state(model):
    """The stack's parameters and buffers without the heads_NN.* aliases of the conv head's modules."""
    params, buffers = mg.stack_parameters(model)
    seen = {}
    for k, v in list(params.items()) + list(buffers.items()):
        if not k.startswith("heads_NN."):
            seen[id(v)] = k
    p = {k: v for k, v in params.items() if not (k.startswith("heads_NN.") and id(v) in seen)}
    b = {k: v for k, v in buffers.items() if not (k.startswith("heads_NN.") and id(v) in seen)}
    leftover = [k for k in list(p) + list(b) if k.startswith("heads_NN.")]
    assert not leftover, leftover
    return p, b


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hydragnn-src", default=os.environ.get("HYDRAGNN_SRC", "/opt/hydragnn_src"))
    ap.add_argument("--out", default=os.path.join(mg.REPO, "tests", "golden", "conv_heads.json"))
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    mg.import_hydragnn(args.hydragnn_src)
    mg.EDGE_LENGTH = set()  # see architecture()
    mg.POSITION_FREE = mg.POSITION_FREE | {"PNA", "GAT"}  # without the length feature
    hg_create = sys.modules["hydragnn.models.create"]
    structures = mg.make_structures(args.seed)
    species = sorted({z for st in structures for z in st["numbers"]})
    for st in structures:
        st["graph"] = mg.neighbour_list(np.asarray(st["positions"]), st["cell"], st["pbc"], mg.RADIUS)
    degs = np.concatenate([np.bincount(st["graph"][0], minlength=len(st["numbers"])) for st in structures])
    mg.PNA_DEG[:] = [float(c) for c in np.bincount(degs)]
    emb = torch.randn(len(species), mg.HIDDEN, generator=torch.Generator().manual_seed(args.seed + 2),
                      dtype=torch.float64)
    rng = np.random.default_rng(args.seed + 31)

    doc = {"generator": "tools/golden/make_golden_conv_head.py", "hydragnn_commit": mg.HYDRAGNN_COMMIT,
           "torch_version": torch.__version__, "species": species,
           "embedding": mg.tensor_entry(emb),
           "structures": [{"name": st["name"], "numbers": list(st["numbers"]), "positions": mg._f(st["positions"]),
                           "cell": None if st["cell"] is None else mg._f(st["cell"]), "pbc": list(st["pbc"])}
                          for st in structures],
           "conventions": {
               "energy": "E = sum_i y_i, y = silu(BN_out(conv_out(x_2))), x_{k+1} = silu(BN_k(conv_k(x_k))), "
                         "x_0 = the trunk's output (HydraGNN Base.forward, node head type conv)",
               "forces": "-dE/dpos (autograd, float64)",
               "edges": "as make_golden.py"},
           "models": {}}
    base = mg.architecture
    for idx, mpnn_type in enumerate(args.models.split(",")):
        print("\n== %s" % mpnn_type)
        torch.manual_seed(args.seed + 100 + idx)
        patches = []
        mg.architecture = architecture
        try:
            model, arch = mg.build_model(hg_create, mpnn_type, patches)
        finally:
            mg.architecture = base
        adjust(model, mpnn_type, args.seed + 200 + idx, patches)
        stack = model.model
        assert list(stack.convs_node_hidden.keys()) == ["branch-0"]
        res = []
        for st in structures:
            r = evaluate(model, st, emb, species, mpnn_type)
            res.append(r)
            print("%-8s E = %.17g  max|F| = %.4g" % (st["name"], r["energy"], np.abs(r["forces"]).max()))
        # self-checks: finite differences of the energy (2 components per structure)
        for st, r in zip(structures, res):
            if mpnn_type in mg.POSITION_FREE:
                mg.check(np.abs(r["forces"]).max() == 0, "%s %s: forces zero" % (mpnn_type, st["name"]))
                continue
            pos0 = np.asarray(st["positions"])
            worst = 0.0
            for _ in range(2):
                a, k = int(rng.integers(len(pos0))), int(rng.integers(3))
                h = mg.FD_STEP.get(mpnn_type, 1e-5)
                p1, p2 = pos0.copy(), pos0.copy()
                p1[a, k] += h
                p2[a, k] -= h
                fd = -(mg.energy_only(model, st, emb, species, mpnn_type, p1)
                       - mg.energy_only(model, st, emb, species, mpnn_type, p2)) / (2 * h)
                worst = max(worst, abs(fd - r["forces"][a, k]) / max(1.0, abs(fd)))
            mg.check(worst < 1e-7, "%s %s: FD vs autograd forces, max rel err %.2e" % (mpnn_type, st["name"], worst))
        if mpnn_type == "GAT":
            patches.append("train_mode: GATv2Conv attention dropout set to 0 for the recorded step")
        tr = train_record(model, structures, emb, species, mpnn_type)
        params, buffers = unique_state(model)
        # HydraGNN's checkpoint through convert_state_dict.py: the heads_NN aliases dropped, the rest equal
        with tempfile.TemporaryDirectory() as tmp:
            ck = os.path.join(tmp, "model.pk")
            torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": None}, ck)
            import convert_state_dict
            named = convert_state_dict.convert(ck, mpnn_type)["parameters"]
            want = {k: mg.tensor_entry(v) for k, v in list(params.items()) + list(buffers.items())}
            mg.check(named == want, "%s: convert_state_dict(HydraGNN checkpoint) = the golden parameters and buffers "
                     "(%d entries, heads_NN aliases dropped)" % (mpnn_type, len(named)))
        arch_out = {k: v for k, v in arch.items() if k != "output_heads"}
        arch_out["node_head"] = {"type": "conv", "dim_headlayers": list(HEAD_DIMS), "output_dim": 1}
        doc["models"][mpnn_type] = {
            "architecture": arch_out,
            "parameters": {"embedding.weight": mg.tensor_entry(emb)} | {k: mg.tensor_entry(v) for k, v in params.items()},
            "buffers": {k: mg.tensor_entry(v) for k, v in buffers.items()},
            "patches": patches,
            "energies": [r["energy"] for r in res],
            "forces": [mg._f(r["forces"]) for r in res],
            "node_energies": [mg._f(r["node_energy"]) for r in res],
            "train_mode": tr,
        }
    doc["patches"] = mg.ENV_PATCHES
    return mg.write_golden(args.out, doc)


if __name__ == "__main__":
    sys.exit(main())
