# The check of a user's own OCV table (the battery block's `ocv_table`, hub/battery_cfg.py): a module of its own,
# loaded only for a config that has one (the board's heap is small).
def problem(t):
    """What is wrong with a user's OCV table ([[soc %, mV], ...]), or ""."""
    if not isinstance(t, list) or not 3 <= len(t) <= 32:
        return "must be a list of 3 to 32 [soc %, mV] pairs"
    prev = None
    for k, pt in enumerate(t):
        if not isinstance(pt, list) or len(pt) != 2 or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in pt):
            return "point %d: must be [soc %%, mV], got %r" % (k, pt)
        soc, mv = pt
        if not 0 <= soc <= 100 or not 1000 <= mv <= 5000:
            return "point %d: %r is outside 0..100 %% and 1000..5000 mV" % (k, pt)
        if prev is not None and (soc <= prev[0] or mv <= prev[1]):
            return "point %d: %r must be above the point before (%r) in both SOC and voltage" % (k, pt, prev)
        prev = pt
    if t[0][0] != 0 or t[-1][0] != 100:
        return "must run from 0 %% to 100 %% SOC (got %r to %r)" % (t[0][0], t[-1][0])
    return ""

