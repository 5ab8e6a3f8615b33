"""The node firmware: host unit tests over every vector, and the ATtiny85 build within its budget."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "node_fw"
N_VECTORS = len(json.loads((ROOT / "tests" / "vectors" / "frames.json").read_text())["frames"])


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(FW), *args], capture_output=True, text=True)


@pytest.mark.skipif(not shutil.which("gcc"), reason="no host C compiler")
def test_host_unit_tests_check_every_vector() -> None:
    r = make("test")
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"checked (\d+) frame vectors, (\d+) CRC examples; (\d+) checks, (\d+) failed", r.stdout)
    assert m, r.stdout
    assert int(m.group(1)) == N_VECTORS
    assert int(m.group(4)) == 0


@pytest.mark.skipif(not shutil.which("avr-gcc"), reason="gcc-avr not installed (apt-get install gcc-avr avr-libc)")
@pytest.mark.parametrize("args", [[], ["F_CPU=16500000"], ["F_CPU=8250000"], ["SIM=1"], ["TRIM=0"]],
                         ids=["8MHz", "digispark-16.5MHz", "digispark-8.25MHz", "simavr", "no-trim"])
def test_avr_image_within_budget(args: list[str]) -> None:
    r = make(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    # 6012 B: what an original Digispark's micronucleus 1.x leaves for the application
    m = re.search(r"flash: (\d+) / 6012 bytes, RAM: (\d+) / 256 bytes", r.stdout)
    assert m, r.stdout
    flash, ram = int(m.group(1)), int(m.group(2))
    print(f"node image {args or 'default'}: flash {flash} B, RAM {ram} B")
    assert 500 < flash <= 6012
    assert 0 < ram <= 256


@pytest.mark.skipif(not shutil.which("avr-gcc"), reason="gcc-avr not installed")
def test_budget_check_can_fail() -> None:
    """The Makefile's budget gate really stops an image that is too big."""
    r = make("FLASH_BUDGET=1000", "BUILD=build/budget-check")
    assert r.returncode != 0
    assert "OVER BUDGET" in r.stdout
