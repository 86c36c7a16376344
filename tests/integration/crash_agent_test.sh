#!/usr/bin/env bash
# The agent is killed with SIGKILL several times while sending and restarted on the same outbox;
# every batch it ever accepted (seqs 1..last) must be on Kafka exactly once, and the broker holds
# the agent's last will ("offline", reason last_will) as its retained status.
source "$(dirname "$0")/lib.sh"

KILLS=${KILLS:-5}
start_mosquitto
start_devkafka
start_aggregator
write_agent_config dev-crash 500

for i in $(seq 1 "$KILLS"); do
  start_agent dev-crash
  sleep "$(python3 -c "import random; print(round(random.uniform(0.7, 2.0), 2))")"
  kill9_proc dev-crash
  log "kill -9 #$i: outbox holds $(outbox_rows dev-crash) batches, last seq $(outbox_last_seq dev-crash)"
done
# The broker saw the connection die without a DISCONNECT: the retained status is the last will.
wait_for 10 "retained status = last will after kill -9" bash -c \
  "mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t outpost/v1/dev-crash/status -C 1 -W 2 | grep -q '\"reason\":\"last_will\"'"
drain_agent dev-crash 60
last=$(outbox_last_seq dev-crash)
((last > KILLS * 5)) || fail "only $last batches were accepted; the test did not exercise much"

kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" "dev-crash=$last"
echo "PASS: agent crash ($KILLS kills, $last batches)"
