#!/usr/bin/env bash
# outpost-sim feeding a real agent through its MQTT source (-o local-mqtt): one simulated device's
# readings, one message per reading on sensors/<device>/<sensor> with a JSON payload
# {"value":V,"ts":US}, go to Mosquitto; a real outpost-agent subscribes with its MQTT source
# (source = "mqtt", mqtt.field = "value", mqtt.timestamp_field = "ts") and uplinks them through
# the same broker to the aggregator; kcat must find every simulated reading on Kafka exactly once
# with the same sensor, timestamp and value (the same fleet also writes them as CSV, the reference).
source "$(dirname "$0")/lib.sh"
SIM_BIN="$OUTPOST_BUILD_DIR/simulators/outpost-sim"

start_mosquitto
start_devkafka
start_aggregator

dev=sim-0001
write_agent_config "$dev"
sed -i '/^\[\[sensors\]\]/,$d' "$WORK/$dev.toml"
printf '[sources.mqtt]\nbroker = "%s"\n' "$MQTT_URI" >>"$WORK/$dev.toml"
sensors=(temperature humidity vibration_rms current)
for s in "${sensors[@]}"; do
  printf '[[sensors]]\nname = "%s"\nunit = "u"\nsource = "mqtt"\nmqtt.topic = "sensors/%s/%s"\nmqtt.field = "value"\nmqtt.timestamp_field = "ts"\n' \
    "$s" "$dev" "$s" >>"$WORK/$dev.toml"
done
start_agent "$dev"
wait_for 15 "agent's MQTT source subscribed" grep -q "mqtt source: subscribed" "$WORK/$dev.log"

# 10 simulated minutes, 4 sensors at 1 Hz = 2,400 messages, 100x real time (6 s): paced, so the
# agent's source queue is never the bottleneck of a test about the format.
start=$(( $(date +%s) - 3600 ))
common=(-n 1 --sensors 4 --rate 1 --seed 21 --start "$start" --duration 10m --anomaly-rate 2)
"$SIM_BIN" fleet "${common[@]}" --speed max -o csv --out "$WORK/ref" -q 2>"$WORK/ref.log" ||
  fail "reference fleet exited with $?"
"$SIM_BIN" fleet "${common[@]}" --speed 100 -o local-mqtt -b "$MQTT_URI" -q 2>"$WORK/fleet.log" ||
  fail "local-mqtt fleet exited with $?"
sleep 1  # the last batch lingers in the batcher (linger_ms 200), then goes out and is acked
stop_proc "$dev"
grep -q "agent stopped: 2400 readings produced, 0 batches waiting" "$WORK/$dev.log" ||
  fail "agent: $(grep 'agent stopped' "$WORK/$dev.log")"

kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 - "$WORK/ref" "$WORK/readings.jsonl" "$dev" "${sensors[@]}" <<'PY'
import collections, csv, datetime, json, sys
ref_dir, dump, dev, sensors = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
sent = collections.Counter()
for s in sensors:
    for row in csv.DictReader(open(f"{ref_dir}/{dev}/{s}.csv")):
        t = datetime.datetime.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        us = (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)
        sent[(s, us, float(row["value"]))] += 1
got = collections.Counter()
for line in open(dump):
    m = json.loads(line)
    assert m["device"] == dev, m["device"]
    for r in m["readings"]:
        got[(r["sensor"], r["ts_us"], r["value"])] += 1
assert sum(sent.values()) >= 2000, sum(sent.values())
assert got == sent, (f"{sum(sent.values())} simulated, {sum(got.values())} on Kafka; "
                     f"missing {list((sent - got).items())[:3]}, extra {list((got - sent).items())[:3]}")
print(f"OK: {sum(sent.values())} simulated readings arrived through the agent's MQTT source exactly once")
PY
echo "PASS: sim_local_mqtt_agent"
