#!/usr/bin/env bash
# Issue 17, Modbus TCP end to end: an agent polls two Modbus slaves (outpost-modbus-testserver,
# libmodbus's own server code) on loopback. Slave "a" holds one value of every type and byte order,
# coils and a discrete input, and one sensor at an unmapped address (exception 2, counted by code);
# slave "b" one register. Then b stops answering (SIGSTOP): its timeouts are counted while a's
# readings keep flowing; b answers again (SIGCONT) and its readings resume. SIGHUP adds a sensor
# on b and changes b's retries: only b's link restarts. kcat must find the exact decoded values
# on outpost.readings (agent -> Mosquitto -> aggregator -> Kafka). A last SIGHUP removes b's
# sensors: b's link stops, a's goes on.
source "$(dirname "$0")/lib.sh"
: "${OUTPOST_MODBUS_SERVER:?set OUTPOST_MODBUS_SERVER to outpost-modbus-testserver}"

start_mosquitto
start_devkafka
start_aggregator

start_modbus_server() {  # start_modbus_server NAME PORT ARGS...
  local name=$1 port=$2
  shift 2
  "$OUTPOST_MODBUS_SERVER" --tcp "$port" --ready-file "$WORK/$name.ready" "$@" \
    >>"$WORK/$name.log" 2>&1 &
  PIDS[$name]=$!
  wait_for 10 "modbus server $name" test -s "$WORK/$name.ready"
}
PORT_A=$(free_port)
PORT_B=$(free_port)
# float32 pi ABCD / CDAB, int16 -2, uint32 0x12345678 DCBA, float64 -1.5 ABCD,
# int64 -1234567890123 BADC, bool register 7; input: int32 -100000 ABCD, uint16 0x1234 BADC.
# With max_gap = 2, coils 0 and 2 share one request: 6 requests per cycle (holding 0-15, holding
# 198-200, holding 500, input 0-2, coils 0-2, discrete input 5). Holding 200 is past the map
# (--size 200): the request 198-200 is answered with exception 2 and split, so "edge" (uint32 at
# 198) keeps its readings and only "beyond" fails.
start_modbus_server mb-a "$PORT_A" \
  --set holding:0=0x4049,0x0FDB,0x0FDB,0x4049,0xFFFE,0x7856,0x3412,0xBFF8,0,0,0 \
  --set holding:11=0xFFFF,0xE0FE,0x048E,0x35FB,7 --set holding:198=1,2 \
  --set input:0=0xFFFE,0x7960,0x3412 --set coil:0=1,0,1 --set discrete_input:5=1
start_modbus_server mb-b "$PORT_B" --set holding:0=42,7

dev=modbus-dev
HTTP_PORT=$(free_port)
write_agent_config "$dev"
sed -i '/^\[\[sensors\]\]/,$d' "$WORK/$dev.toml"
modbus_sensor() {  # modbus_sensor NAME SLAVE FUNCTION ADDRESS TYPE [ORDER] [extra line]
  printf '[[sensors]]\nname = "%s"\nsource = "modbus"\nmodbus.slave = "%s"\nmodbus.function = "%s"\nmodbus.address = %s\n' \
    "$1" "$2" "$3" "$4"
  [[ "$3" == coil || "$3" == discrete_input ]] || printf 'modbus.type = "%s"\nmodbus.order = "%s"\n' "$5" "${6:-ABCD}"
  [[ -z "${7:-}" ]] || printf '%s\n' "$7"
}
{
  cat <<CONF
[[sources.modbus.slaves]]
name = "a"
host = "127.0.0.1"
port = $PORT_A
poll_interval_ms = 200
timeout_ms = 1000
max_gap = 2
[[sources.modbus.slaves]]
name = "b"
host = "127.0.0.1"
port = $PORT_B
poll_interval_ms = 200
timeout_ms = 300
retries = 1
reconnect_min_ms = 100
reconnect_max_ms = 400
CONF
  modbus_sensor f32_abcd a holding 0 float32 ABCD
  modbus_sensor f32_cdab a holding 2 float32 CDAB
  modbus_sensor i16_scaled a holding 4 int16 ABCD $'modbus.scale = 0.5\nmodbus.offset = 10.0'
  modbus_sensor u32_dcba a holding 5 uint32 DCBA
  modbus_sensor f64_abcd a holding 7 float64 ABCD
  modbus_sensor i64_badc a holding 11 int64 BADC
  modbus_sensor bool_reg a holding 15 bool
  modbus_sensor i32_in a input 0 int32 ABCD
  modbus_sensor u16_badc a input 2 uint16 BADC
  modbus_sensor coil0 a coil 0
  modbus_sensor coil2 a coil 2
  modbus_sensor di5 a discrete_input 5
  modbus_sensor unmapped a holding 500 uint16
  modbus_sensor edge a holding 198 uint32
  modbus_sensor beyond a holding 200 uint16
  modbus_sensor b_val b holding 0 uint16
} >>"$WORK/$dev.toml"
start_agent "$dev" --set "http.listen=127.0.0.1:$HTTP_PORT"

m() { metric_labeled "$HTTP_PORT" "$1"; }
ge() { [[ $(m "$1") -ge $2 ]]; }
wait_for 20 "readings of slave a" ge 'outpost_agent_modbus_readings_total{slave="a"}' 60
wait_for 10 "readings of slave b" ge 'outpost_agent_modbus_readings_total{slave="b"}' 5
grep -q 'modbus: link tcp:a: 1 slave(s), 15 sensors in 6 read requests per cycle' "$WORK/$dev.log" ||
  fail "slave a's map is not read in 6 requests: $(grep 'link tcp:a' "$WORK/$dev.log")"
wait_for 10 "the refused range split" grep -q \
  'slave "a": exception 2 (illegal data address) for holding 198..200 read together; reading its 2 sensors one by one' \
  "$WORK/$dev.log"
wait_for 10 "exception 2 counted" ge 'outpost_agent_modbus_exceptions_total{slave="a",code="2"}' 2
[[ $(m 'outpost_agent_modbus_errors_total{slave="a",reason="timeout"}') == 0 ]] ||
  fail "slave a timed out"
curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" >"$WORK/exposition.txt"
promtool check metrics <"$WORK/exposition.txt" >"$WORK/promtool.txt" 2>&1 ||
  fail "promtool check metrics: $(cat "$WORK/promtool.txt")"

# b stops answering: timeouts counted, a keeps flowing.
kill -STOP "${PIDS[mb-b]}"
a0=$(m 'outpost_agent_modbus_readings_total{slave="a"}')
sleep 0.5
b0=$(m 'outpost_agent_modbus_readings_total{slave="b"}')
wait_for 10 "timeouts of slave b" ge 'outpost_agent_modbus_errors_total{slave="b",reason="timeout"}' 4
sleep 1
a1=$(m 'outpost_agent_modbus_readings_total{slave="a"}')
b1=$(m 'outpost_agent_modbus_readings_total{slave="b"}')
log "while b is stopped: a +$((a1 - a0)) readings, b +$((b1 - b0))"
[[ $((a1 - a0)) -ge 60 ]] || fail "slave a stalled while b was not answering (+$((a1 - a0)))"
[[ $b1 == "$b0" ]] || fail "slave b produced readings while stopped"
kill -CONT "${PIDS[mb-b]}"
wait_for 15 "slave b again" ge 'outpost_agent_modbus_readings_total{slave="b"}' $((b1 + 5))

# SIGHUP: a new sensor on b and b's retries changed; a's link is left alone.
modbus_sensor b_new b holding 1 uint16 >>"$WORK/$dev.toml"
sed -i 's/^retries = 1$/retries = 2/' "$WORK/$dev.toml"
kill -HUP "${PIDS[$dev]}"
wait_for 10 "reload" grep -q 'modbus link tcp:b restarted' "$WORK/$dev.log"
! grep -q 'modbus link tcp:a' "$WORK/$dev.log" || fail "reload touched slave a's link"
! grep -q 'not reloadable' "$WORK/$dev.log" || fail "$(grep 'not reloadable' "$WORK/$dev.log")"

# Kafka: exact values, as kcat sees them.
have_b_new() {
  kafka_dump outpost.readings "$WORK/readings.jsonl"
  grep -q '"b_new"' "$WORK/readings.jsonl"
}
wait_for 30 "b_new on Kafka" have_b_new
python3 - "$WORK/readings.jsonl" "$dev" <<'PY'
import collections, json, sys
vals = collections.defaultdict(set)
for line in open(sys.argv[1]):
    m = json.loads(line)
    assert m["device"] == sys.argv[2], m["device"]
    for r in m["readings"]:
        assert r["quality"] == "good", r
        vals[r["sensor"]].add(r["value"])
want = {
    "f32_abcd": 3.1415927410125732, "f32_cdab": 3.1415927410125732, "i16_scaled": 9.0,
    "u32_dcba": 305419896.0, "f64_abcd": -1.5, "i64_badc": -1234567890123.0, "bool_reg": 1.0,
    "i32_in": -100000.0, "u16_badc": 4660.0, "coil0": 1.0, "coil2": 1.0, "di5": 1.0,
    "b_val": 42.0, "b_new": 7.0, "edge": 65538.0,
}
for k, v in want.items():
    assert vals[k] == {v}, f"{k}: values on Kafka {sorted(vals[k])}, expected only {v}"
assert "unmapped" not in vals and "beyond" not in vals, "an unmapped register produced readings"
print("values OK:", ", ".join(f"{k}={v}" for k, v in want.items()))
PY
# SIGHUP without b's sensors: b's link stops (its connection closes), a's keeps running.
python3 - "$WORK/$dev.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r"(?=^\[\[sensors\]\]$)", text, flags=re.M)
open(sys.argv[1], "w").write("".join(b for b in blocks if 'modbus.slave = "b"' not in b))
PY
kill -HUP "${PIDS[$dev]}"
wait_for 10 "b's link stopped" grep -q 'modbus link tcp:b stopped' "$WORK/$dev.log"
[[ $(m 'outpost_agent_modbus_connected{slave="b"}') == 0 ]] || fail "b's link is still open"
a2=$(m 'outpost_agent_modbus_readings_total{slave="a"}')
wait_for 10 "slave a after the reloads" ge 'outpost_agent_modbus_readings_total{slave="a"}' $((a2 + 26))
! grep -q 'modbus link tcp:a' "$WORK/$dev.log" || fail "a reload touched slave a's link"
echo "PASS: modbus_tcp"
