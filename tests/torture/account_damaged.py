#!/usr/bin/env python3
"""Accounting of the outbox-damage scenario: a store may lose what was waiting in it when it was
damaged, and nothing else; and since the agent salvages a damaged store (agent/src/outbox/
outbox_salvage.cc), what it could read back of such a store is counted as dropped (reason
store_damaged), not lost.

Usage: account_damaged.py DUMP DEVICE ACCEPTED EXPOSED WAITING UNREADABLE AGENT_LOG

ACCEPTED: lines "EPOCH LAST_SEQ" (every seq 1..LAST_SEQ of EPOCH was accepted; the highest per
epoch counts). EXPOSED: lines "EPOCH SEQ", the batches waiting in the store at a moment it was
damaged. WAITING: batches still in the outbox at the end. UNREADABLE: epochs whose damaged store
the harness could not read: every seq of them on Kafka counts as accepted, every missing one below
the highest as exposed to damage. AGENT_LOG: where each epoch's first seq is read ("new store,
epoch E" then "epoch E, ... next seq N"): a store whose metadata was damaged gets a new epoch but
may keep its seq counter, so that epoch starts at N, not 1.
EXPOSED lines may carry a third field, the batch's readings. The agent log's salvage lines
("salvaged the damaged store (epoch E): B waiting batches with R readings (complete)", or "... only
in part (partial|nothing)") say which damaged stores were read back completely.
  missing      = accepted batches not on Kafka, minus WAITING
  counted      = of those, the ones the salvage of their damaged store read back (its log line
                 lists the seqs): counted as store_damaged drops (reported on Kafka in the next
                 batch's `dropped`)
  lost         = missing - counted: lost without a count
  lost_exposed = of the lost, the ones that were waiting in a damaged store (the loss damage may
                 cause: a store the salvage could not read completely, or a WAL whose damaged
                 frames SQLite skipped, which is not detected as damage at all)
  over_counted = batches counted as store_damaged that are on Kafka too (they were in flight:
                 delivered, not yet acknowledged, when the store was damaged)
  seq_counter_back / seqs_reused_at_least = starts whose next seq was below an earlier start's in
                 the same epoch (damaged WAL frames skipped by SQLite), and the seqs given out
                 twice because of it (a lower bound; not counted in lost: those batches' readings
                 cannot be told from the first ones by (epoch, seq))
Exits 1 if a batch is lost that was never exposed to damage, a reading or batch part is on Kafka
twice, or a batch not accepted is on Kafka. Reordering is reported, not a failure.
"""
import collections
import json
import re
import sys


def parse_seqs(text):
    """'5-9,12,...' -> ({5, 6, 7, 8, 9, 12}, True): the seqs listed, and whether the list was
    cut short."""
    listed, cut = set(), False
    for part in filter(None, text.split(",")):
        if part == "...":
            cut = True
        elif "-" in part:
            a, b = part.split("-")
            listed.update(range(int(a), int(b) + 1))
        else:
            listed.add(int(part))
    return listed, cut


def main() -> int:
    dump, device, accepted_f, exposed_f, waiting = sys.argv[1:6]
    accepted = {}
    for line in open(accepted_f):
        if line.strip():
            e, s = line.split()
            accepted[e] = max(accepted.get(e, 0), int(s))
    exposed = set()
    exposed_readings = {}
    for line in open(exposed_f):
        if line.strip():
            f = line.split()
            exposed.add((f[0], int(f[1])))
            if len(f) > 2:
                exposed_readings[(f[0], int(f[1]))] = int(f[2])
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
    salvage = {}  # epoch -> (found, batches, readings, (seqs listed, list cut short))
    salvage_unknown_epoch = collections.Counter()
    seq_back = []  # (epoch, next seq at a start, the higher next seq of an earlier start)
    if len(sys.argv) > 7:
        text = open(sys.argv[7], encoding="utf-8", errors="replace").read()
        for m in re.finditer(r"salvaged the damaged store \(epoch (\w+)\)(?: only in part "
                             r"\((\w+)\))?: (\d+) waiting batches with (\d+) readings"
                             r"[^\n]*?seqs \[([0-9,.-]*)\]", text):
            found = m.group(2) or "complete"
            if m.group(1) == "unknown":
                salvage_unknown_epoch[found] += 1
            else:
                salvage[m.group(1)] = (found, int(m.group(3)), int(m.group(4)),
                                       parse_seqs(m.group(5)))
        for m in re.finditer(r"new store, epoch (\d+)\n.*?epoch \1, \d+ batches .*? next seq (\d+)",
                             text):
            first.setdefault(m.group(1), int(m.group(2)))
        # A store that opens with its seq counter below an earlier start's in the same epoch
        # (SQLite skipped damaged WAL frames and the commits after them, silently): the seqs in
        # between are given out again (a lower bound: only starts are compared).
        high = {}
        for m in re.finditer(r"outbox \S+: epoch (\d+), \d+ batches \(\d+ bytes\) waiting, "
                             r"next seq (\d+)", text):
            e, s_next = m.group(1), int(m.group(2))
            if s_next < high.get(e, 0):
                seq_back.append((e, s_next, high[e]))
            high[e] = max(high.get(e, 0), s_next)
    errors, notes = [], []
    # An epoch on Kafka the harness never read (its store was damaged before any snapshot).
    unreadable |= {ep for (ep, _s) in nparts} - accepted.keys()
    for e in unreadable:
        high = max([s for (ep, s) in nparts if ep == e] + [accepted.get(e, 0)])
        accepted[e] = high
        exposed.update((e, s) for s in range(1, high + 1))
    missing = [(e, s) for e, last in accepted.items() for s in range(first.get(e, 1), last + 1)
               if (e, s) not in complete]
    unexpected = [k for k in complete if k[1] > accepted.get(k[0], 0)]
    if unexpected:
        errors.append(f"batches on Kafka that no outbox accepted: {sorted(unexpected)[:10]}")
    # Missing batches of a store whose salvage was complete were counted as dropped.
    # At most as many as the salvage found in that epoch (a batch whose WAL frames SQLite skipped
    # is not in the salvaged copy either: it stays uncounted).
    counted, uncounted = [], []
    by_epoch = collections.defaultdict(list)
    for k in missing:
        by_epoch[k[0]].append(k)
    # Counted: a missing batch whose seq the salvage of its store logged (the seq list, or, when
    # the list was cut short ("..."), any missing batch of a complete salvage up to its count).
    over_counted = 0
    for e, ks in by_epoch.items():
        found, batches, _r, seqs = salvage.get(e, ("none", 0, 0, (set(), False)))
        listed, cut = seqs
        for k in ks:
            (counted if k[1] in listed else uncounted).append(k)
        if cut and found == "complete":
            extra = [k for k in uncounted if k[0] == e][:max(0, batches - len(listed))]
            uncounted = [k for k in uncounted if k not in extra]
            counted += extra
    on_kafka = {k for k in complete}
    for e, (_f, _b, _r, (listed, _cut)) in salvage.items():
        over_counted += sum(1 for s in listed if (e, s) in on_kafka)
    counted_readings = sum(exposed_readings.get(k, 0) for k in counted)
    salvaged_readings = sum(v[2] for v in salvage.values())
    if counted_readings > salvaged_readings:
        errors.append(f"the salvage counted {salvaged_readings} readings, fewer than the "
                      f"{counted_readings} of the missing batches it should have counted")
    if salvaged_readings > drops:
        notes.append(f"{salvaged_readings} readings counted as store_damaged, but only {drops} "
                     f"drops reported on Kafka (a fresh store damaged before its first batch)")
    lost = len(uncounted) - int(waiting)
    unexposed = [k for k in uncounted if k not in exposed]
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
           "drops": drops, "lost": max(lost, 0), "lost_exposed": len(uncounted) - len(unexposed),
           "counted_store_damaged": len(counted), "counted_readings": counted_readings,
           "salvaged_readings": salvaged_readings, "over_counted": over_counted,
           "salvages": {f: sum(1 for v in salvage.values() if v[0] == f) + salvage_unknown_epoch[f]
                        for f in ("complete", "partial", "nothing")},
           "seq_counter_back": len(seq_back),
           "seqs_reused_at_least": sum(h - s for _e, s, h in seq_back),
           "exposed": len(exposed), "epochs": len(accepted), "duplicated": dup,
           "reordered": reordered, "ok": not errors, "errors": errors, "notes": notes}
    print(json.dumps(out))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
