#!/usr/bin/env python3
"""Checks of tests/torture/account.py, the torture suite's accounting (ctest torture.account).

Fake dumps of outpost.readings, one JSON message a line as kcat writes them, with and without the
DUMP.lowwm file that scenario.sh's kafka_dump writes (each partition's low watermark and the
devices on a partition whose low watermark is above 0). Covered: exactly-once passes; a missing
batch is lost; a duplicate is duplicated; batches missing below a device's oldest one on a
partition the broker's retention truncated are lost to retention (the run still fails, and says
why), not lost; a missing batch above the oldest one on Kafka stays lost even then; a device on a
partition that was not truncated is not excused.
"""
import json
import os
import subprocess
import sys
import tempfile

ACCOUNT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "account.py")


def run(tmp, seqs, specs, lowwm=None):
    dump = os.path.join(tmp, f"dump{run.n}")
    run.n += 1
    with open(dump, "w", encoding="utf-8") as f:
        for dev, seq in seqs:
            m = {"device": dev, "epoch": 1, "seq": seq, "part": 1, "parts": 1,
                 "readings": [{"sensor": "a", "ts_us": seq}]}
            f.write(json.dumps(m) + "\n")
    if lowwm is not None:
        with open(dump + ".lowwm", "w", encoding="utf-8") as f:
            json.dump(lowwm, f)
    r = subprocess.run([sys.executable, ACCOUNT, dump, *specs], capture_output=True, text=True)
    return r.returncode, json.loads(r.stdout)


run.n = 0
failures = []


def check(name, cond, out):
    if not cond:
        failures.append(f"{name}: {json.dumps(out)}")


with tempfile.TemporaryDirectory() as tmp:
    rc, a = run(tmp, [("d", s) for s in range(1, 11)], ["d=10:0"])
    check("exactly once passes", rc == 0 and a["ok"] and a["lost"] == 0, a)

    rc, a = run(tmp, [("d", s) for s in range(1, 11) if s != 4], ["d=10:0"])
    check("a missing batch is lost", rc == 1 and a["lost"] == 1, a)

    rc, a = run(tmp, [("d", s) for s in range(1, 11)] + [("d", 3)], ["d=10:0"])
    check("a duplicate is counted", rc == 1 and a["duplicated"] == 1, a)

    trunc = {"low_watermarks": {"0": 4, "1": 0}, "truncated_devices": {"0": ["d"]}}
    rc, a = run(tmp, [("d", s) for s in range(5, 11)], ["d=10:0"], trunc)
    check("the oldest batches under retention: lost to retention, not lost, the run fails",
          rc == 1 and a["lost"] == 0 and a["lost_to_retention"] == 4 and
          a["retention_dropped_messages"] == 4 and not a["ok"] and
          "retention" in " ".join(a["errors"]), a)

    rc, a = run(tmp, [("d", s) for s in range(5, 11) if s != 7], ["d=10:0"], trunc)
    check("a batch missing above the oldest on Kafka stays lost",
          rc == 1 and a["lost"] == 1 and a["lost_to_retention"] == 4, a)

    rc, a = run(tmp, [("d", s) for s in range(5, 11)] + [("e", s) for s in range(3, 6)],
                ["d=10:0", "e=5:0"], trunc)
    check("a device on a partition not truncated is not excused",
          rc == 1 and a["lost"] == 2 and a["lost_to_retention"] == 4, a)

    rc, a = run(tmp, [("d", s) for s in range(1, 11)], ["d=10:0"],
                {"low_watermarks": {"0": 0, "1": 0}, "truncated_devices": {}})
    check("low watermarks of 0 change nothing", rc == 0 and a["ok"], a)

for f in failures:
    print("FAIL", f)
print(f"account.py: {7 - len(failures)} of 7 checks passed")
sys.exit(1 if failures else 0)
