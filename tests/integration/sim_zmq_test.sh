#!/usr/bin/env bash
# outpost-sim virtual agents over ZeroMQ against the real aggregator: `outpost-sim keys` makes the
# aggregator's key pair and a CURVE allow-list for 5 devices (deterministic from --key-seed); the
# fleet (--transport zmq, one CURVE DEALER socket per device) sends 10 simulated minutes at
# maximum speed; kcat must find every batch on Kafka exactly once with every reading the fleet
# generated, and the aggregator must have refused no key. A sixth device whose key is not on the
# allow-list must get nothing through (its handshake is refused).
source "$(dirname "$0")/lib.sh"
SIM_BIN="$OUTPOST_BUILD_DIR/simulators/outpost-sim"

"$SIM_BIN" keys -n 5 --key-seed 11 --out "$WORK/keys" 2>"$WORK/keys.log" || fail "keys: $(cat "$WORK/keys.log")"
[[ $(grep -c '" = "sim-000[1-5]"$' "$WORK/keys/allow-list.toml") == 5 ]] ||
  fail "allow-list: $(cat "$WORK/keys/allow-list.toml")"
start_devkafka
ZMQ_PORT=$(free_port)
MQTT_URI=tcp://127.0.0.1:1  # ZeroMQ only
start_aggregator --set mqtt.enabled=false --set "zmq.listen=tcp://127.0.0.1:$ZMQ_PORT" \
  --set "zmq.secret_key_file=$WORK/keys/aggregator.key" \
  --set "zmq.allow_list_file=$WORK/keys/allow-list.toml" --set zmq.heartbeat_ms=1000

log "fleet: 5 devices x 4 sensors over ZeroMQ, 10 simulated minutes at maximum speed"
"$SIM_BIN" fleet -n 5 --sensors 4 --seed 3 --start 2024-05-01T00:00:00Z --duration 10m \
  --interval 5s --speed max -o mqtt --transport zmq --zmq-endpoint "tcp://127.0.0.1:$ZMQ_PORT" \
  --zmq-server-key "$WORK/keys/aggregator.pub" --key-seed 11 --drain-timeout 20s \
  --summary-json "$WORK/fleet.json" -q 2>"$WORK/fleet.log" || fail "fleet exited with $?"
cat "$WORK/fleet.json"
python3 - "$WORK/fleet.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
assert f["batches_sent"] >= 5 * 120 and f["batches_acked"] == f["batches_sent"], f
assert f["batches_unacked"] == 0 and f["batches_rejected"] == 0, f
assert f["readings_acked"] == f["readings"], f
PY
args=()
for d in 1 2 3 4 5; do
  args+=("sim-000$d=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["batches_sent"] // 5)' "$WORK/fleet.json")")
done
kafka_dump outpost.readings "$WORK/readings.jsonl"
total=$(python3 -c 'import json,sys; print(sum(len(json.loads(l)["readings"]) for l in open(sys.argv[1])))' "$WORK/readings.jsonl")
[[ $total == $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["readings"])' "$WORK/fleet.json") ]] ||
  fail "Kafka has $total readings, the fleet generated a different count"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" "${args[@]}"
rejected=$(metric_labeled "$AGG_HTTP_PORT" 'outpost_aggregator_zmq_auth_rejected_total{reason="unknown_key"}')
[[ "$rejected" == 0 ]] || fail "the aggregator refused $rejected virtual-device keys"

log "a device whose key is not on the allow-list gets nothing through"
"$SIM_BIN" fleet -n 6 --sensors 1 --rate 1 --seed 4 --duration 3s --interval 1s --speed max -o zmq \
  --zmq-endpoint "tcp://127.0.0.1:$ZMQ_PORT" --zmq-server-key "$WORK/keys/aggregator.pub" \
  --key-seed 11 --drain-timeout 3s --summary-json "$WORK/six.json" -q 2>"$WORK/six.log" || true
python3 - "$WORK/six.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
# devices 1-5 are known (acked), sim-0006 is not: its 3 batches are never acked
assert f["batches_acked"] == 15 and f["batches_unacked"] == 3, f
PY
rejected=$(metric_labeled "$AGG_HTTP_PORT" 'outpost_aggregator_zmq_auth_rejected_total{reason="unknown_key"}')
[[ "$rejected" -ge 1 ]] || fail "the unknown key was not refused by the aggregator"
echo "PASS: outpost-sim ZeroMQ virtual agents -> aggregator -> Kafka"
