#!/usr/bin/env bash
# Benchmark of the scaled-out aggregator (issue 19, docs/scaling.md): roles all, ingest, process on
# a real Apache Kafka broker (scripts/kafka.sh), Mosquitto and outpost-bench-aggregator as the
# fleet. Every process runs on free loopback ports and is stopped by its pid (tests/integration/
# lib.sh). One broker and one Mosquitto serve the whole invocation; every run gets its own topics
# (bench.<run>.batches / .state (compacted) / .readings, 6 partitions) and consumer group, so runs
# do not see each other's data.
#
# Parts (--parts, comma list):
#   latency     the same paced load (--rate readings/s, --devices, --batch-readings) through role all
#               (one aggregator) and through ingest + process (one each; cluster.commit_interval_ms
#               from --commit-ms, each value a configuration), interleaved run by run. Measured:
#               (a) the bench's publish -> ack round trip (all: every message on Kafka; ingest: the
#               batch on outpost.batches); (b) what a read_committed consumer of the readings topic
#               sees: its receive time minus the batch's received_us (receive by the aggregator or
#               the ingest instance), per batch (cluster_watch.py, kcat); (c) CPU of each role per
#               reading over the measured window (/proc/PID/stat, by the bench); the broker's too.
#               Cross-check: the consumer saw every accepted batch exactly once.
#   failover    1 ingest + 2 process instances under paced load; first a clean restart of process
#               p1 (SIGTERM, started again at once with the same cluster.instance_id), then a
#               SIGKILL of p1. Measured: kill -> p2 owns p1's partitions (GET /api/cluster every
#               100 ms); kill -> the first reading received after the kill visible to a
#               read_committed consumer, per device of p1's partitions (max over them); the longest
#               silence of p2's own devices; the same for the clean restart, plus whether a
#               rebalance happened (outpost_aggregator_rebalances_total of p2). Once per value of
#               --timeouts (cluster.session_timeout_ms = cluster.transaction_timeout_ms).
#               Cross-check: every accepted batch seen exactly once by the consumer.
#   throughput  1 or 2 process instances join the group on the empty topic and are stopped
#               (SIGSTOP) once every partition is owned; --prefill-batches batches go onto the
#               batches topic through ingest; then the instances are resumed (SIGCONT) and drain it.
#               Measured: readings published per second from SIGCONT until all are committed
#               (outpost_aggregator_readings_published_total, polled), and their CPU per reading.
#
# Usage: run_cluster_bench.sh [BUILD_DIR] [options]     (or OUTPOST_BUILD_DIR=... in the env)
#   --parts LIST          latency,failover,throughput (default all three)
#   --runs N              runs per configuration (default 3); the summary prints medians (min..max)
#   --duration S          latency: measured seconds per run (default 20)
#   --warmup S            latency: unmeasured load first (default 3)
#   --rate R              latency and failover: readings/s of the fleet (default 100000)
#   --devices N           virtual devices (default 24)
#   --batch-readings N    readings per batch (default 500)
#   --commit-ms LIST      latency: cluster.commit_interval_ms values (default 100,20)
#   --timeouts LIST       failover: session = transaction timeout values, ms (default 6000,10000)
#   --prefill-batches N   throughput: batches on the topic before the drain (default 12000)
#   --instances LIST      throughput: process instance counts (default 1,2)
#   --broker-set K=V      a broker setting for scripts/kafka.sh start --set (repeatable)
#   --process-set K=V     an extra setting of every process instance (repeatable; e.g.
#                         cluster.commit_interval_ms=1000 in the throughput part)
#   --aggregator PATH     another outpost-aggregator binary (A/B of a change; default: the build's)
#   --out DIR             keep results.jsonl, consumer logs, /metrics and logs here
# Exit: 0 all runs correct; 1 a correctness check failed; 2 usage.
#
# Bounded: every run is bounded in time (the bench's window + drain, `timeout`, polling loops with
# a deadline) and in count (the bench's pre-encoded batches).

usage() { sed -n '2,/^# Bounded:/p' "$0" | sed 's/^# \{0,1\}//' | head -n -1; }

if [[ $# -gt 0 && "$1" != -* ]]; then
  export OUTPOST_BUILD_DIR="$1"
  shift
fi
PARTS=latency,failover,throughput RUNS=3 DURATION=20 WARMUP=3 RATE=100000 DEVICES=24
BATCH_READINGS=500 COMMIT_MS=100,20 TIMEOUTS=6000,10000 PREFILL=12000 INSTANCES=1,2 OUT=""
BROKER_SET=() AGG_OVERRIDE="" PROCESS_SET=()
need() { [[ $# -ge 2 && -n "$2" ]] || { echo "option $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --parts) need "$@"; PARTS=$2; shift 2 ;;
    --runs) need "$@"; RUNS=$2; shift 2 ;;
    --duration) need "$@"; DURATION=$2; shift 2 ;;
    --warmup) need "$@"; WARMUP=$2; shift 2 ;;
    --rate) need "$@"; RATE=$2; shift 2 ;;
    --devices) need "$@"; DEVICES=$2; shift 2 ;;
    --batch-readings) need "$@"; BATCH_READINGS=$2; shift 2 ;;
    --commit-ms) need "$@"; COMMIT_MS=$2; shift 2 ;;
    --timeouts) need "$@"; TIMEOUTS=$2; shift 2 ;;
    --prefill-batches) need "$@"; PREFILL=$2; shift 2 ;;
    --instances) need "$@"; INSTANCES=$2; shift 2 ;;
    --broker-set) need "$@"; BROKER_SET+=(--set "$2"); shift 2 ;;
    --aggregator) need "$@"; AGG_OVERRIDE=$2; shift 2 ;;
    --process-set) need "$@"; PROCESS_SET+=(--set "$2"); shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in RUNS DEVICES BATCH_READINGS RATE PREFILL DURATION WARMUP; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "$v must be a positive integer" >&2; exit 2; }
done
for p in ${PARTS//,/ }; do
  [[ $p == latency || $p == failover || $p == throughput ]] ||
    { echo "unknown part '$p' (latency, failover, throughput)" >&2; exit 2; }
done
for v in ${COMMIT_MS//,/ } ${TIMEOUTS//,/ }; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "--commit-ms/--timeouts: '$v' is not a number of ms" >&2; exit 2; }
done
for v in ${INSTANCES//,/ }; do
  [[ "$v" =~ ^[1-6]$ ]] || { echo "--instances: '$v' must be 1..6 (6 partitions)" >&2; exit 2; }
done
((DEVICES * 16 <= 9000)) || { echo "--devices: at most 562 (Mosquitto's queue)" >&2; exit 2; }

source "$(dirname "$0")/../integration/lib.sh"
BENCH_BIN="$OUTPOST_BUILD_DIR/tests/bench/outpost-bench-aggregator"
WATCH="$(dirname "$0")/cluster_watch.py"
[[ -n "$AGG_OVERRIDE" ]] && AGGREGATOR_BIN=$AGG_OVERRIDE
for bin in "$BENCH_BIN" "$AGGREGATOR_BIN" "$KAFKA_TOOL_BIN"; do
  [[ -x "$bin" ]] || fail "$bin is missing: build it first"
done
command -v kcat >/dev/null || fail "kcat is missing (apt-get install kcat)"
if [[ -n "$OUT" ]]; then mkdir -p "$OUT"; else OUT="$WORK/out"; mkdir -p "$OUT"; fi
OUT=$(cd "$OUT" && pwd)
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
PARTITIONS=6

now_us() { echo $(($(date +%s%N) / 1000)); }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# new_topics RUN: the run's batches, state (compacted) and readings topics.
new_topics() {
  T_BATCHES=bench.$1.batches T_STATE=bench.$1.state T_READINGS=bench.$1.readings
  OUTPOST_KAFKA_TOOL="$KAFKA_TOOL_BIN" "$KAFKA_SH" topics --bootstrap "$KAFKA" \
    --partitions $PARTITIONS --topics "$T_BATCHES,$T_STATE:compact,$T_READINGS" \
    2>>"$WORK/topics.log" || fail "could not create the topics of run $1"
  # Until every partition has a leader (a client asking at once may get NOT_LEADER).
  local end=$((SECONDS + 30))
  until [[ $(timeout 10 kcat -b "$KAFKA" -L -t "$T_STATE" 2>/dev/null | grep -c 'leader 1,') == "$PARTITIONS" &&
    $(timeout 10 kcat -b "$KAFKA" -L -t "$T_BATCHES" 2>/dev/null | grep -c 'leader 1,') == "$PARTITIONS" ]]; do
    ((SECONDS < end)) || fail "topics of run $1 have no leaders after 30 s"
    sleep 0.2
  done
}

declare -A HTTP=()
# start_role NAME ROLE [--set ...]: one aggregator instance; its pid in PIDS[NAME], port HTTP[NAME].
start_role() {
  local name=$1 role=$2
  shift 2
  HTTP[$name]=$(free_port)
  local extra=()
  [[ $role == process ]] && extra=("${PROCESS_SET[@]}")
  # Instance ids, the MQTT client id and the shared-subscription group are the run's own: a
  # previous run's session in Mosquitto must not take a share of this run's batches.
  "$AGGREGATOR_BIN" --set "cluster.role=$role" --set "cluster.instance_id=$RUN-$name" \
    --set "mqtt.shared_group=$RUN" --set "mqtt.client_id=$RUN-$name" \
    --set "cluster.group=$RUN.group" --set "kafka.batches_topic=$T_BATCHES" \
    --set "kafka.state_topic=$T_STATE" --set "kafka.readings_topic=$T_READINGS" \
    --set "mqtt.broker=$MQTT_URI" --set "kafka.bootstrap_servers=$KAFKA" \
    --set "dedup.path=$WORK/$RUN.$name.dedup.db" --set "http.listen=127.0.0.1:${HTTP[$name]}" \
    --set log_level=info "${extra[@]}" "$@" >>"$OUT/$RUN.$name.log" 2>&1 &
  PIDS[$name]=$!
}
wait_ready() {  # wait_ready SECONDS NAME...
  local secs=$1
  shift
  for n in "$@"; do
    wait_for "$secs" "$n /readyz" curl -sf "http://127.0.0.1:${HTTP[$n]}/readyz"
  done
}
partitions_of() {  # partitions_of NAME: "0,1,2" from GET /api/cluster (empty if unreachable)
  curl -sf -m 1 "http://127.0.0.1:${HTTP[$1]}/api/cluster" 2>/dev/null |
    python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["partitions"])))' 2>/dev/null
}
metric_sum() {  # metric_sum NAME PREFIX...: sum of an unlabelled metric over instances
  local name=$1 s=0 v
  shift
  for n in "$@"; do
    v=$(curl -sf -m 2 "http://127.0.0.1:${HTTP[$n]}/metrics" | awk -v m="$name" '$1 == m {print $2}')
    s=$(python3 -c "print(int($s + float('${v:-0}')))")
  done
  echo "$s"
}
# start_watch SECONDS: a read_committed consumer of the run's readings topic (cluster_watch.py).
start_watch() {
  rm -f "$OUT/$RUN.watch.ready"
  python3 "$WATCH" --bootstrap "$KAFKA" --topic "$T_READINGS" --seconds "$1" \
    --out "$OUT/$RUN.watch.txt" --ready "$OUT/$RUN.watch.ready" 2>>"$OUT/$RUN.watch.err" &
  PIDS[watch]=$!
  wait_for 30 "the readings consumer of $RUN" test -e "$OUT/$RUN.watch.ready"
}
# finish_watch EXPECTED: wait (bounded) until the consumer has EXPECTED messages, then stop it.
finish_watch() {
  local end=$((SECONDS + 30))
  while (($(wc -l <"$OUT/$RUN.watch.txt") < $1 && SECONDS < end)); do sleep 0.5; done
  stop_proc watch
}
save_metrics() { for n in "$@"; do curl -sf -m 5 "http://127.0.0.1:${HTTP[$n]}/metrics" >"$OUT/$RUN.$n.metrics.txt" || true; done; }
stop_all() { for n in "$@"; do stop_proc "$n"; done; }

# run_bench RATE WARMUP DURATION CPU_NAMES...: the fleet through Mosquitto; JSON in $OUT/$RUN.bench.txt
run_bench() {
  local rate=$1 warm=$2 dur=$3
  shift 3
  local args=(--broker "$MQTT_URI" --rate "$rate" --duration "$dur" --warmup "$warm"
    --devices "$DEVICES" --batch-readings "$BATCH_READINGS" --inflight 16 --label "$RUN"
    --device-prefix "b$RUN-" --drain-timeout 30
    --cpu-pid "mosquitto=${PIDS[mosquitto]}" --cpu-pid "kafka=${PIDS[kafka]}")
  for n in "$@"; do args+=(--cpu-pid "$n=${PIDS[$n]}"); done
  [[ $rate == 0 ]] && args+=(--max-batches "$PREFILL" --max-memory-mb 1024)
  log "run $RUN: load $(cut -d' ' -f1-3 /proc/loadavg)"
  if [[ ${BENCH_BG:-0} == 1 ]]; then  # in the background (stopped by pid: timeout passes it on)
    timeout $((warm + dur + 120)) "$BENCH_BIN" "${args[@]}" >"$OUT/$RUN.bench.txt" 2>&1 &
    PIDS[bench]=$!
    return 0
  fi
  timeout $((warm + dur + 120)) "$BENCH_BIN" "${args[@]}" >"$OUT/$RUN.bench.txt" 2>&1 ||
    fail "bench of $RUN failed: $(tail -n 8 "$OUT/$RUN.bench.txt")"
  sed -n '/^throughput/p;/^round trip/p;/^RESULT/p' "$OUT/$RUN.bench.txt"
}

# --- latency + CPU per role ----------------------------------------------------------------------
part_latency() {
  local i conf
  for ((i = 1; i <= RUNS; i++)); do
    for conf in all ${COMMIT_MS//,/ }; do
      RUN="lat$i-$([[ $conf == all ]] && echo all || echo "split$conf")"
      new_topics "$RUN"
      local roles
      if [[ $conf == all ]]; then
        start_role agg all --set log_level=warn
        wait_ready 60 agg
        roles=(agg)
      else
        start_role ingest ingest --set log_level=warn
        start_role process process --set "cluster.commit_interval_ms=$conf" --set log_level=warn
        wait_ready 60 ingest process
        roles=(ingest process)
      fi
      start_watch $((WARMUP + DURATION + 120))
      local t0
      t0=$(now_us)
      run_bench "$RATE" "$WARMUP" "$DURATION" "${roles[@]}"
      local json
      json=$(tail -n 1 "$OUT/$RUN.bench.txt")
      local batches
      batches=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["batches_accepted"])' "$json")
      finish_watch "$batches"
      save_metrics "${roles[@]}"
      stop_all "${roles[@]}"
      python3 - "$RESULTS" "$RUN" "$conf" "$json" "$OUT/$RUN.watch.txt" "$t0" "$WARMUP" \
        "$DURATION" "$OUT/$RUN" "${roles[@]}" <<'PY' || fail "correctness problem in $RUN"
import collections, json, sys
res, run, conf, js, watch, t0, warm, dur, prefix = sys.argv[1:10]
roles = sys.argv[10:]
b = json.loads(js)
t0, warm, dur = int(t0), float(warm), float(dur)
# The bench's window starts ~warm s after t0 (plus its connects, < 1 s): take received_us in
# [t0 + warm + 1 s, t0 + warm + dur], the same batches for every configuration.
lo, hi = t0 + (warm + 1) * 1e6, t0 + (warm + dur) * 1e6
seen = collections.Counter()
lat = []
for line in open(watch):
    t, p, dev, seq, rcv, n = line.split()
    seen[(dev, int(seq))] += 1
    if lo <= int(rcv) <= hi:
        lat.append((int(t) - int(rcv)) / 1000)
lat.sort()
pct = lambda q: lat[min(len(lat) - 1, int(q / 100 * len(lat)))] if lat else None
problems = []
dups = sum(1 for v in seen.values() if v > 1)
if dups:
    problems.append(f"{dups} batches seen more than once by the read_committed consumer")
if len(seen) != b["batches_accepted"]:
    problems.append(f"consumer saw {len(seen)} batches, bench got {b['batches_accepted']} accepted")
def hist(path, name):
    """p50/p99 (ms) of a Prometheus histogram, linear inside the bucket."""
    buckets = []
    for line in open(path):
        if line.startswith(name + "_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    def q(p):
        want, prev_le, prev_c = p * total, 0.0, 0.0
        for le, c in buckets:
            if c >= want:
                if le == float("inf"):
                    return prev_le * 1000
                return 1000 * (prev_le + (le - prev_le) * (want - prev_c) / max(c - prev_c, 1e-9))
            prev_le, prev_c = le, c
    return {"p50": round(q(0.5), 2), "p99": round(q(0.99), 2), "count": int(total)}
own = {}
for r in roles:
    m = f"{prefix}.{r}.metrics.txt"
    for h in ("outpost_aggregator_batch_latency_seconds", "outpost_aggregator_commit_latency_seconds",
              "outpost_aggregator_e2e_latency_seconds"):
        try:
            v = hist(m, h)
        except OSError:
            v = None
        if v:
            own[f"{r}:{h.replace('outpost_aggregator_', '')}"] = v
rps = b["readings_per_s"]
out = {"part": "latency", "run": run, "conf": conf, "readings_per_s": rps,
       "roundtrip_ms": b["latency_ms"], "consumer_ms": {"count": len(lat), "p50": pct(50),
       "p90": pct(90), "p99": pct(99), "max": lat[-1] if lat else None},
       "cpu_cores": b["cpu_cores"], "others_cores": b["others_cores"],
       "cpu_us_per_reading": {k: (round(v * 1e6 / rps, 3) if v is not None and rps else None)
                              for k, v in b["cpu_cores"].items()},
       "own_histograms_ms": own, "batches": b["batches_accepted"], "problems": problems}
open(res, "a").write(json.dumps(out) + "\n")
c = out["consumer_ms"]
print(f"  {run}: consumer (read_committed) receive - received_us: p50 {c['p50']:.1f} ms, "
      f"p99 {c['p99']:.1f} ms, max {c['max']:.1f} ms over {c['count']} batches; "
      f"cpu us/reading {out['cpu_us_per_reading']}; {len(seen)} batches once each"
      + ("" if not problems else f"; PROBLEMS: {problems}"))
sys.exit(1 if problems else 0)
PY
    done
  done
}

# --- failover and clean restart ------------------------------------------------------------------
# poll_until SECONDS CMD...: every 0.1 s until CMD succeeds; prints the wall time (us) it did.
poll_until() {
  local secs=$1
  shift
  local end=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < end)) || { echo -1; return 0; }
    sleep 0.1
  done
  now_us
}
owns_all() {  # owns_all NAME P,Q,...: NAME's partitions include every one listed
  local have
  have=",$(partitions_of "$1"),"
  for p in ${2//,/ }; do [[ $have == *",$p,"* ]] || return 1; done
}
has_partitions() { [[ -n "$(partitions_of "$1")" ]]; }

part_failover() {
  local i to
  for ((i = 1; i <= RUNS; i++)); do
    for to in ${TIMEOUTS//,/ }; do
      RUN="fo$i-t$to"
      new_topics "$RUN"
      local pset=(--set "cluster.session_timeout_ms=$to" --set "cluster.transaction_timeout_ms=$to")
      start_role ingest ingest --set log_level=warn
      start_role p1 process "${pset[@]}"
      start_role p2 process "${pset[@]}"
      wait_ready 60 ingest p1 p2
      local window=$((12 + 3 * to / 1000 + 25))
      start_watch $((window + 150))
      local t0
      t0=$(now_us)
      BENCH_BG=1 run_bench "$RATE" 2 "$window" ingest p2
      local bench_pid=${PIDS[bench]}
      sleep 8
      # Clean restart of p1: SIGTERM, then the same instance id again at once.
      local p1parts rb0 t_stop t_back t_kill t_owned rb1 p2parts
      p1parts=$(partitions_of p1)
      p2parts=$(partitions_of p2)
      [[ -n $p1parts && -n $p2parts ]] || fail "$RUN: p1 ($p1parts) or p2 ($p2parts) owns nothing"
      rb0=$(metric "${HTTP[p2]}" outpost_aggregator_rebalances_total)
      t_stop=$(now_us)
      stop_proc p1
      start_role p1 process "${pset[@]}"
      t_back=$(poll_until 60 owns_all p1 "$p1parts")
      rb1=$(metric "${HTTP[p2]}" outpost_aggregator_rebalances_total)
      log "$RUN: clean restart of p1 (partitions $p1parts): back after $(((t_back - t_stop) / 1000)) ms;" \
        "p2 rebalances $rb0 -> $rb1"
      sleep $((6 + to / 1000))
      # Crash of p1.
      p1parts=$(partitions_of p1)
      [[ -n $p1parts ]] || fail "$RUN: p1 owns nothing before the kill"
      t_kill=$(now_us)
      kill9_proc p1
      t_owned=$(poll_until $((3 * to / 1000 + 30)) owns_all p2 "$p1parts")
      log "$RUN: SIGKILL of p1 (partitions $p1parts): p2 owns them after $(((t_owned - t_kill) / 1000)) ms"
      wait "$bench_pid" || fail "bench of $RUN failed: $(tail -n 5 "$OUT/$RUN.bench.txt")"
      unset "PIDS[bench]"
      sed -n '/^throughput/p;/^round trip/p;/^RESULT/p' "$OUT/$RUN.bench.txt"
      local json batches
      json=$(tail -n 1 "$OUT/$RUN.bench.txt")
      batches=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["batches_accepted"])' "$json")
      finish_watch "$batches"
      save_metrics ingest p2
      stop_all ingest p2
      grep -h "assigned .* partitions" "$OUT/$RUN.p2.log" | tail -n 3 || true
      python3 - "$RESULTS" "$RUN" "$to" "$json" "$OUT/$RUN.watch.txt" "$p1parts" "$p2parts" \
        "$t_stop" "$t_back" "$rb0" "$rb1" "$t_kill" "$t_owned" <<'PY' || fail "correctness problem in $RUN"
import collections, json, sys
res, run, to, js, watch, p1, p2 = sys.argv[1:8]
t_stop, t_back, rb0, rb1, t_kill, t_owned = (int(float(x)) for x in sys.argv[8:14])
b = json.loads(js)
p1 = {int(x) for x in p1.split(",")}
p2 = {int(x) for x in p2.split(",")}
msgs = [l.split() for l in open(watch)]
part_of = {m[2]: int(m[1]) for m in msgs}
seen = collections.Counter((m[2], int(m[3])) for m in msgs)
problems = []
dups = sum(1 for v in seen.values() if v > 1)
if dups:
    problems.append(f"{dups} batches seen more than once by the read_committed consumer")
if len(seen) != b["batches_accepted"]:
    problems.append(f"consumer saw {len(seen)} batches, bench got {b['batches_accepted']} accepted")
def recovery(t_event, devs):
    """max over devs of: first arrival of a batch received after t_event - t_event (ms)."""
    worst = 0
    for d in devs:
        firsts = [int(m[0]) for m in msgs if m[2] == d and int(m[4]) > t_event]
        if not firsts:
            return None
        worst = max(worst, min(firsts) - t_event)
    return round(worst / 1000)
def silence(t_from, t_to, devs):
    """longest gap between arrivals of devs' messages in [t_from, t_to] (ms)."""
    worst = 0
    for d in devs:
        ts = sorted(int(m[0]) for m in msgs if m[2] == d and t_from <= int(m[0]) <= t_to)
        ts = [t_from] + ts
        worst = max(worst, max(b - a for a, b in zip(ts, ts[1:])) if len(ts) > 1 else t_to - t_from)
    return round(worst / 1000)
moved = sorted(d for d, p in part_of.items() if p in p1)
stayed = sorted(d for d, p in part_of.items() if p in p2)
out = {"part": "failover", "run": run, "timeout_ms": int(to), "p1_partitions": sorted(p1),
       "moved_devices": len(moved), "other_devices": len(stayed),
       "restart_back_ms": round((t_back - t_stop) / 1000) if t_back > 0 else None,
       "restart_rebalanced": rb1 != rb0,
       "restart_visible_ms": recovery(t_stop, moved),
       "restart_other_silence_ms": silence(t_stop, t_stop + 15_000_000, stayed),
       "kill_owned_ms": round((t_owned - t_kill) / 1000) if t_owned > 0 else None,
       "kill_visible_ms": recovery(t_kill, moved),
       "kill_other_silence_ms": silence(t_kill, t_kill + 30_000_000, stayed),
       "batches": b["batches_accepted"], "problems": problems}
open(res, "a").write(json.dumps(out) + "\n")
print(f"  {run}: {json.dumps(out)}")
sys.exit(1 if problems else 0)
PY
    done
  done
}

# --- throughput with 1 or 2 process instances ----------------------------------------------------
part_throughput() {
  local i k
  for ((i = 1; i <= RUNS; i++)); do
    for k in ${INSTANCES//,/ }; do
      RUN="tp$i-x$k"
      new_topics "$RUN"
      start_role ingest ingest --set log_level=warn
      # The process instances join first, on the empty topic, and are stopped (SIGSTOP) once the
      # group has settled (every partition owned), so that the drain measures them working side
      # by side rather than one instance draining alone until the other joins. Session and
      # transaction timeouts of 60 s keep them in the group while stopped.
      local names=() n
      for ((n = 1; n <= k; n++)); do names+=("p$n"); done
      for n in "${names[@]}"; do
        start_role "$n" process --set log_level=warn --set cluster.session_timeout_ms=60000 \
          --set cluster.transaction_timeout_ms=60000
      done
      wait_ready 60 ingest "${names[@]}"
      local end=$((SECONDS + 120)) owned
      while :; do
        owned=0
        for n in "${names[@]}"; do
          local ps
          ps=$(partitions_of "$n")
          [[ -n $ps ]] && owned=$((owned + $(tr ',' '\n' <<<"$ps" | wc -l)))
        done
        ((owned == PARTITIONS)) && break
        ((SECONDS < end)) || fail "$RUN: the group did not settle in 120 s ($owned partitions owned)"
        sleep 0.2
      done
      local c_a
      c_a=$(metric_sum outpost_aggregator_readings_published_total "${names[@]}")
      for n in "${names[@]}"; do kill -STOP "${PIDS[$n]}"; done
      run_bench 0 0 30 ingest  # as fast as possible, at most --prefill-batches batches (no warm-up:
      # a small prefill would be over before the window starts)
      local json batches
      json=$(tail -n 1 "$OUT/$RUN.bench.txt")
      batches=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["batches_accepted"])' "$json")
      stop_proc ingest
      local want=$((batches * BATCH_READINGS)) t_a p_a=() t_b c_b p_b=()
      for n in "${names[@]}"; do p_a+=("$(ticks "${PIDS[$n]}")"); done
      t_a=$(now_us)
      for n in "${names[@]}"; do kill -CONT "${PIDS[$n]}"; done
      end=$((SECONDS + 300))
      while :; do
        c_b=$(metric_sum outpost_aggregator_readings_published_total "${names[@]}")
        ((c_b >= want)) && break
        ((SECONDS < end)) || fail "$RUN: only $c_b of $want readings published after 300 s"
        sleep 0.2
      done
      t_b=$(now_us)
      for n in "${names[@]}"; do p_b+=("$(ticks "${PIDS[$n]}")"); done
      save_metrics "${names[@]}"
      stop_all "${names[@]}"
      python3 - "$RESULTS" "$RUN" "$k" "$want" "$t_a" "$c_a" "$t_b" "$c_b" "$(getconf CLK_TCK)" \
        "${p_a[*]}" "${p_b[*]}" "$json" <<'PY'
import json, sys
res, run, k, want, t_a, c_a, t_b, c_b, hz = sys.argv[1:10]
pa = [int(x) for x in sys.argv[10].split()]
pb = [int(x) for x in sys.argv[11].split()]
b = json.loads(sys.argv[12])
k, want, t_a, c_a, t_b, c_b, hz = int(k), int(want), int(t_a), int(c_a), int(t_b), int(c_b), int(hz)
secs = (t_b - t_a) / 1e6
n = c_b - c_a
cpu = [(y - x) / hz for x, y in zip(pa, pb)]
out = {"part": "throughput", "run": run, "instances": k, "readings": want,
       "readings_in_window": n, "window_s": round(secs, 2),
       "readings_per_s": round(n / secs) if secs > 0 else None,
       "process_cores": [round(c / secs, 2) for c in cpu],
       "cpu_us_per_reading": round(sum(cpu) * 1e6 / n, 3) if n else None,
       "prefill_readings_per_s": b["readings_per_s"], "ingest_cores_prefill": b["cpu_cores"].get("ingest")}
open(res, "a").write(json.dumps(out) + "\n")
print(f"  {run}: {json.dumps(out)}")
PY
    done
  done
}

# --- the stack and the summary -------------------------------------------------------------------
start_mosquitto
KAFKA_PARTITIONS=$PARTITIONS
export KAFKA_TOPICS="outpost.readings,outpost.anomalies,outpost.deadletter,outpost.device-status:compact,outpost.latest:compact,outpost.batches,outpost.state:compact"
if ((${#BROKER_SET[@]})); then
  # start_real_kafka has no hook for broker settings: start it the same way with them.
  KAFKA_DIR="$WORK/kafka"
  KAFKA=$(OUTPOST_KAFKA_TOOL="$KAFKA_TOOL_BIN" "$KAFKA_SH" start --dir "$KAFKA_DIR" \
    --partitions $PARTITIONS --heap "${KAFKA_HEAP:-256m}" --topics "$KAFKA_TOPICS" \
    "${BROKER_SET[@]}" 2>>"$WORK/kafka-start.log") || true
  [[ -f "$KAFKA_DIR/kafka.pid" ]] && PIDS[kafka]=$(cat "$KAFKA_DIR/kafka.pid")
  [[ -n "${PIDS[kafka]:-}" && -n "$KAFKA" ]] || fail "Kafka did not start: $(tail -n 5 "$WORK/kafka-start.log")"
  log "Apache Kafka pid ${PIDS[kafka]} on $KAFKA (${BROKER_SET[*]})"
else
  start_real_kafka
fi
for p in ${PARTS//,/ }; do "part_$p"; done

python3 - "$RESULTS" <<'PY'
import collections, json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def fig(vals, fmt="{:.1f}"):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return "n/a"
    s = fmt.format(statistics.median(v))
    return s if len(v) == 1 else f"{s} ({fmt.format(v[0])}..{fmt.format(v[-1])})"
print("\n=== medians over runs (min..max) ===")
by = collections.defaultdict(list)
for r in rows:
    key = {"latency": lambda r: f"latency {r['conf'] if r['conf'] == 'all' else 'ingest+process, commit ' + r['conf'] + ' ms'}",
           "failover": lambda r: f"failover, session = transaction timeout {r['timeout_ms']} ms",
           "throughput": lambda r: f"throughput, {r['instances']} process instance(s)"}[r["part"]](r)
    by[key].append(r)
for key, rs in by.items():
    print(f"{key}: {len(rs)} run(s)")
    if rs[0]["part"] == "latency":
        print("  readings/s           : " + fig([r["readings_per_s"] for r in rs], "{:,.0f}"))
        print("  bench round trip p50 : " + fig([r["roundtrip_ms"]["p50"] for r in rs]) + " ms, p99 "
              + fig([r["roundtrip_ms"]["p99"] for r in rs]) + " ms")
        print("  consumer p50         : " + fig([r["consumer_ms"]["p50"] for r in rs]) + " ms, p99 "
              + fig([r["consumer_ms"]["p99"] for r in rs]) + " ms, max "
              + fig([r["consumer_ms"]["max"] for r in rs]) + " ms")
        for h in sorted(rs[0]["own_histograms_ms"]):
            print(f"  {h:<21}: p50 " + fig([r["own_histograms_ms"].get(h, {}).get("p50") for r in rs])
                  + " ms, p99 " + fig([r["own_histograms_ms"].get(h, {}).get("p99") for r in rs]) + " ms")
        for p in rs[0]["cpu_us_per_reading"]:
            print(f"  cpu {p:<17}: " + fig([r["cpu_us_per_reading"][p] for r in rs], "{:.3f}")
                  + " core-us/reading, " + fig([r["cpu_cores"][p] for r in rs], "{:.2f}") + " cores")
        print("  cpu others           : " + fig([r["others_cores"] for r in rs], "{:.2f}") + " cores")
    elif rs[0]["part"] == "failover":
        for f in ("restart_back_ms", "restart_visible_ms", "restart_other_silence_ms",
                  "kill_owned_ms", "kill_visible_ms", "kill_other_silence_ms"):
            print(f"  {f:<25}: " + fig([r[f] for r in rs], "{:,.0f}") + " ms")
        print("  restart rebalanced       : " + ", ".join(str(r["restart_rebalanced"]) for r in rs))
    else:
        print("  readings/s drained   : " + fig([r["readings_per_s"] for r in rs], "{:,.0f}"))
        print("  cpu per reading      : " + fig([r["cpu_us_per_reading"] for r in rs], "{:.3f}") + " core-us")
        print("  process cores        : " + "; ".join(str(r["process_cores"]) for r in rs))
        print("  window               : " + fig([r["window_s"] for r in rs], "{:.1f}") + " s")
print(f"results: {sys.argv[1]}")
PY
echo "PASS: cluster bench"
