#!/usr/bin/env python3
"""The cluster test's checks of outpost.readings beyond tests/torture/account.py (issue 19).

Usage: check_cluster.py COMMITTED JAVA UNCOMMITTED PREFIX SIM_SUMMARY_JSON DEVICES

COMMITTED   outpost.readings read by kcat with isolation.level=read_committed (one value a line)
JAVA        the same topic read by Kafka's Java console consumer, --isolation-level read_committed
            ("-": no such dump, that check is left out)
UNCOMMITTED the same topic read by kcat with isolation.level=read_uncommitted ("-": left out)
PREFIX      device id prefix of the simulated fleet (outpost-sim --device-prefix)
SIM_SUMMARY outpost-sim's --summary-json, written when it exited
DEVICES     how many virtual devices the fleet had (each must be on Kafka)

Checks (each failure is named in "errors"; exit 1 if any):
- the two read_committed clients (librdkafka and Java) read the same messages (as multisets);
- every committed message is also in the read_uncommitted dump; what is there beyond it is
  aborted output (counted: informative, a process instance killed inside a transaction leaves it);
- the fleet, exactly: the simulator ended with every batch acknowledged and none dropped, and per
  virtual device every seq 1..last on Kafka, each batch complete, once (no gap, no repeat, one
  epoch); the readings on Kafka number exactly readings_acked. Per-device order: batches that
  reached Kafka after a higher seq of their device are counted (as account.py does), and any
  reading repeated (device, sensor, ts_us) is an error.
Prints one JSON object.
"""
import collections
import json
import sys


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f if l.strip()]


def main() -> int:
    committed_path, java_path, uncommitted_path, prefix, summary_path = sys.argv[1:6]
    devices = int(sys.argv[6])
    errors, notes = [], []
    committed = lines(committed_path)
    java = lines(java_path) if java_path != "-" else committed
    uncommitted = lines(uncommitted_path) if uncommitted_path != "-" else committed

    c_set, j_set, u_set = (collections.Counter(x) for x in (committed, java, uncommitted))
    if c_set != j_set:
        only_c = sum((c_set - j_set).values())
        only_j = sum((j_set - c_set).values())
        errors.append(f"kcat (read_committed) and the Java consumer (read_committed) differ: "
                      f"{only_c} messages only in kcat's, {only_j} only in Java's "
                      f"({len(committed)} vs {len(java)})")
    missing_u = sum((c_set - u_set).values())
    if missing_u:
        errors.append(f"{missing_u} committed messages are not in the read_uncommitted dump")
    aborted = sum((u_set - c_set).values())
    aborted_dups = 0  # aborted messages whose batch part is also committed: the retried work
    committed_parts = set()
    for line in committed:
        m = json.loads(line)
        committed_parts.add((m["device"], m["epoch"], m["seq"], m["part"]))
    for line, n in (u_set - c_set).items():
        m = json.loads(line)
        if (m["device"], m["epoch"], m["seq"], m["part"]) in committed_parts:
            aborted_dups += n

    summary = json.load(open(summary_path, encoding="utf-8"))
    acked, sent = summary["readings_acked"], summary["readings_sent"]
    if summary.get("batches_unacked", 0):
        errors.append(f"the fleet ended with {summary['batches_unacked']} batches unacknowledged")
    if summary.get("batches_dropped", 0):
        errors.append(f"the fleet dropped {summary['batches_dropped']} batches (backlog full)")

    parts = collections.Counter()
    nparts = {}
    order = collections.defaultdict(list)
    epochs = collections.defaultdict(set)
    readings = collections.Counter()
    per_device = collections.Counter()
    for line in committed:
        m = json.loads(line)
        dev = m["device"]
        if not dev.startswith(prefix):
            continue
        parts[(dev, m["epoch"], m["seq"], m["part"])] += 1
        nparts[(dev, m["epoch"], m["seq"])] = m["parts"]
        epochs[dev].add(m["epoch"])
        if m["part"] == 1:
            order[dev].append(m["seq"])
        for r in m["readings"]:
            readings[(dev, r["sensor"], r["ts_us"])] += 1
            per_device[dev] += 1

    gaps = incomplete = reordered = 0
    for dev in sorted(epochs):
        if len(epochs[dev]) != 1:
            errors.append(f"{dev}: {len(epochs[dev])} epochs on Kafka, expected 1")
        seqs = {s for (d, _, s) in nparts if d == dev}
        last = max(seqs)
        missing = sorted(set(range(1, last + 1)) - seqs)
        if missing:
            gaps += len(missing)
            errors.append(f"{dev}: seqs missing on Kafka below its last seq {last}: {missing[:20]}")
        for (d, e, s), n in nparts.items():
            if d == dev and any(parts[(d, e, s, p)] == 0 for p in range(1, n + 1)):
                incomplete += 1
                errors.append(f"{dev}: batch {s} incomplete on Kafka")
        high = 0
        for s in order[dev]:
            if s < high:
                reordered += 1
            high = max(high, s)
    if len(epochs) != devices:
        errors.append(f"fleet: {len(epochs)} devices on Kafka, expected {devices}")
    dup_parts = sum(n - 1 for n in parts.values() if n > 1)
    dup_readings = sum(n - 1 for n in readings.values() if n > 1)
    if dup_parts or dup_readings:
        errors.append(f"fleet: {dup_parts} batch parts and {dup_readings} readings on Kafka more "
                      f"than once")
    fleet_readings = sum(per_device.values())
    if fleet_readings != acked:
        errors.append(f"fleet: {fleet_readings} readings on Kafka, {acked} acknowledged "
                      f"({sent} sent): every acknowledged reading must be there exactly once")
    if reordered:
        notes.append(f"{reordered} fleet batches reached Kafka after a higher seq of their device")

    out = {
        "committed_messages": len(committed),
        "java_messages": len(java),
        "uncommitted_messages": len(uncommitted),
        "aborted_messages": aborted,
        "aborted_duplicates": aborted_dups,
        "fleet_devices": len(epochs),
        "fleet_readings": fleet_readings,
        "fleet_acked": acked,
        "fleet_sent": sent,
        "fleet_batches": len(nparts),
        "fleet_gaps": gaps,
        "fleet_incomplete": incomplete,
        "fleet_duplicated": dup_readings,
        "fleet_reordered": reordered,
        "ok": not errors,
        "errors": errors,
        "notes": notes,
    }
    print(json.dumps(out))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
