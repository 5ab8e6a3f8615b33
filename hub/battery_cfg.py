# The `battery` config block (hub/soc.py): its settings with their defaults, and the check that names each bad
# field. A module of its own, loaded by hub/config.py only when a config has a battery block: the board's heap
# is small.

CHEMISTRIES = ("lfp", "nmc")  # hub/ocv.py TABLES (a test keeps them in step)

DEFAULTS = {
    "enabled": False,
    "chemistry": "nmc",
    "capacity_ah": 100,  # one cell's (or one parallel unit's) nominal capacity
    "cells_parallel": 1,  # pack capacity = capacity_ah * cells_parallel
    "charge_efficiency": 0.998,
    "tail_c": 0.05,  # full: charging current at or under this C-rate ...
    "full_mv": 0,  # ... with the packs' mean voltage at or over this (0: the chemistry's default) ...
    "full_hold_s": 120,  # ... held this long
    "rest_c": 0.02,  # rest: |current| at or under this C-rate ...
    "rest_s": 3600,  # ... for this long
    "min_dsoc_pct": 40,  # capacity is learned between rest points at least this far apart
    "step_c": 0.1,  # resistance is learned from current steps at least this large
    "resume_gap_s": 30,  # current unknown for longer: SOC unknown until the next resync
    "weak_capacity_pct": 90,
    "weak_resistance_pct": 130,
    "weak_confidence": 0.8,
    "ocv_sigma_pct": 5,  # how far a generic OCV table may be off mid-curve (half that at the top)
    "ocv_table": None,  # [[soc %, mV], ...] the cell's own rest voltage curve, in place of the chemistry's
    "voltage_error_pct": 0.3,  # the nodes' calibration error
    "restore_max_s": 600,  # a saved SOC is trusted after a reset only if it is younger than this (wall clock)
}


def config_problems(cfg, problems, _num):
    """hub/config.py validate(): every bad field of the battery block (_num is config's range check)."""
    b = "battery."
    chem = cfg["battery"]["chemistry"]
    if chem not in CHEMISTRIES:
        problems.append("battery.chemistry: %r is not known to the hub (known: %s)" % (
            chem, ", ".join(CHEMISTRIES)))
    cap = cfg["battery"]["capacity_ah"]
    if isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap <= 0:
        problems.append("battery.capacity_ah: must be above 0, got %r" % cap)
    else:
        _num(cfg, b + "capacity_ah", 0.01, 100000, problems)
    _num(cfg, b + "cells_parallel", 1, 10000, problems, True)
    _num(cfg, b + "charge_efficiency", 0.5, 1, problems)
    _num(cfg, b + "tail_c", 0.001, 1, problems)
    fm = _num(cfg, b + "full_mv", 0, 5000, problems, True)
    if fm is not None and 0 < fm < 1000:
        problems.append("battery.full_mv: %r mV is not a full pack's voltage (0 = the chemistry's default)" % fm)
    _num(cfg, b + "full_hold_s", 0, 3600, problems)
    _num(cfg, b + "rest_c", 0.0001, 0.5, problems)
    _num(cfg, b + "rest_s", 60, 86400, problems)
    _num(cfg, b + "min_dsoc_pct", 10, 100, problems)
    _num(cfg, b + "step_c", 0.01, 5, problems)
    _num(cfg, b + "resume_gap_s", 0, 3600, problems)
    _num(cfg, b + "weak_capacity_pct", 50, 100, problems)
    _num(cfg, b + "weak_resistance_pct", 100, 1000, problems)
    _num(cfg, b + "weak_confidence", 0, 1, problems)
    _num(cfg, b + "restore_max_s", 0, 86400, problems)
    _num(cfg, b + "ocv_sigma_pct", 0, 50, problems)
    _num(cfg, b + "voltage_error_pct", 0, 10, problems)
    t = cfg["battery"]["ocv_table"]
    if t is not None:
        import sys

        from hub import ocv_table  # only for a config that has a table: the board's heap is small

        e = ocv_table.problem(t)
        sys.modules.pop("hub.ocv_table", None)
        if e:
            problems.append("battery.ocv_table: " + e)


def check(raw, problems, _merge, _num, _bool):
    """hub/config.py validate(): the battery block merged over DEFAULTS; every bad field appended to problems."""
    if not isinstance(raw, dict):
        problems.append("battery: must be an object")
        return {"enabled": False}
    if len(raw) == 1 and raw.get("enabled") is False:
        return {"enabled": False}  # as without the block (and what validate() gives for that)
    b = _merge(DEFAULTS, raw, "battery.", problems)
    cfg = {"battery": b}
    _bool(cfg, "battery.enabled", problems)
    if b["enabled"] is True:
        config_problems(cfg, problems, _num)
    return b
