"""The hub's ring driver (hub/ring.py) against the pure-Python model ring."""

from __future__ import annotations

import pytest
from packmon.sim.clock import SimClock
from packmon.sim.model_ring import ModelRing, SimUart
from packmon.sim.node_model import make_frame

from hub import codec
from hub.ring import Ring, RingError


def ring_of(n: int, **kw) -> tuple[ModelRing, Ring]:
    eng = ModelRing(n, mv=[3300 + 7 * i for i in range(n)], temp=[200 + i for i in range(n)], **kw)
    return eng, Ring(SimUart(eng), clock=SimClock())


@pytest.mark.parametrize("n", [1, 2, 16, 64])
def test_enumerate_and_scan(n: int) -> None:
    eng, ring = ring_of(n)
    assert ring.enumerate() == n
    assert ring.scan(n) == n
    for i in range(n):
        o = codec.slot(i)
        assert codec.rec_addr(ring.rx, o) == i + 1
        assert codec.rec_mv(ring.rx, o) == 3300 + 7 * i
        assert codec.rec_temp(ring.rx, o) == 200 + i
    # the first scan delivered the power-on flags; the second one has them cleared
    assert codec.rec_flags(ring.rx, codec.slot(0)) & codec.FLAG_RESET_POWER
    ring.scan(n)
    assert not codec.rec_flags(ring.rx, codec.slot(0)) & codec.FLAG_RESET_POWER
    assert codec.rec_scans(ring.rx, codec.slot(0)) == 1


def test_broken_ring_times_out() -> None:
    eng, ring = ring_of(4)
    eng.broken = True
    with pytest.raises(RingError) as e:
        ring.enumerate()
    assert e.value.name == "timeout"
    assert ring.errors[codec.ERR_TIMEOUT] == 1


def test_corruption_inside_ring_names_the_hop() -> None:
    eng, ring = ring_of(4)
    ring.enumerate()

    class FlipAtNode3:
        """Corrupt the byte stream going into node 3 once."""

    orig = eng.nodes[2].feed
    hit = {"done": False}

    def feed(b: int, framing_error: bool = False) -> bytes:
        if not hit["done"] and b == 0 and eng.nodes[2]._pos == 20:
            hit["done"] = True
            b ^= 0x10
        return orig(b, framing_error)

    eng.nodes[2].feed = feed  # type: ignore[method-assign]
    # protocol 1.2: node 3 cannot mark the frame it is forwarding (no lag), but the CRC it sends on still
    # carries the error, so the hub sees it ...
    with pytest.raises(RingError) as e:
        ring.scan(4)
    assert e.value.name == "bad_crc"
    assert eng.nodes[2].s.bad == 1
    # ... and node 3 names itself in the next frame, which the hub discards as ring_fault, naming the hop
    with pytest.raises(RingError) as e:
        ring.scan(4)
    assert e.value.name == "ring_fault"
    assert e.value.fault == 3
    assert "node 3" in str(e.value)
    assert ring.scan(4) == 4  # reported once: the frame after is clean
    assert all(node.s.fault == 0 for node in eng.nodes)


def test_a_break_is_reported_once_by_the_first_node_that_saw_it() -> None:
    """A frame cut short at node 2 times out at nodes 2, 3 and 4; only node 2 reports it (the faults
    downstream follow from it), so one frame carries the report instead of three."""
    eng, ring = ring_of(4)
    ring.enumerate()
    partial = make_frame(0x02, 99, 0, bytes(32))[:12]
    for node in eng.nodes[1:]:  # as a frame that stopped at node 2 leaves them
        for b in partial:
            node.feed(b)
        node.timeout()
    assert [node.s.fault for node in eng.nodes] == [0, 2, 3, 4]
    with pytest.raises(RingError) as e:
        ring.scan(4)
    assert (e.value.name, e.value.fault) == ("ring_fault", 2)
    assert [node.s.fault for node in eng.nodes] == [0, 0, 0, 0]
    assert ring.scan(4) == 4


def test_mixed_ring_never_hides_corruption() -> None:
    """A node before firmware 1.3 (2-byte lag, FAULT in the bad frame itself) downstream of new nodes: a
    corruption upstream of it still reaches the hub as a rejected frame, never as a good one."""
    eng, ring = ring_of(4)
    eng.nodes[3].s.fw = (1, 2)
    ring.enumerate()
    assert ring.scan(4) == 4
    orig = eng.nodes[1].feed
    hit = {"done": False}

    def feed(b: int, framing_error: bool = False) -> bytes:
        if not hit["done"] and eng.nodes[1]._pos == 14:
            hit["done"] = True
            b ^= 0x01
        return orig(b, framing_error)

    eng.nodes[1].feed = feed  # type: ignore[method-assign]
    with pytest.raises(RingError) as e:
        ring.scan(4)
    # the old node 4 found the CRC bad (node 2 passed the error on) and marked the frame
    assert (e.value.name, e.value.fault) == ("ring_fault", 4)
    with pytest.raises(RingError) as e:
        ring.scan(4)
    assert (e.value.name, e.value.fault) == ("ring_fault", 2)  # node 2's own report, one frame later
    assert ring.scan(4) == 4


def test_garbage_before_answer_is_skipped() -> None:
    eng, ring = ring_of(2)
    uart = ring.uart
    orig = uart.write

    def write(buf) -> int:
        uart._rx += b"\x00\x13\xa5\x02"  # noise, including a false SOF
        return orig(buf)

    uart.write = write  # type: ignore[method-assign]
    assert ring.enumerate() == 2
    assert ring.skipped >= 2


def test_noise_is_never_accepted_as_a_different_value() -> None:
    eng, ring = ring_of(8, ber=2e-4, seed=7)
    ring.max_nodes = 8
    good = bad = 0
    for _ in range(300):
        try:
            n = ring.scan(8)
        except RingError:
            bad += 1
            continue
        good += 1
        for i in range(n):
            o = codec.slot(i)
            assert codec.rec_mv(ring.rx, o) == 3300 + 7 * i
            assert codec.rec_temp(ring.rx, o) == 200 + i
    # both outcomes exercised (a corruption costs two frames since protocol 1.2: the bad one and the
    # next, which carries the report and is discarded as ring_fault)
    assert good > 25 and bad > 10
    assert sum(ring.errors) == bad
    assert ring.errors[codec.ERR_RING_FAULT] > 0


def test_scan_timing_is_linear() -> None:
    per_pack = []
    for n in (16, 32, 64):
        eng, ring = ring_of(n)
        ring.enumerate()
        ring.scan(n)
        floor = codec.frame_len(n) * 10 / 9600
        sec = ring.uart.last.seconds
        assert sec / floor < 2.5
        per_pack.append(sec / n)
    assert max(per_pack) / min(per_pack) < 1.1
