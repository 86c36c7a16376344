#!/usr/bin/env bash
# The outbox fills while the uplink is cut, and exactly the counted drops are lost.
#
# Usage: outbox_full_test.sh [drop_oldest|drop_newest]
# The broker is stopped while an agent produces; its outbox (64 KB limit) fills far past its
# limit and the full policy drops readings. The broker comes back, the agent drains, and on Kafka
# (kcat) the missing readings are exactly the ones the agent counted as dropped (persisted in its
# store, reported in its batches), nothing else is missing and nothing is duplicated.
source "$(dirname "$0")/lib.sh"
POLICY=${1:-drop_oldest}
DEV=of-1
# Per sensor (2 sensors at 1000 Hz: 15 s): production must go on after the outbox has room again
# (the aggregator also takes a few seconds to reconnect), so that a stored batch reports the drops.
# Timeline here: the outbox (64 KB) is full ~1.2 s into the 3 s outage; the agent is back ~1 s
# after the broker and has room again ~2.5 s later, ~8 s into production: 7 s to spare.
PRODUCED=15000

start_mosquitto
start_devkafka
# The aggregator's broker reconnect backs off 1, 2, 4, 8, 16 s by default: a broker outage just
# over 7 s (a loaded machine) made it come back ~15 s after the cut, too close to the end of
# production for drop_newest (only a batch stored after the outbox has room again reports the
# refused readings, so pending_dropped stayed > 0). Capped at 1 s, it returns within ~1 s.
start_aggregator --set mqtt.reconnect_max_ms=1000

write_agent_config "$DEV" 1000
start_draining_agent "$DEV" $((2 * PRODUCED)) --set outbox.max_bytes=65536 \
  --set "outbox.full_policy=$POLICY" --set log_level=debug
sleep 2
stop_proc mosquitto
log "mosquitto stopped: the outbox fills past its 64 KB limit ($POLICY)"
sleep 3  # the outbox is full after ~1.2 s: ~2,000 readings a second dropped from then on
mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
PIDS[mosquitto]=$!
wait_for 10 "mosquitto back on $MQTT_PORT" port_open "$MQTT_PORT"
log "mosquitto restarted"

wait_agents_drained 90 "$DEV"
meta() { sqlite3 "$WORK/$DEV.outbox.db" "SELECT COALESCE((SELECT value FROM meta WHERE key='$1'),0)"; }
dropped=$(meta dropped_readings_total)
evicted=$(meta dropped_batches_total)
pending=$(meta pending_dropped)
log "agent counted $dropped readings dropped ($evicted stored batches evicted), $pending unreported"
((dropped > 1000)) || fail "only $dropped readings dropped: the outbox never filled, the test did not exercise the limit"
[[ "$pending" == 0 ]] || fail "$pending dropped readings never reported to the cloud"
if [[ "$POLICY" == drop_oldest ]]; then
  ((evicted > 0)) || fail "drop_oldest evicted no batch"
else
  [[ "$evicted" == 0 ]] || fail "drop_newest evicted $evicted stored batches"
fi
grep -q "outbox full" "$WORK/$DEV.log" || fail "no 'outbox full' log line"

kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_drops.py" "$WORK/readings.jsonl" "$DEV" $((2 * PRODUCED)) \
  "$(outbox_last_seq "$DEV")" "$dropped" "$evicted" "$WORK/$DEV.log"
echo "PASS: outbox full ($POLICY): exactly the $dropped counted readings are missing"
