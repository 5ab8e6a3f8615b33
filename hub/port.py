# The only module that touches the hardware: UART, I2C, watchdog, Wi-Fi, clocks, sockets, reset.
#
# BoardPort is the ESP32 (machine/network). HostPort runs the same hub code on a PC — under CPython
# (tests, `packmon demo`) or the MicroPython unix port — with injected parts: a UART-shaped object
# (write/readinto), an I2C-shaped object (readfrom_mem_into/writeto_mem: a device model), a clock, a
# wall clock, a Wi-Fi that is up unless a test takes it down, a no-op watchdog.
#
# wall_time(): seconds since 2000-01-01 00:00 UTC (MicroPython's epoch on the ESP32), or None while
# the time is not known (the board: until NTP has answered once). Daily counters need it.
import sys
import time

try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

    def sleep_ms(ms):
        time.sleep(ms / 1000)


LEVELS = ("debug", "info", "warning", "error")


class SystemClock:
    def ticks_ms(self):
        return ticks_ms()

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def sleep_ms(self, ms):
        sleep_ms(ms)


class Port:
    """What the hub needs from its platform. Subclasses fill in the parts."""

    uart = None
    clock = None

    def __init__(self, log_level="info", log=None):
        self.min_level = LEVELS.index(log_level) if log_level in LEVELS else 1
        self._log = log

    def log(self, level, msg):
        if LEVELS.index(level) >= self.min_level:
            if self._log is not None:
                self._log(level, msg)
            else:
                print("[%s] %s" % (level, msg))

    def feed_watchdog(self):
        pass

    def wifi_connect(self, timeout_ms):
        return True

    def wifi_up(self):
        return True

    def socket_module(self, timeout_s):
        """A socket module for umqtt.simple whose sockets time out instead of blocking forever."""
        return _TimeoutSockets(_native_socket_module(), timeout_s)

    def ssl_wrap(self, sock, tls):
        raise OSError("TLS is not available on this port")

    def reset(self):
        raise SystemExit("hub reset requested")

    def read_file(self, path):
        with open(path) as f:
            return f.read()

    # -- protection outputs (hub/protect.py decides; only this module drives pins) -------------------
    # outs: [(pin or None, inverted)] in hub.protect.NAMES order. LOGICAL closed (connected / on) is
    # the ENERGISED level (pin high) unless inverted: a de-energised pin (reset, crash, power-up,
    # watchdog) then means disconnected. setup_outputs() drives every output open before anything else.
    def setup_outputs(self, outs, reset_pin=None):
        self._outs = outs
        self.out_state = bytearray(len(outs))  # logical, as last set
        for k in range(len(outs)):
            self.set_output(k, 0)

    def set_output(self, k, closed):
        self.out_state[k] = 1 if closed else 0

    def reset_pressed(self):
        """True once per press of the reset button since the last call."""
        return False

    def iso_time(self, age_ms):
        """ISO 8601 UTC of the moment age_ms ago, or None while the clock is not set (no NTP yet)."""
        return None


class _TimeoutSockets:
    def __init__(self, mod, timeout_s):
        self._mod = mod
        self._timeout = timeout_s

    def socket(self, *args):
        s = self._mod.socket(*args)
        s.settimeout(self._timeout)
        return s

    def getaddrinfo(self, *args):
        return self._mod.getaddrinfo(*args)


def _native_socket_module():
    if sys.implementation.name == "micropython":
        import socket

        return socket
    return _cpython_socket_module()


# -- CPython: umqtt.simple expects MicroPython's usocket/ustruct/ubinascii and stream-style sockets --


def _cpython_socket_module():
    import socket
    import ssl

    class StreamSocket:
        """socket.socket with MicroPython's read/write stream methods, as umqtt.simple uses them."""

        def __init__(self, *args):
            self.s = socket.socket(*args)

        def connect(self, addr):
            self.s.connect(addr)

        def settimeout(self, t):
            self.s.settimeout(t)

        def setblocking(self, flag):
            self.s.setblocking(flag)

        def write(self, buf, n=None):
            if isinstance(buf, str):
                buf = buf.encode()
            data = bytes(buf if n is None else memoryview(buf)[:n])
            self.s.sendall(data)
            return len(data)

        def read(self, n):
            out = b""
            while len(out) < n:
                try:
                    chunk = self.s.recv(n - len(out))
                except (BlockingIOError, ssl.SSLWantReadError):  # non-blocking, nothing there (yet)
                    return out if out else None
                if not chunk:
                    return out
                out += chunk
            return out

        def close(self):
            self.s.close()

    class Module:
        def socket(self, *args):
            return StreamSocket(*args)

        def getaddrinfo(self, host, port, *rest):
            return socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)

    return Module()


def install_cpython_shims():
    """Let micropython-lib modules (umqtt.simple) import under CPython."""
    if sys.implementation.name == "micropython":
        return
    import binascii
    import struct

    sys.modules.setdefault("ustruct", struct)
    sys.modules.setdefault("ubinascii", binascii)
    if "usocket" not in sys.modules:
        import types

        mod = types.ModuleType("usocket")
        impl = _cpython_socket_module()
        mod.socket = impl.socket
        mod.getaddrinfo = impl.getaddrinfo
        sys.modules["usocket"] = mod


class HostPort(Port):
    """The hub on a PC: everything injected. wifi_ok can be set False by a test to take Wi-Fi down."""

    def __init__(self, uart, clock=None, log_level="info", log=None, i2c=None, wall=None):
        Port.__init__(self, log_level, log)
        self.uart = uart
        self.clock = clock or SystemClock()
        self.wifi_ok = True
        self.resets = 0
        self.i2c_bus = i2c  # an I2C-shaped object (a device model, SocketI2C) or None
        self.wall = wall  # a function returning seconds since 2000-01-01 UTC or None; None: unknown

    def i2c(self, icfg):
        if self.i2c_bus is None:
            raise OSError("no I2C bus given to the host port")
        return self.i2c_bus

    def wall_time(self):
        return self.wall() if self.wall is not None else None

    def wifi_connect(self, timeout_ms):
        return self.wifi_ok

    def wifi_up(self):
        return self.wifi_ok

    def socket_module(self, timeout_s):
        if not self.wifi_ok:
            return _NoNetwork()
        return Port.socket_module(self, timeout_s)

    def ssl_wrap(self, sock, tls):
        if sys.implementation.name == "micropython":
            return mpy_tls_wrap(sock, tls)
        import ssl

        ctx = ssl.create_default_context(cafile=tls["ca"] or None)
        if tls["insecure"]:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls["cert"]:
            ctx.load_cert_chain(tls["cert"], tls["key"])
        inner = sock.s
        sock.s = ctx.wrap_socket(inner, server_hostname=tls["server_hostname"])
        return sock

    def reset(self):
        self.resets += 1

    def setup_outputs(self, outs, reset_pin=None):
        self.out_levels = bytearray(len(outs))  # physical pin levels (what a relay driver would see)
        self.out_log = []  # (ticks_ms, output, logical closed) of every change, for tests and the simulation
        self._pressed = False
        self._outs = outs
        self.out_state = bytearray(len(outs))
        for k in range(len(outs)):
            self.out_levels[k] = 1 if outs[k][1] else 0  # open
            if outs[k][0] is not None:
                self.out_log.append((self.clock.ticks_ms(), k, 0))

    def set_output(self, k, closed):
        closed = 1 if closed else 0
        if self._outs[k][0] is None:
            return
        if self.out_state[k] != closed:
            self.out_log.append((self.clock.ticks_ms(), k, closed))
        self.out_levels[k] = closed ^ (1 if self._outs[k][1] else 0)
        self.out_state[k] = closed

    def press_reset(self):
        """The reset push button, pressed (tests, simulation)."""
        self._pressed = True

    def reset_pressed(self):
        p = self._pressed
        self._pressed = False
        return p


def der(path):
    """The first certificate or key in a PEM or DER file, as DER: MicroPython's mbedTLS binding takes
    DER bytes (a PEM file gives "invalid cert"), while users have PEM files from openssl or their CA."""
    with open(path, "rb") as f:
        data = f.read()
    start = data.find(b"-----BEGIN")
    if start < 0:
        return data
    import binascii

    body = data.find(b"\n", start) + 1
    end = data.find(b"-----END", body)
    if body <= 0 or end < 0:
        raise ValueError("%s: a PEM block without its END line" % path)
    return binascii.a2b_base64(data[body:end])


def mpy_tls_wrap(sock, tls):
    """TLS client socket over sock with MicroPython's ssl module (mbedTLS on the ESP32 and the unix
    port): certificate and server name checked unless tls["insecure"]."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls["insecure"]:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=der(tls["ca"]))
    if tls["cert"]:
        ctx.load_cert_chain(der(tls["cert"]), der(tls["key"]))
    return ctx.wrap_socket(sock, server_hostname=tls["server_hostname"])


class SocketUart:
    """A UART-shaped TCP connection to a simulated ring (`packmon` serves one on 127.0.0.1): the hub's
    ring driver uses it exactly like machine.UART(timeout=0). Runs on CPython and the unix port."""

    def __init__(self, host, port):
        import socket

        addr = socket.getaddrinfo(host, port)[0][-1]
        self.sock = socket.socket()
        self.sock.connect(addr)
        self.sock.setblocking(False)

    def write(self, buf):
        mv = memoryview(buf)
        sent = 0
        while sent < len(mv):
            try:
                k = self.sock.send(mv[sent:])
            except OSError as e:
                if e.args and e.args[0] == 11:  # EAGAIN
                    continue
                raise
            sent += k or 0
        return sent

    def readinto(self, buf):
        try:
            if sys.implementation.name == "micropython":
                k = self.sock.readinto(buf)
            else:
                k = self.sock.recv_into(buf)
        except OSError:
            return None  # nothing waiting (EAGAIN)
        if k == 0:
            raise OSError("the simulated ring closed the connection")
        return k

    def close(self):
        self.sock.close()


class _FedSockets:
    """Sockets that feed the watchdog before every call that may block (each blocks at most
    mqtt.timeout_s): with outputs in use the watchdog is capped at protect.watchdog_s, and a slow but
    alive broker must not reset the hub, while a hub hung anywhere else still does."""

    def __init__(self, mod, feed):
        self._mod = mod
        self._feed = feed

    def socket(self, *args):
        self._feed()
        return _FedSock(self._mod.socket(*args), self._feed)

    def getaddrinfo(self, *args):
        self._feed()
        return self._mod.getaddrinfo(*args)


class _FedSock:
    def __init__(self, s, feed):
        self.s = s
        self._feed = feed

    def connect(self, addr):
        self._feed()
        self.s.connect(addr)

    def read(self, n):
        self._feed()
        return self.s.read(n)

    def write(self, buf, n=None):
        self._feed()
        return self.s.write(buf) if n is None else self.s.write(buf, n)

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def settimeout(self, t):
        self.s.settimeout(t)

    def close(self):
        self.s.close()


class _NoNetwork:
    def socket(self, *args):
        raise OSError("no network (Wi-Fi down)")

    def getaddrinfo(self, *args):
        raise OSError("no network (Wi-Fi down)")


class BoardPort(Port):
    """The ESP32 (NodeMCU-32S)."""

    def __init__(self, cfg):
        import machine  # noqa: F401 (board only)

        Port.__init__(self, cfg["log_level"])
        self._pins = None
        self._button = None
        self._pressed = False
        # protection outputs: the hang protection is a CAPPED WATCHDOG (docs/hub.md "Protection"): with any
        # output in use the hardware watchdog never exceeds protect.watchdog_s, and a watchdog reset puts
        # every GPIO back to a de-energised input, which opens every (non-inverted) relay
        wd = cfg["watchdog_s"]
        self.outputs_used = False
        outs = cfg.get("outputs") or {}  # hub/protect_config.py: present only in a config that has it
        for name in outs:
            if outs[name]["pin"] is not None:
                self.outputs_used = True
        if self.outputs_used:
            cap = cfg["protect"]["watchdog_s"]
            wd = min(wd, cap) if wd else cap
            for name in outs:  # every output to its open level first, before the UART or anything else
                o = outs[name]
                if o["pin"] is not None:
                    machine.Pin(o["pin"], machine.Pin.OUT, value=1 if o["inverted"] else 0)
        u = cfg["uart"]
        self.uart = machine.UART(u["id"], baudrate=u["baud"], tx=u["tx"], rx=u["rx"], timeout=0, rxbuf=1024)
        self.clock = SystemClock()
        self._wdt = machine.WDT(timeout=int(wd * 1000)) if wd else None
        self.watchdog_ms = int(wd * 1000)
        self._cfg = cfg
        self._wlan = None
        self.reset_cause = machine.reset_cause()
        self._ntp = None

    def i2c(self, icfg):
        import machine

        pins = {"scl": machine.Pin(icfg["scl"]), "sda": machine.Pin(icfg["sda"]), "freq": icfg["freq"]}
        if icfg["id"] < 0:
            return machine.SoftI2C(**pins)
        return machine.I2C(icfg["id"], **pins)

    def wall_time(self):
        """Seconds since 2000-01-01 UTC once NTP has set the RTC; None before (hub/ntp.py, loaded on first
        use: only the daily energy counters need the time)."""
        if self._ntp is None:
            from hub.ntp import Ntp

            self._ntp = Ntp(self)
        return self._ntp.time()

    def feed_watchdog(self):
        if self._wdt is not None:
            self._wdt.feed()

    def setup_outputs(self, outs, reset_pin=None):
        import machine

        self._outs = outs
        self.out_state = bytearray(len(outs))
        self._pins = []
        for pin, inverted in outs:
            # value= sets the level before the pin becomes an output: no glitch to "closed"
            self._pins.append(None if pin is None else machine.Pin(pin, machine.Pin.OUT, value=1 if inverted else 0))
        if reset_pin is not None:
            try:
                self._button = machine.Pin(reset_pin, machine.Pin.IN, machine.Pin.PULL_UP)
            except ValueError:  # GPIO 34-39 have no pull-up (check-config warns: an external one is needed)
                self._button = machine.Pin(reset_pin, machine.Pin.IN)
            self._button.irq(trigger=machine.Pin.IRQ_FALLING, handler=self._press)

    def _press(self, pin):
        self._pressed = True  # an IRQ: a press shorter than a scan interval is not missed

    def set_output(self, k, closed):
        closed = 1 if closed else 0
        self.out_state[k] = closed
        p = self._pins[k]
        if p is not None:
            p.value(closed ^ (1 if self._outs[k][1] else 0))

    def reset_pressed(self):
        p = self._pressed
        self._pressed = False
        return p

    def iso_time(self, age_ms):
        t = time.time()
        if t < 757382400:  # before 2024 (MicroPython's epoch is 2000): NTP has not set the clock
            return None
        y, mo, d, h, mi, s = time.gmtime(t - age_ms // 1000)[0:6]
        return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s)

    def socket_module(self, timeout_s):
        mod = Port.socket_module(self, timeout_s)
        return _FedSockets(mod, self.feed_watchdog) if self.outputs_used else mod

    def wifi_connect(self, timeout_ms):
        import network

        if self._wlan is None:
            self._wlan = network.WLAN(network.STA_IF)
            self._wlan.active(True)
        if self._wlan.isconnected():
            return True
        w = self._cfg["wifi"]
        try:
            self._wlan.connect(w["ssid"], w["password"])
        except OSError as e:
            self.log("warning", "wifi: connect failed: %s" % e)
            return False
        if timeout_ms <= 0:
            return False  # joining in the background; the publisher's reconnects find it up
        start = ticks_ms()
        while not self._wlan.isconnected():
            if ticks_diff(ticks_ms(), start) > timeout_ms:
                return False
            self.feed_watchdog()
            sleep_ms(100)
        self.log("info", "wifi: connected, address %s" % self._wlan.ifconfig()[0])
        return True

    def wifi_up(self):
        return self._wlan is not None and self._wlan.isconnected()

    def ssl_wrap(self, sock, tls):
        if isinstance(sock, _FedSock):
            sock.s = mpy_tls_wrap(sock.s, tls)
            return sock
        return mpy_tls_wrap(sock, tls)

    def reset(self):
        import machine

        machine.reset()
