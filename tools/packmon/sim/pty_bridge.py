"""Serve a simulated ring (ModelRing, SimavrRing: anything with exchange(tx) -> Exchange) on a
pseudo-terminal, so any serial program can talk to it as to a USB-serial adapter wired to a real ring.

    with PtyBridge(ModelRing(4)) as bridge:
        print(bridge.path)          # /dev/pts/N: give it to `packmon ring --port`, pyserial, minicom...

A thread reads the bytes the "hub" writes, cuts them into frames (SOF + the length its header gives, or
whatever arrived before a short silence: a real node times out on a partial frame the same way), runs
each through engine.exchange() and writes the answer back — after the simulated wire time if pace=True.
"""

from __future__ import annotations

import os
import select
import termios
import threading
import time
import tty
from pathlib import Path

SOF = 0xA5
HEADER = 5
MAX_SLOTS = 64


def open_pty() -> tuple[int, int, str]:
    """A raw pseudo-terminal pair: (master fd, slave fd, slave path). Keep the slave fd open while the
    pty is in use: the master reads EIO whenever no slave is open."""
    master, slave = os.openpty()
    tty.setraw(master, termios.TCSANOW)
    tty.setraw(slave, termios.TCSANOW)
    return master, slave, os.ttyname(slave)


def frame_end(buf: bytes | bytearray) -> int | None:
    """Index just past the first complete frame in buf (leading non-SOF bytes included), or None."""
    i = buf.find(bytes([SOF]))
    if i < 0 or len(buf) - i < HEADER:
        return None
    cnt = buf[i + 4]
    if cnt > MAX_SLOTS:
        return None  # a bad header: the nodes will drop it; wait for the silence
    end = i + 9 + 8 * cnt
    return end if len(buf) >= end else None


class PtyBridge:
    def __init__(self, engine, pace: bool = False, gap_s: float = 0.02, link: str | os.PathLike | None = None) -> None:
        self.engine = engine
        self.pace = pace
        self.gap_s = gap_s
        self.lock = threading.RLock()  # held around every exchange: take it to change the engine safely
        self.exchanges = 0
        self.error: BaseException | None = None
        self._master, self._slave, self.path = open_pty()
        self.link = Path(link) if link else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-bridge", daemon=True)
        if self.link:
            if self.link.is_symlink() or self.link.exists():
                self.link.unlink()
            self.link.symlink_to(self.path)

    def start(self) -> PtyBridge:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1
        if self.link and self.link.is_symlink():
            self.link.unlink()

    def __enter__(self) -> PtyBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        buf = bytearray()
        first = last = 0.0
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([self._master], [], [], 0.01)
                now = time.monotonic()
                if r:
                    try:
                        data = os.read(self._master, 4096)
                    except OSError:  # no slave open at the moment
                        time.sleep(0.01)
                        continue
                    if data:
                        if not buf:
                            first = now
                        buf += data
                        last = now
                while buf:
                    end = frame_end(buf)
                    if end is None:
                        if now - last >= self.gap_s:
                            end = len(buf)  # silence: hand over what there is (nodes time out on it)
                        else:
                            break
                    chunk = bytes(buf[:end])
                    del buf[:end]
                    self._answer(chunk, first)
                    first = now
        except BaseException as e:  # noqa: BLE001 - reported to whoever owns the bridge
            self.error = e

    def _answer(self, tx: bytes, first: float) -> None:
        with self.lock:
            ex = self.engine.exchange(tx)
            self.exchanges += 1
        if self.pace:
            wait = ex.seconds - (time.monotonic() - first)
            if wait > 0:
                time.sleep(wait)
        data = memoryview(ex.rx)
        while data and not self._stop.is_set():
            try:
                k = os.write(self._master, data)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            data = data[k:]
