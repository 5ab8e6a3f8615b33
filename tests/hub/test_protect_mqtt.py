"""Protection through the whole hub (hub.app.Hub) under CPython with a real Mosquitto: P/output/<name>,
trips on P/error, the P/cmd/reset command (on, off, malformed), latches across a restart, and a broker
that hangs never delaying a trip."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

from packmon.sim.model_ring import ModelRing, SimUart

from hub import config
from hub.app import Hub
from hub.port import HostPort, install_cpython_shims

install_cpython_shims()
P = "packmonitor/bank1"
OUTS = {"charge_enable": {"pin": 25}, "discharge_enable": {"pin": 26}, "fan": {"pin": 27}}


def make_hub(port: int, clock, tmp: Path, logs: list[str], engine=None, **protect):
    raw = {"mqtt": {"host": "127.0.0.1", "port": port, "timeout_s": 1}, "scan_interval_s": 1,
           "stale_after_s": 5, "state_file": str(tmp / "state.json"), "outputs": OUTS,
           "protect": {"min_off_s": 5, "stale_s": 3, **protect}}
    cfg = config.validate(raw, need_wifi=False)
    engine = engine or ModelRing(3, mv=3700, temp=250)
    hub = Hub(cfg, HostPort(SimUart(engine), clock=clock, log=lambda lv, m: logs.append(f"{lv} {m}")))
    return hub, engine


def cycles(hub: Hub, clock, n: int) -> None:
    for _ in range(n):
        hub.run_once()
        clock.advance(1)


def out(sub, name: str) -> dict:
    return json.loads(sub.latest[f"{P}/output/{name}"])


def send(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(3)
    c.loop_stop()
    c.disconnect()


def test_outputs_are_published_retained_and_a_trip_goes_to_error(mosquitto, subscriber_factory, clock,
                                                                 tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    logs: list[str] = []
    hub, eng = make_hub(mosquitto.port, clock, tmp_path, logs)
    cycles(hub, clock, 2)
    sub.wait_for(lambda s: f"{P}/output/charge_enable" in s.latest and f"{P}/output/fan" in s.latest)
    assert out(sub, "charge_enable") == {"state": "closed", "reason": "ok", "since": 0.0, "latched": False,
                                            "closed": True}
    assert out(sub, "fan")["state"] == "open" and f"{P}/output/buzzer" not in sub.latest  # buzzer has no pin
    eng.set_pack(1, mv=4160)
    cycles(hub, clock, 1)
    sub.wait_for(lambda s: out(s, "charge_enable")["state"] == "open")
    o = out(sub, "charge_enable")
    assert o["reason"] == "pack_high" and o["since"] == 2.0 and o["latched"] is False
    assert out(sub, "discharge_enable")["state"] == "closed"
    err = sub.wait_for(lambda s: s.latest.get(f"{P}/error"))
    assert err == b"protect: charge_enable opened (pack_high: pack 2 at 4.160 V >= 4.150 V)"
    assert "warning protect: charge_enable opened (pack_high: pack 2 at 4.160 V >= 4.150 V)" in logs
    assert hub.port.out_levels[0] == 0  # de-energised = open
    # a client that connects later sees the retained state
    late = subscriber_factory(mosquitto.port, f"{P}/output/#")
    late.wait_for(lambda s: f"{P}/output/charge_enable" in s.latest)
    assert out(late, "charge_enable")["state"] == "open"
    assert all(r for t, _, r in late.messages)
    hub.publisher.close()


def test_reset_command_clears_a_latch_and_malformed_commands_are_ignored(mosquitto, subscriber_factory, clock,
                                                                          tmp_path) -> None:
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    logs: list[str] = []
    hub, eng = make_hub(mosquitto.port, clock, tmp_path, logs, mqtt_reset=True)
    cycles(hub, clock, 2)
    eng.set_pack(0, mv=4260)  # beyond the absolute maximum: latched
    cycles(hub, clock, 1)
    eng.set_pack(0, mv=3900)
    cycles(hub, clock, 8)
    assert hub.protect.latched[0] and hub.port.out_state[0] == 0
    sub.wait_for(lambda s: f"{P}/output/charge_enable" in s.latest and out(s, "charge_enable")["latched"] is True)
    assert (tmp_path / "state.json").exists() and "charge_enable" in (tmp_path / "state.json").read_text()
    send(mosquitto.port, f"{P}/cmd/reset", b"charge")  # not an output name
    send(mosquitto.port, f"{P}/cmd/reset", b"\xff\xfe")
    for _ in range(10):
        cycles(hub, clock, 1)
        time.sleep(0.05)
    assert hub.protect.latched[0] and hub.port.out_state[0] == 0
    assert sum("reset command ignored" in x for x in logs) == 2, logs
    send(mosquitto.port, f"{P}/cmd/reset", b"charge_enable", retain=True)
    deadline = time.time() + 5
    while hub.protect.latched[0] and time.time() < deadline:
        cycles(hub, clock, 1)
        time.sleep(0.05)
    cycles(hub, clock, 1)
    assert not hub.protect.latched[0] and hub.port.out_state[0] == 1
    assert any("reset command for charge_enable: cleared" in x for x in logs)
    sub.wait_for(lambda s: out(s, "charge_enable") == {**out(s, "charge_enable"), "state": "closed",
                                                       "latched": False})
    # the retained command was deleted after use: a later subscriber finds none
    late = subscriber_factory(mosquitto.port, f"{P}/cmd/#")
    time.sleep(0.3)
    assert not [m for t, m, r in late.messages if m]
    hub.publisher.close()


def test_reset_command_while_the_topic_is_off_changes_nothing(mosquitto, clock, tmp_path) -> None:
    logs: list[str] = []
    hub, eng = make_hub(mosquitto.port, clock, tmp_path, logs)  # mqtt_reset: false (the default)
    cycles(hub, clock, 2)
    eng.set_pack(2, mv=2750)
    cycles(hub, clock, 1)
    eng.set_pack(2, mv=3700)
    assert hub.protect.latched[1]
    send(mosquitto.port, f"{P}/cmd/reset", b"discharge_enable")
    for _ in range(10):
        cycles(hub, clock, 1)
        time.sleep(0.05)
    assert hub.protect.latched[1] and hub.port.out_state[1] == 0
    assert not any("reset command" in x for x in logs)
    hub.port.press_reset()  # the button works whatever the topic
    cycles(hub, clock, 1)
    assert not hub.protect.latched[1] and hub.port.out_state[1] == 1
    hub.publisher.close()


def test_latch_survives_a_restart_and_outputs_stay_open_until_the_first_good_scan(mosquitto, clock,
                                                                                 tmp_path) -> None:
    logs: list[str] = []
    hub, eng = make_hub(mosquitto.port, clock, tmp_path, logs)
    cycles(hub, clock, 2)
    eng.set_pack(0, mv=4300)
    cycles(hub, clock, 1)
    eng.set_pack(0, mv=3900)
    hub.publisher.close()
    eng.broken = True
    hub2, _ = make_hub(mosquitto.port, clock, tmp_path, logs, engine=eng)
    assert list(hub2.port.out_state) == [0, 0, 0, 0]
    assert any("latched open (latched_high) from before the restart" in x for x in logs)
    cycles(hub2, clock, 3)  # the ring is down: nothing closes
    assert all(c == 0 for _, _, c in hub2.port.out_log)
    eng.broken = False
    cycles(hub2, clock, 3)
    assert hub2.port.out_state[1] == 1 and hub2.port.out_state[0] == 0  # discharge back, charge latched
    hub2.publisher.close()


def test_a_hung_broker_does_not_delay_a_trip(clock, tmp_path) -> None:
    """A broker that accepts the connection and then says nothing: each cycle's connect waits
    mqtt.timeout_s, but the pins are already set by then."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        logs: list[str] = []
        hub, eng = make_hub(srv.getsockname()[1], clock, tmp_path, logs)
        order: list[tuple[str, float]] = []
        real_set, real_pub = hub.port.set_output, hub.publisher.publish_cycle

        def set_output(k, closed):  # noqa: ANN001
            order.append((f"pin {k} {closed}", time.monotonic()))
            real_set(k, closed)

        def publish_cycle(h, now):  # noqa: ANN001
            order.append(("network", time.monotonic()))
            real_pub(h, now)
            order.append(("network done", time.monotonic()))

        hub.port.set_output = set_output  # type: ignore[method-assign]
        hub.publisher.publish_cycle = publish_cycle  # type: ignore[method-assign]
        hub.run_once()
        assert hub.port.out_state[0] == 1
        eng.set_pack(0, mv=4200)
        clock.advance(2)  # past the connect backoff: this cycle connects again, and hangs
        del order[:]
        hub.run_once()
        names = [o[0] for o in order]
        assert names[:2] == ["pin 0 0", "network"], names
        assert order[2][1] - order[1][1] >= 0.9  # the broker really hung for mqtt.timeout_s (1 s)
        assert order[1][1] - order[0][1] < 0.05  # the trip did not wait for it
        assert "connect to 127.0.0.1" in hub.publisher.last_error
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        srv.close()


def test_the_first_scan_and_decision_come_before_wifi(clock, tmp_path) -> None:
    """run_forever(): enumerate, scan, decide and set the pins before Wi-Fi is even started; with outputs
    the hub does not wait for Wi-Fi (wifi_connect(0))."""
    order: list[str] = []

    class Port(HostPort):
        def wifi_connect(self, timeout_ms):  # noqa: ANN001
            order.append(f"wifi {timeout_ms}")
            return False

        def set_output(self, k, closed):  # noqa: ANN001
            if closed:
                order.append(f"close {k}")
            HostPort.set_output(self, k, closed)

    class Stop(Exception):
        pass

    class Clock(type(clock)):
        def sleep_ms(self, ms: int) -> None:
            raise Stop

    clk = Clock(100_000)
    eng = ModelRing(3, mv=3700, temp=250)
    uart = SimUart(eng, on_exchange=lambda tx, ex: order.append("ring") if not order or order[-1] != "ring" else None)
    cfg = config.validate({"mqtt": {"host": "127.0.0.1", "port": 1, "timeout_s": 1}, "scan_interval_s": 1,
                           "state_file": str(tmp_path / "s.json"), "outputs": OUTS}, need_wifi=False)
    hub = Hub(cfg, Port(uart, clock=clk, log=lambda *a: None))
    try:
        hub.run_forever()
    except Stop:
        pass
    assert order[:4] == ["ring", "close 0", "close 1", "wifi 0"], order
