#!/usr/bin/env bash
# Issue 3, end to end: an agent reading line protocol from standard input (with malformed lines,
# duplicates, an out-of-range value, explicit and missing timestamps) delivers the readings and
# window statistics through Mosquitto and the aggregator to Kafka, where kcat must find them.
source "$(dirname "$0")/lib.sh"

start_mosquitto
start_devkafka
start_aggregator

dev=stdin-dev
write_stdin_agent_config "$dev"
# Epoch ms aligned to a 10 s window, two minutes ago: y's 300 readings (one per 100 ms) fill
# exactly 3 windows of 100.
base_ms=$(( ( $(date +%s) - 120 ) / 10 * 10000 ))
python3 - "$base_ms" >"$WORK/input.txt" <<'PY'
import sys
base = int(sys.argv[1])
for i in range(300):
    print(f"x {i} {base + i * 100}")                 # epoch milliseconds
    print(f"y {i % 10} {(base + i * 100) * 1000}")   # epoch microseconds
    if i % 50 == 0:
        print(f"y {i % 10} {(base + i * 100) * 1000}")  # duplicate: dropped by dedup
        print("x not-a-number")                           # rejected: bad_value
        print("nobody 1")                                 # rejected: unknown_sensor
print("x 5000")                                       # no timestamp: receive time; marked bad
for i in range(30):
    print(f"z {i} {base + i * 1000}")
PY
# Valid readings: 300 x + 300 y + 6 duplicate y + 1 x + 30 z.
start_stdin_agent "$dev" "$WORK/input.txt" 637
wait_agents_drained 60 "$dev"
grep -q "stdin: end of input after 649 lines (637 readings, 12 rejected)" "$WORK/$dev.log" ||
  fail "unexpected stdin summary: $(grep 'stdin:' "$WORK/$dev.log" | tail -1)"

kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 - "$WORK/readings.jsonl" "$dev" <<'PY'
import collections, json, sys
raw = collections.defaultdict(list)
wins = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = json.loads(line)
    assert m["device"] == sys.argv[2], m["device"]
    for r in m["readings"]:
        raw[r["sensor"]].append(r)
    for w in m.get("windows", []):
        wins[w["sensor"]].append(w)
xs = raw["x"]
assert len(xs) == 301, f"x: {len(xs)} readings"
bad = [r for r in xs if r["quality"] != "good"]
assert len(bad) == 1 and bad[0]["value"] == 5000 and bad[0]["quality"] == "bad", bad
assert sorted(r["value"] for r in xs if r["quality"] == "good") == [float(i) for i in range(300)]
ys = raw["y"]
assert len(ys) == 300, f"y: {len(ys)} raw readings (duplicates must be dropped)"
assert "z" not in raw, "z is windows-only"
wy = sorted(wins["y"], key=lambda w: w["start_us"])
assert [w["count"] for w in wy] == [100, 100, 100], [w["count"] for w in wy]
for w in wy:
    assert w["min"] == 0 and w["max"] == 9 and abs(w["mean"] - 4.5) < 1e-12, w
    assert abs(w["stddev"] - 2.8722813232690143) < 1e-9, w
    assert w["end_us"] - w["start_us"] == 10_000_000
wz = sorted(wins["z"], key=lambda w: w["start_us"])
assert [w["count"] for w in wz] == [10, 10, 10], wz
assert [(w["first"], w["last"]) for w in wz] == [(0, 9), (10, 19), (20, 29)], wz
print("stdin e2e OK: x 301 raw (1 bad), y 300 raw + 3 windows, z 3 windows")
PY
echo "PASS: stdin"
