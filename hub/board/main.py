# Pack Monitor hub entry point on the ESP32 (copied to the board's root by `packmon deploy`).
import time

import machine

import hub
from hub import config

try:
    cfg = config.load("config.json")  # first: validation's peak fits the heap before the hub's modules
except config.ConfigError as e:
    # a bad config cannot be fixed by resetting: say what is wrong, forever, and wait for a new one
    while True:
        print("[error] %s" % e)
        for p in e.problems:
            print("[error]   " + p)
        time.sleep(10)
features = config.features(cfg)  # the feature modules hub.preload loads
config.unload()  # validation is done: its bytecode is heap the hub can use
del config
hub.preload(cfg, features)  # one module at a time, so the heap stays in large pieces
from hub.app import Hub  # noqa: E402  (loaded by preload)
from hub.port import BoardPort  # noqa: E402

port = BoardPort(cfg)
probes = None
if cfg["probes"]["enabled"]:
    from hub.probes import Probes

    try:
        probes = Probes.on_pin(cfg["probes"]["pin"], port.log)
    except Exception as e:
        port.log("error", "probes: %s" % e)
try:
    Hub(cfg, port, probes).run_forever()
except Exception as e:  # never expected: log it, give a console time to see it, restart
    import sys

    sys.print_exception(e)
    time.sleep(5)
    machine.reset()
