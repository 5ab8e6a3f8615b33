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
    # bank current from a TI INA228/INA226 on a LOW-SIDE shunt (docs/hub.md); off by default. The block's
    # fields and defaults are in hub/shunt_check.py, loaded only when a config has the block.
    "shunt": {"enabled": False},
    # SOC and per-pack health (hub/soc.py); off by default. The block's fields and defaults are in
    # hub/battery_cfg.py, loaded only when a config has the block.
    "battery": {"enabled": False},
    # the bank snapshot (docs/protocol.md 3.5): every pack sampled at one instant, lined up with the shunt's
    # reading, for the per-pack resistance. enabled null: on with the shunt and battery blocks. hop_us: the ring's delay
    # per node at the hub's clock rate (firmware 1.4 corrects each node's own: protocol 1.3's ELAPSED): a byte
    # leaves ~11.2 bit times after its start edge came in (simavr 1.16-1.18 ms), plus the coupler's falling-edge
    # delay. At most 5000: HOP is a u16 of 1/256 tick, and a node's wait arithmetic holds DELAY <= 16384 ticks
    "snapshot": {"enabled": None, "hop_us": 1165},
    "state_file": "/state.json",  # energy counters and other state kept across a reset (hub/persist.py)
    "watchdog_s": 30,
    "log_level": "info",
}


SECRET_KEYS = ("password", "key")
WARNINGS = []  # the warnings of the last config validate() accepted (the hub logs them at start)
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


def outputs_used(cfg):
    """[(name, pin, inverted)] of the protection outputs that have a pin ([] without an outputs block)."""
    o = cfg.get("outputs")
    if not o:
        return []
    return [(n, o[n]["pin"], o[n]["inverted"]) for n in ("charge_enable", "discharge_enable", "fan", "buzzer")
            if o[n]["pin"] is not None]


def features(cfg):
    """The feature modules this config runs (hub.<name>), in the order hub.preload() loads them: none for the
    base hub. Each module is loaded only when its block is on."""
    out = []
    if cfg["mqtt"]["tls"]["enabled"]:
        out.append("tls")
    outs = outputs_used(cfg)
    shunt = cfg["shunt"]["enabled"]
    battery = cfg["battery"]["enabled"]
    if shunt or battery or outs:
        out.append("persist")
    if shunt:
        out += ("shunt", "energy", "ina228" if cfg["shunt"]["chip"] == "ina228" else "ina226", "shunt_topics")
    if battery:
        out += ("ocv", "health", "soc", "soc_topics")
    if outs:
        out += ("protect", "protect_topics")
    sn = cfg.get("snapshot")
    if sn and sn.get("enabled"):
        out.append("snapshot")
    return out


def warnings(cfg):
    """Things worth a warning in a valid config (check-config prints them, the hub logs them)."""
    if "outputs" not in cfg:
        return []
    from hub import protect_config

    out = protect_config.warnings(cfg)
    _unload("protect_config")
    return out


def _unload(name):
    """Drop a module needed once (at start) so the board's small heap gets its memory back."""
    import sys

    import hub

    sys.modules.pop("hub." + name, None)
    try:
        delattr(hub, name)
    except AttributeError:
        pass


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
    sraw = raw.get("shunt")
    braw = raw.get("battery")
    if sraw is not None or braw is not None or "shunt_problems" in raw or "battery_problems" in raw:
        # checked below; a validated config's derived lists go
        raw = {k: raw[k] for k in raw if k not in ("shunt", "shunt_problems", "battery", "battery_problems")}
    base = DEFAULTS
    protect_config = None
    if "outputs" in raw or "protect" in raw:
        # the protection blocks and their checks live apart: a hub without them never loads them
        from hub import protect_config

        base = dict(DEFAULTS)
        base.update(protect_config.DEFAULTS)
    cfg = _merge(base, raw, "", problems)
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
    dprefix = _str(cfg, "discovery.prefix", problems, True)
    if dprefix and not _topic_ok(dprefix):
        problems.append("discovery.prefix: %r is not a valid MQTT topic prefix (no + # or \", no empty level, "
                        "no / at either end)" % dprefix)
    if cfg["discovery"]["enabled"] is True:
        if bank and _topic_safe(bank) and not _object_id_ok(bank):
            problems.append("bank: %r is not valid in a Home Assistant object id, which discovery builds from it "
                            "(packmon_<bank>_...): use lowercase letters, digits and _" % bank)
        if prefix and not _topic_ok(prefix):
            problems.append("topic_prefix: %r cannot go into discovery configs (no \" or \\)" % prefix)
    _bool(cfg, "legacy_topics", problems)
    _bool(cfg, "probes.enabled", problems)
    _num(cfg, "probes.pin", 0, 39, problems, True)
    sn = cfg["snapshot"]["enabled"]
    if sn is not None and not isinstance(sn, bool):
        problems.append("snapshot.enabled: must be true, false or null (null: on with the shunt and battery blocks)")
    _num(cfg, "snapshot.hop_us", 500, 5000, problems, True)
    _str(cfg, "state_file", problems, True)
    _num(cfg, "watchdog_s", 0, 600, problems)
    if cfg["log_level"] not in LOG_LEVELS:
        problems.append("log_level: must be one of %s" % ", ".join(LOG_LEVELS))
    # A bad shunt block does not stop the hub: voltage monitoring goes on, the shunt stays off and the
    # hub publishes why on <prefix>/error. check-config reports these like any other problem.
    soft = []
    if sraw is not None:
        import sys

        from hub import shunt_check  # dropped again after: the board's heap is small

        cfg["shunt"] = shunt_check.check(sraw, soft, _merge, _num, _bool)
        sys.modules.pop("hub.shunt_check", None)
    # a bad battery block likewise: SOC and health are unknown (one line on <prefix>/error), everything else runs
    bsoft = []
    if braw is not None:
        import sys

        from hub import battery_cfg  # dropped again after: the board's heap is small

        cfg["battery"] = battery_cfg.check(braw, bsoft, _merge, _num, _bool)
        sys.modules.pop("hub.battery_cfg", None)
    del WARNINGS[:]  # after the shunt block: its I2C pins count as used pins
    if protect_config is not None:
        protect_config.check(cfg, problems, _num, _bool)
        if not problems:
            WARNINGS.extend(protect_config.warnings(cfg))
        _unload("protect_config")
    if problems:
        raise ConfigError(problems)
    cfg["shunt_problems"] = soft
    cfg["battery_problems"] = bsoft
    if cfg["snapshot"]["enabled"] is None:  # auto: where it serves, the resistance estimate (shunt + battery)
        cfg["snapshot"]["enabled"] = cfg["shunt"]["enabled"] is True and cfg["battery"]["enabled"] is True
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


def _topic_ok(s):
    """A topic prefix HA and brokers accept: no wildcards, no empty level, nothing JSON must escape."""
    if s.startswith("/") or s.endswith("/") or "//" in s:
        return False
    for c in s:
        if c in '+#"\\' or ord(c) < 32:
            return False
    return True


def _object_id_ok(s):
    for c in s:
        if not (("a" <= c <= "z") or ("0" <= c <= "9") or c == "_"):
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


def unload():
    """Free this module once the config is loaded: validation is needed once, and its ~9 KB of bytecode
    are a tenth of an ESP32's heap (the board's main.py and the runtime tests call this)."""
    import sys

    sys.modules.pop("hub.config", None)
    try:
        import hub

        del hub.config
    except (ImportError, AttributeError):
        pass


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
