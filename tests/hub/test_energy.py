"""hub/energy.py: Wh/Ah in and out, lifetime and daily, exact to the remainder; persistence through
hub/persist.py across a reset; the NTP day; the fixed-point power and date helpers of the publisher."""

from __future__ import annotations

import datetime
import random
from fractions import Fraction
from pathlib import Path

from packmon.sim.clock import SimClock

from hub import persist
from hub.energy import Energy, civil
from hub.shunt_topics import date as _date
from hub.shunt_topics import power_dw

DAY = 86400


class FakeShunt:
    def __init__(self) -> None:
        self.ok = True
        self.dq_mas = 0


class FakeBank:
    def __init__(self, mv: int = 52000) -> None:
        self.complete = True
        self.total_mv = mv


def test_a_steady_hour_in_and_out() -> None:
    e, s, b = Energy(), FakeShunt(), FakeBank(52000)
    for _ in range(720):  # 100 A for an hour in 5 s intervals
        s.dq_mas = 500_000
        e.update(s, b, None)
    assert e.in_mah == 100_000 and e.in_mwh == 5_200_000 and e.out_mah == 0
    for _ in range(360):  # -50 A for half an hour
        s.dq_mas = -250_000
        e.update(s, b, None)
    assert e.out_mah == 25_000 and e.out_mwh == 1_300_000 and e.in_mah == 100_000
    assert e.day is None and e.d_in_mwh == 0  # no time: only lifetime counters moved


def test_remainders_make_the_sums_exact() -> None:
    rng = random.Random(5)
    e, s, b = Energy(), FakeShunt(), FakeBank()
    exact_in_e = exact_out_e = Fraction(0)
    exact_in_q = exact_out_q = 0
    for _ in range(5000):
        dq = rng.randint(-300_000, 300_000)
        b.total_mv = rng.randint(40_000, 60_000) // 10 * 10
        s.dq_mas = dq
        e.update(s, b, None)
        wh = Fraction(abs(dq) * b.total_mv, 3_600_000)  # mA*s x mV = uW*s; 1 mWh = 3.6e6 uW*s
        if dq > 0:
            exact_in_e += wh
            exact_in_q += dq
        elif dq < 0:
            exact_out_e += wh
            exact_out_q -= dq
    assert e.in_mwh == int(exact_in_e) and e.out_mwh == int(exact_out_e)
    assert e.in_mah == exact_in_q // 3600 and e.out_mah == exact_out_q // 3600


def test_large_interval_is_chunked_exactly() -> None:
    e, s, b = Energy(), FakeShunt(), FakeBank(268_800)  # 64 packs at 4.2 V
    s.dq_mas = 200 * 1000 * 3600  # 200 A for an hour in one interval (a long stall)
    e.update(s, b, None)
    assert e.in_mah == 200_000 and e.in_mwh == 200 * 268_800


def test_unknown_voltage_counts_ah_not_wh() -> None:
    e, s, b = Energy(), FakeShunt(), FakeBank()
    b.complete = False
    s.dq_mas = 36_000
    e.update(s, b, None)
    assert e.in_mah == 10 and e.in_mwh == 0 and e.wh_gaps == 1
    s.ok = False
    s.dq_mas = 99_999
    e.update(s, b, None)
    assert e.in_mah == 10 and e.wh_gaps == 1  # a bad reading adds nothing


def test_daily_counters_follow_the_ntp_day() -> None:
    e, s, b = Energy(), FakeShunt(), FakeBank(50_000)
    s.dq_mas = 72_000  # 20 mAh, 1000 mWh at 50 V
    e.update(s, b, None)
    assert e.in_mah == 20 and e.d_in_mah == 0 and e.day is None
    day = 9800  # 2026-10-31
    e.update(s, b, day * DAY + 100)
    assert e.day == day and e.d_in_mah == 20 and e.d_in_mwh == 1000 and e.in_mah == 40
    e.update(s, b, day * DAY + DAY - 1)
    assert e.d_in_mah == 40
    s.dq_mas = -36_000
    e.update(s, b, (day + 1) * DAY)  # midnight UTC: the daily counters start again
    assert e.day == day + 1 and e.d_in_mah == 0 and e.d_out_mah == 10 and e.in_mah == 60 and e.out_mah == 10


def test_persistence_across_a_reset(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    clock = SimClock(0)
    st = persist.Store(path, clock)
    e, s, b = Energy(), FakeShunt(), FakeBank(51_230)
    st.register("energy", e)
    for k in range(100):
        s.dq_mas = 123_457 if k % 3 else -98_765
        e.update(s, b, 9800 * DAY + k * 5)
        st.changed()
        st.service(clock.t)
        clock.sleep_ms(5000)
    st.service(clock.t, force=True)
    before = e.snapshot()
    # the hub resets: a new store and new counters read the file back
    e2 = Energy()
    assert persist.Store(path, SimClock(0)).register("energy", e2)
    assert e2.snapshot() == before
    s.dq_mas = 3600
    e2.update(s, b, 9800 * DAY + 999)
    assert e2.in_mah == before["in_mah"] + 1 and e2.d_in_mah == before["d_in_mah"] + 1


def test_bad_saved_section_restores_nothing(tmp_path: Path) -> None:
    e = Energy()
    try:
        e.restore({"in_mwh": 5, "out_mwh": -3})
    except ValueError as err:
        assert "out_mwh" in str(err)
    else:
        raise AssertionError("a negative counter was accepted")
    assert e.in_mwh == 0  # nothing half-restored


def test_civil_date_and_buffer() -> None:
    base = datetime.date(2000, 1, 1)
    buf = bytearray(10)
    for day in (0, 59, 60, 365, 366, 9800, 10_000, 36_524, 50_000):
        d = base + datetime.timedelta(days=day)
        assert civil(day) == (d.year, d.month, d.day)
        _date(buf, day)
        assert buf.decode() == d.isoformat()


def test_power_fixed_point() -> None:
    rng = random.Random(2)
    for _ in range(2000):
        ma = rng.randint(-1_000_000, 1_000_000)
        mv = rng.randint(0, 500_000)
        exact = Fraction(ma * mv, 100_000)
        assert abs(power_dw(ma, mv) - exact) <= Fraction(1, 2)
