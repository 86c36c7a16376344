#!/usr/bin/env bash
# Runs the whole Outpost system locally: Mosquitto, a Kafka broker (the in-memory development one,
# or with --kafka real a real Apache Kafka broker from scripts/kafka.sh), the
# aggregator, a few real agents with simulated sensors, and a simulated fleet (outpost-sim: virtual
# agents speaking the uplink protocol, realistic signals, labelled anomalies). On a fresh Debian 12
# machine as root it first installs what is missing and builds.
#
# Usage: scripts/demo.sh [--duration SECONDS] [--agents N] [--sim-devices N] [--rate HZ]
#                        [--kafka dev|real] [--scaled] [--keep]
#   --duration S     stop by itself after S seconds (default: run until Ctrl-C)
#   --agents N       real outpost-agent processes (default 3; 4 sensors each)
#   --sim-devices N  virtual devices of the simulated fleet (default 20, 0 = none; 7 sensors each)
#   --rate HZ        readings per second per sensor, agents and fleet (default 5)
#   --kafka dev|real dev (default): outpost-devkafka, in memory; real: Apache Kafka (KRaft, one
#                    node; Java 17 and Maven are installed if missing, the jars fetched once into
#                    ~/.cache/outpost; docs/kafka.md)
#   --scaled         the scaled-out aggregator (docs/scaling.md): 2 ingest instances (MQTT shared
#                    subscription) and 2 process instances (a Kafka consumer group with
#                    transactions) instead of one; implies --kafka real
#   --keep           keep the work directory (logs, outboxes, dedup store, labels) after exit
# Ports: MQTT 1883, Kafka 9092, aggregator metrics 9100, agents 9101.. (a free port is used
# instead when one is taken).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

duration=0 agents=3 sim_devices=20 rate=5 keep=0 kafka_mode=dev scaled=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration=${2:?--duration needs seconds}; shift 2 ;;
    --agents) agents=${2:?--agents needs a number}; shift 2 ;;
    --sim-devices) sim_devices=${2:?--sim-devices needs a number}; shift 2 ;;
    --rate) rate=${2:?--rate needs Hz}; shift 2 ;;
    --keep) keep=1; shift ;;
    --kafka) kafka_mode=${2:?--kafka needs dev or real}; shift 2 ;;
    --scaled) scaled=1; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$duration" =~ ^[0-9]+$ ]] || { echo "demo.sh: --duration must be whole seconds" >&2; exit 2; }
[[ "$agents" =~ ^[0-9]+$ && "$agents" -ge 1 && "$agents" -le 100 ]] || { echo "demo.sh: --agents must be 1..100" >&2; exit 2; }
[[ "$kafka_mode" == dev || "$kafka_mode" == real ]] || { echo "demo.sh: --kafka '$kafka_mode': allowed are dev and real" >&2; exit 2; }
if [[ $scaled == 1 ]]; then
  # Consumer groups with static members and transactions need the real broker (docs/scaling.md).
  [[ $kafka_mode == real ]] || echo "demo.sh: --scaled runs on a real Apache Kafka broker (--kafka real)"
  kafka_mode=real
fi
[[ "$sim_devices" =~ ^[0-9]+$ && "$sim_devices" -le 10000 ]] || { echo "demo.sh: --sim-devices must be 0..10000" >&2; exit 2; }

./scripts/deps.sh
BUILD_DIR=${BUILD_DIR:-build-demo}
echo "== building ($BUILD_DIR, Release)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOUTPOST_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target outpost-agent outpost-aggregator outpost-devkafka outpost-sim \
  outpost-kafka-tool | tail -n 1

WORK=$(mktemp -d /tmp/outpost-demo.XXXXXX)
declare -a PIDS=()
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {  # preferred port if free, else any free one
  if port_free "$1"; then echo "$1"; else
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  fi
}
wait_port() {
  for _ in $(seq 1 100); do port_free "$1" || return 0; sleep 0.1; done
  echo "demo.sh: nothing listening on $1 after 10 s (see $WORK/*.log)" >&2
  return 1
}
metric() { curl -sf "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v n="$2" '$1 == n {print $2}'; }
# The sum of one metric over the instances that publish readings (the aggregator, or with
# --scaled the process instances).
published_metric() {
  local total=0 port v
  for port in "${PUBLISH_PORTS[@]}"; do
    v=$(metric "$port" "$1" || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

stopping=0
shutdown() {
  [[ $stopping == 1 ]] && return
  stopping=1
  set +e  # best effort from here: one failed look-up must not leave processes running
  echo
  echo "== stopping"
  # Agents first (they flush their open batch into the outbox), then give the aggregator a moment
  # to ack what is in flight, then the rest.
  produced=0 waiting=0 dropped=0 sim_generated=0 sim_acked=0 sim_unacked=0 sim_dropped=0 sim_labels=0
  # The simulated fleet first: on SIGTERM it waits up to 2 s for the acks of what is in flight and
  # writes its accounting (generated = acked + unacked + dropped) to sim.json.
  if [[ -n "${SIM_PID:-}" ]]; then
    kill -TERM "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
    if [[ -s "$WORK/sim.json" ]]; then
      read -r sim_generated sim_acked sim_unacked sim_dropped sim_labels < <(python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
print(d["readings"], d["readings_acked"], d["readings_unacked"], d["readings_dropped"], d["labels"])' "$WORK/sim.json")
    fi
  fi
  for port in "${AGENT_PORTS[@]}"; do
    d=$(metric "$port" outpost_agent_dropped_readings_total || echo 0)
    dropped=$((dropped + ${d%.*}))
  done
  for pid in "${AGENT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${AGENT_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for i in $(seq 1 "$agents"); do
    # Each agent logs its total on a clean stop.
    n=$(grep -o 'agent stopped: [0-9]* readings produced' "$WORK/device-$i.log" | awk '{s += $3} END {print s + 0}')
    produced=$((produced + n))
  done
  for i in $(seq 1 "$agents"); do
    w=$(sqlite3 "$WORK/device-$i.outbox.db" "SELECT COALESCE(SUM(readings),0) FROM batches" 2>/dev/null || echo 0)
    waiting=$((waiting + w))
  done
  # With --scaled: the process instances commit what the ingest instances forwarded last.
  if [[ $scaled == 1 ]]; then sleep 3; fi
  published=$(published_metric outpost_aggregator_readings_published_total)
  dups=$(published_metric outpost_aggregator_duplicate_batches_total)
  deadl=$(metric "$AGG_PORT" outpost_aggregator_deadletter_batches_total || echo 0)
  # Transactional output (--scaled) counts as a read_committed consumer sees it.
  on_kafka=$(timeout 30 kcat -b "127.0.0.1:$KAFKA_PORT" -C -t outpost.readings -o beginning -e -q \
    -X isolation.level=read_committed -f '%s\n' 2>/dev/null |
    python3 -c 'import json,sys; print(sum(len(json.loads(l)["readings"]) for l in sys.stdin if l.strip()))' || echo "?")
  for ((k = ${#PIDS[@]} - 1; k >= 0; k--)); do kill -TERM "${PIDS[$k]}" 2>/dev/null || true; wait "${PIDS[$k]}" 2>/dev/null || true; done
  # The real broker runs in its own session (also when Ctrl-C came during its start): stop it by pid.
  if [[ -d "$WORK/kafka" ]]; then ./scripts/kafka.sh stop --dir "$WORK/kafka" 2>/dev/null || true; fi
  cat <<SUMMARY

== summary
  readings produced by agents          $produced
  readings generated by sim fleet      $sim_generated   ($sim_devices virtual devices; $sim_labels anomalies labelled in labels.jsonl)
  readings published to Kafka          $published   (aggregator metric)
  readings on outpost.readings (kcat)  $on_kafka   $([[ $kafka_mode == dev ]] && echo "(the dev broker keeps ~5 MB per partition)" || echo "(real Apache Kafka broker)")
  readings waiting in agent outboxes   $waiting   (sent on the agents' next start)
  readings dropped by agents           $dropped
  fleet readings not acknowledged      $sim_unacked   (in flight when it stopped; they may be on Kafka)
  fleet readings dropped (backlog)     $sim_dropped
  all accounted for                    $([[ "$on_kafka" =~ ^[0-9]+$ && $((on_kafka + waiting + dropped + sim_unacked + sim_dropped)) -eq $((produced + sim_generated)) ]] && echo "yes (produced + generated = on Kafka + waiting + dropped + fleet unacked + fleet dropped)" || echo "no: produced + generated != on Kafka + waiting + dropped + fleet unacked + fleet dropped")
  duplicate batches dropped            $dups
  dead-lettered batches                $deadl
  logs                                 $WORK$([[ $keep == 1 ]] || echo " (removed; --keep keeps them)")
SUMMARY
  [[ $keep == 1 ]] || rm -rf "$WORK"
}
trap shutdown EXIT
trap 'exit 0' INT TERM

MQTT_PORT=$(pick_port 1883)
KAFKA_PORT=$(pick_port 9092)
AGG_PORT=$(pick_port 9100)

cat >"$WORK/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 10000
max_inflight_messages 100
set_tcp_nodelay true
CONF
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
wait_port "$MQTT_PORT"

KAFKA_PID=""
if [[ $kafka_mode == real ]]; then
  echo "== starting Apache Kafka (scripts/kafka.sh; the first run fetches it with Maven)"
  OUTPOST_KAFKA_TOOL="$BUILD_DIR/tools/kafka/outpost-kafka-tool" ./scripts/kafka.sh start \
    --dir "$WORK/kafka" --port "$KAFKA_PORT" >/dev/null || { keep=1; exit 1; }
  KAFKA_PID=$(cat "$WORK/kafka/kafka.pid")
  KAFKA_DESC="Apache Kafka ${OUTPOST_KAFKA_VERSION:-$(sed -n 's/^KAFKA_VERSION=.*:-\(.*\)}$/\1/p' scripts/kafka.sh)}, real broker (KRaft); log $WORK/kafka/server.log"
else
  "$BUILD_DIR/tools/devkafka/outpost-devkafka" --listen "127.0.0.1:$KAFKA_PORT" >"$WORK/devkafka.log" 2>&1 &
  PIDS+=($!)
  wait_port "$KAFKA_PORT"
  KAFKA_DESC="in-memory development broker"
fi

aggregator() {  # aggregator LOG HTTP_PORT [--set ...]: one aggregator process
  local log=$1 port=$2
  shift 2
  "$BUILD_DIR/aggregator/outpost-aggregator" --config packaging/config/aggregator.toml \
    --set "mqtt.broker=tcp://127.0.0.1:$MQTT_PORT" --set "kafka.bootstrap_servers=127.0.0.1:$KAFKA_PORT" \
    --set "dedup.path=$WORK/dedup.db" --set "http.listen=127.0.0.1:$port" "$@" >"$WORK/$log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}
PUBLISH_PORTS=("$AGG_PORT") PROCESS_PORTS=() INGEST2_PORT=""
if [[ $scaled == 1 ]]; then
  # Two process instances first (they restore their partitions' state), then two ingest
  # instances sharing the agents' batches; the first ingest serves the dashboard on $AGG_PORT.
  for i in 1 2; do
    port=$(pick_port $((9190 + i)))
    aggregator "process-$i.log" "$port" --set cluster.role=process --set "cluster.instance_id=process-$i"
    PROCESS_PORTS+=("$port")
  done
  PUBLISH_PORTS=("${PROCESS_PORTS[@]}")
  aggregator ingest-1.log "$AGG_PORT" --set cluster.role=ingest --set cluster.instance_id=ingest-1
  INGEST2_PORT=$(pick_port 9190)
  aggregator ingest-2.log "$INGEST2_PORT" --set cluster.role=ingest --set cluster.instance_id=ingest-2
else
  aggregator aggregator.log "$AGG_PORT"
fi

declare -a AGENT_PIDS=() AGENT_PORTS=()
for i in $(seq 1 "$agents"); do
  port=$(pick_port $((9100 + i)))
  cat >"$WORK/device-$i.toml" <<CONF
device_id = "device-$i"
[http]
listen = "127.0.0.1:$port"
[batch]
max_readings = 500
linger_ms = 1000
[outbox]
path = "$WORK/device-$i.outbox.db"
[uplink.mqtt]
broker = "tcp://127.0.0.1:$MQTT_PORT"
[[sensors]]
name = "temperature"
unit = "degC"
rate_hz = $rate
shape = "sine"
offset = $((18 + i))
amplitude = 3
period_s = 600
noise = 0.15
seed = $i
[[sensors]]
name = "humidity"
unit = "%RH"
rate_hz = $rate
shape = "random_walk"
offset = 45
amplitude = 0.05
seed = $((100 + i))
[[sensors]]
name = "vibration_rms"
unit = "mm/s"
rate_hz = $rate
shape = "square"
offset = 2.5
amplitude = 1.5
period_s = 120
noise = 0.3
seed = $((200 + i))
[[sensors]]
name = "line_current"
unit = "A"
rate_hz = $rate
shape = "sawtooth"
offset = 12
amplitude = 4
period_s = 90
noise = 0.2
seed = $((300 + i))
CONF
  "$BUILD_DIR/agent/outpost-agent" --config "$WORK/device-$i.toml" >"$WORK/device-$i.log" 2>&1 &
  AGENT_PIDS+=($!)
  AGENT_PORTS+=("$port")
done

SIM_PID=""
if [[ $sim_devices -gt 0 ]]; then
  # Real time, anomalies frequent enough to see within minutes; labels are the ground truth.
  "$BUILD_DIR/simulators/outpost-sim" fleet --devices "$sim_devices" --rate "$rate" --speed 1 \
    --output mqtt --broker "tcp://127.0.0.1:$MQTT_PORT" --anomaly-rate 2 --offline-rate 0.2 \
    --labels "$WORK/labels.jsonl" --summary-json "$WORK/sim.json" --drain-timeout 5s -q \
    >"$WORK/sim.log" 2>&1 &
  SIM_PID=$!
fi

PROCESS_INFO=""
for p in "${PROCESS_PORTS[@]}"; do
  PROCESS_INFO+="  process instance     http://127.0.0.1:$p/api/cluster   /metrics /readyz"$'\n'
done
cat <<INFO

== Outpost demo running ($agents agents x 4 sensors + $sim_devices simulated devices x 7 sensors, $rate Hz each)
  MQTT broker          tcp://127.0.0.1:$MQTT_PORT   (mosquitto_sub -p $MQTT_PORT -t 'outpost/v1/+/status' -v)
  Kafka bootstrap      127.0.0.1:$KAFKA_PORT   ($KAFKA_DESC)
  aggregator metrics   http://127.0.0.1:$AGG_PORT/metrics   health: /healthz /readyz$([[ $scaled == 1 ]] && printf '   (ingest-1; ingest-2 on %s)' "$INGEST2_PORT")
${PROCESS_INFO}  dashboard            http://127.0.0.1:$AGG_PORT/   devices: /api/devices
  agent metrics        $(for p in "${AGENT_PORTS[@]}"; do printf 'http://127.0.0.1:%s/metrics ' "$p"; done)
  watch readings       kcat -b 127.0.0.1:$KAFKA_PORT -C -t outpost.readings -o end -f '%k %s\n'$([[ $scaled == 1 ]] && echo " -X isolation.level=read_committed")
  simulated fleet      outpost-sim fleet (device ids sim-0001..), anomaly labels in $WORK/labels.jsonl
  logs                 $WORK
$([[ $duration -gt 0 ]] && echo "  stopping by itself in $duration s" || echo "  Ctrl-C to stop")
INFO

start=$SECONDS
while :; do
  sleep 5
  for pid in "${PIDS[@]}" $SIM_PID $KAFKA_PID; do
    kill -0 "$pid" 2>/dev/null || { echo "demo.sh: a process exited unexpectedly; see $WORK" >&2; keep=1; exit 1; }
  done
  printf '  [%4ds] readings published to Kafka: %s\n' $((SECONDS - start)) "$(published_metric outpost_aggregator_readings_published_total)"
  if [[ $duration -gt 0 && $((SECONDS - start)) -ge $duration ]]; then break; fi
done
