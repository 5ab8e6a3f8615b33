# MQTT topics and payloads, published with micropython-lib's umqtt.simple.
#
# Connection handling never blocks the scan loop for long: sockets time out (mqtt.timeout_s), a failed
# connect is retried with exponential backoff (1 s doubling to 60 s), and while the broker is away the
# hub keeps scanning; nothing is queued, so nothing old is ever published later as if it were new.
# Payloads are written into one preallocated buffer; topics into another.
from hub import alarms as _alarms
from hub import codec

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
_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(60000)


class _Buf:
    """An append-only text buffer over a preallocated bytearray: no allocation per number."""

    def __init__(self, size):
        self.b = bytearray(size)
        self.n = 0

    def clear(self):
        self.n = 0
        return self

    def s(self, text):
        if isinstance(text, str):
            text = text.encode()  # the rare path (error texts)
        b = self.b
        n = self.n
        for k in range(len(text)):  # a slice assignment would allocate a slice object
            b[n + k] = text[k]
        self.n = n + len(text)
        return self

    def c(self, ch):
        self.b[self.n] = ch
        self.n += 1
        return self

    def i(self, v):
        if v < 0:
            self.c(45)  # '-'
            v = -v
        start = self.n
        while True:
            self.b[self.n] = 48 + v % 10
            self.n += 1
            v //= 10
            if not v:
                break
        # reverse the digits in place
        j = self.n - 1
        while start < j:
            t = self.b[start]
            self.b[start] = self.b[j]
            self.b[j] = t
            start += 1
            j -= 1
        return self

    def fixed(self, v, decimals):
        """v is an integer in units of 10**-decimals: fixed(3312, 3) -> 3.312"""
        if v < 0:
            self.c(45)
            v = -v
        div = 10**decimals
        self.i(v // div)
        if decimals:
            self.c(46)  # '.'
            frac = v % div
            d = div // 10
            while d:
                self.c(48 + (frac // d) % 10)
                d //= 10
        return self

    def view(self):
        """The buffer itself: _pub() writes b[0:n] without making a slice."""
        return self

    def bytes(self):
        return bytes(self.b[0 : self.n])


class _TlsSockets:
    """Sockets that wrap themselves in TLS (through the port) once connected."""

    def __init__(self, mod, port, tls):
        self._mod = mod
        self._port = port
        self._tls = tls

    def socket(self, *args):
        return _TlsSock(self._mod.socket(*args), self._port, self._tls)

    def getaddrinfo(self, *args):
        return self._mod.getaddrinfo(*args)


class _TlsSock:
    def __init__(self, raw, port, tls):
        self.s = raw
        self._port = port
        self._tls = tls

    def connect(self, addr):
        self.s.connect(addr)
        self.s = self._port.ssl_wrap(self.s, self._tls)

    def write(self, buf, n=None):
        return self.s.write(buf) if n is None else self.s.write(memoryview(buf)[0:n])

    def read(self, n):
        return self.s.read(n)

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def settimeout(self, t):
        self.s.settimeout(t)

    def close(self):
        self.s.close()


class Publisher:
    def __init__(self, cfg, port):
        self.cfg = cfg
        self.port = port
        self.prefix = cfg["topic_prefix"].encode()
        self.m = cfg["mqtt"]
        self.client = None
        self.connected = False
        self.backoff_ms = _BACKOFF_MIN_MS
        self.next_try = None  # ticks_ms of the next connect attempt; None = now
        self.published = 0
        self.failures = 0
        self.connects = 0
        self.refusals = 0  # connections on which the broker would not carry our test message (ACL)
        self.last_error = ""
        self.topic = _Buf(160)
        self.msg = _Buf(512)
        self._hdr = bytearray(8)
        self._td = port.clock.ticks_diff  # bound once
        n = cfg["max_packs"]
        self.fresh_out = bytearray(n)  # 1 while the pack's retained values are out as fresh
        self.discovered = False
        self.just_connected = False
        self.status_topic = self.prefix + b"/status"

    # -- connection ------------------------------------------------------------------------------
    def _make_client(self):
        from umqtt import simple

        mod = self.port.socket_module(self.m["timeout_s"])
        if self.m["tls"]["enabled"]:
            mod = _TlsSockets(mod, self.port, self.m["tls"])
        simple.socket = mod  # umqtt.simple looks its socket module up at connect time
        user = self.m["user"] or None
        c = simple.MQTTClient(
            self.m["client_id"], self.m["host"], self.m["port"], user, self.m["password"] if user else None,
            self.m["keepalive_s"],
        )
        c.set_last_will(self.status_topic, b"offline", True, 0)
        return c

    def ensure(self, now):
        """Connect if not connected and the backoff allows; returns whether connected."""
        if self.connected:
            return True
        clk = self.port.clock
        if self.next_try is not None and clk.ticks_diff(now, self.next_try) < 0:
            return False
        if not self.port.wifi_up() and not self.port.wifi_connect(1000):
            self._failed(now, "wifi is down")
            return False
        try:
            self.client = self._make_client()
            self.client.connect()
            if self.m["acl_check"]:
                why = self._check_acl()
                if why:
                    self.refusals += 1
                    self._drop()
                    self._failed(now, why)
                    return False
            self.connected = True
            self.just_connected = True
            self.connects += 1
            self.backoff_ms = _BACKOFF_MIN_MS
            self.next_try = None
            for i in range(len(self.fresh_out)):
                self.fresh_out[i] = 0
            self.port.log("info", "mqtt: connected to %s:%d" % (self.m["host"], self.m["port"]))
            self._pub(self.status_topic, b"online", True)
            return self.connected
        except Exception as e:  # OSError, MQTTException(code), TLS errors: all mean "not connected"
            self._drop()
            self._failed(now, "connect to %s:%d failed: %s" % (self.m["host"], self.m["port"], _why(e)))
            return False

    def _check_acl(self):
        """MQTT 3.1.1 gives a client no way to learn that the broker dropped a PUBLISH it was not allowed
        to make: the broker acknowledges it (or, at QoS 0, says nothing) and throws it away. So before the
        hub calls itself connected it proves that it can publish: it subscribes to <prefix>/check (and the
        discovery prefix's equivalent when discovery is on), publishes a fresh token there and waits up
        to mqtt.timeout_s to read it back. Returns "" or what failed, in words for the log."""
        c = self.client
        got = []
        c.set_callback(lambda topic, msg: got.append(msg))
        topics = [self.prefix + b"/check"]
        if self.cfg["discovery"]["enabled"]:
            topics.append(("%s/sensor/packmon_%s/check" % (self.cfg["discovery"]["prefix"], self.cfg["bank"])).encode())
        token = b"%d:%d" % (self.connects, self.port.clock.ticks_ms())
        timeout = self.m["timeout_s"]
        for topic in topics:
            try:
                c.subscribe(topic)
            except Exception as e:
                if type(e).__name__ == "MQTTException":  # SUBACK 0x80: subscription refused
                    return ("the broker will not let this user read %s, so the hub cannot check that its "
                            "messages arrive: allow readwrite on it in the broker's ACL, or set "
                            "mqtt.acl_check to false" % topic.decode())
                raise
            del got[:]
            c.publish(topic, token)
            for _ in range(8):  # only our own test messages can arrive: they are all we subscribed to
                _settimeout(c.sock, timeout)  # wait_msg() leaves the socket blocking without a timeout
                try:
                    c.wait_msg()
                except OSError:  # timed out: nothing more is coming
                    break
                if token in got:
                    break
            if token not in got:
                return ("the broker accepted the connection but dropped our test message to %s: this user "
                        "may not publish there (or not read it back); check the broker's ACL: the hub needs "
                        "readwrite access to %s/#, or set mqtt.acl_check to false"
                        % (topic.decode(), topic.decode().rsplit("/", 1)[0]))
        _settimeout(c.sock, timeout)
        return ""

    def _failed(self, now, why):
        self.failures += 1
        self.last_error = why
        self.port.log("warning", "mqtt: %s; retrying in %d s" % (why, self.backoff_ms // 1000))
        self.next_try = _ticks_add(now, self.backoff_ms)
        self.backoff_ms = min(self.backoff_ms * 2, _BACKOFF_MAX_MS)

    def _drop(self):
        if self.client is not None and self.client.sock is not None:
            try:
                self.client.sock.close()
            except Exception:
                pass
        self.connected = False
        self.discovered = False

    def close(self, clean=True):
        """clean: publish offline and disconnect; otherwise just drop the socket (the broker then
        sends the last will)."""
        if self.connected and clean:
            try:
                self._pub(self.status_topic, b"offline", True)
                self.client.disconnect()
            except Exception:
                pass
        self._drop()

    def _pub(self, topic, msg, retain=False):
        """Publish (QoS 0). topic and msg are bytes or _Buf. The PUBLISH packet is written from
        preallocated buffers: umqtt.simple's publish() allocates four small objects per message,
        6 KB per 64-pack cycle, which is what a 100 KB heap cannot afford to churn."""
        if not self.connected:
            return False
        if isinstance(topic, _Buf):
            tb, tl = topic.b, topic.n
        else:
            tb, tl = topic, len(topic)
        if isinstance(msg, _Buf):
            mb, ml = msg.b, msg.n
        else:
            mb, ml = msg, len(msg)
        h = self._hdr
        h[0] = 0x31 if retain else 0x30
        sz = 2 + tl + ml
        i = 1
        while sz > 0x7F:
            h[i] = (sz & 0x7F) | 0x80
            sz >>= 7
            i += 1
        h[i] = sz
        h[i + 1] = tl >> 8
        h[i + 2] = tl & 0xFF
        try:
            sock = self.client.sock
            sock.write(h, i + 3)
            sock.write(tb, tl)
            if ml:
                sock.write(mb, ml)
            self.published += 1
            return True
        except Exception as e:
            self.last_error = "publish failed: %s" % _why(e)
            self.port.log("warning", "mqtt: %s; reconnecting" % self.last_error)
            self._drop()
            return False

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
        if not self.ensure(now):
            return
        if self.just_connected:
            self.just_connected = False
            hub.republish_alarms = True  # the broker may have lost its retained messages
        if self.cfg["discovery"]["enabled"] and not self.discovered:
            self._discovery(hub)
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
        for k in range(len(hub.probe_temps)):
            t = hub.probe_temps[k]
            if t != _NONE:
                topic = self.topic.clear().s(self.prefix).s(b"/probe/").s(hub.probe_ids[k]).s(b"/temperature")
                self._pub(topic, self.msg.clear().fixed(t, 1).view(), True)
        if getattr(hub, "est_step", None) is not None:  # SOC and health: only with a battery block
            from hub import soc_topics

            soc_topics.publish(self, hub)
        if hub.shunt is not None:
            self._publish_shunt(hub)

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

    def _discovery(self, hub):
        bank = hub.bank
        pre = self.cfg["discovery"]["prefix"]
        bankname = self.cfg["bank"]
        dev = '"device":{"identifiers":["packmon_%s"],"name":"Pack Monitor %s","manufacturer":"Pack Monitor"}' % (
            bankname, bankname)
        avail = '"availability_topic":"%s/status"' % self.cfg["topic_prefix"]
        for i in range(bank.n):
            n = i + 1
            for kind, unit, dclass in (("voltage", "V", "voltage"), ("temperature", "\u00b0C", "temperature")):
                uid = "packmon_%s_pack%d_%s" % (bankname, n, kind)
                topic = "%s/sensor/%s/config" % (pre, uid)
                payload = (
                    '{"name":"Pack %d %s","unique_id":"%s","state_topic":"%s/pack/%d/%s",'
                    '"unit_of_measurement":"%s","device_class":"%s","state_class":"measurement",%s,%s}'
                    % (n, kind, uid, self.cfg["topic_prefix"], n, kind, unit, dclass, avail, dev)
                )
                if not self._pub(topic.encode(), payload.encode(), True):
                    return
        self.discovered = True


def _ticks_add(a, b):
    try:
        from time import ticks_add

        return ticks_add(a, b)
    except ImportError:
        return a + b


def _settimeout(sock, t):
    try:
        sock.settimeout(t)
    except (AttributeError, OSError):  # a TLS socket without settimeout keeps the one under it
        pass


# mbedTLS error codes that MicroPython raises as OSError(code) during a TLS handshake
_TLS_ERRORS = {
    -0x2700: "TLS: the broker's certificate does not verify against mqtt.tls.ca, or does not carry the "
             "name in mqtt.tls.server_hostname",
    -0x7780: "TLS: the broker ended the handshake with an alert (does it want a client certificate?)",
    -0x7200: "TLS: the broker's reply is not TLS (is mqtt.port its TLS listener?)",
}


def _why(e):
    s = " ".join(str(e).split())  # mbedTLS messages come wrapped in newlines
    name = type(e).__name__
    if name == "MQTTException":
        codes = {1: "protocol version refused", 2: "client id refused", 3: "broker unavailable",
                 4: "bad user name or password",
                 5: "not authorised (check mqtt.user and mqtt.password)"}
        try:
            code = e.args[0]
        except (AttributeError, IndexError):
            code = 0
        return "broker refused: %s (code %s)" % (codes.get(code, "unknown"), code)
    if name == "SSLCertVerificationError":
        return "TLS: the broker's certificate was refused (%s); check mqtt.tls.ca and mqtt.tls.server_hostname" % (
            getattr(e, "verify_message", "") or s)
    if name == "ValueError" and "certificate" in s:  # MicroPython: mbedTLS verification failures
        return "TLS: %s; check mqtt.tls.ca and mqtt.tls.server_hostname" % s
    code = e.args[0] if isinstance(e, OSError) and e.args and isinstance(e.args[0], int) else 0
    if code in _TLS_ERRORS:
        return "%s (mbedTLS %d)" % (_TLS_ERRORS[code], code)
    return "%s: %s" % (name, s) if s else name
