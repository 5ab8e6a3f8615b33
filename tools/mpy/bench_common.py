# What the MicroPython benches share (tools/mpy/bench_hub_mpy.py, bench_soc_mpy.py; tools/bench_hub.py runs
# them under CPython and, precompiled beside this module, under the MicroPython unix port): a clock, time
# and heap counters, a UART that replays a prebuilt scan answer, a socket and MQTT client that swallow
# everything, and the small stand-ins for the hub's port and the Hub itself. No allocation per use.
import gc
import sys
import time

from hub import codec

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
    """A connected socket with nothing to read: what the hub sees between Home Assistant's messages."""

    def __init__(self):
        self.bytes = 0

    def write(self, buf, n=None):
        self.bytes += len(buf) if n is None else n
        return n

    def read(self, n):
        return None

    def setblocking(self, flag):
        pass

    def settimeout(self, t):
        pass


def null_client():
    """umqtt.simple's real client over a NullSock, so poll() runs umqtt's own check_msg()."""
    if not MPY:
        from hub.port import install_cpython_shims

        install_cpython_shims()
    from umqtt.simple import MQTTClient

    c = MQTTClient("bench", "127.0.0.1")
    c.sock = NullSock()
    return c


class Port:
    clock = None

    def log(self, level, msg):
        pass


class FakeHub:
    shunt = None
    energy = None


class NullClient:
    """Just a NullSock where the publisher looks for umqtt's socket (no umqtt loaded)."""

    def __init__(self):
        self.sock = NullSock()
