"""A light equivalent-circuit bank model for the closed loop: every pack of the bank stepped together.

Per pack (a parallel group of `cells_parallel` cells, as one ring node sees it): OCV(SOC) from a table,
a series resistance R0, one RC pair (R1, tau), and a lumped thermal mass cooled towards the ambient.
The cell is PyBaMM's Chen2020 (LG M50, 5 Ah) as fitted by tools/fit_ecm.py into ecm_chen2020.json;
this module only reads that file. Each pack may have its own capacity and resistance factor (spread),
initial SOC, temperature and an extra heat source (an internal fault, a hot corner of the cabinet).

Sign convention: current > 0 charges the bank (the same as the shunt's current_ma).
Above SOC 1 (a charger that keeps going) the OCV is extrapolated with the slope of the last 5 % of the
table: only the seconds before a trip live there.
"""

from __future__ import annotations

import bisect
import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).resolve().parent / "ecm_chen2020.json"


@dataclass
class CellFit:
    capacity_ah: float
    soc: list[float]
    ocv_v: list[float]
    r0_ohm: float
    r1_ohm: float
    tau1_s: float
    heat_capacity_j_per_k: float
    cooling_w_per_k: float

    @classmethod
    def load(cls, path: Path = DATA) -> CellFit:
        d = json.loads(path.read_text())
        return cls(d["capacity_ah"], list(d["soc"]), list(d["ocv_v"]), d["r0_ohm"], d["r1_ohm"], d["tau1_s"],
                   d["heat_capacity_j_per_k"], d["cooling_w_per_k"])

    def ocv(self, soc: float) -> float:
        s, v = self.soc, self.ocv_v
        if soc <= s[0]:
            return v[0]
        if soc >= s[-1]:
            k = bisect.bisect_left(s, s[-1] - 0.05)
            slope = (v[-1] - v[k]) / (s[-1] - s[k])
            return v[-1] + slope * (soc - s[-1])
        k = bisect.bisect_right(s, soc)
        f = (soc - s[k - 1]) / (s[k] - s[k - 1])
        return v[k - 1] + f * (v[k] - v[k - 1])

    def soc_at(self, ocv: float) -> float:
        """The SOC whose OCV is `ocv` (inverse of the table, for setting up a scenario)."""
        lo, hi = self.soc[0], 1.2
        for _ in range(60):
            mid = (lo + hi) / 2
            if self.ocv(mid) < ocv:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


@dataclass
class PackState:
    soc: float
    v1: float = 0.0  # the RC pair's voltage
    temp_c: float = 25.0


@dataclass
class Bank:
    n: int
    cells_parallel: int = 4
    soc: list[float] | float = 0.5
    capacity: list[float] | float = 1.0  # factor on the fitted capacity, per pack
    resistance: list[float] | float = 1.0  # factor on R0 and R1, per pack
    temp_c: list[float] | float = 25.0
    ambient_c: float = 25.0
    fit: CellFit = field(default_factory=CellFit.load)
    heat_w: list[float] = field(default_factory=list)  # extra heat per pack (W), e.g. an internal fault
    packs: list[PackState] = field(default_factory=list)
    t: float = 0.0
    current: float = 0.0  # the current of the last step (A, + = charging)

    def __post_init__(self) -> None:
        def per(v: list[float] | float) -> list[float]:
            return list(v) if isinstance(v, list) else [float(v)] * self.n

        self.soc, self.capacity, self.resistance = per(self.soc), per(self.capacity), per(self.resistance)
        temps = per(self.temp_c)
        if not self.packs:
            self.packs = [PackState(s, 0.0, t) for s, t in zip(self.soc, temps, strict=True)]
        if not self.heat_w:
            self.heat_w = [0.0] * self.n

    # -- per pack parameters -----------------------------------------------------------------------
    def cap_as(self, i: int) -> float:
        return self.fit.capacity_ah * self.cells_parallel * self.capacity[i] * 3600.0  # type: ignore[index]

    def r0(self, i: int) -> float:
        return self.fit.r0_ohm / self.cells_parallel * self.resistance[i]  # type: ignore[index]

    def r1(self, i: int) -> float:
        return self.fit.r1_ohm / self.cells_parallel * self.resistance[i]  # type: ignore[index]

    # -- what a node would measure ---------------------------------------------------------------------
    def ocv(self, i: int) -> float:
        return self.fit.ocv(self.packs[i].soc)

    def voltage(self, i: int, current: float | None = None) -> float:
        """Terminal voltage of pack i at `current` (default: the last step's)."""
        c = self.current if current is None else current
        return self.ocv(i) + self.packs[i].v1 + c * self.r0(i)

    def bank_voltage(self, current: float | None = None) -> float:
        return sum(self.voltage(i, current) for i in range(self.n))

    def emf(self) -> float:
        """OCV + RC voltage summed: the bank voltage at zero current."""
        return sum(self.ocv(i) + self.packs[i].v1 for i in range(self.n))

    def r_total(self) -> float:
        return sum(self.r0(i) for i in range(self.n))

    # -- time ------------------------------------------------------------------------------------------
    def step(self, dt: float, current: float) -> None:
        """Every pack together: the same series current for dt seconds."""
        self.current = current
        fit = self.fit
        e = math.exp(-dt / fit.tau1_s)
        for i, p in enumerate(self.packs):
            r0, r1 = self.r0(i), self.r1(i)
            p.soc += current * dt / self.cap_as(i)
            p.v1 = p.v1 * e + current * r1 * (1 - e)
            heat = current * current * r0 + p.v1 * p.v1 / r1 + self.heat_w[i]
            c_th = fit.heat_capacity_j_per_k * self.cells_parallel
            h = fit.cooling_w_per_k * self.cells_parallel
            p.temp_c += dt * (heat - h * (p.temp_c - self.ambient_c)) / c_th
        self.t += dt

    def clone(self) -> Bank:
        return copy.deepcopy(self)


class Relay:
    """A relay or contactor: the contact follows the coil `delay_s` after the pin changes. welded: the
    contact stays closed whatever the coil does (the failure a latch exists for)."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self.coil = 0
        self.contact = 0
        self.welded = False
        self._pending: list[tuple[float, int]] = []
        self.changes: list[tuple[float, int]] = []  # (time, contact) of every contact change

    def drive(self, t: float, closed: int) -> None:
        if closed != self.coil:
            self.coil = closed
            self._pending.append((t + self.delay_s, closed))

    def deenergise(self, t: float) -> None:
        """The hub reset: every pin floats, every coil drops at once."""
        self.drive(t, 0)

    def update(self, t: float) -> int:
        while self._pending and self._pending[0][0] <= t + 1e-9:
            at, c = self._pending.pop(0)
            if self.welded:
                c = 1 if self.contact else c
            if c != self.contact:
                self.contact = c
                self.changes.append((at, c))
        return self.contact


class Charger:
    """Constant current, then constant voltage on the BANK voltage, tapering. terminate_a: stop once the
    CV current falls below it (None: a runaway charger that never stops)."""

    def __init__(self, cc_a: float, cv_v: float, terminate_a: float | None = None) -> None:
        self.cc_a = cc_a
        self.cv_v = cv_v
        self.terminate_a = terminate_a
        self.done = False
        self.on = True

    def current(self, bank: Bank, connected: bool, other: float = 0.0) -> float:
        """The charger's current, given the rest of the bank's net current `other` (a load: < 0): in CV it
        holds the bank's terminal voltage at cv_v with the load included."""
        if not connected or not self.on or self.done:
            return 0.0
        i = (self.cv_v - bank.emf()) / bank.r_total() - other
        i = max(0.0, min(self.cc_a, i))
        if self.terminate_a is not None and i < self.terminate_a and i < self.cc_a:
            self.done = True
            return 0.0
        return i


class Load:
    """A constant-current load (an inverter at steady power) while connected."""

    def __init__(self, amps: float) -> None:
        self.amps = amps

    def current(self, connected: bool) -> float:
        return self.amps if connected else 0.0
