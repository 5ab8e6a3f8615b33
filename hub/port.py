# The only module that touches the hardware: UART, I2C, watchdog, Wi-Fi, clocks, sockets, reset.
#
# BoardPort is the ESP32 (machine/network). HostPort (hub/hostport.py, host only: never copied to a board,
# so the board does not carry it in RAM) runs the same hub code on a PC with injected parts. The TLS
# wrapping is in hub/tls.py, loaded only with mqtt.tls on.
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

    # -- protection outputs (hub/protect.py decides; only this module drives pins) -------------------
    # outs: [(pin or None, inverted)] in hub.protect.NAMES order. LOGICAL closed (connected / on) is
    # the ENERGISED level (pin high) unless inverted: a de-energised pin (reset, crash, power-up,
    # watchdog) then means disconnected. Each port (BoardPort here, HostPort in hub/hostport.py) has
    # setup_outputs(outs, reset_pin) (every output open before anything else), set_output(k, closed)
    # (out_state[k]: logical, as last set) and reset_pressed() (True once per press of the reset button);
    # both ports define them, so they are not defaulted here.
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
    from hub.cpython import cpython_socket_module  # CPython (host tools, tests) only

    return cpython_socket_module()


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


class RingUart:
    """machine.UART for the ring: its own write and readinto (bound, no extra call on the hot path), plus
    stop_bits(n), which the ring driver calls around a SNAP (sent with two stop bits, docs/protocol.md 3.5).
    init() is given every setting the hub opened the UART with, so none falls back to a default."""

    def __init__(self, uart, ucfg):
        self._u = uart
        self._cfg = ucfg
        self.write = uart.write
        self.readinto = uart.readinto

    def stop_bits(self, n):
        c = self._cfg
        self._u.init(baudrate=c["baud"], bits=8, parity=None, stop=n, tx=c["tx"], rx=c["rx"], timeout=0)


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
        self.uart = RingUart(machine.UART(u["id"], baudrate=u["baud"], tx=u["tx"], rx=u["rx"], timeout=0, rxbuf=1024),
                             u)
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
        from hub.tls import wrap  # loaded with TLS only (hub.preload): the board's heap is small

        if isinstance(sock, _FedSock):
            sock.s = wrap(sock.s, tls)
            return sock
        return wrap(sock, tls)

    def reset(self):
        import machine

        machine.reset()


if sys.implementation.name != "micropython":  # CPython host tools and tests import them from here, as before
    from hub.cpython import install_cpython_shims  # noqa: E402, F401
    from hub.hostport import HostPort, SocketUart  # noqa: E402, F401
