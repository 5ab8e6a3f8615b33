"""The real node firmware in simavr: a ring of ATtiny85 cores read by the hub's own ring driver."""

from __future__ import annotations

import pytest
from packmon.sim import simavr_ring
from packmon.sim.model_ring import ModelRing, SimUart

from hub import codec
from hub.ring import Ring

ok, why = simavr_ring.available()
pytestmark = pytest.mark.skipif(not ok, reason=f"simavr ring unavailable: {why}")

VOLTS = [3000, 3300, 3650, 4100]
TEMPS = [-50, 251, 400, 655]


def records(ring: Ring, n: int) -> list[tuple[int, int, int, int, int]]:
    out = []
    for i in range(n):
        o = codec.slot(i)
        out.append((codec.rec_addr(ring.rx, o), codec.rec_flags(ring.rx, o), codec.rec_mv(ring.rx, o),
                    codec.rec_temp(ring.rx, o), codec.rec_scans(ring.rx, o)))
    return out


@pytest.fixture
def sim():
    with simavr_ring.SimavrRing(4, mv=VOLTS, temp=TEMPS) as eng:
        yield eng, Ring(SimUart(eng))


def test_four_nodes_report_their_packs(sim) -> None:
    eng, ring = sim
    assert ring.enumerate() == 4
    assert ring.scan(4) == 4
    for i, (addr, flags, mv, temp, scans) in enumerate(records(ring, 4)):
        assert addr == i + 1
        # exactly what the ADC can resolve: one LSB of the bandgap reading is Vcc^2/(1100*1023) mV
        lsb = VOLTS[i] ** 2 / (1100 * 1023)
        assert abs(mv - VOLTS[i]) <= lsb, (i, mv)
        assert mv == simavr_ring.expected_mv(VOLTS[i])
        assert abs(temp - TEMPS[i]) <= 10  # one LSB of the internal sensor is ~0.93 degC
        assert flags == codec.FLAG_RESET_POWER | codec.FLAG_NOT_CALIBRATED
        assert scans == 0
    ring.scan(4)
    assert [r[1] for r in records(ring, 4)] == [codec.FLAG_NOT_CALIBRATED] * 4  # latched flags cleared
    assert [r[4] for r in records(ring, 4)] == [1] * 4


def test_scan_time_is_about_three_bytes_per_hop(sim) -> None:
    eng, ring = sim
    ring.scan(4)
    byte = 10 / 9600
    per_hop = (ring.uart.last.seconds - codec.frame_len(4) * byte) / 4 / byte
    assert 2.9 < per_hop < 3.4, per_hop  # 2-byte lag + the byte itself + processing (docs/protocol.md §5)


def test_same_scans_as_the_python_model(sim) -> None:
    """The pure-Python node model and the firmware give the same decoded scans for one scenario
    (the model is given the values the firmware's ADC resolves)."""
    eng, ring = sim
    model = ModelRing(4, mv=[simavr_ring.expected_mv(v) for v in VOLTS],
                      temp=[simavr_ring.expected_temp(t) for t in TEMPS])
    mring = Ring(SimUart(model))
    for r in (ring, mring):
        assert r.enumerate() == 4
    for _ in range(3):
        a, b = ring.scan(4), mring.scan(4)
        assert a == b
        assert records(ring, 4) == records(mring, 4)
        assert bytes(ring.rx[: ring.rx_len]) == bytes(mring.rx[: mring.rx_len])


def test_reset_node_is_reported_and_readdressed(sim) -> None:
    eng, ring = sim
    ring.enumerate()
    ring.scan(4)
    ring.scan(4)
    eng.reset_node(2)
    ring.scan(4)
    recs = records(ring, 4)
    assert recs[2][0] == 3  # the reset node took its slot again without an ENUMERATE
    assert recs[2][1] & codec.FLAG_RESET_POWER
    assert recs[2][4] == 0  # its scan counter restarted
    assert recs[1][4] == 2 and not recs[1][1] & codec.FLAG_RESET_POWER


def test_removed_node_shrinks_the_ring_and_comes_back(sim) -> None:
    eng, ring = sim
    ring.enumerate()
    eng.remove_node(1)
    assert ring.enumerate() == 3
    ring.scan(3)
    assert [r[2] for r in records(ring, 3)] == [simavr_ring.expected_mv(v) for v in (3000, 3650, 4100)]
    eng.insert_node(1)
    assert ring.enumerate() == 4
    ring.scan(4)
    assert records(ring, 4)[1][1] & codec.FLAG_RESET_POWER


def test_corruption_on_the_first_hop_is_flagged_by_node_one(sim) -> None:
    eng, ring = sim
    ring.enumerate()
    frame = bytearray(codec.encode(codec.CMD_SCAN, 77, 0, 4))
    frame[8] ^= 0x08  # a bit flipped on the wire between the hub and node 1
    ex = eng.exchange(bytes(frame))
    with pytest.raises(codec.FrameError) as e:
        codec.decode(ex.rx)
    assert e.value.name == "ring_fault" and e.value.fault == 1


def test_write_settings_calibrates_and_survives_reset(sim) -> None:
    eng, ring = sim
    ring.enumerate()
    ring.scan(4)
    reported = codec.rec_mv(ring.rx, codec.slot(0))
    assert ring.addressed(codec.CMD_READ, 1)
    vref = codec.u16(ring.rx, codec.slot(0))
    new_vref = round(vref * 3010 / reported)
    payload = codec.settings_pack(new_vref, 0, 0, codec.SETTINGS_CALIBRATED)
    assert ring.addressed(codec.CMD_WRITE, 1, payload)
    eng.run(300)  # EEPROM writes finish and a new measurement is taken
    ring.scan(4)
    mv = codec.rec_mv(ring.rx, codec.slot(0))
    assert abs(mv - 3010) <= 4
    assert not codec.rec_flags(ring.rx, codec.slot(0)) & codec.FLAG_NOT_CALIBRATED
    eng.reset_node(0)
    eng.run(300)
    ring.scan(4)
    assert abs(codec.rec_mv(ring.rx, codec.slot(0)) - 3010) <= 4  # calibration kept in EEPROM
    assert ring.addressed(codec.CMD_INFO, 1)
    assert ring.rx[codec.slot(0)] == 1  # firmware major version


def test_a_full_64_slot_frame_streams_through_without_backlog() -> None:
    """The node's transmitter keeps pace with its receiver over the longest frame: a slower TX would
    overflow the 32-byte FIFO and corrupt the end of long scans."""
    with simavr_ring.SimavrRing(1) as eng:
        frame = codec.encode(codec.CMD_SCAN, 5, 0, 64)
        ex = eng.exchange(frame)
        d = codec.decode(ex.rx)
        assert d["nodes"] == 1 and len(d["records"]) == 1
        per_hop = (ex.seconds - len(frame) * 10 / 9600) / (10 / 9600)
        assert per_hop < 3.4, per_hop  # the same lag as for a short frame: no backlog built up
