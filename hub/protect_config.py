# The protection blocks of the hub config (`outputs`, `protect`): their defaults and their checks.
# hub/config.py loads this module only for a config that has one of the blocks, so a hub without
# protection spends no memory on it (validate() is the only caller; see docs/hub.md "Protection").
DEFAULTS = {
    "outputs": {
        "charge_enable": {"pin": None, "inverted": False},
        "discharge_enable": {"pin": None, "inverted": False},
        "fan": {"pin": None, "inverted": False},
        "buzzer": {"pin": None, "inverted": False},
    },
    "protect": {
        "high_v": 4.15,  # any pack at or above: charge opens
        "low_v": 3.0,  # any pack at or below: discharge opens
        "hysteresis_v": 0.1,
        "latch_high_v": 4.25,  # any pack at or above: charge opens and stays open until a manual reset (0 = off)
        "latch_low_v": 2.8,  # any pack at or below: discharge latched open (0 = off)
        "temp_high_c": 55.0,  # any pack above: charge and discharge open
        "cold_charge_c": 0.0,  # any pack below: charge opens (with a shunt: only while charging)
        "charging_above_a": 0.5,  # with a shunt: a current above this is "charging" for the cold rule
        "fan_on_c": 40.0,
        "hysteresis_c": 3.0,
        "overcurrent_charge_a": 0,  # with a shunt: above this charge opens (0 = off)
        "overcurrent_discharge_a": 0,
        "min_on_s": 10,
        "min_off_s": 60,
        "stale_s": 15,  # no fresh reading of every pack for this long: charge and discharge open
        "packs": 0,  # packs the bank must have (0 = as many as the first whole scan found)
        "buzzer_on": ["latched", "temp_high", "comms"],
        "hold_discharge_at_boot": True,
        "reset_pin": None,  # a push button to ground that clears latches
        "mqtt_reset": False,  # accept <prefix>/cmd/reset with an output name as payload
        "watchdog_s": 8,  # while outputs are used the hardware watchdog is capped at this
    },
}

OUTPUT_NAMES = ("charge_enable", "discharge_enable", "fan", "buzzer")
STRAPPING_PINS = (0, 2, 5, 12, 15)


def _used(cfg):
    return [n for n in OUTPUT_NAMES if cfg["outputs"][n]["pin"] is not None]


def _pin(cfg, path, problems, nullable=True):
    v = cfg
    for p in path.split("."):
        v = v[p]
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        problems.append("%s: must be a GPIO number%s, got %r" % (path, " or null" if nullable else "", v))
        return None
    if v < 0 or v > 39 or v in (20, 24, 28, 29, 30, 31):
        problems.append("%s: GPIO%d does not exist on the ESP32" % (path, v))
        return None
    return v


def check(cfg, problems, _num, _bool):
    """Every problem of the outputs and protect blocks, named by field, appended to problems."""
    from hub.alarms import NAMES as ALARM_NAMES

    used = {}  # pin -> the field that uses it
    used[cfg["uart"]["tx"]] = "uart.tx"
    used.setdefault(cfg["uart"]["rx"], "uart.rx")
    if cfg["probes"]["enabled"] is True:
        used.setdefault(cfg["probes"]["pin"], "probes.pin")
    sh = cfg.get("shunt")  # the shunt branch's block, when present
    if isinstance(sh, dict) and sh.get("enabled") is True and isinstance(sh.get("i2c"), dict):
        for k in ("sda", "scl"):
            if isinstance(sh["i2c"].get(k), int):
                used.setdefault(sh["i2c"][k], "shunt.i2c." + k)
    for name in OUTPUT_NAMES:
        o = cfg["outputs"][name]
        path = "outputs." + name
        _bool(cfg, path + ".inverted", problems)
        pin = _pin(cfg, path + ".pin", problems)
        if pin is None:
            continue
        if 6 <= pin <= 11:
            problems.append("%s.pin: GPIO%d is wired to the ESP32's flash and cannot be used" % (path, pin))
        elif pin >= 34:
            problems.append("%s.pin: GPIO%d is input-only on the ESP32 and cannot drive an output" % (path, pin))
        elif pin in used:
            problems.append("%s.pin: GPIO%d is already used by %s" % (path, pin, used[pin]))
        else:
            used[pin] = path + ".pin"
        if o["inverted"] is True and name in ("charge_enable", "discharge_enable"):
            pass  # allowed: the user says so (docs: a de-energised relay then CONNECTS)
    p = "protect."
    pr = cfg["protect"]
    rp = _pin(cfg, p + "reset_pin", problems)
    if rp is not None:
        if 6 <= rp <= 11:
            problems.append("protect.reset_pin: GPIO%d is wired to the ESP32's flash and cannot be used" % rp)
        elif rp in used:
            problems.append("protect.reset_pin: GPIO%d is already used by %s" % (rp, used[rp]))
    high = _num(cfg, p + "high_v", 0, 5, problems)
    low = _num(cfg, p + "low_v", 0, 5, problems)
    hyst = _num(cfg, p + "hysteresis_v", 0, 1, problems)
    if low is not None and high is not None:
        if low >= high:
            problems.append("protect.low_v: %r must be below protect.high_v (%r)" % (low, high))
        elif hyst is not None and 2 * hyst >= high - low:
            problems.append("protect.hysteresis_v: %r must be less than half of high_v - low_v" % hyst)
    lh = _num(cfg, p + "latch_high_v", 0, 5, problems)
    ll = _num(cfg, p + "latch_low_v", 0, 5, problems)
    if lh and high is not None and lh <= high:
        problems.append("protect.latch_high_v: %r must be above protect.high_v (%r), or 0 for no latch" % (lh, high))
    if ll and low is not None and ll >= low:
        problems.append("protect.latch_low_v: %r must be below protect.low_v (%r), or 0 for no latch" % (ll, low))
    th = _num(cfg, p + "temp_high_c", -55, 125, problems)
    tc = _num(cfg, p + "cold_charge_c", -55, 125, problems)
    tf = _num(cfg, p + "fan_on_c", -55, 125, problems)
    if th is not None and tc is not None and tc >= th:
        problems.append("protect.cold_charge_c: %r must be below protect.temp_high_c (%r)" % (tc, th))
    if th is not None and tf is not None and tf >= th:
        problems.append("protect.fan_on_c: %r must be below protect.temp_high_c (%r)" % (tf, th))
    _num(cfg, p + "hysteresis_c", 0, 20, problems)
    _num(cfg, p + "charging_above_a", 0, 10000, problems)
    _num(cfg, p + "overcurrent_charge_a", 0, 100000, problems)
    _num(cfg, p + "overcurrent_discharge_a", 0, 100000, problems)
    _num(cfg, p + "min_on_s", 0, 3600, problems)
    _num(cfg, p + "min_off_s", 0, 3600, problems)
    stale = _num(cfg, p + "stale_s", 1, 3600, problems)
    interval = cfg["scan_interval_s"]
    if _used(cfg) and stale is not None and isinstance(interval, (int, float)) and stale < 2 * interval:
        problems.append("protect.stale_s: %r must be at least twice scan_interval_s (%r)" % (stale, interval))
    _num(cfg, p + "packs", 0, 64, problems, True)
    b = pr["buzzer_on"]
    if not isinstance(b, list):
        problems.append("protect.buzzer_on: must be a list of alarm names")
    else:
        for n in b:
            if n not in ALARM_NAMES and n not in ("trip", "latched"):
                problems.append("protect.buzzer_on: %r is not an alarm (choose from %s, trip, latched)"
                                % (n, ", ".join(ALARM_NAMES)))
    _bool(cfg, p + "hold_discharge_at_boot", problems)
    _bool(cfg, p + "mqtt_reset", problems)
    wd = _num(cfg, p + "watchdog_s", 2, 30, problems)
    to = cfg["mqtt"]["timeout_s"]
    if _used(cfg) and wd is not None and isinstance(to, (int, float)) and to > wd - 2:
        # every blocking socket call feeds the watchdog first (port.py), so one call must fit in the cap
        problems.append("mqtt.timeout_s: %r must be at most protect.watchdog_s - 2 (%r) while outputs are used"
                        % (to, wd - 2))


def warnings(cfg):
    """Things worth a warning in a valid config (strapping pins, an inverted charge/discharge output, ...)."""
    out = []
    for name in _used(cfg):
        pin = cfg["outputs"][name]["pin"]
        inverted = cfg["outputs"][name]["inverted"]
        if pin in STRAPPING_PINS:
            out.append("outputs.%s.pin: GPIO%d is a strapping pin: a relay or driver on it can stop the "
                       "ESP32 from booting or flashing; prefer another GPIO" % (name, pin))
        if inverted and name in ("charge_enable", "discharge_enable"):
            out.append("outputs.%s.inverted: a de-energised (unpowered, reset or crashed) hub then CONNECTS: "
                       "not fail-safe" % name)
    rp = cfg["protect"]["reset_pin"]
    if rp is not None and rp in STRAPPING_PINS:
        out.append("protect.reset_pin: GPIO%d is a strapping pin: holding the button at power-up changes the "
                   "boot mode" % rp)
    if rp is not None and rp >= 34:
        out.append("protect.reset_pin: GPIO%d has no internal pull-up: fit an external one (10 kOhm to 3.3 V)" % rp)
    if _used(cfg) and not cfg["protect"]["hold_discharge_at_boot"]:
        out.append("protect.hold_discharge_at_boot: false: discharge closes at start-up before the bank is "
                   "read (the loads stay up through a hub restart)")
    return out


