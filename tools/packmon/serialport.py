"""Opening a serial port the way every host tool does, and the UART view the hub's ring driver expects.

Any name pyserial's serial_for_url() accepts works: a device (/dev/ttyUSB0), the simulator's pty
(/dev/pts/N, printed by `packmon sim`), loop://, socket://host:port, rfc2217://host:port, ...
"""

from __future__ import annotations

import errno
import os

import serial

from .common import EXIT_PORT, ToolError

ADAPTER_HINT = "is the adapter plugged in? `ls /dev/ttyUSB* /dev/ttyACM*`"
DIALOUT_HINT = "add yourself to the dialout group: `sudo usermod -aG dialout $USER`, then log out and in again"


def is_url(name: str) -> bool:
    return "://" in name


def open_serial(name: str, baud: int = 9600, timeout: float = 0.0, exclusive: bool = True,
                quiet_lines: bool = False) -> serial.SerialBase:
    """Open name at baud 8N1 (non-blocking reads with timeout=0). Raises ToolError with a hint.

    exclusive: take an exclusive lock on a device, so two programs never share a ring.
    quiet_lines: keep DTR and RTS low (an ESP32 board's auto-reset circuit would otherwise reset it)."""
    if not is_url(name) and not os.path.exists(name):
        raise ToolError(f"{name} does not exist — {ADAPTER_HINT}", EXIT_PORT)
    try:
        ser = serial.serial_for_url(name, do_not_open=True, baudrate=baud, bytesize=serial.EIGHTBITS,
                                    parity=serial.PARITY_NONE, stopbits=serial.STOPBITS_ONE, timeout=timeout,
                                    write_timeout=2)
    except ValueError as e:  # unknown URL scheme, bad parameter
        raise ToolError(f"{name}: {e}", EXIT_PORT) from e
    if not is_url(name) and exclusive:
        ser.exclusive = True
    if quiet_lines:
        ser.dtr = False
        ser.rts = False
    try:
        ser.open()
    except serial.SerialException as e:
        raise port_error(name, e) from e
    return ser


def port_error(name: str, e: BaseException) -> ToolError:
    code = getattr(e, "errno", None)
    text = str(e)
    if code in (errno.EACCES, errno.EPERM):
        return ToolError(f"{name}: permission denied — {DIALOUT_HINT}", EXIT_PORT)
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return ToolError(f"{name} is busy: another program has it open (a serial monitor, mpremote, another "
                         f"packmon, ModemManager?) — `fuser -v {name}` shows which. If it is a permission "
                         f"problem instead: {DIALOUT_HINT}", EXIT_PORT)
    if code == errno.ENOENT:
        return ToolError(f"{name} does not exist — {ADAPTER_HINT}", EXIT_PORT)
    return ToolError(f"{name} cannot be opened: {text}", EXIT_PORT)


class SerialUart:
    """A pyserial port as the UART the hub's Ring expects: write(buf) and readinto(buf) -> count or None.

    Everything received since the last write is kept in rx_log, so a rejected answer can be explained."""

    def __init__(self, ser: serial.SerialBase) -> None:
        self.ser = ser
        self.rx_log = bytearray()
        self.bytes_in = 0
        self.bytes_out = 0

    def write(self, buf) -> int:
        data = bytes(buf)
        self.rx_log = bytearray()
        try:
            n = self.ser.write(data)
            self.ser.flush()
        except serial.SerialException as e:
            raise ToolError(f"{self.ser.name}: write failed ({e}) — was the adapter unplugged?", EXIT_PORT) from e
        self.bytes_out += len(data)
        return n if n is not None else len(data)

    def readinto(self, buf) -> int | None:
        try:
            data = self.ser.read(len(buf))
        except serial.SerialException as e:
            raise ToolError(f"{self.ser.name}: read failed ({e}) — was the adapter unplugged?", EXIT_PORT) from e
        if not data:
            return None
        k = len(data)
        buf[0:k] = data
        self.rx_log += data
        self.bytes_in += k
        return k

    def stop_bits(self, n: int) -> None:
        """Stop bits of what is sent from now on (the ring driver sends a SNAP with two, protocol.md 3.5)."""
        self.ser.flush()
        self.ser.stopbits = serial.STOPBITS_TWO if n == 2 else serial.STOPBITS_ONE

    def close(self) -> None:
        self.ser.close()
