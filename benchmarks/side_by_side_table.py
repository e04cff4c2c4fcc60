#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Side-by-side table: hydragnn_bench JSON files (Google Benchmark) against HydraGNN runner JSON files
(../shared/tools/hydragnn_bench.py --json), measured in one run on one machine.

usage: side_by_side_table.py --ours a.json [b.json ...] --hydra x.json [y.json ...] [--graphs 32]

Each case's time is the median over the files that hold it (one file per interleaved round);
ratio = HydraGNN ms / hydragnn ms (> 1: hydragnn is faster). Prints a Markdown table. The
parameter counts of both sides are printed; where they differ by more than our species embedding
(MAX_PARAM_GAP), the ratio is marked: the two models are not the same architecture (e.g. the
runner's direct mode gives edge_attr to models that take none here: --no-edge-attr)."""
import argparse
import json
import statistics as st

MAX_PARAM_GAP = 8  # ours: a 4-weight species embedding (HydraGNN feeds Z itself)


def load_ours(files):
    out = {}
    for fn in files:
        try:
            d = json.load(open(fn))
        except Exception as exc:  # a round that did not finish
            print(f"<!-- {fn}: {exc} -->")
            continue
        for b in d.get("benchmarks", []):
            if b.get("error_occurred"):
                continue
            name = b["name"].replace("/real_time", "")
            scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
            out.setdefault(name, []).append((b["real_time"] * scale, b.get("kokkos_peak_MB"),
                                             b.get("cuda_delta_MB"), b.get("params")))
    return out


def load_hydra(files):
    out = {}
    for fn in files:
        try:
            d = json.load(open(fn))
        except Exception as exc:
            print(f"<!-- {fn}: {exc} -->")
            continue
        for x in d.get("results", []):
            if x.get("status") != "ok" or x.get("impl", "hydragnn") != "hydragnn":
                continue
            m, mode, h = x["mpnn_type"], x["mode"], x["hidden_dim"]
            mem = x.get("peak_mem_MB")
            out.setdefault(f"train/{m}/{mode}/h{h}", []).append((x["step_ms"], mem, x.get("params")))
            if x.get("infer_step_ms") is not None and mode == "conservative":
                out.setdefault(f"infer/{m}/h{h}", []).append((x["infer_step_ms"], mem, x.get("params")))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ours", nargs="+", required=True)
    p.add_argument("--hydra", nargs="+", required=True)
    p.add_argument("--graphs", type=int, default=32, help="graphs per batch (for graphs/s)")
    a = p.parse_args()
    ours, hydra = load_ours(a.ours), load_hydra(a.hydra)
    print("| case | HydraGNN ms (rounds) | hydragnn ms (rounds) | HydraGNN graphs/s | hydragnn graphs/s "
          "| ratio | HydraGNN peak MB | hydragnn peak MB | params HydraGNN / hydragnn |")
    print("|---|---|---|---|---|---|---|---|---|")
    fmt = lambda v: ", ".join(f"{x:.2f}" for x in v)
    for k in sorted(set(ours) | set(hydra), key=lambda s: (s.split("/")[-1], s.split("/")[1], s)):
        if k.startswith("md/"):
            continue
        o = [t for t, *_ in ours.get(k, [])]
        h = [t for t, *_ in hydra.get(k, [])]
        mo = st.median(o) if o else None
        mh = st.median(h) if h else None
        ratio = f"**{mh / mo:.2f}x**" if (mo and mh) else "—"
        hp = max((m for _, m, _ in hydra.get(k, []) if m is not None), default=None)
        op = max((m for _, m, _, _ in ours.get(k, []) if m is not None), default=None)
        pn_h = next((int(n) for *_, n in hydra.get(k, []) if n is not None), None)
        pn_o = next((int(n) for *_, n in ours.get(k, []) if n is not None), None)
        params = f"{pn_h if pn_h is not None else '—'} / {pn_o if pn_o is not None else '—'}"
        if pn_h is not None and pn_o is not None and abs(pn_h - pn_o) > MAX_PARAM_GAP:
            ratio += " (architectures differ)"
        print(f"| {k} | {f'{mh:.2f} ({fmt(h)})' if mh else '—'} | {f'{mo:.2f} ({fmt(o)})' if mo else '—'} "
              f"| {f'{a.graphs * 1000 / mh:.0f}' if mh else '—'} | {f'{a.graphs * 1000 / mo:.0f}' if mo else '—'} "
              f"| {ratio} | {f'{hp:.0f}' if hp is not None else '—'} | {f'{op:.0f}' if op is not None else '—'} "
              f"| {params} |")


if __name__ == "__main__":
    main()
