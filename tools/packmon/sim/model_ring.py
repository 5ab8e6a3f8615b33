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

import binascii
import bisect
import itertools
import random
from dataclasses import dataclass, field

from hub import codec

from .clocks import OSCCAL_8MHZ, ClockSpread
from .node_model import (
    CMD_ENUMERATE,
    CMD_SCAN,
    FLAG_NOT_CALIBRATED,
    FLAG_RESET_POWER,
    LATCHED_FLAGS,
    MAX_SLOTS,
    SLOT_SIZE,
    SNAP_REQUESTED,
    SNAP_TICK_S,
    SOF,
    TIMED_SNAP_FW,
    NodeModel,
    NodeState,
)
from .trim_model import DITHER_ONE, Trim

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
        clocks: ClockSpread | None = None,
        trim: bool = False,
    ) -> None:
        """clocks: per-node clocks and coupler delays (sim/clocks.py); then every byte is sampled as the
        firmware samples it, at the receiving node's own bit period (see ClockedHop). trim: the nodes
        trim their clocks from each SOF as the firmware does (trim_model.py)."""
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
        self.clocks = clocks
        self.trim = trim
        if clocks is not None:
            if clocks.n != n:
                raise ValueError("clocks must describe every node")
            for i, node in enumerate(self.nodes):
                node.chip = i  # type: ignore[attr-defined]
                node.trim = Trim(OSCCAL_8MHZ, OSCCAL_8MHZ)  # type: ignore[attr-defined]
        # the clocked path's counters (exchange_clocked): bytes a node received wrong, the largest
        # TX FIFO backlog, bytes lost to a full FIFO
        self.corrupted = 0
        self.fifo_hwm = 0
        self.fifo_lost = 0

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
        for attr in ("true_mv", "true_temp", "bandgap", "chip"):  # the pack and the chip stay the same
            if hasattr(prev, attr):
                setattr(node, attr, getattr(prev, attr))
        if hasattr(prev, "trim"):
            # the chip restarts from its factory OSCCAL (the firmware's EEPROM start is not modelled)
            node.trim = Trim(prev.trim.osccal0, prev.trim.osccal0)  # type: ignore[attr-defined]
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

    def exchange(self, tx: bytes, stop_bits: int = 1) -> Exchange:
        """stop_bits: what the hub sent with (2 for a SNAP); the model times bytes, not bits, and ignores it."""
        if self.clocks is not None:
            return self._exchange_clocked(tx)
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
                self._snapshot(node, stream[-1][1] - 0.5 * self.bit + NODE_DELAY_BITS * self.bit, 1.0)
            stream = out
            hops.append(len(stream))
        rx = bytes(b for b, _, _ in stream)
        seconds = stream[-1][1] if stream else end_tx
        return Exchange(rx, seconds, hops)


    def _snapshot(self, node: NodeModel, frame_end: float, tick_scale: float) -> None:
        """A SNAP just ended at this node (docs/protocol.md 3.5): it samples snap_wait ticks of its own clock
        later. The model takes the measurement at once (the scenario's truth does not change within an
        exchange, and the hub waits for the instant before its next frame) and keeps the instant, in this
        exchange's time, as node.snap_instant; the spread of the real image is simavr's (bench --snapshot)."""
        if node.s.snap != SNAP_REQUESTED:
            return
        node.snap_instant = frame_end + node.s.snap_wait * SNAP_TICK_S * tick_scale  # type: ignore[attr-defined]
        self._measure(node)
        node.take_snapshot()

    # -- per-node clocks ---------------------------------------------------------------------------
    def node_ratio(self, node: NodeModel) -> float:
        """The node's frequency over the nominal clock now."""
        assert self.clocks is not None
        t: Trim = node.trim  # type: ignore[attr-defined]
        return self.clocks.ratio(node.chip, t.osccal, t.osccal0, node.true_mv, node.true_temp)  # type: ignore[attr-defined]

    def _exchange_clocked(self, tx: bytes) -> Exchange:
        """The hub's bytes go round the ring with every node sampling at its own bit period.

        A stream on a hop is (bytes, start times at the sender, the sender's bit period, framing flags).
        Each node receives it as ClockedHop says, runs the protocol (NodeModel, or pass_frame for a clean
        SCAN/ENUMERATE) and transmits at its own bit period through its 31-byte TX FIFO."""
        assert self.clocks is not None
        clocks = self.clocks
        hub_t = self.bit
        vals: list[int] = []
        fes: list[bool] = []
        for b in tx:
            nb, fe = self._noisy(b)
            vals.append(nb)
            fes.append(fe)
        starts = [k * 10 * hub_t for k in range(len(vals))]
        send_t = hub_t
        hops = [len(vals)]
        for node in self.nodes:
            self._measure(node)
        if self.broken:
            return Exchange(b"", len(vals) * 10 * hub_t, hops)
        for k, node in enumerate(self.nodes):
            rise, fall = clocks.edge_us(k)
            hop = ClockedHop(send_t, rise * 1e-6, fall * 1e-6, self.rng)
            vals, starts, fes, send_t = self._node_pass(node, hop, vals, starts, fes)
            hops.append(len(vals))
        # the hub's UART: a crystal receiver sampling mid-bit (as the harness's) behind the last coupler
        rise, fall = clocks.edge_us(len(self.nodes))
        hop = ClockedHop(send_t, rise * 1e-6, fall * 1e-6, self.rng)
        got = hop.receive(vals, starts, fes, hub_t, detect_q=hub_t / 16)
        rx = bytes(b for b, _, _ in got)
        seconds = (got[-1][2] + 0.5 * hub_t) if got else len(tx) * 10 * hub_t
        return Exchange(rx, seconds, hops)

    def _node_pass(self, node: NodeModel, hop: ClockedHop, vals: list[int], starts: list[float],
                   fes: list[bool]) -> tuple[list[int], list[float], list[bool], float]:
        trim: Trim = node.trim  # type: ignore[attr-defined]
        raw_t = self.bit_period(node)
        # The SOF that wakes the node is measured (the line was quiet before the exchange), in Timer0
        # counts of the node's own oscillator: the dither does not enter.
        if vals and vals[0] == SOF and not fes[0] and self.trim:
            clean, span = hop.sof_span(raw_t, trim.nominal, self.rng)
            if clean:
                trim.sof(span)
                raw_t = self.bit_period(node)  # acquisition moved OSCCAL before anything is forwarded
        # RX sampling and TX bits at the dithered tick: TICK_COUNTS + dither / DITHER_ONE counts on average
        own_t = raw_t * (1 + trim.dither / (DITHER_ONE * trim.tick_counts)) if self.trim else raw_t
        out_vals: list[int] = []
        out_src: list[int] = []  # index of the received byte whose arrival released each output byte
        good_before = node.s.bad
        if hop.clean(own_t) and not self.ber and not any(fes):
            got = [(v, False, starts[j] + hop.fall + (self.rng.random() * 0.25 + 9.5) * own_t)
                   for j, v in enumerate(vals)]
            fast = node_pass_frame(node, vals)
            if fast is not None:
                out_vals = fast
                last = len(vals) - 1
                out_src = [min(j + 2, last) for j in range(len(out_vals))]
        else:
            got = hop.receive(vals, starts, fes, own_t, detect_q=own_t / 4)
            sent = [(b == vals[j]) for j, (b, _, _) in enumerate(got) if j < len(vals)]
            self.corrupted += abs(len(vals) - len(got)) + sum(1 for ok in sent if not ok)
        if not out_src:
            for j, (b, fe, _) in enumerate(got):
                for ob in node.feed(b, framing_error=fe):
                    out_vals.append(ob)
                    out_src.append(j)
            if got:
                node.timeout()
        frame_good = node.s.bad == good_before
        if got:
            # firmware 1.4 times its wait by the SNAP's bytes (the hub's crystal, protocol.md 3.5)
            self._snapshot(node, got[-1][2], 1.0 if node.s.fw >= TIMED_SNAP_FW else 1 / self.node_ratio(node))
        if self.trim:
            trim.frame_end(frame_good)
        # transmit through the FIFO at the node's own rate
        ready = [got[j][2] + 0.5 * own_t for j in out_src]
        byte_t = 10 * own_t
        out_starts, hwm, lost = fifo_schedule(ready, byte_t)
        self.fifo_hwm = max(self.fifo_hwm, hwm)
        out_fes = [False] * len(out_vals)
        if lost:
            self.fifo_lost += len(lost)
            keep = [i for i in range(len(out_vals)) if i not in set(lost)]
            out_vals = [out_vals[i] for i in keep]
            out_starts = [out_starts[i] for i in keep]
            out_fes = [False] * len(out_vals)
        out: list[tuple[int, bool]] = []
        for v, fe in zip(out_vals, out_fes, strict=True):
            nv, nfe = self._noisy(v)
            out.append((nv, fe or nfe))
        return [v for v, _ in out], out_starts, [fe for _, fe in out], own_t

    def bit_period(self, node: NodeModel) -> float:
        """The node's UART bit: 4 ticks of TICK_COUNTS timer counts of 8 cycles (832 cycles at 8 MHz)."""
        return 4 * 26 * 8 / (8e6 * self.node_ratio(node))


FIFO_SIZE = 31  # a 32-entry ring buffer holds 31 bytes


def fifo_schedule(ready: list[float], byte_t: float) -> tuple[list[float], int, list[int]]:
    """When each byte starts on the wire (it waits in the FIFO for the one before it), the FIFO's
    high-water mark and the bytes lost to a full FIFO."""
    n = len(ready)
    if not n:
        return [], 0, []
    # start_j = max(ready_j, start_{j-1} + byte_t) = j*byte_t + max over i <= j of (ready_i - i*byte_t)
    acc = list(itertools.accumulate((r - j * byte_t for j, r in enumerate(ready)), max))
    starts = [a + j * byte_t for j, a in enumerate(acc)]
    hwm = 0
    lost: list[int] = []
    for j, r in enumerate(ready):
        waiting = j + 1 - bisect.bisect_right(starts, r)
        if waiting > hwm:
            hwm = waiting
        if waiting > FIFO_SIZE:
            lost.append(j)
    return starts, hwm, lost


class ClockedHop:
    """One hop: a sender at bit period send_t, a coupler delaying rising edges by rise and falling
    edges by fall (seconds), and a receiver that samples as the node firmware does: it sees the start
    bit's falling edge at its next tick (a quarter bit, its phase free-running), confirms it half a bit
    later and samples every bit period from there; mid stop bit it looks for the next start bit."""

    def __init__(self, send_t: float, rise: float, fall: float, rng: random.Random) -> None:
        self.send_t = send_t
        self.rise = rise
        self.fall = fall
        self.rng = rng

    def clean(self, recv_t: float) -> bool:
        """Every byte, whatever its bits and the receiver's tick phase, is sampled inside the right bit."""
        ts, sk = self.send_t, self.rise - self.fall
        for i in range(1, 10):
            if (i + 0.5) * recv_t < i * ts + max(sk, 0.0):
                return False
        for i in range(0, 9):
            if (i + 0.75) * recv_t >= (i + 1) * ts + min(sk, 0.0):
                return False
        # the stop bit sampled before the next start bit (which is then found at the receiver's next tick,
        # as the uniform tick phase assumes)
        return 9.75 * recv_t < 10 * ts

    def sof_span(self, recv_t: float, nominal: int, rng: random.Random) -> tuple[bool, int]:
        """What the firmware measures on a SOF: 12 bit times in its Timer0 counts (nominal counts per
        12 own bit periods), each of the four edge times read to about a count; and whether the edge
        pattern passed its check (rising edges 2, 5, 7 bits and falling edges 2, 5 bits apart within 1/8
        bit of the measured period, each falling edge between its two rising neighbours)."""
        ratio = self.send_t / recv_t
        if abs(ratio - 1) > 0.25 or abs(self.rise - self.fall) > 0.75 * self.send_t:
            return False, 0
        span = nominal * ratio + sum(rng.uniform(-1.0, 1.0) for _ in range(4))
        return True, round(span)

    def _level(self, bits: list[list[int]], starts: list[float], j: int, x: float) -> int:
        """The line's level at the receiver at time x, looking at byte j and the next one."""
        level = 1
        for jj in (j, j + 1):
            if jj >= len(bits):
                break
            t0 = starts[jj]
            if x < t0 + self.fall:
                break
            b = bits[jj]
            prev = 1
            level = 1
            for k in range(11):
                v = b[k] if k < 10 else 1
                if v != prev:
                    at = t0 + k * self.send_t + (self.rise if v else self.fall)
                    if at > x:
                        break
                level = v
                prev = v
        return level

    def receive(self, vals: list[int], starts: list[float], fes: list[bool], recv_t: float,
                detect_q: float) -> list[tuple[int, bool, float]]:
        """(byte, framing error, time of the stop-bit sample) for each byte the receiver takes."""
        bits = [[0] + [(v >> b) & 1 for b in range(8)] + [0 if fe else 1] for v, fe in zip(vals, fes, strict=True)]
        out: list[tuple[int, bool, float]] = []
        free_at = float("-inf")
        for j in range(len(vals)):
            arr = starts[j] + self.fall
            det = max(arr + self.rng.random() * detect_q, free_at)
            if self._level(bits, starts, j, det + 0.5 * recv_t):
                free_at = det + 0.5 * recv_t  # a glitch to the receiver: the byte is lost
                continue
            v = 0
            for i in range(1, 9):
                if self._level(bits, starts, j, det + (i + 0.5) * recv_t):
                    v |= 1 << (i - 1)
            s9 = det + 9.5 * recv_t
            stop = self._level(bits, starts, j, s9)
            out.append((v, not stop, s9))
            free_at = s9 + detect_q
        return out


def node_pass_frame(node: NodeModel, vals: list[int]) -> list[int] | None:
    """A good SCAN or ENUMERATE frame through a node, as feeding it byte by byte does (the tests check
    the two agree), in one step: the clocked model ring's fast path. None: not such a frame."""
    n = len(vals)
    if n < 9 or vals[0] != SOF or not node._hunting:
        return None
    cmd, cnt = vals[1], vals[4]
    if cmd not in (CMD_SCAN, CMD_ENUMERATE) or cnt > MAX_SLOTS or n != 9 + SLOT_SIZE * cnt:
        return None
    body = bytes(vals[1:])
    if binascii.crc_hqx(body, 0xFFFF) != 0:
        return None
    s = node.s
    out = bytearray(vals[: n - 2])
    end = 5 + SLOT_SIZE * cnt
    if cmd == CMD_ENUMERATE:
        a = min(vals[3] + 1, 255)
        out[3] = a
        s.address = a if a <= MAX_SLOTS else 0
    else:
        claimed = -1
        for i in range(cnt):
            if vals[5 + SLOT_SIZE * i] == 0:
                claimed = i
                break
        if claimed >= 0:
            out[5 + SLOT_SIZE * claimed: 5 + SLOT_SIZE * (claimed + 1)] = node.record(claimed)
            s.address = claimed + 1
            s.flags &= ~LATCHED_FLAGS
            s.scans = (s.scans + 1) & 0xFF
    out[end] = min(vals[end] + 1, 255)
    crc = binascii.crc_hqx(bytes(out[1:]), 0xFFFF)
    out += bytes([crc >> 8, crc & 0xFF])
    return list(out)


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
        self._stop = 1

    def stop_bits(self, n: int) -> None:
        """The hub's ring driver sends a SNAP with two stop bits (protocol.md 3.5): passed on to the engine."""
        self._stop = n

    def write(self, buf) -> int:
        data = bytes(buf)
        ex = self.engine.exchange(data) if self._stop == 1 else self.engine.exchange(data, stop_bits=self._stop)
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


class ReplayRing:
    """An n-pack answer computed once by this model ring, then replayed with each request's SEQ and a fresh
    CRC: the same bytes a real ring would return, fast enough for the heap tests and tools/mpy/heap_matrix.py
    (which run the hub for many cycles, where simulating every node each time would dominate)."""

    def __init__(self, n: int) -> None:
        model = ModelRing(n, mv=[3300 + i for i in range(n)], temp=[200 + i for i in range(n)])
        self.enum = model.exchange(codec.encode(codec.CMD_ENUMERATE, 0, 0, 0)).rx
        model.exchange(codec.encode(codec.CMD_SCAN, 0, 0, n))
        self.scan = bytes(model.exchange(codec.encode(codec.CMD_SCAN, 0, 0, n)).rx)
        self.n = n

    def exchange(self, tx: bytes) -> Exchange:
        ans = bytearray(self.enum if tx[1] == codec.CMD_ENUMERATE else self.scan)
        ans[2] = tx[2]
        crc = codec.crc16(ans, 1, len(ans) - 2)
        ans[-2:] = bytes([crc >> 8, crc & 0xFF])
        return Exchange(bytes(ans), 0.75)
