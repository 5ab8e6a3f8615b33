"""Shared bits of the host tools: friendly errors with exit codes, the repository root, running external
programs with their exact command line shown."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# exit codes (docs/tools.md)
EXIT_OK = 0
EXIT_FAIL = 1  # the job failed: ring problem, config problems, an external step failed
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well)
EXIT_PORT = 3  # the serial port cannot be opened
EXIT_MISSING_TOOL = 4  # an external program is not installed
EXIT_INTERRUPTED = 130


class ToolError(Exception):
    """An error meant for the user: the message says what is wrong and what to try; code is the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


def need_tool(name: str, install_hint: str) -> str:
    """The path of an external program, or a ToolError telling how to install it."""
    path = shutil.which(name)
    if not path:
        raise ToolError(f"{name} is not installed (or not on PATH): {install_hint}", EXIT_MISSING_TOOL)
    return path


def shown(argv: Sequence[str]) -> str:
    return shlex.join(list(argv))


def display_path(p: Path | str) -> str:
    """p relative to the working directory when it is below it (shorter, and what a user would type)."""
    path = Path(p)
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:
        return str(path)


def run_shown(argv: Sequence[str], out=None, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    """Print `$ command line`, run it (output goes straight to the terminal unless capture), and raise a
    ToolError naming the command when it fails and check is set."""
    out = out or sys.stdout
    print("$ " + shown(argv), file=out, flush=True)
    try:
        r = subprocess.run(list(argv), capture_output=capture, text=True)
    except FileNotFoundError as e:
        raise ToolError(f"{argv[0]} is not installed (or not on PATH): {e}", EXIT_MISSING_TOOL) from e
    if check and r.returncode != 0:
        detail = ""
        if capture:
            detail = "\n" + ((r.stdout or "") + (r.stderr or "")).strip()
        raise ToolError(f"this step failed (exit status {r.returncode}): {shown(argv)}{detail}", EXIT_FAIL)
    return r


@dataclass
class ShuntReading:
    """One cycle's shunt reading as hub/shunt.py gives it to the estimator (hub/soc.py reads these attributes):
    for the tools that drive the estimator without a shunt chip model (packmon accuracy, bench --snapshot)."""

    ok: bool = True
    current_ma: int = 0
    dq_mas: int = 0
    dt_ms: int = 0
    coverage_ppm: int = 1000000
