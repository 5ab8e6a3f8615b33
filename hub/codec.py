# Ring frames <-> records, as docs/protocol.md specifies. Pure functions: no I/O, no hardware.
#
# Runs unchanged on MicroPython (the board) and CPython (host tools and tests). The hot path
# (build a SCAN into a preallocated buffer, check the answer, read its records) allocates nothing:
# records are read straight out of the receive buffer with index arithmetic.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


SOF = const(0xA5)
CMD_ENUMERATE = const(0x01)
CMD_SCAN = const(0x02)
CMD_INFO = const(0x03)
CMD_READ = const(0x04)
CMD_WRITE = const(0x05)
CMD_IDENTIFY = const(0x06)
CMD_CLOCK = const(0x07)  # firmware 1.1: the node's clock trim (docs/protocol.md 3.4)
CMD_SNAP = const(0x08)  # protocol 1.1 (firmware 1.2): every node samples at one instant (3.5)
CMD_SNAPREAD = const(0x09)  # protocol 1.1: the snapshot, in the slot of each node's address (3.5)
SNAP_TICK_HZ = const(38400)  # SNAP's DELAY counts 1/38400 s; HOP counts 1/256 of that
# protocol 1.3 (firmware 1.4, docs/protocol.md 3.5): the hub sends a SNAP with two stop bits (11 bit times,
# 44 ticks, a byte) and 8 slots: SOF to last byte 72 * 44 ticks (83 ms), the crystal's time that every node
# times its own clock by. Each node adds its hop (HOP and its own deviation) to ELAPSED (u24, 1/256 tick; the
# hub sends 128, so that the nodes' truncation to whole ticks rounds).
SNAP_STOP_BITS = const(2)
SNAP_CNT = const(8)
SNAP_ELAPSED0 = const(128)
SNAP_MAX_DELAY = const(16384)  # ticks (~0.43 s): beyond it a node's arithmetic overflows (3.5)
MAX_SLOTS = const(64)
SLOT_SIZE = const(8)
HEADER_SIZE = const(5)  # SOF CMD SEQ ADDR CNT
OVERHEAD = const(9)  # header + NODES STATUS CRC(2)
MAX_FRAME = const(9 + 8 * 64)
STATUS_DONE = const(0x80)
FAULT_MASK = const(0x7F)
FAULT_NO_ADDRESS = const(127)
TEMP_NONE = const(-32768)

# SCAN record flags
FLAG_SENSOR_FAULT = const(0x01)
FLAG_NOT_CALIBRATED = const(0x02)
FLAG_RESET_POWER = const(0x04)
FLAG_RESET_BROWNOUT = const(0x08)
FLAG_RESET_WATCHDOG = const(0x10)
FLAG_RX_ERROR = const(0x20)
FLAG_VOLTAGE_FAULT = const(0x40)
FLAG_CLOCK_FAULT = const(0x80)
FLAG_NAMES = (
    "sensor_fault",
    "not_calibrated",
    "reset_power",
    "reset_brownout",
    "reset_watchdog",
    "rx_error",
    "voltage_fault",
    "clock_fault",
)

# Check results. 0 is a good frame; the names are the ones docs/protocol.md and the vectors use.
OK = const(0)
ERR_BAD_SOF = const(1)
ERR_TRUNCATED = const(2)
ERR_TOO_MANY_SLOTS = const(3)
ERR_BAD_LENGTH = const(4)
ERR_BAD_CRC = const(5)
ERR_UNKNOWN_COMMAND = const(6)
ERR_RING_FAULT = const(7)
ERR_INCONSISTENT = const(8)
ERR_SLOT_OVERFLOW = const(9)
ERR_MISMATCH = const(10)
ERR_TIMEOUT = const(11)
ERROR_NAMES = (
    "ok",
    "bad_sof",
    "truncated",
    "too_many_slots",
    "bad_length",
    "bad_crc",
    "unknown_command",
    "ring_fault",
    "inconsistent",
    "slot_overflow",
    "mismatch",
    "timeout",
)


def _make_table():
    t = bytearray(512)
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        t[2 * i] = c >> 8
        t[2 * i + 1] = c & 0xFF
    return bytes(t)


_T = _make_table()
del _make_table  # needed once: its bytecode is heap


def crc16(buf, start=0, end=None, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of buf[start:end], table driven, no allocation."""
    if end is None:
        end = len(buf)
    t = _T
    for i in range(start, end):
        j = ((crc >> 8) ^ buf[i]) << 1
        crc = (((crc << 8) & 0xFF00) ^ (t[j] << 8) ^ t[j + 1]) & 0xFFFF
    return crc


def frame_len(cnt):
    return OVERHEAD + SLOT_SIZE * cnt


def build(buf, cmd, seq, addr, cnt, payload=None):
    """Write a request frame into buf (a bytearray of at least frame_len(cnt)); return its length.

    The payload slots are zero unless payload (cnt*8 bytes) is given."""
    if cnt > MAX_SLOTS:
        raise ValueError("too many slots")
    n = OVERHEAD + SLOT_SIZE * cnt
    buf[0] = SOF
    buf[1] = cmd
    buf[2] = seq & 0xFF
    buf[3] = addr
    buf[4] = cnt
    end = n - 4
    if payload is None:
        for i in range(HEADER_SIZE, end):
            buf[i] = 0
    else:
        if len(payload) != end - HEADER_SIZE:
            raise ValueError("payload must be cnt*8 bytes")
        buf[HEADER_SIZE:end] = payload
    buf[end] = 0  # NODES
    buf[end + 1] = 0  # STATUS
    crc = crc16(buf, 1, n - 2)
    buf[n - 2] = crc >> 8
    buf[n - 1] = crc & 0xFF
    return n


# -- reading a received frame in place ------------------------------------------------------


def u16(buf, o):
    return buf[o] | (buf[o + 1] << 8)


def i16(buf, o):
    v = buf[o] | (buf[o + 1] << 8)
    return v - 0x10000 if v & 0x8000 else v


def nodes_of(buf):
    return buf[HEADER_SIZE + SLOT_SIZE * buf[4]]


def status_of(buf):
    return buf[HEADER_SIZE + SLOT_SIZE * buf[4] + 1]


def fault_of(buf):
    return status_of(buf) & FAULT_MASK


def done_of(buf):
    return bool(status_of(buf) & STATUS_DONE)


def slot(i):
    """Offset of slot i (0-based) in a frame."""
    return HEADER_SIZE + SLOT_SIZE * i


def check(buf, n):
    """Validate the frame in buf[0:n]; return OK or an ERR_* code (the order of docs/protocol.md §4)."""
    if n < 1 or buf[0] != SOF:
        return ERR_BAD_SOF
    if n < HEADER_SIZE:
        return ERR_TRUNCATED
    cnt = buf[4]
    if cnt > MAX_SLOTS:
        return ERR_TOO_MANY_SLOTS
    want = OVERHEAD + SLOT_SIZE * cnt
    if n < want:
        return ERR_TRUNCATED
    if n > want:
        return ERR_BAD_LENGTH
    if crc16(buf, 1, n) != 0:
        return ERR_BAD_CRC
    cmd = buf[1]
    if cmd < CMD_ENUMERATE or cmd > CMD_SNAPREAD:
        return ERR_UNKNOWN_COMMAND
    end = HEADER_SIZE + SLOT_SIZE * cnt
    nodes = buf[end]
    if buf[end + 1] & FAULT_MASK:
        return ERR_RING_FAULT
    if cmd == CMD_ENUMERATE:
        if buf[3] != nodes:
            return ERR_INCONSISTENT
    elif cmd == CMD_SCAN:
        if nodes > cnt:
            return ERR_SLOT_OVERFLOW
        filled = 0
        empty = False
        o = HEADER_SIZE
        for i in range(cnt):
            a = buf[o]
            if a == 0:
                empty = True
            elif empty or a != i + 1:
                return ERR_INCONSISTENT
            else:
                filled += 1
            o += SLOT_SIZE
        if filled != nodes:
            return ERR_INCONSISTENT
    elif cmd == CMD_SNAPREAD:
        # slot i is position i+1's; empty slots may be anywhere (positions without a snapshot)
        if nodes > cnt:
            return ERR_SLOT_OVERFLOW
        filled = 0
        o = HEADER_SIZE
        for i in range(cnt):
            a = buf[o]
            if a:
                if a != i + 1:
                    return ERR_INCONSISTENT
                filled += 1
            o += SLOT_SIZE
        if filled > nodes:
            return ERR_INCONSISTENT
    return OK


# SCAN record fields, read from the slot at offset o
def rec_addr(buf, o):
    return buf[o]


def rec_flags(buf, o):
    return buf[o + 1]


def rec_mv(buf, o):
    return buf[o + 2] | (buf[o + 3] << 8)


def rec_temp(buf, o):
    return i16(buf, o + 4)


def rec_bad(buf, o):
    return buf[o + 6]


def rec_scans(buf, o):
    return buf[o + 7]  # SNAPREAD: the SEQ of the SNAP the values were sampled for


def snap_elapsed(buf):
    """A SNAP's ELAPSED as it came back: 1/256 tick, SNAP_ELAPSED0 plus every node's hop."""
    o = HEADER_SIZE + 5
    return buf[o] | buf[o + 1] << 8 | buf[o + 2] << 16


def build_snap(buf, seq, delay, hop, cnt=SNAP_CNT):
    """A SNAP request (docs/protocol.md 3.5) in buf: every node samples `delay` ticks (1/38400 s) after the
    frame ended at node 1; a node waits delay - ELAPSED/256 ticks, ELAPSED being what the hops before it
    added (hop each, corrected for their clocks). It is sent with two stop bits (SNAP_STOP_BITS). Returns its
    length."""
    n = build(buf, CMD_SNAP, seq, 0, cnt)
    o = HEADER_SIZE
    buf[o] = delay & 0xFF
    buf[o + 1] = (delay >> 8) & 0xFF
    buf[o + 2] = hop & 0xFF
    buf[o + 3] = (hop >> 8) & 0xFF
    buf[o + 5] = SNAP_ELAPSED0
    crc = crc16(buf, 1, n - 2)
    buf[n - 2] = crc >> 8
    buf[n - 1] = crc & 0xFF
    return n


def __getattr__(name):
    """The allocating helpers for tools and tests (decode, encode, FrameError, settings_pack, flag_names,
    CMD_NAMES, SENSOR_NAMES, SETTINGS_CALIBRATED) live in hub/frames.py: the hub never calls them, so a
    board does not carry them in its heap. codec.decode(...) still works everywhere (loaded on first use)."""
    from hub import frames

    try:
        return getattr(frames, name)
    except AttributeError:
        raise AttributeError("module 'hub.codec' has no attribute '%s'" % name) from None
