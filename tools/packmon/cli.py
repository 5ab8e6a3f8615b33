"""The `packmon` command: one entry point for every host tool.

Each subcommand lives in its own module exposing register(subparsers), which adds its parser and sets
`func` (func(args) -> exit code). A module that is not there is simply absent from the command; a module
that is there but cannot be imported (a missing dependency) shows up with a message saying why."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from .common import EXIT_INTERRUPTED, EXIT_MISSING_TOOL, EXIT_USAGE, ToolError

# module name in packmon -> the subcommand it registers (for the placeholder of a broken module)
SUBCOMMANDS = {
    "ring": "ring",
    "simserve": "sim",
    "deploy": "deploy",
    "flash": "flash-node",
    "check_config": "check-config",
    "demo": "demo",
    "bench": "bench",
    "protect_check": "protect-check",
    "accuracy": "accuracy",
}


def _unavailable(sub: argparse._SubParsersAction, command: str, error: ImportError) -> None:
    # takes any arguments (no option prefix), so the message below is what the user sees
    p = sub.add_parser(command, help=f"(unavailable: {error})", add_help=False, prefix_chars="\0")
    p.add_argument("rest", nargs="*")

    def run(args: argparse.Namespace) -> int:
        raise ToolError(f"packmon {command} is unavailable in this installation: {error} "
                        "(pip install -e '.[dev]' installs every dependency)", EXIT_MISSING_TOOL)

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="packmon", description="Pack Monitor host tools")
    p.add_argument("--version", action="version", version="packmon 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module, command in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(f"packmon.{module}")
        except ImportError as e:
            if isinstance(e, ModuleNotFoundError) and e.name == f"packmon.{module}":
                continue  # not written yet / not part of this install: the command is absent
            _unavailable(sub, command, e)
            continue
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except ToolError as e:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(e), "exit": e.code}), flush=True)
        print(f"packmon {args.command}: {e}", file=sys.stderr, flush=True)
        return e.code
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
