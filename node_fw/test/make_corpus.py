#!/usr/bin/env python3
"""Seed corpus for the libFuzzer target: every vector of tests/vectors/frames.json, behind 2 state bytes."""

import json
import sys
from pathlib import Path

src, dst = sys.argv[1], Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for v in json.load(open(src))["frames"]:
    g = v["node"]["given"]
    (dst / v["name"]).write_bytes(bytes([g["address"], g["flags"]]) + bytes.fromhex(v["hex"]))
print(f"{len(list(dst.iterdir()))} seeds in {dst}")
