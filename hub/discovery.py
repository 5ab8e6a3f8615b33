# Home Assistant MQTT discovery, built from ONE table of entities (ROWS below).
#
# Everything the hub publishes that Home Assistant should show is a row. A new source of data (current,
# SOC, health, outputs, ...) adds its topics in publisher.py and its rows here; the code below has no
# special case for any entity.
#
# Row format: one line of ROWS per entity, nine fields separated by ";":
#
#   gate;component;scope;quantity;name;topic;field;flags;extra
#
#   gate       empty, or a capability name: the row is emitted only while the capability is on. Capabilities
#              come from the config (caps() below): "probes", "shunt" (a shunt block enabled), "battery"
#              (a battery block enabled), and one per protection output in use.
#   component  HA component: sensor, binary_sensor, button, ...
#   scope      pack (one entity per pack in the ring), probe (one per DS18B20 probe), or a name used once
#              (bank, alarm, hub, ring, output, ...). The object id, which is also the unique id and makes
#              the entity id, is packmon_<bank>_<scope>[_<n>]_<quantity>, e.g. packmon_garage_pack_3_voltage
#              -> sensor.packmon_garage_pack_3_voltage.
#   quantity   the end of the object id.
#   name       the entity's name (HA shows it after the device name "Pack Monitor <bank>").
#   topic      relative to the hub's topic prefix P (sent as HA's "~"), e.g. /bank/state. In a pack or probe
#              row, "#" stands for the pack number or the probe id (in name and extra too). It is the state
#              topic, or with CMD the command topic.
#   field      empty: the topic's payload is the value (a plain number or text). Otherwise an expression on
#              the topic's JSON after "value_json.": min, errors.values()|sum, ok == false (a binary sensor
#              on when a flag is false), coverage and (value_json.coverage * 100)|round(1) (arithmetic on a
#              field that can be null: null stays null, no template error). A JSON null shows as unknown
#              (on a number: give it a unit, a state class or a precision, or HA shows "None"); a
#              binary_sensor shows a true field as on. The field must always be in the payload (null when
#              unknown): a missing key makes HA log a template warning.
#   flags      space-separated words. How the entity becomes unavailable, one of (OWN and PACK may go
#              together: a per-pack plain topic that can be unknown while its pack is fresh, as a pack's SOC):
#                (none)  HUB: unavailable while P/status is offline (the last will, a clean stop)
#                OWN     HUB, and unavailable while its own topic holds no value: the empty retained
#                        payload of the unknown-value convention (docs/hub.md, "Unknown values")
#                PACK    HUB, and unavailable while the pack is stale (P/pack/<n>/state "stale":true, or gone)
#                NOAV    never unavailable (the hub's connectivity, which must be able to show off)
#              and any of: EXP expire_after (only for a topic refreshed every cycle: a silent hub expires
#                it), DIAG entity_category diagnostic, ATTR the topic's JSON as attributes, CMD the topic is a
#                command topic (a button: no state, no template, no EXP).
#   extra      more JSON members, raw, with HA's abbreviated keys: "unit_of_meas":"V","dev_cla":"voltage"
#
# Where rows live: ROWS below, except the rows of a capability listed in _MORE, which are ROWS of the module
# that publishes their topics (hub/shunt_topics.py, hub/soc_topics.py), loaded only with that capability so
# a hub without it keeps its heap; tables() joins them, in the same format, into the one table.
#
# The kinds of row, one example each (tests/test_home_assistant.py checks each kind in Home Assistant; the
# first is the shunt's row in hub/shunt_topics.py, the others show the shape on topics of their own):
#   shunt;sensor;bank;current;Current;/bank/current;;OWN EXP;"unit_of_meas":"A","dev_cla":"current","stat_cla":"measurement","sug_dsp_prc":2
#       a plain-number topic (emptied when unknown)
#   battery;sensor;bank;soc;State of charge;/bank/battery;soc;EXP;"unit_of_meas":"%","dev_cla":"battery","stat_cla":"measurement"
#       a JSON field of a topic (null when unknown)
#   battery;sensor;bank;energy_in;Energy in;/bank/battery;energy_in_kwh;EXP;"unit_of_meas":"kWh","dev_cla":"energy","stat_cla":"total_increasing","sug_dsp_prc":3
#       an energy counter in kWh
#   battery;sensor;pack;soc;Pack # SOC;/pack/#/state;soc;PACK;"unit_of_meas":"%","dev_cla":"battery","stat_cla":"measurement"
#       a per-pack JSON field, unavailable while the pack is stale
#   outputs;binary_sensor;output;charge;Charge output;/output/charge;on;;"dev_cla":"power"
#       a binary sensor from a JSON field
#   outputs;button;output;reset;Reset protection;/output/reset/set;;CMD;"pl_prs":"reset"
#       a button with a command topic
#
# Sending: configs are retained; they go out in slices (at most _PER_CYCLE configs and half a scan
# interval per cycle), so 64 packs never stall scanning. The whole set is sent again after every
# (re)connect and when Home Assistant announces itself (<discovery prefix>/status = online). When the
# pack count changes, the new packs' configs are added and the gone packs' configs are removed (an empty
# retained config); after a boot the hub cannot know how many packs a previous run announced, so once the
# ring has been enumerated it removes every pack config up to max_packs that is beyond the ring.
from hub import VERSION

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_PER_CYCLE = const(32)
# Capabilities whose rows live in the module that publishes their topics, as ROWS in the same format: that
# module is loaded only with the capability, so a hub without a shunt or a battery block does not carry
# their rows (3 KB) in its 100 KB heap. The table is ROWS followed by these, in this order.
_MORE = ((b"shunt", "shunt_topics"), (b"battery", "soc_topics"))
_HASH = const(35)  # "#"


# The entity table. Per pack: P/pack/<n>/voltage and temperature are plain numbers, emptied when unknown;
# the pack's status is stale / its flags / ok, with flags, bad_frames, resets and age as attributes, and
# stays available while the pack exists (a stale pack still has counters worth seeing). The bank: fields
# of P/bank/state, null while unknown. One binary_sensor per alarm (hub/alarms.py NAMES), with value,
# threshold and pack as attributes. The hub, and the ring's health from P/ring (errors by reason are the
# attributes of ring_errors). DS18B20 probes: P/probe/<rom>/temperature, emptied when a reading fails.
# Protection outputs (hub/protect_topics.py). With a shunt (hub/shunt_topics.py): P/bank/current and power,
# emptied when unknown; energy in and out in kWh for HA's Energy dashboard (lifetime, and today's, null until
# NTP knows the day); charge in Ah and the chip's health from P/shunt as diagnostics. With a battery block
# (hub/soc_topics.py): the bank's SOC, time to full/empty and weakest pack, emptied when unknown; per pack
# the SOC (its own topic emptied when unknown, and unavailable while the pack is stale) and the learned
# health from P/pack/<n>/health (null until learned).
# (One bytes literal: a table of tuples costs ~10 KB of a 100 KB heap, this ~3.5 KB. Rows split as sent.)
ROWS = b"""\
;sensor;pack;voltage;Pack # voltage;/pack/#/voltage;;OWN EXP;"unit_of_meas":"V","dev_cla":"voltage","stat_cla":"measurement","sug_dsp_prc":3
;sensor;pack;temperature;Pack # temperature;/pack/#/temperature;;OWN EXP;"unit_of_meas":"\xc2\xb0C","dev_cla":"temperature","stat_cla":"measurement","sug_dsp_prc":1
;sensor;pack;status;Pack # status;/pack/#/state;;OWN ATTR DIAG;"val_tpl":"{{('stale' if value_json.stale else value_json.flags|join(',') or 'ok') if value else ''}}","ic":"mdi:battery-heart-variant"
;sensor;bank;voltage;Bank voltage;/bank/state;voltage;EXP;"unit_of_meas":"V","dev_cla":"voltage","stat_cla":"measurement","sug_dsp_prc":2
;sensor;bank;min;Lowest pack voltage;/bank/state;min;EXP;"unit_of_meas":"V","dev_cla":"voltage","stat_cla":"measurement","sug_dsp_prc":3
;sensor;bank;min_pack;Lowest pack;/bank/state;min_pack;EXP;"sug_dsp_prc":0,"ic":"mdi:numeric"
;sensor;bank;max;Highest pack voltage;/bank/state;max;EXP;"unit_of_meas":"V","dev_cla":"voltage","stat_cla":"measurement","sug_dsp_prc":3
;sensor;bank;max_pack;Highest pack;/bank/state;max_pack;EXP;"sug_dsp_prc":0,"ic":"mdi:numeric"
;sensor;bank;delta;Pack voltage spread;/bank/state;delta;EXP;"unit_of_meas":"V","dev_cla":"voltage","stat_cla":"measurement","sug_dsp_prc":3
;sensor;bank;avg;Average pack voltage;/bank/state;avg;EXP;"unit_of_meas":"V","dev_cla":"voltage","stat_cla":"measurement","sug_dsp_prc":3
;sensor;bank;temp_max;Highest temperature;/bank/state;temp_max;EXP;"unit_of_meas":"\xc2\xb0C","dev_cla":"temperature","stat_cla":"measurement","sug_dsp_prc":1
;sensor;bank;fresh_packs;Fresh packs;/bank/state;fresh_packs;EXP;"stat_cla":"measurement"
;sensor;bank;stale_packs;Stale packs;/bank/state;stale_packs;EXP;"stat_cla":"measurement"
;binary_sensor;alarm;pack_low;Alarm pack low;/alarm/pack_low;active;ATTR;"dev_cla":"problem"
;binary_sensor;alarm;pack_high;Alarm pack high;/alarm/pack_high;active;ATTR;"dev_cla":"problem"
;binary_sensor;alarm;delta_high;Alarm delta high;/alarm/delta_high;active;ATTR;"dev_cla":"problem"
;binary_sensor;alarm;temp_high;Alarm temp high;/alarm/temp_high;active;ATTR;"dev_cla":"problem"
;binary_sensor;alarm;temp_low;Alarm temp low;/alarm/temp_low;active;ATTR;"dev_cla":"problem"
;binary_sensor;alarm;comms;Alarm comms;/alarm/comms;active;ATTR;"dev_cla":"problem"
;binary_sensor;hub;connectivity;Hub;/status;;NOAV DIAG;"pl_on":"online","pl_off":"offline","dev_cla":"connectivity"
;sensor;hub;last_error;Last error;/error;;DIAG;"val_tpl":"{{value[:255]}}","ic":"mdi:alert-circle-outline"
;sensor;hub;mqtt_reconnects;MQTT reconnects;/ring;mqtt_reconnects;EXP DIAG;"stat_cla":"total_increasing"
;sensor;ring;scans;Scans;/ring;scans;EXP DIAG;"stat_cla":"total_increasing"
;sensor;ring;good_frames;Good frames;/ring;good;EXP DIAG;"stat_cla":"total_increasing"
;sensor;ring;errors;Ring errors;/ring;errors.values()|sum;EXP DIAG ATTR;"stat_cla":"total_increasing"
;sensor;ring;last_fault_hop;Last faulty hop;/ring;last_fault_hop;EXP DIAG;"sug_dsp_prc":0,"ic":"mdi:numeric"
;sensor;ring;enumerations;Enumerations;/ring;enumerations;EXP DIAG;"stat_cla":"total_increasing"
output_charge_enable;binary_sensor;output;charge_enable;Charge enabled;/output/charge_enable;closed;ATTR;"dev_cla":"power"
output_discharge_enable;binary_sensor;output;discharge_enable;Discharge enabled;/output/discharge_enable;closed;ATTR;"dev_cla":"power"
output_fan;binary_sensor;output;fan;Fan;/output/fan;closed;ATTR;"dev_cla":"running"
output_buzzer;binary_sensor;output;buzzer;Buzzer;/output/buzzer;closed;ATTR;"dev_cla":"sound"
output_charge_enable;binary_sensor;output;charge_enable_latched;Charge latched;/output/charge_enable;latched;DIAG;"dev_cla":"problem"
output_discharge_enable;binary_sensor;output;discharge_enable_latched;Discharge latched;/output/discharge_enable;latched;DIAG;"dev_cla":"problem"
reset_charge_enable;button;output;reset_charge_enable;Reset charge latch;/cmd/reset;;CMD;"pl_prs":"charge_enable","ent_cat":"config"
reset_discharge_enable;button;output;reset_discharge_enable;Reset discharge latch;/cmd/reset;;CMD;"pl_prs":"discharge_enable","ent_cat":"config"
probes;sensor;probe;temperature;Probe # temperature;/probe/#/temperature;;OWN EXP;"unit_of_meas":"\xc2\xb0C","dev_cla":"temperature","stat_cla":"measurement","sug_dsp_prc":1
"""


def tables(c):
    """The entity table for the capabilities c: ROWS, then the rows of each capability in c whose rows live
    in the module of its topics (_MORE)."""
    out = [ROWS]
    for cap, mod in _MORE:
        if cap in c:
            out.append(getattr(__import__("hub." + mod), mod).ROWS)
    return out


def _line(tables, k):
    """Row k of the tables as (table, start, end), or None past the last (every row ends with a newline)."""
    for t in tables:
        a = 0
        n = len(t)
        while a < n:
            e = t.find(b"\n", a)
            if k == 0:
                return t, a, e
            k -= 1
            a = e + 1
    return None


def _fields(row):
    """gate, component, scope, quantity, name, topic, field, flags (a list of words), extra"""
    f = row.split(b";", 8)
    f[7] = f[7].split()
    return f


def caps(cfg):
    """The capabilities a row's gate can name, from the config."""
    out = [b""]
    if cfg["probes"]["enabled"]:
        out.append(b"probes")
    if cfg["shunt"]["enabled"]:  # bank current, power, energy, the shunt's health (hub/shunt_topics.py)
        out.append(b"shunt")
    if cfg["battery"]["enabled"]:  # SOC, time to full/empty, per-pack health (hub/soc_topics.py)
        out.append(b"battery")
    outs = cfg.get("outputs")  # protection outputs (hub/protect.py): a binary sensor per output in use
    if outs:
        reset = cfg["protect"]["mqtt_reset"]
        for name in ("charge_enable", "discharge_enable", "fan", "buzzer"):
            if outs[name]["pin"] is not None:
                out.append(b"output_" + name.encode())
                if reset:
                    out.append(b"reset_" + name.encode())  # a button for a latch (charge and discharge latch)
    return out


def components(cfg):
    """The HA components the enabled rows use (the ACL check proves the hub may publish under each)."""
    c = caps(cfg)
    t = tables(c)
    out = []
    k = 0
    while True:
        r = _line(t, k)
        if r is None:
            return out
        f = r[0][r[1]:r[2]].split(b";", 2)
        if f[0] in c and f[1] not in out:
            out.append(f[1])
        k += 1


class Discovery:
    def __init__(self, cfg, pub):
        self.pub = pub
        self.log = pub.port.log
        self.clock = pub.port.clock
        self.caps = caps(cfg)
        self.bank = cfg["bank"].encode()
        self.tilde = cfg["topic_prefix"].encode()
        self.prefix = cfg["discovery"]["prefix"].encode()
        self.ha_status = self.prefix + b"/status"
        self.expire = str(int(cfg["stale_after_s"] + cfg["scan_interval_s"] + 0.999)).encode()
        self.budget_ms = int(cfg["scan_interval_s"] * 500)  # half a scan interval per cycle, at most
        bank = cfg["bank"]
        self.dev_full = ('"dev":{"ids":"packmon_%s","name":"Pack Monitor %s","mf":"Pack Monitor",'
                         '"mdl":"Pack Monitor hub","sw":"%s"},"o":{"name":"packmon","sw":"%s"}'
                         % (bank, bank, VERSION, VERSION)).encode()
        self.dev_short = ('"dev":{"ids":"packmon_%s"}' % bank).encode()
        self.buf = pub.msg  # shared: the publisher's payloads are out before discovery runs in a cycle
        self.tables = tables(self.caps)
        self.pack_rows = []  # the enabled per-pack rows, as line numbers of the table
        k = 0
        while True:
            r = _line(self.tables, k)
            if r is None:
                break
            f = r[0][r[1]:r[2]].split(b";", 3)
            if f[2] == b"pack" and f[0] in self.caps:
                self.pack_rows.append(k)
            k += 1
        # cursors, not lists (a list of the entities to send would cost ~2.5 KB of heap for good):
        self.g = 0  # next row (line of the table) outside the packs
        self.gs = 0  # next probe of a probe row
        self.gdone = False  # every entity outside the packs is out
        self.p = 0  # next pack config: pack p // len(pack_rows), row p % len(pack_rows)
        self.target = 0  # packs the configs should describe: the ring as last enumerated
        self.out = cfg["max_packs"]  # packs whose configs may be out on the broker (unknown after a boot)
        self.sent = 0  # configs published (and removed) since start

    def restart(self):
        """Send every config again (a new connection, or Home Assistant came back)."""
        self.g = 0
        self.gs = 0
        self.gdone = False
        self.p = 0

    def pending(self):
        return not self.gdone or (self.target > 0 and self.p < max(self.target, self.out) * len(self.pack_rows))

    def step(self, hub):
        """Send the next slice of configs; returns how many went out. Out of memory, it says so and tries
        again next cycle: discovery must never stop the hub from scanning."""
        try:
            return self._step(hub)
        except MemoryError:  # (a config cut short was not published: the cursor did not move past it)
            self.log("warning", "discovery: out of memory; trying again next cycle")
            return 0

    def _next_global(self, hub):
        """The next entity outside the packs, as (row, probe id or None), or None when all are out."""
        while True:
            r = _line(self.tables, self.g)
            if r is None:
                self.gdone = True
                return None
            row = r[0][r[1]:r[2]]
            f = row.split(b";", 3)
            if f[2] != b"pack" and f[0] in self.caps:
                if f[2] != b"probe":
                    if self.gs == 0:
                        return row, None
                elif self.gs < len(hub.probe_ids):
                    return row, hub.probe_ids[self.gs]
            self.g += 1
            self.gs = 0

    def _step(self, hub):
        npr = len(self.pack_rows)
        n = hub.bank.n
        if n and n != self.target:
            # the configs of packs below both counts are unchanged: go back only to the first that differs
            low = min(n, self.target) * npr
            if self.p > low:
                self.p = low
            self.target = n
        clk = self.clock
        t0 = clk.ticks_ms()
        k = 0
        while k < _PER_CYCLE and clk.ticks_diff(clk.ticks_ms(), t0) <= self.budget_ms:
            nxt = None if self.gdone else self._next_global(hub)
            if nxt is not None:
                if not self._send(nxt[0], nxt[1], False):
                    return k
                self.gs += 1  # a probe row moves on to its next probe; any other row to the next row
                if nxt[1] is None:
                    self.g += 1
                    self.gs = 0
            elif self.target and self.p < max(self.target, self.out) * npr:
                i = self.p // npr
                r = _line(self.tables, self.pack_rows[self.p % npr])
                if not self._send(r[0][r[1]:r[2]], i + 1, i >= self.target):
                    return k
                if i < self.target and self.out < i + 1:
                    self.out = i + 1
                self.p += 1
                if self.p >= max(self.target, self.out) * npr:
                    self.out = self.target  # every pack beyond the ring is removed now
            else:
                break
            k += 1
        return k

    # -- one config ----------------------------------------------------------------------------------
    def _put(self, text, sub):
        """text into the buffer, "#" replaced by sub (a pack number or a probe id)."""
        b = self.buf
        for j in range(len(text)):
            ch = text[j]
            if ch == _HASH and sub is not None:
                if isinstance(sub, int):
                    b.i(sub)
                else:
                    b.s(sub)
            else:
                b.c(ch)

    def _oid(self, b, scope, q, sub):
        b.s(scope).c(95)  # "_"
        if sub is not None:
            if isinstance(sub, int):
                b.i(sub)
            else:
                b.s(sub)
            b.c(95)
        b.s(q)

    def _send(self, row, sub, remove):
        gate, comp, scope, q, name, topic, field, flags, extra = _fields(row)
        t = self.pub.topic.clear().s(self.prefix).c(47).s(comp).s(b"/packmon_").s(self.bank).c(47)
        self._oid(t, scope, q, sub)
        t.s(b"/config")
        b = self.buf.clear()
        if not remove:
            try:
                self._config(b, comp, scope, q, name, topic, field, flags, extra, sub)
            except IndexError:  # a row longer than the buffer: say which, skip it, never crash the hub
                self.log("error", "discovery: the config of %s is longer than %d bytes; skipped" % (
                    t.bytes().decode(), len(b.b)))
                return True
        if not self.pub._pub(t, b, True):
            return False
        self.sent += 1
        return True

    def _config(self, b, comp, scope, q, name, topic, field, flags, extra, sub):
        b.s(b'{"~":"').s(self.tilde).s(b'","name":"')
        self._put(name, sub)
        b.s(b'","uniq_id":"packmon_').s(self.bank).c(95)
        self._oid(b, scope, q, sub)
        b.s(b'","obj_id":"packmon_').s(self.bank).c(95)
        self._oid(b, scope, q, sub)
        b.s(b'","cmd_t":"~' if b"CMD" in flags else b'","stat_t":"~')
        self._put(topic, sub)
        b.c(34)
        if field:
            b.s(b',"val_tpl":"{{')
            if comp == b"binary_sensor":
                b.s(b"(value_json.").s(field).s(b" and 'ON' or 'OFF') if value and (value_json.").s(field)
                b.s(b') is not none else None}}"')
            else:
                b.s(b"value_json.").s(field).s(b' if value else None}}"')
        if b"ATTR" in flags:
            b.s(b',"json_attr_t":"~')
            self._put(topic, sub)
            b.s(b'","json_attr_tpl":"{{value or \'{}\'}}"')  # a deleted topic: no attributes, no warning
        if b"OWN" in flags or b"PACK" in flags:
            b.s(b',"avty_mode":"all","avty":[{"t":"~/status"}')
            if b"OWN" in flags:
                b.s(b',{"t":"~')
                self._put(topic, sub)
                b.s(b'","val_tpl":"{{\'online\' if value else \'offline\'}}"}')
            if b"PACK" in flags:  # (both: a per-pack value that can be unknown while its pack is fresh)
                b.s(b',{"t":"~/pack/').i(sub).s(b'/state","val_tpl":"{{\'online\' if \'\\"stale\\":false\' in value '
                                                b'else \'offline\'}}"}')
            b.c(93)  # "]"
        elif b"NOAV" not in flags:
            b.s(b',"avty_t":"~/status"')
        if b"EXP" in flags:
            b.s(b',"exp_aft":').s(self.expire)
        if b"DIAG" in flags:
            b.s(b',"ent_cat":"diagnostic"')
        if extra:
            b.c(44)
            self._put(extra, sub)
        b.c(44).s(self.dev_short if scope == b"pack" or scope == b"probe" else self.dev_full).c(125)
