#!/usr/bin/env bash
# Dashboard figures with 10,000 devices known: time to first render and update latency, measured
# in headless Chromium (tests/dashboard/dashboard_check.mjs) against outpost-bench-dashboard (the
# aggregator's own dashboard and device API over a seeded registry and a synthetic load).
#
# Usage: run_dashboard_bench.sh [BUILD_DIR] [--runs N] [--devices N] [--measure S]
#                               [--screenshot FILE]
# Prints one JSON line per run, then the medians. Every process it starts is stopped by pid;
# bounded by the bench's --duration and the check's own timeout.
set -euo pipefail
BUILD=${OUTPOST_BUILD_DIR:-build}
if [[ $# -gt 0 && "$1" != -* ]]; then BUILD=$1; shift; fi
RUNS=5 DEVICES=10000 MEASURE=10 SHOT=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --devices) DEVICES=$2; shift 2 ;;
    --measure) MEASURE=$2; shift 2 ;;
    --screenshot) SHOT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK=$(mktemp -d)
BENCH_PID=""
cleanup() {
  [[ -n "$BENCH_PID" ]] && kill "$BENCH_PID" 2>/dev/null && wait "$BENCH_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BUILD/tests/bench/outpost-bench-dashboard" --devices "$DEVICES" --port-file "$WORK/port" \
  --duration $((RUNS * (MEASURE + 30) + 60)) 2>"$WORK/bench.log" &
BENCH_PID=$!
for _ in $(seq 1 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
[[ -s "$WORK/port" ]] || { cat "$WORK/bench.log" >&2; exit 1; }
URL="http://127.0.0.1:$(cat "$WORK/port")/"
echo "outpost-bench-dashboard pid $BENCH_PID on $URL, $DEVICES devices; load: $(cut -d' ' -f1-3 /proc/loadavg)"

for run in $(seq 1 "$RUNS"); do
  extra=()
  [[ -n "$SHOT" && $run == "$RUNS" ]] && extra=(--screenshot "$SHOT")
  node --experimental-websocket "$HERE/../dashboard/dashboard_check.mjs" --url "$URL" \
    --min-devices "$DEVICES" --measure "$MEASURE" --timeout 60 "${extra[@]}" | tee -a "$WORK/runs.jsonl"
done
python3 - "$WORK/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = [r for r in runs if r.get("ok")]
if len(ok) != len(runs):
    print("some runs failed", file=sys.stderr); sys.exit(1)
med = lambda xs: statistics.median(xs)
print(json.dumps({
  "runs": len(ok),
  "first_render_ms_median": med([r["firstRenderMs"] for r in ok]),
  "first_render_ms_range": [min(r["firstRenderMs"] for r in ok), max(r["firstRenderMs"] for r in ok)],
  "update_age_ms_median": med([r["measure"]["updateAgeMs"]["median"] for r in ok]),
  "update_age_ms_p95_median": med([r["measure"]["updateAgeMs"]["p95"] for r in ok]),
  "render_ms_median": med([r["measure"]["renderMs"]["median"] for r in ok]),
  "render_ms_p95_median": med([r["measure"]["renderMs"]["p95"] for r in ok]),
  "devices_page_ms_median": med([r["measure"]["devicesPageMs"]["median"] for r in ok]),
  "devices_search_ms_median": med([r["measure"]["devicesSearchMs"]["median"] for r in ok]),
}))
PY
