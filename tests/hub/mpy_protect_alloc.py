# Run by tests/hub/test_protect.py on the MicroPython unix port: protect.decide() allocates nothing in a
# cycle where no output changes (the per-scan path), and a change still works there.
import gc

from hub import config
from hub.alarms import NAMES, Alarms
from hub.bank import Bank
from hub.protect import CHARGE, Protect

cfg = config.validate({"mqtt": {"host": "h"}, "outputs": {"charge_enable": {"pin": 25}, "fan": {"pin": 27}}},
                      False)
p = Protect(cfg, NAMES)
a = Alarms(cfg)
b = Bank(16, 30000)
b.resize(16)
for i in range(16):
    b.mv[i] = 3700
    b.temp[i] = 250
    b.have[i] = 1
    b.seen[i] = 0


def td(x, y):
    return x - y


p.decide(b, a, None, 0, td)
del p.events[:]
gc.collect()
before = gc.mem_alloc()
for t in range(1, 201):
    for i in range(16):
        b.seen[i] = t * 1000
    p.decide(b, a, None, t * 1000, td)
after = gc.mem_alloc()
print("alloc_per_200_decisions", after - before)
b.mv[5] = 4200
p.decide(b, a, None, 201000, td)
print("charge", p.state[CHARGE], p.events[-1][1])
