"""The estimator (hub/soc.py) inside the hub on the real MicroPython runtime (unix port, modules precompiled
with mpy-cross): simulated ring (+ a modelled INA228 over the I2C bridge) -> hub under `micropython` -> real
Mosquitto -> paho.

Heap: a battery block (the estimator's modules soc, health, ocv, soc_topics and persist, and its state for 64
packs) adds about 44 KB to the base hub's 80 KB on this 64-bit port (tools/mpy/heap_matrix.py); each test
gives the process what packmon.mpy_hub.heap_for() says its config needs (128 KB; 164 KB with a shunt too).
As with the shunt, a board without PSRAM runs such a hub frozen into the firmware, where bytecode stays in
flash (docs/hub.md "Memory")."""

from __future__ import annotations

import time

import pytest
from packmon import mpy_hub
from packmon.sim import ina
from packmon.sim.model_ring import ModelRing

from hub import ocv
from tests.mpy.test_mpy_hub import MV, TEMP, ReplayRing, cfg

ok, why = mpy_hub.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

P = "packmonitor/bank1"


def test_battery_block_on_the_real_runtime(mosquitto, subscriber_factory) -> None:
    """The estimator inside the hub under `micropython`: without a shunt block SOC stays unknown (empty
    retained) with one line on P/error; a chemistry the hub does not know is one line too; voltages go on."""
    for battery, said in (({"enabled": True, "chemistry": "nmc", "capacity_ah": 5, "cells_parallel": 4},
                           b"no shunt block"),
                          ({"enabled": True, "chemistry": "lto"}, b"battery.chemistry: 'lto' is not known")):
        sub = subscriber_factory(mosquitto.port, "packmonitor/#")
        c = cfg(mosquitto.port, battery=battery)
        with mpy_hub.MpyHub(ModelRing(4, mv=list(MV), temp=list(TEMP)), c, cycles=4, heap=mpy_hub.heap_for(c)) as hub:
            assert hub.wait() == 0, "\n".join(hub.lines[-20:])
        sub.wait_for(lambda s: f"{P}/pack/4/voltage" in s.latest and f"{P}/bank/soc" in s.latest)
        errors = [m for t, m, _ in sub.messages if t == f"{P}/error"]
        assert len(errors) == 1 and said in errors[0], errors
        assert sub.latest[f"{P}/bank/soc"] == b""
        assert sub.latest[f"{P}/pack/1/voltage"] == b"3.300"


def test_64_packs_with_the_estimator(mosquitto) -> None:
    c = cfg(mosquitto.port, scan_interval_s=1, stale_after_s=5, battery={"enabled": True, "capacity_ah": 100})
    with mpy_hub.MpyHub(ReplayRing(64), c, heap=mpy_hub.heap_for(c), cycles=300, nosleep=True) as hub:
        rc = hub.wait(timeout=900)
        out = "\n".join(hub.lines[-10:])
        assert rc == 0, out
        assert not any("MemoryError" in line for line in hub.lines), out
        assert "cycle 300 packs 64 fresh 64" in "\n".join(hub.lines[-3:]), out



def test_soc_resync_with_a_modelled_ina228(mosquitto, subscriber_factory, tmp_path) -> None:
    """A rest (50 mA through an INA228 model) of rest_s: SOC known from the packs' rest voltages, published per
    pack and for the bank; before it, unknown (empty retained); health JSON with nulls; state saved."""
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    model = ina.make_model("ina228", 0.0005, lambda t: 0.05, time.monotonic)
    c = cfg(mosquitto.port, scan_interval_s=0.5, stale_after_s=2, state_file=str(tmp_path / "state.json"),
            shunt={"enabled": True, "chip": "ina228", "shunt_ohms": 0.0005, "max_current_a": 200},
            battery={"enabled": True, "chemistry": "nmc", "capacity_ah": 100, "rest_s": 60})
    with mpy_hub.MpyHub(ModelRing(4, mv=list(MV), temp=list(TEMP)), c, cycles=140, i2c_model=model,
                        heap=mpy_hub.heap_for(c)) as hub:
        assert hub.wait(300) == 0, "\n".join(hub.lines[-20:])
    sub.wait_for(lambda s: s.latest.get(f"{P}/bank/soc", b"") != b"")
    assert any(t == f"{P}/bank/soc" and m == b"" for t, m, _ in sub.messages)  # unknown before the rest
    want = [ocv.soc_of(ocv.NMC, mv) for mv in MV]
    for i, w in enumerate(want):
        assert abs(float(sub.latest[f"{P}/pack/{i + 1}/soc"]) - w / 100) < 0.05
    assert abs(float(sub.latest[f"{P}/bank/soc"]) - min(want) / 100) < 0.05
    assert b'"confidence":0.00' in sub.latest[f"{P}/pack/1/health"]
    assert '"estimator"' in (tmp_path / "state.json").read_text()


def _snapshot_errors(mosquitto, subscriber_factory, tmp_path, eng: ModelRing) -> tuple[list[bytes], dict]:
    """8 cycles of a hub with a shunt and a battery block (so with the bank snapshot) under `micropython` on
    `eng`: the P/error texts about the snapshot, and the last retained values."""
    sub = subscriber_factory(mosquitto.port, f"{P}/#")
    model = ina.make_model("ina228", 0.0005, lambda t: -3.0, time.monotonic)
    c = cfg(mosquitto.port, scan_interval_s=0.5, stale_after_s=2, state_file=str(tmp_path / "state.json"),
            shunt={"enabled": True, "chip": "ina228", "shunt_ohms": 0.0005, "max_current_a": 200},
            battery={"enabled": True, "chemistry": "nmc", "capacity_ah": 100})
    with mpy_hub.MpyHub(eng, c, cycles=8, i2c_model=model, heap=mpy_hub.heap_for(c)) as hub:
        assert hub.wait(120) == 0, "\n".join(hub.lines[-20:])
    sub.wait_for(lambda s: f"{P}/pack/4/voltage" in s.latest)
    return [m for t, m, _ in sub.messages if t == f"{P}/error" and b"snapshot" in m], sub.latest


def test_bank_snapshot_on_the_real_runtime(mosquitto, subscriber_factory, tmp_path) -> None:
    """With a shunt and a battery block the hub takes a bank snapshot each cycle (hub/snapshot.py, protocol.md
    3.5) under `micropython` too: a node at position 2 whose snapshot never comes back leaves its slot empty,
    which is said once on P/error naming the position, while the scans go on."""
    eng = ModelRing(4, mv=list(MV), temp=list(TEMP))
    eng.nodes[1].take_snapshot = lambda: False  # type: ignore[method-assign]
    snap, latest = _snapshot_errors(mosquitto, subscriber_factory, tmp_path, eng)
    assert len(snap) == 1 and b"1 of 4 positions did not take it (2)" in snap[0], snap
    assert latest[f"{P}/pack/2/voltage"] == b"3.321"  # its regular reading, published as before


def test_bank_snapshot_refused_on_a_ring_with_old_firmware(mosquitto, subscriber_factory, tmp_path) -> None:
    """A node of firmware 1.3 (it does not time a SNAP by its bytes, protocol 1.2) at position 2: the hub reads
    every position's version once, refuses snapshots on this ring and says so once, naming the position; the
    scans go on."""
    eng = ModelRing(4, mv=list(MV), temp=list(TEMP))
    eng.nodes[1].s.fw = (1, 3)
    snap, latest = _snapshot_errors(mosquitto, subscriber_factory, tmp_path, eng)
    assert len(snap) == 1 and b"refused: position(s) 2 run firmware before 1.4" in snap[0], snap
    assert latest[f"{P}/pack/2/voltage"] == b"3.321"
