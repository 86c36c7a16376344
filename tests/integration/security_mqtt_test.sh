#!/usr/bin/env bash
# MQTT security against a real Mosquitto with a TLS listener (TLS >= 1.2, client certificates
# required), a password file and the ACL of docs/security.md; certificates are made with openssl in
# the test's work directory. A correctly configured agent gets through (TLS, certificate, password);
# each negative case is refused and counted, and nothing from it reaches outpost.readings:
#   no client certificate, a certificate from another CA, an expired certificate, the wrong CA for
#   the broker (server verification), anonymous, the wrong password, a password file readable by
#   others (refused at start-up), a device publishing under another device's topic, a device
#   subscribing to '#'.
source "$(dirname "$0")/lib.sh"

PKI="$WORK/pki"
mkdir -p "$PKI"
make_tls_pki dev-a dev-b
tls_new_ca evil-ca
tls_new_cert evil-ca dev-a-evil 2
tls_new_cert ca dev-a-expired -1
start_mosquitto_tls

start_devkafka
AGG_HTTP_PORT=$(free_port)
tls_aggregator_args
start_aggregator "${TLS_AGG_ARGS[@]}"
m() { metric_labeled "$AGG_HTTP_PORT" "$1"; }

# tls_agent_config NAME DEVICE CERT [extra TOML lines for [uplink.mqtt]]
tls_agent_config() {
  local name=$1 dev=$2 cert=$3
  shift 3
  write_agent_config "$name" 200
  sed -i "s/^device_id = .*/device_id = \"$dev\"/" "$WORK/$name.toml"
  {
    echo "ca_file = \"$PKI/ca.crt\""
    [[ "$cert" == none ]] || printf 'cert_file = "%s"\nkey_file = "%s"\n' "$PKI/$cert.crt" "$PKI/$cert.key"
    for line in "$@"; do echo "$line"; done
  } >"$WORK/$name.extra"
  # The extra lines belong to [uplink.mqtt]: insert them right after its header.
  sed -i "/^\[uplink.mqtt\]/r $WORK/$name.extra" "$WORK/$name.toml"
}

# 0. The right configuration gets through.
tls_agent_config good dev-a dev-a 'username = "dev-a"' "password_file = \"$PKI/dev-a.pass\""
timeout 30 "$AGENT_BIN" --config "$WORK/good.toml" --max-readings 200 --exit-when-drained \
  >>"$WORK/good.log" 2>&1 || fail "the correctly configured agent did not get through"
log "0. agent with TLS + client certificate + password delivered"

# Each refused agent runs (all at once, to keep the test short); each must fail to connect
# (counted on the agent: outpost_agent_mqtt_connect_failures_total), keep its batches, and the
# broker's log must state the reason WHY (a regex) for its case.
declare -A AGENT_PORT=() WHY=()
refused_agent_start() {  # refused_agent_start NAME WHY
  local name=$1
  WHY[$name]=$2
  AGENT_PORT[$name]=$(free_port)
  start_agent "$name" --max-readings 50 --set "http.listen=127.0.0.1:${AGENT_PORT[$name]}"
}
refused_agent_check() {  # refused_agent_check NAME
  local name=$1 port=${AGENT_PORT[$1]}
  wait_for 20 "$name: connection refused and counted" bash -c \
    "[[ \$(curl -sf http://127.0.0.1:$port/metrics | awk '\$1 == \"outpost_agent_mqtt_connect_failures_total\" {print \$2}') -ge 1 ]]"
  [[ $(metric "$port" outpost_agent_mqtt_connected) == 0 ]] || fail "$name is connected"
  stop_proc "$name"
  [[ $(outbox_rows "$name") -gt 0 ]] || fail "$name's batches left its outbox"
  # The agent may count a failure (e.g. a socket error on its first attempt) before the broker
  # has logged the handshake it refused: wait for the broker's line rather than reading once.
  wait_for 10 "$name: the broker's log says '${WHY[$name]}'" bash -c \
    "tail -n +$((log_mark + 1)) '$WORK/mosquitto.log' | grep -Eq '${WHY[$name]}'"
  log "refused and counted: $name (${WHY[$name]})"
}
A_CREDS=('username = "dev-a"' "password_file = \"$PKI/dev-a.pass\"")
tls_agent_config no-cert dev-a none "${A_CREDS[@]}"
tls_agent_config wrong-ca dev-a dev-a-evil "${A_CREDS[@]}"
tls_agent_config expired dev-a dev-a-expired "${A_CREDS[@]}"
tls_agent_config untrusted-broker dev-a dev-a "${A_CREDS[@]}"
sed -i "s|^ca_file = .*|ca_file = \"$PKI/evil-ca.crt\"|" "$WORK/untrusted-broker.toml"
tls_agent_config anonymous dev-a dev-a
printf 'not-the-password\n' >"$PKI/wrong.pass"
chmod 600 "$PKI/wrong.pass"
tls_agent_config wrong-password dev-a dev-a 'username = "dev-a"' "password_file = \"$PKI/wrong.pass\""
log_mark=$(wc -l <"$WORK/mosquitto.log")
refused_agent_start no-cert "peer did not return a certificate"
refused_agent_start wrong-ca "certificate verify failed"
refused_agent_start expired "certificate verify failed"
refused_agent_start untrusted-broker "alert unknown ca"
refused_agent_start anonymous "not authori[sz]ed"
refused_agent_start wrong-password "not authori[sz]ed"
for name in no-cert wrong-ca expired untrusted-broker anonymous wrong-password; do
  refused_agent_check "$name"
done
[[ $(tail -n +"$((log_mark + 1))" "$WORK/mosquitto.log" | grep -c "certificate verify failed") -ge 2 ]] ||
  fail "the broker refused fewer than 2 client certificates (wrong CA, expired)"
[[ $(tail -n +"$((log_mark + 1))" "$WORK/mosquitto.log" | grep -Ec "not authori[sz]ed") -ge 2 ]] ||
  fail "the broker refused fewer than 2 logins (anonymous, wrong password)"

# A password file readable by others is refused at start-up, with the fix in the message.
cp "$PKI/dev-a.pass" "$PKI/loose.pass"
chmod 644 "$PKI/loose.pass"
tls_agent_config loose dev-a dev-a 'username = "dev-a"' "password_file = \"$PKI/loose.pass\""
set +e
"$AGENT_BIN" --config "$WORK/loose.toml" --max-readings 1 >"$WORK/loose.log" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] || fail "agent with a 0644 password file: exit $rc, expected 2"
grep -q "password_file: .*loose.pass has mode 0644.*chmod 600" "$WORK/loose.log" || fail "unclear message: $(cat "$WORK/loose.log")"
log "refused at start-up: password file with mode 0644"

# dev-a publishes a real batch of dev-b's under dev-b's topic: the broker's ACL drops it.
tls_agent_config dev-b dev-b dev-b 'username = "dev-b"' "password_file = \"$PKI/dev-b.pass\"" \
  'broker = "tcp://127.0.0.1:1"'
sed -i '0,/^broker = "ssl/{/^broker = "ssl/d}' "$WORK/dev-b.toml"
sed -i 's|^ca_file = .*||; s|^cert_file = .*||; s|^key_file = .*||' "$WORK/dev-b.toml"
timeout 2 "$AGENT_BIN" --config "$WORK/dev-b.toml" --max-readings 50 --set batch.linger_ms=50 \
  >"$WORK/dev-b.log" 2>&1 || true
sqlite3 "$WORK/dev-b.outbox.db" "SELECT writefile('$WORK/b.bin', payload) FROM batches ORDER BY seq LIMIT 1" >/dev/null
[[ -s "$WORK/b.bin" ]] || fail "no dev-b batch in its outbox"
received_before=$(metric "$AGG_HTTP_PORT" outpost_aggregator_batches_received_total)
TLS_A=(-h 127.0.0.1 -p "$MQTT_PORT" --cafile "$PKI/ca.crt" --cert "$PKI/dev-a.crt" --key "$PKI/dev-a.key"
  -u dev-a -P "$(cat "$PKI/dev-a.pass")")
mosquitto_pub "${TLS_A[@]}" -q 1 -t outpost/v1/dev-b/batch -f "$WORK/b.bin"
wait_for 5 "the broker's denial in its log" grep -q "Denied PUBLISH from .*outpost/v1/dev-b/batch" "$WORK/mosquitto.log"
sleep 1
[[ $(metric "$AGG_HTTP_PORT" outpost_aggregator_batches_received_total) == "$received_before" ]] ||
  fail "a batch published under another device's topic reached the aggregator"
log "denied and logged by the broker: dev-a publishing under dev-b's topic"

# dev-a subscribes to '#'. Mosquitto 2.0 grants the subscription and applies the ACL to every
# message it would deliver: an ack for dev-b never reaches dev-a, while dev-a's own ack (sent after
# it, as a control that the subscription is live) does.
AGG_PUB=(-h 127.0.0.1 -p "$MQTT_PORT" --cafile "$PKI/ca.crt" --cert "$PKI/aggregator.crt"
  --key "$PKI/aggregator.key" -u aggregator -P "$(cat "$PKI/aggregator.pass")" -q 1)
timeout 15 mosquitto_sub "${TLS_A[@]}" -t '#' -v -C 1 -W 10 >"$WORK/sub.out" 2>"$WORK/sub.err" &
sub_pid=$!
wait_for 5 "dev-a's '#' subscription" grep -q " 0 #$" "$WORK/mosquitto.log"
mosquitto_pub "${AGG_PUB[@]}" -t outpost/v1/dev-b/ack -m 'for dev-b only'
mosquitto_pub "${AGG_PUB[@]}" -t outpost/v1/dev-b/status -m 'dev-b status'
sleep 0.5
mosquitto_pub "${AGG_PUB[@]}" -t outpost/v1/dev-a/ack -m 'for dev-a'
wait "$sub_pid" || fail "dev-a's subscriber got nothing at all: $(cat "$WORK/sub.err")"
[[ "$(cat "$WORK/sub.out")" == "outpost/v1/dev-a/ack for dev-a" ]] ||
  fail "dev-a read another device's messages through '#': $(cat "$WORK/sub.out")"
log "filtered: dev-a subscribed to '#' received only its own ack"

for f in "$PKI"/*.pass; do
  if grep -rqF "$(cat "$f")" "$WORK"/*.log; then fail "a password ($(basename "$f")) appears in a log"; fi
  if curl -sf "http://127.0.0.1:$AGG_HTTP_PORT/metrics" | grep -qF "$(cat "$f")"; then fail "a password appears in /metrics"; fi
done

kafka_dump outpost.readings "$WORK/readings.jsonl"
python3 "$HERE/check_readings.py" "$WORK/readings.jsonl" "dev-a=$(outbox_last_seq good):200"
echo "PASS: MQTT security"
