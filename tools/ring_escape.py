#!/usr/bin/env python3
"""Corruption on the ring's hops against the hub's check, through the node model (docs/protocol.md §4, §8).

Since protocol 1.2 a node passes the received CRC on, corrected by what it changed, so the hub checks the XOR
of every hop's syndrome instead of each node checking its own hop. This measures what that gives, frame by
frame: a SCAN through N model nodes (tools/packmon/sim/node_model.py, the firmware's state machine), with
one hop corrupted (and a second one in a tenth of the frames) by a random mutation: 1-32 flipped bits
anywhere, or a burst of random bytes over 2-8 bytes. For every frame it counts:

- accepted corrupted: the hub's check passed but the frame differs from the same ring's answer without
  the corruption (an escape);
- the hop named: the next frame (clean) carries FAULT = the first node after the first corrupted hop inside
  the ring (a corruption on the last hop, into the hub, is the hub's own bad_crc).

`--firmware 1.2` runs the same frames through nodes of firmware 1.2 (2-byte lag, each node checks its own
hop and marks FAULT in the bad frame itself, with a fresh CRC), the protocol 1.1 baseline: there the hop
counts as named when the corrupted frame itself carries it.

    python3 tools/ring_escape.py --frames 200000 --seed 1
    python3 tools/ring_escape.py --frames 200000 --seed 1 --firmware 1.2
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from packmon.sim.node_model import CMD_SCAN, NodeModel, NodeState, make_frame  # noqa: E402

from hub import codec  # noqa: E402


def mutate(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data  # a node upstream stopped forwarding (a bad header): nothing on this hop
    b = bytearray(data)
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 32)):
            i = rng.randrange(len(b) * 8)
            b[i // 8] ^= 1 << (i % 8)
    else:
        n = rng.randint(2, 8)
        start = rng.randrange(max(1, len(b) - n))
        for i in range(start, min(len(b), start + n)):
            b[i] = rng.randrange(256)
    return bytes(b)


def through(nodes: list[NodeModel], frame: bytes, bad_hops: set[int], rng: random.Random) -> bytes:
    """The frame round the ring; hop k (0: hub -> node 1, len(nodes): last node -> hub) corrupted if in bad_hops."""
    data = frame
    for k in range(len(nodes) + 1):
        if k in bad_hops:
            data = mutate(data, rng)
        if k == len(nodes):
            break
        out = bytearray()
        for byte in data:
            out += nodes[k].feed(byte)
        nodes[k].timeout()  # the line goes quiet: a frame cut short ends here
        data = bytes(out)
    return data


def run(frames: int, seed: int, max_nodes: int, fw: tuple[int, int] = (1, 3)) -> dict:
    rng = random.Random(seed)
    res = {"frames": frames, "differs": 0, "rejected": 0, "accepted_corrupted": 0, "inside": 0, "named": 0,
           "named_wrong": 0, "reasons": {}}
    for f in range(frames):
        n = rng.randint(1, max_nodes)
        base = [NodeModel(NodeState(address=i + 1, mv=3300 + 7 * i, temp=200 + i, flags=0, scans=f & 0xFF, fw=fw))
                for i in range(n)]
        req = make_frame(CMD_SCAN, f & 0xFF, 0, bytes(8 * n))
        clean = through(copy.deepcopy(base), req, set(), rng)
        hops = {rng.randint(0, n)}
        if rng.random() < 0.1:
            hops.add(rng.randint(0, n))
        nodes = copy.deepcopy(base)
        got = through(nodes, req, hops, rng)
        if got == clean:
            continue  # the mutation changed nothing the hub sees (e.g. flipped back)
        res["differs"] += 1
        err = codec.check(got, len(got))
        if err == codec.OK:
            res["accepted_corrupted"] += 1
        else:
            res["rejected"] += 1
            name = codec.ERROR_NAMES[err]
            res["reasons"][name] = res["reasons"].get(name, 0) + 1
        first = min(hops)
        if first < n:  # inside the ring: node first+1 found it bad and reports it in the next frame
            res["inside"] += 1
            if fw >= (1, 3):
                nxt = through(nodes, make_frame(CMD_SCAN, (f + 1) & 0xFF, 0, bytes(8 * n)), set(), rng)
            else:
                nxt = got  # before 1.3: in the bad frame itself, if it reached the hub
            ok_len = len(nxt) == codec.frame_len(nxt[4]) if len(nxt) >= codec.HEADER_SIZE else False
            fault = codec.fault_of(nxt) if ok_len and codec.check(nxt, len(nxt)) in (
                codec.OK, codec.ERR_RING_FAULT) else -1
            if fault == first + 1:
                res["named"] += 1
            else:
                res["named_wrong"] += 1
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-nodes", type=int, default=4)
    p.add_argument("--firmware", default="1.3", help="the nodes' firmware: 1.3 (protocol 1.2) or 1.2 (1.1)")
    a = p.parse_args(argv)
    fw = tuple(int(x) for x in a.firmware.split("."))
    r = run(a.frames, a.seed, a.max_nodes, (fw[0], fw[1]))
    print(f"firmware {a.firmware}, 1-{a.max_nodes} nodes, seed {a.seed}")
    d = r["differs"]
    print(f"frames {r['frames']}, corrupted as the hub sees them {d}, rejected {r['rejected']} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(r['reasons'].items()))}), accepted corrupted "
          f"{r['accepted_corrupted']} ({r['accepted_corrupted'] / max(1, d):.2e} of the corrupted; CRC-16 on random "
          f"patterns: 1.53e-05)")
    where = "the next frame" if fw >= (1, 3) else "the frame itself"
    print(f"corrupted inside the ring {r['inside']}: {where} named the hop (first corrupted) {r['named']}, "
          f"another or none {r['named_wrong']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
