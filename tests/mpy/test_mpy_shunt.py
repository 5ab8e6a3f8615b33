"""The hub on the real MicroPython runtime (unix port, mpy-cross) with a modelled INA228 and INA226 reached
over an I2C-over-socket bridge: simulated ring + shunt -> hub under `micropython` -> real Mosquitto ->
paho. Current, power, energy with the wall clock, and the absent chip's one error line.

Heap: the shunt's modules (shunt, ina228/ina226, energy, persist, shunt_topics) loaded from .mpy files
and its state add about 36 KB to the base hub's 80 KB on this 64-bit port (tools/mpy/heap_matrix.py); these
tests give the process what packmon.mpy_hub.heap_for() says the config needs (120 KB). On an ESP32 without
PSRAM the hub with a shunt is frozen into the firmware, where bytecode stays in flash (docs/hub.md "Memory")."""

from __future__ import annotations

import json
import time

import pytest
from packmon import mpy_hub
from packmon.sim import ina
from packmon.sim.model_ring import ModelRing

ok, why = mpy_hub.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

MV = [3300, 3321, 3287, 3310]
P = "packmonitor/bank1"
DAY = 86400


def cfg(port: int, tmp_path, chip: str, **shunt) -> dict:
    return {"mqtt": {"host": "127.0.0.1", "port": port, "timeout_s": 1, "keepalive_s": 2},
            "scan_interval_s": 0.5, "stale_after_s": 2, "alarms": {"comms_after_s": 2},
            "state_file": str(tmp_path / "state.json"),
            "shunt": {"enabled": True, "chip": chip, "shunt_ohms": 0.0005,
                      "max_current_a": 200 if chip == "ina228" else 150, **shunt}}


@pytest.mark.parametrize("chip, amps", [("ina228", 42.5), ("ina226", -17.25)])
def test_shunt_end_to_end_on_the_real_runtime(mosquitto, subscriber_factory, tmp_path, chip: str,
                                             amps: float) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    model = ina.make_model(chip, 0.0005, lambda t: amps, time.monotonic)
    cycles = 16 if chip == "ina228" else 24  # the INA226 averages 2.1 s windows
    with mpy_hub.MpyHub(ModelRing(4, mv=list(MV), temp=[250] * 4), cfg(mosquitto.port, tmp_path, chip),
                        cycles=cycles, i2c_model=model, wall=9800 * DAY + 7200,
                        heap=mpy_hub.heap_for(cfg(0, tmp_path, chip))) as hub:
        assert hub.wait(120) == 0, "\n".join(hub.lines[-20:])
    assert any(f"shunt ok {round(amps * 1000)} mA" in line or "shunt ok" in line for line in hub.lines)
    sub.wait_for(lambda s: f"{P}/bank/energy" in s.latest and f"{P}/shunt" in s.latest)
    assert abs(float(sub.latest[f"{P}/bank/current"]) - amps) < 0.01
    assert abs(float(sub.latest[f"{P}/bank/power"]) - amps * sum(MV) / 1000) < 0.5
    e = json.loads(sub.latest[f"{P}/bank/energy"])
    true_ah = model.true_charge_as / 3600
    key = "in_ah" if amps > 0 else "out_ah"
    assert e["today"] == "2026-10-31" and e[key] > 0 and e["today_" + key] == e[key]
    # the hub stopped a cycle (or, for the INA226, a window) after the model's last conversion
    assert abs(e[key] - abs(true_ah)) < abs(amps) * 2.5 / 3600 + 0.002
    sh = json.loads(sub.latest[f"{P}/shunt"])
    assert sh["chip"] == chip and sh["ok"] is True and sh["io_errors"] == 0 and sh["coverage"] > 0.9
    assert sub.latest[f"{P}/pack/1/voltage"] == b"3.300"
    # the energy counters were written to the state file for the next start
    state = (tmp_path / "state.json").read_text()
    assert state.startswith("packmon-state 1 ") and '"energy"' in state


def test_absent_shunt_on_the_real_runtime(mosquitto, subscriber_factory, tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    model = ina.make_model("ina228", 0.0005, lambda t: 5.0, time.monotonic)
    model.absent = True
    c = cfg(mosquitto.port, tmp_path, "ina228")
    with mpy_hub.MpyHub(ModelRing(2, mv=MV[:2], temp=[250] * 2), c, i2c_model=model, heap=mpy_hub.heap_for(c)) as hub:
        sub.wait_for(lambda s: json.loads(s.latest.get(f"{P}/shunt", b"{}")).get("io_errors", 0) >= 4, timeout=30)
        assert sub.latest[f"{P}/bank/current"] == b"" and sub.latest[f"{P}/pack/2/voltage"] == b"3.321"
        errors = [m for t, m, _ in sub.messages if t == f"{P}/error"]
        assert len(errors) == 1 and b"no answer from the INA228 at I2C address 0x40" in errors[0]
        with hub.i2c.lock:
            model.absent = False
        sub.wait_for(lambda s: s.latest.get(f"{P}/bank/current") == b"5.000", timeout=30)
        hub.wait_line("INA228 reading again")
