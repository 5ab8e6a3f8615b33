# The hub on a PC talking to a simulated shunt monitor (host only, never on the board): an I2C-shaped
# TCP connection to tools/packmon/sim/ina.py's SocketI2CServer, used by tools/mpy/hub_main.py under the
# MicroPython unix port. Kept out of hub/port.py so the board does not carry it in RAM.
import sys


class SocketI2C:
    """An I2C-shaped TCP connection to a simulated shunt monitor (tools/packmon/sim/ina.py serves one on
    127.0.0.1): readfrom_mem_into / writeto_mem like machine.I2C, OSError(errno) when the simulated
    device does not acknowledge. Preallocated buffers: no allocation per transaction."""

    def __init__(self, host, port, timeout_s=2):
        import socket

        addr = socket.getaddrinfo(host, port)[0][-1]
        self.sock = socket.socket()
        self.sock.connect(addr)
        self.sock.settimeout(timeout_s)
        self.head = bytearray(6)
        self.mv = memoryview(self.head)
        self.ans = bytearray(8)
        self.ansmv = memoryview(self.ans)

    def _recv(self, n):
        if sys.implementation.name == "micropython":
            k = self.sock.readinto(self.ans, n)  # no slice: a memoryview slice would allocate
        else:
            k = self.sock.recv_into(self.ans, n)
        if not k:
            raise OSError(5)  # the simulator went away: like a bus error
        while k < n:  # rare: the answer arrived in pieces
            if sys.implementation.name == "micropython":
                j = self.sock.readinto(self.ansmv[k:n])
            else:
                j = self.sock.recv_into(self.ansmv[k:n])
            if not j:
                raise OSError(5)
            k += j

    def _send(self, n):
        if sys.implementation.name == "micropython":
            sent = self.sock.write(self.head, n)
        else:
            sent = self.sock.send(self.mv[0:n])
        while sent < n:
            sent += self.sock.send(self.mv[sent:n])

    def readfrom_mem_into(self, addr, reg, buf):
        h = self.head
        n = len(buf)
        h[0] = 82  # 'R'
        h[1] = addr
        h[2] = reg
        h[3] = n
        self._send(4)
        self._recv(1)
        if self.ans[0]:
            raise OSError(self.ans[0])
        self._recv(n)
        for i in range(n):
            buf[i] = self.ans[i]

    def writeto_mem(self, addr, reg, buf):
        h = self.head
        h[0] = 87  # 'W'
        h[1] = addr
        h[2] = reg
        h[3] = 2
        h[4] = buf[0]
        h[5] = buf[1]
        self._send(6)
        self._recv(1)
        if self.ans[0]:
            raise OSError(self.ans[0])

    def close(self):
        self.sock.close()


def parse(argv):
    """tools/mpy/hub_main.py's arguments: (positional args, a SocketI2C or None, a wall clock or None)
    from i2c=HOST:PORT and wall=SECONDS (the time at start, seconds since 2000-01-01 UTC)."""
    args = []
    i2c = None
    wall = None
    for a in argv:
        if a.startswith("i2c="):
            host, _, p = a[4:].rpartition(":")
            i2c = SocketI2C(host, int(p))
        elif a.startswith("wall="):
            wall = _Wall(int(a[5:]))
        else:
            args.append(a)
    return args, i2c, wall


class _Wall:
    def __init__(self, start_s):
        import time

        self.time = time
        self.start_s = start_s
        self.t0 = time.ticks_ms()

    def __call__(self):
        return self.start_s + self.time.ticks_diff(self.time.ticks_ms(), self.t0) // 1000
