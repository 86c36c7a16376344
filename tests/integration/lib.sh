# Shared harness for Outpost's integration tests (sourced, bash).
#
# Starts real processes — Mosquitto, outpost-devkafka (librdkafka's mock cluster), the aggregator
# and agents — on free loopback ports inside a per-test work directory, records every pid, and on
# exit stops each of them by pid (SIGTERM, then SIGKILL after 5 s) and removes the directory.
# Logs of a failed test are printed.
#
# Needs: OUTPOST_BUILD_DIR (the CMake build directory holding agent/ and aggregator/).

set -euo pipefail

: "${OUTPOST_BUILD_DIR:?set OUTPOST_BUILD_DIR to the CMake build directory}"
AGENT_BIN="$OUTPOST_BUILD_DIR/agent/outpost-agent"
AGGREGATOR_BIN="$OUTPOST_BUILD_DIR/aggregator/outpost-aggregator"
DEVKAFKA_BIN="$OUTPOST_BUILD_DIR/tools/devkafka/outpost-devkafka"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/outpost_it.XXXXXX")
declare -A PIDS=()   # name -> pid
# python3 resolved once, for this test and every process it starts: where python3 on PATH is a
# version manager's shim (pyenv: a chain of bash scripts, ~0.2 s a call against ~0.02 s for the
# interpreter itself), the tests' many short python3 calls (free ports, polls) cost seconds each.
# The same interpreter (sys.executable), linked first on PATH.
if _py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) && [[ -x "$_py" ]]; then
  mkdir -p "$WORK/bin" && ln -s "$_py" "$WORK/bin/python3" && PATH="$WORK/bin:$PATH"
fi
unset _py
KEEP_WORK=${KEEP_WORK:-0}

log() { echo "[$(date +%H:%M:%S)] $*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

stop_pid() {  # stop_pid PID [signal]: signal, wait up to 5 s, then SIGKILL
  local pid=$1 sig=${2:-TERM}
  kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_proc() {  # stop_proc NAME [signal]
  local name=$1
  [[ -n "${PIDS[$name]:-}" ]] || return 0
  stop_pid "${PIDS[$name]}" "${2:-TERM}"
  unset "PIDS[$name]"
}

kill9_proc() {  # kill9_proc NAME: SIGKILL, as a power cut would
  local name=$1 pid=${PIDS[$1]}
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}

stop_pids() {  # stop_pids PID...: SIGTERM to all at once, wait up to 5 s for all, then SIGKILL
  local pid alive
  (($#)) || return 0
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && { alive=1; break; }; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "$@"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

# The clients (agents, aggregators, tools) are stopped before the brokers they talk to, all at
# once: an aggregator stopped after its Kafka broker spent its whole shutdown flush time-out (5 s)
# on its last records and was then SIGKILLed, and one by one the stops added up (5-8 s a test).
cleanup() {
  local rc=$? name clients=() brokers=()
  for name in "${!PIDS[@]}"; do
    case $name in
      mosquitto* | devkafka* | kafka*) brokers+=("${PIDS[$name]}") ;;
      *) clients+=("${PIDS[$name]}") ;;
    esac
  done
  stop_pids "${clients[@]}"
  # A real Kafka broker's clean shutdown takes 2-3 s, and its data is deleted right after: it
  # gets SIGKILL here (its clean stop is tested in realkafka.kafka_broker).
  for name in "${!PIDS[@]}"; do
    [[ $name != kafka* ]] || kill -KILL "${PIDS[$name]}" 2>/dev/null || true
  done
  stop_pids "${brokers[@]}"
  if [[ $rc -ne 0 ]]; then
    for f in "$WORK"/*.log; do
      [[ -f "$f" ]] || continue
      echo "--- $(basename "$f") (last 30 lines) ---" >&2
      tail -n 30 "$f" >&2 || true
    done
  fi
  if [[ "$KEEP_WORK" == 1 ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.1 s
  local secs=$1 what=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "timed out after ${secs}s waiting for $what"
    sleep 0.1
  done
}

port_open() {
  python3 -c 'import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

# Mosquitto with a generated config on a free loopback port. The queue limits are explicit on
# purpose: a PUBACK is not a disk write and the broker may drop QoS 1 messages for a slow
# subscriber; the end-to-end ack + resend is what makes delivery safe (design.md).
start_mosquitto() {
  MQTT_PORT=$(free_port)
  cat >"$WORK/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 10000
max_inflight_messages 100
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
CONF
  mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
  PIDS[mosquitto]=$!
  MQTT_URI="tcp://127.0.0.1:$MQTT_PORT"
  wait_for 10 "mosquitto on $MQTT_PORT" port_open "$MQTT_PORT"
  log "mosquitto pid ${PIDS[mosquitto]} on $MQTT_URI"
}

start_devkafka() {
  KAFKA_PORT=$(free_port)
  rm -f "$WORK/devkafka.ready"
  "$DEVKAFKA_BIN" --listen "127.0.0.1:$KAFKA_PORT" --partitions "${KAFKA_PARTITIONS:-4}" \
    --ready-file "$WORK/devkafka.ready" >"$WORK/devkafka.log" 2>&1 &
  PIDS[devkafka]=$!
  KAFKA="127.0.0.1:$KAFKA_PORT"
  wait_for 15 "outpost-devkafka" test -s "$WORK/devkafka.ready"
  log "devkafka pid ${PIDS[devkafka]} on $KAFKA"
}

# --- Kafka: the development broker or a real Apache Kafka broker (issue 18) ----------------------
# OUTPOST_KAFKA=dev (default: outpost-devkafka, in memory) or real (scripts/kafka.sh: Apache Kafka,
# KRaft, one node, jars from Maven Central cached in ~/.cache/outpost). Both set KAFKA (bootstrap
# address) and KAFKA_PORT; the real one also KAFKA_DIR (config, data, server.log).
KAFKA_MODE=${OUTPOST_KAFKA:-dev}
KAFKA_SH="$HERE/../../scripts/kafka.sh"
KAFKA_TOOL_BIN="$OUTPOST_BUILD_DIR/tools/kafka/outpost-kafka-tool"

start_kafka() {
  case $KAFKA_MODE in
    dev) start_devkafka ;;
    real) start_real_kafka ;;
    *) fail "OUTPOST_KAFKA='$KAFKA_MODE': allowed are dev and real" ;;
  esac
}

# start_real_kafka: a broker with its state in $WORK/kafka and the Outpost topics, each with
# KAFKA_PARTITIONS partitions (default 6); KAFKA_TOPICS (kafka.sh --topics) names other topics;
# KAFKA_HEAP is the broker's heap (default 256m); KAFKA_HOST the client listener's address (default
# 127.0.0.1); KAFKA_FIXED_PORT its port on first start (default: a free one).
# Called again after stop_real_kafka it restarts the same broker: same port, same data.
start_real_kafka() {
  KAFKA_DIR="$WORK/kafka"
  local topics=(--partitions "${KAFKA_PARTITIONS:-6}" --heap "${KAFKA_HEAP:-256m}")
  [[ -n "${KAFKA_TOPICS:-}" ]] && topics+=(--topics "$KAFKA_TOPICS")
  [[ -n "${KAFKA_HOST:-}" ]] && topics+=(--host "$KAFKA_HOST")
  [[ -n "${KAFKA_FIXED_PORT:-}" && ! -f "$KAFKA_DIR/server.properties" ]] && topics+=(--port "$KAFKA_FIXED_PORT")
  local rc=0
  KAFKA=$(OUTPOST_KAFKA_TOOL="$KAFKA_TOOL_BIN" "$KAFKA_SH" start --dir "$KAFKA_DIR" "${topics[@]}" \
    2>>"$WORK/kafka-start.log") || rc=$?
  # Whatever happened, a broker that runs is stopped by this harness.
  [[ -f "$KAFKA_DIR/kafka.pid" ]] && PIDS[kafka]=$(cat "$KAFKA_DIR/kafka.pid")
  ((rc == 0)) || fail "real Kafka did not start: $(tail -n 5 "$WORK/kafka-start.log")"
  KAFKA_PORT=${KAFKA##*:}
  ln -sf "$KAFKA_DIR/server.log" "$WORK/kafka-server.log"  # printed with the other logs on failure
  log "Apache Kafka pid ${PIDS[kafka]} on $KAFKA ($(tail -n 1 "$WORK/kafka-start.log"))"
}

stop_real_kafka() { stop_proc kafka; }  # a clean shutdown (SIGTERM; SIGKILL after 5 s)

# java_consumer_dump TOPIC FILE [ARGS...]: every message of TOPIC read by Kafka's own Java console
# consumer (a second client, independent of librdkafka), one value a line; it stops once no
# message came for 5 s. ARGS go to the console consumer (e.g. --isolation-level read_committed;
# its default is read_uncommitted). Real broker only. Its stderr: FILE.err.
java_consumer_dump() {
  [[ $KAFKA_MODE == real ]] || fail "java_consumer_dump needs OUTPOST_KAFKA=real"
  local topic=$1 out=$2
  shift 2
  timeout 120 "$KAFKA_SH" console-consumer --bootstrap-server "$KAFKA" --topic "$topic" \
    --from-beginning --timeout-ms 5000 "$@" >"$out" 2>"$out.err" || true
  grep -q "Processed a total of" "$out.err" ||
    fail "the Java console consumer failed on $topic: $(tail -n 5 "$out.err")"
}

# start_aggregator [extra args...]: dedup store in $WORK/dedup.db; metrics port in $AGG_HTTP_PORT.
start_aggregator() {
  AGG_HTTP_PORT=${AGG_HTTP_PORT:-$(free_port)}
  "$AGGREGATOR_BIN" --set "mqtt.broker=$MQTT_URI" --set "kafka.bootstrap_servers=$KAFKA" \
    --set "dedup.path=$WORK/dedup.db" --set "http.listen=127.0.0.1:$AGG_HTTP_PORT" \
    --set "mqtt.client_id=it-aggregator" "$@" >>"$WORK/aggregator.log" 2>&1 &
  PIDS[aggregator]=$!
  wait_for 30 "aggregator /healthz" curl -sf "http://127.0.0.1:$AGG_HTTP_PORT/healthz"
  log "aggregator pid ${PIDS[aggregator]}, metrics http://127.0.0.1:$AGG_HTTP_PORT/metrics"
}

# write_agent_config DEVICE RATE_HZ: two counter sensors (values 0, 1, 2, ... per run).
write_agent_config() {
  local dev=$1 rate=${2:-200}
  cat >"$WORK/$dev.toml" <<CONF
device_id = "$dev"
log_level = "info"
[http]
listen = "127.0.0.1:0"
[batch]
max_readings = ${BATCH_READINGS:-100}
linger_ms = ${BATCH_LINGER_MS:-200}
[outbox]
path = "$WORK/$dev.outbox.db"
[uplink.mqtt]
broker = "$MQTT_URI"
ack_timeout_ms = ${ACK_TIMEOUT_MS:-2000}
reconnect_min_ms = 100
reconnect_max_ms = 1000
[[sensors]]
name = "a"
unit = "u"
rate_hz = $rate
shape = "counter"
[[sensors]]
name = "b"
unit = "u"
rate_hz = $rate
shape = "counter"
CONF
}

# start_agent DEVICE [extra args...]: runs in the background (name = DEVICE).
start_agent() {
  local dev=$1
  shift
  "$AGENT_BIN" --config "$WORK/$dev.toml" "$@" >>"$WORK/$dev.log" 2>&1 &
  PIDS[$dev]=$!
}

# start_draining_agent DEVICE READINGS [extra args...]: reads READINGS readings, then exits once
# every accepted batch is acknowledged (background; name = DEVICE).
start_draining_agent() {
  local dev=$1 readings=$2
  shift 2
  start_agent "$dev" --max-readings "$readings" --exit-when-drained "$@"
}

# wait_agents_drained SECONDS DEVICE...: each agent must exit 0 within SECONDS.
wait_agents_drained() {
  local secs=$1
  shift
  for dev in "$@"; do
    timeout "$secs" tail --pid="${PIDS[$dev]}" -f /dev/null || fail "agent $dev still running after $secs s"
    wait "${PIDS[$dev]}" || fail "agent $dev exited with an error"
    unset "PIDS[$dev]"
  done
}

# drain_agent DEVICE TIMEOUT [extra args]: no new readings beyond one, wait for an empty outbox,
# exit 0.
drain_agent() {
  local dev=$1 secs=$2
  shift 2
  timeout "$secs" "$AGENT_BIN" --config "$WORK/$dev.toml" --max-readings 1 --exit-when-drained "$@" \
    >>"$WORK/$dev.log" 2>&1 || fail "agent $dev did not drain its outbox within ${secs}s"
}

# Highest seq the agent's outbox ever assigned (0 if none).
outbox_last_seq() {
  sqlite3 "$WORK/$1.outbox.db" "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name='batches'),0)"
}

outbox_rows() { sqlite3 "$WORK/$1.outbox.db" "SELECT COUNT(*) FROM batches"; }

# kafka_dump TOPIC FILE: every message of TOPIC, one JSON line each.
kafka_dump() {
  timeout 60 kcat -b "$KAFKA" -C -t "$1" -o beginning -e -q -f '%s\n' >"$2" 2>"$WORK/kcat.err" ||
    fail "kcat could not read $1: $(cat "$WORK/kcat.err")"
}

metric() {  # metric PORT NAME: value of an unlabelled metric
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2}'
}

# write_stdin_agent_config DEVICE: sensors fed by standard input in line protocol (issue 3):
# "x" raw with a range filter that marks values above 1000 bad, "y" deduplicated and summarised in
# 10 s tumbling windows (raw and windows), "z" windows only.
write_stdin_agent_config() {
  local dev=$1
  write_agent_config "$dev"
  # Replace the counter sensors with stdin ones.
  sed -i '/^\[\[sensors\]\]/,$d' "$WORK/$dev.toml"
  cat >>"$WORK/$dev.toml" <<CONF
[sources.stdin]
format = "line"
[[sensors]]
name = "x"
unit = "u"
source = "stdin"
[[sensors.filters]]
type = "range"
max = 1000.0
action = "bad"
[[sensors]]
name = "y"
unit = "u"
source = "stdin"
output = "both"
window.kind = "tumbling"
window.size_ms = 10000
[[sensors.filters]]
type = "dedup"
[[sensors]]
name = "z"
unit = "u"
source = "stdin"
output = "windows"
window.kind = "tumbling"
window.size_ms = 10000
CONF
}

# start_stdin_agent DEVICE INPUT_FILE READINGS: reads INPUT_FILE on standard input, stops after
# READINGS readings and exits once the outbox is drained (background; name = DEVICE).
start_stdin_agent() {
  local dev=$1 input=$2 readings=$3
  "$AGENT_BIN" --config "$WORK/$dev.toml" --max-readings "$readings" --exit-when-drained \
    <"$input" >>"$WORK/$dev.log" 2>&1 &
  PIDS[$dev]=$!
}

# --- ZeroMQ uplink (issue 8) ---------------------------------------------------------------------

# make_zmq_keys DEVICE...: CURVE key pairs for the aggregator and each device in $WORK/keys, and
# the allow-list $WORK/allow-list.toml naming every device. Sets ZMQ_PORT, ZMQ_ENDPOINT and
# ZMQ_AGG_ARGS (aggregator settings for a ZeroMQ-only aggregator).
make_zmq_keys() {
  mkdir -p "$WORK/keys"
  "$AGENT_BIN" keygen --out "$WORK/keys" --name aggregator >/dev/null
  echo "[devices]" >"$WORK/allow-list.toml"
  for dev in "$@"; do
    "$AGENT_BIN" keygen --out "$WORK/keys" --name "$dev" >/dev/null
    echo "$(zmq_pubkey "$dev") = \"$dev\"" >>"$WORK/allow-list.toml"
  done
  ZMQ_PORT=${ZMQ_PORT:-$(free_port)}
  ZMQ_ENDPOINT="tcp://127.0.0.1:$ZMQ_PORT"
  ZMQ_AGG_ARGS=(--set mqtt.enabled=false --set "zmq.listen=$ZMQ_ENDPOINT"
    --set "zmq.secret_key_file=$WORK/keys/aggregator.key"
    --set "zmq.allow_list_file=$WORK/allow-list.toml" --set zmq.heartbeat_ms=${ZMQ_HEARTBEAT_MS:-200})
  MQTT_URI=${MQTT_URI:-tcp://127.0.0.1:1}  # unused by a ZeroMQ-only aggregator
}

zmq_pubkey() { grep '^public_key' "$WORK/keys/$1.pub" | cut -d= -f2- | tr -d ' '; }

# write_zmq_agent_config DEVICE RATE_HZ [KEY_NAME]: write_agent_config, switched to the ZeroMQ
# uplink with the key pair KEY_NAME (default: DEVICE's own).
write_zmq_agent_config() {
  local dev=$1 rate=${2:-200} key=${3:-$1}
  write_agent_config "$dev" "$rate"
  cat >>"$WORK/$dev.toml" <<CONF
[uplink]
transport = "zmq"
[uplink.zmq]
endpoint = "$ZMQ_ENDPOINT"
server_public_key_file = "$WORK/keys/aggregator.pub"
key_file = "$WORK/keys/$key.key"
ack_timeout_ms = ${ACK_TIMEOUT_MS:-2000}
heartbeat_ms = ${ZMQ_HEARTBEAT_MS:-200}
reconnect_min_ms = 100
reconnect_max_ms = 1000
CONF
}

metric_labeled() {  # metric_labeled PORT 'NAME{label="v"}': value of one labelled series (0 if absent)
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2; f=1} END {if (!f) print 0}'
}

# --- TLS test PKI (issue 8): everything in $PKI (set it first), made with the openssl CLI --------
tls_ossl() { openssl "$@" >>"$WORK/openssl.log" 2>&1 || fail "openssl $1 failed: $(tail -3 "$WORK/openssl.log")"; }
tls_new_ca() {  # tls_new_ca NAME
  tls_ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PKI/$1.key" \
    -out "$PKI/$1.crt" -days 2 -subj "/CN=outpost test $1"
}
tls_new_cert() {  # tls_new_cert CA NAME DAYS [SAN]: key + certificate signed by CA
  local ca=$1 name=$2 days=$3 san=${4:-}
  tls_ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PKI/$name.key" \
    -out "$PKI/$name.csr" -subj "/CN=$name"
  if [[ -n "$san" ]]; then
    printf 'subjectAltName=%s\n' "$san" >"$PKI/$name.ext"
    tls_ossl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
      -days "$days" -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
  else
    tls_ossl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
      -days "$days" -out "$PKI/$name.crt"
  fi
  chmod 600 "$PKI/$name.key"
}

# start_mosquitto_tls: a TLS-only Mosquitto (TLS >= 1.2, client certificates required, password
# file $PKI/passwd, ACL $PKI/acl) on a free port; sets MQTT_PORT and MQTT_URI (ssl://).
start_mosquitto_tls() {
  MQTT_PORT=$(free_port)
  cat >"$WORK/mosquitto.conf" <<CONF
per_listener_settings false
# Tests run as root in a private (0700) work dir: stay root to read the files there.
user root
allow_anonymous false
password_file $PKI/passwd
acl_file $PKI/acl
persistence false
max_queued_messages 10000
max_inflight_messages 100
set_tcp_nodelay true
log_dest stderr
log_type ${MOSQUITTO_LOG_TYPE:-all}
listener $MQTT_PORT 127.0.0.1
cafile $PKI/ca.crt
certfile $PKI/server.crt
keyfile $PKI/server.key
require_certificate true
tls_version tlsv1.2
CONF
  mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
  PIDS[mosquitto]=$!
  wait_for 10 "mosquitto (TLS) on $MQTT_PORT" port_open "$MQTT_PORT"
  MQTT_URI="ssl://127.0.0.1:$MQTT_PORT"
  log "mosquitto (TLS) pid ${PIDS[mosquitto]} on $MQTT_URI"
}

# make_tls_pki DEVICE...: in $PKI a CA, a server certificate for 127.0.0.1, client certificates
# and 0600 password files (<name>.pass) for "aggregator" and each device, the Mosquitto password
# file and the per-device ACL of docs/security.md.
make_tls_pki() {
  mkdir -p "$PKI"
  tls_new_ca ca
  tls_new_cert ca server 2 "IP:127.0.0.1"
  rm -f "$PKI/passwd"
  for u in aggregator "$@"; do
    tls_new_cert ca "$u" 2
    printf '%s-secret-%s\n' "$u" "$RANDOM$RANDOM" >"$PKI/$u.pass"
    chmod 600 "$PKI/$u.pass"
    [[ -f "$PKI/passwd" ]] || : >"$PKI/passwd"
    mosquitto_passwd -b "$PKI/passwd" "$u" "$(cat "$PKI/$u.pass")"
  done
  cat >"$PKI/acl" <<'ACL'
# The aggregator reads every batch and writes every ack.
user aggregator
topic read outpost/v1/+/batch
topic write outpost/v1/+/ack

# A device (user name = device id) writes only its own batch/status and reads only its own acks.
pattern write outpost/v1/%u/batch
pattern write outpost/v1/%u/status
pattern read outpost/v1/%u/ack
ACL
}

# The aggregator's settings for the TLS broker of make_tls_pki.
tls_aggregator_args() {
  TLS_AGG_ARGS=(--set "mqtt.ca_file=$PKI/ca.crt" --set "mqtt.cert_file=$PKI/aggregator.crt"
    --set "mqtt.key_file=$PKI/aggregator.key" --set mqtt.username=aggregator
    --set "mqtt.password_file=$PKI/aggregator.pass")
}
