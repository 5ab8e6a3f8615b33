# A synthetic bank for the estimator's tests, written so it runs unchanged on CPython and on the MicroPython
# unix port (tests/hub/test_soc.py compares the two): packs with an OCV from hub.ocv's table, a resistance,
# a capacity; a sensor with an offset. feed() returns a trace of the estimator's outputs.
from hub import ocv
from hub.soc import Estimator


class Bank:
    def __init__(self, n):
        self.n = n
        self.mv = [0] * n
        self.fresh = n
        self.avg_mv = 0
        self.stale = bytearray(n)

    def voltage_mv(self, i, now, td):
        return 0 if self.stale[i] else self.mv[i]


class Shunt:
    def __init__(self):
        self.ok = True
        self.current_ma = 0
        self.dq_mas = 0
        self.dt_ms = 5000
        self.coverage_ppm = 1000000


def td(a, b):
    return a - b


class World:
    """n packs (capacities in mAh, resistances in micro-ohm) starting at soc0 (0.01 %)."""

    def __init__(self, caps_mah, r_uohm, soc0, offset_ma=0, chem="nmc", cap_ah=20, own=None):
        # own: the packs' own OCV curve ([[soc %, mV], ...]), given to the estimator as battery.ocv_table
        self.n = len(caps_mah)
        self.caps = caps_mah
        self.r = r_uohm
        self.q = [caps_mah[i] * 36 * soc0[i] // 100 for i in range(self.n)]  # mAs
        self.off = offset_ma
        self.table = tuple((s * 100, v) for s, v in own) if own else ocv.TABLES[chem]
        self.bank = Bank(self.n)
        self.shunt = Shunt()
        cfg = {"chemistry": chem, "capacity_ah": cap_ah, "cells_parallel": 1, "charge_efficiency": 1.0}
        if own:
            cfg["ocv_table"] = own
        self.est = Estimator(cfg, self.n)
        self.now = 0

    def step(self, i_ma):
        dt = 5000
        for k in range(self.n):
            self.q[k] += i_ma * dt // 1000
            soc = self.q[k] * 100 // (self.caps[k] * 36)
            self.bank.mv[k] = ocv.mv_of(self.table, soc) + i_ma * self.r[k] // 1000000
        self.bank.avg_mv = sum(self.bank.mv) // self.n
        self.shunt.current_ma = i_ma + self.off
        self.shunt.dq_mas = (i_ma + self.off) * dt // 1000
        self.now += dt
        self.est.update(self.now, self.bank, self.shunt, td)

    def run(self, i_ma, seconds):
        for _ in range(seconds // 5):
            self.step(i_ma)

    def soc_true(self, k):
        return self.q[k] * 100 // (self.caps[k] * 36)


def scenario():
    """A fixed scenario (two packs, 20 mA offset): rest, discharge, rest, charge, rest. Returns lines."""
    w = World([20000, 17000], [10000, 15000], [8000, 8000], offset_ma=20)
    out = []
    w.run(-100, 2 * 3600)  # under rest_c: a rest of 2 h
    out.append(("rest1", w.est.soc[0], w.est.soc[1], w.est.bank_soc))
    w.run(-8000, 5400)
    w.run(4000, 60)  # a step
    w.run(-8000, 60)
    out.append(("dis", w.est.soc[0], w.est.soc[1], w.est.bank_soc, w.est.tte_s))
    w.run(0, 5 * 3600)
    out.append(("rest2", w.est.soc[0], w.est.soc[1], w.est.bank_soc, w.est.offset_ua))
    w.run(6000, 3600)
    out.append(("chg", w.est.soc[0], w.est.soc[1], w.est.ttf_s, w.est.health.r[0], w.est.health.r[1]))
    w.run(0, 5 * 3600)
    h = w.est.health
    out.append(("rest3", w.est.soc[0], w.est.soc[1], h.cap[0], h.cap[1], w.est.offset_ua, h.cap_n[0]))
    # the cell's own OCV curve (battery.ocv_table) instead of the chemistry's
    o = World([20000], [10000], [6000], own=[[0, 2497], [20, 3485], [50, 3751], [80, 4042], [100, 4200]])
    o.run(-100, 3600 + 10)
    out.append(("own", o.est.soc[0], o.soc_true(0), o.est.table[2][0], o.est.table[2][1]))
    return out


if __name__ == "__main__":
    for line in scenario():
        print(" ".join(str(x) for x in line))
