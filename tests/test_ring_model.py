"""The hub's ring driver (hub/ring.py) against the pure-Python model ring."""

from __future__ import annotations

import pytest
from packmon.sim.clock import SimClock
from packmon.sim.model_ring import ModelRing, SimUart

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
    with pytest.raises(RingError) as e:
        ring.scan(4)
    assert e.value.name == "ring_fault"
    assert e.value.fault == 3
    assert "node 3" in str(e.value)
    assert eng.nodes[2].s.bad == 1


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
    assert good > 50 and bad > 10
    assert sum(ring.errors) == bad


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
