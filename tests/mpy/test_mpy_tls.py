"""MQTT over TLS with a password and an ACL, on the real MicroPython runtime (its ssl module is mbedTLS,
as on the ESP32): the hub publishes with the right credentials; a wrong password, a wrong CA and a
topic outside its ACL each give a clear log line and no publication.

The heap is 256k here, not the 100k of the other runtime tests: the unix port's mbedTLS allocates its
buffers (two 16 KB records and the certificate chain) from MicroPython's GC heap, while on the ESP32 it
allocates them from ESP-IDF's heap, outside the GC heap (micropython/micropython#6065)."""

from __future__ import annotations

import time

import pytest
from packmon import mpy_hub
from packmon.sim.model_ring import ModelRing

from tests import secure_broker as sb

ok, why = mpy_hub.available()
ok2, why2 = sb.available()
HEAP = "256k"
pytestmark = [pytest.mark.skipif(not ok, reason=why), pytest.mark.skipif(not ok2, reason=why2)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> sb.Pki:  # noqa: ANN001
    return sb.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path, pki: sb.Pki):  # noqa: ANN001
    m = sb.start(tmp_path, pki)
    yield m
    m.stop()


def cfg(mqtt: dict, bank: str = "garage") -> dict:
    return {"bank": bank, "mqtt": {**mqtt, "keepalive_s": 10}, "scan_interval_s": 0.3, "stale_after_s": 2}


def test_tls_password_and_acl_on_the_real_runtime(broker, pki: sb.Pki) -> None:
    reader = sb.Reader(broker.port, pki)
    try:
        with mpy_hub.MpyHub(ModelRing(3, mv=[3301, 3302, 3303]), cfg(sb.hub_mqtt(broker.port, pki,
                            server_hostname="localhost")), cycles=3, heap=HEAP) as hub:
            assert hub.wait(120) == 0, "\n".join(hub.lines[-20:])
        assert any("mqtt: connected" in line for line in hub.lines), "\n".join(hub.lines[-20:])
        deadline = time.time() + 5
        while "packmonitor/garage/pack/3/voltage" not in reader.topics() and time.time() < deadline:
            time.sleep(0.05)
        assert reader.topics()["packmonitor/garage/pack/3/voltage"] == b"3.303"
        assert not any(sb.password("hub") in line for line in hub.lines)
    finally:
        reader.close()


def test_tls_with_discovery_on_the_real_runtime(broker, pki: sb.Pki) -> None:
    """Discovery over TLS, and the non-blocking read of homeassistant/status every cycle on mbedTLS."""
    reader = sb.Reader(broker.port, pki)
    try:
        c = cfg(sb.hub_mqtt(broker.port, pki, user="ha", server_hostname="localhost"))
        c["discovery"] = {"enabled": True}
        with mpy_hub.MpyHub(ModelRing(2), c, cycles=8, heap=HEAP) as hub:
            assert hub.wait(120) == 0, "\n".join(hub.lines[-20:])
        assert sum("mqtt: connected" in line for line in hub.lines) == 1, "\n".join(hub.lines[-20:])
        assert not any("reconnecting" in line or "receive failed" in line for line in hub.lines)
        deadline = time.time() + 5
        topic = "homeassistant/sensor/packmon_garage/pack_2_voltage/config"
        while topic not in reader.topics() and time.time() < deadline:
            time.sleep(0.05)
        assert reader.topics()[topic]
    finally:
        reader.close()


@pytest.mark.parametrize("case, expect", [
    ("password", "bad user name or password"),
    ("ca", "certificate"),
    ("server_name", "certificate"),
    ("acl", "dropped our test message to packmonitor/shed/check"),
])
def test_refusals_on_the_real_runtime(case: str, expect: str, broker, pki: sb.Pki) -> None:
    mqtt = sb.hub_mqtt(broker.port, pki, server_hostname="localhost")
    bank = "shed" if case == "acl" else "garage"  # the ACL lets the hub write packmonitor/garage/# only
    if case != "acl":
        sb.spoil(mqtt, case, pki)
    with mpy_hub.MpyHub(ModelRing(2), cfg(mqtt, bank), cycles=2, heap=HEAP) as hub:
        assert hub.wait(120) == 0, "\n".join(hub.lines[-20:])
    text = "\n".join(hub.lines)
    warnings = [line for line in hub.lines if line.startswith("[warning] mqtt:")]
    assert warnings and any(expect in w.lower() or (case == "password" and "not authorised" in w)
                            for w in warnings), text
    assert "mqtt: connected" not in text
    assert "cycle 2 packs 2 fresh 2 published 0" in text  # scanning went on; nothing was published
    assert sb.password("hub") not in text
