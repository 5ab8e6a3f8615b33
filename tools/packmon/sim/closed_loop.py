"""The closed loop: the ECM bank (ecm.py) with a charger and a load that obey the hub's output pins
through relays, the packs' voltages and temperatures fed into a ring engine (ModelRing or the simavr
ring with the real node image) exactly as scenarios.py does (set_pack), and the real hub (hub.app.Hub
with protection on) reading them through the real ring driver.

    r = run("runaway_charger")                    # CPython hub, model ring
    r = run("runaway_charger", engine="simavr")   # the real node image in simavr
    r = run_mpy("runaway_charger")                # the hub on the MicroPython unix port, in real time

Timing: physics steps of 50 ms; each node measures every 0.2 s (sample and hold, as the firmware does);
the hub scans every scan_interval_s on a simulated clock that the ring's wire time moves on; a pin
change reaches the contact relay_delay_s later. Results (Result) carry the figures protect-check prints.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .clock import SimClock
from .ecm import Bank, CellFit, Charger, Load, Relay

IDS = ("runaway_charger", "series_imbalance", "weak_pack_night", "hot_pack", "ring_broken_charging",
       "hub_reset_trip", "flapping_limit")
CHARGE, DISCHARGE, FAN, BUZZER = 0, 1, 2, 3
NODE_PERIOD_S = 0.2  # the node firmware measures 5 times a second (docs/node_fw.md)
DT = 0.05


@dataclass
class Spec:
    """One scenario: the bank, the charger and load, what goes wrong, and the protect settings."""

    name: str
    packs: int = 4
    soc: list[float] | float = 0.5
    capacity: list[float] | float = 1.0
    temp_c: list[float] | float = 25.0
    heat_w: list[float] = field(default_factory=list)
    charger: tuple[float, float, float | None] | None = None  # (CC A, CV per pack V, terminate A)
    load_a: float = 0.0
    duration_s: float = 240.0
    interval_s: float = 2.0
    relay_delay_s: float = 0.05
    protect: dict[str, Any] = field(default_factory=dict)
    noise_mv: int = 0  # node measurement noise (uniform +-), for flapping_limit
    pulse_a: float = 0.0  # an appliance: pulse_a for pulse_on_s at the start of every pulse_period_s
    pulse_on_s: float = 0.0
    pulse_period_s: float = 0.0
    ring_break_at: float | None = None
    welded_charge: bool = False
    charger_off_at: float | None = None
    hub_reset_at: float | None = None
    ring_down_after_reset_s: float = 0.0
    press_reset_at: float | None = None
    limit: str = "high"  # which limit the reaction is measured on: high, low, temp, stale, none


def spec(name: str, short: bool = False) -> Spec:
    """The scenario `name`; short=True trims the durations for the test suite."""
    base = {"min_on_s": 10, "min_off_s": 60, "stale_s": 6, "hysteresis_v": 0.1}
    if name == "runaway_charger":
        # a charger whose CV setpoint is far too high keeps pushing 0.5C into full packs
        s = Spec(name, soc=0.75, charger=(10.0, 4.40, None), duration_s=700)
    elif name == "series_imbalance":
        # CV at 4.10 V a pack looks healthy on the bank voltage, but pack 3 is 12 % ahead of the others
        s = Spec(name, soc=[0.68, 0.68, 0.77, 0.68], charger=(10.0, 4.10, 0.5), duration_s=600)
    elif name == "weak_pack_night":
        # an inverter at 0.5C all night; pack 2 has 70 % of the others' capacity and empties first
        s = Spec(name, soc=0.08, capacity=[1.0, 0.7, 1.0, 1.0], load_a=10.0, limit="low",
                 duration_s=500)
    elif name == "hot_pack":
        # pack 4 heats from within (5 W, e.g. a failing cell) while the bank charges
        s = Spec(name, soc=0.5, temp_c=[30.0, 30.0, 30.0, 45.0], heat_w=[0, 0, 0, 15.0],
                 charger=(10.0, 4.10, 0.5), load_a=0.0, limit="temp", duration_s=400)
    elif name == "ring_broken_charging":
        s = Spec(name, soc=0.5, charger=(10.0, 4.10, 0.5), load_a=2.0, ring_break_at=20.0, limit="stale",
                 duration_s=60 if short else 120)
    elif name == "hub_reset_trip":
        # the charge contactor is welded: the charger goes on past the high limit to the absolute maximum
        # (latch); the owner switches the charger off, the hub restarts (ring still down for 3 s), the
        # latch must hold from boot on, until the reset button
        s = Spec(name, soc=0.75, charger=(20.0, 4.40, None), welded_charge=True, charger_off_at=None,
                 hub_reset_at=None, ring_down_after_reset_s=3.0, limit="latch", duration_s=1500)
        base["latch_high_v"] = 4.2
    elif name == "flapping_limit":
        # a full pack sits right at the high limit (a float charger holding it there, a small house load,
        # the node's +-6 mV noise carrying the reading across the limit scan after scan); every 400 s an
        # appliance draws 20 A for 120 s, pulls it below the return threshold, and the float pushes it back
        fit_soc = CellFit.load().soc_at(4.147)
        s = Spec(name, soc=fit_soc, charger=(10.0, 4.15, None), load_a=0.3, noise_mv=6, pulse_a=20.0,
                 pulse_on_s=120.0, pulse_period_s=400.0, limit="flap", duration_s=2000)
    else:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(IDS)}")
    base.update(s.protect)
    s.protect = base
    return s


@dataclass
class Result:
    name: str
    passed: bool
    reaction_s: float | None
    allowed_reaction_s: float | None
    overshoot_mv: float | None
    allowed_overshoot_mv: float | None
    chatters: int
    changes: int
    engine: str = "model"
    hub: str = "cpython"
    detail: str = ""
    checks: dict[str, bool] = field(default_factory=dict)
    sim_s: float = 0.0
    wall_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def hub_config(s: Spec, state_file: str) -> dict[str, Any]:
    return {"bank": "sim", "mqtt": {"host": "127.0.0.1", "port": 1, "timeout_s": 1},
            "scan_interval_s": s.interval_s, "stale_after_s": max(10, 2 * s.interval_s), "max_packs": 16,
            "state_file": state_file,
            "outputs": {"charge_enable": {"pin": 25}, "discharge_enable": {"pin": 26}, "fan": {"pin": 27},
                        "buzzer": {"pin": 14}},
            "protect": dict(s.protect)}


def make_engine(kind: str, n: int):
    if kind == "simavr":
        from .simavr_ring import SimavrRing

        return SimavrRing(n, mv=3700, temp=250)
    from .model_ring import ModelRing

    return ModelRing(n, mv=3700, temp=250)


def chatter_count(changes: list[tuple[float, int]], min_on: float, min_off: float,
                  restarts: tuple[float, ...] = ()) -> int:
    """Contact changes sooner than the minimum time after the previous one: an open sooner than min_on
    after a close, a close sooner than min_off after an open. A hub restart drops every coil: that forced
    change and the one after it are not the hub's decisions and are not counted."""
    bad = 0
    for (t0, c0), (t1, _) in zip(changes, changes[1:], strict=False):
        if any(r - 1e-6 <= t <= r + 1.0 for r in restarts for t in (t0, t1)):
            continue
        hold = min_on if c0 == 1 else min_off
        if t1 - t0 < hold - 1e-6:
            bad += 1
    return bad


class Loop:
    def __init__(self, s: Spec, engine: str = "model", seed: int = 7) -> None:
        from hub import config
        from hub.app import Hub
        from hub.port import HostPort

        from .model_ring import SimUart

        self.s = s
        self.kind = engine
        self.rng = random.Random(seed)
        self.bank = Bank(s.packs, soc=s.soc, capacity=s.capacity, temp_c=s.temp_c,
                         heat_w=list(s.heat_w) or [0.0] * s.packs)
        self.charger = Charger(s.charger[0], s.charger[1] * s.packs, s.charger[2]) if s.charger else None
        self.load = Load(s.load_a)
        self.relays = [Relay(s.relay_delay_s) for _ in range(4)]
        self.relays[CHARGE].welded = s.welded_charge
        self.engine = make_engine(engine, s.packs)
        self.tmp = tempfile.TemporaryDirectory(prefix="packmon-protect-")
        self.cfg = config.validate(hub_config(s, str(Path(self.tmp.name) / "state.json")), need_wifi=False)
        self.clock = SimClock()
        self.scan_s = 0.0  # the longest scan's wire time
        self._scan_acc = 0.0

        def on_exchange(data: bytes, ex) -> None:  # noqa: ANN001
            self.clock.advance(ex.seconds)  # the hub's clock moves with the wire time
            self._scan_acc += ex.seconds

        self._Hub, self._HostPort, self._SimUart, self._on_exchange = Hub, HostPort, SimUart, on_exchange
        self.hub = self._new_hub()
        self.t = 0.0
        self.next_sample = 0.0
        self.next_cycle = 0.0
        self.logs: list[str] = []
        self.trace: list[tuple[float, list[float], float, list[float]]] = []  # (t, volts, current, temps)
        self.first_whole: float | None = None  # the cycle of the current hub's first whole-bank scan
        self.flaps = 0  # scans whose maximum reading crossed the high limit (either way)
        self._was_hi = False
        self.boot_t = 0.0
        self.boot_log_from = 0
        self.events: list[tuple[float, str]] = []
        self._sample()  # the nodes have measured before the hub's first scan
        self.next_sample = NODE_PERIOD_S

    def _new_hub(self):
        port = self._HostPort(self._SimUart(self.engine, on_exchange=self._on_exchange), clock=self.clock,
                              log=lambda level, msg: self.logs.append(f"{self.t:8.2f} [{level}] {msg}"))
        hub = self._Hub(self.cfg, port)
        self._seen = 0
        return hub

    # -- the pieces of a step ------------------------------------------------------------------------
    def _sample(self) -> None:
        """The nodes measure: each pack's true terminal voltage and temperature (sample and hold)."""
        for i in range(self.s.packs):
            mv = round(self.bank.voltage(i) * 1000)
            if self.s.noise_mv:
                mv += self.rng.randint(-self.s.noise_mv, self.s.noise_mv)
            self.engine.set_pack(i, mv=mv, temp=round(self.bank.packs[i].temp_c * 10))
        if self.kind == "simavr":
            self.engine.run(NODE_PERIOD_S * 1000)

    def _cycle(self) -> None:
        start = self.t
        self.clock.t = int(round(self.t * 1000))
        self._scan_acc = 0.0
        self.hub.run_once(network=False)
        self.scan_s = max(self.scan_s, self._scan_acc)
        hi = self.hub.bank.max_mv >= round(self.cfg["protect"]["high_v"] * 1000)
        if hi != self._was_hi:
            self.flaps += 1
            self._was_hi = hi
        if self.first_whole is None and self.hub.protect.ever_whole:
            self.first_whole = start
        self.next_cycle = start + self.s.interval_s
        log = self.hub.port.out_log
        for ms, k, closed in log[self._seen:]:
            self.relays[k].drive(ms / 1000.0, closed)
        self._seen = len(log)

    def _physics(self, until: float) -> None:
        while self.t < until - 1e-9:
            c = [r.update(self.t) for r in self.relays]
            amps = self.s.load_a
            if self.s.pulse_period_s and (self.t % self.s.pulse_period_s) < self.s.pulse_on_s:
                amps += self.s.pulse_a
            cur = -amps if c[DISCHARGE] else 0.0
            if self.charger is not None:
                cur += self.charger.current(self.bank, bool(c[CHARGE]), cur)
            self.bank.step(DT, cur)
            self.t = round(self.t + DT, 6)
            self.trace.append((self.t, [self.bank.voltage(i) for i in range(self.s.packs)], cur,
                               [p.temp_c for p in self.bank.packs]))
            if self.t >= self.next_sample - 1e-9:
                self._sample()
                self.next_sample = self.t + NODE_PERIOD_S

    def resolution_mv(self, volts: float) -> float:
        """The smallest voltage step a node reports near `volts`."""
        if self.kind != "simavr":
            return 1.0
        from .simavr_ring import expected_mv

        mv = round(volts * 1000)
        steps = {expected_mv(v) for v in range(mv - 40, mv + 40)}
        vals = sorted(steps)
        return max(b - a for a, b in zip(vals, vals[1:], strict=False)) if len(vals) > 1 else 1.0

    def crossing(self, lim: float, above: bool, after: float = 0.0) -> tuple[float | None, int]:
        """When a pack first reached `lim` after `after`: the true voltage within half the node's
        resolution (1 mV in the model ring); in simavr, whose ATtiny85 ADC steps by 8-15 mV, the moment the
        node's reading reaches it — what a perfect hub could see."""
        trace = [row for row in self.trace if row[0] >= after]
        if self.kind == "simavr":
            from .simavr_ring import expected_mv

            return _crossing(trace, range(self.s.packs), lim, above, lambda v: expected_mv(round(v * 1000)) / 1000)
        tol = self.resolution_mv(lim) / 2000
        return _crossing(trace, range(self.s.packs), lim - tol if above else lim + tol, above)

    def hub_restart(self) -> None:
        """A watchdog reset: every pin de-energised at once, a new hub (same state file) boots."""
        for r in self.relays:
            r.deenergise(self.t)
        self.events.append((self.t, "hub reset"))
        self.boot_t = self.t
        self.clock.t = int(round(self.t * 1000))
        self.hub = self._new_hub()
        self.first_whole = None
        self.boot_log_from = len(self.logs)
        log = self.hub.port.out_log
        for ms, k, closed in log:
            self.relays[k].drive(ms / 1000.0, closed)
        self._seen = len(log)
        self.next_cycle = self.t

    def run_until(self, t_end: float, stop=None) -> None:  # noqa: ANN001
        while self.t < t_end:
            if self.t >= self.next_cycle - 1e-9:
                self._cycle()
                if stop is not None and stop(self):
                    return
            self._physics(min(self.next_cycle, t_end))

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if close:
            close()
        self.tmp.cleanup()


# -- measuring -----------------------------------------------------------------------------------------
def _crossing(trace, pack_sel, limit: float, above: bool, seen=None) -> tuple[float | None, int]:  # noqa: ANN001
    """When the first pack reached `limit` (interpolated between steps). seen(volts) -> what a node
    reports for a true voltage (V), for an engine whose ADC step is coarse; then the crossing is the step
    at which the node's reading first reaches the limit."""
    prev = None
    for t, volts, _, _ in trace:
        for i in pack_sel:
            v = volts[i] if seen is None else seen(volts[i])
            if (v >= limit) if above else (v <= limit):
                if prev is None or seen is not None:
                    return t, i
                pt, pv = prev
                vv = pv[i]
                f = (limit - vv) / (v - vv) if v != vv else 1.0
                return pt + f * (t - pt), i
        prev = (t, volts)
    return None, -1


def _opened_after(relay: Relay, t0: float) -> float | None:
    for t, c in relay.changes:
        if t >= t0 - 1e-9 and c == 0:
            return t
    return None


def _allowed_overshoot(loop: Loop, at_t: float, pack: int, window: float, current: float) -> float:
    """The true voltage change of `pack` over `window` seconds at the scenario's current, from the
    crossing (re-simulated from a copy of the bank at the crossing, a steady current)."""
    b = loop._bank_at(at_t)
    v0 = b.voltage(pack, current)
    k = int(round(window / DT))
    for _ in range(max(k, 1)):
        b.step(DT, current)
    return abs(b.voltage(pack, current) - v0) * 1000.0


def run(name: str, engine: str = "model", short: bool = False) -> Result:
    s = spec(name, short)
    t_wall = time.monotonic()
    loop = Loop(s, engine)
    snaps: list[tuple[float, Bank]] = []

    def bank_at(t: float) -> Bank:
        best = snaps[0][1]
        for st, b in snaps:
            if st <= t + 1e-9:
                best = b
        return best.clone()

    loop._bank_at = bank_at  # type: ignore[attr-defined]
    try:
        res = _run(loop, s, snaps)
    finally:
        loop.close()
    res.engine = engine
    res.sim_s = round(loop.t, 2)
    res.wall_s = round(time.monotonic() - t_wall, 2)
    return res


def _run_recording(loop: Loop, t_end: float, snaps: list, stop=None) -> None:  # noqa: ANN001
    """run_until with a copy of the bank every second (for the allowed-overshoot replay)."""
    while loop.t < t_end:
        snaps.append((loop.t, loop.bank.clone()))
        loop.run_until(min(t_end, loop.t + 1.0), stop)
        if stop is not None and stop(loop):
            return


def _run(loop: Loop, s: Spec, snaps: list) -> Result:
    p = loop.cfg["protect"]
    min_on, min_off = p["min_on_s"], p["min_off_s"]
    target = s.interval_s + 0.0 + NODE_PERIOD_S + s.relay_delay_s  # scan time added once measured
    checks: dict[str, bool] = {}
    detail = ""
    reaction = overshoot = allowed = None
    if s.name == "ring_broken_charging":
        _run_recording(loop, s.ring_break_at or 0, snaps)
        checks["closed before the break"] = loop.relays[CHARGE].contact == 1 and loop.relays[DISCHARGE].contact == 1
        loop.engine.broken = True
        t_break = loop.t
        _run_recording(loop, s.duration_s, snaps)
        oc = _opened_after(loop.relays[CHARGE], t_break)
        od = _opened_after(loop.relays[DISCHARGE], t_break)
        allowed_t = p["stale_s"] + s.interval_s + loop.scan_s + s.relay_delay_s
        reaction = max(oc, od) - t_break if oc is not None and od is not None else None
        checks["charge and discharge open within stale_s + interval + scan + relay"] = (
            reaction is not None and reaction <= allowed_t)
        checks["stayed open while the ring is broken"] = (
            loop.relays[CHARGE].contact == 0 and loop.relays[DISCHARGE].contact == 0)
        target = allowed_t
        detail = f"ring broken at {t_break:.1f} s; stale_s {p['stale_s']} s"
    elif s.name == "hub_reset_trip":
        def latched(lp: Loop) -> bool:
            return lp.hub.protect.latched[CHARGE] != 0

        _run_recording(loop, s.duration_s, snaps, latched)
        checks["latched at the absolute maximum"] = latched(loop)
        t_latch = loop.t
        tc, _ = loop.crossing(p["latch_high_v"], True)
        reaction = t_latch - tc if tc is not None else None
        target_l = s.interval_s + loop.scan_s + NODE_PERIOD_S
        vmax = max(max(v) for _, v, _, _ in loop.trace)
        loop.charger.on = False  # type: ignore[union-attr]  # the owner switches the charger off
        loop.run_until(loop.t + 30)
        loop.engine.broken = True  # the hub restarts with the ring down for a moment
        loop.hub_restart()
        t_boot = loop.t
        checks["every coil de-energised by the reset"] = all(r.coil == 0 for r in loop.relays)
        loop.run_until(loop.t + s.ring_down_after_reset_s)
        loop.engine.broken = False
        loop.run_until(loop.t + 120)
        fw = loop.first_whole
        closes = [ms / 1000 for ms, _, c in loop.hub.port.out_log if c == 1]
        checks["every output open from boot until the first good scan"] = (
            fw is not None and fw >= t_boot + s.ring_down_after_reset_s - 1e-6 and all(t >= fw for t in closes))
        checks["latched trip still latched after the restart"] = (
            loop.hub.protect.latched[CHARGE] != 0 and loop.hub.port.out_state[CHARGE] == 0)
        checks["discharge closed after the first good scan"] = loop.hub.port.out_state[DISCHARGE] == 1
        loop.hub.port.press_reset()
        loop.run_until(loop.t + 2 * s.interval_s)
        checks["the reset button clears the latch"] = loop.hub.protect.latched[CHARGE] == 0
        detail = (f"latched at {t_latch:.1f} s (peak {vmax:.3f} V through a welded contactor), restart at "
                  f"{t_boot:.1f} s, ring down {s.ring_down_after_reset_s} s, first good scan "
                  f"{(fw - t_boot) if fw is not None else float('nan'):.1f} s after boot")
        target = target_l
        checks["latch decided within interval + scan + 0.2 s"] = reaction is not None and reaction <= target_l + 1e-6
    else:
        stop = None
        if s.limit in ("high", "low", "temp"):
            k = DISCHARGE if s.limit == "low" else CHARGE

            def stop(lp: Loop) -> bool:  # 30 s after the trip: enough to see the overshoot and any return
                t = _opened_after(lp.relays[k], 1.0)
                return t is not None and lp.t > t + 30

        _run_recording(loop, s.duration_s, snaps, stop)
    target_t = None
    if s.name not in ("ring_broken_charging", "hub_reset_trip"):
        target_t = s.interval_s + loop.scan_s + NODE_PERIOD_S + s.relay_delay_s
        target = target_t
    if s.limit in ("high", "low", "flap"):
        above = s.limit != "low"
        lim = p["high_v"] if above else p["low_v"]
        k = CHARGE if above else DISCHARGE
        # crossing: the true voltage within half the node's resolution of the limit (a node reports whole
        # mV in the model ring; the ADC step at the limit in simavr): what a perfect hub could see
        closed_at = next((t for t, c in loop.relays[k].changes if c == 1), 0.0)
        tc, pk = loop.crossing(lim, above, closed_at)
        first_open = _opened_after(loop.relays[k], 0.0)
        checks["the output opened"] = first_open is not None
        if tc is None and first_open is not None:
            # the reading got there first (a coarse ADC step): opened before the true voltage reached it
            reaction, overshoot = 0.0, 0.0
            ext = max(max(v) for _, v, _, _ in loop.trace) if above else min(min(v) for _, v, _, _ in loop.trace)
            detail = f"opened at {first_open:.2f} s with the true extreme at {ext:.4f} V, short of {lim} V"
            checks["never beyond the limit"] = (ext < lim) if above else (ext > lim)
        if tc is not None:
            to = _opened_after(loop.relays[k], tc - target_t)  # type: ignore[operator]
            checks["the output opened"] = to is not None
            if to is not None:
                reaction = max(0.0, to - tc)
                checks["reaction within interval + scan + 0.2 s + relay"] = reaction <= target_t + 1e-6
            cur = next(c for t, _, c, _ in loop.trace if t >= tc)
            allowed = _allowed_overshoot(loop, tc, pk, target_t, cur)  # type: ignore[arg-type]
            if loop.kind == "simavr":
                allowed += loop.resolution_mv(lim)  # the true value may be a whole ADC step past the reading
            if above:
                peak = max(max(v) for _, v, _, _ in loop.trace)
                overshoot = max(0.0, (peak - lim) * 1000)
            else:
                low = min(min(v) for t, v, _, _ in loop.trace if t >= tc)
                overshoot = max(0.0, (lim - low) * 1000)
            checks["overshoot within the true change over the reaction target"] = overshoot <= allowed + 0.05
            detail = f"pack {pk + 1} crossed {lim} V at {tc:.2f} s at {cur:.1f} A"
        if s.name == "series_imbalance" and tc is not None:
            t_idx = next(j for j, (t, _, _, _) in enumerate(loop.trace) if t >= tc)
            bank_v = sum(loop.trace[t_idx][1])
            checks["the bank voltage looked healthy at the crossing"] = bank_v < s.packs * s.charger[1]  # type: ignore[index]
            detail += f"; bank {bank_v:.3f} V < CV {s.packs * s.charger[1]:.2f} V"  # type: ignore[index]
    elif s.limit == "temp":
        lim = p["temp_high_c"]
        if loop.kind == "simavr":  # the node's temperature ADC step is ~0.9 C: its reading decides
            from .simavr_ring import expected_temp

            tc = next((t for t, _, _, temps in loop.trace
                       if max(expected_temp(round(x * 10)) for x in temps) > lim * 10), None)
        else:
            tc = next((t for t, _, _, temps in loop.trace if max(temps) > lim), None)
        checks["the limit was crossed"] = tc is not None
        if tc is not None:
            oc = _opened_after(loop.relays[CHARGE], tc)
            od = _opened_after(loop.relays[DISCHARGE], tc)
            checks["charge and discharge opened"] = oc is not None and od is not None
            if oc is not None and od is not None and target_t is not None:
                reaction = max(oc, od) - tc
                checks["reaction within interval + scan + 0.2 s + relay"] = reaction <= target_t + 1e-6
            checks["the fan switched on"] = any(c == 1 for _, c in loop.relays[FAN].changes)
            detail = f"pack 4 crossed {lim} C at {tc:.2f} s (as the node reads it)"
    changes = sum(len(r.changes) for r in loop.relays[:2])
    restarts = tuple(t for t, what in loop.events if what == "hub reset")
    chat = sum(chatter_count(r.changes, min_on, min_off, restarts) for r in loop.relays)
    if s.name == "flapping_limit":
        checks["no chatter"] = chat == 0
        checks["the reading crossed the limit 10+ times (the pack really sat on it)"] = loop.flaps >= 10
        detail += f"; the reading crossed {p['high_v']} V {loop.flaps} times, charge changed " \
                  f"{len(loop.relays[CHARGE].changes)} times"
    res = Result(s.name, all(checks.values()), _r(reaction), _r(target), _r(overshoot), _r(allowed), chat, changes,
                 detail=detail, checks=checks)
    return res


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(v, nd)


def dumps(results: list[Result]) -> str:
    keys = ("name", "passed", "reaction_s", "overshoot_mv", "allowed_overshoot_mv", "chatters")
    return json.dumps([{k: r.as_json()[k] for k in keys} | {"allowed_reaction_s": r.allowed_reaction_s,
                                                             "engine": r.engine, "hub": r.hub}
                       for r in results])


# -- the hub on the MicroPython unix port, in real time -----------------------------------------------
def run_mpy(name: str = "runaway_charger", engine: str = "model", lead_mv: float = 2.0,
            after_s: float = 6.0, timeout_s: float = 90.0) -> Result:
    """The same closed loop with the hub in a `micropython` process (tools/mpy/hub_main.py) reading the
    ring through a loopback socket, in real time: the bank is first brought (off-line, at full speed) to
    `lead_mv` below the scenario's limit, then stepped against the wall clock while the hub scans, its
    output lines ("out K CLOSED MS") drive the relays. Voltage scenarios only (runaway_charger,
    series_imbalance, weak_pack_night)."""
    import threading

    from ..mpy_hub import MpyHub, heap_for

    s = spec(name, short=True)
    # the bank starts lead_mv from the limit under load, i.e. ~70 mV from it at rest: the boot rule (an
    # output closes only past the hysteresis) then needs a hysteresis under that to close at all
    s.protect["hysteresis_v"] = 0.02
    if s.limit not in ("high", "low"):
        raise ValueError(f"{name}: the real-time loop runs the voltage scenarios only")
    above = s.limit == "high"
    t_wall0 = time.monotonic()
    bank = Bank(s.packs, soc=s.soc, capacity=s.capacity, temp_c=s.temp_c)
    charger = Charger(s.charger[0], s.charger[1] * s.packs, s.charger[2]) if s.charger else None
    p = dict(s.protect)
    tmp = tempfile.TemporaryDirectory(prefix="packmon-protect-mpy-")
    from hub import config

    cfg = config.validate(hub_config(s, str(Path(tmp.name) / "state.json")), need_wifi=False)
    lim = cfg["protect"]["high_v"] if above else cfg["protect"]["low_v"]

    def net(contact_c: int, contact_d: int) -> float:
        cur = -s.load_a if contact_d else 0.0
        if charger is not None:
            cur += charger.current(bank, bool(contact_c), cur)
        return cur

    # pre-roll, all connected, until the extreme pack is lead_mv from the limit
    for _ in range(200000):
        cur = net(1, 1)
        v = max(bank.voltage(i, cur) for i in range(s.packs)) if above else min(
            bank.voltage(i, cur) for i in range(s.packs))
        if (lim - v if above else v - lim) * 1000 <= lead_mv:
            break
        bank.step(DT, cur)
    eng = make_engine(engine, s.packs)
    for i in range(s.packs):
        eng.set_pack(i, mv=round(bank.voltage(i) * 1000), temp=round(bank.packs[i].temp_c * 10))
    relays = [Relay(s.relay_delay_s) for _ in range(4)]
    trace: list[tuple[float, list[float], float, list[float]]] = []
    hub = MpyHub(eng, cfg, heap=heap_for(cfg))  # what protection needs here (docs/hub.md "Memory")
    stop = threading.Event()
    t0 = time.monotonic()
    seen = 0
    crossed_at: float | None = None
    opened_at: float | None = None
    k_out = CHARGE if above else DISCHARGE
    next_sample = 0.0
    died = ""
    try:
        tsim = 0.0
        while time.monotonic() - t0 < timeout_s:
            now = time.monotonic() - t0
            with hub.lock:
                lines = hub.lines[seen:]
                seen = len(hub.lines)
            for line in lines:
                f = line.split()
                if len(f) == 4 and f[0] == "out":
                    relays[int(f[1])].drive(now, int(f[2]))
            while tsim < now:
                c = [r.update(tsim) for r in relays]
                cur = net(c[CHARGE], c[DISCHARGE])
                bank.step(DT, cur)
                tsim = round(tsim + DT, 6)
                volts = [bank.voltage(i) for i in range(s.packs)]
                trace.append((tsim, volts, cur, [pk.temp_c for pk in bank.packs]))
                if tsim >= next_sample:
                    with hub.ring.lock:
                        for i in range(s.packs):
                            eng.set_pack(i, mv=round(volts[i] * 1000), temp=round(bank.packs[i].temp_c * 10))
                    next_sample = tsim + NODE_PERIOD_S
            if crossed_at is None:
                tc, pk = _crossing(trace[-int(1 / DT) - 2:], range(s.packs), lim - 0.0005 if above else lim + 0.0005,
                                   above)
                if tc is not None:
                    crossed_at = tc
                    replay = (bank.clone(), pk, trace[-1][2])
            if relays[k_out].changes and relays[k_out].changes[-1][1] == 0 and opened_at is None:
                opened_at = relays[k_out].changes[-1][0]
            if opened_at is not None and now - opened_at > after_s:
                break
            if hub.proc.poll() is not None:
                with hub.lock:
                    died = "the hub exited: " + " | ".join(hub.lines[-4:])
                break
            time.sleep(DT / 2)
        stop.set()
    finally:
        hub.stop()
        close = getattr(eng, "close", None)
        if close:
            close()
        tmp.cleanup()
    target_t = s.interval_s + 0.1 + NODE_PERIOD_S + s.relay_delay_s  # 0.1 s: the real-time scan's budget
    checks: dict[str, bool] = {"the limit was crossed": crossed_at is not None,
                               "the output opened": opened_at is not None}
    reaction = overshoot = allowed = None
    if crossed_at is not None:
        b, pk, cur = replay
        v0 = b.voltage(pk, cur)
        for _ in range(int(round(target_t / DT))):
            b.step(DT, cur)
        allowed = abs(b.voltage(pk, cur) - v0) * 1000
    if crossed_at is not None and opened_at is not None:
        reaction = max(0.0, opened_at - crossed_at)
        checks["reaction within interval + scan + 0.2 s + relay"] = reaction <= target_t
        ext = [max(v) if above else min(v) for _, v, _, _ in trace]
        overshoot = max(0.0, ((max(ext) - lim) if above else (lim - min(ext))) * 1000)
    del p
    return Result(name, all(checks.values()), _r(reaction), _r(target_t), _r(overshoot), _r(allowed), 0,
                  sum(len(r.changes) for r in relays[:2]), engine=engine, hub="micropython",
                  detail=died or "real time; the hub's output lines drive the relays", checks=checks,
                  sim_s=round(trace[-1][0] if trace else 0.0, 2), wall_s=round(time.monotonic() - t_wall0, 2))
