"""The hub (under CPython) against a real Mosquitto with TLS, a password file and an ACL: it publishes with
the right credentials, and a wrong password, a wrong CA, a wrong server name, a missing client
certificate and a topic outside its ACL each end in a clear error and a counted failure, never in a
silent success. Secrets never reach the log or a topic. (tests/mpy/test_mpy_tls.py does the same on the
MicroPython runtime.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from packmon.sim.model_ring import ModelRing, SimUart

from hub import config
from hub.app import Hub
from hub.port import HostPort, install_cpython_shims
from tests import secure_broker as sb

install_cpython_shims()
ok, why = sb.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> sb.Pki:  # noqa: ANN001
    return sb.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path: Path, pki: sb.Pki):
    m = sb.start(tmp_path, pki)
    yield m
    m.stop()


@pytest.fixture
def reader(broker, pki: sb.Pki):
    r = sb.Reader(broker.port, pki)
    yield r
    r.close()


def run_hub(mqtt: dict, clock, cycles: int = 2, **over) -> tuple[Hub, list[str]]:
    logs: list[str] = []
    raw = {"bank": "garage", "mqtt": mqtt, "scan_interval_s": 1, "stale_after_s": 5, **over}
    cfg = config.validate(raw, need_wifi=False)
    hub = Hub(cfg, HostPort(SimUart(ModelRing(3, mv=[3301, 3302, 3303])), clock=clock,
                            log=lambda level, msg: logs.append(f"{level} {msg}")))
    for _ in range(cycles):
        hub.run_once()
        clock.advance(1.0)
    return hub, logs


def settle(reader: sb.Reader, topic: str, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if topic in reader.topics():
            return True
        time.sleep(0.05)
    return False


def no_secrets(logs: list[str], reader: sb.Reader) -> None:
    secrets = [sb.password(u) for u in sb.USERS]
    for line in logs:
        assert not any(s in line for s in secrets), line
    for topic, payload, _ in reader.messages:
        assert not any(s.encode() in payload or s in topic for s in secrets), topic


def test_tls_and_password_publish(broker, reader, pki, clock) -> None:
    hub, logs = run_hub(sb.hub_mqtt(broker.port, pki), clock)
    assert hub.publisher.connected and hub.publisher.refusals == 0, hub.publisher.last_error
    assert settle(reader, "packmonitor/garage/bank/state")
    got = reader.topics()
    assert got["packmonitor/garage/pack/2/voltage"] == b"3.302"
    assert got["packmonitor/garage/status"] == b"online"
    assert "packmonitor/garage/check" in got  # the token the hub read back to prove its ACL
    no_secrets(logs, reader)
    hub.publisher.close()


def test_server_name_can_be_set_apart_from_the_host(broker, reader, pki, clock) -> None:
    hub, _ = run_hub(sb.hub_mqtt(broker.port, pki, server_hostname="localhost"), clock)
    assert hub.publisher.connected, hub.publisher.last_error
    hub.publisher.close()


@pytest.mark.parametrize("case, expect", [
    ("password", "bad user name or password"),
    ("ca", "certificate"),
    ("server_name", "certificate"),
    ("plain_tcp", ""),
])
def test_refusals_are_clear_and_counted(case: str, expect: str, broker, reader, pki, clock) -> None:
    mqtt = sb.spoil(sb.hub_mqtt(broker.port, pki), case, pki)
    hub, logs = run_hub(mqtt, clock, cycles=3)
    p = hub.publisher
    assert not p.connected and p.failures >= 1 and p.published == 0
    assert f"connect to 127.0.0.1:{broker.port} failed" in p.last_error
    if expect:
        assert expect in p.last_error.lower() or (case == "password" and "not authorised" in p.last_error)
    assert any(p.last_error in line and line.startswith("warning") for line in logs)
    assert hub.bank.scans == 3  # the hub kept scanning all the while
    time.sleep(0.3)
    assert not any(t.startswith("packmonitor/garage/") for t in reader.topics())
    no_secrets(logs, reader)


def test_a_topic_outside_the_acl_is_a_counted_refusal(broker, reader, pki, clock) -> None:
    hub, logs = run_hub(sb.hub_mqtt(broker.port, pki), clock, cycles=3, bank="shed")  # ACL: garage only
    p = hub.publisher
    assert not p.connected and p.refusals >= 1 and p.published == 0
    assert "dropped our test message to packmonitor/shed/check" in p.last_error
    assert "readwrite access to packmonitor/shed/#" in p.last_error
    assert any("ACL" in line for line in logs)
    time.sleep(0.3)
    assert not any(t.startswith("packmonitor/shed/") for t in reader.topics())


def test_discovery_prefix_is_checked_too(broker, reader, pki, clock) -> None:
    hub, _ = run_hub(sb.hub_mqtt(broker.port, pki), clock, discovery={"enabled": True})
    assert not hub.publisher.connected and hub.publisher.refusals >= 1
    assert "homeassistant/sensor/packmon_garage/check" in hub.publisher.last_error


def test_discovery_over_tls_and_home_assistant_status_polled(broker, reader, pki, clock) -> None:
    """With discovery on, the hub also reads <prefix>/status each cycle (a non-blocking read on the TLS
    socket): the connection must survive it, cycle after cycle."""
    hub, logs = run_hub(sb.hub_mqtt(broker.port, pki, user="ha"), clock, cycles=10, discovery={"enabled": True})
    p = hub.publisher
    assert p.connected and p.connects == 1 and p.failures == 0, logs
    assert settle(reader, "homeassistant/sensor/packmon_garage/pack_3_voltage/config")
    assert json.loads(reader.topics()["homeassistant/sensor/packmon_garage/bank_voltage/config"])["~"] == \
        "packmonitor/garage"
    p.close()


def test_discovery_refused_for_one_component_is_one_clear_line(broker, reader, pki, clock) -> None:
    hub, logs = run_hub(sb.hub_mqtt(broker.port, pki, user="sensors"), clock, cycles=1, discovery={"enabled": True})
    assert not hub.publisher.connected and hub.publisher.refusals >= 1
    lines = [line for line in logs if "binary_sensor" in line]
    assert len(lines) == 1, logs
    assert ("dropped our test message to homeassistant/binary_sensor/packmon_garage/check" in lines[0] and
            "readwrite access to homeassistant/binary_sensor/packmon_garage/#" in lines[0])


def test_a_write_only_acl_is_named(broker, pki, clock) -> None:
    hub, _ = run_hub(sb.hub_mqtt(broker.port, pki, user="writer"), clock)
    assert not hub.publisher.connected
    # Mosquitto grants the subscription and silently withholds the messages: the same words as above
    assert "(or not read it back)" in hub.publisher.last_error
    assert "mqtt.acl_check" in hub.publisher.last_error
    # the user who knows their broker can switch the check off
    hub, _ = run_hub({**sb.hub_mqtt(broker.port, pki, user="writer"), "acl_check": False}, clock)
    assert hub.publisher.connected and hub.publisher.published > 0
    hub.publisher.close()


def test_client_certificate(tmp_path: Path, pki: sb.Pki, clock) -> None:
    m = sb.start(tmp_path, pki, require_certificate=True)
    try:
        hub, _ = run_hub(sb.hub_mqtt(m.port, pki), clock)
        assert not hub.publisher.connected and "failed" in hub.publisher.last_error
        hub, _ = run_hub(sb.hub_mqtt(m.port, pki, cert=str(pki.client_cert), key=str(pki.client_key)), clock)
        assert hub.publisher.connected, hub.publisher.last_error
        hub.publisher.close()
    finally:
        m.stop()


def test_redacted_config_hides_secrets(pki) -> None:
    mqtt = sb.hub_mqtt(1883, pki, cert="/flash/client.crt", key="/flash/client.key")
    cfg = config.validate({"bank": "garage", "mqtt": mqtt}, need_wifi=False)
    text = repr(config.redacted(cfg))
    assert sb.password("hub") not in text and "/flash/client.key" not in text and "***" in text
