# CPython only (host tools and tests; never on a board, never under MicroPython): what umqtt.simple expects
# from MicroPython (usocket/ustruct/ubinascii, stream-style sockets), for hub/port.py under CPython. Kept
# out of hub/hostport.py so the MicroPython unix port does not load it either.
import sys


def cpython_socket_module():
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
        impl = cpython_socket_module()
        mod.socket = impl.socket
        mod.getaddrinfo = impl.getaddrinfo
        sys.modules["usocket"] = mod
