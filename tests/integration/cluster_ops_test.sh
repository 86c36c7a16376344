#!/usr/bin/env bash
# Issue 19, operating a cluster: what any instance shows of the whole (docs/scaling.md,
# "Operations"), on a real Apache Kafka broker (scripts/kafka.sh).
#
# Real Mosquitto + Kafka; 1 ingest instance and 2 process instances (consumer group
# outpost-process, static members p1 and p2); one agent sending batches and its status.
# - GET /api/cluster on each process instance lists both members (instance p1 and p2, from the
#   group as Kafka describes it), with disjoint partitions covering all of outpost.batches, each
#   member's partitions equal to what that instance says it owns, and the group's lag;
#   the ingest instance's /api/cluster shows the same members, and its dashboard (headless
#   Chromium, tests/dashboard/dashboard_check.mjs) shows them in its Cluster panel.
# - GET /api/devices/{id} of the agent's device answers on both process instances (from the
#   compacted outpost.device-status topic, written by the ingest instance): state online, the
#   agent's version; GET /api/devices lists it; an unknown device is 404; bad parameters 400.
# - The group's lag as every instance reports it: after the agent stops, 0 on every partition,
#   the partitions' ends adding up to the batches the ingest instance forwarded.
# - The process instances stop cleanly on SIGTERM (exit status 0).
source "$(dirname "$0")/lib.sh"

KAFKA_MODE=real
PARTS=4
KAFKA_PARTITIONS=$PARTS
KAFKA_TOPICS="outpost.readings,outpost.anomalies,outpost.deadletter,outpost.device-status:compact,outpost.latest:compact,outpost.batches,outpost.state:compact"
DEV=ops-dev-1
t_test=$SECONDS

start_mosquitto
start_real_kafka

declare -A HPORT=()
start_instance() {  # start_instance NAME ROLE
  local name=$1 role=$2 args=()
  HPORT[$name]=$(free_port)
  args=(--set "kafka.bootstrap_servers=$KAFKA" --set "http.listen=127.0.0.1:${HPORT[$name]}"
    --set "cluster.role=$role" --set "cluster.instance_id=$name")
  if [[ $role == ingest ]]; then
    args+=(--set "mqtt.broker=$MQTT_URI" --set "mqtt.client_id=it-$name")
  else
    args+=(--set cluster.commit_interval_ms=100)
  fi
  "$AGGREGATOR_BIN" "${args[@]}" >>"$WORK/$name.log" 2>&1 &
  PIDS[$name]=$!
}
api() { curl -sf --max-time 3 "http://127.0.0.1:${HPORT[$1]}$2"; }

start_instance i1 ingest
start_instance p1 process
start_instance p2 process
for n in i1 p1 p2; do wait_for 60 "$n /healthz" api "$n" /healthz; done
write_agent_config "$DEV" 10
start_agent "$DEV"

# Every instance's /api/cluster lists p1 and p2 with disjoint partitions covering 0..PARTS-1; a
# process instance's own "partitions" are its member's.
cluster_ok() {  # cluster_ok NAME
  api "$1" /api/cluster >"$WORK/cluster-$1.json" || return 1
  python3 - "$1" "$PARTS" "$WORK/cluster-$1.json" "$HERE/../../aggregator/api/openapi.json" <<'PY'
import json, sys
name, parts, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = json.load(open(path))
# The fields are exactly those of the OpenAPI document (Cluster, ClusterMember; the full schema
# check runs against role all in integration.latest_api).
schemas = json.load(open(sys.argv[4]))["components"]["schemas"]
assert set(c) == set(schemas["Cluster"]["required"]), sorted(set(c) ^ set(schemas["Cluster"]["required"]))
for m in c["members"]:
    assert set(m) == set(schemas["ClusterMember"]["required"]), m
members = {m["instance"]: m for m in c["members"]}
assert sorted(members) == ["p1", "p2"], members
owned = [p for m in members.values() for p in m["partitions"]]
assert sorted(owned) == list(range(parts)), owned           # all covered, none twice
assert all(m["partitions"] for m in members.values()), members
assert c["unassigned"] == [], c["unassigned"]
assert c["partition_count"] == parts, c
assert c["group_state"] == "Stable" and c["protocol"] == "range", c
assert c["view_error"] is None, c
assert c["group_lag"] is not None and c["group_lag"]["total"] >= 0, c
assert len(c["group_lag"]["partitions"]) == parts, c
if c["role"] == "process":
    assert c["instance"] == name and c["partitions"] == members[name]["partitions"], c
for m in members.values():
    assert m["member_id"].startswith(m["instance"] + "-") and m["client_id"] and m["host"], m
PY
}
t0=$SECONDS
for n in p1 p2 i1; do wait_for 40 "$n's /api/cluster to list p1 and p2 owning every partition once" cluster_ok "$n"; done
log "group described from every instance after $((SECONDS - t0)) s: $(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
print(", ".join("%s %s" % (m["instance"], m["partitions"]) for m in c["members"]), "lag", c["group_lag"]["total"])' "$WORK/cluster-p1.json")"

# The ingest instance's dashboard shows the group in its Cluster panel (headless Chromium).
command -v chromium >/dev/null || fail "chromium is not installed (scripts/deps.sh)"
node --experimental-websocket "$HERE/../dashboard/dashboard_check.mjs" \
  --url "http://127.0.0.1:${HPORT[i1]}/" --cluster-members 2 --no-change-check --timeout 20 \
  --screenshot "${CLUSTER_OPS_SCREENSHOT:-$WORK/dashboard.png}" --width 1400 --height 900 \
  >"$WORK/dashboard.json" 2>"$WORK/dashboard.err" ||
  fail "dashboard check on i1: $(cat "$WORK/dashboard.json") $(tail -n 3 "$WORK/dashboard.err")"
log "i1 dashboard Cluster panel: $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cluster"])' "$WORK/dashboard.json")"

# The agent's device on both process instances (no ingest involved in the answer).
device_ok() {  # device_ok NAME
  api "$1" "/api/devices/$DEV" >"$WORK/device-$1.json" || return 1
  python3 - "$DEV" "$WORK/device-$1.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
assert d["id"] == sys.argv[1] and d["state"] == "online", d
assert d["agent_version"], d
assert d["epoch"].isdigit() and isinstance(d["last_seen_age_s"], (int, float)), d
PY
}
wait_for 20 "/api/devices/$DEV on the ingest instance i1" api i1 "/api/devices/$DEV"
for n in p1 p2; do wait_for 20 "/api/devices/$DEV on $n" device_ok "$n"; done
api p2 "/api/devices?q=ops-dev&state=online" | python3 -c '
import json, sys
p = json.load(sys.stdin)
assert p["total"] == 1 and [d["id"] for d in p["items"]] == [sys.argv[1]], p' "$DEV" ||
  fail "GET /api/devices on p2 does not list $DEV"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${HPORT[p1]}/api/devices/no-such-device")
[[ $code == 404 ]] || fail "an unknown device answered $code on p1, not 404"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${HPORT[p1]}/api/devices?limit=0")
[[ $code == 400 ]] || fail "limit=0 answered $code on p1, not 400"
log "/api/devices/$DEV on p1 and p2: $(cat "$WORK/device-p1.json")"
applied=$(metric_labeled "${HPORT[p1]}" 'outpost_aggregator_device_status_records_total{result="applied"}')
[[ ${applied%%.*} -ge 1 ]] || fail "p1 counts $applied applied device-status records"

# The group's lag from outside: once the agent stops and the process instances catch up, every
# partition's committed offset reaches its end, and the ends add up to what the ingest instance
# forwarded to outpost.batches.
stop_proc "$DEV"
forwarded=$(metric "${HPORT[i1]}" outpost_aggregator_batches_forwarded_total)
drained_ok() {  # drained_ok NAME
  api "$1" /api/cluster >"$WORK/drained-$1.json" || return 1
  python3 - "$forwarded" "$WORK/drained-$1.json" <<'PY'
import json, sys
forwarded, c = int(float(sys.argv[1])), json.load(open(sys.argv[2]))
lag = c["group_lag"]
assert lag and lag["total"] == 0, lag
assert all(p["committed"] == p["end"] or (p["committed"] == -1 and p["end"] == 0) for p in lag["partitions"]), lag
assert sum(p["end"] for p in lag["partitions"]) == forwarded > 0, (forwarded, lag)
assert all(m["lag"] == 0 for m in c["members"]), c["members"]
PY
}
for n in p1 p2 i1; do wait_for 20 "$n's /api/cluster to show the group drained (lag 0, $forwarded batches)" drained_ok "$n"; done
log "group drained: lag 0 on every partition, $forwarded batches forwarded = the partitions' ends"

for n in p1 p2; do
  kill -TERM "${PIDS[$n]}"
  rc=0
  timeout 20 tail --pid="${PIDS[$n]}" -f /dev/null || fail "$n still running 20 s after SIGTERM"
  wait "${PIDS[$n]}" || rc=$?
  unset "PIDS[$n]"
  ((rc == 0)) || fail "$n exited with status $rc after SIGTERM"
done
log "PASS in $((SECONDS - t_test)) s"
