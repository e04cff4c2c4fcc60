#!/usr/bin/env python3
"""Golden reference data for the C++ SchNet and EGNN models, computed by HydraGNN.

Builds HydraGNN's SchNet (SCFStack, equivariance off) and EGNN (EGCLStack,
equivariance on: coordinate updates in every layer but the last) through
HydraGNN's own factory `hydragnn.models.create.create_model` with
`enable_interatomic_potential=True` (the EnhancedModelWrapper of create.py),
in float64 with fixed seeded weights, and evaluates them on three generated
structures (molecule, periodic crystal, surface slab):

  energy   = sum over the atoms of the node-head output (what
             EnhancedModelWrapper.energy_force_loss does with a node head:
             torch_scatter.scatter_add(pred[0], data.batch); HydraGNN then
             casts to float32 with .float(), which we do not do here)
  forces   = -dE/dpos by autograd
  per-layer invariant node features (after the stack activation) and, for
  EGNN, the coordinates after each layer.

Output: tests/golden/schnet.json and tests/golden/egnn.json (see
tools/golden/README.md for the schema, the edge-convention mapping and every
patch).  Neither HydraGNN, torch nor this script is needed to build or test
the C++ library; the JSON files are committed.

Usage:
  python3 tools/golden/make_golden.py --hydragnn-src /path/holding/hydragnn
  (default: $HYDRAGNN_SRC, else /opt/hydragnn_src)
"""

import argparse
import copy
import importlib
import importlib.abc
import importlib.machinery
import json
import math
import os
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
HYDRAGNN_COMMIT = "d251f816"

# Patches / stubs applied at run time (import environment); model patches are
# recorded per model in the output JSON under "patches".
ENV_PATCHES = []

# ---------------------------------------------------------------------------
# Import environment: HydraGNN imports several optional packages at module
# level that the model code used here does not need.  Missing ones get small
# stand-ins (same idea as /work/shared/tools/hydragnn_bench.py).
# ---------------------------------------------------------------------------


class _PermMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _PermMeta(name, (_Perm,), {})

    def __or__(cls, other):  # used in annotations such as `o3.Irreps | str`
        return cls

    __ror__ = __or__


class _Perm(metaclass=_PermMeta):
    """Any attribute access / call succeeds and does nothing."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        if len(a) == 1 and not k and callable(a[0]):
            return a[0]
        return _Perm()

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _Perm()

    def __iter__(self):
        return iter(())

    def __bool__(self):
        return False


class _PermModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        cls = _PermMeta(name, (_Perm,), {})
        setattr(self, name, cls)
        return cls


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self):
        self.roots = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _PermModule(spec.name)

    def exec_module(self, module):
        return None


_FINDER = _StubFinder()


def _purge(root):
    for name in list(sys.modules):
        if name == root or name.startswith(root + "."):
            del sys.modules[name]


def _stub_package(root, why):
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _purge(root)
    _FINDER.roots.add(root)
    ENV_PATCHES.append("stub package '%s' (not used by SchNet/EGNN): %s" % (root, why))


def _fake_mpi4py():
    class Comm:
        def Get_rank(self):
            return 0

        def Get_size(self):
            return 1

        rank = property(lambda self: 0)
        size = property(lambda self: 1)

        def Barrier(self):
            return None

        barrier = Barrier

        def allreduce(self, x, op=None):
            return x

        def bcast(self, x, root=0):
            return x

        def allgather(self, x):
            return [x]

        def gather(self, x, root=0):
            return [x]

        def Split(self, *a, **k):
            return self

    mpi = types.ModuleType("mpi4py.MPI")
    mpi.Comm = mpi.Intracomm = Comm
    mpi.COMM_WORLD = mpi.COMM_SELF = Comm()
    for op in ("SUM", "MIN", "MAX", "PROD", "LAND", "LOR"):
        setattr(mpi, op, op)
    for dt in ("INT", "LONG", "FLOAT", "DOUBLE", "BYTE", "CHAR", "BOOL"):
        setattr(mpi, dt, dt)
    mpi.Is_initialized = lambda: True
    mpi.Is_finalized = lambda: False
    mpi.Wtime = lambda: 0.0
    pkg = types.ModuleType("mpi4py")
    pkg.__path__ = []
    pkg.rc = types.SimpleNamespace(initialize=True, threads=True,
                                   thread_level="multiple", finalize=None)
    pkg.MPI = mpi
    sys.modules["mpi4py"] = pkg
    sys.modules["mpi4py.MPI"] = mpi
    ENV_PATCHES.append("mpi4py -> single-rank in-process stand-in (mpi4py missing)")


def _torch_scatter_shim():
    """torch_scatter's sum/mean API over torch.Tensor.scatter_reduce (exact sums)."""
    import torch

    red = {"sum": "sum", "add": "sum", "mean": "mean", "max": "amax", "min": "amin",
           "mul": "prod"}

    def scatter(src, index, dim=-1, out=None, dim_size=None, reduce="sum"):
        dim = dim + src.dim() if dim < 0 else dim
        if dim_size is None:
            dim_size = out.size(dim) if out is not None else (
                int(index.max()) + 1 if index.numel() else 0)
        if index.dim() == 1:
            shape = [1] * src.dim()
            shape[dim] = -1
            index = index.view(shape)
        index = index.expand_as(src)
        size = list(src.shape)
        size[dim] = dim_size
        base = out if out is not None else src.new_zeros(size)
        return base.scatter_reduce(dim, index, src, reduce=red[reduce],
                                   include_self=out is not None)

    mod = types.ModuleType("torch_scatter")
    mod.scatter = scatter
    mod.scatter_add = mod.scatter_sum = (
        lambda src, index, dim=-1, out=None, dim_size=None:
        scatter(src, index, dim, out, dim_size, "sum"))
    mod.scatter_mean = (
        lambda src, index, dim=-1, out=None, dim_size=None:
        scatter(src, index, dim, out, dim_size, "mean"))

    def _with_arg(kind):
        def f(src, index, dim=-1, out=None, dim_size=None):
            v = scatter(src, index, dim, out, dim_size, kind)
            return v, torch.zeros_like(v, dtype=torch.long)
        return f

    mod.scatter_max = _with_arg("max")
    mod.scatter_min = _with_arg("min")
    sys.modules["torch_scatter"] = mod
    ENV_PATCHES.append("torch_scatter -> shim over Tensor.scatter_reduce (torch_scatter "
                       "missing; only scatter_add is on the path used here)")


OPTIONAL_ROOTS = ("e3nn", "opt_einsum_fx", "opt_einsum", "ase", "vesin", "rdkit",
                  "mendeleev", "adios2", "pyddstore", "gptl4py", "deepspeed", "h5py",
                  "lmdb", "matplotlib", "sklearn", "scipy", "tensorboard", "psutil")


def import_hydragnn(src):
    """Imports hydragnn.models.create from `src` (a folder holding `hydragnn/`)."""
    os.environ.setdefault("HYDRAGNN_USE_VARIABLE_GRAPH_SIZE", "1")
    if importlib.util.find_spec("mpi4py") is None:
        _fake_mpi4py()
    import torch  # noqa: F401
    import torch_geometric  # noqa: F401

    try:
        importlib.import_module("torch_scatter")
    except Exception:  # noqa: BLE001
        _purge("torch_scatter")
        _torch_scatter_shim()
    try:
        importlib.import_module("torch.utils.tensorboard")
    except Exception:  # noqa: BLE001
        _purge("torch.utils.tensorboard")
        tb = types.ModuleType("torch.utils.tensorboard")
        tb.SummaryWriter = type("SummaryWriter", (_Perm,), {})
        sys.modules["torch.utils.tensorboard"] = tb
        ENV_PATCHES.append("torch.utils.tensorboard -> stub (tensorboard missing)")

    sys.path.insert(0, os.path.abspath(src))
    tried = set()
    while True:
        try:
            from torch.utils.data.datapipes.datapipe import IterDataPipe

            for name in ("pbc_distance", "pbc_local_cartesian"):
                IterDataPipe.functions.pop(name, None)
        except Exception:  # noqa: BLE001
            pass
        try:
            import hydragnn.models.create  # noqa: F401

            return sys.modules["hydragnn"]
        except ImportError as exc:
            root = (getattr(exc, "name", None) or "").split(".")[0]
            if root not in OPTIONAL_ROOTS or root in tried:
                raise
            tried.add(root)
            _purge("hydragnn")
            _stub_package(root, "ImportError: %s" % exc)


# ---------------------------------------------------------------------------
# Structures and the neighbour list (our convention)
# ---------------------------------------------------------------------------
RADIUS = 3.0
CUTOFF_MARGIN = 0.02  # no pair distance within this of the cutoff


def _random_rotation(rng):
    import numpy as np

    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def neighbour_list(pos, cell, pbc, radius):
    """All (dst i, src j, image n) with 0 < |pos[i] - pos[j] + n @ cell| < radius.

    Our convention: r_e = pos[dst] - pos[src] + S_e, S_e = n_e @ cell; messages
    are aggregated at dst.  Edges sorted by (dst, src, n).  Periodic images are
    searched only along periodic directions (n_k = 0 where pbc[k] is False).
    Returns dst, src, n (int, E x 3), S (float, E x 3), d (E).
    """
    import itertools

    import numpy as np

    nat = len(pos)
    ranges = []
    for k in range(3):
        if cell is not None and pbc[k]:
            # distance between lattice planes normal to b_k is 1/|b_k|
            b = np.linalg.inv(np.asarray(cell)).T[k]
            m = int(math.ceil(radius * np.linalg.norm(b))) + 1
            ranges.append(range(-m, m + 1))
        else:
            ranges.append(range(0, 1))
    rows = []
    for n in itertools.product(*ranges):
        S = np.zeros(3) if cell is None else np.asarray(n, float) @ np.asarray(cell)
        for i in range(nat):
            for j in range(nat):
                v = pos[i] - pos[j] + S
                d = float(np.linalg.norm(v))
                if 0.0 < d < radius:
                    rows.append((i, j, tuple(int(t) for t in n), S, d))
    rows.sort(key=lambda t: (t[0], t[1], t[2]))
    dst = np.array([t[0] for t in rows], dtype=np.int64)
    src = np.array([t[1] for t in rows], dtype=np.int64)
    img = np.array([t[2] for t in rows], dtype=np.int64).reshape(-1, 3)
    S = np.array([t[3] for t in rows], dtype=np.float64).reshape(-1, 3)
    d = np.array([t[4] for t in rows], dtype=np.float64)
    return dst, src, img, S, d


def _all_pair_distances(pos, cell, pbc, rmax):
    """Every pair/image distance < rmax (self images included)."""
    _, _, _, _, d = neighbour_list(pos, cell, pbc, rmax)
    return d


def _acceptable(pos, cell, pbc):
    d = _all_pair_distances(pos, cell, pbc, RADIUS + 1.0)
    if d.size == 0 or d.min() <= 0.8:
        return False
    return not ((d > RADIUS - CUTOFF_MARGIN) & (d < RADIUS + CUTOFF_MARGIN)).any()


def make_structures(seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []

    # (a) molecule: ethanol-like C2H6O (9 atoms), rattled and rotated, no cell
    base = np.array([
        [0.00, 0.00, 0.00],    # C
        [1.52, 0.00, 0.00],    # C
        [2.00, 1.35, 0.00],    # O
        [-0.39, 1.03, 0.00],   # H
        [-0.39, -0.51, 0.89],  # H
        [-0.39, -0.51, -0.89],  # H
        [1.89, -0.51, 0.89],   # H
        [1.89, -0.51, -0.89],  # H
        [2.97, 1.30, 0.00],    # H
    ])
    numbers = [6, 6, 8, 1, 1, 1, 1, 1, 1]
    while True:
        pos = (base + rng.uniform(-0.08, 0.08, base.shape)) @ _random_rotation(rng).T
        pos = pos - pos.mean(axis=0) + np.array([0.3, -0.2, 0.1])
        if _acceptable(pos, None, [False] * 3):
            break
    out.append(dict(name="molecule", numbers=numbers, positions=pos, cell=None,
                    pbc=[False, False, False]))

    # (b) crystal: 8-atom diamond-structure ("silicon-like") cell, compressed to
    # a = 2.95 A and sheared a little so that the 3 A cutoff reaches periodic
    # images of other atoms and of each atom itself; positions rattled.
    a = 2.95
    frac = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                     [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
    while True:
        strain = rng.uniform(-0.04, 0.04, (3, 3))
        cell = a * (np.eye(3) + 0.5 * (strain + strain.T))
        pos = frac @ cell + rng.uniform(-0.15, 0.15, frac.shape)
        if _acceptable(pos, cell, [True] * 3):
            break
    out.append(dict(name="crystal", numbers=[14] * 8, positions=pos, cell=cell,
                    pbc=[True, True, True]))

    # (c) slab: Cu fcc(100), 2x1 surface cell (5.11 x 2.55 A: along y the
    # cutoff reaches each atom's own image), 5 layers of 2 Cu + 2 O in hollow
    # sites on top; vacuum along z, pbc [T, T, F].
    acu = 3.61
    s = acu / math.sqrt(2.0)
    dz = acu / 2.0
    cell = np.array([[2 * s, 0, 0], [0, s, 0], [0, 0, 22.0]])
    base, numbers = [], []
    for layer in range(5):
        off = 0.5 * s if layer % 2 else 0.0
        for ix in range(2):
            base.append([ix * s + off, off, 2.0 + layer * dz])
            numbers.append(29)
    top = 2.0 + 4 * dz
    base.append([0.5 * s, 0.5 * s, top + 1.1])
    base.append([1.5 * s, 0.5 * s, top + 1.1])
    numbers += [8, 8]
    base = np.array(base)
    while True:
        pos = base + rng.uniform(-0.07, 0.07, base.shape)
        if _acceptable(pos, cell, [True, True, False]):
            break
    out.append(dict(name="slab", numbers=numbers, positions=pos, cell=cell,
                    pbc=[True, True, False]))
    return out


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
HIDDEN = 8
LAYERS = 3
NODE_HEAD = [8, 8]


def architecture(mpnn_type):
    arch = {
        "mpnn_type": mpnn_type,
        "input_dim": HIDDEN,
        "hidden_dim": HIDDEN,
        "num_conv_layers": LAYERS,
        "radius": RADIUS,
        "activation_function": "silu",
        "equivariance": mpnn_type == "EGNN",
        "edge_dim": None,
        "max_neighbours": None,
        "global_attn_engine": None,
        "pe_dim": 0,
        "output_type": ["node"],
        "output_dim": [1],
        "output_heads": {"node": [{"type": "branch-0", "architecture": {
            "type": "mlp", "num_headlayers": len(NODE_HEAD),
            "dim_headlayers": list(NODE_HEAD)}}]},
        "node_head_dims": list(NODE_HEAD),
        "enable_interatomic_potential": True,
        "graph_pooling": "mean",
    }
    if mpnn_type == "SchNet":
        arch.update(num_gaussians=10, num_filters=8)
    if mpnn_type == "PAINN":
        arch.update(num_radial=6)
    if mpnn_type == "PNAEq":
        arch.update(num_radial=6, pna_deg=list(PNA_DEG))
    if mpnn_type == "PNA":
        arch.update(pna_deg=list(PNA_DEG))
    if mpnn_type == "PNAPlus":
        arch.update(num_radial=6, envelope_exponent=PNAPLUS_ENVELOPE_EXPONENT, pna_deg=list(PNA_DEG))
    if mpnn_type == "MFC":
        arch.update(max_neighbours=MFC_MAX_DEGREE)
    if mpnn_type == "DimeNet":
        arch.update(DIMENET)
    if mpnn_type in EDGE_LENGTH:
        arch.update(edge_dim=1, edge_features=["length"], edge_length_scale=EDGE_LENGTH_SCALE)
    return arch


# Every model, in the order the files are (re)generated; file tests/golden/<name lower-case>.json.
MODELS = ("SchNet", "EGNN", "PAINN", "PNAEq", "GIN", "SAGE", "PNA", "CGCNN", "MFC", "GAT", "PNAPlus", "DimeNet")
# Seed offsets of the models that reseed torch before they are built, so that their file does not
# depend on which models ran before (SchNet and EGNN keep the sequential draws their files were
# written with).
OWN_SEED = {"PAINN": 4, "PNAEq": 5, "GIN": 6, "SAGE": 7, "PNA": 8, "CGCNN": 9, "MFC": 10, "GAT": 11, "PNAPlus": 12,
            "DimeNet": 13}
# Models built on PyG MessagePassing with flow source_to_target: sender edge_index[0], aggregation
# at edge_index[1].
SOURCE_TO_TARGET = {"SchNet", "GIN", "SAGE", "PNA", "CGCNN", "MFC", "GAT", "PNAPlus", "DimeNet"}
# Models whose energy does not depend on the positions (HydraGNN: is_edge_model = False, no
# geometry in the layer): their forces are zero (autograd finds pos unused).
POSITION_FREE = {"GIN", "SAGE", "MFC"}
# Models with PyG BatchNorm feature layers after every conv (HydraGNN's Base._init_conv).
BATCHNORM = {"GIN", "SAGE", "PNA", "CGCNN", "MFC", "GAT", "PNAPlus"}
# Models given the edge feature "length" (HydraGNN edge_features ["length"], edge_dim 1): edge_attr =
# |r_e| / EDGE_LENGTH_SCALE, computed here from pos with HydraGNN's get_edge_vectors_and_lengths so
# that autograd sees it (HydraGNN precomputes edge_attr in its datasets; forces through it are ours).
EDGE_LENGTH = {"PNA", "CGCNN", "GAT", "PNAPlus", "DimeNet"}
EDGE_LENGTH_SCALE = 3.0
# Central-difference step of the force self-check where the default 1e-5 straddles a kink: one
# crystal force component of PNAPlus lies within 1e-6..1e-5 of a switch of a ReLU or of PNA's
# min/max (measured: rel err 1.0e-5 at h = 1e-4, 4.9e-6 at 1e-5, 1.2e-10 at 1e-6, 1.1e-9 at 1e-7).
FD_STEP = {"PNAPlus": 1e-6}
# DimeNet's keys (HydraGNN requires each; small sizes, two residual layers after the skip so that
# both lists are exercised, num_spherical 4 so that l = 0..3 enter).
DIMENET = dict(num_radial=5, num_spherical=4, envelope_exponent=5, int_emb_size=6, basis_emb_size=3,
               out_emb_size=7, num_before_skip=1, num_after_skip=2)
# PNAPlus's envelope_exponent (PyG's default 5; HydraGNN requires the key).
PNAPLUS_ENVELOPE_EXPONENT = 5
# MFC's max_degree (HydraGNN: max_neighbours); the golden graphs are not capped, their in-degrees
# (4 to 35) lie on both sides of it.
MFC_MAX_DEGREE = 12


# In-degree histogram of the three golden structures (set by main(); PNAEq's pna_deg).
PNA_DEG = []


# The layer maths as implemented by HydraGNN d251f816 (read from SCFStack.py,
# EGCLStack.py, torch_geometric.nn.models.schnet); written in our edge
# convention (r_e = pos[dst] - pos[src] + S_e, d_e = |r_e|, sums over the
# edges e whose dst is i).  Linear(x) = x W^T + b with W [out, in].
FORMULAS = {
    "SchNet": (
        "rbf_k(d) = exp(coeff (d - offset_k)^2), offset = linspace(0, radius, num_gaussians), "
        "coeff = -0.5 / (offset_1 - offset_0)^2; ssp(x) = softplus(x) - log 2; "
        "W_e = nn.2(ssp(nn.0(rbf(d_e)))) * 0.5 (cos(pi d_e / radius) + 1); "
        "h_i' = silu(lin2(sum_e lin1(h)[src_e] * W_e)) with lin1 without bias; "
        "prefix graph_convs.<l>.module_2. (module_0 = interaction graph, module_1 = "
        "GaussianSmearing, module_2 = CFConv, module_3 = pass-through)"),
    "EGNN": (
        "m_e = relu(edge_mlp.2(relu(edge_mlp.0([h_dst, h_src, d_e])))) (E_GCL act_fn is "
        "ReLU, not the stack activation); if the layer has coord_mlp (all but the last): "
        "u_e = -r_e / (d_e + 1) * tanh(coord_mlp.2(relu(coord_mlp.0(m_e)))) (coord_mlp.2 "
        "has no bias; clamp to [-100, 100]), pos_i' = pos_i + mean_e u_e (mean over the "
        "edges with dst = i; unchanged if none); h_i' = silu(node_mlp.2(relu(node_mlp.0("
        "[h_i, sum_e m_e])))); r_e, d_e from the positions entering the layer, the shift "
        "S_e fixed; next layer uses pos'; prefix graph_convs.<l>.module_0."),
    "PAINN": (
        "u_e = (-r_e / (d_e + 1e-9)) / d_e; B_e,k = sin(k pi d_e / radius) / d_e (k = 1.."
        "num_radial); C_e = 0.5 (cos(pi d_e / radius) + 1); message (module_0): phi = "
        "scalar_message_mlp.2(silu(scalar_message_mlp.0(s))) (N x 3F), x_e = "
        "filter_layer(B_e) * C_e * phi[src_e], blocks [gsv | gev | ms]; s' = s + sum_e "
        "ms_e, v' = v + sum_e (v[src_e] gsv_e + gev_e u_e) (sums over the edges with dst = "
        "i); update (module_1): Uv = update_U v', Vv = update_V v' (over channels), a = "
        "update_mlp.2(silu(update_mlp.0([|Vv|, s']))), blocks [a_vv | a_sv | a_ss] ([a_sv | "
        "a_ss] in the last layer), s'' = s' + a_sv sum_xyz(Uv Vv) + a_ss, v'' = v' + a_vv "
        "Uv (not in the last layer); h = silu(module_2.2(tanh(module_2.0(s'')))); v_out = "
        "module_3 v'' (last layer: v' unchanged); v = 0 entering layer 0; prefix "
        "graph_convs.<l>."),
    "PNAEq": (
        "u_e = -r_e / (d_e + 1e-9); rbf_e,k = sin(k pi d_e / radius) / d_e * 0.5 (cos(pi d_e / "
        "radius) + 1) (k = 1..num_radial); message (module_0): re = tanh(rbf_emb.0(rbf)), m = "
        "pre_nns.0.0([s_dst, s_src, re]), P = scalar_message_mlp.4(silu(scalar_message_mlp.2("
        "tanh(scalar_message_mlp.0(m))))), X = P * rbf_lin(rbf), blocks [gsv | gev | ms]; v' = "
        "v + sum_e (v[src_e] gsv_e + gev_e u_e); s' = s + post_nns.0.0([s, PNA(ms)]) with PNA "
        "= mean, min, max, std (clamp 1e-5) at dst times the scalers identity, amplification, "
        "attenuation, linear, inverse_linear (PyG DegreeScalerAggregation; averages over "
        "pna_deg with every bin raised to >= 1); update (module_1) as PAINN with update_X for "
        "update_U; module_2 / module_3 as PAINN; prefix graph_convs.<l>."),
    "GIN": (
        "z_i = (1 + eps) h_i + sum_e h[src_e] (sums over the edges with dst = i); conv(h)_i = "
        "nn.2(relu(nn.0(z_i))); h' = silu(BN(conv(h))) with BN = feature_layers.<l>.module "
        "(torch BatchNorm1d, eps 1e-5: (x - running_mean) / sqrt(running_var + eps) * weight "
        "+ bias in eval mode, batch mean and biased variance in train mode); prefix "
        "graph_convs.<l>.module_0."),
    "PNA": (
        "a_e = |r_e| / edge_length_scale; m_e = pre_nns.0.0([h_dst, h_src, edge_encoder(a_e)]); "
        "A_i = PNA(m) with mean, min, max, std (clamp 1e-5) at dst times the scalers identity, "
        "amplification, attenuation, linear (PyG DegreeScalerAggregation over pna_deg as given); "
        "conv(h)_i = lin(post_nns.0.0([h_i, A_i])); h' = silu(BN(conv(h))) with BN = "
        "feature_layers.<l>.module as GIN; prefix graph_convs.<l>.module_0."),
    "CGCNN": (
        "a_e = |r_e| / edge_length_scale; z_e = [h_dst, h_src, a_e]; conv(h)_i = sum_e "
        "sigmoid(lin_f(z_e)) * softplus(lin_s(z_e)) + h_i (PyG CGConv, aggr add, softplus "
        "threshold 20); h' = silu(BN(conv(h))) with BN = feature_layers.<l>.module as GIN; "
        "prefix graph_convs.<l>.module_0."),
    "MFC": (
        "s_i = sum_e h[src_e]; k_i = min(in-degree of i, max_neighbours); conv(h)_i = "
        "lins_l.<k_i>(s_i) + lins_r.<k_i>(h_i) (PyG MFConv, lins_r without bias); h' = "
        "silu(BN(conv(h))) with BN = feature_layers.<l>.module as GIN; prefix "
        "graph_convs.<l>.module_0."),
    "GAT": (
        "PyG GATv2Conv, heads K = 6, negative_slope 0.05 (HydraGNN's create_model), dropout 0: "
        "a_e = |r_e| / edge_length_scale; edges with src = dst dropped, one self loop per node "
        "with a = mean of its kept a_e; XL = lin_l(h), XR = lin_r(h) (K x C); z_e = XR[dst] + "
        "XL[src] + lin_edge(a_e); s_e,k = sum_c att[k,c] leaky_relu(z_e, 0.05)[k,c]; alpha = "
        "softmax of s over the edges into dst (PyG softmax, + 1e-16); conv(h)_i = sum_e alpha_e,k "
        "XL[src_e] concatenated over k (every layer but the last: K*hidden wide) or averaged "
        "over k (the last) + bias; h' = silu(BN(conv(h))) with BN = feature_layers.<l>.module as "
        "GIN; prefix graph_convs.<l>.module_0."),
    "PNAPlus": (
        "x_e = |r_e| / radius; rbf_e,k = env(x_e) sin(f_k x_e) (PyG BesselBasisLayer, trainable "
        "f = rbf.freq, init (k+1) pi, k < num_radial; env(x) = 1/x + a x^(p-1) + b x^p + c x^(p+1) "
        "for x < 1 else 0, p = envelope_exponent + 1, a = -(p+1)(p+2)/2, b = p(p+2), c = "
        "-p(p+1)/2); a_e = |r_e| / edge_length_scale; re_e = edge_encoder([a_e, relu(rbf_emb.0("
        "rbf_e))]); m_e = pre_nns.0.0([h_dst, h_src, re_e]) * rbf_lin(rbf_e) (rbf_lin without bias); "
        "A_i = PNA(m) as PNA; conv(h)_i = lin(post_nns.0.0([h_i, A_i])); h' = silu(BN(conv(h))) "
        "with BN = feature_layers.<l>.module as GIN; prefix graph_convs.<l>.module_0."),
    "DimeNet": (
        "rbf_e = BesselBasisLayer(d_e) as PNAPlus (rbf.freq shared by the layers); triplets t = (kj, ji) "
        "(k -> j -> i); sbf_t,lK+n = Y_l^0(angle_t) R_l,n(d_kj) with Y_l^0 = sqrt((2l+1)/4pi) "
        "P_l(cos), angle_t between r_ji and r_ji + r_kj, R_l,n(d) = env(d/radius) N_ln j_l(z_ln "
        "d/radius) (PyG SphericalBasisLayer); x0 = module_0(h); x1 = silu(module_1.lin([x0_dst, "
        "x0_src, silu(module_1.lin_rbf(rbf)), silu(module_1.edge_lin(a_e))])) with a_e = |r_e| / "
        "edge_length_scale; module_2 = PyG InteractionPPBlock(x1, rbf, sbf, idx_kj, idx_ji) with SiLU; "
        "module_3 = PyG OutputPPBlock (sum over the edges with dst = i, one hidden layer, "
        "glorot_orthogonal output init); h' = silu(conv(h)) (Identity feature layers); prefix "
        "graph_convs.<l>."),
    "SAGE": (
        "conv(h)_i = lin_l(mean_e h[src_e]) + lin_r(h_i) (mean over the edges with dst = i, 0 if "
        "none; lin_r without bias); h' = silu(BN(conv(h))) with BN = feature_layers.<l>.module "
        "as GIN; prefix graph_convs.<l>.module_0."),
}


def build_model(hg_create, mpnn_type, patches):
    """HydraGNN model through create_model (+ EnhancedModelWrapper), float64."""
    import torch

    arch = architecture(mpnn_type)
    if mpnn_type == "SchNet":
        scf = importlib.import_module("hydragnn.models.SCFStack")
        ops = importlib.import_module("hydragnn.utils.model.operations")

        class _GivenEdgeGraph(torch.nn.Module):
            """Stand-in for SCFStack's RadiusInteractionGraph: returns the edge
            list set by set_graph() instead of rebuilding a non-periodic radius
            graph from the positions; distance |pos[ei[1]] - pos[ei[0]] + shift|
            (HydraGNN's get_edge_vectors_and_lengths, differentiable in pos)."""

            def __init__(self, cutoff=None, max_num_neighbors=None):
                super().__init__()
                self.cutoff = cutoff
                self.edge_index = None
                self.shifts = None

            def set_graph(self, edge_index, shifts):
                self.edge_index, self.shifts = edge_index, shifts

            def forward(self, pos, batch):
                _, lengths = ops.get_edge_vectors_and_lengths(
                    pos, self.edge_index, self.shifts, normalize=False)
                return self.edge_index, lengths.view(-1)

        scf.RadiusInteractionGraph = _GivenEdgeGraph
        patches.append(
            "SCFStack.interaction_graph (PyG RadiusInteractionGraph / HydraGNN "
            "RadiusInteractionGraphCPU, which rebuilds a non-periodic radius graph "
            "from pos inside every conv) replaced by a module that returns the given "
            "edge list: edge_index = [src; dst] (PyG source_to_target), edge_weight = "
            "|pos[dst] - pos[src] + S| computed with HydraGNN's "
            "get_edge_vectors_and_lengths; everything else of SCFStack/CFConv unchanged")

    if mpnn_type == "DimeNet":
        dime = importlib.import_module("hydragnn.models.DIMEStack")
        if not _HYDRAGNN_TRIPLETS:
            _HYDRAGNN_TRIPLETS.append(dime.triplets)
        dime.triplets = _given_triplets
        patches.append(
            "DIMEStack.triplets (drops every triplet with k == i) replaced by our rule "
            "(graph/triplets.hpp): for edge ji = (j -> i) every edge kj into j except the reverse "
            "of ji, the edge i -> j with the opposite image shift; k == i through another periodic "
            "image is kept. Same list without periodic images; returns (dst, src, idx_i, idx_j, "
            "idx_k, idx_kj, idx_ji) as HydraGNN's does, triplets ordered by ji, then kj")

    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = hg_create.create_model(
            mpnn_type=mpnn_type,
            input_dim=arch["input_dim"],
            hidden_dim=arch["hidden_dim"],
            output_dim=arch["output_dim"],
            pe_dim=arch["pe_dim"],
            global_attn_engine=None,
            global_attn_type=None,
            global_attn_heads=0,
            output_type=arch["output_type"],
            output_heads=copy.deepcopy(arch["output_heads"]),
            activation_function=arch["activation_function"],
            loss_function_type="mse",
            task_weights=[1.0],
            num_conv_layers=arch["num_conv_layers"],
            max_neighbours=arch["max_neighbours"],
            edge_dim=arch["edge_dim"],
            num_gaussians=arch.get("num_gaussians"),
            num_filters=arch.get("num_filters"),
            num_radial=arch.get("num_radial"),
            envelope_exponent=arch.get("envelope_exponent"),
            num_spherical=arch.get("num_spherical"),
            int_emb_size=arch.get("int_emb_size"),
            basis_emb_size=arch.get("basis_emb_size"),
            out_emb_size=arch.get("out_emb_size"),
            num_before_skip=arch.get("num_before_skip"),
            num_after_skip=arch.get("num_after_skip"),
            pna_deg=(torch.tensor(arch["pna_deg"], dtype=torch.float64)
                     if mpnn_type == "PNAEq" else arch.get("pna_deg")),
            radius=arch["radius"],
            equivariance=arch["equivariance"],
            enable_interatomic_potential=True,
            energy_weight=1.0,
            force_weight=1.0,
            graph_pooling=arch["graph_pooling"],
            use_gpu=False,
        )
    finally:
        torch.set_default_dtype(prev)
    patches.append("model built with torch.set_default_dtype(torch.float64) around "
                   "create_model (float64 parameters, GaussianSmearing offsets and "
                   "ShiftedSoftplus shift computed in float64)")
    model = model.double().eval()
    return model, arch


# Integer image shifts of the edge list the next DimeNet forward sees (set by make_data).
_TRIPLET_IMAGES = {"img": None}
# HydraGNN's own DIMEStack.triplets, kept to measure the deviation.
_HYDRAGNN_TRIPLETS = []


def _given_triplets(edge_index, num_nodes):
    """Our triplet rule (graph/triplets.hpp) in HydraGNN's triplets() signature; edge_index = [src; dst]."""
    import numpy as np
    import torch

    src = edge_index[0].numpy()
    dst = edge_index[1].numpy()
    img = np.asarray(_TRIPLET_IMAGES["img"], dtype=np.int64).reshape(-1, 3)
    assert len(img) == len(src), "triplets: image shifts of another edge list"
    into = [[] for _ in range(num_nodes)]
    for b in range(len(src)):
        into[dst[b]].append(b)
    ji, kj = [], []
    for a in range(len(src)):
        for b in into[src[a]]:
            if src[b] == dst[a] and (img[b] == -img[a]).all():
                continue
            ji.append(a)
            kj.append(b)
    idx_ji = torch.tensor(ji, dtype=torch.long)
    idx_kj = torch.tensor(kj, dtype=torch.long)
    s, d = edge_index[0], edge_index[1]
    return d, s, d[idx_ji], s[idx_ji], s[idx_kj], idx_kj, idx_ji


def batchnorm_modules(stack):
    """(prefix, torch BatchNorm1d) of the stack's feature layers (PyG BatchNorm wraps it as .module)."""
    out = []
    for i, fl in enumerate(stack.feature_layers):
        if "BatchNorm" in type(fl).__name__:
            out.append(("feature_layers.%d.module" % i, fl.module))
    return out


def adjust_weights(model, mpnn_type, seed, patches):
    """Re-draws the parameters whose HydraGNN init would hide them from a test."""
    import torch

    stack = model.model
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in stack.named_parameters():
            if bool((p == 0).all()):
                p.copy_(torch.empty_like(p).uniform_(-0.2, 0.2, generator=gen))
                patches.append("parameter %s is zero after HydraGNN's init; re-drawn "
                               "U(-0.2, 0.2) so that a test sees it" % name)
        for name, bn in batchnorm_modules(stack):
            bn.weight.copy_(torch.empty_like(bn.weight).uniform_(0.5, 1.5, generator=gen))
            bn.running_mean.copy_(torch.empty_like(bn.running_mean).uniform_(-0.5, 0.5, generator=gen))
            bn.running_var.copy_(torch.empty_like(bn.running_var).uniform_(0.5, 2.0, generator=gen))
            patches.append("%s: weight re-drawn U(0.5, 1.5), running_mean U(-0.5, 0.5), running_var "
                           "U(0.5, 2) (init 1, 0, 1 would make eval-mode BatchNorm nearly the "
                           "identity and hide it from a test)" % name)
        if mpnn_type == "GAT":
            for i, conv in enumerate(stack.graph_convs):
                w = conv.module_0.lin_edge.weight
                w.copy_(torch.empty_like(w).uniform_(-3.0, 3.0, generator=gen))
                patches.append(
                    "graph_convs.%d.module_0.lin_edge.weight re-drawn U(-3, 3) (its glorot init "
                    "makes the length feature's effect on the scores, hence the forces, ~1e-5 "
                    "eV/A and a weak test)" % i)
        if mpnn_type == "EGNN":
            for i, conv in enumerate(stack.graph_convs):
                egcl = conv.module_0
                if egcl.equivariant:
                    w = egcl.coord_mlp[2].weight
                    fan_in, fan_out = w.shape[1], w.shape[0]
                    bound = math.sqrt(6.0 / (fan_in + fan_out))  # xavier gain 1
                    w.copy_(torch.empty_like(w).uniform_(-bound, bound, generator=gen))
                    patches.append(
                        "graph_convs.%d.module_0.coord_mlp.2.weight re-drawn xavier_uniform "
                        "gain 1 (HydraGNN inits it with gain 0.001, which makes coordinate "
                        "updates ~1e-3 and invisible to a test)" % i)


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------
def to_model_graph(mpnn_type, dst, src, S):
    """Our edges -> (edge_index, edge_shifts) in the model's own convention.

    SchNet (PyG CFConv, flow source_to_target): x_j = x[edge_index[0]] is the
    sender, aggregation at edge_index[1]; distance |pos[ei[1]] - pos[ei[0]] +
    shift|.  -> edge_index = [src; dst], shift = +S (vector = r_e exactly).

    EGNN (E_GCL): aggregation (unsorted_segment_sum / _mean) at row =
    edge_index[0]; get_edge_vectors_and_lengths gives vector = pos[ei[1]] -
    pos[ei[0]] + shift.  -> edge_index = [dst; src], shift = -S, so the vector
    is pos[src] - pos[dst] - S = -r_e (points from the receiver to the sender's
    image) and |vector| = |r_e|.
    """
    import numpy as np

    if mpnn_type in SOURCE_TO_TARGET:
        return np.stack([src, dst]), S.copy()
    return np.stack([dst, src]), -S


class Recorder:
    """Hooks: stack activation outputs after each conv, conv outputs (coords)."""

    def __init__(self, stack):
        self.stack = stack
        self.handles = []
        self.pre, self.act, self.coords = [], [], []
        for fl in stack.feature_layers:
            self.handles.append(fl.register_forward_hook(
                lambda m, i, o: self.pre.append(o.detach().clone())))
        self.handles.append(stack.activation_function.register_forward_hook(
            lambda m, i, o: self.act.append(o.detach().clone())))
        for conv in stack.graph_convs:
            self.handles.append(conv.register_forward_hook(
                lambda m, i, o: self.coords.append(o[1].detach().clone())))

    def reset(self):
        self.pre, self.act, self.coords = [], [], []

    def close(self):
        for h in self.handles:
            h.remove()


def make_data(st, emb, species, mpnn_type, requires_grad=True):
    import numpy as np
    import torch
    from torch_geometric.data import Data

    dst, src, img, S, d = st["graph"]
    ei, sh = to_model_graph(mpnn_type, dst, src, S)
    idx = torch.tensor([species.index(z) for z in st["numbers"]], dtype=torch.long)
    pos = torch.tensor(np.asarray(st["positions"]), dtype=torch.float64)
    pos.requires_grad_(requires_grad)
    data = Data(x=emb[idx].clone(), pos=pos,
                edge_index=torch.tensor(ei, dtype=torch.long),
                edge_shifts=torch.tensor(sh, dtype=torch.float64))
    data.batch = torch.zeros(len(st["numbers"]), dtype=torch.long)
    add_edge_attr(data, mpnn_type)
    if mpnn_type == "DimeNet":
        _TRIPLET_IMAGES["img"] = img
    return data


def add_edge_attr(data, mpnn_type):
    """edge_attr = |r_e| / EDGE_LENGTH_SCALE from data.pos (differentiable), for EDGE_LENGTH models."""
    if mpnn_type not in EDGE_LENGTH:
        return
    ops = importlib.import_module("hydragnn.utils.model.operations")
    _, lengths = ops.get_edge_vectors_and_lengths(data.pos, data.edge_index, data.edge_shifts,
                                                  normalize=False)
    data.edge_attr = lengths.view(-1, 1) / EDGE_LENGTH_SCALE


def evaluate(model, st, emb, species, mpnn_type, record=True):
    import torch

    stack = model.model
    if mpnn_type == "SchNet":
        ei, sh = to_model_graph(mpnn_type, *[st["graph"][k] for k in (0, 1, 3)])
        stack.interaction_graph.set_graph(torch.tensor(ei, dtype=torch.long),
                                          torch.tensor(sh, dtype=torch.float64))
    data = make_data(st, emb, species, mpnn_type)
    rec = Recorder(stack) if record else None
    try:
        pred = model(data)
        node_e = pred[0]
        # EnhancedModelWrapper.energy_force_loss (node head):
        #   torch_scatter.scatter_add(node_energy_pred, data.batch, dim=0)
        energy = sys.modules["torch_scatter"].scatter_add(node_e, data.batch, dim=0)
        energy = energy.squeeze()
        grad = torch.autograd.grad(energy, data.pos, allow_unused=mpnn_type in POSITION_FREE)[0]
        if grad is None:  # the energy does not depend on the positions
            grad = torch.zeros_like(data.pos)
    finally:
        if rec is not None:
            rec.close()
    res = {"energy": float(energy.detach()), "forces": (-grad).detach().numpy(),
           "node_energy": node_e.detach().numpy()[:, 0]}
    if rec is not None:
        L = len(stack.graph_convs)
        assert len(rec.pre) == L and len(rec.coords) == L
        feats = rec.act[:L]  # first L SiLU calls are the stack activations
        for a, p in zip(feats, rec.pre):
            assert torch.equal(a, torch.nn.functional.silu(p))
        res["node_features"] = [f.numpy() for f in feats]
        res["coordinates"] = [c.numpy() for c in rec.coords]
    return res, pred, data


def energy_only(model, st, emb, species, mpnn_type, pos):
    import numpy as np
    import torch

    st2 = dict(st)
    st2["positions"] = np.asarray(pos)
    with torch.no_grad():
        stack = model.model
        if mpnn_type == "SchNet":
            ei, sh = to_model_graph(mpnn_type, *[st["graph"][k] for k in (0, 1, 3)])
            stack.interaction_graph.set_graph(torch.tensor(ei, dtype=torch.long),
                                              torch.tensor(sh, dtype=torch.float64))
        data = make_data(st2, emb, species, mpnn_type, requires_grad=False)
        return float(model(data)[0].sum())


# ---------------------------------------------------------------------------
# Self-checks (printed, not stored)
# ---------------------------------------------------------------------------
def check(cond, msg):
    print(("  ok    " if cond else "  FAIL  ") + msg, flush=True)
    if not cond:
        check.failed += 1


check.failed = 0


def self_checks(model, structures, results, emb, species, mpnn_type, rng):
    import numpy as np
    import torch

    for st, res in zip(structures, results):
        name = st["name"]
        pos0 = np.asarray(st["positions"])
        # finite differences, central, h = 1e-5 (FD_STEP), 4 components
        picks = [(int(rng.integers(len(pos0))), int(rng.integers(3))) for _ in range(4)]
        worst = 0.0
        for a, k in picks:
            h = FD_STEP.get(mpnn_type, 1e-5)
            p1, p2 = pos0.copy(), pos0.copy()
            p1[a, k] += h
            p2[a, k] -= h
            fd = -(energy_only(model, st, emb, species, mpnn_type, p1)
                   - energy_only(model, st, emb, species, mpnn_type, p2)) / (2 * h)
            worst = max(worst, abs(fd - res["forces"][a, k]) / max(1.0, abs(fd)))
        check(worst < 1e-7, "%s %s: FD vs autograd forces (4 comps), max rel err %.2e"
              % (mpnn_type, name, worst))
        # sum of forces = 0 (translation invariance; fixed graph)
        fs = np.abs(res["forces"].sum(axis=0)).max()
        check(fs < 1e-10, "%s %s: |sum of forces| = %.2e" % (mpnn_type, name, fs))
        # rotation (+ translation) invariance of E, covariance of F (and coords)
        R = _random_rotation(rng)
        t = rng.normal(size=3)
        st_r = dict(st)
        st_r["positions"] = pos0 @ R.T + t
        if st["cell"] is not None:
            st_r["cell"] = np.asarray(st["cell"]) @ R.T
        dst, src, img, S, d = st["graph"]
        st_r["graph"] = (dst, src, img, S @ R.T, d)
        res_r, _, _ = evaluate(model, st_r, emb, species, mpnn_type)
        dE = abs(res_r["energy"] - res["energy"])
        dF = np.abs(res_r["forces"] - res["forces"] @ R.T).max()
        check(dE < 1e-12 * max(1.0, abs(res["energy"])) and dF < 1e-11,
              "%s %s: rotated+translated: |dE| = %.2e, max |F' - R F| = %.2e"
              % (mpnn_type, name, dE, dF))
        if mpnn_type == "EGNN":
            dC = max(np.abs(cr - (c @ R.T + t)).max()
                     for cr, c in zip(res_r["coordinates"], res["coordinates"]))
            check(dC < 1e-11, "%s %s: rotated coordinates after each layer: max err %.2e"
                  % (mpnn_type, name, dC))
        if mpnn_type in ("PAINN", "PNAEq"):
            dV = max(np.abs(vr - np.einsum("ab,nbf->naf", R, v)).max()
                     for vr, v in zip(res_r["coordinates"], res["coordinates"]))
            check(dV < 1e-11, "%s %s: rotated vector features after each layer: max err %.2e"
                  % (mpnn_type, name, dV))
        # HydraGNN's own energy_force_loss with (E, F) as targets: zero loss
        if mpnn_type in POSITION_FREE:
            continue  # its autograd.grad of E by pos fails: pos is not used
        if mpnn_type == "SchNet":
            ei, sh = to_model_graph(mpnn_type, *[st["graph"][k] for k in (0, 1, 3)])
            model.model.interaction_graph.set_graph(
                torch.tensor(ei, dtype=torch.long), torch.tensor(sh, dtype=torch.float64))
        data = make_data(st, emb, species, mpnn_type)
        pred = model(data)
        data.energy = torch.tensor([res["energy"]], dtype=torch.float64)
        data.forces = torch.tensor(res["forces"], dtype=torch.float64)
        tot, tasks = model.energy_force_loss(pred, data, create_graph=False)
        check(float(tot.detach()) == 0.0,
              "%s %s: EnhancedModelWrapper.energy_force_loss with our E,F as targets = %.3g "
              "(it works in float32)" % (mpnn_type, name, float(tot.detach())))


def batch_data(structures, emb, species, mpnn_type):
    """The three structures as one PyG batch (node offsets in edge_index, data.batch)."""
    import numpy as np
    import torch
    from torch_geometric.data import Data

    xs, poss, eis, shs, bs = [], [], [], [], []
    off = 0
    for g, st in enumerate(structures):
        dst, src, img, S, d = st["graph"]
        ei, sh = to_model_graph(mpnn_type, dst, src, S)
        n = len(st["numbers"])
        idx = torch.tensor([species.index(z) for z in st["numbers"]], dtype=torch.long)
        xs.append(emb[idx].clone())
        poss.append(torch.tensor(np.asarray(st["positions"]), dtype=torch.float64))
        eis.append(torch.tensor(ei, dtype=torch.long) + off)
        shs.append(torch.tensor(sh, dtype=torch.float64))
        bs.append(torch.full((n,), g, dtype=torch.long))
        off += n
    pos = torch.cat(poss)
    pos.requires_grad_(True)
    data = Data(x=torch.cat(xs), pos=pos, edge_index=torch.cat(eis, dim=1),
                edge_shifts=torch.cat(shs))
    data.batch = torch.cat(bs)
    add_edge_attr(data, mpnn_type)
    return data


def train_mode_record(model, structures, emb, species, mpnn_type):
    """Training-mode BatchNorm (batch statistics over the nodes of the batch): the three
    structures as one batch, a copy of the model in train() mode; energies per structure,
    forces, and the running statistics after that one forward (torch updates them there)."""
    import torch

    m = copy.deepcopy(model)
    m.train()
    if mpnn_type == "GAT":  # HydraGNN's Base default dropout 0.25 acts on the attention in train()
        for conv in m.model.graph_convs:
            conv.module_0.dropout = 0.0
    data = batch_data(structures, emb, species, mpnn_type)
    pred = m(data)
    energy = sys.modules["torch_scatter"].scatter_add(pred[0], data.batch, dim=0).squeeze(-1)
    grad = torch.autograd.grad(energy.sum(), data.pos, allow_unused=mpnn_type in POSITION_FREE)[0]
    if grad is None:
        grad = torch.zeros_like(data.pos)
    running = {}
    for name, bn in batchnorm_modules(m.model):
        running[name + ".running_mean"] = tensor_entry(bn.running_mean)
        running[name + ".running_var"] = tensor_entry(bn.running_var)
        running[name + ".num_batches_tracked"] = tensor_entry(bn.num_batches_tracked)
    return {"energies": [float(e) for e in energy.detach()], "forces": _f((-grad).detach().numpy()),
            "buffers_after": running}


def coordinate_update_effect(model, structures, emb, species):
    """EGNN: energy and forces when the coordinate updates are switched off.
    Returns [name, E, F, E_off, F_off] per structure."""
    import torch

    out = []
    for st in structures:
        res, _, _ = evaluate(model, st, emb, species, "EGNN", record=False)
        out.append([st["name"], res["energy"], res["forces"]])
    saved = []
    with torch.no_grad():
        for conv in model.model.graph_convs:
            if conv.module_0.equivariant:
                w = conv.module_0.coord_mlp[2].weight
                saved.append((w, w.clone()))
                w.zero_()  # tanh(0) = 0: no coordinate update
    try:
        for rec, st in zip(out, structures):
            res, _, _ = evaluate(model, st, emb, species, "EGNN", record=False)
            rec += [res["energy"], res["forces"]]
    finally:
        with torch.no_grad():
            for w, v in saved:
                w.copy_(v)
    return out


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------
def tensor_entry(t):
    import numpy as np

    a = np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t)
    if np.issubdtype(a.dtype, np.floating):
        data = [float(v) for v in a.reshape(-1)]
    else:
        data = [int(v) for v in a.reshape(-1)]
    return {"shape": list(a.shape), "data": data}


def _f(a):
    import numpy as np

    return np.asarray(a, dtype=np.float64).tolist()


def write_golden(path, doc):
    """Writes a golden document (compact JSON); returns the exit status: 1 when a self-check failed."""
    with open(path, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))
    if check.failed:
        print("%d self-check(s) FAILED" % check.failed)
        return 1
    return 0


def stack_parameters(model):
    """HydraGNN state_dict keys of the Stack (EnhancedModelWrapper prefix 'model.'
    dropped): trainable parameters in "parameters", buffers in "buffers"."""
    import torch

    sd = model.model.state_dict(keep_vars=True)
    params = {k: v for k, v in sd.items() if isinstance(v, torch.nn.Parameter)}
    buffers = {k: v for k, v in sd.items() if not isinstance(v, torch.nn.Parameter)}
    return params, buffers


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hydragnn-src", default=os.environ.get("HYDRAGNN_SRC",
                                                             "/opt/hydragnn_src"),
                    help="folder holding the 'hydragnn' package (HydraGNN %s)"
                    % HYDRAGNN_COMMIT)
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "golden"))
    ap.add_argument("--hydragnn-commit", default=HYDRAGNN_COMMIT,
                    help="HydraGNN commit the source folder was exported from (recorded)")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated mpnn_types to (re)generate (default: all)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.manual_seed(args.seed)
    hg = import_hydragnn(args.hydragnn_src)
    hg_create = sys.modules["hydragnn.models.create"]
    for p in ENV_PATCHES:
        print("env patch:", p)

    structures = make_structures(args.seed)
    species = sorted({z for st in structures for z in st["numbers"]})
    for st in structures:
        st["graph"] = neighbour_list(np.asarray(st["positions"]), st["cell"], st["pbc"],
                                     RADIUS)
        dst, src, img, S, d = st["graph"]
        self_img = int(((dst == src) & (np.abs(img).sum(axis=1) > 0)).sum())
        other_img = int(((dst != src) & (np.abs(img).sum(axis=1) > 0)).sum())
        print("%-8s %2d atoms, %3d edges (%d to own images, %d to other atoms' images), "
              "d in [%.3f, %.3f]" % (st["name"], len(st["numbers"]), len(dst), self_img,
                                     other_img, d.min(), d.max()))
        assert len(dst) > 0
        assert np.all(np.bincount(dst, minlength=len(st["numbers"])) > 0)
    assert any(((st["graph"][0] == st["graph"][1]) & (np.abs(st["graph"][2]).sum(1) > 0)).any()
               for st in structures if st["name"] == "crystal")

    # in-degree histogram of the structures' graphs (HydraGNN: of its training set)
    degs = np.concatenate([np.bincount(st["graph"][0], minlength=len(st["numbers"]))
                           for st in structures])
    PNA_DEG[:] = [float(c) for c in np.bincount(degs)]
    print("pna_deg (in-degree histogram of the three structures):", PNA_DEG)

    rng = np.random.default_rng(args.seed + 1)
    emb_gen = torch.Generator().manual_seed(args.seed + 2)
    emb = torch.randn(len(species), HIDDEN, generator=emb_gen, dtype=torch.float64)

    commit = args.hydragnn_commit

    os.makedirs(args.out_dir, exist_ok=True)
    wanted = set(args.models.split(","))
    for mpnn_type in MODELS:
        if mpnn_type not in wanted:
            continue
        fname = mpnn_type.lower() + ".json"
        print("\n== %s" % mpnn_type)
        patches = []
        if mpnn_type in OWN_SEED:
            torch.manual_seed(args.seed + OWN_SEED[mpnn_type])
        model, arch = build_model(hg_create, mpnn_type, patches)
        adjust_weights(model, mpnn_type, args.seed + 3, patches)
        patches.append("node features x = embedding.weight[species index] fed as data.x "
                       "(input_dim = hidden_dim); embedding.weight drawn N(0,1) by this "
                       "script (HydraGNN itself has no embedding table for SchNet/EGNN/PAINN)")
        patches.append("energy = scatter_add of the node-head output over the atoms "
                       "(EnhancedModelWrapper.energy_force_loss) kept in float64: "
                       "HydraGNN casts the summed energy and the forces to float32 "
                       "(.float()), which is not done here")
        stack = model.model
        if mpnn_type in BATCHNORM:  # PyG BatchNorm after every conv, nowhere else
            assert len(batchnorm_modules(stack)) == len(stack.feature_layers)
            assert sum("BatchNorm" in type(m).__name__ for m in stack.modules()) == 2 * len(stack.feature_layers)
        else:  # no BatchNorm on this path; feature layers are Identity
            assert all(isinstance(fl, torch.nn.Identity) for fl in stack.feature_layers)
            assert not any("BatchNorm" in type(m).__name__ for m in stack.modules())
        assert isinstance(stack.activation_function, torch.nn.SiLU)

        results = []
        for st in structures:
            res, _, _ = evaluate(model, st, emb, species, mpnn_type)
            results.append(res)
            print("%-8s E = %.17g  max|F| = %.4g" % (st["name"], res["energy"],
                                                      np.abs(res["forces"]).max()))
        self_checks(model, structures, results, emb, species, mpnn_type, rng)
        if mpnn_type == "EGNN":
            for name, e1, f1, e0, f0 in coordinate_update_effect(model, structures, emb,
                                                                 species):
                df = np.abs(f1 - f0).max() / np.abs(f1).max()
                print("  coordinate updates off: %-8s E = %.12f instead of %.12f (dE = "
                      "%.3g, rel %.3g); max|dF| / max|F| = %.3g"
                      % (name, e0, e1, e1 - e0, abs(e1 - e0) / abs(e1), df))
                check(abs(e1 - e0) > 1e-6 * max(1.0, abs(e1)) and df > 0.01,
                      "EGNN %s: coordinate updates change E (> 1e-6 rel) and F (> 1%%)"
                      % name)
            for st, res in zip(structures, results):
                moved = max(np.abs(c - np.asarray(st["positions"])).max()
                            for c in res["coordinates"])
                print("  %-8s max coordinate displacement over the layers: %.4f A"
                      % (st["name"], moved))

        train_rec = train_mode_record(model, structures, emb, species, mpnn_type) \
            if mpnn_type in BATCHNORM else None
        if mpnn_type == "GAT":
            patches.append("train_mode: the GATv2Conv attention dropout (HydraGNN's Base default "
                           "0.25, active in train()) set to 0 for the recorded step; the test sets "
                           "hydragnn's gat_dropout to 0 too")
        params, buffers = stack_parameters(model)
        # the energy must depend on every parameter recorded
        st0 = structures[2]
        if mpnn_type == "SchNet":
            ei, sh = to_model_graph(mpnn_type, *[st0["graph"][k] for k in (0, 1, 3)])
            stack.interaction_graph.set_graph(torch.tensor(ei, dtype=torch.long),
                                              torch.tensor(sh, dtype=torch.float64))
        pred = model(make_data(st0, emb, species, mpnn_type))
        grads = torch.autograd.grad(pred[0].sum(), list(params.values()),
                                    allow_unused=True)
        unused = [k for k, g in zip(params, grads) if g is None or not bool(g.abs().max() > 0)]
        if mpnn_type == "MFC":  # the Linear pairs of degree classes no node of this structure is in
            degs = np.bincount(st0["graph"][0], minlength=len(st0["numbers"]))  # of the structure used
            classes = {min(int(d), MFC_MAX_DEGREE) for d in degs}
            unused = [k for k in unused
                      if not any(".lins_%s.%d." % (side, c) in k for side in "lr"
                                 for c in range(MFC_MAX_DEGREE + 1) if c not in classes)]
        check(not unused, "%s: energy depends on every parameter (unused: %s)"
              % (mpnn_type, unused))

        doc = {
            "generator": "tools/golden/make_golden.py",
            "hydragnn_commit": commit,
            "torch_version": torch.__version__,
            "model": mpnn_type,
            "architecture": {k: v for k, v in arch.items() if k != "output_heads"}
            | {"node_head": {"type": "mlp", "dim_headlayers": list(NODE_HEAD),
                             "output_dim": 1}},
            "species": species,
            "parameters": {"embedding.weight": tensor_entry(emb)}
            | {k: tensor_entry(v) for k, v in params.items()},
            "buffers": {k: tensor_entry(v) for k, v in buffers.items()},
            "patches": ENV_PATCHES + patches,
            "conventions": {
                "edges": "ours: r_e = pos[dst] - pos[src] + shift_e, shift_e = image_e @ "
                         "cell (Cartesian), messages aggregated at dst; sorted by (dst, "
                         "src, image)",
                "to_hydragnn": (
                    "edge_index = [src; dst], edge_shifts = +shift (PyG MessagePassing: sender "
                    "edge_index[0], aggregation at edge_index[1])"
                    if mpnn_type in SOURCE_TO_TARGET
                    else "edge_index = [dst; src], edge_shifts = -shift (%s aggregates at "
                         "edge_index[0]; vector = pos[ei[1]] - pos[ei[0]] + shift = -r_e)"
                    % ("E_GCL" if mpnn_type == "EGNN" else "PainnMessage")),
                "energy": "sum over the atoms of the node head output",
                "forces": "-dE/dpos (autograd), float64",
                "node_features": "per conv layer: silu(conv output), N x hidden_dim",
                "layer": FORMULAS[mpnn_type],
                "node_head": "e_i = W4 silu(W2 silu(W0 h_i + b0) + b2) + b4 with W0, b0, W2, "
                             "b2, W4, b4 = heads_NN.0.branch-0.mlp.0.{0,2,4}.{weight,bias}; "
                             "h_i = node features after the last layer",
            },
            "structures": [],
        }
        if train_rec is not None:
            train_rec["what"] = ("the three structures as one batch through a copy of the model in "
                                 "train() mode (BatchNorm with the batch's statistics): energies per "
                                 "structure, forces (N x 3, structures in order), running statistics "
                                 "after that forward (momentum 0.1, unbiased variance)")
            doc["train_mode"] = train_rec
        if mpnn_type == "SchNet":
            ge = stack.distance_expansion
            doc["constants"] = {"gaussian_coeff": float(ge.coeff),
                                "shifted_softplus_shift":
                                    float(stack.graph_convs[0].module_2.nn[1].shift)}
        for st, res in zip(structures, results):
            dst, src, img, S, d = st["graph"]
            rec = {
                "name": st["name"],
                "numbers": list(st["numbers"]),
                "positions": _f(st["positions"]),
                "cell": None if st["cell"] is None else _f(st["cell"]),
                "pbc": list(st["pbc"]),
                "edges": {"dst": dst.tolist(), "src": src.tolist(), "shift": _f(S),
                          "image": img.tolist()},
                "energy": res["energy"],
                "forces": _f(res["forces"]),
                "node_energies": _f(res["node_energy"]),
                "node_features": [_f(f) for f in res["node_features"]],
            }
            if mpnn_type == "EGNN":
                rec["coordinates"] = [_f(c) for c in res["coordinates"]]
            if mpnn_type in ("PAINN", "PNAEq"):  # the equivariant stream after each layer, N x 3 x F
                rec["vector_features"] = [_f(c) for c in res["coordinates"]]
            if mpnn_type == "DimeNet":
                # the deviation: the same model with HydraGNN's own triplets() (drops every k == i)
                dime = importlib.import_module("hydragnn.models.DIMEStack")
                dime.triplets = _HYDRAGNN_TRIPLETS[0]
                try:
                    own, _, _ = evaluate(model, st, emb, species, mpnn_type, record=False)
                finally:
                    dime.triplets = _given_triplets
                rec["energy_with_hydragnn_triplets"] = own["energy"]
                rec["forces_with_hydragnn_triplets_max_diff"] = float(abs(own["forces"] - res["forces"]).max())
                print("  %-8s HydraGNN's triplets(): E %.17g (ours %.17g, diff %.3g), max |dF| %.3g"
                      % (st["name"], own["energy"], res["energy"], own["energy"] - res["energy"],
                         rec["forces_with_hydragnn_triplets_max_diff"]))
            doc["structures"].append(rec)
        path = os.path.join(args.out_dir, fname)
        with open(path, "w") as fh:
            json.dump(doc, fh, separators=(",", ":"))
            fh.write("\n")
        print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))

        # round trip through HydraGNN's checkpoint format and convert_state_dict.py
        with tempfile.TemporaryDirectory() as tmp:
            ck = os.path.join(tmp, "model.pk")
            torch.save({"model_state_dict": model.state_dict(),
                        "optimizer_state_dict": None}, ck)
            sys.path.insert(0, HERE)
            conv = importlib.import_module("convert_state_dict")
            named = conv.convert(ck)
            same = all(named["parameters"][k] == doc["parameters"][k]
                       for k in params) and named["mpnn_type"] == mpnn_type
            check(same, "%s: convert_state_dict(HydraGNN checkpoint) reproduces the golden "
                  "parameters bit for bit (%d tensors)" % (mpnn_type, len(named["parameters"])))
            named_j = conv.convert(path)
            check(named_j["parameters"] == doc["parameters"] | doc["buffers"],
                  "%s: convert_state_dict(golden JSON) round trip" % mpnn_type)
            # load the converted parameters into a fresh model: same energies
            fresh, _ = build_model(hg_create, mpnn_type, [])
            sd = {k: torch.tensor(v["data"], dtype=torch.float64).view(v["shape"])
                  for k, v in named["parameters"].items()}
            fresh.model.load_state_dict(sd, strict=True)
            for st, res in zip(structures, results):
                e = energy_only(fresh, st, emb, species, mpnn_type, st["positions"])
                e2 = energy_only(model, st, emb, species, mpnn_type, st["positions"])
                check(e == e2, "%s %s: energy from converted parameters loaded into a "
                      "fresh HydraGNN model: identical (%.17g vs %.17g, first eval %.17g)"
                      % (mpnn_type, st["name"], e, e2, res["energy"]))

    if check.failed:
        print("\n%d self-check(s) FAILED" % check.failed)
        return 1
    print("\nall self-checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
