# Open-circuit voltage against state of charge, one generic table per chemistry (pack voltage of one cell,
# or of P cells in parallel: the same curve).
#
# These are GENERIC curves for the chemistry, the rest-voltage charts published for the whole cell family
# (NMC/graphite: the widely circulated 18650/21700 NMC rest-voltage chart; LFP/graphite: the common LiFePO4
# rest-voltage chart, 3.2 V nominal), NOT fitted to the cell that `packmon accuracy` simulates: the
# estimator is judged against an independent model, and docs/soc.md reports what the mismatch costs.
#
# Tables are (soc in 0.01 %, mV) pairs, soc ascending; lookups interpolate linearly and allocate nothing.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


SOC_FULL = const(10000)

NMC = (
    (0, 3000), (500, 3300), (1000, 3450), (2000, 3550), (3000, 3620), (4000, 3680), (5000, 3740),
    (6000, 3810), (7000, 3890), (8000, 3970), (9000, 4070), (10000, 4200),
)
LFP = (
    (0, 2500), (500, 2900), (1000, 3000), (2000, 3200), (3000, 3220), (4000, 3250), (5000, 3260),
    (6000, 3270), (7000, 3300), (8000, 3320), (9000, 3350), (10000, 3400),
)
TABLES = {"nmc": NMC, "lfp": LFP}
# the voltage a pack must reach, held with the tail current, to count as full (per chemistry)
FULL_MV = {"nmc": 4100, "lfp": 3450}


def soc_of(table, mv):
    """SOC (0.01 %) for a rest voltage, clipped to 0..10000."""
    if mv <= table[0][1]:
        return 0
    n = len(table)
    for k in range(1, n):
        s1, v1 = table[k]
        if mv <= v1:
            s0, v0 = table[k - 1]
            return s0 + (mv - v0) * (s1 - s0) // (v1 - v0)
    return SOC_FULL


def slope_of(table, mv):
    """The table's slope at mv in mV per 1 % SOC (x100: 0.01 mV per %): how much a voltage error costs."""
    n = len(table)
    for k in range(1, n):
        s1, v1 = table[k]
        if mv <= v1 or k == n - 1:
            s0, v0 = table[k - 1]
            return (v1 - v0) * 10000 // (s1 - s0)
    return 0


def mv_of(table, soc):
    """The table's voltage at soc (0.01 %)."""
    if soc <= 0:
        return table[0][1]
    for k in range(1, len(table)):
        s1, v1 = table[k]
        if soc <= s1:
            s0, v0 = table[k - 1]
            return v0 + (soc - s0) * (v1 - v0) // (s1 - s0)
    return table[-1][1]
