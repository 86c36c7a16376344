#!/usr/bin/env python3
"""Verdict of the soak scenario: resident memory, file descriptors and threads must be flat.

Usage: soak_check.py SAMPLES_CSV WARMUP_S CHECKED_NAMES OUT_JSON

SAMPLES_CSV: lines "t_s,name,rss_kb,fds,threads" (tests/torture/scenario.sh soak, every 10 s).
After WARMUP_S seconds (caches, rings and Kafka buffers filling), for each process:
  first = median of the first 3 samples after the warm-up, last = median of the last 3,
  slope = least-squares RSS growth after the warm-up, in kB per hour.
CHECKED_NAMES (comma list) must hold: last RSS <= first RSS x 1.10 + 4 MiB, last fds <= first
fds + 4, last threads <= first threads + 2. Other processes (Mosquitto, the Kafka broker) are
reported only. Prints one line per process and writes the table to OUT_JSON; exits 1 on growth.
"""
import collections
import json
import statistics
import sys


def main() -> int:
    samples_f, warmup_s, checked_s, out_f = sys.argv[1:5]
    warmup, checked = float(warmup_s), set(filter(None, checked_s.split(",")))
    series = collections.defaultdict(list)
    for line in open(samples_f):
        t, name, rss, fds, thr = line.strip().split(",")
        series[name].append((float(t), int(rss), int(fds), int(thr)))
    table, errors = {}, []
    for name, rows in sorted(series.items()):
        rows = [r for r in rows if r[0] >= warmup]
        if len(rows) < 4:
            errors.append(f"{name}: only {len(rows)} samples after the warm-up (the process died?)")
            continue
        med = lambda xs, i: statistics.median(x[i] for x in xs)
        first, last = rows[:3], rows[-3:]
        ts = [r[0] for r in rows]
        rss = [r[1] for r in rows]
        mt, mr = statistics.fmean(ts), statistics.fmean(rss)
        var = sum((t - mt) ** 2 for t in ts)
        slope = sum((t - mt) * (r - mr) for t, r in zip(ts, rss)) / var * 3600 if var else 0.0
        row = {"rss_kb_first": med(first, 1), "rss_kb_last": med(last, 1),
               "rss_kb_max": max(rss), "rss_kb_per_hour": round(slope, 1),
               "fds_first": med(first, 2), "fds_last": med(last, 2),
               "threads_first": med(first, 3), "threads_last": med(last, 3),
               "samples": len(rows), "checked": name in checked}
        table[name] = row
        verdict = ""
        if name in checked:
            bad = []
            if row["rss_kb_last"] > row["rss_kb_first"] * 1.10 + 4096:
                bad.append("RSS grew")
            if row["fds_last"] > row["fds_first"] + 4:
                bad.append("file descriptors grew")
            if row["threads_last"] > row["threads_first"] + 2:
                bad.append("threads grew")
            verdict = "flat" if not bad else "GROWTH: " + ", ".join(bad)
            errors += [f"{name}: {b}" for b in bad]
        else:
            verdict = "(reported only)"
        print(f"  {name:12} RSS {row['rss_kb_first']:>9.0f} -> {row['rss_kb_last']:>9.0f} kB "
              f"(max {row['rss_kb_max']}, {row['rss_kb_per_hour']:+.0f} kB/h), fds "
              f"{row['fds_first']:.0f} -> {row['fds_last']:.0f}, threads {row['threads_first']:.0f}"
              f" -> {row['threads_last']:.0f}: {verdict}")
    missing = checked - table.keys()
    errors += [f"{n}: no samples" for n in sorted(missing)]
    json.dump({"processes": table, "errors": errors}, open(out_f, "w"), indent=1)
    for e in errors:
        print("  FAIL:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
