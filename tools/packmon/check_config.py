"""`packmon check-config FILE`: validate a hub config on the PC with the hub's own validator
(hub/config.py), so the PC and the board can never disagree about a config."""

from __future__ import annotations

import argparse
import json

from hub import config as hub_config

from .common import EXIT_FAIL


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a hub config file (every problem, each naming its field)",
                       description=__doc__)
    p.add_argument("file", help="the config, e.g. hub/config.json")
    p.add_argument("--host", action="store_true", help="a config for a PC hub: no Wi-Fi needed")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def check(path: str, need_wifi: bool = True) -> tuple[dict | None, list[str]]:
    """(the full config, []) or (None, every problem as 'field: what is wrong')."""
    try:
        cfg = hub_config.load(path, need_wifi)
    except hub_config.ConfigError as e:
        return None, list(e.problems)
    soft = list(cfg["shunt_problems"]) + list(cfg["battery_problems"])
    if soft:  # the hub would run with the shunt/estimator off; on the PC these are errors
        return None, soft
    # the TLS files must exist on the PC: `packmon deploy` copies them to the board
    from .deploy import find_tls_files

    _, problems = find_tls_files(cfg, path)
    return (None, problems) if problems else (cfg, [])


def run(args: argparse.Namespace) -> int:
    cfg, problems = check(args.file, not args.host)
    warnings = hub_config.warnings(cfg) if cfg else []
    if args.json:
        print(json.dumps({"file": args.file, "ok": not problems, "problems": problems, "warnings": warnings,
                          "config": hub_config.redacted(cfg) if cfg else None}))
        return EXIT_FAIL if problems else 0
    if problems:
        print(f"{args.file}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        for p in problems:
            print(f"  - {p}")
        return EXIT_FAIL
    assert cfg is not None
    for w in warnings:
        print(f"  warning: {w}")
    m = cfg["mqtt"]
    sh = cfg["shunt"]
    shunt = (f", shunt {sh['chip'].upper()} at 0x{sh['address']:02x} ({sh['shunt_ohms']} ohm, "
             f"{sh['max_current_a']} A)" if sh["enabled"] else "")
    b = cfg["battery"]
    if b["enabled"]:
        shunt += (f", SOC/health for {b['chemistry'].upper()} packs of {b['capacity_ah']} Ah x "
                  f"{b['cells_parallel']}P" + ("" if sh["enabled"] else " (no shunt block: SOC stays unknown)"))
    print(f"{args.file}: OK (bank {cfg['bank']}, topics {cfg['topic_prefix']}/..., broker {m['host']}:{m['port']}"
          f"{' with TLS' if m['tls']['enabled'] else ''}, scan every {cfg['scan_interval_s']} s{shunt})")
    return 0
