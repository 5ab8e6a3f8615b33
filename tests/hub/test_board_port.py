"""BoardPort's protection parts against a stand-in `machine` module: outputs driven open before the UART
is opened, polarity, the capped watchdog, the reset button's IRQ, watchdog-fed sockets."""

from __future__ import annotations

import sys
import types

import pytest

from hub import config


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []


REC = Recorder()


class Pin:
    OUT, IN, PULL_UP, IRQ_FALLING = 1, 0, 2, 4

    def __init__(self, n: int, mode: int, pull: int | None = None, value: int | None = None) -> None:
        self.n, self.mode, self.level = n, mode, value
        REC.events.append(("pin", n, mode, value))

    def value(self, v: int | None = None):  # noqa: ANN201
        if v is None:
            return self.level
        self.level = v
        REC.events.append(("level", self.n, v))
        return None

    def irq(self, trigger: int, handler) -> None:  # noqa: ANN001
        self.handler = handler
        REC.events.append(("irq", self.n, trigger))


class WDT:
    def __init__(self, timeout: int) -> None:
        REC.events.append(("wdt", timeout))

    def feed(self) -> None:
        REC.events.append(("feed",))


class UART:
    def __init__(self, *a, **k) -> None:  # noqa: ANN002, ANN003
        REC.events.append(("uart",))

    def write(self, buf) -> int:  # noqa: ANN001
        return len(buf)

    def readinto(self, buf) -> None:  # noqa: ANN001
        return None

    def init(self, **k) -> None:  # noqa: ANN003
        REC.events.append(("uart_init", k))


@pytest.fixture
def machine(monkeypatch):
    m = types.ModuleType("machine")
    m.Pin, m.WDT, m.UART = Pin, WDT, UART
    m.reset_cause = lambda: 1
    monkeypatch.setitem(sys.modules, "machine", m)
    REC.events.clear()
    return m


def cfg(**over):
    raw = {"wifi": {"ssid": "x"}, "mqtt": {"host": "h"},
           "outputs": {"charge_enable": {"pin": 25}, "discharge_enable": {"pin": 26, "inverted": True}},
           "protect": {"reset_pin": 32}}
    raw.update(over)
    return config.validate(raw)


def test_outputs_open_before_the_uart_and_the_watchdog_is_capped(machine) -> None:
    from hub.port import BoardPort

    port = BoardPort(cfg())
    ev = REC.events
    uart = ev.index(("uart",))
    assert ("pin", 25, Pin.OUT, 0) in ev[:uart]  # charge: low = de-energised = open
    assert ("pin", 26, Pin.OUT, 1) in ev[:uart]  # inverted discharge: its open level is high
    assert ("wdt", 8000) in ev  # watchdog_s 30 capped at protect.watchdog_s 8
    port.setup_outputs([(25, False), (26, True), (None, False), (None, False)], 32)
    REC.events.clear()
    port.set_output(0, 1)
    port.set_output(1, 1)
    port.set_output(2, 1)  # no pin: nothing driven
    assert REC.events == [("level", 25, 1), ("level", 26, 0)]
    assert list(port.out_state) == [1, 1, 1, 0]
    assert not port.reset_pressed()
    port._button.handler(port._button)  # the IRQ of a press, however short
    assert port.reset_pressed() and not port.reset_pressed()


def test_watchdog_without_outputs_is_unchanged_and_zero_is_not_off_with_outputs(machine) -> None:
    from hub.port import BoardPort

    BoardPort(config.validate({"wifi": {"ssid": "x"}, "mqtt": {"host": "h"}}))
    assert ("wdt", 30000) in REC.events and not [e for e in REC.events if e[0] == "pin"]
    REC.events.clear()
    BoardPort(cfg(watchdog_s=0))
    assert ("wdt", 8000) in REC.events


def test_sockets_feed_the_watchdog_before_every_blocking_call(machine) -> None:
    from hub.port import BoardPort

    port = BoardPort(cfg())

    class Raw:
        def connect(self, a): REC.events.append(("connect",))  # noqa: ANN001, E704
        def read(self, n): REC.events.append(("read",)); return b"x"  # noqa: ANN001, E702, E704
        def write(self, b, n=None): REC.events.append(("write",)); return 1  # noqa: ANN001, E702, E704

    class Mod:
        def socket(self, *a): return Raw()  # noqa: ANN002, E704
        def getaddrinfo(self, *a): REC.events.append(("dns",)); return []  # noqa: ANN002, E702, E704

    from hub import port as port_mod

    mod = port_mod._FedSockets(Mod(), port.feed_watchdog)
    REC.events.clear()
    mod.getaddrinfo("h", 1)
    s = mod.socket()
    s.connect(("h", 1))
    s.write(b"a")
    s.read(1)
    names = [e[0] for e in REC.events]
    assert names == ["feed", "dns", "feed", "feed", "connect", "feed", "write", "feed", "read"]


def test_the_ring_uart_switches_stop_bits_keeping_every_other_setting(machine) -> None:
    """A SNAP goes out with two stop bits (docs/protocol.md 3.5): RingUart.stop_bits re-inits the UART with the
    baud rate, pins and timeout it was opened with, so nothing falls back to a default."""
    from hub.port import BoardPort

    port = BoardPort(cfg(uart={"id": 2, "tx": 17, "rx": 16, "baud": 9600}))
    port.uart.stop_bits(2)
    port.uart.stop_bits(1)
    inits = [e[1] for e in REC.events if e[0] == "uart_init"]
    assert inits == [{"baudrate": 9600, "bits": 8, "parity": None, "stop": 2, "tx": 17, "rx": 16, "timeout": 0},
                     {"baudrate": 9600, "bits": 8, "parity": None, "stop": 1, "tx": 17, "rx": 16, "timeout": 0}]
    assert port.uart.write(b"ab") == 2 and port.uart.readinto(bytearray(4)) is None
