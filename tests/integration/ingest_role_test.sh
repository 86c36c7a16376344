#!/usr/bin/env bash
# Role ingest (issue 19): two stateless ingest instances in one MQTT shared-subscription group
# (mqtt.shared_group left empty: "outpost-ingest"; mqtt.client_id left unset: one per instance) and
# one agent sending N batches over a real Mosquitto. Every batch must appear exactly once on
# outpost.batches (kcat, an outside client) with its key and outpost-* headers, both instances
# must have received some (Mosquitto hands a group's messages out round-robin), the agent's
# outbox must drain (every batch acked) and no instance may create a dedup store. A second agent
# sends over ZeroMQ to the first instance's ROUTER: its batches go the same way.
source "$(dirname "$0")/lib.sh"

READINGS=${READINGS:-4000}   # 2 counter sensors, 100 readings per batch: 40 batches
ACK_TIMEOUT_MS=15000         # no resend within the test: a resend would be on the topic twice
start_mosquitto
start_kafka

make_zmq_keys dev-z

declare -A HTTP_PORT=()
start_ingest() {  # start_ingest NAME [extra args...]
  local name=$1
  shift
  HTTP_PORT[$name]=$(free_port)
  "$AGGREGATOR_BIN" --set cluster.role=ingest --set "cluster.instance_id=$name" \
    --set "mqtt.broker=$MQTT_URI" --set "kafka.bootstrap_servers=$KAFKA" \
    --set "dedup.path=$WORK/$name.dedup.db" --set "http.listen=127.0.0.1:${HTTP_PORT[$name]}" \
    "$@" >>"$WORK/$name.log" 2>&1 &
  PIDS[$name]=$!
}
start_ingest ingest-a --set "zmq.listen=$ZMQ_ENDPOINT" \
  --set "zmq.secret_key_file=$WORK/keys/aggregator.key" \
  --set "zmq.allow_list_file=$WORK/allow-list.toml" --set zmq.heartbeat_ms=200
start_ingest ingest-b
for name in ingest-a ingest-b; do
  wait_for 30 "$name /readyz" curl -sf "http://127.0.0.1:${HTTP_PORT[$name]}/readyz"
  grep -q 'subscribed to \$share/outpost-ingest/outpost/v1/+/batch' "$WORK/$name.log" ||
    fail "$name did not make the shared subscription: $(grep -i mqtt "$WORK/$name.log" | tail -3)"
done
log "ingest instances up: ${PIDS[ingest-a]}, ${PIDS[ingest-b]}"

write_agent_config dev-1 1000
write_zmq_agent_config dev-z 1000
start_draining_agent dev-1 "$READINGS"
start_draining_agent dev-z 1000
wait_agents_drained 20 dev-1 dev-z
for dev in dev-1 dev-z; do
  [[ $(outbox_rows $dev) == 0 ]] || fail "agent $dev left batches in its outbox (not acked)"
done
last_seq=$(outbox_last_seq dev-1)
zmq_seq=$(outbox_last_seq dev-z)
((last_seq >= READINGS / 100)) || fail "the agent made only $last_seq batches"
log "agents drained: $last_seq batches over MQTT, $zmq_seq over ZeroMQ, all acked"

# Every batch once: key, headers and a FlatBuffers value of the right identifier ("OPB1" at 4).
timeout 30 kcat -b "$KAFKA" -C -t outpost.batches -o beginning -e -q \
  -f 'key=%k size=%S headers=%h\n' >"$WORK/batches.txt" 2>"$WORK/kcat.err" ||
  fail "kcat could not read outpost.batches: $(cat "$WORK/kcat.err")"
timeout 30 kcat -b "$KAFKA" -C -t outpost.batches -o beginning -e -q -f '%s' \
  >"$WORK/batches.bin" 2>>"$WORK/kcat.err" || fail "kcat: $(cat "$WORK/kcat.err")"
python3 - "$WORK/batches.txt" "$WORK/batches.bin" "dev-1=$last_seq" "dev-z=$zmq_seq" <<'PY'
import collections, sys
lines = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
last = {d: int(n) for d, n in (a.split("=") for a in sys.argv[3:])}
transport = {"dev-1": "mqtt", "dev-z": "zmq"}
seqs = collections.defaultdict(collections.Counter)
sources = collections.defaultdict(set)
for l in lines:
    key = l.split(" ", 1)[0][len("key="):]
    size = int(l.split(" ", 2)[1][len("size="):])
    hdrs = dict(h.split("=", 1) for h in l.split("headers=", 1)[1].split(","))
    assert key in last, f"key {key!r}"
    assert hdrs["outpost-device"] == key, hdrs
    assert hdrs["content-type"] == "application/x-outpost-batch", hdrs
    assert hdrs["outpost-transport"] == transport[key], hdrs
    assert int(hdrs["outpost-received-us"]) > 0, hdrs
    assert size > 100, f"value of {size} bytes"
    sources[key].add(hdrs["outpost-source"])
    seqs[key][int(hdrs["outpost-seq"])] += 1
for dev, n in last.items():
    dups = {s: c for s, c in seqs[dev].items() if c > 1}
    assert not dups, f"{dev}: batches more than once: {dups}"
    missing = sorted(set(range(1, n + 1)) - set(seqs[dev]))
    assert not missing, f"{dev}: batches missing: {missing}"
    assert len(seqs[dev]) == n, f"{dev}: {len(seqs[dev])} batches, the agent made {n}"
assert sources["dev-1"] == {"outpost/v1/dev-1/batch"}, sources
# The values, concatenated, are the batches as the agents sent them: each has the file identifier.
blob = open(sys.argv[2], "rb").read()
total = sum(last.values())
assert blob.count(b"OPB1") >= total, f"{blob.count(b'OPB1')} FlatBuffers identifiers, {total} batches"
print(f"outpost.batches: {len(lines)} messages, every batch of {sorted(last)} exactly once")
PY

total=0
for name in ingest-a ingest-b; do
  got=$(metric_labeled "${HTTP_PORT[$name]}" 'outpost_aggregator_batches_received_total{transport="mqtt"}')
  zgot=$(metric_labeled "${HTTP_PORT[$name]}" 'outpost_aggregator_batches_received_total{transport="zmq"}')
  fwd=$(metric "${HTTP_PORT[$name]}" outpost_aggregator_batches_forwarded_total)
  log "$name: received $got over MQTT and $zgot over ZeroMQ, forwarded $fwd"
  ((got > 0)) || fail "$name received no batch: the shared subscription did not spread the load"
  ((fwd == got + zgot)) || fail "$name forwarded $fwd of $((got + zgot)) batches"
  total=$((total + fwd))
  [[ ! -e "$WORK/$name.dedup.db" ]] || fail "$name created a dedup store ($WORK/$name.dedup.db)"
done
((total == last_seq + zmq_seq)) ||
  fail "the instances forwarded $total batches together, the agents sent $((last_seq + zmq_seq))"

for name in ingest-a ingest-b; do stop_proc "$name"; done
for name in ingest-a ingest-b; do
  grep -q "batches forwarded to outpost.batches" "$WORK/$name.log" ||
    fail "$name did not stop cleanly: $(tail -3 "$WORK/$name.log")"
done
echo "PASS: ingest_role"
