"""Hub config validation: every bad field is named; secrets never leak into logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub import config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid() -> None:
    cfg = config.load(str(ROOT / "hub" / "config.example.json"))
    assert cfg["topic_prefix"] == "packmonitor/bank1"
    assert cfg["mqtt"]["client_id"] == "packmon-bank1"


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"mqtt": {"host": "h", "port": 70000}}, "mqtt.port"),
        ({"mqtt": {"host": ""}}, "mqtt.host"),
        ({"mqtt": {"host": "h"}, "uart": {"baud": "9600"}}, "uart.baud"),
        ({"mqtt": {"host": "h"}, "bank": "my bank/1"}, "bank"),
        ({"mqtt": {"host": "h"}, "scan_interval_s": 20, "stale_after_s": 30}, "stale_after_s"),
        ({"mqtt": {"host": "h"}, "alarms": {"pack_low_v": 4.2, "pack_high_v": 4.1}}, "alarms.pack_low_v"),
        ({"mqtt": {"host": "h", "tls": {"enabled": True}}}, "mqtt.tls.ca"),
        ({"mqtt": {"host": "h", "tls": {"enabled": True, "insecure": True, "cert": "c.pem"}}}, "mqtt.tls.cert/key"),
        ({"mqtt": {"host": "h", "password": "x"}}, "mqtt.user"),
        ({"mqtt": {"host": "h"}, "colour": "red"}, "colour"),
        ({"mqtt": {"host": "h"}, "wifi": "home"}, "wifi"),
        ({"mqtt": {"host": "h"}, "log_level": "loud"}, "log_level"),
        ({"mqtt": {"host": "h"}, "max_packs": 65}, "max_packs"),
        # discovery: the prefix must be a topic prefix, the bank a valid HA object id, the prefix JSON-safe
        ({"mqtt": {"host": "h"}, "discovery": {"enabled": True, "prefix": "home/+/ha"}}, "discovery.prefix"),
        ({"mqtt": {"host": "h"}, "discovery": {"enabled": True, "prefix": "homeassistant/"}}, "discovery.prefix"),
        ({"mqtt": {"host": "h"}, "discovery": {"prefix": "ha#"}}, "discovery.prefix"),
        ({"mqtt": {"host": "h"}, "bank": "Garage", "discovery": {"enabled": True}}, "bank"),
        ({"mqtt": {"host": "h"}, "bank": "shed-2", "discovery": {"enabled": True}}, "bank"),
        ({"mqtt": {"host": "h"}, "topic_prefix": 'a"b', "discovery": {"enabled": True}}, "topic_prefix"),
    ],
)
def test_bad_field_is_named(raw: dict, field: str) -> None:
    with pytest.raises(config.ConfigError) as e:
        config.validate(raw, need_wifi=False)
    assert any(p.startswith(field + ":") for p in e.value.problems), e.value.problems


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(config.ConfigError) as e:
        config.validate({"mqtt": {"port": 0}, "uart": {"tx": 99}}, need_wifi=True)
    fields = {p.split(":")[0] for p in e.value.problems}
    assert {"wifi.ssid", "mqtt.host", "mqtt.port", "uart.tx"} <= fields


def test_tls_insecure_is_explicit() -> None:
    cfg = config.validate({"mqtt": {"host": "h", "tls": {"enabled": True, "insecure": True}}}, need_wifi=False)
    assert cfg["mqtt"]["tls"]["insecure"] is True


def test_unreadable_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot be read"):
        config.load(str(tmp_path / "missing.json"))
    p = tmp_path / "bad.json"
    p.write_text("{ not json")
    with pytest.raises(config.ConfigError, match="not valid JSON"):
        config.load(str(p))


def test_redacted_hides_secrets() -> None:
    cfg = config.validate({"wifi": {"ssid": "s", "password": "wifi-secret"},
                           "mqtt": {"host": "h", "user": "u", "password": "mqtt-secret"}})
    text = json.dumps(config.redacted(cfg))
    assert "wifi-secret" not in text and "mqtt-secret" not in text
    assert cfg["mqtt"]["password"] == "mqtt-secret"  # the original is untouched


def test_validated_configs_share_nothing_with_the_defaults() -> None:
    a = config.validate({"mqtt": {"host": "a.example"}}, need_wifi=False)
    b = config.validate({"mqtt": {"host": "b.example"}}, need_wifi=False)
    assert a["mqtt"]["tls"]["server_hostname"] == "a.example"
    assert b["mqtt"]["tls"]["server_hostname"] == "b.example"
    assert config.DEFAULTS["mqtt"]["tls"]["server_hostname"] == ""
    a["alarms"]["pack_low_v"] = 1.0
    assert config.DEFAULTS["alarms"]["pack_low_v"] == 3.0


def test_bank_names_discovery_cannot_use_are_fine_without_it() -> None:
    assert config.validate({"mqtt": {"host": "h"}, "bank": "Shed-2"}, need_wifi=False)["bank"] == "Shed-2"
    with pytest.raises(config.ConfigError) as e:
        config.validate({"mqtt": {"host": "h"}, "bank": "Shed-2", "discovery": {"enabled": True}}, need_wifi=False)
    assert e.value.problems == ["bank: 'Shed-2' is not valid in a Home Assistant object id, which discovery builds "
                                "from it (packmon_<bank>_...): use lowercase letters, digits and _"]


# -- the shunt block (issue 12): problems are named, and they switch the shunt off, not the hub ------------
SHUNT_OK = {"enabled": True, "chip": "ina228", "address": 64, "shunt_ohms": 0.0005, "max_current_a": 200}


@pytest.mark.parametrize(
    "over, field",
    [
        ({"chip": "ina219"}, "shunt.chip"),
        ({"shunt_ohms": 0}, "shunt.shunt_ohms"),
        ({"shunt_ohms": -0.001}, "shunt.shunt_ohms"),
        ({"shunt_ohms": "0.5m"}, "shunt.shunt_ohms"),
        ({"max_current_a": 0}, "shunt.max_current_a"),
        ({"address": 0x50}, "shunt.address"),
        ({"invert": "yes"}, "shunt.invert"),
        ({"i2c": {"sda": 40}}, "shunt.i2c.sda"),
        ({"i2c": {"id": 2}}, "shunt.i2c.id"),
        ({"i2c": {"freq": 5}}, "shunt.i2c.freq"),
        ({"i2c": "0"}, "shunt.i2c"),
        ({"colour": 1}, "shunt.colour"),
        # 400 A x 0.5 mOhm = 200 mV > the INA228's 163.84 mV
        ({"max_current_a": 400}, "shunt.max_current_a"),
        # 200 A x 0.5 mOhm = 100 mV > the INA226's 81.92 mV
        ({"chip": "ina226"}, "shunt.max_current_a"),
    ],
)
def test_bad_shunt_field_is_named_and_does_not_stop_the_hub(over: dict, field: str) -> None:
    cfg = config.validate({"mqtt": {"host": "h"}, "shunt": {**SHUNT_OK, **over}}, need_wifi=False)
    assert any(p.startswith(field + ":") for p in cfg["shunt_problems"]), cfg["shunt_problems"]


def test_good_shunt_blocks() -> None:
    for sh in (SHUNT_OK, {**SHUNT_OK, "chip": "ina226", "max_current_a": 150},
               {**SHUNT_OK, "shunt_ohms": 0.0001, "max_current_a": 1600}):
        cfg = config.validate({"mqtt": {"host": "h"}, "shunt": sh}, need_wifi=False)
        assert cfg["shunt_problems"] == [], cfg["shunt_problems"]
    cfg = config.validate({"mqtt": {"host": "h"}}, need_wifi=False)
    assert cfg["shunt"]["enabled"] is False and cfg["state_file"] == "/state.json"
    # a disabled block is not checked further
    cfg = config.validate({"mqtt": {"host": "h"}, "shunt": {"shunt_ohms": 0}}, need_wifi=False)
    assert cfg["shunt_problems"] == []


def test_a_validated_config_validates_again() -> None:
    cfg = config.validate({"mqtt": {"host": "h"}, "shunt": {**SHUNT_OK, "shunt_ohms": 0}}, need_wifi=False)
    again = config.validate(json.loads(json.dumps(cfg)), need_wifi=False)
    assert again == cfg and again["shunt_problems"]
