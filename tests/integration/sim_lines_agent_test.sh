#!/usr/bin/env bash
# outpost-sim feeding a real agent: the fleet's line protocol output (one device, 7 sensors, 20
# simulated minutes with anomalies) goes into outpost-agent's stdin source; through Mosquitto and
# the aggregator, kcat must find every line on Kafka exactly once, same sensor, timestamp and value.
source "$(dirname "$0")/lib.sh"
SIM_BIN="$OUTPOST_BUILD_DIR/simulators/outpost-sim"

start_mosquitto
start_devkafka
start_aggregator

start=$(( $(date +%s) - 3600 ))
"$SIM_BIN" fleet -n 1 --seed 9 --start "$start" --duration 20m --speed max --anomaly-rate 3 \
  -o lines --out - --labels "$WORK/labels.jsonl" -q >"$WORK/fleet.lines" 2>"$WORK/fleet.log" ||
  fail "fleet exited with $?"
lines=$(wc -l <"$WORK/fleet.lines")
[[ $lines -gt 1000 ]] || fail "only $lines lines"

dev=sim-agent
write_agent_config "$dev"
sed -i '/^\[\[sensors\]\]/,$d' "$WORK/$dev.toml"
echo '[sources.stdin]' >>"$WORK/$dev.toml"
echo 'format = "line"' >>"$WORK/$dev.toml"
for s in temperature humidity vibration_rms current power pressure counter; do
  printf '[[sensors]]\nname = "%s"\nunit = "u"\nsource = "stdin"\n' "$s" >>"$WORK/$dev.toml"
done
start_stdin_agent "$dev" "$WORK/fleet.lines" "$lines"
wait_agents_drained 60 "$dev"

kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 - "$WORK/fleet.lines" "$WORK/readings.jsonl" "$WORK/labels.jsonl" <<'PY'
import collections, json, sys
sent = collections.Counter()
for line in open(sys.argv[1]):
    sensor, value, ts = line.split()
    sent[(sensor, int(ts), float(value))] += 1
got = collections.Counter()
for line in open(sys.argv[2]):
    m = json.loads(line)
    assert m["device"] == "sim-agent", m["device"]
    for r in m["readings"]:
        got[(r["sensor"], r["ts_us"], r["value"])] += 1
assert got == sent, (f"{sum(sent.values())} lines, {sum(got.values())} readings on Kafka; "
                     f"missing {list((sent - got).items())[:3]}, extra {list((got - sent).items())[:3]}")
labels = [json.loads(l) for l in open(sys.argv[3])]
assert labels, "no anomalies labelled"
print(f"OK: {sum(sent.values())} simulated lines delivered exactly once; {len(labels)} labels")
PY
echo "PASS: sim_lines_agent"
