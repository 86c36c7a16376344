#!/usr/bin/env bash
# Issue 13: the shipped detector defaults on SKAB (real pump data), scored by the project's own
# scorer (`outpost-aggregator score`). Uses the dataset by path: $OUTPOST_SKAB_DIR, else
# /work/shared/datasets/skab, else ../shared/datasets/skab next to the repository. Without the
# dataset the test is SKIPPED (exit 77, ctest SKIP_RETURN_CODE), never passed silently.
#
# The floors below are regression guards at the figures reached (docs/detection.md, "SKAB"), not
# the issue's targets: NAB >= 35 (all) / >= 30 (held-out) are not reached yet; the anomaly-free
# target (<= 1 device alarm per normal hour) and the outlier target (F1 >= 0.65, FAR <= 15 %) are
# asserted as they are met.
set -euo pipefail
BIN=${1:?usage: skab_score_test.sh outpost-aggregator REPO_DIR}
REPO=${2:?usage: skab_score_test.sh outpost-aggregator REPO_DIR}
SKAB=""
for d in "${OUTPOST_SKAB_DIR:-}" /work/shared/datasets/skab "$REPO/../shared/datasets/skab"; do
  if [[ -n "$d" && -f "$d/data/anomaly-free/anomaly-free.csv" ]]; then SKAB=$d; break; fi
done
if [[ -z "$SKAB" ]]; then
  echo "SKIPPED: SKAB dataset not found (set OUTPOST_SKAB_DIR; looked in /work/shared/datasets/skab and $REPO/../shared/datasets/skab)"
  exit 77
fi
D=$SKAB/data
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN" score --ignore anomaly,changepoint "$D"/valve1/*.csv "$D"/valve2/*.csv "$D"/other/*.csv \
  "$D/anomaly-free/anomaly-free.csv" >"$WORK/all.md"
"$BIN" score --ignore anomaly,changepoint "$D"/valve2/*.csv "$D"/other/*.csv >"$WORK/heldout.md"
cat "$WORK/all.md"
python3 - "$WORK/all.md" "$WORK/heldout.md" <<'PY'
import sys
def rows(path):
    out = {}
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 15 and cells[1].isdigit():
            out[cells[0]] = cells
    return out
a, h = rows(sys.argv[1]), rows(sys.argv[2])
pct = lambda s: float(s.rstrip(" %"))
# columns: 0 files, 1 n, 2 hours, 3 alarms, 4 alarms/normal hour, 5 NAB std, 6 low FP, 7 low FN,
# 8 windows, 9 NAB raises only, 10 F1, 11 precision, 12 recall, 13 FAR, 14 MAR
labelled = {k: v for k, v in a.items() if k in ("valve1", "valve2", "other")}
assert sum(int(v[1]) for v in labelled.values()) == 34, "expected 34 labelled SKAB files"
assert a["all"][8].endswith("/ 129"), f"expected 129 changepoint windows: {a['all'][8]}"
checks = [
    ("all 34: NAB standard >= 28", float(a["all"][5]) >= 28.0),
    ("all 34: F1 >= 0.7", float(a["all"][10]) >= 0.7),
    ("all 34: FAR <= 15 %", pct(a["all"][13]) <= 15.0),
    ("held-out: NAB standard >= 21", float(h["all"][5]) >= 21.0),
    ("held-out: F1 >= 0.65", float(h["all"][10]) >= 0.65),
    ("anomaly-free: <= 1 device alarm per hour", float(a["anomaly-free"][4]) <= 1.0),
]
bad = [name for name, ok in checks if not ok]
for name, ok in checks:
    print(("ok   " if ok else "FAIL ") + name)
assert not bad, f"below the floor: {bad}"
print(f"held-out (valve2 + other): NAB {h['all'][5]}, F1 {h['all'][10]}, FAR {h['all'][13]}")
PY
echo "PASS: SKAB scores"
