"""`packmon protect-check`: the protection scenarios in the closed loop (sim/closed_loop.py), a table of
reaction times, overshoots and chatter, or `--json` (one object per scenario).

Targets (docs/hub.md "Protection"): reaction <= scan interval + scan time + the node's 0.2 s measurement
period + relay delay; overshoot <= the true voltage change over that time at the scenario's current;
no change sooner than the minimum on/off time after the previous one."""

from __future__ import annotations

import argparse

from .common import EXIT_FAIL, EXIT_USAGE, ToolError


def register(sub: argparse._SubParsersAction) -> None:
    from .sim.closed_loop import IDS

    p = sub.add_parser("protect-check", help="run the protection scenarios in the closed-loop simulation",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", nargs="*", metavar="ID", help=f"scenario ids (default: all): {', '.join(IDS)}")
    p.add_argument("--engine", choices=("model", "simavr"), default="model",
                   help="the ring: the pure-Python node model or the real node image in simavr")
    p.add_argument("--hub", choices=("cpython", "micropython"), default="cpython",
                   help="micropython: the hub on the MicroPython unix port, in real time (voltage scenarios)")
    p.add_argument("--short", action="store_true", help="the short forms the tests run")
    p.add_argument("--json", action="store_true", help="a JSON list, one object per scenario")
    p.set_defaults(func=run)


def _fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:g}{unit}"


def run(args: argparse.Namespace) -> int:
    from .sim import closed_loop as cl

    ids = args.scenarios or list(cl.IDS)
    for name in ids:
        if name not in cl.IDS:
            raise ToolError(f"unknown scenario {name!r}; choose from {', '.join(cl.IDS)}", EXIT_USAGE)
    if args.hub == "micropython" and args.engine != "model":
        raise ToolError("--hub micropython runs in real time against the model ring only (simavr's nodes measure "
                        "in simulated time, which does not follow the wall clock)", EXIT_USAGE)
    results = []
    for name in ids:
        if args.hub == "micropython":
            from .mpy_hub import available

            ok, why = available()
            if not ok:
                raise ToolError(f"--hub micropython: {why}")
            if cl.spec(name).limit not in ("high", "low"):
                continue
            results.append(cl.run_mpy(name, args.engine))
        else:
            results.append(cl.run(name, args.engine, short=args.short))
    if args.json:
        print(cl.dumps(results))
    else:
        print(f"{'scenario':22} {'pass':5} {'reaction':>9} {'target':>8} {'overshoot':>10} {'allowed':>9} "
              f"{'chatter':>7}  ({args.engine} ring, {args.hub} hub)")
        for r in results:
            print(f"{r.name:22} {'yes' if r.passed else 'NO':5} {_fmt(r.reaction_s, ' s'):>9} "
                  f"{_fmt(r.allowed_reaction_s, ' s'):>8} {_fmt(r.overshoot_mv, ' mV'):>10} "
                  f"{_fmt(r.allowed_overshoot_mv, ' mV'):>9} {r.chatters:>7}")
            if r.detail:
                print(f"{'':22} {r.detail}")
            for what, ok in r.checks.items():
                if not ok:
                    print(f"{'':22} FAILED: {what}")
    return 0 if all(r.passed for r in results) else EXIT_FAIL


__all__ = ["register", "run"]
