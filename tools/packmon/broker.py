"""An MQTT broker embedded in the process (amqtt), for `packmon demo` without any install beyond pip."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


class EmbeddedBroker:
    """amqtt running in a background thread on 127.0.0.1:port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port(1883)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mqtt-broker", daemon=True)

    def _run(self) -> None:
        from amqtt.broker import Broker

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)

        async def main() -> None:
            broker = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
                }
            )
            await broker.start()
            self._ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            await broker.shutdown()

        try:
            asyncio.run(main())
        except BaseException as e:  # reported to the caller of start()
            self._error = e
            self._ready.set()

    def start(self) -> EmbeddedBroker:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the embedded MQTT broker did not start within 10 s")
        if self._error:
            raise RuntimeError(f"the embedded MQTT broker failed to start: {self._error}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
