#!/usr/bin/env bash
# scripts/kafka.sh and the real Apache Kafka broker it runs (issue 18), checked from outside:
# - start: the Outpost topics (incl. the scaled mode's outpost.batches and outpost.state) with 6
#   partitions, device-status, latest and state compacted, the others with a retention; status;
#   stop by pid; a restart on the same folder keeps port and data;
# - librdkafka 2.0.2 (the aggregator's) against this broker: idempotent producer, transactions
#   (incl. offsets committed in a transaction) and consumer groups (outpost-kafka-tool check);
# - faults: a port already taken and a broker that never answers give an error naming the port
#   and the log file, and leave nothing running.
source "$(dirname "$0")/lib.sh"

export OUTPOST_KAFKA_TOOL="$KAFKA_TOOL_BIN"
no_broker_left() {  # no_broker_left DIR: no java process runs with DIR's config
  ! pgrep -f "$1/server.properties" >/dev/null || fail "a broker of $1 is still running"
}

dir="$WORK/k"
KAFKA=$("$KAFKA_SH" start --dir "$dir" 2>"$WORK/start.log") || fail "start: $(cat "$WORK/start.log")"
PIDS[kafka]=$(cat "$dir/kafka.pid")
[[ "$KAFKA" =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "start printed '$KAFKA', not a loopback bootstrap address"
"$KAFKA_SH" status --dir "$dir" | grep -q "running: pid ${PIDS[kafka]}, bootstrap $KAFKA" ||
  fail "status: $("$KAFKA_SH" status --dir "$dir")"

kcat -L -b "$KAFKA" -m 10 >"$WORK/meta.txt"
for t in outpost.readings outpost.anomalies outpost.deadletter outpost.device-status outpost.latest \
  outpost.batches outpost.state; do
  grep -q "topic \"$t\" with 6 partitions" "$WORK/meta.txt" || fail "$t: $(grep "$t" "$WORK/meta.txt")"
done
"$KAFKA_SH" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA" --describe \
  >"$WORK/describe.txt" 2>"$WORK/describe.err" || fail "TopicCommand: $(tail -3 "$WORK/describe.err")"
for t in outpost.device-status outpost.latest outpost.state; do
  grep -E "Topic: $t\s.*Configs:.*cleanup.policy=compact" "$WORK/describe.txt" >/dev/null ||
    fail "$t is not compacted: $(grep -m1 "Topic: $t" "$WORK/describe.txt")"
done
for t in outpost.readings outpost.batches; do
  ! grep -E "Topic: $t\s.*Configs:.*cleanup.policy=compact" "$WORK/describe.txt" >/dev/null ||
    fail "$t is compacted: $(grep -m1 "Topic: $t" "$WORK/describe.txt")"
done
# The failover tests rely on these (scripts/kafka.sh's generated server.properties).
for kv in group.initial.rebalance.delay.ms=0 transaction.abort.timed.out.transaction.cleanup.interval.ms=1000; do
  grep -qx "$kv" "$dir/server.properties" || fail "server.properties lacks $kv"
done
grep -E 'Topic: outpost.readings\s.*Configs:.*retention.ms=604800000' "$WORK/describe.txt" >/dev/null ||
  fail "outpost.readings has no 7-day retention: $(grep -m1 'outpost.readings' "$WORK/describe.txt")"
log "topics: 6 partitions each, device-status, latest and state compacted, readings kept 7 days"

"$KAFKA_TOOL_BIN" check --bootstrap "$KAFKA" | tee "$WORK/check.txt" | grep -v '^created'
[[ $(grep -c '^PASS' "$WORK/check.txt") == 4 ]] || fail "the client compatibility check did not pass"

# Stop by pid; status says so; a restart on the same folder keeps port and topics.
pid=${PIDS[kafka]}
"$KAFKA_SH" stop --dir "$dir" 2>/dev/null
unset "PIDS[kafka]"
! kill -0 "$pid" 2>/dev/null || fail "the broker (pid $pid) still runs after stop"
! "$KAFKA_SH" status --dir "$dir" >"$WORK/status.txt" || fail "status after stop: $(cat "$WORK/status.txt")"
grep -q "not running" "$WORK/status.txt" || fail "status after stop said: $(cat "$WORK/status.txt")"
again=$("$KAFKA_SH" start --dir "$dir" 2>>"$WORK/start.log") || fail "restart: $(tail -3 "$WORK/start.log")"
PIDS[kafka]=$(cat "$dir/kafka.pid")
[[ "$again" == "$KAFKA" ]] || fail "restarted on $again, not on $KAFKA"
kcat -L -b "$KAFKA" -m 10 | grep -q 'topic "outpost.readings" with 6 partitions' || fail "topics lost on restart"
"$KAFKA_SH" stop --dir "$dir" 2>/dev/null
unset "PIDS[kafka]"
no_broker_left "$dir"
log "stop, status, restart with the same port and data: OK"

# Fault 1: the port is taken. The error names the port and the log; nothing is left running.
busy=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(120)' "$busy" &
PIDS[squatter]=$!
wait_for 10 "a listener on $busy" port_open "$busy"
if "$KAFKA_SH" start --dir "$WORK/busy" --port "$busy" --timeout 60 --no-topics >/dev/null 2>"$WORK/busy.err"; then
  fail "start succeeded on a port that is taken"
fi
grep -q "port $busy" "$WORK/busy.err" && grep -q "$WORK/busy/server.log" "$WORK/busy.err" ||
  fail "the error does not name the port and the log: $(cat "$WORK/busy.err")"
no_broker_left "$WORK/busy"
stop_proc squatter
log "port taken: $(head -n 1 "$WORK/busy.err")"

# Fault 2: a broker that never answers (a broker-only node whose controller does not exist).
p=$(free_port)
if "$KAFKA_SH" start --dir "$WORK/mute" --port "$p" --timeout 5 --no-topics --set process.roles=broker \
  --set node.id=2 --set "listeners=PLAINTEXT://127.0.0.1:$p" >/dev/null 2>"$WORK/mute.err"; then
  fail "start succeeded without a controller"
fi
grep -q "within 5s" "$WORK/mute.err" && grep -q "port $p" "$WORK/mute.err" &&
  grep -q "$WORK/mute/server.log" "$WORK/mute.err" ||
  fail "the time-out error does not name the port and the log: $(cat "$WORK/mute.err")"
no_broker_left "$WORK/mute"
log "never up: $(cat "$WORK/mute.err")"

# Bad input names the option and what is allowed.
! "$KAFKA_SH" start --partitions 0 2>"$WORK/bad.err" || fail "--partitions 0 accepted"
grep -q -- "--partitions '0': allowed is 1-1000" "$WORK/bad.err" || fail "bad --partitions: $(cat "$WORK/bad.err")"
echo "PASS: kafka.sh and the real broker"
