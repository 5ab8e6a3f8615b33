"""Fixtures for the host tools: a simulated ring served on a real pseudo-terminal, the CLI run in-process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from packmon import cli
from packmon.sim.model_ring import ModelRing
from packmon.sim.pty_bridge import PtyBridge

MV = [3301, 3312, 3298, 3325]
TEMP = [215, 228, 241, 254]


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def run(capsys) -> Callable[..., Result]:
    def go(*argv: str) -> Result:
        capsys.readouterr()
        rc = cli.main(list(argv))
        c = capsys.readouterr()
        return Result(rc, c.out, c.err)

    return go


@dataclass
class Sim:
    engine: ModelRing
    bridge: PtyBridge

    @property
    def port(self) -> str:
        return self.bridge.path

    def hook(self, fn: Callable[[int, bytes], None]) -> None:
        """fn(k, tx) runs before the engine sees exchange number k (0-based) — to break things mid-command."""
        orig = self.engine.exchange
        count = {"k": 0}

        def exchange(tx: bytes):
            fn(count["k"], tx)
            count["k"] += 1
            return orig(tx)

        self.engine.exchange = exchange  # type: ignore[method-assign]


@pytest.fixture
def sim() -> Iterator[Sim]:
    eng = ModelRing(len(MV), mv=list(MV), temp=list(TEMP))
    with PtyBridge(eng) as bridge:
        yield Sim(eng, bridge)
        assert bridge.error is None
