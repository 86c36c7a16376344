#!/usr/bin/env bash
# Issue 17, Modbus RTU: a pseudo-terminal pair made with socat stands in for an RS-485 bus. On one
# end outpost-modbus-testserver (libmodbus) answers as units 1 and 2 and sends every 4th answer
# with a wrong CRC; the agent on the other end polls units 1, 2 and 3 (nobody answers for unit 3)
# on that bus, and a fourth slave on a serial device that does not exist. Checked: CRC errors
# counted, timeouts for unit 3 while units 1 and 2 keep flowing, connection errors for the missing
# device, and the exact values on Kafka with kcat (agent -> Mosquitto -> aggregator -> Kafka).
source "$(dirname "$0")/lib.sh"
: "${OUTPOST_MODBUS_SERVER:?set OUTPOST_MODBUS_SERVER to outpost-modbus-testserver}"
command -v socat >/dev/null || fail "socat is not installed (scripts/deps.sh installs it)"

start_mosquitto
start_devkafka
start_aggregator

socat pty,raw,echo=0,link="$WORK/tty-server" pty,raw,echo=0,link="$WORK/tty-agent" \
  >>"$WORK/socat.log" 2>&1 &
PIDS[socat]=$!
wait_for 10 "socat pty pair" test -e "$WORK/tty-server" -a -e "$WORK/tty-agent"
"$OUTPOST_MODBUS_SERVER" --rtu "$WORK/tty-server" --unit 1,2 --corrupt-crc-every 4 \
  --set holding:0=0x4049,0x0FDB,123 --ready-file "$WORK/mb.ready" >>"$WORK/mb.log" 2>&1 &
PIDS[mb]=$!
wait_for 10 "modbus RTU server" test -s "$WORK/mb.ready"

dev=modbus-rtu
HTTP_PORT=$(free_port)
write_agent_config "$dev"
sed -i '/^\[\[sensors\]\]/,$d' "$WORK/$dev.toml"
for unit in 1 2 3; do
  cat >>"$WORK/$dev.toml" <<CONF
[[sources.modbus.slaves]]
name = "u$unit"
transport = "rtu"
device = "$WORK/tty-agent"
baud = 9600
parity = "even"
unit_id = $unit
poll_interval_ms = 200
timeout_ms = 500
retries = 1
CONF
done
cat >>"$WORK/$dev.toml" <<CONF
[[sources.modbus.slaves]]
name = "gone"
transport = "rtu"
device = "$WORK/no-such-tty"
reconnect_min_ms = 100
reconnect_max_ms = 200
[[sensors]]
name = "pi"
source = "modbus"
modbus.slave = "u1"
modbus.address = 0
modbus.type = "float32"
[[sensors]]
name = "count"
source = "modbus"
modbus.slave = "u2"
modbus.address = 2
[[sensors]]
name = "silent"
source = "modbus"
modbus.slave = "u3"
modbus.address = 0
[[sensors]]
name = "absent"
source = "modbus"
modbus.slave = "gone"
modbus.function = "input"
modbus.address = 0
CONF
start_agent "$dev" --set "http.listen=127.0.0.1:$HTTP_PORT"

m() { metric_labeled "$HTTP_PORT" "$1"; }
ge() { [[ $(m "$1") -ge $2 ]]; }
wait_for 20 "readings of unit 1" ge 'outpost_agent_modbus_readings_total{slave="u1"}' 10
wait_for 20 "readings of unit 2" ge 'outpost_agent_modbus_readings_total{slave="u2"}' 10
crc() { echo $(( $(m 'outpost_agent_modbus_errors_total{slave="u1",reason="crc"}') +
  $(m 'outpost_agent_modbus_errors_total{slave="u2",reason="crc"}') )); }
crc_ge() { [[ $(crc) -ge $1 ]]; }
wait_for 10 "CRC errors" crc_ge 2
wait_for 10 "timeouts of unit 3" ge 'outpost_agent_modbus_errors_total{slave="u3",reason="timeout"}' 4
for u in u1 u2; do
  [[ $(m "outpost_agent_modbus_errors_total{slave=\"$u\",reason=\"timeout\"}") == 0 ]] ||
    fail "$u timed out"
done
wait_for 10 "connection errors" ge 'outpost_agent_modbus_errors_total{slave="gone",reason="connection"}' 2
[[ $(m 'outpost_agent_modbus_connected{slave="u1"}') == 1 ]] || fail "the bus is not open"
log "u1 $(m 'outpost_agent_modbus_readings_total{slave="u1"}') readings, u2 $(m 'outpost_agent_modbus_readings_total{slave="u2"}'), CRC errors $(crc), u3 timeouts $(m 'outpost_agent_modbus_errors_total{slave="u3",reason="timeout"}')"
[[ $(m 'outpost_agent_modbus_connected{slave="gone"}') == 0 ]] || fail "a missing device is open"
[[ $(m 'outpost_agent_modbus_readings_total{slave="u3"}') == 0 ]] || fail "unit 3 has readings"
grep -q 'link rtu:.*/tty-agent: 3 slave(s), 3 sensors in 3 read requests per cycle' "$WORK/$dev.log" ||
  fail "units 1 to 3 do not share one bus: $(grep 'link rtu' "$WORK/$dev.log")"

have_readings() {
  kafka_dump outpost.readings "$WORK/readings.jsonl"
  grep -q '"count"' "$WORK/readings.jsonl"
}
wait_for 30 "readings on Kafka" have_readings
python3 - "$WORK/readings.jsonl" <<'PY'
import collections, json, sys
vals = collections.defaultdict(set)
for line in open(sys.argv[1]):
    for r in json.loads(line)["readings"]:
        vals[r["sensor"]].add(r["value"])
assert vals["pi"] == {3.1415927410125732}, vals["pi"]
assert vals["count"] == {123.0}, vals["count"]
assert "silent" not in vals and "absent" not in vals, sorted(vals)
print("values OK:", dict(vals))
PY
echo "PASS: modbus_rtu"
