"""The truth for the SOC/health estimator: a bank of real cells simulated with PyBaMM.

A pack is P identical cells in parallel (one cell is simulated at I/P); the bank is packs in series sharing
one current. Packs spread in capacity (electrode height) and resistance (contact resistance), seeded, and
one pack may be weak (-15 % capacity or +50 % resistance). Each pack is an SPMe with a lumped thermal model
and contact resistance, solved with IDAKLU against a current Interpolant that holds each 5 s value (steps
are 50 ms ramps, so the solver sees them as steps).

The bank is controlled as a real one is: a charger in constant voltage on the bank (it tapers from the
moment the bank reaches its CV voltage, then stops at a tail current until the bank has been discharged
again), and a low-voltage disconnect that opens the load when any pack reaches its cut-off margin (kept
open until the profile charges again). Every such action is an event in BankRun.events: a profile that
over-discharges a weak pack is clipped and reported, never silently shortened.

Truth definitions (issue 12):
- a pack's SOC is its charge left to the lower cut-off at C/20 and 25 degC, over its capacity (the charge
  from full, the parameter set's 100 % state, to the cut-off at C/20, 25 degC);
- the bank's SOC is the smallest remaining charge over that pack's capacity;
- a pack's resistance is dV/dI one scan interval after a 0.5C step at 50 % SOC and 25 degC (separate short
  runs per pack).
Remaining charge is tracked by charge conservation: remaining(t) = remaining(0) - discharged(t), with
remaining(0) from a C/20 discharge of the pack from its initial state (SPMe has no side reactions, so the
charge counted is the charge moved).

Needs the `accuracy` extra (pip install -e '.[accuracy]'). Results are cached on disk, keyed by every
input, because a 16-pack, 14-day run costs minutes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import pickle
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

GRID_S = 5.0  # current grid and scan interval of the truth
RAMP_S = 0.05  # a step in the current is a ramp this long
DEFAULT_PROFILE = Path(__file__).with_name("profiles") / "solar_14d.csv"
PROFILE_REF_AH = 20.0  # the default profile is written for 20 Ah packs (4P of 5 Ah); scaled to others
CACHE_VERSION = 6

PARAM_SETS = ("Chen2020", "OKane2022", "Ecker2015", "Mohtat2020", "Prada2013")


class TruthError(Exception):
    pass


def cache_dir() -> Path:
    d = Path(os.environ.get("PACKMON_CACHE", Path.home() / ".cache" / "packmon")) / "cells"
    d.mkdir(parents=True, exist_ok=True)
    return d


# -- profiles -----------------------------------------------------------------------------------
def read_profile(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A CSV time_s,current_a (+ = charging); each value holds until the next row."""
    t: list[float] = []
    i: list[float] = []
    with open(path, newline="") as f:
        rows = csv.reader(f)
        head = next(rows, None)
        if head is None or [h.strip() for h in head[:2]] != ["time_s", "current_a"]:
            raise TruthError(f"{path}: the first line must be 'time_s,current_a'")
        for n, row in enumerate(rows, start=2):
            if not row or row[0].startswith("#"):
                continue
            try:
                tt, ii = float(row[0]), float(row[1])
            except (ValueError, IndexError):
                raise TruthError(f"{path}:{n}: not two numbers: {row!r}") from None
            if t and tt <= t[-1]:
                raise TruthError(f"{path}:{n}: time_s {tt} does not increase")
            if not (math.isfinite(tt) and math.isfinite(ii)):
                raise TruthError(f"{path}:{n}: not a finite number")
            t.append(tt)
            i.append(ii)
    if len(t) < 2:
        raise TruthError(f"{path}: needs at least two rows")
    if t[0] != 0:
        raise TruthError(f"{path}: time_s must start at 0")
    return np.array(t), np.array(i)


def on_grid(t: np.ndarray, i: np.ndarray, days: float, scale: float) -> np.ndarray:
    """The profile's current on the 5 s grid (value of interval k = [5k, 5k+5)), repeated to cover days."""
    n = int(round(days * 86400 / GRID_S))
    span = t[-1] + (t[-1] - t[-2])
    grid = (np.arange(n) * GRID_S) % span
    idx = np.searchsorted(t, grid, side="right") - 1
    return i[idx] * scale


def solar_profile(days: int = 14, seed: int = 7, cap_ah: float = PROFILE_REF_AH) -> tuple[np.ndarray, np.ndarray]:
    """The default profile at 60 s: sunny and cloudy solar days charging into a charger limit, inverter loads
    with steps in the evening and at night, a quiet hour before dawn (a rest), and some days that do not
    reach full. + = charging."""
    rng = random.Random(seed)
    c = cap_ah
    t = np.arange(0, days * 86400, 60.0)
    cur = np.zeros(len(t))
    for d in range(days):
        sun = 1.0 if d % 4 != 2 else 0.25  # every 4th day overcast: it does not reach full
        clouds = 1.0
        load = 0.0
        hold = 0
        for k in range(1440):
            h = k / 60.0
            # inverter load: evening steps, a base at night, a quiet spell 3:30-5:30 (the rest)
            if hold <= 0:
                hold = rng.randint(5, 40)
                if 17.5 <= h < 23.5:
                    load = rng.choice([0.02, 0.03, 0.05, 0.07, 0.10, 0.15]) * c
                elif 3.5 <= h < 5.5:
                    load = 0.005 * c
                elif h >= 23.5 or h < 3.5:
                    load = rng.choice([0.015, 0.02, 0.03]) * c
                else:
                    load = rng.choice([0.02, 0.05, 0.10]) * c
            hold -= 1
            pv = 0.0
            if 7.0 <= h < 18.0:
                if rng.random() < 0.05:
                    clouds = rng.choice([1.0, 1.0, 0.8, 0.5, 0.3])
                pv = 0.9 * c * sun * clouds * math.sin(math.pi * (h - 7.0) / 11.0)
            cur[d * 1440 + k] = round(pv - load, 3)
    return t, cur


def write_profile(path: Path, t: np.ndarray, i: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("time_s,current_a\n")
        prev = None
        for tt, ii in zip(t, i, strict=True):
            if ii != prev:  # only the changes: each value holds until the next row
                f.write(f"{int(tt)},{ii:g}\n")
                prev = ii
        f.write(f"{int(t[-1] + 60)},{i[-1]:g}\n")


# -- the bank -------------------------------------------------------------------------------------
@dataclass
class BankSpec:
    param_set: str = "Chen2020"
    packs: int = 16
    parallel: int = 4
    weak_pack: int | None = None  # 1-based pack number
    weak_kind: str = "capacity"  # "capacity" (-15 %) or "resistance" (+50 %)
    seed: int = 1
    capacity_spread: float = 0.02  # 1 sigma of the packs' capacity
    resistance_spread: float = 0.05  # 1 sigma of the packs' resistance
    initial_soc: float = 0.7
    scan_phase_s: float = 4.7  # scans at 5k + phase (the profile steps at 5k)
    node_skew_s: float = 0.2  # a node samples up to this long after the scan starts
    charge_cv_v: float = 4.15  # per pack (the charger's CV is this times the pack count)
    tail_c: float = 0.02  # the charger stops at this C-rate in CV
    lvd_margin_v: float = 0.5  # load disconnect at the lower cut-off plus this
    high_cutoff_v: float = 4.25  # a pack's BMS stops the charger at this voltage (imbalance at the top)


@dataclass
class PackTruth:
    height_scale: float
    contact_ohm: float  # per cell
    capacity_ah: float  # pack, C/20 25 degC, full to cut-off
    resistance_ohm: float  # pack, dV/dI 5 s after a 0.5C step at 50 % SOC, 25 degC
    remaining0_ah: float  # pack, at the start of the run


@dataclass
class BankRun:
    spec: dict
    nominal_ah: float  # pack
    chemistry: str
    t_scan: np.ndarray  # (scans,) the scan start times, s
    current: np.ndarray  # (scans,) true bank current over the interval before each scan, A (+ charging)
    v: np.ndarray  # (packs, scans) pack voltage at the node's sampling moment, V
    temp: np.ndarray  # (packs, scans) degC
    soc: np.ndarray  # (packs, scans) truth SOC 0..1
    bank_soc: np.ndarray  # (scans,)
    packs: list[PackTruth]
    events: list[str] = field(default_factory=list)
    skew: np.ndarray | None = None  # (packs, scans) sampling delay after the scan start, s


def _pybamm():
    try:
        import pybamm
    except ImportError as e:
        raise TruthError(f"pybamm is not installed ({e}); pip install -e '.[accuracy]'") from None
    return pybamm


def chemistry_of(param_set: str) -> str:
    return "lfp" if param_set.lower().startswith("prada") else "nmc"


def _params(spec: BankSpec, height_scale: float, contact_ohm: float):
    pybamm = _pybamm()
    if spec.param_set not in PARAM_SETS:
        raise TruthError(f"unknown parameter set {spec.param_set!r}; known: {', '.join(PARAM_SETS)}")
    p = pybamm.ParameterValues(spec.param_set)
    _CURRENT_SET[0] = spec.param_set
    p["Electrode height [m]"] = p["Electrode height [m]"] * height_scale
    p.update({"Contact resistance [Ohm]": contact_ohm}, check_already_exists=False)
    return p


NO_THERMAL = ("Prada2013",)  # parameter sets that ship no thermal parameters: isothermal at 25 degC
_CURRENT_SET = ["Chen2020"]  # the set _params() last built (one set per process)


def _model(param_set: str = "Chen2020"):
    pybamm = _pybamm()
    thermal = "isothermal" if param_set in NO_THERMAL else "lumped"
    return pybamm.lithium_ion.SPMe({"thermal": thermal, "contact resistance": "true"})


def _solve(p, knots_t, knots_i, t_end, t_out, initial, model=None):
    """One cell: current (+ = discharge, PyBaMM's sign) through the knots, outputs at t_out.
    initial is an SOC (float) or a previous solution (its last state). Returns the solution."""
    pybamm = _pybamm()
    p = p.copy()
    p["Current function [A]"] = pybamm.Interpolant(knots_t, knots_i, pybamm.t, interpolator="linear")
    lo = p["Lower voltage cut-off [V]"]
    p["Upper voltage cut-off [V]"] = p["Upper voltage cut-off [V]"] + 0.15  # the charger, not the model, limits
    p["Lower voltage cut-off [V]"] = lo - 0.05
    m = model if model is not None else _model(_CURRENT_SET[0])
    if not isinstance(initial, float):
        m = m.set_initial_conditions_from(initial, inplace=False)
    sim = pybamm.Simulation(m, parameter_values=p, solver=pybamm.IDAKLUSolver(atol=1e-6, rtol=1e-6))
    # every knot is a stop for the solver: with only [0, t_end] its steps can stride over a 5 s pulse of
    # current and lose that charge (seen: 0.2 Ah per cell in a day); stopping at each change makes every step
    # of the current a discontinuity the solver restarts at
    stops = np.unique(np.concatenate([[0.0], knots_t[(knots_t > 0) & (knots_t < t_end)], [t_end]]))
    if isinstance(initial, float):
        return sim.solve(t_eval=stops, t_interp=t_out, initial_soc=initial)
    return sim.solve(t_eval=stops, t_interp=t_out)


def _hold(t: np.ndarray, i: np.ndarray, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """Knots for a current held at i[k] over [t[k], t[k+1]) with RAMP_S ramps at the changes."""
    kt = [0.0]
    ki = [float(i[0])]
    for k in range(1, len(t)):
        if i[k] != i[k - 1]:
            kt.append(t[k] - RAMP_S)
            ki.append(float(i[k - 1]))
            kt.append(t[k])
            ki.append(float(i[k]))
    kt.append(max(t_end, kt[-1] + 1.0) + 10.0)
    ki.append(float(i[-1]))
    return np.array(kt), np.array(ki)


def _c20_remaining(p, initial) -> float:
    """Charge (Ah, one cell) from a state to the lower cut-off at C/20 and 25 degC."""
    q = p["Nominal cell capacity [A.h]"]
    p = p.copy()
    p["Ambient temperature [K]"] = 298.15
    p["Initial temperature [K]"] = 298.15
    t_end = 25 * 3600.0
    knots = np.array([0.0, t_end + 10])
    sol = _solve(p, knots, np.array([q / 20, q / 20]), t_end, np.linspace(0, t_end, 200), initial)
    dc = sol["Discharge capacity [A.h]"]
    return float(dc(float(sol.t[-1])) - dc(0.0))


def truth_ocv_table(param_set: str, points: int = 21) -> tuple[tuple[int, int], ...]:
    """A DIAGNOSTIC only: the parameter set's own equilibrium OCV as a hub.ocv-style table ((soc 0.01 %, mV), ...),
    on the truth's SOC scale, to measure what the hub's generic table costs. Never used by the hub.

    The OCV at a state is the positive electrode's OCP less the negative's at their stoichiometries; both move
    linearly with the charge between the set's 0 % and 100 % states (pybamm.lithium_ion.get_initial_stoichiometries).
    The truth's 100 % is the set's 100 %; its 0 % is where a C/20 discharge reaches the cut-off, so a truth SOC s
    is the state with (1 - s) * capacity taken out of the 100 % state. (Until 2026-12-06 this was the mean of a
    C/20 charge and discharge: the charge curve, run past the 100 % state and scaled to its own end, put 4.27 V
    at 100 % instead of 4.20 V, which made every full charge read 3-4 % low.)"""
    pybamm = _pybamm()
    spec = BankSpec(param_set=param_set)
    p = _params(spec, 1.0, 0.0)
    p["Ambient temperature [K]"] = 298.15
    p["Initial temperature [K]"] = 298.15
    x1, y1 = pybamm.lithium_ion.get_initial_stoichiometries(1.0, p)
    x0, y0 = pybamm.lithium_ion.get_initial_stoichiometries(0.0, p)
    area = p["Electrode height [m]"] * p["Electrode width [m]"]
    q01 = (abs(x1 - x0) * p["Maximum concentration in negative electrode [mol.m-3]"]
           * p["Negative electrode active material volume fraction"] * p["Negative electrode thickness [m]"]
           * area * 96485.33212 / 3600)  # Ah between the set's 0 % and 100 % states
    cap = _c20_remaining(p, 1.0)
    t = pybamm.Scalar(298.15)

    def ocp(name: str, sto: float) -> float:
        f = p[name]
        if not callable(f):
            return float(f)
        try:
            e = f(pybamm.Scalar(sto), t)  # OCP(sto, T)
        except TypeError:
            e = f(pybamm.Scalar(sto))  # OCP(sto): sets without a temperature dependence (Chen2020)
        return float(p.evaluate(e))

    out = []
    for k in range(points):
        s = k / (points - 1)
        z = 1.0 - (1.0 - s) * cap / q01
        v = ocp("Positive electrode OCP [V]", y0 + z * (y1 - y0))
        v -= ocp("Negative electrode OCP [V]", x0 + z * (x1 - x0))
        out.append([int(round(s * 10000)), int(round(v * 1000))])
    for k in range(1, points):  # the hub's tables rise strictly
        if out[k][1] <= out[k - 1][1]:
            out[k][1] = out[k - 1][1] + 1
    return tuple((a, b) for a, b in out)


def _step_resistance(p, dt: float) -> float:
    """One cell: dV/dI dt after a 0.5C discharge step at 50 % SOC, 25 degC (after 10 min at rest)."""
    q = p["Nominal cell capacity [A.h]"]
    p = p.copy()
    p["Ambient temperature [K]"] = 298.15
    p["Initial temperature [K]"] = 298.15
    ts = 600.0
    kt = np.array([0.0, ts - RAMP_S, ts, ts + 100])
    ki = np.array([0.0, 0.0, 0.5 * q, 0.5 * q])
    t_out = np.array([0.0, ts - RAMP_S - 0.01, ts - RAMP_S + dt])
    sol = _solve(p, kt, ki, ts + 60, t_out, 0.5)
    v = sol["Voltage [V]"](t_out)
    return float((v[1] - v[2]) / (0.5 * q))


def pack_truths(spec: BankSpec) -> list[PackTruth]:
    rng = np.random.default_rng(spec.seed)
    base = _params(spec, 1.0, 0.0)
    p = spec.parallel
    r0 = _step_resistance(base, GRID_S)  # a cell without contact resistance
    contact0 = 0.25 * r0  # the nominal cell has some contact resistance, so spreads are around a real value
    out = []
    for n in range(spec.packs):
        hs = float(1 + spec.capacity_spread * rng.standard_normal())
        extra = float(spec.resistance_spread * rng.standard_normal()) * 1.25 * r0
        contact = max(0.0, contact0 + extra)
        if spec.weak_pack == n + 1:
            if spec.weak_kind == "capacity":
                hs *= 0.85
            else:
                contact += 0.5 * (r0 + contact)  # +50 % of the pack's step resistance (close to it)
        prm = _params(spec, hs, contact)
        cap = _c20_remaining(prm, 1.0) * p
        rem0 = _c20_remaining(prm, spec.initial_soc) * p
        res = _step_resistance(prm, GRID_S) / p
        out.append(PackTruth(hs, contact, cap, res, rem0))
    return out


def _key(spec: BankSpec, current: np.ndarray, days: float) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, asdict(spec), days], sort_keys=True).encode())
    h.update(np.ascontiguousarray(current, dtype=np.float64).tobytes())
    import pybamm

    h.update(pybamm.__version__.encode())
    return h.hexdigest()[:20]


def simulate(spec: BankSpec, profile: str | Path | None = None, days: float = 14.0, scale: float | None = None,
             log=print, cache: bool = True, jobs: int = 2) -> BankRun:
    """The bank over days of the profile (the default solar profile if None). scale multiplies the profile's
    current (None: the default profile is scaled to the packs' nominal capacity, a given one is taken as is)."""
    pybamm = _pybamm()
    pybamm.set_logging_level("ERROR")
    base = _params(spec, 1.0, 0.0)
    nominal = base["Nominal cell capacity [A.h]"] * spec.parallel
    t_p, i_p = read_profile(profile or DEFAULT_PROFILE)
    if scale is None:
        scale = nominal / PROFILE_REF_AH if profile is None else 1.0
    cur = on_grid(t_p, i_p, days, scale)
    key = _key(spec, cur, days)
    f = cache_dir() / f"{key}.pkl"
    if cache and f.exists():
        with open(f, "rb") as fh:
            return pickle.load(fh)
    log(f"truth: simulating {spec.packs} packs of {spec.parallel}P {spec.param_set} for {days:g} days "
        f"(PyBaMM SPMe; cached in {f.parent})")
    packs = pack_truths(spec)
    run = _simulate_bank(spec, packs, cur, days, nominal, log, jobs)
    if cache:
        with open(f, "wb") as fh:
            pickle.dump(run, fh)
    return run


class _Control:
    """The bank's charger and load disconnect. step() turns the profile's demand for one interval into the
    current that flows, from the state left by earlier intervals; voltage triggers come from the solved
    voltages at the end of the previous interval."""

    TAU_S = 1800.0  # the CV taper's time constant (an exponential stands for the CV phase)

    def __init__(self, spec: BankSpec, nominal: float, lo_cut: float, hi_cut: float = 4.2) -> None:
        # per pack: the spec's, but never above the parameter set's own upper cut-off (LFP: 3.6 V)
        self.cv = min(spec.charge_cv_v, hi_cut - 0.05) * spec.packs
        self.tail = spec.tail_c * nominal
        self.rebulk = 0.25 * nominal  # re-bulk after a quarter of a pack (overnight)
        self.lvd = lo_cut + spec.lvd_margin_v
        self.hvd = min(spec.high_cutoff_v, hi_cut + 0.05)
        self.charger = 0  # 0 bulk, 1 taper (CV), 2 done until re-bulk
        self.taper_i = 0.0
        self.taper_t = 0
        self.done_ah = 0.0
        self.lvd_open = False

    def copy(self) -> _Control:
        c = _Control.__new__(_Control)
        c.__dict__.update(self.__dict__)
        return c

    def step(self, g: int, demand: float, vb: float | None, vmin: float | None, vmin_pack: int,
             events: list[str] | None, forced: dict | None = None, vmax: float | None = None) -> float:
        """forced: triggers that fired in an earlier pass over this day stay fired (a re-solve moves the
        voltages by the solver's tolerance, which must not flip a decision already taken)."""
        h = g * GRID_S / 3600
        f = forced.get(g, "") if forced is not None else ""
        if ((vb is not None and vb >= self.cv) or f == "cv") and self.charger == 0 and demand > 0:
            if forced is not None:
                forced[g] = "cv"
            self.charger, self.taper_i, self.taper_t = 1, demand, g
            if events is not None:
                events.append(f"{h:.2f} h: charger in CV at {vb:.2f} V")
        if ((vmin is not None and vmin <= self.lvd) or f == "lvd") and not self.lvd_open and demand < 0:
            if forced is not None:
                forced[g] = "lvd"
            self.lvd_open = True
            if events is not None:
                events.append(f"{h:.2f} h: LOAD DISCONNECT: pack {vmin_pack} at {vmin:.3f} V; the profile's "
                              "discharge is clipped to 0 until it charges again")
        if ((vmax is not None and vmax >= self.hvd) or f == "hvd") and self.charger != 2 and demand > 0:
            if forced is not None:
                forced[g] = "hvd"
            self.charger, self.done_ah = 2, 0.0
            if events is not None:
                events.append(f"{h:.2f} h: a pack at its high cut-off ({self.hvd:.2f} V): charger stopped")
        if self.lvd_open and demand > 0:
            self.lvd_open = False
            if events is not None:
                events.append(f"{h:.2f} h: load reconnected (charging)")
        out = demand
        if self.charger == 1:
            lim = self.taper_i * math.exp(-(g - self.taper_t) * GRID_S / self.TAU_S)
            if lim <= self.tail:
                self.charger, self.done_ah = 2, 0.0
                if events is not None:
                    events.append(f"{h:.2f} h: charger done (tail {self.tail:.2f} A)")
            elif demand > 0:
                out = min(demand, lim)
        if self.charger == 2:
            if demand > 0:
                out = 0.0
            else:
                self.done_ah += -demand * GRID_S / 3600
                if self.done_ah >= self.rebulk:
                    self.charger = 0
        if self.lvd_open and out < 0:
            out = 0.0
        return out


def _worker(conn, spec_d: dict, packs: list[tuple[int, float, float]]) -> None:
    """Owns some packs' models and states; solves a day for them on request."""
    spec = BankSpec(**spec_d)
    import pybamm

    pybamm.set_logging_level("ERROR")
    prms = {j: _params(spec, hs, ct) for j, hs, ct in packs}
    state: dict = {j: float(spec.initial_soc) for j, _, _ in packs}
    model = _model(spec.param_set)
    pending: dict = {}
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        if msg[0] == "solve":
            _, kt, ki, t_end, t_outs = msg
            out = {}
            try:
                for j in prms:
                    t_out = t_outs[j]
                    s = _solve(prms[j], kt, ki, t_end, t_out, state[j], model)
                    ok = t_out <= float(s.t[-1]) + 1e-9
                    vv = np.full(len(t_out), np.nan)
                    vv[ok] = s["Voltage [V]"](t_out[ok])
                    pending[j] = (s, t_out)
                    out[j] = vv
            except Exception as e:  # reported to the parent, which raises it
                conn.send(("error", f"{type(e).__name__}: {e}"))
                continue
            conn.send(("ok", out))
        elif msg[0] == "commit":
            out = {}
            for j, (s, t_out) in pending.items():
                ok = t_out <= float(s.t[-1]) + 1e-9
                dc = s["Discharge capacity [A.h]"]
                # a run started from a previous one carries its discharge capacity on: count from this start
                out[j] = (s["X-averaged cell temperature [K]"](t_out[ok]) - 273.15,
                          dc(t_out[ok]) - float(dc.entries[0]))
                state[j] = s
            pending = {}
            conn.send(("ok", out))


class _Pool:
    def __init__(self, spec: BankSpec, packs: list[PackTruth], jobs: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        jobs = max(1, min(jobs, spec.packs))
        self.conns = []
        self.procs = []
        for w in range(jobs):
            mine = [(j, packs[j].height_scale, packs[j].contact_ohm) for j in range(w, spec.packs, jobs)]
            a, b = ctx.Pipe()
            pr = ctx.Process(target=_worker, args=(b, asdict(spec), mine), daemon=True)
            pr.start()
            self.conns.append(a)
            self.procs.append(pr)

    def call(self, msg) -> dict:
        for c in self.conns:
            c.send(msg)
        out: dict = {}
        err = ""
        for c in self.conns:
            st, d = c.recv()
            if st != "ok":
                err = d
            else:
                out.update(d)
        if err:
            raise TruthError("PyBaMM failed: " + err)
        return out

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(("stop",))
            except OSError:
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


def _simulate_bank(spec: BankSpec, packs: list[PackTruth], prof: np.ndarray, days: float, nominal: float,
                   log, jobs: int = 2) -> BankRun:
    """Day by day. Control is replayed over the day against the solved voltages; where it gives a different
    current than the one solved, the current from there on is rewritten (voltage triggers off) and the day
    is solved again, so the charger and the disconnect act on what the cells really do, one scan late."""
    n = spec.packs
    total = len(prof)
    cur = prof.copy()
    rng = np.random.default_rng(spec.seed + 1000)
    skew = rng.uniform(0.0, spec.node_skew_s, size=(n, total))
    v = np.zeros((n, total))
    temp = np.zeros((n, total))
    dis = np.zeros((n, total))  # discharged Ah per cell since the start
    p0 = _params(spec, 1.0, 0.0)
    lo_cut = p0["Lower voltage cut-off [V]"]
    hi_cut = p0["Upper voltage cut-off [V]"]
    events: list[str] = []
    dis0 = np.zeros(n)
    pool = _Pool(spec, packs, jobs)
    try:
        return _days(spec, packs, prof, cur, skew, v, temp, dis, dis0, (lo_cut, hi_cut), nominal, events, pool, log)
    finally:
        pool.close()


def _days(spec, packs, prof, cur, skew, v, temp, dis, dis0, lo_cut, nominal, events, pool, log) -> BankRun:
    n = spec.packs
    per_day = int(86400 / GRID_S)
    total = len(prof)
    ctl = _Control(spec, nominal, lo_cut[0], lo_cut[1])
    k0 = 0
    solves = 0
    while k0 < total:
        k1 = min(total, k0 + per_day)
        span = k1 - k0
        t_loc = np.arange(span) * GRID_S
        ctl0 = ctl.copy()
        # a first guess for the day: control with no voltage triggers
        c = ctl0.copy()
        for k in range(span):
            cur[k0 + k] = c.step(k0 + k, prof[k0 + k], None, None, 0, None)
        forced: dict = {}
        for _attempt in range(20):
            kt, ki = _hold(t_loc, -cur[k0:k1] / spec.parallel, span * GRID_S)
            t_outs = {j: np.minimum(t_loc + spec.scan_phase_s + skew[j, k0:k1], span * GRID_S) for j in range(n)}
            got = pool.call(("solve", kt, ki, span * GRID_S, t_outs))
            solves += n
            vv = np.array([got[j] for j in range(n)])
            c = ctl0.copy()
            day_events: list[str] = []
            bad = -1
            for k in range(span):
                g = k0 + k
                if k == 0:
                    vb = vmin = vmax = None
                    vp = 0
                else:
                    col = vv[:, k - 1]
                    if np.isnan(col).any():
                        raise TruthError(f"a pack reached the model's voltage limit near {g * GRID_S / 3600:.2f} h "
                                         "before the bank's control could act (a step too large for one scan)")
                    vb, vmin, vp = float(col.sum()), float(col.min()), int(col.argmin()) + 1
                    vmax = float(col.max())
                out = c.step(g, prof[g], vb, vmin, vp, day_events, forced, vmax)
                if abs(out - cur[g]) > 1e-9:
                    bad = k
                    cur[g] = out
                    for kk in range(k + 1, span):  # the rest of the day with no new voltage trigger
                        cur[k0 + kk] = c.step(k0 + kk, prof[k0 + kk], None, None, 0, None)
                    break
            if os.environ.get("PACKMON_TRUTH_DEBUG"):
                log(f"  pass {_attempt}: change at {(k0 + bad) * GRID_S / 3600:.2f} h; {day_events}")
            if bad < 0:
                if np.isnan(vv).any():
                    raise TruthError("a pack reached the model's voltage limit")
                events.extend(day_events)
                ctl = c
                break
        else:
            raise TruthError("the bank's control did not settle within a day")
        done = pool.call(("commit",))
        moved = float(np.sum(-cur[k0:k1]) * GRID_S / 3600 / spec.parallel)  # Ah per cell the bank moved
        for j in range(n):
            got = float(done[j][1][-1])
            if abs(got - moved) > 0.01 * nominal / spec.parallel + 0.02 * abs(moved):
                allgot = " ".join(f"{float(done[jj][1][-1]):.3f}" for jj in range(n))
                raise TruthError(f"PyBaMM's pack {j + 1} moved {got:.3f} Ah on day {k0 // per_day + 1} where the "
                                 f"current moved {moved:.3f} Ah: the solver went wrong (all packs: {allgot})")
        for j in range(n):
            v[j, k0:k1] = vv[j]
            temp[j, k0:k1] = done[j][0]
            dis[j, k0:k1] = dis0[j] + done[j][1]
            dis0[j] = dis[j, k1 - 1]
        log(f"truth: day {k0 // per_day + 1} of {math.ceil(total / per_day)} ({solves} pack solves so far)")
        k0 = k1
    clipped = float(np.sum(np.abs(prof - cur)) * GRID_S / 3600)
    if clipped > 0:
        events.append(f"control changed the profile's charge by {clipped:.1f} Ah in total")
    caps = np.array([pk.capacity_ah for pk in packs])[:, None]
    rem = np.array([pk.remaining0_ah for pk in packs])[:, None] - dis * spec.parallel
    soc = rem / caps
    bank_soc = soc[np.argmin(rem, axis=0), np.arange(total)]
    t_scan = np.arange(total) * GRID_S + spec.scan_phase_s
    return BankRun(asdict(spec), nominal, chemistry_of(spec.param_set), t_scan, cur.copy(), v, temp, soc,
                   bank_soc, packs, events, skew)


def main() -> None:  # regenerate the committed default profile
    t, i = solar_profile()
    write_profile(DEFAULT_PROFILE, t, i)
    print(f"wrote {DEFAULT_PROFILE} ({DEFAULT_PROFILE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
