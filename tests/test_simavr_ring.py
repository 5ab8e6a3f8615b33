"""The real node firmware in simavr: a ring of ATtiny85 cores read by the hub's own ring driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packmon.sim import simavr_ring
from packmon.sim.model_ring import ModelRing, SimUart
from packmon.sim.node_model import NodeModel, NodeState, Settings

from hub import codec
from hub.ring import Ring, RingError

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


def test_scan_time_is_about_one_byte_per_hop(sim) -> None:
    eng, ring = sim
    for _ in range(3):  # clocks locked (the first scans after power-on meet the trim acquiring)
        ring.scan(4)
    byte = 10 / 9600
    per_hop = (ring.uart.last.seconds - codec.frame_len(4) * byte) / 4 / byte
    # protocol 1.2: the byte itself + processing, no lag (docs/protocol.md §5); firmware 1.2 took ~3.1
    assert 1.0 < per_hop < 1.25, per_hop


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
    # protocol 1.2: node 1 forwards the frame as it comes, the error stays in the CRC to the hub ...
    with pytest.raises(codec.FrameError) as e:
        codec.decode(ex.rx)
    assert e.value.name == "bad_crc"
    # ... and node 1 names itself in the next frame
    ex = eng.exchange(codec.encode(codec.CMD_SCAN, 78, 0, 4))
    with pytest.raises(codec.FrameError) as e:
        codec.decode(ex.rx)
    assert e.value.name == "ring_fault" and e.value.fault == 1
    assert codec.decode(eng.exchange(codec.encode(codec.CMD_SCAN, 79, 0, 4)).rx)["nodes"] == 4


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
        assert per_hop < 1.4, per_hop  # the same as for a short frame: no backlog built up


# ---- reset causes, wires, statistics ------------------------------------------------------------

@pytest.mark.parametrize(("cause", "mcusr", "flag"), [
    ("power", 0x01, codec.FLAG_RESET_POWER),
    ("external", 0x02, codec.FLAG_RESET_POWER),
    ("brownout", 0x04, codec.FLAG_RESET_BROWNOUT),
    ("watchdog", 0x08, codec.FLAG_RESET_WATCHDOG),
])
def test_reset_cause_reaches_mcusr(cause: str, mcusr: int, flag: int) -> None:
    """The harness sets the MCUSR bit the chip's reset logic would (simavr's avr_reset leaves MCUSR as
    the firmware cleared it): INFO's reset_cause and the latched SCAN flag name the cause."""
    with simavr_ring.SimavrRing(2, mv=[3300, 3600], temp=[250, 300]) as eng:
        ring = Ring(SimUart(eng))
        assert ring.enumerate() == 2
        assert ring.addressed(codec.CMD_INFO, 2)
        assert ring.rx[codec.slot(0) + 2] == 0x01  # the simulated power-up: PORF
        ring.scan(2)
        eng.reset_node(1, cause)
        ring.scan(2)
        rec = records(ring, 2)[1]
        assert rec[0] == 2 and rec[1] & (codec.FLAG_RESET_POWER | codec.FLAG_RESET_BROWNOUT
                                          | codec.FLAG_RESET_WATCHDOG) == flag
        assert ring.addressed(codec.CMD_INFO, 2)
        assert ring.rx[codec.slot(0) + 2] == mcusr
        with pytest.raises(ValueError):
            eng.reset_node(0, "cosmic ray")


def test_every_wire_carries_the_whole_frame_and_stats_count_it(sim) -> None:
    eng, ring = sim
    ring.enumerate()
    before = eng.node_stats()
    ex = eng.exchange(codec.encode(codec.CMD_SCAN, 9, 0, 4))
    after = eng.node_stats()
    L = codec.frame_len(4)
    assert ex.per_hop_bytes == [L] * 5  # the hub's TX and each node's TX
    assert ex.framing_errors == 0
    assert codec.decode(ex.rx)["nodes"] == 4
    for a, b in zip(after, before, strict=True):
        d = a - b
        assert d.bytes_out == L and d.framing_out == 0
        assert 0.05 < d.idle_fraction < 0.95  # the node sleeps between its timer ticks
        # lockstep: every core ran as long (give or take the instruction that crossed the quantum)
        assert abs(d.cycles - (after[0].cycles - before[0].cycles)) <= 8


def test_broken_ring_times_out_and_recovers(sim) -> None:
    eng, ring = sim
    assert ring.enumerate() == 4
    eng.broken = True
    with pytest.raises(RingError) as e:
        ring.scan(4)
    assert e.value.name == "timeout"
    eng.broken = False
    assert ring.scan(4) == 4


def test_framing_error_from_the_hub_is_reported_by_node_one(sim) -> None:
    eng, ring = sim
    ring.enumerate()
    ex = eng.exchange(codec.encode(codec.CMD_SCAN, 3, 0, 4), framing_error_at=7)
    # the bytes check, but node 1 inverts the CRC's low byte it sends on, so no node after it and not the
    # hub take the frame as good (protocol 1.2: it cannot mark the frame it is already forwarding)
    with pytest.raises(codec.FrameError) as e:
        codec.decode(ex.rx)
    assert e.value.name == "bad_crc"
    ex = eng.exchange(codec.encode(codec.CMD_SCAN, 4, 0, 4))
    with pytest.raises(codec.FrameError) as e:
        codec.decode(ex.rx)
    assert e.value.name == "ring_fault" and e.value.fault == 1  # node 1 reports first; the others drop theirs
    flags = [ex.rx[codec.slot(i) + 1] for i in range(4)]
    assert all(f & codec.FLAG_RX_ERROR for f in flags)  # the error was passed on: every node saw the frame bad
    ring.scan(4)
    assert [codec.rec_bad(ring.rx, codec.slot(i)) for i in range(4)] == [1, 1, 1, 1]
    assert not any(r[1] & codec.FLAG_RX_ERROR for r in records(ring, 4))  # cleared by the good frame


def test_sixteen_nodes_scan_in_linear_time() -> None:
    n = 16
    volts = [2900 + 80 * i for i in range(n)]
    with simavr_ring.SimavrRing(n, mv=volts, temp=[100 + 20 * i for i in range(n)]) as eng:
        ring = Ring(SimUart(eng))
        assert ring.enumerate() == n
        assert ring.scan(n) == n
        assert [r[2] for r in records(ring, n)] == [simavr_ring.expected_mv(v) for v in volts]
        byte = 10 / 9600
        per_hop = (ring.uart.last.seconds - codec.frame_len(n) * byte) / n / byte
        # the first scan after power-on (clocks still acquiring): ~1.4; locked ~1.17 (packmon bench)
        assert 1.0 < per_hop < 1.5, per_hop


# ---- the protocol vectors, through the real firmware -------------------------------------------
# A vector's `given` node state is reached in a one-node ring when it is a fresh node or the
# "calibrated node at address 1 that has delivered 7 scans"; the others (addresses 2 and 3, a day of
# uptime, 255 scans) are not reachable in a one-node ring in reasonable time. The measured values
# cannot be reached exactly (the ADC is quantised), so the node model is given the firmware's values
# and both must transmit the same bytes and end in the same counters and flags.

VECTORS = json.loads((Path(__file__).parent / "vectors" / "frames.json").read_text())["frames"]
DEFAULT_SETTINGS = {"vref": 11000, "temp_offset": 0, "sensor": 0, "flags": 0, "reserved": 0}
CAL_SETTINGS = {"vref": 11012, "temp_offset": -15, "sensor": 0, "flags": 1, "reserved": 0}
COMMON = {"fw": [1, 4], "reset_cause": 1, "uptime": 0, "identify": False, "snap": 0, "snap_seq": 0, "snap_wait": 0,
          "snap_flags": 0, "snap_mv": 0, "snap_temp": 0, "snap_bad": 0, "fault": 0, "snap_dev": 0}
FRESH = {"address": 0, "flags": 6, "bad": 0, "scans": 0, "settings": DEFAULT_SETTINGS, **COMMON}
CALIBRATED = {"address": 1, "flags": 0, "bad": 0, "scans": 7, "settings": CAL_SETTINGS, **COMMON}


def family(vec: dict) -> str | None:
    # the clock trim's state depends on the simulated chip, not on the frames: CLOCK answers are left out
    if bytes.fromhex(vec["hex"])[1:2] == bytes([codec.CMD_CLOCK]):
        return None
    g = {k: v for k, v in vec["node"]["given"].items() if k not in ("mv", "temp", "clock")}
    return "fresh" if g == FRESH else "calibrated" if g == CALIBRATED else None


REACHABLE = [v for v in VECTORS if family(v)]


def test_most_vectors_are_reachable() -> None:
    assert len(REACHABLE) >= 20, [v["name"] for v in VECTORS if not family(v)]


@pytest.fixture(scope="module")
def one_node():
    """One single-node ring per family: the fresh family needs an EEPROM that was never written."""
    engines: dict[str, simavr_ring.SimavrRing] = {}

    def get(fam: str) -> simavr_ring.SimavrRing:
        if fam not in engines:
            engines[fam] = simavr_ring.SimavrRing(1, mv=3300, temp=250)
        return engines[fam]

    yield get
    for eng in engines.values():
        eng.close()


def setup_state(eng, fam: str) -> tuple[int, int]:
    """Bring the node into the family's state; returns the (mv, temp) it reports."""
    eng.reset_node(0, "power")
    if fam == "fresh":
        return simavr_ring.expected_mv(3300), simavr_ring.expected_temp(250)
    assert codec.decode(eng.exchange(codec.encode(codec.CMD_ENUMERATE, 1, 0, 0)).rx)["addr"] == 1
    s = CAL_SETTINGS
    ex = eng.exchange(codec.encode(codec.CMD_WRITE, 2, 1, 1,
                                   codec.settings_pack(s["vref"], s["temp_offset"], s["sensor"], s["flags"])))
    assert codec.decode(ex.rx)["done"]
    eng.run(250)  # the EEPROM write and a measurement with the new settings
    for k in range(7):
        rec = codec.decode(eng.exchange(codec.encode(codec.CMD_SCAN, 10 + k, 0, 1)).rx)["records"][0]
    assert rec["scans"] == 6 and rec["flags"] == 0 and rec["addr"] == 1, rec
    return rec["mv"], rec["temp"]


def model_of(given: dict, mv: int, temp: int) -> NodeModel:
    d = dict(given, mv=mv, temp=temp)
    d.pop("clock", None)
    d["settings"] = Settings(**d["settings"])
    d["fw"] = tuple(d["fw"])
    return NodeModel(NodeState(**d))


@pytest.mark.parametrize("vec", REACHABLE, ids=lambda v: v["name"])
def test_vector_through_the_firmware(one_node, vec: dict) -> None:
    eng = one_node(family(vec))
    nv = vec["node"]
    mv, temp = setup_state(eng, family(vec))
    model = model_of(nv["given"], mv, temp)
    want = bytearray()
    for i, b in enumerate(bytes.fromhex(vec["hex"])):
        want += model.feed(b, framing_error=(i == nv.get("framing_error_at")))
    if nv.get("timeout"):
        model.timeout()
    if (mv, temp) == (nv["given"]["mv"], nv["given"]["temp"]):
        assert want.hex() == nv["out"]
    ex = eng.exchange(bytes.fromhex(vec["hex"]), framing_error_at=nv.get("framing_error_at"))
    assert ex.rx.hex() == want.hex()
    # the node's state afterwards, as the next SCAN shows it: its record (flags, bad, scans) and, after a
    # bad frame, its report in FAULT (protocol 1.2), which makes the hub reject that SCAN as ring_fault
    nxt = eng.exchange(codec.encode(codec.CMD_SCAN, 99, 0, 1)).rx
    assert codec.check(nxt, len(nxt)) == (codec.ERR_RING_FAULT if model.s.fault else codec.OK)
    assert codec.fault_of(nxt) == model.s.fault
    o = codec.slot(0)
    rec = model.record(0)
    # (a WRITE that selects the TMP36 reads no sensor at the node's next measurement: not the protocol's doing)
    mask = 0xFF ^ codec.FLAG_SENSOR_FAULT if nv["given"]["settings"] != nv["after"]["settings"] else 0xFF
    assert (nxt[o + 1] & mask, nxt[o + 6], nxt[o + 7]) == (rec[1] & mask, rec[6], rec[7])


def test_fast_pin_path_changes_nothing_the_firmware_sees() -> None:
    """Writing RX levels into PINB (the default while no INT0/PCINT is enabled) and raising simavr's
    pin IRQ give the same bytes at the same simulated times."""
    frames = [codec.encode(codec.CMD_ENUMERATE, 1, 0, 0), codec.encode(codec.CMD_SCAN, 2, 0, 3),
              codec.encode(codec.CMD_SCAN, 3, 0, 64)]
    out = {}
    for mode in ("irq", "auto"):
        with simavr_ring.SimavrRing(3, mv=[3100, 3500, 3900], temp=[150, 250, 350]) as eng:
            eng.pin_mode(mode)
            got = []
            for f in frames:
                ex = eng.exchange(f)
                got.append((ex.rx, ex.seconds, ex.per_hop_bytes))
            st = eng.stats()
            out[mode] = (got, [(s.cycles, s.bytes_out) for s in st])
    # The same bytes on every wire. Times agree closely but not to the cycle: the first byte after a
    # quiet line is received by polling PINB (the clock trim's SOF measurement) in a loop of 9 cycles
    # an iteration, and a level raised through simavr's pin IRQ can become visible to that loop one
    # iteration apart from one written into PINB. That moves a SOF's measured span by a Timer0 count
    # now and then, which the trim follows (0.08 % of one node's clock for a frame or two), and can move
    # where the poll ends (it checks for the stop bit once per ~100 cycles): the times drift apart by
    # tens of us (seen: 12 us on frame 2, 38 us on frame 3), well under half a bit, and each node's
    # cycle count by a few hundred in 8 million (seen: 416).
    for (rx_i, s_i, hops_i), (rx_a, s_a, hops_a) in zip(out["irq"][0], out["auto"][0], strict=True):
        assert (rx_i, hops_i) == (rx_a, hops_a)
        assert abs(s_i - s_a) < 0.5 / 9600
    for (c_i, b_i), (c_a, b_a) in zip(out["irq"][1], out["auto"][1], strict=True):
        assert b_i == b_a and abs(c_i - c_a) <= max(32, c_i // 10000)


# ---- low power: the UART tick stops while the ring is quiet (docs/node_fw.md "Sleep") -----------
# Between frames a node's Timer0 drops from the 38.4 kHz UART tick to a ~8 ms clock overflow and RX's
# pin-change interrupt waits for the next start bit. These tests pin down what must not change (the
# first byte after a quiet spell, frame spacing, uptime, measurements, IDENTIFY) and that the node
# really sleeps: the image with the always-running tick sleeps 32 % of the time on an idle line.

IDLE_LINE_ASLEEP = 0.97  # measured 0.989 (one ~8 ms overflow and 5 measurements a second awake)
BYTE_S = 10 / 9600


def info_uptime(eng: simavr_ring.SimavrRing, seq: int) -> tuple[float, int]:
    """INFO to node 1: (simulated second at which the node read its uptime, the uptime reported)."""
    c0 = eng.node_stats()[0].cycles  # node 1 has been in the ring since the start: its cycles are the time
    ex = eng.exchange(codec.encode(codec.CMD_INFO, seq & 0xFF, 1, 1))
    assert codec.decode(ex.rx)["done"]
    up = int.from_bytes(ex.rx[codec.slot(0) + 4: codec.slot(0) + 8], "little")
    # the TX starts one 16-cycle quantum later; the node builds INFO once CNT (byte 4) has arrived
    return (c0 + 16) / eng.f_cpu + 5 * BYTE_S, up


def test_node_on_an_idle_line_sleeps_and_wakes_for_the_first_byte() -> None:
    with simavr_ring.SimavrRing(2, mv=[3300, 3700], temp=[250, 300]) as eng:
        ring = Ring(SimUart(eng))
        assert ring.enumerate() == 2
        before = eng.node_stats()
        eng.run(2000)  # also: the watchdog (1 s) stays fed while the tick is stopped
        quiet = [a - b for a, b in zip(eng.node_stats(), before, strict=True)]
        for d in quiet:
            assert d.idle_fraction > IDLE_LINE_ASLEEP, d.idle_fraction
        # the first frame after the quiet spell: its first byte wakes the node and must not be lost
        assert ring.scan(2) == 2
        per_hop = (ring.uart.last.seconds - codec.frame_len(2) * BYTE_S) / 2 / BYTE_S
        # the first scan after power-on (clocks still acquiring): ~1.4; locked ~1.17 (packmon bench)
        assert 1.0 < per_hop < 1.5, per_hop  # the same cut-through lag as with the tick running
        recs = records(ring, 2)
        assert [r[0] for r in recs] == [1, 2]
        assert [r[2] for r in recs] == [simavr_ring.expected_mv(3300), simavr_ring.expected_mv(3700)]
        assert not any(r[1] & codec.FLAG_RESET_WATCHDOG for r in recs)
        assert ring.addressed(codec.CMD_INFO, 2)
        assert ring.rx[codec.slot(0) + 2] == 0x01  # still the power-on start: no watchdog reset


@pytest.mark.parametrize(("f_cpu", "busy"), [(8000000, False), (8000000, True), (16500000, False)],
                         ids=["8MHz-idle", "8MHz-frames-every-50ms", "digispark-16.5MHz-idle"])
def test_uptime_follows_simulated_time(f_cpu: int, busy: bool) -> None:
    """INFO's uptime counts the simulated seconds whether the node sleeps between frames or switches
    between its slow clock and the UART tick ~20 times a second (each switch adds the part of a
    period that had passed). The second's length is bracketed by the INFO samples either side of the
    first and the last second boundary seen."""
    span = 20.0
    with simavr_ring.SimavrRing(1, f_cpu=f_cpu) as eng:
        eng.exchange(codec.encode(codec.CMD_ENUMERATE, 0, 0, 0))
        samples = [info_uptime(eng, 0)]
        while samples[-1][0] < span:
            t, up = samples[-1]
            # quiet most of each second, dense samples near its end, and on past it until the node has counted
            # it (a sample right on the boundary may still read the second before: jumping on from there
            # would leave the edge bracketed by samples a second apart)
            if not busy and t % 1.0 < 0.85 and up >= int(t):
                eng.run((0.9 - t % 1.0) * 1000)
            samples.append(info_uptime(eng, len(samples)))
    for t, up in samples:
        assert up == int(t) or abs(t - round(t)) < 0.06, (t, up)  # the node's seconds are the simulation's
    edges = [(samples[i - 1][0], samples[i][0], samples[i][1]) for i in range(1, len(samples))
             if samples[i][1] != samples[i - 1][1]]
    (a0, b0, u0), (a1, b1, u1) = edges[0], edges[-1]
    assert u1 - u0 >= span - 3
    shortest, longest = (a1 - b0) / (u1 - u0), (b1 - a0) / (u1 - u0)
    assert 0.99 < shortest <= 1.0 <= longest < 1.01, (shortest, longest)


def test_back_to_back_frames_are_both_forwarded() -> None:
    with simavr_ring.SimavrRing(3, mv=[3100, 3500, 3900]) as eng:
        eng.exchange(codec.encode(codec.CMD_ENUMERATE, 0, 0, 0))
        a, b = codec.encode(codec.CMD_SCAN, 1, 0, 3), codec.encode(codec.CMD_SCAN, 2, 0, 3)
        ex = eng.exchange(a + b)
        assert len(ex.rx) == len(a) + len(b) and ex.framing_errors == 0
        first, second = codec.decode(ex.rx[: len(a)]), codec.decode(ex.rx[len(a):])
        assert first["seq"] == 1 and second["seq"] == 2
        assert [r["mv"] for r in second["records"]] == [simavr_ring.expected_mv(v) for v in (3100, 3500, 3900)]
        assert [r["scans"] for r in second["records"]] == [1, 1, 1]


def test_frames_spaced_across_the_switch_to_the_slow_clock() -> None:
    """Two frames in one TX, the second one 0 to 60 bit times after the first, in quarter bits: around
    40 bits the node stops its tick (its TX has just drained) and the second frame's SOF meets a node
    that is about to, is just, or has been asleep for a while. Every second frame must come through.
    (A finer sweep, 20-60 bits in 1/50 bit, about one lockstep quantum, passed too: docs/simavr.md.)"""
    with simavr_ring.SimavrRing(2) as eng:
        a, b = codec.encode(codec.CMD_ENUMERATE, 1, 0, 0), codec.encode(codec.CMD_ENUMERATE, 2, 0, 0)
        failed = []
        for q in range(0, 241):
            ex = eng.exchange(a + b, gap=(len(a), q / 4))
            ok = (len(ex.rx) == len(a) + len(b) and ex.framing_errors == 0
                  and codec.decode(ex.rx[: len(a)])["nodes"] == 2 and codec.decode(ex.rx[len(a):])["nodes"] == 2)
            if not ok:
                failed.append((q / 4, ex.rx.hex()))
        assert not failed, failed[:5]
        assert [s.framing_out for s in eng.node_stats()] == [0, 0]


def test_frame_after_an_abandoned_one_and_the_timeout_gap() -> None:
    """The hub stops after 7 bytes of a SCAN; the next frame follows after 3 byte times of silence
    (the frame timeout, docs/protocol.md section 4) or a little more: each node counts the abandoned frame as
    bad once, goes back to hunting for SOF (and to sleep) and forwards the next frame whole."""
    n = 2
    with simavr_ring.SimavrRing(n) as eng:
        ring = Ring(SimUart(eng))
        assert ring.enumerate() == n
        part, full = codec.encode(codec.CMD_SCAN, 5, 0, n)[:7], codec.encode(codec.CMD_SCAN, 6, 0, n)
        gaps = [30 + q / 4 for q in range(0, 41)]
        for g in gaps:
            ex = eng.exchange(part + full, gap=(len(part), g))
            f = ex.rx[-len(full):]
            # whole, and carrying node 1's report of the abandoned frame (protocol 1.2: FAULT of the frame
            # before; the nodes after it drop theirs)
            assert codec.check(f, len(f)) == codec.ERR_RING_FAULT and codec.fault_of(f) == 1, (g, ex.rx.hex())
            assert codec.nodes_of(f) == n
        ring.scan(n)
        assert [codec.rec_bad(ring.rx, codec.slot(i)) for i in range(n)] == [len(gaps) % 256] * n


def test_measurements_and_identify_go_on_while_the_ring_is_quiet() -> None:
    with simavr_ring.SimavrRing(1, mv=3300) as eng:
        ring = Ring(SimUart(eng))
        assert ring.enumerate() == 1
        ring.scan(1)
        assert records(ring, 1)[0][2] == simavr_ring.expected_mv(3300)
        eng.set_pack(0, mv=3900)  # the pack's voltage changes while no frame is on the ring ...
        before = eng.node_stats()[0]
        eng.run(450)  # ... and the node, asleep between clock overflows, measures it (5 times a second)
        d = eng.node_stats()[0] - before
        assert d.idle_fraction > IDLE_LINE_ASLEEP, d.idle_fraction
        ring.scan(1)
        assert records(ring, 1)[0][2] == simavr_ring.expected_mv(3900)

        assert ring.addressed(codec.CMD_IDENTIFY, 1)
        before = eng.node_stats()[0]
        eng.run(2500)
        mid = eng.node_stats()[0]
        assert 19 <= (mid - before).led_edges <= 21  # 8 toggles a second, from the quiet node
        assert (mid - before).idle_fraction > IDLE_LINE_ASLEEP
        eng.run(3500)
        assert (eng.node_stats()[0] - before).led_edges == 40  # 5 s of blinking, then off
        eng.run(500)
        assert (eng.node_stats()[0] - before).led_edges == 40


@pytest.mark.parametrize("us", [3, 20, 60, 150, 400])
def test_noise_on_a_quiet_line_wakes_the_node_but_costs_nothing(us: int) -> None:
    """A low pulse on the idle line wakes a sleeping node: shorter than 2.5 ticks (65 us) it is not a
    start bit, longer it is a byte that is not SOF; either way it is dropped without counting, the node
    goes back to sleep, and the next frame is forwarded."""
    with simavr_ring.SimavrRing(2) as eng:
        ring = Ring(SimUart(eng))
        assert ring.enumerate() == 2
        eng.run(100)
        eng.glitch(us)
        before = eng.node_stats()
        eng.run(300)
        for a, b in zip(eng.node_stats(), before, strict=True):
            d = a - b
            assert d.bytes_out == 0 and d.idle_fraction > IDLE_LINE_ASLEEP, (us, d)
        assert ring.scan(2) == 2
        assert [codec.rec_bad(ring.rx, codec.slot(i)) for i in range(2)] == [0, 0]
        assert not any(r[1] & codec.FLAG_RX_ERROR for r in records(ring, 2))


def test_digispark_image_runs_the_ring() -> None:
    """The 16.5 MHz build (all UART and clock constants from F_CPU) forwards, measures and sleeps in
    simavr clocked at 16.5 MHz."""
    with simavr_ring.SimavrRing(2, mv=[3300, 4000], f_cpu=16500000) as eng:
        ring = Ring(SimUart(eng))
        assert ring.enumerate() == 2
        assert ring.scan(2) == 2
        assert [r[2] for r in records(ring, 2)] == [simavr_ring.expected_mv(3300), simavr_ring.expected_mv(4000)]
        per_hop = (ring.uart.last.seconds - codec.frame_len(2) * BYTE_S) / 2 / BYTE_S
        # the first scan after power-on (clocks still acquiring): ~1.4; locked ~1.17 (packmon bench)
        assert 1.0 < per_hop < 1.5, per_hop
        before = eng.node_stats()
        eng.run(1000)
        for a, b in zip(eng.node_stats(), before, strict=True):
            assert (a - b).idle_fraction > IDLE_LINE_ASLEEP


def test_forwarding_waits_at_most_half_a_bit_for_a_measurement() -> None:
    """300 scans at random moments (seeded: the simulation is deterministic), so frames start at all
    phases of the 200 ms measurement cycle and of the ~8 ms slow clock. A measurement's arithmetic
    takes ~2300 cycles (11 UART ticks); done in the middle of a frame it holds up a byte the TX is
    waiting for (in the stream there is no slack), and the rest of the frame leaves ~0.3-0.4 byte times
    late. Before measurements were confined to the gaps between frames that happened to 2 of these
    300 scans (and to 9 % of frames with the always-running tick). Since firmware 1.3 forwards the SOF
    at once (no lag), a SOF that arrives while the main loop finishes a step between frames waits for
    it: measured 5 of these 300 frames, at most +0.05 byte times (half a bit)."""
    import random

    rng = random.Random(7)
    with simavr_ring.SimavrRing(1) as eng:
        eng.exchange(codec.encode(codec.CMD_ENUMERATE, 0, 0, 0))
        frame = codec.encode(codec.CMD_SCAN, 1, 0, 1)
        lags = []
        for _ in range(300):
            eng.run(rng.uniform(0, 200))
            ex = eng.exchange(frame)
            assert codec.decode(ex.rx)["nodes"] == 1
            lags.append((ex.seconds - len(frame) * BYTE_S) / BYTE_S)
        # from the third scan on: the node's trim locks after two good frames and its tick's dither then
        # matches the hub's rate (0.16 % slower than the 8 MHz image's nominal tick), a one-time step
        # of ~0.05 byte times in this lag, not a scatter
        lags = lags[2:]
        assert max(lags) - min(lags) < 0.06, sorted(lags)[-5:]
        assert sum(lag > min(lags) + 0.01 for lag in lags) <= 10, sorted(lags)[-12:]


def test_snapshot_samples_every_node_at_one_instant_and_keeps_its_values(sim) -> None:
    """SNAP / SNAPREAD (protocol.md 3.5) on the real image: every node starts its snapshot's first counted
    conversion within a fraction of a millisecond of the others (exact clocks here: the mechanism's own
    floor; bench --snapshot measures it with clock errors), SNAPREAD returns the values of that instant with
    the SNAP's SEQ, and keeps returning them after the packs changed, while SCAN shows the new readings."""
    from packmon.bench_snapshot import first_counted

    eng, ring = sim
    assert ring.enumerate() == 4
    ring.scan(4)
    hop256 = 46 * 256  # ~1.2 ms a node (firmware 1.3 forwards without lag)
    delay = 3 * 46 + 154
    seq = ring.snap(4, delay, hop256)  # sent with two stop bits (the ring driver asks the UART for them)
    assert codec.done_of(ring.rx) and ring.uart.last.seconds > codec.frame_len(codec.SNAP_CNT) * 11 / 9600
    # every node added its hop to ELAPSED (exact clocks: HOP, give or take a deviation of a fraction of a tick)
    assert abs(codec.snap_elapsed(ring.rx) - codec.SNAP_ELAPSED0 - 4 * hop256) < 4 * 64
    instant = (codec.frame_len(codec.SNAP_CNT) * 11 - 1) / 9600 + delay / 38400
    firsts = [first_counted(s, instant) for s in eng.adc_starts(64)]
    assert max(firsts) - min(firsts) < 0.0003
    assert all(abs(f - instant) < 0.002 for f in firsts)
    assert ring.snapread(4) == 4
    want = [simavr_ring.expected_mv(v) for v in VOLTS]
    for i in range(4):
        o = codec.slot(i)
        assert (ring.rx[o], codec.rec_mv(ring.rx, o), codec.rec_scans(ring.rx, o)) == (i + 1, want[i], seq)
    for i in range(4):
        eng.set_pack(i, mv=VOLTS[i] + 200)
    eng.run(300)  # the regular measurements go on
    ring.snapread(4)
    assert [codec.rec_mv(ring.rx, codec.slot(i)) for i in range(4)] == want  # still the snapshot's
    ring.scan(4)
    assert [codec.rec_mv(ring.rx, codec.slot(i)) for i in range(4)] == [
        simavr_ring.expected_mv(v + 200) for v in VOLTS]


def test_snapshot_is_timed_by_the_hubs_crystal_under_clock_errors() -> None:
    """Protocol 1.3 on the real image (protocol.md 3.5, §5 "Snapshot timing"): 16 nodes with trimmed ±8 %
    factory clocks, drift and coupler skew. Each node times the SNAP's crystal-spaced bytes to scale its wait
    and adds its hop, corrected for its clock, to ELAPSED: every position takes the snapshot, the instants
    lie within 0.3 ms of each other (firmware 1.3 needed HOP to describe every hop, and each node's wait ran
    on its own clock), and the round trip less what ELAPSED says the nodes deviated gives the hop at the
    hub's rate whatever the clocks."""
    from packmon.bench_snapshot import measure

    r = measure(16, runs=2, seed=1)
    assert not r.failed and not r.missing and len(r.spreads_s) == 2
    assert max(r.spreads_s) < 0.0003, r.spreads_s
    assert min(r.node_eff) < -0.001 or max(r.node_eff) > 0.001  # the clocks are really off the hub's
    ideal = measure(16, runs=1, ideal=True)
    assert abs(r.hop_s - ideal.hop_s) < 0.01 * ideal.hop_s, (r.hop_s, ideal.hop_s)
