"""Every vector in tests/vectors/frames.json against the pure-Python node model the simulator uses."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from packmon.sim.node_model import ClockState, NodeModel, NodeState, Settings

VECTORS = json.loads((Path(__file__).parent / "vectors" / "frames.json").read_text())


def state_from(d: dict) -> NodeState:
    d = dict(d)
    d["settings"] = Settings(**d["settings"])
    d["clock"] = ClockState(**d["clock"])
    d["fw"] = tuple(d["fw"])
    return NodeState(**d)


@pytest.mark.parametrize("vec", VECTORS["frames"], ids=lambda v: v["name"])
def test_node_model_vector(vec: dict) -> None:
    n = vec["node"]
    node = NodeModel(state_from(n["given"]))
    out = bytearray()
    for i, b in enumerate(bytes.fromhex(vec["hex"])):
        out += node.feed(b, framing_error=(i == n.get("framing_error_at")))
    if n.get("timeout"):
        node.timeout()
    assert out.hex() == n["out"]
    after = asdict(node.s)
    after["fw"] = list(after["fw"])
    assert after == n["after"]
