#!/usr/bin/env bash
# The cross-built (ARM) agent under qemu-user against this machine's aggregator, end to end: the
# emulated agent sends a known set of readings (counter sensors) through a real Mosquitto to the
# native aggregator and the Kafka-protocol broker; kcat must find every reading exactly once and
# the agent's outbox must end empty (every batch acknowledged back to the emulated agent).
#
# Usage: qemu_agent_test.sh ARM_AGENT_BINARY
# Env:   OUTPOST_BUILD_DIR (the native build: aggregator, outpost-devkafka),
#        OUTPOST_EMULATOR (e.g. "/usr/bin/qemu-aarch64 -L /").
source "$(dirname "$0")/lib.sh"

ARM_AGENT=${1:?usage: qemu_agent_test.sh ARM_AGENT_BINARY}
: "${OUTPOST_EMULATOR:?set OUTPOST_EMULATOR to the qemu-user command}"
READINGS=${READINGS:-1000}
machine=$(readelf -h "$ARM_AGENT" | sed -n 's/^ *Machine: *//p')
[[ $machine == AArch64 || $machine == ARM ]] || fail "$ARM_AGENT is not an ARM binary ($machine)"

# lib.sh starts agents as "$AGENT_BIN" ARGS...: a one-line launcher runs the ARM binary under qemu
# (exec, so the recorded pid is qemu's and the agent gets our SIGTERM).
cat >"$WORK/agent-emulated" <<SH
#!/bin/sh
exec $OUTPOST_EMULATOR "$ARM_AGENT" "\$@"
SH
chmod +x "$WORK/agent-emulated"
AGENT_BIN="$WORK/agent-emulated"
log "emulated agent ($machine): $("$AGENT_BIN" --version)"

start_mosquitto
start_devkafka
start_aggregator
write_agent_config qemu-dev 200
start_draining_agent qemu-dev "$READINGS"
wait_agents_drained 120 qemu-dev
[[ $(outbox_rows qemu-dev) == 0 ]] || fail "the emulated agent left batches in its outbox"

kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" "qemu-dev=$(outbox_last_seq qemu-dev):$READINGS"
python3 - "$WORK/readings.jsonl" "$READINGS" <<'PY'
import collections, json, sys
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = json.loads(line)
    for r in m["readings"]:
        vals[(m["device"], r["sensor"])].append(r["value"])
n = int(sys.argv[2])
for k, v in vals.items():
    assert sorted(v) == [float(i) for i in range(len(v))], f"{k}: values are not 0..{len(v)-1} once"
assert sum(len(v) for v in vals.values()) == n, "total readings"
print(f"values OK: {len(vals)} sensor streams, each 0..k-1 exactly once")
PY
published=$(metric "$AGG_HTTP_PORT" outpost_aggregator_readings_published_total)
[[ "$published" == "$READINGS" ]] || fail "aggregator says $published readings published"
echo "PASS: qemu_agent ($machine agent under qemu-user)"
