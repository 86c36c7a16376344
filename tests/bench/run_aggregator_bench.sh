#!/usr/bin/env bash
# Benchmark of the aggregator path: MQTT in -> verify -> dedup -> Kafka delivered -> ack over MQTT.
#
# For every run it starts a fresh Mosquitto, a Kafka broker (outpost-devkafka, or with --kafka real
# a real Apache Kafka broker from scripts/kafka.sh) and outpost-aggregator on free
# loopback ports (tests/integration/lib.sh; all stopped by pid on exit), runs
# outpost-bench-aggregator against them, and cross-checks that what the bench saw acked really
# reached Kafka: the aggregator's outpost_aggregator_readings_published_total must equal the
# readings the bench got accepted, and the readings topic's end offsets (kcat -Q) must have grown
# by exactly one message per batch part. Scenarios: (a) max throughput, (b) a fixed rate; each run
# N times, then the medians (and min..max) are printed. CPU per process over each measurement
# window comes from /proc/PID/stat (utime+stime), measured by the bench itself.
#
# Usage: run_aggregator_bench.sh [BUILD_DIR] [options]     (or OUTPOST_BUILD_DIR=... in the env)
#   --smoke               correctness only (the ctest bench.aggregator.smoke): 1 short paced run;
#                         additionally kcat consumes the whole topic and counts every reading
#   --runs N              runs per scenario (default 3)
#   --duration S          measured seconds per run (default 20)
#   --warmup S            unmeasured load before the window (default 3)
#   --scenarios LIST      comma list of: max, fixed (default max,fixed)
#   --fixed-rate R        readings/s of the fixed scenario (default 100000)
#   --devices N           virtual devices (default 8)
#   --batch-readings N    readings per batch (default 500)
#   --inflight K          batches per device awaiting ack (default 16)
#   --max-memory-mb MB    memory for the bench's pre-encoded batches (default 3072: max mode at
#                         500 readings/batch runs out of batches above ~2.7M readings/s over
#                         warm-up + duration; a run that hits the cap ends its window early and
#                         is flagged in the summary)
#   --agg-set KEY=VALUE   extra aggregator setting, repeatable (e.g. ingest.workers=4)
#   --label TEXT          copied into the JSON results
#   --kafka dev|real|both the Kafka broker: dev (default) outpost-devkafka, in memory; real: Apache
#                         Kafka (KRaft, one node, 6 partitions, heap KAFKA_HEAP, default 256m);
#                         both: every run once on each, interleaved, in the same invocation. The
#                         broker's CPU and its memory (RSS at the end, peak RSS) are reported
#   --metrics-off         run the aggregator with metrics.collect=false (counters, histograms and
#                         the ops layer off) to measure what metrics cost; the cross-check then
#                         relies on Kafka's end offsets and the bench's acks only
#   --out DIR             keep results.jsonl, per-run bench output and /metrics here
#   --cpu-threads         also report the busiest threads of each process
#   --no-tcp-nodelay      Nagle's algorithm left on where the bench controls it: Mosquitto without
#                         lib.sh's `set_tcp_nodelay true`, and the bench's device connections
#                         (as agents before they set TCP_NODELAY). The aggregator always sets it.
#                         Default: Nagle off on all three, as shipped (--tcp-nodelay, accepted)
#   --during CMD          run `bash -c CMD` in the background from the start of the measured window
#                         (after the warm-up) with AGG_HTTP_PORT, WINDOW_S and RUN_NAME in its
#                         environment, e.g. an HTTP load (run_latest_bench.sh); its output goes to
#                         OUT/RUN_NAME.during.txt and it is stopped by pid after the run
#   --aggregator-preload SO  diagnostics: run the aggregator with LD_PRELOAD=SO and
#                         OUTPOST_BENCH_BROKER_PORT=<Mosquitto's port>
#                         (docs/bench-notes/aggregator.md)
# Exit: 0 all runs correct; 1 a correctness check failed (details printed); 2 usage.
#
# Load is bounded: every run is bounded in time by the bench (warm-up + duration + drain) and by
# `timeout`, and in count by the bench's hard cap of pre-encoded batches.

usage() { sed -n '2,/^# Load is bounded/p' "$0" | sed 's/^# \{0,1\}//' | head -n -1; }

if [[ $# -gt 0 && "$1" != -* ]]; then
  export OUTPOST_BUILD_DIR="$1"
  shift
fi
SMOKE=0 RUNS=3 DURATION=20 WARMUP=3 SCENARIOS=max,fixed FIXED_RATE=100000 DEVICES=8
BATCH_READINGS=500 INFLIGHT=16 LABEL="" OUT="" CPU_THREADS=0 TCP_NODELAY=1 AGG_PRELOAD=""
MAX_MEMORY_MB=3072 AGG_SET=() METRICS_OFF=0 KAFKA_MODES=dev DURING=""
need() { [[ $# -ge 2 && -n "$2" ]] || { echo "option $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --runs) need "$@"; RUNS=$2; shift 2 ;;
    --duration) need "$@"; DURATION=$2; shift 2 ;;
    --warmup) need "$@"; WARMUP=$2; shift 2 ;;
    --scenarios) need "$@"; SCENARIOS=$2; shift 2 ;;
    --fixed-rate) need "$@"; FIXED_RATE=$2; shift 2 ;;
    --devices) need "$@"; DEVICES=$2; shift 2 ;;
    --batch-readings) need "$@"; BATCH_READINGS=$2; shift 2 ;;
    --inflight) need "$@"; INFLIGHT=$2; shift 2 ;;
    --max-memory-mb) need "$@"; MAX_MEMORY_MB=$2; shift 2 ;;
    --agg-set) need "$@"; AGG_SET+=(--set "$2"); shift 2 ;;
    --label) need "$@"; LABEL=$2; shift 2 ;;
    --kafka)
      need "$@"
      case $2 in
        dev | real) KAFKA_MODES=$2 ;;
        both) KAFKA_MODES="dev real" ;;
        *) echo "--kafka '$2': allowed are dev, real and both" >&2; exit 2 ;;
      esac
      shift 2
      ;;
    --metrics-off) METRICS_OFF=1; AGG_SET+=(--set metrics.collect=false); shift ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    --cpu-threads) CPU_THREADS=1; shift ;;
    --tcp-nodelay) TCP_NODELAY=1; shift ;;
    --no-tcp-nodelay) TCP_NODELAY=0; shift ;;
    --aggregator-preload) need "$@"; AGG_PRELOAD=$2; shift 2 ;;
    --during) need "$@"; DURING=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in RUNS DEVICES BATCH_READINGS INFLIGHT FIXED_RATE MAX_MEMORY_MB; do
  if ! [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]]; then
    echo "$v must be a positive integer" >&2
    exit 2
  fi
done
for v in DURATION WARMUP; do
  [[ "${!v}" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "$v must be a number of seconds" >&2; exit 2; }
done
for s in ${SCENARIOS//,/ }; do
  [[ "$s" == max || "$s" == fixed ]] || { echo "unknown scenario '$s' (max, fixed)" >&2; exit 2; }
done
if [[ $SMOKE == 1 ]]; then
  RUNS=1 DURATION=2 WARMUP=0.5 SCENARIOS=fixed FIXED_RATE=5000 DEVICES=2 BATCH_READINGS=100
  INFLIGHT=8
fi
# Mosquitto (lib.sh's config) queues at most 10000 QoS 1 messages per client and has 100 in
# flight to it: the bench never has more than devices x inflight batches outstanding, so the
# aggregator's subscription can never overflow the queue as long as this holds.
if ((DEVICES * INFLIGHT > 9000)); then
  echo "devices x inflight = $((DEVICES * INFLIGHT)) could overflow Mosquitto's queue for the" \
    "aggregator (max_queued_messages 10000): lower --devices or --inflight" >&2
  exit 2
fi

source "$(dirname "$0")/../integration/lib.sh"
BENCH_BIN="$OUTPOST_BUILD_DIR/tests/bench/outpost-bench-aggregator"
for bin in "$BENCH_BIN" "$AGGREGATOR_BIN" "$DEVKAFKA_BIN"; do
  [[ -x "$bin" ]] || fail "$bin is missing: build it first"
done
command -v kcat >/dev/null || fail "kcat is missing (apt-get install kcat)"
command -v mosquitto >/dev/null || fail "mosquitto is missing (apt-get install mosquitto)"
if [[ -n "$OUT" ]]; then mkdir -p "$OUT"; else OUT="$WORK/out"; mkdir -p "$OUT"; fi
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

# Kafka messages per batch: the aggregator splits a batch into parts of readings_per_message.
PER_MESSAGE=1000
for ((i = 1; i < ${#AGG_SET[@]}; i += 2)); do
  [[ "${AGG_SET[$i]}" == kafka.readings_per_message=* ]] && PER_MESSAGE=${AGG_SET[$i]#*=}
  [[ "${AGG_SET[$i]}" == kafka.readings_format=reading ]] && READING_FORMAT=1
done
[[ "${READING_FORMAT:-0}" == 1 ]] && PER_MESSAGE=1  # one flat record per reading
PARTS=$(((BATCH_READINGS + PER_MESSAGE - 1) / PER_MESSAGE))

# Sum of the end offsets of every partition of a topic (messages ever appended; the dev broker
# drops old message sets, but end offsets keep counting).
kafka_end_offsets() {
  local topic=$1 args=() p
  for ((p = 0; p < TOPIC_PARTITIONS; p++)); do args+=(-t "$topic:$p:-1"); done
  timeout 30 kcat -b "$KAFKA" -Q "${args[@]}" 2>"$WORK/kcat.err" |
    awk '/offset/ {s += $NF; n++} END {if (n == 0) exit 1; print s}' ||
    fail "kcat -Q could not read the end offsets of $topic: $(cat "$WORK/kcat.err")"
}

# Mosquitto for the bench: lib.sh's config (same queue limits, see above; `set_tcp_nodelay true`).
# With --no-tcp-nodelay, restarted without that line: Mosquitto's default is Nagle on, and a small
# ack written soon after another small packet then waits for the peer's delayed ACK, 40 ms or more
# (docs/bench-notes/aggregator.md, "What the first campaign found").
start_bench_mosquitto() {
  start_mosquitto
  grep -qx 'set_tcp_nodelay true' "$WORK/mosquitto.conf" ||
    fail "lib.sh's mosquitto.conf no longer sets set_tcp_nodelay true: update this script"
  [[ $TCP_NODELAY == 0 ]] || return 0
  stop_proc mosquitto
  sed -i '/^set_tcp_nodelay /d' "$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
  PIDS[mosquitto]=$!
  wait_for 10 "mosquitto on $MQTT_PORT" port_open "$MQTT_PORT"
  log "mosquitto restarted without set_tcp_nodelay (Nagle on; pid ${PIDS[mosquitto]})"
}

# run_one NAME RATE KAFKA_MODE: one run on a fresh stack; appends the bench's JSON (+ checks) to
# $RESULTS.
run_one() {
  local name=$1 rate=$2 broker
  KAFKA_MODE=$3
  start_bench_mosquitto
  if [[ $KAFKA_MODE == real ]]; then
    rm -rf "$WORK/kafka"  # a fresh broker for every run
    start_real_kafka
    broker=kafka
    TOPIC_PARTITIONS=${KAFKA_PARTITIONS:-6}
  else
    start_devkafka
    broker=devkafka
    TOPIC_PARTITIONS=${KAFKA_PARTITIONS:-4}
  fi
  rm -f "$WORK"/dedup.db*
  AGG_HTTP_PORT=$(free_port)
  if [[ -n "$AGG_PRELOAD" ]]; then
    LD_PRELOAD="$AGG_PRELOAD" OUTPOST_BENCH_BROKER_PORT="$MQTT_PORT" \
      start_aggregator --set log_level=warn "${AGG_SET[@]}"
  else
    start_aggregator --set log_level=warn "${AGG_SET[@]}"
  fi
  local pub0 off0
  pub0=$(metric "$AGG_HTTP_PORT" outpost_aggregator_readings_published_total)
  off0=$(kafka_end_offsets outpost.readings)
  local args=(--broker "$MQTT_URI" --rate "$rate" --duration "$DURATION" --warmup "$WARMUP"
    --devices "$DEVICES" --batch-readings "$BATCH_READINGS" --inflight "$INFLIGHT"
    --max-memory-mb "$MAX_MEMORY_MB"
    --label "$name" --cpu-pid "mosquitto=${PIDS[mosquitto]}" --cpu-pid "$broker=${PIDS[$broker]}"
    --cpu-pid "aggregator=${PIDS[aggregator]}")
  [[ $CPU_THREADS == 1 ]] && args+=(--cpu-threads)
  [[ $TCP_NODELAY == 0 ]] && args+=(--no-tcp-nodelay)
  log "run $name: load $(cut -d' ' -f1-3 /proc/loadavg); outpost-bench-aggregator ${args[*]}"
  local rc=0 limit
  limit=$(python3 -c "print(int($WARMUP + $DURATION + 90))")
  if [[ -n "$DURING" ]]; then
    (sleep "$WARMUP" && AGG_HTTP_PORT=$AGG_HTTP_PORT WINDOW_S=$DURATION RUN_NAME=$name \
      exec bash -c "$DURING") >"$OUT/$name.during.txt" 2>&1 &
    PIDS[during]=$!
  fi
  timeout "$limit" "$BENCH_BIN" "${args[@]}" >"$OUT/$name.txt" 2>&1 || rc=$?
  if [[ -n "$DURING" ]]; then
    stop_proc during
  fi
  sed -n '/^=== /,/^RESULT/p' "$OUT/$name.txt"
  local json
  json=$(tail -n 1 "$OUT/$name.txt")
  [[ "$json" == "{"* ]] ||
    fail "bench run $name produced no JSON (exit $rc): $(tail -n 5 "$OUT/$name.txt")"
  curl -sf "http://127.0.0.1:$AGG_HTTP_PORT/metrics" >"$OUT/$name.metrics.txt" || true
  local pub1 off1 mem
  pub1=$(metric "$AGG_HTTP_PORT" outpost_aggregator_readings_published_total)
  off1=$(kafka_end_offsets outpost.readings)
  # The broker's memory: resident now and at its peak (kB, /proc/PID/status).
  mem=$(awk '/^VmRSS|^VmHWM/ {v[$1] = $2} END {print v["VmRSS:"] + 0, v["VmHWM:"] + 0}' \
    "/proc/${PIDS[$broker]}/status")

  # Cross-check against Kafka and the aggregator; any mismatch is a correctness failure.
  if ! python3 - "$json" "$((pub1 - pub0))" "$((off1 - off0))" "$PARTS" "$rc" "$RESULTS" \
    "$OUT/$name.metrics.txt" "$LABEL" "$METRICS_OFF" "$KAFKA_MODE" $mem <<'PY'
import json, sys
r = json.loads(sys.argv[1])
r["kafka"] = sys.argv[10]
r["broker_rss_mb"] = round(int(sys.argv[11]) / 1024, 1)
r["broker_peak_rss_mb"] = round(int(sys.argv[12]) / 1024, 1)
published, messages, parts, rc = (int(x) for x in sys.argv[2:6])
results, metrics_file, label = sys.argv[6], sys.argv[7], sys.argv[8]
metrics_off = sys.argv[9] == "1"  # the aggregator's counters stay 0: only Kafka and acks count
r["metrics_collect"] = not metrics_off
problems = list(r["errors"])
if rc != 0 and not problems:
    problems.append(f"bench exited with {rc}")
if not metrics_off and published != r["readings_accepted"]:
    problems.append(f"aggregator published {published} readings, "
                    f"bench got {r['readings_accepted']} accepted")
if messages != r["batches_accepted"] * parts:
    problems.append(f"readings topic grew by {messages} messages, expected "
                    f"{r['batches_accepted']} batches x {parts} parts")
# Aggregator-internal latency (receive -> ack handed to Paho), mean from its histogram over the
# whole run: warm-up included, where the first batches wait for the producer's metadata.
agg = {}
for line in open(metrics_file, errors="replace"):
    if line.startswith("outpost_aggregator_batch_latency_seconds_sum"):
        agg["sum"] = float(line.split()[-1])
    elif line.startswith("outpost_aggregator_batch_latency_seconds_count"):
        agg["count"] = float(line.split()[-1])
    elif line.startswith("outpost_aggregator_kafka_queue_full_total"):
        r["kafka_queue_full"] = float(line.split()[-1])
    elif line.startswith("outpost_aggregator_ack_publish_failures_total"):
        r["ack_publish_failures"] = int(float(line.split()[-1]))
if metrics_off:
    pass
elif "ack_publish_failures" not in r:
    problems.append("the aggregator's /metrics has no outpost_aggregator_ack_publish_failures_total")
elif r["ack_publish_failures"]:
    problems.append(f"the aggregator failed to publish {r['ack_publish_failures']} acks "
                    "(outpost_aggregator_ack_publish_failures_total; its debug log says why)")
if agg.get("count"):
    r["agg_internal_mean_ms"] = round(1000 * agg["sum"] / agg["count"], 3)
r["kafka_messages"] = messages
r["aggregator_published_readings"] = published
r["run_label"] = label
r["check_ok"] = not problems
r["check_problems"] = problems
with open(results, "a") as f:
    f.write(json.dumps(r) + "\n")
print(f"cross-check: aggregator published {published} readings, readings topic +{messages} "
      f"messages; bench accepted {r['readings_accepted']} readings in {r['batches_accepted']} "
      f"batches -> {'OK' if not problems else 'MISMATCH'}")
for p in problems:
    print(f"  PROBLEM: {p}")
sys.exit(1 if problems else 0)
PY
  then
    fail "correctness problem in run $name (bench output: $OUT/$name.txt); stopping"
  fi
  if [[ $SMOKE == 1 ]]; then
    smoke_count_readings "$json" || fail "kcat does not find exactly the readings sent"
  fi
  stop_proc aggregator
  stop_proc "$broker"
  stop_proc mosquitto
}

# Smoke only: an outside client reads the whole topic back; every reading of this run's epoch
# must be there exactly once.
smoke_count_readings() {
  kafka_dump outpost.readings "$WORK/readings.jsonl"
  python3 - "$1" "$WORK/readings.jsonl" <<'PY'
import collections, json, sys
r = json.loads(sys.argv[1])
seen = collections.Counter()
readings = 0
for line in open(sys.argv[2]):
    m = json.loads(line)
    if m["epoch"] != r["epoch"]:
        continue
    seen[(m["device"], m["seq"], m["part"])] += 1
    readings += len(m["readings"])
dups = [k for k, n in seen.items() if n > 1]
assert not dups, f"duplicated on Kafka: {dups[:5]}"
assert readings == r["readings_sent"] == r["readings_accepted"], \
    (f"kcat found {readings} readings, bench sent {r['readings_sent']}, "
     f"accepted {r['readings_accepted']}")
print(f"kcat: {readings} readings in {len(seen)} messages, each exactly once = readings sent")
PY
}

for scenario in ${SCENARIOS//,/ }; do
  rate=0
  [[ $scenario == fixed ]] && rate=$FIXED_RATE
  for ((i = 1; i <= RUNS; i++)); do
    for mode in $KAFKA_MODES; do
      if [[ "$KAFKA_MODES" == dev ]]; then
        run_one "$scenario-$i" "$rate" dev
      else
        run_one "$scenario-$mode-$i" "$rate" "$mode"
      fi
    done
  done
done

# Medians (and min..max) per scenario; exit 1 if any run failed a correctness check.
if ! python3 - "$RESULTS" <<'PY'
import collections, json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for r in runs:
    by[r["label"].rsplit("-", 1)[0]].append(r)
def fig(rs, get, fmt):
    v = sorted(get(r) for r in rs)
    return f"{fmt(statistics.median(v))} ({fmt(v[0])}..{fmt(v[-1])})" if len(v) > 1 else fmt(v[0])
print("\n=== medians over runs (min..max) ===")
for name, rs in by.items():
    r0 = rs[0]
    target = "max" if r0["mode"] == "max" else f"{int(r0['rate_target']):,}/s"
    print(f"{name}: target {target}, {len(rs)} run(s), {r0['devices']} devices, "
          f"{r0['batch_readings']} readings/batch, inflight {r0['inflight']}")
    print("  readings acked/s : " + fig(rs, lambda r: r["readings_per_s"], lambda x: f"{x:,.0f}"))
    for p in ("p50", "p90", "p99", "max"):
        print(f"  round trip {p:<5} : "
              + fig(rs, lambda r: r["latency_ms"][p], lambda x: f"{x:.2f} ms"))
    for proc in r0["cpu_cores"]:
        print(f"  cpu {proc:<13}: "
              + fig(rs, lambda r: r["cpu_cores"][proc] or 0, lambda x: f"{x:.2f}"))
    print("  cpu others       : " + fig(rs, lambda r: r["others_cores"], lambda x: f"{x:.2f}"))
    print(f"  broker ({r0['kafka']:<4})    : RSS at end "
          + fig(rs, lambda r: r["broker_rss_mb"], lambda x: f"{x:.0f} MB")
          + ", peak " + fig(rs, lambda r: r["broker_peak_rss_mb"], lambda x: f"{x:.0f} MB"))
    # Busiest threads: per run, each process's threads grouped by name (several share one, e.g.
    # the aggregator's workers), busiest first; medians over runs of the k-th busiest of a name.
    if all("cpu_threads" in r for r in rs):
        for proc in r0["cpu_threads"]:
            per = collections.defaultdict(list)
            for r in rs:
                names = collections.defaultdict(list)
                for t in r["cpu_threads"].get(proc, []):
                    names[t["name"]].append(t["cores"])
                for n, v in names.items():
                    for k, c in enumerate(sorted(v, reverse=True)):
                        per[f"{n}#{k + 1}" if len(v) > 1 or k else n].append(c)
            shown = sorted(((statistics.median(v + [0] * (len(rs) - len(v))), k)
                            for k, v in per.items()), reverse=True)
            line = ", ".join(f"{k} {m:.2f}" for m, k in shown if m >= 0.01)
            print(f"    {proc} threads : {line or '(none above 0.01)'}")
    print("  batches acked    : " + ", ".join(str(r["batches_accepted"]) for r in rs)
          + "; never acked: " + ", ".join(str(r["batches_unacked"]) for r in rs))
    print("  cross-check      : Kafka messages " + ", ".join(str(r["kafka_messages"]) for r in rs)
          + "; aggregator published readings = accepted: "
          + ", ".join("yes" if r["aggregator_published_readings"] == r["readings_accepted"]
                      else "NO" for r in rs)
          + "; ack publish failures " + ", ".join(str(r.get("ack_publish_failures")) for r in rs))
    capped = [r["label"] for r in rs if r["hard_cap_hit"]]
    if capped:
        print(f"  WARNING: {', '.join(capped)} ran out of pre-encoded batches: the window ended "
              "early (raise --max-memory-mb)")
bad = [r for r in runs if not r["check_ok"]]
for r in bad:
    print(f"CORRECTNESS FAILURE in {r['label']}: {r['check_problems']}")
print(f"results: {sys.argv[1]}")
sys.exit(1 if bad else 0)
PY
then
  fail "correctness check failed (see above)"
fi
echo "PASS: aggregator bench${LABEL:+ ($LABEL)}"
