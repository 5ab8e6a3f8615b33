"""Per-node clocks for the simulated rings: each ATtiny85 runs its own RC oscillator.

A node's frequency is the nominal clock times
  (1 + its factory error)                           at its reset OSCCAL, 3 V, 25 degC
  x osc_curve(OSCCAL) / osc_curve(OSCCAL at reset)  what the firmware's trim has done
  x (1 + kv (Vcc - 3 V) + kt (T - 25 degC))         drift with its pack's voltage and temperature
The hub's UART is crystal-accurate. Each hop (hop 0: the hub's TX into node 1; hop k: node k's TX into
node k+1, or into the hub) may delay rising and falling edges differently, as an opto-coupler does.

The same curve and drift are in tools/simavr/ring_harness.c (osc_curve, kv, kt); keep them equal.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Typical drift, approximated from the ATtiny25/45/85 datasheet's typical-characteristics curves of the
# calibrated 8 MHz RC oscillator against VCC and temperature; check against real chips.
KV_PPM_PER_V = -5000.0  # -0.5 % per volt above 3 V
KT_PPM_PER_K = 600.0  # +0.06 % per degC above 25 degC

OSCCAL_8MHZ = 0x48  # where the typical curve gives 8.0 MHz (low range)
OSCCAL_DIGISPARK = 0x8C  # 8.25 MHz for the Digispark's 16.5 MHz PLL, upper range


def osc_curve(v: int, slope: float = 1.0) -> float:
    """MHz of a typical ATtiny85 at 3 V, 25 degC for OSCCAL v: two overlapping ranges (bit 7), each
    about 2:1 (datasheet table "Internal RC Oscillator Frequency Range"), 0x7F faster than 0x80."""
    c = (v & 0x7F) / 127.0
    return 7.4 * (1.0 + 1.2 * slope * c) if v & 0x80 else 3.9 * (1.0 + 1.85 * slope * c)


@dataclass
class ClockSpread:
    """Factory errors (ppm) and OSCCAL slopes per node, coupler delays (us) per hop (n + 1 hops)."""

    err_ppm: list[float]
    slope: list[float] = field(default_factory=list)
    rise_us: list[float] = field(default_factory=list)
    fall_us: list[float] = field(default_factory=list)
    kv_ppm: float = KV_PPM_PER_V
    kt_ppm: float = KT_PPM_PER_K

    def __post_init__(self) -> None:
        n = len(self.err_ppm)
        if not self.slope:
            self.slope = [1.0] * n
        if not self.rise_us:
            self.rise_us = [0.0] * (n + 1)
        if not self.fall_us:
            self.fall_us = [0.0] * (n + 1)
        if len(self.slope) != n or len(self.rise_us) != n + 1 or len(self.fall_us) != n + 1:
            raise ValueError("ClockSpread: one slope per node, one rise/fall delay per hop (nodes + 1)")
        if any(d < 0 for d in self.rise_us + self.fall_us):
            raise ValueError("ClockSpread: coupler delays cannot be negative")

    @property
    def n(self) -> int:
        return len(self.err_ppm)

    def edge_us(self, hop: int) -> tuple[float, float]:
        return self.rise_us[hop], self.fall_us[hop]

    @classmethod
    def uniform(cls, n: int, err: float, skew_us: float = 0.0, fall_us: float = 2.0) -> ClockSpread:
        """Every node off by the same fraction err; every hop's rising edge skew_us later than its
        falling edge (which takes fall_us)."""
        return cls([err * 1e6] * n, rise_us=[fall_us + skew_us] * (n + 1), fall_us=[fall_us] * (n + 1))

    @classmethod
    def random(cls, n: int, spread: float, skew_us: float = 0.0, seed: int = 1, fall_us: float = 2.0,
               slope_spread: float = 0.2, alternate: bool = False) -> ClockSpread:
        """Factory errors uniform in +-spread (alternate: +spread, -spread, ... the worst case for
        neighbours), OSCCAL slopes uniform in 1 +- slope_spread, every hop skewed by skew_us."""
        rng = random.Random(seed)
        if alternate:
            err = [spread * 1e6 * (1 if i % 2 == 0 else -1) for i in range(n)]
        else:
            err = [rng.uniform(-spread, spread) * 1e6 for _ in range(n)]
        slope = [rng.uniform(1 - slope_spread, 1 + slope_spread) for _ in range(n)]
        return cls(err, slope, [fall_us + skew_us] * (n + 1), [fall_us] * (n + 1))

    def ratio(self, i: int, osccal: int, osccal0: int, vcc_mv: float, temp_dc: float) -> float:
        """Node i's frequency over the nominal clock."""
        s = self.slope[i]
        return ((1 + self.err_ppm[i] * 1e-6) * osc_curve(osccal, s) / osc_curve(osccal0, s)
                * (1 + self.kv_ppm * 1e-6 * (vcc_mv / 1000 - 3.0) + self.kt_ppm * 1e-6 * (temp_dc / 10 - 25.0)))
