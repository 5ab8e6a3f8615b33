#!/usr/bin/env bash
# Installs pinned Node-RED 4, FlowFuse Dashboard 2.0 and playwright-core (for the headless-Chromium
# dashboard test) into a cache folder outside the repo:
#   ${PACKMON_NODE_RED_DIR:-$HOME/.cache/packmonitor-node-red}
# Idempotent: does nothing when the pinned versions are already installed there.
# Usage: bash tools/node-red/install.sh            (PACKMON_NODE_RED_DIR=... to choose the folder)
set -euo pipefail

# Pinned versions, verified together on Node 20 (node-red 5.x needs Node >= 22.9).
NODE_RED_VERSION=4.1.8
DASHBOARD_VERSION=1.31.0
PLAYWRIGHT_CORE_VERSION=1.65.1

DIR="${PACKMON_NODE_RED_DIR:-$HOME/.cache/packmonitor-node-red}"
start=$(date +%s)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install.sh: node and npm are needed (Node.js >= 20)" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "install.sh: Node.js >= 20 needed, found $(node --version)" >&2
  exit 1
fi

installed_version() {  # $1 = package name; prints its installed version or nothing
  local pj="$DIR/node_modules/$1/package.json"
  [ -f "$pj" ] && node -p "require(process.argv[1]).version" "$pj" 2>/dev/null || true
}

if [ "$(installed_version node-red)" = "$NODE_RED_VERSION" ] &&
   [ "$(installed_version @flowfuse/node-red-dashboard)" = "$DASHBOARD_VERSION" ] &&
   [ "$(installed_version playwright-core)" = "$PLAYWRIGHT_CORE_VERSION" ] &&
   [ -x "$DIR/node_modules/.bin/node-red" ]; then
  echo "node-red $NODE_RED_VERSION, @flowfuse/node-red-dashboard $DASHBOARD_VERSION, playwright-core" \
       "$PLAYWRIGHT_CORE_VERSION already installed in $DIR ($(( $(date +%s) - start )) s)"
  exit 0
fi

mkdir -p "$DIR"
cat > "$DIR/package.json" <<JSON
{
  "name": "packmonitor-node-red",
  "private": true,
  "description": "Node-RED + Dashboard 2.0 for Pack Monitor (written by tools/node-red/install.sh)",
  "dependencies": {
    "node-red": "$NODE_RED_VERSION",
    "@flowfuse/node-red-dashboard": "$DASHBOARD_VERSION",
    "playwright-core": "$PLAYWRIGHT_CORE_VERSION"
  }
}
JSON
echo "installing node-red@$NODE_RED_VERSION @flowfuse/node-red-dashboard@$DASHBOARD_VERSION" \
     "playwright-core@$PLAYWRIGHT_CORE_VERSION into $DIR ..."
# playwright-core downloads no browser (the test uses Debian's /usr/bin/chromium).
(cd "$DIR" && npm install --no-audit --no-fund --omit=dev --loglevel=error)
for p in node-red @flowfuse/node-red-dashboard playwright-core; do
  [ -n "$(installed_version "$p")" ] || { echo "install.sh: $p did not install" >&2; exit 1; }
done
echo "installed in $DIR in $(( $(date +%s) - start )) s"
