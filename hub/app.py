# The hub's main loop: enumerate the ring, scan it, keep the bank model, raise alarms, publish.
#
#   hub = Hub(cfg, port)     cfg from hub.config.validate()/load(); port a hub.port.Port
#   hub.run_once()           one cycle: ring (enumerate if needed, scan), shunt, model, alarms, protection,
#                            then publish
#   hub.idle()               between cycles: lets the shunt driver read completed conversions (INA226)
#   hub.run_forever()        a first cycle without network (protection never waits for Wi-Fi), Wi-Fi,
#                            then run_once() every scan_interval_s, feeding the watchdog
#
# Order inside a cycle: scan and shunt read -> bank model -> alarms -> PROTECTION (decision and pins)
# -> estimator -> everything that may touch the network (errors, publishing, commands). A hung broker can
# delay the next scan by at most mqtt.timeout_s per blocking call, never a decision already taken.
#
# Host tools (packmon demo) build Hub with hub.hostport.HostPort(uart=SimUart(engine)) and call run_once()
# themselves; hub.bank, hub.alarms, hub.ring and hub.publisher hold everything worth showing.
#
# hub.store is the one persistence store (hub/persist.py, cfg["state_file"]): energy counters and any
# other state that must survive a reset register with it. hub.shunt is None without an enabled `shunt`
# block; otherwise after each scan it holds ok, current_ma, dq_mas, dt_ms, coverage_ppm (hub/shunt.py).
from hub import codec
from hub.alarms import Alarms
from hub.bank import Bank
from hub.publisher import Publisher
from hub.ring import Ring, RingError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_FAILS_BEFORE_ENUMERATE = const(3)
_RETRY = (codec.ERR_BAD_CRC, codec.ERR_RING_FAULT, codec.ERR_MISMATCH, codec.ERR_TRUNCATED)
_RETRIES = const(2)  # a corrupted frame, then the frame that reports where (docs/protocol.md §4)
_ENUM_BACKOFF_MAX_MS = const(30000)
_IDLE_SLICE_MS = const(250)  # between cycles: watchdog and shunt polls at least this often


class Hub:
    def __init__(self, cfg, port, probes=None):
        self.cfg = cfg
        self.port = port
        if cfg["shunt"]["enabled"]:
            from hub import shunt as hooks  # loaded only with a shunt (hub.preload() loads its modules first)

            self._shunt_hooks = hooks
        clk = port.clock
        self._td = clk.ticks_diff  # bound once: passing clk.ticks_diff each cycle would allocate
        self.ring = Ring(port.uart, cfg["uart"]["baud"], clk, cfg["max_packs"])
        self.bank = Bank(cfg["max_packs"], int(cfg["stale_after_s"] * 1000))
        self.alarms = Alarms(cfg)
        self.publisher = Publisher(cfg, port)
        self.probes = probes
        self.probe_ids = probes.ids if probes else []
        self.probe_temps = [-32768] * len(self.probe_ids)
        self.need_enum = True
        self.enumerations = 0
        self.fail_streak = 0
        self.enum_backoff_ms = 1000
        self.next_enum = None
        self.started = clk.ticks_ms()
        self.last_good = self.started
        self.last_fault = 0
        self.scan_time = 0
        self.scanned_this_cycle = False
        self.republish_alarms = True
        self.cycles = 0
        self.last_error = ""
        self._errors = []  # texts for P/error, sent in the network phase of the cycle
        self.protect = None
        self.reset_requests = []  # output names from P/cmd/reset (publisher), applied next cycle
        self._store = None
        outs = cfg.get("outputs")  # protection first: every output is driven open before anything else
        if outs and [n for n in outs if outs[n]["pin"] is not None]:
            from hub import protect  # loaded only with outputs in use: the board's heap is small

            protect.start(self)
        self.shunt = None
        self.energy = None
        self.snap = None  # the bank snapshot (hub/snapshot.py), when enabled
        self._read_at_instant = self._read_shunt  # bound once: a bound method made per cycle would allocate
        if cfg["shunt"]["enabled"]:
            hooks.start(self)
        self.est_step = None  # SOC and health (hub/soc.py hub_step), with a battery block
        sn = cfg.get("snapshot")
        if sn and sn.get("enabled"):
            from hub import snapshot  # loaded only when enabled (hub.features)

            self._snap_step = snapshot.step
            snapshot.start(self)
        if cfg["battery"]["enabled"]:
            from hub.soc import start as start_estimator  # loaded only with one: the board's heap is small

            start_estimator(self)

    @property
    def store(self):
        """The hub's one persistence store (hub/persist.py, cfg["state_file"]), made when a feature first
        asks for it, so a hub without such a feature does not load it."""
        if self._store is None:
            from hub.persist import Store

            self._store = Store(self.cfg["state_file"], self.port.clock, log=self.log)
        return self._store

    def log(self, level, msg):
        self.port.log(level, msg)

    def _error(self, now, text):
        """A problem worth telling the user: logged and published on <prefix>/error."""
        if text != self.last_error:
            self.log("error", text)
        self.last_error = text
        self._errors.append(text)  # published in the cycle's network phase: never before protection

    # -- the ring ---------------------------------------------------------------------------------
    def _enumerate(self, now):
        clk = self.port.clock
        if self.next_enum is not None and clk.ticks_diff(now, self.next_enum) < 0:
            return False
        try:
            n = self.ring.enumerate()
        except RingError as e:
            self.next_enum = _ticks_add(now, self.enum_backoff_ms)
            self.enum_backoff_ms = min(self.enum_backoff_ms * 2, _ENUM_BACKOFF_MAX_MS)
            self._error(now, "ring: enumerate failed: %s" % e)
            return False
        self.enumerations += 1
        self.enum_backoff_ms = 1000
        self.next_enum = None
        if n == 0:
            self._error(now, "ring: the ring is closed but no node answered (hub TX wired straight to hub RX?)")
            return False
        if n != self.bank.n:
            if self.bank.n:
                self._error(now, "ring: pack count changed from %d to %d; packs are numbered by ring position"
                            % (self.bank.n, n))
            self.log("info", "ring: %d packs" % n)
        self.bank.resize(n)
        self.need_enum = False
        return True

    def _scan(self, now):
        n = self.bank.n
        tries = 0
        try:
            while True:
                # a frame hit by noise: immediate retries (counted like any failure) cost a scan time each,
                # far less than waiting a whole interval with no fresh data. Two: since protocol 1.2 the node
                # that found a frame bad reports it in the next frame, which the hub discards as ring_fault
                try:
                    nodes = self.ring.scan(n)
                    break
                except RingError as e:
                    tries += 1
                    if e.code not in _RETRY or tries > _RETRIES:
                        raise
        except RingError as e:
            self.fail_streak += 1
            if e.fault:
                self.last_fault = e.fault
            if e.code == codec.ERR_SLOT_OVERFLOW or self.fail_streak >= _FAILS_BEFORE_ENUMERATE:
                self.need_enum = True
            self.log("warning", "ring: scan failed (%d in a row): %s" % (self.fail_streak, e))
            if self.fail_streak == _FAILS_BEFORE_ENUMERATE:
                self._error(now, "ring: %d scans in a row failed, last: %s" % (self.fail_streak, e))
            return False
        self.bank.update(self.ring.rx, nodes, now, self.ring.sent)
        self.fail_streak = 0
        self.last_good = now
        self.scan_time = now
        self.scanned_this_cycle = True
        if nodes != n:
            # fewer nodes filled their slots than enumerated: a node was removed or the ring changed
            self._error(now, "ring: %d of %d packs answered; enumerating again" % (nodes, n))
            self.bank.resize(nodes)
            self.need_enum = True
        return True

    # -- one cycle ----------------------------------------------------------------------------------
    def run_once(self, network=True):
        clk = self.port.clock
        self.port.feed_watchdog()
        now = clk.ticks_ms()
        self.scanned_this_cycle = False
        if self.need_enum:
            self._enumerate(now)
        if not self.need_enum and self.bank.n:
            self._scan(now)
        if self.snap is not None and self.scanned_this_cycle:
            self._snap_step(self, now, self._read_at_instant)  # the shunt is read at the snapshot's instant
        else:
            self._read_shunt()
        now = clk.ticks_ms()
        self.bank.compute(now, self._td)
        self.alarms.evaluate(self.bank, clk.ticks_diff(now, self.last_good))
        if self.protect is not None:
            self._protect_step(self, now)  # the decision and the pins: before anything slow or networked
        if self.shunt is not None:
            self._shunt_hooks.after_compute(self)
        if self.est_step is not None:
            self.est_step(self, now)
        if self.probes is not None:
            self.probes.read(self.probe_temps)
        for k in range(len(self.alarms.changed)):
            if self.alarms.news[k]:
                self.log("warning" if self.alarms.active[k] else "info", "alarm %s %s" % (
                    _alarm_name(k), "raised" if self.alarms.active[k] else "cleared"))
        # -- the network phase ---------------------------------------------------------------------
        if network:
            for text in self._errors:
                self.publisher.publish_error(now, text)
            self.publisher.publish_cycle(self, now)
        del self._errors[:]
        if self.protect is not None:
            del self.protect.events[:]
        if self._store is not None:
            self._store.service(clk.ticks_ms())
        self.cycles += 1
        self.port.feed_watchdog()

    def _read_shunt(self):
        if self.shunt is not None:
            self._shunt_hooks.after_scan(self, self.port.clock.ticks_ms())

    def idle(self):
        """Between cycles: the INA226 driver reads each completed averaging window."""
        if self.shunt is not None:
            self.shunt.poll(self.port.clock.ticks_ms())

    def run_forever(self):
        clk = self.port.clock
        w = self.cfg["wifi"]
        self.log("info", "pack monitor hub: bank %s, publishing to %s" % (self.cfg["bank"], self.cfg["topic_prefix"]))
        interval = int(self.cfg["scan_interval_s"] * 1000)
        # the first scan (and with outputs, the first decision) comes before Wi-Fi and MQTT
        start = clk.ticks_ms()
        self.run_once(network=False)
        if self.protect is not None:
            self.port.wifi_connect(0)  # start joining; never wait: the publisher retries (1 s at most each)
        elif not self.port.wifi_connect(int(w["timeout_s"] * 1000)):
            self.log("warning", "wifi: not connected after %d s; scanning anyway and retrying" % w["timeout_s"])
        first = True
        while True:
            if not first:
                start = clk.ticks_ms()
                self.run_once()
            first = False
            # sleep in slices so the watchdog is fed while waiting
            while True:
                left = interval - clk.ticks_diff(clk.ticks_ms(), start)
                if left <= 0:
                    break
                self.port.feed_watchdog()
                self.idle()
                clk.sleep_ms(min(left, _IDLE_SLICE_MS))


def _alarm_name(k):
    from hub.alarms import NAMES

    return NAMES[k]


def _ticks_add(a, b):
    try:
        from time import ticks_add

        return ticks_add(a, b)
    except ImportError:
        return a + b
