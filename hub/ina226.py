# TI INA226 driver (hub/shunt.py has the shared part and the datasheet references): no accumulator, so
# every completed averaging window is read through CVRF (poll() between cycles) and integrated on the
# hub's clock; coverage_ppm says how much of the time the windows that were read cover.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from hub.shunt import TI_ID, Scaler, Shunt, ppm

# registers (SBOS547B 7.6)
_6_CONFIG = const(0x00)
_6_SHUNT = const(0x01)
_6_CURRENT = const(0x04)
_6_CAL = const(0x05)
_6_MASK = const(0x06)
_6_MFG_ID = const(0xFE)
_6_DIE_ID = const(0xFF)
_6_DIE = const(0x2260)
_6_RST = const(0x8000)
# Configuration: AVG 101 (256 averages, bits 11-9), VBUSCT 111, VSHCT 111 (8.244 ms, bits 5-3),
# MODE 101 (shunt voltage, continuous): one averaged reading every 256 x 8.244 ms = 2.110 s, a window
# longer than one hub cycle's busy time, so polling between cycles reads every one of them.
_6_CONFIG_VALUE = const((5 << 9) | (7 << 6) | (7 << 3) | 5)
_6_WINDOW_US = const(2110464)  # 256 x 8244 us
_6_CVRF = const(1 << 3)
_6_OVF = const(1 << 2)


class Ina226(Shunt):
    NAME = "ina226"
    NAME_B = b"ina226"

    def __init__(self, i2c, addr, shunt_ohms, max_current_a, invert, clock, where=""):
        Shunt.__init__(self, i2c, addr, shunt_ohms, max_current_a, invert, clock, where)
        lsb = max_current_a / 32768.0  # 7.5.1 eq. 2: max expected current / 2^15
        if 0.00512 / (lsb * shunt_ohms) > 0x7FFF:  # CAL has 15 bits: a coarser LSB for a tiny shunt
            lsb = 0.00512 / (0x7FFF * shunt_ohms)
        self.current_lsb = lsb
        cal = int(0.00512 / (lsb * shunt_ohms))  # 7.5.1 eq. 1
        if cal < 1:
            raise ValueError("CAL %d out of range: check shunt_ohms and max_current_a" % cal)
        self.cal = cal
        self.lsb_a = 0.00512 / (cal * shunt_ohms)  # the LSB the chip applies with the integer CAL
        self.to_ma = Scaler(self.lsb_a * 1000)  # CURRENT counts -> mA
        self.to_mas = Scaler(self.lsb_a)  # CURRENT counts x ms -> mA*s
        # CURRENT when the shunt voltage sits at full scale (a CAL below 2048 reaches it before OVF)
        self.sat = (32767 * cal) // 2048 - 1 if cal < 2048 else 32767
        self.window_ms = _6_WINDOW_US // 1000
        self.raw = 0  # the latest window's CURRENT
        self.have = False  # a window was read since set-up
        self.last_oor = False  # the latest window was out of range
        self.t_ready = 0  # ticks_ms when the previous window was read
        self.acc = 0  # mA*s integrated since the previous good read
        self.covered = 0  # ms of that covered by windows that were read
        self.windows = 0  # windows read since start
        self.missed = 0  # windows that completed unread (estimated from the hub's clock)

    def _setup(self, now):
        mfg, die = self._ids(_6_MFG_ID, _6_DIE_ID)
        if mfg != TI_ID or die != _6_DIE:
            self._wrong(die if mfg < 0 else self._identify())
            return
        self._w16(_6_CONFIG, _6_RST)
        self._w16(_6_CAL, self.cal)
        self._w16(_6_MASK, 0)
        self._w16(_6_CONFIG, _6_CONFIG_VALUE)  # conversions start now
        if self._r16(_6_CAL) != self.cal:
            self._fail("shunt: the INA226 at 0x%02x did not keep its calibration (write failed)" % self.addr)
            return
        self.t_ready = now
        self.t_good = now
        self.acc = 0
        self.covered = 0
        self.have = False
        self.last_oor = False
        self.to_mas.rem = 0
        self.configured = True

    def poll(self, now):
        if not self.configured:
            return
        try:
            self._poll(now)
        except OSError:
            self.io_errors += 1  # a lost window shows in coverage_ppm; the cycle's read says the rest

    def _poll(self, now):
        m = self._r16(_6_MASK)  # reading Mask/Enable clears CVRF
        if not m & _6_CVRF:
            return
        raw = self._r16(_6_CURRENT)
        if raw & 0x8000:
            raw -= 0x10000
        dt = self.td(now, self.t_ready)
        self.t_ready = now
        w = self.window_ms
        lost = 0
        if dt > w + (w >> 1):
            lost = (dt - (w >> 1)) // w  # windows that completed while nobody looked
            self.missed += lost
        if m & _6_OVF or raw >= self.sat or raw <= -self.sat:
            self.last_oor = True
            self.out_of_range += 1
            return  # not integrated: this stretch is not covered
        self.last_oor = False
        self.raw = raw
        self.have = True
        self.windows += 1
        # the window's average held over the hub-clock time since the previous window was read: the
        # sum of those times is exactly the hub's elapsed time; the windows that were lost (their
        # results overwritten before a poll) are the part not covered
        self.covered += dt - lost * w
        v = self.sign * raw
        while dt > 16000:  # keeps raw x ms below 2**29
            self.acc += self.to_mas.add(v * 16000)
            dt -= 16000
        self.acc += self.to_mas.add(v * dt)

    def _read(self, now):
        if self._r16(_6_CAL) != self.cal:
            self._chip_reset(now)
            return
        self._poll(now)
        if not self.have:
            self._fail("shunt: INA226 has no completed reading yet", False)
            return
        if self.last_oor:
            self._fail("shunt: reading out of range (INA226 overflow): the current is beyond the %d A that "
                       "shunt.max_current_a and the shunt allow; current is unknown" % self.max_a)
            return
        # dq covers the windows integrated since the previous good read: from the moment the window
        # before them was read (t_good) to the moment the latest one was (t_ready); the window now in
        # progress goes to the next read
        dt = self.td(self.t_ready, self.t_good)
        self.dq_mas = self.acc
        self.dt_ms = dt
        # no window completed since the previous read (a scan interval shorter than the 2.1 s window):
        # dq 0 over dt 0, nothing of it uncovered
        self.coverage_ppm = ppm(self.covered, dt) if dt > 0 else 1000000
        self.current_ma = self.to_ma.conv(self.sign * self.raw)
        self.acc = 0
        self.covered = 0
        self.t_good = self.t_ready
        self._good()
