"""The truth's profile reader and the bank's control (packmon.sim.cells), without running PyBaMM."""

from __future__ import annotations

from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

from packmon.sim import cells  # noqa: E402


def test_default_profile_is_committed_small_and_valid() -> None:
    assert cells.DEFAULT_PROFILE.stat().st_size < 1_000_000
    t, i = cells.read_profile(cells.DEFAULT_PROFILE)
    assert t[0] == 0 and t[-1] >= 14 * 86400 - 60 and i.max() > 0 > i.min()


@pytest.mark.parametrize("text, says", [
    ("t,i\n0,1\n60,2\n", "first line must be 'time_s,current_a'"),
    ("time_s,current_a\n0,1\n0,2\n", ":3: time_s 0.0 does not increase"),
    ("time_s,current_a\n0,1\n60,x\n", ":3: not two numbers"),
    ("time_s,current_a\n5,1\n60,2\n", "time_s must start at 0"),
    ("time_s,current_a\n0,1\n", "needs at least two rows"),
])
def test_a_bad_profile_is_named(tmp_path: Path, text: str, says: str) -> None:
    f = tmp_path / "p.csv"
    f.write_text(text)
    with pytest.raises(cells.TruthError) as e:
        cells.read_profile(f)
    assert says in str(e.value)


def test_profile_is_held_and_repeated_on_the_grid(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("time_s,current_a\n0,-2\n30,3\n60,3\n")
    g = cells.on_grid(*cells.read_profile(f), days=1 / 24, scale=2.0)
    assert list(g[:8]) == [-4, -4, -4, -4, -4, -4, 6, 6]  # held until the next row, scaled
    assert g[18] == -4  # repeated after its span (90 s)


def test_control_tapers_at_cv_stops_at_the_tail_and_disconnects_a_low_pack() -> None:
    spec = cells.BankSpec(packs=2)
    c = cells._Control(spec, nominal=20.0, lo_cut=2.5, hi_cut=4.2)
    ev: list[str] = []
    assert c.step(0, 10.0, 8.0, 4.0, 1, ev) == 10.0  # bulk
    assert c.step(1, 10.0, 8.31, 4.15, 1, ev) == 10.0  # reaches CV (2 x 4.15 V): taper from here
    assert "CV" in ev[-1]
    later = [c.step(k, 10.0, 8.3, 4.15, 1, ev) for k in range(2, 2000)]
    assert later[0] < 10.0 and min(later) == 0.0 and any("charger done" in e for e in ev)
    assert c.step(3000, 5.0, 8.2, 4.1, 1, ev) == 0.0  # done: no charge until re-bulk
    # a pack at the disconnect voltage (cut-off + 0.5 V): the discharge is clipped, and reported
    assert c.step(4000, -8.0, 6.0, 2.99, 2, ev) == 0.0
    assert "LOAD DISCONNECT: pack 2" in ev[-1]
    assert c.step(4001, -8.0, 6.1, 3.05, 2, ev) == 0.0  # stays open
    assert c.step(4002, 2.0, 6.1, 3.05, 2, ev) == 0.0 and "reconnected" in ev[-1]  # charging closes it


def test_lfp_limits_come_from_the_parameter_set() -> None:
    c = cells._Control(cells.BankSpec(packs=4), nominal=9.2, lo_cut=2.0, hi_cut=3.6)
    assert c.cv == pytest.approx(4 * 3.55) and c.hvd == pytest.approx(3.65) and c.lvd == pytest.approx(2.5)
