# Bank current from a TI shunt monitor on I2C: INA228 (preferred) or INA226. Pure chip logic over an
# I2C-shaped object (readfrom_mem_into(addr, reg, buf), writeto_mem(addr, reg, buf): machine.I2C on the
# board, hub.port gives it; a device model on the host). No machine import here.
#
#   s = make(cfg["shunt"], i2c, clock)   # Ina228 or Ina226; nothing is sent to the chip yet
#   s.read(now)      # once per cycle, right after the ring scan: fills the attributes below
#   s.poll(now)      # as often as the hub can between cycles (INA226: every completed averaging window)
#
# After read(): ok (this reading is valid), current_ma (+ = charging, the chip's latest averaged
# current), dq_mas (net charge since the previous good read, mA*s, + = charging), dt_ms (the time dq
# covers), coverage_ppm (fraction of dt covered by conversions). ok False = current unknown; then
# problem says why (one line), and problem_new is True on the cycle it first appears.
#
# Datasheets (section numbers of the current revisions):
#   INA228: TI SBOSA20 — 7.6 Register Maps (7.6.1.1 CONFIG, 7.6.1.2 ADC_CONFIG, 7.6.1.3 SHUNT_CAL,
#     7.6.1.8 CURRENT, 7.6.1.11 CHARGE, 7.6.1.12 DIAG_ALRT, 7.6.1.19/20 MANUFACTURER_ID/DEVICE_ID);
#     8.1.1 Table 8-1 (shunt full scale +-163.84 mV at 312.5 nV/LSB, ADCRANGE=1: +-40.96 mV at 78.125 nV);
#     8.1.2 Current, Power, Energy and Charge Calculations:
#       CURRENT_LSB = max expected current / 2^19;  SHUNT_CAL = 13107.2e6 x CURRENT_LSB x R_SHUNT
#       (x4 with ADCRANGE=1); CHARGE [C] = CURRENT_LSB x CHARGE (40-bit two's complement).
#   INA226: TI SBOS547B — 7.6 Table 7-1 (register map), 7.6.1.1 Configuration, 7.6.1.5 Current,
#     7.6.1.6 Calibration, 7.6.1.7 Mask/Enable (CVRF bit 3, OVF bit 2: reading the register clears
#     CVRF), 7.6.1.9/10 IDs; 7.5.1 Programming the Calibration Register:
#       CURRENT_LSB = max expected current / 2^15;  CAL = 0.00512 / (CURRENT_LSB x R_SHUNT);
#     shunt full scale +-81.92 mV at 2.5 uV/LSB.
#
# Fixed point: every value the per-cycle path computes stays below 2**30 (the ESP32's small ints are
# 31-bit; a bigger int or a float allocates). Conversions go through Scaler (x * factor as an integer
# multiply and shift, the remainder kept, so nothing is lost to rounding over time). The INA228's
# 40-bit CHARGE is read as two 20-bit halves and only its delta is used; the accumulator is cleared
# (CONFIG.RSTACC) at start, after an overflow flag and before it gets near 2^39.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


TI_ID = const(0x5449)  # "TI" in both chips' manufacturer ID registers

# -- INA228 (SBOSA20 7.6) ---------------------------------------------------------------------------
_8_CONFIG = const(0x00)
_8_ADC_CONFIG = const(0x01)
_8_SHUNT_CAL = const(0x02)
_8_VSHUNT = const(0x04)
_8_CURRENT = const(0x07)
_8_CHARGE = const(0x0A)
_8_DIAG_ALRT = const(0x0B)
_8_MFG_ID = const(0x3E)
_8_DEVICE_ID = const(0x3F)  # bits 15-4 DIEID = 0x228, bits 3-0 revision
_8_DIEID = const(0x228)
_8_RST = const(0x8000)  # CONFIG bit 15: full reset
_8_RSTACC = const(0x4000)  # CONFIG bit 14: clear ENERGY and CHARGE
_8_ADCRANGE = const(0x0010)  # CONFIG bit 4: +-40.96 mV
# ADC_CONFIG: MODE 0xA (bits 15-12: continuous shunt voltage only), VBUSCT 5, VSHCT 5 (1052 us),
# VTCT 5, AVG 4 (128): an averaged CURRENT every 135 ms; CHARGE accumulates every conversion.
_8_ADC_CONFIG_VALUE = const((0xA << 12) | (5 << 9) | (5 << 6) | (5 << 3) | 4)
# DIAG_ALRT bits: CHARGEOF 10, MATHOF 9, SHNTOL 6, SHNTUL 5 (limits at their defaults = full scale)
_8_CHARGEOF = const(1 << 10)
_8_MATHOF = const(1 << 9)
_8_SHNTOL = const(1 << 6)
_8_SHNTUL = const(1 << 5)
_8_OUT_OF_RANGE = const((1 << 10) | (1 << 9) | (1 << 6) | (1 << 5))

# -- INA226 (SBOS547B 7.6) --------------------------------------------------------------------------
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

CHIPS = ("ina228", "ina226")
# full-scale shunt voltage in microvolts: check-config refuses max_current_a x shunt_ohms beyond it
FULL_SCALE_UV = {"ina228": 163840, "ina226": 81920}

_BIG = const(1 << 37)  # CHARGE beyond this many counts: clear the accumulator (it overflows at 2^39)


class Scaler:
    """q = x * factor as integers: factor = mul / 2**shift with mul in [2**14, 2**15), every
    intermediate below 2**30 for |x| < 2**29; add() keeps the remainder (nothing is lost over time),
    conv() rounds one value. factor is a float given once, at start."""

    def __init__(self, factor):
        if not factor > 0:
            raise ValueError("scale factor must be above 0")
        shift = 0
        while factor * (1 << shift) < 16384 and shift < 28:
            shift += 1
        while factor * (1 << shift) >= 32768 and shift > 0:
            shift -= 1
        mul = int(factor * (1 << shift) + 0.5)
        if mul >= 32768 or mul < 1:
            raise ValueError("scale factor %r out of range" % factor)
        self.mul = mul
        self.shift = shift
        self.mask = (1 << shift) - 1
        self.rem = 0

    def _q(self, x, rem):
        mul = self.mul
        sh = self.shift
        hi = x >> 14  # floor: x = hi * 2**14 + lo, 0 <= lo < 2**14
        lo = x & 0x3FFF
        a = hi * mul
        b = lo * mul
        if sh >= 14:
            s2 = sh - 14
            q = a >> s2
            t = ((a & ((1 << s2) - 1)) << 14) + rem
            q += t >> sh
            t = (t & self.mask) + b
            q += t >> sh
            self.rem = t & self.mask
            return q
        t = b + rem
        self.rem = t & self.mask
        return (a << (14 - sh)) + (t >> sh)

    def add(self, x):
        """x * factor plus what earlier calls left over, floored; the new remainder is kept."""
        return self._q(x, self.rem)

    def conv(self, x):
        """x * factor rounded (the running remainder is left alone)."""
        keep = self.rem
        q = self._q(x, (1 << self.shift) >> 1)
        self.rem = keep
        return q


def ppm(part, whole):
    """part / whole in parts per million, integers only (part, whole < 10**6)."""
    if whole <= 0:
        return 0
    if part >= whole:
        return 1000000
    if part <= 0:
        return 0
    k = part * 1000
    return (k // whole) * 1000 + (k % whole) * 1000 // whole


class Shunt:
    """What both chips share: the state the hub reads, the error bookkeeping, re-initialisation."""

    NAME = "?"

    def __init__(self, i2c, addr, shunt_ohms, max_current_a, invert, clock, where=""):
        self.i2c = i2c
        self.addr = addr
        self.ohms = shunt_ohms
        self.max_a = max_current_a
        self.sign = -1 if invert else 1
        self.clock = clock
        self.td = clock.ticks_diff
        self.where = where  # "bus 0, SDA 21, SCL 22": for error texts
        self.b2 = bytearray(2)
        self.b3 = bytearray(3)
        self.b5 = bytearray(5)
        # what the hub reads after read()
        self.ok = False
        self.current_ma = 0
        self.dq_mas = 0
        self.dt_ms = 0
        self.coverage_ppm = 0
        # state and diagnostics
        self.configured = False
        self.t_good = 0  # ticks_ms of the previous good read (start of the next dq interval)
        self.problem = ""  # why ok is False ("" while ok)
        self.problem_new = False
        self.reads = 0  # good reads
        self.io_errors = 0  # reads or set-ups that the chip did not answer (absent, NACK)
        self.out_of_range = 0  # readings beyond the chip's range or max_current_a
        self.chip_resets = 0  # times the chip lost its configuration (brown-out) and was set up again
        self.wrong_chip = 0  # set-ups that found another chip than configured
        self.acc_resets = 0
        self.recovered = False  # True on the cycle the chip answers again after a problem
        self.bad = False  # a problem was reported and has not cleared yet

    # -- register access (no allocation: preallocated buffers) ---------------------------------------
    def _r16(self, reg):
        b = self.b2
        self.i2c.readfrom_mem_into(self.addr, reg, b)
        return (b[0] << 8) | b[1]

    def _w16(self, reg, v):
        b = self.b2
        b[0] = (v >> 8) & 0xFF
        b[1] = v & 0xFF
        self.i2c.writeto_mem(self.addr, reg, b)

    # -- outcome of one cycle ------------------------------------------------------------------------
    def _fail(self, text, real=True):
        """This cycle's reading is not valid. real=False: not a fault (starting up), nothing to tell."""
        self.ok = False
        self.recovered = False
        self.problem_new = real and text != self.problem
        self.problem = text
        self.bad = self.bad or real
        self.dq_mas = 0
        self.dt_ms = 0
        self.coverage_ppm = 0

    def _good(self):
        self.recovered = self.bad
        self.bad = False
        self.ok = True
        self.problem = ""
        self.problem_new = False
        self.reads += 1

    def _io_failed(self, e):
        self.io_errors += 1
        self._fail("shunt: no answer from the %s at I2C address 0x%02x (%s): %s; check wiring, address and "
                   "power; current is unknown" % (self.NAME.upper(), self.addr, self.where, _errname(e)))

    def read(self, now):
        """Once per cycle: one reading into ok/current_ma/dq_mas/dt_ms/coverage_ppm. Never raises."""
        if not self.configured:
            try:
                self._setup(now)
            except OSError as e:
                self._io_failed(e)
                return
            if not self.configured:
                return  # _setup explained why (wrong chip)
            # set up just now: the first averaged reading is not there yet
            self._fail("shunt: %s set up; first reading next cycle" % self.NAME.upper(), False)
            return
        try:
            self._read(now)
        except OSError as e:
            self._io_failed(e)

    def poll(self, now):
        """Between cycles (INA226: reads each completed averaging window). Never raises."""
        return

    def _identify(self):
        """Names what answers at addr when it is not the configured chip."""
        try:
            mfg = self._r16(_6_MFG_ID)
            die = self._r16(_6_DIE_ID)
            if mfg == TI_ID and die == _6_DIE:
                return "an INA226"
        except OSError:
            pass
        try:
            mfg = self._r16(_8_MFG_ID)
            dev = self._r16(_8_DEVICE_ID)
            if mfg == TI_ID and dev >> 4 == _8_DIEID:
                return "an INA228"
            if mfg == TI_ID:
                return "a TI device with device ID 0x%04x" % dev
            return "a device with manufacturer ID 0x%04x" % mfg
        except OSError:
            return "an unknown device"

    def _ids(self, mfg_reg, id_reg):
        """(manufacturer ID, device ID); a device that answers but refuses these registers is named by
        _identify(), one that does not answer at all raises OSError."""
        try:
            return self._r16(mfg_reg), self._r16(id_reg)
        except OSError:
            what = self._identify()
            if what == "an unknown device":
                raise
            return -1, what

    def _wrong(self, what):
        self.wrong_chip += 1
        self._fail("shunt: the device at I2C address 0x%02x is %s, not an %s: set shunt.chip (or shunt.address) "
                   "to match; current is unknown" % (self.addr, what, self.NAME.upper()))

    def _chip_reset(self, now):
        self.chip_resets += 1
        self.configured = False
        self._fail("shunt: the %s lost its configuration (power glitch?): set up again; charge since the last "
                   "reading is unknown" % self.NAME.upper())


class Ina228(Shunt):
    NAME = "ina228"
    NAME_B = b"ina228"

    def __init__(self, i2c, addr, shunt_ohms, max_current_a, invert, clock, where=""):
        Shunt.__init__(self, i2c, addr, shunt_ohms, max_current_a, invert, clock, where)
        # the narrow range (4x the resolution) when the largest current fits in it
        self.adcrange = 1 if max_current_a * shunt_ohms <= 0.04096 else 0
        k = 4 if self.adcrange else 1
        self.current_lsb = max_current_a / 524288.0  # 8.1.2: max expected current / 2^19
        cal = int(13107.2e6 * self.current_lsb * shunt_ohms * k + 0.5)
        if cal < 1 or cal > 0x7FFF:
            raise ValueError("SHUNT_CAL %d out of range: check shunt_ohms and max_current_a" % cal)
        self.shunt_cal = cal
        # the LSB the chip applies with the integer SHUNT_CAL (rounding it is then not a gain error)
        self.lsb_a = cal / (13107.2e6 * shunt_ohms * k)
        self.to_ma = Scaler(self.lsb_a * 1000)  # CURRENT counts -> mA
        self.to_mas = Scaler(self.lsb_a * 1000)  # CHARGE counts (CURRENT_LSB coulombs) -> mA*s
        self.hi = 0  # CHARGE at the previous read, upper and lower 20 bits
        self.lo = 0

    def _setup(self, now):
        mfg, dev = self._ids(_8_MFG_ID, _8_DEVICE_ID)
        if mfg != TI_ID or dev >> 4 != _8_DIEID:
            self._wrong(dev if mfg < 0 else self._identify())
            return
        self._w16(_8_CONFIG, _8_RST)
        self._w16(_8_ADC_CONFIG, _8_ADC_CONFIG_VALUE)
        self._w16(_8_SHUNT_CAL, self.shunt_cal)
        self._w16(_8_CONFIG, _8_RSTACC | (_8_ADCRANGE if self.adcrange else 0))
        if self._r16(_8_SHUNT_CAL) != self.shunt_cal:
            self._fail("shunt: the INA228 at 0x%02x did not keep its calibration (write failed)" % self.addr)
            return
        self.hi = 0
        self.lo = 0
        self.t_good = now
        self.to_mas.rem = 0
        self.configured = True

    def _clear_acc(self, now):
        self._w16(_8_CONFIG, _8_RSTACC | (_8_ADCRANGE if self.adcrange else 0))
        self.hi = 0
        self.lo = 0
        self.acc_resets += 1

    def _read(self, now):
        if self._r16(_8_SHUNT_CAL) != self.shunt_cal:
            self._chip_reset(now)  # a brown-out restored the defaults (SHUNT_CAL 0x1000): the count is lost
            return
        diag = self._r16(_8_DIAG_ALRT)  # reading it also clears the latched overflow flags
        b = self.b3
        self.i2c.readfrom_mem_into(self.addr, _8_CURRENT, b)
        cur = (b[0] << 12) | (b[1] << 4) | (b[2] >> 4)
        if cur & 0x80000:
            cur -= 0x100000
        c = self.b5
        self.i2c.readfrom_mem_into(self.addr, _8_CHARGE, c)
        hi = (c[0] << 12) | (c[1] << 4) | (c[2] >> 4)
        lo = ((c[2] & 0x0F) << 16) | (c[3] << 8) | c[4]
        if hi & 0x80000:
            hi -= 0x100000
        if diag & _8_OUT_OF_RANGE:
            # the current or the charge count overflowed, or the shunt voltage hit full scale: this
            # reading and the charge since the last one are not trustworthy
            self.out_of_range += 1
            self._clear_acc(now)
            self.t_good = now
            self._fail("shunt: reading out of range (%s): the current is beyond the %d A that shunt.max_current_a "
                       "and the shunt allow; current is unknown" % (_diag_names(diag), self.max_a))
            return
        # the charge since the previous read, in CHARGE counts: the 40-bit difference as two halves
        dh = hi - self.hi
        dl = lo - self.lo
        self.hi = hi
        self.lo = lo
        sign = self.sign
        q = self.to_mas.add(sign * dl)
        while dh > 255:  # more than 2^28 counts since the last read (a long stall): in pieces
            q += self.to_mas.add(sign * (255 << 20))
            dh -= 255
        while dh < -255:
            q += self.to_mas.add(-sign * (255 << 20))
            dh += 255
        q += self.to_mas.add(sign * (dh << 20))
        dt = self.td(now, self.t_good)
        self.dq_mas = q
        self.dt_ms = dt
        self.coverage_ppm = 1000000  # the chip accumulated every conversion since t_good
        self.current_ma = self.to_ma.conv(sign * cur)
        self.t_good = now
        if hi >= (_BIG >> 20) or hi < -(_BIG >> 20):
            self._clear_acc(now)  # right after this read: at most a conversion goes uncounted
        self._good()


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
        self.coverage_ppm = ppm(self.covered, dt)
        self.current_ma = self.to_ma.conv(self.sign * self.raw)
        self.acc = 0
        self.covered = 0
        self.t_good = self.t_ready
        self._good()


class Broken:
    """A shunt that cannot run (a bad shunt block in the config): ok is always False, with the reason."""

    NAME = "none"
    NAME_B = b"none"

    def __init__(self, why):
        self.ok = False
        self.current_ma = 0
        self.dq_mas = 0
        self.dt_ms = 0
        self.coverage_ppm = 0
        self.problem = why
        self.problem_new = True
        self.recovered = False
        self.reads = 0
        self.io_errors = 0
        self.out_of_range = 0
        self.chip_resets = 0
        self.wrong_chip = 0
        self.configured = False
        self._first = True

    def read(self, now):
        self.problem_new = self._first  # said once; the counters stay at 0
        self._first = False

    def poll(self, now):
        return


def make(scfg, i2c, clock, where=""):
    """The driver for a validated `shunt` config block."""
    cls = Ina228 if scfg["chip"] == "ina228" else Ina226
    return cls(i2c, scfg["address"], scfg["shunt_ohms"], scfg["max_current_a"], scfg["invert"], clock, where)


def _errname(e):
    code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
    if code == 19:
        return "no acknowledge (ENODEV)"
    if code == 116 or code == 110:
        return "timed out"
    if code == 5:
        return "I/O error (NACK)"
    return "OSError %s" % (code or e)


def _diag_names(diag):
    out = []
    if diag & _8_MATHOF:
        out.append("MATHOF")
    if diag & _8_CHARGEOF:
        out.append("CHARGEOF")
    if diag & _8_SHNTOL:
        out.append("SHNTOL")
    if diag & _8_SHNTUL:
        out.append("SHNTUL")
    return ",".join(out)
