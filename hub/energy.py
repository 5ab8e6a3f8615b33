# Energy counters from the shunt: Wh and Ah, in (charging) and out (discharging), lifetime and daily.
#
#   e = Energy()
#   store.register("energy", e)          # hub/persist.py: kept across a reset (snapshot/restore)
#   e.update(hub.shunt, hub.bank, port.wall_time())   # once per cycle, after the shunt read
#
# The charge comes from the shunt (dq_mas, net over the interval, + = in); the voltage from the packs
# the nodes report (bank.total_mv, only when every pack is fresh): never the chip's own bus voltage,
# which a low-side shunt does not see. A cycle with charge but no complete bank voltage adds to the Ah
# counters and not to the Wh ones (counted in wh_gaps): a guessed voltage would be a guessed energy.
# The split into in/out is per interval: charge that goes in and out within one interval (a load
# switching faster than the scan) counts as its net.
#
# Units: mWh and mAh integers, with the remainders kept (in 10 uW*s and mA*s), so nothing is lost to
# rounding. Everything in update() stays below 2**30 and allocates nothing.
#
# Daily counters belong to a UTC day from the wall clock (NTP on the board). Until the time is known,
# only the lifetime counters advance and `day` is None; a new day starts the daily counters at 0.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MWH = const(360000)  # 1 mWh = 3.6 W*s = 360000 x 10 uW*s
_CHUNK = const(1 << 24)  # mA*s per multiplication step: 2^14 x 2^15 (10 mV units) stays below 2^30


class Energy:
    def __init__(self):
        self.in_mwh = 0
        self.out_mwh = 0
        self.in_mah = 0
        self.out_mah = 0
        self.rem_in_e = 0  # 10 uW*s not yet a whole mWh
        self.rem_out_e = 0
        self.rem_in_q = 0  # mA*s not yet a whole mAh
        self.rem_out_q = 0
        self.day = None  # days since 2000-01-01 (UTC) of the daily counters; None: time unknown
        self.d_in_mwh = 0
        self.d_out_mwh = 0
        self.d_in_mah = 0
        self.d_out_mah = 0
        self.wh_gaps = 0  # intervals with charge but no complete bank voltage (not in the Wh counters)
        self.changed = False  # set by update() when a counter moved: the hub tells its store

    # -- persistence (hub/persist.py) ----------------------------------------------------------------
    def snapshot(self):
        return {
            "in_mwh": self.in_mwh, "out_mwh": self.out_mwh, "in_mah": self.in_mah, "out_mah": self.out_mah,
            "rem": [self.rem_in_e, self.rem_out_e, self.rem_in_q, self.rem_out_q],
            "day": self.day, "d_in_mwh": self.d_in_mwh, "d_out_mwh": self.d_out_mwh,
            "d_in_mah": self.d_in_mah, "d_out_mah": self.d_out_mah, "wh_gaps": self.wh_gaps,
        }

    def restore(self, d):
        vals = {}
        for k in ("in_mwh", "out_mwh", "in_mah", "out_mah", "d_in_mwh", "d_out_mwh", "d_in_mah", "d_out_mah",
                  "wh_gaps"):
            v = d.get(k, 0)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError("energy.%s is not a count: %r" % (k, v))
            vals[k] = v
        rem = d.get("rem", [0, 0, 0, 0])
        if not isinstance(rem, list) or len(rem) != 4:
            raise ValueError("energy.rem must be a list of 4")
        day = d.get("day")
        if day is not None and (not isinstance(day, int) or day < 0):
            raise ValueError("energy.day must be a day number or null")
        for k in vals:  # only now, so a half-bad section restores nothing
            setattr(self, k, vals[k])
        self.rem_in_e = rem[0] % _MWH
        self.rem_out_e = rem[1] % _MWH
        self.rem_in_q = rem[2] % 3600
        self.rem_out_q = rem[3] % 3600
        self.day = day

    # -- one interval ----------------------------------------------------------------------------------
    def update(self, shunt, bank, wall_s):
        """Adds the shunt's last interval (when its reading is good) to the counters."""
        self.changed = False
        if wall_s is not None:
            d = wall_s // 86400
            if d != self.day:
                self.day = d
                self.d_in_mwh = 0
                self.d_out_mwh = 0
                self.d_in_mah = 0
                self.d_out_mah = 0
                self.changed = True
        if shunt is None or not shunt.ok:
            return
        dq = shunt.dq_mas
        if dq == 0:
            return
        self.changed = True
        daily = wall_s is not None
        x = dq if dq > 0 else -dq
        # Ah
        if dq > 0:
            t = self.rem_in_q + x
            self.rem_in_q = t % 3600
            q = t // 3600
            self.in_mah += q
            if daily:
                self.d_in_mah += q
        else:
            t = self.rem_out_q + x
            self.rem_out_q = t % 3600
            q = t // 3600
            self.out_mah += q
            if daily:
                self.d_out_mah += q
        # Wh: x (mA*s) times the bank voltage (10 mV units) in 10 uW*s
        if not bank.complete:
            self.wh_gaps += 1
            return
        v = bank.total_mv // 10
        rem = self.rem_in_e if dq > 0 else self.rem_out_e
        q = 0
        while x:
            c = x if x < _CHUNK else _CHUNK
            x -= c
            hi = c >> 10
            lo = c & 1023
            a = hi * v  # units of 1024 x 10 uW*s
            rem += lo * v
            q += (a // _MWH) * 1024
            rem += (a % _MWH) * 1024
            q += rem // _MWH
            rem = rem % _MWH
        if dq > 0:
            self.rem_in_e = rem
            self.in_mwh += q
            if daily:
                self.d_in_mwh += q
        else:
            self.rem_out_e = rem
            self.out_mwh += q
            if daily:
                self.d_out_mwh += q


def civil(day):
    """(year, month, day) of a day number counted from 2000-01-01 (H. Hinnant's days_from_civil
    inverse, integers only)."""
    z = day + 10957 + 719468  # days since 1970-01-01, then since 0000-03-01
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d
