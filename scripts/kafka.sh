#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, one node that is broker and controller; or a cluster of them,
# start --nodes N) on free loopback ports, for the real-Kafka tests, the demo (demo.sh --kafka
# real), the torture suite and benchmarks. docs/kafka.md explains
# the version and the settings; tools/kafka/README.md how the jars are fetched.
#
# Usage: scripts/kafka.sh COMMAND [options]
#   fetch                  install a JRE and Maven with apt-get if missing, fetch the broker and its
#                          runtime dependencies from Maven Central (cached; prints the jar folder)
#   start [options]        format KRaft storage, start the broker, wait until it answers metadata
#                          requests, create the Outpost topics, print the bootstrap address
#       --dir DIR          state folder (config, data, log, pid); default a new /tmp/outpost-kafka.*
#                          A DIR that was started before restarts on its ports with its data.
#       --port PORT        client port (default: a free one); the controller takes another free one
#       --host ADDR        the client listener's address (default 127.0.0.1; e.g. a veth's address
#                          so that a network namespace reaches the broker); the controller stays
#                          on 127.0.0.1
#       --heap SIZE        JVM heap, as for -Xmx (default 256m)
#       --partitions N     partitions of each created topic (default 6)
#       --topics LIST      topics to create, comma-separated, NAME or NAME:compact (default: the
#                          aggregator's readings, anomalies, deadletter, device-status:compact,
#                          latest:compact, and the scaled mode's batches and state:compact)
#       --no-topics        create no topic
#       --timeout SECONDS  how long to wait for the broker (default 90)
#       --set KEY=VALUE    a broker setting added to (or replacing one of) the generated config
#     A cluster on loopback (default: the single node above):
#       --nodes N          N nodes (2-9), each broker and KRaft controller in one JVM with its own
#                          ports, DIR/nodeI/ (config, data, server.log, kafka.pid); the topics get
#                          replication factor min(N, 3) and min.insync.replicas = that - 1
#                          (3 nodes: 3 and 2), as do the internal topics. Prints the bootstrap
#                          list (host:port,host:port,...). --port is not allowed.
#       --controllers M    M more nodes that are KRaft controllers only (0-4, default 0; heap
#                          128m), so that the quorum outlives brokers: with 3 + 2, two of the
#                          three brokers may be down at once and the controllers still elect
#                          leaders and shrink ISRs (3 nodes alone lose the quorum with 2 down)
#       --node I           with a DIR started before: (re)start only node I (e.g. after a kill)
#     A cluster's nodes run with -XX:TieredStopAtLevel=1 (less JIT work on a small machine).
#   stop [--dir DIR] [--node I]   stop the broker (a cluster: every node, or node I) by its pid
#                          (SIGTERM, SIGKILL after 20 s)
#   status [--dir DIR]     print pid and bootstrap address (a cluster: one line per node); exit 1
#                          if it (any node) is not running
#   topics --bootstrap HOST:PORT [--partitions N] [--topics LIST]   create topics on a running broker
#   console-consumer ARGS  Kafka's own Java console consumer from the same jars
#   tool CLASS ARGS        any Java tool from the jars, e.g. org.apache.kafka.tools.DumpLogSegments
#   classpath              print the Java class path of the broker jars
#
# Env: OUTPOST_KAFKA_VERSION (default below), OUTPOST_CACHE (default ~/.cache/outpost),
#      OUTPOST_KAFKA_TOOL (outpost-kafka-tool, which creates topics; default: build*/ of this tree),
#      OUTPOST_KAFKA_DIR (default --dir for stop/status: the last folder started).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The newest Kafka that Debian 12's librdkafka 2.0.2 passes every check with (docs/kafka.md).
KAFKA_VERSION=${OUTPOST_KAFKA_VERSION:-4.4.0}
CACHE=${OUTPOST_CACHE:-$HOME/.cache/outpost}
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
LAST_DIR_FILE="$CACHE/kafka-last-dir"
DEFAULT_TOPICS="outpost.readings,outpost.anomalies,outpost.deadletter,outpost.device-status:compact,outpost.latest:compact,outpost.batches,outpost.state:compact"

die() {
  echo "kafka.sh: $*" >&2
  exit 1
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

# --- fetch ---------------------------------------------------------------------------------------
ensure_pkg() {  # ensure_pkg COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  [[ $(id -u) == 0 ]] || die "$1 is missing: install the Debian package $2 (apt-get install $2) as root"
  echo "kafka.sh: installing $2 (for $1)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "$2" >&2; } || die "apt-get could not install $2"
  command -v "$1" >/dev/null 2>&1 || die "$2 is installed but $1 is still not on PATH"
}

fetch() {
  ensure_pkg java openjdk-17-jre-headless
  local jv
  jv=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
  [[ "$jv" =~ ^[0-9]+$ && $jv -ge 17 ]] ||
    die "Kafka $KAFKA_VERSION needs Java 17 or later; 'java' on PATH is version '${jv:-unknown}'" \
      "(apt-get install openjdk-17-jre-headless)"
  [[ -f "$LIBS/.complete" ]] && return 0
  ensure_pkg mvn maven
  mkdir -p "$CACHE"
  # One fetch at a time (tests may start together); the second finds the first one's result.
  exec 9>"$CACHE/kafka-$KAFKA_VERSION.lock"
  flock -w 600 9 || die "timed out waiting for another fetch of Kafka $KAFKA_VERSION ($CACHE)"
  if [[ ! -f "$LIBS/.complete" ]]; then
    echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS" >&2
    rm -rf "$LIBS.tmp"
    mvn -q -B -f "$ROOT/tools/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      -Doutdir="$LIBS.tmp" dependency:copy-dependencies >"$CACHE/kafka-$KAFKA_VERSION.fetch.log" 2>&1 ||
      die "Maven could not fetch Kafka $KAFKA_VERSION (log: $CACHE/kafka-$KAFKA_VERSION.fetch.log)"
    [[ -f "$LIBS.tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "Maven fetched no kafka_2.13-$KAFKA_VERSION.jar"
    rm -rf "$LIBS"
    mv "$LIBS.tmp" "$LIBS"
    touch "$LIBS/.complete"
  fi
  exec 9>&-
}

java_cmd() {  # java_cmd LOG4J_CONFIG [JVM options...] MAIN ARGS...
  local log4j=$1
  shift
  java -Dlog4j2.configurationFile="$log4j" -Dlog4j.configuration="file:$log4j" -cp "$LIBS/*" "$@"
}

# Quiet logging (warnings to stderr) for the command-line tools.
tool_log4j() {
  local f="$CACHE/kafka-$KAFKA_VERSION/log4j2-tools.properties"
  [[ -f "$f" ]] || cat >"$f" <<'CONF'
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
CONF
  echo "$f"
}

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

kafka_tool() {
  local t=${OUTPOST_KAFKA_TOOL:-}
  if [[ -z "$t" ]]; then
    for d in "$ROOT"/build "$ROOT"/build-*; do
      [[ -x "$d/tools/kafka/outpost-kafka-tool" ]] && { t="$d/tools/kafka/outpost-kafka-tool"; break; }
    done
  fi
  [[ -n "$t" && -x "$t" ]] || die "outpost-kafka-tool not found (it creates the topics): build it" \
    "(cmake --build build --target outpost-kafka-tool), set OUTPOST_KAFKA_TOOL, or pass --no-topics"
  echo "$t"
}

create_topics() {  # create_topics BOOTSTRAP PARTITIONS LIST [REPLICATION MIN_INSYNC]
  local tool repl=()
  tool=$(kafka_tool)
  IFS=, read -r -a list <<<"$3"
  [[ -n "${4:-}" ]] && repl=(--replication-factor "$4" --min-insync-replicas "$5")
  "$tool" create-topics --bootstrap "$1" --partitions "$2" "${repl[@]}" "${list[@]}" >&2 ||
    die "could not create topics $3 on $1"
}

# wait_leaders BOOTSTRAP LIST DEADLINE: until every partition of the topics in LIST has a leader
# (a client that asks right after CreateTopics may otherwise get NOT_LEADER_OR_FOLLOWER).
wait_leaders() {
  local spec name
  IFS=, read -r -a list <<<"$2"
  for spec in "${list[@]}"; do
    name=${spec%%:*}
    until kcat -L -b "$1" -t "$name" -m 5 2>/dev/null |
      awk '/^ +partition [0-9]+,/ {n++; if ($4 == "-1," || / Broker: /) bad++} END {exit !(n > 0 && bad == 0)}'; do
      ((SECONDS < $3)) || die "topic $name on $1 still has partitions without a leader"
      sleep 0.2
    done
  done
}

# --- start / stop / status -----------------------------------------------------------------------
write_config() {  # write_config DIR PORT CONTROLLER_PORT HOST
  local dir=$1 port=$2 cport=$3 host=$4
  cat >"$dir/server.properties" <<CONF
# Single-node KRaft broker + controller for tests and the demo (scripts/kafka.sh, docs/kafka.md).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://$host:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
# One node: the internal topics cannot have more than one replica; fewer partitions start faster.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fast tests: no wait for more members before the first rebalance; short sessions allowed so a
# failover test can use a session of ~1 s.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=500
# A transactional producer that dies leaves its transaction open until its transaction.timeout.ms;
# the coordinator looks for such transactions every 10 s by default, and until it aborts one,
# read_committed consumers of those partitions (and a new owner restoring outpost.state) wait.
# Check every second, so a failover test waits the producer's timeout, not up to 10 s more.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
# The log cleaner (compaction) would take 128 MiB of the heap for its offset map at start.
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
num.io.threads=2
num.network.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
CONF
  write_log4j "$dir"
}

write_log4j() {  # write_log4j DIR: the broker's log goes to DIR/server.log (state changes: warnings)
  local dir=$1
  cat >"$dir/log4j2.properties" <<CONF
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
CONF
}

bootstrap_of() { sed -n 's/^advertised.listeners=PLAINTEXT:\/\///p' "$1/server.properties"; }

running_pid() {  # running_pid DIR: the broker's pid if it is running
  local pid
  [[ -f "$1/kafka.pid" ]] || return 1
  pid=$(cat "$1/kafka.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

stop_dir() {  # stop_dir DIR
  local dir=$1 pid
  pid=$(running_pid "$dir") || { rm -f "$dir/kafka.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$dir/kafka.pid"
}

start() {
  local dir="" port="" host=127.0.0.1 heap=256m partitions=6 topics=$DEFAULT_TOPICS timeout=90 extra=()
  local nodes="" controllers=0 node=""
  while (($#)); do
    case $1 in
      --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
      --controllers) controllers=${2:?--controllers needs a number}; shift 2 ;;
      --node) node=${2:?--node needs a node number}; shift 2 ;;
      --dir) dir=${2:?--dir needs a folder}; shift 2 ;;
      --port) port=${2:?--port needs a number}; shift 2 ;;
      --host) host=${2:?--host needs an IPv4 address}; shift 2 ;;
      --heap) heap=${2:?--heap needs a size}; shift 2 ;;
      --partitions) partitions=${2:?--partitions needs a number}; shift 2 ;;
      --topics) topics=${2:?--topics needs a list}; shift 2 ;;
      --no-topics) topics=""; shift ;;
      --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
      --set)
        [[ "${2:-}" =~ ^[a-z][a-z0-9._-]*=.*$ ]] ||
          die "--set '${2:-}': allowed is KEY=VALUE with a Kafka broker setting name as KEY"
        extra+=("$2")
        shift 2
        ;;
      *) die "start: unknown option '$1' (see scripts/kafka.sh --help)" ;;
    esac
  done
  [[ -z "$port" || "$port" =~ ^[0-9]+$ && $port -ge 1 && $port -le 65535 ]] ||
    die "--port '$port': allowed is a TCP port 1-65535"
  [[ "$host" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "--host '$host': allowed is an IPv4 address"
  [[ "$partitions" =~ ^[0-9]+$ && $partitions -ge 1 && $partitions -le 1000 ]] ||
    die "--partitions '$partitions': allowed is 1-1000"
  [[ "$heap" =~ ^[0-9]+[kKmMgG]$ ]] || die "--heap '$heap': allowed is a size such as 256m or 1g"
  [[ "$timeout" =~ ^[0-9]+$ && $timeout -ge 1 ]] || die "--timeout '$timeout': allowed is seconds >= 1"
  command -v kcat >/dev/null || die "kcat is missing (apt-get install kcat): it checks the broker is up"
  if [[ -n "$nodes" || -n "$node" || ( -n "$dir" && -f "$dir/cluster" ) ]]; then
    [[ -z "$nodes" || "$nodes" =~ ^[2-9]$ ]] || die "--nodes '$nodes': allowed is 2-9"
    [[ "$controllers" =~ ^[0-4]$ ]] || die "--controllers '$controllers': allowed is 0-4"
    [[ -z "$port" ]] || die "--port: not with a cluster (each node takes free ports)"
    start_cluster
    return
  fi
  fetch

  if [[ -z "$dir" ]]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/outpost-kafka.XXXXXX")
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if running_pid "$dir" >/dev/null; then
    die "a broker from $dir is already running (pid $(cat "$dir/kafka.pid")); stop it first"
  fi
  local fresh=0
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    fresh=1
    [[ -n "$port" ]] || port=$(free_port)
    local cport
    cport=$(free_port)
    while [[ "$cport" == "$port" ]]; do cport=$(free_port); done
    write_config "$dir" "$port" "$cport" "$host"
    if ((${#extra[@]})); then
      printf '# --set\n' >>"$dir/server.properties"
      printf '%s\n' "${extra[@]}" >>"$dir/server.properties"  # a later key wins in Java properties
    fi
    local cluster_id
    # A Kafka cluster id: 16 random bytes in URL-safe base64; never one that starts with '-'
    # (it would read as an option), as Kafka's own Uuid.randomUuid() avoids too.
    cluster_id=$(python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break')
    java_cmd "$(tool_log4j)" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 kafka.tools.StorageTool \
      format -t "$cluster_id" -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
      die "formatting KRaft storage in $dir/data failed (log: $dir/format.log):" \
        "$(grep -m 1 -E 'Exception|Error' "$dir/format.log" || tail -n 3 "$dir/format.log")"
  fi
  local bootstrap
  bootstrap=$(bootstrap_of "$dir")
  port=${bootstrap##*:}

  # The broker in its own session, so the caller's Ctrl-C or job control does not reach it; it is
  # stopped by its pid (stop, or the tests' harness).
  setsid java -Xms"$heap" -Xmx"$heap" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" >>"$dir/stdout.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/kafka.pid"
  # Until start has succeeded, any exit (an error below, Ctrl-C) stops the broker again.
  START_DIR=$dir
  trap '[[ -z "$START_DIR" ]] || stop_dir "$START_DIR"' EXIT
  mkdir -p "$CACHE"
  echo "$dir" >"$LAST_DIR_FILE"

  local end=$((SECONDS + timeout))
  until kcat -L -b "$bootstrap" -m 2 >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$dir/kafka.pid"
      die "the Kafka broker (port $port) exited during start-up; log: $dir/server.log:" \
        "$(cat "$dir/server.log" "$dir/stdout.log" 2>/dev/null | grep -m 1 -E 'ERROR|Exception' |
          cut -c 1-300)"
    fi
    if ((SECONDS >= end)); then
      stop_dir "$dir"
      die "the Kafka broker did not accept metadata requests on $bootstrap (port $port) within" \
        "${timeout}s and was stopped; log: $dir/server.log"
    fi
    sleep 0.2
  done
  if [[ -n "$topics" && $fresh == 1 ]]; then
    create_topics "$bootstrap" "$partitions" "$topics"
    wait_leaders "$bootstrap" "$topics" "$end"
  fi
  START_DIR=""
  echo "kafka.sh: Apache Kafka $KAFKA_VERSION pid $pid, data in $dir, log $dir/server.log" >&2
  echo "$bootstrap"
}

# --- a cluster (start --nodes N) ----------------------------------------------------------------
# DIR/cluster lists the nodes, one a line: ID ROLES (broker,controller or controller); node I's
# state is DIR/nodeI/, laid out as a single broker's DIR.
cluster_ids() { awk '{print $1}' "$1/cluster"; }
cluster_roles() { awk -v i="$2" '$1 == i {print $2}' "$1/cluster"; }
cluster_bootstrap() {  # every broker's client address, comma-separated
  local i list=""
  for i in $(awk '$2 ~ /broker/ {print $1}' "$1/cluster"); do
    list+="${list:+,}$(bootstrap_of "$1/node$i")"
  done
  echo "$list"
}
controller_port_of() { sed -n 's/^listeners=.*CONTROLLER:\/\/[^:]*:\([0-9]*\).*/\1/p' "$1/server.properties"; }

write_node_config() {  # write_node_config DIR ID ROLES PORT CPORT HOST VOTERS REPLICATION MIN_ISR
  local dir=$1 id=$2 roles=$3 port=$4 cport=$5 host=$6 voters=$7 rf=$8 isr=$9
  mkdir -p "$dir"
  {
    echo "# Node $id of a loopback KRaft cluster for tests (scripts/kafka.sh start --nodes, docs/kafka.md)."
    echo "process.roles=$roles"
    echo "node.id=$id"
    echo "controller.quorum.voters=$voters"
    echo "controller.listener.names=CONTROLLER"
    if [[ $roles == broker,controller ]]; then
      echo "listeners=PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$cport"
      echo "advertised.listeners=PLAINTEXT://$host:$port"
      echo "inter.broker.listener.name=PLAINTEXT"
    else
      echo "listeners=CONTROLLER://127.0.0.1:$cport"
    fi
    cat <<CONF
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=6
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=500
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
num.io.threads=2
num.network.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
CONF
  } >"$dir/server.properties"
  write_log4j "$dir"  # the same logging as a single broker's
}

launch_node() {  # launch_node NODE_DIR HEAP: start one node's JVM in its own session
  local dir=$1 heap=$2
  setsid java -Xms"$heap" -Xmx"$heap" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
    -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" >>"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
}

port_listening() {  # port_listening PORT: something accepts TCP connections on 127.0.0.1:PORT
  python3 -c 'import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

# node_up DIR ID: node ID answers: a broker its own metadata requests, a controller-only node
# connections on its controller port.
node_up() {
  local nd="$1/node$2"
  if [[ $(cluster_roles "$1" "$2") == broker,controller ]]; then
    kcat -L -b "$(bootstrap_of "$nd")" -m 2 >/dev/null 2>&1
  else
    port_listening "$(controller_port_of "$nd")"
  fi
}

# stop_cluster DIR [ID]: SIGTERM to the brokers at once, then to the controller-only nodes (the
# brokers' controlled shutdown needs the quorum); SIGKILL after 20 s each.
stop_cluster() {
  if [[ -z "${2:-}" ]]; then
    local b
    for b in broker controller; do
      stop_nodes "$1" "$(awk -v r="$b" '$2 ~ r && !($2 ~ /broker/ && r == "controller") {print $1}' "$1/cluster")"
    done
  else
    stop_nodes "$1" "$2"
  fi
}

stop_nodes() {  # stop_nodes DIR IDS: SIGTERM to these nodes at once, SIGKILL after 20 s
  local dir=$1 ids=$2 i pid pids=()
  for i in $ids; do
    pid=$(running_pid "$dir/node$i") || { rm -f "$dir/node$i/kafka.pid"; continue; }
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  for _ in $(seq 1 200); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for i in $ids; do rm -f "$dir/node$i/kafka.pid"; done
}

start_cluster() {  # uses start's options (dynamic scope)
  fetch
  [[ -n "$dir" ]] || dir=$(mktemp -d "${TMPDIR:-/tmp}/outpost-kafka.XXXXXX")
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local fresh=0 i
  if [[ ! -f "$dir/cluster" ]]; then
    [[ -z "$node" ]] || die "--node $node: $dir is not a cluster started before"
    [[ -n "$nodes" ]] || die "$dir is not a cluster started before: give --nodes N"
    fresh=1
    local rf=$((nodes < 3 ? nodes : 3)) total=$((nodes + controllers)) voters="" cluster_id
    local isr=$((rf - 1)) ports=() cports=() p
    # Distinct free ports: a client port per broker, a controller port per node.
    local used=" "
    for i in $(seq 1 "$total"); do
      for kind in c b; do
        [[ $kind == b && $i -gt $nodes ]] && continue
        p=$(free_port)
        while [[ "$used" == *" $p "* ]]; do p=$(free_port); done
        used+="$p "
        if [[ $kind == c ]]; then cports[i]=$p; else ports[i]=$p; fi
      done
      voters+="${voters:+,}$i@127.0.0.1:${cports[i]}"
    done
    cluster_id=$(python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break')
    : >"$dir/cluster.tmp"
    for i in $(seq 1 "$total"); do
      local roles=broker,controller
      ((i <= nodes)) || roles=controller
      write_node_config "$dir/node$i" "$i" "$roles" "${ports[i]:-}" "${cports[i]}" "$host" \
        "$voters" "$rf" "$isr"
      if ((${#extra[@]})); then
        printf '# --set\n' >>"$dir/node$i/server.properties"
        printf '%s\n' "${extra[@]}" >>"$dir/node$i/server.properties"
      fi
      java_cmd "$(tool_log4j)" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/node$i/server.properties" \
        >"$dir/node$i/format.log" 2>&1 ||
        die "formatting KRaft storage of node $i in $dir/node$i/data failed (log:" \
          "$dir/node$i/format.log): $(grep -m 1 -E 'Exception|Error' "$dir/node$i/format.log")"
      echo "$i $roles" >>"$dir/cluster.tmp"
    done
    mv "$dir/cluster.tmp" "$dir/cluster"
  elif [[ -n "$nodes" && $(awk '$2 ~ /broker/' "$dir/cluster" | wc -l) != "$nodes" ]]; then
    die "--nodes $nodes: the cluster in $dir was made with $(awk '$2 ~ /broker/' "$dir/cluster" | wc -l)" \
      "brokers; start it without --nodes or use a new --dir"
  fi
  local ids
  if [[ -n "$node" ]]; then
    [[ -n "$(cluster_roles "$dir" "$node")" ]] ||
      die "--node '$node': allowed is one of $(cluster_ids "$dir" | tr '\n' ' ')($dir)"
    ids=$node
  else
    ids=$(cluster_ids "$dir")
  fi
  # Until start has succeeded, any exit (an error below, Ctrl-C) stops the nodes it started.
  START_IDS="" START_CLUSTER=$dir
  trap 'for i in $START_IDS; do stop_cluster "$START_CLUSTER" "$i"; done' EXIT
  for i in $ids; do
    if running_pid "$dir/node$i" >/dev/null; then
      [[ -n "$node" ]] && die "node $i of $dir is already running (pid $(cat "$dir/node$i/kafka.pid"))"
      continue
    fi
    local h=$heap
    [[ $(cluster_roles "$dir" "$i") == controller ]] && h=128m
    launch_node "$dir/node$i" "$h"
    START_IDS+="$i "
  done
  mkdir -p "$CACHE"
  echo "$dir" >"$LAST_DIR_FILE"
  local end=$((SECONDS + timeout)) bootstrap
  bootstrap=$(cluster_bootstrap "$dir")
  for i in $ids; do
    until node_up "$dir" "$i"; do
      if ! running_pid "$dir/node$i" >/dev/null; then
        die "node $i exited during start-up; log: $dir/node$i/server.log:" \
          "$(cat "$dir/node$i/server.log" "$dir/node$i/stdout.log" 2>/dev/null |
            grep -m 1 -E 'ERROR|Exception' | cut -c 1-300)"
      fi
      ((SECONDS < end)) || die "node $i of $dir did not answer within ${timeout}s (stopped);" \
        "log: $dir/node$i/server.log"
      sleep 0.2
    done
  done
  if ((fresh)); then
    # Every broker registered before topics are created (else fewer replicas than asked).
    local want
    want=$(awk '$2 ~ /broker/' "$dir/cluster" | wc -l)
    until [[ $(kcat -L -b "$bootstrap" -m 5 2>/dev/null | sed -n 's/^ \([0-9]*\) brokers:$/\1/p') == "$want" ]]; do
      ((SECONDS < end)) || die "the cluster in $dir did not show $want brokers within ${timeout}s"
      sleep 0.2
    done
    if [[ -n "$topics" ]]; then
      local rf=$((want < 3 ? want : 3))
      create_topics "$bootstrap" "$partitions" "$topics" "$rf" "$((rf - 1))"
      wait_leaders "$bootstrap" "$topics" "$end"
    fi
  fi
  START_IDS=""
  echo "kafka.sh: Apache Kafka $KAFKA_VERSION cluster in $dir, node(s) $(echo $ids) started;" \
    "logs $dir/node*/server.log" >&2
  echo "$bootstrap"
}

dir_arg() {  # dir_arg ARGS...: --dir DIR, or OUTPOST_KAFKA_DIR, or the last folder started
  if [[ "${1:-}" == --dir ]]; then
    echo "${2:?--dir needs a folder}"
  elif [[ -n "${OUTPOST_KAFKA_DIR:-}" ]]; then
    echo "$OUTPOST_KAFKA_DIR"
  elif [[ -f "$LAST_DIR_FILE" ]]; then
    cat "$LAST_DIR_FILE"
  else
    die "no broker folder known: pass --dir DIR"
  fi
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  fetch)
    fetch
    echo "$LIBS"
    ;;
  start) start "$@" ;;
  stop)
    node=""
    if [[ "${1:-}" == --node ]]; then node=${2:?--node needs a node number}; shift 2; fi
    if [[ "${3:-}" == --node ]]; then node=${4:?--node needs a node number}; fi
    dir=$(dir_arg "$@")
    [[ -d "$dir" ]] || die "stop: no folder $dir"
    if [[ -f "$dir/cluster" ]]; then
      [[ -z "$node" || -n "$(cluster_roles "$dir" "$node")" ]] ||
        die "--node '$node': allowed is one of $(cluster_ids "$dir" | tr '\n' ' ')($dir)"
      stop_cluster "$dir" "$node"
      echo "kafka.sh: stopped ${node:+node $node of }the cluster of $dir" >&2
    else
      [[ -z "$node" ]] || die "--node: $dir is a single broker, not a cluster"
      stop_dir "$dir"
      echo "kafka.sh: stopped the broker of $dir" >&2
    fi
    ;;
  status)
    dir=$(dir_arg "$@")
    if [[ -f "$dir/cluster" ]]; then
      down=0
      for i in $(cluster_ids "$dir"); do
        if pid=$(running_pid "$dir/node$i"); then
          echo "node $i ($(cluster_roles "$dir" "$i")): running, pid $pid, log $dir/node$i/server.log"
        else
          echo "node $i ($(cluster_roles "$dir" "$i")): not running"
          down=1
        fi
      done
      echo "bootstrap $(cluster_bootstrap "$dir")"
      exit $down
    fi
    if pid=$(running_pid "$dir"); then
      echo "running: pid $pid, bootstrap $(bootstrap_of "$dir"), log $dir/server.log"
    else
      echo "not running ($dir)"
      exit 1
    fi
    ;;
  topics)
    bootstrap="" partitions=6 topics=$DEFAULT_TOPICS
    while (($#)); do
      case $1 in
        --bootstrap) bootstrap=${2:?}; shift 2 ;;
        --partitions) partitions=${2:?}; shift 2 ;;
        --topics) topics=${2:?}; shift 2 ;;
        *) die "topics: unknown option '$1'" ;;
      esac
    done
    [[ -n "$bootstrap" ]] || die "topics: --bootstrap HOST:PORT is required"
    create_topics "$bootstrap" "$partitions" "$topics"
    ;;
  console-consumer)
    fetch
    main=org.apache.kafka.tools.consumer.ConsoleConsumer
    [[ "$KAFKA_VERSION" == 3.* ]] && main=kafka.tools.ConsoleConsumer
    java_cmd "$(tool_log4j)" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "$main" "$@"
    ;;
  tool)
    fetch
    [[ $# -ge 1 ]] || die "tool: name a Java class, e.g. org.apache.kafka.tools.DumpLogSegments"
    java_cmd "$(tool_log4j)" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "$@"
    ;;
  classpath)
    fetch
    echo "$LIBS/*"
    ;;
  -h | --help | help) usage ;;
  "") usage >&2; exit 2 ;;
  *) die "unknown command '$cmd': allowed are fetch, start, stop, status, topics, console-consumer, tool, classpath" ;;
esac
