#!/usr/bin/env bash
# One torture scenario (run by scripts/torture.sh; see docs/reliability.md).
#
# Usage: scenario.sh NAME ITERATIONS SEED RESULT_JSON
#
# Starts its own Mosquitto, development Kafka broker, aggregator and agents on free loopback ports
# (tests/integration/lib.sh), injects ITERATIONS faults at moments drawn from SEED, lets every agent
# drain its outbox, and writes the exact accounting (tests/torture/account.py) plus the iteration
# count and the recovery time to RESULT_JSON. Exits 1 if anything accepted was lost, duplicated or
# (reordering is reported). Every loop is bounded; every process is stopped by pid.
#
# The scenarios run on the development broker (outpost-devkafka; KAFKA=dev, the only value
# accepted), except realkafka-kill, soak and net-agg-*, which start a real Apache Kafka broker
# themselves (lib.sh's start_real_kafka, scripts/kafka.sh), realkafka-leader, which starts a
# real 3-broker cluster (scripts/kafka.sh start --nodes 3 --controllers 2), and realkafka-proxy,
# which puts tests/torture/kafka_proxy.py (a Kafka-protocol proxy injecting produce errors, lost
# and slow answers, errors in other APIs' answers) between the aggregator and a real broker, and
# realkafka-proxy-cluster, the same proxy in front of the 3-broker cluster.
source "$(dirname "$0")/../integration/lib.sh"
TORTURE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

NAME=$1 ITER=$2 SEED=$3 RESULT=$4
RANDOM=$SEED  # every random moment below comes from bash's generator, seeded here
KAFKA_MODE=${KAFKA:-dev}
[[ "$KAFKA_MODE" == dev ]] || fail "KAFKA=$KAFKA_MODE: only KAFKA=dev (outpost-devkafka) is supported"

# rand_ms LO HI: uniform integer in [LO, HI], the next draw of SEED. Called as $(rand_ms ...),
# i.e. in a subshell, where bash (5.1 and later) reseeds RANDOM: the parent's sequence never
# advanced and every rerun drew other moments. So each draw is numbered (the count in a file)
# and hashed with SEED (splitmix64's finaliser; 64-bit wrapping arithmetic, logical shifts).
rand_ms() {
  local n=0 z
  [[ -s "$WORK/rand.n" ]] && read -r n <"$WORK/rand.n"
  echo $((n + 1)) >"$WORK/rand.n"
  z=$((SEED * -7046029254386353131 + (n + 1) * -4658895280553007687))
  z=$(((z ^ ((z >> 30) & 0x3FFFFFFFF)) * -4658895280553007687))
  z=$(((z ^ ((z >> 27) & 0x1FFFFFFFFF)) * -7723592293110705685))
  z=$(((z ^ ((z >> 31) & 0x1FFFFFFFF)) & 0x3FFFFFFF))
  echo $(($1 + z % ($2 - $1 + 1)))
}
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
now_ms() { date +%s%3N; }

# low_watermarks TOPIC OUT: each partition's low watermark (the first offset it still holds;
# kcat -Q with offset -2) and, for a partition whose low watermark is above 0, the devices on it,
# as JSON in OUT. The development broker keeps ~5 MB per partition and drops older messages, like
# retention (docs/devkafka.md): account.py reads OUT (DUMP.lowwm) and reports the batches missing
# because of it as lost to retention, not as lost. A real broker here keeps 7 days: all 0.
low_watermarks() {
  local topic=$1 out=$2 n p q=()
  n=$(timeout 20 kcat -L -b "$KAFKA" -t "$topic" -m 10 2>/dev/null |
    sed -n 's/.* with \([0-9]*\) partitions:$/\1/p')
  [[ -n $n ]] || fail "kcat -L could not list the partitions of $topic"
  for p in $(seq 0 $((n - 1))); do q+=(-t "$topic:$p:-2"); done
  timeout 30 kcat -Q -b "$KAFKA" "${q[@]}" >"$out.q" 2>"$WORK/kcat.err" ||
    fail "kcat -Q could not read the low watermarks of $topic: $(cat "$WORK/kcat.err")"
  python3 - "$out.q" "$out" "$KAFKA" "$topic" "$n" <<'PY' || fail "low watermarks of $topic: see above"
import json, re, subprocess, sys
q, out, bootstrap, topic, n = sys.argv[1:6]
low = {}
for line in open(q):
    m = re.match(r"\S+ \[(\d+)\] offset (-?\d+)", line)
    if m:
        low[int(m.group(1))] = int(m.group(2))
if len(low) != int(n) or min(low.values()) < 0:
    sys.exit(f"kcat -Q answered {low} for {n} partitions")
devices = {}
for p, off in low.items():
    if off > 0:
        msgs = subprocess.run(["timeout", "60", "kcat", "-b", bootstrap, "-C", "-t", topic, "-p",
                               str(p), "-o", "beginning", "-e", "-q", "-f", "%s\n"],
                              capture_output=True, text=True, check=True).stdout
        devices[p] = sorted({json.loads(m)["device"] for m in msgs.splitlines() if m.strip()})
json.dump({"low_watermarks": low, "truncated_devices": devices}, open(out, "w"))
if devices:
    print(f"  RETENTION: the broker dropped the oldest messages of {topic}: low watermarks {low}")
PY
}
# kafka_dump TOPIC FILE: lib.sh's, plus the low watermarks in FILE.lowwm (above).
eval "lib_$(declare -f kafka_dump)"
kafka_dump() {
  lib_kafka_dump "$@"
  low_watermarks "$1" "$2.lowwm"
}

RECOVERY_MS=0
note_recovery() { (($1 > RECOVERY_MS)) && RECOVERY_MS=$1 || true; }

# write_result: the accounting ($WORK/account.json) with the iteration count and the recovery
# time added, written to RESULT and printed.
write_result() {
  python3 - "$WORK/account.json" "$RESULT" "$ITER" "$RECOVERY_MS" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["iterations"] = int(sys.argv[3])
a["recovery_s"] = round(int(sys.argv[4]) / 1000, 1)
json.dump(a, open(sys.argv[2], "w"))
PY
  cat "$WORK/account.json"
}

# finish DEVICE...: stop the agents (SIGTERM), drain each outbox (the recovery time is the
# slowest drain), read outpost.readings and account for every accepted batch.
finish() {
  local spec=() dev t0
  for dev in "$@"; do stop_proc "$dev"; done
  for dev in "$@"; do
    t0=$(now_ms)
    drain_agent "$dev" 180
    note_recovery $(($(now_ms) - t0))
    spec+=("$dev=$(outbox_last_seq "$dev"):$(outbox_rows "$dev")")
  done
  kafka_dump outpost.readings "$WORK/readings.jsonl"
  local rc=0
  python3 "$TORTURE/account.py" "$WORK/readings.jsonl" "${spec[@]}" "${FINISH_EXTRA[@]}" \
    >"$WORK/account.json" || rc=$?
  write_result
  return $rc
}

# start_failure_allowed LABEL RC FROM: an agent run (of $dev, its log from line FROM) that exited
# with status RC != 0 may only be one that could not open its outbox at start-up (the unit's
# Restart=on-failure starts it again); counts it in `restarts`, which must stay within ITER.
start_failure_allowed() {
  local label=$1 rc=$2 from=$3
  ((rc < 128)) || fail "$label: the agent died of signal $((rc - 128))"
  tail -n +"$from" "$WORK/$dev.log" | grep -q ' running: ' &&
    fail "$label: the agent exited with status $rc after it started reading (not allowed)"
  tail -n +"$from" "$WORK/$dev.log" | grep -q 'cannot open the outbox' ||
    fail "$label: the agent exited with status $rc without saying why"
  ((++restarts > ITER)) && fail "$label: more restarts than faults (crash loop)"
  return 0
}

# start_kafka_cluster: a real 3-broker KRaft cluster plus 2 controller-only nodes in $WORK/kafka
# ($KDIR; scripts/kafka.sh start --nodes 3 --controllers 2); KAFKA is its brokers' bootstrap list.
# Every node that runs is stopped by this harness, whatever happened.
start_kafka_cluster() {
  local rc=0 n
  KDIR="$WORK/kafka"
  KAFKA=$(OUTPOST_KAFKA_TOOL="$KAFKA_TOOL_BIN" "$KAFKA_SH" start --dir "$KDIR" --nodes 3 \
    --controllers 2 --timeout 240 2>>"$WORK/kafka-start.log") || rc=$?
  for n in 1 2 3 4 5; do
    [[ -f "$KDIR/node$n/kafka.pid" ]] && PIDS[kafka$n]=$(cat "$KDIR/node$n/kafka.pid")
  done
  for n in 1 2 3; do ln -sf "$KDIR/node$n/server.log" "$WORK/kafka$n-server.log"; done
  ((rc == 0)) || fail "the Kafka cluster did not start: $(tail -n 5 "$WORK/kafka-start.log")"
}

# java_account DEVICE...: after finish, the same accounting from a second, independent client:
# Kafka's Java console consumer (real broker only). Its figures go into $RESULT as
# "java_consumer"; fails the scenario if its accounting fails or it read another number of
# readings than kcat did.
java_account() {
  local spec=() dev jrc=0
  java_consumer_dump outpost.readings "$WORK/readings.java.jsonl"
  for dev in "$@"; do spec+=("$dev=$(outbox_last_seq "$dev"):$(outbox_rows "$dev")"); done
  python3 "$TORTURE/account.py" "$WORK/readings.java.jsonl" "${spec[@]}" >"$WORK/account.java.json" || jrc=$?
  echo "  Java console consumer: $(cat "$WORK/account.java.json")"
  python3 - "$RESULT" "$WORK/account.java.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
j = json.load(open(sys.argv[2]))
a["java_consumer"] = {k: j[k] for k in ("readings", "lost", "duplicated", "reordered", "ok")}
json.dump(a, open(sys.argv[1], "w"))
PY
  ((jrc == 0)) || fail "the Java console consumer's accounting failed: $(cat "$WORK/account.java.json")"
  [[ $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["readings"] == json.load(open(sys.argv[2]))["readings"])' "$WORK/account.json" "$WORK/account.java.json") == True ]] ||
    fail "kcat and the Java console consumer read different numbers of readings"
}

# net_namespace MATCH_OUT MATCH_IN: a network namespace ($NS) joined to this one by a veth pair
# on a private /30 ($NET_HOST here, $NET_AGENT inside, on $VETH_HOST / $VETH_AGENT); the packets
# on the inner veth that iptables matches (MATCH_OUT leaving, MATCH_IN arriving: e.g.
# "-p tcp --dport 9092" / "-p tcp --sport 9092"; empty = all) go to netfilter queue $QNUM, where
# `netem ARGS` (tests/torture/netem.py) drops or delays them. `nsx CMD` runs CMD inside. Torn down
# on exit (net_teardown, which also stops the processes named in NET_PROCS).
NET_PROCS=()
net_namespace() {
  local match_out=$1 match_in=$2
  [[ $EUID -eq 0 ]] || fail "$NAME needs root (a network namespace, a veth pair, iptables)"
  command -v iptables-legacy >/dev/null ||
    fail "$NAME needs iptables-legacy (Debian package iptables; scripts/deps.sh installs it)"
  NS=outpost-net$$ VETH_HOST=opn$$h VETH_AGENT=opn$$a QNUM=$((1000 + $$ % 60000))
  # A private /30 not already in use here: 10.<200..249>.<x>.<4k>/30, drawn from the pid.
  NET_HOST=""
  for try in $(seq 0 49); do
    net="10.$((200 + ($$ + try) % 50)).$(($$ / 50 % 256)).$(($$ % 64 * 4))"
    ip -4 addr | grep -q "inet ${net%.*}\." && continue
    ip -4 route | grep -q "^${net%.*}\." && continue
    NET_HOST="${net%.*}.$((${net##*.} + 1))" NET_AGENT="${net%.*}.$((${net##*.} + 2))"
    break
  done
  [[ -n $NET_HOST ]] || fail "no free 10.200-249.x.x/30 subnet for the veth pair"
  net_teardown() {  # by name, always: the processes in the namespace first
    local p
    stop_proc netem
    for p in "${NET_PROCS[@]}"; do stop_proc "$p"; done
    ip link del "$VETH_HOST" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
  }
  # errexit off first, so a failing step does not skip the rest or cleanup (see disk-full).
  trap 'st=$?; set +e; net_teardown; (exit $st); cleanup' EXIT
  nsx() { ip netns exec "$NS" "$@"; }
  ip netns add "$NS" || fail "cannot create the network namespace $NS"
  ip link add "$VETH_HOST" type veth peer name "$VETH_AGENT" ||
    fail "cannot create the veth pair $VETH_HOST"
  ip link set "$VETH_AGENT" netns "$NS"
  ip addr add "$NET_HOST/30" dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  nsx ip addr add "$NET_AGENT/30" dev "$VETH_AGENT"
  nsx ip link set "$VETH_AGENT" up
  nsx ip link set lo up
  # shellcheck disable=SC2086  # the matches are word lists
  nsx iptables-legacy -A OUTPUT -o "$VETH_AGENT" $match_out -j NFQUEUE --queue-num "$QNUM" --queue-bypass
  # shellcheck disable=SC2086
  nsx iptables-legacy -A INPUT -i "$VETH_AGENT" $match_in -j NFQUEUE --queue-num "$QNUM" --queue-bypass
  log "namespace $NS: $NET_AGENT ($VETH_AGENT) <-> $NET_HOST ($VETH_HOST), queue $QNUM${match_out:+ ($match_out)}"
  : >"$WORK/netem.stats"
  netem() {  # netem ARGS...: (re)start the queue's loss/delay with these settings
    stop_proc netem
    [[ -s "$WORK/netem.json" ]] && { cat "$WORK/netem.json"; echo; } >>"$WORK/netem.stats"
    rm -f "$WORK/netem.json"
    ((!$#)) && return 0
    # ip netns exec execs python: $! is netem.py's own pid.
    ip netns exec "$NS" python3 "$TORTURE/netem.py" --queue "$QNUM" --seed "$RANDOM" \
      --stats "$WORK/netem.json" "$@" 2>>"$WORK/netem.log" &
    PIDS[netem]=$!
    sleep 0.2
    kill -0 "${PIDS[netem]}" 2>/dev/null ||
      fail "netem.py $* did not start: $(tail -n 3 "$WORK/netem.log")"
  }
}

# netem_summary: the packets netem.py saw, dropped and delayed over the run; fails if it dropped
# or delayed none (the scenario did not exercise the link).
netem_summary() {
  python3 - "$WORK/netem.stats" >"$WORK/netem.sum" <<'PY' || nofault=1
import json, sys
t = {"seen": 0, "dropped": 0, "delayed": 0}
for line in open(sys.argv[1]):
    if line.strip():
        for k in t:
            t[k] += json.loads(line)[k]
print(f"  netem: {t['seen']} packets queued, {t['dropped']} dropped, {t['delayed']} delayed")
sys.exit(0 if t["dropped"] and t["delayed"] else 1)
PY
  cat "$WORK/netem.sum"
  [[ -z ${nofault:-} ]] ||
    fail "the faults dropped or delayed no packet: the scenario did not exercise the link"
}

FINISH_EXTRA=()  # more account.py specs (a simulated fleet's PREFIX*=ACKED:SENT)

add_outbox_setting() {  # add_outbox_setting DEVICE 'key = value'
  sed -i "/^path = .*outbox.db\"\$/a $2" "$WORK/$1.toml"
}

case "$NAME" in
  agent-kill | agent-kill-normal)
    # SIGKILL the agent at a random moment 20..1500 ms after its start: the short draws land in
    # start-up (opening and recovering the store), the rest during ingest, where ~10 outbox
    # transactions a second (1,000 readings/s, 100 a batch) are being committed and acknowledged.
    start_mosquitto
    start_devkafka
    start_aggregator
    dev=tort-agent
    write_agent_config "$dev" 500
    [[ "$NAME" == agent-kill-normal ]] && add_outbox_setting "$dev" 'synchronous = "normal"'
    for i in $(seq 1 "$ITER"); do
      start_agent "$dev"
      ms=$(rand_ms 20 1500)
      sleep_ms "$ms"
      kill9_proc "$dev"
      echo "  kill $i/$ITER after ${ms} ms: outbox $(outbox_rows "$dev") batches, last seq $(outbox_last_seq "$dev")"
    done
    grep -qiE 'corrupt|malformed|database disk image' "$WORK/$dev.log" &&
      fail "the outbox was damaged by a process kill: $(grep -iE 'corrupt|malformed' "$WORK/$dev.log" | head -3)"
    finish "$dev"
    ;;

  aggregator-kill | aggregator-kill-noflush)
    # SIGKILL the aggregator under load from two agents (2,000 readings/s each) every 0.5..2.5 s,
    # restart it 0.3 s later on the same dedup store. "aggregator-kill" flushes the dedup store
    # every 100 ms (the default); "-noflush" once a minute, so every restart must recover its
    # latest deliveries from the topic's tail.
    start_mosquitto
    start_devkafka
    AGG_HTTP_PORT=$(free_port)
    AGG_ARGS=()
    [[ "$NAME" == aggregator-kill-noflush ]] && AGG_ARGS=(--set dedup.flush_interval_ms=60000)
    start_aggregator "${AGG_ARGS[@]}"
    for dev in tort-x tort-y; do
      write_agent_config "$dev" 1000
      start_agent "$dev"
    done
    for i in $(seq 1 "$ITER"); do
      sleep_ms "$(rand_ms 500 2500)"
      kill9_proc aggregator
      sleep 0.3
      t0=$(now_ms)
      start_aggregator "${AGG_ARGS[@]}"
      note_recovery $(($(now_ms) - t0))
      echo "  kill $i/$ITER: aggregator back after $(($(now_ms) - t0)) ms"
    done
    sleep 1
    finish tort-x tort-y
    ;;

  mosquitto-kill | mosquitto-kill-persist)
    # SIGKILL Mosquitto every 0.5..2 s under load, leave it down 0.2..3 s, restart it on the same
    # port. "-persist" runs it with persistence on (autosave every 1 s), so a restart may replay
    # an old queue; neither mode is part of the guarantee (design.md), the end-to-end ack is.
    start_mosquitto
    if [[ "$NAME" == mosquitto-kill-persist ]]; then
      stop_proc mosquitto
      sed -i 's/^persistence false$/persistence true/' "$WORK/mosquitto.conf"
      printf 'persistence_location %s/\nautosave_interval 1\n' "$WORK" >>"$WORK/mosquitto.conf"
      mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
      PIDS[mosquitto]=$!
      wait_for 10 "mosquitto with persistence" port_open "$MQTT_PORT"
    fi
    start_devkafka
    start_aggregator
    # 1,000 readings/s per sensor up to 30 kills; beyond, 500: 100 kills at 1,000 (1.1 M readings,
    # ~6,000 batches per device on one partition) overflow the development broker's ~5 MB per
    # partition, which drops the oldest messages (seqs 1..~550 missing on Kafka, docs/devkafka.md).
    rate=1000
    ((ITER <= 30)) || rate=500
    for dev in tort-m1 tort-m2; do
      write_agent_config "$dev" "$rate"
      start_agent "$dev"
    done
    for i in $(seq 1 "$ITER"); do
      sleep_ms "$(rand_ms 500 2000)"
      kill9_proc mosquitto
      down=$(rand_ms 200 3000)
      sleep_ms "$down"
      mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
      PIDS[mosquitto]=$!
      wait_for 10 "mosquitto back on $MQTT_PORT" port_open "$MQTT_PORT"
      echo "  kill $i/$ITER: mosquitto down ${down} ms"
    done
    sleep 1
    kill -0 "${PIDS[aggregator]}" || fail "the aggregator died while Mosquitto was killed"
    finish tort-m1 tort-m2
    ;;

  outbox-damage)
    # Storage faults before start-up: run the agent 0.3..1.5 s, stop it, then damage its store
    # (the database or its WAL) at a random offset — truncate there, or overwrite 1..512 random
    # bytes — and start it again. It must start every time (no crash loop), move an unreadable
    # store aside under a new epoch by itself, and lose nothing but batches that were waiting in
    # a damaged store (tests/torture/account_damaged.py); what the agent's salvage read back of a
    # moved store is counted as dropped (store_damaged), and only the rest is lost.
    start_mosquitto
    start_devkafka
    start_aggregator
    dev=tort-d
    write_agent_config "$dev" 500
    db="$WORK/$dev.outbox.db"
    : >"$WORK/accepted" && : >"$WORK/exposed" && : >"$WORK/unreadable"
    snapshot() {  # the store's epoch, last seq and waiting seqs, read from a copy (no checkpoint)
      rm -rf "$WORK/snap" && mkdir "$WORK/snap"
      cp "$db"* "$WORK/snap/" 2>/dev/null || true
      local e
      e=$(sqlite3 "$WORK/snap/$dev.outbox.db" "SELECT value FROM meta WHERE key='epoch'" 2>/dev/null) || return 0
      [[ -n "$e" ]] || return 0
      local last
      last=$(sqlite3 "$WORK/snap/$dev.outbox.db" \
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name='batches'),0)" 2>/dev/null) ||
        last=""
      # A store the harness cannot read either (damaged by an earlier iteration and not yet
      # reopened): its epoch is marked, and account_damaged.py takes every seq of it on Kafka as
      # accepted and every missing one as lost to damage.
      if [[ -z "$last" ]]; then echo "$e" >>"$WORK/unreadable"; return 0; fi
      echo "$e $last" >>"$WORK/accepted"
      { sqlite3 "$WORK/snap/$dev.outbox.db" "SELECT seq, readings FROM batches" 2>/dev/null || echo "$e" >>"$WORK/unreadable"; } |
        tr '|' ' ' |
        sed "s/^/$e /" >>"$WORK/$1"
    }
    for i in $(seq 1 "$ITER"); do
      start_agent "$dev"
      sleep_ms "$(rand_ms 300 1500)"
      kill -0 "${PIDS[$dev]}" 2>/dev/null || fail "iteration $i: the agent exited on a damaged store (crash loop)"
      # Half the stops are clean (SIGTERM checkpoints the WAL into the database file), half
      # SIGKILL (the recent commits stay in the WAL), so damage lands in both.
      if ((RANDOM % 2)); then stop_proc "$dev"; else kill9_proc "$dev"; fi
      snapshot exposed
      target=$db
      [[ -s "$db-wal" ]] && ((RANDOM % 2)) && target="$db-wal"
      size=$(stat -c %s "$target")
      off=$(((RANDOM * 32768 + RANDOM) % (size > 0 ? size : 1)))
      if ((RANDOM % 2)); then
        truncate -s "$off" "$target"
        what="truncated to $off bytes"
      else
        len=$((1 + RANDOM % 512))
        head -c "$len" /dev/urandom | dd of="$target" bs=1 seek="$off" conv=notrunc status=none
        what="$len random bytes at offset $off"
      fi
      echo "  damage $i/$ITER: $(basename "$target") ($size bytes) $what"
    done
    start_agent "$dev"
    sleep 1
    kill -0 "${PIDS[$dev]}" 2>/dev/null || fail "the agent exited on the last damaged store"
    stop_proc "$dev"
    t0=$(now_ms)
    drain_agent "$dev" 180
    note_recovery $(($(now_ms) - t0))
    snapshot final
    kafka_dump outpost.readings "$WORK/readings.jsonl"
    rc=0
    python3 "$TORTURE/account_damaged.py" "$WORK/readings.jsonl" "$dev" "$WORK/accepted" \
      "$WORK/exposed" "$(outbox_rows "$dev")" "$WORK/unreadable" "$WORK/$dev.log" \
      >"$WORK/account.json" || rc=$?
    write_result
    moved=$(grep -c 'moved it to' "$WORK/$dev.log" || true)
    echo "  the agent moved $moved unreadable stores aside; salvaged completely:" \
      "$(grep -c 'salvaged the damaged store (epoch [0-9a-z]*):' "$WORK/$dev.log" || true)," \
      "in part or not at all: $(grep -c 'only in part' "$WORK/$dev.log" || true)"
    exit $rc
    ;;

  disk-full | disk-tiny)
    # disk-tiny: the same on a 400 KiB tmpfs, smaller than the outbox's 5 MB reserve file (the
    # reserve shrinks to fit; before, acknowledged batches could never be deleted on such a disk
    # and the outbox never drained).
    # The outbox on a 12 MiB tmpfs (DISK_KB; a private mount namespace: torture.sh runs this
    # scenario under unshare -m) while Mosquitto is down 6..9 s and up 2..4 s, ITERATIONS times,
    # with the agent reading 40,000 readings/s: the disk fills, the agent counts each reading it
    # cannot store as dropped (reason write_error) and keeps running, and when the broker is
    # back it drains and stores again by itself. Produced = on Kafka + counted drops, exactly.
    [[ "${TORTURE_PRIVATE_MOUNTS:-0}" == 1 ]] || fail "disk-full must run in a private mount namespace (scripts/torture.sh does)"
    mkdir -p "$WORK/disk"
    disk_kb=${DISK_KB:-12288}
    [[ $NAME == disk-tiny ]] && disk_kb=${DISK_KB:-400}
    mount -t tmpfs -o "size=${disk_kb}k" tmpfs "$WORK/disk" || fail "cannot mount a tmpfs at $WORK/disk"
    # cleanup takes the exit status from $?: keep the scenario's, not umount's. errexit off
    # first: under set -e a failing command in the trap (umount, or "(exit 1)" itself) ended
    # the shell before cleanup, so a failed run left its processes running.
    trap 'st=$?; set +e; umount -l "$WORK/disk" 2>/dev/null; (exit $st); cleanup' EXIT
    start_mosquitto
    start_devkafka
    start_aggregator
    dev=tort-f
    write_agent_config "$dev" 20000
    sed -i "s#^path = .*outbox.db\"\$#path = \"$WORK/disk/$dev.outbox.db\"#" "$WORK/$dev.toml"
    produced=$((ITER * 400000))
    stop_proc mosquitto
    start_draining_agent "$dev" "$produced"
    for i in $(seq 1 "$ITER"); do
      down=$(rand_ms 6000 9000)
      sleep_ms "$down"
      mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
      PIDS[mosquitto]=$!
      wait_for 10 "mosquitto back on $MQTT_PORT" port_open "$MQTT_PORT"
      sleep_ms "$(rand_ms 2000 4000)"
      kill -0 "${PIDS[$dev]}" 2>/dev/null || break
      stop_proc mosquitto
      echo "  outage $i/$ITER: broker down ${down} ms; disk $(df --output=pcent "$WORK/disk" | tail -1)"
    done
    [[ -n "${PIDS[mosquitto]:-}" ]] || {
      mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
      PIDS[mosquitto]=$!
    }
    t0=$(now_ms)
    wait_agents_drained 180 "$dev"
    note_recovery $(($(now_ms) - t0))
    grep -q 'disk is full' "$WORK/$dev.log" || fail "the disk never filled; the scenario did not exercise a full disk"
    WORK_OUTBOX_DB="$WORK/disk/$dev.outbox.db"
    last=$(sqlite3 "$WORK_OUTBOX_DB" "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name='batches'),0)")
    rows=$(sqlite3 "$WORK_OUTBOX_DB" "SELECT COUNT(*) FROM batches")
    kafka_dump outpost.readings "$WORK/readings.jsonl"
    rc=0
    python3 "$TORTURE/account.py" "$WORK/readings.jsonl" "$dev=$last:$rows:$produced" \
      >"$WORK/account.json" || rc=$?
    write_result
    exit $rc
    ;;

  io-error)
    # I/O errors in the outbox's files (tests/torture/iofault_shim.c, LD_PRELOAD): one counting run
    # learns how many writes / fsyncs / opens of the outbox a run of RUN_READINGS readings makes
    # (T per kind); then ITERATIONS runs on the same outbox each fail the Nth operation of one kind
    # with EIO or ENOSPC, N spread over 1..T, once (transient) or from N on for 200..1500 ms (a
    # disk that fails for a while). Each run reads RUN_READINGS readings and must exit 0 once
    # drained, by itself (a bounded wait: a hang fails). A run that cannot open its outbox may
    # exit 1 before reading anything; it is started again 2 s later without the fault (systemd's
    # Restart=on-failure, RestartSec=2) and must then run. A transient I/O error must never be
    # taken for corruption (no store moved aside, one epoch). At the end: produced = on Kafka +
    # counted drops, exactly, nothing waiting.
    shim="$OUTPOST_BUILD_DIR/tests/integration/outpost_iofault.so"
    [[ -f "$shim" ]] || fail "$shim is not built (target outpost_iofault)"
    start_mosquitto
    start_devkafka
    start_aggregator
    dev=tort-io
    run_readings=${RUN_READINGS:-2000}
    write_agent_config "$dev" 500
    report="$WORK/iofault.report"
    : >"$WORK/$dev.log"
    # io_run LABEL [SHIM_ENV...]: one agent run with the shim; sets RUN_MS (its duration). Exit 1
    # before reading anything is allowed only at start-up (see above); anything else fails.
    produced=0 injected=0 restarts=0
    io_run() {
      local label=$1 t0 rc=0 from
      shift
      from=$(($(wc -l <"$WORK/$dev.log") + 1))
      t0=$(now_ms)
      env LD_PRELOAD="$shim" OUTPOST_IOFAULT_MATCH="/$dev.outbox.db" OUTPOST_IOFAULT_REPORT="$report" \
        "$@" "$AGENT_BIN" --config "$WORK/$dev.toml" --max-readings "$run_readings" \
        --exit-when-drained >>"$WORK/$dev.log" 2>&1 &
      PIDS[$dev]=$!
      timeout 90 tail --pid="${PIDS[$dev]}" -f /dev/null || fail "$label: the agent did not drain within 90 s (hang)"
      wait "${PIDS[$dev]}" || rc=$?
      unset "PIDS[$dev]"
      if ((rc != 0)); then
        start_failure_allowed "$label" "$rc" "$from"
        echo "  $label: start-up failed ($(tail -n +"$from" "$WORK/$dev.log" | grep -m1 -o 'cannot open the outbox.*' | cut -c1-150)); restarting in 2 s without the fault"
        t_restart=$(now_ms)
        sleep 2
        io_run "$label (restart)"
        RUN_MS=$((RUN_MS + t_restart - t0))
        return
      fi
      produced=$((produced + run_readings))
      RUN_MS=$(($(now_ms) - t0))
    }
    io_run "counting run"
    base_ms=$RUN_MS
    read -r _ _ t_write _ t_fsync _ t_open _ _ < <(grep '^counts' "$report" | tail -1)
    echo "  counting run: ${base_ms} ms; outbox writes $t_write, fsyncs $t_fsync, opens $t_open"
    ((t_write > 0 && t_fsync > 0 && t_open > 0)) || fail "the counting run saw no outbox I/O: the shim is not working"
    kinds=(write fsync open) errnos=(EIO ENOSPC)
    declare -A done_kind=([write]=0 [fsync]=0 [open]=0)
    per_kind=$(((ITER + 2) / 3))
    slowest=0
    for i in $(seq 0 $((ITER - 1))); do
      kind=${kinds[i % 3]} err=${errnos[i % 2]} for_ms=0
      (((i / 2) % 2)) && for_ms=$(rand_ms 200 1500)
      # N spread evenly over 1..T of this kind (jittered within its slot), over the whole run; T
      # is what the previous run counted (every run counts; the first one also creates the store).
      read -r _ _ t_write _ t_fsync _ t_open _ _ < <(grep '^counts' "$report" | tail -1)
      declare -A total=([write]=$t_write [fsync]=$t_fsync [open]=$t_open)
      j=${done_kind[$kind]} t=${total[$kind]}
      done_kind[$kind]=$((j + 1))
      n=$((1 + (j * t + RANDOM % (t > per_kind ? t / per_kind : 1) ) / per_kind))
      ((n > t)) && n=$t
      before=$(grep -c '^fail' "$report" || true)
      what="$kind #$n of ~$t $err $( ((for_ms)) && echo "for ${for_ms} ms" || echo once)"
      io_run "fault $((i + 1))/$ITER ($what)" OUTPOST_IOFAULT_OP="$kind" OUTPOST_IOFAULT_N="$n" \
        OUTPOST_IOFAULT_ERRNO="$err" OUTPOST_IOFAULT_FOR_MS="$for_ms"
      ms=$RUN_MS
      failed=$(($(grep -c '^fail' "$report" || true) - before))
      ((failed > 0)) && injected=$((injected + 1))
      ((ms > slowest)) && slowest=$ms
      echo "  fault $((i + 1))/$ITER: $what: $failed operations failed; run ${ms} ms"
    done
    note_recovery $((slowest > base_ms ? slowest - base_ms : 0))
    grep -iE 'corrupt|malformed|database disk image|moved it to' "$WORK/$dev.log" | head -3 | grep . &&
      fail "an I/O error was taken for a damaged store"
    ((injected > 0)) || fail "no fault was injected (every N was past the run's operations)"
    echo "  $injected of $ITER runs had an injected fault; $restarts start-ups failed and were restarted"
    last=$(outbox_last_seq "$dev")
    rows=$(outbox_rows "$dev")
    # Drops counted after the last stored batch wait in the store for the next one to report them.
    pending=$(sqlite3 "$WORK/$dev.outbox.db" "SELECT COALESCE((SELECT value FROM meta WHERE key='pending_dropped'),0)")
    echo "  $pending dropped readings counted and waiting for the next batch to report them"
    kafka_dump outpost.readings "$WORK/readings.jsonl"
    rc=0
    python3 "$TORTURE/account.py" "$WORK/readings.jsonl" "$dev=$last:$rows:$produced:$pending" \
      >"$WORK/account.json" || rc=$?
    write_result
    exit $rc
    ;;

  io-error-kill)
    # A failed fsync of the outbox (its -wal or database; tests/torture/iofault_shim.c) and a
    # process kill right after it: the frames of the commit whose fsync failed are in the WAL file
    # with a valid commit record, the agent counts that transaction as failed (retries it once,
    # then counts its readings as dropped), and SQLite's recovery at the next start may replay it.
    # One counting run learns the fsyncs of a run (T); then ITERATIONS runs on the same outbox each
    # fail the Nth fsync (N spread over 1..T; EIO or ENOSPC; once, or from N on for 200..1500 ms)
    # and the shim SIGKILLs the agent 0..KILL_MAX_MS (50) ms after that failure (every 4th run:
    # 0 ms, before the agent's next outbox I/O); the next run is the restart. A last run without a fault drains.
    # Checked: nothing accepted lost or duplicated, one epoch, no store moved aside (a needless
    # move by the WAL check is a false alarm), and the readings (account_iokill.py): every
    # reading missing from Kafka inside a run is counted as dropped, and no more is counted than
    # is missing (a batch both on Kafka and counted as dropped is an over-count).
    shim="$OUTPOST_BUILD_DIR/tests/integration/outpost_iofault.so"
    [[ -f "$shim" ]] || fail "$shim is not built (target outpost_iofault)"
    start_mosquitto
    start_devkafka
    start_aggregator
    dev=tort-iok
    run_readings=${RUN_READINGS:-2000}
    kill_max=${KILL_MAX_MS:-50}
    write_agent_config "$dev" 500
    report="$WORK/iofault.report"
    runs="$WORK/runs"
    : >"$WORK/$dev.log" && : >"$runs"
    produced=0 killed=0 restarts=0
    # iok_run LABEL [SHIM_ENV...]: one agent run with the shim; a SIGKILL is allowed only when the
    # shim reported its kill; exit 1 only at start-up with "cannot open the outbox" (restarted
    # 2 s later without the fault, as in io-error).
    iok_run() {
      local label=$1 t0 rc=0 from kills
      shift
      from=$(($(wc -l <"$WORK/$dev.log") + 1))
      kills=$(grep -c '^kill' "$report" 2>/dev/null || true)
      t0=$(date +%s%6N)
      env LD_PRELOAD="$shim" OUTPOST_IOFAULT_MATCH="/$dev.outbox.db" OUTPOST_IOFAULT_REPORT="$report" \
        "$@" "$AGENT_BIN" --config "$WORK/$dev.toml" --max-readings "$run_readings" \
        --exit-when-drained >>"$WORK/$dev.log" 2>&1 &
      PIDS[$dev]=$!
      # stderr aside meanwhile: bash's own "Killed" notice for the killed run is expected.
      local t_rc=0 errfd
      exec {errfd}>&2 2>/dev/null
      timeout 90 tail --pid="${PIDS[$dev]}" -f /dev/null || t_rc=$?
      ((t_rc == 0)) && { wait "${PIDS[$dev]}" || rc=$?; }
      exec 2>&"$errfd" {errfd}>&-
      ((t_rc == 0)) || fail "$label: the agent did not drain within 90 s (hang)"
      unset "PIDS[$dev]"
      if ((rc == 137)); then
        (($(grep -c '^kill' "$report") > kills)) || fail "$label: the agent died of SIGKILL, not the shim's"
        read -r _ delay kill_us < <(grep '^kill' "$report" | tail -1)
        echo "$t0 $(date +%s%6N) killed $kill_us" >>"$runs"
        killed=$((killed + 1))
        LAST_RUN="killed ${delay} ms after the failure"
        return
      fi
      if ((rc != 0)); then
        start_failure_allowed "$label" "$rc" "$from"
        echo "  $label: start-up failed; restarting in 2 s without the fault"
        sleep 2
        iok_run "$label (restart)"
        return
      fi
      echo "$t0 $(date +%s%6N) clean 0" >>"$runs"
      produced=$((produced + run_readings))
      LAST_RUN="exited by itself"
    }
    iok_run "counting run"
    read -r _ _ _ _ t_fsync _ _ _ _ < <(grep '^counts' "$report" | tail -1)
    echo "  counting run: outbox fsyncs $t_fsync"
    ((t_fsync > 0)) || fail "the counting run saw no outbox fsync: the shim is not working"
    errnos=(EIO ENOSPC)
    for i in $(seq 0 $((ITER - 1))); do
      err=${errnos[i % 2]} for_ms=0
      (((i / 2) % 2)) && for_ms=$(rand_ms 200 1500)
      # A killed run writes no counts: T stays the counting run's.
      n=$((1 + (i * t_fsync + RANDOM % (t_fsync > ITER ? t_fsync / ITER : 1)) / ITER))
      ((n > t_fsync)) && n=$t_fsync
      what="fsync #$n of ~$t_fsync $err $( ((for_ms)) && echo "for ${for_ms} ms" || echo once)"
      before_moves=$(grep -c 'moved it to' "$WORK/$dev.log" || true)
      iok_run "fault $((i + 1))/$ITER ($what)" OUTPOST_IOFAULT_OP=fsync OUTPOST_IOFAULT_N="$n" \
        OUTPOST_IOFAULT_ERRNO="$err" OUTPOST_IOFAULT_FOR_MS="$for_ms" \
        OUTPOST_IOFAULT_KILL_MS="$( ((i % 4 == 3)) && echo 0 || echo "$kill_max")" \
        OUTPOST_IOFAULT_SEED="$(rand_ms 1 1000000000)"
      moves=$(($(grep -c 'moved it to' "$WORK/$dev.log" || true) - before_moves))
      echo "  fault $((i + 1))/$ITER: $what: $LAST_RUN$( ((moves)) && echo "; STORE MOVED ASIDE at start-up")"
    done
    iok_run "final run"
    echo "  final run: $LAST_RUN; $killed of $ITER runs killed, $restarts start-ups failed and were restarted"
    ((killed > 0)) || fail "no run was killed (every N was past the run's fsyncs)"
    false_alarms=$(grep -c 'moved it to' "$WORK/$dev.log" || true)
    last=$(outbox_last_seq "$dev")
    rows=$(outbox_rows "$dev")
    pending=$(sqlite3 "$WORK/$dev.outbox.db" "SELECT COALESCE((SELECT value FROM meta WHERE key='pending_dropped'),0)")
    kafka_dump outpost.readings "$WORK/readings.jsonl"
    rc=0
    python3 "$TORTURE/account.py" "$WORK/readings.jsonl" "$dev=$last:$rows" \
      >"$WORK/account.json" || rc=$?
    python3 "$TORTURE/account_iokill.py" "$WORK/readings.jsonl" "$dev" "$runs" "$run_readings" \
      500 "$pending" >"$WORK/iokill.json" || rc=1
    echo "  readings: $(cat "$WORK/iokill.json")"
    python3 - "$WORK/account.json" "$WORK/iokill.json" "$false_alarms" <<'PY'
import json, sys
a, k = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
a["readings_check"] = k
a["stores_moved_aside"] = int(sys.argv[3])
json.dump(a, open(sys.argv[1], "w"))
PY
    write_result
    if ((false_alarms > 0)); then
      echo "  FALSE ALARM: the store was moved aside $false_alarms times after a failed fsync and a kill:"
      grep -E 'WAL|moved it to' "$WORK/$dev.log" | head -5
      rc=1
    fi
    exit $rc
    ;;

  kafka-errors | kafka-down | kafka-leader | kafka-rtt)
    # The Kafka fault matrix on the development broker's fault injection (outpost-devkafka
    # --control, docs/devkafka.md) under two agents at 2,000 readings/s each. Each fault is checked
    # to have happened (the injected errors were consumed; deliveries stopped while the broker was
    # down) and the time until deliveries resume after it is measured.
    #   kafka-errors: ITERATIONS times, the next 1..10 Produce requests fail with one retriable
    #                 error, cycling through KAFKA_ERRORS (and _TRANSPORT: the broker drops the
    #                 connection instead of answering).
    #   kafka-down:   every mock broker down (connections closed and refused, data kept) for 1 s,
    #                 then 30 s, then 1..30 s; up again 2..4 s.
    #   kafka-leader: 3 mock brokers; every 0.3..1.5 s a partition of outpost.readings moves to
    #                 another broker, one change in five leaves it without a leader for 0.5..2 s.
    #   kafka-rtt:    every response of every broker delayed 5 s for 6..12 s, then 2..4 s normal.
    KCTL_PORT=$(free_port)
    kctl() {  # kctl COMMAND...: one fault-injection command; fails unless the reply is "ok ..."
      local fd reply=""
      exec {fd}<>"/dev/tcp/127.0.0.1/$KCTL_PORT" || fail "devkafka control port $KCTL_PORT refused"
      printf '%s\n' "$*" >&"$fd"
      IFS= read -r -t 10 reply <&"$fd" || true
      exec {fd}>&-
      [[ $reply == ok* ]] || fail "devkafka control '$*': ${reply:-no reply within 10 s}"
      echo "${reply#ok }"
    }
    delivered() {  # Kafka messages with a successful delivery report so far (0 before the first)
      local v
      v=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_delivered_total)
      echo "${v:-0}"
    }
    some_delivered() { (($(delivered) > 0)); }
    # wait_delivery_after N: until more than N messages were delivered (bounded: 120 s); prints
    # the milliseconds it took.
    wait_delivery_after() {
      local t0 end
      t0=$(now_ms)
      end=$((SECONDS + 120))
      until (($(delivered) > $1)); do
        ((SECONDS < end)) || fail "no Kafka delivery within 120 s after the fault ended"
        sleep 0.05
      done
      echo $(($(now_ms) - t0))
    }
    brokers=1
    [[ $NAME == kafka-leader ]] && brokers=3
    "$DEVKAFKA_BIN" --listen "127.0.0.1:0" --brokers "$brokers" --partitions 4 \
      --control "127.0.0.1:$KCTL_PORT" --ready-file "$WORK/devkafka.ready" >"$WORK/devkafka.log" 2>&1 &
    PIDS[devkafka]=$!
    wait_for 15 "outpost-devkafka" test -s "$WORK/devkafka.ready"
    KAFKA=$(cat "$WORK/devkafka.ready")
    start_mosquitto
    AGG_HTTP_PORT=$(free_port)
    start_aggregator
    for dev in tort-k1 tort-k2; do
      write_agent_config "$dev" 1000
      start_agent "$dev"
    done
    wait_for 30 "first deliveries to Kafka" some_delivered
    # TORTURE_KAFKA_ERRORS (space-separated names) replaces the matrix, e.g. to rerun one error.
    KAFKA_ERRORS=(NOT_LEADER_OR_FOLLOWER REQUEST_TIMED_OUT NOT_ENOUGH_REPLICAS
      NOT_ENOUGH_REPLICAS_AFTER_APPEND LEADER_NOT_AVAILABLE NETWORK_EXCEPTION UNKNOWN_TOPIC_OR_PART
      KAFKA_STORAGE_ERROR _TRANSPORT)
    [[ -n "${TORTURE_KAFKA_ERRORS:-}" ]] && read -r -a KAFKA_ERRORS <<<"$TORTURE_KAFKA_ERRORS"
    for i in $(seq 1 "$ITER"); do
      case $NAME in
        kafka-errors)
          sleep_ms "$(rand_ms 200 1000)"
          err=${KAFKA_ERRORS[$(((i - 1) % ${#KAFKA_ERRORS[@]}))]}
          n=$(rand_ms 1 10)
          # Each _TRANSPORT costs a reconnect (librdkafka backs off up to 10 s): at most 3.
          [[ $err == _TRANSPORT ]] && n=$(rand_ms 1 3)
          before=$(delivered)
          kctl push-broker-errors 1 Produce "$err" "$n" >/dev/null
          # The mock checks producer sequence numbers only for transactional producers: a Produce
          # request already in flight behind the last failed one would be appended out of order
          # and the client would take the failed messages as implicitly acknowledged — lost by
          # the mock, not by Kafka or Outpost (docs/reliability.md, "Findings"). A real broker
          # answers OUT_OF_ORDER_SEQUENCE_NUMBER there; the mock's nearest equivalent is to drop
          # the connection, so the request after the last error gets _TRANSPORT (unless
          # TORTURE_KAFKA_PLAIN_ERRORS=1, which shows the mock's loss).
          [[ "${TORTURE_KAFKA_PLAIN_ERRORS:-0}" == 1 || $err == _TRANSPORT ]] ||
            kctl push-broker-errors 1 Produce _TRANSPORT 1 >/dev/null
          end=$((SECONDS + 90))
          until [[ $(kctl pending-errors 1 Produce) == 0 ]]; do
            ((SECONDS < end)) || fail "iteration $i: the $n injected $err errors were not consumed in 90 s"
            sleep 0.05
          done
          ms=$(wait_delivery_after "$before")
          note_recovery "$ms"
          echo "  fault $i/$ITER: $n Produce requests failed with $err; deliveries again after $ms ms"
          ;;
        kafka-down)
          sleep_ms "$(rand_ms 2000 4000)"
          down=$(rand_ms 1000 30000)
          ((i == 1)) && down=1000
          ((i == 2)) && down=30000
          kctl broker-down all >/dev/null
          sleep 0.5  # replies already on their way are let through
          before=$(delivered)
          sleep_ms $((down - 500))
          [[ $(delivered) == "$before" ]] || fail "iteration $i: messages were delivered while every broker was down"
          kctl broker-up all >/dev/null
          ms=$(wait_delivery_after "$before")
          note_recovery "$ms"
          echo "  fault $i/$ITER: brokers down ${down} ms; deliveries again after $ms ms"
          ;;
        kafka-leader)
          sleep_ms "$(rand_ms 300 1500)"
          p=$((RANDOM % 4))
          before=$(delivered)
          if ((RANDOM % 5 == 0)); then
            gap=$(rand_ms 500 2000)
            kctl leader outpost.readings "$p" none >/dev/null
            sleep_ms "$gap"
            what="partition $p without a leader for $gap ms, then"
          else
            what="partition $p"
          fi
          b=$((1 + RANDOM % 3))
          kctl leader outpost.readings "$p" "$b" >/dev/null
          ms=$(wait_delivery_after "$before")
          note_recovery "$ms"
          echo "  fault $i/$ITER: $what leader $b; deliveries again after $ms ms"
          ;;
        kafka-rtt)
          sleep_ms "$(rand_ms 2000 4000)"
          slow=$(rand_ms 6000 12000)
          before=$(delivered)
          kctl rtt all 5000 >/dev/null
          sleep_ms "$slow"
          during=$(($(delivered) - before))
          before=$(delivered)
          kctl rtt all 0 >/dev/null
          ms=$(wait_delivery_after "$before")
          note_recovery "$ms"
          echo "  fault $i/$ITER: 5 s round trips for ${slow} ms ($during messages delivered meanwhile); next delivery $ms ms after"
          ;;
      esac
    done
    sleep 1
    kill -0 "${PIDS[aggregator]}" 2>/dev/null || fail "the aggregator died under Kafka faults"
    failed=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_failed_total)
    echo "  aggregator: $(delivered) Kafka messages delivered, $failed failed (their batches unacked, resent by the agents)"
    # The mock does not deduplicate an idempotent producer's retries (docs/devkafka.md, "What the
    # mock does not check"): a Produce request it appended but whose answer was lost to an
    # injected disconnect is appended again when librdkafka retries it, where a real broker drops
    # the repeated sequence. Such a copy is the same produce call: same batch part and the same
    # received_us, the aggregator's time of receipt. Those copies are removed before the
    # accounting and counted as broker_duplicates; a batch the aggregator produced twice (received
    # twice) has two receipt times and still counts as duplicated.
    kafka_dump() {
      timeout 60 kcat -b "$KAFKA" -C -t "$1" -o beginning -e -q -f '%s\n' >"$2.raw" 2>"$WORK/kcat.err" ||
        fail "kcat could not read $1: $(cat "$WORK/kcat.err")"
      python3 - "$2.raw" "$2" "$WORK/broker_duplicates" <<'PY'
import json, sys
seen, removed = set(), 0
with open(sys.argv[1], encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in src:
        m = json.loads(line)
        key = (m["device"], m["epoch"], m["seq"], m["part"], m.get("received_us"))
        if key in seen:
            removed += 1
            continue
        seen.add(key)
        out.write(line)
open(sys.argv[3], "w").write(str(removed))
PY
      echo "  broker duplicates (one produce call appended twice by the mock): $(cat "$WORK/broker_duplicates") messages"
      low_watermarks "$1" "$2.lowwm"
    }
    rc=0
    finish tort-k1 tort-k2 || rc=$?
    python3 - "$RESULT" "$(cat "$WORK/broker_duplicates")" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["broker_duplicates"] = int(sys.argv[2])
json.dump(a, open(sys.argv[1], "w"))
PY
    exit $rc
    ;;

  realkafka-kill)
    # The broker-down case on a real Apache Kafka broker (scripts/kafka.sh; KRaft, one node) under
    # two agents at 2,000 readings/s each: every 2..5 s SIGKILL the broker (no clean shutdown: the
    # log is recovered on start), leave it down 1..10 s, restart it on the same port with its data.
    # Needs the broker jars (scripts/kafka.sh fetch) and outpost-kafka-tool.
    KAFKA_MODE=real
    start_mosquitto
    start_real_kafka
    AGG_HTTP_PORT=$(free_port)
    start_aggregator
    delivered() {
      local v
      v=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_delivered_total)
      echo "${v:-0}"
    }
    some_delivered() { (($(delivered) > 0)); }
    for dev in tort-r1 tort-r2; do
      write_agent_config "$dev" 1000
      start_agent "$dev"
    done
    wait_for 60 "first deliveries to Kafka" some_delivered
    for i in $(seq 1 "$ITER"); do
      sleep_ms "$(rand_ms 2000 5000)"
      pid=${PIDS[kafka]}
      kill -KILL "$pid"
      # Not this shell's child (kafka.sh started it in its own session): poll until it is gone.
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && fail "iteration $i: the broker (pid $pid) survived SIGKILL for 10 s"
      unset "PIDS[kafka]"
      before=$(delivered)
      down=$(rand_ms 1000 10000)
      sleep_ms "$down"
      [[ $(delivered) == "$before" ]] || fail "iteration $i: messages were delivered while the broker was dead"
      t0=$(now_ms)
      start_real_kafka
      up=$(($(now_ms) - t0))
      end=$((SECONDS + 120))
      until (($(delivered) > before)); do
        ((SECONDS < end)) || fail "iteration $i: no Kafka delivery within 120 s after the broker restarted"
        sleep 0.05
      done
      ms=$(($(now_ms) - t0))
      note_recovery "$ms"
      echo "  kill $i/$ITER: broker dead ${down} ms, answering again after $up ms, deliveries again after $ms ms"
    done
    sleep 1
    kill -0 "${PIDS[aggregator]}" 2>/dev/null || fail "the aggregator died while the broker was killed"
    failed=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_failed_total)
    echo "  aggregator: $(delivered) Kafka messages delivered, $failed failed (their batches unacked, resent by the agents)"
    # Each restart found no clean-shutdown marker and recovered its logs: the kills were unclean.
    unclean=$(grep -c 'since no clean shutdown file was found' "$KAFKA_DIR/server.log" || true)
    ((unclean >= ITER)) || fail "the broker recovered from an unclean shutdown $unclean times, expected $ITER"
    echo "  the broker recovered its logs after an unclean shutdown $unclean times"
    finish tort-r1 tort-r2
    ;;

  realkafka-leader)
    # Leader changes and produce errors on a real Apache Kafka cluster: three nodes that are each
    # broker and KRaft controller, plus two controller-only nodes so that the quorum (3 of 5)
    # outlives two brokers down (scripts/kafka.sh start --nodes 3 --controllers 2); the Outpost
    # topics have replication factor 3 and min.insync.replicas 2. Four agents at 1,000 readings/s
    # each. Every round, 2..4 s after the last: SIGKILL a broker that leads partitions of
    # outpost.readings carrying readings (kcat -L, high watermarks), restart it 1..10 s after the
    # kill and wait until it is back in every partition's in-sync replicas. Every third round a
    # second broker is killed with it: once the controllers fence both (broker.session.timeout.ms,
    # 9 s) every partition's ISR is the one broker left, below min.insync.replicas, and a produce
    # with acks=all fails with NOT_ENOUGH_REPLICAS — checked with a probe producer (kcat, acks=all,
    # no retries, on torture.probe) — until one of them returns (12..20 s after the kill; the
    # other 1..5 s later). Measured: how long the killed leaders' partitions took no writes (from
    # the kill; with two down, from the first restart), from their high watermarks (kcat -Q).
    # Checked at the end with kcat and with Kafka's Java console consumer.
    KAFKA_MODE=real
    start_mosquitto
    start_kafka_cluster
    "$KAFKA_TOOL_BIN" create-topics --bootstrap "$KAFKA" --partitions 1 --replication-factor 3 \
      --min-insync-replicas 2 torture.probe >>"$WORK/kafka-start.log" 2>&1 ||
      fail "cannot create torture.probe: $(tail -n 3 "$WORK/kafka-start.log")"
    log "Apache Kafka cluster: brokers $KAFKA, 2 more controllers ($KDIR)"
    AGG_HTTP_PORT=$(free_port)
    start_aggregator
    delivered() {
      local v
      v=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_delivered_total)
      echo "${v:-0}"
    }
    some_delivered() { (($(delivered) > 0)); }
    devs=(tort-q1 tort-q2 tort-q3 tort-q4)
    for dev in "${devs[@]}"; do
      write_agent_config "$dev" 500
      start_agent "$dev"
    done
    wait_for 90 "first deliveries to Kafka" some_delivered
    # partitions: "P LEADER ISR_SIZE" for each partition of outpost.readings (kcat -L).
    partitions() {
      timeout 15 kcat -L -b "$KAFKA" -t outpost.readings -m 5 2>/dev/null |
        awk '/^ +partition [0-9]+,/ {p = $2; l = $4; i = $8; sub(/,$/, "", p); sub(/,$/, "", l);
          sub(/,$/, "", i); print p, l, split(i, a, ",")}'
    }
    # high_watermarks P...: "P=OFFSET" for each partition that answered (leaders down do not).
    high_watermarks() {
      local q=() p
      for p in "$@"; do q+=(-t "outpost.readings:$p:-1"); done
      timeout 10 kcat -Q -m 2 -b "$KAFKA" "${q[@]}" 2>/dev/null |
        sed -n 's/^outpost.readings \[\([0-9]*\)\] offset \([0-9]*\)$/\1=\2/p' || true
    }
    # wait_writes FROM_MS P=HW...: until each partition P's high watermark is above HW (it took
    # a write); prints the milliseconds since FROM_MS. Bounded: 120 s.
    wait_writes() {
      local from=$1 end=$((SECONDS + 120)) spec now ok
      shift
      while :; do
        now=" $(high_watermarks "${@%%=*}" | tr '\n' ' ')"
        ok=1
        for spec in "$@"; do
          [[ $now =~ \ ${spec%%=*}=([0-9]+) ]] && ((BASH_REMATCH[1] > ${spec#*=})) || ok=0
        done
        ((ok)) && break
        ((SECONDS < end)) || fail "round $i: partitions $* took no write within 120 s"
        sleep 0.1
      done
      echo $(($(now_ms) - from))
    }
    isr_full() { partitions | awk '$3 == 3 {n++} END {exit !(n == 6)}'; }
    # probe: one message to torture.probe with acks=all and no retry; prints ok,
    # NOT_ENOUGH_REPLICAS or the error.
    probe() {
      local out
      out=$(echo "probe $(now_ms)" | timeout 15 kcat -P -b "$KAFKA" -t torture.probe -X acks=all \
        -X message.timeout.ms=3000 -X retries=0 2>&1) || true
      if [[ -z $out ]]; then echo ok
      elif [[ $out == *"Not enough in-sync replicas"* ]]; then echo NOT_ENOUGH_REPLICAS
      else echo "${out//$'\n'/ }" | cut -c 1-120; fi
    }
    restart_broker() {  # restart_broker N: node N again, on its ports with its data
      "$KAFKA_SH" start --dir "$KDIR" --node "$1" --timeout 120 >/dev/null 2>>"$WORK/kafka-start.log" ||
        fail "round $i: broker $1 did not restart: $(tail -n 3 "$WORK/kafka-start.log")"
      PIDS[kafka$1]=$(cat "$KDIR/node$1/kafka.pid")
    }
    kill_broker() {  # kill_broker N: SIGKILL, wait until it is gone (not this shell's child)
      local pid=${PIDS[kafka$1]}
      kill -KILL "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && fail "round $i: broker $1 (pid $pid) survived SIGKILL for 10 s"
      unset "PIDS[kafka$1]"
    }
    sleep 3
    # The partitions that carry readings (the devices' keys hash to some of the 6).
    read -r -a active <<<"$(high_watermarks 0 1 2 3 4 5 | awk -F= '$2 > 0 {printf "%s ", $1}')"
    ((${#active[@]})) || fail "no partition of outpost.readings took a write"
    log "partitions carrying readings: ${active[*]}"
    ner_rounds=0 ner_seen=0 failed_before=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_failed_total)
    : >"$WORK/rounds.txt"
    for i in $(seq 1 "$ITER"); do
      sleep_ms "$(rand_ms 2000 4000)"
      wait_for 60 "every replica in sync before round $i" isr_full
      declare -A lead=()
      while read -r p l _; do lead[$p]=$l; done < <(partitions)
      cands=()
      for p in "${active[@]}"; do
        [[ " ${cands[*]} " == *" ${lead[$p]} "* ]] || cands+=("${lead[$p]}")
      done
      v1=${cands[$(rand_ms 0 $((${#cands[@]} - 1)))]}
      victims=("$v1")
      if ((i % 3 == 0)); then
        others=()
        for b in 1 2 3; do ((b == v1)) || others+=("$b"); done
        victims+=("${others[$(rand_ms 0 1)]}")
      fi
      affected=()
      for p in "${active[@]}"; do [[ " ${victims[*]} " == *" ${lead[$p]} "* ]] && affected+=("$p"); done
      # Every partition stalls, not only those it led: acks=all waits for every in-sync replica
      # until the controllers fence the dead broker and drop it from the ISRs.
      mapfile -t hw < <(high_watermarks "${active[@]}")
      ((${#hw[@]} == ${#active[@]})) || fail "round $i: no high watermarks of partitions ${active[*]}"
      t_kill=$(now_ms)
      for v in "${victims[@]}"; do kill_broker "$v"; done
      if ((${#victims[@]} == 1)); then
        ms=$(wait_writes "$t_kill" "${hw[@]}")
        note_recovery "$ms"
        down=$(rand_ms 1000 10000)
        left=$((down - ($(now_ms) - t_kill)))
        ((left > 0)) && sleep_ms "$left"
        t0=$(now_ms)
        restart_broker "$v1"
        up=$(($(now_ms) - t0))
        wait_for 120 "broker $v1 back in every partition's ISR" isr_full
        line="round $i/$ITER: broker $v1 killed (leader of partitions ${affected[*]}): every partition carrying readings took writes again after $ms ms; dead $(((t0 - t_kill))) ms, answering $up ms after its restart, in every ISR $(($(now_ms) - t0)) ms after it"
      else
        ner_rounds=$((ner_rounds + 1))
        before=$(delivered)
        end=$((SECONDS + 60))
        until [[ $(probe) == NOT_ENOUGH_REPLICAS ]]; do
          ((SECONDS < end)) || fail "round $i: brokers ${victims[*]} down, but acks=all never failed with NOT_ENOUGH_REPLICAS within 60 s (last: $(probe))"
        done
        ner_ms=$(($(now_ms) - t_kill))
        ner_seen=$((ner_seen + 1))
        at_ner=$(delivered)
        down=$(rand_ms 12000 20000)
        left=$((down - ($(now_ms) - t_kill)))
        ((left < 3000)) && left=3000
        sleep_ms "$left"
        last=$(probe)
        [[ $last == NOT_ENOUGH_REPLICAS ]] || fail "round $i: with two brokers down a produce with acks=all answered: $last"
        during=$(($(delivered) - before))
        # With two of three replicas dead no acks=all produce can succeed: nothing delivered.
        [[ $(delivered) == "$at_ner" ]] ||
          fail "round $i: $(($(delivered) - at_ner)) messages delivered while two brokers were down"
        waiting=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_outstanding_messages)
        mapfile -t hw < <(high_watermarks "${active[@]}")
        t0=$(now_ms)
        restart_broker "${victims[0]}"
        up=$(($(now_ms) - t0))
        end=$((SECONDS + 120))
        until [[ $(probe) == ok ]]; do
          ((SECONDS < end)) || fail "round $i: acks=all still failing 120 s after broker ${victims[0]} restarted: $(probe)"
          sleep 0.2
        done
        acks_ms=$(($(now_ms) - t0))
        ms=$(wait_writes "$t0" "${hw[@]}")
        note_recovery "$ms"
        sleep_ms "$(rand_ms 1000 5000)"
        restart_broker "${victims[1]}"
        wait_for 120 "brokers ${victims[*]} back in every partition's ISR" isr_full
        line="round $i/$ITER: brokers ${victims[*]} killed together: acks=all failed with NOT_ENOUGH_REPLICAS from $ner_ms ms after the kill (the probe's answer) until broker ${victims[0]} returned $(((t0 - t_kill))) ms after it ($during Kafka messages delivered in all, before the ISRs shrank, none after; ${waiting:-?} waiting in the aggregator's producer just before the restart); acks=all accepted again $acks_ms ms after that restart (broker answering after $up ms), every partition carrying readings written again after $ms ms"
      fi
      echo "  $line"
      echo "$line" >>"$WORK/rounds.txt"
      for p in aggregator "${devs[@]}"; do
        kill -0 "${PIDS[$p]}" 2>/dev/null || fail "$p died in round $i"
      done
    done
    ((ner_rounds == 0 || ner_seen == ner_rounds)) || fail "NOT_ENOUGH_REPLICAS seen in $ner_seen of $ner_rounds rounds with two brokers down"
    sleep 1
    failed=$(($(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_failed_total) - failed_before))
    uncertain=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_uncertain_total)
    echo "  aggregator: $(delivered) Kafka messages delivered, $failed failed ($uncertain possibly persisted) during the rounds"
    rc=0
    finish "${devs[@]}" || rc=$?
    python3 - "$RESULT" "$WORK/rounds.txt" "$ner_rounds" "$failed" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["rounds"] = [l.strip() for l in open(sys.argv[2]) if l.strip()]
a["not_enough_replicas_rounds"] = int(sys.argv[3])
a["failed_deliveries"] = int(sys.argv[4])
json.dump(a, open(sys.argv[1], "w"))
PY
    java_account "${devs[@]}"
    exit $rc
    ;;

  realkafka-proxy | realkafka-proxy-cluster)
    # Produce errors, lost answers and slow answers from a real Apache Kafka broker (one node,
    # scripts/kafka.sh), through tests/torture/kafka_proxy.py: the aggregator's only way to the
    # broker (bootstrap = the proxy, which rewrites the broker's address in Metadata and
    # FindCoordinator answers to its own). Two agents at 2,000 readings/s each. Each iteration,
    # 0.2..1 s after the last, one fault kind, cycling through: 1..10 Produce answers in which
    # the broker accepted (wrote) every partition reach the aggregator as a retriable error
    # instead — REQUEST_TIMED_OUT, NOT_LEADER_OR_FOLLOWER, KAFKA_STORAGE_ERROR,
    # NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND, LEADER_NOT_AVAILABLE,
    # UNKNOWN_TOPIC_OR_PARTITION — so the producer's retry must be recognised by the broker
    # (idempotent sequence) and not written twice; 1..3 Produce requests refused before the
    # write (_REJECT_NOT_ENOUGH_REPLICAS, _REJECT_NOT_LEADER_OR_FOLLOWER: the proxy answers them
    # itself and the broker never sees them, so requests in flight behind them arrive with a
    # sequence gap); 1..3 answers dropped with the connection closed (_DROP); every answer
    # delayed 200..2000 ms for 5..10 s (_DELAY); 1..3 Metadata answers with every partition
    # LEADER_NOT_AVAILABLE and no leader (_META_LEADER_NOT_AVAILABLE); the aggregator SIGKILLed
    # (with its acks held back: Mosquitto stopped, then killed and restarted) and started again
    # on its dedup store (flushed once a minute) with errors armed for the answers its start
    # waits for: InitProducerId, ListOffsets, FindCoordinator (_RESTART), or a topic-level
    # LEADER_NOT_AVAILABLE in the first Metadata answers naming outpost.readings — the start-up
    # recovery's (_RESTART_TOPIC_LEADER_NOT_AVAILABLE). Checked: each
    # fault consumed, deliveries again after it, the aggregator never connected to the broker
    # directly (ss), the proxy parsed every Metadata/Produce version it saw, each kind injected
    # > 0 times, no resent batch written again (the proxy compares the offsets the broker gave a
    # batch and its resend); then the accounting read from the broker directly by kcat and by
    # Kafka's Java console consumer.
    # realkafka-proxy-cluster: the same through the proxy in front of a real 3-broker cluster
    # (scripts/kafka.sh start --nodes 3 --controllers 2, as realkafka-leader; replication factor
    # 3, min.insync.replicas 2), one proxy listener per broker, each broker's address rewritten
    # to its own listener; the fault kinds but the restarts (the produce faults, _DELAY, _META).
    # Checked besides: the aggregator connected to every broker's listener, to no broker.
    KAFKA_MODE=real
    start_mosquitto
    if [[ $NAME == realkafka-proxy-cluster ]]; then
      start_kafka_cluster
      log "Apache Kafka cluster: brokers $KAFKA, 2 more controllers ($KDIR)"
    else
      start_real_kafka
    fi
    BROKER=$KAFKA
    KPORTS=()  # every broker's port
    IFS=, read -r -a bl <<<"$BROKER"
    for b in "${bl[@]}"; do KPORTS+=("${b##*:}"); done
    # TORTURE_PROXY_RECORD=FILE: the proxy appends the first frame of each API version there
    # (kafka_proxy.py --record; how tests/torture/kafka_proxy_frames.json was made).
    python3 "$TORTURE/kafka_proxy.py" --broker "$BROKER" --ready-file "$WORK/proxy.ready" \
      --stats "$WORK/proxy.stats.json" --seed "$SEED" \
      ${TORTURE_PROXY_RECORD:+--record "$TORTURE_PROXY_RECORD"} 2>>"$WORK/proxy.log" &
    PIDS[proxy]=$!
    wait_for 15 "kafka_proxy.py" test -s "$WORK/proxy.ready"
    read -r PROXY PCTL <"$WORK/proxy.ready"
    log "kafka_proxy.py pid ${PIDS[proxy]} on $PROXY (control $PCTL) in front of $BROKER"
    pctl() {  # pctl COMMAND...: one proxy control command; fails on an error answer
      local fd reply=""
      exec {fd}<>"/dev/tcp/${PCTL%:*}/${PCTL##*:}" || fail "proxy control port $PCTL refused"
      printf '%s\n' "$*" >&"$fd"
      IFS= read -r -t 10 reply <&"$fd" || true
      exec {fd}>&-
      [[ -n $reply && $reply != error* ]] || fail "proxy control '$*': ${reply:-no reply within 10 s}"
      echo "$reply"
    }
    pstat() {  # pstat PY_EXPR: a value from the proxy's counts (s = the stats object)
      pctl stats | python3 -c "import json, sys; s = json.load(sys.stdin); print($1)"
    }
    AGG_HTTP_PORT=$(free_port)
    # The dedup store flushed once a minute: a restart (_RESTART kinds) must recover the latest
    # deliveries from the topic's tail, through the proxy's faults.
    AGG_ARGS=(--set dedup.flush_interval_ms=60000)
    KAFKA=$PROXY
    start_aggregator "${AGG_ARGS[@]}"
    KAFKA=$BROKER  # kcat and the Java consumer below read the broker directly
    delivered() {
      local v
      v=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_delivered_total)
      echo "${v:-0}"
    }
    some_delivered() { (($(delivered) > 0)); }
    # bypass_check: fails if the aggregator holds a connection to the broker's port (it would
    # bypass the proxy); counts the checks that found it connected to the proxy.
    PROXIED=0
    bypass_check() {
      local pid=${PIDS[aggregator]} kp p
      for kp in "${KPORTS[@]}"; do
        if ss -tnpH state established "( dport = :$kp )" | grep -q "pid=$pid,"; then
          fail "the aggregator (pid $pid) is connected to the broker on port $kp directly, bypassing the proxy: $(ss -tnpH state established "( dport = :$kp )" | grep "pid=$pid,")"
        fi
      done
      IFS=, read -r -a p <<<"$PROXY"
      ss -tnpH state established "( dport = :${p[0]##*:} )" | grep -q "pid=$pid," &&
        PROXIED=$((PROXIED + 1))
      return 0
    }
    wait_delivery_after() {  # wait_delivery_after COUNT: ms until delivered > COUNT (120 s)
      local t0 end=$((SECONDS + 120))
      t0=$(now_ms)
      until (($(delivered) > $1)); do
        ((SECONDS < end)) || fail "iteration $i: no Kafka delivery within 120 s after the fault"
        sleep 0.05
      done
      echo $(($(now_ms) - t0))
    }
    for dev in tort-p1 tort-p2; do
      write_agent_config "$dev" 1000
      start_agent "$dev"
    done
    wait_for 60 "first deliveries to Kafka through the proxy" some_delivered
    bypass_check
    # TORTURE_PROXY_FAULTS (space-separated) replaces the list, e.g. to rerun one kind.
    FAULTS=(REQUEST_TIMED_OUT NOT_LEADER_OR_FOLLOWER KAFKA_STORAGE_ERROR NOT_ENOUGH_REPLICAS
      NOT_ENOUGH_REPLICAS_AFTER_APPEND LEADER_NOT_AVAILABLE UNKNOWN_TOPIC_OR_PARTITION
      _REJECT_NOT_ENOUGH_REPLICAS _REJECT_NOT_LEADER_OR_FOLLOWER _DROP _DELAY
      _META_LEADER_NOT_AVAILABLE _RESTART _RESTART_TOPIC_LEADER_NOT_AVAILABLE)
    RESTARTS=0
    if [[ $NAME == realkafka-proxy-cluster ]]; then
      FAULTS=("${FAULTS[@]:0:12}")  # no _RESTART kinds
    fi
    [[ -n "${TORTURE_PROXY_FAULTS:-}" ]] && read -r -a FAULTS <<<"$TORTURE_PROXY_FAULTS"
    failed_before=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_failed_total)
    FAILED_PREV=0  # failed deliveries of the aggregator processes killed by _RESTART kinds
    : >"$WORK/rounds.txt"
    for i in $(seq 1 "$ITER"); do
      sleep_ms "$(rand_ms 200 1000)"
      kind=${FAULTS[$(((i - 1) % ${#FAULTS[@]}))]}
      if [[ $kind == _DELAY ]]; then
        ms=$(rand_ms 200 2000)
        slow=$(rand_ms 5000 10000)
        before=$(delivered)
        d0=$(pstat 's.get("delayed_responses", 0)')
        pctl delay "$ms" $((ms / 4)) >/dev/null
        sleep_ms "$slow"
        during=$(($(delivered) - before))
        before=$(delivered)
        pctl delay 0 >/dev/null
        d1=$(pstat 's.get("delayed_responses", 0)')
        ((d1 > d0)) || fail "iteration $i: no answer was delayed in ${slow} ms of ${ms} ms delays"
        t=$(wait_delivery_after "$before")
        note_recovery "$t"
        line="fault $i/$ITER: every answer delayed ${ms} ± $((ms / 4)) ms for ${slow} ms ($((d1 - d0)) answers delayed, $during Kafka messages delivered meanwhile); next delivery $t ms after"
      elif [[ $kind == _RESTART* ]]; then
        # Errors armed for the answers a starting aggregator waits for, then the aggregator
        # SIGKILLed under load and started again on its dedup store (flushed once a minute), so
        # that its start-up recovery reads the topic's tail through them. _RESTART: 1..2
        # InitProducerId answers COORDINATOR_LOAD_IN_PROGRESS or CONCURRENT_TRANSACTIONS (the
        # idempotent producer's id), 1..2 ListOffsets answers NOT_LEADER_OR_FOLLOWER or
        # LEADER_NOT_AVAILABLE for outpost.readings (the recovery's watermarks), 1 FindCoordinator
        # answer COORDINATOR_NOT_AVAILABLE (the first client to ask for a group coordinator).
        # _RESTART_TOPIC_CODE: the first 2 Metadata answers naming outpost.readings (the
        # recovery's, which asks first) give it CODE at topic level, with no partitions. What the
        # start did not consume is cleared and reported.
        if [[ $kind == _RESTART ]]; then
          RESTARTS=$((RESTARTS + 1))
          codes=(COORDINATOR_LOAD_IN_PROGRESS CONCURRENT_TRANSACTIONS)
          pctl answer InitProducerId "${codes[$((RESTARTS % 2))]}" "$(rand_ms 1 2)" >/dev/null
          codes=(NOT_LEADER_OR_FOLLOWER LEADER_NOT_AVAILABLE)
          pctl answer ListOffsets "${codes[$((RESTARTS % 2))]}" "$(rand_ms 1 2)" outpost.readings >/dev/null
          pctl answer FindCoordinator COORDINATOR_NOT_AVAILABLE 1 >/dev/null
        else
          pctl answer MetadataTopic "${kind#_RESTART_TOPIC_}" 2 outpost.readings >/dev/null
        fi
        armed=$(pstat 's["answer_pending"]')
        a0=$(pstat 'sum(s["answer_injected"].values())')
        # Batches on Kafka and not acked at the kill, for sure: every answer delayed 400 ms, and
        # 150 ms later Mosquitto stopped (SIGSTOP) for 700..1000 ms, then the aggregator and
        # Mosquitto SIGKILLed, Mosquitto started again. The Produce requests in flight at the stop
        # were answered (delivered) meanwhile, but the acks the aggregator then sent were never
        # read by Mosquitto. The agents resend those batches, and only the start-up recovery (the
        # dedup store is not flushed) tells the new aggregator they were delivered.
        pctl delay 400 >/dev/null
        sleep 0.15
        kill -STOP "${PIDS[mosquitto]}"
        sleep_ms "$(rand_ms 700 1000)"
        pctl delay 0 >/dev/null
        f=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_failed_total)
        FAILED_PREV=$((FAILED_PREV + ${f:-0} - failed_before))
        failed_before=0
        kill9_proc aggregator
        kill -CONT "${PIDS[mosquitto]}" 2>/dev/null || true
        kill9_proc mosquitto
        mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
        PIDS[mosquitto]=$!
        wait_for 10 "mosquitto back on $MQTT_PORT" port_open "$MQTT_PORT"
        t0=$(now_ms)
        KAFKA=$PROXY
        AGGREGATOR_LOG_MARK=$(wc -l <"$WORK/aggregator.log")
        start_aggregator "${AGG_ARGS[@]}"
        KAFKA=$BROKER
        t=$(wait_delivery_after 0)
        t=$(($(now_ms) - t0))
        note_recovery "$t"
        sleep 2.5  # the agents resend what was not acked after ack_timeout_ms (2 s)
        dups=$(metric "$AGG_HTTP_PORT" outpost_aggregator_duplicate_batches_total)
        left=$(pstat 's["answer_pending"]')
        a1=$(pstat 'sum(s["answer_injected"].values())')
        pctl clear >/dev/null
        rec=$(tail -n +"$((AGGREGATOR_LOG_MARK + 1))" "$WORK/aggregator.log" | grep -o 'kafka recovery: .*' | tr '\n' ' ' || true)
        line="fault $i/$ITER: aggregator SIGKILLed and started again with answer errors armed $armed: $((a1 - a0)) injected, left unconsumed $left; first delivery $t ms after the start; ${rec:-no recovery line}; ${dups:-0} batches received again recognised as delivered in 2.5 s"
      else
        if [[ $kind == _DROP ]]; then
          n=$(rand_ms 1 3)
          pctl drop "$n" >/dev/null
          what="$n Produce answers dropped (connection closed) after the broker wrote them"
        elif [[ $kind == _META_* ]]; then
          # Metadata answers giving every partition of the topics they name no leader
          # (LEADER_NOT_AVAILABLE, leader -1, as during a leader election), and one Produce answer
          # NOT_LEADER_OR_FOLLOWER after the write, which makes the producer ask for metadata.
          # Not limited to outpost.readings: the Produce answer faulted may be one to another
          # topic the aggregator writes (outpost.latest), whose metadata the producer then asks
          # for, and nothing may ask for outpost.readings' within the 90 s (seed 16827 at ac794fe).
          n=$(rand_ms 1 3)
          pctl answer Metadata "${kind#_META_}" "$n" >/dev/null
          pctl errors NOT_LEADER_OR_FOLLOWER 1 >/dev/null
          what="$n Metadata answers with every partition ${kind#_META_} (no leader), after 1 Produce answer NOT_LEADER_OR_FOLLOWER"
        elif [[ $kind == _REJECT_* ]]; then
          n=$(rand_ms 1 3)
          pctl reject "${kind#_REJECT_}" "$n" >/dev/null
          what="$n Produce requests refused with ${kind#_REJECT_} before the write (never sent to the broker)"
        else
          n=$(rand_ms 1 10)
          pctl errors "$kind" "$n" >/dev/null
          what="$n Produce answers turned into $kind after the broker wrote them"
        fi
        end=$((SECONDS + 90))
        until [[ $(pctl pending) == 0 ]]; do
          ((SECONDS < end)) || fail "iteration $i: $what: not consumed within 90 s"
          sleep 0.05
        done
        before=$(delivered)
        t=$(wait_delivery_after "$before")
        note_recovery "$t"
        line="fault $i/$ITER: $what; deliveries again after $t ms"
      fi
      bypass_check
      echo "  $line"
      echo "$line" >>"$WORK/rounds.txt"
      for p in aggregator proxy tort-p1 tort-p2; do
        [[ -n "${PIDS[$p]:-}" ]] || fail "$p is not running in iteration $i"
        kill -0 "${PIDS[$p]}" 2>/dev/null || fail "$p died in iteration $i"
      done
    done
    sleep 1
    bypass_check
    failed=$((FAILED_PREV + $(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_failed_total) - failed_before))
    uncertain=$(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_uncertain_total)
    echo "  aggregator: $(delivered) Kafka messages delivered, $failed failed (${uncertain:-0} possibly persisted) during the faults"
    pctl stats >"$WORK/proxy.stats.end.json"
    echo "  proxy: $(cat "$WORK/proxy.stats.end.json")"
    # Every fault kind of the run was really injected; the proxy parsed every answer it had to;
    # no broker but the proxied one was named to the aggregator; no resend was written twice.
    python3 - "$WORK/proxy.stats.end.json" "$PROXIED" "$BROKER" "${FAULTS[@]}" <<'PY' || fail "the proxy's counts: see above"
import json, sys
s, proxied, brokers, kinds = (json.load(open(sys.argv[1])), int(sys.argv[2]),
                              sys.argv[3].split(","), sys.argv[4:])
bad = [f"no connection through the proxy to the broker {b}" for b in brokers
       if not s["connections_by_broker"].get(b)]
for k in kinds:
    ans = s["answer_injected"]
    if k == "_RESTART":  # each of the three APIs' answers faulted at least once
        for api in ("InitProducerId", "ListOffsets", "FindCoordinator"):
            if not sum(v for a, v in ans.items() if a.split()[0] == api):
                bad.append(f"{k}: no {api} answer faulted")
        continue
    n = {"_DROP": s.get("dropped_responses", 0), "_DELAY": s.get("delayed_responses", 0),
         }.get(k, s["rejected"].get(k[len("_REJECT_"):], 0) if k.startswith("_REJECT_") else
        ans.get("MetadataTopic " + k[len("_RESTART_TOPIC_"):], 0)
        if k.startswith("_RESTART_TOPIC_") else
        ans.get("Metadata " + k[len("_META_"):], 0) if k.startswith("_META_") else
        s["injected"].get(k, 0))
    if n == 0:
        bad.append(f"{k} never injected")
if s["unhandled"]:
    bad.append(f"answers forwarded unparsed (the proxy may have been bypassed): {s['unhandled']}")
if s.get("foreign_brokers", 0):
    bad.append(f"{s['foreign_brokers']} broker addresses not rewritten")
if not s.get("metadata_rewritten"):
    bad.append("no Metadata answer rewritten")
if s.get("resent_appended_again", 0):
    bad.append(f"{s['resent_appended_again']} resent batches written again by the broker")
if not proxied:
    bad.append("the aggregator was never seen connected to the proxy")
for b in bad:
    print("  PROXY: " + b)
print(f"  proxy: Produce answers {s.get('produce_responses', 0)}, injected {s['injected']}, "
      f"dropped {s.get('dropped_responses', 0)} (and {s.get('unanswered_produce_requests', 0)} "
      f"Produce requests in flight behind them), refused before the write {s['rejected']}, "
      f"delayed {s.get('delayed_responses', 0)}; broker's own errors {s['broker_errors']}; "
      f"batches in faulted answers {s.get('faulted_batches', 0)}, resent since "
      f"{s.get('faulted_batches_resent', 0)}, not resent {s['faulted_batches_not_resent']} (of "
      f"which behind a later accepted batch of their partition "
      f"{s['faulted_batches_not_resent_overtaken']}); "
      f"resent batches {s.get('resent', 0)} (deduplicated by the broker "
      f"{s.get('resent_deduplicated', 0)}, re-batched {s.get('resent_rebatched', 0)}, written "
      f"again {s.get('resent_appended_again', 0)}); other APIs' answers faulted "
      f"{s['answer_injected']}; partitions per Produce request {s['produce_partitions']}; "
      f"versions {sorted(s['requests'])}")
sys.exit(1 if bad else 0)
PY
    rc=0
    finish tort-p1 tort-p2 || rc=$?
    python3 - "$RESULT" "$WORK/rounds.txt" "$WORK/proxy.stats.end.json" "$failed" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["rounds"] = [l.strip() for l in open(sys.argv[2]) if l.strip()]
a["proxy"] = json.load(open(sys.argv[3]))
a["failed_deliveries"] = int(sys.argv[4])
json.dump(a, open(sys.argv[1], "w"))
PY
    java_account tort-p1 tort-p2
    exit $rc
    ;;

  net-mqtt | net-zmq)
    # Network faults between the agent and its broker (net-mqtt: Mosquitto) or the aggregator
    # (net-zmq: its ZeroMQ ROUTER). The agent runs in a network namespace made here, joined to
    # this one by a veth pair on a private /30; Mosquitto and the aggregator listen on the veth's
    # address, and only the agent's traffic crosses it. Each iteration: packet loss 10..30 % for
    # 4..8 s, then 200 ± 50 ms delay each way (400 ms RTT) for 4..8 s, then a link cut for
    # 5..20 s — alternately the agent's veth set down and a black hole (every packet dropped) —
    # then 2..4 s of a clean link. In a run of 3 or more iterations the last cut is a black hole
    # of 60..120 s (longer than MQTT's keep-alive timeout, 1.5 x 30 s).
    # The kernel here has no sch_netem (tc netem), so loss and delay come from the netfilter
    # queue: an iptables rule in the namespace queues every packet on the veth, both ways, to
    # tests/torture/netem.py. The agent's uplink timing is left at its defaults (ack_timeout_ms
    # 10000, keepalive_s 30 / heartbeat_ms 1000, reconnect 500..30000 ms). The agent reads a fixed
    # number of readings over the fault schedule and exits when drained: produced = on Kafka +
    # counted drops, exactly; the recovery time runs from the last fault's end to that exit.
    NET_PROCS=(tort-n)
    net_namespace "" ""

    start_devkafka
    dev=tort-n
    rate=500  # two sensors: 1,000 readings/s, 10 batches/s
    if [[ $NAME == net-mqtt ]]; then
      start_mosquitto
      stop_proc mosquitto
      echo "listener $MQTT_PORT $NET_HOST" >>"$WORK/mosquitto.conf"
      mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
      PIDS[mosquitto]=$!
      wait_for 10 "mosquitto on $MQTT_PORT" port_open "$MQTT_PORT"
      start_aggregator
      MQTT_URI="tcp://$NET_HOST:$MQTT_PORT"
      write_agent_config "$dev" "$rate"
    else
      ZMQ_HEARTBEAT_MS=1000 make_zmq_keys "$dev"
      ZMQ_ENDPOINT="tcp://$NET_HOST:$ZMQ_PORT"
      ZMQ_AGG_ARGS=("${ZMQ_AGG_ARGS[@]/#zmq.listen=*/zmq.listen=$ZMQ_ENDPOINT}")
      start_aggregator "${ZMQ_AGG_ARGS[@]}"
      ZMQ_HEARTBEAT_MS=1000 write_zmq_agent_config "$dev" "$rate"
    fi
    # The uplink's timing at its defaults (the harness's shorter ones removed).
    sed -i -E '/^(ack_timeout_ms|reconnect_min_ms|reconnect_max_ms|heartbeat_ms) = /d' "$WORK/$dev.toml"

    # The schedule, drawn first: it fixes how many readings the agent reads (all of it at rate).
    plan=() total_ms=0
    for i in $(seq 1 "$ITER"); do
      loss=$(rand_ms 10 30) t_loss=$(rand_ms 4000 8000) t_delay=$(rand_ms 4000 8000)
      t_cut=$(rand_ms 5000 20000) t_clean=$(rand_ms 2000 4000)
      cut=down
      ((i % 2)) || cut=blackhole
      ((ITER >= 3 && i == ITER)) && t_cut=$(rand_ms 60000 120000) cut=blackhole
      plan+=("$loss $t_loss $t_delay $cut $t_cut $t_clean")
      total_ms=$((total_ms + t_loss + t_delay + t_cut + t_clean))
    done
    produced=$((total_ms * 2 * rate / 1000))
    log "schedule: ${plan[*]}; $produced readings over $((total_ms / 1000)) s"
    ip netns exec "$NS" "$AGENT_BIN" --config "$WORK/$dev.toml" \
      --max-readings "$produced" --exit-when-drained >>"$WORK/$dev.log" 2>&1 &
    PIDS[$dev]=$!
    sleep 2  # connected and sending before the first fault
    for i in $(seq 1 "$ITER"); do
      read -r loss t_loss t_delay cut t_cut t_clean <<<"${plan[$((i - 1))]}"
      netem --loss "$loss"
      sleep_ms "$t_loss"
      netem --delay-ms 200 --jitter-ms 50
      sleep_ms "$t_delay"
      if [[ $cut == down ]]; then
        netem
        nsx ip link set "$VETH_AGENT" down
        sleep_ms "$t_cut"
        nsx ip link set "$VETH_AGENT" up
        wait_for 10 "a route to $NET_HOST after the link came back" nsx ip -4 route get "$NET_HOST"
      else
        netem --loss 100
        sleep_ms "$t_cut"
        netem
      fi
      if ! kill -0 "${PIDS[$dev]}" 2>/dev/null; then
        st=0
        wait "${PIDS[$dev]}" || st=$?
        fail "the agent exited (status $st) during iteration $i"
      fi
      echo "  faults $i/$ITER: loss ${loss} % ${t_loss} ms, delay 200±50 ms ${t_delay} ms," \
        "cut ($cut) ${t_cut} ms; outbox $(outbox_rows "$dev") batches waiting"
      t_end=$(now_ms)
      sleep_ms "$t_clean"
    done
    wait_agents_drained 300 "$dev"
    note_recovery $(($(now_ms) - t_end))
    netem  # collects the last counts
    kill -0 "${PIDS[aggregator]}" || fail "the aggregator died"
    netem_summary
    n=$(grep -ciE 'reconnect|connection .* lost|no reply' "$WORK/$dev.log" || true)
    echo "  agent log lines about the link: $n"
    last=$(outbox_last_seq "$dev") rows=$(outbox_rows "$dev")
    kafka_dump outpost.readings "$WORK/readings.jsonl"
    rc=0
    python3 "$TORTURE/account.py" "$WORK/readings.jsonl" "$dev=$last:$rows:$produced" \
      >"$WORK/account.json" || rc=$?
    write_result
    exit $rc
    ;;

  net-agg-mqtt | net-agg-kafka)
    # Network faults on the aggregator's own links: net-agg-mqtt between the aggregator and
    # Mosquitto, net-agg-kafka between the aggregator and Kafka. The aggregator runs in a network
    # namespace made here (net_namespace); Mosquitto and a real Apache Kafka broker listen on the
    # veth's host address too (the development broker's mock brokers listen on loopback only).
    # Only the packets of the link under test (its TCP port) go through netem.py; the agents (two,
    # 500 readings/s each) stay on loopback and are never faulted themselves. Each iteration:
    # loss 10..30 % for 4..8 s, 200 ± 50 ms delay each way for 4..8 s, a black hole (every packet
    # of the link dropped) for 5..20 s — in a run of 3 or more the last one 60..120 s, past MQTT's
    # keep-alive and librdkafka's request timeouts — then 2..4 s clean. Then the agents stop and
    # drain, and every accepted batch must be on Kafka exactly once.
    KAFKA_MODE=real
    start_mosquitto
    if [[ $NAME == net-agg-mqtt ]]; then port=$MQTT_PORT; else port=$(free_port); fi
    NET_PROCS=(aggregator)
    net_namespace "-p tcp --dport $port" "-p tcp --sport $port"
    stop_proc mosquitto
    echo "listener $MQTT_PORT $NET_HOST" >>"$WORK/mosquitto.conf"
    mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
    PIDS[mosquitto]=$!
    wait_for 10 "mosquitto on $MQTT_PORT" port_open "$MQTT_PORT"
    [[ $NAME == net-agg-kafka ]] && KAFKA_FIXED_PORT=$port
    KAFKA_HOST=$NET_HOST start_real_kafka
    AGG_HTTP_PORT=$(free_port)
    # ip netns exec execs the aggregator: $! is its own pid (through the nsx function, $! would be
    # a subshell's, and stopping it would leave the aggregator running).
    ip netns exec "$NS" "$AGGREGATOR_BIN" --set "mqtt.broker=tcp://$NET_HOST:$MQTT_PORT" \
      --set "kafka.bootstrap_servers=$KAFKA" --set "dedup.path=$WORK/dedup.db" \
      --set "http.listen=$NET_AGENT:$AGG_HTTP_PORT" --set "mqtt.client_id=it-aggregator" \
      >>"$WORK/aggregator.log" 2>&1 &
    PIDS[aggregator]=$!
    wait_for 30 "aggregator /healthz" curl -sf "http://$NET_AGENT:$AGG_HTTP_PORT/healthz"
    log "aggregator pid ${PIDS[aggregator]} in $NS: MQTT tcp://$NET_HOST:$MQTT_PORT, Kafka $KAFKA; faults on port $port"
    for dev in tort-g1 tort-g2; do
      write_agent_config "$dev" 250
      start_agent "$dev"
    done
    agg_metric() { curl -sf "http://$NET_AGENT:$AGG_HTTP_PORT/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
    sleep 3  # delivering before the first fault
    for i in $(seq 1 "$ITER"); do
      loss=$(rand_ms 10 30) t_loss=$(rand_ms 4000 8000) t_delay=$(rand_ms 4000 8000)
      t_cut=$(rand_ms 5000 20000) t_clean=$(rand_ms 2000 4000)
      ((ITER >= 3 && i == ITER)) && t_cut=$(rand_ms 60000 120000)
      netem --loss "$loss"
      sleep_ms "$t_loss"
      netem --delay-ms 200 --jitter-ms 50
      sleep_ms "$t_delay"
      netem --loss 100
      sleep_ms "$t_cut"
      netem
      for p in aggregator tort-g1 tort-g2 mosquitto; do
        kill -0 "${PIDS[$p]}" 2>/dev/null || fail "$p died during iteration $i"
      done
      echo "  faults $i/$ITER on port $port: loss ${loss} % ${t_loss} ms, delay 200±50 ms" \
        "${t_delay} ms, black hole ${t_cut} ms; outboxes $(outbox_rows tort-g1) + $(outbox_rows tort-g2) batches waiting"
      sleep_ms "$t_clean"
    done
    netem_summary
    echo "  aggregator: $(agg_metric outpost_aggregator_kafka_messages_delivered_total) Kafka messages delivered, $(agg_metric outpost_aggregator_kafka_messages_failed_total) failed (their batches unacked, resent by the agents)"
    finish tort-g1 tort-g2
    ;;

  cluster)
    # Issue 19: the scaled-out aggregator (tests/integration/cluster_lib.sh: 2 ingest instances on
    # an MQTT shared subscription, 3 process instances in a consumer group with static membership
    # and Kafka transactions) on a real Apache Kafka broker, under a simulated fleet (50 devices,
    # 500 readings/s, acked) and two agents (500 readings/s each). Each iteration, after 1..4 s:
    # a process (2 in 3) or ingest instance drawn at random is stopped — SIGKILL (3 in 4) or
    # SIGTERM — and started again with the same instance id after 0.2..6 s (below or above the
    # 3 s session timeout: its partitions wait for it, or move and come back); the recovery time
    # runs from its restart until every partition is owned by a ready process instance. Then the
    # load stops and drains (the group's committed offsets reach the end of outpost.batches), and
    # outpost.readings read_committed must hold every reading of the agents exactly once
    # (account.py) and every acknowledged reading of the fleet exactly once, no seq missing
    # (tests/integration/check_cluster.py); aborted output (read_uncommitted) is counted.
    KAFKA_MODE=real
    source "$TORTURE/../integration/cluster_lib.sh"
    KAFKA_PARTITIONS=$PARTS
    start_mosquitto
    start_real_kafka
    write_detect_config
    for n in i1 i2; do start_instance "$n" ingest; done
    for n in p1 p2 p3; do start_instance "$n" process; done
    for n in i1 i2 p1 p2 p3; do wait_for 60 "$n /healthz" healthy "$n"; done
    wait_for 60 "the process instances to share the $PARTS partitions" settled
    start_fleet 50 cl-sim-
    for dev in tort-c1 tort-c2; do
      write_agent_config "$dev" 250
      start_agent "$dev"
    done
    for i in $(seq 1 "$ITER"); do
      sleep_ms "$(rand_ms 1000 4000)"
      if (($(rand_ms 0 2) < 2)); then name=p$(rand_ms 1 3) role=process; else name=i$(rand_ms 1 2) role=ingest; fi
      sig=KILL
      (($(rand_ms 0 3) == 0)) && sig=TERM
      down=$(rand_ms 200 6000)
      pid=${PIDS[$name]}
      if [[ $sig == KILL ]]; then
        kill9_proc "$name"
      else
        kill -TERM "$pid"
        timeout 30 tail --pid="$pid" -f /dev/null || fail "iteration $i: $name did not stop within 30 s of SIGTERM"
        st=0
        wait "$pid" || st=$?
        unset "PIDS[$name]"
        ((st == 0)) || fail "iteration $i: $name exited with status $st on SIGTERM"
      fi
      sleep_ms "$down"
      t0=$(now_ms)
      start_instance "$name" "$role"
      wait_for 60 "$name /healthz" healthy "$name"
      wait_for 90 "every partition owned by a ready process instance" settled
      ms=$(($(now_ms) - t0))
      note_recovery "$ms"
      echo "  round $i/$ITER: SIG$sig $name, down $down ms; all partitions owned and ready again $ms ms after its restart"
    done
    for p in i1 i2 p1 p2 p3; do kill -0 "${PIDS[$p]}" 2>/dev/null || fail "$p died (see $p.log)"; done
    for dev in tort-c1 tort-c2; do stop_proc "$dev"; done
    spec=()
    for dev in tort-c1 tort-c2; do
      t0=$(now_ms)
      drain_agent "$dev" 180
      note_recovery $(($(now_ms) - t0))
      spec+=("$dev=$(outbox_last_seq "$dev"):$(outbox_rows "$dev")")
    done
    stop_fleet
    wait_for 120 "the group's committed offsets at the end of outpost.batches" drained
    read_topic outpost.readings "$WORK/readings.jsonl" read_committed
    read_topic outpost.readings "$WORK/readings-uncommitted.jsonl" read_uncommitted
    rc=0
    python3 "$TORTURE/account.py" "$WORK/readings.jsonl" "${spec[@]}" \
      "cl-sim-*=$FLEET_ACKED:$FLEET_SENT" >"$WORK/account.json" || rc=1
    python3 "$TORTURE/../integration/check_cluster.py" "$WORK/readings.jsonl" - \
      "$WORK/readings-uncommitted.jsonl" cl-sim- "$WORK/sim.json" 50 >"$WORK/cluster.json" || rc=1
    echo "  fleet and aborted output: $(cat "$WORK/cluster.json")"
    # The row: the fleet's missing seqs count as lost, its reordering with the agents'.
    python3 - "$WORK/account.json" "$WORK/cluster.json" <<'PY'
import json, sys
a, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
a["lost"] += c["fleet_gaps"]
a["reordered"] += c["fleet_reordered"]
a["batches"] += c["fleet_batches"]
a["ok"] = a["ok"] and c["ok"]
a["errors"] += c["errors"]
a["cluster"] = {k: c[k] for k in ("aborted_messages", "aborted_duplicates", "fleet_readings",
                                  "fleet_acked", "fleet_devices")}
json.dump(a, open(sys.argv[1], "w"))
PY
    write_result
    exit $rc
    ;;

  soak)
    # A bounded soak (ITER minutes; --full: 30): ~10 hours of a simulated fleet compressed 20x
    # into the run — 20 virtual devices x 7 sensors (outpost-sim, anomalies and offline episodes
    # on, so detectors, the latest store and reconnects all work), plus two real agents at 250
    # readings/s each, on a real Apache Kafka broker (the development broker keeps only ~5 MB a
    # partition; the accounting reads the whole topic). Every 2 s the aggregator's HTTP API is
    # read (device list, a device's sensors and history, /metrics); every 5 minutes both agents
    # get SIGHUP (a reload). Every 10 s the resident memory, open file descriptors and threads
    # of every process are sampled; after a warm-up (a fifth of the run; at least 2 minutes in runs
    # of 10 minutes or more) our
    # processes must stay flat (tests/torture/soak_check.py), and the agents' readings are
    # accounted exactly at the end.
    KAFKA_MODE=real
    start_mosquitto
    start_real_kafka
    AGG_HTTP_PORT=$(free_port)
    start_aggregator
    declare -A APORT=()
    for dev in soak-a1 soak-a2; do
      write_agent_config "$dev" 250
      APORT[$dev]=$(free_port)
      start_agent "$dev" --set "http.listen=127.0.0.1:${APORT[$dev]}"
    done
    SIM_BIN="$OUTPOST_BUILD_DIR/simulators/outpost-sim"
    sim_secs=$(((ITER * 60 + 120) * 20))  # outlasts the run; stopped before the accounting
    "$SIM_BIN" fleet --devices 20 --seed "$SEED" --rate 1 --interval 10s --speed 20 \
      --duration "${sim_secs}s" --output mqtt --broker "$MQTT_URI" --anomaly-rate 2 \
      --offline-rate 0.5 --labels "$WORK/labels.jsonl" --summary-json "$WORK/sim.json" -q \
      >"$WORK/sim.log" 2>&1 &
    PIDS[sim]=$!
    t_start=$SECONDS
    warmup=$((ITER * 60 / 5))
    ((warmup >= 120 || ITER < 10)) || warmup=120  # a short trial run (--only soak): a fifth
    : >"$WORK/soak.csv"
    sample() {  # one line per process: t_s,name,rss_kb,fds,threads
      local name pid rss thr fds
      for name in aggregator soak-a1 soak-a2 sim mosquitto kafka; do
        pid=${PIDS[$name]:-}
        [[ -n $pid && -r /proc/$pid/status ]] || continue
        rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        thr=$(awk '$1 == "Threads:" {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        [[ -n $rss && -n $thr ]] && echo "$((SECONDS - t_start)),$name,$rss,$fds,$thr" >>"$WORK/soak.csv"
      done
    }
    api_reads=0 api_errors=0
    for minute in $(seq 1 "$ITER"); do
      for tick in $(seq 1 30); do  # 30 x 2 s
        ((tick % 5 == 1)) && sample
        dev_id=$(printf 'sim-%04d' $(((tick % 20) + 1)))
        for path in "/api/devices" "/api/devices/$dev_id/sensors" \
          "/api/devices/$dev_id/sensors/temperature/history?step=60" "/metrics"; do
          code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
            "http://127.0.0.1:$AGG_HTTP_PORT$path" || true)
          api_reads=$((api_reads + 1))
          [[ $code == 200 || $code == 404 ]] || api_errors=$((api_errors + 1))
        done
        sleep 2
      done
      for name in aggregator soak-a1 soak-a2 sim mosquitto; do
        kill -0 "${PIDS[$name]}" 2>/dev/null || fail "$name died at minute $minute (see its log)"
      done
      if ((minute % 5 == 0)); then
        for dev in soak-a1 soak-a2; do kill -HUP "${PIDS[$dev]}"; done
      fi
      agg_rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/${PIDS[aggregator]}/status")
      echo "  minute $minute/$ITER: aggregator RSS ${agg_rss} kB, $(metric "$AGG_HTTP_PORT" outpost_aggregator_kafka_messages_delivered_total) Kafka messages delivered, $api_reads API reads ($api_errors errors)"
    done
    sample
    ((api_errors == 0)) || fail "$api_errors of $api_reads API reads answered neither 200 nor 404"
    python3 "$TORTURE/soak_check.py" "$WORK/soak.csv" "$warmup" aggregator,soak-a1,soak-a2,sim \
      "$WORK/soak.json" || soak_rc=$?
    stop_proc sim
    [[ -s "$WORK/sim.json" ]] || fail "outpost-sim wrote no summary"
    acked=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["readings_acked"])' "$WORK/sim.json")
    sent=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["readings_sent"])' "$WORK/sim.json")
    FINISH_EXTRA=("sim-*=$acked:$sent")
    rc=0
    finish soak-a1 soak-a2 || rc=$?
    python3 - "$RESULT" "$WORK/soak.json" "$api_reads" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["soak"] = json.load(open(sys.argv[2]))
a["api_reads"] = int(sys.argv[3])
json.dump(a, open(sys.argv[1], "w"))
PY
    cp "$WORK/soak.csv" "$(dirname "$RESULT")/soak-samples.csv" 2>/dev/null || true
    [[ -z ${soak_rc:-} ]] || fail "resources grew during the soak (see the table above)"
    exit $rc
    ;;

  *)
    fail "unknown scenario '$NAME'"
    ;;
esac
