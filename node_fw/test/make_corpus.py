#!/usr/bin/env python3
"""Seed corpus for the libFuzzer target: every vector of tests/vectors/frames.json, behind 2 state bytes."""

import json
import sys
from pathlib import Path

src, dst = sys.argv[1], Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for v in json.load(open(src))["frames"]:
    g = v["node"]["given"]
    # state byte 0: the address, + 70 when the node holds a finished snapshot (fuzz_protocol.c)
    first = g["address"] + (70 if g.get("snap") == 4 else 0)
    (dst / v["name"]).write_bytes(bytes([first, g["flags"]]) + bytes.fromhex(v["hex"]))
print(f"{len(list(dst.iterdir()))} seeds in {dst}")
