#!/usr/bin/env bash
# The ZeroMQ uplink is a module (outpost-agent-zmq.so) loaded only when uplink.transport = "zmq":
#  - the outpost-agent executable does not link libzmq;
#  - an agent on MQTT never maps libzmq (or its libsodium), an agent on ZeroMQ maps both;
#  - without the module, a ZeroMQ configuration is refused with a message naming uplink.transport
#    (exit 2) and keygen fails cleanly, while an MQTT configuration still works;
#  - OUTPOST_AGENT_MODULE_DIR points an agent at a module elsewhere.
source "$(dirname "$0")/lib.sh"
unset OUTPOST_AGENT_MODULE_DIR

if readelf -d "$AGENT_BIN" | grep -E 'NEEDED.*(libzmq|libsodium)'; then
  fail "$AGENT_BIN links the libraries above; they belong in the module"
fi

start_mosquitto
make_zmq_keys zm-z  # keygen itself runs through the module
write_agent_config zm-m 10
write_zmq_agent_config zm-z 10
for dev in zm-m zm-z; do
  port=$(free_port)
  start_agent "$dev" --set "http.listen=127.0.0.1:$port"
  wait_for 20 "$dev metrics" curl -sf "http://127.0.0.1:$port/metrics"
  awk '{print $6}' "/proc/${PIDS[$dev]}/maps" | sort -u >"$WORK/$dev.maps"
done
if grep -E 'libzmq|libsodium|outpost-agent-zmq' "$WORK/zm-m.maps"; then
  fail "the MQTT agent mapped the libraries above"
fi
for lib in outpost-agent-zmq.so libzmq.so libsodium.so; do
  grep -q "$lib" "$WORK/zm-z.maps" || fail "the ZeroMQ agent did not map $lib"
done
log "MQTT agent: no libzmq mapped; ZeroMQ agent: module and libzmq mapped"
stop_proc zm-m
stop_proc zm-z

# An executable without its module (no outpost-agent-zmq.so beside it or in ../lib/outpost).
mkdir -p "$WORK/bare"
cp "$AGENT_BIN" "$WORK/bare/outpost-agent"
rc=0
"$WORK/bare/outpost-agent" --config "$WORK/zm-z.toml" --check-config >"$WORK/bare.out" 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "ZeroMQ config without the module: exit $rc, want 2: $(cat "$WORK/bare.out")"
grep -q 'uplink.transport = "zmq"' "$WORK/bare.out" || fail "message does not name uplink.transport: $(cat "$WORK/bare.out")"
grep -q 'outpost-agent-zmq.so' "$WORK/bare.out" || fail "message does not name the module: $(cat "$WORK/bare.out")"
log "without the module: $(cat "$WORK/bare.out")"
"$WORK/bare/outpost-agent" --config "$WORK/zm-m.toml" --check-config >/dev/null ||
  fail "an MQTT configuration needs the ZeroMQ module"
rc=0
"$WORK/bare/outpost-agent" keygen --out "$WORK/bare-keys" --name x >"$WORK/bare-keygen.out" 2>&1 || rc=$?
[[ $rc == 1 ]] && grep -q 'outpost-agent keygen needs the ZeroMQ module' "$WORK/bare-keygen.out" ||
  fail "keygen without the module: exit $rc: $(cat "$WORK/bare-keygen.out")"
OUTPOST_AGENT_MODULE_DIR=$(dirname "$AGENT_BIN") "$WORK/bare/outpost-agent" --config "$WORK/zm-z.toml" \
  --check-config >/dev/null || fail "OUTPOST_AGENT_MODULE_DIR did not find the module"
echo "PASS: ZeroMQ module loaded only for uplink.transport = \"zmq\"; clear error without it"
