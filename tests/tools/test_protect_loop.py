"""The protection scenarios in the closed loop (tools/packmon/sim/closed_loop.py): the ECM bank, a charger
and a load obeying the hub's output pins through relays, the real hub reading the packs through a ring
engine. Short forms on the model ring; one on simavr with the real node image; one on the MicroPython
unix port in real time."""

from __future__ import annotations

import json

import pytest
from packmon.sim import closed_loop as cl
from packmon.sim.ecm import Bank, CellFit, Charger, Relay

from hub.protect import Protect


def _explain(r: cl.Result) -> str:
    return f"{r.name}: {r.detail}; failed: {[k for k, v in r.checks.items() if not v]}"


@pytest.mark.parametrize("name", cl.IDS)
def test_scenario_on_the_model_ring(name: str) -> None:
    r = cl.run(name, short=True)
    assert r.passed, _explain(r)
    assert r.checks and all(r.checks.values())
    assert r.chatters == 0
    if name in ("runaway_charger", "series_imbalance", "weak_pack_night", "flapping_limit"):
        assert r.reaction_s is not None and 0 <= r.reaction_s <= r.allowed_reaction_s  # type: ignore[operator]
        assert r.overshoot_mv is not None and r.overshoot_mv <= r.allowed_overshoot_mv + 0.05  # type: ignore[operator]
    if name in ("hot_pack", "ring_broken_charging", "hub_reset_trip"):
        assert r.reaction_s is not None and r.reaction_s <= r.allowed_reaction_s  # type: ignore[operator]


def test_the_loop_catches_a_hub_that_does_not_protect(monkeypatch) -> None:
    """The harness can fail: with the decision frozen after the first close, the runaway charger takes
    the packs past the limit and every check that matters fails."""
    real = Protect.decide

    def frozen(self, bank, alarms, shunt, now, td):  # noqa: ANN001
        if self.ever_whole:
            for k in range(len(self.changed)):
                self.changed[k] = 0
            return 0
        return real(self, bank, alarms, shunt, now, td)

    monkeypatch.setattr(Protect, "decide", frozen)
    r = cl.run("runaway_charger", short=True)
    assert not r.passed
    assert r.checks["the output opened"] is False


def test_chatter_count() -> None:
    # close at 0, open at 5 (< min_on 10): 1; close at 30 (< min_off 60 after 5): 2; open at 100: fine
    assert cl.chatter_count([(0, 1), (5, 0), (30, 1), (100, 0)], 10, 60) == 2
    assert cl.chatter_count([(0, 1), (15, 0), (80, 1)], 10, 60) == 0
    assert cl.chatter_count([(0, 1), (5, 0), (5.5, 1)], 10, 60, restarts=(5.0,)) == 0


def test_ecm_is_the_fitted_cell() -> None:
    fit = CellFit.load()
    assert fit.capacity_ah == 5.0 and 4.15 < fit.ocv(1.0) <= 4.25 and 2.5 < fit.ocv(0.0) < 3.1
    assert all(b > a for a, b in zip(fit.ocv_v, fit.ocv_v[1:], strict=False))  # OCV rises with SOC
    b = Bank(2, cells_parallel=4, soc=0.5)
    v0 = b.voltage(0, 0.0)
    b.step(1.0, 10.0)
    assert b.voltage(0) - v0 == pytest.approx(10 * fit.r0_ohm / 4 + b.packs[0].v1, abs=1e-3)
    ah = 10 * 3600 / 3600
    b2 = Bank(1, cells_parallel=4, soc=0.5)
    for _ in range(3600):
        b2.step(1.0, 10.0)
    assert b2.packs[0].soc == pytest.approx(0.5 + ah / 20, abs=1e-6)  # coulomb counting on 20 Ah
    # CC then CV on the bank voltage: the current tapers and the bank voltage holds at CV
    bank = Bank(4, cells_parallel=4, soc=0.6)
    ch = Charger(10.0, 4.1 * 4, 0.5)
    cur = []
    for _ in range(8000):
        i = ch.current(bank, True)
        bank.step(1.0, i)
        cur.append(i)
    assert cur[0] == 10.0 and 0.5 <= min(c for c in cur if c > 0) < 1.0 and ch.done and cur[-1] == 0
    assert bank.bank_voltage() <= 16.4 + 1e-6


def test_relay_delay_and_welded_contact() -> None:
    r = Relay(0.05)
    r.drive(1.0, 1)
    assert r.update(1.04) == 0 and r.update(1.05) == 1
    r.welded = True
    r.drive(2.0, 0)
    assert r.update(3.0) == 1


def test_protect_check_json(run) -> None:
    res = run("protect-check", "--json", "--short", "runaway_charger", "ring_broken_charging")
    assert res.rc == 0, res.out
    rows = json.loads(res.out)
    assert [r["name"] for r in rows] == ["runaway_charger", "ring_broken_charging"]
    for r in rows:
        assert {"name", "passed", "reaction_s", "overshoot_mv", "allowed_overshoot_mv", "chatters"} <= set(r)
        assert r["passed"] is True and r["chatters"] == 0
    assert rows[0]["overshoot_mv"] <= rows[0]["allowed_overshoot_mv"]
    assert rows[1]["overshoot_mv"] is None  # no voltage limit in that scenario: null, never 0
    bad = run("protect-check", "nosuch")
    assert bad.rc != 0 and "unknown scenario" in bad.err


def test_runaway_charger_on_simavr_with_the_real_node_image() -> None:
    from packmon.sim import simavr_ring

    ok, why = simavr_ring.available()
    if not ok:
        pytest.skip(why)
    r = cl.run("runaway_charger", engine="simavr", short=True)
    assert r.passed, _explain(r)
    assert r.engine == "simavr" and r.reaction_s is not None and r.reaction_s <= r.allowed_reaction_s  # type: ignore[operator]


def test_whole_loop_on_the_micropython_runtime() -> None:
    from packmon import mpy_hub

    ok, why = mpy_hub.available()
    if not ok:
        pytest.skip(why)
    r = cl.run_mpy("runaway_charger")
    assert r.passed, _explain(r)
    assert r.hub == "micropython" and r.reaction_s is not None
