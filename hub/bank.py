# The bank model: per pack the last good reading, when it was taken, its flags and error counters;
# bank aggregates over the packs whose readings are fresh.
#
# Everything is preallocated for max_packs; update() reads records straight out of the ring's receive
# buffer and allocates nothing. A pack whose reading is older than stale_after is stale: it is left out
# of the aggregates and never reported as fresh.
from hub import codec

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_RESET_FLAGS = const(0x1C)  # RESET_POWER | RESET_BROWNOUT | RESET_WATCHDOG
_NONE = const(-32768)


class Bank:
    def __init__(self, max_packs=64, stale_after_ms=30000):
        m = max_packs
        self.max_packs = m
        self.stale_after_ms = stale_after_ms
        self.n = 0  # packs in the ring as last enumerated/scanned
        self.mv = [0] * m  # last good pack voltage, mV (0 = unknown)
        self.temp = [_NONE] * m  # 0.1 degC
        self.flags = bytearray(m)
        self.seen = [0] * m  # ticks_ms of the last good reading
        self.have = bytearray(m)  # 1 once a reading arrived
        self.bad_raw = bytearray(m)  # the node's own counter, mod 256
        self.bad = [0] * m  # bad frames the node reported since the hub started
        self.scans_raw = bytearray(m)
        self.sent_at = [0] * m  # the ring's frame count when the last record of the pack arrived
        self.resets = [0] * m
        self.scans = 0  # good scans
        self.last_scan = 0  # ticks_ms of the last good scan
        self.ever_scanned = False
        # aggregates (compute())
        self.fresh = 0
        self.stale_count = 0
        self.first_stale = 0
        self.total_mv = 0
        self.min_mv = 0
        self.min_pack = 0
        self.max_mv = 0
        self.max_pack = 0
        self.avg_mv = 0
        self.temp_max = _NONE
        self.temp_max_pack = 0
        self.temp_min = _NONE
        self.temp_min_pack = 0
        self.complete = False  # every pack fresh with a voltage

    def resize(self, n):
        if n > self.max_packs:
            n = self.max_packs
        for i in range(n, self.n):
            self.have[i] = 0  # packs beyond the ring's end are gone: never report them again
        self.n = n

    def update(self, buf, nodes, now, sent=0):
        """Take the records of a good SCAN answer (in buf) as fresh readings taken at now. sent is the
        ring's count of frames sent so far (ring.sent): a node delivers at most one record per frame,
        so a scans counter that moved further than that (or not at all) means the node restarted."""
        if nodes > self.max_packs:
            nodes = self.max_packs
        o = codec.HEADER_SIZE
        for i in range(nodes):
            flags = buf[o + 1]
            scans = buf[o + 7]
            bad = buf[o + 6]
            if self.have[i]:
                gap = sent - self.sent_at[i]
                moved = (scans - self.scans_raw[i]) & 0xFF
                if (flags & _RESET_FLAGS and scans <= self.scans_raw[i]) or (
                    0 < gap < 256 and (moved == 0 or moved > gap)
                ):
                    # restarted: its latched reset flag may have been lost with a frame corrupted
                    # downstream of it (protocol.md 3.1), and its bad counter started again from 0
                    self.resets[i] += 1
                    self.bad[i] += bad
                else:
                    self.bad[i] += (bad - self.bad_raw[i]) & 0xFF
            elif flags & _RESET_FLAGS and self.ever_scanned:
                self.resets[i] += 1
            self.sent_at[i] = sent
            self.bad_raw[i] = bad
            self.scans_raw[i] = scans
            self.flags[i] = flags
            self.mv[i] = buf[o + 2] | (buf[o + 3] << 8)
            t = buf[o + 4] | (buf[o + 5] << 8)
            self.temp[i] = t - 0x10000 if t & 0x8000 else t
            self.seen[i] = now
            self.have[i] = 1
            o += codec.SLOT_SIZE
        self.scans += 1
        self.last_scan = now
        self.ever_scanned = True

    def age_ms(self, i, now, ticks_diff):
        if not self.have[i]:
            return -1
        return ticks_diff(now, self.seen[i])

    def is_stale(self, i, now, ticks_diff):
        return not self.have[i] or ticks_diff(now, self.seen[i]) > self.stale_after_ms

    def voltage_mv(self, i, now, ticks_diff):
        """The pack's voltage if fresh and valid, else 0."""
        if self.is_stale(i, now, ticks_diff) or self.flags[i] & codec.FLAG_VOLTAGE_FAULT:
            return 0
        return self.mv[i]

    def temperature(self, i, now, ticks_diff):
        """The pack's temperature (0.1 degC) if fresh and valid, else TEMP_NONE."""
        if self.is_stale(i, now, ticks_diff) or self.flags[i] & codec.FLAG_SENSOR_FAULT:
            return _NONE
        return self.temp[i]

    def compute(self, now, ticks_diff):
        """Aggregates over the fresh packs."""
        fresh = 0
        stale = 0
        total = 0
        mn = 0
        mnp = 0
        mx = 0
        mxp = 0
        tmax = _NONE
        tmaxp = 0
        tmin = _NONE
        tminp = 0
        first_stale = 0
        for i in range(self.n):
            mv = self.voltage_mv(i, now, ticks_diff)
            if self.is_stale(i, now, ticks_diff):
                stale += 1
                if not first_stale:
                    first_stale = i + 1
                continue
            if mv:
                fresh += 1
                total += mv
                if mnp == 0 or mv < mn:
                    mn = mv
                    mnp = i + 1
                if mxp == 0 or mv > mx:
                    mx = mv
                    mxp = i + 1
            t = self.temperature(i, now, ticks_diff)
            if t != _NONE:
                if tmaxp == 0 or t > tmax:
                    tmax = t
                    tmaxp = i + 1
                if tminp == 0 or t < tmin:
                    tmin = t
                    tminp = i + 1
        self.fresh = fresh
        self.stale_count = stale
        self.first_stale = first_stale
        self.total_mv = total
        self.min_mv = mn
        self.min_pack = mnp
        self.max_mv = mx
        self.max_pack = mxp
        self.avg_mv = (total + fresh // 2) // fresh if fresh else 0
        self.temp_max = tmax
        self.temp_max_pack = tmaxp
        self.temp_min = tmin
        self.temp_min_pack = tminp
        self.complete = self.n > 0 and fresh == self.n
