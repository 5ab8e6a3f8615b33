"""The whole hub on the real MicroPython runtime (unix port, 100 KB heap, modules precompiled with
mpy-cross): simulated ring -> hub under `micropython` -> real Mosquitto -> paho subscriber."""

from __future__ import annotations

import json

import pytest
from packmon import mpy_hub
from packmon.sim.model_ring import ModelRing, ReplayRing

ok, why = mpy_hub.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

MV = [3300, 3321, 3287, 3310]
TEMP = [251, 262, -15, 300]
P = "packmonitor/bank1"


def cfg(port: int, **over) -> dict:
    c = {"mqtt": {"host": "127.0.0.1", "port": port, "timeout_s": 1, "keepalive_s": 2},
         "scan_interval_s": 0.2, "stale_after_s": 1, "alarms": {"comms_after_s": 1}}
    c.update(over)
    return c


def test_end_to_end_on_the_real_runtime(mosquitto, subscriber_factory) -> None:
    sub = subscriber_factory(mosquitto.port, "packmonitor/#")
    with mpy_hub.MpyHub(ModelRing(4, mv=list(MV), temp=list(TEMP)), cfg(mosquitto.port), cycles=4) as hub:
        assert hub.wait() == 0, "\n".join(hub.lines[-20:])
    for i in range(4):
        assert sub.latest[f"{P}/pack/{i + 1}/voltage"] == f"{MV[i] / 1000:.3f}".encode()
        assert sub.latest[f"{P}/pack/{i + 1}/temperature"] == f"{TEMP[i] / 10:.1f}".encode()
    bank = json.loads(sub.latest[f"{P}/bank/state"])
    assert bank["packs"] == 4 and bank["voltage"] == pytest.approx(sum(MV) / 1000)
    assert bank["min_pack"] == 3 and bank["max_pack"] == 2
    # retained flags, as a late subscriber sees them
    late = subscriber_factory(mosquitto.port, "packmonitor/#")
    late.wait_for(lambda s: f"{P}/bank/state" in s.latest and f"{P}/pack/4/voltage" in s.latest)
    retained = {t for t, _, r in late.messages if r}
    assert {f"{P}/status", f"{P}/pack/1/voltage", f"{P}/pack/1/temperature", f"{P}/bank/state",
            f"{P}/alarm/pack_low"} <= retained
    assert late.latest[f"{P}/status"] == b"offline"  # the hub closed cleanly at the end


def test_simavr_firmware_ring_on_the_real_runtime(mosquitto, subscriber_factory) -> None:
    from packmon.sim import simavr_ring

    ok, why = simavr_ring.available()
    if not ok:
        pytest.skip(why)
    sub = subscriber_factory(mosquitto.port, "packmonitor/#")
    volts = [3050, 3600, 4150]
    with simavr_ring.SimavrRing(3, mv=volts, temp=[200, 300, 400]) as eng:
        with mpy_hub.MpyHub(eng, cfg(mosquitto.port), cycles=3) as hub:
            assert hub.wait() == 0, "\n".join(hub.lines[-20:])
    for i, v in enumerate(volts):
        assert sub.latest[f"{P}/pack/{i + 1}/voltage"] == f"{simavr_ring.expected_mv(v) / 1000:.3f}".encode()


def test_broker_restart_last_will_and_resume(mosquitto, subscriber_factory) -> None:
    eng = ModelRing(2, mv=[3300, 3310], temp=[250, 250])
    with mpy_hub.MpyHub(eng, cfg(mosquitto.port)) as hub:
        hub.wait_line("mqtt: connected")
        hub.wait_line("cycle 3 ")
        mosquitto.stop()
        hub.wait_line("retrying")  # publish failed, reconnect attempts back off; scanning goes on
        mosquitto.start()
        sub = subscriber_factory(mosquitto.port, "packmonitor/#")
        with hub.ring.lock:
            eng.set_pack(0, mv=3222)
        sub.wait_for(lambda s: s.latest.get(f"{P}/pack/1/voltage") == b"3.222", timeout=20)
        sub.wait_for(lambda s: s.latest.get(f"{P}/status") == b"online")
        assert sum("mqtt: connected" in line for line in hub.lines) == 2
        # every value published after the restart is the current truth, never an old one
        assert all(v in (b"3.222", b"") for t, v, _ in sub.messages if t == f"{P}/pack/1/voltage")
        hub.kill()  # the hub dies without DISCONNECT: the broker publishes the last will
        sub.wait_for(lambda s: s.latest.get(f"{P}/status") == b"offline", timeout=10)


def test_silent_ring_and_missing_node_on_the_real_runtime(mosquitto, subscriber_factory) -> None:
    sub = subscriber_factory(mosquitto.port, "packmonitor/#")
    eng = ModelRing(3, mv=[3300, 3310, 3320], temp=[250, 250, 250])
    with mpy_hub.MpyHub(eng, cfg(mosquitto.port)) as hub:
        sub.wait_for(lambda s: f"{P}/pack/3/voltage" in s.latest, timeout=20)
        with hub.ring.lock:
            eng.broken = True
        sub.wait_for(lambda s: json.loads(s.latest.get(f"{P}/alarm/comms", b"{}") or b"{}").get("active") is True,
                     timeout=20)
        sub.wait_for(lambda s: json.loads(s.latest[f"{P}/bank/state"])["stale_packs"] == 3, timeout=20)
        assert sub.latest[f"{P}/pack/2/voltage"] == b""  # the retained value was deleted, not left as fresh
        with hub.ring.lock:
            eng.broken = False
        sub.wait_for(lambda s: json.loads(s.latest[f"{P}/alarm/comms"])["active"] is False, timeout=20)
        with hub.ring.lock:
            eng.remove_node(1)
        sub.wait_for(lambda s: json.loads(s.latest[f"{P}/bank/state"])["packs"] == 2, timeout=20)
        hub.wait_line("enumerat")
        with hub.ring.lock:
            eng.insert_node(1)
        sub.wait_for(lambda s: json.loads(s.latest[f"{P}/bank/state"])["packs"] == 3, timeout=20)


def test_64_packs_1000_scans_in_a_100k_heap(mosquitto) -> None:
    with mpy_hub.MpyHub(ReplayRing(64), cfg(mosquitto.port, scan_interval_s=1, stale_after_s=5), heap="100k",
                        cycles=1000, nosleep=True) as hub:
        rc = hub.wait(timeout=900)
        out = "\n".join(hub.lines[-10:])
        assert rc == 0, out
        assert not any("MemoryError" in line for line in hub.lines), out
        last = hub.wait_line("done cycles 1000")
        assert "cycle 1000 packs 64 fresh 64" in "\n".join(hub.lines[-3:]), out
        print(last)


def test_64_packs_with_home_assistant_discovery_in_a_100k_heap(mosquitto, subscriber_factory) -> None:
    """Discovery for 64 packs (216 configs, ~110 KB) goes out in slices from a 100 KB heap, while scanning."""
    sub = subscriber_factory(mosquitto.port, "homeassistant/#")
    c = cfg(mosquitto.port, scan_interval_s=1, stale_after_s=5, discovery={"enabled": True})
    with mpy_hub.MpyHub(ReplayRing(64), c, heap="100k", cycles=60, nosleep=True) as hub:
        rc = hub.wait(timeout=300)
        out = "\n".join(hub.lines[-10:])
        assert rc == 0, out
        assert not any("MemoryError" in line for line in hub.lines), out
    assert "cycle 60 packs 64 fresh 64" in "\n".join(hub.lines), out
    sub.wait_for(lambda s: len({t for t, v, _ in s.messages if t.endswith("/config") and v}) == 216, timeout=10)
    v = json.loads(sub.latest["homeassistant/sensor/packmon_bank1/pack_64_voltage/config"])
    assert v["stat_t"] == "~/pack/64/voltage" and v["exp_aft"] == 6
