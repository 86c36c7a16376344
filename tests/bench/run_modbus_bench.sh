#!/usr/bin/env bash
# Modbus source figures of issue 17 (docs/benchmarks.md): what polling costs the agent, with and
# without request grouping. One Modbus TCP slave (outpost-modbus-testserver on loopback) holds 50
# uint16 registers, read as 50 sensors every 100 ms (500 readings/s), the readings going through
# the whole path (Mosquitto, outpost-aggregator, outpost-devkafka; batches acknowledged):
#
#   grouped   — the defaults: the 50 registers in 1 request per cycle;
#   ungrouped — max_registers = 1: 50 requests per cycle (what a source without grouping sends).
#
# For each, after a 3 s warm-up, over --seconds (default 20): the agent's CPU time (utime + stime
# from /proc/PID/stat, % of one core), Modbus requests/s and readings/s from its /metrics. Median
# of --runs runs (default 3).
#
# Usage: OUTPOST_BUILD_DIR=build-bench tests/bench/run_modbus_bench.sh [--seconds N] [--runs N]
#   OUTPOST_AGGREGATOR_BUILD_DIR: where outpost-aggregator and outpost-devkafka are (default
#   OUTPOST_BUILD_DIR); only the agent's figures are measured.
set -euo pipefail
SECS=20
RUNS=3
while (($#)); do
  case $1 in
    --seconds) SECS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/../integration/lib.sh"
AGG_DIR=${OUTPOST_AGGREGATOR_BUILD_DIR:-$OUTPOST_BUILD_DIR}
AGGREGATOR_BIN="$AGG_DIR/aggregator/outpost-aggregator"
DEVKAFKA_BIN="$AGG_DIR/tools/devkafka/outpost-devkafka"
SERVER_BIN="$OUTPOST_BUILD_DIR/tests/integration/outpost-modbus-testserver"
TICKS=$(getconf CLK_TCK)

start_mosquitto
start_devkafka
start_aggregator
MB_PORT=$(free_port)
"$SERVER_BIN" --tcp "$MB_PORT" --ready-file "$WORK/mb.ready" >>"$WORK/mb.log" 2>&1 &
PIDS[mb]=$!
wait_for 10 "modbus server" test -s "$WORK/mb.ready"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_one() {  # run_one VARIANT RUN: prints "cpu_percent requests_per_s readings_per_s"
  local variant=$1 run=$2 dev="mb-bench-$1-$2" http
  http=$(free_port)
  write_agent_config "$dev"
  sed -i '/^\[\[sensors\]\]/,$d' "$WORK/$dev.toml"
  {
    printf '[[sources.modbus.slaves]]\nname = "s"\nhost = "127.0.0.1"\nport = %s\n' "$MB_PORT"
    printf 'poll_interval_ms = 100\n'
    [[ $variant == ungrouped ]] && printf 'max_registers = 1\n'
    for i in $(seq 0 49); do
      printf '[[sensors]]\nname = "r%s"\nsource = "modbus"\nmodbus.slave = "s"\nmodbus.address = %s\n' "$i" "$i"
    done
  } >>"$WORK/$dev.toml"
  start_agent "$dev" --set "http.listen=127.0.0.1:$http"
  local pid=${PIDS[$dev]}
  wait_for 20 "agent $dev" curl -sf "http://127.0.0.1:$http/healthz"
  sleep 3
  local c0 q0 r0 c1 q1 r1
  c0=$(cpu_ticks "$pid")
  q0=$(metric_labeled "$http" 'outpost_agent_modbus_requests_total{slave="s"}')
  r0=$(metric_labeled "$http" 'outpost_agent_modbus_readings_total{slave="s"}')
  sleep "$SECS"
  c1=$(cpu_ticks "$pid")
  q1=$(metric_labeled "$http" 'outpost_agent_modbus_requests_total{slave="s"}')
  r1=$(metric_labeled "$http" 'outpost_agent_modbus_readings_total{slave="s"}')
  stop_proc "$dev"
  python3 -c "import sys; c,q,r,s,t=map(float,sys.argv[1:]); print(f'{100*c/t/s:.2f} {q/s:.1f} {r/s:.1f}')" \
    $((c1 - c0)) $((q1 - q0)) $((r1 - r0)) "$SECS" "$TICKS"
}

for variant in grouped ungrouped; do
  : >"$WORK/$variant.txt"
  for run in $(seq 1 "$RUNS"); do
    run_one "$variant" "$run" | tee -a "$WORK/$variant.txt" | sed "s/^/  $variant run $run: cpu% req\/s readings\/s = /"
  done
  python3 - "$variant" "$WORK/$variant.txt" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
cpu, req, rd = (statistics.median(c) for c in zip(*rows))
print(f"{sys.argv[1]}: agent CPU {cpu:.2f}% of one core (median of {len(rows)}; runs "
      f"{' '.join(f'{r[0]:.2f}' for r in rows)}), {req:.1f} Modbus requests/s, {rd:.1f} readings/s")
PY
done
