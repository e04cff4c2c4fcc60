#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Train every example config of a HydraGNN checkout with our CLI, one epoch each, on a small slice of
the project's own Stillinger-Weber silicon data (examples/si_sw): which of HydraGNN's configs load and
train unchanged except for their dataset.

    python3 tools/example_configs.py HYDRAGNN_DIR [--cli build/examples/hydragnn] [--out DIR] [--timeout S]

HYDRAGNN_DIR is a checkout of ORNL/HydraGNN (docs/config.md names the commit measured). For each
examples/**/*.json: the Dataset section is replaced by the si_sw slice (32 train, 8 validation, 8 test
structures), Training.num_epoch set to 1, everything else kept; one line per config goes to stdout and
DIR/results.tsv: "trains", the CLI's error, "not a training config" (no NeuralNetwork section) or
"invalid JSON". Standard library only.
"""
import argparse
import itertools
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def frames(path):
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        n = int(lines[i])
        yield lines[i:i + 2 + n]
        i += 2 + n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hydragnn")
    ap.add_argument("--cli", default=str(ROOT / "build" / "examples" / "hydragnn"))
    ap.add_argument("--out", default="example_configs")
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    out = pathlib.Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n in (("train", 32), ("validate", 8), ("test", 8)):
        part = list(itertools.islice(frames(ROOT / "examples" / "si_sw" / f"{split}.extxyz"), n))
        (out / f"{split}.extxyz").write_text("\n".join(l for f in part for l in f) + "\n")
        data[split] = str(out / f"{split}.extxyz")
    configs = sorted(pathlib.Path(a.hydragnn, "examples").rglob("*.json"))
    trained = 0
    with open(out / "results.tsv", "w") as res:
        for path in configs:
            name = str(path.relative_to(a.hydragnn))
            try:
                c = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                msg = f"invalid JSON: {e}"
            else:
                if not isinstance(c, dict) or "NeuralNetwork" not in c:
                    msg = "not a training config"
                else:
                    c["Dataset"] = {"name": "si_sw", "format": "extxyz", "path": data}
                    c["NeuralNetwork"].setdefault("Training", {})["num_epoch"] = 1
                    tag = name.replace("/", "_")[:-5]
                    cfg = out / f"{tag}.json"
                    cfg.write_text(json.dumps(c, indent=1))
                    try:
                        r = subprocess.run([a.cli, "train", "--config", str(cfg), "--output", str(out / tag),
                                            "--overwrite"], capture_output=True, text=True, timeout=a.timeout)
                        lines = r.stderr.strip().splitlines() or ["?"]
                        msg = "trains" if r.returncode == 0 else "fails: " + lines[-1]
                    except subprocess.TimeoutExpired:
                        msg = f"timeout {a.timeout:g} s"
            trained += msg == "trains"
            print(f"{name}\t{msg}", flush=True)
            res.write(f"{name}\t{msg}\n")
    print(f"{trained} of {len(configs)} example configs train", file=sys.stderr)


if __name__ == "__main__":
    main()
