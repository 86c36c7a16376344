#!/usr/bin/env bash
# Issue 19: the aggregator scaled out (roles ingest and process) on a real Apache Kafka broker
# (scripts/kafka.sh; KRaft, one node), with failover, checked from outside.
#
# Real Mosquitto + Kafka; 2 ingest instances (MQTT shared subscription -> outpost.batches) and 3
# process instances (consumer group outpost-process, static membership, transactions). Load: a
# simulated fleet (outpost-sim, CLUSTER_DEVICES virtual devices, default 50, acked over MQTT), a
# real outpost-agent (two counter sensors) and a stdin agent "cl-shift" whose sensor gets a level
# shift after a warm-up. Once outpost.anomalies (read_committed) shows the shift's alarm open (or
# at the latest 4 s before the shift ends), the process instance owning cl-shift's partition
# (crc32(key) % partitions, looked up on /api/cluster) is SIGKILLed, and an ingest instance with
# it; the failover time is measured (kill -> every partition of the dead instance assigned to a
# ready survivor -> the group's committed offset of each of them advancing again -> read_committed
# output on them again). Then a 4th process instance joins and one of the first three is stopped
# cleanly (SIGTERM, exit 0). The load stops,
# everything drains (the group's committed offsets reach the end of outpost.batches), and:
# - outpost.readings read by kcat and by Kafka's Java console consumer, both read_committed: the
#   same messages; every reading of the agents exactly once, no gap (tests/torture/account.py, as
#   the torture suite does); the fleet exactly (every acked reading once, every seq 1..last, no
#   gap; per-device reordering reported) (check_cluster.py); a read_uncommitted dump may hold
#   aborted output (counted, informative);
# - detector state survived the move: on outpost.anomalies (read_committed) exactly one alarm for
#   cl-shift/shift, opened in the shift (normally committed before the kill) and ended by the new
#   owner after the shift ended (a new owner without the state raises a second alarm at the
#   shift's end: checked once with the restore disabled).
# Prints the failover figures and the counts. OUTPOST_CLUSTER_MODE=all runs the same load and
# checks against one aggregator in the default role "all" (no kills): a self-check of the harness,
# not part of ctest. Env: CLUSTER_DEVICES (50), CLUSTER_WARMUP_S / _SHIFT_S / _TAIL_S (5 / 12 / 3:
# cl-shift's schedule), SESSION_MS / TXN_MS / INGEST_CLEAN_SESSION (cluster_lib.sh), KEEP_WORK=1.
# Wall time: ~55-70 s here (2 cores shared, load 10-17), of which ~10-25 s the broker's start.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"

KAFKA_MODE=real
MODE=${OUTPOST_CLUSTER_MODE:-cluster}
[[ $MODE == cluster || $MODE == all ]] || fail "OUTPOST_CLUSTER_MODE=$MODE: allowed are cluster and all"
DEVICES=${CLUSTER_DEVICES:-50}
WARMUP_S=${CLUSTER_WARMUP_S:-5} SHIFT_S=${CLUSTER_SHIFT_S:-12} TAIL_S=${CLUSTER_TAIL_S:-3}
TORTURE="$HERE/../torture"
t_test=$SECONDS

KAFKA_PARTITIONS=$PARTS
start_mosquitto
start_real_kafka

# --- instances -----------------------------------------------------------------------------------
write_detect_config

if [[ $MODE == cluster ]]; then
  start_instance i1 ingest
  start_instance i2 ingest
  for n in p1 p2 p3; do start_instance "$n" process; done
  for n in i1 i2 p1 p2 p3; do wait_for 60 "$n /healthz" healthy "$n"; done
  t0=$SECONDS
  wait_for 60 "the 3 process instances to share the $PARTS partitions, each ready" settled
  log "ingest i1 i2, process p1 p2 p3 up; assignment $(cluster_view) after $((SECONDS - t0)) s"
else
  start_instance a1 all
  wait_for 60 "a1 /healthz" healthy a1
  log "one aggregator in role all (self-check of the harness)"
fi

# A read_committed kcat on outpost.readings from now on, each message's partition stamped with the
# wall time it became visible ($WORK/visible.txt: "ms partition"): the failover as a downstream
# consumer sees it.
mkfifo "$WORK/visible.fifo"
kcat -C -b "$KAFKA" -t outpost.readings -o end -u -q -f '%p\n' -X isolation.level=read_committed \
  >"$WORK/visible.fifo" 2>"$WORK/visible-kcat.log" &
PIDS[visible-kcat]=$!
python3 -u -c '
import sys, time
with open(sys.argv[1], "w", buffering=1) as out:
    for line in sys.stdin:
        out.write(f"{time.time_ns() // 1000000} {line.strip()}\n")' "$WORK/visible.txt" \
  <"$WORK/visible.fifo" &
PIDS[visible-stamp]=$!

# --- load ----------------------------------------------------------------------------------------
start_fleet "$DEVICES" cl-sim-
write_agent_config cl-agent 100
start_agent cl-agent

# cl-shift: one sensor fed at 100 Hz through a FIFO (timestamps 10 ms apart, written in real
# time): noise (sd 1) around 20 for WARMUP_S, +30
# for SHIFT_S, then 20 again for TAIL_S; the times of the first and last shifted reading go to
# $WORK/shift.json, with the last reading's ("end_us").
SHIFT_N=$(((WARMUP_S + SHIFT_S + TAIL_S) * 100))
write_agent_config cl-shift 1
sed -i '/^\[\[sensors\]\]/,$d' "$WORK/cl-shift.toml"
cat >>"$WORK/cl-shift.toml" <<'CONF'
[sources.stdin]
format = "line"
[[sensors]]
name = "shift"
unit = "u"
source = "stdin"
CONF
mkfifo "$WORK/cl-shift.fifo"
"$AGENT_BIN" --config "$WORK/cl-shift.toml" --max-readings "$SHIFT_N" --exit-when-drained \
  <"$WORK/cl-shift.fifo" >>"$WORK/cl-shift.log" 2>&1 &
PIDS[cl-shift]=$!
python3 -u - "$WARMUP_S" "$SHIFT_S" "$TAIL_S" "$WORK/shift.json" >"$WORK/cl-shift.fifo" <<'PY' &
import json, random, sys, time
warm, shift, tail = (int(x) * 100 for x in sys.argv[1:4])
rng = random.Random(19)
start = time.monotonic()
t0 = time.time_ns() // 1000
first = last = None
for i in range(warm + shift + tail):
    delay = start + i / 100 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    # Event time on a regular 10 ms grid, written at that pace: a stall of this script on the
    # loaded machine must not become a gap in the sensor's readings (a silence alarm).
    ts = t0 + i * 10000
    v = 20 + rng.gauss(0, 1)
    if i == warm:
        open(sys.argv[4] + ".start", "w").close()  # the shift begins (wall time)
    if warm <= i < warm + shift:
        v += 30
        first = first or ts
        last = ts
    elif i == warm + shift:
        open(sys.argv[4] + ".over", "w").close()  # the shift is over (wall time)
    print(f"shift {v:.3f} {ts}", flush=True)
json.dump({"first_us": first, "last_us": last, "end_us": ts}, open(sys.argv[4], "w"))
PY
PIDS[cl-shift-feed]=$!
log "load: $DEVICES simulated devices x 2 sensors at 5 Hz (MQTT, acked), cl-agent 2 x 100 Hz, cl-shift 100 Hz (shift after ${WARMUP_S} s for ${SHIFT_S} s)"

anomalies() {  # anomalies [ISOLATION]: outpost.anomalies, "key<TAB>value" a line
  kcat -b "$KAFKA" -C -t outpost.anomalies -o beginning -e -q -f '%k\t%s\n' \
    -X "isolation.level=${1:-read_committed}" 2>>"$WORK/kcat.err"
}
shift_open() {
  anomalies | python3 -c '
import json, sys
for line in sys.stdin:
    k, _, v = line.rstrip("\n").partition("\t")
    m = json.loads(v)
    if m["device"] == "cl-shift" and m["sensor"] == "shift" and m["state"] == "open":
        sys.exit(0)
sys.exit(1)'
}
# The kill comes once the alarm is open on outpost.anomalies (read_committed: its old owner
# committed it, so its new owner must not raise it again), or at the latest 4 s before the shift
# ends (a loaded machine may not have committed it yet: then the new owner raises it, once).
wait_for $((WARMUP_S + 30)) "cl-shift's level shift to begin" test -e "$WORK/shift.json.start"
kill_by=$((SECONDS + SHIFT_S - 4))
OPEN_BEFORE_KILL=no
while ((SECONDS < kill_by)); do
  if shift_open; then OPEN_BEFORE_KILL=yes; break; fi
  sleep 0.2
done
log "cl-shift: alarm open on outpost.anomalies (read_committed) before the kill: $OPEN_BEFORE_KILL ($((SECONDS - t_test)) s into the test)"

# --- faults --------------------------------------------------------------------------------------
FAILOVER=""
if [[ $MODE == cluster ]]; then
  shift_part=$(partition_of cl-shift)
  wait_for 30 "a settled group before the kill" settled
  victim=$(owner_of "$shift_part")
  [[ -n $victim ]] || fail "no process instance owns partition $shift_part (cl-shift): $(cluster_view)"
  read -r -a moved <<<"$(parts_of "$victim")"
  survivors=()
  for n in "${PROCS[@]}"; do [[ $n == "$victim" ]] || survivors+=("$n"); done
  t_kill=$(now_ms)
  kill9_proc "$victim"
  kill9_proc i1
  log "SIGKILL $victim (partitions ${moved[*]}, cl-shift's is $shift_part) and ingest i1"
  [[ ! -e "$WORK/shift.json.over" ]] ||
    fail "cl-shift's level shift was over before the kill: the move did not happen inside the anomaly (a slow start? CLUSTER_SHIFT_S=$SHIFT_S)"
  sleep 0.5  # a transaction commit in flight at the kill lands now, or never
  declare -A base=()
  for p in "${moved[@]}"; do base[$p]=$(committed_of "$p"); done
  end=$((SECONDS + 90))
  until settled "${survivors[@]}"; do
    ((SECONDS < end)) || fail "the partitions of $victim were not taken over within 90 s: $(cluster_view)"
    sleep 0.2
  done
  t_assigned=$(now_ms)
  advanced() {
    local p c
    for p in "${moved[@]}"; do
      c=$(committed_of "$p")
      [[ -n $c ]] && ((c > ${base[$p]})) || return 1
    done
  }
  end=$((SECONDS + 60))
  until advanced; do
    ((SECONDS < end)) || fail "the committed offsets of partitions ${moved[*]} did not move within 60 s after the takeover: $(group_offsets | tr '\n' ' ')"
    sleep 0.2
  done
  t_processing=$(now_ms)
  visible_again() {  # a read_committed reading on every moved partition after the takeover
    local p
    for p in "${moved[@]}"; do
      awk -v t="$t_assigned" -v p="$p" '$1 >= t && $2 == p {f = 1} END {exit !f}' "$WORK/visible.txt" || return 1
    done
  }
  end=$((SECONDS + 60))
  until visible_again; do
    ((SECONDS < end)) || fail "no read_committed reading on partitions ${moved[*]} within 60 s after the takeover"
    sleep 0.2
  done
  t_visible=$(now_ms)
  FAILOVER="failover after SIGKILL of $victim: partitions ${moved[*]} assigned to ready survivors after $((t_assigned - t_kill)) ms, committed offsets moving after $((t_processing - t_kill)) ms, read_committed readings on them after $((t_visible - t_kill)) ms (session timeout $SESSION_MS ms, transaction timeout $TXN_MS ms)"
  log "$FAILOVER; now $(cluster_view)"

  # A 4th process instance joins; then one of the first three stops cleanly.
  t0=$(now_ms)
  start_instance p4 process
  wait_for 60 "p4 /healthz" healthy p4
  wait_for 60 "p4 to get partitions and all process instances ready" settled
  [[ -n $(parts_of p4) ]] || fail "p4 owns no partition: $(cluster_view)"
  JOIN="p4 joined: partitions ${PARTS} settled over $(cluster_view | tr -d ' ') after $(($(now_ms) - t0)) ms"
  log "$JOIN"
  leaver=${survivors[0]}
  pid=${PIDS[$leaver]}
  t0=$(now_ms)
  kill -TERM "$pid"
  timeout 30 tail --pid="$pid" -f /dev/null || fail "$leaver did not stop within 30 s of SIGTERM"
  st=0
  wait "$pid" || st=$?
  unset "PIDS[$leaver]"
  ((st == 0)) || fail "$leaver exited with status $st on SIGTERM"
  stopped_ms=$(($(now_ms) - t0))
  wait_for 90 "the partitions of $leaver taken over after its clean stop" settled
  LEAVE="$leaver stopped cleanly (SIGTERM, exit 0 after $stopped_ms ms); its partitions taken over after $(($(now_ms) - t0)) ms: $(cluster_view | tr -d ' ')"
  log "$LEAVE"
fi

# --- drain ---------------------------------------------------------------------------------------
wait_agents_drained $((WARMUP_S + SHIFT_S + TAIL_S + 60)) cl-shift
unset "PIDS[cl-shift-feed]"
stop_proc cl-agent
drain_agent cl-agent 60
stop_fleet
if [[ $MODE == cluster ]]; then
  wait_for 60 "the group's committed offsets at the end of outpost.batches" drained
fi
log "drained $((SECONDS - t_test)) s into the test"

# --- checks --------------------------------------------------------------------------------------
java_consumer_dump outpost.readings "$WORK/readings-java.jsonl" --isolation-level read_committed &
java_pid=$!
read_topic outpost.readings "$WORK/readings.jsonl" read_committed
read_topic outpost.readings "$WORK/readings-uncommitted.jsonl" read_uncommitted
anomalies read_committed >"$WORK/anomalies.txt"
anomalies read_uncommitted >"$WORK/anomalies-uncommitted.txt"
wait "$java_pid" || fail "the Java console consumer failed"

rc=0
python3 "$TORTURE/account.py" "$WORK/readings.jsonl" \
  "cl-agent=$(outbox_last_seq cl-agent):$(outbox_rows cl-agent)" \
  "cl-shift=$(outbox_last_seq cl-shift):$(outbox_rows cl-shift):$SHIFT_N" \
  "cl-sim-*=$FLEET_ACKED:$FLEET_SENT" >"$WORK/account.json" || rc=1
echo "account.py (read_committed, kcat): $(cat "$WORK/account.json")"
python3 "$TORTURE/account.py" "$WORK/readings-java.jsonl" \
  "cl-agent=$(outbox_last_seq cl-agent):$(outbox_rows cl-agent)" \
  "cl-shift=$(outbox_last_seq cl-shift):$(outbox_rows cl-shift):$SHIFT_N" \
  "cl-sim-*=$FLEET_ACKED:$FLEET_SENT" >"$WORK/account-java.json" || rc=1
echo "account.py (read_committed, Java): $(cat "$WORK/account-java.json")"
python3 "$HERE/check_cluster.py" "$WORK/readings.jsonl" "$WORK/readings-java.jsonl" \
  "$WORK/readings-uncommitted.jsonl" cl-sim- "$WORK/sim.json" "$DEVICES" >"$WORK/cluster.json" || rc=1
echo "check_cluster.py: $(cat "$WORK/cluster.json")"
((rc == 0)) || fail "readings lost, duplicated or read differently (above)"

# Detector state survived the move: one alarm for cl-shift/shift while it was fed, opened and
# ended, the end after the shift's last reading (the silence once the feed stops is another).
python3 - "$WORK/anomalies.txt" "$WORK/anomalies-uncommitted.txt" "$WORK/shift.json" <<'PY' || fail "detector state did not survive the move (above)"
import collections, json, sys
def events(path):
    out = []
    for line in open(path, encoding="utf-8"):
        k, _, v = line.rstrip("\n").partition("\t")
        if v:
            out.append(json.loads(v))
    return out
committed, uncommitted = events(sys.argv[1]), events(sys.argv[2])
shift = json.load(open(sys.argv[3]))
# The feed's end is a silence (raised by the timer after the last reading): not part of the move.
mine = [m for m in committed if m["device"] == "cl-shift" and m["timestamp_us"] <= shift["end_us"]]
for m in committed:
    if m["device"] == "cl-shift":
        print("  cl-shift event:", json.dumps(m))
opens = [m for m in mine if m["state"] == "open"]
ended = [m for m in mine if m["state"] == "ended"]
others = collections.Counter((m["device"].rstrip("0123456789"), m["kind"], m["state"])
                             for m in committed if m["device"] != "cl-shift")
print(f"  outpost.anomalies: {len(committed)} events read_committed, {len(uncommitted)} "
      f"read_uncommitted; other devices: {dict(others) or 'none'}")
errors = []
if len(opens) != 1:
    errors.append(f"{len(opens)} alarms opened for cl-shift/shift, expected exactly 1")
if len(ended) != 1:
    errors.append(f"{len(ended)} alarms ended for cl-shift/shift, expected exactly 1")
if opens and ended:
    o, e = opens[0], ended[0]
    if o["timestamp_us"] != e["timestamp_us"]:
        errors.append("the ended event is not the opened alarm's (timestamp_us differs)")
    if not shift["first_us"] <= o["timestamp_us"] <= shift["last_us"]:
        errors.append(f"the alarm opened at {o['timestamp_us']}, outside the shift "
                      f"[{shift['first_us']}, {shift['last_us']}]")
    if o["kind"] != "level_shift" or e["kind"] != "level_shift":
        errors.append(f"kinds {o['kind']} / {e['kind']}, expected level_shift")
    # ended_us: the last reading still anomalous (ms resolution): not before the shift's last
    # reading, or the new owner stopped scoring (a warm-up) or ended it early.
    if e["ended_us"] < shift["last_us"] // 1000 * 1000:
        errors.append(f"the alarm ended at {e['ended_us']}, before the shift's last reading "
                      f"{shift['last_us']}")
for err in errors:
    print("  ERROR:", err)
if not errors:
    print(f"  cl-shift/shift: one level_shift alarm, opened at {opens[0]['timestamp_us']} (shift "
          f"from {shift['first_us']}), ended at {ended[0]['ended_us']} (shift's last reading "
          f"{shift['last_us']})")
sys.exit(1 if errors else 0)
PY

python3 - "$WORK/account.json" "$WORK/cluster.json" <<'PY'
import json, sys
a, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print(f"readings on outpost.readings (read_committed): {a['readings']} "
      f"(fleet {c['fleet_readings']} of {c['fleet_devices']} devices, acked {c['fleet_acked']}); "
      f"lost {a['lost']}, duplicated {a['duplicated'] + c['fleet_duplicated']}, "
      f"reordered {a['reordered'] + c['fleet_reordered']}; messages: {c['committed_messages']} "
      f"read_committed (kcat = Java), {c['uncommitted_messages']} read_uncommitted "
      f"({c['aborted_messages']} aborted, {c['aborted_duplicates']} of them repeating a committed "
      f"batch part)")
PY
[[ -z $FAILOVER ]] || echo "$FAILOVER; cl-shift's alarm committed before the kill: $OPEN_BEFORE_KILL"
[[ -z ${JOIN:-} ]] || echo "$JOIN"
[[ -z ${LEAVE:-} ]] || echo "$LEAVE"
echo "wall time $((SECONDS - t_test)) s"
echo "PASS: cluster ($MODE)"
