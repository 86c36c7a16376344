# Helpers of the aggregator cluster tests (issue 19; sourced after lib.sh): instances of the roles
# ingest / process / all on a real Kafka broker, their view of the consumer group (/api/cluster,
# /readyz), the group's offsets seen from outside (outpost-kafka-tool group-offsets), and the
# simulated fleet. Used by tests/integration/cluster_test.sh and the torture scenario "cluster".
#
# Settings: PARTS (partitions of every topic, default 6), SESSION_MS / TXN_MS (the process role's
# session and transaction timeouts, default 3000 / 8000 ms: a transaction's messages time out with
# it, and on this loaded machine the broker sometimes stalls for more than 5 s, which aborts
# transactions, rewinds and delays everything).

PARTS=${PARTS:-6}
SESSION_MS=${SESSION_MS:-3000}
TXN_MS=${TXN_MS:-8000}
# Ingest instances' MQTT sessions. With persistent sessions (false, the aggregator's default)
# Mosquitto 2.0 keeps handing a dead instance its round-robin share of the shared subscription's
# messages, queued for a session that never comes back, and the agents' resends keep landing
# there too (issue 19 notes).
INGEST_CLEAN_SESSION=${INGEST_CLEAN_SESSION:-true}
SIM_BIN="$OUTPOST_BUILD_DIR/simulators/outpost-sim"
now_ms() { date +%s%3N; }

# write_detect_config: $WORK/detect.toml, the process instances' detector classes: sensors named
# shift* have no daily cycle, so level shifts are armed after the warm-up, and tolerate batches
# arriving up to 15 times their usual interval apart before the timer calls it a silence (as
# integration.anomaly does: on this loaded machine a batch can be late by seconds).
write_detect_config() {
  cat >"$WORK/detect.toml" <<'CONF'
[[detect.classes]]
name = "flat"
match = "shift*"
season_period_s = 0
silence_factor = 15
CONF
}

declare -A HPORT=()
PROCS=() INGESTS=()
# start_instance NAME ROLE: an aggregator in ROLE (ingest, process, or all) in the background,
# instance id NAME, log $WORK/NAME.log, HTTP on port HPORT[NAME] (kept when NAME is restarted),
# pid PIDS[NAME]. Process instances: PROCS, ingest: INGESTS (live or not).
start_instance() {
  local name=$1 role=$2 args=()
  [[ -n ${HPORT[$name]:-} ]] || HPORT[$name]=$(free_port)
  args=(--set "kafka.bootstrap_servers=$KAFKA" --set "http.listen=127.0.0.1:${HPORT[$name]}")
  case $role in
    ingest)
      args+=(--set cluster.role=ingest --set "cluster.instance_id=$name"
        --set "mqtt.broker=$MQTT_URI" --set "mqtt.client_id=it-$name"
        --set mqtt.shared_group=outpost-ingest --set kafka.batches_topic=outpost.batches
        --set "mqtt.clean_session=$INGEST_CLEAN_SESSION")
      [[ " ${INGESTS[*]} " == *" $name "* ]] || INGESTS+=("$name")
      ;;
    process)
      args+=(--config "$WORK/detect.toml" --set cluster.role=process
        --set "cluster.instance_id=$name" --set cluster.group=outpost-process
        --set cluster.commit_interval_ms=100 --set kafka.batches_topic=outpost.batches
        --set kafka.state_topic=outpost.state --set "cluster.session_timeout_ms=$SESSION_MS"
        --set "cluster.transaction_timeout_ms=$TXN_MS")
      [[ " ${PROCS[*]} " == *" $name "* ]] || PROCS+=("$name")
      ;;
    all)
      args+=(--config "$WORK/detect.toml" --set "mqtt.broker=$MQTT_URI"
        --set "mqtt.client_id=it-$name" --set "dedup.path=$WORK/$name.dedup.db")
      ;;
  esac
  "$AGGREGATOR_BIN" "${args[@]}" >>"$WORK/$name.log" 2>&1 &
  PIDS[$name]=$!
}
healthy() { curl -sf --max-time 2 "http://127.0.0.1:${HPORT[$1]}/healthz"; }

# cluster_view [NAME...]: JSON {name: {"ready": bool, "partitions": [..] or null}} of the live
# process instances (or of NAME...), from /api/cluster and /readyz.
cluster_view() {
  local args=() n
  (($#)) || set -- "${PROCS[@]}"
  for n in "$@"; do [[ -n ${PIDS[$n]:-} ]] && args+=("$n=${HPORT[$n]}"); done
  python3 - "${args[@]}" <<'PY'
import json, sys, urllib.error, urllib.request
out = {}
for a in sys.argv[1:]:
    name, port = a.split("=")
    v = {"ready": False, "partitions": None}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/cluster", timeout=2) as r:
            v["partitions"] = json.load(r)["partitions"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            v["ready"] = r.status == 200
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        pass
    out[name] = v
print(json.dumps(out))
PY
}
# settled [NAME...]: every partition owned by exactly one of the live process instances (or of
# NAME...), each of them ready and owning at least one partition.
settled() {
  cluster_view "$@" | python3 -c '
import json, sys
v = json.load(sys.stdin); n = int(sys.argv[1])
owned = [p for x in v.values() for p in (x["partitions"] or [])]
ok = v and all(x["ready"] and x["partitions"] for x in v.values())
sys.exit(0 if ok and sorted(owned) == list(range(n)) else 1)' "$PARTS"
}
owner_of() {  # owner_of PARTITION: the live process instance that owns it
  cluster_view | python3 -c '
import json, sys
for name, x in json.load(sys.stdin).items():
    if int(sys.argv[1]) in (x["partitions"] or []):
        print(name)' "$1"
}
parts_of() { cluster_view "$1" | python3 -c 'import json, sys; print(" ".join(map(str, json.load(sys.stdin)[sys.argv[1]]["partitions"] or [])))' "$1"; }
partition_of() { python3 -c 'import sys, zlib; print(zlib.crc32(sys.argv[1].encode()) % int(sys.argv[2]))' "$1" "$PARTS"; }
group_offsets() { "$KAFKA_TOOL_BIN" group-offsets --bootstrap "$KAFKA" --group outpost-process outpost.batches; }
committed_of() { group_offsets | awk -v p="$1" '$1 == p {print $2}'; }
lag_total() { group_offsets | awk '$1 == "total" {print $2}'; }
drained() { [[ $(lag_total) == 0 ]]; }

# start_fleet DEVICES PREFIX: outpost-sim's virtual agents over MQTT (2 sensors at 5 Hz, one batch
# a second each, acked; no anomalies, no offline episodes), in the background as PIDS[sim];
# summary in $WORK/sim.json when it exits.
start_fleet() {
  "$SIM_BIN" fleet --devices "$1" --device-prefix "$2" --sensors 2 --rate 5 --interval 1s \
    --speed 1 --duration 0 --seed 19 --anomaly-rate 0 --offline-rate 0 --output mqtt \
    --broker "$MQTT_URI" --client-prefix it-sim --ack-timeout 3s --drain-timeout 30s \
    --summary-json "$WORK/sim.json" -q >"$WORK/sim.log" 2>&1 &
  PIDS[sim]=$!
}

# stop_fleet: SIGTERM; it waits for its outstanding acks (up to 30 s) and writes its summary.
# Sets FLEET_ACKED and FLEET_SENT (readings).
stop_fleet() {
  kill -TERM "${PIDS[sim]}"
  timeout 45 tail --pid="${PIDS[sim]}" -f /dev/null || fail "outpost-sim did not exit within 45 s of SIGTERM"
  wait "${PIDS[sim]}" || fail "outpost-sim exited with an error: $(tail -n 3 "$WORK/sim.log")"
  unset "PIDS[sim]"
  [[ -s "$WORK/sim.json" ]] || fail "outpost-sim wrote no summary"
  FLEET_ACKED=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["readings_acked"])' "$WORK/sim.json")
  FLEET_SENT=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["readings_sent"])' "$WORK/sim.json")
}

# read_topic TOPIC FILE ISOLATION: every message value of TOPIC, one a line, read by kcat with
# isolation.level=ISOLATION (read_committed or read_uncommitted).
read_topic() {
  timeout 60 kcat -b "$KAFKA" -C -t "$1" -o beginning -e -q -f '%s\n' -X "isolation.level=$3" \
    >"$2" 2>>"$WORK/kcat.err" || fail "kcat could not read $1 ($3): $(tail -n 3 "$WORK/kcat.err")"
}
