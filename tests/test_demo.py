"""`packmon demo`, the README's main command, run as a user runs it (the installed console script)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import secure_broker as sb

ROOT = Path(__file__).resolve().parents[1]


def packmon(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("packmon", path=str(Path(sys.executable).parent)) or shutil.which("packmon")
    cmd = [exe] if exe else [sys.executable, "-m", "packmon.cli"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tools'}"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_demo_with_its_embedded_broker() -> None:
    r = packmon("demo", "--packs", "4", "--scans", "3", "--interval", "0.2", "--no-table")
    assert r.returncode == 0, r.stderr
    assert "(embedded)" in r.stdout and "mosquitto_sub -h 127.0.0.1" in r.stdout
    assert "scan 3: 4/4 packs fresh" in r.stdout
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("3 scans,") and int(last.split()[2]) > 20  # messages published


def test_demo_publishes_to_a_given_broker(mosquitto, subscriber_factory) -> None:
    sub = subscriber_factory(mosquitto.port, "packmonitor/#")
    r = packmon("demo", "--packs", "5", "--scans", "3", "--interval", "0.2", "--no-table", "--bank", "shed",
                "--broker", f"mqtt://127.0.0.1:{mosquitto.port}")
    assert r.returncode == 0, r.stderr
    sub.wait_for(lambda s: "packmonitor/shed/bank/state" in s.latest)
    assert json.loads(sub.latest["packmonitor/shed/bank/state"])["packs"] == 5
    assert sub.latest["packmonitor/shed/status"] == b"offline"  # it closed cleanly at the end


def test_demo_publishes_home_assistant_discovery(mosquitto, subscriber_factory, tmp_path: Path) -> None:
    sub = subscriber_factory(mosquitto.port, "ha/#")
    r = packmon("demo", "--packs", "3", "--scans", "9", "--interval", "0.1", "--no-table", "--bank", "shed",
                "--broker", f"mqtt://127.0.0.1:{mosquitto.port}", "--discovery", "ha")
    assert r.returncode == 0, r.stderr
    sub.wait_for(lambda s: "ha/sensor/packmon_shed/pack_3_voltage/config" in s.latest)
    assert json.loads(sub.latest["ha/sensor/packmon_shed/bank_voltage/config"])["~"] == "packmonitor/shed"
    assert sub.latest["ha/sensor/packmon_shed/pack_4_voltage/config"] == b""  # beyond the ring: removed
    # the discovery section of --mqtt-config is used too (it was dropped before)
    sub2 = subscriber_factory(mosquitto.port, "homeassistant/#")
    conf = tmp_path / "config.json"
    conf.write_text(json.dumps({"bank": "barn", "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
                                "discovery": {"enabled": True}}))
    r = packmon("demo", "--packs", "2", "--scans", "9", "--interval", "0.1", "--no-table", "--mqtt-config", str(conf))
    assert r.returncode == 0, r.stderr
    sub2.wait_for(lambda s: "homeassistant/binary_sensor/packmon_barn/alarm_comms/config" in s.latest)


def test_demo_over_tls_with_credentials_from_a_config_file(tmp_path: Path) -> None:
    ok, why = sb.available()
    if not ok:
        pytest.skip(why)
    pki = sb.make_pki(tmp_path)
    broker = sb.start(tmp_path, pki)
    reader = sb.Reader(broker.port, pki)
    try:
        conf = tmp_path / "config.json"
        conf.write_text(json.dumps({"bank": "garage", "mqtt": sb.hub_mqtt(broker.port, pki)}))
        r = packmon("demo", "--packs", "3", "--scans", "3", "--interval", "0.2", "--no-table",
                    "--mqtt-config", str(conf))
        assert r.returncode == 0, r.stderr
        assert f"mqtts://127.0.0.1:{broker.port}" in r.stdout and "-u hub -P '<password>'" in r.stdout
        assert sb.password("hub") not in r.stdout + r.stderr
        topics = reader.topics()
        assert topics["packmonitor/garage/pack/3/voltage"]
    finally:
        reader.close()
        broker.stop()


def test_demo_refuses_secrets_on_the_command_line_and_bad_config(tmp_path: Path) -> None:
    r = packmon("demo", "--scans", "1", "--broker", "mqtt://hub:secret@127.0.0.1:1883")
    assert r.returncode != 0 and "--mqtt-config" in r.stderr
    conf = tmp_path / "config.json"
    conf.write_text(json.dumps({"mqtt": {"host": "h", "tls": {"enabled": True}}}))
    r = packmon("demo", "--scans", "1", "--mqtt-config", str(conf))
    assert r.returncode != 0 and "mqtt.tls.ca" in r.stderr


def test_demo_on_the_micropython_runtime() -> None:
    from packmon import mpy_hub

    ok, why = mpy_hub.available()
    if not ok:
        pytest.skip(why)
    r = packmon("demo", "--packs", "4", "--scans", "3", "--interval", "0.2", "--hub", "micropython")
    assert r.returncode == 0, r.stderr
    assert "MicroPython unix port, heap 100k" in r.stdout
    assert "mqtt: connected" in r.stdout and "cycle 3 packs 4 fresh 4" in r.stdout


@pytest.mark.parametrize("chip", ["ina228", "ina226"])
def test_demo_with_a_shunt(mosquitto, subscriber_factory, chip: str) -> None:
    sub = subscriber_factory(mosquitto.port, "packmonitor/#")
    r = packmon("demo", "--packs", "4", "--scans", "8", "--interval", "0.5", "--no-table", "--bank", f"s{chip}",
                "--shunt", chip, "--broker", f"mqtt://127.0.0.1:{mosquitto.port}")
    assert r.returncode == 0, r.stderr
    p = f"packmonitor/s{chip}"
    sub.wait_for(lambda s: f"{p}/bank/energy" in s.latest and s.latest.get(f"{p}/bank/current"))
    # the compressed day starts at night: inverter loads discharge the bank
    assert float(sub.latest[f"{p}/bank/current"]) < -1.0
    assert float(sub.latest[f"{p}/bank/power"]) < -20.0
    e = json.loads(sub.latest[f"{p}/bank/energy"])
    assert e["out_wh"] > 0 and e["today"] is not None
    assert json.loads(sub.latest[f"{p}/shunt"])["chip"] == chip
    assert "current -" in r.stdout


def test_demo_with_a_shunt_on_the_micropython_runtime(mosquitto, subscriber_factory) -> None:
    from packmon import mpy_hub

    ok, why = mpy_hub.available()
    if not ok:
        pytest.skip(why)
    sub = subscriber_factory(mosquitto.port, "packmonitor/#")
    r = packmon("demo", "--packs", "4", "--scans", "6", "--interval", "0.5", "--hub", "micropython",
                "--shunt", "ina228", "--bank", "mpyshunt", "--broker", f"mqtt://127.0.0.1:{mosquitto.port}")
    assert r.returncode == 0, r.stderr
    # the heap a shunt needs there (packmon.mpy_hub.heap_for: 84 KB base + 40 KB shunt + 4 KB, docs/hub.md "Memory")
    assert "heap 128k" in r.stdout and "shunt ok" in r.stdout
    sub.wait_for(lambda s: s.latest.get("packmonitor/mpyshunt/bank/current"))
    assert float(sub.latest["packmonitor/mpyshunt/bank/current"]) < -1.0
