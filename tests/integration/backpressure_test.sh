#!/usr/bin/env bash
# QUEUE_FULL pauses intake instead of dropping: with a tiny librdkafka queue (100 messages) and a
# long linger, the agents' in-flight batches (16 each, 10 Kafka messages per batch) cannot fit, so
# produce() must wait. Every reading must still arrive exactly once, and the aggregator must report
# that it paused.
source "$(dirname "$0")/lib.sh"

start_mosquitto
start_devkafka
start_aggregator --set kafka.queue_max_messages=100 --set kafka.linger_ms=200 \
  --set kafka.readings_per_message=10 --set ingest.workers=1

for dev in bp-1 bp-2; do
  write_agent_config "$dev" 2000
  start_draining_agent "$dev" 20000
done
wait_agents_drained 120 bp-1 bp-2

pauses=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_queue_full_total)
((pauses > 0)) || fail "the producer queue never filled (queue_full_total=$pauses): test did not exercise back-pressure"
failures=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_delivery_failures_total)
[[ "$failures" == 0 ]] || fail "$failures delivery failures"
kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" \
  "bp-1=$(outbox_last_seq bp-1):20000" "bp-2=$(outbox_last_seq bp-2):20000"
echo "PASS: back-pressure ($pauses pauses, nothing dropped)"
