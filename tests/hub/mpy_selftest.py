# Runs under the real MicroPython unix port (tests/hub/test_micropython.py starts it):
# the hub's pure modules on the real runtime, checked against the shared vectors.
import gc
import json
import sys

from hub import codec, config
from hub import shunt as shunt_mod
from hub.alarms import Alarms
from hub.bank import Bank
from hub.energy import Energy, civil
from hub.mqtt import Buf as _Buf
from hub.ring import Ring
from hub.shunt_topics import power_dw

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


vec = json.load(open(sys.argv[1]))
n_frames = 0
for v in vec["frames"]:
    raw = bytes.fromhex(v["hex"])
    want = v["hub"]
    frame = raw[want.get("skip", 0):]
    err = codec.check(frame, len(frame))
    if want["ok"]:
        check(err == 0, v["name"] + ": rejected " + codec.ERROR_NAMES[err])
        d = codec.decode(frame)
        for k in ("cmd", "seq", "addr", "cnt", "nodes", "done", "fault"):
            check(d[k] == want[k], v["name"] + ": " + k)
        if "records" in want:
            check(d["records"] == want["records"], v["name"] + ": records")
        if "settings" in want:
            check(d["settings"] == want["settings"], v["name"] + ": settings")
        if "info" in want:
            check(d["info"] == want["info"], v["name"] + ": info")
    else:
        check(codec.ERROR_NAMES[err] == want["error"], v["name"] + ": got " + codec.ERROR_NAMES[err])
    n_frames += 1
for ex in vec["crc"]["examples"]:
    check(codec.crc16(bytes.fromhex(ex["data"])) == int(ex["crc"], 16), "crc " + ex["data"])


class Clock:
    t = 0

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.t += ms


class OneAnswerUart:
    """Answers any SCAN with the vectors' two-pack response, re-sequenced."""

    def __init__(self, template):
        self.t = bytearray(template)
        self.rx = b""

    def write(self, buf):
        a = bytearray(self.t)
        a[2] = buf[2]
        c = codec.crc16(a, 1, len(a) - 2)
        a[-2] = c >> 8
        a[-1] = c & 0xFF
        self.rx = bytes(a)
        return len(buf)

    def readinto(self, buf):
        if not self.rx:
            return None
        k = min(len(buf), len(self.rx))
        buf[0:k] = self.rx[0:k]
        self.rx = self.rx[k:]
        return k


resp = [v for v in vec["frames"] if v["name"] == "scan_response_2"][0]
clk = Clock()
ring = Ring(OneAnswerUart(bytes.fromhex(resp["hex"])), 9600, clk, 2)
bank = Bank(64, 10000)
bank.resize(2)
cfg = config.validate({"mqtt": {"host": "h"}}, False)
alarms = Alarms(cfg)
for i in range(3):
    nodes = ring.scan(2)
    bank.update(ring.rx, nodes, clk.ticks_ms())
    bank.compute(clk.ticks_ms(), clk.ticks_diff)
    alarms.evaluate(bank, 0)
check(bank.total_mv == 3312 + 3298, "bank total %d" % bank.total_mv)
check(bank.min_pack == 2 and bank.max_pack == 1, "min/max pack")
check(bank.temperature(1, 0, clk.ticks_diff) == codec.TEMP_NONE, "sensor fault pack has no temperature")

# decode+model allocates nothing once running
gc.collect()
gc.disable()
before = gc.mem_alloc()
for i in range(20):
    nodes = ring.scan(2)
    bank.update(ring.rx, nodes, clk.ticks_ms())
    bank.compute(clk.ticks_ms(), clk.ticks_diff)
    alarms.evaluate(bank, 0)
alloc = gc.mem_alloc() - before
gc.enable()

try:
    config.validate({"mqtt": {"host": "", "port": 0}}, False)
    check(False, "config accepted a bad port")
except config.ConfigError as e:
    check(any(p.startswith("mqtt.port") for p in e.problems), "mqtt.port named")

b = _Buf(64)
check(b.clear().fixed(3312, 3).bytes() == b"3.312", "fixed 3.312")
check(b.clear().fixed(-15, 1).bytes() == b"-1.5", "fixed -1.5")
check(b.clear().i(0).bytes() == b"0", "int 0")

# the shunt's fixed point on the real runtime: the Scaler against exact integer arithmetic (the unix
# port's 63-bit small ints hold the reference products), energy counters, power, dates, a config check
for factor in (0.00038147, 0.38147, 6.1035, 123.4):
    sc = shunt_mod.Scaler(factor)
    total = 0
    ref = 0
    x = -(2**28) + 12345
    for k in range(300):
        x = (x * 1103515245 + 12345) % (2**29) - 2**28
        total += sc.add(x)
        ref += x
    check(total == (ref * sc.mul) >> sc.shift, "scaler sum %r" % factor)
    check(sc.conv(1000) == (1000 * sc.mul + (1 << sc.shift >> 1)) >> sc.shift, "scaler conv %r" % factor)


class _S:
    ok = True
    dq_mas = 0


class _B:
    complete = True
    total_mv = 52000


e = Energy()
sh = _S()
for k in range(720):
    sh.dq_mas = 500000
    e.update(sh, _B(), 9800 * 86400 + k)
check(e.in_mah == 100000 and e.in_mwh == 5200000 and e.d_in_mwh == 5200000, "energy 100 A for an hour")
check(power_dw(-42125, 53012) == -22331, "power -42.125 A x 53.012 V")
check(civil(9800) == (2026, 10, 31) and civil(59) == (2000, 2, 29), "civil dates")
check(shunt_mod.ppm(2, 3) == 666666, "ppm")
cfg = config.validate({"mqtt": {"host": "h"}, "shunt": {"enabled": True, "shunt_ohms": 0}}, False)
check(any(p.startswith("shunt.shunt_ohms") for p in cfg["shunt_problems"]), "shunt.shunt_ohms named")

print("frames", n_frames)
print("alloc_per_20_scans", alloc)
if failures:
    for f in failures:
        print("FAIL", f)
else:
    print("OK")
