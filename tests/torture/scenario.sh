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
# KAFKA selects the broker: "dev" (the default; outpost-devkafka) is the only one supported today.
# The broker-down cases are written against start_kafka/stop_kafka so a real broker can be added.
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

RECOVERY_MS=0
note_recovery() { (($1 > RECOVERY_MS)) && RECOVERY_MS=$1 || true; }

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
  python3 "$TORTURE/account.py" "$WORK/readings.jsonl" "${spec[@]}" >"$WORK/account.json" || rc=$?
  python3 - "$WORK/account.json" "$RESULT" "$ITER" "$RECOVERY_MS" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["iterations"] = int(sys.argv[3])
a["recovery_s"] = round(int(sys.argv[4]) / 1000, 1)
json.dump(a, open(sys.argv[2], "w"))
PY
  cat "$WORK/account.json"
  return $rc
}

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
    for dev in tort-m1 tort-m2; do
      write_agent_config "$dev" 1000
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
    # a damaged store (tests/torture/account_damaged.py).
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
      { sqlite3 "$WORK/snap/$dev.outbox.db" "SELECT seq FROM batches" 2>/dev/null || echo "$e" >>"$WORK/unreadable"; } |
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
    python3 - "$WORK/account.json" "$RESULT" "$ITER" "$RECOVERY_MS" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["iterations"] = int(sys.argv[3])
a["recovery_s"] = round(int(sys.argv[4]) / 1000, 1)
json.dump(a, open(sys.argv[2], "w"))
PY
    cat "$WORK/account.json"
    moved=$(grep -c 'moved it to' "$WORK/$dev.log" || true)
    echo "  the agent moved $moved unreadable stores aside"
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
    python3 - "$WORK/account.json" "$RESULT" "$ITER" "$RECOVERY_MS" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["iterations"] = int(sys.argv[3])
a["recovery_s"] = round(int(sys.argv[4]) / 1000, 1)
json.dump(a, open(sys.argv[2], "w"))
PY
    cat "$WORK/account.json"
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
      stop_proc netem
      stop_proc tort-n
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
    nsx iptables-legacy -A OUTPUT -o "$VETH_AGENT" -j NFQUEUE --queue-num "$QNUM" --queue-bypass
    nsx iptables-legacy -A INPUT -i "$VETH_AGENT" -j NFQUEUE --queue-num "$QNUM" --queue-bypass
    log "namespace $NS: agent $NET_AGENT ($VETH_AGENT) <-> $NET_HOST ($VETH_HOST), queue $QNUM"
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
    n=$(grep -ciE 'reconnect|connection .* lost|no reply' "$WORK/$dev.log" || true)
    echo "  agent log lines about the link: $n"
    last=$(outbox_last_seq "$dev") rows=$(outbox_rows "$dev")
    kafka_dump outpost.readings "$WORK/readings.jsonl"
    rc=0
    python3 "$TORTURE/account.py" "$WORK/readings.jsonl" "$dev=$last:$rows:$produced" \
      >"$WORK/account.json" || rc=$?
    python3 - "$WORK/account.json" "$RESULT" "$ITER" "$RECOVERY_MS" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["iterations"] = int(sys.argv[3])
a["recovery_s"] = round(int(sys.argv[4]) / 1000, 1)
json.dump(a, open(sys.argv[2], "w"))
PY
    cat "$WORK/account.json"
    exit $rc
    ;;

  *)
    fail "unknown scenario '$NAME'"
    ;;
esac
