#!/usr/bin/env bash
# Issue 15, through the real pipeline (agents -> Mosquitto -> aggregator -> dev Kafka), with
# kafka.readings_format = "reading":
#  - kcat finds every reading exactly once as one flat record each (part/parts in headers);
#  - GET /api/devices/{id}/sensors serves each sensor's latest value, .../history the bucket
#    counts of every reading; bad parameters are 400 and unknown names 404, in JSON;
#  - the compacted topic outpost.latest holds each sensor's latest value, key device/sensor;
#  - /api/openapi.json describes the live server (tests/openapi/check_openapi.mjs).
source "$(dirname "$0")/lib.sh"

READINGS=${READINGS:-1000}  # per device, two counter sensors
start_mosquitto
start_devkafka
start_aggregator --set kafka.readings_format=reading --set latest.publish_interval_ms=300
AGG="http://127.0.0.1:$AGG_HTTP_PORT"

for dev in dev-r1 dev-r2; do
  write_agent_config "$dev" 1000
  start_draining_agent "$dev" "$READINGS"
done
wait_agents_drained 60 dev-r1 dev-r2

timeout 60 kcat -b "$KAFKA" -C -t outpost.readings -o beginning -e -q -f '%h\t%s\n' \
  >"$WORK/readings.tsv" 2>"$WORK/kcat.err" || fail "kcat: $(cat "$WORK/kcat.err")"
python3 "$HERE/check_readings.py" "$WORK/readings.tsv" \
  "dev-r1=$(outbox_last_seq dev-r1):$READINGS" "dev-r2=$(outbox_last_seq dev-r2):$READINGS"

# Flat records: exactly the documented fields; values 0..n-1 once per sensor.
python3 - "$WORK/readings.tsv" "$READINGS" <<'PY'
import collections, json, sys
vals = collections.defaultdict(list)
want = {"device", "sensor", "unit", "ts", "value", "quality", "epoch", "seq", "dropped"}
for line in open(sys.argv[1]):
    m = json.loads(line.split("\t", 1)[1])
    assert set(m) == want, f"fields {sorted(m)}"
    assert isinstance(m["epoch"], str) and isinstance(m["ts"], int) and m["unit"] == "u"
    vals[(m["device"], m["sensor"])].append(m["value"])
n = int(sys.argv[2])
for k, v in vals.items():
    assert sorted(v) == [float(i) for i in range(len(v))], f"{k}: values are not 0..{len(v)-1} once"
assert sum(len(v) for v in vals.values()) == 2 * n, "total readings"
json.dump({f"{d}/{s}": max(v) for (d, s), v in vals.items()}, open(sys.argv[1] + ".last", "w"))
json.dump({f"{d}/{s}": len(v) for (d, s), v in vals.items()}, open(sys.argv[1] + ".count", "w"))
print(f"flat records OK: {len(vals)} sensor streams, each 0..k-1 exactly once")
PY

# The latest-state API against what Kafka holds.
now_ms=$(($(date +%s%3N)))
for dev in dev-r1 dev-r2; do
  curl -sf "$AGG/api/devices/$dev/sensors?recent=10" >"$WORK/$dev.sensors.json" || fail "GET sensors of $dev"
  for s in a b; do
    curl -sf "$AGG/api/devices/$dev/sensors/$s/history?from=$((now_ms - 3600000))&to=$((now_ms + 120000))&step=60" \
      >"$WORK/$dev.$s.history.json" || fail "GET history of $dev/$s"
  done
done
python3 - "$WORK" "$WORK/readings.tsv" <<'PY'
import json, sys
work, dump = sys.argv[1], sys.argv[2]
last, count = json.load(open(dump + ".last")), json.load(open(dump + ".count"))
for dev in ("dev-r1", "dev-r2"):
    doc = json.load(open(f"{work}/{dev}.sensors.json"))
    assert doc["device"] == dev and doc["bucket_s"] == 60
    got = {s["name"]: s for s in doc["sensors"]}
    assert sorted(got) == ["a", "b"], got
    for name, s in got.items():
        assert s["value"] == last[f"{dev}/{name}"], (dev, name, s["value"], last[f"{dev}/{name}"])
        assert s["unit"] == "u" and s["quality"] == "good" and s["history_buckets"] >= 1
        assert 1 <= len(s["recent"]) <= 10
        h = json.load(open(f"{work}/{dev}.{name}.history.json"))
        total = sum(p[4] for p in h["points"])
        assert total == count[f"{dev}/{name}"], (dev, name, total)
        assert h["columns"] == ["ts_ms", "min", "mean", "max", "count"]
        assert min(p[1] for p in h["points"]) == 0 and max(p[3] for p in h["points"]) == s["value"]
print("latest API OK: values and history counts match Kafka")
PY

# Bad parameters: 400 naming the parameter; unknown names: 404; all JSON.
expect_status() {  # expect_status CODE PATH [jq-free python check on the body]
  local code body
  code=$(curl -s -o "$WORK/body.json" -w '%{http_code}' "$AGG$2")
  [[ "$code" == "$1" ]] || fail "GET $2: HTTP $code, wanted $1: $(cat "$WORK/body.json")"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert 'error' in d, d; \
assert sys.argv[2] in ('', d.get('parameter', '')), d" "$WORK/body.json" "${3:-}" ||
    fail "GET $2: body $(cat "$WORK/body.json")"
}
H=/api/devices/dev-r1/sensors/a/history
expect_status 400 "$H?from=yesterday" from
expect_status 400 "$H?to=1.5" to
expect_status 400 "$H?from=2000&to=1000" from
expect_status 400 "$H?step=90" step
expect_status 400 "$H?step=-60" step
expect_status 400 "$H?from=0&to=$now_ms" step
expect_status 400 "/api/devices/dev-r1/sensors?recent=x" recent
expect_status 404 "/api/devices/nobody/sensors"
expect_status 404 "/api/devices/nobody/sensors/a/history"
expect_status 404 "/api/devices/dev-r1/sensors/zz/history"
log "400/404 answers OK"

# outpost.latest: the last record per key is the sensor's latest value.
sleep 1  # one publish interval (300 ms) after the last batch, with margin
timeout 30 kcat -b "$KAFKA" -C -t outpost.latest -o beginning -e -q -f '%k\t%s\n' \
  >"$WORK/latest.tsv" 2>"$WORK/kcat.err" || fail "kcat outpost.latest: $(cat "$WORK/kcat.err")"
python3 - "$WORK/latest.tsv" "$WORK/readings.tsv" <<'PY'
import json, sys
last = json.load(open(sys.argv[2] + ".last"))
seen = {}
for line in open(sys.argv[1]):
    key, value = line.rstrip("\n").split("\t", 1)
    m = json.loads(value)
    assert key == f"{m['device']}/{m['sensor']}", (key, m)
    seen[key] = m
assert sorted(seen) == sorted(last), (sorted(seen), sorted(last))
for k, m in seen.items():
    assert m["value"] == last[k], (k, m, last[k])
print(f"outpost.latest OK: {len(seen)} keys, each ending with the latest value")
PY
published=$(metric "$AGG_HTTP_PORT" outpost_aggregator_latest_published_total)
((published >= 4)) || fail "outpost_aggregator_latest_published_total = $published"

# The API contract: every documented path of the live server answers with the documented shape.
bash "$HERE/../openapi/run_check.sh" "$AGG" --param id=dev-r1 --param name=a >"$WORK/openapi.json" \
  2>"$WORK/openapi.err" || fail "OpenAPI check: $(cat "$WORK/openapi.json" "$WORK/openapi.err")"
cat "$WORK/openapi.json"
echo "PASS: latest_api"
