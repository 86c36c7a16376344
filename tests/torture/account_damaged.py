#!/usr/bin/env python3
"""Accounting of the outbox-damage scenario: a store may lose what was waiting in it when it was
damaged, and nothing else.

Usage: account_damaged.py DUMP DEVICE ACCEPTED EXPOSED WAITING UNREADABLE AGENT_LOG

ACCEPTED: lines "EPOCH LAST_SEQ" (every seq 1..LAST_SEQ of EPOCH was accepted; the highest per
epoch counts). EXPOSED: lines "EPOCH SEQ", the batches waiting in the store at a moment it was
damaged. WAITING: batches still in the outbox at the end. UNREADABLE: epochs whose damaged store
the harness could not read: every seq of them on Kafka counts as accepted, every missing one below
the highest as exposed to damage. AGENT_LOG: where each epoch's first seq is read ("new store,
epoch E" then "epoch E, ... next seq N"): a store whose metadata was damaged gets a new epoch but
may keep its seq counter, so that epoch starts at N, not 1.
  lost         = accepted batches not on Kafka, minus WAITING
  lost_exposed = of those, the ones that were waiting in a damaged store (the loss damage may cause)
Exits 1 if a batch is lost that was never exposed to damage, a reading or batch part is on Kafka
twice, or a batch not accepted is on Kafka. Reordering is reported, not a failure.
"""
import collections
import json
import re
import sys


def main() -> int:
    dump, device, accepted_f, exposed_f, waiting = sys.argv[1:6]
    accepted = {}
    for line in open(accepted_f):
        if line.strip():
            e, s = line.split()
            accepted[e] = max(accepted.get(e, 0), int(s))
    exposed = set()
    for line in open(exposed_f):
        if line.strip():
            e, s = line.split()
            exposed.add((e, int(s)))
    unreadable = set()
    if len(sys.argv) > 6:
        unreadable = {line.strip() for line in open(sys.argv[6]) if line.strip()}
    parts = collections.Counter()
    nparts = {}
    readings = collections.Counter()
    order = collections.defaultdict(list)
    drops = 0
    n_readings = 0
    for line in open(dump, encoding="utf-8"):
        if not line.strip():
            continue
        m = json.loads(line)
        if m["device"] != device:
            continue
        parts[(m["epoch"], m["seq"], m["part"])] += 1
        nparts[(m["epoch"], m["seq"])] = m["parts"]
        if m["part"] == 1:
            order[m["epoch"]].append(m["seq"])
            drops += m.get("dropped", 0)
        for r in m["readings"]:
            readings[(r["sensor"], r["ts_us"])] += 1
            n_readings += 1
    complete = {k for k, n in nparts.items()
                if all(parts[(k[0], k[1], p)] >= 1 for p in range(1, n + 1))}
    first = {}
    if len(sys.argv) > 7:
        text = open(sys.argv[7], encoding="utf-8", errors="replace").read()
        for m in re.finditer(r"new store, epoch (\d+)\n.*?epoch \1, \d+ batches .*? next seq (\d+)",
                             text):
            first.setdefault(m.group(1), int(m.group(2)))
    # An epoch on Kafka the harness never read (its store was damaged before any snapshot).
    unreadable |= {ep for (ep, _s) in nparts} - accepted.keys()
    for e in unreadable:
        high = max([s for (ep, s) in nparts if ep == e] + [accepted.get(e, 0)])
        accepted[e] = high
        exposed.update((e, s) for s in range(1, high + 1))
    errors, notes = [], []
    missing = [(e, s) for e, last in accepted.items() for s in range(first.get(e, 1), last + 1)
               if (e, s) not in complete]
    unexpected = [k for k in complete if k[1] > accepted.get(k[0], 0)]
    if unexpected:
        errors.append(f"batches on Kafka that no outbox accepted: {sorted(unexpected)[:10]}")
    lost = len(missing) - int(waiting)
    unexposed = [k for k in missing if k not in exposed]
    if len(unexposed) > int(waiting):
        errors.append(f"{len(unexposed)} batches lost that were never in a damaged store: "
                      f"{unexposed[:10]}")
    dup = sum(n - 1 for n in parts.values() if n > 1) + sum(n - 1 for n in readings.values() if n > 1)
    if dup:
        errors.append(f"{dup} batch parts or readings on Kafka more than once")
    reordered = 0
    for seqs in order.values():
        high = 0
        for s in seqs:
            reordered += s < high
            high = max(high, s)
    if reordered:
        notes.append(f"{reordered} batches reached Kafka after a higher seq of their epoch")
    out = {"readings": n_readings, "batches": sum(accepted.values()), "waiting": int(waiting),
           "drops": drops, "lost": max(lost, 0), "lost_exposed": len(missing) - len(unexposed),
           "exposed": len(exposed), "epochs": len(accepted), "duplicated": dup,
           "reordered": reordered, "ok": not errors, "errors": errors, "notes": notes}
    print(json.dumps(out))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
