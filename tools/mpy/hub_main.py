# The hub under the MicroPython unix port: the same hub modules as on the board, with the host port
# (hub/port.py HostPort) whose UART is a TCP connection to a simulated ring.
#
#   MICROPYPATH=<repo>:<repo>/hub/lib:.frozen micropython -X heapsize=100k tools/mpy/hub_main.py \
#       config.json RING_HOST RING_PORT [CYCLES] [nosleep] [i2c=HOST:PORT] [wall=SECONDS]
#
# CYCLES 0 = run forever. i2c=: a simulated shunt monitor served by tools/packmon/sim/ina.py (SocketI2C);
# wall=: the wall clock's time at start (seconds since 2000-01-01 UTC), as if NTP had answered.
# Prints the hub's log lines, one cycle summary per cycle ("cycle N ..."), and at the end the heap
# figures.
import gc
import sys

from hub import config, simlink
from hub.app import Hub
from hub.port import HostPort, SocketUart

args, i2c, wall = sys.argv[1:], None, None
if [a for a in args if "=" in a]:  # a simulated shunt: the bridge is loaded only then (the heap is small)
    from hub import simlink

    args, i2c, wall = simlink.parse(args)
cfg = config.load(args[0], False)
cycles = int(args[3]) if len(args) > 3 else 0
nosleep = len(args) > 4 and args[4] == "nosleep"


def log(level, msg):
    print("[%s] %s" % (level, msg))


port = HostPort(SocketUart(args[1], int(args[2])), log_level=cfg["log_level"], log=log, i2c=i2c, wall=wall)
hub = Hub(cfg, port)
clk = port.clock
interval = int(cfg["scan_interval_s"] * 1000)
n = 0
peak = 0
gc.collect()
while cycles == 0 or n < cycles:
    start = clk.ticks_ms()
    hub.run_once()
    n += 1
    used = gc.mem_alloc()
    if used > peak:
        peak = used
    if n % 50 == 0:
        gc.collect()
    b = hub.bank
    sh = hub.shunt
    print("cycle %d packs %d fresh %d published %d errors %d free %d%s" % (
        n, b.n, b.fresh, hub.publisher.published, sum(hub.ring.errors), gc.mem_free(),
        "" if sh is None else " shunt %s %d mA" % ("ok" if sh.ok else "--", sh.current_ma)))
    if not nosleep:
        while True:  # as run_forever: the shunt is polled between cycles
            left = interval - clk.ticks_diff(clk.ticks_ms(), start)
            if left <= 0:
                break
            hub.idle()
            clk.sleep_ms(min(left, 250))
gc.collect()
print("done cycles %d peak_alloc %d free %d" % (n, peak, gc.mem_free()))
hub.store.service(clk.ticks_ms(), True)
hub.publisher.close()
