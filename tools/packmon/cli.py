"""The `packmon` command: one entry point for every host tool. Each subcommand lives in its own module
exposing register(subparsers), which adds its parser and sets `func`."""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("demo", "bench", "ring", "simserve", "deploy", "flash", "check_config")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="packmon", description="Pack Monitor host tools")
    p.add_argument("--version", action="version", version="packmon 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"packmon.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"packmon.{name}":
                continue  # not part of this install
            raise
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
