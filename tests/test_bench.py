"""The benchmark's logic (figures are printed by `packmon bench`, not asserted on wall time)."""

from __future__ import annotations

from packmon import bench


def test_model_scan_is_linear_and_within_target() -> None:
    lines: list[str] = []
    rows = bench.table("model", [1, 16, 32, 64], out=lines.append)
    by_n = {r["n"]: r for r in rows}
    assert all(r["ok"] for r in rows)
    assert by_n[16]["scan"] / by_n[16]["floor"] <= 2.5
    per_pack = [by_n[n]["scan"] / n for n in (16, 32, 64)]
    assert max(per_pack) / min(per_pack) < 1.15
    assert any("16 packs within 2.5x the wire floor: yes" in line for line in lines)


def test_reference_scheme_is_quadratic() -> None:
    # R*N*(N+1)*Q byte times: doubling N roughly quadruples the time
    assert bench.reference_scan_s(64) / bench.reference_scan_s(32) > 3.9
    assert abs(bench.reference_scan_s(16) - 2 * 16 * 17 * 8 * 10 / 9600) < 1e-9


def test_diybms_reference_is_printed_beside_ours() -> None:
    lines: list[str] = []
    rows = bench.table("model", [16, 64], out=lines.append)
    for r in rows:
        # store and forward of whole 41-byte frames costs more than our cut-through scan, less than
        # the original packMonitor's one register per round trip at these sizes
        assert r["scan"] < r["v4"] < r["ref"]
    assert any(line.startswith("diyBMS v4") for line in lines)
    assert any("2400 baud, 900 ms gap" in line for line in lines)
