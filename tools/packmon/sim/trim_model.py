"""The node's clock trim (node_fw/src/trim.c), line for line, for the Python model ring.

A node measures the bit period of each SOF (0xA5) that wakes it: the span from the first to the last
rising edge (bits 1..8, 7 bit times) plus the span between the falling edges at bits 2 and 7 (5 bit
times), 12 bit times in all, in Timer0 counts (8 CPU cycles). Same-type edges only, so a coupler's
rise/fall skew cancels. NOMINAL_SPAN counts mean the upstream clock and the node's agree.

* Acquisition (after a reset, or when the lock is lost): every clean measurement moves OSCCAL at once
  by the whole error, before the node forwards the SOF, one LSB a write (at most ~1.5 %, under the
  datasheet's 2 % per change). How many LSBs: the typical curve is close to a straight line in each
  range, f = a (1 + c / K) with K = 69 (low range) or 106 (upper range), so one LSB at c changes the
  frequency by 1 / (c + K) of itself whatever the chip's own scale a; the clock must change by
  -err / (nominal + err), so steps = err (c + K) / (nominal + err).
* Lock: LOCK_AFTER frames in a row whose CRC the node found good, each measured within 1.5 LSB of its
  clock (so the correction was at most one LSB). Two, not one: after power-on the nodes upstream may
  still be settling (each follows its own upstream neighbour), and a node locked too early would then
  see its upstream move by more than tracking follows.
* Tracking (locked), only at the end of a frame with a good CRC (a frame with a bad CRC never moves the
  trim): below one OSCCAL step, by the tick's dither. The SOF's error e (counts over its 48 ticks) wants
  each tick e / 48 counts longer: 2e in the dither's units of 1/96 count a tick. At each SOF (before the
  node forwards it, so that the nodes downstream measure the new rate within the same frame) the dither
  goes half way from the last good frame's value to 2e (the filter: the measurement's +-1 count of noise
  moves the tick by ~0.05 %); a frame that fails its CRC puts it back at its end. Timer0's compare value
  is one count longer (shorter) on the ticks where a Bresenham accumulator of the dither overflows
  (underflows), so the node's RX sampling and TX bits run at its upstream neighbour's rate to ~0.05 %,
  whatever its OSCCAL step. OSCCAL moves one LSB only when the dither would need more than one LSB's
  worth, and the dither gives that much back (hysteresis: the next move is a whole LSB of drift away).
* Lock loss: LOSE_AFTER consecutive bad frames whose SOFs all measured more than 2 LSB off in the same
  direction (a clock that really moved); noise does not agree with itself that way.
"""

from __future__ import annotations

from dataclasses import dataclass

TICK_COUNTS_8MHZ = 26
SPAN_BITS = 12
LSB_PPM = 7100  # the typical slope near 8 MHz (low range); a chip's own may differ by +-30 %
K_LOW, K_HIGH = 69, 106  # the curve's 1/slope in LSBs: a relative step is 1 / (c + K)
LOSE_AFTER = 8
LOCK_AFTER = 2
PLAUSIBLE = 4  # a measurement more than 1/4 off is not a SOF from a node of this ring
DITHER_ONE = 96  # dither units per Timer0 count: an error of e counts over the SOF's 48 ticks is 2e units
DITHER_MAX = 95  # |dither| < one count a tick

STATE_LOCKED = 0x01
STATE_LIMIT = 0x02  # OSCCAL is at the end of its range and the clock is still off: out of trim range
STATE_EEPROM = 0x04  # started from the value stored in EEPROM
STATE_MEASURED = 0x08  # a clean measurement has been made since the start


def nominal_span(tick_counts: int = TICK_COUNTS_8MHZ) -> int:
    return SPAN_BITS * 4 * tick_counts


@dataclass
class Trim:
    osccal: int
    osccal0: int
    tick_counts: int = TICK_COUNTS_8MHZ
    locked: bool = False
    limit: bool = False
    from_eeprom: bool = False
    measured: bool = False
    pending: int | None = None  # error (counts) of this frame's SOF, if it was clean
    last_err: int = 0
    clean: int = 0  # clean measurements, mod 256
    steps: int = 0  # OSCCAL LSBs moved, mod 256
    err01: int = 0  # the last clean measurement in 0.1 %
    off_run: int = 0
    off_sign: int = 0
    near_run: int = 0
    dither: int = 0  # the tick's extra length now, 1/DITHER_ONE Timer0 count per tick (locked; else 0)
    filt: int = 0  # the dither as of the last good frame: the measured error, filtered
    half: int = 0  # the filter's odd unit, carried into the next SOF (no rounding bias)
    half_next: int = 0  # this frame's, taken over when its CRC checks out

    @property
    def nominal(self) -> int:
        return nominal_span(self.tick_counts)

    @property
    def lsb(self) -> int:
        return max(1, (self.nominal * LSB_PPM + 500000) // 1000000)

    @property
    def band(self) -> int:
        return (self.lsb * 2 + 2) // 3  # tracking dead band: 2/3 LSB

    def _move(self, lsbs: int) -> None:
        """OSCCAL target down by lsbs (negative: up) within its range (bit 7 kept); the firmware walks
        there one LSB a write (at most ~1.5 %, under the datasheet's 2 %)."""
        base = self.osccal & 0x80
        cal = self.osccal & 0x7F
        target = cal - lsbs
        self.limit = target < 0 or target > 127
        target = min(127, max(0, target))
        self.steps = (self.steps + abs(target - cal)) & 0xFF
        self.osccal = base | target

    def sof(self, span: int) -> None:
        """A SOF was measured: span counts over 12 of its bit times. Called before the node forwards."""
        err = span - self.nominal
        self.pending = None
        if abs(err) > self.nominal // PLAUSIBLE:
            return
        self.pending = err
        self.last_err = err
        m01 = min(127, (abs(err) * (256000 // self.nominal) + 128) >> 8)
        self.err01 = -m01 if err < 0 else m01
        self.measured = True
        self.clean = (self.clean + 1) & 0xFF
        if self.locked:
            # tracking: the dither moves now, before the SOF is forwarded (the nodes downstream measure
            # the new rate in this same frame); only for this frame until its CRC checks out
            # half way from the last good frame's to this SOF's error; the halving's odd unit is carried
            # to the next SOF (truncating stopped the filter short of 2 err, towards the node's own clock)
            s = self.filt + 2 * err + self.half
            self.half_next = s & 1
            self.dither = _clamp(s >> 1)
        else:
            k = K_HIGH if self.osccal & 0x80 else K_LOW
            self._move(_round_div(err * ((self.osccal & 0x7F) + k), self.nominal + err))

    def frame_end(self, good: bool) -> None:
        err = self.pending
        self.pending = None
        if good:
            self.off_run = 0
            if err is None:
                return
            if not self.locked:
                if abs(err) * 2 <= self.lsb * 3:
                    self.near_run += 1
                    if self.near_run >= LOCK_AFTER:
                        self.locked = True
                        self.filt = 2 * err  # the whole residual at once (at most 3 LSB)
                else:
                    self.near_run = 0
            else:
                # the SOF's dither stays; OSCCAL moves one LSB when the dither would need more than one
                # LSB's worth, and the dither gives that much back (hysteresis)
                d = self.dither
                dlsb = 2 * self.lsb
                if d > dlsb:
                    self._move(1)
                    d -= dlsb
                elif d < -dlsb:
                    self._move(-1)
                    d += dlsb
                else:
                    self.limit = False
                self.filt = d
                self.half = self.half_next
            self.dither = self.filt
            return
        self.near_run = 0
        self.dither = self.filt  # a bad frame's SOF never moves the trim beyond its own frame
        if err is not None and self.locked and abs(err) > 2 * self.lsb:
            sign = 1 if err > 0 else -1
            self.off_run = self.off_run + 1 if sign == self.off_sign else 1
            self.off_sign = sign
            if self.off_run >= LOSE_AFTER:
                self.locked = False
                self.off_run = 0
                self.dither = self.filt = 0
        else:
            self.off_run = 0

    def init(self, osccal: int, stored: int) -> None:
        """trim_init: start from the stored EEPROM value when it is sane (same range, within 40 LSB)."""
        self.__init__(osccal, osccal, self.tick_counts)  # type: ignore[misc]
        if stored != 0xFF and (stored & 0x80) == (osccal & 0x80) and abs(stored - osccal) <= 40:
            self.osccal = stored
            self.from_eeprom = True

    def state(self) -> int:
        return ((STATE_LOCKED if self.locked else 0) | (STATE_LIMIT if self.limit else 0)
                | (STATE_EEPROM if self.from_eeprom else 0) | (STATE_MEASURED if self.measured else 0))


def _clamp(d: int) -> int:
    return max(-DITHER_MAX, min(DITHER_MAX, d))


def _round_div(a: int, b: int) -> int:
    """a / b rounded half away from zero (as the C does)."""
    q = (abs(a) + b // 2) // b
    return q if a >= 0 else -q
