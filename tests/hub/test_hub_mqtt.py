"""The whole hub (hub.app.Hub) under CPython: simulated ring -> hub -> a real Mosquitto -> paho."""

from __future__ import annotations

import json

import pytest
from packmon.sim.model_ring import ModelRing, SimUart

from hub import config
from hub.app import Hub
from hub.port import HostPort, install_cpython_shims

install_cpython_shims()

MV = [3300, 3312, 3298, 3305]
TEMP = [251, 262, -15, 300]


def make_hub(port: int, clock, engine=None, logs=None, **over):
    raw = {"mqtt": {"host": "127.0.0.1", "port": port, "timeout_s": 1}, "scan_interval_s": 1,
           "stale_after_s": 5, "alarms": {"comms_after_s": 3}}
    raw.update(over)
    cfg = config.validate(raw, need_wifi=False)
    engine = engine or ModelRing(4, mv=list(MV), temp=list(TEMP))
    log = (lambda level, msg: logs.append(f"{level} {msg}")) if logs is not None else (lambda *a: None)
    return Hub(cfg, HostPort(SimUart(engine), clock=clock, log=log)), engine


def cycles(hub: Hub, clock, n: int, step: float = 1.0) -> None:
    for _ in range(n):
        hub.run_once()
        clock.advance(step)


def test_topics_payloads_and_retained_flags(mosquitto, subscriber_factory, clock) -> None:
    live = subscriber_factory(mosquitto.port, "packmonitor/#")
    hub, eng = make_hub(mosquitto.port, clock)
    cycles(hub, clock, 2)
    p = "packmonitor/bank1"
    live.wait_for(lambda s: f"{p}/bank/state" in s.latest and f"{p}/ring" in s.latest)
    for i in range(4):
        assert live.latest[f"{p}/pack/{i + 1}/voltage"] == f"{MV[i] / 1000:.3f}".encode()
        assert live.latest[f"{p}/pack/{i + 1}/temperature"] == f"{TEMP[i] / 10:.1f}".encode()
        st = json.loads(live.latest[f"{p}/pack/{i + 1}/state"])
        assert st["pack"] == i + 1 and st["voltage"] == MV[i] / 1000 and st["stale"] is False
        assert st["temperature"] == TEMP[i] / 10 and st["bad_frames"] == 0
    bank = json.loads(live.latest[f"{p}/bank/state"])
    assert bank["packs"] == 4 and bank["voltage"] == pytest.approx(sum(MV) / 1000)
    assert (bank["min"], bank["min_pack"], bank["max"], bank["max_pack"]) == (3.298, 3, 3.312, 2)
    assert bank["delta"] == 0.014 and bank["temp_max"] == 30.0
    assert live.latest[f"{p}/status"] == b"online"
    alarm = json.loads(live.latest[f"{p}/alarm/pack_low"])
    assert alarm == {"active": False, "value": 3.298, "threshold": 3.0, "pack": 3}
    ring = json.loads(live.latest[f"{p}/ring"])
    assert ring["packs"] == 4 and ring["errors"] == {}
    # a client that connects later gets the retained state: values, status, alarms
    late = subscriber_factory(mosquitto.port, "packmonitor/#")
    late.wait_for(lambda s: f"{p}/alarm/comms" in s.latest)
    retained = {t for t, _, r in late.messages if r}
    assert {f"{p}/status", f"{p}/pack/1/voltage", f"{p}/pack/4/temperature", f"{p}/bank/state",
            f"{p}/alarm/comms"} <= retained
    assert f"{p}/ring" not in retained
    hub.publisher.close()


def test_last_will_when_the_hub_vanishes(mosquitto, subscriber_factory, clock) -> None:
    sub = subscriber_factory(mosquitto.port, "packmonitor/bank1/status")
    hub, _ = make_hub(mosquitto.port, clock, **{"mqtt": {"host": "127.0.0.1", "port": mosquitto.port,
                                                         "keepalive_s": 2, "timeout_s": 1}})
    cycles(hub, clock, 1)
    sub.wait_for(lambda s: s.latest.get("packmonitor/bank1/status") == b"online")
    hub.publisher.close(clean=False)  # the socket dies without DISCONNECT: the broker sends the will
    sub.wait_for(lambda s: s.latest.get("packmonitor/bank1/status") == b"offline", timeout=8)


def test_broker_restart_reconnects_with_backoff(mosquitto, subscriber_factory, clock) -> None:
    logs: list[str] = []
    hub, eng = make_hub(mosquitto.port, clock, logs=logs)
    cycles(hub, clock, 1)
    assert hub.publisher.connected
    mosquitto.stop()
    cycles(hub, clock, 3, 0.2)  # the publish fails, then connects are refused and backed off
    assert not hub.publisher.connected and hub.publisher.failures >= 1
    assert hub.bank.scans == 4  # scanning never stopped
    assert any("mqtt" in line and "retrying" in line for line in logs)
    mosquitto.start()
    sub = subscriber_factory(mosquitto.port, "packmonitor/#")
    eng.set_pack(0, mv=3222)
    cycles(hub, clock, 4, 1.0)  # past the backoff
    assert hub.publisher.connected and hub.publisher.connects == 2
    sub.wait_for(lambda s: s.latest.get("packmonitor/bank1/pack/1/voltage") == b"3.222")
    sub.wait_for(lambda s: s.latest.get("packmonitor/bank1/status") == b"online")
    sub.wait_for(lambda s: "packmonitor/bank1/alarm/pack_low" in s.latest)  # alarms republished
    hub.publisher.close()


def test_silent_ring_goes_stale_and_is_never_published_as_fresh(mosquitto, subscriber_factory, clock) -> None:
    sub = subscriber_factory(mosquitto.port, "packmonitor/#")
    hub, eng = make_hub(mosquitto.port, clock)
    cycles(hub, clock, 2)
    p = "packmonitor/bank1"
    # the ring topic is the last of a cycle: once cycle 2's has arrived, everything before is in
    sub.wait_for(lambda s: f"{p}/ring" in s.latest and json.loads(s.latest[f"{p}/ring"])["scans"] == 2)
    mark = len(sub.messages)
    eng.broken = True
    cycles(hub, clock, 8)
    sub.wait_for(lambda s: json.loads(s.latest.get(f"{p}/alarm/comms", b"{}") or b"{}").get("active") is True)
    sub.wait_for(lambda s: json.loads(s.latest[f"{p}/ring"])["scans"] == 2 and
                 json.loads(s.latest[f"{p}/bank/state"])["stale_packs"] == 4)
    after = sub.messages[mark:]
    volts = [(t, v) for t, v, _ in after if t.endswith("/voltage")]
    assert all(v == b"" for _, v in volts), volts  # only the clearing of retained values, never a value
    st = json.loads(sub.latest[f"{p}/pack/2/state"])
    assert st["stale"] is True and st["voltage"] is None
    bank = json.loads(sub.latest[f"{p}/bank/state"])
    assert bank["voltage"] is None and bank["stale_packs"] == 4
    # the ring comes back: fresh values and the alarm clears
    eng.broken = False
    cycles(hub, clock, 5)
    sub.wait_for(lambda s: s.latest.get(f"{p}/pack/2/voltage") == b"3.312")
    sub.wait_for(lambda s: json.loads(s.latest[f"{p}/alarm/comms"])["active"] is False)
    hub.publisher.close()


def test_node_removed_and_back_reenumerates(mosquitto, subscriber_factory, clock) -> None:
    logs: list[str] = []
    hub, eng = make_hub(mosquitto.port, clock, logs=logs)
    cycles(hub, clock, 2)
    eng.remove_node(3)
    cycles(hub, clock, 3)
    assert hub.bank.n == 3 and hub.enumerations >= 2
    assert any("pack count changed from 4 to 3" in line or "3 of 4 packs" in line for line in logs)
    eng.insert_node(3)
    cycles(hub, clock, 5)
    assert hub.bank.n == 4 and hub.bank.resets[3] >= 0
    hub.publisher.close()


def test_noisy_ring_never_publishes_a_wrong_value(mosquitto, subscriber_factory, clock) -> None:
    sub = subscriber_factory(mosquitto.port, "packmonitor/#")
    eng = ModelRing(8, mv=[3300 + 11 * i for i in range(8)], temp=[200 + 7 * i for i in range(8)], ber=3e-4, seed=5)
    hub, _ = make_hub(mosquitto.port, clock, engine=eng)
    cycles(hub, clock, 60)
    sub.wait_for(lambda s: len(s.messages) > 100)
    assert sum(hub.ring.errors) > 0  # the noise was really there, and counted
    for t, v, _ in sub.messages:
        if t.endswith("/voltage") and v:
            n = int(t.split("/")[-2])
            assert v == f"{(3300 + 11 * (n - 1)) / 1000:.3f}".encode(), (t, v)
        if t.endswith("/temperature") and v:
            n = int(t.split("/")[-2])
            assert v == f"{(200 + 7 * (n - 1)) / 10:.1f}".encode(), (t, v)
    sub.wait_for(lambda s: sum(json.loads(s.latest["packmonitor/bank1/ring"])["errors"].values())
                 == sum(hub.ring.errors))
    hub.publisher.close()


def test_discovery_and_legacy_topics(mosquitto, subscriber_factory, clock) -> None:
    sub = subscriber_factory(mosquitto.port, "#")
    hub, _ = make_hub(mosquitto.port, clock, discovery={"enabled": True, "prefix": "homeassistant"},
                      legacy_topics=True)
    cycles(hub, clock, 1)
    cfg_topic = "homeassistant/sensor/packmon_bank1/pack_2_voltage/config"
    sub.wait_for(lambda s: cfg_topic in s.latest)
    d = json.loads(sub.latest[cfg_topic])
    assert d["~"] == "packmonitor/bank1" and d["stat_t"] == "~/pack/2/voltage" and d["unit_of_meas"] == "V"
    assert d["avty"][0] == {"t": "~/status"} and d["avty_mode"] == "all" and d["dev"]["ids"] == "packmon_bank1"
    assert d["obj_id"] == d["uniq_id"] == "packmon_bank1_pack_2_voltage"
    sub.wait_for(lambda s: s.latest.get("Powerwall/Pack-v-2") == b"3312")
    assert sub.latest["Powerwall/Pack-t-3"] == b"-1.5"
    hub.publisher.close()


def test_dead_broker_is_reported_not_fatal(clock) -> None:
    from tests.conftest import free_port

    logs: list[str] = []
    hub, _ = make_hub(free_port(), clock, logs=logs)
    cycles(hub, clock, 3)
    assert hub.bank.scans == 3 and not hub.publisher.connected
    assert "refused" in hub.publisher.last_error.lower() or "connect" in hub.publisher.last_error
    assert hub.publisher.backoff_ms > 1000
