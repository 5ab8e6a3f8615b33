"""`packmon ring` against the simulated ring through a real pseudo-terminal, opened with pyserial exactly
as a USB-serial adapter would be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from packmon.sim.model_ring import ModelRing
from packmon.sim.pty_bridge import PtyBridge, frame_end

from hub import codec

from .conftest import MV, TEMP

ROOT = Path(__file__).resolve().parents[2]


# -- scan ------------------------------------------------------------------------------------------
def test_scan_table(sim, run) -> None:
    r = run("ring", "scan", "--port", sim.port)
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == f"ring on {sim.port}: 4 packs"
    assert lines[1].split() == ["pack", "voltage", "V", "temp", "°C", "flags", "bad", "scans"]
    for i in range(4):
        cols = lines[2 + i].split()
        assert cols[0] == str(i + 1)
        assert cols[1] == "%.3f" % (MV[i] / 1000)
        assert cols[2] == "%.1f" % (TEMP[i] / 10)
        assert cols[3] == "not_calibrated,reset_power"  # first scan after power-on
        assert cols[4:] == ["0", "0"]
    assert lines[6] == ("bank: 13.236 V total, min 3.298 V (pack 3), max 3.325 V (pack 4), delta 0.027 V")
    assert lines[7] == "ring: 2 requests, 2 good, no errors"


def test_scan_json(sim, run) -> None:
    sim.engine.scans_before = None
    r = run("ring", "scan", "--port", sim.port, "--json")
    assert r.rc == 0, r.err
    d = r.json()
    assert [p["voltage"] for p in d["packs"]] == [v / 1000 for v in MV]
    assert [p["mv"] for p in d["packs"]] == MV
    assert [p["temperature"] for p in d["packs"]] == [t / 10 for t in TEMP]
    assert d["packs"][0]["flags"] == ["not_calibrated", "reset_power"]
    assert d["bank"] == {"packs": 4, "total": 13.236, "min": 3.298, "min_pack": 3, "max": 3.325, "max_pack": 4,
                         "delta": 0.027, "complete": True}
    assert d["ring"] == {"requests": 2, "good": 2, "errors": {}, "last_fault_hop": None}
    # the second scan: latched flags cleared, scans counted
    d = run("ring", "scan", "--port", sim.port, "--json").json()
    assert d["packs"][0]["flags"] == ["not_calibrated"] and d["packs"][0]["scans"] == 1


def test_scan_shows_sensor_and_voltage_faults(sim, run) -> None:
    n = sim.engine.nodes[1]
    n.true_temp = codec.TEMP_NONE
    n.s.temp = codec.TEMP_NONE
    n.s.flags |= codec.FLAG_SENSOR_FAULT
    n2 = sim.engine.nodes[2]
    n2.s.flags |= codec.FLAG_VOLTAGE_FAULT
    n2.true_mv = 0
    r = run("ring", "scan", "--port", sim.port)
    row2, row3 = r.out.splitlines()[3].split(), r.out.splitlines()[4].split()
    assert row2[2] == "—" and "sensor_fault" in row2[3]
    assert row3[1] == "—" and "voltage_fault" in row3[3]
    assert "(packs with a voltage fault left out)" in r.out
    d = run("ring", "scan", "--port", sim.port, "--json").json()
    assert d["packs"][1]["temperature"] is None and d["packs"][2]["voltage"] is None
    assert d["bank"]["total"] == round((MV[0] + MV[1] + MV[3]) / 1000, 3)


def test_watch_json_lines(sim, run) -> None:
    r = run("ring", "scan", "--port", sim.port, "--json", "--watch", "0.05", "--count", "3")
    assert r.rc == 0, r.err
    rows = [json.loads(x) for x in r.out.splitlines()]
    assert len(rows) == 3
    assert [row["packs"][0]["scans"] for row in rows] == [0, 1, 2]


def test_watch_survives_a_broken_ring_and_recovers(sim, run) -> None:
    def hook(k: int, tx: bytes) -> None:
        sim.engine.broken = k in (2, 3, 4)  # the second scan and its retries get nothing back

    sim.hook(hook)
    r = run("ring", "scan", "--port", sim.port, "--json", "--watch", "0.05", "--count", "3", "--retries", "2")
    assert r.rc == 0
    rows = [json.loads(x) for x in r.out.splitlines()]
    assert "packs" in rows[0] and "no answer from the ring" in rows[1]["error"] and "packs" in rows[2]
    assert rows[2]["ring"]["errors"] == {"timeout": 3}


# -- calibration and settings -------------------------------------------------------------------------
def test_calibrate_corrects_the_voltage_and_survives_a_reset(sim, run) -> None:
    sim.engine.set_bandgap(1, 10800)  # this chip's bandgap is 1.080 V: it reads 1.85 % high
    before = run("ring", "scan", "--port", sim.port, "--json").json()["packs"][1]["mv"]
    assert before == round(MV[1] * 11000 / 10800) == 3373
    r = run("ring", "calibrate", "2", "--voltage", "3.312", "--port", sim.port)
    assert r.rc == 0, r.err
    assert "reported 3.373 V, multimeter 3.312 V" in r.out
    assert "vref 1.1000 V -> 1.0801 V" in r.out  # round(11000 * 3312 / 3373): the reading is quantized
    assert "now reports 3.312 V (+0 mV)" in r.out
    s = sim.engine.nodes[1].s.settings
    assert s.vref == round(11000 * 3312 / 3373) == 10801 and s.flags == codec.SETTINGS_CALIBRATED
    d = run("ring", "scan", "--port", sim.port, "--json").json()
    assert d["packs"][1]["mv"] == 3312 and "not_calibrated" not in d["packs"][1]["flags"]
    assert "not_calibrated" in d["packs"][0]["flags"]  # only node 2 was touched
    assert sim.engine.nodes[0].s.settings.vref == 11000

    sim.engine.reset_node(1)  # RAM lost, EEPROM kept
    d = run("ring", "scan", "--port", sim.port, "--json").json()
    assert d["packs"][1]["mv"] == 3312
    assert d["packs"][1]["flags"] == ["reset_power"]
    info = run("ring", "info", "2", "--port", sim.port, "--json").json()
    assert info["settings"] == {"vref": 10801, "vref_v": 1.0801, "temp_offset": 0.0, "sensor": "internal",
                                "calibrated": True}


def test_calibrate_json(sim, run) -> None:
    sim.engine.set_bandgap(0, 11300)
    d = run("ring", "calibrate", "1", "--voltage", "3.301", "--port", sim.port, "--json").json()
    assert d["vref_old"] == 11000 and d["vref_new"] == round(11000 * 3301 / round(3301 * 11000 / 11300)) == 11301
    assert d["reported_after_v"] == 3.301 and d["error_mv"] == 0 and d["settings"]["calibrated"]


def test_calibrate_refuses_an_implausible_correction(sim, run) -> None:
    r = run("ring", "calibrate", "2", "--voltage", "4.9", "--port", sim.port)
    assert r.rc == 2
    assert "outside 0.9000..1.3000 V" in r.err and "pack 2" in r.err
    assert sim.engine.nodes[1].s.settings.vref == 11000  # nothing written
    r = run("ring", "calibrate", "2", "--voltage", "3312", "--port", sim.port)
    assert r.rc == 2 and "in volts" in r.err


def test_calibrate_when_the_node_has_not_measured_yet(sim, run) -> None:
    """A real node applies the new vref at its next measurement: the console says so instead of failing."""
    sim.engine.set_bandgap(1, 10800)
    sim.engine._measure = lambda node: None  # type: ignore[method-assign]  # the nodes stop measuring
    sim.engine.nodes[1].s.mv = 3373
    r = run("ring", "calibrate", "2", "--voltage", "3.312", "--settle", "0", "--port", sim.port)
    assert r.rc == 0
    assert "now reports 3.373 V (+61 mV)" in r.out and "has not measured with the new calibration yet" in r.out


def test_set_temp_offset(sim, run) -> None:
    r = run("ring", "set", "3", "temp-offset", "1.5", "--port", sim.port)
    assert r.rc == 0, r.err
    assert r.out.strip() == "node 3: temp offset +0.0 °C -> +1.5 °C (written, read back)"
    assert sim.engine.nodes[2].s.settings.temp_offset == 15
    d = run("ring", "scan", "--port", sim.port, "--json").json()
    assert d["packs"][2]["temperature"] == (TEMP[2] + 15) / 10
    d = run("ring", "set", "3", "temp-offset", "-0.8", "--port", sim.port, "--json").json()
    assert d["old"] == 1.5 and d["new"] == -0.8 and sim.engine.nodes[2].s.settings.temp_offset == -8
    r = run("ring", "set", "3", "temp-offset", "60", "--port", sim.port)
    assert r.rc == 2 and "-50.0..50.0" in r.err
    r = run("ring", "set", "3", "temp-offset", "warm", "--port", sim.port)
    assert r.rc == 2 and "expected degrees C" in r.err


@pytest.mark.parametrize(("name", "value"), [("ntc", 2), ("tmp36", 1), ("internal", 0)])
def test_set_sensor(sim, run, name: str, value: int) -> None:
    sim.engine.nodes[0].s.settings.sensor = 1 if value != 1 else 2
    sim.engine.nodes[0].s.settings.vref = 10900  # the other fields survive the read-modify-write
    r = run("ring", "set", "1", "sensor", name, "--port", sim.port)
    assert r.rc == 0, r.err
    assert r.out.strip().endswith(f"-> {name} (written, read back)")
    assert sim.engine.nodes[0].s.settings.sensor == value
    assert sim.engine.nodes[0].s.settings.vref == 10900


def test_set_sensor_rejects_unknown_names(sim, run) -> None:
    r = run("ring", "set", "1", "sensor", "ds18b20", "--port", sim.port)
    assert r.rc == 2 and "choose ntc, tmp36 or internal" in r.err


def test_write_that_does_not_read_back_is_an_error(sim, run) -> None:
    from packmon.sim import node_model

    orig = node_model.Settings.valid
    node_model.Settings.valid = lambda self: False  # type: ignore[method-assign]  # node refuses: no DONE
    try:
        r = run("ring", "set", "1", "sensor", "ntc", "--port", sim.port)
    finally:
        node_model.Settings.valid = orig  # type: ignore[method-assign]
    assert r.rc == 1 and "no node 1 answered" in r.err and "WRITE" in r.err


# -- info, identify -------------------------------------------------------------------------------------
def test_info(sim, run) -> None:
    s = sim.engine.nodes[3].s
    s.uptime = 93784
    s.reset_cause = 0x05
    s.bad = 7
    s.fw = (1, 2)
    r = run("ring", "info", "4", "--port", sim.port)
    assert r.rc == 0, r.err
    assert f"node 4 of 4 on {sim.port}" in r.out
    assert "firmware     1.2" in r.out
    assert "reset cause  power-on, brown-out (MCUSR 0x05)" in r.out
    assert "uptime       1 d 02:03:04 (93784 s)" in r.out
    assert "bad frames   7" in r.out
    assert "vref 1.1000 V (11000), temp offset +0.0 °C, sensor internal, not calibrated" in r.out
    d = run("ring", "info", "4", "--port", sim.port, "--json").json()
    assert d["reset_cause"] == ["power-on", "brown-out"] and d["uptime_s"] == 93784 and d["firmware"] == "1.2"


def test_info_shows_the_clock_trim(sim, run) -> None:
    from packmon.sim.node_model import ClockState

    sim.engine.nodes[1].s.clock = ClockState(osccal=0x4E, osccal_reset=0x48, state=0x01 | 0x04 | 0x08, err01=-3,
                                             clean=200, steps=9, ee_writes=1, ee_value=0x4D)
    r = run("ring", "info", "2", "--port", sim.port)
    assert r.rc == 0, r.err
    assert ("clock        OSCCAL 0x4E (0x48 at reset), locked, started from EEPROM, measured; -0.3 % against the "
            "upstream clock at the last SOF; 200 clean SOFs, 9 LSB moved; EEPROM start value 0x4D (1 writes since "
            "start)") in r.out
    d = run("ring", "info", "2", "--port", sim.port, "--json").json()
    assert d["clock"]["osccal"] == 0x4E and d["clock"]["error_01pct"] == -3 and d["clock"]["states"][0] == "locked"
    # out of the trim range: said plainly
    sim.engine.nodes[1].s.clock = ClockState(osccal=0x7F, state=0x02 | 0x08, err01=-92)
    assert "OUT OF TRIM RANGE" in run("ring", "info", "2", "--port", sim.port).out
    # a firmware 1.0 node has no CLOCK command: it is not asked, and the tool says so
    sim.engine.nodes[1].s.fw = (1, 0)
    r = run("ring", "info", "2", "--port", sim.port)
    assert r.rc == 0 and "clock        not reported (firmware 1.0 has no CLOCK command)" in r.out


def test_identify(sim, run) -> None:
    r = run("ring", "identify", "3", "--port", sim.port)
    assert r.rc == 0 and r.out.strip() == "node 3 is blinking its LED for about 5 s"
    assert sim.engine.nodes[2].s.identify and not sim.engine.nodes[1].s.identify


# -- errors ---------------------------------------------------------------------------------------------
def test_missing_port(run) -> None:
    r = run("ring", "scan", "--port", "/dev/ttyUSB97")
    assert r.rc == 3
    assert "/dev/ttyUSB97 does not exist — is the adapter plugged in? `ls /dev/ttyUSB*" in r.err


def test_missing_port_json(run) -> None:
    r = run("ring", "scan", "--port", "/dev/ttyUSB97", "--json")
    assert r.rc == 3 and r.json()["exit"] == 3 and "does not exist" in r.json()["error"]


def test_busy_port(sim, run) -> None:
    other = serial.Serial(sim.port, 9600, exclusive=True)  # another program holds the adapter
    try:
        r = run("ring", "scan", "--port", sim.port)
    finally:
        other.close()
    assert r.rc == 3
    assert "is busy: another program has it open" in r.err and "dialout" in r.err
    assert run("ring", "scan", "--port", sim.port).rc == 0  # free again


def test_permission_denied_hint() -> None:
    import errno

    from packmon.serialport import port_error

    e = serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0: [Errno 13] Permission denied")
    msg = str(port_error("/dev/ttyUSB0", e))
    assert "permission denied" in msg and "usermod -aG dialout" in msg


def test_bad_url(run) -> None:
    r = run("ring", "scan", "--port", "nope://x")
    assert r.rc == 3 and "nope://x" in r.err


def test_no_answer(sim, run) -> None:
    sim.engine.broken = True
    t = time.monotonic()
    r = run("ring", "scan", "--port", sim.port, "--retries", "1")
    assert r.rc == 1
    assert "ENUMERATE failed 2 times" in r.err and "no answer from the ring (nothing came back)" in r.err
    assert "hub TX -> node 1 RX, node 1 TX -> node 2 RX, ..., node N TX -> hub RX" in r.err
    assert "isolators" in r.err and "9600 baud" in r.err and "timeout 2" in r.err
    assert time.monotonic() - t < 5


def test_loopback_without_nodes(run) -> None:
    r = run("ring", "scan", "--port", "loop://")
    assert r.rc == 1 and "no node counted itself" in r.err and "loopback" in r.err


def test_crc_error_on_the_last_hop_is_counted_and_retried(sim, run) -> None:
    orig = sim.engine.exchange
    state = {"k": 0}

    def exchange(tx: bytes):
        ex = orig(tx)
        state["k"] += 1
        if state["k"] == 2:  # the first SCAN's answer is hit on the way to the hub
            rx = bytearray(ex.rx)
            rx[12] ^= 0x04
            ex.rx = bytes(rx)
        return ex

    sim.engine.exchange = exchange  # type: ignore[method-assign]
    r = run("ring", "scan", "--port", sim.port)
    assert r.rc == 0, r.err
    assert "ring: 3 requests, 2 good, errors: bad_crc 1" in r.out
    assert "%.3f" % (MV[0] / 1000) in r.out  # and the values are the true ones
    d = run("ring", "scan", "--port", sim.port, "--json").json()
    assert d["ring"]["errors"] == {}


def test_bit_errors_fail_with_counts(sim, run) -> None:
    sim.engine.ber = 0.05
    r = run("ring", "scan", "--port", sim.port, "--json", "--retries", "3")
    assert r.rc == 1
    err = r.json()["error"]
    assert "failed 4 times" in err
    counts = err.split("[ring errors: ")[1].rstrip("]")
    total = sum(int(part.split()[1]) for part in counts.split(", "))
    assert total == 4  # every failed attempt counted by its reason


def test_ring_fault_names_the_hop(sim, run) -> None:
    node = sim.engine.nodes[2]
    orig = node.feed

    def feed(b: int, framing_error: bool = False) -> bytes:
        if node._pos == 20 and node._cmd == codec.CMD_SCAN:  # every SCAN is corrupted going into node 3
            b ^= 0x10
        return orig(b, framing_error)

    node.feed = feed  # type: ignore[method-assign]
    # protocol 1.2: the first SCAN fails its CRC (node 3 passes the error on); node 3 names itself in the
    # next frame, which this hop corrupts too, so the hop comes as the failed frame's (unverified) hint
    r = run("ring", "scan", "--port", sim.port, "--retries", "1")
    assert r.rc == 1
    assert "SCAN failed 2 times" in r.err
    assert "the frame names node 3, which found the frame before it corrupted on the hop into it" in r.err
    assert "that hop's wiring/isolator corrupts bytes" in r.err
    assert "errors: bad_crc 2" in r.err


def test_ring_fault_names_a_passing_fault(sim, run) -> None:
    node = sim.engine.nodes[2]
    orig = node.feed
    hit = {"n": 0}

    def feed(b: int, framing_error: bool = False) -> bytes:
        if node._pos == 20 and node._cmd == codec.CMD_SCAN and not hit["n"]:  # one SCAN corrupted into node 3
            hit["n"] += 1
            b ^= 0x10
        return orig(b, framing_error)

    node.feed = feed  # type: ignore[method-assign]
    r = run("ring", "scan", "--port", sim.port, "--retries", "1")
    assert r.rc == 1
    assert "ring_fault: node 3 reports a frame corrupted on the hop into it (from node 2)" in r.err
    assert "errors: bad_crc 1, ring_fault 1" in r.err
    r = run("ring", "scan", "--port", sim.port, "--retries", "0")
    assert r.rc == 0, r.err


def test_unexpected_address(sim, run) -> None:
    node = sim.engine.nodes[1]
    orig = node.record
    node.record = lambda i: bytes([5]) + orig(i)[1:]  # type: ignore[method-assign]  # answers as node 5
    r = run("ring", "scan", "--port", sim.port, "--retries", "0")
    assert r.rc == 1
    assert "a node answered with an unexpected address: slot 2 carries address 5" in r.err


def test_enumerate_inconsistent(sim, run) -> None:
    orig = sim.engine.exchange

    def exchange(tx: bytes):
        ex = orig(tx)
        if tx[1] == codec.CMD_ENUMERATE:  # a foreign device forwards the counter without counting itself
            rx = bytearray(ex.rx)
            rx[3] -= 1
            crc = codec.crc16(rx, 1, len(rx) - 2)
            rx[-2:] = bytes([crc >> 8, crc & 0xFF])
            ex.rx = bytes(rx)
        return ex

    sim.engine.exchange = exchange  # type: ignore[method-assign]
    r = run("ring", "scan", "--port", sim.port, "--retries", "0")
    assert r.rc == 1
    assert "4 nodes forwarded the ENUMERATE but the address counter reached 3" in r.err
    assert "forwards without taking an address" in r.err


@pytest.mark.parametrize("action", [["info", "5"], ["identify", "9"], ["set", "5", "sensor", "ntc"],
                                    ["calibrate", "6", "--voltage", "3.3"]])
def test_node_out_of_range(sim, run, action: list[str]) -> None:
    r = run("ring", *action, "--port", sim.port)
    assert r.rc == 2
    assert f"node {action[1]} is out of range: the ring on {sim.port} has 4 nodes (1..4)" in r.err


def test_node_number_beyond_protocol(run, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        run("ring", "info", "65", "--port", "loop://")
    assert e.value.code == 2
    assert "node 65 is out of range 1..64" in capsys.readouterr().err


def test_missing_done(sim, run) -> None:
    def hook(k: int, tx: bytes) -> None:
        if tx[1] == codec.CMD_INFO:
            sim.engine.reset_node(1)  # node 2 restarts between ENUMERATE and INFO: it has no address

    sim.hook(hook)
    r = run("ring", "info", "2", "--port", sim.port)
    assert r.rc == 1 and "no node 2 answered" in r.err


# -- the same through the installed command and `packmon sim` -----------------------------------------------
def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "packmon.cli", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tools"), e.get("PYTHONPATH", "")])
    return e


def test_packmon_sim_serves_a_ring_any_serial_tool_can_use(tmp_path) -> None:
    link = tmp_path / "ring"
    p = subprocess.Popen(cli_cmd("sim", "--packs", "3", "--voltages", "3.3,3.31,3.32", "--temps", "20",
                                 "--bandgap", "3=1.1", "--link", str(link), "--seconds", "20"),
                         stdout=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        assert first.startswith("simulated ring of 3 packs (model engine) on /dev/pts/"), first
        assert link.is_symlink()
        r = subprocess.run(cli_cmd("ring", "scan", "--port", str(link), "--json"), capture_output=True, text=True,
                           env=env(), cwd=ROOT, timeout=30)
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert [x["voltage"] for x in d["packs"]] == [3.3, 3.31, 3.32]
        assert [x["temperature"] for x in d["packs"]] == [20.0, 20.0, 20.0]
        r = subprocess.run(cli_cmd("ring", "info", "7", "--port", str(link)), capture_output=True, text=True,
                           env=env(), cwd=ROOT, timeout=30)
        assert r.returncode == 2 and "out of range" in r.stderr
    finally:
        p.terminate()
        p.wait(10)


def test_packmon_sim_argument_errors(run) -> None:
    assert run("sim", "--packs", "65").rc == 2
    r = run("sim", "--packs", "3", "--voltages", "3.3,3.4")
    assert r.rc == 2 and "2 values for 3 packs" in r.err


def test_exit_codes_through_the_real_command() -> None:
    r = subprocess.run(cli_cmd("ring", "scan", "--port", "/dev/ttyUSB97"), capture_output=True, text=True,
                       env=env(), cwd=ROOT)
    assert r.returncode == 3 and r.stderr.startswith("packmon ring: /dev/ttyUSB97 does not exist")


# -- the bridge itself ------------------------------------------------------------------------------------
def test_frame_end() -> None:
    f = codec.encode(codec.CMD_SCAN, 1, 0, 2)
    assert frame_end(f) == len(f) == 25
    assert frame_end(b"\x00\x13" + f + b"\xa5") == 27
    assert frame_end(f[:-1]) is None
    assert frame_end(b"\xa5\x02\x01\x00\x41") is None  # CNT > 64: wait for the silence


def test_bridge_passes_garbage_and_partial_frames_like_a_ring() -> None:
    eng = ModelRing(2)
    with PtyBridge(eng, gap_s=0.02) as b, serial.Serial(b.path, 9600, timeout=1) as ser:
        ser.write(codec.encode(codec.CMD_ENUMERATE, 1, 0, 0)[:6])  # a partial frame, then silence
        time.sleep(0.1)
        assert all(n.s.bad == 1 for n in eng.nodes[:1])  # node 1 timed out on it, as on the wire
        ser.reset_input_buffer()
        ser.write(b"\x00\x13" + codec.encode(codec.CMD_ENUMERATE, 2, 0, 0))
        ans = ser.read(9)
        # protocol 1.2: the next frame carries node 1's report of the frame that broke off (no address yet)
        assert len(ans) == 9 and codec.check(ans, 9) == codec.ERR_RING_FAULT
        assert codec.fault_of(ans) == codec.FAULT_NO_ADDRESS
        ser.write(codec.encode(codec.CMD_ENUMERATE, 3, 0, 0))
        assert codec.decode(ser.read(9))["addr"] == 2
        assert b.exchanges == 3


def test_bridge_paces_like_the_wire() -> None:
    eng = ModelRing(16)
    with PtyBridge(eng, pace=True) as b, serial.Serial(b.path, 9600, timeout=2) as ser:
        frame = codec.encode(codec.CMD_SCAN, 1, 0, 16)
        t = time.monotonic()
        ser.write(frame)
        ans = ser.read(len(frame))
        dt = time.monotonic() - t
    assert len(ans) == len(frame)
    assert dt >= len(frame) * 10 / 9600  # at least the wire floor (142.7 ms)


# -- the real firmware in simavr, when this machine can run it ------------------------------------------
def test_scan_through_simavr(run) -> None:
    try:
        from packmon.sim import simavr_ring
    except ImportError as e:
        pytest.skip(f"simavr_ring is not there yet: {e}")
    ok, why = simavr_ring.available()
    if not ok:
        pytest.skip(f"simavr not usable here: {why}")
    mv = [3300, 3650]
    with simavr_ring.SimavrRing(2, mv=mv, temp=[250, 300]) as eng, PtyBridge(eng) as bridge:
        r = run("ring", "scan", "--port", bridge.path, "--json")
        assert r.rc == 0, r.err
        d = r.json()
        assert [p["mv"] for p in d["packs"]] == [simavr_ring.expected_mv(v) for v in mv]
        assert [p["temperature"] for p in d["packs"]] == [simavr_ring.expected_temp(t) / 10 for t in (250, 300)]
        r = run("ring", "info", "2", "--port", bridge.path, "--json")
        assert r.rc == 0, r.err
        assert r.json()["firmware"].startswith("1.")
