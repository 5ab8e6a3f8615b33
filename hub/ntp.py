# The board's wall clock: NTP (MicroPython's ntptime) once Wi-Fi is up, tried every 10 minutes until it
# answers, then once a day to correct the RTC's drift. BoardPort.wall_time() uses it; nothing here touches
# machine (ntptime sets the RTC itself).
#
# time() is seconds since 2000-01-01 00:00 UTC (the ESP32's epoch; a port counting from 1970 is shifted),
# or None while the time is not known.
import time

from hub import port as _port

_RETRY_MS = 600000
_RESYNC_MS = 86400000


class Ntp:
    def __init__(self, port):
        self.port = port
        self.ok = False
        self.next = None  # ticks_ms of the next attempt (None: now)
        self.epoch = 946684800 if time.gmtime(0)[0] == 1970 else 0

    def time(self):
        now = _port.ticks_ms()
        if self.next is None or _port.ticks_diff(now, self.next) >= 0:
            if self.port.wifi_up():
                try:
                    import ntptime

                    ntptime.settime()
                    self.ok = True
                    self.next = _port.ticks_add(now, _RESYNC_MS)
                    self.port.log("info", "ntp: time set")
                except Exception as e:  # OSError, timeouts, DNS: keep going, retry later
                    self.next = _port.ticks_add(now, _RETRY_MS)
                    self.port.log("warning", "ntp: %s; daily counters wait for the time" % e)
            else:
                self.next = _port.ticks_add(now, _RETRY_MS)
        if not self.ok:
            return None
        return time.time() - self.epoch
