#!/usr/bin/env bash
# Integration test for outpost-devkafka (IN-MEMORY DEVELOPMENT Kafka broker).
#
# Usage: devkafka_test.sh /path/to/outpost-devkafka
#
# Starts the broker on a free loopback port, waits for its ready file, then checks with kcat (an
# independent Kafka client) that:
#   - the default topics are pre-created with --partitions partitions;
#   - 1000 produced messages come back exactly once and in order within each partition;
#   - the fault-injection control port (--control) answers its commands, rejects bad ones naming
#     the argument, injected Produce errors are consumed by a producer that still delivers, and a
#     broker set down refuses clients until it is set up again; --control off loopback is refused;
#   - SIGTERM stops the broker with exit code 0 within 5 s and nothing stays listening.
# Everything it starts is killed on exit (trap), whatever the outcome.
set -euo pipefail

BIN=${1:?usage: devkafka_test.sh /path/to/outpost-devkafka}
[[ -x "$BIN" ]] || { echo "FAIL: $BIN is not executable" >&2; exit 1; }
command -v kcat >/dev/null || { echo "FAIL: kcat not installed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 not installed" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/devkafka_test.XXXXXX")
BROKER_PID=""

cleanup() {
  local rc=$?
  if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 "$BROKER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f "$WORK/broker.log" ]]; then
    echo "--- broker log (last 40 lines) ---" >&2
    tail -n 40 "$WORK/broker.log" >&2 || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

port_open() {
  python3 -c 'import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

PORT=$(free_port)
BOOT="127.0.0.1:$PORT"
CTL_PORT=$(free_port)
PARTITIONS=3
TOPIC="devkafka.test"
N=1000

"$BIN" --listen "$BOOT" --partitions "$PARTITIONS" --ready-file "$WORK/ready" \
  --control "127.0.0.1:$CTL_PORT" \
  >"$WORK/broker.out" 2>"$WORK/broker.log" &
BROKER_PID=$!

# Readiness: bounded wait for the ready file (written atomically once listening).
for _ in $(seq 1 100); do
  [[ -s "$WORK/ready" ]] && break
  kill -0 "$BROKER_PID" 2>/dev/null || fail "broker exited during start-up"
  sleep 0.1
done
[[ -s "$WORK/ready" ]] || fail "broker not ready within 10 s"
[[ "$(cat "$WORK/ready")" == "$BOOT" ]] || fail "ready file holds '$(cat "$WORK/ready")', not $BOOT"
grep -qx "$BOOT" "$WORK/broker.out" || fail "bootstrap address not printed on stdout"
grep -q "IN-MEMORY DEVELOPMENT BROKER" "$WORK/broker.log" || fail "start-up warning not logged"

# Pre-created topics, each with --partitions partitions.
timeout 20 kcat -b "$BOOT" -L -m 10 >"$WORK/metadata.txt" || fail "kcat -L failed"
for t in outpost.readings outpost.anomalies outpost.deadletter outpost.device-status; do
  grep -q "topic \"$t\" with $PARTITIONS partitions" "$WORK/metadata.txt" ||
    fail "topic $t with $PARTITIONS partitions missing from kcat -L: $(cat "$WORK/metadata.txt")"
done

# Produce N known messages (keyed, so they spread over partitions; idempotent, so a retry can
# neither duplicate nor reorder them). The topic is auto-created by the mock.
seq 1 "$N" | awk '{ printf "k%d:%d\n", $1 % 7, $1 }' >"$WORK/sent.txt"
timeout 30 kcat -b "$BOOT" -P -t "$TOPIC" -K : -X enable.idempotence=true \
  <"$WORK/sent.txt" 2>"$WORK/produce.err" || fail "kcat -P failed: $(cat "$WORK/produce.err")"
if grep -qi "fail\|error" "$WORK/produce.err"; then
  fail "kcat -P reported: $(cat "$WORK/produce.err")"
fi

# Consume everything from the beginning; -e exits at the end of every partition.
timeout 30 kcat -b "$BOOT" -C -t "$TOPIC" -e -o beginning -q -f '%p %o %k %s\n' \
  >"$WORK/received.txt" || fail "kcat -C failed"

got=$(wc -l <"$WORK/received.txt")
[[ "$got" -eq "$N" ]] || fail "consumed $got messages, expected $N"
# Exactly once: the values are exactly 1..N.
awk '{ print $4 }' "$WORK/received.txt" | sort -n >"$WORK/values.txt"
seq 1 "$N" | diff -q - "$WORK/values.txt" >/dev/null ||
  fail "consumed values are not exactly 1..$N once each"
# Keys travelled with their values.
awk '$3 != "k" ($4 % 7) { bad = 1 } END { exit bad }' "$WORK/received.txt" ||
  fail "a key does not match its value"
# In order per partition: values increase and offsets are contiguous from 0.
awk '{
       p = $1
       if ((p in last) && $4 <= last[p]) { print "value order broken in partition " p ": " $0; bad = 1 }
       if ($2 != next_off[p] + 0) { print "offset gap in partition " p ": " $0; bad = 1 }
       last[p] = $4; next_off[p] = $2 + 1
     }
     END { exit bad }' "$WORK/received.txt" >&2 || fail "messages out of order within a partition"
parts=$(awk '{ print $1 }' "$WORK/received.txt" | sort -u | wc -l)
echo "consumed $got messages over $parts partition(s), exactly once and in order"

# Fault injection over the control port: one command a line, one reply a line.
ctl() {
  python3 - "$CTL_PORT" "$@" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rw")
for cmd in sys.argv[2:]:
    f.write(cmd + "\n")
    f.flush()
    print(f.readline().rstrip("\n"))
PY
}
expect_reply() {  # expect_reply COMMAND PATTERN
  local r
  r=$(ctl "$1")
  [[ "$r" == $2 ]] || fail "control '$1' replied '$r', expected '$2'"
}
expect_reply "help" "ok commands: push-errors*"
expect_reply "brokers" "ok 1"
expect_reply "bogus" "error: unknown command 'bogus'*"
expect_reply "rtt 7 10" "error: broker '7': allowed are 1..1 or all"
expect_reply "push-errors Produce NO_SUCH_ERROR" "error: ERROR 'NO_SUCH_ERROR'*"
expect_reply "leader $TOPIC 0 1" "error: topic '$TOPIC' was not pre-created*"
expect_reply "leader outpost.readings 99 1" "error: PARTITION '99': outpost.readings has partitions 0..2"
expect_reply "push-broker-errors 1 Produce NOT_LEADER_OR_FOLLOWER 2" "ok broker 1: the next 2 requests*"
expect_reply "pending-errors 1 Produce" "ok 2"
# A producer meets both errors, retries and delivers.
echo "k:after-errors" | timeout 30 kcat -b "$BOOT" -P -t "$TOPIC" -K : 2>"$WORK/produce2.err" ||
  fail "kcat -P after injected errors failed: $(cat "$WORK/produce2.err")"
expect_reply "pending-errors 1 Produce" "ok 0"
timeout 30 kcat -b "$BOOT" -C -t "$TOPIC" -e -o beginning -q -f '%s\n' >"$WORK/received2.txt" ||
  fail "kcat -C failed"
grep -qx "after-errors" "$WORK/received2.txt" || fail "the message produced through injected errors is missing"
# Broker down: clients are refused (metadata fails), then served again once it is up.
expect_reply "broker-down 1" "ok broker 1 down"
timeout 20 kcat -b "$BOOT" -L -m 2 >/dev/null 2>&1 && fail "kcat -L succeeded while the broker was down"
expect_reply "broker-up all" "ok broker all up"
timeout 20 kcat -b "$BOOT" -L -m 5 >/dev/null 2>&1 || fail "kcat -L failed after the broker came back up"
expect_reply "rtt all 0" "ok broker all round-trip time 0 ms"
echo "control port: commands, injected errors, broker down/up checked"
rc=0
"$BIN" --listen 127.0.0.1:0 --control 192.0.2.1:1 >/dev/null 2>"$WORK/ctl-bad.err" || rc=$?
[[ $rc -eq 2 ]] || fail "--control off loopback exited with $rc, expected 2"
grep -q "allowed is a loopback address" "$WORK/ctl-bad.err" || fail "no clear error for --control off loopback: $(cat "$WORK/ctl-bad.err")"

# Clean stop: SIGTERM, exit 0 within 5 s, nothing left listening, ready file removed.
kill -TERM "$BROKER_PID"
for _ in $(seq 1 50); do
  kill -0 "$BROKER_PID" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$BROKER_PID" 2>/dev/null && fail "broker still running 5 s after SIGTERM"
rc=0
wait "$BROKER_PID" || rc=$?
BROKER_PID=""
[[ $rc -eq 0 ]] || fail "broker exited with $rc after SIGTERM, expected 0"
port_open "$PORT" && fail "port $PORT still accepts connections after stop"
[[ ! -e "$WORK/ready" ]] || fail "ready file not removed on clean stop"

echo "PASS: outpost-devkafka"
