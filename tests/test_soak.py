"""The fault-injection soak, CI-sized (`python3 tools/soak.py --scans 100000` is the long run)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import soak  # noqa: E402


def test_soak_with_faults() -> None:
    r = soak.run(1200, seed=7)
    print("\n" + soak.table(r))
    assert r.scans == 1200
    assert r.frames_rejected > 0  # the noise was there and every rejected frame was counted
    assert r.faults_injected >= 8
    assert r.undetected == [] and r.faults_detected == r.faults_injected
    assert r.worst_delay_intervals <= 2
    assert r.values_checked > 10_000
    assert r.wrong_values == 0
    assert r.object_growth < 200  # no leak across 1000 cycles
