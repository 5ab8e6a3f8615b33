"""Discovery from the hub's side, against a real Mosquitto (tests/test_home_assistant.py checks what Home
Assistant makes of it): the entity table, slices, resending, removal of gone packs."""

from __future__ import annotations

import json

from packmon.sim.model_ring import ModelRing

from hub import alarms, discovery
from tests.hub.test_hub_mqtt import cycles, make_hub

DISC = {"enabled": True, "prefix": "homeassistant"}


def configs(sub) -> dict[str, dict | None]:  # noqa: ANN001
    out: dict[str, dict | None] = {}
    for t, v, _ in sub.messages:
        if t.startswith("homeassistant/") and t.endswith("/config"):
            out[t] = json.loads(v) if v else None
    return out


def table_rows(c: list[bytes]) -> list[bytes]:
    """Every row of the entity table for the capabilities c."""
    t = discovery.tables(c)
    out = []
    while (r := discovery._line(t, len(out))) is not None:
        out.append(r[0][r[1]:r[2]])
    return out


def test_the_table_parses_and_covers_every_alarm() -> None:
    assert len(table_rows([b""])) == 36  # a hub without a shunt or battery block: ROWS alone
    rows = [discovery._fields(r) for r in table_rows([b"", b"shunt", b"battery"])]
    assert len(rows) == 56
    words = {b"OWN", b"PACK", b"NOAV", b"EXP", b"DIAG", b"ATTR", b"CMD"}
    for _gate, comp, _scope, q, _name, topic, _field, flags, extra in rows:
        assert comp in (b"sensor", b"binary_sensor", b"button") and topic.startswith(b"/") and set(flags) <= words, q
        json.loads(b"{" + extra.replace(b"#", b"1") + b"}" if extra else b"{}")  # extra is JSON members
    assert {q.decode() for _, _, scope, q, *_ in rows if scope == b"alarm"} == set(alarms.NAMES)
    ids = [(scope, q) for _, _, scope, q, *_ in rows]
    assert len(ids) == len(set(ids))  # object ids are unique
    gates = {gate for gate, *_ in rows}
    assert {b"shunt", b"battery"} <= gates
    for gate, _comp, scope, q, _name, _topic, field, flags, extra in rows:
        if gate in (b"shunt", b"battery") and not field:  # a plain topic: emptied when unknown
            assert b"OWN" in flags, q
        if gate == b"battery" and scope == b"pack":  # per-pack: unavailable while the pack is stale
            assert b"PACK" in flags, q
        if b"total_increasing" in extra and b"energy" in extra:  # HA's Energy dashboard: kWh, energy
            assert b'"unit_of_meas":"kWh","dev_cla":"energy"' in extra and field.endswith(b"_kwh"), q


def _with_blocks(cfg_over: dict) -> dict:
    from hub import config

    raw = {"mqtt": {"host": "127.0.0.1", "port": 1}, "discovery": DISC}
    raw.update(cfg_over)
    return config.validate(raw, need_wifi=False)


def test_the_shunt_and_battery_gates_follow_their_blocks() -> None:
    assert discovery.caps(_with_blocks({})) == [b""]
    assert discovery.caps(_with_blocks({"shunt": {"enabled": True}})) == [b"", b"shunt"]
    both = discovery.caps(_with_blocks({"shunt": {"enabled": True}, "battery": {"enabled": True}}))
    assert both == [b"", b"shunt", b"battery"]
    assert discovery.caps(_with_blocks({"battery": {"enabled": True}})) == [b"", b"battery"]


def test_shunt_and_battery_configs_only_with_their_blocks(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    """With both blocks on, the hub announces the current, energy, SOC and health entities (the per-pack ones
    per pack); without them, none of them."""
    from packmon.sim import ina
    from packmon.sim.model_ring import SimUart

    from hub import config
    from hub.app import Hub
    from hub.port import HostPort

    sub = subscriber_factory(mosquitto.port, "homeassistant/#")
    raw = {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "timeout_s": 1}, "scan_interval_s": 1,
           "stale_after_s": 5, "max_packs": 2, "discovery": DISC, "bank": "blocks",
           "shunt": {"enabled": True, "chip": "ina228", "shunt_ohms": 0.0005, "max_current_a": 200},
           "battery": {"enabled": True, "chemistry": "nmc", "capacity_ah": 100},
           "state_file": str(tmp_path / "state.json")}
    cfg = config.validate(raw, need_wifi=False)
    model = ina.make_model("ina228", 0.0005, lambda t: 5.0, lambda: clock.t / 1000)
    hub = Hub(cfg, HostPort(SimUart(ModelRing(2)), clock=clock, log=lambda *a: None, i2c=model))
    cycles(hub, clock, 6)
    d = hub.publisher.discovery
    assert not d.pending()
    assert d.sent == 24 + 14 + 2 * 9  # + 14 for the bank and the shunt, 9 per pack
    pre = "homeassistant/sensor/packmon_blocks/"
    sub.wait_for(lambda s: pre + "pack_2_soc/config" in configs(s))
    got = configs(sub)
    soc = got[pre + "pack_2_soc/config"]
    assert soc["stat_t"] == "~/pack/2/soc" and soc["unit_of_meas"] == "%" and soc["dev_cla"] == "battery"
    assert [a["t"] for a in soc["avty"]] == ["~/status", "~/pack/2/soc", "~/pack/2/state"]  # OWN and PACK
    energy = got[pre + "bank_energy_in_today/config"]
    assert energy["val_tpl"] == "{{value_json.today_in_kwh if value else None}}"
    assert (energy["unit_of_meas"], energy["dev_cla"], energy["stat_cla"]) == ("kWh", "energy", "total_increasing")
    problem = got["homeassistant/binary_sensor/packmon_blocks/shunt_problem/config"]
    assert "(value_json.ok == false) is not none" in problem["val_tpl"] and problem["ent_cat"] == "diagnostic"
    assert got["homeassistant/binary_sensor/packmon_blocks/pack_1_weakest/config"]["stat_t"] == "~/pack/1/health"
    assert got[pre + "pack_1_resistance/config"]["unit_of_meas"] == "m\u03a9"
    hub.publisher.close()
    plain, _ = make_hub(mosquitto.port, clock, engine=ModelRing(2), discovery=DISC, max_packs=2, bank="plain")
    cycles(plain, clock, 4)
    assert plain.publisher.discovery.sent == 24 + 6
    sub.wait_for(lambda s: any("packmon_plain/pack_2_status" in t for t in configs(s)))
    assert not [t for t in configs(sub) if "packmon_plain/" in t and any(
        k in t for k in ("current", "energy", "soc", "health", "weakest", "shunt", "time_to"))]
    plain.publisher.close()


def test_64_packs_go_out_in_slices_and_once(mosquitto, subscriber_factory, clock) -> None:
    sub = subscriber_factory(mosquitto.port, "homeassistant/#")
    hub, _ = make_hub(mosquitto.port, clock, engine=ModelRing(64), discovery=DISC)
    per_cycle = []
    d = None
    for _ in range(20):
        hub.run_once()
        clock.advance(1)
        d = hub.publisher.discovery
        per_cycle.append(d.sent)
        if not d.pending():
            break
    steps = [b - a for a, b in zip([0] + per_cycle[:-1], per_cycle, strict=True)]
    assert max(steps) <= discovery._PER_CYCLE and not d.pending()
    total = 24 + 3 * 64  # 24 entities for the bank, alarms, hub and ring; 3 per pack
    assert d.sent == total and len(steps) == -(-total // discovery._PER_CYCLE)
    sub.wait_for(lambda s: len(configs(s)) == total)
    got = configs(sub)
    assert all(v is not None for v in got.values())
    assert got["homeassistant/sensor/packmon_bank1/pack_64_voltage/config"]["stat_t"] == "~/pack/64/voltage"
    size = sum(len(t) + len(v) for t, v, _ in sub.messages if t.endswith("/config"))
    print(f"discovery for 64 packs: {total} configs, {size} bytes")
    cycles(hub, clock, 3)
    assert d.sent == total  # nothing more once everything is out
    hub.publisher.close()


def test_pack_count_changes_remove_and_add_configs(mosquitto, subscriber_factory, clock) -> None:
    sub = subscriber_factory(mosquitto.port, "homeassistant/#")
    eng = ModelRing(4, mv=3300, temp=250)
    hub, _ = make_hub(mosquitto.port, clock, engine=eng, discovery=DISC, max_packs=6)
    cycles(hub, clock, 4)
    t = "homeassistant/sensor/packmon_bank1/pack_{}_{}/config"
    sub.wait_for(lambda s: configs(s).get(t.format(4, "voltage")) is not None)
    # after a boot the hub removes the configs of every pack beyond the ring, up to max_packs
    sub.wait_for(lambda s: t.format(6, "status") in configs(s))
    assert configs(sub)[t.format(5, "voltage")] is None and configs(sub)[t.format(6, "status")] is None
    mark = len(sub.messages)
    eng.remove_node(3)
    cycles(hub, clock, 4)
    assert hub.bank.n == 3
    sub.wait_for(lambda s: t.format(4, "temperature") in {m[0] for m in s.messages[mark:]})
    after = {m[0]: m[1] for m in sub.messages[mark:]}
    assert after[t.format(4, "voltage")] == b"" and after[t.format(4, "status")] == b""  # removed, retained
    assert not any("pack_1_" in k or "pack_3_" in k for k in after)  # the packs that stay are left alone
    mark = len(sub.messages)
    eng.insert_node(3)
    cycles(hub, clock, 6)
    sub.wait_for(lambda s: t.format(4, "voltage") in {m[0] for m in s.messages[mark:]})
    assert configs(sub)[t.format(4, "voltage")]["uniq_id"] == "packmon_bank1_pack_4_voltage"
    hub.publisher.close()


def test_a_broker_reconnect_sends_everything_again(mosquitto, clock) -> None:
    hub, _ = make_hub(mosquitto.port, clock, engine=ModelRing(2), discovery=DISC, max_packs=2)
    cycles(hub, clock, 3)
    d = hub.publisher.discovery
    first = d.sent
    assert first == 24 + 6 and not d.pending()
    mosquitto.stop()
    cycles(hub, clock, 2, 0.2)
    mosquitto.start()
    cycles(hub, clock, 6)
    assert hub.publisher.connects == 2 and d.sent == 2 * first
    hub.publisher.close()


def test_the_acl_check_covers_each_component(clock) -> None:
    hub, _ = make_hub(1, clock, discovery=DISC)
    assert hub.publisher.check_topics == [b"packmonitor/bank1/check", b"homeassistant/sensor/packmon_bank1/check",
                                          b"homeassistant/binary_sensor/packmon_bank1/check"]
    assert hub.publisher.listen == [b"homeassistant/status"]
    plain, _ = make_hub(1, clock)
    assert plain.publisher.check_topics == [b"packmonitor/bank1/check"] and plain.publisher.listen == []


def test_out_of_memory_in_discovery_never_stops_scanning(mosquitto, clock, monkeypatch) -> None:
    logs: list[str] = []
    hub, _ = make_hub(mosquitto.port, clock, engine=ModelRing(2), discovery=DISC, max_packs=2, logs=logs)
    d = hub.publisher.discovery
    real = d._send
    calls = {"n": 0}

    def tight(*a):  # noqa: ANN002
        calls["n"] += 1
        if calls["n"] == 5:
            raise MemoryError("memory allocation failed")
        return real(*a)

    monkeypatch.setattr(d, "_send", tight)
    cycles(hub, clock, 4)
    assert hub.bank.scans == 4 and hub.publisher.connected
    assert any("discovery: out of memory; trying again next cycle" in line for line in logs)
    assert not d.pending() and d.sent == 24 + 6  # the config that failed went out on a later cycle
    hub.publisher.close()


def test_protection_outputs_join_through_the_table(mosquitto, subscriber_factory, clock, tmp_path) -> None:
    """Outputs in use get a binary sensor each (and a latch sensor for charge/discharge); the reset buttons
    exist only with protect.mqtt_reset on; outputs not in use get nothing."""
    sub = subscriber_factory(mosquitto.port, "homeassistant/#")
    outs = {"charge_enable": {"pin": 25}, "discharge_enable": {"pin": 26}}
    hub, _ = make_hub(mosquitto.port, clock, discovery=DISC, outputs=outs, state_file=str(tmp_path / "s.json"),
                      protect={"mqtt_reset": True})
    cycles(hub, clock, 12)
    pre = "homeassistant/binary_sensor/packmon_bank1/"
    sub.wait_for(lambda s: pre + "output_discharge_enable_latched/config" in configs(s))
    got = configs(sub)
    charge = got[pre + "output_charge_enable/config"]
    assert charge["stat_t"] == "~/output/charge_enable" and charge["dev_cla"] == "power"
    assert "value_json.closed" in charge["val_tpl"]
    assert got[pre + "output_charge_enable_latched/config"]["dev_cla"] == "problem"
    button = got["homeassistant/button/packmon_bank1/output_reset_charge_enable/config"]
    assert button["cmd_t"] == "~/cmd/reset" and button["pl_prs"] == "charge_enable"
    assert not any("output_fan" in t or "output_buzzer" in t for t in got)
    hub.publisher.close()
    hub2, _ = make_hub(mosquitto.port, clock, discovery=DISC, outputs=outs, state_file=str(tmp_path / "s2.json"))
    assert b"reset_charge_enable" not in discovery.caps(hub2.cfg)
