"""diyBMS v4's module ring as a reference model for `packmon bench` (docs/protocol.md §5).

Written from reading the diyBMS v4 sources (not copied from them):

* stuartpittaway/diyBMSv4ESP32 @ 0af053d4 (2025-11-04): the ESP32 controller and the cell-module firmware.
  ATTINYCellModule/include/packet_processor.h and ESPController/include/defines.h: `PacketStruct`
  (packed: u8 start_address, u8 end_address, u8 command, u8 hops, u16 sequence, u16 moduledata[16],
  u16 crc = 40 bytes). ATTINYCellModule/lib/crc16/crc16.cpp: CRC-16/XMODEM over the first 38 bytes.
  ATTINYCellModule/src/main.cpp, onPacketReceived(): the module checks the CRC, increments `hops`
  (its own address is the `hops` it received), fills moduledata[hops % 16] if it is in the address
  range, recomputes the CRC and re-sends the whole packet, then waits until it has left (FlushSerial0).
  ESPController/src/main.cpp, enqueue_task(): per 16 modules one ReadVoltageAndStatus (1) and one
  ReadTemperature (3) request; transmit_task(): one packet from the request queue, then a delay of
  900 ms (350 at 10000 baud, 450 at 9600, 700 at 5000). ESPController/platformio.ini: COMMS_BAUD_RATE
  2400 is the default; ATTINYCellModule/platformio.ini has module images at 2400, 5000, 9600 (V440) and
  10000 baud.
* stuartpittaway/SerialEncoder @ f909d311 (2020-11-16): the framing both sides use. A start byte 0xAA,
  then the packet's fixed number of bytes; a byte equal to 0xAA or 0x88 is sent as 0x88 followed by the
  byte with its top bit cleared. The receiver calls back only when the whole packet is in: each module
  stores the packet and forwards it whole.

The model is a lower bound for diyBMS: the time a module spends between the last byte in and the first
byte out (its polling loop, two bitwise CRC passes at 2 MHz) is not counted, the packets are assumed to
need no escapes (41 bytes on the wire), and the other requests that share the controller's queue
(balance power while a module balances; the housekeeping counters) are left out.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

MODULES_PER_PACKET = 16  # maximum_cell_modules / maximum_cell_modules_per_packet
PACKET_FORMAT = "<BBBBH%dHH" % MODULES_PER_PACKET  # start, end, command, hops, sequence, data[16], crc
PACKET_BYTES = struct.calcsize(PACKET_FORMAT)
FRAME_START = 0xAA
FRAME_ESCAPE = 0x88
ESCAPE_MASK = 0x7F  # an escaped byte is sent with its top bit cleared; the receiver sets it again
MIN_WIRE_BYTES = 1 + PACKET_BYTES  # start byte + a packet with nothing to escape
MAX_WIRE_BYTES = 1 + 2 * PACKET_BYTES

CMD_READ_VOLTAGE = 1  # ReadVoltageAndStatus
CMD_READ_TEMPERATURE = 3  # ReadTemperature
BANK_READ_COMMANDS = (CMD_READ_VOLTAGE, CMD_READ_TEMPERATURE)
PROCESSED = 0x80  # set in `command` by a module that served the request

DEFAULT_BAUD = 2400
# transmit_task(): the controller's delay after each packet, by baud rate (any other rate: 900 ms)
GAP_S = {10000: 0.350, 9600: 0.450, 5000: 0.700}
DEFAULT_GAP_S = 0.900


def gap_s(baud: int) -> float:
    """The controller's delay from one packet to the next at this baud rate."""
    return GAP_S.get(baud, DEFAULT_GAP_S)


def crc16_xmodem(data: bytes) -> int:
    """CRC-16/XMODEM (poly 0x1021, init 0, no reflection, no final xor), as the modules compute it."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def pack(start: int, end: int, command: int, hops: int, sequence: int, data: Sequence[int] = ()) -> bytes:
    """One PacketStruct (little-endian, as on the AVR and the ESP32), its CRC filled in."""
    if len(data) > MODULES_PER_PACKET:
        raise ValueError(f"at most {MODULES_PER_PACKET} module data words, got {len(data)}")
    words = list(data) + [0] * (MODULES_PER_PACKET - len(data))
    body = struct.pack(PACKET_FORMAT, start, end, command, hops, sequence, *words, 0)[:-2]
    return body + struct.pack("<H", crc16_xmodem(body))


def frame(packet: bytes) -> bytes:
    """The bytes on the wire for one packet: the start byte, then the packet with 0xAA and 0x88 escaped."""
    if len(packet) != PACKET_BYTES:
        raise ValueError(f"a packet is {PACKET_BYTES} bytes, got {len(packet)}")
    out = bytearray([FRAME_START])
    for b in packet:
        if b in (FRAME_START, FRAME_ESCAPE):
            out += bytes((FRAME_ESCAPE, b & ESCAPE_MASK))
        else:
            out.append(b)
    return bytes(out)


def requests(n: int) -> list[tuple[int, int, int]]:
    """(start_address, end_address, command) of the packets one full read of n modules needs, in order.

    The controller's enqueue_task(): for each group of 16 modules, a voltage and a temperature request.
    """
    if n < 1:
        raise ValueError("at least one module")
    out = []
    for start in range(0, n, MODULES_PER_PACKET):
        end = min(start + MODULES_PER_PACKET, n) - 1
        out += [(start, end, cmd) for cmd in BANK_READ_COMMANDS]
    return out


def packets_for(n: int) -> int:
    return len(requests(n))


def byte_s(baud: int) -> float:
    return 10 / baud  # 8N1


def transit_s(n: int, baud: int, wire_bytes: int = MIN_WIRE_BYTES) -> float:
    """One packet from the controller's first start bit to the last stop bit back at the controller.

    Store and forward: the controller and each of the n modules send the whole packet in turn.
    """
    return (n + 1) * wire_bytes * byte_s(baud)


def bank_read_s(n: int, baud: int = DEFAULT_BAUD, gap: float | None = None) -> float:
    """Every voltage and temperature of n modules read once: the last packet leaves (packets - 1) gaps
    after the first and is back one transit later.

    Earlier packets are still on the ring meanwhile. Packets reach every module `gap` apart, and a module
    is done with one (sent and flushed) a frame time after it has received it: while the gap is at least
    one frame time no packet waits for the one before it, which is what this formula assumes.
    """
    g = gap_s(baud) if gap is None else gap
    if g < MIN_WIRE_BYTES * byte_s(baud):
        raise ValueError(f"a gap of {g * 1000:.0f} ms is shorter than one packet at {baud} baud: packets would queue")
    return (packets_for(n) - 1) * g + transit_s(n, baud)


def wire_floor_s(n: int, baud: int = DEFAULT_BAUD) -> float:
    """diyBMS's own bytes once: every packet of one bank read sent once, back to back."""
    return packets_for(n) * MIN_WIRE_BYTES * byte_s(baud)
