#!/usr/bin/env bash
# A dead broker is survived: Mosquitto is killed (SIGKILL, losing every queued message and session)
# while agents send, and restarted on the same port a few seconds later. Agents and the aggregator
# reconnect by themselves (the aggregator resubscribes), agents resend what was not acknowledged,
# and every accepted batch is on Kafka exactly once.
source "$(dirname "$0")/lib.sh"

start_mosquitto
start_devkafka
start_aggregator

for dev in br-1 br-2; do
  write_agent_config "$dev" 1000
  start_draining_agent "$dev" 12000
done
sleep 1.5
kill9_proc mosquitto
log "mosquitto killed; agents keep accepting into their outboxes"
sleep 3
mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
PIDS[mosquitto]=$!
wait_for 10 "mosquitto back on $MQTT_PORT" port_open "$MQTT_PORT"
log "mosquitto restarted"

wait_agents_drained 90 br-1 br-2
for dev in br-1 br-2; do
  grep -q "(reconnect)" "$WORK/$dev.log" || fail "agent $dev never reconnected"
done
kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" \
  "br-1=$(outbox_last_seq br-1):12000" "br-2=$(outbox_last_seq br-2):12000"
kill -0 "${PIDS[aggregator]}" || fail "aggregator died"
connects=$(metric "$AGG_HTTP_PORT" outpost_aggregator_mqtt_connects_total)
((connects >= 2)) || fail "aggregator did not reconnect (connects=$connects)"
echo "PASS: broker restart"
