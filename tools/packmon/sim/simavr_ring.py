"""A ring of real node firmware images in simavr, behind the same interface as ModelRing.

The C harness (tools/simavr/ring_harness.c) runs N ATtiny85 cores in lockstep and plays the hub's
UART; this class drives it over a pipe. Build products land in node_fw/build and tools/simavr/build
and are made on first use.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .clocks import ClockSpread
from .model_ring import Exchange

RESET_CAUSES = {"power": "por", "external": "ext", "brownout": "bor", "watchdog": "wdt"}


@dataclass
class SimExchange(Exchange):
    """An Exchange with what the harness saw on the wires: per_hop_bytes[0] is what the hub sent,
    per_hop_bytes[k] what node k transmitted (as ModelRing fills it); framing_errors counts the
    bytes the hub received with a low stop bit."""

    framing_errors: int = 0

ROOT = Path(__file__).resolve().parents[3]
FW_DIR = ROOT / "node_fw"
HARNESS_DIR = ROOT / "tools" / "simavr"
ELF = FW_DIR / "build" / "sim-8000000" / "node.elf"
HARNESS = HARNESS_DIR / "build" / "ring_harness"
F_CPU = 8000000  # the bare ATtiny85 image; 16500000 runs the Digispark image (same sources, F_CPU-derived timing)


def elf_for(f_cpu: int = F_CPU, trim: bool = True) -> Path:
    return FW_DIR / "build" / f"sim-{int(f_cpu)}{'' if trim else '-notrim'}" / "node.elf"


INSTALL = "apt-get install gcc-avr binutils-avr avr-libc simavr libsimavr-dev libelf-dev make gcc"


def _has_lib(name: str) -> bool:
    import ctypes.util

    if ctypes.util.find_library(name):
        return True
    return any(Path(d).glob(f"lib{name}.so*") for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
                                                          "/usr/lib/aarch64-linux-gnu", "/usr/local/lib"))


def available() -> tuple[bool, str]:
    """Whether this machine can build and run the simavr ring, and if not, why (for pytest skips)."""
    for tool, pkg in (("avr-gcc", "gcc-avr"), ("avr-objcopy", "binutils-avr"), ("make", "make"), ("cc", "gcc")):
        if not shutil.which(tool):
            return False, f"{tool} not found ({pkg}; {INSTALL})"
    if not (Path("/usr/lib/avr/include/avr/io.h").exists() or Path("/usr/avr/include/avr/io.h").exists()):
        return False, f"avr-libc headers not found ({INSTALL})"
    if not Path("/usr/include/simavr/sim_avr.h").exists():
        return False, f"simavr headers not found (libsimavr-dev; {INSTALL})"
    for lib, pkg in (("simavr", "libsimavr-dev"), ("elf", "libelf-dev")):
        if not _has_lib(lib):
            return False, f"lib{lib} not found ({pkg}; {INSTALL})"
    return True, ""


def build(f_cpu: int = F_CPU, trim: bool = True) -> None:
    """Build the simulation image of the firmware for f_cpu and the harness (quick when up to date)."""
    for args in (["make", "-s", "-C", str(FW_DIR), "SIM=1", f"F_CPU={int(f_cpu)}", f"TRIM={int(trim)}"],
                 ["make", "-s", "-C", str(HARNESS_DIR)]):
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{r.stdout}{r.stderr}")


# -- what the firmware reports for a given truth (docs/node_fw.md; simavr's ADC scales by 1023) --
def adc_bandgap(vcc_mv: int) -> int:
    return min(1023, 1100 * 1023 // vcc_mv)


def expected_mv(vcc_mv: int, vref01: int = 11000) -> int:
    """The mV a node reports in simavr for a pack at vcc_mv (what the ADC resolution allows)."""
    s = 16 * adc_bandgap(vcc_mv)
    return (16384 * vref01 + 5 * s) // (10 * s)


def temp_adc(temp_dc: int) -> int:
    return round(300 + (temp_dc - 250) * 70 / 650)


def temp_sensor_mv(temp_dc: int) -> float:
    """The ADC4 input (mV against the 1.1 V reference) that makes the firmware read temp_dc."""
    return (temp_adc(temp_dc) + 0.5) * 1100 / 1023


def expected_temp(temp_dc: int, offset: int = 0) -> int:
    s = 16 * temp_adc(temp_dc)
    num = (s - 4800) * 650
    q = (num + 560) // 1120 if num >= 0 else -((-num + 560) // 1120)
    return 250 + q + offset


def fifo_symbols(elf: Path) -> tuple[int, int, int] | None:
    """(size, data address of tx_head, of tx_tail) from the image's symbols, or None without avr-nm."""
    if not shutil.which("avr-nm"):
        return None
    out = subprocess.run(["avr-nm", "-S", str(elf)], capture_output=True, text=True).stdout
    addr: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[3] in ("tx_head", "tx_tail", "tx_fifo"):
            addr[f[3]] = (int(f[0], 16) & 0xFFFF, int(f[1], 16))
    if len(addr) != 3:
        return None
    return addr["tx_fifo"][1], addr["tx_head"][0], addr["tx_tail"][0]


def default_osccal(src_hz: int) -> int:
    """The factory OSCCAL the harness gives its chips: where the typical curve gives the nominal RC
    frequency (8 MHz; 8.25 MHz under the Digispark's PLL, in the upper range, where micronucleus may
    leave it)."""
    return 0x8C if src_hz == 16500000 else 0x48


@dataclass
class NodeClock:
    hz: float
    osccal: int
    osccal_writes: int
    max_step: float  # largest relative frequency change of one OSCCAL write
    clkps: int


@dataclass
class NodeStats:
    """One node's counters (since the harness started; subtract two snapshots for an interval).

    cycles: CPU cycles simulated while the node was in the ring; sleep_cycles: those spent in
    SLEEP_MODE_IDLE (simavr's cpu_Sleeping); bytes_out: bytes decoded on its TX wire;
    framing_out: those of them with a low stop bit; led_edges: level changes of its LED pin."""

    cycles: int
    sleep_cycles: int
    bytes_out: int
    framing_out: int = 0
    active: bool = True
    led_edges: int = 0

    @property
    def awake_cycles(self) -> int:
        return self.cycles - self.sleep_cycles

    @property
    def idle_fraction(self) -> float:
        return self.sleep_cycles / self.cycles if self.cycles else 0.0

    @property
    def cycles_per_byte(self) -> float:
        """Awake cycles per forwarded byte (includes the idle-time overhead of the interval)."""
        return self.awake_cycles / self.bytes_out if self.bytes_out else float("inf")

    def __sub__(self, other: NodeStats) -> NodeStats:
        return NodeStats(self.cycles - other.cycles, self.sleep_cycles - other.sleep_cycles,
                         self.bytes_out - other.bytes_out, self.framing_out - other.framing_out, self.active,
                         self.led_edges - other.led_edges)


class SimavrRing:
    """N real node images in simavr. Same interface as ModelRing (see model_ring.py)."""

    def __init__(self, n: int, mv: list[int] | int = 3300, temp: list[int] | int = 250, baud: int = 9600,
                 ber: float = 0.0, seed: int = 1, f_cpu: int = F_CPU, clocks: ClockSpread | None = None,
                 src_hz: int | None = None, osccal0: int | None = None, trim: bool = True) -> None:
        """clocks: each node's factory clock error, OSCCAL slope and each hop's coupler delays
        (sim/clocks.py); src_hz: the clock source before CLKPR (16500000 for the Digispark image built
        at F_CPU=8250000, which halves it at start); osccal0: the OSCCAL value the chips load at reset;
        trim=False runs the image built without the clock trim (make TRIM=0)."""
        if baud != 9600:
            raise ValueError("the firmware image is built for 9600 baud")
        ok, why = available()
        if not ok:
            raise RuntimeError(f"simavr ring unavailable: {why}")
        build(f_cpu, trim)
        self.f_cpu = int(f_cpu)
        self.trim = trim
        self._symbols: dict[str, int] | None = None  # the image's static variables' addresses (avr-nm)
        self.baud = baud
        self.ber = ber
        self._broken = False
        self._total = n
        self._active = list(range(n))
        import random

        self.rng = random.Random(seed)
        src = int(src_hz or f_cpu)
        cal = osccal0 if osccal0 is not None else default_osccal(src)
        self.proc = subprocess.Popen(
            [str(HARNESS), str(elf_for(f_cpu, trim)), str(n), str(int(f_cpu)), str(src), str(cal)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        line = self._readline()
        while line.startswith("Loaded"):  # simavr's ELF loader reports on stdout
            line = self._readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"harness did not start: {line!r}")
        self.truth_mv = [0] * n
        self.truth_temp = [0] * n
        mvs = mv if isinstance(mv, list) else [mv] * n
        temps = temp if isinstance(temp, list) else [temp] * n
        self.clocks = clocks
        syms = fifo_symbols(elf_for(f_cpu, trim))
        if syms:
            self._cmd(f"FIFO {syms[0]} {syms[1]} {syms[2]}")
        if clocks is not None:
            if len(clocks.err_ppm) != n:
                raise ValueError("clocks must describe every node")
            self._cmd(f"DRIFT {clocks.kv_ppm:.1f} {clocks.kt_ppm:.1f}")
            for i in range(n):
                self._cmd(f"CLOCK {i} {clocks.err_ppm[i]:.1f} {clocks.slope[i]:.4f}")
            for hop in range(n + 1):
                rise, fall = clocks.edge_us(hop)
                self._cmd(f"EDGE {hop} {rise:.3f} {fall:.3f}")
        for i in range(n):
            self._set(i, mvs[i], temps[i])
        self._cmd("RUN 250")  # let every node measure its new values

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"simavr harness exited (status {self.proc.poll()})")
        return line.strip()

    def _cmd(self, text: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        reply = self._readline()
        if reply.startswith("ERR"):
            raise RuntimeError(f"harness: {reply}")
        return reply

    def _set(self, phys: int, mv: int | None, temp: int | None) -> None:
        if mv is not None:
            self.truth_mv[phys] = mv
            self._cmd(f"VCC {phys} {mv}")
        if temp is not None:
            self.truth_temp[phys] = temp
            self._cmd(f"TEMPMV {phys} {temp_sensor_mv(temp):.3f}")
            self._cmd(f"TEMPC {phys} {temp / 10:.1f}")

    # -- the engine interface (indices are positions in the ring as it is now) ---------------------
    @property
    def n(self) -> int:
        return len(self._active)

    @property
    def broken(self) -> bool:
        return self._broken

    @broken.setter
    def broken(self, value: bool) -> None:
        self._broken = bool(value)
        self._cmd(f"BREAK {int(self._broken)}")

    def set_pack(self, i: int, mv: int | None = None, temp: int | None = None) -> None:
        self._set(self._active[i], mv, temp)

    def reset_node(self, i: int, cause: str = "power") -> None:
        """Node i restarts with MCUSR telling `cause`: power, external, brownout or watchdog."""
        if cause not in RESET_CAUSES:
            raise ValueError(f"reset cause must be one of {sorted(RESET_CAUSES)}")
        self._cmd(f"RESET {self._active[i]} {RESET_CAUSES[cause]}")
        self._cmd("RUN 100")

    def remove_node(self, i: int) -> None:
        phys = self._active.pop(i)
        self._cmd(f"REMOVE {phys}")

    def insert_node(self, i: int) -> None:
        missing = sorted(set(range(self._total)) - set(self._active))
        if not missing:
            raise ValueError("no removed node to insert")
        phys = missing[0]
        self._active.insert(i, phys)
        self._cmd(f"INSERT {phys}")
        self._cmd("RUN 100")

    def pin_mode(self, mode: str) -> None:
        """"auto" (default): RX levels are written into PINB while the firmware listens for no edge on
        PB2 (2-3x faster while frames stream); "irq": always through simavr's pin IRQ."""
        if mode not in ("auto", "irq"):
            raise ValueError("pin mode is 'auto' or 'irq'")
        self._cmd(f"PINS {mode}")

    def run(self, ms: float) -> None:
        self._cmd(f"RUN {ms}")

    def _noisy(self, data: bytes) -> bytes:
        if not self.ber:
            return data
        out = bytearray(data)
        for k in range(len(out)):
            for b in range(8):
                if self.rng.random() < self.ber:
                    out[k] ^= 1 << b
        return bytes(out)

    def glitch(self, us: float) -> None:
        """The hub's line goes low for us microseconds, then back to idle (noise on a quiet ring)."""
        self._cmd(f"GLITCH {us}")

    def exchange(self, tx: bytes, framing_error_at: int | None = None,
                 gap: tuple[int, float] | None = None, stop_bits: int = 1) -> SimExchange:
        """Send tx from the hub (byte framing_error_at, if given, with a low stop bit) and collect what
        comes back once the line into the hub has been quiet for 30 byte times. gap=(pos, bits): the
        hub's line idles for `bits` bit times before byte pos (e.g. between two frames in tx). stop_bits=2:
        11 bit times a byte, as the hub sends a SNAP (docs/protocol.md 3.5)."""
        tx = self._noisy(tx)
        max_ms = (len(tx) + 4 * self._total) * (9 + stop_bits) * 1000 / self.baud + 100
        if stop_bits != 1:
            self._cmd(f"STOP {int(stop_bits)}")
        if gap is not None:
            self._cmd(f"GAP {int(gap[0])} {float(gap[1]):.4f}")
            max_ms += gap[1] * 1000 / self.baud
        fe = "" if framing_error_at is None else f" {int(framing_error_at)}"
        reply = self._cmd(f"TX {tx.hex() or '00'} {max_ms:.1f}{fe}")
        fields = reply.split()
        if fields[0] != "RX" or len(fields) < 5:
            raise RuntimeError(f"harness: unexpected reply {reply!r}")
        _, hexdata, seconds, framing, hops = fields[:5]
        rx = b"" if hexdata == "-" else bytes.fromhex(hexdata)
        return SimExchange(self._noisy(rx), float(seconds), [int(h) for h in hops.split(",")], int(framing))

    def clock_state(self) -> tuple[list[NodeClock], int]:
        """Each node's clock now (frequency, OSCCAL, OSCCAL writes, largest single step, CLKPR) and
        the pulses the couplers swallowed so far."""
        head = self._cmd("FREQ").split()
        out = []
        for _ in range(int(head[1])):
            _, hz, osccal, writes, step, clkps = self._readline().split()
            out.append(NodeClock(float(hz), int(osccal), int(writes), int(float(step)) / 1e6, int(clkps)))
        return out, int(head[2])

    def traced_exchange(self, tx: bytes, pos: int) -> tuple[SimExchange, list[tuple[float, int]]]:
        """exchange(tx), recording the TX wire of the node at ring position pos: its level changes as
        (seconds from the start of this TX, level 0/1)."""
        self._cmd(f"TRACE {self._active[pos]}")
        ex = self.exchange(tx)
        f = self._cmd("TRACE -1").split()[2:]
        edges = [(int(t) / self.f_cpu, int(v)) for t, v in (e.split(":") for e in f)]
        return ex, [(t, v) for t, v in edges if v in (0, 1)]

    def _symbol(self, name: str) -> int | None:
        """The data-space address of a static variable of the image (avr-nm), None if it has none."""
        if self._symbols is None:
            r = subprocess.run(["avr-nm", str(elf_for(self.f_cpu, self.trim))], capture_output=True, text=True)
            self._symbols = {f[2]: int(f[0], 16) & 0xFFFF for f in map(str.split, r.stdout.splitlines())
                             if len(f) == 3 and f[1] in "bBdD"}
        return self._symbols.get(name)

    def effective_clocks(self) -> list[float]:
        """Each node's soft-UART bit rate against the hub's (0.01 = 1 % fast), in ring order: its CPU clock
        (OSCCAL) with the tick's dither (1/96 Timer0 count a tick, node_fw/src/softuart.c) as it is now. This is
        the clock a snapshot's wait runs on and the rate its TX sends at; clock_state()'s frequency alone leaves
        out the dither (up to +-3.7 %). The image without the trim has no dither."""
        from .trim_model import DITHER_ONE

        state, _ = self.clock_state()
        addr = self._symbol("softuart_dither") if self.trim else None
        tick = (self.f_cpu // 8 + self.baud * 2) // (self.baud * 4)  # Timer0 counts a tick (board.h TICK_COUNTS)
        out = []
        for phys in self._active:
            d = 0
            if addr is not None:
                raw = int(self._cmd(f"PEEK {phys} {addr} 1").split()[1], 16)
                d = raw - 256 if raw > 127 else raw
            bit_s = 4 * 8 * (tick + d / DITHER_ONE) / state[phys].hz  # FREQ: the CPU clock, after CLKPR
            out.append(1 / (self.baud * bit_s) - 1)
        return out

    def wires(self) -> list[bytes]:
        """The bytes each node transmitted during the last exchange, in ring order (a byte with a low
        stop bit appears inverted)."""
        head = self._cmd("WIRES")
        logs = {}
        for _ in range(int(head.split()[1])):
            f = self._readline().split()
            logs[int(f[0])] = bytes.fromhex(f[1]) if len(f) > 1 else b""
        return [logs[p] for p in self._active]

    def adc_starts(self, last: int = 36) -> list[list[float]]:
        """Start times of each node's last `last` ADC conversions (seconds of hub time from the start of the
        last exchange; simavr reports a conversion when the firmware sets ADSC), in ring order."""
        head = self._cmd(f"ADCT {int(last)}")
        got = {}
        for _ in range(int(head.split()[1])):
            f = self._readline().split()
            got[int(f[0])] = [float(x) for x in f[2:]]
        return [got[p] for p in self._active]

    def fifo_hwm(self) -> list[int]:
        """Each node's TX FIFO high-water mark (bytes waiting) since the last call, physical order."""
        return [int(v) for v in self._cmd("HWM").split()[1:]]

    def stats(self) -> list[NodeStats]:
        head = self._cmd("STATS")
        count = int(head.split()[1])
        out = []
        for _ in range(count):
            _, cycles, sleep, nbytes, framing, active, led = self._readline().split()
            out.append(NodeStats(int(cycles), int(sleep), int(nbytes), int(framing), active == "1", int(led)))
        return out

    def node_stats(self) -> list[NodeStats]:
        """stats() in ring order (the nodes wired in now), like the engine's other indices."""
        s = self.stats()
        return [s[p] for p in self._active]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("QUIT\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SimavrRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


__all__ = ["NodeStats", "SimExchange", "SimavrRing", "available", "build", "expected_mv", "expected_temp"]
