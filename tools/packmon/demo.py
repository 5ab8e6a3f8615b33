"""`packmon demo`: a simulated bank, scanned by the hub's own code, publishing to an MQTT broker."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import hub as hub_pkg
from hub import alarms as alarms_mod
from hub import codec
from hub import config as hub_config

from .sim.model_ring import ModelRing, SimUart
from .sim.scenarios import NAMES as SCENARIOS
from .sim.scenarios import Scenario


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a simulated bank publishing to MQTT (the hub's own code)",
                       description=__doc__)
    p.add_argument("--packs", type=int, default=8, help="packs in the simulated bank (1-64, default 8)")
    p.add_argument("--engine", choices=("model", "simavr"), default="model",
                   help="model: pure-Python nodes; simavr: the real firmware image in simavr")
    p.add_argument("--scenario", choices=SCENARIOS, default="fixed")
    p.add_argument("--broker", metavar="URL",
                   help="mqtt://host:port (or mqtts:// for TLS) of a broker to publish to "
                        "(default: start one on 127.0.0.1)")
    p.add_argument("--mqtt-config", metavar="FILE", type=Path,
                   help="a hub config file (JSON): its bank and mqtt section (user, password, TLS CA, "
                        "client certificate) are used, so no secret goes on the command line")
    p.add_argument("--bank", default="bank1", help="bank name: topics are packmonitor/<bank>/... (default bank1)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between scans (default 1)")
    p.add_argument("--scans", type=int, default=0, help="stop after this many scans (default: until Ctrl-C)")
    p.add_argument("--hub", choices=("cpython", "micropython"), default="cpython",
                   help="run the hub under CPython (default) or the real MicroPython unix port")
    p.add_argument("--discovery", nargs="?", const="homeassistant", metavar="PREFIX",
                   help="publish Home Assistant MQTT discovery (prefix default homeassistant), so the simulated "
                        "bank appears in a Home Assistant on the same broker; also on with --mqtt-config's "
                        "discovery section")
    p.add_argument("--no-table", action="store_true", help="print one line per scan instead of the live table")
    p.add_argument("--shunt", choices=("ina228", "ina226"),
                   help="add a bank current sensor: the register-level model of this chip on the hub's I2C, "
                        "driven by a compressed solar day (4 minutes: charging by day under clouds, "
                        "inverter loads in steps by night); publishes bank/current, bank/power, bank/energy")
    p.add_argument("--battery", action="store_true",
                   help="one physical bank behind it all: an equivalent-circuit bank of Chen2020 cells through a "
                        "solar day drives both the nodes' voltages and the shunt (INA228) the hub counts, and "
                        "the hub estimates SOC and health (its battery block); time is compressed (--speed)")
    p.add_argument("--speed", type=float, default=120.0,
                   help="with --battery: simulated seconds per real second (default 120: a day in 12 minutes); "
                        "the hub scans every --interval x --speed simulated seconds")
    p.add_argument("--parallel", type=int, default=4, help="with --battery: cells in parallel per pack (default 4)")
    p.add_argument("--weak-pack", type=int, metavar="N", help="with --battery: pack N has 15 %% less capacity")
    p.add_argument("--seed", type=int, default=1, help="with --battery: the seed of the packs' spread and the "
                                                        "sensor's noise (default 1)")
    p.set_defaults(func=run)


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """mqtt://host[:port] or mqtts://host[:port] -> (host, port, tls)."""
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "tcp", "mqtts", "ssl") or not u.hostname:
        raise SystemExit(f"packmon demo: --broker {url!r}: expected mqtt://host:port or mqtts://host:port")
    if u.username or u.password:
        raise SystemExit("packmon demo: put the user and password in a file given with --mqtt-config, "
                         "not in --broker (command lines end up in shell history and `ps`)")
    tls = u.scheme in ("mqtts", "ssl")
    return u.hostname, u.port or (8883 if tls else 1883), tls


def demo_raw_config(args: argparse.Namespace, host: str, port: int, tls: bool = False) -> dict:
    """The hub config (before validation) of a demo run: the simulated bank's settings, with the MQTT
    section (and bank name) of --mqtt-config when given."""
    mqtt: dict = {"host": host, "port": port, "timeout_s": 2}
    bank = args.bank
    discovery = {"enabled": False, "prefix": "homeassistant"}
    if args.mqtt_config:
        try:
            user_cfg = hub_config.load(str(args.mqtt_config), need_wifi=False)
        except hub_config.ConfigError as e:
            raise SystemExit(f"packmon demo: --mqtt-config {args.mqtt_config}: " + "; ".join(e.problems)) from None
        mqtt = dict(user_cfg["mqtt"])
        mqtt.pop("client_id", None)  # derived from the bank again
        if args.broker:
            mqtt["host"], mqtt["port"] = host, port
        bank = user_cfg["bank"]
        discovery = dict(user_cfg["discovery"])  # the config's discovery section is the user's choice too
    if getattr(args, "discovery", None):
        discovery = {"enabled": True, "prefix": args.discovery}
    if tls:
        mqtt["tls"] = {**mqtt.get("tls", {}), "enabled": True}
    interval = args.interval
    battery = getattr(args, "battery", False)
    if battery:
        interval = args.interval * args.speed  # the hub runs on the bank's compressed time
        if mqtt.get("keepalive_s", 60):  # the hub talks to the broker once a scan (simulated seconds)
            mqtt["keepalive_s"] = max(mqtt.get("keepalive_s", 60), int(3 * interval))
    raw = {
        "bank": bank,
        "mqtt": mqtt,
        "scan_interval_s": interval,
        "stale_after_s": max(3.0, 3 * interval),
        "max_packs": 64,
        "alarms": {"comms_after_s": max(2, int(3 * interval))},
        "discovery": discovery,
    }
    if getattr(args, "shunt", None):
        import tempfile

        raw["shunt"] = {"enabled": True, "chip": args.shunt, "shunt_ohms": 0.0005,
                        "max_current_a": 200 if args.shunt == "ina228" else 150}
        raw["state_file"] = str(Path(tempfile.gettempdir()) / f"packmon-demo-{bank}-state.json")
    if battery:
        from .demo_battery import battery_config

        raw["battery"] = battery_config(args)
        # a new bank every run: the counters and the estimator's state of an earlier run are not this bank's
        raw["state_file"] = str(Path(tempfile.mkdtemp(prefix="packmon-demo-battery-")) / "state.json")
    return raw


EPOCH_2000 = 946684800  # 2000-01-01 in Unix time: the hub's wall clock counts from there (MicroPython)


def wall_now() -> int:
    return int(time.time()) - EPOCH_2000


def make_shunt_model(chip: str):
    """The demo's current sensor: the chip model driven by a compressed solar day in real time."""
    from .sim import ina

    t0 = time.monotonic()
    return ina.make_model(chip, 0.0005, ina.solar_day(), lambda: time.monotonic() - t0, gain_error=0.002,
                          offset_ma=20, noise_ma=50, seed=1)


def open_broker(args: argparse.Namespace):
    """The demo's validated hub config, the embedded broker it started (or None) and the broker's URL."""
    broker = None
    host, port, tls = "", 0, False
    if args.broker:
        host, port, tls = parse_broker_url(args.broker)
    elif not args.mqtt_config:
        from .broker import EmbeddedBroker

        broker = EmbeddedBroker().start()
        host, port = "127.0.0.1", broker.port
    try:
        cfg = hub_config.validate(demo_raw_config(args, host, port, tls), need_wifi=False)
    except (SystemExit, hub_config.ConfigError) as e:
        if broker:
            broker.stop()
        if isinstance(e, hub_config.ConfigError):
            raise SystemExit("packmon demo: " + "; ".join(e.problems)) from None
        raise
    m = cfg["mqtt"]
    return cfg, broker, f"{'mqtts' if m['tls']['enabled'] else 'mqtt'}://{m['host']}:{m['port']}"


def watch_command(cfg: dict) -> str:
    m = cfg["mqtt"]
    cmd = f"mosquitto_sub -h {m['host']} -p {m['port']}"
    if m["tls"]["enabled"]:
        cmd += f" --cafile {m['tls']['ca']}" if m["tls"]["ca"] else " --insecure"
    if m["user"]:
        cmd += f" -u {m['user']} -P '<password>'"
    return cmd + f" -t '{cfg['topic_prefix']}/#' -v"


def make_engine(kind: str, packs: int, scenario: Scenario):
    truth = scenario.truth(0)
    mv = [t[0] for t in truth]
    temp = [t[1] for t in truth]
    if kind == "simavr":
        from .sim import simavr_ring

        ok, why = simavr_ring.available()
        if not ok:
            raise SystemExit(f"packmon demo: --engine simavr is not available here: {why}")
        return simavr_ring.SimavrRing(packs, mv=mv, temp=temp)
    return ModelRing(packs, mv=mv, temp=temp)


def _vendored_lib() -> None:
    lib = str(Path(hub_pkg.__file__).parent / "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)  # umqtt.simple, vendored as on the board's /lib


def make_hub(cfg: dict, uart, logs: list[str], i2c=None):  # noqa: ANN001
    """The hub's own code under CPython, with the host port around the simulated UART."""
    _vendored_lib()
    from hub.app import Hub
    from hub.port import HostPort, install_cpython_shims

    install_cpython_shims()

    def log(level: str, msg: str) -> None:
        logs.append(f"{time.strftime('%H:%M:%S')} {level:<7} {msg}")
        del logs[:-6]

    return Hub(cfg, HostPort(uart, log_level="info", log=log, i2c=i2c, wall=wall_now if i2c is not None else None))


def render(hub, scenario: Scenario, step: int, broker: str, engine_name: str, logs: list[str]) -> str:
    b = hub.bank
    clk = hub.port.clock
    now = clk.ticks_ms()
    td = clk.ticks_diff
    lines = [
        f"Pack Monitor demo — {b.n} packs, scenario {scenario.name}, engine {engine_name}, scan {step}",
        f"broker {broker}   topics {hub.cfg['topic_prefix']}/#   "
        f"mqtt {'connected' if hub.publisher.connected else 'DISCONNECTED: ' + hub.publisher.last_error}",
        "",
        " pack  voltage   temp    bad  state  flags",
    ]
    for i in range(b.n):
        mv = b.voltage_mv(i, now, td)
        t = b.temperature(i, now, td)
        stale = b.is_stale(i, now, td)
        flags = ",".join(codec.flag_names(b.flags[i])) if b.have[i] else ""
        lines.append(
            f" {i + 1:>4}  {mv / 1000:7.3f}V " if mv else f" {i + 1:>4}      —    "
        )
        lines[-1] += (f"{t / 10:5.1f}°C" if t != -32768 else "    —  ") + f"  {b.bad[i]:>4}  "
        lines[-1] += ("STALE " if stale else "fresh ") + f" {flags}"
    lines.append("")
    if b.fresh:
        total = f"{b.total_mv / 1000:.3f} V" if b.complete else "— (stale packs)"
        lines.append(
            f" bank {total}   min {b.min_mv / 1000:.3f} V (pack {b.min_pack})   max {b.max_mv / 1000:.3f} V "
            f"(pack {b.max_pack})   delta {(b.max_mv - b.min_mv) / 1000:.3f} V   avg {b.avg_mv / 1000:.3f} V"
        )
    if hub.shunt is not None:
        s, e = hub.shunt, hub.energy
        if s.ok:
            power = f"{s.current_ma * b.total_mv / 1e9:8.3f} kW" if b.complete else "    — (stale packs)"
            lines.append(f" current {s.current_ma / 1000:8.3f} A   power {power}   "
                         f"coverage {s.coverage_ppm / 1e4:.2f} %")
        else:
            lines.append(f" current —   {s.problem}")
        lines.append(f" energy in {e.in_mwh / 1e6:.4f} kWh ({e.in_mah / 1000:.3f} Ah)   "
                     f"out {e.out_mwh / 1e6:.4f} kWh ({e.out_mah / 1000:.3f} Ah)   "
                     f"today in {e.d_in_mwh / 1e6:.4f} kWh out {e.d_out_mwh / 1e6:.4f} kWh")
    active = [alarms_mod.NAMES[k] for k in range(len(alarms_mod.NAMES)) if hub.alarms.active[k]]
    r = hub.ring
    errs = ", ".join(f"{codec.ERROR_NAMES[k]} {r.errors[k]}" for k in range(1, len(r.errors)) if r.errors[k])
    lines.append(f" alarms: {', '.join(active) if active else 'none'}")
    lines.append(f" ring: {r.good}/{r.sent} frames good" + (f"; rejected: {errs}" if errs else ""))
    if scenario.events:
        lines.append(" event: " + "; ".join(scenario.events))
    lines += [" " + x for x in logs[-4:]]
    return "\n".join(lines)


def run_battery(args: argparse.Namespace) -> int:
    """--battery: tools/packmon/demo_battery.py."""
    check_battery_args(args)
    from . import demo_battery

    return demo_battery.run(args)


def check_battery_args(args: argparse.Namespace) -> None:
    """--battery: the options that go with it (the shunt defaults to the INA228); one line for each bad one."""
    if args.shunt is None:
        args.shunt = "ina228"
    if args.shunt != "ina228":
        raise SystemExit("packmon demo: --battery needs the INA228 (--shunt ina228): time is compressed, and the "
                         "INA226 has no charge accumulator to count between scans minutes of bank time apart")
    if args.hub != "cpython":
        raise SystemExit("packmon demo: --battery runs the hub under CPython only: the compressed time needs the "
                         "hub's clock, which the MicroPython unix port keeps in real time")
    if args.scenario != "fixed":
        raise SystemExit("packmon demo: --battery replaces the scenario: the bank's day sets every pack's voltage")
    if not 1 <= args.speed <= 3600:
        raise SystemExit("packmon demo: --speed must be 1..3600 simulated seconds per real second")
    if not 1 <= args.parallel <= 100:
        raise SystemExit("packmon demo: --parallel must be 1..100")
    if args.weak_pack is not None and not 1 <= args.weak_pack <= args.packs:
        raise SystemExit(f"packmon demo: --weak-pack {args.weak_pack}: must be a pack number 1..{args.packs}")


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.packs <= 64:
        raise SystemExit("packmon demo: --packs must be 1..64")
    if getattr(args, "battery", False):
        return run_battery(args)
    if args.hub == "micropython":
        try:
            from . import mpy_hub
        except ImportError:
            raise SystemExit("packmon demo: --hub micropython is not available in this version") from None
        return mpy_hub.run_demo(args)
    scenario = Scenario(args.scenario, args.packs)
    logs: list[str] = []
    cfg, broker, url = open_broker(args)
    engine = make_engine(args.engine, args.packs, scenario)
    model = make_shunt_model(args.shunt) if args.shunt else None
    hub = make_hub(cfg, SimUart(engine), logs, model)
    tty = sys.stdout.isatty() and not args.no_table
    print(f"MQTT broker: {url}{' (embedded)' if broker else ''}")
    print(f"watch it:    {watch_command(cfg)}")
    print("Ctrl-C stops.\n")
    step = 0
    try:
        while not args.scans or step < args.scans:
            t0 = time.monotonic()
            scenario.apply(engine, step)
            hub.run_once()
            step += 1
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J" + render(hub, scenario, step, url, args.engine, logs) + "\n")
            else:
                b = hub.bank
                cur = ""
                if hub.shunt is not None:
                    cur = (f", current {hub.shunt.current_ma / 1000:.3f} A" if hub.shunt.ok else ", current unknown")
                    cur += f", energy in {hub.energy.in_mwh / 1000:.3f} Wh out {hub.energy.out_mwh / 1000:.3f} Wh"
                print(f"scan {step}: {b.fresh}/{b.n} packs fresh, bank "
                      f"{(b.total_mv / 1000) if b.complete else float('nan'):.3f} V{cur}, "
                      f"published {hub.publisher.published}, ring errors {sum(hub.ring.errors)}"
                      + (f" [{'; '.join(scenario.events)}]" if scenario.events else ""))
            sys.stdout.flush()
            if not args.scans or step < args.scans:
                while True:  # as the board's run_forever: the shunt driver polls between scans
                    left = args.interval - (time.monotonic() - t0)
                    if left <= 0:
                        break
                    hub.idle()
                    time.sleep(min(left, 0.25))
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        if hub.shunt is not None:
            hub.store.service(hub.port.clock.ticks_ms(), force=True)
        hub.publisher.close(clean=True)
        close = getattr(engine, "close", None)
        if close:
            close()
        if broker:
            broker.stop()
    print(f"{step} scans, {hub.publisher.published} messages published to {url}")
    return 0
