"""libFuzzer on the node's frame handling, CI-sized (`make -C node_fw fuzz FUZZ_SECONDS=900` is the long run)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

FW = Path(__file__).resolve().parents[1] / "node_fw"


@pytest.mark.skipif(not shutil.which("clang"), reason="clang not installed (apt-get install clang libclang-rt-14-dev)")
def test_fuzz_frame_handling_for_a_minute() -> None:
    r = subprocess.run(["make", "-C", str(FW), "fuzz", "FUZZ_SECONDS=60"], capture_output=True, text=True,
                       timeout=300)
    out = r.stdout + r.stderr
    if "cannot find" in out and "libclang_rt.fuzzer" in out:
        pytest.skip("clang's fuzzer runtime is missing (apt-get install libclang-rt-14-dev)")
    assert r.returncode == 0, out[-3000:]
    m = re.search(r"Done (\d+) runs", out)
    assert m and int(m.group(1)) > 10_000, out[-2000:]
    print(f"libFuzzer: {m.group(1)} runs in 60 s, no crash, no stuck state")
