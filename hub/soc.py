# State of charge per pack and for the bank, from the shunt's charge and the packs' voltages. Pure: numbers
# in (hub.bank, hub.shunt), numbers out; no I/O, no MQTT. See docs/soc.md for the method and its accuracy.
#
#   est = Estimator(battery_cfg, max_packs)      battery_cfg from hub.config ("battery" block)
#   est.update(now, bank, shunt, ticks_diff)     once per cycle, after the scan and the shunt read
#   est.soc[i], est.bank_soc                     0.01 %, -1 = unknown
#   est.ttf_s, est.tte_s                         time to full / empty, s, -1 = unknown or not (dis)charging
#   est.health                                   hub.health.Health: capacity, resistance, SOH, weakest
#
# Method, per cycle (integer fixed point, values below 2**30, nothing allocated):
# - coulomb counting: the shunt's net charge (dq_mas) less the learned sensor offset, charge scaled by the
#   charge efficiency, added to every pack (packs in series share the current);
# - resync at a rest (|I| <= rest_c for rest_s) from each pack's voltage against the chemistry's OCV table,
#   where the table is steep enough for the voltage resolution; and at full charge (charging at <= tail_c
#   with the packs' mean voltage >= full_mv, held full_hold_s) from each pack's voltage less I*R;
# - between two resyncs close in SOC, the charge counted is an error: it teaches the sensor's offset;
# - between two rest points >= min_dsoc_pct apart, charge / dSOC is the pack's capacity (hub.health);
# - a current step between two scans (the step early in the interval: the interval's mean current is
#   already the new one) gives dV/dI: the pack's resistance (hub.health).
# After a reset with no trustworthy state, a stale pack, or a current that is not known for longer than
# resume_gap_s, SOC is unknown (-1) until the next resync: never a guess.
from array import array

from hub import ocv
from hub.health import Health

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_NONE = const(-1)
_KIND_REST = const(1)
_KIND_FULL = const(2)
_EVAL_EVERY = const(12)  # scans between weakest evaluations


def __getattr__(name):
    """soc.DEFAULTS: the battery block's settings and defaults (hub/battery_cfg.py), loaded on first use:
    the estimator itself reads the validated block, so a running hub does not carry the checks."""
    if name == "DEFAULTS":
        from hub import battery_cfg

        return battery_cfg.DEFAULTS
    raise AttributeError("module 'hub.soc' has no attribute '%s'" % name)


class Estimator:
    def __init__(self, cfg, max_packs=64, wall=None, log=None):
        """cfg: the validated battery block. wall: a function giving wall-clock seconds or None when the time
        is not known (no NTP yet): without it a saved SOC is never trusted after a reset."""
        m = max_packs
        self.max_packs = m
        self._wall = wall
        self._log = log
        self.error = ""
        chem = cfg.get("chemistry", "nmc")
        self.chemistry = chem
        self.table = ocv.TABLES.get(chem)
        if self.table is None:
            self.error = "battery: chemistry %r is not known to the hub (known: %s); SOC and health unknown" % (
                chem, ", ".join(sorted(ocv.TABLES)))
        own = cfg.get("ocv_table")
        if own and self.table is not None:
            # the cell's own curve (validated by hub/battery_cfg.py) in the hub's units: 0.01 %, mV
            self.table = tuple((int(s * 100 + 0.5), int(v + 0.5)) for s, v in own)
        full_mv = int(cfg.get("full_mv", 0)) or ocv.FULL_MV.get(chem, 0)
        self.full_mv = full_mv
        cap_mah = int(cfg.get("capacity_ah", 100) * cfg.get("cells_parallel", 1) * 1000)
        self.nominal_mah = cap_mah
        self.nominal_cq = cap_mah * 360  # 10 mAs units
        self.loss_ppm = int((1.0 - cfg.get("charge_efficiency", 0.998)) * 1000000 + 0.5)
        self.tail_ma = int(cap_mah * cfg.get("tail_c", 0.05))
        self.rest_ma = int(cap_mah * cfg.get("rest_c", 0.02))
        self.rest_ms = int(cfg.get("rest_s", 3600) * 1000)
        self.full_hold_ms = int(cfg.get("full_hold_s", 120) * 1000)
        self.min_dsoc = int(cfg.get("min_dsoc_pct", 40) * 100)
        self.step_ma = int(cap_mah * cfg.get("step_c", 0.1))
        self.gap_ms = int(cfg.get("resume_gap_s", 30) * 1000)
        self.restore_max_s = cfg.get("restore_max_s", 600)
        self.health = Health(m, self.nominal_cq, int(cfg.get("weak_capacity_pct", 90)),
                             int(cfg.get("weak_resistance_pct", 130)), int(cfg.get("weak_confidence", 0.8) * 100))
        # per pack
        self.q = array("i", bytes(4 * m))  # remaining charge, cq (10 mAs)
        self.known = bytearray(m)
        self.soc = _filled(m, _NONE)  # 0.01 %
        self.prev_mv = array("i", bytes(4 * m))  # last scan's voltage (0: none)
        self.prev_snap_mv = array("i", bytes(4 * m))  # last snapshot's voltage (0: none), hub/snapshot.py
        self.prev_snap_i = 0
        self.prev_snap_ok = False
        self.snap_r = 0  # resistance samples taken from snapshots (the rest: from scan-to-scan readings)
        self.anchor_soc = _filled(m, _NONE)  # SOC at the last rest point
        self.anchor_q = array("i", bytes(4 * m))  # the bank's charge counter then
        self.resyncs = array("i", bytes(4 * m))
        self.full_bias = 0  # 0.01 %: how much the voltage at full (less I*R) reads above the SOC (learned)
        self.full_n = 0
        self.full_dev = 0  # 0.01 %: how much the full readings' bias scatters (mean |change|): their error once learned
        self.full_med = 0
        self.full_q = 0
        self.full_pending = False
        self.last_sync_bias = 0
        self.rest_syncs = 0  # bank resyncs at rest / at full (diagnostics)
        self.full_syncs = 0
        # bank
        self.n = 0
        self.bank_soc = _NONE
        self.ttf_s = _NONE
        self.tte_s = _NONE
        self.current_ma = 0  # corrected, + = charging (valid when current_known)
        self.current_known = False
        self.offset_ua = 0  # learned sensor offset, micro-amps (subtracted)
        self.offset_n = 0  # times it was learned
        self.qnet = 0  # net charge counted since start, cq
        self._acc = 0  # mAs not yet a whole cq
        self._loss_rem = 0
        self._off_rem = 0
        self.count_s = 0  # seconds of counting since start
        self._count_ms = 0
        self.prev_i = 0
        self.prev_ok = False
        self.rest_for = 0
        self.rest_done = False
        self.full_for = 0
        self.full_done = False
        self.top = False  # charged well above the tail at the full voltage, and the voltage held since (a taper)
        self.last_ok = -1  # ticks_ms of the last good shunt read
        self.count_unc = 0  # cq: 1-sigma drift of the count since the last resync (common to all packs)
        self.unc_ma = cap_mah // 500 or 1
        self.thru_div = 10
        self.ocv_sigma = int(cfg.get("ocv_sigma_pct", 5) * 100)  # 0.01 %: a generic table's error mid-curve
        self.cal_ppm = int(cfg.get("voltage_error_pct", 0.3) * 10000)  # the nodes' calibration error
        self.last_sync_s = -1  # count_s at the last bank resync
        self.last_sync_q = 0
        self.last_sync_soc = _NONE  # median pack SOC at the last bank resync
        self.last_sync_kind = 0
        self.scans = 0
        self.events = 0  # resyncs + capacity/offset updates: a reason to persist
        self._errs = array("i", bytes(4 * m))  # scratch for the offset's median (resync only)
        self._socs = array("i", bytes(4 * m))

    # -- per cycle ------------------------------------------------------------------------------------------
    def update(self, now, bank, shunt, td, snap=None):
        """snap: the cycle's bank snapshot (hub/snapshot.py) or None. Where a pack took this snapshot and the
        last one, its resistance sample at a step is the snapshots' dV over the current change between their
        instants (the shunt is read at the instant: voltage and current of one moment, not up to 200 ms
        apart); a pack without them falls back to scan-to-scan readings, as without snapshots, and is never
        mixed into a snapshot pair."""
        if self.table is None:
            return
        n = bank.n
        if n > self.max_packs:
            n = self.max_packs
        if n != self.n:
            for i in range(n):
                if i >= self.n:
                    self.known[i] = 0
                    self.prev_mv[i] = 0
                    self.anchor_soc[i] = _NONE
            self.n = n
        self.scans += 1
        if shunt is None or not shunt.ok:
            # current unknown: nothing is counted, SOC is published unknown; held for a short gap (the next
            # good read's dq covers it), forgotten after resume_gap_s
            self.current_known = False
            self.prev_ok = False
            self.prev_snap_ok = False
            if self.last_ok < 0 or td(now, self.last_ok) > self.gap_ms:
                self._forget()
            self._unknown_outputs()
            return
        dt = shunt.dt_ms
        self.last_ok = now
        # -- coulomb counting ---------------------------------------------------------------------------------
        x = self.offset_ua * dt + self._off_rem  # uA*ms = 1e-6 mAs
        off = x // 1000000
        self._off_rem = x - off * 1000000
        dq = shunt.dq_mas - off
        i_ma = shunt.current_ma - self.offset_ua // 1000
        if dq > 0 and self.loss_ppm:
            h = dq // 1000
            y = h * self.loss_ppm + (dq - h * 1000) * self.loss_ppm // 1000 + self._loss_rem
            lost = y // 1000
            self._loss_rem = y - lost * 1000
            dq -= lost
        a = self._acc + dq
        whole = a // 10
        self._acc = a - whole * 10
        self.qnet += whole
        # how far the count may have drifted since the last resync: the offset not yet learned (C/2000 once it
        # is, C/500 before) for dt, plus the gain and capacity uncertainty of the charge moved (cq): 10 % while a
        # pack's capacity is still the nominal, 2 % once every pack's was measured
        self.count_unc += self.unc_ma * dt // 10000 + (whole if whole > 0 else -whole) // self.thru_div
        self._count_ms += dt
        if self._count_ms >= 1000:
            s = self._count_ms // 1000
            self.count_s += s
            self._count_ms -= s * 1000
        self.current_ma = i_ma
        self.current_known = True
        # was the step early in the interval? then the interval's mean current is already the new one
        step = False
        if self.prev_ok and dt > 0:
            di = i_ma - self.prev_i
            if di >= self.step_ma or -di >= self.step_ma:
                mean = dq * 1000 // dt
                e = mean - i_ma
                if e < 0:
                    e = -e
                step = e * 8 <= (di if di > 0 else -di)
        # with snapshots: a pack's voltages and the current are of one instant. The step rule stays the same
        # (the step early in the interval: the resistance keeps its definition, one interval after the step)
        if snap is not None and not snap.valid:
            snap = None
        snap_step = step and snap is not None and self.prev_snap_ok
        # -- per pack ------------------------------------------------------------------------------------------
        health = self.health
        for i in range(n):
            mv = bank.voltage_mv(i, now, td)
            if mv == 0:  # stale or faulty: its SOC is unknown until a resync sees it again
                self.known[i] = 0
                self.prev_mv[i] = 0
                continue
            if self.known[i]:
                self.q[i] += whole
            if snap is not None and snap.ok[i]:
                smv = snap.mv[i]
                if snap_step and self.prev_snap_mv[i] and self.known[i]:
                    s = self.soc[i]
                    if 2000 <= s <= 8000 and health.add_resistance(i, smv - self.prev_snap_mv[i],
                                                                    i_ma - self.prev_snap_i):
                        self.snap_r += 1
                self.prev_snap_mv[i] = smv
            else:
                self.prev_snap_mv[i] = 0
                if step and self.prev_mv[i] and self.known[i]:
                    s = self.soc[i]
                    if 2000 <= s <= 8000:
                        health.add_resistance(i, mv - self.prev_mv[i], i_ma - self.prev_i)
            self.prev_mv[i] = mv
        self.prev_i = i_ma
        self.prev_ok = True
        if snap is not None:
            self.prev_snap_i = i_ma
            self.prev_snap_ok = True
        else:
            self.prev_snap_ok = False
        # -- resyncs -------------------------------------------------------------------------------------------
        ai = i_ma if i_ma >= 0 else -i_ma
        if ai <= self.rest_ma:
            self.rest_for += dt
            if self.rest_for >= self.rest_ms and not self.rest_done:
                self.rest_done = True
                self._resync(now, bank, td, _KIND_REST, 0)
        else:
            self.rest_for = 0
            self.rest_done = False
        # full: the current came down to the tail while the voltage stayed at the top (a CV charger holds it
        # there), and the voltage less the tail's I*R (what the resync reads) is at the top too. A small current
        # that only brings the voltage back to the top after it fell below (a cloud, dusk, a load switched on and
        # off), or holds it there only by its own I*R, reads a pack that is not full.
        if not bank.fresh or bank.avg_mv < self.full_mv:
            self.top = False
        elif i_ma > self.tail_ma:
            self.top = True
        if self.top and 0 < i_ma <= self.tail_ma and bank.avg_mv - self._ir_mv(n, i_ma) >= self.full_mv:
            self.full_for += dt
            if self.full_for >= self.full_hold_ms and not self.full_done:
                self.full_done = True
                self._resync(now, bank, td, _KIND_FULL, i_ma)
        else:
            self.full_for = 0
            if i_ma < 0 or bank.avg_mv < self.full_mv - 50:
                self.full_done = False
        # -- outputs -------------------------------------------------------------------------------------------
        self._outputs(n)
        if self.scans % _EVAL_EVERY == 0:
            health.evaluate(n)

    def _ir_mv(self, n, i_ma):
        """The packs' mean I*R drop at i_ma (mA; |i_ma| up to 50 A), mV; 0 while no resistance is learned.
        Small ints only: resistance in 0.1 mOhm."""
        r = self.health.r
        t = 0
        for i in range(n):
            t += r[i]
        return i_ma * (t // (n or 1) // 100) // 10000

    def _unknown_outputs(self):
        for i in range(self.n):
            self.soc[i] = _NONE
        self.bank_soc = _NONE
        self.ttf_s = _NONE
        self.tte_s = _NONE

    def _forget(self):
        for i in range(self.max_packs):
            self.known[i] = 0
            self.anchor_soc[i] = _NONE
        self.last_sync_s = -1

    def _outputs(self, n):
        health = self.health
        worst_q = -1
        worst_i = -1
        all_known = n > 0
        room = -1
        for i in range(n):
            if not self.known[i]:
                self.soc[i] = _NONE
                all_known = False
                continue
            cap = health.capacity_cq(i)
            q = self.q[i]
            if q < 0:
                q = 0
            if q > cap:
                q = cap
            d = cap // 10000
            self.soc[i] = q // d if d else 0
            if self.soc[i] > 10000:
                self.soc[i] = 10000
            if worst_i < 0 or q < worst_q:
                worst_q = q
                worst_i = i
            r = cap - q
            if room < 0 or r < room:
                room = r
        if not all_known:
            self.bank_soc = _NONE
            self.ttf_s = _NONE
            self.tte_s = _NONE
            return
        self.bank_soc = self.soc[worst_i]
        i_ma = self.current_ma
        # charge ends at the first full pack, discharge at the first empty one (cq / (mA/10) = s)
        if i_ma > self.rest_ma:
            self.ttf_s = room // (i_ma // 10 or 1)
            self.tte_s = _NONE
        elif i_ma < -self.rest_ma:
            self.tte_s = worst_q // (-i_ma // 10 or 1)
            self.ttf_s = _NONE
        else:
            self.ttf_s = _NONE
            self.tte_s = _NONE

    # -- resync (at a rest point or at full; not per scan) -------------------------------------------------------
    def _resync(self, now, bank, td, kind, i_ma):
        health = self.health
        table = self.table
        m = 0
        count_unc_bp = self.count_unc * 10000 // self.nominal_cq
        post_max = 0
        socs = self._socs
        errs = self._errs
        ne = 0
        dq_full = self.qnet - self.full_q
        # a rest right after a full charge (little charge moved since) re-anchors: it is the better reading of the
        # two, and the full one is learned from it (below)
        near = -self.nominal_cq // 20 <= dq_full <= self.nominal_cq // 20
        reanchor = kind == _KIND_REST and self.full_pending and near
        for i in range(self.n):
            mv = bank.voltage_mv(i, now, td)
            if mv == 0:
                continue
            r = health.r[i]
            v = mv - i_ma * r // 1000000 if r > 0 else mv
            slope = ocv.slope_of(table, v)  # 0.01 mV per %
            sv = v * self.cal_ppm // 10000 * 100 // (slope or 1)  # the nodes' voltage error in 0.01 % SOC
            if kind == _KIND_REST and sv > 300:
                continue  # flat part of the curve (LFP): the voltage's error is more than 3 % of SOC there
            s = ocv.soc_of(table, v)
            if kind == _KIND_FULL:
                s -= self.full_bias  # what the rests after full charges showed the tail's voltage to overstate
                if s < 0:
                    s = 0
            a = self.anchor_soc[i]
            # capacity: charge counted between two rest points far enough apart (first: the blend below turns
            # the reading into charge with it)
            if a >= 0:
                ds = s - a
                if ds >= self.min_dsoc or -ds >= self.min_dsoc:
                    if health.add_capacity(i, (self.qnet - self.anchor_q[i]) * 10000 // ds):
                        self.events += 1
            cap = health.capacity_cq(i)
            target = s * (cap // 10000)
            if a >= 0 and -1500 <= s - a <= 1500 and sv <= 200:
                # the same part of the curve as the last rest point: whatever table error there was is there
                # again, so the charge counted in between less the OCV's change is the sensor's error
                errs[ne] = (self.qnet - self.anchor_q[i]) - (s - a) * (cap // 10000)
                ne += 1
            if self.known[i] and not reanchor:
                # blend: the count and the voltage each with its uncertainty (0.01 % units); the tables agree
                # at the top (the charge voltage is 100 %), less mid-curve
                sc = count_unc_bp
                if kind == _KIND_FULL and self.full_n >= 2:
                    # the full reading less its learned bias: what is left is the bias' scatter, not the table's
                    # generic error (the bias holds the table's error at this charger's full point)
                    tab = self.full_dev
                else:
                    tab = self.ocv_sigma // 2 if s >= 9000 else self.ocv_sigma
                so2 = tab * tab + sv * sv
                sc2 = sc * sc
                k = sc2 * 1000 // (sc2 + so2) if sc2 + so2 else 1000
                target = self.q[i] + (target - self.q[i]) * k // 1000
                post = so2 * k // 1000
            else:
                post = 0
            self.anchor_soc[i] = s
            self.anchor_q[i] = self.qnet
            self.q[i] = target
            self.known[i] = 1
            self.resyncs[i] += 1
            if post > post_max:
                post_max = post
            socs[m] = s
            m += 1
        if m == 0:
            return
        learned = True
        for i in range(self.n):
            if health.cap_n[i] == 0:
                learned = False
        self.thru_div = 50 if learned else 10
        # what is left of the count's uncertainty after the blend (0 after a plain resync: the voltage's own
        # error is not the count's)
        self.count_unc = _isqrt(post_max) * self.nominal_cq // 10000
        med_soc = _median(socs, m)
        # the full-charge reading's bias: a rest soon after a full resync, with little charge moved in between,
        # says what the packs' SOC was at full; the tail current's polarisation (beyond I*R) made the voltage
        # read higher by the difference. Learned here, subtracted at the next full resyncs.
        if kind == _KIND_FULL:
            self.full_med = med_soc + self.full_bias  # the raw reading
            self.full_q = self.qnet
            self.full_pending = True
        elif self.full_pending:
            self.full_pending = False
            if reanchor:
                b = self.full_med - (med_soc - dq_full * 10000 // self.nominal_cq)
                if self.full_n:
                    d = b - self.full_bias
                    self.full_dev += ((d if d > 0 else -d) - self.full_dev) // (self.full_n if self.full_n < 4 else 4)
                    b = self.full_bias + d // 2
                self.full_bias = 0 if b < 0 else (1500 if b > 1500 else b)
                self.full_n += 1
                self.events += 1
        # offset: between two resyncs in the same region of the curve, the counted charge should be zero error
        # (pairs of the same kind only, and for two full charges the same learned bias: otherwise what changed in
        # between is the reading, not the sensor)
        same = kind == self.last_sync_kind and (kind != _KIND_FULL or self.full_bias == self.last_sync_bias)
        if same and ne * 2 > m and self.last_sync_s >= 0:
            el = self.count_s - self.last_sync_s
            if el >= 4 * 3600:
                err_cq = _median(errs, ne)
                meas = err_cq * 10 * 1000000 // (el * 1000)  # cq -> mAs, per s -> mA -> uA
                off = self.offset_ua + (meas * 7 // 10 if self.offset_n else meas)
                lim = self.rest_ma * 1000  # a larger offset than the rest threshold is not a sensor's
                self.offset_ua = lim if off > lim else (-lim if off < -lim else off)
                self.offset_n += 1
                self.events += 1
                self.unc_ma = self.nominal_mah // 2000 or 1  # the count drifts less now (the comment above)
        self.last_sync_s = self.count_s
        self.last_sync_q = self.qnet
        self.last_sync_soc = med_soc
        self.last_sync_kind = kind
        self.last_sync_bias = self.full_bias
        if kind == _KIND_FULL:
            self.full_syncs += 1
        else:
            self.rest_syncs += 1
        self.events += 1
        self._outputs(self.n)

    # -- persistence (hub/persist.py owner) -------------------------------------------------------------------------
    def snapshot(self):
        n = self.n
        d = self.health.snapshot(n)
        d["v"] = 1
        d["offset_ua"] = self.offset_ua
        d["offset_n"] = self.offset_n
        d["full_bias"] = self.full_bias
        d["full_n"] = self.full_n
        d["full_dev"] = self.full_dev
        d["q"] = [self.q[i] for i in range(n)]
        d["known"] = [self.known[i] for i in range(n)]
        d["wall"] = self._wall() if self._wall is not None else None
        return d

    def restore(self, d):
        if d.get("v") != 1:
            raise ValueError("unknown estimator state version %r" % d.get("v"))
        self.health.restore(d)
        off = d.get("offset_ua", 0)
        if isinstance(off, int):
            self.offset_ua = off
            self.offset_n = d.get("offset_n", 0)
        fb = d.get("full_bias", 0)
        if isinstance(fb, int) and 0 <= fb <= 1500:
            self.full_bias = fb
            self.full_n = d.get("full_n", 0)
            fd = d.get("full_dev", 0)
            self.full_dev = fd if isinstance(fd, int) and 0 <= fd <= 1500 else 0
        # SOC only if we know how long the hub was off, and it was short: else unknown until a resync
        saved = d.get("wall")
        now = self._wall() if self._wall is not None else None
        if saved is None or now is None or not 0 <= now - saved <= self.restore_max_s:
            return
        q = d.get("q") or []
        known = d.get("known") or []
        for i in range(min(len(q), len(known), self.max_packs)):
            if known[i] and isinstance(q[i], int):
                self.q[i] = q[i]
                self.known[i] = 1
        self.n = min(len(q), self.max_packs)


def start(hub):
    """hub/app.py, with a battery block: sets hub.estimator (registered with hub.store), or hub.battery_error
    (said once on P/error), and hub.est_step, called once per cycle after the scan and the shunt read."""
    hub.est_step = hub_step
    hub.estimator = None
    hub.battery_error = ""
    hub.est_said = False
    hub.est_events = 0
    bad = hub.cfg.get("battery_problems") or []
    if bad:
        hub.battery_error = "battery: bad config, SOC and health are unknown: %s" % "; ".join(bad)
        return
    est = Estimator(hub.cfg["battery"], hub.cfg["max_packs"], wall=hub.port.wall_time, log=hub.log)
    if est.error:
        hub.battery_error = est.error
        return
    if hub.shunt is None:
        hub.battery_error = "battery: no shunt block, so the current is unknown: SOC and health stay unknown"
    hub.estimator = est
    hub.store.register("estimator", est)


def hub_step(hub, now):
    if hub.battery_error and not hub.est_said:
        hub.est_said = True
        hub._error(now, hub.battery_error)
    est = hub.estimator
    if est is None:
        return
    est.update(now, hub.bank, hub.shunt, hub._td, hub.snap)
    if est.events != hub.est_events:  # a resync, a capacity or an offset learned: worth keeping
        hub.est_events = est.events
        hub.store.changed()


def _filled(m, v):
    """A preallocated int array (4 bytes an entry: half a list's on a 64-bit port) of m times v."""
    a = array("i", bytes(4 * m))
    for i in range(m):
        a[i] = v
    return a


def _isqrt(x):
    r = 0
    b = 1 << 30
    while b > x:
        b >>= 2
    while b:
        if x >= r + b:
            x -= r + b
            r = (r >> 1) + b
        else:
            r >>= 1
        b >>= 2
    return r


def _median(vals, m):
    """Median of vals[:m], sorting them in place (no allocation)."""
    for k in range(1, m):
        v = vals[k]
        j = k
        while j > 0 and vals[j - 1] > v:
            vals[j] = vals[j - 1]
            j -= 1
        vals[j] = v
    return vals[m // 2] if m & 1 else (vals[m // 2 - 1] + vals[m // 2]) // 2
