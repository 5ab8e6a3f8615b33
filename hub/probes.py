# Optional DS18B20 bank probes on a 1-wire bus (MicroPython's onewire + ds18x20), published as
# <prefix>/probe/<rom id>/temperature. read() fills a preallocated list in 0.1 degC.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_NONE = const(-32768)


class Probes:
    """bus: a ds18x20.DS18X20-like object (scan(), convert_temp(), read_temp(rom)); the board's
    comes from Probes.on_pin(pin), tests pass a fake."""

    def __init__(self, bus, log=None):
        self.bus = bus
        self.roms = bus.scan()
        self.ids = [_hex(r) for r in self.roms]
        self.log = log
        self._pending = False

    @classmethod
    def on_pin(cls, pin, log=None):
        import ds18x20
        import machine
        import onewire

        return cls(ds18x20.DS18X20(onewire.OneWire(machine.Pin(pin))), log)

    def read(self, out):
        """Collect the conversion started on the previous call, then start the next one, so the
        750 ms conversion never blocks the scan loop."""
        if self._pending:
            for k in range(len(self.roms)):
                try:
                    t = self.bus.read_temp(self.roms[k])
                    out[k] = _NONE if t is None or t == 85.0 else int(round(t * 10))  # 85.0 = power-on value
                except Exception as e:  # CRC error or a probe gone: no value, not a wrong one
                    out[k] = _NONE
                    if self.log:
                        self.log("warning", "probe %s: %s" % (self.ids[k].decode(), e))
        try:
            self.bus.convert_temp()
            self._pending = True
        except Exception as e:
            self._pending = False
            if self.log:
                self.log("warning", "probes: %s" % e)


def _hex(rom):
    out = bytearray()
    for b in rom:
        out += b"%02x" % b
    return bytes(out)
