# Hub configuration: defaults, loading, and validation that names every bad field.
#
# The real config lives on the board as /config.json (gitignored in the repo); hub/config.example.json
# documents every field. Secrets (Wi-Fi and MQTT passwords) are never logged: use redacted().
import json

DEFAULTS = {
    "bank": "bank1",
    "topic_prefix": "",  # "" means packmonitor/<bank>
    "wifi": {"ssid": "", "password": "", "timeout_s": 20},
    "mqtt": {
        "host": "",
        "port": 1883,
        "user": "",
        "password": "",
        "client_id": "",  # "" means packmon-<bank>
        "keepalive_s": 60,
        "timeout_s": 5,
        "acl_check": True,  # after connecting, publish a test message and read it back (see publisher)
        "tls": {"enabled": False, "ca": "", "cert": "", "key": "", "server_hostname": "", "insecure": False},
    },
    "uart": {"id": 2, "tx": 17, "rx": 16, "baud": 9600},
    "scan_interval_s": 5,
    "stale_after_s": 30,
    "max_packs": 64,
    "alarms": {
        "pack_low_v": 3.0,
        "pack_high_v": 4.15,
        "delta_high_v": 0.1,
        "temp_high_c": 50.0,
        "temp_low_c": 0.0,
        "hysteresis_v": 0.02,
        "hysteresis_c": 2.0,
        "comms_after_s": 30,
    },
    "discovery": {"enabled": False, "prefix": "homeassistant"},
    "legacy_topics": False,
    "probes": {"enabled": False, "pin": 4},
    "watchdog_s": 30,
    "log_level": "info",
    "state_file": "/state.json",  # hub/persist.py: protection latches (and energy/SOC) across a reset
    # protection outputs (hub/protect.py, docs/hub.md "Protection"): a pin of null = output not used
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

SECRET_KEYS = ("password", "key")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """Raised with every problem found; .problems lists them ("field: what is wrong")."""

    def __init__(self, problems):
        self.problems = problems
        super().__init__("invalid config: " + "; ".join(problems))


def _merge(base, over, path, problems):
    out = {}
    for k in base:
        # nested defaults are copied, never shared: validate() fills in derived values in place
        out[k] = _merge(base[k], {}, "", problems) if isinstance(base[k], dict) else base[k]
    for k in over:
        where = path + k
        if k not in base:
            problems.append(where + ": unknown field")
            continue
        if isinstance(base[k], dict):
            if isinstance(over[k], dict):
                out[k] = _merge(base[k], over[k], where + ".", problems)
            else:
                problems.append(where + ": must be an object")
        else:
            out[k] = over[k]
    return out


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


def outputs_used(cfg):
    """[(name, pin, inverted)] of the outputs that have a pin."""
    return [(n, cfg["outputs"][n]["pin"], cfg["outputs"][n]["inverted"]) for n in OUTPUT_NAMES
            if cfg["outputs"][n]["pin"] is not None]


def _check_protect(cfg, problems):
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
    if outputs_used(cfg) and stale is not None and isinstance(interval, (int, float)) and stale < 2 * interval:
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
    if outputs_used(cfg) and wd is not None and isinstance(to, (int, float)) and to > wd - 2:
        # every blocking socket call feeds the watchdog first (port.py), so one call must fit in the cap
        problems.append("mqtt.timeout_s: %r must be at most protect.watchdog_s - 2 (%r) while outputs are used"
                        % (to, wd - 2))


def warnings(cfg):
    """Things worth a warning in a valid config (check-config prints them, the hub logs them)."""
    out = []
    for name, pin, inverted in outputs_used(cfg):
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
    if outputs_used(cfg) and not cfg["protect"]["hold_discharge_at_boot"]:
        out.append("protect.hold_discharge_at_boot: false: discharge closes at start-up before the bank is "
                   "read (the loads stay up through a hub restart)")
    return out


def _num(cfg, path, lo, hi, problems, integer=False):
    v = cfg
    for p in path.split("."):
        v = v[p]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        problems.append("%s: must be %s, got %r" % (path, "an integer" if integer else "a number", v))
        return None
    if v < lo or v > hi:
        problems.append("%s: %r is out of range %s..%s" % (path, v, lo, hi))
        return None
    return v


def _str(cfg, path, problems, required=False):
    v = cfg
    for p in path.split("."):
        v = v[p]
    if not isinstance(v, str):
        problems.append("%s: must be a string" % path)
        return None
    if required and not v:
        problems.append("%s: is required" % path)
        return None
    return v


def _bool(cfg, path, problems):
    v = cfg
    for p in path.split("."):
        v = v[p]
    if not isinstance(v, bool):
        problems.append("%s: must be true or false" % path)


def validate(raw, need_wifi=True):
    """Merge raw (a dict) over the defaults and check every field. Returns the full config or raises
    ConfigError listing every problem. need_wifi=False for hosts, which have no Wi-Fi to join."""
    problems = []
    if not isinstance(raw, dict):
        raise ConfigError(["config: must be a JSON object"])
    cfg = _merge(DEFAULTS, raw, "", problems)
    bank = _str(cfg, "bank", problems, True)
    if bank and not _topic_safe(bank):
        problems.append("bank: %r may only use letters, digits, '-' and '_'" % bank)
    prefix = _str(cfg, "topic_prefix", problems)
    if prefix and ("+" in prefix or "#" in prefix or prefix.endswith("/")):
        problems.append("topic_prefix: %r must not contain + or # or end with /" % prefix)
    if need_wifi:
        _str(cfg, "wifi.ssid", problems, True)
    else:
        _str(cfg, "wifi.ssid", problems)
    _str(cfg, "wifi.password", problems)
    _num(cfg, "wifi.timeout_s", 1, 300, problems)
    _str(cfg, "mqtt.host", problems, True)
    _num(cfg, "mqtt.port", 1, 65535, problems, True)
    _str(cfg, "mqtt.user", problems)
    _str(cfg, "mqtt.password", problems)
    _str(cfg, "mqtt.client_id", problems)
    keepalive = _num(cfg, "mqtt.keepalive_s", 0, 65535, problems, True)
    _num(cfg, "mqtt.timeout_s", 1, 60, problems)
    _bool(cfg, "mqtt.acl_check", problems)
    tls = cfg["mqtt"]["tls"]
    for k in ("enabled", "insecure"):
        _bool(cfg, "mqtt.tls." + k, problems)
    for k in ("ca", "cert", "key", "server_hostname"):
        _str(cfg, "mqtt.tls." + k, problems)
    if tls["enabled"] is True:
        if not tls["ca"] and tls["insecure"] is not True:
            problems.append("mqtt.tls.ca: TLS needs a CA certificate file (or set mqtt.tls.insecure to true)")
        if bool(tls["cert"]) != bool(tls["key"]):
            problems.append("mqtt.tls.cert/key: a client certificate needs both cert and key")
    if cfg["mqtt"]["password"] and not cfg["mqtt"]["user"]:
        problems.append("mqtt.user: a password is set but no user")
    _num(cfg, "uart.id", 0, 2, problems, True)
    _num(cfg, "uart.tx", 0, 39, problems, True)
    _num(cfg, "uart.rx", 0, 39, problems, True)
    _num(cfg, "uart.baud", 1200, 115200, problems, True)
    interval = _num(cfg, "scan_interval_s", 0.1, 3600, problems)
    if interval is not None and keepalive is not None and 0 < keepalive <= interval:
        # the hub only talks to the broker once a cycle: a shorter keepalive gets it disconnected
        problems.append("mqtt.keepalive_s: %r must be 0 or longer than scan_interval_s (%r)" % (keepalive, interval))
    stale = _num(cfg, "stale_after_s", 1, 86400, problems)
    if interval is not None and stale is not None and stale < 2 * interval:
        problems.append("stale_after_s: %r must be at least twice scan_interval_s (%r)" % (stale, interval))
    _num(cfg, "max_packs", 1, 64, problems, True)
    a = "alarms."
    low = _num(cfg, a + "pack_low_v", 0, 5, problems)
    high = _num(cfg, a + "pack_high_v", 0, 5, problems)
    if low is not None and high is not None and low >= high:
        problems.append("alarms.pack_low_v: %r must be below alarms.pack_high_v (%r)" % (low, high))
    _num(cfg, a + "delta_high_v", 0.001, 5, problems)
    tl = _num(cfg, a + "temp_low_c", -55, 125, problems)
    th = _num(cfg, a + "temp_high_c", -55, 125, problems)
    if tl is not None and th is not None and tl >= th:
        problems.append("alarms.temp_low_c: %r must be below alarms.temp_high_c (%r)" % (tl, th))
    _num(cfg, a + "hysteresis_v", 0, 1, problems)
    _num(cfg, a + "hysteresis_c", 0, 20, problems)
    _num(cfg, a + "comms_after_s", 1, 86400, problems)
    _bool(cfg, "discovery.enabled", problems)
    _str(cfg, "discovery.prefix", problems, True)
    _bool(cfg, "legacy_topics", problems)
    _bool(cfg, "probes.enabled", problems)
    _num(cfg, "probes.pin", 0, 39, problems, True)
    _num(cfg, "watchdog_s", 0, 600, problems)
    if cfg["log_level"] not in LOG_LEVELS:
        problems.append("log_level: must be one of %s" % ", ".join(LOG_LEVELS))
    _str(cfg, "state_file", problems, True)
    _check_protect(cfg, problems)
    if problems:
        raise ConfigError(problems)
    if not cfg["topic_prefix"]:
        cfg["topic_prefix"] = "packmonitor/" + cfg["bank"]
    if not cfg["mqtt"]["client_id"]:
        cfg["mqtt"]["client_id"] = "packmon-" + cfg["bank"]
    if not cfg["mqtt"]["tls"]["server_hostname"]:
        cfg["mqtt"]["tls"]["server_hostname"] = cfg["mqtt"]["host"]  # the name the certificate must carry
    return cfg


def _topic_safe(s):
    for c in s:
        if not (c.isalpha() or c.isdigit() or c in "-_"):
            return False
    return True


def load(path, need_wifi=True):
    """Read and validate a config file; ConfigError names the file's problem if it cannot be read."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(["%s: cannot be read (%s)" % (path, e)])
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ConfigError(["%s: not valid JSON (%s)" % (path, e)])
    return validate(raw, need_wifi)


def redacted(cfg):
    """A copy safe to log: every password and key replaced by '***'."""
    out = {}
    for k in cfg:
        v = cfg[k]
        if isinstance(v, dict):
            out[k] = redacted(v)
        elif k in SECRET_KEYS and v:
            out[k] = "***"
        else:
            out[k] = v
    return out
