#!/usr/bin/env python3
"""Checks that exactly the readings an agent counted as dropped are missing on Kafka.

Usage: check_drops.py DUMP DEVICE PRODUCED_TOTAL LAST_SEQ DROPPED EVICTED_BATCHES AGENT_LOG

The agent's sensors are "counter" sensors (values 0, 1, 2, ... per sensor), and the agent stopped
after PRODUCED_TOTAL readings over all sensors (--max-readings). The sensors need not have made
the same number each (on a loaded machine one may be polled a few more times than another), so
each sensor's count is its highest value + 1: its last readings were made after the outbox had
room again and are never dropped, and the counts must add up to PRODUCED_TOTAL. On Kafka, for
DEVICE: no reading appears twice; the missing counter values, over all sensors, number exactly
DROPPED (the agent's persisted dropped_readings_total); the readings present number
PRODUCED_TOTAL - DROPPED; the batches present are LAST_SEQ - EVICTED_BATCHES distinct seqs in 1..LAST_SEQ of one
epoch, each with all its parts; and the `dropped` counts the batches carried add up to DROPPED
(every drop was reported to the cloud). Prints a summary; exits 1 on any mismatch.

One race is inherent and accounted for: a batch the aggregator had already delivered when the
broker went away (its ack lost) may be evicted afterwards; the agent counts its readings as dropped
although they are on Kafka. The agent's debug log names every evicted seq ("evicted batch N"), so
such batches are identified exactly and reported, and the equation becomes
missing == dropped - readings(evicted batches found on Kafka).
"""
import re
import collections
import json
import sys


def main() -> int:
    dump, dev = sys.argv[1], sys.argv[2]
    produced_total, last_seq, dropped, evicted = (int(x) for x in sys.argv[3:7])
    with open(sys.argv[7], encoding="utf-8", errors="replace") as f:
        evicted_seqs = {int(m.group(1)) for m in re.finditer(r"evicted batch (\d+) ", f.read())}
    per_seq_readings = collections.Counter()
    values = collections.defaultdict(collections.Counter)  # sensor -> value -> count
    parts = collections.defaultdict(set)
    nparts = {}
    reported = {}
    epochs = set()
    errors = []
    with open(dump, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            m = json.loads(line)
            if m["device"] != dev:
                errors.append(f"unexpected device {m['device']}")
                continue
            epochs.add(m["epoch"])
            key = m["seq"]
            if m["part"] in parts[key]:
                errors.append(f"seq {key} part {m['part']} twice")
            parts[key].add(m["part"])
            nparts[key] = m["parts"]
            reported[key] = m["dropped"]
            for r in m["readings"]:
                values[r["sensor"]][r["value"]] += 1
                per_seq_readings[key] += 1

    if len(evicted_seqs) != evicted:
        errors.append(f"agent log names {len(evicted_seqs)} evicted batches, store counted {evicted}")
    delivered_evicted = evicted_seqs & set(parts)
    late = sum(per_seq_readings[s] for s in delivered_evicted)
    if len(epochs) != 1:
        errors.append(f"{len(epochs)} epochs on Kafka, expected 1")
    sensors = sorted(values)
    missing = 0
    dups = 0
    produced_by_sensor = {}
    for s in sensors:
        c = values[s]
        dups += sum(1 for n in c.values() if n > 1)
        present = {int(v) for v in c}
        if any(v < 0 or v != int(v) for v in c):
            errors.append(f"sensor {s}: values that are not counter values")
        produced = max(present) + 1
        produced_by_sensor[s] = produced
        missing += produced - len(present & set(range(produced)))
    if sum(produced_by_sensor.values()) != produced_total:
        errors.append(f"the sensors' last counter values {produced_by_sensor} add up to "
                      f"{sum(produced_by_sensor.values())} readings, the agent made {produced_total}"
                      f" (a sensor's last readings are missing)")
    if dups:
        errors.append(f"{dups} readings appear more than once")
    if missing != dropped - late:
        errors.append(f"{missing} readings missing on Kafka, but the agent counted {dropped} dropped"
                      f" ({late} of them in evicted batches that had reached Kafka)")
    total = sum(sum(c.values()) for c in values.values())
    if total != produced_total - dropped + late:
        errors.append(f"{total} readings on Kafka, expected {produced_total - dropped + late}")
    seqs = sorted(parts)
    if any(s < 1 or s > last_seq for s in seqs):
        errors.append(f"seqs outside 1..{last_seq}")
    if set(seqs) | evicted_seqs != set(range(1, last_seq + 1)):
        errors.append(f"batches on Kafka plus evicted batches are not exactly 1..{last_seq}")
    for s in seqs:
        if parts[s] != set(range(1, nparts[s] + 1)):
            errors.append(f"seq {s}: parts {sorted(parts[s])} of {nparts[s]}")
    # Every drop is reported exactly once by a batch that was not itself evicted (an evicted
    # batch's report is carried forward).
    kept_reports = sum(v for s, v in reported.items() if s not in evicted_seqs)
    if kept_reports != dropped:
        errors.append(f"batches report {kept_reports} dropped readings, agent counted {dropped}")

    print(f"{dev}: {total} readings in {len(seqs)} batches on Kafka; {missing} missing = "
          f"{dropped} counted dropped - {late} in {len(delivered_evicted)} evicted batches that had "
          f"reached Kafka; {evicted} batches evicted; "
          f"{'OK' if not errors else 'MISMATCH'}")
    for e in errors:
        print("  " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
