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
                   help="mqtt://host:port of a broker to publish to (default: start one on 127.0.0.1)")
    p.add_argument("--bank", default="bank1", help="bank name: topics are packmonitor/<bank>/... (default bank1)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between scans (default 1)")
    p.add_argument("--scans", type=int, default=0, help="stop after this many scans (default: until Ctrl-C)")
    p.add_argument("--hub", choices=("cpython", "micropython"), default="cpython",
                   help="run the hub under CPython (default) or the real MicroPython unix port")
    p.add_argument("--no-table", action="store_true", help="print one line per scan instead of the live table")
    p.set_defaults(func=run)


def parse_broker(url: str) -> tuple[str, int]:
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "tcp") or not u.hostname:
        raise SystemExit(f"packmon demo: --broker {url!r}: expected mqtt://host:port")
    return u.hostname, u.port or 1883


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


def hub_config_for(host: str, port: int, bank: str, interval: float, packs: int) -> dict:
    return hub_config.validate(
        {
            "bank": bank,
            "mqtt": {"host": host, "port": port, "timeout_s": 2},
            "scan_interval_s": interval,
            "stale_after_s": max(3.0, 3 * interval),
            "max_packs": max(packs, 1),
            "alarms": {"comms_after_s": max(2, int(3 * interval))},
        },
        need_wifi=False,
    )


def make_hub(cfg: dict, uart, logs: list[str]):
    """The hub's own code under CPython, with the host port around the simulated UART."""
    lib = str(Path(hub_pkg.__file__).parent / "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)  # umqtt.simple, vendored as on the board's /lib
    from hub.app import Hub
    from hub.port import HostPort, install_cpython_shims

    install_cpython_shims()

    def log(level: str, msg: str) -> None:
        logs.append(f"{time.strftime('%H:%M:%S')} {level:<7} {msg}")
        del logs[:-6]

    return Hub(cfg, HostPort(uart, log_level="info", log=log))


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
    active = [alarms_mod.NAMES[k] for k in range(len(alarms_mod.NAMES)) if hub.alarms.active[k]]
    r = hub.ring
    errs = ", ".join(f"{codec.ERROR_NAMES[k]} {r.errors[k]}" for k in range(1, len(r.errors)) if r.errors[k])
    lines.append(f" alarms: {', '.join(active) if active else 'none'}")
    lines.append(f" ring: {r.good}/{r.sent} frames good" + (f"; rejected: {errs}" if errs else ""))
    if scenario.events:
        lines.append(" event: " + "; ".join(scenario.events))
    lines += [" " + x for x in logs[-4:]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.packs <= 64:
        raise SystemExit("packmon demo: --packs must be 1..64")
    if args.hub == "micropython":
        try:
            from . import mpy_hub
        except ImportError:
            raise SystemExit("packmon demo: --hub micropython is not available in this version") from None
        return mpy_hub.run_demo(args)
    scenario = Scenario(args.scenario, args.packs)
    broker = None
    if args.broker:
        host, port = parse_broker(args.broker)
    else:
        from .broker import EmbeddedBroker

        broker = EmbeddedBroker().start()
        host, port = "127.0.0.1", broker.port
    url = f"mqtt://{host}:{port}"
    engine = make_engine(args.engine, args.packs, scenario)
    logs: list[str] = []
    cfg = hub_config_for(host, port, args.bank, args.interval, args.packs)
    hub = make_hub(cfg, SimUart(engine), logs)
    tty = sys.stdout.isatty() and not args.no_table
    print(f"MQTT broker: {url}{' (embedded)' if broker else ''}")
    print(f"watch it:    mosquitto_sub -h {host} -p {port} -t '{cfg['topic_prefix']}/#' -v")
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
                print(f"scan {step}: {b.fresh}/{b.n} packs fresh, bank "
                      f"{(b.total_mv / 1000) if b.complete else float('nan'):.3f} V, "
                      f"published {hub.publisher.published}, ring errors {sum(hub.ring.errors)}"
                      + (f" [{'; '.join(scenario.events)}]" if scenario.events else ""))
            sys.stdout.flush()
            if not args.scans or step < args.scans:
                time.sleep(max(0.0, args.interval - (time.monotonic() - t0)))
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        hub.publisher.close(clean=True)
        close = getattr(engine, "close", None)
        if close:
            close()
        if broker:
            broker.stop()
    print(f"{step} scans, {hub.publisher.published} messages published to {url}")
    return 0
