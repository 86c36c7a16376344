#!/usr/bin/env python3
"""Reading-level accounting of the io-error-kill scenario (docs/reliability.md).

Usage: account_iokill.py DUMP DEVICE RUNS READINGS_PER_RUN RATE_HZ PENDING

Some of the scenario's agent runs end in a SIGKILL right after a failed fsync, so how many
readings such a run produced is not known and account.py's "produced = on Kafka + counted
drops" cannot be checked directly. The agent's sensors are counters (value k = the reading's
index in its run, timestamp start + k / RATE_HZ), so each run's readings on Kafka show which of
its readings are missing:
  - in a run that ended by itself (exit 0, READINGS_PER_RUN readings): every missing reading;
  - in a killed run: the missing readings below the highest one on Kafka (a later batch of the
    run was stored, so these were dropped while the agent ran, and their count was committed with
    that batch) — "gaps" — and, above it, at most the readings due before the kill's time (the
    shim's report) — "tail", which may or may not have been counted (the agent counts a failed
    batch's readings in memory and commits the count with its next successful transaction).
RUNS has one line per run: "<launch_us> <end_us> clean|killed <kill_us or 0>" (wall clock).
PENDING: dropped readings counted in the store and not yet reported by a batch.

Checks (exit 1 if one fails), with D = the counted drops (the batches' "dropped" fields + PENDING):
  per run: the drops its batches report beyond its own gaps were carried in from the runs
                before it: at most their tails (a killed run's bound, a clean run's exact tail),
                at least a clean run's exact tail (reported by the next batch, whichever run stores it)
  uncounted:    D >= missing in clean runs + gaps   (every drop while the agent ran is counted)
  over-counted: D <= missing in clean runs + gaps + tail bound (a batch both on Kafka and counted
                as dropped shows up here when it does not fit in what the killed runs left
                unstored)
  every reading on Kafka belongs to one run, its value is its index (no reading from nowhere).
Prints one JSON object.
"""
import collections
import json
import sys


def main() -> int:
    dump, dev, runs_file, per_run, rate, pending = sys.argv[1:7]
    per_run, rate, pending = int(per_run), float(rate), int(pending)
    interval = 1e6 / rate
    runs = []
    for line in open(runs_file, encoding="utf-8"):
        if line.strip():
            launch, end, status, kill = line.split()
            runs.append((int(launch), int(end), status, int(kill)))
    ks = collections.defaultdict(lambda: collections.defaultdict(list))  # run -> sensor -> [(k, ts)]
    dropped_in = collections.Counter()  # run -> the "dropped" fields of its batches
    dropped = 0
    errors = []
    sensors = set()

    def run_of(ts):
        return next((i for i, (a, b, _, _) in enumerate(runs) if a <= ts <= b), None)

    with open(dump, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            m = json.loads(line)
            if m["device"] != dev:
                continue
            if m["part"] == 1:
                dropped += m.get("dropped", 0)
                if m.get("dropped", 0):
                    r0 = run_of(m["readings"][0]["ts_us"]) if m["readings"] else None
                    if r0 is None:
                        errors.append(f"batch {m['seq']}: its drop count belongs to no run")
                    else:
                        dropped_in[r0] += m["dropped"]
            for r in m["readings"]:
                ts, k, s = r["ts_us"], r["value"], r["sensor"]
                sensors.add(s)
                run = run_of(ts)
                if run is None:
                    errors.append(f"reading {s}/{ts} is outside every run")
                    continue
                ks[run][s].append((int(k), ts))
    counted = dropped + pending
    missing_clean = gaps = tail = killed = 0
    # Per run, in order: a batch's "dropped" field reports what was counted since the batch
    # before it, so the drops a run's batches report beyond its own gaps were carried in from
    # the runs before (their tails: exactly what a clean run left unstored, at most a killed
    # run's tail bound).
    carry_lo = carry_hi = 0
    for i, (launch, end, status, kill_us) in enumerate(runs):
        on_kafka = sum(len(v) for v in ks[i].values())
        run_gaps = stored_to = run_tail = 0
        for s in sensors:
            v = ks[i].get(s, [])
            if v:
                kmax = max(k for k, _ in v)
                start = min(ts - k * interval for k, ts in v)
                if len({k for k, _ in v}) != len(v):
                    errors.append(f"run {i + 1}: a reading of {s} is on Kafka twice")
                run_gaps += kmax + 1 - len(v)
            else:
                kmax, start = -1, launch
            stored_to += kmax + 1
            if status == "killed":
                due = int((kill_us - start) // interval) + 1 if kill_us > start else 0
                run_tail += max(0, due - (kmax + 1))
        if status == "clean":
            missing_clean += per_run - on_kafka
        else:
            killed += 1
            gaps += run_gaps
            tail += run_tail
        if on_kafka:
            carried = dropped_in[i] - run_gaps
            if carried > carry_hi:
                errors.append(f"over-counted in run {i + 1}: its batches report {dropped_in[i]} "
                              f"dropped, {run_gaps} missing in it, at most {carry_hi} carried "
                              f"from the runs before")
            if carried < carry_lo:
                errors.append(f"uncounted before run {i + 1}: its batches report {dropped_in[i]} "
                              f"dropped, {run_gaps} missing in it, at least {carry_lo} carried")
            carry_lo = carry_hi = 0
            if status == "clean":
                carry_lo = carry_hi = per_run - stored_to  # its tail: reported later
            else:
                carry_hi = run_tail
        elif status == "clean":
            carry_lo += per_run
            carry_hi += per_run
        else:
            carry_hi += run_tail
    if not carry_lo <= pending <= carry_hi:
        errors.append(f"pending {pending} outside {carry_lo}..{carry_hi}, what the last runs left")
    known = missing_clean + gaps
    if counted < known:
        errors.append(f"uncounted: {known - counted} readings missing from Kafka and not counted "
                      f"as dropped ({missing_clean} missing in clean runs, {gaps} gaps in killed "
                      f"runs, {counted} counted)")
    if counted > known + tail:
        errors.append(f"over-counted: {counted - known - tail} readings counted as dropped beyond "
                      f"what is missing from Kafka ({known} missing, at most {tail} more unstored "
                      f"at the kills)")
    print(json.dumps({"runs": len(runs), "killed_runs": killed, "readings_on_kafka":
                      sum(len(v) for r in ks.values() for v in r.values()),
                      "counted_dropped": counted, "missing_clean_runs": missing_clean,
                      "gaps_killed_runs": gaps, "tail_bound_killed_runs": tail,
                      "counted_in_tails": counted - known, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
