"""Shared fixtures: a real Mosquitto broker per test, a paho subscriber, a fake clock."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from packmon.sim.clock import SimClock as FakeClock

ROOT = Path(__file__).resolve().parents[1]
HUB_LIB = str(ROOT / "hub" / "lib")
if HUB_LIB not in sys.path:
    sys.path.insert(0, HUB_LIB)  # umqtt.simple, vendored as on the board's /lib


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    def __init__(self, tmp: Path, extra: str = "", anonymous: bool = True) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.extra = extra
        self.anonymous = anonymous
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        conf = self.tmp / f"mosquitto-{self.port}.conf"
        # as root, mosquitto would drop to the `mosquitto` user, which cannot read pytest's tmp folder
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"{user}listener {self.port} 127.0.0.1\n"
                        f"allow_anonymous {'true' if self.anonymous else 'false'}\n{self.extra}")
        self.log = open(self.tmp / f"mosquitto-{self.port}.log", "wb")
        self.proc = subprocess.Popen([self.binary(), "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    @staticmethod
    def binary() -> str:
        return shutil.which("mosquitto") or "/usr/sbin/mosquitto"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path):
    if not Path(Mosquitto.binary()).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    m = Mosquitto(tmp_path).start()
    yield m
    m.stop()


class Subscriber:
    """paho-mqtt subscriber that records (topic, payload, retain) and the latest value per topic."""

    def __init__(self, port: int, topic: str = "#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.latest: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topic)
        self.c.loop_start()
        time.sleep(0.2)

    def _on(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self.latest[msg.topic] = msg.payload

    def wait_for(self, pred, timeout: float = 5.0):  # noqa: ANN001
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                v = pred(self)
            if v:
                return v
            time.sleep(0.02)
        raise AssertionError("condition not met in time")

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def subscriber_factory():
    subs: list[Subscriber] = []

    def make(port: int, topic: str = "#") -> Subscriber:
        s = Subscriber(port, topic)
        subs.append(s)
        return s

    yield make
    for s in subs:
        s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100_000)
