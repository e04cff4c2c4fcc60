#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Check the include layering of the library ("the house", docs/design.md#layers).

Every header under include/hydragnn/ and kernels/hydragnn/ belongs to a layer named by its
directory. From the bottom:

    compat, core, graph, kernels, nn, conv, heads, model, autodiff, io, train, sim, dist, cli, api

(kernels = kernels/hydragnn/kernels/, api = the top-level headers include/hydragnn/*.hpp that a
simulation code includes, every other layer = include/hydragnn/<layer>/). Rules:

  layer           a header includes hydragnn headers only of its own layer or lower ones
  unlayered       a header lies in no layer (e.g. include/hydragnn/models/)
  json            nlohmann only in io and above (io, train, dist, cli)
  kokkos-version  KOKKOS_VERSION only in compat (also checked in benchmarks/, examples/, tests/)
  kernel          Kokkos::parallel_for / parallel_reduce / parallel_scan only in kernels and compat
  parsing         no string-to-value parsing (std::sto*, strto*, ato*, std::invalid_argument,
                  parse_*) in kernels, core, nn, conv

Each violation is printed as `file:line: rule: text`. scripts/layers_allowlist.txt lists known
violations that are tolerated for now, one per line as `file: rule: text  # reason` (the line number
is left out so that edits elsewhere in a file do not invalidate the list). The check fails on a
violation that is not in the list and on a list line that matches no violation (the list can only
shrink). Python 3 standard library only.

    python3 scripts/check_layers.py [--root DIR] [--allowlist FILE]
"""
import argparse
import os
import re
import sys

LAYERS = ["compat", "core", "graph", "kernels", "nn", "conv", "heads", "model", "autodiff", "io", "train",
          "sim", "dist", "cli", "api"]
RANK = {name: i for i, name in enumerate(LAYERS)}
JSON_MIN = RANK["io"]
PARSING_LAYERS = {"kernels", "core", "nn", "conv"}
KERNEL_LAYERS = {"kernels", "compat"}
HEADER_DIRS = ["include/hydragnn", "kernels/hydragnn"]
# Outside the library headers only the Kokkos-version rule applies.
OTHER_DIRS = ["benchmarks", "examples", "tests"]
SOURCE_EXT = (".hpp", ".h", ".cpp", ".cc", ".cxx", ".inl")

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
KERNEL_RE = re.compile(r'\bparallel_(for|reduce|scan)\s*(\()?')
LABEL_RE = re.compile(r'\s*"([^"]*)"')
PARSING_RE = re.compile(r'\bstd::sto(i|l|ll|ul|ull|f|d|ld)\b|\bstrto[a-z]+\b|\bato[ifl]l?\b|'
                        r'\bstd::invalid_argument\b|\bparse_\w*')


def layer_of(rel):
    """Layer of a header path relative to the repository root, or None (not in a layer)."""
    parts = rel.split("/")
    if parts[:3] == ["kernels", "hydragnn", "kernels"] and len(parts) == 4:
        return "kernels"
    if parts[:2] == ["include", "hydragnn"] and len(parts) == 3:
        return "api"
    if parts[:2] == ["include", "hydragnn"] and len(parts) == 4 and parts[2] in RANK and parts[2] not in ("kernels", "api"):
        return parts[2]
    return None


def strip_comments(lines):
    """The lines with // and /* */ comments blanked (string literals are kept)."""
    out = []
    in_block = False
    for line in lines:
        res = []
        i = 0
        in_str = False
        while i < len(line):
            c = line[i]
            if in_block:
                if line.startswith("*/", i):
                    in_block = False
                    i += 2
                else:
                    i += 1
                continue
            if in_str:
                res.append(c)
                if c == "\\" and i + 1 < len(line):
                    res.append(line[i + 1])
                    i += 2
                    continue
                if c == '"':
                    in_str = False
                i += 1
                continue
            if line.startswith("//", i):
                break
            if line.startswith("/*", i):
                in_block = True
                i += 2
                continue
            if c == '"':
                in_str = True
            res.append(c)
            i += 1
        out.append("".join(res))
    return out


def norm(text):
    return " ".join(text.split())


class Checker:
    def __init__(self, root):
        self.root = root
        self.violations = []  # (file, line, rule, text)

    def add(self, rel, line, rule, text):
        self.violations.append((rel, line, rule, norm(text)))

    def resolve_include(self, rel, kind, target):
        """Repository-relative path of an included hydragnn header, or None if it is not one."""
        if kind == '"':
            cand = os.path.normpath(os.path.join(os.path.dirname(rel), target)).replace(os.sep, "/")
            if os.path.isfile(os.path.join(self.root, cand)):
                return cand if any(cand.startswith(d + "/") for d in HEADER_DIRS) else None
        if not target.startswith("hydragnn/"):
            return None
        for base in ("include", "kernels"):
            cand = base + "/" + target
            if os.path.isfile(os.path.join(self.root, cand)):
                return cand
        return "include/" + target  # missing header: report against the include/ tree

    def check_header(self, rel):
        with open(os.path.join(self.root, rel), encoding="utf-8", errors="replace") as f:
            raw = f.read().split("\n")
        code = strip_comments(raw)
        layer = layer_of(rel)
        if layer is None:
            self.add(rel, 1, "unlayered", "header is not in a layer (move it into one of: " + ", ".join(LAYERS) + ")")
        for n, (line, src) in enumerate(zip(code, raw), start=1):
            m = INCLUDE_RE.match(line)
            if m:
                inc = self.resolve_include(rel, m.group(1), m.group(2))
                if inc is not None and layer is not None:
                    inc_layer = layer_of(inc)
                    # an include of an unlayered header is not judged here: that header is reported itself
                    if inc_layer is not None and inc_layer != layer and RANK[inc_layer] > RANK[layer]:
                        self.add(rel, n, "layer", "includes %s (%s) from %s" % (m.group(2), inc_layer, layer))
                if "nlohmann" in m.group(2) and (layer is None or RANK[layer] < JSON_MIN):
                    self.add(rel, n, "json", src.strip())
                continue
            if "nlohmann" in line and (layer is None or RANK[layer] < JSON_MIN):
                self.add(rel, n, "json", src.strip())
            if "KOKKOS_VERSION" in line and layer != "compat":
                self.add(rel, n, "kokkos-version", src.strip())
            if layer not in KERNEL_LAYERS:
                for km in KERNEL_RE.finditer(line):
                    # name the kernel by its label (the next string literal) when there is one
                    rest = line[km.end():] + " " + " ".join(code[n:n + 2])
                    lm = LABEL_RE.match(rest) if km.group(2) else None
                    label = ' "%s"' % lm.group(1) if lm else ""
                    self.add(rel, n, "kernel", "Kokkos::parallel_%s%s" % (km.group(1), label or ": " + src.strip()))
            if layer in PARSING_LAYERS:
                for pm in PARSING_RE.finditer(line):
                    self.add(rel, n, "parsing", "%s in: %s" % (pm.group(0), src.strip()))

    def check_other(self, rel):
        with open(os.path.join(self.root, rel), encoding="utf-8", errors="replace") as f:
            code = strip_comments(f.read().split("\n"))
        for n, line in enumerate(code, start=1):
            if "KOKKOS_VERSION" in line:
                self.add(rel, n, "kokkos-version", line.strip())

    def run(self):
        for top in HEADER_DIRS:
            for dirpath, _, files in os.walk(os.path.join(self.root, top)):
                for fn in sorted(files):
                    if fn.endswith(SOURCE_EXT):
                        rel = os.path.relpath(os.path.join(dirpath, fn), self.root).replace(os.sep, "/")
                        self.check_header(rel)
        for top in OTHER_DIRS:
            for dirpath, _, files in os.walk(os.path.join(self.root, top)):
                for fn in sorted(files):
                    if fn.endswith(SOURCE_EXT):
                        rel = os.path.relpath(os.path.join(dirpath, fn), self.root).replace(os.sep, "/")
                        self.check_other(rel)
        self.violations.sort()
        return self.violations


def key_of(v):
    return "%s: %s: %s" % (v[0], v[2], v[3])


def read_allowlist(path):
    """{key: line number} of the allow-list (blank lines and lines starting with # are skipped)."""
    entries = {}
    if not os.path.isfile(path):
        return entries
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            key, sep, reason = s.partition("  #")
            if not sep or not reason.strip():
                print("%s:%d: allowlist: every line needs a reason after '  # ': %s" % (path, n, s))
                entries.setdefault(norm(key), -n)  # negative: malformed
                continue
            entries[norm(key)] = n
    return entries


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.dirname(here), help="repository root")
    ap.add_argument("--allowlist", default=None, help="default: ROOT/scripts/layers_allowlist.txt")
    ap.add_argument("--all", action="store_true", help="also print the allowed violations")
    args = ap.parse_args()
    allow_path = args.allowlist or os.path.join(args.root, "scripts", "layers_allowlist.txt")
    violations = Checker(args.root).run()
    allow = read_allowlist(allow_path)
    bad = 0
    seen = set()
    allowed = 0
    for v in violations:
        k = key_of(v)
        if k in allow and allow[k] > 0:
            seen.add(k)
            allowed += 1
            if args.all:
                print("%s:%d: %s: %s (allowed)" % v)
            continue
        print("%s:%d: %s: %s" % v)
        bad += 1
    rel_allow = os.path.relpath(allow_path, args.root)
    for k, n in sorted(allow.items(), key=lambda kv: abs(kv[1])):
        if n < 0:
            bad += 1
        elif k not in seen:
            print("%s:%d: stale-allowlist: no such violation any more, delete this line: %s" % (rel_allow, n, k))
            bad += 1
    status = "FAILED" if bad else "ok"
    print("check_layers: %s (%d problem(s), %d allowed violation(s) in %s)" % (status, bad, allowed, rel_allow))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
