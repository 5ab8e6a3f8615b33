"""`packmon demo --battery`: one ECM bank behind the nodes' voltages and the shunt's current, the hub's SOC and
energy checked against that bank's truth, through the real ring (model and simavr) and a real broker."""

from __future__ import annotations

import argparse
import json
import time

import pytest

from tests.test_demo import packmon

PREFIX = "packmonitor/bt"


def demo_args(*extra: str) -> argparse.Namespace:
    from packmon import demo

    p = argparse.ArgumentParser()
    demo.register(p.add_subparsers())
    args = p.parse_args(["demo", "--battery", "--bank", "bt", *extra])
    demo.check_battery_args(args)
    return args


def num(sub, topic: str) -> float | None:  # noqa: ANN001
    v = sub.latest.get(topic)
    return float(v) if v else None


def settle(sub, hub) -> None:  # noqa: ANN001
    """Wait until the broker has delivered what the hub published in its last cycle."""
    deadline = time.time() + 5
    while time.time() < deadline:
        with sub.lock:
            n = len(sub.messages)
        time.sleep(0.3)
        with sub.lock:
            if len(sub.messages) == n and n:
                return
    raise AssertionError("the subscriber never went quiet")


def run_and_check(engine: str, scans: int, subscriber_factory, resolution) -> None:  # noqa: ANN001
    from packmon.demo import open_broker
    from packmon.demo_battery import BatteryDemo

    # scans every 150 simulated s from 04:30: the rest before dawn resyncs at ~05:30, the sun is up at 06:00
    args = demo_args("--packs", "4", "--engine", engine, "--interval", "0.05", "--speed", "3000")
    cfg, broker, _url = open_broker(args)
    assert broker is not None and cfg["battery"]["enabled"] and cfg["shunt"]["chip"] == "ina228"
    d = None
    try:
        d = BatteryDemo(args, cfg, [])
        sub = subscriber_factory(broker.port, PREFIX + "/#")
        est = None
        for _ in range(scans):
            d.step()
            est = d.hub.estimator
            if d.scans == 5:  # before an hour of rest: SOC unknown, never a guess
                assert est.bank_soc == -1 and all(est.soc[i] == -1 for i in range(4))
                settle(sub, d.hub)
                assert not sub.latest.get(PREFIX + "/bank/soc")
                assert not sub.latest.get(PREFIX + "/pack/1/soc")
        settle(sub, d.hub)
        sol = d.sol
        assert sol.hour() > 7.0 and est is not None

        # the current and power the hub publishes are the ECM's, within the INA model's errors
        true_a = sol.history(d.read_t)
        assert true_a > 1.0, f"the sun should be charging the bank by now: {true_a} A"
        cur = num(sub, PREFIX + "/bank/current")
        assert cur is not None and abs(cur - true_a) <= 0.005 * abs(true_a) + 0.05, (cur, true_a)
        bank_v = sum(d.set_mv) / 1000
        power = num(sub, PREFIX + "/bank/power")
        assert power is not None and abs(power - true_a * bank_v) <= 0.01 * abs(true_a * bank_v) + 1.0, (
            power, true_a * bank_v)

        # the pack voltages the nodes reported are the ECM's, to the ADC's resolution
        for i, mv in enumerate(d.set_mv):
            got = num(sub, f"{PREFIX}/pack/{i + 1}/voltage")
            assert got is not None and abs(got * 1000 - mv) <= resolution(mv), (i, got, mv)

        # SOC appeared after the resync and follows the bank's true SOC within a few %
        bank_soc = num(sub, PREFIX + "/bank/soc")
        assert bank_soc is not None, "no SOC after an hour of rest"
        assert abs(bank_soc - sol.bank_soc_pct()) <= 4.0, (bank_soc, sol.bank_soc_pct())
        true = sol.socs_pct()
        for i in range(4):
            got = num(sub, f"{PREFIX}/pack/{i + 1}/soc")
            assert got is not None and abs(got - true[i]) <= 4.0, (i, got, true[i])
        # it moved with the charge since the resync (the charge came through the shunt, not the voltages alone)
        assert bank_soc > 36.0 and sol.bank_soc_pct() > 36.0

        # the energy counters moved as the bank's charge did
        e = json.loads(sub.latest[PREFIX + "/bank/energy"])
        hours = sol.t / 3600
        true_in, true_out = sol.q_in_as / 3600, sol.q_out_as / 3600
        assert true_in > 1.0 and abs(e["in_ah"] - true_in) <= 0.01 * true_in + 0.025 * hours, (e, true_in)
        assert abs(e["out_ah"] - true_out) <= 0.02 * true_out + 0.025 * hours, (e, true_out)
        assert e["in_wh"] > 3.0 * e["in_ah"]  # at the bank's ~15 V

        # the live table: the compressed time, the current, the bank's SOC and every pack's, beside the truth
        from packmon.demo_battery import render

        table = render(d, "mqtt://x", [])
        assert "time x3000: 1 s here is 3000 s of the bank's day" in table
        assert f"current {cur:8.3f} A (true {true_a:8.3f} A)" in table
        assert f"bank SOC {bank_soc:5.1f}% (true {sol.bank_soc_pct():5.1f}%)" in table
        rows = [x for x in table.splitlines() if x[:6].strip().isdigit()]
        assert len(rows) == 4 and all(f"({true[i]:5.1f}%)" in rows[i] for i in range(4))
    finally:
        if d is not None:
            d.close()
        broker.stop()


def test_battery_demo_model_ring(subscriber_factory) -> None:
    run_and_check("model", 110, subscriber_factory, lambda mv: 1)


def test_battery_demo_simavr_ring(subscriber_factory) -> None:
    from packmon.sim import simavr_ring

    ok, why = simavr_ring.available()
    if not ok:
        pytest.skip(why)

    def resolution(mv: int) -> int:  # the firmware's report for the ECM's voltage: exact, +-1 LSB of margin
        steps = sorted({simavr_ring.expected_mv(v) for v in range(mv - 40, mv + 40)})
        return max(b - a for a, b in zip(steps, steps[1:], strict=False))

    run_and_check("simavr", 80, subscriber_factory, resolution)


def test_battery_demo_command() -> None:
    r = packmon("demo", "--battery", "--packs", "3", "--scans", "30", "--interval", "0.05", "--speed", "3000",
                "--weak-pack", "2", "--no-table")
    assert r.returncode == 0, r.stderr
    assert "time x3000" in r.stdout and "(embedded)" in r.stdout
    lines = [x for x in r.stdout.splitlines() if x.startswith("scan ")]
    assert len(lines) == 30 and "SOC unknown" in lines[0] and "day 1 04:30" in lines[0]
    assert "SOC unknown" not in lines[-1] and "current -0.0" in lines[-1]  # after the resync, in the rest


@pytest.mark.parametrize(("extra", "why"), [
    (("--shunt", "ina226"), "--battery needs the INA228"),
    (("--hub", "micropython"), "under CPython only"),
    (("--weak-pack", "9"), "--weak-pack 9: must be a pack number 1..8"),
    (("--speed", "0"), "--speed must be"),
    (("--scenario", "drift"), "--battery replaces the scenario"),
])
def test_battery_demo_refuses_bad_options(extra: tuple[str, ...], why: str) -> None:
    r = packmon("demo", "--battery", "--scans", "1", *extra)
    assert r.returncode != 0 and why in r.stderr, r.stderr
