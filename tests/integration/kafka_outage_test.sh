#!/usr/bin/env bash
# The Kafka broker is stopped under load (real Apache Kafka: OUTPOST_KAFKA=real). With no
# delivery report the aggregator acks nothing, its producer queue fills and intake pauses; agents
# keep accepting into their outboxes. The broker comes back on the same port with its data, the
# idempotent producer resumes, and every reading the agents accepted is on Kafka exactly once:
# nothing dropped, no delivery failure.
source "$(dirname "$0")/lib.sh"
[[ $KAFKA_MODE == real ]] || fail "this test stops and restarts a real broker: run it with OUTPOST_KAFKA=real"

READINGS=${READINGS:-16000}
start_mosquitto
start_kafka
# A small producer queue (100 messages of 10 readings) so the outage fills it within a second.
start_aggregator --set kafka.queue_max_messages=100 --set kafka.readings_per_message=10

for dev in ko-1 ko-2; do
  write_agent_config "$dev" 1000
  start_draining_agent "$dev" "$READINGS"
done
sleep 2
stop_real_kafka
log "Kafka broker stopped under load"

# The gauge counts the ingest workers waiting for room in the producer queue (1 or more).
paused() {
  local v
  v=$(metric "$AGG_HTTP_PORT" outpost_aggregator_intake_paused)
  [[ -n "$v" ]] && awk -v v="$v" 'BEGIN { exit !(v >= 1) }'
}
wait_for 20 "the aggregator's intake to pause" paused
rows_then=$(( $(outbox_rows ko-1) + $(outbox_rows ko-2) ))
acked=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_delivered_total)
sleep 3
[[ $(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_delivered_total) == "$acked" ]] ||
  fail "messages were delivered while the broker was down"
rows_now=$(( $(outbox_rows ko-1) + $(outbox_rows ko-2) ))
((rows_now >= rows_then && rows_now > 0)) || fail "the agents' outboxes did not hold the unacked batches ($rows_then -> $rows_now)"
paused || fail "intake resumed while the broker was down"
log "intake paused; $rows_now batches waiting in the agents' outboxes"

start_real_kafka
log "Kafka broker back on $KAFKA"
wait_agents_drained 120 ko-1 ko-2

failed=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_failed_total)
[[ "$failed" == 0 ]] || fail "$failed Kafka messages failed: readings would have been dropped"
kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" \
  "ko-1=$(outbox_last_seq ko-1):$READINGS" "ko-2=$(outbox_last_seq ko-2):$READINGS"
kill -0 "${PIDS[aggregator]}" || fail "aggregator died"
echo "PASS: Kafka broker stopped under load; intake paused, every reading once after it came back"
