# The hub under the MicroPython unix port: the same hub modules as on the board, with the host port
# (hub/hostport.py HostPort) whose UART is a TCP connection to a simulated ring.
#
#   MICROPYPATH=<board>:<board>/lib:.frozen micropython -X heapsize=100k -m hub_main \
#       config.json RING_HOST RING_PORT [CYCLES] [nosleep] [i2c=HOST:PORT] [wall=SECONDS]
#
# (tools/packmon/mpy_hub.py builds <board> as `packmon deploy` would, and precompiles this script there.)
# CYCLES 0 = run forever. i2c=: a simulated shunt monitor served by tools/packmon/sim/ina.py (SocketI2C);
# wall=: the wall clock's time at start (seconds since 2000-01-01 UTC), as if NTP had answered.
# Prints the hub's log lines, one cycle summary per cycle ("cycle N ..."), one line per output pin change
# ("out K CLOSED TICKS", read by the closed loop), and at the end the heap figures.
import gc
import sys

import hub
from hub import config

args, i2c, wall = sys.argv[1:], None, None
if [a for a in args if "=" in a]:  # a simulated shunt: the bridge is loaded only then (the heap is small)
    from hub import simlink

    args, i2c, wall = simlink.parse(args)
cfg = config.load(args[0], False)
features = config.features(cfg)
config.unload()  # as the board's main.py does
del config
hub.preload(cfg, features)
from hub import port as board_port  # noqa: E402
from hub.app import Hub  # noqa: E402  (loaded by preload)
from hub.hostport import HostPort, SocketUart  # noqa: E402  (host only: never on a board)

# The board carries hub/port.py's BoardPort and not hub/hostport.py; here HostPort stands in for BoardPort,
# so BoardPort's bytecode is dropped: the heap measured here is then the board's, give or take the
# difference between the two classes (hub/hostport.py is the larger)
del board_port.BoardPort, board_port

cycles = int(args[3]) if len(args) > 3 else 0
nosleep = len(args) > 4 and args[4] == "nosleep"


def log(level, msg):
    print("[%s] %s" % (level, msg))


port = HostPort(SocketUart(args[1], int(args[2])), log_level=cfg["log_level"], log=log, i2c=i2c, wall=wall)
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
print("done cycles %d peak_alloc %d free %d alloc %d" % (n, peak, gc.mem_free(), gc.mem_alloc()))
if hub._store is not None:
    hub._store.service(clk.ticks_ms(), True)
hub.publisher.close()
