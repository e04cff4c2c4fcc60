#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Golden data for HydraGNN's pooled energy head with two head branches (multi-dataset heads).

HydraGNN (commit d251f816) SchNet with enable_interatomic_potential and one graph head (the energy:
sum pooling -> graph_shared[branch] -> heads_NN.0[branch]) listed per branch in output_heads.graph,
two branches of different widths. The three structures of make_golden.py as one PyG batch with
data.dataset_name = [0, 1, 1] (structure g goes through branch dataset_name[g]); energies per
structure and forces -dE/dpos in float64. Writes tests/golden/schnet_graph_branches.json, read by
tests/test_golden.cpp ("pooled energy head with two branches").

    python3 tools/golden/make_golden_heads.py [--hydragnn-src /opt/hydragnn_src]

Needs what make_golden.py needs (torch, torch_geometric, HydraGNN's sources; see README.md).
"""
import argparse
import copy
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_golden as mg  # noqa: E402

DATASET = [0, 1, 1]  # the branch of each of the three structures
BRANCHES = [
    {"type": "branch-0", "architecture": {"num_sharedlayers": 2, "dim_sharedlayers": 6,
                                          "num_headlayers": 2, "dim_headlayers": [5, 4]}},
    {"type": "branch-1", "architecture": {"num_sharedlayers": 1, "dim_sharedlayers": 4,
                                          "num_headlayers": 1, "dim_headlayers": [3]}},
]


def architecture(mpnn_type, base=mg.architecture):
    arch = base(mpnn_type)
    arch.update(output_type=["graph"], output_dim=[1], graph_pooling="add",
                output_heads={"graph": copy.deepcopy(BRANCHES)})
    arch.pop("node_head_dims", None)
    return arch


def set_batch_graph(model, structures):
    """SchNet's stand-in interaction graph: the batch's edge list (node offsets) and shifts."""
    import numpy as np
    import torch

    eis, shs, off = [], [], 0
    for st in structures:
        dst, src, img, S, d = st["graph"]
        ei, sh = mg.to_model_graph("SchNet", dst, src, S)
        eis.append(np.asarray(ei) + off)
        shs.append(np.asarray(sh))
        off += len(st["numbers"])
    model.model.interaction_graph.set_graph(torch.tensor(np.concatenate(eis, axis=1), dtype=torch.long),
                                            torch.tensor(np.concatenate(shs), dtype=torch.float64))


def energies_forces(model, structures, emb, species, dataset):
    import torch

    set_batch_graph(model, structures)
    data = mg.batch_data(structures, emb, species, "SchNet")
    data.dataset_name = torch.tensor(dataset, dtype=torch.long).view(-1, 1)
    energy = model(data)[0].squeeze(-1)  # the graph head's output is the energy (create.py)
    grad = torch.autograd.grad(energy.sum(), data.pos)[0]
    return energy.detach().numpy(), (-grad).detach().numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hydragnn-src", default=os.environ.get("HYDRAGNN_SRC", "/opt/hydragnn_src"))
    ap.add_argument("--out", default=os.path.join(mg.REPO, "tests", "golden", "schnet_graph_branches.json"))
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.manual_seed(args.seed + 21)
    mg.import_hydragnn(args.hydragnn_src)
    hg_create = sys.modules["hydragnn.models.create"]
    structures = mg.make_structures(args.seed)
    species = sorted({z for st in structures for z in st["numbers"]})
    for st in structures:
        st["graph"] = mg.neighbour_list(np.asarray(st["positions"]), st["cell"], st["pbc"], mg.RADIUS)
    emb = torch.randn(len(species), mg.HIDDEN, generator=torch.Generator().manual_seed(args.seed + 22),
                      dtype=torch.float64)

    base_architecture = mg.architecture
    mg.architecture = architecture  # build_model reads the architecture through the module
    patches = []
    try:
        model, arch = mg.build_model(hg_create, "SchNet", patches)
    finally:
        mg.architecture = base_architecture
    stack = model.model
    assert stack.num_branches == 2 and set(stack.graph_shared.keys()) == {"branch-0", "branch-1"}
    # non-zero biases everywhere (PyTorch initialises them uniform already) and a larger head output
    with torch.no_grad():
        for head in stack.heads_NN[0].values():
            head[-1].weight.mul_(3.0)

    energy, forces = energies_forces(model, structures, emb, species, DATASET)
    # self-checks: each structure alone gives the same energy and forces (no mixing between
    # branches); the other branch gives another energy
    off = 0
    for g, st in enumerate(structures):
        e1, f1 = energies_forces(model, [st], emb, species, [DATASET[g]])
        n = len(st["numbers"])
        mg.check(abs(e1[0] - energy[g]) <= 1e-12 * abs(energy[g]) and np.abs(f1 - forces[off:off + n]).max() < 1e-12,
                 "%s alone = in the batch (E %.17g)" % (st["name"], energy[g]))
        e2, _ = energies_forces(model, [st], emb, species, [1 - DATASET[g]])
        mg.check(abs(e2[0] - energy[g]) > 1e-6, "%s through the other branch: E %.6g vs %.6g"
                 % (st["name"], e2[0], energy[g]))
        off += n
    params, buffers = mg.stack_parameters(model)
    assert not buffers or all("offset" in k for k in buffers), buffers
    doc = {
        "generator": "tools/golden/make_golden_heads.py",
        "hydragnn_commit": mg.HYDRAGNN_COMMIT,
        "torch_version": torch.__version__,
        "model": "SchNet",
        "architecture": {k: v for k, v in arch.items()},
        "species": species,
        "dataset_name": DATASET,
        "parameters": {"embedding.weight": mg.tensor_entry(emb)} | {k: mg.tensor_entry(v) for k, v in params.items()},
        "patches": mg.ENV_PATCHES + patches + [
            "node features x = embedding.weight[species index] fed as data.x",
            "the last Linear of each branch's energy head scaled by 3 (larger outputs)"],
        "conventions": {
            "energy": "E_g = heads_NN.0[branch](graph_shared[branch](sum_i h_i)), branch = dataset_name[g] "
                      "(HydraGNN Base.forward, graph head; EnhancedModelWrapper takes it as the energy)",
            "forces": "-dE/dpos of the batch's energies (autograd, float64)",
            "edges": "as make_golden.py",
        },
        "energies": [float(e) for e in energy],
        "forces": mg._f(forces),
        "structures": [{"name": st["name"], "numbers": list(st["numbers"]), "positions": mg._f(st["positions"]),
                        "cell": None if st["cell"] is None else mg._f(st["cell"]), "pbc": list(st["pbc"])}
                       for st in structures],
    }
    return mg.write_golden(args.out, doc)


if __name__ == "__main__":
    sys.exit(main())
