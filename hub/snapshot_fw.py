# The firmware check before a bank snapshot (docs/protocol.md §3.5, §4): INFO to every position, loaded only
# for the check (hub/snapshot.py imports it and drops it again: the board's heap is small).
from hub import codec
from hub.ring import RingError

_FW_SNAP = 0x0104  # firmware 1.4: protocol 1.3, which times a SNAP by its bytes and adds to ELAPSED


def check(ring, n, feed, retry):
    """INFO to every position (64 packs: ~6 s). Returns (None, old): old is "" or the positions before firmware
    1.4 ("3, 7 (no INFO answer)"); or (problem, None) when a position did not answer through the retries."""
    old = []
    for i in range(n):
        if feed is not None:
            feed()  # the board's watchdog
        tries = 0
        while True:
            try:
                done = ring.addressed(codec.CMD_INFO, i + 1, None, n)
                break
            except RingError as e:
                tries += 1
                if e.code not in retry or tries > 2:
                    return ("ring: snapshot: could not read the firmware version of position %d (%s); no "
                            "simultaneous readings this cycle" % (i + 1, e)), None
        o = codec.slot(0)
        if not done or (ring.rx[o] << 8 | ring.rx[o + 1]) < _FW_SNAP:
            old.append(str(i + 1) if done else "%d (no INFO answer)" % (i + 1))
    return None, ", ".join(old)
