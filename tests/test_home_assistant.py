"""Home Assistant discovery, checked in a real Home Assistant Core (2024.3.3) against a real Mosquitto.

The hub (CPython, and once on the MicroPython runtime) publishes to Mosquitto; Home Assistant discovers
the bank; everything is asserted through HA's REST API: every entity, its unit, device class and state,
against the topics, while packs go stale, when a pack is removed and put back, with the ring broken at
start, and when the hub dies. HA's log must carry no MQTT warning or error. HA starts once per module.
Each test uses its own bank, so each is its own HA device."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from packmon.sim.model_ring import ModelRing, SimUart

from hub import codec, config
from hub.alarms import NAMES as ALARMS
from hub.app import Hub
from hub.port import HostPort, install_cpython_shims
from tests import home_assistant
from tests.conftest import Mosquitto, Subscriber, free_port

install_cpython_shims()
ok, why = home_assistant.available()
pytestmark = pytest.mark.skipif(not ok, reason=why)

MV = [3300, 3312, 3298, 3305]
TEMP = [251, 262, -15, 300]
# log lines HA always writes here, unrelated to MQTT: we run it offline on Python 3.11
KNOWN = ("Skipping pip installation of required modules", "Support for the running Python version")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if not Path(Mosquitto.binary()).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    m = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def ha(broker, tmp_path_factory):
    h = home_assistant.HomeAssistant(tmp_path_factory.mktemp("ha"), free_port(), broker.port).start()
    yield h
    h.stop()


class Bank:
    """One hub under CPython with its simulated ring and a fake clock, driven cycle by cycle."""

    def __init__(self, broker: Mosquitto, name: str, engine: ModelRing, bus=None, i2c=None, wall=None,  # noqa: ANN001
                 clock=None, **over) -> None:
        from packmon.sim.clock import SimClock

        raw = {"bank": name, "mqtt": {"host": "127.0.0.1", "port": broker.port, "timeout_s": 1, "keepalive_s": 2},
               "scan_interval_s": 1, "stale_after_s": 5, "max_packs": 8, "alarms": {"comms_after_s": 3},
               "discovery": {"enabled": True}}
        raw.update(over)
        self.cfg = config.validate(raw, need_wifi=False)
        self.clock = clock or SimClock(100_000)
        self.eng = engine
        probes = None
        if bus is not None:
            from hub.probes import Probes

            probes = Probes(bus)
        self.logs: list[str] = []
        self.hub = Hub(self.cfg, HostPort(SimUart(engine), clock=self.clock,
                                          log=lambda level, msg: self.logs.append(f"{level} {msg}"), i2c=i2c,
                                          wall=wall), probes)
        self.name = name
        self.sub = Subscriber(broker.port, f"packmonitor/{name}/#")

    def cycle(self, n: int = 1) -> None:
        for _ in range(n):
            self.hub.run_once()
            self.clock.advance(1)

    def until(self, ha, pred, what: str, timeout: float = 20):  # noqa: ANN001
        """Run cycles (one per 0.2 s of real time, as HA needs time to follow) until pred(states)."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            self.cycle()
            time.sleep(0.2)
            last = ha.states(f"packmon_{self.name}_")
            if pred(last):
                return last
        raise AssertionError(f"{what}: not seen in {timeout} s; HA has {summary(last)}")

    def latest(self, topic: str) -> bytes:
        return self.sub.latest.get(f"packmonitor/{self.name}/{topic}", b"")

    def close(self, clean: bool = True) -> None:
        self.hub.publisher.close(clean)
        self.sub.close()


def summary(states: dict | None) -> str:
    return ", ".join(f"{k.split('.', 1)[1]}={v['state']}" for k, v in sorted((states or {}).items()))


def entities(bank: str, packs: int) -> dict[str, tuple]:
    """entity id -> (unit, device_class, state_class): what HA must show for a bank of `packs` packs."""
    v, c = ("V", "voltage", "measurement"), ("°C", "temperature", "measurement")
    e: dict[str, tuple] = {}
    for n in range(1, packs + 1):
        e[f"sensor.packmon_{bank}_pack_{n}_voltage"] = v
        e[f"sensor.packmon_{bank}_pack_{n}_temperature"] = c
        e[f"sensor.packmon_{bank}_pack_{n}_status"] = (None, None, None)
    for q in ("voltage", "min", "max", "delta", "avg"):
        e[f"sensor.packmon_{bank}_bank_{q}"] = v
    e[f"sensor.packmon_{bank}_bank_temp_max"] = c
    for q in ("min_pack", "max_pack"):
        e[f"sensor.packmon_{bank}_bank_{q}"] = (None, None, None)
    for q in ("fresh_packs", "stale_packs"):
        e[f"sensor.packmon_{bank}_bank_{q}"] = (None, None, "measurement")
    for a in ALARMS:
        e[f"binary_sensor.packmon_{bank}_alarm_{a}"] = (None, "problem", None)
    e[f"binary_sensor.packmon_{bank}_hub_connectivity"] = (None, "connectivity", None)
    e[f"sensor.packmon_{bank}_hub_last_error"] = (None, None, None)
    e[f"sensor.packmon_{bank}_hub_mqtt_reconnects"] = (None, None, "total_increasing")
    for q in ("scans", "good_frames", "errors", "enumerations"):
        e[f"sensor.packmon_{bank}_ring_{q}"] = (None, None, "total_increasing")
    e[f"sensor.packmon_{bank}_ring_last_fault_hop"] = (None, None, None)
    return e


def num(s: dict) -> float:
    return float(s["state"])


def test_every_entity_with_its_unit_class_and_state(ha, broker) -> None:
    b = Bank(broker, "t1", ModelRing(4, mv=list(MV), temp=list(TEMP)))
    want = entities("t1", 4)
    st = b.until(ha, lambda s: set(s) == set(want) and s["sensor.packmon_t1_ring_scans"]["state"] != "unavailable",
                 "all 36 entities")
    for eid, (unit, dclass, sclass) in want.items():
        a = st[eid]["attributes"]
        got = (a.get("unit_of_measurement"), a.get("device_class"), a.get("state_class"))
        assert got == (unit, dclass, sclass), eid
    # stop cycling: HA must then show exactly what the topics hold
    b.sub.wait_for(lambda s: "packmonitor/t1/ring" in s.latest)
    ring = json.loads(b.latest("ring"))
    st = ha.wait(lambda: (s := ha.states("packmon_t1_")) and
                 s["sensor.packmon_t1_ring_scans"]["state"] == str(ring["scans"]) and s, what="ring scans")
    for n in range(1, 5):
        volts = num(st[f"sensor.packmon_t1_pack_{n}_voltage"])
        assert volts == float(b.latest(f"pack/{n}/voltage")) == MV[n - 1] / 1000
        assert num(st[f"sensor.packmon_t1_pack_{n}_temperature"]) == float(b.latest(f"pack/{n}/temperature"))
        status = st[f"sensor.packmon_t1_pack_{n}_status"]
        assert status["state"] == "not_calibrated"  # the simulated nodes were never calibrated
        assert {k: status["attributes"][k] for k in ("pack", "bad_frames", "resets", "stale", "flags")} == {
            "pack": n, "bad_frames": 0, "resets": 0, "stale": False, "flags": ["not_calibrated"]}
    bank = json.loads(b.latest("bank/state"))
    for q in ("voltage", "min", "min_pack", "max", "max_pack", "delta", "avg", "temp_max", "fresh_packs",
              "stale_packs"):
        assert num(st[f"sensor.packmon_t1_bank_{q}"]) == pytest.approx(bank[q]), q
    assert (bank["min_pack"], bank["max_pack"]) == (3, 2)
    for a in ALARMS:
        s = st[f"binary_sensor.packmon_t1_alarm_{a}"]
        topic = json.loads(b.latest(f"alarm/{a}"))
        assert s["state"] == ("on" if topic["active"] else "off"), a
        assert {k: s["attributes"][k] for k in ("value", "threshold", "pack")} == {
            k: topic[k] for k in ("value", "threshold", "pack")}, a
    assert st["binary_sensor.packmon_t1_alarm_temp_low"]["state"] == "on"  # pack 3 is at -1.5 °C
    assert st["binary_sensor.packmon_t1_hub_connectivity"]["state"] == "on"
    assert num(st["sensor.packmon_t1_ring_good_frames"]) == ring["good"]
    errors = st["sensor.packmon_t1_ring_errors"]
    assert num(errors) == 0 and errors["attributes"]["errors"] == {}  # errors by reason are its attributes
    assert num(st["sensor.packmon_t1_ring_enumerations"]) == 1
    assert num(st["sensor.packmon_t1_hub_mqtt_reconnects"]) == 0
    # one device for the whole bank, with model, software version and the origin's name
    dev = "device_id('sensor.packmon_t1_bank_voltage')"
    assert ha.template("{{ device_entities(%s) | length }}" % dev) == "36"
    tpl = "{{ device_attr(%s, 'name') }}|{{ device_attr(%s, 'model') }}|{{ device_attr(%s, 'sw_version') }}"
    assert ha.template(tpl % (dev, dev, dev)) == "Pack Monitor t1|Pack Monitor hub|0.1.0"
    assert ha.template("{{ device_id('sensor.packmon_t1_pack_4_voltage') == %s }}" % dev) == "True"
    # a temperature sensor that fails: its topic is emptied, and HA shows the entity unavailable
    b.eng.nodes[1].s.flags |= codec.FLAG_SENSOR_FAULT
    st = b.until(ha, lambda s: s["sensor.packmon_t1_pack_2_temperature"]["state"] == "unavailable", "sensor fault")
    assert st["sensor.packmon_t1_pack_2_voltage"]["state"] == "3.312"
    assert "sensor_fault" in st["sensor.packmon_t1_pack_2_status"]["state"]
    b.eng.nodes[1].s.flags &= ~codec.FLAG_SENSOR_FAULT
    b.until(ha, lambda s: s["sensor.packmon_t1_pack_2_temperature"]["state"] == "26.2", "sensor back")
    b.close()


def test_stale_packs_show_unavailable_never_their_last_number(ha, broker) -> None:
    b = Bank(broker, "t2", ModelRing(4, mv=list(MV), temp=list(TEMP)))
    b.until(ha, lambda s: s.get("sensor.packmon_t2_pack_4_voltage", {}).get("state") == "3.305", "fresh values")
    b.eng.broken = True  # the ring goes silent: after stale_after_s every pack is stale
    seen: set[str] = set()

    def all_stale(s: dict) -> bool:
        seen.update(s[f"sensor.packmon_t2_pack_{n}_voltage"]["state"] for n in range(1, 5))
        return all(s[f"sensor.packmon_t2_pack_{n}_{q}"]["state"] == "unavailable"
                   for n in range(1, 5) for q in ("voltage", "temperature"))

    st = b.until(ha, all_stale, "every pack unavailable")
    assert seen <= {"3.300", "3.312", "3.298", "3.305", "unavailable"}
    for n in range(1, 5):
        assert st[f"sensor.packmon_t2_pack_{n}_status"]["state"] == "stale"
    st = b.until(ha, lambda s: s["binary_sensor.packmon_t2_alarm_comms"]["state"] == "on", "comms alarm")
    for q in ("voltage", "min", "max", "delta", "avg", "temp_max", "min_pack", "max_pack"):
        assert st[f"sensor.packmon_t2_bank_{q}"]["state"] == "unknown", q  # JSON null is unknown
    assert st["sensor.packmon_t2_bank_stale_packs"]["state"] == "4"
    assert st["sensor.packmon_t2_bank_fresh_packs"]["state"] == "0"
    assert num(st["sensor.packmon_t2_ring_errors"]) > 0
    assert st["sensor.packmon_t2_hub_last_error"]["state"].startswith("ring: ")
    # keep going stale for a while: HA must never show a number again while the ring is silent
    for _ in range(5):
        b.cycle()
        time.sleep(0.1)
        s = ha.states("packmon_t2_pack_")
        assert all(s[f"sensor.packmon_t2_pack_{n}_voltage"]["state"] == "unavailable" for n in range(1, 5))
    b.eng.broken = False

    def back(s: dict) -> bool:
        return all(s[f"sensor.packmon_t2_pack_{n}_voltage"]["state"] == f"{MV[n - 1] / 1000:.3f}"
                   for n in range(1, 5)) and s["binary_sensor.packmon_t2_alarm_comms"]["state"] == "off"

    st = b.until(ha, back, "the ring back", timeout=30)
    assert num(st["sensor.packmon_t2_bank_voltage"]) == pytest.approx(sum(MV) / 1000)
    b.close()


def test_a_pack_removed_and_put_back(ha, broker) -> None:
    b = Bank(broker, "t3", ModelRing(4, mv=list(MV), temp=list(TEMP)))
    b.until(ha, lambda s: s.get("sensor.packmon_t3_pack_4_voltage", {}).get("state") == "3.305", "4 packs")
    b.eng.remove_node(1)  # pack 2 leaves the ring: packs are numbered by position, so the ring has 3
    st = b.until(ha, lambda s: "sensor.packmon_t3_pack_4_voltage" not in s and
                 s.get("sensor.packmon_t3_pack_3_voltage", {}).get("state") == "3.305", "pack 4's entities removed",
                 timeout=30)
    assert not [e for e in st if "_pack_4_" in e]
    assert set(st) == set(entities("t3", 3))
    assert [st[f"sensor.packmon_t3_pack_{n}_voltage"]["state"] for n in (1, 2, 3)] == ["3.300", "3.298", "3.305"]
    b.eng.insert_node(1)
    st = b.until(ha, lambda s: s.get("sensor.packmon_t3_pack_4_voltage", {}).get("state") == "3.305" and
                 s["sensor.packmon_t3_pack_2_voltage"]["state"] == "3.312", "pack 4 back", timeout=30)
    assert set(st) == set(entities("t3", 4))
    assert int(st["sensor.packmon_t3_pack_2_status"]["attributes"]["resets"]) >= 0
    b.close()


def test_ring_broken_at_start_then_found(ha, broker) -> None:
    eng = ModelRing(3, mv=MV[:3], temp=TEMP[:3])
    eng.broken = True
    b = Bank(broker, "t4", eng)
    st = b.until(ha, lambda s: "sensor.packmon_t4_bank_voltage" in s and
                 s.get("binary_sensor.packmon_t4_alarm_comms", {}).get("state") == "on", "the bank without packs")
    assert not [e for e in st if "t4_pack_" in e]  # no pack is known yet: none is invented
    assert st["sensor.packmon_t4_bank_voltage"]["state"] == "unknown"
    # P/error is not retained: HA shows the next one (enumeration is retried with backoff)
    b.until(ha, lambda s: "enumerate failed" in s["sensor.packmon_t4_hub_last_error"]["state"], "the error text")
    eng.broken = False
    st = b.until(ha, lambda s: s.get("sensor.packmon_t4_pack_3_voltage", {}).get("state") == "3.298",
                 "packs discovered once the ring answers", timeout=30)
    assert set(st) == set(entities("t4", 3))
    b.close()


def test_dead_hub_makes_everything_unavailable(ha, broker) -> None:
    b = Bank(broker, "t5", ModelRing(2, mv=MV[:2], temp=TEMP[:2]))
    b.until(ha, lambda s: s.get("sensor.packmon_t5_pack_2_voltage", {}).get("state") == "3.312" and
            s["sensor.packmon_t5_ring_scans"]["state"] not in ("unavailable", "unknown"), "2 packs")
    b.hub.publisher.close(clean=False)  # no DISCONNECT: the broker publishes the last will
    st = ha.wait(lambda: (s := ha.states("packmon_t5_")) and
                 s["binary_sensor.packmon_t5_hub_connectivity"]["state"] == "off" and s, what="the last will")
    others = {e: s["state"] for e, s in st.items() if e != "binary_sensor.packmon_t5_hub_connectivity"}
    assert set(others.values()) == {"unavailable"}, others
    b.sub.close()


def test_home_assistant_restart_gets_discovery_again(ha, broker) -> None:
    """HA announces itself on <prefix>/status: the hub sends every config again."""
    b = Bank(broker, "t6", ModelRing(2, mv=MV[:2], temp=TEMP[:2]))
    b.until(ha, lambda s: len(s) == len(entities("t6", 2)), "2 packs")
    d = b.hub.publisher.discovery
    while d.pending():  # the first pass also removes configs of packs 3..8 a previous run may have left
        b.cycle()
    sent = d.sent
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish("homeassistant/status", "online").wait_for_publish()
    deadline = time.time() + 10
    while time.time() < deadline and d.sent < sent + len(entities("t6", 2)):
        b.cycle()
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    b.cycle(3)
    assert d.sent == sent + len(entities("t6", 2))  # every config once more, nothing else
    assert any("Home Assistant is online" in line for line in b.logs)
    b.close()


class FakeProbeBus:
    """ds18x20.DS18X20's surface (scan, convert_temp, read_temp) with one probe."""

    def __init__(self) -> None:
        self.temp = 21.5
        self.fail = False

    def scan(self) -> list[bytes]:
        return [bytes([0x28, 1, 2, 3, 4, 5, 6, 0xA7])]

    def convert_temp(self) -> None:
        pass

    def read_temp(self, rom: bytes) -> float:
        if self.fail:
            raise OSError("CRC error")
        return self.temp


def test_ds18b20_probes_join_through_their_gated_row(ha, broker) -> None:
    bus = FakeProbeBus()
    b = Bank(broker, "t7", ModelRing(1), bus=bus, probes={"enabled": True, "pin": 4})
    eid = "sensor.packmon_t7_probe_28010203040506a7_temperature"
    st = b.until(ha, lambda s: s.get(eid, {}).get("state") == "21.5", "the probe")
    a = st[eid]["attributes"]
    assert (a["unit_of_measurement"], a["device_class"]) == ("°C", "temperature")
    bus.fail = True  # a failed reading is unknown: its retained value is deleted, HA shows unavailable
    b.until(ha, lambda s: s[eid]["state"] == "unavailable", "the probe failing")
    bus.fail = False
    b.until(ha, lambda s: s[eid]["state"] == "21.5", "the probe back")
    b.close()
    plain = ha.states("packmon_t1_")
    assert not [e for e in plain if "probe" in e]  # the row is gated: no probes, no probe entity


# Rows of the kinds other branches add (hub/discovery.py's header documents them in the same words; the
# per-pack one reads a field the hub's pack state has today, as a per-pack SOC would read its own)
EXAMPLE_ROWS = [
    b'shunt;sensor;bank;current;Current;/bank/current;;OWN EXP;"unit_of_meas":"A","dev_cla":"current",'
    b'"stat_cla":"measurement","sug_dsp_prc":2',
    b'battery;sensor;bank;soc;State of charge;/bank/battery;soc;EXP;"unit_of_meas":"%","dev_cla":"battery",'
    b'"stat_cla":"measurement"',
    b'battery;sensor;bank;energy_in;Energy in;/bank/battery;energy_in_kwh;EXP;"unit_of_meas":"kWh",'
    b'"dev_cla":"energy","stat_cla":"total_increasing","sug_dsp_prc":3',
    b'battery;sensor;pack;age;Pack # age;/pack/#/state;age;PACK;"unit_of_meas":"s","dev_cla":"duration"',
    b'outputs;binary_sensor;output;charge;Charge output;/output/charge;on;;"dev_cla":"power"',
    b'outputs;button;output;reset;Reset protection;/output/reset/set;;CMD;"pl_prs":"reset"',
]


def test_rows_other_branches_add_work_without_a_special_case(ha, broker, monkeypatch) -> None:
    """A plain-number topic, JSON fields (a kWh energy counter among them), a per-pack field that follows
    the pack's staleness, a binary sensor from a JSON field and a button: each only a row and a gate."""
    from hub import discovery

    text = (Path(discovery.__file__).read_text())
    for row in EXAMPLE_ROWS[:3] + EXAMPLE_ROWS[4:]:
        assert row.decode() in text, row  # documented exactly as tested
    monkeypatch.setattr(discovery, "ROWS", discovery.ROWS + b"\n".join(EXAMPLE_ROWS) + b"\n")
    monkeypatch.setattr(discovery, "_MORE", ())  # the real shunt and battery rows: test_shunt_and_estimator_...
    monkeypatch.setattr(discovery, "caps", lambda cfg: [b"", b"shunt", b"battery", b"outputs"])
    b = Bank(broker, "t8", ModelRing(2, mv=MV[:2], temp=TEMP[:2]))
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    for topic, payload in (("bank/current", "12.50"), ("bank/battery", '{"soc":81.5,"energy_in_kwh":1.234}'),
                           ("output/charge", '{"on":true}')):
        c.publish(f"packmonitor/t8/{topic}", payload, retain=True).wait_for_publish()
    e = "sensor.packmon_t8_"
    st = b.until(ha, lambda s: s.get(e + "bank_current", {}).get("state") == "12.50" and
                 s.get(e + "pack_2_age", {}).get("state") not in (None, "unavailable", "unknown"), "the new rows")
    assert st[e + "bank_soc"]["state"] == "81.5" and st[e + "bank_soc"]["attributes"]["unit_of_measurement"] == "%"
    energy = st[e + "bank_energy_in"]
    assert energy["state"] == "1.234" and energy["attributes"]["state_class"] == "total_increasing"
    assert energy["attributes"]["unit_of_measurement"] == "kWh" and energy["attributes"]["device_class"] == "energy"
    assert st["binary_sensor.packmon_t8_output_charge"]["state"] == "on"
    assert st["button.packmon_t8_output_reset"]["state"] == "unknown"  # a button has no state until pressed
    # the unknown-value convention holds for the new rows too
    c.publish("packmonitor/t8/bank/current", "", retain=True).wait_for_publish()
    c.publish("packmonitor/t8/bank/battery", '{"soc":null,"energy_in_kwh":1.234}', retain=True).wait_for_publish()
    st = b.until(ha, lambda s: s[e + "bank_current"]["state"] == "unavailable" and
                 s[e + "bank_soc"]["state"] == "unknown", "unknown values")
    b.eng.broken = True  # the per-pack field follows its pack's staleness
    b.until(ha, lambda s: s[e + "pack_2_age"]["state"] == "unavailable", "the pack stale")
    # pressing the button publishes its payload on the command topic
    got: list[bytes] = []
    c.on_message = lambda cl, ud, msg: got.append(msg.payload)
    c.subscribe("packmonitor/t8/output/reset/set")
    time.sleep(0.3)
    ha._req("/api/services/button/press", {"entity_id": "button.packmon_t8_output_reset"})
    deadline = time.time() + 10
    while not got and time.time() < deadline:
        time.sleep(0.1)
    assert got == [b"reset"]
    for topic in ("bank/current", "bank/battery", "output/charge"):
        c.publish(f"packmonitor/t8/{topic}", "", retain=True).wait_for_publish()
    c.loop_stop()
    c.disconnect()
    b.close()


def shunt_battery_entities(bank: str, packs: int) -> dict[str, tuple]:
    """The entities a `shunt` and a `battery` block add: entity id -> (unit, device_class, state_class)."""
    kwh, ah = ("kWh", "energy", "total_increasing"), ("Ah", None, "total_increasing")
    s, b = f"sensor.packmon_{bank}_", f"binary_sensor.packmon_{bank}_"
    e: dict[str, tuple] = {
        s + "bank_current": ("A", "current", "measurement"), s + "bank_power": ("W", "power", "measurement"),
        s + "bank_energy_in": kwh, s + "bank_energy_out": kwh, s + "bank_energy_in_today": kwh,
        s + "bank_energy_out_today": kwh, s + "bank_charge_in": ah, s + "bank_charge_out": ah,
        b + "shunt_problem": (None, "problem", None), s + "shunt_coverage": ("%", None, "measurement"),
        s + "bank_soc": ("%", "battery", "measurement"), s + "bank_weakest": (None, None, None),
        s + "bank_time_to_full": ("min", "duration", "measurement"),
        s + "bank_time_to_empty": ("min", "duration", "measurement"),
    }
    for n in range(1, packs + 1):
        e[f"{s}pack_{n}_soc"] = ("%", "battery", "measurement")
        e[f"{s}pack_{n}_capacity"] = ("Ah", None, "measurement")
        e[f"{s}pack_{n}_soh"] = ("%", None, "measurement")
        e[f"{s}pack_{n}_resistance"] = ("m\u03a9", None, "measurement")
        e[f"{s}pack_{n}_health_confidence"] = (None, None, "measurement")
        e[f"{b}pack_{n}_weakest"] = (None, "problem", None)
    return e


def test_shunt_and_estimator_entities(ha, broker, tmp_path) -> None:
    """A hub with a modelled INA228 and a battery block: current, power, energy (lifetime and today's) and
    charge, the shunt's health, SOC (unknown until the first resync at rest), time to full/empty, the
    weakest pack and each pack's SOC and health, all against the topics; the chip going absent and back;
    the packs going stale."""
    from packmon.sim import ina
    from packmon.sim.clock import SimClock

    from hub import ocv

    amps = {"a": 0.05}  # at rest (under rest_c x capacity = 2 A)
    wall: dict[str, int | None] = {"t": None}  # no NTP time yet
    clock = SimClock(100_000)
    model = ina.make_model("ina228", 0.0005, lambda t: amps["a"], lambda: clock.t / 1000)
    b = Bank(broker, "t9", ModelRing(2, mv=MV[:2], temp=TEMP[:2]), i2c=model, wall=lambda: wall["t"], clock=clock,
             shunt={"enabled": True, "chip": "ina228", "shunt_ohms": 0.0005, "max_current_a": 200},
             battery={"enabled": True, "chemistry": "nmc", "capacity_ah": 100, "rest_s": 60},
             state_file=str(tmp_path / "state.json"))
    new = shunt_battery_entities("t9", 2)
    want = entities("t9", 2) | new
    e, bs = "sensor.packmon_t9_", "binary_sensor.packmon_t9_"
    st = b.until(ha, lambda s: set(s) == set(want) and s[e + "bank_current"]["state"] not in ("unavailable", "unknown")
                 and s[bs + "pack_2_weakest"]["state"] == "off" and s[bs + "shunt_problem"]["state"] == "off",
                 f"all {len(want)} entities")
    for eid, (unit, dclass, sclass) in new.items():
        a = st[eid]["attributes"]
        got = (a.get("unit_of_measurement"), a.get("device_class"), a.get("state_class"))
        assert got == (unit, dclass, sclass), eid
    # before the first resync: SOC unknown (its topics empty), health not learned yet (null)
    for eid in ("bank_soc", "pack_1_soc", "pack_2_soc", "bank_time_to_full", "bank_time_to_empty", "bank_weakest"):
        assert st[e + eid]["state"] == "unavailable", eid
    for n in (1, 2):
        for q in ("capacity", "soh", "resistance"):
            assert st[f"{e}pack_{n}_{q}"]["state"] == "unknown", (n, q)
        assert num(st[f"{e}pack_{n}_health_confidence"]) == 0
    assert st[e + "bank_energy_in_today"]["state"] == "unknown"  # no NTP day yet: unknown, not 0
    assert st[e + "bank_energy_out_today"]["state"] == "unknown"
    assert st[bs + "shunt_problem"]["state"] == "off" and num(st[e + "shunt_coverage"]) == 100.0
    assert st[bs + "shunt_problem"]["attributes"]["chip"] == "ina228"

    def shows(pairs: dict[str, str]) -> dict:
        """HA's states once each entity shows its topic (cycling stopped); topic "" means unavailable."""
        def ok() -> dict | None:
            s = ha.states("packmon_t9_")
            for eid, topic in pairs.items():
                v = b.latest(topic) if topic else b""
                if (v == b"") != (s[eid]["state"] == "unavailable"):
                    return None
                if v and num(s[eid]) != float(v):
                    return None
            return s
        b.sub.wait_for(lambda sub: all(f"packmonitor/t9/{t}" in sub.latest for t in pairs.values() if t))
        return ha.wait(ok, what=f"HA showing {pairs}")

    for _ in range(62):  # a minute at rest: the estimator resyncs every pack from its voltage
        b.cycle()
    st = b.until(ha, lambda s: s[e + "bank_soc"]["state"] not in ("unavailable", "unknown") and
                 s[e + "pack_2_soc"]["state"] not in ("unavailable", "unknown"), "SOC after the resync")
    st = shows({e + "bank_soc": "bank/soc", e + "pack_1_soc": "pack/1/soc", e + "pack_2_soc": "pack/2/soc",
                e + "bank_current": "bank/current", e + "bank_power": "bank/power"})
    socs = [ocv.soc_of(ocv.NMC, mv) / 100 for mv in MV[:2]]
    for n in (1, 2):
        assert abs(num(st[f"{e}pack_{n}_soc"]) - socs[n - 1]) < 0.05
    assert num(st[e + "bank_soc"]) == min(num(st[f"{e}pack_{n}_soc"]) for n in (1, 2))
    assert num(st[e + "bank_current"]) == pytest.approx(0.05, abs=0.002)
    # charging at 30 A, and NTP knows the day: time to full, today's energy
    amps["a"] = 30.0
    wall["t"] = 9800 * 86400 + 3600
    b.until(ha, lambda s: s[e + "bank_time_to_full"]["state"] not in ("unavailable", "unknown") and
            s[e + "bank_energy_in_today"]["state"] not in ("unavailable", "unknown") and
            num(s[e + "bank_current"]) > 29, "charging")
    st = shows({e + "bank_time_to_full": "bank/time_to_full", e + "bank_time_to_empty": "",
                e + "bank_current": "bank/current", e + "bank_power": "bank/power"})
    assert num(st[e + "bank_power"]) == pytest.approx(30 * sum(MV[:2]) / 1000, abs=0.2)
    energy = json.loads(b.latest("bank/energy"))
    st = ha.wait(lambda: (s := ha.states("packmon_t9_")) and num(s[e + "bank_energy_in"]) == energy["in_kwh"] and s,
                 what="energy as published")
    assert num(st[e + "bank_energy_in"]) == pytest.approx(energy["in_wh"] / 1000)
    assert num(st[e + "bank_energy_in_today"]) == energy["today_in_kwh"]
    assert num(st[e + "bank_energy_out"]) == energy["out_kwh"] == 0
    assert num(st[e + "bank_energy_out_today"]) == energy["today_out_kwh"] == 0
    assert num(st[e + "bank_charge_in"]) == energy["in_ah"] > 0 and num(st[e + "bank_charge_out"]) == 0
    # the chip stops answering: current, power and SOC unknown, the shunt's problem on; then back
    model.absent = True
    st = b.until(ha, lambda s: s[bs + "shunt_problem"]["state"] == "on" and s[e + "bank_soc"]["state"] ==
                 "unavailable", "the chip absent")
    for q in ("bank_current", "bank_power", "bank_time_to_full", "pack_1_soc"):
        assert st[e + q]["state"] == "unavailable", q
    assert st[e + "shunt_coverage"]["state"] == "unknown"
    assert "no answer" in st[bs + "shunt_problem"]["attributes"]["problem"]
    assert st[e + "pack_1_voltage"]["state"] == "3.300"  # voltages go on
    model.absent = False
    b.until(ha, lambda s: s[bs + "shunt_problem"]["state"] == "off" and
            s[e + "bank_current"]["state"] not in ("unavailable", "unknown"), "the chip back")
    shows({e + "bank_current": "bank/current", e + "bank_power": "bank/power"})
    # the ring goes silent: every pack stale, its SOC and health unavailable (health is still retained)
    b.eng.broken = True
    st = b.until(ha, lambda s: s[e + "pack_2_status"]["state"] == "stale" and s[e + "pack_1_soc"]["state"] ==
                 "unavailable", "the packs stale")
    for n in (1, 2):
        for q in ("soc", "capacity", "soh", "resistance", "health_confidence"):
            assert st[f"{e}pack_{n}_{q}"]["state"] == "unavailable", (n, q)
        assert st[f"{bs}pack_{n}_weakest"]["state"] == "unavailable"
    assert st[e + "bank_soc"]["state"] == "unavailable" and st[e + "bank_power"]["state"] == "unavailable"
    assert b.latest("pack/1/health") != b""  # the learned health stays on the broker; HA hides it while stale
    b.close()


def test_the_hub_on_the_micropython_runtime(ha, broker) -> None:
    from packmon import mpy_hub

    ok, why = mpy_hub.available()
    if not ok:
        pytest.skip(why)
    cfg = {"bank": "mpy", "mqtt": {"host": "127.0.0.1", "port": broker.port, "timeout_s": 1, "keepalive_s": 2},
           "scan_interval_s": 0.2, "stale_after_s": 1, "max_packs": 8, "alarms": {"comms_after_s": 1},
           "discovery": {"enabled": True}}
    eng = ModelRing(3, mv=MV[:3], temp=TEMP[:3])
    with mpy_hub.MpyHub(eng, cfg) as hub:
        st = ha.wait(lambda: (s := ha.states("packmon_mpy_")) and set(s) == set(entities("mpy", 3)) and
                     s["sensor.packmon_mpy_pack_3_voltage"]["state"] == "3.298" and s, timeout=30,
                     what="the MicroPython hub's bank")
        assert num(st["sensor.packmon_mpy_bank_voltage"]) == pytest.approx(sum(MV[:3]) / 1000)
        assert st["sensor.packmon_mpy_pack_1_voltage"]["attributes"]["unit_of_measurement"] == "V"
        hub.kill()  # dies: the last will
        ha.wait(lambda: ha.states("packmon_mpy_")["sensor.packmon_mpy_pack_1_voltage"]["state"] == "unavailable",
                what="the last will")
    assert not [line for line in hub.lines if "Traceback" in line or "MemoryError" in line]


def test_home_assistant_logged_no_warning_or_error(ha) -> None:
    """Last in the module: everything above ran without HA complaining about an MQTT message, a
    template or an entity."""
    problems = [p for p in ha.problems() if not any(k in p for k in KNOWN)]
    assert not problems, "\n".join(problems)
    # and nothing the MQTT integration only says at INFO: a payload an entity could not use
    quiet = [line for line in ha.log().splitlines() if any(k in line for k in (
        "not for this entity", "Erroneous JSON", "Invalid state message", "is undefined"))]
    assert not quiet, "\n".join(quiet)
    assert "Found new component: sensor packmon_t1 pack_1_voltage" in ha.log()
