# Bank current from a TI shunt monitor on I2C: INA228 (preferred) or INA226. Pure chip logic over an
# I2C-shaped object (readfrom_mem_into(addr, reg, buf), writeto_mem(addr, reg, buf): machine.I2C on the
# board, hub.port gives it; a device model on the host). No machine import here.
#
#   s = make(cfg["shunt"], i2c, clock)   # hub/ina228.py or hub/ina226.py; nothing is sent to the chip yet
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
# the ID registers, for naming a chip that is not the configured one
_8_MFG_ID = const(0x3E)
_8_DEVICE_ID = const(0x3F)  # bits 15-4 DIEID = 0x228, bits 3-0 revision
_8_DIEID = const(0x228)
_6_MFG_ID = const(0xFE)
_6_DIE_ID = const(0xFF)
_6_DIE = const(0x2260)




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


def start(hub):
    """Sets hub.shunt (a driver, or Broken with the reason) and hub.energy (registered with hub.store)
    from the validated config."""
    from hub.energy import Energy

    cfg = hub.cfg
    sc = cfg["shunt"]
    hub.energy = Energy()
    hub.store.register("energy", hub.energy)
    if cfg["shunt_problems"]:
        hub.shunt = Broken("shunt: bad config, current is not measured: %s" % "; ".join(cfg["shunt_problems"]))
        return
    i = sc["i2c"]
    where = "I2C %s, SDA %d, SCL %d" % ("soft" if i["id"] < 0 else i["id"], i["sda"], i["scl"])
    try:
        hub.shunt = make(sc, hub.port.i2c(i), hub.port.clock, where)
    except Exception as e:  # no bus (pins in use, bad id) or a calibration that cannot be set
        hub.shunt = Broken("shunt: cannot start the %s on %s: %s; current is not measured"
                           % (sc["chip"].upper(), where, e))


def after_scan(hub, now):
    """The hub's cycle, right after the ring scan: one reading; a new problem goes to <prefix>/error
    once (its counter is in <prefix>/shunt)."""
    s = hub.shunt
    s.read(now)
    if s.problem_new and s.problem:
        hub._error(now, s.problem)
    elif s.recovered:
        hub.log("info", "shunt: %s reading again" % s.NAME.upper())


def after_compute(hub):
    """The hub's cycle, once the bank aggregates are known: the energy counters."""
    e = hub.energy
    e.update(hub.shunt, hub.bank, hub.port.wall_time())
    if e.changed:
        hub.store.changed()


def make(scfg, i2c, clock, where=""):
    """The driver for a validated `shunt` config block."""
    if scfg["chip"] == "ina228":
        from hub.ina228 import Ina228 as cls  # only the configured chip's driver is loaded
    else:
        from hub.ina226 import Ina226 as cls
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


