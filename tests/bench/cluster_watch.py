#!/usr/bin/env python3
"""cluster_watch.py: what a downstream read_committed consumer of the readings topic sees, and when.

Runs kcat (librdkafka, the same client as the aggregator) as a consumer of TOPIC from its end with
isolation.level=read_committed, and writes one line per message it receives:

    <receive wall time, us> <partition> <device> <seq> <received_us> <readings>

received_us is the aggregator's (role all) or ingest instance's (roles ingest + process) receive
time of the batch, from the message's JSON. receive time - received_us is therefore
"aggregator receives the batch -> its readings visible to a read_committed consumer" (same
machine, same wall clock). Used by run_cluster_bench.sh; bounded by --seconds, kcat is stopped by
its pid (also on SIGTERM).

Usage: cluster_watch.py --bootstrap HOST:PORT --topic T --seconds S --out FILE [--ready FILE]
"""
import argparse
import re
import signal
import subprocess
import sys
import threading
import time

HEAD = re.compile(rb'"device":"([^"]*)".*?"seq":(\d+).*?"received_us":(-?\d+)')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready", help="file created once kcat has its partitions (first EOF)")
    a = ap.parse_args()
    if not 0 < a.seconds <= 3600:
        sys.exit("--seconds must be in (0, 3600]")
    # %p partition; the value last (it has no newline: the aggregator writes compact JSON).
    cmd = ["kcat", "-b", a.bootstrap, "-C", "-t", a.topic, "-o", "end", "-u",
           "-X", "isolation.level=read_committed", "-X", "fetch.wait.max.ms=10",
           "-f", "%p %s\n"]
    kcat = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(*_):
        if kcat.poll() is None:
            kcat.terminate()
    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    deadline = time.monotonic() + a.seconds
    n = 0
    ready_written = False
    # kcat reports "Reached end of topic ... at offset" on stderr once per partition: ready.
    def watch_stderr():
        nonlocal ready_written
        for line in kcat.stderr:
            if a.ready and not ready_written and b"Reached end" in line:
                open(a.ready, "w").close()
                ready_written = True
    threading.Thread(target=watch_stderr, daemon=True).start()
    timer = threading.Timer(a.seconds, stop)
    timer.daemon = True
    timer.start()
    with open(a.out, "w", buffering=1) as out:  # line by line: the script counts lines
        for line in kcat.stdout:
            t = time.time_ns() // 1000
            sp = line.find(b" ")
            m = HEAD.search(line, sp + 1, sp + 1 + 600)
            if not m:
                continue
            readings = line.count(b'"ts":')
            out.write(f"{t} {int(line[:sp])} {m.group(1).decode()} {m.group(2).decode()} "
                      f"{m.group(3).decode()} {readings}\n")
            n += 1
            if time.monotonic() > deadline:
                break
    stop()
    kcat.wait(timeout=10)
    print(f"cluster_watch: {n} messages from {a.topic}", file=sys.stderr)


if __name__ == "__main__":
    main()
