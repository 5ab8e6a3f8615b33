"""`packmon bench`: scan wire time against the wire floor, the original packMonitor and diyBMS v4.

For each ring size N it runs a SCAN on the simulated ring and prints the simulated wire time (first start
bit sent to last stop bit received), the wire floor (the scan's own bytes once at the baud rate), their
ratio and the time per pack. Beside it, the original packMonitor scheme as a reference model: one
register of one pack per round trip, each request frame of Q bytes stored and forwarded whole by every
node, R registers per pack; and diyBMS v4's scheme (ref_diybms.py): one 40-byte packet per 16 modules
and command, stored and forwarded whole by every module, a voltage and a temperature packet per 16
modules, the controller sending the next packet a fixed delay after the previous one (450 ms at 9600
baud, 900 ms at its default 2400) while earlier ones are still on the ring. With the simavr engine it
also prints, from the real firmware, the node's awake CPU cycles per forwarded byte and its idle
(asleep) fraction during the first scan after power-on, and that first scan's time: its nodes' clocks are
still acquiring (the trim), so the scan time it reports is the median of scans 4 to 6, what a running bank
gets.
"""

from __future__ import annotations

import argparse
import time

from hub import codec

from . import bench_clock, bench_snapshot, ref_diybms
from .sim.model_ring import ModelRing

BAUD = 9600
BYTE_S = 10 / BAUD
REF_Q = 8  # bytes per request frame in the reference scheme (address, register, value, CRC, framing)
REF_R = 2  # registers read per pack: voltage and temperature


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure scan time against the wire floor and the original scheme",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("model", "simavr", "both"), default="model")
    p.add_argument("--sizes", default=None, help="comma-separated ring sizes (default 1,2,4,8,16,32,64; "
                   "16,64 with --clock-spread)")
    bench_clock.add_args(p)
    bench_snapshot.add_args(p)
    p.set_defaults(func=run)


def reference_scan_s(n: int) -> float:
    """The original scheme: R*N requests, each crossing N+1 store-and-forward hops whole."""
    return REF_R * n * (n + 1) * REF_Q * BYTE_S


def measure(engine_kind: str, n: int) -> dict:
    frame = codec.encode(codec.CMD_SCAN, 1, 0, n)
    row: dict = {"n": n, "floor": len(frame) * BYTE_S}
    if engine_kind == "simavr":
        from .sim.simavr_ring import SimavrRing

        t0 = time.monotonic()
        with SimavrRing(n) as eng:
            eng.exchange(codec.encode(codec.CMD_ENUMERATE, 0, 0, 0))
            before = eng.stats()
            ex = eng.exchange(frame)
            after = eng.stats()
            # the first scan after power-on meets clocks still acquiring; a running bank scans on clocks
            # that have locked (the trim, docs/node_fw.md): the median of scans 4-6 is what it gets
            first = ex.seconds
            later = []
            for k in range(5):
                e2 = eng.exchange(codec.encode(codec.CMD_SCAN, 2 + k, 0, n))
                if k >= 2:
                    later.append((e2.seconds, e2))
            later.sort(key=lambda x: x[0])
            ex = later[1][1]
        wall = time.monotonic() - t0
        awake = [(a.cycles - a.sleep_cycles) - (b.cycles - b.sleep_cycles) for a, b in zip(after, before, strict=True)]
        total = [a.cycles - b.cycles for a, b in zip(after, before, strict=True)]
        sleep = [a.sleep_cycles - b.sleep_cycles for a, b in zip(after, before, strict=True)]
        fwd = [a.bytes_out - b.bytes_out for a, b in zip(after, before, strict=True)]
        row["cycles_per_byte"] = sum(awake) / max(1, sum(fwd))
        row["idle"] = sum(sleep) / max(1, sum(total))
        row["wall"] = wall
    else:
        ex = ModelRing(n).exchange(frame)
        first = ex.seconds
    ok = codec.check(ex.rx, len(ex.rx)) == codec.OK
    row["first"] = first
    row.update(scan=ex.seconds, ok=ok, ref=reference_scan_s(n), v4=ref_diybms.bank_read_s(n, BAUD))
    return row


def table(engine_kind: str, sizes: list[int], out=print) -> list[dict]:
    rows = [measure(engine_kind, n) for n in sizes]
    out(f"\nengine: {engine_kind}   {BAUD} baud 8N1 ({BYTE_S * 1000:.4f} ms per byte)")
    out(f"reference (original packMonitor): {REF_R} registers/pack, one per round trip, {REF_Q}-byte frames "
        "stored and forwarded whole by each of the N nodes + the hub")
    out(f"reference (diyBMS v4): {ref_diybms.MODULES_PER_PACKET} modules per {ref_diybms.PACKET_BYTES}-byte "
        f"packet ({ref_diybms.MIN_WIRE_BYTES} on the wire), a voltage and a temperature packet per "
        f"{ref_diybms.MODULES_PER_PACKET} modules, each stored and forwarded whole by the N modules, the next "
        f"packet {ref_diybms.gap_s(BAUD) * 1000:.0f} ms after the previous one")
    head = (f"{'packs':>5} {'scan ms':>9} {'floor ms':>9} {'ratio':>6} {'ms/pack':>8} | "
            f"{'ref ms':>10} {'ref ratio':>9} {'ref ms/pack':>11} | "
            f"{'v4 ms':>7} {'v4 ratio':>8} {'v4 ms/pack':>10}")
    if engine_kind == "simavr":
        head += f" | {'cyc/byte':>8} {'idle':>5} {'wall s':>6} {'1st scan ms':>11} {'1st ratio':>9}"
    out(head)
    for r in rows:
        line = (f"{r['n']:>5} {r['scan'] * 1000:>9.1f} {r['floor'] * 1000:>9.1f} {r['scan'] / r['floor']:>6.2f} "
                f"{r['scan'] * 1000 / r['n']:>8.2f} | {r['ref'] * 1000:>10.0f} {r['ref'] / r['floor']:>9.1f} "
                f"{r['ref'] * 1000 / r['n']:>11.1f} | {r['v4'] * 1000:>7.0f} {r['v4'] / r['floor']:>8.1f} "
                f"{r['v4'] * 1000 / r['n']:>10.1f}")
        if engine_kind == "simavr":
            line += (f" | {r['cycles_per_byte']:>8.0f} {r['idle']:>5.2f} {r['wall']:>6.1f} {r['first'] * 1000:>11.1f} "
                     f"{r['first'] / r['floor']:>9.2f}")
        if not r["ok"]:
            line += "  (answer did not check out!)"
        out(line)
    diybms_table(rows, out)
    by_n = {r["n"]: r for r in rows}
    if 16 in by_n:
        r16 = by_n[16]["scan"] / by_n[16]["floor"]
        out(f"target: 16 packs within 2.5x the wire floor: {'yes' if r16 <= 2.5 else 'NO'} ({r16:.2f}x)")
    for n in (16, 64):
        if n in by_n:
            r = by_n[n]["scan"] / by_n[n]["floor"]
            out(f"target (protocol 1.2): {n} packs within 1.15x the wire floor: {'yes' if r <= 1.15 else 'NO'} "
                f"({r:.3f}x, {(by_n[n]['scan'] - by_n[n]['floor']) / n / BYTE_S:.2f} byte times a hop)")
    big = [by_n[n]["scan"] / n for n in (16, 32, 64) if n in by_n]
    if len(big) >= 2:
        spread = max(big) / min(big)
        out(f"target: time per pack flat from 16 to 64 packs: {'yes' if spread <= 1.15 else 'NO'} "
            f"(max/min {spread:.3f})")
    return rows


def diybms_table(rows: list[dict], out=print) -> None:
    """diyBMS v4 in detail: at 9600 baud beside ours, and at its own default of 2400 baud."""
    bauds = (BAUD, ref_diybms.DEFAULT_BAUD)
    out("diyBMS v4 (a lower bound: no escapes, no module processing time): 'hop' one packet's store-and-forward "
        "delay per module, 'transit' one packet round the ring, 'read' every voltage and temperature once; "
        f"x floor, x scan: against our scan's wire floor and our scan at {BAUD} baud")
    group = f"{'hop ms':>6} {'transit ms':>10} {'read ms':>8} {'x floor':>7} {'x scan':>6}"
    titles = [f"{b} baud, {ref_diybms.gap_s(b) * 1000:.0f} ms gap" for b in bauds]
    out((f"{'':>13} | " + " | ".join(f"{t:^{len(group)}}" for t in titles)).rstrip())
    out(f"{'packs':>5} {'packets':>7} | " + " | ".join(group for _ in bauds))
    for r in rows:
        n = r["n"]
        cells = []
        for b in bauds:
            read = ref_diybms.bank_read_s(n, b)
            cells.append(f"{ref_diybms.MIN_WIRE_BYTES * ref_diybms.byte_s(b) * 1000:>6.1f} "
                         f"{ref_diybms.transit_s(n, b) * 1000:>10.0f} {read * 1000:>8.0f} "
                         f"{read / r['floor']:>7.1f} {read / r['scan']:>6.1f}")
        out(f"{n:>5} {ref_diybms.packets_for(n):>7} | " + " | ".join(cells))


def run(args: argparse.Namespace) -> int:
    default = ("16,64" if getattr(args, "clock_spread", False) else "1,16,64" if getattr(args, "snapshot", False)
               else "1,2,4,8,16,32,64")
    sizes = [int(s) for s in (args.sizes or default).split(",") if s.strip()]
    if any(not 1 <= n <= 64 for n in sizes):
        raise SystemExit("packmon bench: sizes must be 1..64")
    engines = ["model", "simavr"] if args.engine == "both" else [args.engine]
    if getattr(args, "clock_spread", False):
        return bench_clock.run(args, sizes, engines)
    if getattr(args, "snapshot", False):
        return bench_snapshot.run(args, sizes)
    for e in engines:
        if e == "simavr":
            from .sim import simavr_ring

            ok, why = simavr_ring.available()
            if not ok:
                print(f"simavr engine skipped: {why}")
                continue
        rows = table(e, sizes)
        if not all(r["ok"] for r in rows):
            return 1
    return 0
