# Per-pack health: capacity from charge counted between rest points, internal resistance from dV/dI at
# current steps, SOH with a confidence, and which pack is the weakest. Pure numbers; no I/O.
#
# Units (integers, below 2**30 on the per-scan path): charge in 10 mAs ("cq"), resistance in micro-ohm,
# confidence in % (0..100). add_resistance() runs per scan and allocates nothing; add_capacity() and
# evaluate() run at rest points / once a minute.
from array import array

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_R_MAX_UOHM = const(2000000)
_R_FULL_N = const(10)  # resistance steps for full confidence
_CAP_CONF = (0, 50, 80, 90, 95, 100)


class Health:
    def __init__(self, max_packs, nominal_cq, weak_cap_pct=90, weak_r_pct=130, weak_conf=80):
        m = max_packs
        self.max_packs = m
        self.nominal_cq = nominal_cq
        self.weak_cap_pct = weak_cap_pct
        self.weak_r_pct = weak_r_pct
        self.weak_conf = weak_conf
        self.cap = array("i", bytes(4 * m))  # learned capacity, cq (0 = not learned: the nominal is used)
        self.cap_n = array("i", bytes(4 * m))  # capacity measurements
        self.r = array("i", bytes(4 * m))  # resistance, micro-ohm (0 = not learned)
        self.r_n = array("i", bytes(4 * m))
        self.r_ref = array("i", bytes(4 * m))  # the first confident resistance: growth is against it
        self.r_dev = array("i", bytes(4 * m))  # mean |step value - resistance|: how noisy the steps are
        self.weak = bytearray(m)  # 1: named weakest
        self.weakest = 0  # 1-based pack number of the weakest named pack, 0 none
        self._scratch = array("i", bytes(4 * m))

    # -- learning ------------------------------------------------------------------------------------------
    def capacity_cq(self, i):
        c = self.cap[i]
        return c if c > 0 else self.nominal_cq

    def add_capacity(self, i, cq):
        """A capacity measured between two rest points (>= the minimum SOC swing). Returns whether kept."""
        nom = self.nominal_cq
        if cq < nom // 3 or cq > nom * 2:
            return False  # implausible: a resync error or a wrong nominal; never learn it
        n = self.cap_n[i]
        if n == 0:
            self.cap[i] = cq
        else:
            k = n + 1 if n < 4 else 4
            self.cap[i] += (cq - self.cap[i]) // k
        self.cap_n[i] = n + 1
        return True

    def add_resistance(self, i, dv_mv, di_ma):
        """dV (mV) over dI (mA) one scan after a current step. Allocates nothing. A small pack resistance makes
        dV a few ADC steps, so a single ratio can come out zero or negative: it is kept (dropping it would bias
        the mean upwards), and once the value has settled each ratio is clamped symmetrically to 0..2x it."""
        if di_ma < 0:
            di_ma = -di_ma
            dv_mv = -dv_mv
        if dv_mv > 500 or dv_mv < -500 or di_ma == 0:
            return False
        r = dv_mv * 1000000 // di_ma
        if r > _R_MAX_UOHM or r < -_R_MAX_UOHM:
            return False
        n = self.r_n[i]
        cur = self.r[i]
        if n >= 10 and cur > 0:
            if r < 0:
                r = 0
            elif r > 2 * cur:
                r = 2 * cur
        if n > 0:
            d = r - cur if r > cur else cur - r
            self.r_dev[i] += (d - self.r_dev[i]) // (n + 1 if n < 32 else 32)
        if n == 0:
            self.r[i] = r
        elif n < 64:
            self.r[i] = cur + (r - cur) // (n + 1)
        else:
            self.r[i] = cur + (r - cur) // 64
        self.r_n[i] = n + 1
        if self.r_ref[i] == 0 and self.r_conf(i) == 100:
            self.r_ref[i] = self.r[i]
        return True

    # -- results ------------------------------------------------------------------------------------------
    def cap_conf(self, i):
        n = self.cap_n[i]
        return _CAP_CONF[n if n < 5 else 5]

    def r_conf(self, i):
        """By the number of steps, capped by their scatter: the standard error (deviation / sqrt(n)) must be
        within 15 % of the value for full confidence, 30 % for 0.6, else 0.3 (a pack resistance of a few ADC
        steps per step of current)."""
        n = self.r_n[i]
        c = 100 if n >= _R_FULL_N else n * 100 // _R_FULL_N
        r = self.r[i]
        if n < 2 or r <= 0:
            return c if r > 0 else 0
        k = 1
        while (k + 1) * (k + 1) <= n:  # integer square root of n (n is small)
            k += 1
        se100 = self.r_dev[i] * 100 // k  # 100 x the standard error, micro-ohm
        if se100 > 30 * r:
            return c if c < 30 else 30
        if se100 > 15 * r:
            return c if c < 60 else 60
        return c

    def confidence(self, i):
        a = self.cap_conf(i)
        b = self.r_conf(i)
        return a if a < b else b

    def soh_pct10(self, i):
        """Capacity against nominal, 0.1 %; -1 if not learned."""
        if self.cap_n[i] == 0:
            return -1
        return self.cap[i] * 1000 // self.nominal_cq

    def r_growth_pct(self, i):
        """Resistance against its first confident value, %; -1 until then."""
        if self.r_ref[i] == 0:
            return -1
        return self.r[i] * 100 // self.r_ref[i]

    def _median(self, vals, n, ok_conf, of_r):
        s = self._scratch
        m = 0
        for i in range(n):
            c = self.r_conf(i) if of_r else self.cap_conf(i)  # (a bound method as an argument would allocate)
            if c >= ok_conf and vals[i] > 0:
                v = vals[i]
                j = m
                while j > 0 and s[j - 1] > v:  # insertion sort in place: no allocation
                    s[j] = s[j - 1]
                    j -= 1
                s[j] = v
                m += 1
        if m < 3:
            return 0
        return s[m // 2] if m & 1 else (s[m // 2 - 1] + s[m // 2]) // 2

    def evaluate(self, n):
        """Names the weakest: capacity <= weak_cap_pct of the median, or resistance >= weak_r_pct of it, each
        only at confidence >= weak_conf and against a median of at least 3 confident packs."""
        cmed = self._median(self.cap, n, self.weak_conf, False)
        rmed = self._median(self.r, n, self.weak_conf, True)
        worst = 0
        worst_score = 0
        for i in range(n):
            score = 0  # how far past its threshold, in 0.1 %
            if cmed and self.cap_conf(i) >= self.weak_conf and self.cap[i] * 100 <= cmed * self.weak_cap_pct:
                score = 1 + (cmed * self.weak_cap_pct - self.cap[i] * 100) * 10 // cmed
            if rmed and self.r_conf(i) >= self.weak_conf and self.r[i] * 100 >= rmed * self.weak_r_pct:
                s2 = 1 + (self.r[i] * 100 - rmed * self.weak_r_pct) * 10 // rmed
                if s2 > score:
                    score = s2
            self.weak[i] = 1 if score else 0
            if score > worst_score:
                worst_score = score
                worst = i + 1
        for i in range(n, self.max_packs):
            self.weak[i] = 0
        self.weakest = worst

    # -- persistence ----------------------------------------------------------------------------------------
    def snapshot(self, n):
        d = {}
        for key in ("cap", "cap_n", "r", "r_n", "r_ref", "r_dev"):
            a = getattr(self, key)
            d[key] = [a[i] for i in range(n)]
        return d

    def restore(self, d):
        for key in ("cap", "cap_n", "r", "r_n", "r_ref", "r_dev"):
            src = d.get(key) or []
            dst = getattr(self, key)
            for i in range(min(len(src), self.max_packs)):
                v = src[i]
                if not isinstance(v, int) or (v < 0 and key != "r"):
                    raise ValueError("health.%s[%d] is not a count" % (key, i))
                dst[i] = v
