# The hub under the MicroPython unix port: the same hub modules as on the board, with the host port
# (hub/port.py HostPort) whose UART is a TCP connection to a simulated ring.
#
#   MICROPYPATH=<repo>:<repo>/hub/lib:.frozen micropython -X heapsize=100k tools/mpy/hub_main.py \
#       config.json RING_HOST RING_PORT [CYCLES] [nosleep]
#
# CYCLES 0 = run forever. Prints the hub's log lines, one cycle summary per cycle ("cycle N ..."), and
# at the end the heap figures.
import gc
import sys

import hub
from hub import config

args = sys.argv[1:]
cfg = config.load(args[0], False)
config.unload()  # as the board's main.py does
del config
hub.preload(cfg)
from hub.app import Hub  # noqa: E402  (loaded by preload)
from hub.port import HostPort, SocketUart  # noqa: E402

cycles = int(args[3]) if len(args) > 3 else 0
nosleep = len(args) > 4 and args[4] == "nosleep"


def log(level, msg):
    print("[%s] %s" % (level, msg))


port = HostPort(SocketUart(args[1], int(args[2])), log_level=cfg["log_level"], log=log)
gc.collect()  # what the imports left behind, before the hub's long-lived buffers
hub = Hub(cfg, port)
clk = port.clock
interval = int(cfg["scan_interval_s"] * 1000)
n = 0
peak = 0
out_seen = 0


def report_outputs():
    # protection outputs (when configured): one line per pin change, read by the closed loop
    global out_seen
    log = getattr(port, "out_log", None)
    if log is None:
        return
    for e in log[out_seen:]:
        print("out %d %d %d" % (e[1], e[2], e[0]))
    out_seen = len(log)


report_outputs()
gc.collect()
while cycles == 0 or n < cycles:
    start = clk.ticks_ms()
    hub.run_once()
    report_outputs()
    n += 1
    used = gc.mem_alloc()
    if used > peak:
        peak = used
    if n % 50 == 0:
        gc.collect()
    b = hub.bank
    print("cycle %d packs %d fresh %d published %d errors %d free %d" % (
        n, b.n, b.fresh, hub.publisher.published, sum(hub.ring.errors), gc.mem_free()))
    if not nosleep:
        left = interval - clk.ticks_diff(clk.ticks_ms(), start)
        if left > 0:
            clk.sleep_ms(left)
gc.collect()
print("done cycles %d peak_alloc %d free %d" % (n, peak, gc.mem_free()))
hub.publisher.close()
