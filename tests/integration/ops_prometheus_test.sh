#!/usr/bin/env bash
# Metrics, readiness and fleet health with a real Prometheus (Debian package `prometheus`):
#  - Prometheus (started here on a free port, generated config, temp storage, 1 s scrapes)
#    scrapes the aggregator's and an agent's /metrics; the test asserts on the scraped series
#    through Prometheus' own query API (/api/v1/query);
#  - promtool lints both expositions (Prometheus naming conventions);
#  - /readyz of both programs answers JSON; the device registry (/api/devices) shows the agent
#    with its version and backlog; stopping the agent publishes an offline event on
#    outpost.device-status (read back with kcat) and Prometheus sees devices{state="offline"}.
source "$(dirname "$0")/lib.sh"

command -v prometheus >/dev/null || fail "prometheus is not installed (scripts/deps.sh)"
command -v promtool >/dev/null || fail "promtool is not installed (package prometheus)"

start_mosquitto
start_devkafka
start_aggregator --set devices.offline_after_s=30
AGENT_HTTP_PORT=$(free_port)
write_agent_config prom-dev-1 100
start_agent prom-dev-1 --set "http.listen=127.0.0.1:$AGENT_HTTP_PORT"

AGG="http://127.0.0.1:$AGG_HTTP_PORT"
AGENT="http://127.0.0.1:$AGENT_HTTP_PORT"
wait_for 30 "agent /readyz" curl -sf "$AGENT/readyz"
wait_for 30 "aggregator /readyz" curl -sf "$AGG/readyz"
curl -s "$AGG/readyz" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ready"] is True and d["reasons"] == [], d' ||
  fail "aggregator /readyz is not {ready: true, reasons: []}"
curl -s "$AGENT/healthz" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["status"] == "ok", d' ||
  fail "agent /healthz is not JSON status ok"

# Naming conventions, as Prometheus' own linter sees them.
for url in "$AGG/metrics" "$AGENT/metrics"; do
  curl -sf "$url" >"$WORK/exposition.txt"
  promtool check metrics <"$WORK/exposition.txt" >"$WORK/promtool.txt" 2>&1 ||
    fail "promtool check metrics $url: $(cat "$WORK/promtool.txt")"
done
log "promtool: both expositions pass"

PROM_PORT=$(free_port)
mkdir -p "$WORK/prom-data"
cat >"$WORK/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: aggregator
    static_configs: [{targets: ["127.0.0.1:$AGG_HTTP_PORT"]}]
  - job_name: agent
    static_configs: [{targets: ["127.0.0.1:$AGENT_HTTP_PORT"]}]
CONF
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS[prometheus]=$!
PROM="http://127.0.0.1:$PROM_PORT"
wait_for 30 "prometheus ready" curl -sf "$PROM/-/ready"
log "prometheus pid ${PIDS[prometheus]} on $PROM"

# prom_value QUERY: the single value of an instant query ("" when the result is empty).
prom_value() {
  curl -sf --get "$PROM/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["status"] == "success", d
r = d["data"]["result"]
print(r[0]["value"][1] if len(r) == 1 else "")'
}
# prom_check SECONDS QUERY PYTHON-CONDITION-ON-v
prom_check() {
  local secs=$1 q=$2 cond=$3 v="" end=$((SECONDS + $1))
  while :; do
    v=$(prom_value "$q" || true)
    if [[ -n "$v" ]] && python3 -c "import sys; v=float(sys.argv[1]); sys.exit(0 if ($cond) else 1)" "$v"; then
      log "prometheus: $q = $v"
      return 0
    fi
    ((SECONDS < end)) || fail "prometheus: '$q' = '$v' after ${secs}s, wanted $cond"
    sleep 0.5
  done
}

prom_check 30 'up{job="aggregator"}' 'v == 1'
prom_check 30 'up{job="agent"}' 'v == 1'
prom_check 30 'sum(outpost_aggregator_readings_received_total{transport="mqtt"})' 'v > 0'
prom_check 30 'rate(outpost_aggregator_readings_published_total[5s])' 'v > 0'
prom_check 30 'sum(outpost_aggregator_kafka_messages_delivered_total)' 'v > 0'
prom_check 30 'histogram_quantile(0.99, sum by (le) (rate(outpost_aggregator_e2e_latency_seconds_bucket[10s])))' '0 < v < 60'
prom_check 30 'histogram_quantile(0.5, sum by (le) (rate(outpost_aggregator_batch_latency_seconds_bucket[10s])))' '0 < v < 10'
prom_check 30 'outpost_aggregator_devices{state="online"}' 'v == 1'
prom_check 30 'count(outpost_aggregator_queue_depth)' 'v == 2'
prom_check 30 'outpost_agent_batches_acked_total{status="accepted"}' 'v > 0'

# The registry, over HTTP.
curl -sf "$AGG/api/devices/prom-dev-1" >"$WORK/device.json" || fail "/api/devices/prom-dev-1"
python3 - "$WORK/device.json" <<'PY' || fail "device record: $(cat "$WORK/device.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["id"] == "prom-dev-1" and d["state"] == "online", d
assert d["agent_version"], d
assert d["backlog_rows"] is not None and int(d["epoch"]) > 0 and d["batches"] > 0, d
assert d["seq_gaps"] == 0, d
PY
curl -s -o /dev/null -w '%{http_code}' "$AGG/api/devices/nope" | grep -qx 404 || fail "unknown device is not 404"
curl -sf "$AGG/api/devices?limit=10&state=online&q=prom" | python3 -c '
import json, sys; d = json.load(sys.stdin); assert d["total"] == 1 and d["items"][0]["id"] == "prom-dev-1", d' ||
  fail "/api/devices search"

# A clean stop: the agent says offline (retained status), the registry publishes the change.
stop_proc prom-dev-1
prom_check 30 'outpost_aggregator_devices{state="offline"}' 'v == 1'
wait_for 20 "offline event on outpost.device-status" bash -c \
  "timeout 10 kcat -b '$KAFKA' -C -t outpost.device-status -o beginning -e -q -f '%k %s\n' | grep -q '^prom-dev-1 .*\"state\":\"offline\",\"reason\":\"shutdown\"'"
kcat -b "$KAFKA" -C -t outpost.device-status -o beginning -e -q -f '%k %s\n' >"$WORK/status.txt" 2>/dev/null
grep -q '^prom-dev-1 .*"state":"online"' "$WORK/status.txt" || fail "no online event: $(cat "$WORK/status.txt")"
curl -sf "$AGENT/readyz" >/dev/null 2>&1 && fail "stopped agent still answers"
log "PASS ops_prometheus"
