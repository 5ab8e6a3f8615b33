"""`packmon bench --clock-spread`: what the ring does when its nodes' clocks disagree.

Two parts, on the Python model ring (per-node bit timing) and/or simavr (the real image):

1. Tolerance: every node's clock off by +s, -s, +s, ... (neighbours differ by 2s, the worst case for a
   hop) crossed with a coupler skew (rising edges later than falling ones by skew us on every hop):
   scans lost, bytes corrupted on the hops (received wrong, or lost), the largest TX FIFO backlog.
   Then the tolerance as a number: the largest s with no scan lost, for each skew.
2. Targets: factory errors uniform in +-spread (8 %), pack voltages ramping 3.0-4.2 V and temperatures
   15-35 degC during the run, a node reset halfway: scans lost before the ring converged after
   power-on, after convergence, and after the reset, with the trim and without it side by side.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hub import codec

from .sim.clocks import ClockSpread

SPREADS = (0.0, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.08)
SKEWS_US = (0.0, 20.0, 40.0)


def add_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("clock spread (--clock-spread)")
    g.add_argument("--clock-spread", action="store_true", help="measure the ring with per-node clock errors")
    g.add_argument("--scans", type=int, default=0,
                   help="scans per tolerance cell (default: 20 model, 3 simavr)")
    g.add_argument("--spreads", default=",".join(f"{s * 100:g}" for s in SPREADS),
                   help="tolerance table: clock errors in %% (nodes alternate +s, -s)")
    g.add_argument("--skews", default=",".join(f"{s:g}" for s in SKEWS_US), help="coupler skews in us")
    g.add_argument("--target-scans", type=int, default=0,
                   help="scans of the target run (default: 10000 model, 300 simavr; 0 with --no-targets)")
    g.add_argument("--no-targets", action="store_true", help="only the tolerance table")
    g.add_argument("--no-table", action="store_true", help="only the target runs")
    g.add_argument("--seed", type=int, default=1)


@dataclass
class Cell:
    scans: int = 0
    lost: int = 0
    corrupted: int = 0
    hwm: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Engine:
    """One ring of either kind with the counters the tables need."""

    def __init__(self, kind: str, n: int, clocks: ClockSpread, trim: bool, mv: list[int] | None = None) -> None:
        self.kind = kind
        self.n = n
        self.seq = 0
        mv = mv or [3300] * n
        if kind == "model":
            from .sim.model_ring import ModelRing

            self.eng = ModelRing(n, mv=mv, clocks=clocks, trim=trim)
        else:
            from .sim.simavr_ring import SimavrRing

            self.eng = SimavrRing(n, mv=mv, clocks=clocks, trim=trim)  # type: ignore[assignment]
        self._corrupted = 0

    def close(self) -> None:
        close = getattr(self.eng, "close", None)
        if close:
            close()

    def exchange(self, cmd: int, cnt: int) -> str | None:
        """One frame round the ring; None if the hub accepts it, else the hub's reason."""
        self.seq = (self.seq + 1) & 0xFF
        frame = codec.encode(cmd, self.seq, 0, cnt)
        ex = self.eng.exchange(frame)
        if self.kind == "simavr":
            self._corrupted += hop_damage(frame, self.eng.wires(), cmd)  # type: ignore[attr-defined]
        err = codec.check(ex.rx, len(ex.rx))
        if err == codec.ERR_RING_FAULT:
            return f"ring_fault@{codec.status_of(ex.rx) & codec.FAULT_MASK}"  # the node that saw the bad CRC
        if err != codec.OK:
            return codec.ERROR_NAMES[err] if 0 <= err < len(codec.ERROR_NAMES) else str(err)
        d = codec.decode(ex.rx)
        if d["cmd"] != codec.CMD_NAMES.get(cmd) or d["seq"] != self.seq or d["cnt"] != cnt:
            return "mismatch"
        if cmd == codec.CMD_ENUMERATE and d["addr"] != self.n:
            return "count"
        if cmd == codec.CMD_SCAN and d["nodes"] != self.n:
            return "count"
        return None

    def scan(self) -> str | None:
        return self.exchange(codec.CMD_SCAN, self.n)

    def enumerate(self) -> str | None:
        return self.exchange(codec.CMD_ENUMERATE, 0)

    @property
    def corrupted(self) -> int:
        if self.kind == "model":
            return self.eng.corrupted  # type: ignore[attr-defined]
        return self._corrupted

    def hwm(self) -> int:
        if self.kind == "model":
            return self.eng.fifo_hwm  # type: ignore[attr-defined]
        return max(self.eng.fifo_hwm() or [0])  # type: ignore[attr-defined]

    def set_pack(self, i: int, mv: int, temp: int) -> None:
        self.eng.set_pack(i, mv=mv, temp=temp)

    def reset_node(self, i: int) -> None:
        self.eng.reset_node(i)


def hop_damage(frame: bytes, wires: list[bytes], cmd: int) -> int:
    """Bytes changed on the way through each hop other than those the node writes (its slot, ADDR of
    ENUMERATE, NODES, STATUS, CRC), plus bytes missing or extra: what the nodes received wrong."""
    damage = 0
    prev = frame
    for out in wires:
        cnt = prev[4] if len(prev) > 4 else 0
        written = {len(prev) - 3, len(prev) - 2, len(prev) - 1, 5 + 8 * cnt}
        if cmd == codec.CMD_ENUMERATE:
            written.add(3)
        if cmd == codec.CMD_SCAN:
            for i in range(cnt):
                p = 5 + 8 * i
                if p < len(prev) and prev[p] == 0:
                    written.update(range(p, p + 8))
                    break
        damage += abs(len(prev) - len(out))
        damage += sum(1 for p in range(min(len(prev), len(out))) if p not in written and prev[p] != out[p])
        prev = out
    return damage


def alternating(n: int, s: float, skew_us: float) -> ClockSpread:
    return ClockSpread([(s if i % 2 == 0 else -s) * 1e6 for i in range(n)], rise_us=[2.0 + skew_us] * (n + 1),
                       fall_us=[2.0] * (n + 1))


def tolerance_cell(kind: str, n: int, s: float, skew: float, scans: int, trim: bool) -> Cell:
    eng = Engine(kind, n, alternating(n, s, skew), trim)
    cell = Cell()
    try:
        tries = 0
        while eng.enumerate() is not None and tries < 3:
            tries += 1
        for _ in range(scans):
            cell.scans += 1
            err = eng.scan()
            if err:
                cell.lost += 1
                cell.errors[err] = cell.errors.get(err, 0) + 1
        cell.corrupted = eng.corrupted
        cell.hwm = eng.hwm()
    finally:
        eng.close()
    return cell


def tolerance_table(kind: str, sizes: list[int], spreads: list[float], skews: list[float], scans: int, trim: bool,
                    out: Callable[[str], None] = print) -> dict[tuple[int, float, float], Cell]:
    cells: dict[tuple[int, float, float], Cell] = {}
    label = "trim on" if trim else "no trim"
    out(f"\n{kind}, {label}: nodes alternate +s/-s (neighbours differ by 2s); coupler skew: rising edges later "
        f"than falling; {scans} scans a cell; cell = scans lost / bytes corrupted / TX FIFO high-water (bytes)")
    for n in sizes:
        out(f"{n} packs")
        out(f"{'s':>6} | " + " | ".join(f"{'skew ' + format(k, 'g') + ' us':>16}" for k in skews))
        for s in spreads:
            row = []
            for k in skews:
                c = tolerance_cell(kind, n, s, k, scans, trim)
                cells[(n, s, k)] = c
                row.append(f"{c.lost:>3}/{c.corrupted:>5}/{c.hwm:>3}".rjust(16))
            out(f"{s * 100:>5.1f}% | " + " | ".join(row))
        for k in skews:
            # the tolerance is the largest s below the first failure
            tol = 0.0
            for s in spreads:
                if cells[(n, s, k)].lost:
                    break
                tol = s
            out(f"tolerance, {n} packs, skew {k:g} us: +-{tol * 100:.1f} % (neighbours {2 * tol * 100:.1f} % "
                "apart) with no scan lost")
    return cells


@dataclass
class TargetResult:
    scans: int
    converge_scans: int  # scans lost after power-on before the first good one (ENUMERATE counted)
    lost_after: int  # scans lost after convergence, not counting those after the reset
    reset_lost: int  # scans lost after the node reset before the next good one
    errors: dict[str, int]
    corrupted: int
    hwm: int
    wall: float


def target_run(kind: str, n: int, scans: int, trim: bool, spread: float = 0.08, seed: int = 1,
               ramp_scans: int = 500, skew_us: float = 20.0, hub_skew_us: float | None = None) -> TargetResult:
    """Factory errors uniform in +-spread; each pack's voltage ramps 3.0 -> 4.2 -> 3.0 V over 2*ramp_scans
    scans (its own phase), its temperature 15 -> 35 -> 15 degC over 3*ramp_scans; node n/2 is reset
    halfway through."""
    rng = random.Random(seed)
    clocks = ClockSpread.random(n, spread, skew_us=skew_us, seed=seed)
    if hub_skew_us is not None:  # the last hop, into the hub's receiver, with its own coupler
        clocks.rise_us[n] = clocks.fall_us[n] + hub_skew_us
    phase_v = [rng.random() for _ in range(n)]
    phase_t = [rng.random() for _ in range(n)]

    def tri(x: float) -> float:
        x %= 1.0
        return 2 * x if x < 0.5 else 2 - 2 * x

    def truth(k: int) -> tuple[list[int], list[int]]:
        mv = [round(3000 + 1200 * tri(phase_v[i] + k / (2 * ramp_scans))) for i in range(n)]
        tc = [round(150 + 200 * tri(phase_t[i] + k / (3 * ramp_scans))) for i in range(n)]
        return mv, tc

    mv0, _ = truth(0)
    t0 = time.monotonic()
    eng = Engine(kind, n, clocks, trim, mv=mv0)
    errors: dict[str, int] = {}
    converge = 0
    lost_after = 0
    reset_lost = 0
    converged = False
    in_reset = False
    try:
        # power-on: ENUMERATE until it works, then scans; every failure before the first good scan counts
        err = eng.enumerate()
        while err is not None and converge < 20:
            converge += 1
            errors[err] = errors.get(err, 0) + 1
            err = eng.enumerate()
        for k in range(scans):
            if kind == "model" or k % 10 == 0:
                mv, tc = truth(k)
                for i in range(n):
                    eng.set_pack(i, mv[i], tc[i])
            if k == scans // 2:
                eng.reset_node(n // 2)
                in_reset = True
            err = eng.scan()
            if err:
                errors[err] = errors.get(err, 0) + 1
                if not converged:
                    converge += 1
                elif in_reset:
                    reset_lost += 1
                else:
                    lost_after += 1
            else:
                converged = True
                in_reset = False
        return TargetResult(scans, converge, lost_after, reset_lost, errors, eng.corrupted, eng.hwm(),
                            time.monotonic() - t0)
    finally:
        eng.close()


def targets(kind: str, sizes: list[int], scans: int, seed: int, out: Callable[[str], None] = print) -> dict:
    out(f"\n{kind}: targets. Factory errors uniform in +-8 %, OSCCAL slopes 1 +- 20 %, coupler skew 20 us; pack "
        "voltages ramp 3.0-4.2 V at 2.4 mV a scan (full swing in 500 scans), temperatures 15-35 degC at "
        "0.13 degC a scan (simavr: applied every 10 scans); node N/2 reset halfway")
    out(f"{'packs':>5} {'trim':>5} {'scans':>6} | {'lost at power-on':>16} {'lost after':>10} "
        f"{'lost after reset':>16} | {'bytes bad':>9} {'FIFO hwm':>8} {'wall s':>7}  reasons")
    results = {}
    for n in sizes:
        for trim in (True, False):
            # without the trim the ring mostly fails: fewer scans show it as well
            k = scans if trim else max(10, min(scans, 200 if kind == "model" else 20))
            r = target_run(kind, n, k, trim, seed=seed)
            results[(n, trim)] = r
            why = ", ".join(f"{e} {c}" for e, c in sorted(r.errors.items()))
            out(f"{n:>5} {'on' if trim else 'off':>5} {k:>6} | {r.converge_scans:>16} {r.lost_after:>10} "
                f"{r.reset_lost:>16} | {r.corrupted:>9} {r.hwm:>8} {r.wall:>7.0f}  {why}")
        r = results[(n, True)]
        ok = r.lost_after == 0 and r.converge_scans <= 3 and r.reset_lost <= 3
        out(f"target, {n} packs with trim: 0 scans lost once converged, converged within 3 scans after "
            f"power-on and after a reset: {'yes' if ok else 'NO'}")
    return results


def run(args: argparse.Namespace, sizes: list[int], engines: list[str]) -> int:
    spreads = [float(x) / 100 for x in args.spreads.split(",") if x.strip()]
    skews = [float(x) for x in args.skews.split(",") if x.strip()]
    status = 0
    for kind in engines:
        if kind == "simavr":
            from .sim import simavr_ring

            ok, why = simavr_ring.available()
            if not ok:
                print(f"simavr engine skipped: {why}")
                continue
        scans = args.scans or (20 if kind == "model" else 3)
        if not args.no_table:
            for trim in (False, True):
                tolerance_table(kind, sizes, spreads, skews, scans, trim)
        if not args.no_targets:
            t = args.target_scans or (10000 if kind == "model" else 300)
            res = targets(kind, sizes, t, args.seed)
            if any(r.lost_after or r.converge_scans > 3 or r.reset_lost > 3 for (n, tr), r in res.items() if tr):
                status = 1
    return status
