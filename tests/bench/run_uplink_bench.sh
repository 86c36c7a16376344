#!/usr/bin/env bash
# Uplink benchmark, real programs end to end: outpost-agent -> (ZeroMQ | MQTT over TLS | plain MQTT)
# -> outpost-aggregator -> outpost-devkafka, each batch acked after Kafka delivery.
#
# For each transport and run it starts fresh processes on free loopback ports (tests/integration/
# lib.sh; everything stopped by pid on exit) and measures:
#   throughput  AGENTS agents each first fill their outbox with READINGS readings (500 per batch)
#               while no aggregator is reachable; then, with the stack up, each agent starts,
#               sends its backlog and exits once every batch is acked: readings/s = all readings /
#               wall time from the first agent's start to the last agent's exit. So the sources do
#               not limit the rate; agent start-up is included. The count on Kafka is
#               cross-checked (aggregator's readings_published_total).
#   latency     one agent at a paced 1,000 readings/s (2 sensors at 500 Hz; a batch closes after
#               50 ms: ~20 batches/s of ~50 readings), measured for LAT_SECONDS after a 2 s
#               warm-up; the round trip is the agent's own histogram
#               outpost_agent_ack_round_trip_seconds (send of a batch -> its ack, which includes
#               verification, the Kafka delivery report with kafka.linger_ms=5, and the ack's way
#               back): mean = sum/count, and the bucket bound that holds the median.
# Prints one line per run and the medians per transport.
#
# Usage: run_uplink_bench.sh [--runs N] [--agents N] [--readings N] [--lat-seconds S]
#                            [--transports zmq,mqtt-tls,mqtt]
# Needs OUTPOST_BUILD_DIR. Bounded: every agent has a count limit and a timeout (120 s).
set -euo pipefail
HERE_BENCH="$(cd "$(dirname "$0")" && pwd)"
source "$HERE_BENCH/../integration/lib.sh"

RUNS=3 AGENTS=4 READINGS=200000 LAT_SECONDS=10 TRANSPORTS=zmq,mqtt-tls,mqtt
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --agents) AGENTS=$2; shift 2 ;;
    --readings) READINGS=$2; shift 2 ;;
    --lat-seconds) LAT_SECONDS=$2; shift 2 ;;
    --transports) TRANSPORTS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
DEVICES=()
for i in $(seq 1 "$AGENTS"); do DEVICES+=("bench-$i"); done

PKI="$WORK/pki"
make_tls_pki "${DEVICES[@]}" >/dev/null
make_zmq_keys "${DEVICES[@]}"
ZMQ_HEARTBEAT_MS=1000
RESULTS="$WORK/results.txt"
: >"$RESULTS"

# bench_config DEVICE TRANSPORT RATE BATCH
bench_config() {
  local dev=$1 transport=$2 rate=$3 batch=$4
  BATCH_READINGS=$batch BATCH_LINGER_MS=50 ACK_TIMEOUT_MS=10000
  export BATCH_READINGS BATCH_LINGER_MS ACK_TIMEOUT_MS
  case $transport in
    zmq) write_zmq_agent_config "$dev" "$rate" ;;
    mqtt) write_agent_config "$dev" "$rate" ;;
    mqtt-tls)
      write_agent_config "$dev" "$rate"
      printf 'ca_file = "%s"\ncert_file = "%s"\nkey_file = "%s"\nusername = "%s"\npassword_file = "%s"\n' \
        "$PKI/ca.crt" "$PKI/$dev.crt" "$PKI/$dev.key" "$dev" "$PKI/$dev.pass" >"$WORK/$dev.extra"
      sed -i "/^\[uplink.mqtt\]/r $WORK/$dev.extra" "$WORK/$dev.toml" ;;
  esac
  sed -i 's/^log_level = .*/log_level = "warn"/' "$WORK/$dev.toml"
  # The transports are compared, not the disk: no fsync per batch (outbox.synchronous = normal).
  sed -i 's/^\[outbox\]$/[outbox]\nsynchronous = "normal"/' "$WORK/$dev.toml"
}

start_stack() {  # start_stack TRANSPORT
  rm -f "$WORK/dedup.db"*
  start_devkafka >/dev/null
  AGG_HTTP_PORT=$(free_port)
  case $1 in
    zmq) ZMQ_PORT=$(free_port); ZMQ_ENDPOINT="tcp://127.0.0.1:$ZMQ_PORT"; make_zmq_args
         start_aggregator "${ZMQ_AGG_ARGS[@]}" --set log_level=warn >/dev/null ;;
    mqtt) start_mosquitto >/dev/null; start_aggregator --set log_level=warn >/dev/null ;;
    mqtt-tls) MOSQUITTO_LOG_TYPE=error start_mosquitto_tls >/dev/null; tls_aggregator_args
              start_aggregator "${TLS_AGG_ARGS[@]}" --set log_level=warn >/dev/null ;;
  esac
}
make_zmq_args() {
  ZMQ_AGG_ARGS=(--set mqtt.enabled=false --set "zmq.listen=$ZMQ_ENDPOINT"
    --set "zmq.secret_key_file=$WORK/keys/aggregator.key"
    --set "zmq.allow_list_file=$WORK/allow-list.toml" --set zmq.heartbeat_ms=1000)
}
stop_stack() { for p in aggregator mosquitto devkafka; do stop_proc "$p"; done; }

for transport in ${TRANSPORTS//,/ }; do
  for run in $(seq 1 "$RUNS"); do
    # Throughput: fill the outboxes with nobody to send to, then drain them.
    rm -f "$WORK"/bench-*.outbox.db*
    for dev in "${DEVICES[@]}"; do
      bench_config "$dev" "$transport" 100000 500
      dead=tcp://127.0.0.1:1
      [[ $transport != mqtt-tls ]] || dead=ssl://127.0.0.1:1  # TLS settings need an ssl:// broker
      start_agent "$dev" --max-readings "$READINGS" --set "uplink.mqtt.broker=$dead" \
        --set uplink.zmq.endpoint=tcp://127.0.0.1:1
    done
    for dev in "${DEVICES[@]}"; do
      wait_for 60 "$dev's outbox filled" bash -c \
        "[[ \$(sqlite3 $WORK/$dev.outbox.db 'SELECT COALESCE(SUM(readings),0) FROM batches' 2>/dev/null) -ge $((READINGS - 500)) ]]"
      stop_proc "$dev"  # SIGTERM flushes the open batch into the outbox
    done
    start_stack "$transport"
    for dev in "${DEVICES[@]}"; do bench_config "$dev" "$transport" 100000 500; done  # new ports
    t0=$(date +%s.%N)
    for dev in "${DEVICES[@]}"; do start_draining_agent "$dev" 1; done
    wait_agents_drained 120 "${DEVICES[@]}"
    t1=$(date +%s.%N)
    published=$(metric "$AGG_HTTP_PORT" outpost_aggregator_readings_published_total)
    total=$((AGENTS * (READINGS + 1)))
    [[ "$published" == "$total" ]] || fail "$transport: $published readings on Kafka, expected $total"
    tput=$(python3 -c "print(round($total / ($t1 - $t0)))")
    stop_stack

    # Round-trip latency at a paced rate.
    rm -f "$WORK"/bench-*.outbox.db*
    start_stack "$transport"
    bench_config bench-1 "$transport" 500 100
    port=$(free_port)
    start_agent bench-1 --set "http.listen=127.0.0.1:$port"
    sleep 2  # warm-up (connect, first batches) is not measured: the histogram is diffed
    curl -sf "http://127.0.0.1:$port/metrics" >"$WORK/lat0.prom"
    sleep "$LAT_SECONDS"
    curl -sf "http://127.0.0.1:$port/metrics" >"$WORK/lat.prom"
    stop_proc bench-1
    stop_stack
    read -r mean p50 count < <(python3 - "$WORK/lat0.prom" "$WORK/lat.prom" <<'PY'
import re, sys
def hist(path):
    b, s, c = [], 0.0, 0
    for line in open(path):
        if line.startswith("outpost_agent_ack_round_trip_seconds_bucket"):
            le = re.search(r'le="([^"]+)"', line).group(1)
            b.append((float("inf") if le == "+Inf" else float(le), int(float(line.split()[-1]))))
        elif line.startswith("outpost_agent_ack_round_trip_seconds_sum"):
            s = float(line.split()[-1])
        elif line.startswith("outpost_agent_ack_round_trip_seconds_count"):
            c = int(float(line.split()[-1]))
    return b, s, c
b0, s0, c0 = hist(sys.argv[1])
b1, s1, c1 = hist(sys.argv[2])
b = [(le, n - n0) for (le, n), (_, n0) in zip(b1, b0)]
s, c = s1 - s0, c1 - c0
p50 = next(le for le, n in b if n >= c / 2)
print(f"{s / c * 1000:.2f} {p50 * 1000:g} {c}")
PY
)
    echo "$transport run $run: throughput $tput readings/s ($total readings, $AGENTS agents); round trip mean $mean ms, median <= $p50 ms ($count batches)" | tee -a "$RESULTS"
    echo "$transport $tput $mean $p50" >>"$WORK/raw.txt"
  done
done
echo "--- medians over $RUNS runs ---"
python3 - "$WORK/raw.txt" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t, tput, mean, p50 = line.split()
    rows[t].append((float(tput), float(mean), float(p50)))
for t, r in rows.items():
    print(f"{t:9s} throughput {statistics.median(x[0] for x in r):>9,.0f} readings/s "
          f"[{min(x[0] for x in r):,.0f}..{max(x[0] for x in r):,.0f}]   "
          f"round trip mean {statistics.median(x[1] for x in r):.2f} ms "
          f"[{min(x[1] for x in r):.2f}..{max(x[1] for x in r):.2f}], median bucket <= {statistics.median(x[2] for x in r):g} ms")
PY
