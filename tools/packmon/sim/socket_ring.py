"""A simulated ring served on a loopback TCP socket, for a hub running in another process (the hub
under the MicroPython unix port connects to it with hub.hostport.SocketUart)."""

from __future__ import annotations

import select
import socket
import threading
import time

SOF = 0xA5


class SocketRing:
    def __init__(self, engine, host: str = "127.0.0.1", port: int = 0, gap_s: float = 0.02) -> None:
        self.engine = engine
        self.gap_s = gap_s
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((host, port))
        self.srv.listen(1)
        self.host, self.port = self.srv.getsockname()
        self.lock = threading.Lock()  # hold it to change the engine from another thread
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="socket-ring", daemon=True)

    def start(self) -> SocketRing:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.srv], [], [], 0.05)
            if not r:
                continue
            conn, _ = self.srv.accept()
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        buf = bytearray()
        last = time.monotonic()
        while not self._stop.is_set():
            r, _, _ = select.select([conn], [], [], 0.01)
            if r:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                last = time.monotonic()
            while buf:
                complete = len(buf) >= 5 and buf[0] == SOF and len(buf) >= 9 + 8 * buf[4]
                if not complete and time.monotonic() - last < self.gap_s:
                    break
                n = min(len(buf), 9 + 8 * buf[4]) if (buf[0] == SOF and len(buf) >= 5) else len(buf)
                chunk, buf = bytes(buf[:n]), buf[n:]
                with self.lock:
                    ex = self.engine.exchange(chunk)
                    self.frames += 1
                if ex.rx:
                    conn.sendall(ex.rx)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.srv.close()

    def __enter__(self) -> SocketRing:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
