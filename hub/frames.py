# Whole ring frames for tools and tests (allocating; docs/protocol.md): decode a frame into a dict, encode a
# request, pack SETTINGS, name flags. The hub's own scan path never needs them (hub/codec.py reads frames in
# place), so they are kept out of hub/codec.py and off the board's heap; hub.codec gives them out under its
# own name (codec.decode, codec.FrameError, ...), loading this module on first use.
from hub.codec import (
    CMD_CLOCK,
    CMD_INFO,
    CMD_READ,
    CMD_SCAN,
    CMD_SNAP,
    CMD_SNAPREAD,
    CMD_WRITE,
    ERR_RING_FAULT,
    ERROR_NAMES,
    FAULT_MASK,
    FAULT_NO_ADDRESS,
    FLAG_NAMES,
    STATUS_DONE,
    build,
    check,
    fault_of,
    frame_len,
    i16,
    nodes_of,
    rec_mv,
    rec_temp,
    slot,
    snap_elapsed,
    status_of,
    u16,
)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


CMD_NAMES = {1: "ENUMERATE", 2: "SCAN", 3: "INFO", 4: "READ", 5: "WRITE", 6: "IDENTIFY", 7: "CLOCK", 8: "SNAP",
             9: "SNAPREAD"}
# CLOCK record state bits (firmware 1.1, docs/protocol.md 3.4)
CLOCK_LOCKED = const(0x01)
CLOCK_LIMIT = const(0x02)
CLOCK_EEPROM = const(0x04)
CLOCK_MEASURED = const(0x08)
CLOCK_OFF = const(0x10)


def encode(cmd, seq, addr, cnt, payload=None):
    """Allocating convenience form of build() for tools and tests."""
    buf = bytearray(frame_len(cnt))
    build(buf, cmd, seq, addr, cnt, payload)
    return bytes(buf)


def flag_names(flags):
    return [FLAG_NAMES[b] for b in range(8) if flags & (1 << b)]


# -- settings ------------------------------------------------------------------------------
SETTINGS_CALIBRATED = 0x01
SENSOR_NAMES = ("internal", "tmp36", "ntc")


def settings_pack(vref, temp_offset, sensor, flags):
    """Validate and pack a SETTINGS record (docs/protocol.md §3.3); raises ValueError naming the field."""
    if not 9000 <= vref <= 13000:
        raise ValueError("vref %d out of range 9000..13000 (0.1 mV)" % vref)
    if not -500 <= temp_offset <= 500:
        raise ValueError("temp_offset %d out of range -500..500 (0.1 degC)" % temp_offset)
    if not 0 <= sensor <= 2:
        raise ValueError("sensor %d out of range 0..2" % sensor)
    if flags & ~SETTINGS_CALIBRATED:
        raise ValueError("settings flags 0x%02x: only bit 0 is defined" % flags)
    t = temp_offset & 0xFFFF
    return bytes((vref & 0xFF, vref >> 8, t & 0xFF, t >> 8, sensor, flags, 0, 0))


def _record(frame, o, last):
    """A SCAN or SNAPSHOT record at offset o: the same layout but for the last byte (scans / snap)."""
    return {
        "addr": frame[o],
        "flags": frame[o + 1],
        "mv": rec_mv(frame, o),
        "temp": rec_temp(frame, o),
        "bad": frame[o + 6],
        last: frame[o + 7],
    }


def decode(frame):
    """Decode a whole frame into a dict (tools and tests; allocates). Raises FrameError."""
    n = len(frame)
    err = check(frame, n)
    if err:
        raise FrameError(err, frame)
    cnt = frame[4]
    cmd = frame[1]
    st = status_of(frame)
    d = {
        "cmd": CMD_NAMES[cmd],
        "seq": frame[2],
        "addr": frame[3],
        "cnt": cnt,
        "nodes": nodes_of(frame),
        "done": bool(st & STATUS_DONE),
        "fault": st & FAULT_MASK,
    }
    if cmd == CMD_SCAN:
        recs = []
        for i in range(cnt):
            o = slot(i)
            if frame[o] == 0:
                break
            recs.append(_record(frame, o, "scans"))
        d["records"] = recs
    elif cmd == CMD_SNAPREAD:
        recs = []
        missing = []
        for i in range(cnt):
            o = slot(i)
            if frame[o] == 0:
                missing.append(i + 1)
                continue
            recs.append(_record(frame, o, "snap"))
        d["records"] = recs
        d["missing"] = missing
    elif cmd == CMD_SNAP and cnt >= 1:
        o = slot(0)
        d["snap"] = {"delay": u16(frame, o), "hop": u16(frame, o + 2), "elapsed": snap_elapsed(frame)}
    elif cmd == CMD_INFO and cnt == 1 and d["done"]:
        o = slot(0)
        d["info"] = {
            "fw_major": frame[o],
            "fw_minor": frame[o + 1],
            "reset_cause": frame[o + 2],
            "bad": frame[o + 3],
            "uptime": u16(frame, o + 4) | (u16(frame, o + 6) << 16),
        }
    elif cmd == CMD_CLOCK and cnt == 1 and d["done"]:
        o = slot(0)
        e = frame[o + 3]
        d["clock"] = {
            "osccal": frame[o],
            "osccal_reset": frame[o + 1],
            "state": frame[o + 2],
            "error_01pct": e - 256 if e & 0x80 else e,
            "clean": frame[o + 4],
            "steps": frame[o + 5],
            "eeprom_writes": frame[o + 6],
            "eeprom_value": frame[o + 7],
        }
    elif (cmd == CMD_READ or cmd == CMD_WRITE) and cnt == 1:
        o = slot(0)
        d["settings"] = {
            "vref": u16(frame, o),
            "temp_offset": i16(frame, o + 2),
            "sensor": frame[o + 4],
            "flags": frame[o + 5],
            "reserved": u16(frame, o + 6),
        }
    return d


class FrameError(Exception):
    """A frame that failed check(); .code is an ERR_* value, .name its spec name."""

    def __init__(self, code, frame=None, detail=""):
        self.code = code
        self.name = ERROR_NAMES[code]
        self.fault = 0
        if code == ERR_RING_FAULT and frame is not None:
            self.fault = fault_of(frame)
        msg = self.name
        if self.fault:
            msg += " (corruption on the hop into node %d)" % self.fault if self.fault != FAULT_NO_ADDRESS else (
                " (corruption seen by a node without address)"
            )
        if detail:
            msg += ": " + detail
        super().__init__(msg)
