#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 machine. Idempotent:
# re-running it only checks that everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(gcc-avr binutils-avr avr-libc simavr libsimavr-dev libelf-dev mosquitto mosquitto-clients
          chromium clang libclang-rt-14-dev avrdude pkg-config)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# mosquitto's Debian package starts a system broker on :1883; tests start their own on free ports.

bash tools/setup-venv.sh "${VENV:-.venv}" dev,accuracy

# Node-RED + Dashboard 2.0 for the flow tests, pinned, into a cache folder outside the repo.
if command -v npm >/dev/null && [ -f tools/node-red/install.sh ]; then
  bash tools/node-red/install.sh
fi

# Home Assistant Core for tests/test_home_assistant.py, in its own cached venv outside the repo
# (~/.cache/packmonitor-ha, ~680 MB; 1-2.5 minutes the first time (measured 58 s and 149 s), 0.02 s after).
rc=0; bash tools/ha/install.sh || rc=$?
if [ "$rc" = 3 ]; then echo "Home Assistant not installed (not Python 3.11): tests/test_home_assistant.py will skip" >&2
elif [ "$rc" != 0 ]; then exit "$rc"; fi
