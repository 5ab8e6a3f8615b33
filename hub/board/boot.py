# Pack Monitor hub: runs first on the ESP32. Nothing to do before main.py; kept small on purpose so
# a broken main.py can still be replaced with mpremote.
