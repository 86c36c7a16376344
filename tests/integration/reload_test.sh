#!/usr/bin/env bash
# SIGHUP reloads the configuration: reloadable settings apply live (visible in /metrics and the
# log), others are named as needing a restart, an invalid file keeps the running configuration;
# SIGTERM then stops the agent within a couple of seconds. No broker needed (the agent runs
# disconnected, which it is built to survive).
source "$(dirname "$0")/lib.sh"

MQTT_URI="tcp://127.0.0.1:$(free_port)"  # nothing listens there
HTTP_PORT=$(free_port)
write_agent_config rl-1 50
sed -i "s/^listen = .*/listen = \"127.0.0.1:$HTTP_PORT\"/" "$WORK/rl-1.toml"
start_agent rl-1
wait_for 20 "agent metrics" curl -sf "http://127.0.0.1:$HTTP_PORT/metrics"
limit_is() { awk -v v="$1" 'BEGIN {exit !(ARGV[2] + 0 == v + 0)}' /dev/null "$(metric "$HTTP_PORT" outpost_agent_outbox_limit_bytes)"; }
limit_is 268435456 || fail "default limit"

# 1. Reloadable: the byte limit and the drain rate; not reloadable: a sensor's rate.
sed -i "s|^\[outbox\]|[outbox]\nmax_bytes = 1000000|" "$WORK/rl-1.toml"
printf '[uplink.drain]\nrate = 5000.0\n' >>"$WORK/rl-1.toml"
sed -i '0,/rate_hz = 50/s//rate_hz = 60/' "$WORK/rl-1.toml"
kill -HUP "${PIDS[rl-1]}"
wait_for 5 "new limit in /metrics" limit_is 1000000
grep -q "reload: outbox.max_bytes applied" "$WORK/rl-1.log" || fail "max_bytes not logged as applied"
grep -q "reload: uplink.drain.rate applied" "$WORK/rl-1.log" || fail "drain rate not logged as applied"
grep -q "reload: sensors changed; it is not reloadable and takes effect after a restart" \
  "$WORK/rl-1.log" || fail "sensors change not logged as needing a restart"

# 2. An invalid file: the running configuration stays, the reason is logged.
cp "$WORK/rl-1.toml" "$WORK/rl-1.good"
sed -i "s/^max_bytes = 1000000/max_bytes = 12/" "$WORK/rl-1.toml"
kill -HUP "${PIDS[rl-1]}"
wait_for 5 "invalid reload logged" grep -q "the new configuration is invalid, keeping the running one" "$WORK/rl-1.log"
grep "keeping the running one" "$WORK/rl-1.log" | grep -q "outbox.max_bytes" || fail "the error does not name the key"
kill -0 "${PIDS[rl-1]}" || fail "agent died on an invalid reload"
limit_is 1000000 || fail "limit changed by an invalid file"

# 3. SIGTERM: flushed and stopped within a couple of seconds.
t0=$(date +%s%N)
kill -TERM "${PIDS[rl-1]}"
wait "${PIDS[rl-1]}" || fail "agent exited with an error on SIGTERM"
unset "PIDS[rl-1]"
ms=$((($(date +%s%N) - t0) / 1000000))
((ms < 3000)) || fail "SIGTERM took $ms ms"
grep -q "agent stopped" "$WORK/rl-1.log" || fail "no clean stop"
echo "PASS: reload (live settings applied, restart-only named, invalid kept), SIGTERM in $ms ms"
