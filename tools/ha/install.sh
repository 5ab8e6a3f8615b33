#!/usr/bin/env bash
# Installs Home Assistant Core for the tests (tests/test_home_assistant.py) into its own cached venv,
# outside the repo: ~670 MB that the project's .venv should not carry. Idempotent: a complete venv is
# only checked.
#
#   bash tools/ha/install.sh            # -> ~/.cache/packmonitor-ha (or $PACKMON_HA_VENV)
#
# homeassistant 2024.3.3 is the last release that installs on Python 3.11 (later ones need 3.12). The
# tests run it offline (`hass --skip-pip`), so the requirements of the integrations HA always loads are
# installed here by hand, pinned by HA's own package_constraints.txt: without the frontend HA starts in
# recovery mode, which drops mqtt; mqtt needs file_upload, which needs janus. acme (via hass-nabucasa)
# breaks with josepy 2: every HTTP request would answer 500.
set -euo pipefail
HA_VERSION=2024.3.3
VENV="${PACKMON_HA_VENV:-$HOME/.cache/packmonitor-ha}"
STAMP="$VENV/.packmon-installed-$HA_VERSION"
if [ -f "$STAMP" ] && [ -x "$VENV/bin/hass" ]; then
  echo "Home Assistant $HA_VERSION already in $VENV"
  exit 0
fi
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "tools/ha/install.sh: Home Assistant $HA_VERSION needs Python 3.11, $PY is $("$PY" -V 2>&1)" >&2
  exit 3  # .ci/install-deps.sh lets this one through: the Home Assistant tests then skip, saying why
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --upgrade pip wheel >/dev/null
"${PIP[@]}" "homeassistant==$HA_VERSION" "paho-mqtt==1.6.1" "josepy<2"
CONSTRAINTS="$("$VENV/bin/python" -c 'import homeassistant, os; print(os.path.join(os.path.dirname(homeassistant.__file__), "package_constraints.txt"))')"
"${PIP[@]}" -c "$CONSTRAINTS" Pillow aiohttp-fast-url-dispatcher aiohttp-zlib-ng aiohttp_cors \
  home-assistant-frontend==20240307.0 ifaddr janus psutil-home-assistant securetar SQLAlchemy fnv-hash-fast \
  numpy PyTurboJPEG "paho-mqtt==1.6.1" "josepy<2"
touch "$STAMP"
echo "Home Assistant $HA_VERSION installed in $VENV in $(( $(date +%s) - start )) s"
