# The MQTT connection: umqtt.simple client creation, TLS sockets (hub/tls.py), backoff, the ACL check, error
# explanations, and an allocation-free publish.
#
# Connection handling never blocks the scan loop for long: sockets time out (mqtt.timeout_s), a failed
# connect is retried with exponential backoff (1 s doubling to 60 s), and while the broker is away the
# hub keeps scanning; nothing is queued, so nothing old is ever published later as if it were new.
# hub/publisher.py (topics and payloads) builds on Connection; messages are written from Buf objects,
# preallocated text buffers, so publishing allocates nothing.
import sys

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(60000)


class Buf:
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



class Connection:
    """mcfg: the config's "mqtt" section; status_topic (bytes) carries online/offline and the last will;
    check_topics (list of bytes) are the topics the ACL check proves the broker carries."""

    def __init__(self, mcfg, port, status_topic, check_topics):
        self.m = mcfg
        self.port = port
        self.status_topic = status_topic
        self.check_topics = check_topics
        self.client = None
        self.connected = False
        self.just_connected = False  # set on every new connection; the publisher clears it
        self.backoff_ms = _BACKOFF_MIN_MS
        self.next_try = None  # ticks_ms of the next connect attempt; None = now
        self.published = 0
        self.failures = 0
        self.connects = 0
        self.refusals = 0  # connections on which the broker would not carry our test message (ACL)
        self.last_error = ""
        self._hdr = bytearray(8)
        self.listen = []  # topics to subscribe to after each connect; what arrives goes to on_message()
        self.received = 0

    def _make_client(self):
        from umqtt import simple

        mod = self.port.socket_module(self.m["timeout_s"])
        if self.m["tls"]["enabled"]:
            from hub.tls import TlsSockets  # loaded only with TLS (hub.preload)

            mod = TlsSockets(mod, self.port, self.m["tls"])
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
            self._listen()
            self.connected = True
            self.just_connected = True
            self.connects += 1
            self.backoff_ms = _BACKOFF_MIN_MS
            self.next_try = None
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
        topics = self.check_topics
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

    def _listen(self):
        if not self.listen:
            return
        c = self.client
        c.set_callback(self._on_msg)
        for topic in self.listen:
            try:
                c.subscribe(topic)
            except Exception as e:
                if type(e).__name__ != "MQTTException":  # SUBACK 0x80: refused; anything else is a failure
                    raise
                self.port.log("warning", "mqtt: the broker will not let this user read %s: %s" % (
                    topic.decode(), self.listen_refused(topic)))
        _settimeout(c.sock, self.m["timeout_s"])  # subscribe() leaves the socket blocking without a timeout

    def listen_refused(self, topic):
        """What a refused subscription costs, in words for the log (the publisher knows)."""
        return "messages there are ignored"

    def _on_msg(self, topic, msg):
        self.received += 1
        self.on_message(topic, msg)

    def on_message(self, topic, msg):
        pass

    def poll(self):
        """Take what arrived on the listened topics, without waiting: a few non-blocking reads. With
        nothing waiting, this costs a read that returns None and allocates nothing."""
        if not self.connected or not self.listen:
            return
        c = self.client
        try:
            for _ in range(4):
                before = self.received
                c.check_msg()
                if self.received == before:
                    break
        except Exception as e:
            self.last_error = "receive failed: %s" % _why(e)
            self.port.log("warning", "mqtt: %s; reconnecting" % self.last_error)
            self._drop()
            return
        _settimeout(c.sock, self.m["timeout_s"])  # check_msg() leaves the socket blocking without a timeout

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
        if isinstance(topic, Buf):
            tb, tl = topic.b, topic.n
        else:
            tb, tl = topic, len(topic)
        if isinstance(msg, Buf):
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
    tls = sys.modules.get("hub.tls")  # loaded with mqtt.tls on: only then can mbedTLS fail
    if code < 0 and tls is not None and code in tls.ERRORS:
        return "%s (mbedTLS %d)" % (tls.ERRORS[code], code)
    return "%s: %s" % (name, s) if s else name
