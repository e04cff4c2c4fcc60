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
with the sum of this library (train/collective.hpp SumTree; dist/mpi.hpp: recursive halving, then
recursive doubling, log2(P) rounds each):  T_sum(n) = 2 log2(P) alpha + 2 (P-1)/P n beta
(beta includes the host-side adds and copies). The gradient's blocks are summed as the backward
finishes them (the heads, then the trunk's layers from the last one); only the first layer's and the
embedding's (n_t bytes, "tail_params") wait for the end of the backward. Assumed: the backward after
the heads lasts a third of the step's compute, and the sums run one after the other, so
  T_comm = T_sum(n_t) + max(0, T_sum(n - n_t) - B t_s / 3).
For comparison: the same without the overlap (T_sum(n)), and the all-to-all sum this library used
before (T_a2a = 2 (P-1) alpha + 2 (P-1)/P n beta, no overlap).

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
            "tail_bytes": grad_bytes * w1["tail_params"] / w1["params"],
            "params": w1["params"], "model": w1["model"], "hidden": w1["hidden"],
            "measured": {"weak_1": w1["step_s"], "weak_2": w2["step_s"],
                         "strong_1": run(j1, "strong")["step_s"], "strong_2": s2["step_s"],
                         "strong_2_random": s2r["step_s"], "weak_2_random": run(j2, "weak", "random")["step_s"],
                         "strong_global_batch": s2["global_batch"], "weak_local_batch": w1["local_batch"]}}


def t_sum(P, n, alpha, beta, a2a=False):
    if P == 1 or n <= 0:
        return 0.0
    rounds = 2 * (P - 1) if a2a else 2 * math.log2(P)
    return rounds * alpha + 2 * (P - 1) / P * n * beta


def step_time(P, B, t_s, t_d, imb, alpha, beta, n, n_tail, kind):
    """imb: the slowest rank's compute over the mean (a number, or a function of P and B).
    kind: "overlap" (ours), "tree" (ours without the overlap) or "a2a" (the earlier all-to-all sum)."""
    if callable(imb):
        imb = imb(P, B)
    if P == 1:
        imb, comm = 1.0, 0.0
    elif kind == "overlap":
        comm = t_sum(P, n_tail, alpha, beta) + max(0.0, t_sum(P, n - n_tail, alpha, beta) - B * t_s / 3)
    else:
        comm = t_sum(P, n, alpha, beta, kind == "a2a")
    return imb * B * t_s + B * t_d + comm, comm


def table(title, pc, t_s, t_d, alpha, beta, weak_B, strong_G, ranks):
    n = pc["grad_bytes"]
    n_tail = pc["tail_bytes"]
    trainer = pc["imb2_size_ranks"]                       # measured, assumed not to grow with P
    random = lambda P, B: imbalance(P, B, pc["cv"])       # independent shuffles: the slowest of P batches
    lines = ["### " + title, "",
             "| ranks | weak: step (s) | weak eff. | weak eff., random batches | weak eff., no overlap | weak eff., all-to-all sum | strong: local batch | strong eff. | strong eff., no overlap | strong eff., all-to-all sum |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    out = []
    t1w, _ = step_time(1, weak_B, t_s, t_d, 1.0, alpha, beta, n, n_tail, "overlap")
    t1s, _ = step_time(1, strong_G, t_s, t_d, 1.0, alpha, beta, n, n_tail, "overlap")
    for P in ranks:
        Bs = max(1, math.ceil(strong_G / P))
        tw = {k: step_time(P, weak_B, t_s, t_d, trainer, alpha, beta, n, n_tail, k)[0] for k in ("overlap", "tree", "a2a")}
        ts = {k: step_time(P, Bs, t_s, t_d, trainer, alpha, beta, n, n_tail, k)[0] for k in ("overlap", "tree", "a2a")}
        twr, _ = step_time(P, weak_B, t_s, t_d, random, alpha, beta, n, n_tail, "overlap")
        row = {"ranks": P, "weak_step_s": tw["overlap"], "weak_eff": t1w / tw["overlap"], "weak_eff_random": t1w / twr,
               "weak_eff_no_overlap": t1w / tw["tree"], "weak_eff_a2a": t1w / tw["a2a"], "strong_local_batch": Bs,
               "strong_eff": t1s / (P * ts["overlap"]), "strong_eff_no_overlap": t1s / (P * ts["tree"]),
               "strong_eff_a2a": t1s / (P * ts["a2a"])}
        lines.append("| %d | %.4g | %.1f %% | %.1f %% | %.1f %% | %.1f %% | %d | %.1f %% | %.1f %% | %.1f %% |" % (
            P, tw["overlap"], 100 * row["weak_eff"], 100 * row["weak_eff_random"], 100 * row["weak_eff_no_overlap"],
            100 * row["weak_eff_a2a"], Bs, 100 * row["strong_eff"], 100 * row["strong_eff_no_overlap"],
            100 * row["strong_eff_a2a"]))
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
    print("- the share of the gradient summed only after the backward (first layer, embedding): %.1f %%" % (100 * pc["tail_bytes"] / pc["grad_bytes"]))
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
