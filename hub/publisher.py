# MQTT topics and payloads. The connection (umqtt.simple, TLS, backoff, ACL check, the allocation-free
# publish) is hub/mqtt.py; Home Assistant discovery is hub/discovery.py.
#
# Payloads are written into one preallocated buffer; topics into another.
from hub import alarms as _alarms
from hub import codec
from hub.mqtt import Buf, Connection

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_NONE = const(-32768)
# names as bytes, made once: encoding them per message would allocate
_FLAG_NAMES = tuple(n.encode() for n in codec.FLAG_NAMES)
_ERROR_NAMES = tuple(n.encode() for n in codec.ERROR_NAMES)
_ALARM_NAMES = tuple(n.encode() for n in _alarms.NAMES)


class Publisher(Connection):
    """Connection (hub/mqtt.py) plus the hub's topics and payloads: hub.publisher.connected, .last_error,
    .published and the rest of the connection's state read as before the split."""

    def __init__(self, cfg, port):
        self.cfg = cfg
        self.prefix = cfg["topic_prefix"].encode()
        checks = [self.prefix + b"/check"]
        disc = cfg["discovery"]
        if disc["enabled"]:
            from hub import discovery  # only with discovery on: ~12 KB of heap

            # one check per HA component the entity table uses: an ACL may allow sensor/ but not binary_sensor/
            for comp in discovery.components(cfg):
                checks.append(("%s/%s/packmon_%s/check" % (disc["prefix"], comp.decode(), cfg["bank"])).encode())
        Connection.__init__(self, cfg["mqtt"], port, self.prefix + b"/status", checks)
        self.topic = Buf(160)
        # discovery configs are built in the same buffer, after the cycle's payloads: up to ~700 bytes
        self.msg = Buf(1024 if cfg["discovery"]["enabled"] else 512)
        self._td = port.clock.ticks_diff  # bound once
        n = cfg["max_packs"]
        # 1 while the pack's retained values may be out as fresh. After a boot the broker may still hold
        # the values a previous run published, for packs that are gone or unread since: the first cycle
        # clears every pack that it does not publish fresh.
        self.fresh_out = bytearray(b"\x01" * n)
        self.booted = True
        self.probe_out = None  # per probe: 1 while its retained temperature is out
        self.discovery = None
        if disc["enabled"]:
            self.discovery = discovery.Discovery(cfg, self)
            self.listen.append(self.discovery.ha_status)
        self.hub = None  # set by publish_cycle: commands (P/cmd/reset) act on it
        self.cmd_reset = None
        prot = cfg.get("protect")
        if prot is not None and prot.get("mqtt_reset"):
            # protect.mqtt_reset: subscribed after every connect, polled once a cycle (mqtt.poll()); with
            # the option off the hub does not subscribe, so a command changes nothing
            self.cmd_reset = self.prefix + b"/cmd/reset"
            self.listen.append(self.cmd_reset)

    def on_message(self, topic, msg):
        if self.cmd_reset is not None and topic == self.cmd_reset:
            if self.hub is not None and getattr(self.hub, "protect", None) is not None:
                from hub import protect_topics

                protect_topics.on_command(self, self.hub, msg)
            return
        d = self.discovery
        if d is not None and topic == d.ha_status and msg == b"online":
            self.port.log("info", "discovery: Home Assistant is online; sending discovery again")
            d.restart()

    def listen_refused(self, topic):
        if topic == self.cmd_reset:
            return "protection latches cannot be reset over MQTT (allow read on it in the ACL, or use the button)"
        return "discovery will not be sent again when Home Assistant restarts (allow read on it in the ACL)"

    # -- topics ----------------------------------------------------------------------------------
    def _t(self, a, n=-1, b=None):
        """prefix + a [+ n + b] into the topic buffer (fixed arity: *args would allocate a tuple)."""
        t = self.topic.clear().s(self.prefix).s(a)
        if n >= 0:
            t.i(n)
        if b is not None:
            t.s(b)
        return t

    def publish_cycle(self, hub, now):
        """Publish what this cycle learned. Only packs read in this cycle's scan are published as
        fresh; a pack that has gone stale gets its retained values cleared and stale:true."""
        self.hub = hub
        if not self.ensure(now):
            return
        if self.just_connected:
            self.just_connected = False
            if not self.booted:
                for i in range(len(self.fresh_out)):
                    self.fresh_out[i] = 0
            self.booted = False
            hub.republish_alarms = True  # the broker may have lost its retained messages
            if self.discovery is not None:
                self.discovery.restart()
        self.poll()
        bank = hub.bank
        td = self._td
        legacy = self.cfg["legacy_topics"]
        for i in range(bank.n):
            if not self.connected:
                return
            n = i + 1
            stale = bank.is_stale(i, now, td)
            new = bank.have[i] and bank.seen[i] == hub.scan_time and hub.scanned_this_cycle
            if stale:
                if self.fresh_out[i] or not bank.have[i]:
                    self.fresh_out[i] = 0
                    self._pub(self._t(b"/pack/", n, b"/voltage"), b"", True)  # empty retained = deleted
                    self._pub(self._t(b"/pack/", n, b"/temperature"), b"", True)
                    self._pub(self._t(b"/pack/", n, b"/state"), self._state(bank, i, now, True), True)
                continue
            if not new:
                continue
            mv = bank.voltage_mv(i, now, td)
            t = bank.temperature(i, now, td)
            if mv:
                self._pub(self._t(b"/pack/", n, b"/voltage"), self.msg.clear().fixed(mv, 3).view(), True)
                if legacy:
                    self._pub(self.topic.clear().s(b"Powerwall/Pack-v-").i(n).view(), self.msg.clear().i(mv).view())
            else:
                self._pub(self._t(b"/pack/", n, b"/voltage"), b"", True)
            if t != _NONE:
                self._pub(self._t(b"/pack/", n, b"/temperature"), self.msg.clear().fixed(t, 1).view(), True)
                if legacy:
                    topic = self.topic.clear().s(b"Powerwall/Pack-t-").i(n).view()
                    self._pub(topic, self.msg.clear().fixed(t, 1).view())
            else:
                self._pub(self._t(b"/pack/", n, b"/temperature"), b"", True)
            self._pub(self._t(b"/pack/", n, b"/state"), self._state(bank, i, now, False), True)
            self.fresh_out[i] = 1
        for i in range(bank.n, len(self.fresh_out)):
            if self.fresh_out[i]:  # the ring got shorter: this pack no longer exists
                self.fresh_out[i] = 0
                self._pub(self._t(b"/pack/", i + 1, b"/voltage"), b"", True)
                self._pub(self._t(b"/pack/", i + 1, b"/temperature"), b"", True)
                self._pub(self._t(b"/pack/", i + 1, b"/state"), b"", True)
        self._pub(self._t(b"/bank/state"), self._bank_state(bank), True)
        a = hub.alarms
        for k in range(len(_alarms.NAMES)):
            if a.changed[k] or hub.republish_alarms:
                self._pub(self._t(b"/alarm/", -1, _ALARM_NAMES[k]), self._alarm(a, k), True)
        hub.republish_alarms = not self.connected
        self._pub(self._t(b"/ring"), self._ring_state(hub), False)
        if self.probe_out is None:
            self.probe_out = bytearray(b"\x01" * len(hub.probe_temps))  # after a boot: clear what is unread
        for k in range(len(hub.probe_temps)):
            t = hub.probe_temps[k]
            topic = self.topic.clear().s(self.prefix).s(b"/probe/").s(hub.probe_ids[k]).s(b"/temperature")
            if t != _NONE:
                self._pub(topic, self.msg.clear().fixed(t, 1).view(), True)
                self.probe_out[k] = 1
            elif self.probe_out[k]:
                self._pub(topic, b"", True)  # a failed reading is unknown: the retained value is deleted
                self.probe_out[k] = 0
        if getattr(hub, "est_step", None) is not None:  # SOC and health: only with a battery block
            from hub import soc_topics

            soc_topics.publish(self, hub)
        if getattr(hub, "shunt", None) is not None:
            self._publish_shunt(hub)
        if getattr(hub, "protect", None) is not None:
            from hub import protect_topics  # loaded only with outputs (the board's heap is small)

            protect_topics.publish(self, hub, now)
        if self.discovery is not None and self.connected:
            self.discovery.step(hub)  # last: this cycle's values are out before any discovery slice

    def _publish_shunt(self, hub):
        """P/bank/current, P/bank/power, P/bank/energy, P/shunt: in hub/shunt_topics.py, loaded only
        when a shunt is configured (the board's heap is small)."""
        from hub import shunt_topics

        shunt_topics.publish(self, hub)

    def publish_error(self, now, text):
        if self.ensure(now):
            self._pub(self._t(b"/error"), text.encode(), False)

    # -- payloads --------------------------------------------------------------------------------
    def _state(self, bank, i, now, stale):
        td = self._td
        m = self.msg.clear().s(b'{"pack":').i(i + 1).s(b',"voltage":')
        mv = 0 if stale else bank.voltage_mv(i, now, td)
        if mv:
            m.fixed(mv, 3)
        else:
            m.s(b"null")
        m.s(b',"temperature":')
        t = _NONE if stale else bank.temperature(i, now, td)
        if t != _NONE:
            m.fixed(t, 1)
        else:
            m.s(b"null")
        m.s(b',"flags":[')
        f = bank.flags[i]
        first = True
        for b in range(7):
            if f & (1 << b):
                if not first:
                    m.c(44)
                m.c(34).s(_FLAG_NAMES[b]).c(34)
                first = False
        m.s(b'],"bad_frames":').i(bank.bad[i]).s(b',"resets":').i(bank.resets[i])
        m.s(b',"stale":').s(b"true" if stale else b"false").s(b',"age":')
        age = bank.age_ms(i, now, td)
        if age < 0:
            m.s(b"null")
        else:
            m.fixed(age // 100, 1)
        return m.c(125).view()

    def _bank_state(self, bank):
        m = self.msg.clear().s(b'{"packs":').i(bank.n).s(b',"voltage":')
        if bank.complete:
            m.fixed(bank.total_mv, 3)
        else:
            m.s(b"null")  # a sum that misses stale packs would be a wrong bank voltage
        if bank.fresh:
            m.s(b',"min":').fixed(bank.min_mv, 3).s(b',"min_pack":').i(bank.min_pack)
            m.s(b',"max":').fixed(bank.max_mv, 3).s(b',"max_pack":').i(bank.max_pack)
            m.s(b',"delta":').fixed(bank.max_mv - bank.min_mv, 3).s(b',"avg":').fixed(bank.avg_mv, 3)
        else:
            m.s(b',"min":null,"min_pack":null,"max":null,"max_pack":null,"delta":null,"avg":null')
        m.s(b',"temp_max":')
        if bank.temp_max != _NONE:
            m.fixed(bank.temp_max, 1)
        else:
            m.s(b"null")
        m.s(b',"fresh_packs":').i(bank.fresh).s(b',"stale_packs":').i(bank.stale_count)
        return m.c(125).view()

    def _alarm(self, a, k):
        m = self.msg.clear().s(b'{"active":').s(b"true" if a.active[k] else b"false").s(b',"value":')
        v = a.value[k]
        scale = _alarms.SCALE[k]
        dec = 3 if scale == 1000 else (1 if scale == 10 else 0)
        if v == _NONE:
            m.s(b"null")
        else:
            m.fixed(v, dec)
        m.s(b',"threshold":').fixed(a.threshold[k], dec).s(b',"pack":')
        if a.pack[k]:
            m.i(a.pack[k])
        else:
            m.s(b"null")
        return m.c(125).view()

    def _ring_state(self, hub):
        r = hub.ring
        m = self.msg.clear().s(b'{"packs":').i(hub.bank.n).s(b',"scans":').i(hub.bank.scans)
        m.s(b',"requests":').i(r.sent).s(b',"good":').i(r.good).s(b',"errors":{')
        first = True
        for k in range(1, len(codec.ERROR_NAMES)):
            if r.errors[k]:
                if not first:
                    m.c(44)
                m.c(34).s(_ERROR_NAMES[k]).s(b'":').i(r.errors[k])
                first = False
        m.s(b'},"last_fault_hop":').i(hub.last_fault).s(b',"enumerations":').i(hub.enumerations)
        m.s(b',"mqtt_reconnects":').i(self.connects - 1 if self.connects else 0)
        return m.c(125).view()
