# Benchmark of the hub's hot path, for MicroPython (and CPython, through tools/bench_hub.py):
# time and heap per scan for decode+model and for publishing, 16 and 64 packs; and the shunt's cost per
# cycle (driver read over a register-answering fake chip, energy counters, its four topics).
#   MICROPYPATH=<mpy build>:.frozen micropython tools/mpy/bench_hub_mpy.py
import gc
import sys

from bench_common import Clock, FakeHub, Port, ReplayUart, mem_alloc, null_client, ticks_diff, ticks_us

from hub import config
from hub.alarms import Alarms
from hub.bank import Bank
from hub.publisher import Publisher
from hub.ring import Ring

# discovery is imported first, as hub.preload() does on the board: loaded later, into a heap the benches
# have cut up, its module would not find a piece large enough
gc.collect()
_m0 = mem_alloc()
from hub import discovery  # noqa: E402

gc.collect()
DISCOVERY_MODULE = mem_alloc() - _m0


def bench(n, scans=50, disc=False):
    clk = Clock()
    cfg = config.validate({"mqtt": {"host": "h"}, "max_packs": 64, "discovery": {"enabled": disc}}, False)
    ring = Ring(ReplayUart(n), 9600, clk, n)
    bank = Bank(64, 30000)
    bank.resize(n)
    alarms = Alarms(cfg)
    port = Port()
    port.clock = clk
    pub = Publisher(cfg, port)
    pub.client = null_client()
    if disc:
        pub.client.set_callback(pub._on_msg)
    pub.connected = True
    hub = FakeHub()
    hub.bank = bank
    hub.alarms = alarms
    hub.ring = ring
    hub.scan_time = 0
    hub.scanned_this_cycle = True
    hub.republish_alarms = False
    hub.probe_temps = []
    hub.probe_ids = []
    hub.last_fault = 0
    hub.enumerations = 1
    td = clk.ticks_diff

    def model_step():
        nodes = ring.scan(n)
        bank.update(ring.rx, nodes, clk.t)
        bank.compute(clk.t, td)
        alarms.evaluate(bank, 0)

    # warm up: first scans allocate nothing new after this (and discovery, if on, is all out)
    for _ in range(3):
        model_step()
        pub.publish_cycle(hub, clk.t)
    while disc and pub.discovery.pending():
        pub.publish_cycle(hub, clk.t)
    gc.collect()
    t_model = 0
    t_pub = 0
    a_model = 0
    a_pub = 0
    for _ in range(scans):
        gc.disable()
        m0 = mem_alloc()
        t0 = ticks_us()
        model_step()
        t1 = ticks_us()
        m1 = mem_alloc()
        hub.scan_time = clk.t
        pub.publish_cycle(hub, clk.t)
        t2 = ticks_us()
        m2 = mem_alloc()
        gc.enable()
        gc.collect()
        t_model += ticks_diff(t1, t0)
        t_pub += ticks_diff(t2, t1)
        a_model += m1 - m0
        a_pub += m2 - m1
    return (t_model / scans / 1000, t_pub / scans / 1000, a_model // scans, a_pub // scans,
            pub.client.sock.bytes // (scans + 3))


def bench_discovery(n=64):
    """Home Assistant discovery for n packs: bytes, cycles, time per cycle, heap."""
    module = DISCOVERY_MODULE
    clk = Clock()
    cfg = config.validate({"mqtt": {"host": "h"}, "max_packs": n, "discovery": {"enabled": True}}, False)
    port = Port()
    port.clock = clk
    gc.collect()
    m0 = mem_alloc()
    pub = Publisher(cfg, port)
    pub.client = null_client()
    pub.connected = True
    gc.collect()
    state = mem_alloc() - m0
    bank = Bank(n, 30000)
    bank.resize(n)
    hub = FakeHub()
    hub.bank = bank
    hub.probe_ids = []
    d = pub.discovery
    d.restart()
    cycles = 0
    worst_us = 0
    sent0 = pub.client.sock.bytes
    while d.pending():  # as in the hub: the collector runs when it must
        gc.collect()
        t0 = ticks_us()
        d.step(hub)
        worst_us = max(worst_us, ticks_diff(ticks_us(), t0))
        cycles += 1
    sent, nbytes = d.sent, pub.client.sock.bytes - sent0
    # what one config allocates (and leaves to the collector): a pack's voltage, with the collector off
    r = discovery._line(d.tables, d.pack_rows[0])
    row = r[0][r[1]:r[2]]
    gc.collect()
    gc.disable()
    a0 = mem_alloc()
    d._send(row, n, False)
    worst_alloc = mem_alloc() - a0
    gc.enable()
    return sent, nbytes, cycles, worst_us / 1000, module, state, worst_alloc


class FakeChip:
    """Answers the shunt driver's register reads like an INA228 or INA226 at a steady 42 A, with no
    allocation: CHARGE advances by a fixed count per read (kept as two 20-bit halves), the INA226's
    conversion-ready flag is set on every other Mask/Enable read."""

    def __init__(self, chip):
        self.chip = chip
        self.cal = 0
        self.hi = 0
        self.lo = 0
        self.flip = 0

    def writeto_mem(self, addr, reg, buf):
        if (self.chip == "ina228" and reg == 2) or (self.chip == "ina226" and reg == 5):
            self.cal = (buf[0] << 8) | buf[1]

    def _put(self, buf, v, n):
        for k in range(n):
            buf[n - 1 - k] = (v >> (8 * k)) & 0xFF

    def readfrom_mem_into(self, addr, reg, buf):
        n = len(buf)
        if self.chip == "ina228":
            if reg == 0x3E:
                self._put(buf, 0x5449, 2)
            elif reg == 0x3F:
                self._put(buf, 0x2281, 2)
            elif reg == 2:
                self._put(buf, self.cal, 2)
            elif reg == 7:
                self._put(buf, 110100 << 4, 3)  # 42 A in CURRENT_LSB (200 A / 2^19)
            elif reg == 0x0A:
                self.lo += 550500  # ~5 s at 42 A
                if self.lo >= 0x100000:
                    self.lo -= 0x100000
                    self.hi += 1
                buf[0] = (self.hi >> 12) & 0xFF
                buf[1] = (self.hi >> 4) & 0xFF
                buf[2] = ((self.hi & 15) << 4) | (self.lo >> 16)
                buf[3] = (self.lo >> 8) & 0xFF
                buf[4] = self.lo & 0xFF
            else:
                self._put(buf, 1, n)  # DIAG_ALRT: MEMSTAT only
        else:
            if reg == 0xFE:
                self._put(buf, 0x5449, 2)
            elif reg == 0xFF:
                self._put(buf, 0x2260, 2)
            elif reg == 5:
                self._put(buf, self.cal, 2)
            elif reg == 6:
                self.flip ^= 1
                self._put(buf, 8 if self.flip else 0, 2)
            elif reg == 4:
                self._put(buf, 9175, 2)  # 42 A in CURRENT_LSB (150 A / 2^15)
            else:
                self._put(buf, 0, n)


def bench_shunt(chip, scans=50):
    from hub import shunt, shunt_topics
    from hub.energy import Energy

    clk = Clock()
    cfg = config.validate({"mqtt": {"host": "h"}, "max_packs": 64, "shunt": {
        "enabled": True, "chip": chip, "max_current_a": 200 if chip == "ina228" else 150}}, False)
    port = Port()
    port.clock = clk
    pub = Publisher(cfg, port)
    pub.client = null_client()
    pub.connected = True
    hub = FakeHub()
    hub.bank = Bank(64, 30000)
    hub.bank.resize(16)
    hub.bank.complete = True
    hub.bank.total_mv = 53000
    hub.shunt = shunt.make(cfg["shunt"], FakeChip(chip), clk)
    hub.energy = Energy()
    wall = 9800 * 86400

    def cycle():
        for _ in range(8):  # the INA226 driver polls between cycles (every 250 ms of a 5 s cycle)
            clk.t += 250
            hub.shunt.poll(clk.t)
        clk.t += 3000
        hub.shunt.read(clk.t)
        hub.energy.update(hub.shunt, hub.bank, wall)
        shunt_topics.publish(pub, hub)

    for _ in range(4):
        cycle()
    assert hub.shunt.ok, hub.shunt.problem
    gc.collect()
    t = 0
    a = 0
    for _ in range(scans):
        gc.disable()
        m0 = mem_alloc()
        t0 = ticks_us()
        cycle()
        t1 = ticks_us()
        m1 = mem_alloc()
        gc.enable()
        gc.collect()
        t += ticks_diff(t1, t0)
        a += m1 - m0
    return t / scans / 1000, a // scans, hub.shunt.current_ma, hub.energy.in_mah


print("runtime %s" % sys.implementation.name)
print("packs  decode+model ms  publish ms  decode+model B/scan  publish B/scan  MQTT bytes/scan")
for n in (16, 64):
    tm, tp, am, ap, nb = bench(n)
    print("%5d  %15.2f  %10.2f  %19d  %14d  %15d" % (n, tm, tp, am, ap, nb))
tm, tp, am, ap, nb = bench(64, disc=True)
print("%5d  %15.2f  %10.2f  %19d  %14d  %15d  (discovery on, all out; poll() for Home Assistant's status)"
      % (64, tm, tp, am, ap, nb))
configs, nbytes, cycles, worst_ms, module, state, worst_alloc = bench_discovery(64)
print("discovery, 64 packs: %d configs, %d bytes, in %d cycles (slowest %.1f ms); heap: module %d B, state %d B, "
      "%d B allocated (and freed) per config" % (configs, nbytes, cycles, worst_ms, module, state, worst_alloc))
print("shunt   read+energy+topics ms/cycle  B/cycle  (8 polls, 1 read, energy, 4 topics; current mA, Ah)")
for chip in ("ina228", "ina226"):
    ts, as_, cur, mah = bench_shunt(chip)
    print("%s  %31.2f  %7d  (%d mA, %d mAh)" % (chip, ts, as_, cur, mah))
