"""The SOC/health estimator's cost per scan (hub/soc.py update() and its topics, hub/soc_topics.py), at 16
and 64 packs, under CPython or the real MicroPython runtime (tools/bench_hub.py runs both): time, and heap
allocated per scan (MicroPython: gc.mem_alloc() deltas with collection disabled). A script of its own: the
estimator's modules and the hub bench's would not both fit the bench's 100 KB heap.
"""
import gc
import sys

from bench_common import MPY, Clock, FakeHub, NullClient, Port, ReplayUart, mem_alloc, ticks_diff, ticks_us

from hub import config
from hub.bank import Bank
from hub.publisher import Publisher
from hub.ring import Ring


class Shunt:
    ok = True
    current_ma = -10000
    dq_mas = -50000
    dt_ms = 5000
    coverage_ppm = 1000000


def bench_estimator(n, scans=60):
    """hub.soc.Estimator.update() per scan (coulomb count, steps -> resistance, rest/full checks, outputs,
    the weakest every 12th scan) and its topics (bank/pack soc, time to full/empty, weakest, and the health
    JSON every 12th scan)."""
    gc.collect()
    f0 = gc.mem_free() if MPY else 0
    from hub import soc_topics
    from hub.soc import Estimator

    gc.collect()
    f1 = gc.mem_free() if MPY else 0
    clk = Clock()
    cfg = config.validate({"mqtt": {"host": "h"}, "max_packs": 64,
                           "battery": {"enabled": True, "capacity_ah": 100}}, False)
    ring = Ring(ReplayUart(n), 9600, clk, n)
    bank = Bank(64, 30000)
    bank.resize(n)
    gc.collect()
    f2 = gc.mem_free() if MPY else 0
    est = Estimator(cfg["battery"], 64)
    gc.collect()
    if MPY and n == 16:
        print("heap: estimator modules %d B, its state for 64 packs %d B" % (f0 - f1, f2 - gc.mem_free()))
    port = Port()
    port.clock = clk
    pub = Publisher(cfg, port)
    pub.client = NullClient()
    pub.connected = True
    hub = FakeHub()
    hub.bank = bank
    hub.estimator = est
    hub.battery_error = ""
    hub.est_step = True
    sh = Shunt()
    td = clk.ticks_diff
    nodes = ring.scan(n)
    bank.update(ring.rx, nodes, clk.t)
    bank.compute(clk.t, td)
    est.update(clk.t, bank, sh, td)
    for i in range(n):  # as after a resync: every pack known at 50 %
        est.known[i] = 1
        est.q[i] = est.nominal_cq // 2
    for _k in range(24):  # warm up (the publisher's first round publishes everything)
        clk.t += 5000
        bank.update(ring.rx, ring.scan(n), clk.t)
        est.update(clk.t, bank, sh, td)
        soc_topics.publish(pub, hub)
    gc.collect()
    t_est = 0
    t_pub = 0
    a_est = 0
    a_pub = 0
    for k in range(scans):
        clk.t += 5000
        # a current step every other scan (the step path and the resistance update run)
        sh.current_ma = -20000 if k & 1 else -10000
        sh.dq_mas = sh.current_ma * 5
        bank.update(ring.rx, ring.scan(n), clk.t)  # fresh voltages (not measured: the hub's own part)
        gc.collect()
        gc.disable()
        m0 = mem_alloc()
        t0 = ticks_us()
        est.update(clk.t, bank, sh, td)
        t1 = ticks_us()
        m1 = mem_alloc()
        soc_topics.publish(pub, hub)
        t2 = ticks_us()
        m2 = mem_alloc()
        gc.enable()
        gc.collect()
        t_est += ticks_diff(t1, t0)
        t_pub += ticks_diff(t2, t1)
        a_est += m1 - m0
        a_pub += m2 - m1
    return t_est / scans / 1000, t_pub / scans / 1000, a_est // scans, a_pub // scans


print("runtime %s" % sys.implementation.name)
print("packs  estimator ms  soc/health publish ms  estimator B/scan  soc/health publish B/scan")
for n in (16, 64):
    te, tp, ae, ap = bench_estimator(n)
    print("%5d  %12.2f  %21.2f  %16d  %25d" % (n, te, tp, ae, ap))
