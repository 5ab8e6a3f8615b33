"""`packmon accuracy`: the hub's own SOC/health estimator (hub/soc.py, hub/health.py, hub/bank.py) against a
PyBaMM truth bank (packmon.sim.cells), through realistic sensors.

- Pack voltages as the node firmware computes them (node_model's measurement math): 16 bandgap conversions
  against Vcc with +-1 LSB of noise each, a per-node calibration error (uniform within --cal-error), each
  node sampling up to 200 ms after the scan starts (the truth is solved at each node's own moment). The
  records go through hub.bank.Bank.update() as the ring would deliver them.
- Bank current through a model of the INA228 (the accumulator's charge per scan and the latest averaged
  current) with gain error, offset, noise and the chip's quantisation. For weeks of scans this is the
  analytic FastIna228 (same error model, no per-conversion loop); the switching-load figure uses the
  register-level device model (packmon.sim.ina) read by the hub's own driver (hub.shunt), and so does
  --sensor register for short runs. The choice is made in one place: make_sensor().

Figures: see docs/soc.md. --json prints one object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from .common import ShuntReading as Reading
from .common import ToolError

TARGETS = {
    "soc_max_abs_error_pct": 3.0,
    "soc_max_abs_error_pct_gain1": 5.0,
    "capacity_max_error_pct": 5.0,
    "resistance_max_error_pct": 15.0,
    "switching_load_charge_bias_pct": 0.5,
}


class _Clock:
    @staticmethod
    def ticks_diff(a: int, b: int) -> int:
        return a - b

    def __init__(self) -> None:
        self.t = 0

    def ticks_ms(self) -> int:
        return self.t


class FastIna228:
    """The INA228 as the estimator sees it, per scan, without simulating each conversion: CHARGE integrates
    the measured current (gain, offset, per-conversion noise, CURRENT_LSB quantisation of the charge);
    CURRENT is the last average of `avg` conversions, quantised to CURRENT_LSB."""

    def __init__(self, gain_error: float, offset_ma: float, noise_ma: float, max_current_a: float, seed: int,
                 conv_s: float = 0.001052, avg: int = 64) -> None:
        self.g = gain_error
        self.off = offset_ma
        self.noise = noise_ma
        self.lsb_ma = max_current_a * 1000 / 524288
        self.rng = np.random.default_rng(seed)
        self.conv_s = conv_s
        self.avg = avg
        self.charge_mas = 0.0  # the chip's accumulator (exact), mA*s
        self.read_mas = 0  # what the driver has taken out of it

    def scan(self, q_true_as: float, dt_s: float, i_last_a: float) -> Reading:
        n = max(1, int(dt_s / self.conv_s))
        meas = (q_true_as * 1000) * (1 + self.g) + self.off * dt_s
        meas += self.rng.normal(0.0, self.noise) * math.sqrt(n) * self.conv_s if self.noise else 0.0
        self.charge_mas += meas
        q = int(round(self.charge_mas / self.lsb_ma) * self.lsb_ma)  # the register counts CURRENT_LSB*s
        dq = q - self.read_mas
        self.read_mas = q
        cur = i_last_a * 1000 * (1 + self.g) + self.off
        if self.noise:
            cur += self.rng.normal(0.0, self.noise / math.sqrt(self.avg))
        cur = int(round(cur / self.lsb_ma) * self.lsb_ma)
        return Reading(True, cur, dq, int(round(dt_s * 1000)), 1000000)


def make_sensor(kind: str, args: argparse.Namespace, max_current_a: float):  # noqa: ANN201
    """The one place the current sensor is chosen."""
    if kind == "fast":
        return FastIna228(args.gain_error / 100, args.offset_ma, args.noise_ma, max_current_a, args.seed)
    raise ToolError(f"unknown sensor {kind!r}")


# -- the nodes ------------------------------------------------------------------------------------------
def node_readings(v_true: np.ndarray, cal_error: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(mV as reported per pack and scan, the nodes' calibration errors) from true pack voltages (V)."""
    from .sim.node_model import VBG_SAMPLES, bandgap_counts, vcc_mv_from_sum

    rng = np.random.default_rng(seed + 77)
    packs, scans = v_true.shape
    out = np.zeros((packs, scans), dtype=np.int64)
    cal = rng.uniform(-cal_error, cal_error, size=packs)
    for j in range(packs):
        bandgap = rng.uniform(1000.0, 1200.0)  # this chip's real bandgap, mV (+-10 % part to part)
        vref01 = int(round(bandgap * 10 * (1 + cal[j])))  # calibrated to within cal_error
        vcc = v_true[j] * 1000.0
        base = bandgap_counts(vcc, bandgap).astype(np.int64)
        noise = rng.integers(-1, 2, size=(scans, VBG_SAMPLES)).sum(axis=1)  # +-1 LSB per conversion
        s = VBG_SAMPLES * base + noise
        out[j] = vcc_mv_from_sum(s, vref01)
    return out, cal


# -- the switching load --------------------------------------------------------------------------------------
def switching_bias(args: argparse.Namespace, amps: float, seconds: float = 300.0) -> dict:
    """Charge counted by the hub's INA228 driver (hub.shunt over the register-level model) and the estimator's
    counter, for a load switching every 0.3 s against the same mean as a steady current: the difference, in %
    of the true charge. Also what sampling the averaged current once per scan would have counted."""
    from hub import shunt as hub_shunt
    from hub.soc import Estimator

    from .sim.ina import make_model, switching

    out = {}
    for name, fn in (("switching", switching(-amps, 0.0, 0.6)), ("steady", lambda t: -amps / 2)):
        clk = _Clock()
        sim_t = [0.0]
        model = make_model("ina228", 0.0005, fn, lambda st=sim_t: st[0], gain_error=args.gain_error / 100,
                           offset_ma=args.offset_ma, noise_ma=args.noise_ma, seed=args.seed)
        drv = hub_shunt.make({"chip": "ina228", "address": 0x40, "shunt_ohms": 0.0005, "max_current_a": 200,
                              "invert": False}, model, clk)
        est = Estimator({"chemistry": "nmc", "capacity_ah": 100}, 1)

        class _B:
            n = 0
            fresh = 0
            avg_mv = 0

        counted = 0
        sampled = 0.0
        t = 0.0
        start_true = None
        q0 = 0
        while t < seconds:
            t += 5.0 + 0.137 * math.sin(t)  # the hub's cycle is never exactly 5 s
            sim_t[0] = t
            clk.t = int(t * 1000)
            drv.read(clk.t)
            if not drv.ok:
                continue
            if start_true is None:
                start_true = model.true_charge_as
                q0 = est.qnet
                est.update(clk.t, _B, drv, clk.ticks_diff)
                q0 = est.qnet
                continue
            est.update(clk.t, _B, drv, clk.ticks_diff)
            counted += drv.dq_mas
            sampled += drv.current_ma * drv.dt_ms / 1000
        true_mas = (model.true_charge_as - start_true) * 1000
        out[name] = {"true_mas": true_mas, "driver_mas": counted, "estimator_mas": (est.qnet - q0) * 10,
                     "sampled_mas": sampled}
    s, c = out["switching"], out["steady"]
    bias = (s["estimator_mas"] / s["true_mas"] - c["estimator_mas"] / c["true_mas"]) * 100
    bias_sampled = (s["sampled_mas"] / s["true_mas"] - c["sampled_mas"] / c["true_mas"]) * 100
    return {"bias_pct": bias, "bias_sampled_pct": bias_sampled, "detail": out, "seconds": seconds}


# -- the run -------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, log=print) -> dict:  # noqa: ANN001
    from hub import codec
    from hub.bank import Bank
    from hub.soc import Estimator

    from .sim import cells

    weak_kind = "capacity"
    weak = args.weak_pack
    if weak is not None and weak < 0:
        weak, weak_kind = -weak, "resistance"
    if args.weak_kind:
        weak_kind = args.weak_kind
    if weak is not None and not 1 <= weak <= args.packs:
        raise ToolError(f"--weak-pack {weak}: must be a pack number 1..{args.packs}")
    spec = cells.BankSpec(param_set=args.param_set, packs=args.packs, parallel=args.parallel, weak_pack=weak,
                          weak_kind=weak_kind, seed=args.seed)
    t0 = time.time()
    try:
        truth = cells.simulate(spec, args.profile, args.days, log=log, cache=not args.no_cache, jobs=args.jobs)
    except cells.TruthError as e:
        raise ToolError(str(e)) from None
    t_truth = time.time() - t0
    chem = args.chemistry or truth.chemistry
    cell_ah = truth.nominal_ah / args.parallel
    cfg = {"chemistry": chem, "capacity_ah": cell_ah, "cells_parallel": args.parallel}
    if args.ocv_table == "truth":
        # DIAGNOSTIC: the simulated cell's own curve given as the user's battery.ocv_table: the difference to a
        # normal run is what the generic table costs. (Until 2026-12-06 this replaced hub.ocv.TABLES in the
        # process, which every later estimator in it, the tests' hubs included, then read.)
        cfg["ocv_table"] = [[s / 100, mv] for s, mv in cells.truth_ocv_table(args.param_set)]
        log(f"ocv: DIAGNOSTIC run with {args.param_set}'s own OCV instead of the generic {chem} table")
    for kv in args.set or []:
        k, _, v = kv.partition("=")
        try:
            cfg[k] = json.loads(v)
        except ValueError:
            raise ToolError(f"--set {kv}: the value must be JSON (a number, true/false, \"text\")") from None
    est = Estimator(cfg, args.packs)
    if est.error:
        raise ToolError(est.error)
    oracle = _oracle(args, est, truth, log)
    pin_offset = est.offset_ua if "offset" in oracle else None
    n = args.packs
    scans = len(truth.t_scan)
    mv, cal = node_readings(truth.v, args.cal_error / 100, args.seed)
    temp = np.round(truth.temp * 10).astype(np.int64)
    bank = Bank(n, 30000)
    bank.resize(n)
    buf = bytearray(codec.HEADER_SIZE + codec.SLOT_SIZE * n + 8)
    rec = np.zeros((scans, n, 8), dtype=np.uint8)
    rec[:, :, 0] = np.arange(1, n + 1)[None, :]
    mvt = mv.T.astype(np.int64) & 0xFFFF
    rec[:, :, 2] = mvt & 0xFF
    rec[:, :, 3] = mvt >> 8
    tt = temp.T & 0xFFFF
    rec[:, :, 4] = tt & 0xFF
    rec[:, :, 5] = tt >> 8
    rec[:, :, 7] = (np.arange(scans)[:, None] + 1) & 0xFF
    flat = rec.reshape(scans, n * 8)
    sensor = make_sensor(args.sensor, args, max(200.0, truth.nominal_ah * 2))
    cur = truth.current
    phase = spec.scan_phase_s
    td = _Clock.ticks_diff
    # results per scan
    est_bank = np.full(scans, np.nan)
    est_pack = np.full((n, scans), np.nan)
    weak_flags = np.zeros((n, scans), dtype=bool)
    o = codec.HEADER_SIZE
    t1 = time.time()
    for k in range(scans):
        now = int(round(truth.t_scan[k] * 1000))
        buf[o:o + n * 8] = flat[k].tobytes()
        bank.update(buf, n, now, k + 1)
        bank.compute(now, td)
        prev = cur[k - 1] if k else cur[0]
        q = (GRID - phase) * prev + phase * cur[k]
        est.update(now, bank, sensor.scan(q, GRID, cur[k]), td)
        if pin_offset is not None:
            est.offset_ua = pin_offset  # the oracle's: never re-learned
        if est.bank_soc >= 0:
            est_bank[k] = est.bank_soc / 100
        for i in range(n):
            if est.soc[i] >= 0:
                est_pack[i, k] = est.soc[i] / 100
        if k % 12 == 0:
            weak_flags[:, k] = np.frombuffer(bytes(est.health.weak[:n]), dtype=np.uint8) > 0
        else:
            weak_flags[:, k] = weak_flags[:, k - 1]
    t_est = time.time() - t1
    if getattr(args, "dump", None):
        np.savez_compressed(args.dump, t=truth.t_scan, est_bank=est_bank, truth_bank=truth.bank_soc * 100,
                            est_pack=est_pack, truth_pack=truth.soc * 100, cur=cur, v=truth.v, mv=mv)
    truth_bank = truth.bank_soc * 100
    truth_pack = truth.soc * 100
    known = ~np.isnan(est_bank)
    err = np.abs(est_bank[known] - truth_bank[known]) if known.any() else np.array([np.nan])
    perr = np.abs(est_pack - truth_pack)
    first_known = int(np.argmax(known)) if known.any() else None
    h = est.health
    caps_true = np.array([p.capacity_ah for p in truth.packs])
    r_true = np.array([p.resistance_ohm for p in truth.packs])
    cap_est = np.array([h.capacity_cq(i) / 3600 / 100 * 1.0 if h.cap_n[i] else np.nan for i in range(n)])
    cap_err = (cap_est / caps_true - 1) * 100
    cap_n = np.array([h.cap_n[i] for i in range(n)])
    three = cap_n >= 3
    r_est = np.array([h.r[i] / 1e6 if h.r_n[i] else np.nan for i in range(n)])
    r_err = (r_est / r_true - 1) * 100
    # weakest
    found_h = None
    found_cycles = None
    false_weak = 0
    for i in range(n):
        f = weak_flags[i]
        rises = np.flatnonzero(f[1:] & ~f[:-1]) + 1
        if f[0]:
            rises = np.concatenate([[0], rises])
        if weak is not None and i == weak - 1:
            if f.any():
                k = int(np.argmax(f))
                found_h = truth.t_scan[k] / 3600
        else:
            false_weak += len(rises)
    if weak is not None and found_h is not None:
        found_cycles = _cycles(truth.soc[weak - 1], truth.t_scan, found_h * 3600)
    sw = switching_bias(args, amps=0.5 * truth.nominal_ah) if not args.no_switching else None
    res = {
        "param_set": args.param_set,
        "chemistry": chem,
        "packs": n,
        "parallel": args.parallel,
        "days": args.days,
        "weak_pack": weak,
        "weak_kind": weak_kind if weak else None,
        "gain_error_pct": args.gain_error,
        "offset_ma": args.offset_ma,
        "noise_ma": args.noise_ma,
        "seed": args.seed,
        "ocv_table": args.ocv_table,
        "oracle": oracle,
        "soc_max_abs_error_pct": _r(float(np.max(err))) if known.any() else None,
        "soc_rms_error_pct": _r(float(np.sqrt(np.mean(err ** 2)))) if known.any() else None,
        "pack_soc_max_abs_error_pct": _r(float(np.nanmax(perr))) if np.isfinite(perr).any() else None,
        "soc_daily_max_abs_error_pct": _daily_max(truth.t_scan, est_bank, truth_bank, args.days),
        "soc_known_after_h": _r(truth.t_scan[first_known] / 3600) if first_known is not None else None,
        "soc_unknown_after_first_pct": _r(float(100 * (1 - known[first_known:].mean()))) if first_known is not None
        else None,
        "capacity_max_error_pct": _r(float(np.nanmax(np.abs(cap_err[three])))) if three.any() else None,
        "capacity_max_error_any_pct": _r(float(np.nanmax(np.abs(cap_err)))) if np.isfinite(cap_err).any() else None,
        "capacity_measurements_min": int(cap_n.min()),
        "resistance_max_error_pct": _r(float(np.nanmax(np.abs(r_err)))) if np.isfinite(r_err).any() else None,
        "resistance_steps_min": int(min(h.r_n[i] for i in range(n))),
        "weakest_found_after_h": _r(found_h) if found_h is not None else None,
        "weakest_found_after_cycles": found_cycles,
        "false_weakest": false_weak,
        "switching_load_charge_bias_pct": _r(sw["bias_pct"], 3) if sw else None,
        "switching_load_sampled_bias_pct": _r(sw["bias_sampled_pct"], 3) if sw else None,
        "offset_learned_ma": _r(est.offset_ua / 1000, 2),
        "resyncs_min": int(min(est.resyncs[i] for i in range(n))),
        "rest_resyncs": est.rest_syncs,
        "full_resyncs": est.full_syncs,
        "events": truth.events,
        "packs_detail": [
            {"pack": i + 1, "capacity_ah": _r(caps_true[i], 3), "capacity_est_ah": _r(cap_est[i], 3),
             "capacity_err_pct": _r(cap_err[i]), "capacity_n": int(cap_n[i]),
             "resistance_mohm": _r(r_true[i] * 1000, 3), "resistance_est_mohm": _r(r_est[i] * 1000, 3),
             "resistance_err_pct": _r(r_err[i]), "resistance_n": int(h.r_n[i]),
             "resistance_conf": h.r_conf(i) / 100, "capacity_conf": h.cap_conf(i) / 100,
             "cal_err_pct": _r(cal[i] * 100, 3),
             "weakest": bool(h.weak[i])}
            for i in range(n)
        ],
        "truth_s": _r(t_truth, 1),
        "estimator_s": _r(t_est, 1),
    }
    return res


GRID = 5.0
ORACLES = ("offset", "capacity")


def _oracle(args: argparse.Namespace, est, truth, log) -> list[str]:  # noqa: ANN001
    """DIAGNOSTIC (--oracle): hand the estimator what it would otherwise learn, from the first scan, to measure
    what is left when it is known: `offset` the sensor's true offset, `capacity` every pack's true capacity
    (both pinned: never re-learned; run() puts the offset back after every scan). Never a hub feature; the
    figures of such a run are not the estimator's."""
    names = [o for o in (args.oracle or "").split(",") if o]
    for o in names:
        if o not in ORACLES:
            raise ToolError(f"--oracle {o}: known: {', '.join(ORACLES)}")
    if "offset" in names:
        est.offset_ua = int(round(args.offset_ma * 1000))
        est.offset_n = 1
        est.unc_ma = est.nominal_mah // 2000 or 1  # the count's drift bound once the offset is learned
    if "capacity" in names:
        h = est.health
        for i, p in enumerate(truth.packs):
            h.cap[i] = int(round(p.capacity_ah * 3600 * 100))
            h.cap_n[i] = 100
        h.add_capacity = lambda i, cq: False  # pinned (this instance only)
        est.thru_div = 50  # as once every capacity is measured
    if names:
        log(f"oracle: DIAGNOSTIC run, the estimator given the true {' and '.join(names)} from the start")
    return names


def _daily_max(t: np.ndarray, est: np.ndarray, tru: np.ndarray, days: float) -> list[float | None]:
    """The bank SOC's largest absolute error in each simulated day (None: unknown all day)."""
    out: list[float | None] = []
    for d in range(math.ceil(days)):
        m = (t >= d * 86400) & (t < (d + 1) * 86400) & ~np.isnan(est)
        out.append(_r(float(np.max(np.abs(est[m] - tru[m])))) if m.any() else None)
    return out


def _cycles(soc: np.ndarray, t: np.ndarray, until_s: float) -> int:
    """Discharges of >= 40 % SOC (from a high point to a low one) in a pack's true SOC before until_s."""
    k_end = int(np.searchsorted(t, until_s))
    n = 0
    hi = -1.0
    for x in soc[: k_end + 1]:
        hi = max(hi, float(x))
        if hi - x >= 0.40:
            n += 1
            hi = float(x)
    return n


def _r(x, d: int = 2):  # noqa: ANN001, ANN202
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else round(x, d)


def verdict(res: dict) -> list[str]:
    """The issue's targets this run misses (NMC; none for LFP)."""
    if res["chemistry"] != "nmc":
        return []
    out = []
    lim = TARGETS["soc_max_abs_error_pct"] if res["gain_error_pct"] <= 0.5 else TARGETS["soc_max_abs_error_pct_gain1"]
    v = res["soc_max_abs_error_pct"]
    if v is None or v > lim:
        out.append(f"bank SOC max abs error {v} % > {lim} %")
    v = res["capacity_max_error_pct"]
    if v is not None and v > TARGETS["capacity_max_error_pct"]:
        out.append(f"capacity error {v} % > 5 % after 3 cycles")
    v = res["resistance_max_error_pct"]
    if v is None or v > TARGETS["resistance_max_error_pct"]:
        out.append(f"resistance error {v} % > 15 %")
    if res["weak_pack"] and (res["weakest_found_after_cycles"] is None or res["weakest_found_after_cycles"] > 2):
        out.append(f"weak pack not named within 2 cycles (after {res['weakest_found_after_cycles']})")
    if res["false_weakest"]:
        out.append(f"{res['false_weakest']} false weakest")
    v = res["switching_load_charge_bias_pct"]
    if v is not None and abs(v) > TARGETS["switching_load_charge_bias_pct"]:
        out.append(f"switching load bias {v} % > 0.5 %")
    return out


def table(res: dict) -> str:
    rows = [
        ("bank SOC max abs error", res["soc_max_abs_error_pct"], "%",
         f"<= {5 if res['gain_error_pct'] > 0.5 else 3} %"),
        ("bank SOC rms error", res["soc_rms_error_pct"], "%", ""),
        ("bank SOC max error per day", " ".join("-" if x is None else f"{x:g}"
                                                for x in res["soc_daily_max_abs_error_pct"]), "%", ""),
        ("pack SOC max abs error", res["pack_soc_max_abs_error_pct"], "%", ""),
        ("SOC known after", res["soc_known_after_h"], "h", "first resync"),
        ("capacity max error (>= 3 cycles)", res["capacity_max_error_pct"], "%", "+-5 %"),
        ("capacity max error (any)", res["capacity_max_error_any_pct"], "%", ""),
        ("capacity measurements (fewest)", res["capacity_measurements_min"], "", ""),
        ("resistance max error", res["resistance_max_error_pct"], "%", "+-15 %"),
        ("weakest found after", res["weakest_found_after_h"], "h", ""),
        ("weakest found after cycles", res["weakest_found_after_cycles"], "", "<= 2"),
        ("false weakest", res["false_weakest"], "", "0"),
        ("switching load bias", res["switching_load_charge_bias_pct"], "%", "<= 0.5 %"),
        ("  (sampling the current instead)", res["switching_load_sampled_bias_pct"], "%", ""),
        ("sensor offset learned", res["offset_learned_ma"], "mA", f"true {res['offset_ma']}"),
        ("resyncs at rest / at full", f"{res['rest_resyncs']}/{res['full_resyncs']}", "", ""),
    ]
    if res["oracle"] or res["ocv_table"] != "generic":
        rows.insert(0, ("DIAGNOSTIC run, not the estimator's figures", "oracle: " + (",".join(res["oracle"]) or "-"),
                        "", f"ocv table: {res['ocv_table']}"))
    out = [f"packmon accuracy: {res['packs']} packs of {res['parallel']}P {res['param_set']} ({res['chemistry']}), "
           f"{res['days']:g} days, gain {res['gain_error_pct']} %, offset {res['offset_ma']} mA, "
           f"weak pack {res['weak_pack'] or '-'} {res['weak_kind'] or ''}"]
    for name, v, unit, target in rows:
        out.append(f"  {name:36s} {('-' if v is None else v)!s:>10} {unit:3s} {target}")
    out.append("  pack  cap Ah  est Ah   err %  n   R mOhm  est    err %  steps  weak")
    for p in res["packs_detail"]:
        out.append(f"  {p['pack']:4d} {p['capacity_ah']:7.3f} {p['capacity_est_ah'] or 0:7.3f} "
                   f"{p['capacity_err_pct'] if p['capacity_err_pct'] is not None else '-':>7} {p['capacity_n']:2d} "
                   f"{p['resistance_mohm']:7.3f} {p['resistance_est_mohm'] or 0:7.3f} "
                   f"{p['resistance_err_pct'] if p['resistance_err_pct'] is not None else '-':>7} "
                   f"{p['resistance_n']:5d}  {'yes' if p['weakest'] else ''}")
    for e in res["events"]:
        if "DISCONNECT" in e or "changed" in e:
            out.append("  truth: " + e)
    miss = verdict(res)
    out.append("  targets: " + ("all met" if not miss else "MISSED: " + "; ".join(miss)))
    return "\n".join(out)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accuracy", help="run the hub's SOC/health estimator against a PyBaMM truth bank")
    p.add_argument("--param-set", default="Chen2020", help="PyBaMM parameter set (Chen2020, OKane2022, Mohtat2020, "
                   "Ecker2015, Prada2013 = LFP)")
    p.add_argument("--packs", type=int, default=16)
    p.add_argument("--parallel", type=int, default=4, help="cells in parallel per pack")
    p.add_argument("--weak-pack", type=int, default=None, help="pack N is weak (-15 %% capacity; "
                   "-N: +50 %% resistance)")
    p.add_argument("--weak-kind", choices=("capacity", "resistance"), default=None)
    p.add_argument("--profile", default=None, help="CSV time_s,current_a (+ = charging); default: the committed "
                   "14-day solar profile, scaled to the pack's capacity")
    p.add_argument("--days", type=float, default=14.0)
    p.add_argument("--gain-error", type=float, default=0.5, help="current sensor gain error, %%")
    p.add_argument("--offset-ma", type=float, default=20.0)
    p.add_argument("--noise-ma", type=float, default=50.0, help="current noise per conversion, mA rms")
    p.add_argument("--cal-error", type=float, default=0.3, help="node calibration error, +- %%")
    p.add_argument("--chemistry", default=None, help="the hub's chemistry setting (default: from the parameter set)")
    p.add_argument("--sensor", default="fast", choices=("fast",))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="an estimator setting of the battery block "
                   "(hub/config.py), e.g. --set ocv_sigma_pct=5")
    p.add_argument("--ocv-table", choices=("generic", "truth"), default="generic",
                   help="truth: a diagnostic run with the simulated cell's own OCV curve in place of the hub's generic "
                   "table, to see what the generic table costs")
    p.add_argument("--oracle", default=None, metavar="offset,capacity",
                   help="diagnostic: give the estimator the true sensor offset and/or pack capacities from the start, "
                   "to see what limits the SOC when they are known")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="PyBaMM worker processes")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--no-switching", action="store_true")
    p.add_argument("--check", action="store_true", help="exit 1 when an issue-12 target is missed")
    p.add_argument("--json", action="store_true")
    p.add_argument("--dump", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.packs < 1 or args.parallel < 1 or args.days <= 0:
        raise ToolError("--packs, --parallel and --days must be positive")
    res = run(args, log=(lambda s: print(s, file=sys.stderr)))
    if args.json:
        print(json.dumps(res))
    else:
        print(table(res))
    return 1 if args.check and verdict(res) else 0
