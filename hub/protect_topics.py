# Protection outputs on MQTT (hub/protect.py decides): P/output/<name> and the P/cmd/reset command.
# Loaded only by a hub with outputs in use (the board's heap is small); `self` is the hub's Publisher.
from hub.protect import NAMES, REASONS


def publish(self, hub, now):
    """P/output/<name> (retained) for every output in use: on change, and everything after a
    (re)connect; and every protection trip of this cycle on P/error."""
    p = hub.protect
    fresh = getattr(self, "_out_conn", -1) != self.connects  # a new connection: the broker may have lost them
    self._out_conn = self.connects
    for k in range(len(NAMES)):
        if self.cfg["outputs"][NAMES[k]]["pin"] is None or not (fresh or p.changed[k]):
            continue
        m = self.msg.clear().s(b'{"state":"').s(b"closed" if p.state[k] else b"open").s(b'","reason":"')
        m.s(REASONS[p.reason[k]]).s(b'","since":')
        age = self._td(now, p.since[k]) if p.moved[k] else self._td(now, hub.started)
        iso = self.port.iso_time(age)
        if iso is None:
            m.fixed(self._td(now, hub.started) - age, 3)  # seconds of uptime
        else:
            m.c(34).s(iso).c(34)
        m.s(b',"latched":').s(b"true" if p.latched[k] else b"false")
        m.s(b',"closed":').s(b"true" if p.state[k] else b"false").c(125)  # for Home Assistant's binary sensor
        self._pub(self._t(b"/output/", -1, NAMES[k]), m.view(), True)
    for k, text in p.events:
        if p.tripped(k):
            self._pub(self._t(b"/error"), text.encode(), False)


def on_command(self, hub, msg):
    if not msg:
        return  # the deletion of a command (ours, after use)
    try:
        name = bytes(msg).decode()
    except Exception:
        name = None
    if name not in NAMES:
        self.port.log("warning", "protect: reset command ignored: payload %r is not an output name (%s)"
                      % (bytes(msg)[:40], ", ".join(NAMES)))
    else:
        hub.reset_requests.append(name)
    self._pub(self._t(b"/cmd/reset"), b"", True)
