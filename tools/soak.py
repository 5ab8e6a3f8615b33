#!/usr/bin/env python3
"""Soak the hub with faults: a 16-pack bank on the model ring with line noise, node resets, a node removed
and put back, ring breaks, broker outages and Wi-Fi loss, for many scans. Every value the hub publishes is
compared with the scenario's truth at that moment (the truth changes every scan, so a stale value
republished as fresh would not match), and every fault must become visible (flag, counter, stale marker,
alarm or error) within two scan intervals.

The hub is the real hub.app.Hub under CPython; MQTT goes through the real publisher into a fake broker
socket that parses every PUBLISH packet (a broker outage makes its connect and writes fail).

    python3 tools/soak.py --scans 100000          # the long run; docs/reliability.md has its figures
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools"), str(ROOT / "hub" / "lib")]

from packmon.sim.clock import SimClock  # noqa: E402
from packmon.sim.model_ring import ModelRing, SimUart  # noqa: E402

from hub import config  # noqa: E402
from hub.app import Hub  # noqa: E402
from hub.port import HostPort, install_cpython_shims  # noqa: E402

install_cpython_shims()

PACKS = 16
INTERVAL_S = 1.0


class FakeBroker:
    """Stands in for the broker's socket: parses MQTT PUBLISH packets from the bytes the hub writes."""

    def __init__(self) -> None:
        self.up = True
        self.buf = bytearray()
        self.published: list[tuple[str, bytes, bool]] = []

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2:
            b = self.buf
            kind = b[0] & 0xF0
            n, mult, i = 0, 1, 1
            while True:
                if i >= len(b):
                    return
                n += (b[i] & 0x7F) * mult
                mult *= 128
                i += 1
                if not b[i - 1] & 0x80:
                    break
            if len(b) < i + n:
                return
            retain = bool(b[0] & 0x01)
            body = bytes(b[i : i + n])
            del b[: i + n]
            if kind == 0x30:  # QoS 0 PUBLISH: topic length, topic, payload (no packet id)
                tl = body[0] << 8 | body[1]
                self.published.append((body[2 : 2 + tl].decode(), body[2 + tl :], retain))


class FakeSock:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    def write(self, buf, n=None) -> int:  # noqa: ANN001
        if not self.broker.up:
            raise OSError(104, "connection reset by peer (broker down)")
        data = bytes(buf if n is None else memoryview(buf)[:n])
        self.broker.feed(data)
        return len(data)

    def read(self, n: int) -> bytes:
        return b"\x20\x02\x00\x00"[:n]  # CONNACK accepted

    def close(self) -> None:
        pass


class FakeClient:
    """umqtt.simple's client surface the publisher uses, over the fake broker."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.sock: FakeSock | None = None

    def set_last_will(self, *a) -> None:  # noqa: ANN002
        pass

    def connect(self) -> None:
        if not self.broker.up:
            raise OSError(111, "connection refused (broker down)")
        self.sock = FakeSock(self.broker)

    def disconnect(self) -> None:
        pass


@dataclass
class Result:
    scans: int = 0
    frames_rejected: int = 0
    rejected_by_reason: dict = field(default_factory=dict)
    faults_injected: int = 0
    faults_detected: int = 0
    wrong_values: int = 0
    values_checked: int = 0
    worst_delay_intervals: int = 0  # scan intervals between the fault and the scan that shows it
    undetected: list = field(default_factory=list)
    object_growth: int = 0
    seconds: float = 0.0


def truth(step: int) -> list[tuple[int, int]]:
    """Every pack's voltage and temperature at this step: they change every scan."""
    return [(3250 + 9 * i + (step * (i + 1)) % 97, 200 + 3 * i + (step // 7 + i) % 40) for i in range(PACKS)]


def run(scans: int, seed: int = 1, ber: float = 1e-4) -> Result:
    """ber is the bit error rate of the ring as the hub sees it (a frame's bits cross N+1 hops, so each
    hop gets ber/(N+1))."""
    rng = random.Random(seed)
    clock = SimClock(1_000_000)
    t0 = truth(0)
    eng = ModelRing(PACKS, mv=[m for m, _ in t0], temp=[t for _, t in t0], ber=ber / (PACKS + 1), seed=seed)
    broker = FakeBroker()
    # acl_check off: the fake broker does not echo (tests/hub/test_mqtt_security.py tests the check)
    cfg = config.validate({"mqtt": {"host": "broker.invalid", "acl_check": False}, "scan_interval_s": INTERVAL_S,
                           "stale_after_s": 2, "alarms": {"comms_after_s": 2, "delta_high_v": 2.0}}, need_wifi=False)
    port = HostPort(SimUart(eng), clock=clock, log=lambda level, msg: None)
    hub = Hub(cfg, port)
    hub.publisher._make_client = lambda: FakeClient(broker)  # type: ignore[method-assign]
    res = Result()
    pending: list[tuple[str, int, callable]] = []  # (fault, injected at step, detector)
    removed_at = -1
    broken_until = -1
    broker_until = -1
    wifi_until = -1
    objs0 = 0
    start = time.perf_counter()
    for step in range(scans):
        # -- the world at this step ---------------------------------------------------------------
        tr = truth(step)
        phys = [i for i in range(PACKS) if i != removed_at]
        for pos, i in enumerate(phys):
            eng.set_pack(pos, mv=tr[i][0], temp=tr[i][1])
        if step == broken_until:
            eng.broken = False
        if step == broker_until:
            broker.up = True
        if step == wifi_until:
            port.wifi_ok = True
        if step > 50 and step % 1000 == 500 and removed_at < 0:
            removed_at = rng.randrange(1, PACKS - 1)
            eng.remove_node(removed_at)
            res.faults_injected += 1
            pending.append(("node removed", step, lambda h: h.bank.n == PACKS - 1 or h.need_enum))
        elif removed_at >= 0 and step % 1000 == 550:
            eng.insert_node(removed_at)
            removed_at = -1
            res.faults_injected += 1
            pending.append(("node put back", step, lambda h: h.bank.n == PACKS or h.need_enum))
        elif step > 50 and step % 333 == 100:
            victim = rng.randrange(len(phys))
            before = hub.bank.resets[victim]
            eng.reset_node(victim)
            res.faults_injected += 1
            pending.append((f"node {victim + 1} reset", step,
                            lambda h, v=victim, b=before: h.bank.resets[v] > b
                            or h.bank.flags[v] & 0x04 != 0))
        elif step > 50 and step % 1000 == 800:
            eng.broken = True
            broken_until = step + 8
            res.faults_injected += 1
            pending.append(("ring break", step, lambda h: h.alarms.active[5] or h.bank.stale_count > 0
                            or h.fail_streak > 0))
        elif step > 50 and step % 1000 == 900:
            broker.up = False
            broker_until = step + 12
            res.faults_injected += 1
            pending.append(("broker restart", step, lambda h: not h.publisher.connected))
        elif step > 50 and step % 1000 == 950:
            port.wifi_ok = False
            wifi_until = step + 10
            res.faults_injected += 1
            pending.append(("wifi loss", step, lambda h: not h.publisher.connected or h.publisher.failures > 0))
        # -- one hub cycle ----------------------------------------------------------------------------
        mark = len(broker.published)
        hub.run_once()
        clock.t += int(INTERVAL_S * 1000)
        res.scans += 1
        # -- every value published in this cycle against the truth -----------------------------------
        order = [i for i in range(PACKS) if i != removed_at]
        for topic, payload, _ in broker.published[mark:]:
            parts = topic.split("/")
            if len(parts) == 5 and parts[2] == "pack" and payload and parts[4] in ("voltage", "temperature"):
                n = int(parts[3])
                res.values_checked += 1
                if n > len(order):
                    res.wrong_values += 1
                    continue
                mv, t = tr[order[n - 1]]
                want = f"{mv / 1000:.3f}" if parts[4] == "voltage" else f"{t / 10:.1f}"
                if payload.decode() != want:
                    res.wrong_values += 1
            elif len(parts) == 5 and parts[4] == "state" and payload:
                st = json.loads(payload)
                if not st["stale"] and st["voltage"] is not None:
                    res.values_checked += 1
                    n = st["pack"]
                    if n > len(order) or abs(st["voltage"] * 1000 - tr[order[n - 1]][0]) > 0.5:
                        res.wrong_values += 1
        del broker.published[:]
        # -- faults: visible within two scans? ------------------------------------------------------
        still = []
        for name, at, seen in pending:
            if seen(hub):
                res.faults_detected += 1
                res.worst_delay_intervals = max(res.worst_delay_intervals, step - at)
            elif step - at >= 2:
                res.undetected.append((name, at))
            else:
                still.append((name, at, seen))
        pending = still
        if step == 200:
            gc.collect()
            objs0 = len(gc.get_objects())
    res.seconds = time.perf_counter() - start
    gc.collect()
    res.object_growth = len(gc.get_objects()) - objs0 if scans > 200 else 0
    res.frames_rejected = sum(hub.ring.errors)
    from hub import codec

    res.rejected_by_reason = {codec.ERROR_NAMES[k]: hub.ring.errors[k] for k in range(1, len(hub.ring.errors))
                              if hub.ring.errors[k]}
    return res


def table(r: Result) -> str:
    rows = [
        ("scans (16 packs, ring bit error rate 1e-4)", f"{r.scans}"),
        ("frames rejected", f"{r.frames_rejected} ({', '.join(f'{k} {v}' for k, v in r.rejected_by_reason.items())})"),
        ("faults injected", f"{r.faults_injected}"),
        ("faults detected within 2 scan intervals", f"{r.faults_detected}"),
        ("published values checked against the truth", f"{r.values_checked}"),
        ("wrong values published as fresh", f"{r.wrong_values}"),
        ("worst detection delay", f"{r.worst_delay_intervals} scan interval(s) (0: the first scan after it)"),
        ("live Python objects, growth after warm-up", f"{r.object_growth}"),
        ("wall time", f"{r.seconds:.0f} s"),
    ]
    w = max(len(a) for a, _ in rows)
    return "\n".join(f"| {a:<{w}} | {b} |" for a, b in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    r = run(a.scans, a.seed)
    print(table(r))
    if r.undetected:
        print("undetected faults:", r.undetected[:10])
    return 1 if (r.wrong_values or r.undetected) else 0


if __name__ == "__main__":
    sys.exit(main())
