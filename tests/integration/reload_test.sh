#!/usr/bin/env bash
# SIGHUP reloads the configuration: reloadable settings apply live (visible in /metrics and the
# log), others are named as needing a restart, an invalid file keeps the running configuration;
# SIGTERM then stops the agent within a couple of seconds (parts 1-3: no broker, the agent runs
# disconnected, which it is built to survive). Part 4, end to end through Mosquitto, the
# aggregator and Kafka: a sensor added and a filter changed by SIGHUP; kcat must see the new
# sensor's readings, the changed filter at work, and the unchanged sensors' counters going on
# without a gap or a duplicate (their sources and state were kept).
source "$(dirname "$0")/lib.sh"

MQTT_URI="tcp://127.0.0.1:$(free_port)"  # nothing listens there
HTTP_PORT=$(free_port)
write_agent_config rl-1 50
sed -i "s/^listen = .*/listen = \"127.0.0.1:$HTTP_PORT\"/" "$WORK/rl-1.toml"
start_agent rl-1
wait_for 20 "agent metrics" curl -sf "http://127.0.0.1:$HTTP_PORT/metrics"
limit_is() { awk -v v="$1" 'BEGIN {exit !(ARGV[2] + 0 == v + 0)}' /dev/null "$(metric "$HTTP_PORT" outpost_agent_outbox_limit_bytes)"; }
limit_is 268435456 || fail "default limit"

# 1. Reloadable: the byte limit, the drain rate, a sensor's rate; not reloadable: the broker.
sed -i "s|^\[outbox\]|[outbox]\nmax_bytes = 1000000|" "$WORK/rl-1.toml"
printf '[uplink.drain]\nrate = 5000.0\n' >>"$WORK/rl-1.toml"
sed -i '0,/rate_hz = 50/s//rate_hz = 60/' "$WORK/rl-1.toml"
sed -i "s|^broker = .*|broker = \"tcp://127.0.0.1:$(free_port)\"|" "$WORK/rl-1.toml"
kill -HUP "${PIDS[rl-1]}"
wait_for 5 "new limit in /metrics" limit_is 1000000
grep -q "reload: outbox.max_bytes applied" "$WORK/rl-1.log" || fail "max_bytes not logged as applied"
grep -q "reload: uplink.drain.rate applied" "$WORK/rl-1.log" || fail "drain rate not logged as applied"
grep -q 'reload: simulated sensor "a" restarted' "$WORK/rl-1.log" || fail "sensor a not restarted"
grep -q "reload: sensors applied" "$WORK/rl-1.log" || fail "sensors not logged as applied"
grep -q "reload: uplink.mqtt.broker changed; it is not reloadable and takes effect after a restart" \
  "$WORK/rl-1.log" || fail "broker change not named as needing a restart"

# 2. An invalid file: the running configuration stays, the reason is logged.
cp "$WORK/rl-1.toml" "$WORK/rl-1.good"
sed -i "s/^max_bytes = 1000000/max_bytes = 12/" "$WORK/rl-1.toml"
kill -HUP "${PIDS[rl-1]}"
wait_for 5 "invalid reload logged" grep -q "the new configuration is invalid, keeping the running one" "$WORK/rl-1.log"
grep "keeping the running one" "$WORK/rl-1.log" | grep -q "outbox.max_bytes" || fail "the error does not name the key"
kill -0 "${PIDS[rl-1]}" || fail "agent died on an invalid reload"
limit_is 1000000 || fail "limit changed by an invalid file"

# 3. SIGTERM: flushed and stopped within a couple of seconds.
t0=$(date +%s%N)
kill -TERM "${PIDS[rl-1]}"
wait "${PIDS[rl-1]}" || fail "agent exited with an error on SIGTERM"
unset "PIDS[rl-1]"
ms=$((($(date +%s%N) - t0) / 1000000))
((ms < 3000)) || fail "SIGTERM took $ms ms"
grep -q "agent stopped" "$WORK/rl-1.log" || fail "no clean stop"

# 4. End to end: add sensor c, change a's filter (range max 1e9 -> values above 5 marked bad).
start_mosquitto
start_devkafka
start_aggregator
HTTP_PORT=$(free_port)
BATCH_LINGER_MS=100 write_agent_config rl-2 50
sed -i "s/^listen = .*/listen = \"127.0.0.1:$HTTP_PORT\"/" "$WORK/rl-2.toml"
sed -i '0,/shape = "counter"/s//shape = "counter"\n[[sensors.filters]]\ntype = "range"\nmax = 1e9\naction = "bad"/' \
  "$WORK/rl-2.toml"
start_agent rl-2
wait_for 20 "agent metrics" curl -sf "http://127.0.0.1:$HTTP_PORT/metrics"
acked_over() { (($(metric_labeled "$HTTP_PORT" 'outpost_agent_batches_acked_total{status="accepted"}') > $1)); }
wait_for 30 "first batches acknowledged" acked_over 2
produced_before=$(metric "$HTTP_PORT" outpost_agent_readings_produced_total)
sed -i 's/^max = 1e9/max = 5.0/' "$WORK/rl-2.toml"
printf '[[sensors]]\nname = "c"\nunit = "v"\nrate_hz = 50\nshape = "counter"\n' >>"$WORK/rl-2.toml"
kill -HUP "${PIDS[rl-2]}"
wait_for 10 "inputs reloaded" grep -q "reload: inputs applied: 3 sensors (1 kept with their state)" "$WORK/rl-2.log"
grep -q 'reload: sensors added: "c"' "$WORK/rl-2.log" || fail "sensor c not logged as added"
grep -q 'reload: sensors rebuilt (filters, window or output changed; open windows flushed): "a"' \
  "$WORK/rl-2.log" || fail "sensor a not logged as rebuilt"
grep -q "not reloadable" "$WORK/rl-2.log" && fail "a reloadable change was logged as needing a restart"
bad_over() { (($(metric_labeled "$HTTP_PORT" 'outpost_agent_readings_marked_total{quality="bad"}') > $1)); }
wait_for 10 "the changed filter marks readings bad" bad_over 20
produced_after=$(metric "$HTTP_PORT" outpost_agent_readings_produced_total)
((produced_after > produced_before)) || fail "readings_produced_total went from $produced_before to $produced_after"
stop_proc rl-2
drain_agent rl-2 60  # what SIGTERM left in the outbox (one more reading)
kafka_dump outpost.readings "$WORK/rl-2.jsonl"
python3 "$HERE/check_readings.py" "$WORK/rl-2.jsonl" "rl-2=$(outbox_last_seq rl-2)" || fail "Kafka"
python3 - "$WORK/rl-2.jsonl" <<'PY' || fail "readings on Kafka"
import collections, json, sys
by = collections.defaultdict(list)
for line in open(sys.argv[1]):
    for r in json.loads(line)["readings"]:
        by[r["sensor"]].append(r)
for s in "abc":
    assert by[s], f"no readings of {s}"
# b and a kept their sources: one run of the counter 0..n without a gap (the drain run adds one
# more reading, value 0, to one sensor).
for s in "ab":
    vals = sorted(r["value"] for r in by[s])
    n = int(vals[-1])
    assert set(vals) == set(range(n + 1)), f"{s}: gap in the counter across the reload"
good_high = [r for r in by["a"] if r["quality"] == "good" and r["value"] > 5]
bad = [r for r in by["a"] if r["quality"] == "bad"]
assert good_high, "a: no value above 5 passed the old filter"
assert bad and all(r["value"] > 5 for r in bad), "a: the new filter did not mark values above 5"
assert max(r["ts_us"] for r in good_high) < min(r["ts_us"] for r in bad), "a: filters overlap in time"
assert all(r["quality"] == "good" for r in by["b"] + by["c"]), "b/c: unexpected marks"
print(f"reload e2e: a {len(by['a'])} ({len(bad)} marked bad after the reload), b {len(by['b'])}, c {len(by['c'])}")
PY
echo "PASS: reload (live settings applied, restart-only named, invalid kept, sensor added and filter changed end to end), SIGTERM in $ms ms"
