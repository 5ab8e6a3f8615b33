# The bank snapshot on the hub (docs/protocol.md 3.5): every pack sampled at one instant, the shunt read
# at that instant, so the per-pack resistance (hub/health.py, dV/dI at current steps) sees every pack's
# voltage with the current that was flowing then.
#
# Once a cycle, after the SCAN (which keeps addresses, flags and the regular readings as without snapshots):
#   SNAP (DELAY = (N-1) HOP + margin) -> wait for the instant -> read the shunt -> wait for the nodes'
#   measurement -> SNAPREAD.
# A position whose slot comes back empty, or holds another SNAP's values, did not take this snapshot
# (a reset node, a SNAP lost on the way): it is marked so (ok[i] = 0), named on <prefix>/error when the
# set of such positions changes, and its regular reading is never used as a snapshot value. A SNAP or
# SNAPREAD lost to noise is retried twice (a corrupted frame, then the one that reports where, protocol.md
# §4); then the snapshot is reported lost for the cycle (valid False), never replaced by older values.
# Before its first snapshot of a ring, and again after an ENUMERATE, a node's reset or a new pack count, the
# hub reads every node's firmware version with INFO: a node before 1.4 neither times the SNAP by its bytes nor
# adds its hop to ELAPSED (protocol.md §3.5), so the nodes after it would sample a hop or more off, and the hub
# refuses snapshots on such a ring, naming the positions, rather than present readings as simultaneous that are
# not.
# Loaded only when enabled (hub.features); nothing here allocates per cycle but the error text on a change.
from array import array

from hub import codec
from hub.ring import RingError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MARGIN_TICKS = const(154)  # ~4 ms after the frame ended at the last node (its tail out, its loop free)
_MEASURE_MS = const(6)  # a node's measurement: 36 conversions, ~4 ms at 8 MHz, plus margin
_RETRY = (codec.ERR_BAD_CRC, codec.ERR_TRUNCATED, codec.ERR_BAD_SOF, codec.ERR_TIMEOUT, codec.ERR_MISMATCH,
          codec.ERR_RING_FAULT, codec.ERR_BAD_LENGTH, codec.ERR_TOO_MANY_SLOTS)


class Snapshot:
    def __init__(self, max_packs, hop_us, baud=9600):
        self.mv = array("i", bytes(4 * max_packs))  # the snapshot's voltages, where ok
        self.ok = bytearray(max_packs)  # 1: this position took this snapshot
        self.hop256 = (hop_us * 38400 * 256 + 500000) // 1000000  # HOP in 1/256 tick
        self.baud = baud
        self.n = 0
        self.seq = -1
        self.valid = False  # this cycle's snapshot was taken (some positions may still lack it: ok)
        self.missing = 0  # positions without it this cycle
        self.taken = 0
        self.lost = 0
        self._said = -1  # signature of the missing set last reported
        self.problem = ""
        self.fw_n = -1  # the pack count whose firmware versions were read (-1: not yet)
        self.fw_sig = -1  # enumerations + resets seen when they were read (step(): read again when it moves)
        self.old = ""  # positions running firmware before 1.4 ("" none): snapshots refused

    def _check_firmware(self, ring, n, feed):
        """True when every position answered INFO (self.old: those before firmware 1.4); repeated next cycle if
        not."""
        import sys

        from hub import snapshot_fw  # only for the check: the board's heap is small

        problem, old = snapshot_fw.check(ring, n, feed, _RETRY)
        sys.modules.pop("hub.snapshot_fw", None)
        if problem:
            self.problem = problem
            return False
        self.fw_n = n
        self.old = old
        return True

    def delay_ticks(self, n):
        return ((n - 1) * self.hop256 >> 8) + _MARGIN_TICKS if n > 0 else _MARGIN_TICKS

    def take(self, ring, n, clock, at_instant, feed=None):
        """One snapshot of n packs. at_instant(): called at the sample instant (the shunt read). Returns True
        when the snapshot came back (self.ok tells which positions took it)."""
        self.valid = False
        self.n = n
        for i in range(n):
            self.ok[i] = 0
        warm = self.fw_n != n  # the ring was (re)started: enumerated, a node reset, a new pack count
        if warm and not self._check_firmware(ring, n, feed):
            self.lost += 1
            at_instant()  # the shunt is still read once in the cycle
            return False
        if self.old:
            self.problem = "ring: snapshots refused: position(s) %s run firmware before 1.4, which cannot time the " \
                "snapshot (docs/protocol.md §3.5); update them: no simultaneous readings" % self.old
            at_instant()
            return False
        delay = self.delay_ticks(n)
        # the instant is DELAY after the frame ended at node 1, about when the hub's last byte ended
        # (the SNAP's bytes take 11 bit times: two stop bits)
        lead = (codec.frame_len(codec.SNAP_CNT) * (9 + codec.SNAP_STOP_BITS) * 1000 + self.baud - 1) // self.baud + \
            (delay * 1000 + 38399) // 38400
        if warm:
            # a node adds its own clock's correction to ELAPSED only once it has timed a SNAP (protocol.md 3.5):
            # after a start, one SNAP whose snapshot is not used (the next SNAP replaces it at the nodes)
            try:
                ring.snap(n, delay, self.hop256)
            except RingError:
                pass
            clock.sleep_ms(lead + _MEASURE_MS)
        seq = -1
        for _ in range(3):  # a corrupted SNAP, the frame that reports where, then a clean one (protocol.md §4)
            t0 = clock.ticks_ms()
            try:
                seq = ring.snap(n, delay, self.hop256)
                break
            except RingError as e:
                if e.code not in _RETRY:
                    break
                # the SNAP may have reached some nodes: the retry (a new SEQ) replaces what they scheduled
        left = lead - clock.ticks_diff(clock.ticks_ms(), t0)
        if left > 0:
            clock.sleep_ms(left)
        at_instant()
        if seq < 0:
            self.lost += 1
            self.problem = "ring: snapshot lost (SNAP failed 3 times); no simultaneous readings this cycle"
            return False
        clock.sleep_ms(_MEASURE_MS)
        try:
            tries = 0
            while True:  # the nodes keep their snapshot: a read lost to noise can be repeated
                try:
                    ring.snapread(n)
                    break
                except RingError as e:
                    tries += 1
                    if e.code not in _RETRY or tries > 2:
                        raise
        except RingError as e:
            self.lost += 1
            self.problem = "ring: snapshot %d lost (SNAPREAD failed: %s); no simultaneous readings this cycle" % (
                seq, e)
            return False
        rx = ring.rx
        missing = 0
        sig = 0
        for i in range(n):
            o = codec.slot(i)
            if rx[o] == i + 1 and rx[o + 7] == seq and not rx[o + 1] & codec.FLAG_VOLTAGE_FAULT:
                self.ok[i] = 1
                self.mv[i] = codec.rec_mv(rx, o)
            else:
                missing += 1
                sig = (sig * 31 + i + 1) & 0x3FFFFFFF
        self.seq = seq
        self.missing = missing
        self.valid = True
        self.taken += 1
        if missing == 0:
            self.problem = ""
        elif sig != self._said:
            self.problem = "ring: snapshot: %d of %d positions did not take it (%s): a reset or a lost SNAP; " \
                "their readings are not simultaneous" % (missing, n, self.missing_text())
        self._said = sig if missing else -1
        return True

    def missing_text(self):
        out = []
        for i in range(self.n):
            if not self.ok[i]:
                out.append(str(i + 1))
        return ", ".join(out)


def start(hub):
    cfg = hub.cfg
    hub.snap = Snapshot(cfg["max_packs"], cfg["snapshot"]["hop_us"], cfg["uart"]["baud"])


def step(hub, now, at_instant):
    """The hub's cycle, after a good SCAN: the snapshot, with at_instant() (the shunt read) at its instant. A
    new problem goes to <prefix>/error once."""
    s = hub.snap
    before = s.problem
    # the firmware versions again after an ENUMERATE or a node's reset: a node may have been swapped
    sig = hub.enumerations
    for r in hub.bank.resets:
        sig += r
    if sig != s.fw_sig:
        s.fw_sig = sig
        s.fw_n = -1
    s.take(hub.ring, hub.bank.n, hub.port.clock, at_instant, hub.port.feed_watchdog)
    if s.problem and (s.problem != before or not (s.valid or s.old)):  # a refusal is said once
        hub._error(now, s.problem)
    elif before and not s.problem:
        hub.log("info", "ring: snapshot taken by every position again")
