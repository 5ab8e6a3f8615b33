# The `shunt` config block's checks (hub/config.py calls them when the block is enabled, then drops this
# module again: the board's heap is small). Each problem names its field.
CHIPS = ("ina228", "ina226")
DEFAULTS = {
    "enabled": False,
    "chip": "ina228",
    "i2c": {"id": 0, "sda": 21, "scl": 22, "freq": 400000},  # id -1: software I2C on those pins
    "address": 64,  # 0x40
    "shunt_ohms": 0.0005,
    "max_current_a": 200,
    "invert": False,  # true when the shunt is wired the other way (charging reads negative)
}
# full-scale shunt voltage in microvolts (INA228 SBOSA20 Table 8-1, INA226 SBOS547B 7.6.1.2)
FULL_SCALE_UV = {"ina228": 163840, "ina226": 81920}


def check(raw, problems, _merge, _num, _bool):
    """The `shunt` block merged over DEFAULTS, its problems appended (each naming its field); hub/config.py
    passes its helpers in."""
    if not isinstance(raw, dict):
        problems.append("shunt: must be an object")
        return {"enabled": False}
    cfg = {"shunt": _merge(DEFAULTS, raw, "shunt.", problems)}
    _bool(cfg, "shunt.enabled", problems)
    if cfg["shunt"]["enabled"] is True:
        check_config(cfg, problems, _num, _bool)
    return cfg["shunt"]


def check_config(cfg, problems, _num, _bool):
    sh = "shunt."
    chip = cfg["shunt"]["chip"]
    if chip not in CHIPS:
        problems.append("shunt.chip: %r is not one of %s" % (chip, ", ".join(CHIPS)))
        chip = None
    _num(cfg, sh + "i2c.id", -1, 1, problems, True)
    _num(cfg, sh + "i2c.sda", 0, 39, problems, True)
    _num(cfg, sh + "i2c.scl", 0, 39, problems, True)
    _num(cfg, sh + "i2c.freq", 10000, 1000000, problems, True)
    _num(cfg, sh + "address", 0x40, 0x4F, problems, True)  # A0/A1 pins select 0x40..0x4F on both chips
    _bool(cfg, sh + "invert", problems)
    ohms = cfg["shunt"]["shunt_ohms"]
    if isinstance(ohms, (int, float)) and not isinstance(ohms, bool) and ohms <= 0:
        problems.append("shunt.shunt_ohms: must be above 0, got %r" % ohms)
        ohms = None
    else:
        ohms = _num(cfg, sh + "shunt_ohms", 0.000001, 1, problems)
    amps = _num(cfg, sh + "max_current_a", 0.1, 10000, problems)
    if chip and ohms and amps:
        uv = amps * ohms * 1e6
        if uv > FULL_SCALE_UV[chip]:
            problems.append("shunt.max_current_a: %r A x %r ohm = %.2f mV is beyond the %s's full-scale shunt "
                            "voltage (%.2f mV): use a smaller shunt or a lower max_current_a"
                            % (amps, ohms, uv / 1000, chip.upper(), FULL_SCALE_UV[chip] / 1000))
