"""The bank model and alarms, fed from real SCAN answers of the model ring."""

from __future__ import annotations

import pytest
from packmon.sim.model_ring import Exchange, ModelRing, SimUart

from hub import codec, config
from hub.alarms import COMMS, DELTA_HIGH, PACK_HIGH, PACK_LOW, TEMP_HIGH, Alarms
from hub.bank import Bank
from hub.ring import Ring, RingError

CFG = config.validate({"mqtt": {"host": "h"}, "stale_after_s": 10, "scan_interval_s": 1,
                       "alarms": {"pack_low_v": 3.0, "pack_high_v": 4.15, "delta_high_v": 0.1,
                                  "temp_high_c": 50, "hysteresis_v": 0.02, "hysteresis_c": 2,
                                  "comms_after_s": 5}}, need_wifi=False)


def td(a: int, b: int) -> int:
    return a - b


def setup(n: int, mv: list[int], temp: list[int]):
    eng = ModelRing(n, mv=mv, temp=temp)
    ring = Ring(SimUart(eng))
    ring.enumerate()
    bank = Bank(64, 10_000)
    bank.resize(n)
    return eng, ring, bank


def scan(ring: Ring, bank: Bank, now: int) -> None:
    nodes = ring.scan(bank.n)
    bank.update(ring.rx, nodes, now, ring.sent)
    bank.compute(now, td)


def test_aggregates() -> None:
    eng, ring, bank = setup(4, [3300, 3350, 3280, 3310], [250, 300, -20, 100])
    scan(ring, bank, 1000)
    assert bank.total_mv == 13240 and bank.complete
    assert (bank.min_mv, bank.min_pack, bank.max_mv, bank.max_pack) == (3280, 3, 3350, 2)
    assert bank.avg_mv == 3310
    assert (bank.temp_max, bank.temp_max_pack, bank.temp_min, bank.temp_min_pack) == (300, 2, -20, 3)


def test_stale_packs_leave_the_aggregates_and_are_never_fresh() -> None:
    eng, ring, bank = setup(3, [3300, 3400, 3500], [250, 250, 250])
    scan(ring, bank, 1000)
    eng.remove_node(2)  # pack 3 stops answering; the scan still returns packs 1-2
    ring.enumerate()
    nodes = ring.scan(3 - 1)
    bank.update(ring.rx, nodes, 5000)
    bank.compute(5000, td)
    assert not bank.is_stale(2, 5000, td)  # 4 s old: not stale yet
    bank.compute(11_001, td)
    assert bank.is_stale(2, 11_001, td) and bank.voltage_mv(2, 11_001, td) == 0
    assert bank.temperature(2, 11_001, td) == codec.TEMP_NONE
    assert bank.stale_count == 1 and bank.first_stale == 3 and not bank.complete
    assert bank.total_mv == 3300 + 3400 and bank.fresh == 2  # the stale pack is not summed
    bank.compute(15_001, td)  # packs 1-2 were read at 5 s: by 15.001 s they are stale too
    assert bank.stale_count == 3 and bank.fresh == 0 and bank.total_mv == 0


def test_error_counters_and_reset_detection() -> None:
    eng, ring, bank = setup(2, [3300, 3300], [250, 250])
    scan(ring, bank, 0)
    scan(ring, bank, 1)
    eng.nodes[1].s.bad = 250  # the node counted bad frames
    scan(ring, bank, 2)
    eng.nodes[1].s.bad = 3  # wrapped: 250 -> 3 is 9 more
    scan(ring, bank, 3)
    assert bank.bad[1] == 250 + 9 and bank.bad[0] == 0
    eng.reset_node(0)
    scan(ring, bank, 4)
    assert bank.resets[0] == 1 and bank.resets[1] == 0
    scan(ring, bank, 5)
    assert bank.resets[0] == 1


def test_reset_is_counted_even_when_its_flagged_record_is_lost_downstream() -> None:
    eng, ring, bank = setup(4, [3300] * 4, [250] * 4)
    for t in range(3):
        scan(ring, bank, t)
    eng.nodes[1].s.bad = 7  # bad frames it counted before it restarts
    scan(ring, bank, 3)
    assert bank.bad[1] == 7
    eng.reset_node(1)
    real = eng.exchange

    def corrupt_after_the_last_node(tx: bytes) -> Exchange:
        ex = real(tx)
        return Exchange(ex.rx[:10] + bytes([ex.rx[10] ^ 0x40]) + ex.rx[11:], ex.seconds, ex.per_hop_bytes)

    eng.exchange = corrupt_after_the_last_node  # type: ignore[method-assign]
    with pytest.raises(RingError):
        ring.scan(4)  # node 2 delivered its RESET-flagged record (and cleared the flag); the hub lost it
    eng.exchange = real  # type: ignore[method-assign]
    ring.scan(4)  # a good scan the bank does not see: nodes' counters move on
    scan(ring, bank, 4)
    assert bank.flags[1] & 0x1C == 0  # no flag left to see ...
    assert bank.resets == [1 if i == 1 else 0 for i in range(64)]  # ... but its scans counter went back
    assert bank.bad[1] == 7  # restarted from 0: no 256-wrap jump
    for t in range(5, 300):  # hundreds of good scans (the counter wraps) count no false restart
        scan(ring, bank, t)
    assert sum(bank.resets) == 1


def test_alarms_have_hysteresis_and_report_changes_only() -> None:
    eng, ring, bank = setup(3, [3300, 3300, 3300], [250, 250, 250])
    a = Alarms(CFG)
    scan(ring, bank, 0)
    assert a.evaluate(bank, 0) == 6  # first evaluation publishes every alarm once
    assert not any(a.active)
    assert a.evaluate(bank, 0) == 0
    eng.set_pack(1, mv=2990)
    scan(ring, bank, 1)
    assert a.evaluate(bank, 0) >= 1 and a.active[PACK_LOW] and a.pack[PACK_LOW] == 2
    assert a.active[DELTA_HIGH]  # 3300 - 2990 = 310 mV > 100 mV
    eng.set_pack(1, mv=3010)  # above 3.0 V but inside the 20 mV hysteresis: still low
    scan(ring, bank, 2)
    a.evaluate(bank, 0)
    assert a.active[PACK_LOW]
    eng.set_pack(1, mv=3021)
    scan(ring, bank, 3)
    a.evaluate(bank, 0)
    assert not a.active[PACK_LOW] and a.changed[PACK_LOW]
    eng.set_pack(2, mv=4200, temp=510)
    scan(ring, bank, 4)
    a.evaluate(bank, 0)
    assert a.active[PACK_HIGH] and a.pack[PACK_HIGH] == 3 and a.active[TEMP_HIGH]
    eng.set_pack(2, temp=490)  # 49.0 C: inside the 2 C hysteresis
    scan(ring, bank, 5)
    a.evaluate(bank, 0)
    assert a.active[TEMP_HIGH]


def test_comms_alarm_on_silence_and_staleness() -> None:
    eng, ring, bank = setup(2, [3300, 3300], [250, 250])
    a = Alarms(CFG)
    scan(ring, bank, 0)
    a.evaluate(bank, 0)
    assert not a.active[COMMS]
    a.evaluate(bank, 4_999)
    assert not a.active[COMMS]
    a.evaluate(bank, 5_000)  # ring silent for comms_after_s
    assert a.active[COMMS] and a.changed[COMMS]
    bank.compute(20_000, td)  # and by now every pack is stale
    a.evaluate(bank, 20_000)
    assert a.active[COMMS] and a.value[COMMS] == 2 and a.pack[COMMS] == 1
    scan(ring, bank, 20_001)
    a.evaluate(bank, 0)
    assert not a.active[COMMS] and a.changed[COMMS]
