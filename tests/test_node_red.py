"""The Node-RED flow in a real Node-RED + Dashboard 2.0, fed by a real Mosquitto, rendered in headless
Chromium; plus the flow logic's `node --test` unit tests.

Needs node/npm and the pinned install of tools/node-red/install.sh (folder $PACKMON_NODE_RED_DIR or
~/.cache/packmonitor-node-red); skips with the reason when they are missing. The screenshot goes to
tests/artifacts/dashboard.png; PACKMON_UPDATE_DOCS_SCREENSHOT=1 also copies it to docs/dashboard.png.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
import zlib
from pathlib import Path

import pytest

from .conftest import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[1]
NR_TOOLS = ROOT / "tools" / "node-red"
FLOW = NR_TOOLS / "packmonitor-flow.json"
ARTIFACTS = ROOT / "tests" / "artifacts"
INSTALL_DIR = Path(os.environ.get("PACKMON_NODE_RED_DIR", Path.home() / ".cache" / "packmonitor-node-red"))
RED_JS = INSTALL_DIR / "node_modules" / "node-red" / "red.js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PREFIX = "packmonitor/bank1"
# Log lines Node-RED always prints for this test setup; any other [warn]/[error] fails the test.
BENIGN_WARNINGS = ("Using unencrypted credentials", "Projects disabled")


def _need_node() -> None:
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed (Node.js >= 20 needed for the Node-RED flow tests)")


def _need_install() -> None:
    _need_node()
    if not RED_JS.exists():
        pytest.skip(f"Node-RED is not installed in {INSTALL_DIR}: run bash tools/node-red/install.sh")


# -- unit tests of the flow logic (node --test) ---------------------------------------------------------


def test_flow_logic_unit_tests():
    """tools/node-red/test/*.test.js: lib/packmonitor.js, and the flow file being up to date with it."""
    _need_node()
    tests = sorted(str(p) for p in (NR_TOOLS / "test").glob("*.test.js"))
    assert tests, "no unit tests found"
    r = subprocess.run(["node", "--test", *tests], cwd=NR_TOOLS, capture_output=True, text=True, timeout=120)
    summary = [ln for ln in r.stdout.splitlines() if ln.startswith(("# tests", "# pass", "# fail"))]
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert any(ln.startswith("# pass") and int(ln.split()[-1]) > 10 for ln in summary), summary


# -- a real Node-RED ---------------------------------------------------------------------------------------


class NodeRed:
    def __init__(self, tmp: Path, mqtt_port: int) -> None:
        self.port = free_port()
        self.user_dir = tmp / "node-red"
        self.user_dir.mkdir()
        shutil.copy(FLOW, self.user_dir / "flows.json")
        (self.user_dir / "settings.js").write_text(
            "module.exports = {\n"
            "  flowFile: 'flows.json',\n"
            "  credentialSecret: false,\n"  # no prompt, no generated key: the test flow has no credentials
            "  uiHost: '127.0.0.1',\n"
            f"  uiPort: {self.port},\n"
            "  logging: { console: { level: 'info', metrics: false, audit: false } },\n"
            "  editorTheme: { tours: false },\n"
            "  diagnostics: { enabled: false },\n"
            "  telemetry: { enabled: false },\n"
            "};\n"
        )
        self.env = dict(os.environ, MQTT_HOST="127.0.0.1", MQTT_PORT=str(mqtt_port))
        self.log_path = tmp / "node-red.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NodeRed:
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["node", str(RED_JS), "--userDir", str(self.user_dir), "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env, cwd=self.user_dir,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("Node-RED exited:\n" + self.log_text())
            if "Started flows" in self.log_text() or "Waiting for missing types" in self.log_text():
                try:
                    socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.2)
        raise AssertionError("Node-RED did not start in 90 s:\n" + self.log_text())

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, accept: str = "application/json"):
        req = urllib.request.Request(self.url + path, headers={"Accept": accept, "Node-RED-API-Version": "v1"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read().decode()
        return json.loads(body) if accept == "application/json" else body

    def wait_log(self, text: str, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log_text():
                return
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in the Node-RED log:\n" + self.log_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # by the PID we started: Node-RED renames its process
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.log.close()


@pytest.fixture
def stack(tmp_path: Path):
    _need_install()
    if not Path(Mosquitto.binary()).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path).start()
    nr = NodeRed(tmp_path, broker.port)
    try:
        nr.start()
        yield broker, nr
    finally:
        nr.stop()
        broker.stop()


# -- what the hub publishes --------------------------------------------------------------------------------

VOLTS = [3.312, 3.322, 3.305, 3.301, 3.318, 3.309, 3.315, 3.306]
TEMPS = [24.6, 25.1, 26.0, 27.3, 25.5, 24.9, 25.8, 26.2]


def _pack(n: int, stale: bool = False, k: int = 0) -> list[tuple[str, str]]:
    # k > 0: an earlier scan, slightly different values, so the history charts have some shape
    v = round(VOLTS[n - 1] + 0.004 * k * (1 if n % 2 else -1) - 0.001 * k * k, 3)
    t = round(TEMPS[n - 1] - 0.3 * k, 1)
    if stale:  # exactly what hub/publisher.py sends for a pack that stopped answering
        state = {"pack": n, "voltage": None, "temperature": None, "flags": [], "bad_frames": 3, "resets": 0,
                 "stale": True, "age": 41.5}
        return [(f"{PREFIX}/pack/{n}/voltage", ""), (f"{PREFIX}/pack/{n}/temperature", ""),
                (f"{PREFIX}/pack/{n}/state", json.dumps(state))]
    flags = ["sensor_fault"] if n == 3 else []
    state = {"pack": n, "voltage": v, "temperature": t, "flags": flags, "bad_frames": 0, "resets": 0,
             "stale": False, "age": 1.2}
    return [(f"{PREFIX}/pack/{n}/voltage", f"{v:.3f}"), (f"{PREFIX}/pack/{n}/temperature", f"{t:.1f}"),
            (f"{PREFIX}/pack/{n}/state", json.dumps(state))]


def _alarms(active: dict[str, dict]) -> list[tuple[str, str]]:
    out = []
    for name in ("pack_low", "pack_high", "delta_high", "temp_high", "temp_low", "comms"):
        a = active.get(name, {"active": False, "value": None, "threshold": 0, "pack": None})
        out.append((f"{PREFIX}/alarm/{name}", json.dumps(a)))
    return out


def scan_all_fresh(k: int = 0) -> list[tuple[str, str]]:
    msgs = [(f"{PREFIX}/status", "online")]
    for n in range(1, 9):
        msgs += _pack(n, k=k)
    msgs.append((f"{PREFIX}/bank/state", json.dumps({
        "packs": 8, "voltage": round(sum(VOLTS), 3), "min": 3.301, "min_pack": 4, "max": 3.322, "max_pack": 2,
        "delta": 0.021, "avg": 3.311, "temp_max": 27.3, "fresh_packs": 8, "stale_packs": 0})))
    msgs += _alarms({})
    msgs.append((f"{PREFIX}/probe/28ff6a0b/temperature", "21.4"))
    return msgs


def scan_pack8_stale() -> list[tuple[str, str]]:
    msgs = [(f"{PREFIX}/status", "online")]
    for n in range(1, 8):
        msgs += _pack(n)
    msgs += _pack(8, stale=True)
    msgs.append((f"{PREFIX}/bank/state", json.dumps({
        "packs": 8, "voltage": None, "min": 3.301, "min_pack": 4, "max": 3.322, "max_pack": 2, "delta": 0.021,
        "avg": 3.312, "temp_max": 27.3, "fresh_packs": 7, "stale_packs": 1})))
    msgs += _alarms({"comms": {"active": True, "value": 1, "threshold": 0, "pack": 8}})
    return msgs


def publish(port: int, msgs: list[tuple[str, str]]) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for topic, payload in msgs:
            c.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    finally:
        c.loop_stop()
        c.disconnect()


# -- PNG check without extra packages ------------------------------------------------------------------


def png_stats(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct colours in a sample) of an 8-bit RGB/RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:
            for x in range(0, w, 4):
                colours.add(bytes(line[x * bpp:x * bpp + 3]))
        prev = line
    return w, h, len(colours)


# -- the test ----------------------------------------------------------------------------------------------


class Renderer:
    """tools/node-red/test/render.js: one Chromium page, driven step by step over stdin/stdout."""

    def __init__(self, url: str, log: Path) -> None:
        env = dict(os.environ, PACKMON_NODE_RED_DIR=str(INSTALL_DIR), CHROMIUM=CHROMIUM)
        self.err = open(log, "wb")
        self.proc = subprocess.Popen(["node", str(NR_TOOLS / "test" / "render.js"), url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, env=env, text=True)
        self.read(90)

    def read(self, timeout: float) -> dict:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError("render.js did not answer in time")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"render.js exited ({self.proc.wait()})")
        out = json.loads(line)
        if out.get("error"):
            raise AssertionError("render.js: " + out["error"])
        return out

    def step(self, expect: list[str], screenshot: Path | None = None, timeout: float = 30) -> dict:
        cmd = {"expect": expect, "timeout": timeout}
        if screenshot:
            cmd["screenshot"] = str(screenshot)
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read(timeout + 30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.err.close()


def test_flow_runs_and_dashboard_renders(stack, tmp_path: Path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    broker, nr = stack
    flow = json.loads(FLOW.read_text())

    # every node type of the flow is registered, the deployed flow is ours, and it started cleanly
    types = {n["type"] for n in flow if n["type"] not in ("tab", "subflow", "group")}
    registered = set()
    for module in nr.get("/nodes"):
        registered.update(module.get("types", []))
    assert types - registered == set(), f"node types not registered: {types - registered}"
    deployed = nr.get("/flows")
    assert {n["id"] for n in deployed} == {n["id"] for n in flow}
    nr.wait_log("Connected to broker: mqtt://127.0.0.1:%d" % broker.port)  # env MQTT_HOST/MQTT_PORT used

    ARTIFACTS.mkdir(exist_ok=True)
    fresh_png = ARTIFACTS / "dashboard-fresh.png"
    shot = ARTIFACTS / "dashboard.png"
    for p in (fresh_png, shot):
        p.unlink(missing_ok=True)
    for k in (4, 3, 2, 1, 0):  # five scans, the last one with the values checked below
        publish(broker.port, scan_all_fresh(k))
        time.sleep(0.8 if k else 0)

    r = Renderer(nr.url + "/dashboard/", tmp_path / "render.log")
    try:
        # 1. a complete scan: every pack voltage, the bank total, min/max/delta, hub online, charts
        total = f"{sum(VOLTS):.2f} V"
        expect = [f"{v:.3f} V" for v in VOLTS] + [total, "ONLINE", "3.301 V (P4)", "3.322 V (P2)", "21 mV",
                                                  "No active alarms", "Probe 28ff6a0b", "sensor_fault"]
        out = r.step(expect, screenshot=fresh_png)
        assert out["ok"], f"missing on the dashboard: {out['missing']}\n{out['text']}"
        assert "STALE" not in out["text"]
        bar = [c for c in out["charts"] if '"Pack voltages (V)"' in c]
        assert bar and all(f"{v:.3f}".rstrip("0") in bar[0] for v in VOLTS), out["charts"]
        line = [c for c in out["charts"] if "Pack voltages, last hour" in c]
        assert line and "P8" in line[0], out["charts"]
        assert not out["pageErrors"], out["pageErrors"]

        # 2. pack 8 stops answering while the page is open: stale marker, no total, alarm + notification
        publish(broker.port, scan_pack8_stale())
        alarm = "Packs not answering: 1 (first: pack 8)"
        out = r.step(["STALE", "stale: not answering", "— (1 stale)", alarm, "ALARM bank1: " + alarm], screenshot=shot)
        assert out["ok"], f"missing on the dashboard: {out['missing']}\n{out['text']}\n{out['notifications']}"
        assert any(alarm in n for n in out["notifications"]), out["notifications"]
        assert f"{VOLTS[7]:.3f} V" not in out["text"], "a stale pack must not show its last voltage"
        assert total not in out["text"]
        bar = [c for c in out["charts"] if '"Pack voltages (V)"' in c]
        assert bar and "P8" not in bar[0], bar
    finally:
        r.close()

    for png in (fresh_png, shot):
        w, h, colours = png_stats(png)
        assert w >= 1000 and h >= 700, (png, w, h)
        assert colours > 50, f"{png} looks blank: {colours} colours"

    log = nr.log_text()
    assert "Waiting for missing types" not in log
    bad = [ln for ln in log.splitlines()
           if ("[error]" in ln or "[warn]" in ln) and not any(b in ln for b in BENIGN_WARNINGS)]
    assert not bad, "\n".join(bad)
    if os.environ.get("PACKMON_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copy(shot, ROOT / "docs" / "dashboard.png")
