#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Exit 0 when two hydragnn checkpoints hold bitwise the same model, optimizer state and training state,
whatever their configs say (e.g. the same data read from extxyz and from HDF5).

    python3 tests/ckpt_same.py A.hgnn B.hgnn
"""
import json
import struct
import sys


def parts(path):
    with open(path, "rb") as f:
        data = f.read()
    line_end = data.index(b"\n") + 1
    (n,) = struct.unpack("<Q", data[line_end:line_end + 8])
    header = json.loads(data[line_end + 8:line_end + 8 + n])
    header.pop("config", None)
    # the trailing 8 bytes are a checksum over everything, the config included
    return data[:line_end], header, data[line_end + 8 + n:-8]


a, b = parts(sys.argv[1]), parts(sys.argv[2])
for what, x, y in zip(("magic", "header", "payload"), a, b):
    if x != y:
        print("%s and %s differ in the %s" % (sys.argv[1], sys.argv[2], what))
        sys.exit(1)
