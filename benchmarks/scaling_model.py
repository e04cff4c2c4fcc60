#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""A performance model of data-parallel training, built from measured pieces (docs/scaling.md).

    python3 benchmarks/scaling_model.py scaling_1.json scaling_2.json [--json model.json]

Inputs: the JSON of `hydragnn_bench_scaling` on 1 rank and on 2 ranks (the same model and batch).
Measured pieces (from those files):
  t_s    compute seconds per structure of one rank (1-rank weak run: forward + backward of the
         conservative loss, force training included)
  t_d    batch building and upload seconds per structure (host -> device workspace)
  cv     coefficient of variation of the structures' atom counts (the cost of a structure is about
         linear in its atoms: at most 32 neighbours each)
  alpha  half the 2-rank MpiCollective::sum time of the smallest message (1 KiB)
  beta   seconds per byte: slope of the 2-rank sum time over messages of 1 MiB and more
Model of one step with P ranks, a local batch of B structures, a gradient of n bytes:
  T(P) = imb(P, B) * B * t_s + B * t_d + T_sum(n, P)
  imb: the slowest rank's compute over the mean. The trainer's sampling (all shards draw the same
  size ranks at each step): the measured 2-rank value, assumed constant in P. Independent shuffles:
  imb(P, B) = 1 + cv / sqrt(B) z_P, the slowest of P ranks each summing B random structures (z_P the
  expected maximum of P standard normals, Blom's approximation)
with the sum of this library (reduce-scatter by all-to-all, then all-gather, each (P-1) messages of
n / P bytes):  T_sum = 2 (P-1) alpha + 2 (P-1)/P n beta,
or a tree/recursive-halving sum in a fixed order:  T_tree = 2 log2(P) alpha + 2 (P-1)/P n beta.
(beta includes the host-side adds and copies). The sum starts after the whole backward (no overlap).

Predictions are printed for (1) this machine's pieces and (2) a GPU-cluster scenario whose
numbers are assumptions stated in the output (per-GPU compute rate, network latency and
bandwidth), to 16,000 ranks.
"""
import argparse
import json
import math
from statistics import NormalDist


def load(path):
    with open(path) as f:
        return json.load(f)


def run(j, mode, sampling="size_ranks"):
    for r in j["runs"]:
        if r["mode"] == mode and r.get("sampling", "size_ranks") == sampling:
            return r
    raise SystemExit("no %s run with %s sampling" % (mode, sampling))


def step_imbalance(r):
    """Mean over steps of the slowest rank's compute over the ranks' mean."""
    steps = [list(x) for x in zip(*[p["compute_s_per_step"] for p in r["per_rank"]])]
    return sum(max(c) / (sum(c) / len(c)) for c in steps) / len(steps)


def fit_line(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - b * mx, b


def imbalance(P, B, cv):
    """Expected slowest-rank cost over the mean: batch costs normal with relative spread cv / sqrt(B),
    the expected maximum of P of them by Blom's approximation."""
    if P == 1:
        return 1.0
    return 1.0 + cv / math.sqrt(B) * NormalDist().inv_cdf((P - 0.375) / (P + 0.25))


def pieces(j1, j2):
    w1 = run(j1, "weak")
    p1 = w1["per_rank"][0]
    t_s = p1["compute_s"] / w1["local_batch"]
    t_d = p1["data_s"] / w1["local_batch"]
    s2 = run(j2, "strong")
    s2r = run(j2, "strong", "random")
    small = min(j2["allreduce"], key=lambda a: a["bytes"])
    big = [(a["bytes"], a["seconds"]) for a in j2["allreduce"] if a["bytes"] >= (1 << 20)]
    _, b = fit_line([p[0] for p in big], [p[1] for p in big])
    grad_bytes = next(a["bytes"] for a in j2["allreduce"] if a.get("model_gradient"))
    w2 = run(j2, "weak")
    contention = (sum(p["compute_s"] for p in w2["per_rank"]) / len(w2["per_rank"])) / p1["compute_s"]
    return {"t_s": t_s, "t_d": t_d, "cv": j1["structure_atoms_cv"], "imb2_size_ranks": step_imbalance(s2),
            "imb2_random": step_imbalance(s2r), "imb2_model": imbalance(2, s2["local_batch"], j1["structure_atoms_cv"]),
            "contention_2": contention,
            "alpha": small["seconds"] / 2, "beta": b, "grad_bytes": grad_bytes,
            "params": w1["params"], "model": w1["model"], "hidden": w1["hidden"],
            "measured": {"weak_1": w1["step_s"], "weak_2": w2["step_s"],
                         "strong_1": run(j1, "strong")["step_s"], "strong_2": s2["step_s"],
                         "strong_2_random": s2r["step_s"], "weak_2_random": run(j2, "weak", "random")["step_s"],
                         "strong_global_batch": s2["global_batch"], "weak_local_batch": w1["local_batch"]}}


def step_time(P, B, t_s, t_d, imb, alpha, beta, n, tree):
    """imb: the slowest rank's compute over the mean (a number, or a function of P and B)."""
    if callable(imb):
        imb = imb(P, B)
    if P == 1:
        imb, comm = 1.0, 0.0
    elif tree:
        comm = 2 * math.log2(P) * alpha + 2 * (P - 1) / P * n * beta
    else:
        comm = 2 * (P - 1) * alpha + 2 * (P - 1) / P * n * beta
    return imb * B * t_s + B * t_d + comm, comm


def table(title, pc, t_s, t_d, alpha, beta, weak_B, strong_G, ranks):
    n = pc["grad_bytes"]
    trainer = pc["imb2_size_ranks"]                       # measured, assumed not to grow with P
    random = lambda P, B: imbalance(P, B, pc["cv"])       # independent shuffles: the slowest of P batches
    lines = ["### " + title, "",
             "| ranks | weak: step (s) | weak eff. | weak eff., random batches | weak eff., tree sum | strong: local batch | strong eff. | strong eff., tree sum |",
             "|---|---|---|---|---|---|---|---|"]
    out = []
    t1w, _ = step_time(1, weak_B, t_s, t_d, 1.0, alpha, beta, n, False)
    t1s, _ = step_time(1, strong_G, t_s, t_d, 1.0, alpha, beta, n, False)
    for P in ranks:
        tw, _ = step_time(P, weak_B, t_s, t_d, trainer, alpha, beta, n, False)
        twr, _ = step_time(P, weak_B, t_s, t_d, random, alpha, beta, n, False)
        twt, _ = step_time(P, weak_B, t_s, t_d, trainer, alpha, beta, n, True)
        Bs = max(1, math.ceil(strong_G / P))
        ts, _ = step_time(P, Bs, t_s, t_d, trainer, alpha, beta, n, False)
        tst, _ = step_time(P, Bs, t_s, t_d, trainer, alpha, beta, n, True)
        row = {"ranks": P, "weak_step_s": tw, "weak_eff": t1w / tw, "weak_eff_random": t1w / twr, "weak_eff_tree": t1w / twt,
               "strong_local_batch": Bs, "strong_eff": t1s / (P * ts), "strong_eff_tree": t1s / (P * tst)}
        lines.append("| %d | %.4g | %.1f %% | %.1f %% | %.1f %% | %d | %.1f %% | %.1f %% |" % (
            P, tw, 100 * row["weak_eff"], 100 * row["weak_eff_random"], 100 * row["weak_eff_tree"], Bs,
            100 * row["strong_eff"], 100 * row["strong_eff_tree"]))
        out.append(row)
    return lines, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("one_rank")
    ap.add_argument("two_ranks")
    ap.add_argument("--json", help="write the pieces and predictions here")
    ap.add_argument("--gpu-graphs-per-s", type=float, default=947.0,
                    help="scenario 2: one GPU's training rate (default: HydraGNN SchNet-128 conservative on an H100, "
                         "the project's measurement of 2026-11-28)")
    ap.add_argument("--gpu-local-batch", type=int, default=128)
    ap.add_argument("--gpu-strong-batch", type=int, default=131072, help="global batch of the strong scaling (both scenarios)")
    ap.add_argument("--net-latency-us", type=float, default=3.0, help="scenario 2: per message (assumption)")
    ap.add_argument("--net-gbytes-per-s", type=float, default=12.5,
                    help="scenario 2: per GPU (assumption: a 25 GB/s NIC shared by two GPUs)")
    args = ap.parse_args()
    pc = pieces(load(args.one_rank), load(args.two_ranks))
    ranks = [1, 2, 8, 64, 512, 2000, 4096, 16000]
    m = pc["measured"]
    print("## Measured pieces (%s, hidden %d, %d parameters = %d gradient bytes)" % (pc["model"], pc["hidden"], pc["params"], pc["grad_bytes"]))
    print()
    print("- compute per structure t_s = %.3g ms, batch build + upload t_d = %.3g ms" % (1e3 * pc["t_s"], 1e3 * pc["t_d"]))
    print("- structures: atom-count coefficient of variation cv = %.3f; 2-rank strong run (local batch %d), slowest rank's compute / mean per step: %.3f with the trainer's size-rank sampling, %.3f with independent shuffles (model of the latter: %.3f)" % (
        pc["cv"], m["strong_global_batch"] // 2, pc["imb2_size_ranks"], pc["imb2_random"], pc["imb2_model"]))
    print("- 2 ranks on this 2-core machine: per-structure compute %.2f x the 1-rank time (shared caches and memory; not modelled)" % pc["contention_2"])
    print("- gradient sum on 2 ranks: T(n) = 2 alpha + n beta, alpha = %.3g us, 1/beta = %.3g GB/s" % (1e6 * pc["alpha"], 1e-9 / pc["beta"]))
    print("- measured steps: weak (local batch %d) 1 rank %.3f s, 2 ranks %.3f s (efficiency %.1f %%; independent shuffles %.1f %%); strong (global batch %d) 1 rank %.3f s, 2 ranks %.3f s (efficiency %.1f %%; independent shuffles %.1f %%)" % (
        m["weak_local_batch"], m["weak_1"], m["weak_2"], 100 * m["weak_1"] / m["weak_2"], 100 * m["weak_1"] / m["weak_2_random"],
        m["strong_global_batch"], m["strong_1"], m["strong_2"], 100 * m["strong_1"] / (2 * m["strong_2"]),
        100 * m["strong_1"] / (2 * m["strong_2_random"])))
    print()
    l1, o1 = table("Scenario 1: this machine's pieces (CPU cores, shared-memory MPI)", pc, pc["t_s"], pc["t_d"], pc["alpha"], pc["beta"],
                   m["weak_local_batch"], args.gpu_strong_batch, ranks)
    print("\n".join(l1))
    print()
    t_gpu = 1.0 / args.gpu_graphs_per_s
    alpha = args.net_latency_us * 1e-6
    beta = 1.0 / (args.net_gbytes_per_s * 1e9)
    l2, o2 = table("Scenario 2: GPUs at %.0f graphs/s each, local batch %d, network %.1f us + %.1f GB/s per GPU (assumptions)" % (
        args.gpu_graphs_per_s, args.gpu_local_batch, args.net_latency_us, args.net_gbytes_per_s),
        pc, t_gpu, pc["t_d"], alpha, beta, args.gpu_local_batch, args.gpu_strong_batch, ranks)
    print("\n".join(l2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pieces": pc, "scenario_1": o1, "scenario_2": o2, "assumptions": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
