"""`packmon demo --battery`: one physical bank behind everything the hub reads.

An ECM bank (sim/ecm.py, fitted to PyBaMM's Chen2020 cell: 4P packs by default, a seeded spread in capacity
and resistance, optionally one weak pack) is driven through a solar day (rest before dawn, charging by day
under clouds with a charger that tapers in constant voltage at full, household loads, inverter loads in
steps by night). Its series current drives the INA228 device model (sim/ina.py) on the hub's I2C, and its
pack voltages and temperatures go to the ring engine (model or simavr) through set_pack, as the scenarios'
do: the current the hub counts and the voltages the nodes report come from the same bank.

Time is compressed: the bank, the hub's clock (a SimClock that the ring's wire time also moves), the chip
model and the hub's wall clock all run `speed` times faster than the demo's real time, and the hub scans
every `interval * speed` simulated seconds. The demo starts at 04:30, in the rest before dawn, so the hub's
first SOC resync (one hour of rest, its default rest_s) comes within the first minutes.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import shutil
import sys
import time
from pathlib import Path

from hub import alarms as alarms_mod
from hub import codec

from .sim import ina
from .sim.ecm import Bank, CellFit

DAY_S = 86400.0
CV_PER_PACK_V = 4.18  # the charge controller's constant voltage, per pack (NMC: ~99 % of the Chen2020 cell)
PACK_MAX_V = 4.20  # the pack BMS's charge limit: the charge current is cut back to keep every pack below it
STEP_S = 1.0  # physics step (simulated seconds); the current is held over each step


class CurrentHistory:
    """The bank's series current as simulated: piecewise constant over the physics steps. Callable (the chip
    model's `current(t)`) and exactly integrable (FastIna228 uses `integral`)."""

    def __init__(self) -> None:
        self.t: list[float] = [0.0]
        self.a: list[float] = [0.0]

    def append(self, t0: float, amps: float) -> None:
        if t0 <= self.t[-1]:
            self.a[-1] = amps
        else:
            self.t.append(t0)
            self.a.append(amps)

    def __call__(self, t: float) -> float:
        return self.a[max(0, bisect.bisect_right(self.t, t) - 1)]

    def integral(self, t0: float, t1: float) -> float:
        """A*s over [t0, t1]."""
        total = 0.0
        k = max(0, bisect.bisect_right(self.t, t0) - 1)
        t = t0
        while t < t1:
            end = self.t[k + 1] if k + 1 < len(self.t) else t1
            end = min(end, t1)
            total += self.a[k] * (end - t)
            t = end
            k += 1
        return total

    def prune(self, before: float) -> None:
        k = bisect.bisect_right(self.t, before) - 1
        if k > 0:
            del self.t[:k], self.a[:k]


class FastIna228(ina.Ina228Model):
    """The INA228 model for compressed time. The chip converts every ~1 ms; a scan minutes of simulated time
    apart would mean ~10^5 conversions to simulate one by one. The conversions no register shows one by one
    (all but the last two averaging windows before a read) are summed in closed form: their CHARGE is the
    exact integral of the current with the same gain error and offset and the noise of their mean (the
    per-conversion rounding, dithered by noise of ~80 LSB, averages out). The last windows run through the
    model's own conversion loop, so CURRENT, VSHUNT and the flags are exactly as the model makes them."""

    def advance(self, t: float) -> None:
        cyc = self._cycle_s()
        mode = self.adc_config >> 12
        integral = getattr(self.current, "integral", None)
        ct = ina.CT228_US[(self.adc_config >> 6) & 7] / 1e6
        if cyc > 0 and mode == 0xA and abs(cyc - ct) < 1e-12 and integral is not None:
            avg = ina.AVG[self.adc_config & 7]
            n = int((t - self.t_conv) / cyc) - 2 * avg
            n -= n % avg
            if n > 0:
                t0, t1 = self.t_conv, self.t_conv + n * cyc
                true_mean = integral(t0, t1) / (t1 - t0)
                self.true_charge_as += true_mean * (t1 - t0)
                noise = self.rng.gauss(0.0, self.noise_ma / math.sqrt(n)) / 1000 if self.noise_ma else 0.0
                meas = true_mean * (1 + self.gain_error) + self.offset_ma / 1000 + noise
                lsb_v = 78.125e-9 if self.adcrange else 312.5e-9
                full = round(self.FULL_SCALE_V / (4 if self.adcrange else 1) / lsb_v)
                c = meas * self.r / lsb_v
                if c >= full or c < -full:
                    self.diag |= 1 << 6 if c > 0 else 1 << 5
                    c = max(-full, min(full - 1, c))
                if self.shunt_cal:
                    self.charge += c * 4096 / self.shunt_cal * (t1 - t0)
                self.conversions += n
                self.t_conv = t1
        super().advance(t)


class SolarBank:
    """The ECM bank through a solar day. t: simulated seconds since the demo started (the hub's clock)."""

    def __init__(self, packs: int, parallel: int = 4, weak_pack: int | None = None, seed: int = 1,
                 start_h: float = 4.5, soc0: float = 0.35, dt: float = STEP_S) -> None:
        if weak_pack is not None and not 1 <= weak_pack <= packs:
            raise SystemExit(f"packmon demo: --weak-pack {weak_pack}: must be a pack number 1..{packs}")
        fit = CellFit.load()
        rng = random.Random(seed)
        cap = [1.0 + rng.gauss(0.0, 0.02) for _ in range(packs)]
        res = [1.0 + rng.gauss(0.0, 0.05) for _ in range(packs)]
        if weak_pack is not None:
            cap[weak_pack - 1] *= 0.85
        socs = [soc0 + rng.uniform(-0.01, 0.01) for _ in range(packs)]
        temps = [24.0 + rng.uniform(-1.0, 1.0) for _ in range(packs)]
        self.bank = Bank(packs, cells_parallel=parallel, soc=socs, capacity=cap, resistance=res, temp_c=temps,
                         fit=fit)
        self.n = packs
        self.parallel = parallel
        self.weak_pack = weak_pack
        self.cell_ah = fit.capacity_ah
        self.c_a = fit.capacity_ah * parallel  # 1C of a nominal pack, A
        self.start_s = start_h * 3600.0
        self.dt = dt
        self.t = 0.0
        self.history = CurrentHistory()
        self.q_in_as = 0.0  # charge into / out of the bank since the start (A*s), for the energy counters
        self.q_out_as = 0.0
        self.phase = ""
        self.load_cut = False

    # -- the profile -------------------------------------------------------------------------------------
    def hour(self, t: float | None = None) -> float:
        return ((self.start_s + (self.t if t is None else t)) % DAY_S) / 3600.0

    def day(self) -> int:
        return int((self.start_s + self.t) // DAY_S) + 1

    def demand(self, h: float) -> tuple[float, float, str]:
        """(sun A available to the charge controller, load A drawn from the bank, phase) at hour h."""
        c = self.c_a
        if 2.0 <= h < 6.0:
            return 0.0, 0.003 * c, "rest before dawn (inverter in standby)"
        if 6.0 <= h < 18.0:
            cloud = 0.4 if int(h * 3) % 7 == 4 else 1.0  # a passing cloud every 2 h 20 min, 20 min long
            return 0.35 * c * math.sin(math.pi * (h - 6.0) / 12.0) * cloud, 0.03 * c, "day: solar charging"
        step = int(h * 2) % 4  # the inverter's load changes every half hour
        return 0.0, 0.05 * c * (0.4, 1.2, 0.7, 1.5)[step], "night: inverter loads"

    def current(self, h: float) -> float:
        sun, load, self.phase = self.demand(h)
        b = self.bank
        if min(b.voltage(i, -load) for i in range(self.n)) < 3.0:
            self.load_cut = True  # the inverter's low-voltage cut-off (on the weakest pack's BMS)
        elif h < 2.0 or h >= 6.0:
            self.load_cut = self.load_cut and sun <= load
        if self.load_cut:
            load = 0.0
        if sun > 0.0:  # the charge controller: CC up to what the sun gives, CV on the bank at full, and the
            # packs' BMS limit: no pack above PACK_MAX_V (the weak pack, full first, holds the others back)
            cv = (CV_PER_PACK_V * self.n - b.emf()) / b.r_total()
            for i in range(self.n):
                cv = min(cv, (PACK_MAX_V - b.ocv(i) - b.packs[i].v1) / b.r0(i))
            cv += load
            charge = max(0.0, min(sun, cv))
            if cv < sun:
                self.phase = "day: full, charger tapering in constant voltage"
            return charge - load
        return -load

    def advance_to(self, t_end: float) -> None:
        while self.t < t_end - 1e-9:
            dt = min(self.dt, t_end - self.t)
            amps = self.current(self.hour())
            self.history.append(self.t, amps)
            self.bank.step(dt, amps)
            if amps > 0:
                self.q_in_as += amps * dt
            else:
                self.q_out_as -= amps * dt
            self.t += dt
        self.history.prune(self.t - 600.0)

    # -- the truth -----------------------------------------------------------------------------------------
    def voltages_mv(self) -> list[int]:
        return [round(self.bank.voltage(i) * 1000) for i in range(self.n)]

    def temps_dc(self) -> list[int]:
        return [round(p.temp_c * 10) for p in self.bank.packs]

    def socs_pct(self) -> list[float]:
        return [p.soc * 100 for p in self.bank.packs]

    def bank_soc_pct(self) -> float:
        """The SOC of the pack with the least charge left (the bank's discharge ends there)."""
        left = [(self.bank.packs[i].soc * self.bank.cap_as(i), i) for i in range(self.n)]
        return self.bank.packs[min(left)[1]].soc * 100


def battery_config(args: argparse.Namespace) -> dict:
    """The hub's battery block for the demo's bank (the Chen2020 cell, 4P by default)."""
    fit = CellFit.load()
    return {"enabled": True, "chemistry": "nmc", "capacity_ah": round(fit.capacity_ah, 3),
            "cells_parallel": args.parallel}


class BatteryDemo:
    """The pieces of one --battery run, stepped scan by scan (the demo's loop and the tests drive it)."""

    def __init__(self, args: argparse.Namespace, cfg: dict, logs: list[str]) -> None:
        from hub.app import Hub
        from hub.port import HostPort, install_cpython_shims

        from .demo import EPOCH_2000, _vendored_lib
        from .sim.clock import SimClock
        from .sim.model_ring import ModelRing, SimUart

        _vendored_lib()
        install_cpython_shims()
        self.speed = args.speed
        self.scan_s = args.interval * args.speed
        self.sol = SolarBank(args.packs, args.parallel, args.weak_pack, seed=args.seed)
        mv, temp = self.sol.voltages_mv(), self.sol.temps_dc()
        self.kind = args.engine
        if args.engine == "simavr":
            from .sim import simavr_ring

            ok, why = simavr_ring.available()
            if not ok:
                raise SystemExit(f"packmon demo: --engine simavr is not available here: {why}")
            self.engine = simavr_ring.SimavrRing(args.packs, mv=mv, temp=temp)
        else:
            self.engine = ModelRing(args.packs, mv=mv, temp=temp)
        self.clock = SimClock()
        wall0 = int(time.time()) - EPOCH_2000
        wall0 -= wall0 % 86400
        wall0 += int(self.sol.start_s)  # the hub's wall clock: today, at the bank's time of day

        def on_exchange(data: bytes, ex) -> None:  # noqa: ANN001
            self.clock.advance(ex.seconds)  # the hub's clock moves with the ring's wire time

        self.model = FastIna228(0.0005, self.sol.history, lambda: self.clock.t / 1000.0, gain_error=0.002,
                                offset_ma=20, noise_ma=50, seed=args.seed)

        def log(level: str, msg: str) -> None:
            logs.append(f"{self.clock_str()} {level:<7} {msg}")
            del logs[:-6]

        port = HostPort(SimUart(self.engine, on_exchange=on_exchange), clock=self.clock, log_level="info", log=log,
                        i2c=self.model, wall=lambda: wall0 + self.clock.t // 1000)
        self.hub = Hub(cfg, port)
        self.scans = 0
        self.read_t = 0.0  # simulated time of the last shunt read (s)
        self.set_mv: list[int] = mv  # what the nodes were given before the last scan
        self.set_temp: list[int] = temp

    def clock_str(self) -> str:
        h = self.sol.hour()
        return f"day {self.sol.day()} {int(h):02d}:{int(h * 60) % 60:02d}"

    def step(self) -> None:
        """One scan: the bank runs to the scan's time, the nodes measure it, the hub scans and reads the shunt."""
        t = self.scans * self.scan_s
        self.sol.advance_to(t)
        self.set_mv, self.set_temp = self.sol.voltages_mv(), self.sol.temps_dc()
        for i in range(self.sol.n):
            self.engine.set_pack(i, mv=self.set_mv[i], temp=self.set_temp[i])
        if self.kind == "simavr":
            self.engine.run(250)  # every node measures the new voltage (they sample every 0.2 s)
        self.clock.t = max(self.clock.t, int(round(t * 1000)))
        self.hub.run_once()
        self.read_t = self.clock.t / 1000.0
        self.scans += 1

    def close(self) -> None:
        self.hub.store.service(self.hub.port.clock.ticks_ms(), force=True)
        self.hub.publisher.close(clean=True)
        close = getattr(self.engine, "close", None)
        if close:
            close()
        state = Path(self.hub.cfg["state_file"])
        if state.parent.name.startswith("packmon-demo-battery-"):  # the run's own, made by demo_raw_config
            shutil.rmtree(state.parent, ignore_errors=True)


def _soc(v: int) -> str:
    return f"{v / 100:5.1f}%" if v >= 0 else "   — "


def render(d: BatteryDemo, broker: str, logs: list[str]) -> str:
    hub, sol = d.hub, d.sol
    b = hub.bank
    now = hub.port.clock.ticks_ms()
    td = hub.port.clock.ticks_diff
    est = getattr(hub, "estimator", None)
    lines = [
        f"Pack Monitor demo — battery: {b.n} packs of {sol.parallel}P Chen2020 (ECM), engine {d.kind}, "
        f"scan {d.scans}",
        f"time x{d.speed:g}: 1 s here is {d.speed:g} s of the bank's day; now {d.clock_str()}, "
        f"a scan every {d.scan_s:g} s — {sol.phase}",
        f"broker {broker}   topics {hub.cfg['topic_prefix']}/#   "
        f"mqtt {'connected' if hub.publisher.connected else 'DISCONNECTED: ' + hub.publisher.last_error}",
        "",
        " pack  voltage   temp   SOC hub  (true)  capacity  R mΩ  state",
    ]
    true_soc = sol.socs_pct()
    h = est.health if est is not None else None
    for i in range(b.n):
        mv = b.voltage_mv(i, now, td)
        t = b.temperature(i, now, td)
        row = f" {i + 1:>4}  " + (f"{mv / 1000:7.3f}V " if mv else "     —  ")
        row += f"{t / 10:5.1f}°C" if t != -32768 else "    —  "
        row += f"  {_soc(est.soc[i]) if est is not None else '   — '}  ({true_soc[i]:5.1f}%)"
        if h is not None:
            cap = f"{h.cap[i] / 360000:6.1f}Ah" if h.cap[i] else "     — "
            res = f"{h.r[i] / 1000:6.2f}" if h.r[i] else "   —  "
            row += f"  {cap}  {res}"
            if h.weak[i]:
                row += "  WEAKEST"
        if b.is_stale(i, now, td):
            row += "  STALE"
        if sol.weak_pack == i + 1:
            row += "  (weak in the model)"
        lines.append(row)
    lines.append("")
    if b.fresh:
        total = f"{b.total_mv / 1000:.3f} V" if b.complete else "— (stale packs)"
        lines.append(f" bank {total}   min {b.min_mv / 1000:.3f} V (pack {b.min_pack})   "
                     f"max {b.max_mv / 1000:.3f} V (pack {b.max_pack})")
    s, e = hub.shunt, hub.energy
    true_a = sol.history(d.read_t)
    if s.ok:
        power = f"{s.current_ma * b.total_mv / 1e6:7.1f} W" if b.complete else "   — (stale packs)"
        lines.append(f" current {s.current_ma / 1000:8.3f} A (true {true_a:8.3f} A)   power {power}")
    else:
        lines.append(f" current —   {s.problem}")
    if est is not None:
        ttx = ""
        if est.ttf_s >= 0:
            ttx = f"   full in {est.ttf_s / 3600:.1f} h"
        elif est.tte_s >= 0:
            ttx = f"   empty in {est.tte_s / 3600:.1f} h"
        state = "" if est.bank_soc >= 0 else "   (unknown until the first resync: an hour of rest or a full charge)"
        lines.append(f" bank SOC {_soc(est.bank_soc)} (true {sol.bank_soc_pct():5.1f}%){ttx}{state}")
    elif getattr(hub, "battery_error", ""):
        lines.append(" SOC —   " + hub.battery_error)
    lines.append(f" energy in {e.in_mwh / 1e6:.4f} kWh ({e.in_mah / 1000:.2f} Ah)   "
                 f"out {e.out_mwh / 1e6:.4f} kWh ({e.out_mah / 1000:.2f} Ah)")
    active = [alarms_mod.NAMES[k] for k in range(len(alarms_mod.NAMES)) if hub.alarms.active[k]]
    r = hub.ring
    errs = ", ".join(f"{codec.ERROR_NAMES[k]} {r.errors[k]}" for k in range(1, len(r.errors)) if r.errors[k])
    lines.append(f" alarms: {', '.join(active) if active else 'none'}")
    lines.append(f" ring: {r.good}/{r.sent} frames good" + (f"; rejected: {errs}" if errs else ""))
    lines += [" " + x for x in logs[-4:]]
    return "\n".join(lines)


def line(d: BatteryDemo) -> str:
    hub = d.hub
    b = hub.bank
    est = getattr(hub, "estimator", None)
    cur = f"current {hub.shunt.current_ma / 1000:.3f} A" if hub.shunt.ok else "current unknown"
    soc = "SOC unknown"
    if est is not None and est.bank_soc >= 0:
        soc = f"SOC {est.bank_soc / 100:.1f} %"
    return (f"scan {d.scans} {d.clock_str()}: {b.fresh}/{b.n} packs fresh, bank "
            f"{(b.total_mv / 1000) if b.complete else float('nan'):.3f} V, {cur}, {soc} "
            f"(true {d.sol.bank_soc_pct():.1f} %), published {hub.publisher.published}")


def run(args: argparse.Namespace) -> int:
    from .demo import open_broker, watch_command

    logs: list[str] = []
    cfg, broker, url = open_broker(args)
    try:
        d = BatteryDemo(args, cfg, logs)
    except BaseException:
        if broker:
            broker.stop()
        raise
    tty = sys.stdout.isatty() and not args.no_table
    print(f"MQTT broker: {url}{' (embedded)' if broker else ''}")
    print(f"watch it:    {watch_command(cfg)}")
    print(f"time x{args.speed:g}: a scan every {d.scan_s:g} simulated s. Ctrl-C stops.\n")
    try:
        while not args.scans or d.scans < args.scans:
            t0 = time.monotonic()
            d.step()
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J" + render(d, url, logs) + "\n")
            else:
                print(line(d))
            sys.stdout.flush()
            if not args.scans or d.scans < args.scans:
                left = args.interval - (time.monotonic() - t0)
                if left > 0:
                    time.sleep(left)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        d.close()
        if broker:
            broker.stop()
    print(f"{d.scans} scans, {d.hub.publisher.published} messages published to {url}")
    return 0
