"""hub.persist: state that survives a reset, under one flash-write budget; on CPython and the real
MicroPython runtime."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from packmon.sim.clock import SimClock

from hub.persist import Store, checksum

ROOT = Path(__file__).resolve().parents[2]


class Owner:
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.restored: dict[str, Any] | None = None
        self.snapshots = 0

    def snapshot(self) -> dict[str, Any]:
        self.snapshots += 1
        return {"value": self.value}

    def restore(self, d: dict[str, Any]) -> None:
        self.restored = d
        self.value = d["value"]


def test_first_start_restores_nothing_and_writes_at_once(tmp_path: Path) -> None:
    clk = SimClock()
    s = Store(str(tmp_path / "state.json"), clk)
    o = Owner(5)
    assert s.register("energy", o) is False and o.restored is None
    assert not s.service(clk.ticks_ms())  # nothing changed yet
    s.changed()
    assert s.service(clk.ticks_ms())
    s2 = Store(str(tmp_path / "state.json"), clk)
    o2 = Owner()
    assert s2.register("energy", o2) is True and o2.value == 5
    assert s2.loaded and s2.lifetime_writes == 1


def test_budget_defers_but_never_drops(tmp_path: Path) -> None:
    clk = SimClock()
    s = Store(str(tmp_path / "state.json"), clk, min_interval_ms=60_000)
    o = Owner(1)
    s.register("energy", o)
    s.changed()
    assert s.service(clk.ticks_ms())
    writes = 0
    for _ in range(59):  # a change every second for a minute
        clk.advance(1)
        o.value += 1
        s.changed()
        writes += s.service(clk.ticks_ms())
    assert writes == 0 and s.deferred == 59
    assert o.snapshots == 1  # snapshot() only runs when a write happens
    clk.advance(1)
    assert s.service(clk.ticks_ms())
    o2 = Owner()
    Store(str(tmp_path / "state.json"), clk).register("energy", o2)
    assert o2.value == o.value == 60


def test_urgent_changes_go_out_quickly_within_their_own_budget(tmp_path: Path) -> None:
    clk = SimClock()
    s = Store(str(tmp_path / "state.json"), clk, min_interval_ms=900_000, urgent_min_ms=10_000)
    s.register("latches", Owner(1))
    s.changed()
    assert s.service(clk.ticks_ms())
    clk.advance(2)
    s.changed(urgent=True)
    assert not s.service(clk.ticks_ms())  # 2 s after the last write: waits
    clk.advance(8)
    assert s.service(clk.ticks_ms())  # 10 s: goes out, not 15 min later
    assert s.writes == 2


@pytest.mark.parametrize("damage", ["torn", "flipped", "header", "garbage"])
def test_a_damaged_file_restores_nothing_and_says_so(tmp_path: Path, damage: str) -> None:
    clk = SimClock()
    path = tmp_path / "state.json"
    s = Store(str(path), clk)
    s.register("soc", Owner(42))
    s.changed()
    s.service(clk.ticks_ms())
    text = path.read_text()
    if damage == "torn":
        text = text[: len(text) - 3]
    elif damage == "flipped":
        text = text.replace("42", "43")
    elif damage == "header":
        text = "hello\n" + text.split("\n", 1)[1]
    else:
        text = "\x00\x01 not a state file"
    path.write_text(text)
    logs: list[tuple[str, str]] = []
    s2 = Store(str(path), clk, log=lambda lvl, m: logs.append((lvl, m)))
    o = Owner()
    assert s2.register("soc", o) is False and o.restored is None
    assert not s2.loaded and s2.errors == 1
    assert "unusable" in s2.last_error and (tmp_path / "state.json.bad").exists()
    assert logs and logs[0][0] == "error" and "state.json" in logs[0][1]


def test_a_write_that_fails_is_reported_and_retried_under_the_budget(tmp_path: Path) -> None:
    clk = SimClock()
    s = Store(str(tmp_path / "no-such-dir" / "state.json"), clk, min_interval_ms=60_000)
    s.register("energy", Owner(1))
    s.changed()
    assert not s.service(clk.ticks_ms())
    assert s.errors == 1 and "cannot write" in s.last_error
    clk.advance(1)
    assert not s.service(clk.ticks_ms()) and s.errors == 1  # not hammered every cycle
    assert s.dirty


def test_sections_of_absent_owners_are_kept(tmp_path: Path) -> None:
    clk = SimClock()
    path = str(tmp_path / "state.json")
    s = Store(path, clk)
    s.register("latches", Owner(7))
    s.register("energy", Owner(3))
    s.changed()
    s.service(clk.ticks_ms())
    s2 = Store(path, clk)  # outputs switched off in this run: only energy registers
    s2.register("energy", Owner(4))
    s2.changed()
    s2.service(clk.ticks_ms(), force=True)
    o = Owner()
    Store(path, clk).register("latches", o)
    assert o.value == 7


def test_checksum_sees_a_swap() -> None:
    assert checksum('{"a":12}') != checksum('{"a":21}')


MPY_SCRIPT = r"""
import sys
from hub.persist import Store
class Clock:
    t = 0
    def ticks_ms(self): return self.t
    def ticks_diff(self, a, b): return a - b
class Owner:
    def __init__(self, v): self.v = v
    def snapshot(self): return {"v": self.v}
    def restore(self, d): self.v = d["v"]
path = sys.argv[1]
c = Clock()
s = Store(path, c, min_interval_ms=1000)
o = Owner(11)
first = s.register("x", o)
s.changed()
wrote = s.service(0)
o2 = Owner(0)
again = Store(path, c).register("x", o2)
print("RESULT", first, wrote, again, o2.v)
"""


@pytest.mark.skipif(not shutil.which("micropython"), reason="the MicroPython unix port is not installed")
def test_on_the_micropython_runtime(tmp_path: Path) -> None:
    script = tmp_path / "persist_mpy.py"
    script.write_text(MPY_SCRIPT)
    r = subprocess.run(
        ["micropython", "-X", "heapsize=100k", str(script), str(tmp_path / "state.json")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "MICROPYPATH": f"{ROOT}:{ROOT / 'hub' / 'lib'}:.frozen"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESULT False True True 11" in r.stdout, r.stdout
