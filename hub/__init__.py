VERSION = "0.1.0"  # the hub's software version (Home Assistant shows it on the device)

# The hub's modules, in the order preload() imports them: the base hub's, then umqtt.simple (otherwise
# imported at the first connect, into a heap already in use), then each feature's only when its config
# block is on (hub.config.features(): tls, persist, the shunt's, the battery's, the outputs' modules).
# config is loaded (and unloaded) before; probes only with probes enabled, discovery only with discovery.
MODULES = ("codec", "alarms", "bank", "ring", "mqtt", "discovery", "publisher", "port", "app")


def preload(cfg, features=()):
    """Import the hub's modules one at a time, collecting in between: each module's import-time garbage is
    freed before the next loads, so the heap stays in large pieces and the hub's buffers (up to 1 KB for
    64 packs) still find room in 100 KB. Imported in one go, the same modules leave the free heap in
    pieces of under 1 KB (measured on the unix port). features: hub.config.features(cfg), the feature
    modules this config runs (computed before config is unloaded: this package stays small)."""
    import gc

    for m in MODULES:
        if m == "discovery" and not cfg["discovery"]["enabled"]:
            continue
        __import__("hub." + m)
        gc.collect()
    __import__("umqtt.simple")
    gc.collect()
    for m in features:
        __import__("hub." + m)
        gc.collect()
