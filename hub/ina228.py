# TI INA228 driver (hub/shunt.py has the shared part and the datasheet references): the hardware CHARGE
# accumulator read as deltas of its two 20-bit halves, so no current between reads is missed.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from hub.shunt import TI_ID, Scaler, Shunt

# registers (SBOSA20 7.6)
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

_BIG = const(1 << 37)  # CHARGE beyond this many counts: clear the accumulator (it overflows at 2^39)


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
        diag = self._r16(_8_DIAG_ALRT)  # before CHARGE: reading CHARGE clears CHARGEOF
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
            self._clear_acc(now)  # RSTACC also clears MATHOF
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
