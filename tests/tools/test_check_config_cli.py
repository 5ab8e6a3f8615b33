"""`packmon check-config` (the hub's own validator, hub/config.py) and the CLI's plug-in contract."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest
from packmon import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "hub" / "config.example.json").read_text())


def write(tmp_path: Path, cfg) -> str:
    p = tmp_path / "config.json"
    p.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return str(p)


def with_(path: str, value):
    cfg = json.loads(json.dumps(EXAMPLE))
    *parents, last = path.split(".")
    d = cfg
    for k in parents:
        d = d[k]
    d[last] = value
    return cfg


def test_good_config(tmp_path, run) -> None:
    f = write(tmp_path, EXAMPLE)
    r = run("check-config", f)
    assert r.rc == 0
    assert r.out.strip() == (f"{f}: OK (bank bank1, topics packmonitor/bank1/..., broker 192.168.1.10:1883, "
                             "scan every 5 s)")


def test_good_config_json_hides_secrets(tmp_path, run) -> None:
    r = run("check-config", write(tmp_path, EXAMPLE), "--json")
    d = r.json()
    assert r.rc == 0 and d["ok"] and d["problems"] == []
    assert d["config"]["wifi"]["password"] == "***"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("mqtt.port", 70000, "mqtt.port: 70000 is out of range 1..65535"),
    ("mqtt.host", "", "mqtt.host: is required"),
    ("wifi.ssid", "", "wifi.ssid: is required"),
    ("bank", "my bank", "bank: 'my bank' may only use letters"),
    ("scan_interval_s", "5", "scan_interval_s: must be a number"),
    ("uart.baud", 300, "uart.baud: 300 is out of range 1200..115200"),
    ("alarms.pack_low_v", 4.2, "alarms.pack_low_v: 4.2 must be below alarms.pack_high_v"),
    ("log_level", "loud", "log_level: must be one of"),
    ("mqtt.tls.enabled", True, "mqtt.tls.ca: TLS needs a CA certificate"),
    ("mqtt.tls", {"enabled": True, "ca": "certs/ca.crt"}, "certs/ca.crt not found"),
    ("mqtt.keepalive_s", 3, "mqtt.keepalive_s: 3 must be 0 or longer than scan_interval_s (5)"),
    ("colour", "blue", "colour: unknown field"),
    ("outputs.charge_enable", {"pin": 16}, "outputs.charge_enable.pin: GPIO16 is already used by uart.rx"),
    ("outputs.fan", {"pin": 6}, "outputs.fan.pin: GPIO6 is wired to the ESP32's flash and cannot be used"),
    ("outputs.buzzer", {"pin": 39}, "outputs.buzzer.pin: GPIO39 is input-only on the ESP32"),
    ("protect", {"buzzer_on": ["overheat"]}, "protect.buzzer_on: 'overheat' is not an alarm"),
    ("protect", {"high_v": 2.9}, "protect.low_v: 3.0 must be below protect.high_v (2.9)"),
    ("discovery", {"enabled": True, "prefix": "home/+"}, "discovery.prefix: 'home/+' is not a valid MQTT topic prefix"),
    ("discovery", {"enabled": True, "prefix": "homeassistant", "bank": 1}, "discovery.bank: unknown field"),
])
def test_bad_field_is_named(tmp_path, run, field: str, value, message: str) -> None:
    r = run("check-config", write(tmp_path, with_(field, value)))
    assert r.rc == 1
    assert r.out.splitlines()[0].endswith(": 1 problem")
    assert message in r.out


def test_outputs_a_pin_twice_and_a_strapping_pin_warning(tmp_path, run) -> None:
    cfg = with_("outputs", {"charge_enable": {"pin": 25}, "discharge_enable": {"pin": 25}})
    r = run("check-config", write(tmp_path, cfg))
    assert r.rc == 1 and "outputs.discharge_enable.pin: GPIO25 is already used by outputs.charge_enable.pin" in r.out
    cfg = with_("outputs", {"charge_enable": {"pin": 25}, "discharge_enable": {"pin": 12}})
    r = run("check-config", write(tmp_path, cfg))
    assert r.rc == 0 and "warning: outputs.discharge_enable.pin: GPIO12 is a strapping pin" in r.out
    d = run("check-config", write(tmp_path, cfg), "--json").json()
    assert d["ok"] and d["warnings"][0].startswith("outputs.discharge_enable.pin: GPIO12")


def test_every_problem_at_once(tmp_path, run) -> None:
    cfg = with_("mqtt.port", 0)
    cfg["wifi"]["ssid"] = ""
    cfg["stale_after_s"] = 6
    r = run("check-config", write(tmp_path, cfg), "--json")
    d = r.json()
    assert r.rc == 1 and not d["ok"] and d["config"] is None
    assert [p.split(":")[0] for p in d["problems"]] == ["wifi.ssid", "mqtt.port", "stale_after_s"]


def test_host_config_needs_no_wifi(tmp_path, run) -> None:
    f = write(tmp_path, with_("wifi.ssid", ""))
    assert run("check-config", f).rc == 1
    assert run("check-config", f, "--host").rc == 0


def test_unreadable_and_invalid_json(tmp_path, run) -> None:
    r = run("check-config", str(tmp_path / "nope.json"))
    assert r.rc == 1 and "cannot be read" in r.out
    r = run("check-config", write(tmp_path, "{\"bank\": "))
    assert r.rc == 1 and "not valid JSON" in r.out


# -- the plug-in contract: register(subparsers) per module, absent modules tolerated -------------------------------
def test_every_command_is_registered() -> None:
    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("ring", "sim", "deploy", "flash-node", "check-config"):
        assert name in sub.choices


def test_a_missing_module_leaves_its_command_out(monkeypatch) -> None:
    monkeypatch.setattr(cli, "SUBCOMMANDS", dict(cli.SUBCOMMANDS, not_written_yet="later"))
    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert "later" not in sub.choices and "ring" in sub.choices


def test_a_module_with_a_missing_dependency_says_so(monkeypatch, run) -> None:
    real = importlib.import_module

    def fake(name: str, *a):
        if name == "packmon.bench":
            raise ModuleNotFoundError("No module named 'numpy'", name="numpy")
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", fake)
    r = run("bench", "--sizes", "4")
    assert r.rc == 4
    assert "packmon bench is unavailable in this installation: No module named 'numpy'" in r.err


def test_no_command_prints_help(run) -> None:
    r = run()
    assert r.rc == 2 and "COMMAND" in r.out


def test_bank_not_valid_as_an_object_id_with_discovery(tmp_path, run) -> None:
    cfg = with_("discovery", {"enabled": True, "prefix": "homeassistant"})
    cfg["bank"] = "Garage-2"
    r = run("check-config", write(tmp_path, cfg))
    assert r.rc == 1
    assert "bank: 'Garage-2' is not valid in a Home Assistant object id" in r.out


def test_shunt_block_each_bad_field_named(tmp_path, run) -> None:
    cfg = with_("shunt", {"enabled": True, "chip": "ina226", "shunt_ohms": 0, "address": 99,
                          "i2c": {"scl": 77}, "max_current_a": 200})
    r = run("check-config", write(tmp_path, cfg), "--json")
    assert r.rc == 1
    fields = {p.split(":")[0] for p in json.loads(r.out)["problems"]}
    assert {"shunt.shunt_ohms", "shunt.address", "shunt.i2c.scl"} <= fields
    # within range but beyond the chip's full-scale shunt voltage
    cfg = with_("shunt", {"enabled": True, "chip": "ina226", "shunt_ohms": 0.001, "max_current_a": 100})
    r = run("check-config", write(tmp_path, cfg))
    assert r.rc == 1 and "shunt.max_current_a: 100 A x 0.001 ohm = 100.00 mV is beyond the INA226's" in r.out


def test_shunt_block_good(tmp_path, run) -> None:
    f = write(tmp_path, with_("shunt", {"enabled": True, "chip": "ina228", "shunt_ohms": 0.0005,
                                        "max_current_a": 300}))
    r = run("check-config", f)
    assert r.rc == 0 and "shunt INA228 at 0x40 (0.0005 ohm, 300 A)" in r.out


def test_battery_block_each_bad_field_named(tmp_path, run) -> None:
    cfg = with_("battery", {"enabled": True, "chemistry": "lto", "capacity_ah": -5, "cells_parallel": 2.5,
                            "weak_confidence": 3})
    r = run("check-config", write(tmp_path, cfg), "--json")
    assert r.rc == 1
    probs = json.loads(r.out)["problems"]
    fields = {p.split(":")[0] for p in probs}
    assert {"battery.chemistry", "battery.capacity_ah", "battery.cells_parallel", "battery.weak_confidence"} <= fields
    assert "battery.chemistry: 'lto' is not known to the hub (known: lfp, nmc)" in probs
    assert "battery.capacity_ah: must be above 0, got -5" in probs


def test_battery_block_good(tmp_path, run) -> None:
    cfg = with_("battery", {"enabled": True, "chemistry": "lfp", "capacity_ah": 3, "cells_parallel": 80})
    r = run("check-config", write(tmp_path, cfg))
    assert r.rc == 0 and "SOC/health for LFP packs of 3 Ah x 80P (no shunt block: SOC stays unknown)" in r.out


def test_accuracy_is_a_command() -> None:
    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert "accuracy" in sub.choices
