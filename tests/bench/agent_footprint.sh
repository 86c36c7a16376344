#!/usr/bin/env bash
# Footprint of the cross-built agent: stripped binary size (exact) and resident memory under
# qemu-user (indicative: VmHWM of the qemu process = the agent's pages + qemu's translator and
# code cache, so the real board uses less). Each run: the agent under qemu sends counter readings
# (2 sensors at RATE Hz) through a real Mosquitto to the native aggregator and outpost-devkafka for
# SECONDS, then VmHWM is read from /proc and the agent is stopped with SIGTERM. The same is done with
# the native agent for comparison. Prints the median of RUNS runs.
#
# Usage: tests/bench/agent_footprint.sh ARM_BUILD_DIR [RUNS] [SECONDS] [RATE]
# Env:   OUTPOST_BUILD_DIR (native build, default build), QEMU (default: from the ELF machine)
# Exits 1 if the stripped agent is larger than 3 MiB (the target in docs/benchmarks.md).
set -euo pipefail
arm_build=$(cd "${1:?usage: agent_footprint.sh ARM_BUILD_DIR [RUNS] [SECONDS] [RATE]}" && pwd)
RUNS=${2:-3} SECS=${3:-10} RATE=${4:-200}
export OUTPOST_BUILD_DIR=${OUTPOST_BUILD_DIR:-build}
source "$(dirname "$0")/../integration/lib.sh"

arm_agent=$arm_build/agent/outpost-agent
machine=$(readelf -h "$arm_agent" | sed -n 's/^ *Machine: *//p')
case "$machine" in
  AArch64) qemu=${QEMU:-qemu-aarch64}; strip_tool=aarch64-linux-gnu-strip ;;
  ARM) qemu=${QEMU:-qemu-arm}; strip_tool=arm-linux-gnueabihf-strip ;;
  *) fail "$arm_agent is not an ARM binary ($machine)" ;;
esac
# A sysroot build (scripts/cross-sysroot.sh) runs with the sysroot's loader and libraries.
qemu_prefix=$(sed -n 's/^OUTPOST_SYSROOT:[A-Z]*=//p' "$arm_build/CMakeCache.txt")
qemu_prefix=${qemu_prefix:-/}
"$strip_tool" -o "$WORK/agent.stripped" "$arm_agent"
size=$(stat -c %s "$WORK/agent.stripped")
limit=$((3 * 1024 * 1024))
echo "stripped $machine agent: $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.2f", s/1048576}') MiB; target <= $limit bytes)"

start_mosquitto
start_devkafka
start_aggregator

run_once() {  # run_once NAME COMMAND...: prints VmHWM in kB after SECS seconds
  local name=$1
  shift
  write_agent_config "$name" "$RATE"
  "$@" --config "$WORK/$name.toml" >>"$WORK/$name.log" 2>&1 &
  PIDS[$name]=$!
  sleep "$SECS"
  kill -0 "${PIDS[$name]}" 2>/dev/null || fail "$name exited early"
  awk '/^VmHWM:/ {print $2}' "/proc/${PIDS[$name]}/status"
  stop_proc "$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for i in $(seq 1 "$RUNS"); do run_once "arm-$i" "$qemu" -L "$qemu_prefix" "$arm_agent"; done >"$WORK/arm.kb"
for i in $(seq 1 "$RUNS"); do run_once "native-$i" "$AGENT_BIN"; done >"$WORK/native.kb"
echo "VmHWM, $machine agent under $qemu ($RUNS runs of ${SECS} s, 2 sensors at $RATE Hz): median $(median <"$WORK/arm.kb") kB (runs: $(tr '\n' ' ' <"$WORK/arm.kb"))"
echo "VmHWM, native agent, same load: median $(median <"$WORK/native.kb") kB (runs: $(tr '\n' ' ' <"$WORK/native.kb"))"
((size <= limit)) || fail "stripped agent is $size bytes, above the $limit-byte target"
