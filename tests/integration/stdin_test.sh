#!/usr/bin/env bash
# Issue 3, end to end: an agent reading line protocol from standard input (with malformed lines,
# duplicates, an out-of-range value, explicit and missing timestamps) delivers the readings and
# window statistics through Mosquitto and the aggregator to Kafka, where kcat must find them.
# Then sources.stdin.on_eof = "stop" (`producer | outpost-agent`, no --max-readings): the agent
# exits 0 on its own once the input ended and every batch is acknowledged, and kcat finds the
# same readings and windows; with no aggregator reachable it exits 0 after
# eof_drain_timeout_s, its batches kept in the outbox.
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

# on_eof = "stop": the end of the input ends the agent (windows flushed, outbox drained, exit 0).
eof=stdin-eof
write_stdin_agent_config "$eof"
sed -i 's/^format = "line"/format = "line"\non_eof = "stop"/' "$WORK/$eof.toml"
"$AGENT_BIN" --config "$WORK/$eof.toml" <"$WORK/input.txt" >>"$WORK/$eof.log" 2>&1 &
PIDS[$eof]=$!
wait_agents_drained 60 "$eof"
grep -q "stdin ended (sources.stdin.on_eof = stop)" "$WORK/$eof.log" || fail "no on_eof log line"
grep -q "outbox drained: every accepted batch is acknowledged; exiting" "$WORK/$eof.log" ||
  fail "$eof did not exit through the drained outbox"
[[ $(outbox_rows "$eof") == 0 ]] || fail "$eof left batches in the outbox"
kafka_dump outpost.readings "$WORK/readings2.jsonl"
python3 - "$WORK/readings2.jsonl" "$eof" <<'PY'
import collections, json, sys
raw = collections.Counter()
wins = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m["device"] != sys.argv[2]:
        continue
    for r in m["readings"]:
        raw[r["sensor"]] += 1
    for w in m.get("windows", []):
        wins[w["sensor"]].append(w["count"])
assert raw == {"x": 301, "y": 300}, raw
assert sorted(wins["y"]) == [100, 100, 100] and sorted(wins["z"]) == [10, 10, 10], wins
print("on_eof=stop OK: x 301 + y 300 raw, y and z 3 windows each, then exit 0")
PY

# on_eof = "stop" with nobody to acknowledge: exit 0 after the bounded wait, batches kept.
lost=stdin-eof-nobroker
write_stdin_agent_config "$lost"
sed -i 's/^format = "line"/format = "line"\non_eof = "stop"\neof_drain_timeout_s = 1/' "$WORK/$lost.toml"
sed -i "s|^broker = .*|broker = \"tcp://127.0.0.1:$(free_port)\"|" "$WORK/$lost.toml"
"$AGENT_BIN" --config "$WORK/$lost.toml" <"$WORK/input.txt" >>"$WORK/$lost.log" 2>&1 &
PIDS[$lost]=$!
wait_agents_drained 30 "$lost"
grep -q "eof_drain_timeout_s passed: exiting with" "$WORK/$lost.log" || fail "no timeout log line"
(($(outbox_rows "$lost") > 0)) || fail "$lost: the undelivered batches are not in the outbox"
echo "PASS: stdin (with on_eof = stop)"
