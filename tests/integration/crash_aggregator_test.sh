#!/usr/bin/env bash
# The aggregator is killed with SIGKILL several times while agents send, and restarted on the same
# dedup store; every batch the agents accepted must be on Kafka exactly once. The dedup store is
# flushed only once a minute here, so a killed aggregator's store always misses its latest
# deliveries: exactly-once then rests on the restart's recovery from the topic's tail.
# Argument: kafka.readings_format (batch, the default, or reading: one flat record per reading).
source "$(dirname "$0")/lib.sh"

FORMAT=${1:-batch}
KILLS=${KILLS:-4}
start_mosquitto
start_kafka
AGG_HTTP_PORT=$(free_port)
AGG_ARGS=(--set dedup.flush_interval_ms=60000 --set "kafka.readings_format=$FORMAT")
start_aggregator "${AGG_ARGS[@]}"

for dev in dev-x dev-y; do
  write_agent_config "$dev" 1000
  start_agent "$dev"
done
for i in $(seq 1 "$KILLS"); do
  sleep "$(python3 -c "import random; print(round(random.uniform(1.0, 2.5), 2))")"
  kill9_proc aggregator
  log "kill -9 aggregator #$i"
  sleep 0.3
  start_aggregator "${AGG_ARGS[@]}"
done
sleep 1
for dev in dev-x dev-y; do
  stop_proc "$dev"
  drain_agent "$dev" 90
done

if [[ "$FORMAT" == reading ]]; then  # flat records: part/parts only in the headers
  timeout 60 kcat -b "$KAFKA" -C -t outpost.readings -o beginning -e -q -f '%h\t%s\n' \
    >"$WORK/readings.jsonl" 2>"$WORK/kcat.err" || fail "kcat: $(cat "$WORK/kcat.err")"
else
  kafka_dump outpost.readings "$WORK/readings.jsonl"
fi
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" \
  "dev-x=$(outbox_last_seq dev-x)" "dev-y=$(outbox_last_seq dev-y)"
recovered=$(grep -o '[0-9]* batches recovered' "$WORK/aggregator.log" | awk '{s += $1} END {print s + 0}')
((recovered > 0)) || fail "no restart recovered a batch from Kafka's tail; the test did not exercise recovery"
log "restarts recovered $recovered delivered batches from Kafka's tail"
echo "PASS: aggregator crash ($KILLS kills, $FORMAT format)"
