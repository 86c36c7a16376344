#!/usr/bin/env bash
# The dashboard with 10,000 devices known (outpost-bench-dashboard: the aggregator's own
# OpsCenter, LatestStore and HTTP server over a seeded registry and store) in headless Chromium:
# the overview pages the device list (never all 10,000), and a device page, opened from its row,
# shows 4 sensors with values and sparklines at 3 requests per refresh. Bounded: the server exits
# after --duration and is stopped by pid; the check has its own timeout.
# Usage: device_page_10k_test.sh [BUILD_DIR]
set -euo pipefail
BUILD=${1:-${OUTPOST_BUILD_DIR:-build}}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK=$(mktemp -d)
PID=""
cleanup() {
  if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v chromium >/dev/null || { echo "FAIL: chromium is not installed (scripts/deps.sh)"; exit 1; }
"$BUILD/tests/bench/outpost-bench-dashboard" --devices 10000 --port-file "$WORK/port" \
  --duration 120 2>"$WORK/server.log" &
PID=$!
for _ in $(seq 1 150); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
[[ -s "$WORK/port" ]] || { echo "FAIL: server did not start: $(cat "$WORK/server.log")"; exit 1; }
URL="http://127.0.0.1:$(cat "$WORK/port")/"
node --experimental-websocket "$HERE/../dashboard/dashboard_check.mjs" --url "$URL" \
  --min-devices 10000 --device dev-00001 --min-sensors 4 --timeout 60 >"$WORK/check.json" ||
  { echo "FAIL: $(cat "$WORK/check.json")"; exit 1; }
cat "$WORK/check.json"
echo "PASS: device page with 10,000 devices"
