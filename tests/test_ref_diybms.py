"""The diyBMS v4 reference model (tools/packmon/ref_diybms.py) against first principles.

The layout, the framing and the timing are derived here independently: the struct from its field list, the
framing by a decoder written from SerialEncoder's rules, the bank-read time by a packet-by-packet
simulation of the ring in which each module behaves as the diyBMS module firmware does.
"""

from __future__ import annotations

import pytest
from packmon import ref_diybms as v4

# PacketStruct, field by field (packed): start_address, end_address, command, hops, sequence,
# moduledata[16], crc
FIELDS = [("start", 1), ("end", 1), ("command", 1), ("hops", 1), ("sequence", 2)] + [
    (f"data{i}", 2) for i in range(16)
] + [("crc", 2)]
START, ESCAPE = 0xAA, 0x88


def unframe(wire: bytes) -> bytes:
    """SerialEncoder's receiver: a start byte begins a packet; an escape byte means 'set the top bit of the
    next byte'; the packet is complete at a fixed length."""
    out = bytearray()
    started = escaped = False
    for b in wire:
        if b == START:
            out.clear()
            started, escaped = True, False
            continue
        if not started:
            continue
        if b == ESCAPE:
            escaped = True
            continue
        out.append(b | 0x80 if escaped else b)
        escaped = False
    return bytes(out)


def test_packet_layout_is_40_bytes_little_endian() -> None:
    size = sum(n for _, n in FIELDS)
    assert size == 40
    assert v4.PACKET_BYTES == size
    data = [0x0100 * (i + 1) + i for i in range(16)]
    p = v4.pack(0x11, 0x22, 0x33, 0x44, 0x5566, data)
    assert len(p) == size
    assert p[:6] == bytes([0x11, 0x22, 0x33, 0x44, 0x66, 0x55])
    for i, word in enumerate(data):
        assert p[6 + 2 * i] == word & 0xFF and p[7 + 2 * i] == word >> 8
    with pytest.raises(ValueError):
        v4.pack(0, 15, 1, 0, 0, [0] * 17)


def test_crc_is_xmodem_over_the_first_38_bytes() -> None:
    assert v4.crc16_xmodem(b"123456789") == 0x31C3  # the CRC catalogue's check value for CRC-16/XMODEM
    p = v4.pack(0, 15, 1, 3, 7, [3300 + i for i in range(16)])
    assert int.from_bytes(p[38:], "little") == v4.crc16_xmodem(p[:38])
    assert v4.crc16_xmodem(b"\x00" * 38) == 0  # init 0, no final xor: zeros stay zero


def test_framing_start_byte_and_escapes() -> None:
    zeros = v4.pack(0, 0, 0, 0, 0)  # CRC of zeros is zero: nothing to escape
    wire = v4.frame(zeros)
    assert wire[0] == START and len(wire) == 1 + 40 == v4.MIN_WIRE_BYTES
    # data words whose bytes are the start and the escape byte: each such byte costs one more on the wire
    p = v4.pack(0, 15, 1, 0, 0x88AA, [0xAA88, 0x00AA, 0x8800])
    specials = sum(1 for b in p if b in (START, ESCAPE))
    assert specials >= 6
    wire = v4.frame(p)
    assert len(wire) == 1 + 40 + specials
    assert wire.count(START) == 1  # the start byte never appears inside a frame
    assert unframe(wire) == p
    worst = bytes([START] * 40)
    assert len(v4.frame(worst)) == 81 == v4.MAX_WIRE_BYTES and unframe(v4.frame(worst)) == worst
    with pytest.raises(ValueError):
        v4.frame(b"\x00" * 39)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 31, 32, 33, 64, 100])
def test_requests_cover_every_module_once_per_command(n: int) -> None:
    reqs = v4.requests(n)
    for cmd in (1, 3):  # ReadVoltageAndStatus, ReadTemperature
        covered = [m for s, e, c in reqs if c == cmd for m in range(s, e + 1)]
        assert sorted(covered) == list(range(n))
    for s, e, _ in reqs:
        assert e - s + 1 <= 16
        assert s % 16 == 0  # a module's slot is its address mod 16: a packet's slots never collide
    groups = -(-n // 16)
    assert v4.packets_for(n) == len(reqs) == 2 * groups
    with pytest.raises(ValueError):
        v4.requests(0)


def test_packet_counts_by_hand() -> None:
    assert [v4.packets_for(n) for n in (1, 16, 17, 32, 64)] == [2, 2, 4, 4, 8]


def forward(p: bytes, value: int) -> bytes:
    """What a diyBMS module does with a good packet: hops is its address; if the address is in range it
    fills its slot and sets the processed bit; hops + 1 and a new CRC go downstream."""
    start, end, cmd, hops = p[0], p[1], p[2], p[3]
    body = bytearray(p[:38])
    if start <= hops <= end:
        slot = 6 + 2 * (hops % 16)
        body[slot:slot + 2] = value.to_bytes(2, "little")
        body[2] = cmd | 0x80
    body[3] = (hops + 1) & 0xFF
    return bytes(body) + v4.crc16_xmodem(bytes(body)).to_bytes(2, "little")


def simulate(n: int, baud: int, gap: float, exact_frames: bool) -> tuple[float, int]:
    """Packet by packet round a ring of n modules: the controller sends packet j at j*gap; a module starts
    re-sending a packet once it has received all of it and has finished sending the one before. Returns the
    time the last packet is back and the largest number of escaped bytes on any hop."""
    byte = 10 / baud
    busy = [0.0] * n  # when each module has finished its last send
    done = 0.0
    worst_escapes = 0
    for j, (s, e, cmd) in enumerate(v4.requests(n)):
        p = v4.pack(s, e, cmd, 0, j + 1)
        t = j * gap  # the start of this packet's first byte on the current hop
        for hop in range(n + 1):
            length = len(v4.frame(p)) if exact_frames else 41
            worst_escapes = max(worst_escapes, len(v4.frame(p)) - 41)
            arrived = t + length * byte  # the whole packet is in at the next module (or back home)
            if hop == n:
                done = max(done, arrived)
                break
            t = max(arrived, busy[hop])
            p = forward(p, 3300 + hop if cmd == 1 else 0x4141)
            busy[hop] = t + len(v4.frame(p)) * byte if exact_frames else t + 41 * byte
    return done, worst_escapes


@pytest.mark.parametrize("n", [1, 16, 17, 64])
@pytest.mark.parametrize("baud", [9600, 2400])
def test_bank_read_time_matches_a_packet_by_packet_ring(n: int, baud: int) -> None:
    gap = {9600: 0.450, 2400: 0.900}[baud]  # transmit_task()'s delays in diyBMSv4ESP32
    assert v4.gap_s(baud) == gap
    ideal, _ = simulate(n, baud, gap, exact_frames=False)
    assert v4.bank_read_s(n, baud) == pytest.approx(ideal, abs=1e-9)
    real, escapes = simulate(n, baud, gap, exact_frames=True)
    # the model is a lower bound: escapes only add bytes, at most `escapes` per hop on the last packet's way
    assert ideal <= real <= ideal + (n + 1) * escapes * 10 / baud + 1e-9


def test_store_and_forward_is_one_whole_frame_per_hop() -> None:
    # one more module adds one whole frame (41 bytes) to a packet's way round, whatever n is
    for baud in (2400, 9600):
        for n in (1, 16, 63):
            extra = v4.transit_s(n + 1, baud) - v4.transit_s(n, baud)
            assert extra == pytest.approx(41 * 10 / baud)


def test_a_gap_shorter_than_a_frame_is_refused() -> None:
    with pytest.raises(ValueError):
        v4.bank_read_s(16, 9600, gap=0.040)  # 41 bytes take 42.7 ms at 9600
