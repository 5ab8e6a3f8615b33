# Benchmark of the hub's hot path, for MicroPython (and CPython, through tools/bench_hub.py):
# time and heap per scan for decode+model and for publishing, 16 and 64 packs.
#   MICROPYPATH=<mpy build>:.frozen micropython tools/mpy/bench_hub_mpy.py
import gc
import sys
import time

from hub import codec, config
from hub.alarms import Alarms
from hub.bank import Bank
from hub.publisher import Publisher
from hub.ring import Ring

MPY = sys.implementation.name == "micropython"
if MPY:
    from time import ticks_diff, ticks_us
else:

    def ticks_us():
        return int(time.perf_counter() * 1e6)

    def ticks_diff(a, b):
        return a - b


if not MPY:
    import tracemalloc

    tracemalloc.start()


def mem_alloc():
    # MicroPython: bytes allocated on the heap; CPython: bytes currently traced (net growth)
    return gc.mem_alloc() if MPY else tracemalloc.get_traced_memory()[0]


class Clock:
    t = 0

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.t += ms


class ReplayUart:
    """Answers every SCAN with a prebuilt n-pack answer (SEQ and CRC patched in place): no allocation."""

    def __init__(self, n):
        ans = bytearray(codec.frame_len(n))
        codec.build(ans, codec.CMD_SCAN, 0, 0, n)
        for i in range(n):
            o = codec.slot(i)
            mv = 3300 + i
            ans[o] = i + 1
            ans[o + 2] = mv & 0xFF
            ans[o + 3] = mv >> 8
            ans[o + 4] = 250
        ans[codec.HEADER_SIZE + 8 * n] = n
        self.ans = ans
        self.pos = len(ans)

    def write(self, buf):
        a = self.ans
        a[2] = buf[2]
        c = codec.crc16(a, 1, len(a) - 2)
        a[len(a) - 2] = c >> 8
        a[len(a) - 1] = c & 0xFF
        self.pos = 0
        return len(buf)

    def readinto(self, buf):
        if self.pos >= len(self.ans):
            return None
        k = len(self.ans) - self.pos
        if k > len(buf):
            k = len(buf)
        for i in range(k):
            buf[i] = self.ans[self.pos + i]
        self.pos += k
        return k


class NullSock:
    def __init__(self):
        self.bytes = 0

    def write(self, buf, n=None):
        self.bytes += len(buf) if n is None else n
        return n


class NullClient:
    def __init__(self):
        self.sock = NullSock()


class Port:
    clock = None

    def log(self, level, msg):
        pass


class FakeHub:
    pass


def bench(n, scans=50):
    clk = Clock()
    cfg = config.validate({"mqtt": {"host": "h"}, "max_packs": 64}, False)
    ring = Ring(ReplayUart(n), 9600, clk, n)
    bank = Bank(64, 30000)
    bank.resize(n)
    alarms = Alarms(cfg)
    port = Port()
    port.clock = clk
    pub = Publisher(cfg, port)
    pub.client = NullClient()
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

    # warm up: first scans allocate nothing new after this
    for _ in range(3):
        model_step()
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


print("runtime %s" % sys.implementation.name)
print("packs  decode+model ms  publish ms  decode+model B/scan  publish B/scan  MQTT bytes/scan")
for n in (16, 64):
    tm, tp, am, ap, nb = bench(n)
    print("%5d  %15.2f  %10.2f  %19d  %14d  %15d" % (n, tm, tp, am, ap, nb))
