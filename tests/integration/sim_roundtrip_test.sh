#!/usr/bin/env bash
# outpost-sim against the real system: a simulated fleet (virtual agents over MQTT) -> Mosquitto ->
# aggregator -> outpost-devkafka, recorded by `outpost-sim record`; then the capture is replayed
# into a fresh aggregator and a fresh Kafka broker, and kcat must find the same batches (device,
# epoch, seq, parts, every reading) on both. Also: the capture exports to CSV that
# `outpost-aggregator detect` reads, and the labels file is well-formed.
source "$(dirname "$0")/lib.sh"
SIM_BIN="$OUTPOST_BUILD_DIR/simulators/outpost-sim"

start_mosquitto
start_devkafka
start_aggregator

"$SIM_BIN" record -b "$MQTT_URI" -w "$WORK/capture.opcap" -q 2>"$WORK/record.log" &
PIDS[recorder]=$!
wait_for 10 "recorder subscribed" grep -q "recording" "$WORK/record.log"

log "fleet: 6 devices x 7 sensors, 30 simulated minutes at maximum speed"
"$SIM_BIN" fleet -n 6 --seed 5 --start 2024-05-01T00:00:00Z --duration 30m --interval 5s \
  --speed max --anomaly-rate 2 --offline-rate 0.5 -o mqtt -b "$MQTT_URI" \
  --labels "$WORK/labels.jsonl" --summary-json "$WORK/fleet.json" -q 2>"$WORK/fleet.log" ||
  fail "fleet exited with $?"
cat "$WORK/fleet.json"
sleep 0.5  # the recorder flushes every 200 ms
stop_proc recorder
kafka_dump outpost.readings "$WORK/first.jsonl"
stop_proc aggregator
stop_proc devkafka

log "replay into a fresh aggregator and Kafka"
start_devkafka
rm -f "$WORK"/dedup.db*
start_aggregator --set "mqtt.client_id=it-aggregator-replay"
"$SIM_BIN" replay -r "$WORK/capture.opcap" -b "$MQTT_URI" --speed max \
  --summary-json "$WORK/replay.json" -q 2>"$WORK/replay.log" || fail "replay exited with $?"
cat "$WORK/replay.json"
kafka_dump outpost.readings "$WORK/second.jsonl"

python3 - "$WORK/fleet.json" "$WORK/replay.json" "$WORK/first.jsonl" "$WORK/second.jsonl" \
  "$WORK/labels.jsonl" <<'PY'
import collections, json, sys
fleet = json.load(open(sys.argv[1]))
replay = json.load(open(sys.argv[2]))
assert fleet["batches_unacked"] == 0 and fleet["batches_rejected"] == 0, fleet
assert fleet["batches_acked"] == fleet["batches_sent"] > 1000, fleet
assert fleet["readings_acked"] == fleet["readings_sent"] == fleet["readings"], fleet

def load(path):
    batches = {}
    for line in open(path):
        m = json.loads(line)
        key = (m["device"], m["epoch"], m["seq"], m["part"])
        assert key not in batches, f"{path}: duplicate {key}"
        batches[key] = (m["parts"], m["dropped"], m["created_us"],
                        [(r["sensor"], r["ts_us"], r["value"]) for r in m["readings"]])
    return batches

first, second = load(sys.argv[3]), load(sys.argv[4])
readings = sum(len(v[3]) for v in first.values())
assert readings == fleet["readings"], f"first pass: {readings} readings on Kafka, fleet sent {fleet['readings']}"
per_dev = collections.defaultdict(set)
for (dev, epoch, seq, part) in first:
    per_dev[dev].add(seq)
assert len(per_dev) == 6, sorted(per_dev)
for dev, seqs in per_dev.items():
    assert seqs == set(range(1, max(seqs) + 1)), f"{dev}: seqs not contiguous"
# The capture holds every batch (a resend would be recorded twice, and deduplicated downstream).
assert replay["records"] >= fleet["batches_sent"] and replay["invalid"] == 0, replay
assert replay["acked"] == fleet["batches_sent"] and replay["unacked"] == 0, replay
assert first == second, (f"replay differs: {len(first)} vs {len(second)} batch parts; "
                         f"only first: {sorted(set(first) - set(second))[:5]}, "
                         f"only second: {sorted(set(second) - set(first))[:5]}")
labels = [json.loads(l) for l in open(sys.argv[5])]
assert len(labels) == fleet["labels"] > 0
for l in labels:
    assert l["kind"] in {"spike", "dip", "level_shift", "drift", "stuck", "noise_burst", "dropout",
                         "offline"}, l
    assert l["start_us"] <= l["end_us"] and l["device"].startswith("sim-"), l
print(f"round trip OK: {len(first)} batch parts, {readings} readings identical on both Kafka "
      f"brokers; {len(labels)} labels")
PY

log "export-csv -> outpost-aggregator detect"
"$SIM_BIN" export-csv -r "$WORK/capture.opcap" --out "$WORK/csv" -q 2>"$WORK/export.log" ||
  fail "export-csv exited with $?"
csv="$WORK/csv/sim-0001/temperature.csv"
[[ -s "$csv" ]] || fail "no $csv"
"$AGGREGATOR_BIN" detect --input "$csv" --output "$WORK/scored.csv" >"$WORK/detect.log" 2>&1 ||
  fail "detect could not read the exported CSV: $(cat "$WORK/detect.log")"
[[ $(wc -l <"$WORK/scored.csv") == $(wc -l <"$csv") ]] || fail "detect scored a different row count"
echo "PASS: sim_roundtrip"
