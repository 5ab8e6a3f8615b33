"""A ring of pure-Python nodes (node_model.NodeModel) with byte-accurate wire timing.

The engine interface (shared with the simavr engine in simavr_ring.py):

    ring.n                              nodes currently wired into the ring
    ring.set_pack(i, mv=, temp=)        the scenario's truth for node i (0-based): mV and 0.1 degC
    ring.reset_node(i)                  node i restarts (RAM state lost, EEPROM settings kept)
    ring.remove_node(i) / insert_node(i) a node is taken out of the ring (the ring is closed around it)
    ring.broken = True                  the ring is open: nothing comes back
    ring.ber = 1e-4                     bit error rate on every hop
    ring.exchange(tx) -> Exchange       the hub's bytes in, the bytes the hub receives out, and the
                                        simulated time from the first start bit to the last stop bit
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .node_model import FLAG_NOT_CALIBRATED, FLAG_RESET_POWER, NodeModel, NodeState

# Per hop, after a byte's stop bit has been sampled (9.5 bits into the byte) the node's interrupt
# queues it and the transmit interrupt starts it on the next bit tick: about half a bit in total.
NODE_DELAY_BITS = 0.5


@dataclass
class Exchange:
    rx: bytes
    seconds: float  # first TX start bit to last RX stop bit (or to the end of TX if nothing came back)
    per_hop_bytes: list[int] = field(default_factory=list)


class ModelRing:
    def __init__(
        self,
        n: int,
        mv: list[int] | int = 3300,
        temp: list[int] | int = 250,
        baud: int = 9600,
        ber: float = 0.0,
        seed: int = 1,
    ) -> None:
        mvs = mv if isinstance(mv, list) else [mv] * n
        temps = temp if isinstance(temp, list) else [temp] * n
        self.baud = baud
        self.ber = ber
        self.broken = False
        self.rng = random.Random(seed)
        self.bit = 1.0 / baud
        self.nodes: list[NodeModel] = []
        for i in range(n):
            node = NodeModel(NodeState(mv=mvs[i], temp=temps[i]))
            node.true_mv, node.true_temp, node.bandgap = mvs[i], temps[i], 11000  # type: ignore[attr-defined]
            self.nodes.append(node)
        self._removed: dict[int, NodeModel] = {}
        self.bit_errors = 0

    # -- scenario -----------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.nodes)

    def set_pack(self, i: int, mv: int | None = None, temp: int | None = None) -> None:
        node = self.nodes[i]
        if mv is not None:
            node.true_mv = mv  # type: ignore[attr-defined]
        if temp is not None:
            node.true_temp = temp  # type: ignore[attr-defined]
        self._measure(node)

    def set_bandgap(self, i: int, bandgap_01mv: int) -> None:
        """This node's real bandgap voltage (0.1 mV): a node whose bandgap is not the nominal 1.1 V
        reports a wrong voltage until it is calibrated, as real ATtiny85s do (±10 %)."""
        self.nodes[i].bandgap = bandgap_01mv  # type: ignore[attr-defined]
        self._measure(self.nodes[i])

    @staticmethod
    def _measure(node: NodeModel) -> None:
        """What the firmware's measurement gives: the voltage scaled by its vref setting over the real
        bandgap, the temperature plus its offset setting."""
        s = node.s
        t = getattr(node, "true_mv", None)
        if t is None:
            return
        s.mv = round(t * s.settings.vref / node.bandgap)  # type: ignore[attr-defined]
        if node.true_temp != -32768:  # type: ignore[attr-defined]
            s.temp = node.true_temp + s.settings.temp_offset  # type: ignore[attr-defined]

    def reset_node(self, i: int) -> None:
        prev = self.nodes[i]
        old = prev.s
        flags = FLAG_RESET_POWER | (0 if old.settings.flags & 1 else FLAG_NOT_CALIBRATED)
        flags |= old.flags & 0x41  # sensor/voltage faults are properties of the hardware, not RAM
        node = NodeModel(NodeState(mv=old.mv, temp=old.temp, flags=flags, settings=old.settings))
        for attr in ("true_mv", "true_temp", "bandgap"):  # the pack and the chip stay the same
            if hasattr(prev, attr):
                setattr(node, attr, getattr(prev, attr))
        self.nodes[i] = node

    def remove_node(self, i: int) -> None:
        self._removed[i] = self.nodes.pop(i)

    def insert_node(self, i: int) -> None:
        node = self._removed.pop(i, None) or NodeModel(NodeState())
        self.nodes.insert(i, node)
        self.reset_node(i)

    # -- the wire ------------------------------------------------------------------------------
    def _noisy(self, byte: int) -> tuple[int, bool]:
        """Apply the bit error rate to 8 data bits and the stop bit."""
        if not self.ber:
            return byte, False
        framing = False
        for b in range(9):
            if self.rng.random() < self.ber:
                self.bit_errors += 1
                if b == 8:
                    framing = True
                else:
                    byte ^= 1 << b
        return byte, framing

    def exchange(self, tx: bytes) -> Exchange:
        byte_t = 10 * self.bit
        # (byte, time its stop bit ends) for the stream on the current hop
        t = 0.0
        stream: list[tuple[int, float, bool]] = []
        for b in tx:
            t += byte_t
            nb, fe = self._noisy(b)
            stream.append((nb, t, fe))
        end_tx = t
        hops = [len(stream)]
        for node in self.nodes:
            self._measure(node)  # the firmware measures continuously between frames
        if self.broken:
            return Exchange(b"", end_tx, hops)
        for node in self.nodes:
            out: list[tuple[int, float, bool]] = []
            busy_until = 0.0
            for b, t_end, fe in stream:
                # the node sees the byte 0.5 bit before the stop bit ends (stop-bit sample point)
                ready = t_end - 0.5 * self.bit + NODE_DELAY_BITS * self.bit
                for ob in node.feed(b, framing_error=fe):
                    start = max(ready, busy_until)
                    busy_until = start + byte_t
                    nb, nfe = self._noisy(ob)
                    out.append((nb, busy_until, nfe))
            if stream:
                # the line goes quiet after the last byte: a node left inside a frame times out
                node.timeout()
            stream = out
            hops.append(len(stream))
        rx = bytes(b for b, _, _ in stream)
        seconds = stream[-1][1] if stream else end_tx
        return Exchange(rx, seconds, hops)


class SimUart:
    """A UART-shaped view of a ring engine for the hub's ring driver (write/readinto/any).

    Writing a frame runs it around the simulated ring at once; the answer is then readable.
    `wire_seconds` accumulates the simulated wire time, `on_exchange` may observe each exchange."""

    def __init__(self, engine, on_exchange=None) -> None:
        self.engine = engine
        self._rx = bytearray()
        self.wire_seconds = 0.0
        self.last: Exchange | None = None
        self.on_exchange = on_exchange

    def write(self, buf) -> int:
        data = bytes(buf)
        ex = self.engine.exchange(data)
        self.last = ex
        self.wire_seconds += ex.seconds
        self._rx += ex.rx
        if self.on_exchange:
            self.on_exchange(data, ex)
        return len(data)

    def any(self) -> int:
        return len(self._rx)

    def readinto(self, buf, nbytes: int | None = None) -> int | None:
        if not self._rx:
            return None
        k = min(len(buf) if nbytes is None else nbytes, len(self._rx))
        buf[0:k] = self._rx[0:k]
        del self._rx[0:k]
        return k

    def read(self, nbytes: int | None = None) -> bytes | None:
        if not self._rx:
            return None
        k = len(self._rx) if nbytes is None else min(nbytes, len(self._rx))
        out = bytes(self._rx[0:k])
        del self._rx[0:k]
        return out
