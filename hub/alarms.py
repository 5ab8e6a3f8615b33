# Alarms with hysteresis. evaluate() updates every alarm from the bank and returns how many changed;
# the publisher sends only the changed ones (retained), so a dashboard always holds the current state.
#
# An alarm rises when its value crosses the threshold and clears only once the value is back past the
# threshold by the hysteresis, so a value sitting on the threshold does not flap.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_NONE = const(-32768)

PACK_LOW = const(0)
PACK_HIGH = const(1)
DELTA_HIGH = const(2)
TEMP_HIGH = const(3)
TEMP_LOW = const(4)
COMMS = const(5)
NAMES = ("pack_low", "pack_high", "delta_high", "temp_high", "temp_low", "comms")
# units of value/threshold: mV, mV, mV, 0.1 degC, 0.1 degC, stale packs (or seconds of silence)
SCALE = (1000, 1000, 1000, 10, 10, 1)


class Alarms:
    def __init__(self, cfg):
        a = cfg["alarms"]
        self.threshold = [
            round(a["pack_low_v"] * 1000),
            round(a["pack_high_v"] * 1000),
            round(a["delta_high_v"] * 1000),
            round(a["temp_high_c"] * 10),
            round(a["temp_low_c"] * 10),
            0,
        ]
        self.hyst_mv = round(a["hysteresis_v"] * 1000)
        self.hyst_dc = round(a["hysteresis_c"] * 10)
        self.comms_after_ms = round(a["comms_after_s"] * 1000)
        k = len(NAMES)
        self.active = bytearray(k)
        self.value = [0] * k  # in the units above; _NONE when unknown
        self.pack = bytearray(k)
        self.changed = bytearray(k)
        self.news = bytearray(k)
        self.known = bytearray(k)  # published at least once

    def _set(self, i, active, value, pack):
        if active != self.active[i] or not self.known[i]:
            self.changed[i] = 1
            self.news[i] = active != self.active[i] or active  # worth a log line (not a first "clear")
        self.active[i] = active
        self.value[i] = value
        self.pack[i] = pack

    def _rising(self, i, value, pack, above, hyst):
        """above: alarm when value > threshold (else when value < threshold)."""
        if value == _NONE:
            # no data: a raised alarm stays raised (the comms alarm says why); nothing new is raised
            self._set(i, self.active[i], value, pack)
            return
        th = self.threshold[i]
        if above:
            on = value > th if not self.active[i] else value > th - hyst
        else:
            on = value < th if not self.active[i] else value < th + hyst
        self._set(i, 1 if on else 0, value, pack)

    def evaluate(self, bank, silent_ms):
        """silent_ms: how long the ring has given no good scan (0 right after one)."""
        for i in range(len(NAMES)):
            self.changed[i] = 0
            self.news[i] = 0
        have_v = bank.fresh > 0
        self._rising(PACK_LOW, bank.min_mv if have_v else _NONE, bank.min_pack, False, self.hyst_mv)
        self._rising(PACK_HIGH, bank.max_mv if have_v else _NONE, bank.max_pack, True, self.hyst_mv)
        delta = bank.max_mv - bank.min_mv if bank.fresh > 1 else _NONE
        self._rising(DELTA_HIGH, delta, bank.max_pack, True, self.hyst_mv)
        self._rising(TEMP_HIGH, bank.temp_max, bank.temp_max_pack, True, self.hyst_dc)
        self._rising(TEMP_LOW, bank.temp_min, bank.temp_min_pack, False, self.hyst_dc)
        # comms: packs stale, or the ring silent for longer than comms_after
        silent = silent_ms >= self.comms_after_ms
        on = 1 if (bank.stale_count > 0 or silent or bank.n == 0) else 0
        self._set(COMMS, on, bank.stale_count if bank.n else 0, bank.first_stale)
        n = 0
        for i in range(len(NAMES)):
            if self.changed[i]:
                self.known[i] = 1
                n += 1
        return n
