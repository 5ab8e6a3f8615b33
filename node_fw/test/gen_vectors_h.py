#!/usr/bin/env python3
"""Turn tests/vectors/frames.json into a C header for the host tests (written to the build folder).

The JSON stays the single source of the vectors; this only changes its syntax."""

import json
import sys


def c_bytes(hexstr: str) -> str:
    b = bytes.fromhex(hexstr)
    return "{" + ",".join(str(x) for x in b) + "}" if b else "{0}"


def state(d: dict) -> str:
    s = d["settings"]
    c = d["clock"]
    return (
        "{.address=%d,.flags=%d,.bad=%d,.scans=%d,.mv=%d,.temp=%d,"
        ".settings={.vref=%d,.temp_offset=%d,.sensor=%d,.flags=%d,.reserved=%d},"
        ".reset_cause=%d,.uptime=%dUL,.identify=%d,"
        ".trim={.osccal=%d,.osccal0=%d,.state=%d,.err01=%d,.clean=%d,.steps=%d,.ee_writes=%d,.ee_value=%d},"
        ".snap=%d,.snap_seq=%d,.snap_wait=%d,.snap_flags=%d,.snap_mv=%d,.snap_temp=%d,.snap_bad=%d,.fault=%d,"
        ".snap_dev=%d}"
        % (d["address"], d["flags"], d["bad"], d["scans"], d["mv"], d["temp"], s["vref"], s["temp_offset"],
           s["sensor"], s["flags"], s["reserved"], d["reset_cause"], d["uptime"], int(d["identify"]),
           c["osccal"], c["osccal_reset"], c["state"], c["err01"], c["clean"], c["steps"], c["ee_writes"],
           c["ee_value"], d["snap"], d["snap_seq"], d["snap_wait"], d["snap_flags"], d["snap_mv"], d["snap_temp"],
           d["snap_bad"], d["fault"], d["snap_dev"])
    )


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    doc = json.load(open(src))
    out = ["/* generated from %s by gen_vectors_h.py: do not edit */" % src]
    for i, ex in enumerate(doc["crc"]["examples"]):
        out.append("static const uint8_t crc_data_%d[] = %s;" % (i, c_bytes(ex["data"])))
    out.append("static const struct crc_vec crc_vecs[] = {")
    for i, ex in enumerate(doc["crc"]["examples"]):
        out.append("  {crc_data_%d, %d, 0x%s}," % (i, len(ex["data"]) // 2, ex["crc"]))
    out.append("};")
    for i, f in enumerate(doc["frames"]):
        out.append("static const uint8_t in_%d[] = %s;" % (i, c_bytes(f["hex"])))
        out.append("static const uint8_t out_%d[] = %s;" % (i, c_bytes(f["node"]["out"])))
    out.append("static const struct frame_vec frame_vecs[] = {")
    for i, f in enumerate(doc["frames"]):
        n = f["node"]
        if tuple(n["given"]["fw"]) != (1, 4):
            raise SystemExit("vector %s expects firmware %s" % (f["name"], n["given"]["fw"]))
        out.append(
            '  {"%s", in_%d, %d, out_%d, %d, %d, %d, %s, %s},'
            % (f["name"], i, len(f["hex"]) // 2, i, len(n["out"]) // 2, int(n.get("timeout", False)),
               n.get("framing_error_at", -1), state(n["given"]), state(n["after"]))
        )
    out.append("};")
    out.append("#define N_FRAME_VECS %d" % len(doc["frames"]))
    out.append("#define N_CRC_VECS %d" % len(doc["crc"]["examples"]))
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
