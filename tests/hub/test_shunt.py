"""hub/shunt.py against the register-level device models in tools/packmon/sim/ina.py: calibration,
sign, quantisation, charge counting, out of range, NACK, a wrong chip, a chip reset, the INA228
accumulator's deltas and clearing, and the INA226's coverage of a fast switching load."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from packmon.sim import ina
from packmon.sim.clock import SimClock

from hub import shunt


def rig(chip: str, current, ohms: float = 0.0005, max_a: float = 0, invert: bool = False, model=None, **kw):
    max_a = max_a or (200 if chip == "ina228" else 150)  # 150 A x 0.5 mOhm = 75 mV < 81.92 mV
    clock = SimClock(1000)
    m = model or ina.make_model(chip, ohms, current, lambda: clock.t / 1000, **kw)
    s = shunt.make({"chip": chip, "address": 0x40, "shunt_ohms": ohms, "max_current_a": max_a, "invert": invert},
                   m, clock)
    return clock, m, s


def run(clock, s, seconds: float, step_ms: int = 250, poll: bool = True) -> None:
    end = clock.t + int(seconds * 1000)
    while clock.t < end:
        clock.t += step_ms
        if poll:
            s.poll(clock.t)


def start(clock, s) -> None:
    s.read(clock.t)  # set-up cycle
    assert s.configured and not s.ok
    run(clock, s, 5)
    s.read(clock.t)
    assert s.ok, s.problem


# -- the fixed-point scaler ------------------------------------------------------------------------------
def test_scaler_matches_exact_arithmetic_and_keeps_the_remainder() -> None:
    rng = random.Random(3)
    for factor in (0.0003814697, 0.38147, 6.1035, 1.0, 0.006103, 123.4, 2.5e-5):
        sc = shunt.Scaler(factor)
        exact_factor = Fraction(sc.mul, 1 << sc.shift)
        assert abs(float(exact_factor) / factor - 1) < 1.0 / 16384  # mul has 15 significant bits
        total = 0
        xs = [rng.randint(-(2**28), 2**28) for _ in range(200)]
        for x in xs:
            total += sc.add(x)
        # the sum of floors with the carried remainder equals the floor of the exact sum
        assert total == (sum(xs) * exact_factor).__floor__()
        for x in xs[:20]:
            assert sc.conv(x) == round(x * exact_factor) or abs(sc.conv(x) - x * exact_factor) <= Fraction(1, 2)


def test_ppm() -> None:
    assert shunt.ppm(500, 1000) == 500000
    assert shunt.ppm(2, 3) == 666666
    assert shunt.ppm(5, 0) == 0 and shunt.ppm(7, 5) == 1000000


# -- calibration --------------------------------------------------------------------------------------------
def test_ina228_calibration_registers() -> None:
    clock, m, s = rig("ina228", lambda t: 0.0)
    s.read(clock.t)
    # SBOSA20 8.1.2: CURRENT_LSB = 200 A / 2^19; SHUNT_CAL = 13107.2e6 x LSB x 0.0005 = 2500
    assert s.shunt_cal == 2500 and m.shunt_cal == 2500
    assert m.adcrange == 0 and m.adc_config == 0xAB6C
    # 100 A on 0.3 mOhm = 30 mV fits the +-40.96 mV range: ADCRANGE=1 and SHUNT_CAL x 4
    clock, m, s = rig("ina228", lambda t: 0.0, ohms=0.0003, max_a=100)
    s.read(clock.t)
    assert m.adcrange == 1 and s.shunt_cal == 3000 and m.shunt_cal == 3000


def test_ina226_calibration_registers() -> None:
    clock, m, s = rig("ina226", lambda t: 0.0, max_a=200)
    s.read(clock.t)
    # SBOS547B 7.5.1: CURRENT_LSB = 200 / 2^15; CAL = trunc(0.00512 / (LSB x 0.0005)) = 1677
    assert s.cal == 1677 and m.cal == 1677
    assert m.config & 7 == 5 and (m.config >> 3) & 7 == 7 and (m.config >> 9) & 7 == 5


# -- readings -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["ina228", "ina226"])
@pytest.mark.parametrize("amps", [50.0, -73.25, 0.5])
def test_current_sign_and_charge(chip: str, amps: float) -> None:
    clock, m, s = rig(chip, lambda t: amps)
    start(clock, s)
    lsb_ma = 5.0 if chip == "ina226" else 0.625  # the shunt ADC's resolution at 0.5 mOhm
    assert abs(s.current_ma - amps * 1000) <= lsb_ma
    q0 = m.true_charge_as
    run(clock, s, 10)
    s.read(clock.t)
    assert s.ok
    if chip == "ina228":  # the accumulator: exactly the charge since the previous read
        assert s.dt_ms == 10000 and abs(s.dq_mas - (m.true_charge_as - q0) * 1000) <= 2
    else:  # the windows read since then, held over the hub-clock time they span
        assert 7000 < s.dt_ms <= 12000 and s.coverage_ppm > 990_000
        assert abs(s.dq_mas - amps * s.dt_ms) <= lsb_ma * s.dt_ms / 1000 + 1
    assert (s.dq_mas > 0) == (amps > 0)


@pytest.mark.parametrize("chip", ["ina228", "ina226"])
def test_invert_flips_current_and_charge(chip: str) -> None:
    clock, m, s = rig(chip, lambda t: 40.0, invert=True)
    start(clock, s)
    run(clock, s, 5)
    s.read(clock.t)
    assert s.current_ma < -39000 and s.dq_mas < -150000


def test_quantisation_below_one_lsb_reads_zero() -> None:
    # INA226 at 0.5 mOhm: 2.5 uV/LSB = 5 mA; 2 mA is below half an LSB
    clock, m, s = rig("ina226", lambda t: 0.002)
    start(clock, s)
    assert s.current_ma == 0
    # 13.7 mA: 2.74 LSB of shunt voltage -> 3 counts; CURRENT = 3 x CAL / 2048 -> 3 counts of 4.58 mA
    clock, m, s = rig("ina226", lambda t: 0.0137)
    start(clock, s)
    counts = round(round(0.0137 * 0.0005 / 2.5e-6) * s.cal / 2048)
    assert counts == 3 and s.current_ma == round(counts * 0.00512 / (s.cal * 0.0005) * 1000)


def test_ina228_over_thirty_days_of_charge_and_accumulator_clearing() -> None:
    clock, m, s = rig("ina228", lambda t: 0.0)
    start(clock, s)
    # the accumulator near 2^37 counts (as after weeks of one-way current): the driver clears it
    m.charge = float(2**37 + 12345)
    s.hi = (2**37 + 12345) >> 20
    s.lo = (2**37 + 12345) & 0xFFFFF
    m.current = lambda t: 120.0
    q0 = m.true_charge_as
    run(clock, s, 5)
    s.read(clock.t)
    assert s.ok and s.acc_resets == 1 and m.charge < 2**20
    assert abs(s.dq_mas - (m.true_charge_as - q0) * 1000) < 5
    q0 = m.true_charge_as
    run(clock, s, 5)
    s.read(clock.t)
    assert s.ok and abs(s.dq_mas - (m.true_charge_as - q0) * 1000) < 5


def test_ina228_delta_across_the_20_bit_halves_and_zero() -> None:
    # discharge then charge: CHARGE crosses zero and many 2^20 boundaries between reads
    clock, m, s = rig("ina228", lambda t: -180.0 if t < 6 else 190.0)
    s.read(clock.t)
    total = 0
    q0 = m.true_charge_as
    for _ in range(6):
        run(clock, s, 2)
        s.read(clock.t)
        assert s.ok
        total += s.dq_mas
    assert abs(total - (m.true_charge_as - q0) * 1000) < 5


def test_ina228_long_stall_is_counted_in_pieces() -> None:
    clock, m, s = rig("ina228", lambda t: 150.0)
    start(clock, s)
    q0 = m.true_charge_as
    clock.t += 600_000  # ten minutes without a read at 150 A: 2^31 counts
    s.read(clock.t)
    assert s.ok and abs(s.dq_mas - (m.true_charge_as - q0) * 1000) < 5
    assert s.dq_mas > 2**26


# -- a load switching faster than the scan -------------------------------------------------------------------
def test_switching_load_ina228_misses_nothing() -> None:
    clock, m, s = rig("ina228", ina.switching(80.0, 2.0, 0.6))
    start(clock, s)
    q0 = m.true_charge_as
    got = 0
    for _ in range(12):
        run(clock, s, 5, poll=False)
        s.read(clock.t)
        got += s.dq_mas
        assert s.coverage_ppm == 1_000_000
    true = (m.true_charge_as - q0) * 1000
    assert abs(got / true - 1) < 0.001


def test_switching_load_ina226_coverage_with_and_without_polling() -> None:
    clock, m, s = rig("ina226", ina.switching(80.0, 2.0, 0.6))
    start(clock, s)
    q0 = m.true_charge_as
    got = 0
    cov = []
    for _ in range(24):
        run(clock, s, 5, step_ms=250)
        s.read(clock.t)
        got += s.dq_mas
        cov.append(s.coverage_ppm)
    true = (m.true_charge_as - q0) * 1000
    assert min(cov[1:]) > 950_000
    assert abs(got / true - 1) < 0.02  # the last window in progress is the only part not yet counted
    # read only once per 5 s cycle: most windows are lost, and coverage says so
    clock, m, s = rig("ina226", ina.switching(80.0, 2.0, 0.6))
    start(clock, s)
    run(clock, s, 5, poll=False)
    s.read(clock.t)
    assert s.ok and s.coverage_ppm < 500_000 and s.missed >= 1


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["ina228", "ina226"])
def test_out_of_range_then_back(chip: str) -> None:
    amps = [50.0]
    clock, m, s = rig(chip, lambda t: amps[0])
    start(clock, s)
    amps[0] = 400.0  # beyond max_current_a and the chip's range
    run(clock, s, 5)
    s.read(clock.t)
    assert not s.ok and s.problem_new and "out of range" in s.problem and s.out_of_range >= 1
    run(clock, s, 5)
    s.read(clock.t)
    assert not s.ok and not s.problem_new  # said once
    amps[0] = 20.0
    run(clock, s, 5)
    s.read(clock.t)
    assert s.ok and s.recovered and abs(s.current_ma - 20000) < 10


@pytest.mark.parametrize("chip", ["ina228", "ina226"])
def test_absent_and_nack_then_recovery(chip: str) -> None:
    clock, m, s = rig(chip, lambda t: 30.0)
    start(clock, s)
    m.absent = True
    run(clock, s, 5)
    s.read(clock.t)
    assert not s.ok and s.problem_new and "no answer" in s.problem and "0x40" in s.problem
    run(clock, s, 5)
    s.read(clock.t)
    assert not s.ok and not s.problem_new and s.io_errors >= 2
    m.absent = False
    q0 = m.true_charge_as
    run(clock, s, 5)
    s.read(clock.t)
    assert s.ok and s.recovered
    if chip == "ina228":  # the chip kept counting while the bus was down: the charge spans the gap
        assert s.dt_ms == 15000 and abs(s.dq_mas - 450000) < 20
    run(clock, s, 5)
    m.nack(1)
    errors = s.io_errors
    s.read(clock.t)
    assert not s.ok and "NACK" in s.problem and s.io_errors == errors + 1
    del q0


def test_absent_at_start_then_plugged_in() -> None:
    clock, m, s = rig("ina228", lambda t: 10.0)
    m.absent = True
    s.read(clock.t)
    assert not s.ok and not s.configured and "ENODEV" in s.problem
    m.absent = False
    s.read(clock.t)
    assert s.configured
    run(clock, s, 5)
    s.read(clock.t)
    assert s.ok and abs(s.current_ma - 10000) < 2


@pytest.mark.parametrize("configured, actual, named", [("ina228", "ina226", "an INA226"),
                                                       ("ina226", "ina228", "an INA228")])
def test_wrong_chip_is_named(configured: str, actual: str, named: str) -> None:
    clock = SimClock(0)
    m = ina.make_model(actual, 0.0005, lambda t: 0.0, lambda: clock.t / 1000)
    s = shunt.make({"chip": configured, "address": 0x40, "shunt_ohms": 0.0005, "max_current_a": 100,
                    "invert": False}, m, clock)
    s.read(0)
    assert not s.ok and not s.configured and named in s.problem and s.wrong_chip == 1
    assert f"not an {configured.upper()}" in s.problem


@pytest.mark.parametrize("chip", ["ina228", "ina226"])
def test_chip_reset_is_detected_and_set_up_again(chip: str) -> None:
    clock, m, s = rig(chip, lambda t: 25.0)
    start(clock, s)
    m.brownout()
    run(clock, s, 5)
    s.read(clock.t)
    assert not s.ok and "lost its configuration" in s.problem and s.chip_resets == 1
    s.read(clock.t)  # set up again
    run(clock, s, 5)
    s.read(clock.t)
    assert s.ok and abs(s.current_ma - 25000) < 10


def test_gain_offset_and_noise_of_the_model() -> None:
    clock, m, s = rig("ina228", lambda t: 100.0, gain_error=0.005, offset_ma=20, noise_ma=50, seed=1)
    start(clock, s)
    assert abs(s.current_ma - 100520) < 40
