#!/usr/bin/env bash
# ZeroMQ uplink end to end: two agents send over CURVE-authenticated DEALER sockets, and a third over
# MQTT, to one aggregator listening on both, which is killed with SIGKILL mid-stream and restarted
# (dedup store flushed only once a minute, so exactly-once rests on the ack-after-delivery, the
# agents' resend and the restart's recovery from Kafka's tail). Every accepted batch must be on
# Kafka exactly once.
source "$(dirname "$0")/lib.sh"

KILLS=${KILLS:-2}
start_mosquitto
start_devkafka
make_zmq_keys dev-x dev-y
AGG_HTTP_PORT=$(free_port)
# Both ingests at once: drop make_zmq_keys' mqtt.enabled=false.
AGG_ARGS=("${ZMQ_AGG_ARGS[@]:2}" --set dedup.flush_interval_ms=60000)
start_aggregator "${AGG_ARGS[@]}"

for dev in dev-x dev-y; do
  write_zmq_agent_config "$dev" 1000
  start_agent "$dev"
done
write_agent_config dev-m 500
start_agent dev-m
wait_for 10 "batches acknowledged over ZeroMQ" bash -c \
  "[[ \$(curl -sf http://127.0.0.1:$AGG_HTTP_PORT/metrics | awk '\$1 == \"outpost_aggregator_batches_published_total\" {print \$2}') -gt 0 ]]"
for i in $(seq 1 "$KILLS"); do
  sleep "$(python3 -c "import random; print(round(random.uniform(1.0, 2.0), 2))")"
  kill9_proc aggregator
  log "kill -9 aggregator #$i"
  sleep 0.5
  start_aggregator "${AGG_ARGS[@]}"
done
sleep 1
for dev in dev-x dev-y dev-m; do
  stop_proc "$dev"
  drain_agent "$dev" 30
done
grep -q "ZeroMQ session with .* established (reconnect)" "$WORK/dev-x.log" ||
  fail "dev-x never reconnected after the aggregator was killed"

kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" \
  "dev-x=$(outbox_last_seq dev-x)" "dev-y=$(outbox_last_seq dev-y)" "dev-m=$(outbox_last_seq dev-m)"
rejected=$(metric_labeled "$AGG_HTTP_PORT" 'outpost_aggregator_zmq_auth_rejected_total{reason="unknown_key"}')
[[ "$rejected" == 0 ]] || fail "known agents were refused ($rejected)"
echo "PASS: ZeroMQ (+ MQTT) end to end ($KILLS aggregator kills)"
