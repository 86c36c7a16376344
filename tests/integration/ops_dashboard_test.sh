#!/usr/bin/env bash
# The live dashboard in headless Chromium (Debian package `chromium`) while a small simulated
# fleet runs (3 agents against a real Mosquitto, dev Kafka and the aggregator): the page loads with
# no console errors, exceptions or failed requests, its numbers change live, the devices table is
# paginated server-side; a screenshot is written (kept with KEEP_WORK=1). Also: the event stream
# refuses clients beyond dashboard.max_stream_clients with 503.
source "$(dirname "$0")/lib.sh"

command -v chromium >/dev/null || fail "chromium is not installed (scripts/deps.sh)"
node --experimental-websocket -e "if (typeof WebSocket !== 'function') process.exit(1)" 2>/dev/null ||
  fail "node >= 20.10 with --experimental-websocket is needed (the machine image ships Node 20)"
CHECK="$HERE/../dashboard/dashboard_check.mjs"

start_mosquitto
start_devkafka
start_aggregator --set dashboard.max_stream_clients=2
for d in dash-a dash-b dash-c; do
  write_agent_config "$d" 50
  start_agent "$d"
done
AGG="http://127.0.0.1:$AGG_HTTP_PORT"
wait_for 30 "3 devices online" bash -c \
  "curl -sf '$AGG/api/devices?state=online' | grep -q '\"total\":3'"

# The page and its assets come from the binary.
for p in / /assets/app.js /assets/app.css /assets/uPlot.iife.min.js /assets/uPlot.min.css; do
  curl -sf -o /dev/null "$AGG$p" || fail "GET $p"
done

log "headless chromium on $AGG/"
node --experimental-websocket "$CHECK" --url "$AGG/" --min-devices 3 \
  --device dash-b --min-sensors 2 --device-screenshot "$WORK/device.png" \
  --screenshot "$WORK/dashboard.png" --timeout 60 >"$WORK/check.json" 2>"$WORK/check.err" ||
  fail "dashboard check: $(cat "$WORK/check.json" "$WORK/check.err")"
cat "$WORK/check.json"
test -s "$WORK/dashboard.png" || fail "no screenshot"

# Two stream clients hold the two slots; a third gets 503 at once.
curl -sN "$AGG/api/stream" >/dev/null 2>&1 &
S1=$!
curl -sN "$AGG/api/stream" >/dev/null 2>&1 &
S2=$!
PIDS[stream1]=$S1
PIDS[stream2]=$S2
sleep 1
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$AGG/api/stream")
[[ "$code" == 503 ]] || fail "third event-stream client got HTTP $code, wanted 503"
stop_proc stream1
stop_proc stream2
log "PASS ops_dashboard"
