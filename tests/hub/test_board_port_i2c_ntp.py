"""hub.port.BoardPort's I2C bus and NTP wall clock, with stand-ins for MicroPython's machine, network and
ntptime modules: the bus is built from the shunt's pins, and the wall clock stays None until NTP answers,
retrying every 10 minutes (never every cycle), then once a day."""

from __future__ import annotations

import sys
import time
import types

import pytest

from hub import config
from hub import port as port_mod


class Pin:
    def __init__(self, n: int) -> None:
        self.n = n


def fake_modules(monkeypatch, ntp_fail: list[bool]) -> dict:
    made: dict = {"i2c": [], "ntp_calls": 0}
    machine = types.ModuleType("machine")
    machine.UART = lambda *a, **k: types.SimpleNamespace(write=len, readinto=lambda b: None, init=lambda **kw: None)
    machine.WDT = lambda **k: types.SimpleNamespace(feed=lambda: None)
    machine.reset_cause = lambda: 1
    machine.Pin = Pin

    def i2c(*args, **kw):
        made["i2c"].append(("I2C", args, kw["scl"].n, kw["sda"].n, kw["freq"]))
        return "bus"

    def soft(**kw):
        made["i2c"].append(("SoftI2C", (), kw["scl"].n, kw["sda"].n, kw["freq"]))
        return "soft bus"

    machine.I2C = i2c
    machine.SoftI2C = soft
    ntptime = types.ModuleType("ntptime")

    def settime() -> None:
        made["ntp_calls"] += 1
        if ntp_fail[0]:
            raise OSError(110)

    ntptime.settime = settime
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "ntptime", ntptime)
    return made


@pytest.fixture
def board(monkeypatch):
    now = [1000]
    monkeypatch.setattr(port_mod, "ticks_ms", lambda: now[0])
    fail = [True]
    made = fake_modules(monkeypatch, fail)
    cfg = config.validate({"mqtt": {"host": "h"}, "shunt": {"enabled": True, "i2c": {"sda": 25, "scl": 26}}},
                          need_wifi=False)
    logs: list[str] = []
    p = port_mod.BoardPort(cfg)
    p._log = lambda level, msg: logs.append(msg)
    p._wlan = types.SimpleNamespace(isconnected=lambda: True)
    return p, now, fail, made, cfg, logs


def test_i2c_bus_from_the_config(board) -> None:
    p, _, _, made, cfg, _ = board
    assert p.i2c(cfg["shunt"]["i2c"]) == "bus"
    assert made["i2c"][-1] == ("I2C", (0,), 26, 25, 400000)
    assert p.i2c({**cfg["shunt"]["i2c"], "id": -1}) == "soft bus"
    assert made["i2c"][-1][0] == "SoftI2C"


def test_wall_clock_waits_for_ntp_on_a_slow_retry(board) -> None:
    p, now, fail, made, _, logs = board
    assert p.wall_time() is None and made["ntp_calls"] == 1
    assert any("daily counters wait for the time" in x for x in logs)
    for _ in range(100):  # cycles within the next ten minutes: no new attempt
        now[0] += 5000
        assert p.wall_time() is None
    assert made["ntp_calls"] == 1
    now[0] += 100_000  # past ten minutes
    fail[0] = False
    t = p.wall_time()
    # seconds since 2000-01-01 UTC, whatever the port's own epoch (CPython here: 1970)
    assert made["ntp_calls"] == 2 and t is not None and abs(t - (time.time() - 946684800)) < 5
    now[0] += 3_600_000
    assert p.wall_time() is not None and made["ntp_calls"] == 2  # the next sync is a day later
    now[0] += 86_400_000
    p.wall_time()
    assert made["ntp_calls"] == 3


def test_no_wifi_no_ntp_attempt(board) -> None:
    p, now, _, made, _, _ = board
    p._wlan = types.SimpleNamespace(isconnected=lambda: False)
    assert p.wall_time() is None and made["ntp_calls"] == 0
