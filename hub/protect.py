# Protection: rules from the bank model (and the shunt's current, when there is one) to four logical
# outputs. Pure logic: no machine, no MQTT. The hub calls decide() right after each scan (and shunt read),
# then drives the pins from .state through the port, BEFORE any network I/O.
#
#   p = Protect(cfg)                        cfg from hub.config.validate()
#   p.decide(bank, alarms, shunt, now, td)  -> number of outputs that changed (p.changed[k] set)
#   p.state[k]                              1 = closed (connected / on), 0 = open (off): LOGICAL state,
#                                           whatever the pin polarity (hub/port.py applies "inverted")
#   p.reset(name)                           manual reset of a latched output ("" = every output)
#
# Safe state = every output open: charge and discharge disconnected, fan and buzzer off. Protect starts
# there (boot), and charge/discharge only close once every pack of the WHOLE bank has a fresh, valid
# reading. Directions: for charge/discharge "open" is protective, for fan/buzzer "on" is. A protective
# change is never delayed; the return waits for the minimum time since the previous change (min_off_s
# for charge/discharge, min_on_s for fan/buzzer), and for the hysteresis. That is what keeps a relay from
# chattering without ever delaying a trip.
#
# Values are fixed-point integers (mV, 0.1 degC, mA, ms): decide() allocates nothing unless an output
# changes (then it builds the reason text for the log and P/error).
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_NONE = const(-32768)
_VFAULT = const(0x40)  # codec.FLAG_VOLTAGE_FAULT
_SFAULT = const(0x01)  # codec.FLAG_SENSOR_FAULT

CHARGE = const(0)
DISCHARGE = const(1)
FAN = const(2)
BUZZER = const(3)
NAMES = ("charge_enable", "discharge_enable", "fan", "buzzer")

# reasons (.reason[k] indexes REASONS)
_R_OK = const(0)
_R_BOOT = const(1)
_R_STALE = const(2)
_R_LATCH_HIGH = const(3)
_R_LATCH_LOW = const(4)
_R_TEMP_HIGH = const(5)
_R_HIGH = const(6)
_R_LOW = const(7)
_R_COLD = const(8)
_R_TEMP_UNKNOWN = const(9)
_R_OC_CHARGE = const(10)
_R_OC_DISCHARGE = const(11)
_R_HOT = const(12)
_R_ALARM = const(13)
_R_IDLE = const(14)
_R_RESET = const(15)
REASONS = ("ok", "boot", "stale", "latched_high", "latched_low", "temp_high", "pack_high", "pack_low",
           "cold_charge", "temp_unknown", "overcurrent_charge", "overcurrent_discharge", "hot", "alarm",
           "idle", "reset")
# buzzer rules may name any alarm (hub/alarms.py NAMES) or one of these
BUZZER_EVENTS = ("trip", "latched")


class Protect:
    def __init__(self, cfg, alarm_names=()):
        p = cfg["protect"]
        self.high = round(p["high_v"] * 1000)
        self.low = round(p["low_v"] * 1000)
        self.hyst_mv = round(p["hysteresis_v"] * 1000)
        self.latch_high = round(p["latch_high_v"] * 1000) if p["latch_high_v"] else 0
        self.latch_low = round(p["latch_low_v"] * 1000) if p["latch_low_v"] else 0
        self.temp_high = round(p["temp_high_c"] * 10)
        self.cold = round(p["cold_charge_c"] * 10)
        self.fan_on = round(p["fan_on_c"] * 10)
        self.hyst_dc = round(p["hysteresis_c"] * 10)
        self.oc_charge = round(p["overcurrent_charge_a"] * 1000)  # mA; 0 = rule off
        self.oc_discharge = round(p["overcurrent_discharge_a"] * 1000)
        self.charging_ma = round(p["charging_above_a"] * 1000)
        self.min_on = round(p["min_on_s"] * 1000)
        self.min_off = round(p["min_off_s"] * 1000)
        self.stale_ms = round(p["stale_s"] * 1000)
        self.packs = p["packs"]  # expected pack count; 0 = learn it from the first whole-bank scan
        self.hold_discharge = p["hold_discharge_at_boot"]
        names = tuple(alarm_names)
        self.buzz_alarms = [names.index(n) for n in p["buzzer_on"] if n in names]
        self.buzz_trip = "trip" in p["buzzer_on"]
        self.buzz_latched = "latched" in p["buzzer_on"]
        k = len(NAMES)
        self.state = bytearray(k)  # logical: 1 closed/on, 0 open/off; boot = all safe
        self.reason = bytearray(k)
        for i in range(k):
            self.reason[i] = _R_BOOT if i < FAN else _R_IDLE
        self.since = [0] * k  # ticks_ms of the last change (boot counts as no change: see _free)
        self.moved = bytearray(k)  # changed at least once since boot (min times apply)
        self.changed = bytearray(k)  # changed in the last decide()
        self.latched = bytearray(k)  # R_LATCH_* reason of a latched output, 0 = not latched
        self.changes = [0] * k
        self.store = None  # hub.persist.Store, set by the hub (latches survive a reset)
        self.events = []  # (output, text) of changes since the hub last took them (log + P/error)
        self.boot_ms = None
        self.ever_whole = False
        self.expected = self.packs
        self._td = None
        # conditions with hysteresis (1 = holding). They start as if tripped: after a restart an output
        # closes only once its value is back past the hysteresis, so a pack sitting on a limit at boot
        # does not get one close-then-trip cycle
        self._hi = 1
        self._lo = 1
        self._hot = 1
        self._cold = 1
        self._fan = 0
        # the value and pack behind the last decision, for the reason text
        self.value = [0] * k
        self.pack = bytearray(k)
        if not self.hold_discharge:
            self.state[DISCHARGE] = 1  # closed from start-up; opens like any output on a rule or stale
            self.reason[DISCHARGE] = _R_OK

    # -- persistence (hub/persist.py owner) ----------------------------------------------------------
    def snapshot(self):
        out = {}
        for k in range(len(NAMES)):
            if self.latched[k]:
                out[NAMES[k]] = REASONS[self.latched[k]]
        return {"latched": out}

    def restore(self, d):
        lat = d.get("latched") or {}
        for name in lat:
            if name in NAMES and lat[name] in REASONS:
                k = NAMES.index(name)
                self.latched[k] = REASONS.index(lat[name])
                self.reason[k] = self.latched[k]

    def _persist(self):
        if self.store is not None:
            self.store.changed(True)

    # -- commands --------------------------------------------------------------------------------
    def reset(self, name=""):
        """Clears the latch of output `name` ("" = all). Returns the names cleared (empty when none
        was latched). The output then follows the rules again at the next decide()."""
        done = []
        for k in range(len(NAMES)):
            if (not name or NAMES[k] == name) and self.latched[k]:
                self.latched[k] = 0
                done.append(NAMES[k])
        if done:
            self._persist()
            for n in done:
                self.events.append((NAMES.index(n), "protect: %s latch cleared by a manual reset" % n))
        return done

    # -- the decision ----------------------------------------------------------------------------
    def decide(self, bank, alarms, shunt, now, td):
        """One decision from the bank as it is now. shunt: the hub's shunt reading object or None.
        Returns how many outputs changed (self.changed[k])."""
        self._td = td
        if self.boot_ms is None:
            self.boot_ms = now
        for k in range(len(NAMES)):
            self.changed[k] = 0
        n = bank.n
        # -- what we know: every expected pack fresh (read within stale_s) with a valid voltage ---
        whole = n > 0 and (self.expected == 0 or n >= self.expected)
        vmax = 0
        vmaxp = 0
        vmin = 0
        vminp = 0
        tmax = _NONE
        tmaxp = 0
        tmin = _NONE
        tminp = 0
        tunknown = 0
        stale_p = 0
        for i in range(n):
            if not bank.have[i] or td(now, bank.seen[i]) > self.stale_ms or bank.flags[i] & _VFAULT:
                whole = False
                if not stale_p:
                    stale_p = i + 1
                continue
            mv = bank.mv[i]
            if vmaxp == 0 or mv > vmax:
                vmax = mv
                vmaxp = i + 1
            if vminp == 0 or mv < vmin:
                vmin = mv
                vminp = i + 1
            if bank.flags[i] & _SFAULT:
                tunknown = i + 1
                continue
            t = bank.temp[i]
            if tmaxp == 0 or t > tmax:
                tmax = t
                tmaxp = i + 1
            if tminp == 0 or t < tmin:
                tmin = t
                tminp = i + 1
        if whole and not self.ever_whole:
            self.ever_whole = True
            if self.expected == 0:
                self.expected = n
        # -- conditions with hysteresis, from fresh values only ------------------------------------
        if vmaxp:
            self._hi = 1 if (vmax >= self.high if not self._hi else vmax > self.high - self.hyst_mv) else 0
            self._lo = 1 if (vmin <= self.low if not self._lo else vmin < self.low + self.hyst_mv) else 0
            if self.latch_high and vmax >= self.latch_high and self.latched[CHARGE] != _R_LATCH_HIGH:
                self._latch(CHARGE, _R_LATCH_HIGH, vmax, vmaxp)
            if self.latch_low and vmin <= self.latch_low and self.latched[DISCHARGE] != _R_LATCH_LOW:
                self._latch(DISCHARGE, _R_LATCH_LOW, vmin, vminp)
        if tmaxp:
            self._hot = 1 if (tmax > self.temp_high if not self._hot else tmax > self.temp_high - self.hyst_dc) else 0
            self._fan = 1 if (tmax > self.fan_on if not self._fan else tmax > self.fan_on - self.hyst_dc) else 0
            cur = _NONE
            if shunt is not None and shunt.ok:
                cur = shunt.current_ma
            if not self._cold:
                # with a working shunt only while charging; without one (or unknown) whenever it is cold
                charging = cur == _NONE or cur > self.charging_ma
                self._cold = 1 if (tmin < self.cold and charging) else 0
            else:
                self._cold = 1 if tmin < self.cold + self.hyst_dc else 0
        # overcurrent: only with a shunt reading that is valid now
        oc_c = 0
        oc_d = 0
        if shunt is not None and shunt.ok:
            if self.oc_charge and shunt.current_ma > self.oc_charge:
                oc_c = 1
            if self.oc_discharge and -shunt.current_ma > self.oc_discharge:
                oc_d = 1
        # -- charge -------------------------------------------------------------------------------
        booting = not self.ever_whole
        r = _R_OK
        val = 0
        pk = 0
        if self.latched[CHARGE]:
            r = self.latched[CHARGE]
            val, pk = vmax, vmaxp
        elif not whole:
            r = _R_BOOT if booting else _R_STALE
            pk = stale_p
        elif self._hot:
            r, val, pk = _R_TEMP_HIGH, tmax, tmaxp
        elif self._hi:
            r, val, pk = _R_HIGH, vmax, vmaxp
        elif self._cold:
            r, val, pk = _R_COLD, tmin, tminp
        elif tunknown:
            r, pk = _R_TEMP_UNKNOWN, tunknown
        elif oc_c:
            r, val = _R_OC_CHARGE, shunt.current_ma
        self._want(CHARGE, r, val, pk, now, True)
        # -- discharge ----------------------------------------------------------------------------
        r = _R_OK
        val = 0
        pk = 0
        if self.latched[DISCHARGE]:
            r = self.latched[DISCHARGE]
            val, pk = vmin, vminp
        elif not whole:
            if not booting or self.hold_discharge or td(now, self.boot_ms) > self.stale_ms:
                r = _R_BOOT if booting else _R_STALE
                pk = stale_p
        elif self._hot:
            r, val, pk = _R_TEMP_HIGH, tmax, tmaxp
        elif self._lo:
            r, val, pk = _R_LOW, vmin, vminp
        elif oc_d:
            r, val = _R_OC_DISCHARGE, shunt.current_ma
        self._want(DISCHARGE, r, val, pk, now, True)
        if booting:
            return self._count()  # fan and buzzer keep their boot state too, until the first whole scan
        # -- fan (on = protective) ----------------------------------------------------------------
        if self._fan:
            self._want(FAN, _R_HOT, tmax, tmaxp, now, False)
        elif tmaxp:  # temperatures known and cool: the fan may stop
            self._want(FAN, _R_IDLE, tmax, tmaxp, now, False)
        # -- buzzer (on = protective) -------------------------------------------------------------
        on = 0
        val = 0
        pk = 0
        if self.buzz_latched and (self.latched[CHARGE] or self.latched[DISCHARGE]):
            k = CHARGE if self.latched[CHARGE] else DISCHARGE
            on, val, pk = self.latched[k], self.value[k], self.pack[k]
        elif self.buzz_trip and (not self.state[CHARGE] or not self.state[DISCHARGE]):
            k = CHARGE if not self.state[CHARGE] else DISCHARGE
            on, val, pk = self.reason[k], self.value[k], self.pack[k]
        elif alarms is not None:
            for a in self.buzz_alarms:
                if alarms.active[a]:
                    on = _R_ALARM
                    break
        self._want(BUZZER, on if on else _R_IDLE, val, pk, now, False)
        return self._count()

    def _count(self):
        c = 0
        for k in range(len(NAMES)):
            c += self.changed[k]
        return c

    def _latch(self, k, r, v, pk):
        self.latched[k] = r
        lim = self.latch_high if r == _R_LATCH_HIGH else self.latch_low
        self.events.append((k, "protect: %s LATCHED open: pack %d at %s V %s %s V (absolute limit); only a manual "
                            "reset closes it" % (NAMES[k], pk, _fx(v, 3), ">=" if r == _R_LATCH_HIGH else "<=",
                                                 _fx(lim, 3))))
        self._persist()

    def _want(self, k, r, val, pk, now, open_protects):
        """Output k should be protective (r != _R_OK/_R_IDLE) or may return. open_protects: the protective
        state is open (charge/discharge) rather than on (fan/buzzer)."""
        protective = r != _R_OK and r != _R_IDLE
        want = (0 if protective else 1) if open_protects else (1 if protective else 0)
        if want == self.state[k]:
            if protective and r != self.reason[k]:
                self.reason[k] = r  # e.g. pack_high -> latched_high: published, not a pin change
                self.value[k] = val
                self.pack[k] = pk
                self.changed[k] = 1
            return
        if not protective and self.moved[k]:
            hold = self.min_off if open_protects else self.min_on
            if self._td(now, self.since[k]) < hold:
                return  # a return waits for the minimum time; a trip never does
        self.state[k] = want
        self.reason[k] = r
        self.value[k] = val
        self.pack[k] = pk
        self.since[k] = now
        self.moved[k] = 1
        self.changed[k] = 1
        self.changes[k] += 1
        self.events.append((k, self.describe(k)))

    def tripped(self, k):
        """Whether charge/discharge output k is open for a protection reason (not boot): worth P/error."""
        return k < FAN and self.reason[k] not in (_R_OK, _R_IDLE, _R_BOOT, _R_RESET)

    def describe(self, k):
        """One line for the log and P/error (allocates: called on change only)."""
        r = self.reason[k]
        name = NAMES[k]
        verb = ("closed" if self.state[k] else "opened") if k < FAN else ("on" if self.state[k] else "off")
        why = REASONS[r]
        v = self.value[k]
        pk = self.pack[k]
        if r in (_R_HIGH, _R_LATCH_HIGH):
            lim = self.latch_high if r == _R_LATCH_HIGH else self.high
            why += ": pack %d at %s V >= %s V" % (pk, _fx(v, 3), _fx(lim, 3))
        elif r in (_R_LOW, _R_LATCH_LOW):
            lim = self.latch_low if r == _R_LATCH_LOW else self.low
            why += ": pack %d at %s V <= %s V" % (pk, _fx(v, 3), _fx(lim, 3))
        elif r == _R_TEMP_HIGH:
            why += ": pack %d at %s C > %s C" % (pk, _fx(v, 1), _fx(self.temp_high, 1))
        elif r == _R_COLD:
            why += ": pack %d at %s C < %s C" % (pk, _fx(v, 1), _fx(self.cold, 1))
        elif r == _R_HOT:
            why += ": pack %d at %s C" % (pk, _fx(v, 1))
        elif r in (_R_OC_CHARGE, _R_OC_DISCHARGE):
            why += ": %s A" % _fx(v, 3)
        elif r == _R_STALE:
            why += ": no fresh reading of every pack for %d s" % (self.stale_ms // 1000)
            if pk:
                why += " (pack %d)" % pk
        elif r == _R_TEMP_UNKNOWN:
            why += ": pack %d has no temperature (sensor fault)" % pk
        return "protect: %s %s (%s)" % (name, verb, why)


def _fx(v, dec):
    neg = v < 0
    if neg:
        v = -v
    d = 10**dec
    s = "%d" % (v // d)
    if dec:
        f = "%d" % (v % d)
        s += "." + "0" * (dec - len(f)) + f
    return "-" + s if neg else s


# -- the hub's side (hub/app.py calls these only when outputs are in use) ----------------------------------
def start(hub):
    """Outputs open first, then the latches of before a restart (hub/persist.py), then the config's
    warnings. Sets hub.protect and hub._protect_step."""
    from hub.alarms import NAMES as ALARMS

    cfg = hub.cfg
    hub.protect = p = Protect(cfg, ALARMS)
    outs = [(cfg["outputs"][n]["pin"], cfg["outputs"][n]["inverted"]) for n in NAMES]
    hub.port.setup_outputs(outs, cfg["protect"]["reset_pin"])  # every output open, first
    if hub.store.register("protect", p):
        for k in range(len(NAMES)):
            if p.latched[k]:
                hub.log("warning", "protect: %s is latched open (%s) from before the restart; a manual "
                        "reset clears it" % (NAMES[k], REASONS[p.latched[k]]))
    p.store = hub.store
    for k in range(len(NAMES)):
        hub.port.set_output(k, p.state[k])  # discharge closes here when it is not held at boot
    from hub import protect_config  # its warnings (strapping pins, inverted outputs), then dropped again

    for w in protect_config.warnings(cfg):
        hub.log("warning", w)
    import sys

    sys.modules.pop("hub.protect_config", None)
    hub._protect_step = step


def step(hub, now):
    """The decision and the pins, right after the scan: no network I/O here."""
    p = hub.protect
    if hub.port.reset_pressed():
        done = p.reset("")
        hub.log("warning", "protect: reset button: %s" % (", ".join(done) if done else "nothing was latched"))
    while hub.reset_requests:
        name = hub.reset_requests.pop(0)
        done = p.reset(name)
        hub.log("warning", "protect: reset command for %s: %s" % (name, "cleared" if done else "was not latched"))
    if p.decide(hub.bank, hub.alarms, hub.shunt, now, hub._td):
        for k in range(len(p.changed)):
            if p.changed[k]:
                hub.port.set_output(k, p.state[k])
    for k, text in p.events:
        hub.log("warning" if p.tripped(k) else "info", text)
