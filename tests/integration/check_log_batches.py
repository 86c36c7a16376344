#!/usr/bin/env python3
"""Checks a real Kafka broker's log (the output of org.apache.kafka.tools.DumpLogSegments) for what
the aggregator's producer settings promise: every record batch comes from an idempotent producer
(producerId >= 0), its sequence numbers have no gap or repeat per partition and producer epoch,
it has the expected compression codec and is valid (CRC).

Usage: check_log_batches.py DUMP_FILE CODEC
"""
import re
import sys

FIELD = re.compile(r"(\w+): (\S+)")


def main():
    path, codec = sys.argv[1], sys.argv[2]
    partition = None
    batches = 0
    last = {}  # (partition, producerId, epoch) -> lastSequence
    problems = []
    for line in open(path):
        if line.startswith("Dumping "):
            partition = line.split()[1]
            continue
        if not line.startswith("baseOffset:"):
            continue
        f = dict(FIELD.findall(line))
        batches += 1
        where = f"{partition} offset {f['baseOffset']}"
        if int(f["producerId"]) < 0:
            problems.append(f"{where}: no producer id (not idempotent)")
        if f["compresscodec"] != codec:
            problems.append(f"{where}: compresscodec {f['compresscodec']}, expected {codec}")
        if f["isvalid"] != "true" or f["magic"] != "2":
            problems.append(f"{where}: invalid batch (isvalid {f['isvalid']}, magic {f['magic']})")
        key = (partition, f["producerId"], f["producerEpoch"])
        want = last.get(key, -1) + 1
        if int(f["baseSequence"]) != want:
            problems.append(f"{where}: baseSequence {f['baseSequence']}, expected {want}")
        last[key] = int(f["lastSequence"])
    if batches == 0:
        problems.append("no record batch in the dump")
    if problems:
        print("log check FAILED:\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        sys.exit(1)
    print(f"log check OK: {batches} record batches, idempotent (gap-free sequences from "
          f"{len(last)} producer/partition pairs), {codec}, valid")


if __name__ == "__main__":
    main()
