# The ring driver: send one request frame, read its answer back with a timeout, resync on garbage.
#
# Talks to anything UART-shaped: write(buf) and readinto(buf) -> count or None, as machine.UART
# has on the board (constructed with timeout=0) and as the host ports and the simulator provide.
# Nothing here allocates per frame: the transmit and receive buffers are made once.
from hub import codec

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_LAG_BYTES = const(4)  # per node: ~3 byte times of delay (firmware before 1.3; 1.1 since) plus margin, §5
_SLACK_MS = const(50)


class RingError(Exception):
    """A request that got no usable answer; .code is a codec.ERR_* value."""

    def __init__(self, code, detail=""):
        self.code = code
        self.name = codec.ERROR_NAMES[code]
        self.fault = 0
        super().__init__(self.name + (": " + detail if detail else ""))


class Ring:
    def __init__(self, uart, baud=9600, clock=None, max_nodes=codec.MAX_SLOTS):
        self.uart = uart
        self.baud = baud
        if clock is None:  # the system clock unless given another (tests pass a fake one)
            from hub.port import SystemClock

            clock = SystemClock()
        self.clock = clock
        self.max_nodes = max_nodes
        self.tx = bytearray(codec.MAX_FRAME)
        self.rx = bytearray(codec.MAX_FRAME + 64)
        self._chunk = bytearray(64)
        self._snap = bytearray(codec.SLOT_SIZE * codec.SNAP_CNT)  # SNAP's slots (the first its parameters), reused
        self._tx_view = None  # memoryview of the last request length, kept: slicing allocates
        self._tx_view_n = -1
        self.rx_len = 0
        self.seq = 0
        # counters the hub publishes: every rejected frame is counted by its reason
        self.sent = 0
        self.good = 0
        self.errors = [0] * len(codec.ERROR_NAMES)
        self.last_error = codec.OK
        self.last_fault = 0
        self.skipped = 0  # bytes discarded while hunting for SOF

    def timeout_ms(self, cnt, nodes=None):
        if nodes is None:
            nodes = self.max_nodes
        nbytes = codec.frame_len(cnt) + _LAG_BYTES * nodes
        return (nbytes * 10 * 1000) // self.baud + 1 + _SLACK_MS

    def _drain(self):
        # discard whatever is sitting in the UART (a late answer to an earlier request)
        while True:
            n = self.uart.readinto(self._chunk)
            if not n:
                return

    def request(self, cmd, addr=0, cnt=0, payload=None, nodes=None):
        """Send a request and wait for the matching answer. Returns the answer's length; the frame
        is in self.rx[0:len]. Raises RingError (counted) when no valid answer arrives in time."""
        self.seq = (self.seq + 1) & 0xFF
        n = codec.build(self.tx, cmd, self.seq, addr, cnt, payload)
        self._drain()
        if n != self._tx_view_n:
            self._tx_view = memoryview(self.tx)[0:n]
            self._tx_view_n = n
        self.uart.write(self._tx_view)
        self.sent += 1
        err = self._receive(n, self.timeout_ms(cnt, nodes))
        self.last_error = err
        if err:
            self.errors[err] += 1
            e = RingError(err, self._detail(err))
            e.fault = self.last_fault
            raise e
        self.good += 1
        return self.rx_len

    def _detail(self, err):
        if err == codec.ERR_RING_FAULT:
            f = self.last_fault
            if f == codec.FAULT_NO_ADDRESS:
                return "corrupted frame seen by a node without address"
            # firmware 1.3 (protocol 1.2) reports in the frame after the corrupted one, older firmware in it
            return "node %d reports a frame corrupted on the hop into it (from %s)" % (
                f, "the hub" if f == 1 else "node %d" % (f - 1))
        if err == codec.ERR_BAD_CRC and self.last_fault:
            # unverified: the frame failed its CRC; a hop that corrupts every frame is named only this way
            return "corrupted on the way; the frame names node %d, which found the frame before it corrupted on " \
                "the hop into it" % self.last_fault
        if err == codec.ERR_TIMEOUT:
            return "no complete answer (is the ring closed? hub TX -> node 1 RX ... node N TX -> hub RX)"
        return ""

    def _receive(self, want, timeout):
        clk = self.clock
        start = clk.ticks_ms()
        rx = self.rx
        have = 0
        last_err = codec.ERR_TIMEOUT
        self.last_fault = 0
        while True:
            k = self.uart.readinto(self._chunk)
            if k:
                room = len(rx) - have
                if k > room:
                    k = room
                chunk = self._chunk
                for j in range(k):  # a slice copy would allocate on MicroPython
                    rx[have + j] = chunk[j]
                have += k
                # hunt and parse as long as the buffer holds something to look at
                while have:
                    if rx[0] != codec.SOF:
                        i = 1
                        while i < have and rx[i] != codec.SOF:
                            i += 1
                        self.skipped += i
                        self._shift(i, have)
                        have -= i
                        continue
                    if have < codec.HEADER_SIZE:
                        break
                    if rx[4] > codec.MAX_SLOTS:
                        last_err = codec.ERR_TOO_MANY_SLOTS
                        self._shift(1, have)
                        have -= 1
                        continue
                    if rx[1] != self.tx[1] or rx[2] != self.tx[2] or rx[4] != self.tx[4]:
                        # not the answer to this request (noise that looked like SOF, or a late
                        # answer to an earlier one): its length field cannot be trusted
                        last_err = codec.ERR_MISMATCH
                        self._shift(1, have)
                        have -= 1
                        continue
                    flen = codec.frame_len(rx[4])
                    if have < flen:
                        break
                    err = codec.check(rx, flen)
                    if err == codec.OK:
                        self.rx_len = flen
                        return codec.OK
                    if err == codec.ERR_RING_FAULT:
                        self.last_fault = codec.fault_of(rx)
                    elif err == codec.ERR_BAD_CRC and not self.last_fault:
                        # a hint (protocol 1.2: the report of the frame before, in a frame that failed too)
                        f = codec.fault_of(rx)
                        if 0 < f <= codec.MAX_SLOTS:
                            self.last_fault = f
                    if err in (codec.ERR_RING_FAULT, codec.ERR_INCONSISTENT, codec.ERR_SLOT_OVERFLOW,
                               codec.ERR_UNKNOWN_COMMAND):
                        # a well-formed frame (good CRC) that says something is wrong: final
                        self._shift(flen, have)
                        self.rx_len = 0
                        return err
                    # bad CRC or mismatch: this SOF may have been noise; look for the next one
                    last_err = err
                    self._shift(1, have)
                    have -= 1
            if clk.ticks_diff(clk.ticks_ms(), start) >= timeout:
                if have and last_err == codec.ERR_TIMEOUT:
                    last_err = codec.ERR_TRUNCATED
                return last_err
            if not k:
                clk.sleep_ms(1)

    def _shift(self, k, have):
        rx = self.rx
        for j in range(have - k):
            rx[j] = rx[j + k]

    # -- the commands ----------------------------------------------------------------------

    def enumerate(self):
        """ENUMERATE the ring; returns the node count."""
        self.request(codec.CMD_ENUMERATE, 0, 0)
        n = self.rx[3]
        if n > self.max_nodes:
            raise RingError(codec.ERR_INCONSISTENT, "%d nodes answer, at most %d are supported" % (n, self.max_nodes))
        return n

    def scan(self, n):
        """SCAN n slots; returns the number of nodes that answered (records are read in place with
        codec.slot(i) and codec.rec_*(ring.rx, offset))."""
        self.request(codec.CMD_SCAN, 0, n, None, n)
        return codec.nodes_of(self.rx)

    def snap(self, n, delay, hop256):
        """SNAP (docs/protocol.md 3.5): every node samples `delay` ticks (1/38400 s) after the frame ended at
        node 1, a node waiting delay - ELAPSED/256, ELAPSED being the hops before it (hop256 each, in 1/256
        tick, corrected for each node's clock). Sent with two stop bits, where the UART can (stop_bits): the
        nodes time their clocks by its bytes. Returns the snapshot's number (this SEQ); the ring must stay
        quiet until the nodes have measured."""
        p = self._snap
        p[0] = delay & 0xFF
        p[1] = (delay >> 8) & 0xFF
        p[2] = hop256 & 0xFF
        p[3] = (hop256 >> 8) & 0xFF
        p[5] = codec.SNAP_ELAPSED0
        stop = getattr(self.uart, "stop_bits", None)
        if stop:
            stop(codec.SNAP_STOP_BITS)
        try:
            self.request(codec.CMD_SNAP, 0, codec.SNAP_CNT, p, n)
        finally:
            if stop:
                stop(1)
        return self.seq

    def snapread(self, n):
        """SNAPREAD n slots; returns NODES. Slot i holds position i+1's SNAPSHOT record, or is empty (codec.slot,
        codec.rec_*; rec_scans is the SEQ of the SNAP the values belong to)."""
        self.request(codec.CMD_SNAPREAD, 0, n, None, n)
        return codec.nodes_of(self.rx)

    def addressed(self, cmd, addr, payload=None, nodes=None):
        """INFO/READ/WRITE/IDENTIFY to one node; returns True when the node executed it (DONE)."""
        cnt = 0 if cmd == codec.CMD_IDENTIFY else 1
        self.request(cmd, addr, cnt, payload, nodes)
        return codec.done_of(self.rx)
