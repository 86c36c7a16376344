#!/usr/bin/env bash
# End to end through real processes: 3 agents send a known set of readings (counter sensors) over a
# real Mosquitto to the aggregator, which publishes to the Kafka-protocol broker; kcat, an outside
# client, must find every reading on outpost.readings exactly once.
source "$(dirname "$0")/lib.sh"

READINGS=${READINGS:-3000}
start_mosquitto
start_devkafka
start_aggregator

for dev in dev-a dev-b dev-c; do
  write_agent_config "$dev" 500
  start_draining_agent "$dev" "$READINGS"
done
wait_agents_drained 60 dev-a dev-b dev-c
for dev in dev-a dev-b dev-c; do
  [[ $(outbox_rows "$dev") == 0 ]] || fail "agent $dev left batches in its outbox"
done

kafka_dump outpost.readings "$WORK/readings.jsonl"
args=()
for dev in dev-a dev-b dev-c; do args+=("$dev=$(outbox_last_seq "$dev"):$READINGS"); done
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" "${args[@]}"

# Values: each counter sensor of each device delivered 0..n-1 exactly once.
python3 - "$WORK/readings.jsonl" "$READINGS" <<'PY'
import collections, json, sys
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = json.loads(line)
    for r in m["readings"]:
        vals[(m["device"], r["sensor"])].append(r["value"])
n = int(sys.argv[2])
for k, v in vals.items():
    assert sorted(v) == [float(i) for i in range(len(v))], f"{k}: values are not 0..{len(v)-1} once"
assert sum(len(v) for v in vals.values()) == 3 * n, "total readings"
print(f"values OK: {len(vals)} sensor streams, each 0..k-1 exactly once")
PY

published=$(metric "$AGG_HTTP_PORT" outpost_aggregator_readings_published_total)
[[ "$published" == $((3 * READINGS)) ]] || fail "aggregator says $published readings published"
echo "PASS: e2e"
