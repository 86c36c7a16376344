#!/usr/bin/env bash
# Backlog draining over ZeroMQ (OutboxSender, the same as over MQTT): an agent stores a backlog
# while the aggregator is away, then drains it with uplink.drain.order = newest_first and one batch
# in flight. On Kafka (kcat), the backlog batches must arrive newest first, each exactly once.
# Before the ZeroMQ uplink used OutboxSender it always sent oldest first.
source "$(dirname "$0")/lib.sh"
DEV=zd-1
READINGS=2000  # 2 sensors, 100 readings a batch: 20 stored batches

start_devkafka
make_zmq_keys "$DEV"
write_zmq_agent_config "$DEV" 1000
# No aggregator yet: everything the agent accepts stays in its outbox.
AGENT_HTTP_PORT=$(free_port)
start_agent "$DEV" --max-readings "$READINGS" --set "http.listen=127.0.0.1:$AGENT_HTTP_PORT"
wait_for 20 "agent metrics" curl -sf "http://127.0.0.1:$AGENT_HTTP_PORT/metrics"
# The same sender metrics as over MQTT (one name for the ack round trip).
curl -sf "http://127.0.0.1:$AGENT_HTTP_PORT/metrics" >"$WORK/agent-metrics.txt"
for m in outpost_agent_ack_round_trip_seconds_count outpost_agent_backlog_batches_sent_total \
  outpost_agent_batches_in_flight outpost_agent_zmq_connected; do
  grep -q "^$m " "$WORK/agent-metrics.txt" || fail "agent over ZeroMQ does not export $m"
done
! grep -q "ack_latency" "$WORK/agent-metrics.txt" || fail "old metric name ack_latency exported"
wait_for 30 "$READINGS readings in the outbox" bash -c \
  "[[ \$(sqlite3 '$WORK/$DEV.outbox.db' 'SELECT COALESCE(SUM(readings),0) FROM batches' 2>/dev/null) -ge $READINGS ]]"
stop_proc "$DEV"
backlog=$(outbox_last_seq "$DEV")
[[ "$(outbox_rows "$DEV")" == "$backlog" ]] || fail "expected all $backlog batches still stored"
((backlog >= 10)) || fail "only $backlog batches in the backlog"
log "backlog of $backlog batches stored"

start_aggregator "${ZMQ_AGG_ARGS[@]}"
drain_agent "$DEV" 60 --set uplink.drain.order=newest_first --set uplink.zmq.max_inflight=1

kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" "$DEV=$(outbox_last_seq "$DEV")"
# Order of arrival of the backlog batches (seq <= backlog; one device = one partition, in order).
order=$(python3 -c '
import json, sys
seen = []
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m["seq"] <= int(sys.argv[2]) and m["seq"] not in seen:
        seen.append(m["seq"])
print(" ".join(map(str, seen)))' "$WORK/readings.jsonl" "$backlog")
want=$(seq "$backlog" -1 1 | tr '\n' ' ' | sed 's/ $//')
log "backlog order on Kafka: $order"
[[ "$order" == "$want" ]] || fail "backlog not newest first on Kafka: got [$order], want [$want]"
grep -q "draining newest first" "$WORK/$DEV.log" || fail "the agent did not drain newest first"
echo "PASS: ZeroMQ backlog of $backlog batches drained newest first, each once"
