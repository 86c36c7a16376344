#!/usr/bin/env bash
# Agent figures of issue 3 (docs/benchmarks.md), against real processes started by the
# integration harness (Mosquitto, outpost-devkafka, outpost-aggregator on free loopback ports):
#
#   rss    — resident memory of outpost-agent with 50 sensors at 10 Hz, MQTT uplink connected,
#            batches acknowledged: VmRSS and VmHWM after --seconds (default 60).
#   floor  — the same memory figures for outpost-rss-floor (Paho C++ connected + a SQLite WAL store,
#            no Outpost code), with Paho initialising OpenSSL and without: the floor under `rss`.
#   drain  — a backlog of --backlog readings (default 1,000,000) is written while the broker is
#            down; then the agent restarts with the broker up and live data flowing (50 sensors at
#            10 Hz), and the time until the backlog is acknowledged gives the drain rate.
#
# Usage: OUTPOST_BUILD_DIR=build tests/bench/run_agent_bench.sh rss|floor|drain [--seconds N]
#        [--backlog N] [--drain-rate R]
set -euo pipefail
MODE=${1:?usage: run_agent_bench.sh rss|floor|drain [--seconds N] [--backlog N] [--drain-rate R]}
shift
SECS=60
BACKLOG=1000000
DRAIN_RATE=0
while (($#)); do
  case $1 in
    --seconds) SECS=$2; shift 2 ;;
    --backlog) BACKLOG=$2; shift 2 ;;
    --drain-rate) DRAIN_RATE=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/../integration/lib.sh"

# write_bench_config DEVICE SENSORS RATE_HZ
write_bench_config() {
  local dev=$1 n=$2 rate=$3
  {
    cat <<CONF
device_id = "$dev"
log_level = "info"
[http]
listen = "127.0.0.1:${AGENT_HTTP_PORT}"
[batch]
max_readings = 500
linger_ms = 1000
[outbox]
path = "$WORK/$dev.outbox.db"
synchronous = "full"
[uplink.mqtt]
broker = "$MQTT_URI"
reconnect_min_ms = 100
reconnect_max_ms = 1000
[uplink.drain]
rate = $DRAIN_RATE
CONF
    for i in $(seq 1 "$n"); do
      printf '[[sensors]]\nname = "s%d"\nunit = "u"\nrate_hz = %s\nshape = "sine"\nnoise = 0.1\nseed = %d\n' \
        "$i" "$rate" "$i"
    done
  } >"$WORK/$dev.toml"
}

status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# A binary written moments ago (a fresh build or copy) still has dirty page-cache pages until
# writeback (~30 s), and smaps counts those as the process's Private_Dirty (issue 17: +1.1 MB in
# some runs): write them back first.
sync "$AGENT_BIN" "$OUTPOST_BUILD_DIR/tests/bench/outpost-rss-floor" 2>/dev/null || sync
start_mosquitto
if [[ $MODE == floor ]]; then
  for init in paho none; do
    "$OUTPOST_BUILD_DIR/tests/bench/outpost-rss-floor" --broker "$MQTT_URI" --db "$WORK/floor-$init.db" \
      --seconds "$SECS" --openssl-init "$init"
  done
  exit 0
fi
start_devkafka
start_aggregator
AGENT_HTTP_PORT=$(free_port)

case $MODE in
  rss)
    write_bench_config rss-1 50 10
    start_agent rss-1
    wait_for 20 "agent metrics" curl -sf "http://127.0.0.1:$AGENT_HTTP_PORT/metrics"
    sleep "$SECS"
    pid=${PIDS[rss-1]}
    acked=$(metric "$AGENT_HTTP_PORT" outpost_agent_readings_acked_total)
    connected=$(metric "$AGENT_HTTP_PORT" outpost_agent_uplink_connected)
    echo "outpost-agent 50 sensors x 10 Hz, ${SECS} s, uplink connected=$connected, readings acked=$acked"
    echo "VmRSS $(status_kb "$pid" VmRSS) kB, VmHWM $(status_kb "$pid" VmHWM) kB, threads $(status_kb "$pid" Threads)"
    grep -E '^(Rss|Pss|Private_Dirty|Shared_Clean)' "/proc/$pid/smaps_rollup" || true
    # The largest mappings by RSS: what dominates.
    awk '/^[0-9a-f]+-/ {name=$6} /^Rss:/ {rss[name]+=$2} END {for (n in rss) print rss[n], n}' \
      "/proc/$pid/smaps" | sort -rn | head -${OUTPOST_RSS_TOP:-12}
    if [[ -n ${OUTPOST_RSS_HOOK:-} ]]; then $OUTPOST_RSS_HOOK "$pid"; fi
    ;;
  drain)
    # 1. The backlog: 10 sensors at 100 kHz while the broker is down.
    stop_proc mosquitto
    write_bench_config dr-1 10 100000
    start_agent dr-1 --max-readings "$BACKLOG"
    wait_for 20 "agent metrics" curl -sf "http://127.0.0.1:$AGENT_HTTP_PORT/metrics"
    wait_for 300 "backlog of $BACKLOG readings accepted" \
      bash -c "[[ \$(curl -sf http://127.0.0.1:$AGENT_HTTP_PORT/metrics | awk '\$1==\"outpost_agent_readings_accepted_total\" {print \$2}') -ge $BACKLOG ]]"
    stop_proc dr-1
    rows=$(outbox_rows dr-1)
    log "backlog: $rows batches, $(stat -c %s "$WORK/dr-1.outbox.db") bytes on disk"
    # 2. Broker back; the agent restarts with live data (50 sensors x 10 Hz = 500 readings/s).
    mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
    PIDS[mosquitto]=$!
    wait_for 10 "mosquitto back" port_open "$MQTT_PORT"
    wait_for 60 "aggregator reconnected" bash -c \
      "[[ \$(curl -sf http://127.0.0.1:$AGG_HTTP_PORT/metrics | awk '\$1==\"outpost_aggregator_mqtt_connects_total\" {print \$2}') -ge 2 ]]"
    write_bench_config dr-1 50 10
    start=$(date +%s.%N)
    start_agent dr-1
    wait_for 20 "agent metrics" curl -sf "http://127.0.0.1:$AGENT_HTTP_PORT/metrics"
    wait_for 600 "backlog drained" bash -c \
      "[[ \$(curl -sf http://127.0.0.1:$AGENT_HTTP_PORT/metrics | awk '\$1==\"outpost_agent_outbox_batches\" {print \$2}') -le 2 ]] && grep -q 'backlog sent' $WORK/dr-1.log"
    end=$(date +%s.%N)
    m() { metric "$AGENT_HTTP_PORT" "$1"; }
    backlog_sent=$(m outpost_agent_backlog_batches_sent_total)
    acked=$(m outpost_agent_readings_acked_total)
    live=$(m outpost_agent_readings_accepted_total)
    python3 - "$start" "$end" "$BACKLOG" "$backlog_sent" "$acked" "$live" <<'PY'
import sys
start, end, backlog, sent, acked, live = (float(x) for x in sys.argv[1:])
t = end - start
print(f"drained a backlog of {int(backlog)} readings ({int(sent)} batches) in {t:.1f} s: "
      f"{backlog / t:,.0f} readings/s; meanwhile {int(live)} live readings accepted "
      f"({live / t:,.0f}/s) and {int(acked)} readings acked in total")
PY
    grep -E "backlog|reconnect" "$WORK/dr-1.log" | tail -4
    ;;
  *) fail "unknown mode $MODE" ;;
esac
