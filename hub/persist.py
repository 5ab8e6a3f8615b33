# State that must survive a reset (energy counters, SOC and health estimates, protection latches), kept in
# one file on the board's flash under ONE write budget, so no module can wear the flash out on its own.
#
#   store = Store("/state.json", clock)
#   saved = store.register("energy", energy)   # energy.restore(dict) is called now if the file had it
#   store.changed()                            # something worth keeping changed (no allocation)
#   store.changed(urgent=True)                 # a safety latch: written within urgent_min_ms
#   store.service(now)                         # once per cycle: writes when the budget allows
#
# An owner is any object with snapshot() -> dict (called only when a write happens, never per scan) and
# restore(dict) (called once, at register(), with what was saved). Values must be JSON-able.
#
# Budget: an ordinary change is written at most once per min_interval_ms (default 15 min: about 100
# writes a day, which littlefs spreads over the whole filesystem); an urgent change at most once per
# urgent_min_ms (default 10 s). A change is never dropped, only deferred to the next allowed write.
#
# The file is "packmon-state 1 <checksum>\n<json>", written to a temporary file and renamed over the old
# one, so a power cut mid-write leaves the previous state. A file that fails its checksum or does not
# parse is renamed to <path>.bad, reported in last_error, and nothing is restored from it: the owners
# then start from "unknown", never from a guess.
import json

try:
    import os
except ImportError:  # pragma: no cover
    import uos as os

_MAGIC = "packmon-state 1 "


def checksum(text):
    """Fletcher-16 over the UTF-8 bytes of text: catches a torn or bit-flipped file."""
    a = 0
    b = 0
    for c in text.encode():
        a = (a + c) % 255
        b = (b + a) % 255
    return (b << 8) | a


class Store:
    def __init__(self, path, clock, min_interval_ms=900000, urgent_min_ms=10000, log=None):
        self.path = path
        self.clock = clock
        self.min_interval_ms = min_interval_ms
        self.urgent_min_ms = urgent_min_ms
        self._log = log
        self.owners = {}
        self.saved = {}  # section -> dict, as read from the file at start
        self.dirty = False
        self.urgent = False
        self.last_write = None  # ticks_ms of the last write (None: none since start)
        self.writes = 0  # writes since start
        self.lifetime_writes = 0  # writes over the file's life (kept in the file)
        self.deferred = 0  # service() calls that had a change but had to wait for the budget
        self.errors = 0
        self.last_error = ""
        self.loaded = False  # True when a valid file was read
        self._read()

    def _say(self, level, msg):
        if self._log is not None:
            self._log(level, msg)

    def _fail(self, msg):
        self.errors += 1
        self.last_error = msg
        self._say("error", "state: " + msg)

    def _read(self):
        try:
            with open(self.path) as f:
                text = f.read()
        except OSError:
            return  # no file yet: a first start, nothing to restore
        head, _, body = text.partition("\n")
        why = ""
        if not head.startswith(_MAGIC):
            why = "unknown header"
        else:
            try:
                want = int(head[len(_MAGIC):])
            except ValueError:
                want = -1
            if want != checksum(body):
                why = "checksum mismatch (torn or corrupted write)"
        data = None
        if not why:
            try:
                data = json.loads(body)
            except ValueError:
                why = "not valid JSON"
            if data is not None and not isinstance(data, dict):
                why = "not a JSON object"
        if why:
            try:
                os.rename(self.path, self.path + ".bad")
            except OSError:
                pass
            self._fail("%s is unusable (%s): kept as %s.bad; starting with nothing restored" % (
                self.path, why, self.path))
            return
        meta = data.get("_meta") or {}
        self.lifetime_writes = meta.get("writes", 0) if isinstance(meta, dict) else 0
        for k in data:
            if k != "_meta" and isinstance(data[k], dict):
                self.saved[k] = data[k]
        self.loaded = True

    def register(self, name, owner):
        """Adds an owner; calls owner.restore(saved) if the file had its section. Returns whether it did."""
        self.owners[name] = owner
        d = self.saved.get(name)
        if d is None:
            return False
        try:
            owner.restore(d)
        except Exception as e:  # a section an older or newer version wrote: ignore it, loudly
            self._fail("section %s could not be restored (%s): starting it from nothing" % (name, e))
            return False
        return True

    def changed(self, urgent=False):
        self.dirty = True
        if urgent:
            self.urgent = True

    def due(self, now):
        """Whether service(now) would write."""
        if not self.dirty:
            return False
        if self.last_write is None:
            return True
        age = self.clock.ticks_diff(now, self.last_write)
        return age >= (self.urgent_min_ms if self.urgent else self.min_interval_ms)

    def service(self, now, force=False):
        """Writes the file if something changed and the budget allows (force: a clean shutdown).
        Returns True when it wrote."""
        if not self.dirty:
            return False
        if not force and not self.due(now):
            self.deferred += 1
            return False
        return self._write(now)

    def _write(self, now):
        data = {}
        for name in self.owners:
            try:
                data[name] = self.owners[name].snapshot()
            except Exception as e:
                self._fail("section %s could not be saved (%s)" % (name, e))
        for name in self.saved:  # keep sections of owners not registered in this run (feature switched off)
            if name not in data:
                data[name] = self.saved[name]
        data["_meta"] = {"writes": self.lifetime_writes + 1}
        body = json.dumps(data)
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(_MAGIC + str(checksum(body)) + "\n")
                f.write(body)
            os.rename(tmp, self.path)
        except OSError as e:
            self.last_write = now  # retry under the same budget, not every cycle
            self._fail("cannot write %s (%s)" % (self.path, e))
            return False
        self.lifetime_writes += 1
        self.writes += 1
        self.last_write = now
        self.dirty = False
        self.urgent = False
        return True
