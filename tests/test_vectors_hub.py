"""Every vector in tests/vectors/frames.json against the hub's codec (hub/codec.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub import codec

VECTORS = json.loads((Path(__file__).parent / "vectors" / "frames.json").read_text())
FRAMES = VECTORS["frames"]


@pytest.mark.parametrize("example", VECTORS["crc"]["examples"], ids=lambda e: e["data"][:16] or "empty")
def test_crc_examples(example: dict) -> None:
    assert codec.crc16(bytes.fromhex(example["data"])) == int(example["crc"], 16)


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_hub_decodes_vector(vec: dict) -> None:
    raw = bytes.fromhex(vec["hex"])
    want = dict(vec["hub"])
    skip = want.pop("skip", 0)
    assert raw[:skip].find(bytes([codec.SOF])) == -1
    frame = raw[skip:]
    if want["ok"]:
        got = codec.decode(frame)
        want.pop("ok")
        assert got == want
    else:
        with pytest.raises(codec.FrameError) as exc:
            codec.decode(frame)
        assert exc.value.name == want["error"]
        if "fault" in want:
            assert exc.value.fault == want["fault"]


def _is_request(v: dict) -> bool:
    return v["hub"]["ok"] and v["hub"]["nodes"] == 0 and not v["hub"]["done"] and not v["hub"]["fault"]


@pytest.mark.parametrize("vec", [v for v in FRAMES if _is_request(v)], ids=lambda v: v["name"])
def test_hub_reencodes_good_requests(vec: dict) -> None:
    """A request (NODES and STATUS zero) re-encoded from its header and payload by codec.build gives
    the same bytes."""
    frame = bytes.fromhex(vec["hex"])[vec["hub"].get("skip", 0):]
    cnt = frame[4]
    assert codec.encode(frame[1], frame[2], frame[3], cnt, frame[5 : 5 + 8 * cnt]) == frame
