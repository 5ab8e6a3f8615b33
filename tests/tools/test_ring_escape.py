"""tools/ring_escape.py: corruption on the ring's hops against the hub's check (docs/protocol.md §8), small."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "ring_escape.py"


def load():
    spec = importlib.util.spec_from_file_location("ring_escape", TOOL)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_corruption_is_accepted_and_the_next_frame_names_the_hop() -> None:
    esc = load()
    new = esc.run(1500, seed=3, max_nodes=4, fw=(1, 3))
    old = esc.run(1500, seed=3, max_nodes=4, fw=(1, 2))
    for r in (new, old):
        assert r["differs"] > 1400 and r["accepted_corrupted"] == 0
        assert r["rejected"] == r["differs"]
    # protocol 1.2 passes the error on in the CRC: a corrupted frame fails at the hub, never marked in itself
    assert new["reasons"].get("ring_fault", 0) == 0 and old["reasons"].get("ring_fault", 0) > 0
    # and the hop is named in the next frame more often than 1.2 named it in the bad frame itself
    assert new["named"] > 0.7 * new["inside"]
    assert new["named"] / new["inside"] > old["named"] / old["inside"] + 0.2
