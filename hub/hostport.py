# The hub on a PC (host only, never on the board; `packmon deploy` leaves it out): HostPort runs the same
# hub code under CPython (tests, `packmon demo`) or the MicroPython unix port (tools/mpy/hub_main.py) with
# injected parts: a UART-shaped object (write/readinto; SocketUart: a TCP connection to a simulated ring),
# an I2C-shaped object (readfrom_mem_into/writeto_mem: a device model), a clock, a wall clock, a Wi-Fi that
# is up unless a test takes it down, a no-op watchdog. (The CPython shims umqtt.simple needs: hub/cpython.py.)
# Kept out of hub/port.py so the board does not carry it in RAM; it never touches machine or network.
import sys

from hub.port import Port, SystemClock


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
            from hub.tls import wrap

            return wrap(sock, tls)
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


class _NoNetwork:
    def socket(self, *args):
        raise OSError("no network (Wi-Fi down)")

    def getaddrinfo(self, *args):
        raise OSError("no network (Wi-Fi down)")


