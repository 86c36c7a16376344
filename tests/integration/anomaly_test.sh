#!/usr/bin/env bash
# Live anomaly detection end to end: two real agents over a real Mosquitto to the aggregator.
# dev-step's sensor "step" is a square wave (steps of 40 sigma every 2 s; the sensor class
# "steps" in the aggregator's config turns the seasonal profile off so level shifts are armed at
# once); dev-clean's sensors are i.i.d. noise around a constant. An outside Kafka client (kcat)
# must find level_shift events (open and ended, with the documented fields) for dev-step/step on
# outpost.anomalies, none for dev-clean, and, once dev-step is stopped, a silence event for it
# (raised by the aggregator's timer, without any reading).
source "$(dirname "$0")/lib.sh"

start_mosquitto
start_kafka
cat >"$WORK/aggregator.toml" <<CONF
[detect]
poll_interval_ms = 200
silence_factor = 15

[[detect.classes]]
name = "steps"
match = "step*"
season_period_s = 0
CONF
start_aggregator --config "$WORK/aggregator.toml"

agent_config() {  # agent_config DEVICE SENSORS_TOML
  cat >"$WORK/$1.toml" <<CONF
device_id = "$1"
[http]
listen = "127.0.0.1:0"
[batch]
max_readings = 100
linger_ms = 200
[outbox]
path = "$WORK/$1.outbox.db"
[uplink.mqtt]
broker = "$MQTT_URI"
reconnect_min_ms = 100
reconnect_max_ms = 1000
$2
CONF
}
agent_config dev-step '[[sensors]]
name = "step"
rate_hz = 50
shape = "square"
amplitude = 20
period_s = 4
noise = 1
seed = 3'
agent_config dev-clean '[[sensors]]
name = "temp"
rate_hz = 50
shape = "constant"
offset = 21
noise = 0.5
seed = 4
[[sensors]]
name = "step_clean"
rate_hz = 50
shape = "constant"
offset = -3
noise = 2
seed = 5'
start_agent dev-step
start_agent dev-clean

events() { kcat -b "$KAFKA" -C -t outpost.anomalies -o beginning -e -q -f '%k\t%s\n' 2>/dev/null; }
has_event() {  # has_event DEVICE SENSOR KIND STATE
  events | python3 -c '
import json, sys
dev, sensor, kind, state = sys.argv[1:5]
for line in sys.stdin:
    key, _, value = line.rstrip("\n").partition("\t")
    m = json.loads(value)
    if key == dev and m["device"] == dev and m["sensor"] == sensor and m["kind"] == kind and m["state"] == state:
        sys.exit(0)
sys.exit(1)' "$@"
}

wait_for 40 "a level_shift event for dev-step/step" has_event dev-step step level_shift open
wait_for 20 "its end event" has_event dev-step step level_shift ended
sleep 2  # dev-clean has sent > 8 s of readings by now
events >"$WORK/events1.txt"

python3 - "$WORK/events1.txt" <<'PY'
import json, sys
fields = {"device", "sensor", "kind", "detector", "state", "timestamp_us", "value", "score",
          "expected_lo", "expected_hi", "ended_us"}
n = 0
outside = 0
for line in open(sys.argv[1]):
    key, _, value = line.rstrip("\n").partition("\t")
    m = json.loads(value)
    n += 1
    assert set(m) == fields, f"fields: {sorted(m)}"
    assert m["device"] != "dev-clean", f"clean device raised an anomaly: {m}"
    assert key == m["device"], "Kafka key is the device id"
    assert 0.5 <= m["score"] <= 1.0, m
    if m["kind"] == "level_shift":
        assert m["detector"] == "cusum", m
        assert m["expected_lo"] < m["expected_hi"], m
        if m["state"] == "open":
            assert m["ended_us"] is None, m
            # A step of 40 sigma is outside the range expected before it - unless the sensor's
            # robust scale was widened (the square wave's phase is absolute: a step can fall in
            # the warm-up, where the scale learns unclipped; or the clearing tail of the previous
            # step), then the CUSUM catches it inside the range. At least one must be outside.
            if not (m["expected_lo"] <= m["value"] <= m["expected_hi"]):
                outside += 1
        else:
            assert m["ended_us"] >= m["timestamp_us"] // 1000 * 1000, m
assert outside >= 1, "no level_shift opened with its value outside the expected range"
print(f"{n} events OK ({outside} level shifts opened outside the expected range), none for dev-clean")
PY

# Silence: dev-step stops; the aggregator's timer must raise it without any new reading.
stop_proc dev-step
wait_for 30 "a silence event for dev-step" has_event dev-step step silence open
events >"$WORK/events2.txt"
if grep -q '"device":"dev-clean"' "$WORK/events2.txt"; then
  fail "clean device raised an anomaly: $(grep '"device":"dev-clean"' "$WORK/events2.txt" | head -3)"
fi

m=$(curl -sf "http://127.0.0.1:$AGG_HTTP_PORT/metrics")
grep -q '^outpost_aggregator_anomalies_total{kind="level_shift"} [1-9]' <<<"$m" ||
  fail "anomalies_total{kind=level_shift} not counted"
grep -q '^outpost_aggregator_anomalies_total{kind="silence"} [1-9]' <<<"$m" ||
  fail "anomalies_total{kind=silence} not counted"
grep -q '^outpost_aggregator_detect_readings_total [1-9]' <<<"$m" || fail "detect_readings_total"
grep -q '^outpost_aggregator_detect_sensors 3$' <<<"$m" || fail "detect_sensors should be 3"
echo "PASS: anomaly"
