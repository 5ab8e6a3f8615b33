#!/usr/bin/env python3
"""Write tests/vectors/frames.json from the reference node model and docs/protocol.md's rules.

Run after a protocol change, review the diff, and commit it together with docs/protocol.md.
The hub expectations here are computed by a small decoder written straight from §4 of the spec,
independent of hub/codec.py (which the tests check against this file).
"""

from __future__ import annotations

import copy
import json
import struct
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from packmon.sim.node_model import (  # noqa: E402
    CMD_CLOCK,
    CMD_ENUMERATE,
    CMD_IDENTIFY,
    CMD_INFO,
    CMD_READ,
    CMD_SCAN,
    CMD_SNAP,
    CMD_SNAPREAD,
    CMD_WRITE,
    MAX_SLOTS,
    SNAP_READY,
    SNAP_WAITING,
    ClockState,
    NodeModel,
    NodeState,
    Settings,
    crc16,
    make_frame,
)

TEMP_FAULT = -32768
NAMES = {1: "ENUMERATE", 2: "SCAN", 3: "INFO", 4: "READ", 5: "WRITE", 6: "IDENTIFY", 7: "CLOCK", 8: "SNAP",
         9: "SNAPREAD"}


def ref_decode(raw: bytes) -> dict:
    skip = 0
    while skip < len(raw) and raw[skip] != 0xA5:
        skip += 1
    res: dict = {"skip": skip} if skip else {}
    f = raw[skip:]

    def err(name: str) -> dict:
        return {"ok": False, "error": name, **res}

    if not f or f[0] != 0xA5:
        return err("bad_sof")
    if len(f) < 5:
        return err("truncated")
    cnt = f[4]
    if cnt > MAX_SLOTS:
        return err("too_many_slots")
    n = 9 + 8 * cnt
    if len(f) < n:
        return err("truncated")
    if len(f) > n:
        return err("bad_length")
    if crc16(f[1:]) != 0:
        return err("bad_crc")
    cmd, seq, addr = f[1], f[2], f[3]
    if cmd not in NAMES:
        return err("unknown_command")
    nodes, status = f[5 + 8 * cnt], f[6 + 8 * cnt]
    if status & 0x7F:
        return {**err("ring_fault"), "fault": status & 0x7F}
    out = {
        "ok": True,
        "cmd": NAMES[cmd],
        "seq": seq,
        "addr": addr,
        "cnt": cnt,
        "nodes": nodes,
        "done": bool(status & 0x80),
        "fault": 0,
        **res,
    }
    slots = [f[5 + 8 * i : 13 + 8 * i] for i in range(cnt)]
    if cmd == CMD_ENUMERATE and addr != nodes:
        return err("inconsistent")
    if cmd == CMD_SCAN:
        if nodes > cnt:
            return err("slot_overflow")
        recs = []
        empty_seen = False
        for i, s in enumerate(slots):
            if s[0] == 0:
                empty_seen = True
                continue
            if empty_seen or s[0] != i + 1:
                return err("inconsistent")
            a, fl, mv, t, bad, scans = struct.unpack("<BBHhBB", s)
            recs.append({"addr": a, "flags": fl, "mv": mv, "temp": t, "bad": bad, "scans": scans})
        if len(recs) != nodes:
            return err("inconsistent")
        out["records"] = recs
    elif cmd == CMD_SNAPREAD:
        # slot i belongs to the node at position i+1; an empty slot: that position has no snapshot
        if nodes > cnt:
            return err("slot_overflow")
        recs = []
        missing = []
        for i, s in enumerate(slots):
            if s[0] == 0:
                missing.append(i + 1)
                continue
            if s[0] != i + 1:
                return err("inconsistent")
            a, fl, mv, t, bad, snap = struct.unpack("<BBHhBB", s)
            recs.append({"addr": a, "flags": fl, "mv": mv, "temp": t, "bad": bad, "snap": snap})
        if len(recs) > nodes:
            return err("inconsistent")
        out["records"] = recs
        out["missing"] = missing
    elif cmd == CMD_SNAP and cnt >= 1:
        delay, hop = struct.unpack_from("<HH", slots[0])
        out["snap"] = {"delay": delay, "hop": hop, "elapsed": int.from_bytes(slots[0][5:8], "little")}
    elif cmd == CMD_INFO and cnt == 1 and out["done"]:
        a, b, rc, bad, up = struct.unpack("<BBBBI", slots[0])
        out["info"] = {"fw_major": a, "fw_minor": b, "reset_cause": rc, "bad": bad, "uptime": up}
    elif cmd == CMD_CLOCK and cnt == 1 and out["done"]:
        oc, oc0, st, e, cl, steps, ew, ev = struct.unpack("<BBBbBBBB", slots[0])
        out["clock"] = {"osccal": oc, "osccal_reset": oc0, "state": st, "error_01pct": e, "clean": cl,
                        "steps": steps, "eeprom_writes": ew, "eeprom_value": ev}
    elif cmd in (CMD_READ, CMD_WRITE) and cnt == 1:
        v, t, sensor, fl, r = struct.unpack("<HhBBH", slots[0])
        out["settings"] = {"vref": v, "temp_offset": t, "sensor": sensor, "flags": fl, "reserved": r}
    return out


def state_dict(s: NodeState) -> dict:
    d = asdict(s)
    d["fw"] = list(s.fw)
    return d


def run_node(raw: bytes, state: NodeState, timeout: bool = False, framing_at: int | None = None) -> dict:
    given = copy.deepcopy(state)
    node = NodeModel(state)
    out = bytearray()
    for i, b in enumerate(raw):
        out += node.feed(b, framing_error=(i == framing_at))
    if timeout:
        node.timeout()
    d = {"given": state_dict(given), "out": out.hex(), "after": state_dict(node.s)}
    if timeout:
        d["timeout"] = True
    if framing_at is not None:
        d["framing_error_at"] = framing_at
    return d


def flip(raw: bytes, index: int, mask: int = 0x01) -> bytes:
    b = bytearray(raw)
    b[index] ^= mask
    return bytes(b)


def rec(addr: int, flags: int, mv: int, temp: int, bad: int = 0, scans: int = 0) -> bytes:
    return struct.pack("<BBHhBB", addr, flags, mv, temp, bad, scans)


def main() -> None:
    fresh = NodeState()  # just powered on: no address, RESET_POWER | NOT_CALIBRATED
    n1 = NodeState(address=1, mv=3312, temp=251, flags=0, bad=0, scans=7,
                   settings=Settings(vref=11012, temp_offset=-15, sensor=0, flags=1))
    n2 = NodeState(address=2, mv=3298, temp=-53, flags=0x01, bad=3, scans=255,
                   settings=Settings(flags=1), uptime=86_400, reset_cause=0x08)
    n3 = NodeState(address=3, mv=4150, temp=TEMP_FAULT, flags=0x01 | 0x20, bad=1, scans=2)
    # a node whose trim is locked (0x4E, reset value 0x48, measured -0.3 %, started from EEPROM 0x4D)
    n1.clock = ClockState(osccal=0x4E, osccal_reset=0x48, state=0x01 | 0x04 | 0x08, err01=-3, clean=200,
                          steps=9, ee_writes=1, ee_value=0x4D)
    # a node whose clock is out of the trim range: OSCCAL at the top of the low range
    n4 = NodeState(address=1, mv=3350, temp=240, flags=0x80, bad=12, scans=3, settings=Settings(flags=1),
                   clock=ClockState(osccal=0x7F, osccal_reset=0x48, state=0x02 | 0x08, err01=-92, clean=14,
                                    steps=55, ee_writes=0, ee_value=0xFF))
    two = rec(1, 0, 3312, 251, 0, 7) + rec(2, 0x01, 3298, -53, 3, 255)

    frames: list[dict] = []

    def add(name: str, raw: bytes, state: NodeState, note: str = "", **kw) -> None:
        frames.append({"name": name, "note": note, "hex": raw.hex(), "hub": ref_decode(raw),
                       "node": run_node(raw, copy.deepcopy(state), **kw)})

    enum_req = make_frame(CMD_ENUMERATE, 1, 0)
    add("enumerate_request", enum_req, fresh, "hub's ENUMERATE, seq 1; a fresh node takes address 1")
    add("enumerate_after_3", make_frame(CMD_ENUMERATE, 2, 3, nodes=3), fresh,
        "ENUMERATE back from a 3-node ring: the hub learns N = 3; a 4th node would take address 4")
    add("enumerate_inconsistent", make_frame(CMD_ENUMERATE, 2, 3, nodes=2), fresh,
        "ADDR and NODES disagree")
    add("scan_request_2", make_frame(CMD_SCAN, 9, 0, bytes(16)), n1, "two empty slots; node 1 fills slot 1")
    add("scan_request_reset_node", make_frame(CMD_SCAN, 10, 0, bytes(16)), fresh,
        "a node that lost its address claims the first empty slot and reports RESET_POWER")
    add("scan_half_done", make_frame(CMD_SCAN, 9, 0, two[:8] + bytes(8), nodes=1), n2,
        "after node 1: node 2 fills slot 2 (sensor fault flag, negative temperature, scans wraps)")
    add("scan_response_2", make_frame(CMD_SCAN, 9, 0, two, nodes=2), n3,
        "complete response; a third node finds no empty slot and only counts itself")
    add("scan_sensor_fault", make_frame(CMD_SCAN, 11, 0, rec(1, 0x21, 4150, TEMP_FAULT, 1, 2), nodes=1), n1,
        "temperature -32768 means no reading; RX_ERROR latched")
    add("scan_partial", make_frame(CMD_SCAN, 12, 0, rec(1, 0, 3312, 251) + bytes(8), nodes=1), n2,
        "one of two slots filled: the bank shrank (hub must re-enumerate); node 2 fills slot 2")
    add("scan_overflow", make_frame(CMD_SCAN, 13, 0, two, nodes=3), n1,
        "more nodes than slots")
    add("scan_gap", make_frame(CMD_SCAN, 14, 0, bytes(8) + rec(2, 0, 3300, 200), nodes=1), n1,
        "a filled slot after an empty one")
    add("scan_wrong_addr", make_frame(CMD_SCAN, 15, 0, rec(2, 0, 3300, 200) + bytes(8), nodes=1), n1,
        "slot 1 claims address 2")
    add("scan_bad_crc", flip(make_frame(CMD_SCAN, 16, 0, bytes(16)), 9, 0x04), n1,
        "a bit flipped in slot 1 on the hop into node 1: node 1 fills its slot, counts the frame, and the CRC it "
        "sends still carries the error (the hub sees bad_crc); FAULT = 1 waits for the next frame")
    faulted = make_frame(CMD_SCAN, 16, 0, rec(1, 0, 3312, 251) + bytes(8), nodes=1, status=0x01)
    add("scan_ring_fault", faulted, n2, "FAULT = 1 arrives downstream with a good CRC; node 2 keeps it")
    pending = copy.deepcopy(n1)
    pending.fault, pending.bad, pending.flags = 1, 1, 0x20
    add("scan_reports_fault", make_frame(CMD_SCAN, 24, 0, bytes(16)), pending,
        "node 1 found the frame before bad: it names itself in this frame's FAULT (the hub: ring_fault, hop 1)")
    pending2 = copy.deepcopy(n2)
    pending2.fault = 2
    add("scan_fault_upstream_first", make_frame(CMD_SCAN, 25, 0, rec(1, 0, 3312, 251) + bytes(8), nodes=1,
                                                status=0x01), pending2,
        "node 2 also found the frame before bad, but node 1 reported first: node 2 drops its own report")
    add("scan_bad_crc_no_address", flip(make_frame(CMD_SCAN, 17, 0, bytes(8)), 3, 0x80), fresh,
        "corruption seen by a node without address: FAULT = 127 in the next frame; it does not take an address")
    add("scan_framing_error", make_frame(CMD_SCAN, 18, 0, bytes(8)), n1,
        "a byte arrived with a low stop bit: the frame is a fault even though its CRC checks, so the node inverts "
        "the CRC's low byte (the hub sees bad_crc) and reports FAULT = 1 in the next frame",
        framing_at=6)
    add("scan_truncated", make_frame(CMD_SCAN, 19, 0, bytes(16))[:12], n1,
        "the line goes silent mid-frame: the node counts it, drops what it holds", timeout=True)
    add("truncated_header", bytes([0xA5, 0x02, 0x01]), n1, "only three bytes", timeout=True)
    big = bytes([0xA5, CMD_SCAN, 20, 0, 65]) + bytes(8 * 65 + 2)
    body = big[1:]
    crc = crc16(body)
    add("too_many_slots", big + bytes([crc >> 8, crc & 0xFF]), n1,
        "CNT = 65: the node stops forwarding after SOF, CMD, SEQ and ADDR")
    add("unknown_command", make_frame(0x7E, 21, 0, bytes(8)), n1,
        "unknown CMD 0x7E: forwarded unchanged but for NODES and the CRC")
    add("garbage_then_enumerate", b"\x00\xff\x13" + make_frame(CMD_ENUMERATE, 22, 0), fresh,
        "line noise before SOF is discarded without counting")
    add("trailing_bytes", make_frame(CMD_ENUMERATE, 23, 1, nodes=1) + b"\x00", fresh,
        "one byte more than the header says (the hub's decoder rejects; a node ends the frame and ignores it)")
    add("info_request", make_frame(CMD_INFO, 30, 2, bytes(8)), n2, "INFO for node 2, answered by node 2")
    add("info_not_mine", make_frame(CMD_INFO, 31, 5, bytes(8)), n2, "INFO for node 5 passes node 2 untouched")
    add("read_request", make_frame(CMD_READ, 32, 1, bytes(8)), n1, "READ settings of node 1")
    new = Settings(vref=10876, temp_offset=12, sensor=1, flags=1).pack()
    add("write_request", make_frame(CMD_WRITE, 33, 1, new), n1, "WRITE calibrated settings to node 1")
    add("write_invalid", make_frame(CMD_WRITE, 34, 1, Settings(vref=20000, flags=1).pack()), n1,
        "vref out of range: not stored, no DONE")
    add("write_bad_crc", flip(make_frame(CMD_WRITE, 35, 1, new), 7, 0x10), n1,
        "a corrupted WRITE is never stored (DONE went out before the CRC was in; the hub sees bad_crc)")
    add("identify_request", make_frame(CMD_IDENTIFY, 36, 1), n1, "blink node 1's LED")
    add("clock_request", make_frame(CMD_CLOCK, 38, 1, bytes(8)), n1,
        "CLOCK for node 1 (firmware 1.1): its trim, locked, started from EEPROM")
    add("clock_not_mine", make_frame(CMD_CLOCK, 39, 2, bytes(8)), n1, "CLOCK for node 2 passes node 1 untouched")
    add("clock_out_of_range", make_frame(CMD_CLOCK, 40, 1, bytes(8)), n4,
        "a node whose clock is beyond its trim range: state LIMIT, error -9.2 %")
    add("scan_clock_fault", make_frame(CMD_SCAN, 41, 0, bytes(8)), n4,
        "the same node's SCAN record carries CLOCK_FAULT (flags bit 7)")
    # -- protocol 1.1: the bank snapshot (section 3.5; protocol 1.3: 8 slots, ELAPSED) ---------------------
    def snap_params(delay: int, hop: int, elapsed: int = 128) -> bytes:
        return struct.pack("<HHB", delay, hop, 0) + elapsed.to_bytes(3, "little") + bytes(8 * 7)

    add("snap_request", make_frame(CMD_SNAP, 50, 0, snap_params(8192, 124 * 256)), n1,
        "SNAP (8 slots, sent with two stop bits): every node samples DELAY = 8192 ticks (1/38400 s: 213 ms) after "
        "the frame ended at node 1; node 1 (ELAPSED 128: none yet, the hub's half tick for rounding) waits all "
        "of it, adds its hop (HOP 124 ticks, its deviation 0) to ELAPSED and sets DONE")
    add("snap_request_node_3", make_frame(CMD_SNAP, 50, 0, snap_params(8192, 124 * 256, 128 + 2 * 124 * 256),
                                          nodes=2, status=0x80),
        n3, "the same SNAP at the third node: ELAPSED = 2 hops, so it waits 8192 - 248 = 7944 ticks")
    add("snap_request_late", make_frame(CMD_SNAP, 51, 0, snap_params(100, 124 * 256, 128 + 3 * 124 * 256),
                                        nodes=3), n3,
        "DELAY shorter than the hops already gone: the node samples at once (wait 0)")
    fast = copy.deepcopy(n3)
    fast.snap_dev = -300
    add("snap_request_elapsed_carry", make_frame(CMD_SNAP, 52, 0, snap_params(8192, 124 * 256, 0x01FFF0),
                                                 nodes=2), fast,
        "a node whose last SNAP found its clock fast (its hop 300/256 tick short) adds 31744 - 300 to ELAPSED "
        "0x01fff0: the carry runs through all three bytes (0x027ac4); it waits 8192 - 511 = 7681 ticks")
    add("snap_request_one_slot", make_frame(CMD_SNAP, 53, 0, struct.pack("<HHI", 8192, 124 * 256, 0)), n1,
        "a SNAP as protocol 1.2 sent it (one slot, one stop bit): a node cannot time it, so it forwards it "
        "untouched, takes nothing and sets no DONE")
    add("snap_request_no_slot", make_frame(CMD_SNAP, 54, 0), n1,
        "SNAP without its parameter slot: forwarded, not taken, no DONE")
    add("snap_bad_crc", flip(make_frame(CMD_SNAP, 54, 0, snap_params(8192, 124 * 256)), 6, 0x02), n1,
        "a corrupted SNAP is never taken: the node keeps no request, the hub sees bad_crc, FAULT = 1 follows")
    snapped = copy.deepcopy(n2)
    snapped.snap, snapped.snap_seq = SNAP_READY, 50
    snapped.snap_flags, snapped.snap_mv, snapped.snap_temp, snapped.snap_bad = 0x01, 3287, -55, 3
    add("snapread_request", make_frame(CMD_SNAPREAD, 55, 0, bytes(24)), snapped,
        "SNAPREAD: node 2 holds the snapshot of SNAP 50 and fills slot 2 (its address); slots 1 and 3 stay empty")
    waiting = copy.deepcopy(n2)
    waiting.snap, waiting.snap_seq, waiting.snap_wait = SNAP_WAITING, 50, 7944
    add("snapread_not_taken_yet", make_frame(CMD_SNAPREAD, 56, 0, bytes(24)), waiting,
        "a node whose sample instant has not come (or that got no SNAP) leaves its slot empty")
    lost = copy.deepcopy(snapped)
    lost.address = 0
    add("snapread_no_address", make_frame(CMD_SNAPREAD, 57, 0, bytes(16)), lost,
        "a node without address (reset) has no slot: it fills nothing")
    mixed = (struct.pack("<BBHhBB", 1, 0, 3312, 251, 0, 50) + bytes(8)
             + struct.pack("<BBHhBB", 3, 0x20, 4150, 240, 1, 50))
    add("snapread_response_mixed", make_frame(CMD_SNAPREAD, 58, 0, mixed, nodes=3), n1,
        "back from 3 nodes: position 2 (old firmware, or its snapshot lost) is missing; positions 1 and 3 carry "
        "the snapshot of SNAP 50")
    add("snapread_stale", make_frame(CMD_SNAPREAD, 59, 0, struct.pack("<BBHhBB", 1, 0, 3312, 251, 0, 49),
                                     nodes=1), n3,
        "a record of an older snapshot (SNAP 49): the decoder passes it on; the hub compares `snap` with its "
        "request's SEQ and reports the position as missing")
    wrong = bytes(8) + struct.pack("<BBHhBB", 1, 0, 3300, 250, 0, 50)
    add("snapread_wrong_addr", make_frame(CMD_SNAPREAD, 60, 0, wrong, nodes=2), n1, "slot 2 claims address 1")
    add("snapread_overflow", make_frame(CMD_SNAPREAD, 61, 0, bytes(16), nodes=3), n1, "more nodes than slots")
    add("snapread_too_many", make_frame(CMD_SNAPREAD, 62, 0, struct.pack("<BBHhBB", 1, 0, 3300, 250, 0, 50)
                                        + struct.pack("<BBHhBB", 2, 0, 3300, 250, 0, 50), nodes=1), n1,
        "two filled slots but NODES = 1")
    add("snapread_bad_crc", flip(make_frame(CMD_SNAPREAD, 63, 0, bytes(24)), 12, 0x40), snapped,
        "a corrupted SNAPREAD: node 2 still writes its slot (as SCAN does) and counts the frame (FAULT = 2 in the "
        "next one); its snapshot stays for the hub's retry")
    add("enumerate_saturates", make_frame(CMD_ENUMERATE, 37, 64, nodes=64), fresh,
        "a 65th node: ADDR goes to 65 and the node takes no address")

    crc_examples = [
        {"data": b"123456789".hex(), "crc": "29b1"},
        {"data": "", "crc": "ffff"},
        {"data": enum_req[1:-2].hex(), "crc": enum_req[-2:].hex()},
        {"data": enum_req[1:].hex(), "crc": "0000"},
    ]
    doc = {
        "protocol": "1.3",
        "spec": "docs/protocol.md",
        "generated_by": "tools/gen_vectors.py",
        "crc": {"name": "CRC-16/CCITT-FALSE", "poly": "0x1021", "init": "0xffff", "refin": False,
                "refout": False, "xorout": "0x0000", "examples": crc_examples},
        "frames": frames,
    }
    path = ROOT / "tests" / "vectors" / "frames.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(frames)} frame vectors to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
