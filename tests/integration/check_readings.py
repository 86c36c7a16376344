#!/usr/bin/env python3
"""Checks what an outside Kafka client (kcat) read from outpost.readings.

Usage: check_readings.py DUMP DEVICE=LAST_SEQ[:READINGS] ...

DUMP lines are JSON messages (kafka.readings_format = "batch"), or for the flat "reading" format
`HEADERS<TAB>JSON` as printed by kcat -f '%h\t%s\n' (part and parts come from the headers).

For each DEVICE: the batches on Kafka must be exactly seqs 1..LAST_SEQ of one epoch, each exactly
once (all parts present once), and no (sensor, ts_us) reading may appear twice. With READINGS, the
device's reading count must equal it. Devices not named must not appear. Prints a summary line;
exits 1 with the reasons on any mismatch.
"""
import collections
import json
import sys


def main() -> int:
    dump, specs = sys.argv[1], sys.argv[2:]
    expect = {}
    for spec in specs:
        dev, rest = spec.split("=", 1)
        last, _, readings = rest.partition(":")
        expect[dev] = (int(last), int(readings) if readings else None)

    parts = collections.defaultdict(list)       # (dev, epoch, seq) -> [part numbers]
    nparts = {}
    readings = collections.Counter()            # (dev, sensor, ts) -> count
    per_device = collections.Counter()
    errors = []
    with open(dump, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            headers = {}
            if not line.startswith("{") and "\t" in line:
                hdr, line = line.split("\t", 1)
                headers = dict(h.split("=", 1) for h in hdr.split(",") if "=" in h)
            try:
                m = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"line {lineno}: not JSON: {e}")
                continue
            key = (m["device"], m["epoch"], m["seq"])
            if "readings" in m:  # batch format
                parts[key].append(m["part"])
                nparts[key] = m["parts"]
                flat = [(r["sensor"], r["ts_us"]) for r in m["readings"]]
            else:  # reading format: one record per reading (none for an empty batch)
                if "outpost-part" not in headers:
                    errors.append(f"line {lineno}: flat record without outpost-part header")
                    continue
                parts[key].append(int(headers["outpost-part"]))
                nparts[key] = int(headers["outpost-parts"])
                flat = [(m["sensor"], m["ts"])] if "sensor" in m and "window_start" not in m else []
            for sensor, ts in flat:
                readings[(m["device"], sensor, ts)] += 1
                per_device[m["device"]] += 1

    devices = {k[0] for k in parts}
    for dev in sorted(devices - expect.keys()):
        errors.append(f"unexpected device {dev} on Kafka")
    for dev, (last, count) in expect.items():
        keys = [k for k in parts if k[0] == dev]
        epochs = {k[1] for k in keys}
        if len(epochs) > 1:
            errors.append(f"{dev}: {len(epochs)} epochs on Kafka, expected 1")
        seqs = sorted(k[2] for k in keys)
        want = list(range(1, last + 1))
        if seqs != want:
            missing = sorted(set(want) - set(seqs))
            extra = sorted(set(seqs) - set(want))
            errors.append(f"{dev}: seqs on Kafka differ from 1..{last}: missing {missing[:20]}"
                          f"{'...' if len(missing) > 20 else ''}, unexpected {extra[:20]}")
        for k in keys:
            p = sorted(parts[k])
            if p != list(range(1, nparts[k] + 1)):
                errors.append(f"{dev}: batch seq {k[2]} has parts {p}, expected 1..{nparts[k]} once")
        if count is not None and per_device[dev] != count:
            errors.append(f"{dev}: {per_device[dev]} readings on Kafka, expected {count}")
    dups = [k for k, n in readings.items() if n > 1]
    if dups:
        errors.append(f"{len(dups)} readings appear more than once, e.g. {dups[:5]}")

    total_batches = len(parts)
    print(f"checked {sum(per_device.values())} readings in {total_batches} batches from "
          f"{len(devices)} devices: {'OK' if not errors else 'MISMATCH'}")
    for e in errors:
        print("  " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
