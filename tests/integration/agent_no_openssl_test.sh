#!/usr/bin/env bash
# Without TLS the agent neither links cpp-httplib nor initialises OpenSSL (issue 17 footprint):
#  - the executable does not NEED libcpp-httplib (whose static constructor calls OPENSSL_init_ssl)
#    and a running agent does not map it;
#  - with a tcp:// broker, OPENSSL_init_ssl is never called (an LD_PRELOAD probe records each call)
#    while /metrics, /healthz and /readyz answer;
#  - and it maps neither libssl nor libcrypto: plain MQTT runs on Paho's non-SSL library, and the
#    TLS client is a module (outpost-agent-mqtt-tls.so) loaded only for an ssl:// broker;
#  - a SIGHUP that moves the MQTT source to ssl:// loads the module then;
#  - with an ssl:// broker it is called (Paho initialises OpenSSL) and the module and OpenSSL are
#    mapped: the probe itself works.
source "$(dirname "$0")/lib.sh"
: "${OUTPOST_OPENSSL_PROBE:?set OUTPOST_OPENSSL_PROBE to the probe library}"

if readelf -d "$AGENT_BIN" | grep -E 'NEEDED.*(cpp-httplib|libssl|libcrypto|paho-mqtt3as|paho-mqttpp)'; then
  fail "$AGENT_BIN links the libraries above"
fi

start_mosquitto
write_agent_config ns-plain 10
cat >>"$WORK/ns-plain.toml" <<CONF
[sources.mqtt]
broker = "$MQTT_URI"  # the source's
[[sensors]]
name = "m"
source = "mqtt"
mqtt.topic = "meter/m"
CONF
port=$(free_port)
LD_PRELOAD=$OUTPOST_OPENSSL_PROBE OUTPOST_OPENSSL_PROBE_LOG=$WORK/plain.probe \
  start_agent ns-plain --set "http.listen=127.0.0.1:$port"
wait_for 20 "agent metrics" curl -sf "http://127.0.0.1:$port/metrics"
wait_for 20 "agent uplink connected" \
  bash -c "curl -sf http://127.0.0.1:$port/metrics | grep -q '^outpost_agent_uplink_connected 1'"
curl -sf "http://127.0.0.1:$port/healthz" | grep -q '"status":"ok"' || fail "/healthz not ok"
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || fail "/readyz not ready"
grep -q 'openssl_init_probe' "/proc/${PIDS[ns-plain]}/maps" || fail "the probe was not preloaded"
if grep -E 'cpp-httplib' "/proc/${PIDS[ns-plain]}/maps"; then fail "the agent mapped cpp-httplib"; fi
[[ ! -s $WORK/plain.probe ]] || fail "OPENSSL_init_ssl called without TLS: $(wc -l <"$WORK/plain.probe") calls"
if grep -E 'libssl|libcrypto|paho-mqtt3as|mqtt-tls' "/proc/${PIDS[ns-plain]}/maps"; then
  fail "the agent mapped TLS code without a TLS broker"
fi
log "tcp:// brokers: no OPENSSL_init_ssl call, no cpp-httplib, libssl, libcrypto or TLS module mapped"

# SIGHUP that moves the MQTT source to an ssl:// broker (only the source's: a changed uplink broker
# needs a restart): the TLS module is loaded then, on demand.
sed -i "s|^broker = .*# the source's\$|broker = \"ssl://127.0.0.1:$(free_port)\"|" "$WORK/ns-plain.toml"
[[ $(grep -c '^broker = "ssl://' "$WORK/ns-plain.toml") == 1 ]] || fail "could not rewrite the source's broker"
kill -HUP "${PIDS[ns-plain]}"
wait_for 20 "TLS module mapped after the reload" grep -q 'outpost-agent-mqtt-tls.so' "/proc/${PIDS[ns-plain]}/maps"
stop_proc ns-plain
log "SIGHUP to an ssl:// MQTT source: the TLS module loaded on demand"

# Positive control: an ssl:// broker (nothing listens there; the agent keeps retrying).
write_agent_config ns-tls 10
sed -i "s|^broker = \"$MQTT_URI\"|broker = \"ssl://127.0.0.1:$(free_port)\"|" "$WORK/ns-tls.toml"
grep -q '^broker = "ssl://' "$WORK/ns-tls.toml" || fail "could not write the ssl:// configuration"
port=$(free_port)
LD_PRELOAD=$OUTPOST_OPENSSL_PROBE OUTPOST_OPENSSL_PROBE_LOG=$WORK/tls.probe \
  start_agent ns-tls --set "http.listen=127.0.0.1:$port"
wait_for 20 "agent metrics" curl -sf "http://127.0.0.1:$port/metrics"
wait_for 20 "OPENSSL_init_ssl with an ssl:// broker" test -s "$WORK/tls.probe"
grep -q 'outpost-agent-mqtt-tls.so' "/proc/${PIDS[ns-tls]}/maps" || fail "TLS module not mapped"
grep -q 'libssl' "/proc/${PIDS[ns-tls]}/maps" || fail "libssl not mapped with an ssl:// broker"
stop_proc ns-tls
echo "PASS: no cpp-httplib and no OpenSSL mapped without TLS; TLS module and OpenSSL with ssl://"
