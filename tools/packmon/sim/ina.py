"""Device models of the TI INA228 and INA226 for the host, at register level, and an I2C-over-socket
bridge so the hub on the MicroPython unix port can talk to them.

A model has the chip's register map (power-on values, IDs), its quantisation (shunt-voltage LSB,
full-scale clipping, the calibration arithmetic into the CURRENT register and its overflow flags), its
conversion timing and averaging, and the sensor's imperfections (gain error, offset in mA, noise in mA
rms per conversion, seeded). The true current is a function of simulated time (seconds, + = into IN+);
each conversion measures the mean of that function over its conversion time (a delta-sigma ADC
integrates), so a load that switches every 0.3 s is seen as it would be by the real chip.

- INA228: continuous conversions; CURRENT holds the average of the last AVG conversions; CHARGE (40-bit
  two's complement) accumulates every conversion, so nothing between reads is missed. DIAG_ALRT carries
  SHNTOL/SHNTUL (shunt voltage at full scale), MATHOF (CURRENT beyond 20 bits, latched until CONFIG.RSTACC)
  and CHARGEOF (cleared by reading CHARGE).
- INA226: continuous shunt conversions averaged over AVG; at the end of each window the Shunt and
  Current registers update and CVRF (Mask/Enable bit 3) is set; reading Mask/Enable clears it. A window
  that is not read before the next one completes is lost, as on the chip. OVF (bit 2) when the current
  calculation overflows 16 bits.

absent=True makes every transaction fail with OSError(ENODEV) (no acknowledge); nack(n) fails the next
n transactions with EIO; brownout() returns the registers to their power-on values.
"""

from __future__ import annotations

import math
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

TI = 0x5449
ENODEV = 19
EIO = 5

# conversion times in microseconds by register code
CT228_US = (50, 84, 150, 280, 540, 1052, 2074, 4120)
CT226_US = (140, 204, 332, 588, 1100, 2116, 4156, 8244)
AVG = (1, 4, 16, 64, 128, 256, 512, 1024)


def _sub_means(fn: Callable[[float], float], t0: float, t1: float, steps: int = 4) -> float:
    """Mean of fn over [t0, t1] (midpoint rule): what an integrating ADC sees in one conversion."""
    h = (t1 - t0) / steps
    return sum(fn(t0 + (k + 0.5) * h) for k in range(steps)) / steps


class _Base:
    FULL_SCALE_V = 0.0
    SIZES: dict[int, int] = {}

    def __init__(self, shunt_ohms: float, current: Callable[[float], float], now: Callable[[], float],
                 gain_error: float = 0.0, offset_ma: float = 0.0, noise_ma: float = 0.0, seed: int = 0,
                 address: int = 0x40) -> None:
        self.r = shunt_ohms
        self.current = current
        self.now = now
        self.gain_error = gain_error
        self.offset_ma = offset_ma
        self.noise_ma = noise_ma
        self.rng = random.Random(seed)
        self.address = address
        self.absent = False
        self._nacks = 0
        self.transactions = 0
        self.t = now()  # the model's time: conversions are run up to now() before every transaction
        self.conversions = 0
        self.por()

    # -- I2C (machine.I2C's memory methods) ----------------------------------------------------------
    def nack(self, n: int = 1) -> None:
        self._nacks = n

    def _begin(self, addr: int) -> None:
        self.transactions += 1
        if self.absent or addr != self.address:
            raise OSError(ENODEV)
        if self._nacks:
            self._nacks -= 1
            raise OSError(EIO)
        self.advance(self.now())

    def readfrom_mem_into(self, addr: int, reg: int, buf) -> None:  # noqa: ANN001 (bytearray/memoryview)
        self._begin(addr)
        data = self.read_reg(reg)
        for i in range(len(buf)):
            buf[i] = data[i] if i < len(data) else 0xFF

    def readfrom_mem(self, addr: int, reg: int, n: int) -> bytes:
        b = bytearray(n)
        self.readfrom_mem_into(addr, reg, b)
        return bytes(b)

    def writeto_mem(self, addr: int, reg: int, buf) -> None:  # noqa: ANN001
        self._begin(addr)
        if len(buf) != 2:
            raise OSError(EIO)
        self.write_reg(reg, (buf[0] << 8) | buf[1])

    # -- measurement --------------------------------------------------------------------------------
    def measured_a(self, t0: float, t1: float) -> float:
        """What one conversion over [t0, t1] measures, in amperes, before quantisation."""
        true = _sub_means(self.current, t0, t1)
        self.true_charge_as += true * (t1 - t0)
        noise = self.rng.gauss(0.0, self.noise_ma) / 1000 if self.noise_ma else 0.0
        return true * (1 + self.gain_error) + self.offset_ma / 1000 + noise

    def vshunt_counts(self, amps: float, lsb_v: float) -> int:
        """The shunt voltage of one conversion, quantised and clipped to full scale."""
        full = round(self.FULL_SCALE_V / lsb_v)
        c = round(amps * self.r / lsb_v)
        return max(-full, min(full - 1, c))

    def brownout(self) -> None:
        self.por()

    def por(self) -> None:
        raise NotImplementedError

    def read_reg(self, reg: int) -> bytes:
        raise NotImplementedError

    def write_reg(self, reg: int, v: int) -> None:
        raise NotImplementedError

    def advance(self, t: float) -> None:
        raise NotImplementedError


class Ina228Model(_Base):
    """TI INA228 (SBOSA20)."""

    FULL_SCALE_V = 0.16384

    def por(self) -> None:
        self.true_charge_as = 0.0  # integral of the true current since power-on or reset (A*s), for tests
        self.config = 0x0000
        self.adc_config = 0xFB68
        self.shunt_cal = 0x1000
        self.vshunt = 0  # 20-bit counts
        self.current_reg = 0  # 20-bit counts
        self.charge = 0.0  # in CURRENT_LSB coulombs, kept exact; the register shows it rounded to 40 bits
        self.diag = 0x0001  # MEMSTAT = 1: trim memory fine
        self.latched = 0
        self.window: list[int] = []
        self.t_conv = self.t

    @property
    def adcrange(self) -> int:
        return (self.config >> 4) & 1

    def _cycle_s(self) -> float:
        mode = self.adc_config >> 12
        if mode < 0x9:
            return 0.0  # shutdown or triggered: no continuous conversions in this model
        us = 0
        if mode & 1:
            us += CT228_US[(self.adc_config >> 9) & 7]
        if mode & 2:
            us += CT228_US[(self.adc_config >> 6) & 7]
        if mode & 4:
            us += CT228_US[(self.adc_config >> 3) & 7]
        return us / 1e6

    def advance(self, t: float) -> None:
        cyc = self._cycle_s()
        if cyc <= 0 or not (self.adc_config >> 12) & 2:
            self.t = t
            self.t_conv = t
            return
        ct = CT228_US[(self.adc_config >> 6) & 7] / 1e6
        avg = AVG[self.adc_config & 7]
        lsb_v = 78.125e-9 if self.adcrange else 312.5e-9
        full = round(self.FULL_SCALE_V / (4 if self.adcrange else 1) / lsb_v)
        while self.t_conv + cyc <= t:
            t0 = self.t_conv
            self.t_conv += cyc
            a = self.measured_a(t0, t0 + ct)
            # the chip's shunt ADC measures only during VSHCT; the true charge in the rest of the
            # cycle (bus/temperature conversions) is counted as if the shunt conversion covered it
            if cyc > ct:
                self.true_charge_as += _sub_means(self.current, t0 + ct, t0 + cyc) * (cyc - ct)
            c = round(a * self.r / lsb_v)
            if c >= full or c < -full:
                self.diag |= 1 << 6 if c > 0 else 1 << 5  # SHNTOL / SHNTUL (limits at full scale)
                c = max(-full, min(full - 1, c))
            else:
                self.diag &= ~((1 << 6) | (1 << 5))
            self.conversions += 1
            # CURRENT = VSHUNT x 4096 / SHUNT_CAL in CURRENT_LSB units (SBOSA20 8.1.2 rearranged)
            cur = c * 4096 / self.shunt_cal if self.shunt_cal else 0.0
            self.charge += cur * cyc  # CHARGE accumulates every conversion (CURRENT_LSB x seconds)
            if abs(self.charge) >= 2**39:
                self.latched |= 1 << 10  # CHARGEOF
                self.charge = math.fmod(self.charge + 2**39, 2**40) - 2**39
            self.window.append(c)
            if len(self.window) >= avg:
                v = round(sum(self.window) / len(self.window))
                self.window = []
                self.vshunt = v
                i = round(v * 4096 / self.shunt_cal) if self.shunt_cal else 0
                if i >= 2**19 or i < -(2**19):
                    self.latched |= 1 << 9  # MATHOF
                    i = max(-(2**19), min(2**19 - 1, i))
                self.current_reg = i
                self.diag |= 1 << 1  # CNVRF
        self.t = t

    def read_reg(self, reg: int) -> bytes:
        if reg == 0x00:
            return struct.pack(">H", self.config)
        if reg == 0x01:
            return struct.pack(">H", self.adc_config)
        if reg == 0x02:
            return struct.pack(">H", self.shunt_cal)
        if reg == 0x04:
            return ((self.vshunt & 0xFFFFF) << 4).to_bytes(3, "big")
        if reg == 0x07:
            return ((self.current_reg & 0xFFFFF) << 4).to_bytes(3, "big")
        if reg == 0x0A:
            self.latched &= ~(1 << 10)  # CHARGEOF clears when CHARGE is read
            return (int(math.floor(self.charge)) & (2**40 - 1)).to_bytes(5, "big")
        if reg == 0x0B:
            v = self.diag | self.latched  # MATHOF stays until RSTACC (or a reset) clears it
            self.diag &= ~(1 << 1)
            return struct.pack(">H", v)
        if reg == 0x3E:
            return struct.pack(">H", TI)
        if reg == 0x3F:
            return struct.pack(">H", 0x2281)
        if reg in (0x03, 0x06, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11):
            return b"\x00\x00"
        if reg in (0x05, 0x08):
            return b"\x00\x00\x00"
        if reg == 0x09:
            return b"\x00" * 5
        raise OSError(EIO)  # no such register: the chip does not acknowledge it

    def write_reg(self, reg: int, v: int) -> None:
        if reg == 0x00:
            if v & 0x8000:
                self.por()
                return
            if v & 0x4000:
                self.charge = 0.0  # RSTACC: clears the accumulators and the overflow flags
                self.latched = 0
            self.config = v & 0x3FF0
            return
        if reg == 0x01:
            self.adc_config = v
            self.window = []
            self.t_conv = self.t  # a write restarts conversions
            return
        if reg == 0x02:
            self.shunt_cal = v & 0x7FFF
            return
        if reg in (0x03, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11):
            return
        raise OSError(EIO)


class Ina226Model(_Base):
    """TI INA226 (SBOS547B)."""

    FULL_SCALE_V = 0.08192
    LSB_V = 2.5e-6

    def por(self) -> None:
        self.true_charge_as = 0.0  # integral of the true current since power-on or reset (A*s), for tests
        self.config = 0x4127
        self.cal = 0
        self.shunt = 0
        self.current_reg = 0
        self.mask = 0
        self.ovf = False
        self.cvrf = False
        self.window: list[int] = []
        self.t_conv = self.t
        self.windows = 0

    def _timing(self) -> tuple[float, float, int]:
        mode = self.config & 7
        ct_sh = CT226_US[(self.config >> 3) & 7] / 1e6
        ct_bus = CT226_US[(self.config >> 6) & 7] / 1e6
        avg = AVG[(self.config >> 9) & 7]
        if mode == 5:
            return ct_sh, ct_sh, avg
        if mode == 7:
            return ct_sh + ct_bus, ct_sh, avg
        return 0.0, ct_sh, avg  # power-down, triggered or bus only: no shunt conversions here

    def advance(self, t: float) -> None:
        cyc, ct, avg = self._timing()
        if cyc <= 0:
            self.t = t
            self.t_conv = t
            return
        while self.t_conv + cyc <= t:
            t0 = self.t_conv
            self.t_conv += cyc
            a = self.measured_a(t0, t0 + ct)
            if cyc > ct:
                self.true_charge_as += _sub_means(self.current, t0 + ct, t0 + cyc) * (cyc - ct)
            self.window.append(self.vshunt_counts(a, self.LSB_V))
            self.conversions += 1
            if len(self.window) >= avg:
                v = round(sum(self.window) / len(self.window))
                self.window = []
                self.shunt = v
                i = round(v * self.cal / 2048)  # SBOS547B 7.5.1 eq. 3
                self.ovf = i > 32767 or i < -32768
                self.current_reg = max(-32768, min(32767, i))
                self.cvrf = True
                self.windows += 1
        self.t = t

    def read_reg(self, reg: int) -> bytes:
        if reg == 0x00:
            return struct.pack(">H", self.config)
        if reg == 0x01:
            return struct.pack(">h", self.shunt)
        if reg == 0x02:
            return b"\x00\x00"
        if reg == 0x03:
            return b"\x00\x00"
        if reg == 0x04:
            return struct.pack(">h", self.current_reg)
        if reg == 0x05:
            return struct.pack(">H", self.cal)
        if reg == 0x06:
            v = self.mask | (8 if self.cvrf else 0) | (4 if self.ovf else 0)
            self.cvrf = False  # reading Mask/Enable clears CVRF
            return struct.pack(">H", v)
        if reg == 0x07:
            return b"\x00\x00"
        if reg == 0xFE:
            return struct.pack(">H", TI)
        if reg == 0xFF:
            return struct.pack(">H", 0x2260)
        raise OSError(EIO)

    def write_reg(self, reg: int, v: int) -> None:
        if reg == 0x00:
            if v & 0x8000:
                self.por()
                return
            self.config = v & 0x0FFF | 0x4000
            self.window = []
            self.cvrf = False
            self.t_conv = self.t  # writing the configuration restarts the conversion
            return
        if reg == 0x05:
            self.cal = v & 0x7FFF
            return
        if reg == 0x06:
            self.mask = v & 0xFC03
            return
        if reg == 0x07:
            return
        raise OSError(EIO)


def make_model(chip: str, shunt_ohms: float, current: Callable[[float], float], now: Callable[[], float],
               **kw) -> _Base:  # noqa: ANN003
    if chip == "ina228":
        return Ina228Model(shunt_ohms, current, now, **kw)
    if chip == "ina226":
        return Ina226Model(shunt_ohms, current, now, **kw)
    raise ValueError(f"unknown chip {chip!r}")


def switching(high_a: float, low_a: float = 0.0, period_s: float = 0.6) -> Callable[[float], float]:
    """A load that switches between high_a and low_a every period_s/2 seconds (0.6 -> every 0.3 s)."""

    def f(t: float) -> float:
        return high_a if (t % period_s) < period_s / 2 else low_a

    return f


def solar_day(peak_charge_a: float = 60.0, night_load_a: float = 25.0,
              day_s: float = 240.0) -> Callable[[float], float]:
    """A compressed day for the demo: charging by day under passing clouds (a half-sine with dips),
    inverter loads in steps by night. day_s simulated seconds make one day."""

    def f(t: float) -> float:
        ph = (t % day_s) / day_s
        if 0.25 <= ph < 0.75:
            sun = math.sin((ph - 0.25) * 2 * math.pi)
            cloud = 0.5 if int(t / (day_s / 40)) % 5 == 3 else 1.0
            return peak_charge_a * sun * cloud - 5.0
        step = int(t / (day_s / 24)) % 4
        return -(night_load_a * (0.3, 1.0, 0.6, 1.4)[step])

    return f


# -- the hub on the MicroPython unix port reaches a model through a loopback socket -----------------
# request:  op (b'R' read / b'W' write), addr, reg, n, then n data bytes for a write
# answer:   status (0 = acknowledged, else an errno: 19 no device, 5 NACK), then n bytes for a read
class SocketI2CServer:
    """Serves a model on 127.0.0.1 for hub.simlink.SocketI2C (one client at a time)."""

    def __init__(self, model: _Base, host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = model
        self.lock = threading.Lock()  # hold it to change the model from another thread
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((host, port))
        self.srv.listen(1)
        self.host, self.port = self.srv.getsockname()
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="socket-i2c", daemon=True)

    def start(self) -> SocketI2CServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.srv], [], [], 0.05)
            if not r:
                continue
            conn, _ = self.srv.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:
                try:
                    self._handle(conn)
                except OSError:
                    pass

    def _recv(self, conn: socket.socket, n: int) -> bytes | None:
        out = b""
        while len(out) < n:
            r, _, _ = select.select([conn], [], [], 0.05)
            if self._stop.is_set():
                return None
            if not r:
                continue
            chunk = conn.recv(n - len(out))
            if not chunk:
                return None
            out += chunk
        return out

    def _handle(self, conn: socket.socket) -> None:
        while True:
            head = self._recv(conn, 4)
            if head is None:
                return
            op, addr, reg, n = head
            data = self._recv(conn, n) if op == ord("W") else b""
            if data is None:
                return
            with self.lock:
                self.requests += 1
                try:
                    if op == ord("W"):
                        self.model.writeto_mem(addr, reg, data)
                        ans = b"\x00"
                    else:
                        buf = bytearray(n)
                        self.model.readfrom_mem_into(addr, reg, buf)
                        ans = b"\x00" + bytes(buf)
                except OSError as e:
                    ans = bytes([e.args[0] if e.args and isinstance(e.args[0], int) else EIO])
            conn.sendall(ans)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.srv.close()

    def __enter__(self) -> SocketI2CServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def monotonic() -> float:
    return time.monotonic()
