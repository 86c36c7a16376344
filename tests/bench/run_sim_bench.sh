#!/usr/bin/env bash
# Benchmark of outpost-sim (docs/benchmarks.md, "Simulator"). Three figures, each the median of
# --runs runs (min..max also printed):
#   generate  readings/s the fleet model generates, no output (fleet -o none --speed max;
#             100 devices x 7 sensors, per-kind default rates, 2 simulated hours)
#   publish   readings/s and batches/s published over MQTT and acknowledged, at maximum speed
#             (100 devices x 7 sensors, 5 s batches, 30 simulated minutes)
#   devices   virtual devices one process sustains at 1 batch/s each in real time (4 sensors at
#             1 Hz, so 4 readings per batch), for each --devices N. Two verdicts per run:
#             "strict" = every batch acked, nothing resent or dropped, pacing never more than 1 s
#             behind; "99%" = at least 99 % of the N x duration batches acked, 99 % of the acks
#             within 2 s of the send (ack p99 <= 2 s) and pacing never more than 1 s behind (a
#             broker that drops a QoS 1 message for a slow subscriber costs a few acks until the
#             resend, which comes only after --ack-timeout 30 s)
# MQTT runs use a fresh Mosquitto (tests/integration/lib.sh) and, by default,
# `outpost-sim ack-responder` as the ack side: it verifies every batch and acks it, and does NOT
# deduplicate or write to Kafka, so those figures are the simulator's and the broker's. With
# --ack-side aggregator the real outpost-aggregator (dedup store, detectors, Kafka on
# outpost-devkafka) acks instead. Each `devices` run prints the CPU of every process (fleet,
# mosquitto, ack side, devkafka) as ms and as % of one core over the run.
#
# Usage: run_sim_bench.sh [BUILD_DIR] [options]     (or OUTPOST_BUILD_DIR=... in the env)
#   --smoke            correctness only (ctest bench.sim.smoke): one small run of each, asserting
#                      every batch acked; no figures
#   --runs N           runs per scenario (default 3)
#   --scenarios LIST   comma list of generate, publish, devices (default all)
#   --devices LIST     device counts for `devices` (default 1000,2000,5000,10000)
#   --duration S       real seconds of each `devices` run (default 30)
#   --ack-qos Q        QoS of acks (ack-responder publish and the fleet's subscription; default 1)
#   --ack-side S       responder (outpost-sim ack-responder, default) or aggregator
# Exit: 0 all runs correct (a device count that is not sustained is a result, not an error);
# 1 a run failed; 2 usage.
set -euo pipefail
usage() { sed -n '2,/^# Exit:/p' "$0" | sed 's/^# \{0,1\}//'; }
if [[ $# -gt 0 && "$1" != -* ]]; then
  export OUTPOST_BUILD_DIR="$1"
  shift
fi
SMOKE=0 RUNS=3 SCENARIOS=generate,publish,devices DEVICES=1000,2000,5000,10000 DURATION=30 ACK_QOS=1 ACK_SIDE=responder
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --runs) RUNS=${2:?}; shift 2 ;;
    --scenarios) SCENARIOS=${2:?}; shift 2 ;;
    --devices) DEVICES=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --ack-qos) ACK_QOS=${2:?}; shift 2 ;;
    --ack-side) ACK_SIDE=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/../integration/lib.sh"
SIM="$OUTPOST_BUILD_DIR/simulators/outpost-sim"
if [[ $SMOKE == 1 ]]; then RUNS=1 DEVICES=200 DURATION=5; fi

field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }
median() { python3 -c 'import statistics,sys; v=sorted(float(x) for x in sys.argv[1:]); print(f"{statistics.median(v):.0f} (min {v[0]:.0f}, max {v[-1]:.0f})")' "$@"; }

start_acker() {
  "$SIM" ack-responder -b "$MQTT_URI" --ack-qos "$ACK_QOS" -q 2>"$WORK/acker.log" &
  PIDS[acker]=$!
  wait_for 10 "ack-responder" grep -q "acking" "$WORK/acker.log"
}
start_ack_side() {
  if [[ $ACK_SIDE == aggregator ]]; then
    stop_proc devkafka  # fresh Kafka and dedup store per run: no recovery work at start-up
    start_devkafka
    rm -f "$WORK/dedup.db"*
    unset AGG_HTTP_PORT
    start_aggregator
    PIDS[acker]=${PIDS[aggregator]}
  else
    start_acker
  fi
}
fresh_broker() {
  stop_proc acker
  unset "PIDS[aggregator]"
  stop_proc mosquitto
  start_mosquitto
  start_ack_side
}
[[ $ACK_SIDE == responder || $ACK_SIDE == aggregator ]] || { echo "--ack-side: responder or aggregator" >&2; exit 2; }
machine() { echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }  # utime + stime

has() { [[ ",$SCENARIOS," == *",$1,"* ]]; }

if has generate; then
  vals=()
  for r in $(seq 1 "$RUNS"); do
    dur=2h; [[ $SMOKE == 1 ]] && dur=10m
    "$SIM" fleet -n 100 --duration "$dur" --speed max -o none -q --start 2024-05-01 \
      --summary-json "$WORK/gen.json" 2>/dev/null
    vals+=("$(field "$WORK/gen.json" readings_per_s)")
    log "generate run $r: ${vals[-1]} readings/s ($(machine))"
  done
  echo "RESULT generate: readings/s $(median "${vals[@]}")"
fi

if has publish; then
  vals=() bvals=()
  for r in $(seq 1 "$RUNS"); do
    fresh_broker
    dur=30m; [[ $SMOKE == 1 ]] && dur=2m
    "$SIM" fleet -n 100 --duration "$dur" --interval 5s --speed max -o mqtt -b "$MQTT_URI" \
      --ack-qos "$ACK_QOS" -q --summary-json "$WORK/pub.json" 2>"$WORK/pub.log"
    [[ $(field "$WORK/pub.json" 'batches_acked == batches_sent and batches_unacked == 0') == True ]] ||
      fail "publish run $r: not every batch acked: $(cat "$WORK/pub.json")"
    vals+=("$(field "$WORK/pub.json" 'readings_acked / elapsed_s')")
    bvals+=("$(field "$WORK/pub.json" 'batches_acked / elapsed_s')")
    log "publish run $r: ${vals[-1]} readings/s, ${bvals[-1]} batches/s acked ($(machine))"
  done
  echo "RESULT publish: readings/s $(median "${vals[@]}"); batches/s $(median "${bvals[@]}")"
fi

if has devices; then
  IFS=, read -ra counts <<<"$DEVICES"
  for n in "${counts[@]}"; do
    ok=0 ok99=0 acked=() p99=() lag=() cpu_per_batch=()
    for r in $(seq 1 "$RUNS"); do
      fresh_broker
      m0=$(cpu_ticks "${PIDS[mosquitto]}") a0=$(cpu_ticks "${PIDS[acker]}") k0=$(cpu_ticks "${PIDS[devkafka]:-0}")
      t0=$(date +%s%N)
      timeout $((DURATION + 120)) "$SIM" fleet -n "$n" --sensors 4 --rate 1 --interval 1s --speed 1 \
        --duration "${DURATION}s" -o mqtt -b "$MQTT_URI" --ack-qos "$ACK_QOS" --ack-timeout 30s \
        --drain-timeout 20s -q --summary-json "$WORK/dev.json" 2>"$WORK/dev.log" ||
        fail "devices $n run $r: fleet failed: $(tail -5 "$WORK/dev.log")"
      hz=$(getconf CLK_TCK)
      mcpu=$(( ($(cpu_ticks "${PIDS[mosquitto]}") - m0) * 1000 / hz )) acpu=$(( ($(cpu_ticks "${PIDS[acker]}") - a0) * 1000 / hz ))
      kcpu=$(( ($(cpu_ticks "${PIDS[devkafka]:-0}") - k0) * 1000 / hz ))
      wall_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
      fcpu=$(field "$WORK/dev.json" 'round(cpu_s * 1000)')
      pct() { echo "$(( $1 * 100 / wall_ms ))%"; }
      log "devices $n run $r: CPU % of one core over ${wall_ms} ms: fleet $(pct "$fcpu"), mosquitto $(pct "$mcpu"), $ACK_SIDE $(pct "$acpu")$([[ $ACK_SIDE == aggregator ]] && echo ", devkafka $(pct "$kcpu")")"
      cpu_per_batch+=("$(field "$WORK/dev.json" 'cpu_s * 1e6 / max(1, batches_sent + batches_resent)')")
      log "devices $n run $r: CPU ms: fleet $fcpu, mosquitto $mcpu, $ACK_SIDE $acpu$([[ $ACK_SIDE == aggregator ]] && echo ", devkafka $kcpu")"
      s=$(field "$WORK/dev.json" 'batches_acked == batches_sent and batches_unacked == 0 and batches_resent == 0 and batches_dropped == 0 and max_lag_ms < 1000')
      [[ $s == True ]] && ok=$((ok + 1))
      s99=$(field "$WORK/dev.json" "batches_acked >= 0.99 * $n * $DURATION and ack_latency_ms['p99'] <= 2000 and max_lag_ms < 1000")
      [[ $s99 == True ]] && ok99=$((ok99 + 1))
      acked+=("$(field "$WORK/dev.json" 'batches_acked / simulated_s')")
      p99+=("$(field "$WORK/dev.json" 'ack_latency_ms["p99"]')")
      lag+=("$(field "$WORK/dev.json" 'max_lag_ms')")
      log "devices $n run $r: strict=$s 99%=$s99 $(field "$WORK/dev.json" '"sent %d acked %d resent %d unacked %d, p50 %.1f ms p99 %.1f ms, lag %.0f ms" % (batches_sent, batches_acked, batches_resent, batches_unacked, ack_latency_ms["p50"], ack_latency_ms["p99"], max_lag_ms)') ($(machine))"
      if [[ $SMOKE == 1 && $s != True ]]; then fail "smoke: $n devices not sustained: $(cat "$WORK/dev.json")"; fi
    done
    echo "RESULT devices $n ($ACK_SIDE): sustained in $ok/$RUNS runs (strict), $ok99/$RUNS (>= 99 % acked); acked batches/s $(median "${acked[@]}"); ack p99 ms $(median "${p99[@]}"); max lag ms $(median "${lag[@]}"); fleet CPU us per batch published $(median "${cpu_per_batch[@]}")"
  done
fi
echo "PASS: sim bench"
