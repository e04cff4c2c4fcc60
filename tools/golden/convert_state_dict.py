#!/usr/bin/env python3
"""HydraGNN state_dict -> "named parameters" JSON for the C++ library.

Input (any of):
  * a HydraGNN checkpoint written by hydragnn.utils.model.save_model
    (torch file holding {"model_state_dict": ..., "optimizer_state_dict": ...}),
  * a torch file holding a bare state_dict, or a whole pickled nn.Module,
  * a golden JSON written by tools/golden/make_golden.py (already named
    parameters; "parameters" and "buffers" are merged).
Output:
  {"format": "hydragnn-named-params-1", "mpnn_type": ..., "source": ...,
   "stripped_prefixes": [...],
   "parameters": {name: {"shape": [...], "data": [flat, row-major]}}}

Names are HydraGNN's state_dict keys unchanged, except that the wrapper
prefixes "module." (DistributedDataParallel) and "model."
(EnhancedModelWrapper of enable_interatomic_potential) are removed, so that
they are the keys of the Stack itself (e.g. graph_convs.0.module_0.edge_mlp.0.weight).
The C++ library maps these names onto its own layout.  Every tensor of the
state_dict is written (buffers such as SchNet's distance_expansion.offset
included); floating tensors as float64 values, integer tensors as integers.

The C++ side (`hydragnn import --config C.json --weights out.json --output ckpt.hgnn`) needs the
species and their input features: HydraGNN feeds node features (data.x, e.g. the atomic number)
into its first layer, our model a species embedding table.  `--species 1,6,8` writes
"species" and "embedding.weight" = one row per species holding its node features (`--node-features
z`, HydraGNN's usual input_node_features [0]: the atomic number).  A golden JSON already carries
both.

Usage:
  python3 convert_state_dict.py CHECKPOINT.pk [-o out.json] [--mpnn-type EGNN] [--species 1,6,8]
torch is needed for torch files only (not for golden JSON input).
"""

import argparse
import json
import os
import sys

FORMAT = "hydragnn-named-params-1"
WRAPPER_PREFIXES = ("module.", "model.")


def _entry_from_tensor(t):
    import torch

    t = t.detach().cpu()
    if t.is_floating_point():
        data = [float(v) for v in t.to(torch.float64).reshape(-1).tolist()]
    else:
        data = [int(v) for v in t.reshape(-1).tolist()]
    return {"shape": list(t.shape), "data": data}


def guess_mpnn_type(names):
    """Best-effort guess from HydraGNN's parameter names."""
    joined = " ".join(names)
    if ".edge_mlp." in joined and ".node_mlp." in joined:
        return "EGNN"
    if ".lin1.weight" in joined and ".nn.0.weight" in joined:
        return "SchNet"
    if ".scalar_message_mlp." in joined and ".pre_nns." in joined and ".update_X." in joined:
        return "PNAEq"
    if ".scalar_message_mlp." in joined and ".update_mlp." in joined:
        return "PAINN"
    if ".module_2.lin_sbf1.weight" in joined and ".module_3.lin_up.weight" in joined:
        return "DimeNet"
    if ".module_0.pre_nns." in joined and ".module_0.rbf_lin." in joined and any(n.endswith("rbf.freq") for n in names):
        return "PNAPlus"
    if ".module_0.pre_nns." in joined and ".module_0.post_nns." in joined and ".module_0.lin." in joined:
        return "PNA"
    if ".module_0.lin_f.weight" in joined and ".module_0.lin_s.weight" in joined:
        return "CGCNN"
    if ".module_0.lins_l.0.weight" in joined and ".module_0.lins_r.0.weight" in joined:
        return "MFC"
    if ".module_0.eps" in joined and ".module_0.nn.0.weight" in joined:
        return "GIN"
    if ".module_0.att" in joined and ".module_0.lin_l.weight" in joined:
        return "GAT"
    if ".module_0.lin_l.weight" in joined and ".module_0.lin_r.weight" in joined:
        return "SAGE"
    return None


def _strip(names):
    """Removes wrapper prefixes shared by every key; returns (mapping, stripped)."""
    stripped = []
    names = list(names)
    mapping = {n: n for n in names}
    changed = True
    while changed and names:
        changed = False
        for pre in WRAPPER_PREFIXES:
            if all(mapping[n].startswith(pre) for n in names):
                for n in names:
                    mapping[n] = mapping[n][len(pre):]
                stripped.append(pre)
                changed = True
    return mapping, stripped


def _load_torch(path):
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - whole pickled modules need weights_only=False
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if key in obj and obj[key] is not None:
                inner = obj[key]
                return inner.state_dict() if isinstance(inner, torch.nn.Module) else inner
        if all(hasattr(v, "shape") for v in obj.values()):
            return obj
    raise ValueError("%s: no state_dict found (keys: %s)" % (
        path, list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__))


def drop_conv_head_aliases(params):
    """HydraGNN's conv node heads (Base._init_node_conv) register each convolution and BatchNorm twice:
    as convs_node_{hidden,output}.<branch>.<i> / batch_norms_node_*.<branch>.<i> and again inside
    heads_NN.<head>.<branch>.<k> (k = 2i, 2i + 1 for the hidden ones, then the output's pair). Drops
    the heads_NN copies whose values equal the module they alias (hydragnn keeps the first names)."""
    if not any(k.startswith("convs_node_output.") for k in params):
        return params
    canon = {}
    for k, v in params.items():
        for what in ("convs_node_", "batch_norms_node_"):
            if k.startswith(what):
                kind, branch, idx, rest = k[len(what):].split(".", 3)
                canon.setdefault((what, kind, branch, rest), []).append((int(idx), v))
    n_hidden = 1 + max([i for (w, kind, _, _), lst in canon.items() if kind == "hidden" for i, _ in lst], default=-1)
    out = {}
    for k, v in params.items():
        parts = k.split(".", 4)
        if k.startswith("heads_NN.") and len(parts) == 5 and parts[3].isdigit():
            _, _, branch, kk, rest = parts
            kk = int(kk)
            what = "convs_node_" if kk % 2 == 0 else "batch_norms_node_"
            kind = "hidden" if kk < 2 * n_hidden else "output"
            cands = canon.get((what, kind, branch, rest), [])
            if kind == "hidden":
                cands = [c for c in cands if c[0] == kk // 2]
            if any(c[1] == v for c in cands):
                continue
        out[k] = v
    return out


def convert(path, mpnn_type=None):
    """Returns the named-parameters document for `path` (see module docstring)."""
    if path.endswith(".json"):
        with open(path) as fh:
            doc = json.load(fh)
        if doc.get("format") == FORMAT:
            return doc
        params = dict(doc.get("parameters", {}))
        params.update(doc.get("buffers", {}))
        out = {"format": FORMAT, "mpnn_type": mpnn_type or doc.get("model")
               or guess_mpnn_type(params), "source": os.path.basename(path),
               "stripped_prefixes": [], "parameters": params}
        if "species" in doc:
            out["species"] = doc["species"]
        return out
    sd = _load_torch(path)
    mapping, stripped = _strip(sd.keys())
    params = drop_conv_head_aliases({mapping[k]: _entry_from_tensor(v) for k, v in sd.items()})
    return {"format": FORMAT, "mpnn_type": mpnn_type or guess_mpnn_type(params),
            "source": os.path.basename(path), "stripped_prefixes": stripped,
            "parameters": params}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="HydraGNN checkpoint (.pk/.pt) or golden JSON")
    ap.add_argument("-o", "--output", help="output JSON (default: stdout)")
    ap.add_argument("--mpnn-type", help="mpnn_type to record (default: guessed)")
    ap.add_argument("--species", help="atomic numbers of the species, comma separated "
                    "(writes 'species' and 'embedding.weight')")
    ap.add_argument("--node-features", default="z", choices=["z"],
                    help="node features per species in embedding.weight (z: the atomic number)")
    args = ap.parse_args(argv)
    doc = convert(args.input, args.mpnn_type)
    if args.species:
        zs = [int(z) for z in args.species.split(",") if z.strip()]
        doc["species"] = zs
        doc["parameters"]["embedding.weight"] = {"shape": [len(zs), 1], "data": [float(z) for z in zs]}
    text = json.dumps(doc, separators=(",", ":")) + "\n"
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text)
        print("%s: %d tensors (%s) -> %s" % (args.input, len(doc["parameters"]),
                                              doc["mpnn_type"], args.output),
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
