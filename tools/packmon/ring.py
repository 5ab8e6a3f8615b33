"""`packmon ring`: the PC ring console. Talks to the ring through a USB-serial adapter (or the
simulator's pty, or any pyserial URL) with the hub's own ring driver and codec (hub/ring.py,
hub/codec.py), so the console and the board can never disagree about a frame."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from hub import codec
from hub.ring import Ring, RingError

from .common import EXIT_FAIL, EXIT_USAGE, ToolError
from .serialport import SerialUart, open_serial

WIRING_HINT = ("Check the ring: hub TX -> node 1 RX, node 1 TX -> node 2 RX, ..., node N TX -> hub RX "
               "(a node left out or a hop crossed breaks the ring); every node powered by its pack; "
               "isolators non-inverting and the right way round; 9600 baud 8N1")
RESET_CAUSES = ((0x01, "power-on"), (0x02, "external"), (0x04, "brown-out"), (0x08, "watchdog"))
SENSORS = codec.SENSOR_NAMES  # ("internal", "tmp36", "ntc"): index = the SETTINGS sensor value
DASH = "—"


# -- argument parsing ----------------------------------------------------------------------------
def node_number(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a node number (1..{codec.MAX_SLOTS})") from None
    if not 1 <= n <= codec.MAX_SLOTS:
        raise argparse.ArgumentTypeError(f"node {n} is out of range 1..{codec.MAX_SLOTS}")
    return n


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--port", "-p", required=True,
                        help="serial device or pyserial URL: /dev/ttyUSB0, the pty `packmon sim` prints, "
                             "socket://host:port, loop://")
    common.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")
    common.add_argument("--retries", type=int, default=2, metavar="K",
                        help="repeat a request that failed up to K times (default 2); failures are counted")
    common.add_argument("--baud", type=int, default=9600, help=argparse.SUPPRESS)

    p = sub.add_parser("ring", help="talk to the node ring from a PC (scan, info, calibrate, ...)",
                       description=__doc__)
    rs = p.add_subparsers(dest="ring_cmd", metavar="ACTION", required=True)

    s = rs.add_parser("scan", parents=[common], help="read every pack: voltage, temperature, flags")
    s.add_argument("--watch", nargs="?", type=float, const=2.0, default=None, metavar="SECONDS",
                   help="scan again every SECONDS (default 2) until Ctrl-C")
    s.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)  # stop --watch after COUNT scans
    s.set_defaults(func=cmd_scan)

    i = rs.add_parser("info", parents=[common], help="firmware version, reset cause, uptime, settings of node N")
    i.add_argument("node", type=node_number, metavar="N")
    i.set_defaults(func=cmd_info)

    d = rs.add_parser("identify", parents=[common], help="blink node N's LED for about 5 s")
    d.add_argument("node", type=node_number, metavar="N")
    d.set_defaults(func=cmd_identify)

    c = rs.add_parser("calibrate", parents=[common],
                      help="calibrate node N's voltage against a multimeter reading")
    c.add_argument("node", type=node_number, metavar="N")
    c.add_argument("--voltage", "-V", type=float, required=True, metavar="V",
                   help="the pack voltage the multimeter shows, in volts (e.g. 3.312)")
    c.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                   help="how long to wait for the node to measure with the new calibration (default 2)")
    c.set_defaults(func=cmd_calibrate)

    st = rs.add_parser("set", parents=[common], help="change a setting of node N (temp-offset, sensor)")
    st.add_argument("node", type=node_number, metavar="N")
    st.add_argument("setting", choices=("temp-offset", "sensor"))
    st.add_argument("value", help="temp-offset: degrees C (-50.0..50.0); sensor: ntc, tmp36 or internal")
    st.set_defaults(func=cmd_set)


# -- the console -----------------------------------------------------------------------------------
@dataclass
class ScanResult:
    records: list[dict[str, Any]]
    packs: int
    at: float = field(default_factory=time.time)


class Console:
    """A Ring on a serial port, with retries, error accounting and explanations."""

    def __init__(self, uart, port: str, retries: int = 2) -> None:
        self.uart = uart
        self.port = port
        self.ring = Ring(uart)
        self.retries = max(0, retries)
        self.n: int | None = None

    # every request goes through here: retried, counted (ring.errors), explained when it finally fails
    def _try(self, what: str, fn, *args):
        last: RingError | None = None
        for _ in range(self.retries + 1):
            try:
                return fn(*args)
            except RingError as e:
                last = e
        assert last is not None
        raise ToolError(self.explain(what, last), EXIT_FAIL)

    def enumerate(self) -> int:
        n = self._try("ENUMERATE", self.ring.enumerate)
        if n == 0:
            raise ToolError(f"the ENUMERATE frame came back on {self.port} but no node counted itself: the hub's TX "
                            "is connected straight to its RX (a loopback), or no Pack Monitor node is in the ring. "
                            + WIRING_HINT, EXIT_FAIL)
        self.n = n
        return n

    def scan(self) -> ScanResult:
        if self.n is None:
            self.enumerate()
        assert self.n is not None
        n = self.n
        nodes = self._try("SCAN", self.ring.scan, n)
        frame = codec.decode(bytes(self.ring.rx[: self.ring.rx_len]))
        if nodes < n:  # a node dropped out: the count the next scan uses must shrink too
            self.n = None
        return ScanResult(frame["records"], nodes)

    def check_node(self, node: int) -> None:
        n = self.n if self.n is not None else self.enumerate()
        if node > n:
            raise ToolError(f"node {node} is out of range: the ring on {self.port} has {n} "
                            f"node{'s' if n != 1 else ''} (1..{n})", EXIT_USAGE)

    def addressed(self, cmd: int, node: int, payload: bytes | None = None) -> dict[str, Any]:
        self.check_node(node)
        done = self._try(codec.CMD_NAMES[cmd], self.ring.addressed, cmd, node, payload, self.n)
        if not done:
            raise ToolError(f"no node {node} answered: the {codec.CMD_NAMES[cmd]} frame came back without DONE "
                            "(was the node reset or removed since the enumeration? run `packmon ring scan`)",
                            EXIT_FAIL)
        return codec.decode(bytes(self.ring.rx[: self.ring.rx_len]))

    def read_settings(self, node: int) -> dict[str, int]:
        return self.addressed(codec.CMD_READ, node, bytes(8))["settings"]

    def write_settings(self, node: int, s: dict[str, int]) -> dict[str, int]:
        """WRITE, check DONE, READ back and compare: returns the settings the node now holds."""
        try:
            payload = codec.settings_pack(s["vref"], s["temp_offset"], s["sensor"], s["flags"])
        except ValueError as e:
            raise ToolError(f"refusing to write node {node}: {e}", EXIT_USAGE) from e
        self.addressed(codec.CMD_WRITE, node, payload)
        back = self.read_settings(node)
        want = {k: s[k] for k in ("vref", "temp_offset", "sensor", "flags")}
        got = {k: back[k] for k in want}
        if got != want:
            raise ToolError(f"node {node} acknowledged the WRITE but reads back {got}, not {want}: "
                            "its EEPROM write may have failed", EXIT_FAIL)
        return back

    # -- explanations ------------------------------------------------------------------------------
    def error_counts(self) -> dict[str, int]:
        return {codec.ERROR_NAMES[i]: k for i, k in enumerate(self.ring.errors) if k}

    def errors_text(self) -> str:
        counts = self.error_counts()
        if not counts:
            return "no errors"
        return "errors: " + ", ".join(f"{k} {v}" for k, v in counts.items())

    def explain(self, what: str, e: RingError) -> str:
        tries = self.retries + 1
        head = f"{what} failed {tries} time{'s' if tries > 1 else ''} on {self.port}: "
        name = e.name
        tail = f" [ring {self.errors_text()}]"
        if name == "timeout":
            got = len(getattr(self.uart, "rx_log", b""))
            if got:
                msg = (f"bytes came back ({got} after the last request) but never a complete answer: a wrong baud "
                       "rate, an inverting isolator or a node that stops mid-frame. " + WIRING_HINT)
            else:
                msg = "no answer from the ring (nothing came back). " + WIRING_HINT
            return head + msg + tail
        if name == "ring_fault":
            return head + str(e) + ": that hop's wiring/isolator corrupts bytes" + tail
        if name == "bad_crc":
            last = self.n if self.n else "N"
            if e.fault:
                return head + "answers failed the CRC check: " + str(e).split(": ", 1)[-1] + \
                    ": that hop's wiring/isolator corrupts bytes" + tail
            return (head + "answers failed the CRC check — corrupted on the way round (nodes of firmware 1.3 name "
                    f"the hop in the next frame: retry), or on the last hop (node {last} TX -> hub RX), or a noisy "
                    "line" + tail)
        if name == "inconsistent":
            return head + self._inconsistent(what) + tail
        if name == "slot_overflow":
            return head + "more nodes answered than enumerated: a node was added; run the command again" + tail
        if name == "mismatch":
            return head + ("answers to a different request arrived: is another hub or console talking on this "
                           "ring?") + tail
        if name == "truncated":
            return head + "an incomplete frame came back: a node stopped forwarding mid-frame. " + WIRING_HINT + tail
        return head + str(e) + tail

    def _inconsistent(self, what: str) -> str:
        """Name the node that answered with an unexpected address, from the raw bytes received."""
        raw = bytes(getattr(self.uart, "rx_log", b""))
        tx = self.ring.tx
        i = raw.find(bytes([codec.SOF, tx[1], tx[2]]))
        if i >= 0 and len(raw) - i >= codec.HEADER_SIZE:
            f = raw[i:]
            cnt = f[4]
            if len(f) >= codec.frame_len(cnt):
                nodes = codec.nodes_of(f)
                if tx[1] == codec.CMD_ENUMERATE:
                    return (f"{nodes} nodes forwarded the ENUMERATE but the address counter reached {f[3]}: a node "
                            "forwards without taking an address (old firmware or a foreign device in the ring)")
                for k in range(cnt):
                    a = f[codec.slot(k)]
                    if a not in (0, k + 1):
                        return (f"a node answered with an unexpected address: slot {k + 1} carries address {a} "
                                f"(node {k + 1} should answer as {k + 1}: old firmware, or a node that did not "
                                "take its address?)")
                filled = sum(1 for k in range(cnt) if f[codec.slot(k)])
                return f"{nodes} nodes forwarded the {what} but {filled} slots were filled: a node did not answer"
        return f"the {what} answer does not add up (slots or addresses inconsistent)"


# -- formatting ------------------------------------------------------------------------------------
def volts(mv: int) -> str:
    return "%.3f" % (mv / 1000)


def pack_json(r: dict[str, Any]) -> dict[str, Any]:
    vfault = bool(r["flags"] & codec.FLAG_VOLTAGE_FAULT)
    return {
        "pack": r["addr"],
        "voltage": None if vfault else round(r["mv"] / 1000, 3),
        "mv": None if vfault else r["mv"],
        "temperature": None if r["temp"] == codec.TEMP_NONE else round(r["temp"] / 10, 1),
        "flags": codec.flag_names(r["flags"]),
        "bad_frames": r["bad"],
        "scans": r["scans"],
    }


def bank_summary(packs: list[dict[str, Any]]) -> dict[str, Any] | None:
    vs = [(p["mv"], p["pack"]) for p in packs if p["mv"] is not None]
    if not vs:
        return None
    lo = min(vs)
    hi = max(vs, key=lambda t: (t[0], -t[1]))
    return {
        "packs": len(packs),
        "total": round(sum(v for v, _ in vs) / 1000, 3),
        "min": round(lo[0] / 1000, 3), "min_pack": lo[1],
        "max": round(hi[0] / 1000, 3), "max_pack": hi[1],
        "delta": round((hi[0] - lo[0]) / 1000, 3),
        "complete": len(vs) == len(packs),
    }


def ring_json(con: Console) -> dict[str, Any]:
    r = con.ring
    return {"requests": r.sent, "good": r.good, "errors": con.error_counts(), "last_fault_hop": r.last_fault or None}


def scan_json(con: Console, res: ScanResult) -> dict[str, Any]:
    packs = [pack_json(r) for r in res.records]
    return {"port": con.port, "time": round(res.at, 3), "packs": packs, "bank": bank_summary(packs),
            "ring": ring_json(con)}


def scan_table(con: Console, res: ScanResult) -> str:
    packs = [pack_json(r) for r in res.records]
    lines = [f"ring on {con.port}: {len(packs)} pack{'s' if len(packs) != 1 else ''}",
             "pack  voltage V  temp °C  flags                          bad  scans"]
    for p in packs:
        v = DASH if p["voltage"] is None else "%.3f" % p["voltage"]
        t = DASH if p["temperature"] is None else "%.1f" % p["temperature"]
        flags = ",".join(p["flags"]) or "-"
        lines.append(f"{p['pack']:>4}  {v:>9}  {t:>7}  {flags:<29}  {p['bad_frames']:>3}  {p['scans']:>5}")
    b = bank_summary(packs)
    if b:
        partial = "" if b["complete"] else " (packs with a voltage fault left out)"
        lines.append(f"bank: {b['total']:.3f} V total, min {b['min']:.3f} V (pack {b['min_pack']}), "
                     f"max {b['max']:.3f} V (pack {b['max_pack']}), delta {b['delta']:.3f} V{partial}")
    else:
        lines.append("bank: no voltage reading")
    r = con.ring
    fault = f", last fault on the hop into node {r.last_fault}" if r.last_fault else ""
    lines.append(f"ring: {r.sent} requests, {r.good} good, {con.errors_text()}{fault}")
    return "\n".join(lines)


def format_uptime(s: int) -> str:
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    return (f"{d} d " if d else "") + "%02d:%02d:%02d" % (h, m, sec)


def reset_causes(bits: int) -> list[str]:
    return [name for bit, name in RESET_CAUSES if bits & bit] or ["unknown"]


def settings_json(s: dict[str, int]) -> dict[str, Any]:
    return {
        "vref": s["vref"],
        "vref_v": round(s["vref"] / 10000, 4),
        "temp_offset": round(s["temp_offset"] / 10, 1),
        "sensor": SENSORS[s["sensor"]] if s["sensor"] < len(SENSORS) else s["sensor"],
        "calibrated": bool(s["flags"] & codec.SETTINGS_CALIBRATED),
    }


def settings_text(s: dict[str, Any]) -> str:
    return (f"vref {s['vref_v']:.4f} V ({s['vref']}), temp offset {s['temp_offset']:+.1f} °C, sensor {s['sensor']}, "
            f"{'calibrated' if s['calibrated'] else 'not calibrated'}")


# -- commands ----------------------------------------------------------------------------------------
class _Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ser = open_serial(args.port, baud=args.baud)
        self.uart = SerialUart(self.ser)
        self.con = Console(self.uart, args.port, args.retries)

    def __enter__(self) -> Console:
        return self.con

    def __exit__(self, *exc: object) -> None:
        self.ser.close()


def emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if args.json else text, flush=True)


def cmd_scan(args: argparse.Namespace) -> int:
    with _Session(args) as con:
        if args.watch is None:
            res = con.scan()
            emit(args, scan_json(con, res), scan_table(con, res))
            return 0
        return _watch(args, con)


def _watch(args: argparse.Namespace, con: Console) -> int:
    interval = max(0.1, args.watch)
    done = 0
    clear = sys.stdout.isatty() and not args.json
    try:
        while True:
            t0 = time.monotonic()
            try:
                res = con.scan()
                out = scan_json(con, res) if args.json else None
                text = scan_table(con, res)
            except ToolError as e:
                if e.code != EXIT_FAIL:
                    raise
                con.n = None  # enumerate again next time
                out = {"port": con.port, "time": round(time.time(), 3), "error": str(e), "ring": ring_json(con)}
                text = f"scan failed: {e}"
            if clear:
                sys.stdout.write("\x1b[H\x1b[2J")
            print(json.dumps(out) if args.json else time.strftime("%H:%M:%S ") + text, flush=True)
            done += 1
            if args.count and done >= args.count:
                return 0
            time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    except KeyboardInterrupt:
        if not args.json:
            print(f"\nstopped after {done} scan{'s' if done != 1 else ''}; ring {con.errors_text()}")
        return 0


CLOCK_STATES = ((codec.CLOCK_LOCKED, "locked"), (codec.CLOCK_LIMIT, "OUT OF TRIM RANGE"),
                (codec.CLOCK_EEPROM, "started from EEPROM"), (codec.CLOCK_MEASURED, "measured"),
                (codec.CLOCK_OFF, "trim not built in"))


def clock_json(c: dict[str, int] | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {**c, "states": [name for bit, name in CLOCK_STATES if c["state"] & bit],
            "eeprom_value": None if c["eeprom_value"] == 0xFF else c["eeprom_value"]}


def clock_text(c: dict[str, int] | None) -> str:
    if c is None:
        return "not reported (firmware 1.0 has no CLOCK command)"
    j = clock_json(c)
    assert j is not None
    states = ", ".join(j["states"]) or "acquiring"
    if not c["state"] & codec.CLOCK_MEASURED:
        err = "no clean SOF measured yet"
    else:
        err = f"{c['error_01pct'] / 10:+.1f} % against the upstream clock at the last SOF"
    ee = "none" if j["eeprom_value"] is None else f"0x{j['eeprom_value']:02X}"
    return (f"OSCCAL 0x{c['osccal']:02X} (0x{c['osccal_reset']:02X} at reset), {states}; {err}; "
            f"{c['clean']} clean SOFs, {c['steps']} LSB moved; EEPROM start value {ee} "
            f"({c['eeprom_writes']} writes since start)")


def cmd_info(args: argparse.Namespace) -> int:
    with _Session(args) as con:
        info = con.addressed(codec.CMD_INFO, args.node, bytes(8))["info"]
        s = settings_json(con.read_settings(args.node))
        # CLOCK (firmware 1.1): older nodes forward it untouched, so only ask those that have it
        clock = con.addressed(codec.CMD_CLOCK, args.node, bytes(8))["clock"] if (
            (info["fw_major"], info["fw_minor"]) >= (1, 1)) else None
        obj = {
            "node": args.node,
            "firmware": "%d.%d" % (info["fw_major"], info["fw_minor"]),
            "reset_cause": reset_causes(info["reset_cause"]),
            "reset_cause_bits": info["reset_cause"],
            "uptime_s": info["uptime"],
            "bad_frames": info["bad"],
            "settings": s,
            "clock": clock_json(clock),
            "ring": ring_json(con),
        }
        text = "\n".join([
            f"node {args.node} of {con.n} on {con.port}",
            f"  firmware     {obj['firmware']}",
            f"  reset cause  {', '.join(obj['reset_cause'])} (MCUSR 0x{info['reset_cause']:02x})",
            f"  uptime       {format_uptime(info['uptime'])} ({info['uptime']} s)",
            f"  bad frames   {info['bad']}",
            f"  settings     {settings_text(s)}",
            f"  clock        {clock_text(clock)}",
        ])
        emit(args, obj, text)
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    with _Session(args) as con:
        con.addressed(codec.CMD_IDENTIFY, args.node)
        emit(args, {"node": args.node, "identify": True, "ring": ring_json(con)},
             f"node {args.node} is blinking its LED for about 5 s")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    mv_true = round(args.voltage * 1000)
    if not 500 <= mv_true <= 6500:
        raise ToolError(f"--voltage {args.voltage}: a pack voltage is expected in volts (0.5..6.5), e.g. 3.312",
                        EXIT_USAGE)
    with _Session(args) as con:
        node = args.node
        con.check_node(node)
        before = _record(con, node)
        if before["flags"] & codec.FLAG_VOLTAGE_FAULT or not before["mv"]:
            raise ToolError(f"node {node} reports a voltage fault: it cannot be calibrated until it measures",
                            EXIT_FAIL)
        mv_rep = before["mv"]
        old = con.read_settings(node)
        vref_new = round(old["vref"] * mv_true / mv_rep)
        if not 9000 <= vref_new <= 13000:
            raise ToolError(
                f"refusing to calibrate node {node}: it reports {volts(mv_rep)} V and you measured "
                f"{args.voltage:.3f} V, which would need vref {vref_new / 10000:.4f} V — outside 0.9000..1.3000 V. "
                f"Check that the multimeter is on pack {node} (packs count from the hub's TX).", EXIT_USAGE)
        new = dict(old, vref=vref_new, flags=old["flags"] | codec.SETTINGS_CALIBRATED)
        back = con.write_settings(node, new)
        after = _settled(con, node, mv_true, args.settle)
        err = after["mv"] - mv_true
        obj = {
            "node": node,
            "measured_v": round(mv_true / 1000, 3),
            "reported_before_v": round(mv_rep / 1000, 3),
            "vref_old": old["vref"],
            "vref_new": back["vref"],
            "reported_after_v": round(after["mv"] / 1000, 3),
            "error_mv": err,
            "settings": settings_json(back),
            "ring": ring_json(con),
        }
        lines = [
            f"node {node}: reported {volts(mv_rep)} V, multimeter {mv_true / 1000:.3f} V",
            f"  vref {old['vref'] / 10000:.4f} V -> {back['vref'] / 10000:.4f} V (written, CALIBRATED set, read back)",
            f"  now reports {volts(after['mv'])} V ({err:+d} mV)",
        ]
        if abs(err) > max(5, mv_true // 200):
            lines.append(f"  the node has not measured with the new calibration yet: run "
                         f"`packmon ring scan --port {con.port}` in a few seconds")
        emit(args, obj, "\n".join(lines))
    return 0


def _record(con: Console, node: int) -> dict[str, Any]:
    res = con.scan()
    for r in res.records:
        if r["addr"] == node:
            return r
    raise ToolError(f"no node {node} answered the SCAN ({res.packs} did)", EXIT_FAIL)


def _settled(con: Console, node: int, mv_true: int, settle: float) -> dict[str, Any]:
    """Scan until the node reports close to the true voltage or settle seconds have passed."""
    deadline = time.monotonic() + max(0.0, settle)
    while True:
        r = _record(con, node)
        if abs(r["mv"] - mv_true) <= max(5, mv_true // 200) or time.monotonic() >= deadline:
            return r
        time.sleep(0.5)


def cmd_set(args: argparse.Namespace) -> int:
    node = args.node
    if args.setting == "temp-offset":
        try:
            off = float(args.value)
        except ValueError:
            raise ToolError(f"temp-offset {args.value!r}: expected degrees C, e.g. 1.5 or -0.8", EXIT_USAGE) from None
        if not -50.0 <= off <= 50.0:
            raise ToolError(f"temp-offset {off}: out of range -50.0..50.0 °C", EXIT_USAGE)
        change = {"temp_offset": round(off * 10)}
    else:
        name = args.value.lower()
        if name not in SENSORS:
            raise ToolError(f"sensor {args.value!r}: choose ntc, tmp36 or internal", EXIT_USAGE)
        change = {"sensor": SENSORS.index(name)}
    with _Session(args) as con:
        con.check_node(node)
        old = con.read_settings(node)
        back = con.write_settings(node, dict(old, **change))
        s_old, s_new = settings_json(old), settings_json(back)
        key = "temp_offset" if args.setting == "temp-offset" else "sensor"
        obj = {"node": node, "setting": args.setting, "old": s_old[key], "new": s_new[key], "settings": s_new,
               "ring": ring_json(con)}
        if key == "temp_offset":
            text = f"node {node}: temp offset {s_old[key]:+.1f} °C -> {s_new[key]:+.1f} °C (written, read back)"
        else:
            text = f"node {node}: sensor {s_old[key]} -> {s_new[key]} (written, read back)"
        emit(args, obj, text)
    return 0
