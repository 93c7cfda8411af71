#!/usr/bin/env bash
# Runs karl-dp on the embedded default for a laptop or CI machine: no hugepages,
# one TAP port (karl0), config/karl.yaml. Sets up and builds first when needed.
#   scripts/run.sh                 run in the foreground until Ctrl-C
#   KARL_LCORES=0-1                EAL lcore list (main + workers; default 0-1)
#   KARL_CONFIG_PATH=file          another configuration
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${KARL_BUILD_DIR:-build}
if [ ! -x "$BUILD_DIR/controlplane/karl-dp" ] || [ -n "$(find common dataplane controlplane config meson.build -newer "$BUILD_DIR/controlplane/karl-dp" -print -quit 2>/dev/null)" ]; then
  scripts/setup.sh
fi
CONFIG=${KARL_CONFIG_PATH:-config/karl.yaml}
PORT=${KARL_METRICS_PORT:-9091}
echo "karl-dp: starting on TAP interface karl0 with $CONFIG"
echo "karl-dp: ops endpoints: http://127.0.0.1:$PORT/health /ready /status /metrics"
exec "$BUILD_DIR/controlplane/karl-dp" -l "${KARL_LCORES:-0-1}" --no-huge -m 512 --no-pci \
  --file-prefix "karl-run-$$" --vdev net_tap0,iface=karl0 -- --config "$CONFIG"
