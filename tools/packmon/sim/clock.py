"""Simulated time with the hub's clock interface (ticks_ms, ticks_diff, sleep_ms: hub/port.py): the hub
waits by calling sleep_ms, which here only moves the time on, so tests and soaks run at full speed."""

from __future__ import annotations


class SimClock:
    def __init__(self, start_ms: int = 0) -> None:
        self.t = start_ms

    def ticks_ms(self) -> int:
        return self.t

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b  # no wrap-around: simulated time never gets near it

    def sleep_ms(self, ms: int) -> None:
        self.t += ms

    def advance(self, seconds: float) -> None:
        self.t += int(seconds * 1000)
