#!/usr/bin/env bash
# Malformed batches published with mosquitto_pub end up on outpost.deadletter with a reason; a
# well-formed batch that claims another device is dead-lettered and acked as rejected to the
# device it came from; the aggregator keeps serving.
source "$(dirname "$0")/lib.sh"

start_mosquitto
start_kafka
start_aggregator --set verify.max_batch_bytes=65536

# A real batch, made by a real agent whose broker is unreachable (it stays in the outbox).
write_agent_config dev-real 200
timeout 5 "$AGENT_BIN" --config "$WORK/dev-real.toml" --set uplink.mqtt.broker=tcp://127.0.0.1:1 \
  --max-readings 50 --set batch.linger_ms=50 >"$WORK/dev-real.log" 2>&1 || true
sqlite3 "$WORK/dev-real.outbox.db" "SELECT writefile('$WORK/real.bin', payload) FROM batches ORDER BY seq LIMIT 1" >/dev/null
[[ -s "$WORK/real.bin" ]] || fail "no batch in the agent's outbox"

mosquitto_sub -p "$MQTT_PORT" -t 'outpost/v1/dev-other/ack' -C 1 -W 20 >"$WORK/ack.bin" 2>"$WORK/sub.err" &
sub_pid=$!
PIDS[sub]=$sub_pid
sleep 0.5

pub() { mosquitto_pub -p "$MQTT_PORT" -q 1 -t "outpost/v1/$1/batch" "${@:2}"; }
pub dev-junk -m 'garbage'                                   # 7 bytes: too_small
pub dev-junk -n                                             # empty: too_small
pub dev-junk -m 'this is certainly not a flatbuffer batch'  # bad_identifier
head -c 100000 /dev/urandom >"$WORK/big.bin"
pub dev-junk -f "$WORK/big.bin"                             # too_large
python3 - "$WORK/real.bin" "$WORK/trunc.bin" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(data[:len(data) // 2])
PY
pub dev-junk -f "$WORK/trunc.bin"                           # verifier_failed
pub dev-other -f "$WORK/real.bin"                           # device_mismatch (says dev-real)
mosquitto_pub -p "$MQTT_PORT" -q 1 -t "outpost/v1//batch" -f "$WORK/real.bin"  # bad_device_id

wait_for 20 "7 dead letters" bash -c \
  "kcat -b $KAFKA -C -t outpost.deadletter -o beginning -e -q -f '%h\n' 2>/dev/null | grep -c outpost-reason= | grep -qx 7"
kcat -b "$KAFKA" -C -t outpost.deadletter -o beginning -e -q -f '%h\n' >"$WORK/dl.txt"
for reason in too_small too_large bad_identifier verifier_failed device_mismatch bad_device_id; do
  grep -q "outpost-reason=$reason" "$WORK/dl.txt" || fail "no dead letter with reason $reason: $(cat "$WORK/dl.txt")"
done
[[ $(grep -c "outpost-reason=too_small" "$WORK/dl.txt") == 2 ]] || fail "expected 2 too_small"
grep "device_mismatch" "$WORK/dl.txt" | grep -q "outpost-device=dev-other" || fail "mismatch not keyed by transport identity"

timeout 25 tail --pid="$sub_pid" -f /dev/null || true
grep -aq "device_mismatch" "$WORK/ack.bin" || fail "no rejected ack reached dev-other"
unset "PIDS[sub]"

kill -0 "${PIDS[aggregator]}" || fail "aggregator died"
# It keeps serving: a good agent's readings all arrive.
write_agent_config dev-good 500
timeout 60 "$AGENT_BIN" --config "$WORK/dev-good.toml" --max-readings 1000 --exit-when-drained \
  >"$WORK/dev-good.log" 2>&1 || fail "dev-good did not drain"
kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" "dev-good=$(outbox_last_seq dev-good):1000"
[[ $(kcat -b "$KAFKA" -C -t outpost.deadletter -o beginning -e -q -f '%h\n' | grep -c outpost-reason=) == 7 ]] ||
  fail "dead letters changed"
echo "PASS: dead letters"
