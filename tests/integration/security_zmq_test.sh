#!/usr/bin/env bash
# ZeroMQ security, negative cases, against a ZeroMQ-only aggregator (CURVE + ZAP allow-list). Each
# case must be refused and counted, and nothing from it may reach outpost.readings:
#   1. a plaintext ZeroMQ peer (ZMTP NULL mechanism)          -> handshake failure (protocol)
#   2. an agent whose CURVE key is not on the allow-list       -> ZAP refuses (unknown_key)
#   3. a known key claiming another device id                  -> dead-lettered (device_mismatch)
#   4. a key file readable by others                           -> the agent refuses to start
# and the allow-list reloads on SIGHUP: case 2's key, once added, gets through; a malformed
# allow-list on reload is refused and the previous one stays in force.
source "$(dirname "$0")/lib.sh"

start_devkafka
make_zmq_keys dev-a
"$AGENT_BIN" keygen --out "$WORK/keys" --name dev-stranger >/dev/null
AGG_HTTP_PORT=$(free_port)
start_aggregator "${ZMQ_AGG_ARGS[@]}"
m() { metric_labeled "$AGG_HTTP_PORT" "$1"; }

# 1. Plaintext peer.
out=$(python3 "$HERE/zmtp_null_peer.py" "$ZMQ_PORT")
[[ "$out" == closed ]] || fail "plaintext peer: expected the aggregator to close the connection, got '$out'"
wait_for 5 "protocol handshake failure counted" bash -c \
  "[[ \$(curl -sf http://127.0.0.1:$AGG_HTTP_PORT/metrics | awk '\$1 == \"outpost_aggregator_zmq_handshake_failures_total{reason=\\\"protocol\\\"}\" {print \$2}') -ge 1 ]]"
log "1. plaintext peer refused"

# 2. Unknown key (dev-stranger is not on the allow-list).
write_zmq_agent_config dev-stranger 200
start_draining_agent dev-stranger 200
wait_for 10 "unknown key refused" bash -c \
  "[[ \$(curl -sf http://127.0.0.1:$AGG_HTTP_PORT/metrics | awk '\$1 == \"outpost_aggregator_zmq_auth_rejected_total{reason=\\\"unknown_key\\\"}\" {print \$2}') -ge 1 ]]"
sleep 1
[[ $(outbox_rows dev-stranger) -gt 0 ]] || fail "dev-stranger's batches left its outbox without an ack"
grep -q "handshake with .* failed" "$WORK/dev-stranger.log" || fail "dev-stranger did not report the refused handshake"
log "2. unknown key refused ($(m 'outpost_aggregator_zmq_auth_rejected_total{reason="unknown_key"}') times), batches kept in the outbox"

# 3. dev-a's key, but the batches say device "dev-evil": dead-lettered under the authenticated
# identity dev-a; the agent keeps its batches (a key/device mix-up must not lose data) and says why.
write_zmq_agent_config dev-evil 200 dev-a
start_draining_agent dev-evil 100
wait_for 15 "device_mismatch dead letter" bash -c \
  "kcat -b $KAFKA -C -t outpost.deadletter -o beginning -e -q -f '%h\n' 2>/dev/null | grep outpost-reason=device_mismatch | grep -q outpost-device=dev-a"
wait_for 10 "dev-evil told of the mix-up" grep -q "knows this device's key as device 'dev-a'" "$WORK/dev-evil.log"
stop_proc dev-evil
[[ $(outbox_rows dev-evil) -gt 0 ]] || fail "dev-evil's rejected batches left its outbox"
[[ $(m 'outpost_aggregator_rejected_batches_total{reason="device_mismatch"}') -ge 1 ]] || fail "mismatch not counted"
log "3. known key claiming another device dead-lettered"

# 4. Loose permissions on the key pair file.
cp "$WORK/keys/dev-a.key" "$WORK/keys/loose.key"
chmod 644 "$WORK/keys/loose.key"
write_zmq_agent_config dev-loose 200 loose
set +e
"$AGENT_BIN" --config "$WORK/dev-loose.toml" --max-readings 1 >"$WORK/dev-loose.log" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] || fail "agent with a 0644 key file: exit $rc, expected 2 (configuration error)"
grep -q "uplink.zmq.key_file: .*loose.key has mode 0644.*chmod 600" "$WORK/dev-loose.log" ||
  fail "no clear message about the key file's mode: $(cat "$WORK/dev-loose.log")"
grep -q "$(grep '^secret_key' "$WORK/keys/dev-a.key" | cut -d'"' -f2)" "$WORK"/*.log "$WORK"/*.toml &&
  fail "a secret key appears in a log"
curl -sf "http://127.0.0.1:$AGG_HTTP_PORT/metrics" | grep -qF "$(grep '^secret_key' "$WORK/keys/aggregator.key" | cut -d'"' -f2)" &&
  fail "the aggregator's secret key appears in /metrics"
log "4. key file with mode 0644 refused"

# Nothing of cases 1-3 reached the readings topic.
kafka_dump outpost.readings "$WORK/readings.jsonl"
[[ ! -s "$WORK/readings.jsonl" ]] || fail "readings reached Kafka: $(head -c 300 "$WORK/readings.jsonl")"

# SIGHUP: a malformed allow-list is refused (previous stays), then dev-stranger is added.
cp "$WORK/allow-list.toml" "$WORK/allow-list.good"
echo '"not-a-key" = "dev-x"' >>"$WORK/allow-list.toml"
kill -HUP "${PIDS[aggregator]}"
wait_for 5 "failed reload counted" bash -c \
  "[[ \$(curl -sf http://127.0.0.1:$AGG_HTTP_PORT/metrics | awk '\$1 == \"outpost_aggregator_zmq_allowlist_reloads_total{result=\\\"error\\\"}\" {print \$2}') == 1 ]]"
cp "$WORK/allow-list.good" "$WORK/allow-list.toml"
echo "$(zmq_pubkey dev-stranger) = \"dev-stranger\"" >>"$WORK/allow-list.toml"
kill -HUP "${PIDS[aggregator]}"
wait_agents_drained 20 dev-stranger
[[ $(m 'outpost_aggregator_zmq_allowlist_reloads_total{result="ok"}') == 1 ]] || fail "reload not counted"
kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" "dev-stranger=$(outbox_last_seq dev-stranger):200"
kill -0 "${PIDS[aggregator]}" || fail "aggregator died"
echo "PASS: ZeroMQ security"
