#!/usr/bin/env bash
# Issue 15 figures (docs/benchmarks.md; notes in docs/bench-notes/latest-serving.md):
#  ab      the aggregator at max throughput (run_aggregator_bench.sh, scenario max), alternately
#          without and with 1,000 requests/s of GET /api/devices/{id}/sensors from wrk (Debian
#          `wrk` 4.1: closed loop, so the rate comes from 11 connections each waiting 10 ms between
#          requests, tests/bench/wrk_pace.lua); wrk's p50/p99 and the achieved rate are reported.
#  fixed   the same A/B at a fixed 1,000,000 readings/s (scenario fixed): does the aggregator still
#          carry the rate with the HTTP load, and what do the acks' latencies do.
#  format  max throughput with kafka.readings_format = reading vs batch (alternating runs).
#  memory  outpost-bench-latest: RSS and charged bytes per tracked sensor, update() rate.
# Usage: run_latest_bench.sh [BUILD_DIR] [--runs N] [--duration S] [--parts ab,fixed,format,memory]
#        [--out DIR]
# Every process is started and stopped by run_aggregator_bench.sh / lib.sh (by pid); wrk is bounded
# by -d, each bench by its duration.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD=${OUTPOST_BUILD_DIR:-build}
if [[ $# -gt 0 && "$1" != -* ]]; then BUILD=$1; shift; fi
RUNS=3 DURATION=15 PARTS=ab,fixed,format,memory OUT=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is missing (scripts/deps.sh)" >&2; exit 1; }
[[ -n "$OUT" ]] || OUT=$(mktemp -d)
mkdir -p "$OUT"
BUILD=$(cd "$BUILD" && pwd)
export OUTPOST_BUILD_DIR=$BUILD

# The HTTP load of the "with" runs: wait until the device has readings, then 1,000 requests/s.
WRK_CMD='for i in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$AGG_HTTP_PORT/api/devices/bench-000/sensors" && break; sleep 0.1; done
exec wrk -t1 -c11 -d"$(printf %.0f "$WINDOW_S")"s --latency -s '"$HERE"'/wrk_pace.lua "http://127.0.0.1:$AGG_HTTP_PORT/api/devices/bench-000/sensors"'

agg_run() {  # agg_run LABEL [run_aggregator_bench options...]
  local label=$1 scenario=max
  shift
  [[ "$label" == fixed-* ]] && scenario=fixed
  bash "$HERE/run_aggregator_bench.sh" "$BUILD" --scenarios "$scenario" --fixed-rate 1000000 \
    --runs 1 --duration "$DURATION" \
    --label "$label" --out "$OUT/$label" "$@" >"$OUT/$label.log" 2>&1 ||
    { echo "run $label failed: $(tail -5 "$OUT/$label.log")" >&2; exit 1; }
  cat "$OUT/$label/results.jsonl" >>"$OUT/runs.jsonl"
  if compgen -G "$OUT/$label/*.during.txt" >/dev/null; then
    python3 - "$label" "$OUT/$label"/*.during.txt >>"$OUT/wrk.jsonl" <<'PY'
import json, re, sys
label, text = sys.argv[1], open(sys.argv[2]).read()
def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]
d = {"label": label}
for p in ("50", "99"):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    d[f"p{p}_ms"] = ms(*m.groups()) if m else None
m = re.search(r"Requests/sec:\s+([\d.]+)", text)
d["requests_per_s"] = float(m.group(1)) if m else None
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
d["non_2xx"] = int(m.group(1)) if m else 0
print(json.dumps(d))
PY
  fi
  tail -n 1 "$OUT/runs.jsonl" | python3 -c "import json,sys; r=json.load(sys.stdin); print(r['run_label'], r['readings_per_s'], 'readings/s, ack p99 ms', r['latency_ms']['p99'], 'machine busy', r['machine_busy_cores'])"
}

: >"$OUT/runs.jsonl"
: >"$OUT/wrk.jsonl"
for i in $(seq 1 "$RUNS"); do
  if [[ ",$PARTS," == *,ab,* ]]; then
    agg_run "no-http-$i"
    agg_run "http-$i" --during "$WRK_CMD"
  fi
  if [[ ",$PARTS," == *,fixed,* ]]; then
    agg_run "fixed-no-http-$i"
    agg_run "fixed-http-$i" --during "$WRK_CMD"
  fi
  if [[ ",$PARTS," == *,format,* ]]; then
    agg_run "batch-$i" --agg-set kafka.readings_format=batch
    agg_run "reading-$i" --agg-set kafka.readings_format=reading
  fi
done
if [[ ",$PARTS," == *,memory,* ]]; then
  "$BUILD/tests/bench/outpost-bench-latest" --devices 1000 --sensors 10 --fill 1440 --runs 3 \
    | tee "$OUT/memory.txt"
fi
python3 - "$OUT/runs.jsonl" "$OUT/wrk.jsonl" <<'PY'
import collections, json, re, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
wrk = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
groups = collections.defaultdict(list)
for r in runs:
    groups[re.sub(r"-\d+$", "", r["run_label"])].append(r)
for g, rs in groups.items():
    v = [r["readings_per_s"] for r in rs]
    p99 = [r["latency_ms"]["p99"] for r in rs]
    print(f"{g}: median {statistics.median(v):,.0f} readings/s ({min(v):,.0f}..{max(v):,.0f}, "
          f"n={len(v)}); ack p99 median {statistics.median(p99):.1f} ms")
if wrk:
    for k in ("p50_ms", "p99_ms", "requests_per_s"):
        v = [w[k] for w in wrk if w[k] is not None]
        print(f"GET sensors {k}: median {statistics.median(v):.3f} ({min(v):.3f}..{max(v):.3f})")
    print("non-2xx responses:", sum(w["non_2xx"] for w in wrk))
PY
echo "results in $OUT"
