"""Reference model of one ring node, byte for byte as docs/protocol.md says.

This is the pure-Python node the simulator uses when simavr is not installed, and the model the
test vectors are generated from (tools/gen_vectors.py). It is deliberately written as the same
streaming state machine the firmware runs (node_fw/src/protocol.c): one received byte in, zero or more
transmitted bytes out. Firmware 1.3 (protocol 1.2) forwards every byte as it arrives and reports a bad
frame in the next frame's FAULT (§4); a node given an older firmware version forwards as those did, with
a 2-byte lag and FAULT in the bad frame itself, so that mixed rings can be modelled.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SOF = 0xA5
CMD_ENUMERATE = 0x01
CMD_SCAN = 0x02
CMD_INFO = 0x03
CMD_READ = 0x04
CMD_WRITE = 0x05
CMD_IDENTIFY = 0x06
CMD_CLOCK = 0x07
CMD_SNAP = 0x08  # protocol 1.1: every node samples at one instant (docs/protocol.md 3.5)
CMD_SNAPREAD = 0x09  # protocol 1.1: the snapshot, in the slot of each node's address
MAX_SLOTS = 64
SLOT_SIZE = 8
LAG = 0  # protocol 1.2; firmware before 1.3: 2 (LEGACY_LAG)
LEGACY_LAG = 2
FAULT_NO_ADDRESS = 127

FLAG_SENSOR_FAULT = 0x01
FLAG_NOT_CALIBRATED = 0x02
FLAG_RESET_POWER = 0x04
FLAG_RESET_BROWNOUT = 0x08
FLAG_RESET_WATCHDOG = 0x10
FLAG_RX_ERROR = 0x20
FLAG_VOLTAGE_FAULT = 0x40
FLAG_CLOCK_FAULT = 0x80
LATCHED_FLAGS = FLAG_RESET_POWER | FLAG_RESET_BROWNOUT | FLAG_RESET_WATCHDOG | FLAG_RX_ERROR

SETTINGS_CALIBRATED = 0x01
TEMP_NONE = -32768
FW_VERSION = (1, 4)
ZERO_LAG_FW = (1, 3)  # the first firmware that forwards without lag (protocol 1.2)
TIMED_SNAP_FW = (1, 4)  # the first that times a SNAP by the hub's crystal and adds to ELAPSED (protocol 1.3)
SNAP_CNT = 8  # protocol 1.3: a SNAP's slots (its length is what a node times its clock by)

# NodeState.snap (node_fw/src/protocol.h)
SNAP_NONE = 0
SNAP_REQUESTED = 1  # a good SNAP ended: sample snap_wait ticks (1/38400 s) later
SNAP_WAITING = 2
SNAP_MEASURING = 3
SNAP_READY = 4  # the snapshot's values are stored; SNAPREAD reports them
SNAP_TICK_S = 1 / 38400  # the unit of SNAP's DELAY (HOP is in 1/256 of it)


def crc16_update(crc: int, byte: int) -> int:
    crc ^= byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    for b in data:
        crc = crc16_update(crc, b)
    return crc


@dataclass
class Settings:
    vref: int = 11000  # bandgap in 0.1 mV
    temp_offset: int = 0  # 0.1 degC
    sensor: int = 0  # 0 internal, 1 TMP36, 2 NTC
    flags: int = 0  # bit 0 CALIBRATED
    reserved: int = 0

    def pack(self) -> bytes:
        return struct.pack("<HhBBH", self.vref, self.temp_offset, self.sensor, self.flags, self.reserved)

    @classmethod
    def unpack(cls, raw: bytes) -> Settings:
        return cls(*struct.unpack("<HhBBH", bytes(raw)))

    def valid(self) -> bool:
        return (
            9000 <= self.vref <= 13000
            and -500 <= self.temp_offset <= 500
            and 0 <= self.sensor <= 2
            and self.flags & ~SETTINGS_CALIBRATED == 0
            and self.reserved == 0
        )


@dataclass
class ClockState:
    """What the CLOCK record reports (docs/protocol.md 3.4; node_fw/src/trim.h)."""

    osccal: int = 0x48
    osccal_reset: int = 0x48
    state: int = 0
    err01: int = 0  # the last clean SOF: own clock against upstream, 0.1 %
    clean: int = 0
    steps: int = 0
    ee_writes: int = 0
    ee_value: int = 0xFF

    def pack(self) -> bytes:
        return struct.pack("<BBBbBBBB", self.osccal, self.osccal_reset, self.state, self.err01, self.clean & 0xFF,
                           self.steps & 0xFF, self.ee_writes & 0xFF, self.ee_value)


@dataclass
class NodeState:
    address: int = 0
    mv: int = 3300
    temp: int = 250  # 0.1 degC
    flags: int = FLAG_RESET_POWER | FLAG_NOT_CALIBRATED
    bad: int = 0
    scans: int = 0
    settings: Settings = field(default_factory=Settings)
    fw: tuple[int, int] = FW_VERSION
    reset_cause: int = 0x01
    uptime: int = 0
    identify: bool = False
    clock: ClockState = field(default_factory=ClockState)
    # the bank snapshot (docs/protocol.md 3.5)
    snap: int = SNAP_NONE
    snap_seq: int = 0
    snap_wait: int = 0
    snap_flags: int = 0
    snap_mv: int = 0
    snap_temp: int = 0
    snap_bad: int = 0
    fault: int = 0  # firmware 1.3: the last frame was bad here; FAULT for the next frame (docs/protocol.md §4)
    snap_dev: int = 0  # firmware 1.4: this node's hop against HOP, 1/256 tick, as its last SNAP timed it (3.5)


class NodeModel:
    """One node: feed() it received bytes, it returns the bytes it transmits."""

    def __init__(self, state: NodeState | None = None) -> None:
        self.s = state if state is not None else NodeState()
        self._hunting = True
        self._pos = 0
        self._hold: list[int] = []

    # -- measurements, set by the scenario -------------------------------------------------
    def record(self, slot_index: int) -> bytes:
        s = self.s
        return struct.pack(
            "<BBHhBB", slot_index + 1, s.flags, s.mv & 0xFFFF, s.temp, s.bad & 0xFF, s.scans & 0xFF
        )

    def snap_record(self, slot_index: int) -> bytes:
        s = self.s
        return struct.pack("<BBHhBB", slot_index + 1, s.snap_flags, s.snap_mv & 0xFFFF, s.snap_temp,
                           s.snap_bad & 0xFF, s.snap_seq & 0xFF)

    def take_snapshot(self) -> bool:
        """The sample instant has come and the measurement finished (the firmware's main loop): the values
        measured now become the snapshot. False if no snapshot was requested."""
        s = self.s
        if s.snap not in (SNAP_REQUESTED, SNAP_WAITING, SNAP_MEASURING):
            return False
        s.snap_flags, s.snap_mv, s.snap_temp, s.snap_bad = s.flags, s.mv, s.temp, s.bad
        s.snap = SNAP_READY
        return True

    def info_record(self) -> bytes:
        s = self.s
        return struct.pack("<BBBBI", s.fw[0], s.fw[1], s.reset_cause, s.bad & 0xFF, s.uptime)

    # -- the receive state machine ---------------------------------------------------------
    def reset_link(self) -> None:
        self._hunting = True
        self._hold = []

    def _error(self) -> None:
        s = self.s
        s.bad = (s.bad + 1) & 0xFF
        s.flags |= FLAG_RX_ERROR
        if s.fw >= ZERO_LAG_FW:
            s.fault = s.address if s.address else FAULT_NO_ADDRESS

    def timeout(self) -> None:
        """The line went silent for 3 byte times."""
        if not self._hunting:
            self._error()
            self.reset_link()

    def _push(self, byte: int, out: list[int]) -> None:
        self._hold.append(byte)
        if len(self._hold) > self._lag:
            self._send(self._hold.pop(0), out)

    def _send(self, byte: int, out: list[int]) -> None:
        if self._sent > 0:
            self._crc_out = crc16_update(self._crc_out, byte)
        self._sent += 1
        out.append(byte)

    def feed(self, byte: int, framing_error: bool = False) -> bytes:
        out: list[int] = []
        if self._hunting:
            if byte != SOF:
                return b""
            self._hunting = False
            self._lag = LAG if self.s.fw >= ZERO_LAG_FW else LEGACY_LAG
            self._pos = 0
            self._crc_in = 0xFFFF
            self._crc_out = 0xFFFF
            self._sent = 0
            self._hold = []
            self._framing = False
            self._claimed = -1
            self._record = b""
            self._payload = bytearray()
            self._carry = 0
            self._push(byte, out)
            self._pos = 1
            return bytes(out)

        pos = self._pos
        self._pos += 1
        self._crc_in = crc16_update(self._crc_in, byte)
        self._framing |= framing_error
        s = self.s
        if pos == 1:
            self._cmd = byte
            if byte in (CMD_SNAP, CMD_SNAPREAD) and s.fw < (1, 2):
                self._cmd = -1  # firmware before 1.2: an unknown command, forwarded untouched
        elif pos == 2:
            self._seq = byte
        elif pos == 3:
            self._addr = byte
            if self._cmd == CMD_ENUMERATE:
                byte = min(byte + 1, 255)
                self._new_addr = byte if byte <= MAX_SLOTS else 0
        elif pos == 4:
            self._cnt = byte
            if byte > MAX_SLOTS:
                self._error()
                self.reset_link()
                return bytes(out)
            self._end = 5 + SLOT_SIZE * byte  # position of NODES
            if self._cmd == CMD_SNAPREAD and s.snap == SNAP_READY and s.address:
                # the slot is the node's address; without a snapshot the node leaves its slot empty
                self._claimed = s.address - 1
                self._record = self.snap_record(self._claimed)
        elif pos < self._end:
            index, offset = divmod(pos - 5, SLOT_SIZE)
            mine = s.address != 0 and self._addr == s.address
            if self._cmd == CMD_SCAN and offset == 0 and self._claimed < 0 and byte == 0:
                self._claimed = index
                self._record = self.record(index)
            if index == self._claimed:
                byte = self._record[offset]
            elif self._cmd in (CMD_INFO, CMD_READ, CMD_CLOCK) and mine and index == 0:
                rec = (self.info_record() if self._cmd == CMD_INFO else s.settings.pack() if self._cmd == CMD_READ
                       else s.clock.pack())
                byte = rec[offset]
            elif (self._cmd == CMD_WRITE and mine or self._cmd == CMD_SNAP) and index == 0:
                self._payload.append(byte)  # WRITE's settings, SNAP's timing (as received)
                if self._cmd == CMD_SNAP and offset >= 5 and s.fw >= TIMED_SNAP_FW:
                    # ELAPSED (u24, offsets 5-7): the node adds its hop, HOP plus its deviation, low byte first
                    add = (self._payload[2] | self._payload[3] << 8) + s.snap_dev & 0xFFFF
                    t = byte + self._carry + (add & 0xFF if offset == 5 else add >> 8 if offset == 6 else 0)
                    byte, self._carry = t & 0xFF, t >> 8
        elif pos == self._end:
            self._nodes_in = byte
            byte = min(byte + 1, 255)  # NODES
        elif self._lag == LEGACY_LAG:
            if pos == self._end + 3:  # CRC low byte: the frame is complete (held: STATUS, CRC high)
                self._finish(out)
                return bytes(out)
        elif pos == self._end + 1:  # STATUS: FAULT of the frame before; DONE decided before the CRC is in
            if byte & 0x7F == 0:
                byte |= s.fault
            s.fault = 0  # reported, or a node upstream reported first (its fault explains this one's)
            self._done = self._will_do()
            if self._done:
                byte |= 0x80
            self._send(byte, out)
            self._delta = self._crc_in ^ self._crc_out
            return bytes(out)
        else:  # the CRC: as received, corrected by what this node changed, so an error upstream stays in it
            byte ^= (self._delta >> 8) if pos == self._end + 2 else (self._delta & 0xFF)
            if pos == self._end + 3:
                good = self._crc_in == 0 and not self._framing
                if not good and self._crc_in == 0:
                    byte ^= 0xFF  # a framing error in a frame whose bytes check: the hub must see it too
                self._send(byte, out)
                self._apply(good)
                self._hunting = True
                return bytes(out)
        self._push(byte, out)
        return bytes(out)

    def _will_do(self) -> bool:
        """Whether this node executes the command (DONE), decided as STATUS passes (firmware 1.3)."""
        s = self.s
        if self._cmd == CMD_SNAP:
            return self._cnt == SNAP_CNT if s.fw >= TIMED_SNAP_FW else len(self._payload) >= 4
        if not (s.address != 0 and self._addr == s.address):
            return False
        if self._cmd in (CMD_INFO, CMD_READ, CMD_CLOCK):
            return self._cnt >= 1
        if self._cmd == CMD_WRITE:
            return len(self._payload) == SLOT_SIZE and Settings.unpack(self._payload).valid()
        return self._cmd == CMD_IDENTIFY

    def _apply(self, good: bool) -> None:
        """The frame has ended at a firmware 1.3 node: act on it if its CRC was good here."""
        s = self.s
        if not good:
            self._error()
            return
        if self._cmd == CMD_ENUMERATE:
            s.address = self._new_addr
        elif self._cmd == CMD_SCAN:
            if self._claimed >= 0:
                s.address = self._claimed + 1
                s.flags &= ~LATCHED_FLAGS
                s.scans = (s.scans + 1) & 0xFF
        elif self._done:
            if self._cmd == CMD_SNAP:
                delay, hop = struct.unpack_from("<HH", self._payload)
                if s.fw >= TIMED_SNAP_FW:  # ELAPSED as received, in whole ticks
                    s.snap_wait = max(delay - (self._payload[6] | self._payload[7] << 8), 0)
                else:
                    s.snap_wait = max(delay - ((self._nodes_in * hop) >> 8), 0)
                s.snap_seq = self._seq
                s.snap = SNAP_REQUESTED
            elif self._cmd == CMD_IDENTIFY:
                s.identify = True
            elif self._cmd == CMD_WRITE:
                s.settings = Settings.unpack(self._payload)
                if s.settings.flags & SETTINGS_CALIBRATED:
                    s.flags &= ~FLAG_NOT_CALIBRATED
                else:
                    s.flags |= FLAG_NOT_CALIBRATED

    def _finish(self, out: list[int]) -> None:
        """The frame has ended at a node before firmware 1.3 (2-byte lag): STATUS and the CRC are still held."""
        s = self.s
        status = self._hold[0]
        self._hold = []
        good = self._crc_in == 0 and not self._framing
        done = False
        if not good:
            self._error()
            if status & 0x7F == 0:
                status |= s.address if s.address else FAULT_NO_ADDRESS
        else:
            mine = s.address != 0 and self._addr == s.address
            if self._cmd == CMD_ENUMERATE:
                s.address = self._new_addr
            elif self._cmd == CMD_SCAN and self._claimed >= 0:
                s.address = self._claimed + 1
                s.flags &= ~LATCHED_FLAGS
                s.scans = (s.scans + 1) & 0xFF
            elif self._cmd == CMD_SNAP:
                if len(self._payload) >= 4:
                    delay, hop = struct.unpack_from("<HH", self._payload)
                    hops = (self._nodes_in * hop) >> 8  # the frame ended here NODES hops after node 1
                    s.snap_wait = max(delay - hops, 0)
                    s.snap_seq = self._seq
                    s.snap = SNAP_REQUESTED
                    done = True
            elif mine and self._cmd in (CMD_INFO, CMD_READ, CMD_CLOCK, CMD_IDENTIFY) and self._cnt >= (
                0 if self._cmd == CMD_IDENTIFY else 1
            ):
                done = True
                if self._cmd == CMD_IDENTIFY:
                    s.identify = True
            elif mine and self._cmd == CMD_WRITE and len(self._payload) == SLOT_SIZE:
                new = Settings.unpack(self._payload)
                if new.valid():
                    s.settings = new
                    if new.flags & SETTINGS_CALIBRATED:
                        s.flags &= ~FLAG_NOT_CALIBRATED
                    else:
                        s.flags |= FLAG_NOT_CALIBRATED
                    done = True
        if done:
            status |= 0x80
        self._send(status, out)
        crc = self._crc_out
        self._send(crc >> 8, out)
        self._send(crc & 0xFF, out)
        self._hunting = True


def make_frame(cmd: int, seq: int, addr: int, slots: bytes = b"", nodes: int = 0, status: int = 0) -> bytes:
    """Build a frame with a good CRC (used by the simulator's tests and the vector generator)."""
    if len(slots) % SLOT_SIZE:
        raise ValueError("payload must be whole 8-byte slots")
    body = bytes([cmd, seq, addr, len(slots) // SLOT_SIZE]) + bytes(slots) + bytes([nodes, status])
    crc = crc16(body)
    return bytes([SOF]) + body + bytes([crc >> 8, crc & 0xFF])


# -- the firmware's voltage measurement (node_fw/src/adc.c), written so it also works on numpy arrays ------
VBG_SAMPLES = 16  # bandgap conversions summed per reading


def bandgap_counts(vcc_mv, bandgap_mv):  # noqa: ANN001, ANN201 (int, float or numpy arrays)
    """One ADC conversion of the bandgap against Vcc (10 bits, 1024 steps over Vcc), before noise."""
    c = (bandgap_mv * 1024) // vcc_mv
    return c - (c > 1023) * (c - 1023)


def vcc_mv_from_sum(vbg_sum, vref_01mv):  # noqa: ANN001, ANN201
    """adc_vcc_mv(): the pack voltage from the sum of 16 bandgap conversions and the node's vref setting."""
    return (16384 * vref_01mv + 5 * vbg_sum) // (10 * vbg_sum)
