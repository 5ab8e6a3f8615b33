#!/usr/bin/env python3
"""The heap each feature combination needs, measured on the real MicroPython unix port: the hub for 64 packs
precompiled as `packmon deploy` puts it on a board (tools/packmon/mpy_hub.py, tools/mpy/hub_main.py), run
against a real Mosquitto (and a modelled INA228 for the shunt) for CYCLES scans, collecting as the harness
does. Per combination it prints:

  live KB   what stays allocated after a collection at the end (modules' bytecode + the hub's objects),
            measured in a large heap
  min heap  the smallest -X heapsize (in 4 KB steps) in which the run completes with no MemoryError
  free@100k the free heap after a collection at the end of a run in 100 KB ("-" if it does not fit)

Numbers are from the 64-bit unix port: objects (pointers, dict slots) are larger than on the 32-bit ESP32,
so a board needs somewhat less. docs/hub.md "Memory" turns them into guidance.

    python3 tools/mpy/heap_matrix.py [--cycles 30] [--only base,discovery]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from packmon import mpy_hub  # noqa: E402
from packmon.sim.model_ring import ReplayRing  # noqa: E402

PACKS = 64
SHUNT = {"enabled": True, "chip": "ina228", "shunt_ohms": 0.0005, "max_current_a": 200}
BATTERY = {"enabled": True, "chemistry": "nmc", "capacity_ah": 100}
OUTPUTS = {"charge_enable": {"pin": 25}, "discharge_enable": {"pin": 26}, "fan": {"pin": 27}, "buzzer": {"pin": 14}}
COMBOS: list[tuple[str, dict[str, Any]]] = [
    ("base", {}),
    ("discovery", {"discovery": {"enabled": True}}),
    ("shunt", {"shunt": SHUNT}),
    ("battery", {"battery": BATTERY}),
    ("outputs", {"outputs": OUTPUTS}),
    ("everything", {"discovery": {"enabled": True}, "shunt": SHUNT, "battery": BATTERY, "outputs": OUTPUTS}),
]
DONE = re.compile(r"done cycles (\d+) peak_alloc (\d+) free (\d+)(?: alloc (\d+))?")


class Broker:
    """A Mosquitto on a free loopback port, for the length of the measurement."""

    def __init__(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.tmp = Path(tempfile.mkdtemp(prefix="heap-matrix-"))
        conf = self.tmp / "m.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"{user}listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def config(port: int, state_file: str, over: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = {"mqtt": {"host": "127.0.0.1", "port": port, "timeout_s": 1, "keepalive_s": 5},
                         "scan_interval_s": 1, "stale_after_s": 5}
    if set(over) - {"discovery"}:  # a feature with state (the key is unknown to hubs older than them)
        c["state_file"] = state_file
    c.update(over)
    return c


def run(cfg: dict[str, Any], heap_kb: int, cycles: int) -> tuple[bool, int, int]:
    """(completed without MemoryError, allocated and free after the final collection)."""
    extra: dict[str, Any] = {}
    if cfg.get("shunt"):  # a modelled INA228 over the I2C bridge, and a wall clock for the daily counters
        from packmon.sim import ina

        extra = {"i2c_model": ina.make_model("ina228", 0.0005, lambda t: 12.5, time.monotonic), "wall": 9800 * 86400}
    with mpy_hub.MpyHub(ReplayRing(PACKS), cfg, heap=f"{heap_kb}k", cycles=cycles, nosleep=True, **extra) as hub:
        rc = hub.wait(timeout=300)
        lines = list(hub.lines)
    m = next((DONE.search(x) for x in reversed(lines) if DONE.search(x)), None)
    ok = rc == 0 and m is not None and not any("MemoryError" in x for x in lines)
    alloc = m and m.group(4)  # printed by tools/mpy/hub_main.py since the heap work; -1: not printed
    return ok, int(alloc) if alloc else -1, int(m.group(3)) if m else 0


def measure(name: str, over: dict[str, Any], port: int, cycles: int) -> tuple[str, float, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(port, str(Path(tmp) / "state.json"), over)
        big = 512
        ok, live, _ = run(cfg, big, cycles)
        if not ok:
            raise RuntimeError(f"{name}: does not run even in {big} KB")
        lo, hi = max(4, (live // 1024) // 4 * 4 if live > 0 else 64), big  # lo fails (or is untested), hi runs
        if run(cfg, lo, cycles)[0]:
            hi = lo
        while hi - lo > 4:
            mid = (lo + hi) // 2 // 4 * 4
            if run(cfg, mid, cycles)[0]:
                hi = mid
            else:
                lo = mid
        ok, _, free100 = run(cfg, 100, cycles)
    return name, live / 1024, hi, f"{free100 / 1024:.1f}" if ok else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=30, help="scans per run (discovery takes ~8 at 64 packs)")
    ap.add_argument("--only", default="", help="comma-separated combinations (default: all)")
    args = ap.parse_args()
    ok, why = mpy_hub.available()
    if not ok:
        print(f"heap_matrix: {why}", file=sys.stderr)
        return 1
    only = set(args.only.split(",")) if args.only else None
    broker = Broker()
    try:
        print(f"heap on the MicroPython unix port (64-bit), {PACKS} packs, hub precompiled (.mpy), {args.cycles} scans")
        print(f"{'features':<12} {'live KB':>8} {'min heap KB':>12} {'free@100k KB':>13}")
        for name, over in COMBOS:
            if only and name not in only:
                continue
            n, live, need, free100 = measure(name, over, broker.port, args.cycles)
            shown = f"{live:8.1f}" if live > 0 else f"{'-':>8}"
            print(f"{n:<12} {shown} {need:12d} {free100:>13}", flush=True)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
