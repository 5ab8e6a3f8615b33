"""The estimator inside the whole hub: simulated ring + modelled INA228 -> hub.app.Hub -> a real Mosquitto ->
paho. SOC unknown (empty retained) until a rest resync, then published per pack and for the bank with the
health JSON; a chip that stops answering makes SOC unknown again; a chemistry the hub does not know is one
line on <prefix>/error with SOC/health unknown and voltages untouched; estimator state goes through the
persistence store."""

from __future__ import annotations

import json

from hub import config, ocv
from tests.hub.test_hub_shunt import MV, Rig

P = "packmonitor/bank1"


def _rig(port, clock, tmp, battery, amps=0.05):
    rig = Rig.__new__(Rig)
    Rig.__init__(rig, port, clock, tmp, "ina228", amps=amps)
    raw = {"mqtt": {"host": "127.0.0.1", "port": port, "timeout_s": 1}, "scan_interval_s": 1,
           "stale_after_s": 5, "alarms": {"comms_after_s": 3},
           "shunt": {"enabled": True, "chip": "ina228", "shunt_ohms": 0.0005, "max_current_a": 200},
           "battery": battery, "state_file": str(tmp / "state.json")}
    rig.cfg = config.validate(raw, need_wifi=False)
    rig.hub = rig.make_hub()
    return rig


def test_soc_unknown_then_resynced_at_rest_then_unknown_without_current(mosquitto, subscriber_factory, clock,
                                                                       tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    rig = _rig(mosquitto.port, clock, tmp_path, {"enabled": True, "chemistry": "nmc", "capacity_ah": 100,
                                                 "rest_s": 60})
    rig.cycles(20)  # resting (50 mA < C/50) for 20 s: not yet a resync
    sub.wait_for(lambda s: f"{P}/pack/4/voltage" in s.latest and f"{P}/bank/soc" in s.latest)
    assert sub.latest[f"{P}/bank/soc"] == b"" and sub.latest[f"{P}/pack/1/soc"] == b""
    h = json.loads(sub.latest[f"{P}/pack/1/health"])
    assert h["capacity_ah"] is None and h["soh"] is None and h["resistance_mohm"] is None
    assert h["confidence"] == 0 and h["weakest"] is False
    rig.cycles(60)
    want = [ocv.soc_of(ocv.NMC, mv) for mv in MV]
    sub.wait_for(lambda s: s.latest.get(f"{P}/bank/soc", b"") != b"")
    for i, w in enumerate(want):
        assert abs(float(sub.latest[f"{P}/pack/{i + 1}/soc"]) - w / 100) < 0.05
    assert abs(float(sub.latest[f"{P}/bank/soc"]) - min(want) / 100) < 0.05
    assert rig.hub.estimator.events > 0
    assert rig.hub.store.dirty or rig.hub.store.writes > 0  # the resync is worth keeping
    rig.model.absent = True  # the chip stops answering: current unknown
    rig.cycles(2)
    sub.wait_for(lambda s: s.latest.get(f"{P}/bank/soc") == b"")
    assert sub.latest[f"{P}/pack/1/soc"] == b""
    assert sub.latest[f"{P}/pack/1/voltage"] == b"3.300"  # voltage monitoring goes on


def test_unknown_chemistry_is_one_error_line_and_soc_unknown(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    rig = _rig(mosquitto.port, clock, tmp_path, {"enabled": True, "chemistry": "lto", "capacity_ah": 100})
    rig.cycles(5)
    sub.wait_for(lambda s: f"{P}/pack/4/voltage" in s.latest and f"{P}/bank/current" in s.latest)
    errors = [m for t, m, _ in sub.messages if t == f"{P}/error"]
    assert len(errors) == 1 and b"battery.chemistry: 'lto' is not known to the hub" in errors[0]
    assert sub.latest.get(f"{P}/bank/soc", b"") == b""
    assert all(m == b"" for t, m, _ in sub.messages if t.endswith("/soc") or t.endswith("/health"))
    assert sub.latest[f"{P}/pack/2/voltage"] == b"3.312"
    assert rig.hub.estimator is None


def test_battery_without_a_shunt_says_so(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    rig = Rig(mosquitto.port, clock, tmp_path, "ina228")
    raw = {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "timeout_s": 1}, "scan_interval_s": 1,
           "stale_after_s": 5, "battery": {"enabled": True}, "state_file": str(tmp_path / "s.json")}
    rig.cfg = config.validate(raw, need_wifi=False)
    rig.hub = rig.make_hub()
    rig.cycles(3)
    sub.wait_for(lambda s: f"{P}/pack/4/voltage" in s.latest and f"{P}/bank/soc" in s.latest)
    errors = [m for t, m, _ in sub.messages if t == f"{P}/error"]
    assert len(errors) == 1 and b"no shunt block" in errors[0]
    assert sub.latest[f"{P}/bank/soc"] == b""
