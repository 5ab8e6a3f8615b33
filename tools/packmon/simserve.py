"""`packmon sim`: serve a simulated ring on a pseudo-terminal, so any serial tool — `packmon ring --port`,
pyserial, minicom, the hub itself under CPython — talks to it exactly as to a USB-serial adapter wired
to a real ring."""

from __future__ import annotations

import argparse
import time

from .common import EXIT_MISSING_TOOL, EXIT_USAGE, ToolError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="serve a simulated ring on a pseudo-terminal", description=__doc__)
    p.add_argument("--packs", type=int, default=8, help="packs in the ring, 1..64 (default 8)")
    p.add_argument("--engine", choices=("model", "simavr"), default="model",
                   help="model: pure-Python nodes (default); simavr: the real firmware image in simavr")
    p.add_argument("--ber", type=float, default=0.0, metavar="RATE", help="bit error rate on every hop (e.g. 1e-4)")
    p.add_argument("--voltages", metavar="V[,V...]",
                   help="pack voltages in volts: one for every pack, or one per pack (default 3.280..3.339)")
    p.add_argument("--temps", metavar="C[,C...]", help="pack temperatures in °C, one or one per pack")
    p.add_argument("--bandgap", metavar="N=V", action="append", default=[],
                   help="node N's real bandgap in volts (model engine), e.g. 2=1.080: it reads wrong until "
                        "calibrated (repeatable)")
    p.add_argument("--no-pace", dest="pace", action="store_false",
                   help="answer at once instead of after the simulated wire time")
    p.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the pty (a stable name)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this many seconds (default: Ctrl-C)")
    p.set_defaults(func=run)


def parse_values(text: str | None, packs: int, scale: float, what: str) -> list[int] | None:
    if not text:
        return None
    try:
        vals = [round(float(x) * scale) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ToolError(f"--{what} {text!r}: expected numbers separated by commas", EXIT_USAGE) from None
    if len(vals) == 1:
        return vals * packs
    if len(vals) != packs:
        raise ToolError(f"--{what}: {len(vals)} values for {packs} packs (give one, or one per pack)", EXIT_USAGE)
    return vals


def make_engine(kind: str, packs: int, mv: list[int], temp: list[int], ber: float):
    if kind == "simavr":
        try:
            from .sim import simavr_ring
        except ImportError as e:
            raise ToolError(f"--engine simavr is not part of this installation ({e})", EXIT_MISSING_TOOL) from e
        ok, why = simavr_ring.available()
        if not ok:
            raise ToolError(f"--engine simavr is not available here: {why}", EXIT_MISSING_TOOL)
        return simavr_ring.SimavrRing(packs, mv=mv, temp=temp, ber=ber)
    from .sim.model_ring import ModelRing

    return ModelRing(packs, mv=mv, temp=temp, ber=ber)


def run(args: argparse.Namespace) -> int:
    from .sim.pty_bridge import PtyBridge

    n = args.packs
    if not 1 <= n <= 64:
        raise ToolError(f"--packs {n}: a ring has 1..64 packs", EXIT_USAGE)
    if not 0.0 <= args.ber < 0.5:
        raise ToolError(f"--ber {args.ber}: a bit error rate is 0 <= BER < 0.5", EXIT_USAGE)
    mv = parse_values(args.voltages, n, 1000, "voltages") or [3280 + (i * 37) % 60 for i in range(n)]
    temp = parse_values(args.temps, n, 10, "temps") or [215 + (i * 13) % 40 for i in range(n)]
    engine = make_engine(args.engine, n, mv, temp, args.ber)
    for spec in args.bandgap:
        node, _, volts = spec.partition("=")
        try:
            i, bg = int(node), round(float(volts) * 10000)
        except ValueError:
            raise ToolError(f"--bandgap {spec!r}: expected N=VOLTS, e.g. 2=1.080", EXIT_USAGE) from None
        if not hasattr(engine, "set_bandgap") or not 1 <= i <= n:
            raise ToolError(f"--bandgap {spec!r}: node 1..{n}, model engine only", EXIT_USAGE)
        engine.set_bandgap(i - 1, bg)
    bridge = PtyBridge(engine, pace=args.pace, link=args.link)
    bridge.start()
    try:
        where = bridge.path + (f" (also {args.link})" if args.link else "")
        print(f"simulated ring of {n} pack{'s' if n != 1 else ''} ({args.engine} engine"
              f"{', BER %g' % args.ber if args.ber else ''}) on {where}")
        print(f"try: packmon ring scan --port {args.link or bridge.path}")
        print("Ctrl-C stops.", flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while deadline is None or time.monotonic() < deadline:
            if bridge.error:
                raise ToolError(f"the simulated ring stopped: {bridge.error!r}")
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        bridge.stop()
        close = getattr(engine, "close", None)
        if close:
            close()
        print(f"stopped after {bridge.exchanges} exchange{'s' if bridge.exchanges != 1 else ''}", flush=True)
    return 0
