#!/usr/bin/env bash
# End to end through real processes: 3 agents send a known set of readings (counter sensors) over a
# real Mosquitto to the aggregator, which publishes to the Kafka-protocol broker; kcat, an outside
# client, must find every reading on outpost.readings exactly once.
source "$(dirname "$0")/lib.sh"

READINGS=${READINGS:-3000}
start_mosquitto
start_kafka
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

if [[ $KAFKA_MODE == real ]]; then
  # A second, independent client: Kafka's own Java consumer must find the same, exactly once.
  java_consumer_dump outpost.readings "$WORK/readings-java.jsonl"
  python3 "$HERE/check_readings.py" "$WORK/readings-java.jsonl" "${args[@]}"
  log "Kafka's Java console consumer agrees"
  # The aggregator's production settings as the broker stored them: every record batch from an
  # idempotent producer (a producer id, gap-free sequence numbers per partition), lz4-compressed.
  "$KAFKA_SH" tool org.apache.kafka.tools.DumpLogSegments --files \
    "$(printf '%s,' "$KAFKA_DIR"/data/outpost.readings-*/00000000000000000000.log)" \
    >"$WORK/dumplog.txt" 2>"$WORK/dumplog.err" || fail "DumpLogSegments: $(tail -3 "$WORK/dumplog.err")"
  python3 "$HERE/check_log_batches.py" "$WORK/dumplog.txt" lz4
fi

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
