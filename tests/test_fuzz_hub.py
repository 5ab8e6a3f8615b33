"""Fuzzing the hub's frame handling (CI-sized; `python3 tools/fuzz_hub.py --frames 1000000` is the long run)."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import codec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import fuzz_hub  # noqa: E402


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(min_size=0, max_size=600))
def test_check_never_raises_on_random_bytes(data: bytes) -> None:
    for n in (len(data), len(data) // 2):
        assert codec.check(data, n) in range(len(codec.ERROR_NAMES))


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=0, max_size=600))
def test_decode_raises_only_frame_error(data: bytes) -> None:
    try:
        codec.decode(data)
    except codec.FrameError as e:
        assert e.name in codec.ERROR_NAMES


@settings(max_examples=2000, deadline=None)
@given(st.integers(1, 64), st.integers(0, 255), st.data())
def test_single_and_double_bit_errors_are_always_caught(n: int, seq: int, data: st.DataObject) -> None:
    frame = bytearray(codec.encode(codec.CMD_SCAN, seq, 0, n))
    bits = data.draw(st.lists(st.integers(8, 8 * len(frame) - 1), min_size=1, max_size=3, unique=True))
    for bit in bits:
        frame[bit // 8] ^= 1 << (bit % 8)
    assert codec.check(frame, len(frame)) != codec.OK


def test_ring_driver_fuzz_ci_sized() -> None:
    r = fuzz_hub.run(20_000, seed=3)
    assert r.frames == 20_000
    assert r.rejected + r.accepted_true + r.accepted_corrupt == r.frames
    assert r.rejected > 0.8 * r.corrupted  # most corruptions are rejected...
    assert r.accepted_corrupt == 0  # ...and at this size none gets through (expected ~0.2)
    assert set(r.errors) <= set(codec.ERROR_NAMES)
