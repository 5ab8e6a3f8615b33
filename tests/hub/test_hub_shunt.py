"""The whole hub under CPython with a modelled INA228 / INA226 on its I2C port: simulated ring and shunt
-> hub.app.Hub -> a real Mosquitto -> paho. Current, power, energy (with the NTP day and across a hub
reset), the shunt's diagnostics, and every bad input of issue 12: absent chip, out of range, a wrong
chip, shunt_ohms <= 0 — each one line on <prefix>/error, current and power unknown (empty retained),
voltages untouched, recovery when the chip comes back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packmon.sim import ina
from packmon.sim.model_ring import ModelRing, SimUart

from hub import config
from hub.app import Hub
from hub.port import HostPort, install_cpython_shims

install_cpython_shims()

P = "packmonitor/bank1"
MV = [3300, 3312, 3298, 3305]
DAY = 86400


class Rig:
    def __init__(self, port: int, clock, tmp: Path, chip: str = "ina228", amps=30.0, wall=None, model=None,
                 packs: int = 4, **shunt_over) -> None:
        self.clock = clock
        self.amps = amps if callable(amps) else (lambda t, a=amps: a)
        self.model = model or ina.make_model(chip, 0.0005, lambda t: self.amps(t), lambda: clock.t / 1000)
        self.wall = wall
        sh = {"enabled": True, "chip": chip, "shunt_ohms": 0.0005, "max_current_a": 200 if chip == "ina228" else 150}
        sh.update(shunt_over)
        raw = {"mqtt": {"host": "127.0.0.1", "port": port, "timeout_s": 1}, "scan_interval_s": 1,
               "stale_after_s": 5, "alarms": {"comms_after_s": 3}, "shunt": sh,
               "state_file": str(tmp / "state.json")}
        self.cfg = config.validate(raw, need_wifi=False)
        self.engine = ModelRing(packs, mv=list(MV[:packs]), temp=[250] * packs)
        self.logs: list[str] = []
        self.hub = self.make_hub()

    def make_hub(self) -> Hub:
        port = HostPort(SimUart(self.engine), clock=self.clock, log=lambda lv, m: self.logs.append(f"{lv} {m}"),
                        i2c=self.model, wall=lambda: self.wall)
        return Hub(self.cfg, port)

    def cycles(self, n: int, interval_ms: int = 1000) -> None:
        for _ in range(n):
            self.hub.run_once()
            end = self.clock.t + interval_ms
            while self.clock.t < end:  # what run_forever does between cycles
                self.clock.sleep_ms(250)
                self.hub.idle()


def num(sub, topic: str) -> float:
    return float(sub.latest[topic])


def test_ina228_current_power_energy(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    rig = Rig(mosquitto.port, clock, tmp_path, "ina228", amps=30.0)
    rig.cycles(12)
    sub.wait_for(lambda s: json.loads(s.latest.get(f"{P}/shunt", b"{}")).get("reads") == 11)
    assert abs(num(sub, f"{P}/bank/current") - 30.0) < 0.002
    assert abs(num(sub, f"{P}/bank/power") - 30.0 * sum(MV) / 1000) < 0.15
    e = json.loads(sub.latest[f"{P}/bank/energy"])
    # charge counted from the chip's set-up (the first cycle) to the last read, 11 s at 30 A
    assert abs(e["in_ah"] - 30 * 11 / 3600) < 0.002 and e["out_ah"] == 0
    assert abs(e["in_wh"] - 30 * 11 / 3600 * sum(MV) / 1000) < 0.01
    assert e["today"] is None and e["today_in_wh"] is None  # no NTP time yet
    sh = json.loads(sub.latest[f"{P}/shunt"])
    assert sh["chip"] == "ina228" and sh["ok"] is True and sh["coverage"] == 1.0 and sh["problem"] is None
    assert sh["io_errors"] == 0 and sh["reads"] == 11
    assert sub.latest[f"{P}/pack/1/voltage"] == b"3.300"
    late = subscriber_factory(mosquitto.port, f"{P}/bank/#")
    late.wait_for(lambda s: len(s.messages) >= 4)
    retained = {t for t, _, r in late.messages if r}
    assert {f"{P}/bank/current", f"{P}/bank/power", f"{P}/bank/energy"} <= retained
    assert f"{P}/error" not in sub.latest
    rig.hub.publisher.close()


def test_ina226_discharge_daily_counters_and_coverage(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    rig = Rig(mosquitto.port, clock, tmp_path, "ina226", amps=ina.switching(-40.0, -4.0, 0.6),
              wall=9800 * DAY + 3600)
    rig.cycles(20)
    sub.wait_for(lambda s: json.loads(s.latest.get(f"{P}/shunt", b"{}")).get("reads") == rig.hub.shunt.reads)
    e = json.loads(sub.latest[f"{P}/bank/energy"])
    true_ah = -rig.model.true_charge_as / 3600
    assert e["today"] == "2026-10-31" and e["in_ah"] == 0
    assert abs(e["out_ah"] - true_ah) < 0.012  # all but the window in progress
    assert e["today_out_ah"] == e["out_ah"] and e["today_out_wh"] == e["out_wh"]
    # the average of a 2.11 s window over a load switching every 0.3 s: -22 A within a part-period
    assert abs(num(sub, f"{P}/bank/current") + 22.0) < 3.0
    sh = json.loads(sub.latest[f"{P}/shunt"])
    assert sh["chip"] == "ina226" and sh["coverage"] > 0.95
    rig.hub.publisher.close()


def test_absent_chip_then_plugged_in(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    rig = Rig(mosquitto.port, clock, tmp_path, "ina228", amps=12.5)
    rig.model.absent = True
    rig.cycles(6)
    sub.wait_for(lambda s: json.loads(s.latest.get(f"{P}/shunt", b"{}")).get("io_errors") == 6)
    errors = [m for t, m, _ in sub.messages if t == f"{P}/error"]
    assert len(errors) == 1 and b"no answer from the INA228 at I2C address 0x40" in errors[0]
    assert sub.latest[f"{P}/bank/current"] == b"" and sub.latest[f"{P}/bank/power"] == b""
    assert sum(1 for t, m, _ in sub.messages if t == f"{P}/bank/current") == 1  # cleared once, not every cycle
    assert sub.latest[f"{P}/pack/4/voltage"] == b"3.305"  # voltage monitoring goes on
    assert json.loads(sub.latest[f"{P}/bank/state"])["voltage"] == pytest.approx(sum(MV) / 1000)
    sh = json.loads(sub.latest[f"{P}/shunt"])
    assert sh["ok"] is False and sh["current"] is None and "no answer" in sh["problem"]
    rig.model.absent = False
    rig.cycles(3)
    sub.wait_for(lambda s: s.latest.get(f"{P}/bank/current") == b"12.500")
    assert len([m for t, m, _ in sub.messages if t == f"{P}/error"]) == 1
    assert any("INA228 reading again" in x for x in rig.logs)
    rig.hub.publisher.close()


def test_out_of_range_and_wrong_chip(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    amps = [20.0]
    rig = Rig(mosquitto.port, clock, tmp_path, "ina228", amps=lambda t: amps[0])
    rig.cycles(3)
    amps[0] = 260.0
    rig.cycles(4)
    sub.wait_for(lambda s: s.latest.get(f"{P}/bank/current") == b"")
    # the cycles' messages may still be on their way: wait for the last cycle's shunt state (a race that
    # failed CI once, reading an earlier cycle's count of 0)
    sub.wait_for(lambda s: json.loads(s.latest.get(f"{P}/shunt", b"{}") or b"{}").get("out_of_range", 0) >= 3)
    errors = [m for t, m, _ in sub.messages if t == f"{P}/error"]
    assert len(errors) == 1 and b"reading out of range" in errors[0]
    assert json.loads(sub.latest[f"{P}/shunt"])["out_of_range"] >= 3
    amps[0] = -15.0
    rig.cycles(3)
    sub.wait_for(lambda s: s.latest.get(f"{P}/bank/current") == b"-15.000")
    rig.hub.publisher.close()
    # an INA226 where an INA228 is configured
    sub2 = subscriber_factory(mosquitto.port, f"{P}/error")
    model = ina.make_model("ina226", 0.0005, lambda t: 1.0, lambda: clock.t / 1000)
    rig2 = Rig(mosquitto.port, clock, tmp_path, "ina228", model=model)
    rig2.cycles(3)
    sub2.wait_for(lambda s: s.messages)
    assert [m for _, m, _ in sub2.messages] == [
        b"shunt: the device at I2C address 0x40 is an INA226, not an INA228: set shunt.chip (or shunt.address) "
        b"to match; current is unknown"]
    rig2.hub.publisher.close()


def test_bad_shunt_ohms_keeps_the_hub_running(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    rig = Rig(mosquitto.port, clock, tmp_path, "ina228", shunt_ohms=0)
    rig.cycles(4)
    sub.wait_for(lambda s: f"{P}/shunt" in s.latest and f"{P}/pack/1/voltage" in s.latest)
    errors = [m for t, m, _ in sub.messages if t == f"{P}/error"]
    assert len(errors) == 1 and b"shunt.shunt_ohms: must be above 0, got 0" in errors[0]
    assert sub.latest[f"{P}/bank/current"] == b""
    assert rig.model.transactions == 0  # nothing was sent to the chip
    rig.hub.publisher.close()


def test_power_unknown_while_a_pack_is_stale(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    rig = Rig(mosquitto.port, clock, tmp_path, "ina228", amps=10.0)
    rig.cycles(3)
    sub.wait_for(lambda s: f"{P}/bank/power" in s.latest and s.latest[f"{P}/bank/power"] != b"")
    rig.engine.remove_node(2)  # the ring changes: until it is enumerated again, not every pack is known
    rig.engine.insert_node(2)
    rig.engine.broken = True
    rig.cycles(7)
    sub.wait_for(lambda s: s.latest.get(f"{P}/bank/power") == b"")
    assert sub.latest[f"{P}/bank/current"] == b"10.000"  # the current is still known
    e = json.loads(sub.latest[f"{P}/bank/energy"])
    assert e["wh_gaps"] >= 1
    rig.hub.publisher.close()


def test_energy_survives_a_hub_reset(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    rig = Rig(mosquitto.port, clock, tmp_path, "ina228", amps=50.0, wall=9800 * DAY)
    rig.cycles(10)
    rig.hub.store.service(clock.t, force=True)  # as at a clean shutdown
    before = rig.hub.energy.snapshot()
    assert before["in_mah"] > 100
    rig.hub.publisher.close()
    # the hub restarts (new Hub, same state file); the chip counts from zero again
    rig.hub = rig.make_hub()
    assert rig.hub.energy.in_mah == before["in_mah"] and rig.hub.energy.d_in_mah == before["d_in_mah"]
    sub = subscriber_factory(mosquitto.port, f"{P}/bank/energy")
    rig.cycles(5)
    sub.wait_for(lambda s: json.loads(s.latest.get(f"{P}/bank/energy", b"{}"))["in_ah"] > before["in_mah"] / 1000)
    e = json.loads(sub.latest[f"{P}/bank/energy"])
    assert e["in_ah"] > before["in_mah"] / 1000 and e["today_in_ah"] > before["d_in_mah"] / 1000
    # a day later (NTP): the daily counters start again, the lifetime ones go on
    rig.wall = 9801 * DAY + 10
    rig.cycles(2)
    sub.wait_for(lambda s: json.loads(s.latest[f"{P}/bank/energy"])["today"] == "2026-11-01")
    e = json.loads(sub.latest[f"{P}/bank/energy"])
    assert e["today_in_ah"] < 0.1 and e["in_ah"] > before["in_mah"] / 1000
    rig.hub.publisher.close()
