"""The CI-sized accuracy case of issue 12: the hub's estimator (hub/soc.py, hub/health.py) against the PyBaMM
truth (packmon.sim.cells) through the modelled sensors, 4 packs of 4P Chen2020 with pack 3 at -15 % capacity,
3 simulated days. Each figure is checked against the issue's table. Skipped only when pybamm is not
importable (.ci/install-deps.sh installs it: the `accuracy` extra)."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("pybamm")

from packmon import accuracy  # noqa: E402

# measured for this case (docs/soc.md): the bank SOC is off by up to 5.4 % (rms 2.9 %): the first rest reads the
# generic NMC table where it is ~5 % above Chen2020, and in 3 days no rest follows a full charge (so the full
# reading's bias is never learned) and the weak pack is counted with the nominal capacity until its first
# capacity measurement. Strict: when the estimator meets the target this xfail fails, until the marker goes.
SOC_MISS = pytest.mark.xfail(strict=True, reason="bank SOC max error 5.4 % against a 3 % target (docs/soc.md)")


CI_CASE = ["accuracy", "--packs", "4", "--days", "3", "--weak-pack", "3", "--jobs", "2"]


def _run(*extra: str) -> dict:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    accuracy.register(sub)
    return accuracy.run(p.parse_args([*CI_CASE, *extra]), log=lambda s: None)


@pytest.fixture(scope="module")
def res() -> dict:
    return _run()


@SOC_MISS
def test_bank_soc_within_3_pct(res: dict) -> None:
    assert res["soc_max_abs_error_pct"] is not None and res["soc_max_abs_error_pct"] <= 3.0


def test_soc_is_known_after_the_first_rest_and_stays_known(res: dict) -> None:
    assert res["soc_known_after_h"] is not None and res["soc_known_after_h"] < 6
    assert res["soc_unknown_after_first_pct"] == 0


def test_resistance_within_15_pct(res: dict) -> None:
    assert res["resistance_max_error_pct"] is not None and res["resistance_max_error_pct"] <= 15.0
    assert res["resistance_steps_min"] >= 10


def test_capacity_measured_within_10_pct_after_2_cycles(res: dict) -> None:
    # the issue's +-5 % is after 3 cycles: 3 days hold 2 (the 14-day default run checks 5 %, docs/soc.md)
    assert res["capacity_measurements_min"] >= 2
    assert res["capacity_max_error_any_pct"] <= 10.0


def test_weak_pack_named_within_2_cycles_and_no_other(res: dict) -> None:
    assert res["weakest_found_after_cycles"] is not None and res["weakest_found_after_cycles"] <= 2
    assert res["false_weakest"] == 0
    assert [p["pack"] for p in res["packs_detail"] if p["weakest"]] == [3]


def test_switching_load_bias_under_half_a_pct(res: dict) -> None:
    assert abs(res["switching_load_charge_bias_pct"]) <= 0.5
    # and the test can tell: sampling the averaged current once per scan instead is visibly off
    assert abs(res["switching_load_sampled_bias_pct"]) > 0.5


def test_offset_learned(res: dict) -> None:
    assert abs(res["offset_learned_ma"] - 20.0) <= 5.0


def test_daily_maxima_cover_the_run(res: dict) -> None:
    daily = res["soc_daily_max_abs_error_pct"]
    assert len(daily) == 3
    assert max(d for d in daily if d is not None) == res["soc_max_abs_error_pct"]


def test_oracle_gives_the_estimator_the_true_offset_and_capacities(res: dict) -> None:
    # the diagnostic behind docs/soc.md's "what limits day 0-1": the same truth (cached by the run above), the
    # estimator handed the sensor's offset and every pack's capacity from the first scan
    o = _run("--no-switching", "--oracle", "offset,capacity")
    assert o["oracle"] == ["offset", "capacity"]
    assert o["offset_learned_ma"] == 20.0
    assert o["capacity_max_error_any_pct"] is not None and o["capacity_max_error_any_pct"] <= 0.01
    assert res["capacity_max_error_any_pct"] > 0.5  # and without it they are learned, with an error
    with pytest.raises(accuracy.ToolError, match="--oracle gain"):
        _run("--no-switching", "--oracle", "gain")


def test_truth_ocv_table_is_the_cells_equilibrium_curve() -> None:
    from packmon.sim import cells

    t = cells.truth_ocv_table("Chen2020")
    assert [s for s, _ in t] == list(range(0, 10001, 500))
    assert all(t[k + 1][1] > t[k][1] for k in range(len(t) - 1))
    # the set's 100 % state rests at 4.20 V (a C/20 charge curve, as until 2026-12-06, put it at 4.27 V); its 0 %,
    # where a C/20 discharge meets the 2.5 V cut-off, a little above the cut-off
    assert abs(t[-1][1] - 4200) <= 5
    assert 2500 - 30 <= t[0][1] <= 2700


def test_the_cells_own_table_beats_the_generic_one(res: dict) -> None:
    from hub import ocv

    generic = ocv.TABLES["nmc"]
    own = _run("--no-switching", "--ocv-table", "truth")
    assert own["ocv_table"] == "truth"
    assert own["soc_max_abs_error_pct"] < res["soc_max_abs_error_pct"] - 0.5
    # given to that run's estimator as its battery.ocv_table, not put into the hub's tables: every later
    # estimator in this process (the Home Assistant test's hub among them) still reads the chemistry's chart
    assert ocv.TABLES["nmc"] is generic
