"""`packmon bench --snapshot`: how close to one instant a bank snapshot samples, on the real firmware.

A SNAP (docs/protocol.md 3.5) asks every node to sample DELAY ticks (1/38400 s) after the frame ended at
node 1; node k, which saw the frame end k-1 hops later, waits DELAY - (k-1)*HOP/256 on its own clock. The
spread is the maximum minus the minimum, over the nodes, of the start of each node's first counted ADC
conversion of the snapshot's measurement (the third conversion: two are discarded after the reference
switches, node_fw/src/adc.c), measured in simavr with the real image: each core runs at its own frequency
(factory error, OSCCAL slope, drift with its pack's voltage and temperature: sim/clocks.py) after its clock
trim has converged, and the couplers delay rising edges. HOP is what the hub measures: the round trip of
the SNAP frame itself, (T - L byte times) / N.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from hub import codec

from .common import ShuntReading
from .sim.clocks import ClockSpread

BAUD = 9600
BYTE_S = 10 / BAUD
TICK_S = 1 / codec.SNAP_TICK_HZ
SNAP_LEN = codec.frame_len(codec.SNAP_CNT)
SNAP_S = (SNAP_LEN * (9 + codec.SNAP_STOP_BITS) - codec.SNAP_STOP_BITS + 1) / BAUD  # first start bit to last stop bit
MARGIN_TICKS = 154  # ~4 ms after the frame ended at the last node: its tail has left, its loop is free
CONVERSIONS = 36  # one measurement: 2 discarded + 16 bandgap, 2 discarded + 16 temperature (adc.c)
FIRST_COUNTED = 2  # index of the first counted conversion in a measurement


def add_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("snapshot spread (--snapshot)")
    g.add_argument("--snapshot", action="store_true",
                   help="measure the spread of a bank snapshot's sample instants (simavr, per-node clocks)")
    g.add_argument("--snapshot-runs", type=int, default=3, help="snapshots per ring size (default 3)")
    g.add_argument("--snapshot-clock", type=float, default=8.0,
                   help="factory clock errors uniform in +- this %% (trimmed away but for the residual)")
    g.add_argument("--snapshot-skew", type=float, default=20.0, help="coupler skew in us (not on the hub's hop)")
    g.add_argument("--snapshot-hop-us", type=float, default=0.0,
                   help="use this HOP (as the hub's snapshot.hop_us) instead of measuring the round trip")


@dataclass
class SpreadResult:
    n: int
    hop_s: float
    delay_ticks: int
    spreads_s: list[float] = field(default_factory=list)
    offsets_s: list[float] = field(default_factory=list)  # mean sample instant - the intended instant
    missing: list[int] = field(default_factory=list)  # positions without the snapshot, per run (summed)
    failed: dict[str, int] = field(default_factory=dict)
    clock_err: tuple[float, float] = (0.0, 0.0)  # the nodes' frequencies against nominal after the trim
    instants_s: list[list[float]] = field(default_factory=list)  # per run, each node's instant - the intended
    node_err: list[float] = field(default_factory=list)  # each node's clock against nominal, after the runs
    node_eff: list[float] = field(default_factory=list)  # each node's bit rate against the hub's, dither included


def first_counted(starts: list[float], instant: float) -> float:
    """The start of the first counted conversion of the measurement that began nearest `instant`: conversions
    come back to back (~0.1 ms apart) within a measurement, measurements are >= 1 ms apart; a regular
    measurement the snapshot aborted runs into it, so the snapshot's is the group's last 36."""
    groups: list[list[float]] = []
    for t in starts:
        if groups and t - groups[-1][-1] < 0.001:
            groups[-1].append(t)
        else:
            groups.append([t])
    full = [g for g in groups if len(g) >= CONVERSIONS]
    if not full:
        return float("nan")
    g = min(full, key=lambda g: abs(g[-CONVERSIONS] - instant))
    return g[-CONVERSIONS + FIRST_COUNTED]


def snap_frame(seq: int, delay: int, hop256: int) -> bytes:
    buf = bytearray(SNAP_LEN)
    codec.build_snap(buf, seq, delay, hop256)
    return bytes(buf)


def measure(n: int, runs: int = 3, clock: float = 0.08, skew_us: float = 20.0, seed: int = 1,
            out: Callable[[str], None] | None = None, ideal: bool = False, hop_us: float = 0.0) -> SpreadResult:
    """ideal: every node's clock exact (no factory error, no drift, no skew): what the mechanism itself
    (hop jitter, the main loop's latency, the ADC start) leaves when the waits are timed perfectly."""
    from .sim.simavr_ring import SimavrRing

    rng = random.Random(seed)
    if ideal:
        clocks = ClockSpread([0.0] * n, kv_ppm=0.0, kt_ppm=0.0)
    else:
        clocks = ClockSpread.random(n, clock, skew_us=skew_us, seed=seed)
        clocks.rise_us[n] = clocks.fall_us[n]  # a skew-free coupler into the hub (protocol.md 5)
    mv = [rng.randint(3000, 4200) for _ in range(n)]  # every pack at its own voltage: its own clock drift
    temp = [rng.randint(150, 350) for _ in range(n)]
    eng = SimavrRing(n, mv=mv, temp=temp, clocks=clocks)
    res = SpreadResult(n, 0.0, 0)
    seq = 0

    def xchg(frame: bytes) -> tuple[int, bytes, float]:
        ex = eng.exchange(frame, stop_bits=codec.SNAP_STOP_BITS if frame[1] == codec.CMD_SNAP else 1)
        return codec.check(ex.rx, len(ex.rx)), ex.rx, ex.seconds

    def fail(err: int) -> None:
        name = codec.ERROR_NAMES[err] if 0 <= err < len(codec.ERROR_NAMES) else str(err)
        res.failed[name] = res.failed.get(name, 0) + 1

    try:
        # power-on: ENUMERATE, then scans until the trim has settled (10 clean scans in a row)
        for _ in range(20):
            seq += 1
            err, rx, _ = xchg(codec.encode(codec.CMD_ENUMERATE, seq, 0, 0))
            if err == codec.OK and rx[3] == n:
                break
        clean = 0
        for _ in range(30):
            seq += 1
            err, _, _ = xchg(codec.encode(codec.CMD_SCAN, seq, 0, n))
            clean = clean + 1 if err == codec.OK else 0
            if clean >= 10:  # the trim's clocks still wander for a few frames after they lock
                break
        # HOP as the hub measures it: the round trip of a SNAP frame (its DELAY is then irrelevant)
        # (twice: each node adds its hop's deviation from its clock as the SNAP before timed it; the round trip
        # less what the nodes added beyond HOP gives the hop at the hub's rate, which the nodes scale)
        hop = 3.1 * BYTE_S
        hop_sent = round(46 * 256)  # a first guess: 46 ticks (docs/protocol.md 5)
        good = 0
        for _ in range(6):
            seq += 1
            err, rx, secs = xchg(snap_frame(seq, 0, hop_sent))
            if err == codec.OK:
                dev = codec.snap_elapsed(rx) - codec.SNAP_ELAPSED0 - n * hop_sent
                hop = (secs - SNAP_S - dev / 256 * TICK_S) / n
                good += 1
                if good == 2:
                    break
                eng.run(30)
                continue
            fail(err)
        eng.run(30)  # the calibration's own (immediate) snapshots end
        if hop_us:
            hop = hop_us * 1e-6
        hop256 = round(hop / TICK_S * 256)
        delay = round((n - 1) * hop256 / 256) + MARGIN_TICKS
        res.hop_s, res.delay_ticks = hop, delay
        for _ in range(runs):
            # the hub's cycle: a SCAN, then the SNAP (whose corrections the nodes took from the SNAP before)
            seq += 1
            err, _, _ = xchg(codec.encode(codec.CMD_SCAN, seq, 0, n))
            if err != codec.OK:
                fail(err)
            seq += 1
            err, _, secs = xchg(snap_frame(seq, delay, hop256))
            if err != codec.OK:
                fail(err)
                continue
            # the exchange returned once the line into the hub had been quiet for 30 byte times; the instant is
            # DELAY after node 1's frame end (about when the hub's last byte ended), then 36 conversions
            intended = SNAP_S + delay * TICK_S
            eng.run(max(1.0, (intended + 0.010 - secs - 30 * BYTE_S) * 1000))
            firsts = [first_counted(s, intended) for s in eng.adc_starts(64)]
            res.instants_s.append([f - intended for f in firsts])
            res.spreads_s.append(max(firsts) - min(firsts))
            res.offsets_s.append(statistics.fmean(firsts) - intended)
            # the snapshot read back: every position must carry this SNAP's SEQ
            snap_seq = seq
            seq += 1
            err, rx, _ = xchg(codec.encode(codec.CMD_SNAPREAD, seq, 0, n))
            if err != codec.OK:
                fail(err)
                continue
            for i in range(n):
                o = codec.slot(i)
                if rx[o] != i + 1 or rx[o + 7] != snap_seq:
                    res.missing.append(i + 1)
            if out:
                out(f"  {n} packs: spread {res.spreads_s[-1] * 1e3:.3f} ms, mean instant "
                    f"{res.offsets_s[-1] * 1e3:+.3f} ms from the intended")
        state, _ = eng.clock_state()
        errs = [c.hz / eng.f_cpu - 1 for c in state]
        res.clock_err = (min(errs), max(errs))
        res.node_err = errs
        res.node_eff = eng.effective_clocks()
        return res
    finally:
        eng.close()


def run(args: argparse.Namespace, sizes: list[int], out: Callable[[str], None] = print) -> int:
    from .sim import simavr_ring

    ok, why = simavr_ring.available()
    if not ok:
        out(f"snapshot spread skipped: {why}")
        return 0
    out("Snapshot spread, simavr (real image). 'ideal': every clock exact (the mechanism's own floor); 'spread': "
        f"factory clock errors +-{args.snapshot_clock:g} % (trimmed), "
        f"OSCCAL slopes 1 +- 20 %, packs at 3.0-4.2 V and 15-35 degC (clock drift), coupler skew "
        f"{args.snapshot_skew:g} us; DELAY = (N-1) HOP + 4 ms, HOP "
        f"{f'{args.snapshot_hop_us:g} us (given)' if args.snapshot_hop_us else 'from the SNAP round trip'}; "
        f"{args.snapshot_runs} snapshots a size; the SNAP sent with two stop bits, each node timing its wait by it "
        "and adding its hop to ELAPSED (protocol 1.3)")
    out(f"{'clocks':>7} {'packs':>5} {'hop ms':>7} {'delay ms':>8} | {'spread ms (min/median/max)':>27} | "
        f"{'missing':>7} {'OSCCAL vs nominal':>18} {'with dither vs hub':>18}  failures")
    status = 0
    spreads: dict[int, float] = {}
    for n in sizes:
        for ideal in (True, False):
            r = measure(n, args.snapshot_runs, args.snapshot_clock / 100, args.snapshot_skew, args.seed, ideal=ideal,
                        hop_us=args.snapshot_hop_us)
            sp = sorted(r.spreads_s)
            cell = (f"{sp[0] * 1e3:.3f} / {statistics.median(sp) * 1e3:.3f} / {sp[-1] * 1e3:.3f}" if sp else "none")
            fails = ", ".join(f"{k} {v}" for k, v in sorted(r.failed.items()))
            out(f"{'ideal' if ideal else 'spread':>7} {n:>5} {r.hop_s * 1e3:>7.3f} "
                f"{r.delay_ticks * TICK_S * 1e3:>8.1f} | {cell:>27} | {len(r.missing):>7} "
                f"{r.clock_err[0] * 100:+.2f}..{r.clock_err[1] * 100:+.2f} % "
                f"{min(r.node_eff) * 100:+.2f}..{max(r.node_eff) * 100:+.2f} %  {fails}")
            if not sp or r.missing:
                status = 1
            if not ideal and sp:
                spreads[n] = sp[-1]
    if 64 in spreads:
        out(f"target: spread <= 1 ms at 64 packs: {'yes' if spreads[64] <= 0.001 else 'NO'} "
            f"(largest {spreads[64] * 1e3:.3f} ms, clocks spread, seed {args.seed})")
    else:
        out("target: spread <= 1 ms at 64 packs: not measured (--sizes without 64)")
    out("\nResistance estimate with and without snapshots, in the same run (two copies of hub/soc.py + "
        "hub/health.py on the same packs, current and scans; 2 mOhm +- 10 % packs, 50 A load steps, 60 steps; "
        "a snapshot's instants spread by the measured spread; see resistance_compare()):")
    out(f"{'packs':>5} {'ripple':>12} {'spread ms':>9} | {'without: max / rms %':>20} | {'with: max / rms %':>18} "
        f"| samples each")
    for n in sizes:
        if n < 2:
            continue
        sp = spreads.get(n, 0.0)
        for ripple, hz in ((0.0, 2.37), (5.0, 2.37), (5.0, 2.3)):
            c = resistance_compare(n, sp, ripple_a=ripple, ripple_hz=hz, seed=args.seed)
            out(f"{n:>5} {f'{ripple:g} A {hz:g} Hz':>12} {sp * 1e3:>9.3f} | "
                f"{c['plain_max_pct']:>9.2f} / {c['plain_rms_pct']:>7.2f} | {c['snap_max_pct']:>8.2f} / "
                f"{c['snap_rms_pct']:>7.2f} | {c['snap_samples_min']}")
    out("(2.3 Hz: 11.5 ripple periods a 5 s scan interval, so the current at each read alternates between the "
        "same two phases; 2.37 Hz: a phase that wanders)")
    return status


# -- the resistance estimate with and without snapshots, in the same run -------------------------------------
@dataclass
class _Snap:
    valid: bool
    ok: bytearray
    mv: list[int]


def resistance_compare(n: int = 16, spread_s: float = 0.0004, steps: int = 60, ripple_a: float = 5.0,
                       ripple_hz: float = 2.37, seed: int = 1) -> dict:
    """Two copies of the hub's estimator (hub/soc.py, hub/health.py) fed in the same run with the same packs,
    the same current and the same scans; one also gets each cycle's bank snapshot. Packs: 100 Ah, resistance
    2 mOhm +- 10 % (no polarisation: the truth is R), at ~50 % SOC. Current: a 50 A load switched on and off
    at the start of a cycle (the step rule's "early" steps), plus ripple_a at ripple_hz (a motor, an
    inverter). A scan's reading of pack k is its voltage at the node's last measurement, 0-200 ms before
    the scan (a random phase each scan, as each node runs its own 5 Hz schedule); a snapshot's is its
    voltage at the instant +- spread_s/2 (the measured spread); the shunt is read at the instant, 60 ms after
    the scan. Returns each estimator's per-pack error against the truth and its samples."""
    import random as _random

    from hub.bank import Bank
    from hub.soc import Estimator

    rng = _random.Random(seed)
    r_true = [0.002 * rng.uniform(0.9, 1.1) for _ in range(n)]
    ocv_mv = 3700.0
    period = 5.0
    t_read_after = 0.06
    cfg = {"chemistry": "nmc", "capacity_ah": 100, "rest_s": 60}
    plain, snapped = Estimator(cfg, n), Estimator(cfg, n)
    bank = Bank(n, 30000)
    bank.resize(n)
    buf = bytearray(codec.HEADER_SIZE + codec.SLOT_SIZE * n + 8)
    snap = _Snap(True, bytearray(n), [0] * n)
    shunt = ShuntReading()
    load = [0.0]
    rip = [0.0]  # no ripple during the first 80 cycles (the rest that makes the SOC known)
    phase = rng.uniform(0, 1)

    def amps(t: float) -> float:
        return load[0] + rip[0] * math.sin(2 * math.pi * (ripple_hz * t + phase))

    def charge(t0: float, t1: float) -> float:  # A*s of amps() over [t0, t1], the load constant in it
        w = 2 * math.pi * ripple_hz
        r = -rip[0] / w * (math.cos(w * t1 + 2 * math.pi * phase) - math.cos(w * t0 + 2 * math.pi * phase))
        return load[0] * (t1 - t0) + r

    def volts_mv(k: int, t: float) -> int:
        return round(ocv_mv + r_true[k] * amps(t) * 1000)  # + = charging

    def td(a: int, b: int) -> int:
        return a - b

    t_prev = 0.0
    cycles = 80 + steps * 3
    for c in range(cycles):
        t_scan = (c + 1) * period
        t_read = t_scan + t_read_after
        if c >= 80 and (c - 80) % 3 == 0:
            load[0] = -50.0 if ((c - 80) // 3) % 2 == 0 else 0.0  # switched right after the last read
            rip[0] = ripple_a
        for k in range(n):
            mv = volts_mv(k, t_scan - rng.uniform(0.0, 0.2))
            snap.mv[k] = volts_mv(k, t_read + rng.uniform(-spread_s / 2, spread_s / 2))
            snap.ok[k] = 1
            o = codec.HEADER_SIZE + codec.SLOT_SIZE * k
            buf[o:o + 8] = struct.pack("<BBHhBB", k + 1, 0, mv, 250, 0, (c + 1) & 0xFF)
        now = int(t_read * 1000)
        bank.update(buf, n, now, c + 1)
        bank.compute(now, td)
        shunt.current_ma = round(amps(t_read) * 1000)
        shunt.dq_mas = round(charge(t_prev, t_read) * 1000)
        shunt.dt_ms = round((t_read - t_prev) * 1000)
        t_prev = t_read
        plain.update(now, bank, shunt, td)
        snapped.update(now, bank, shunt, td, snap)

    def errors(est: Estimator) -> tuple[list[float], int]:
        h = est.health
        return [(h.r[k] / 1e6 / r_true[k] - 1) * 100 if h.r_n[k] else float("nan") for k in range(n)], \
            min(h.r_n[k] for k in range(n))

    e_plain, n_plain = errors(plain)
    e_snap, n_snap = errors(snapped)
    return {"packs": n, "spread_ms": spread_s * 1e3, "ripple_a": ripple_a, "ripple_hz": ripple_hz,
            "plain_max_pct": max(abs(e) for e in e_plain), "plain_rms_pct": math.sqrt(statistics.fmean(
                e * e for e in e_plain)), "plain_samples_min": n_plain,
            "snap_max_pct": max(abs(e) for e in e_snap), "snap_rms_pct": math.sqrt(statistics.fmean(
                e * e for e in e_snap)), "snap_samples_min": n_snap, "snap_samples": snapped.snap_r}


__all__ = ["SpreadResult", "add_args", "measure", "resistance_compare", "run", "snap_frame"]
