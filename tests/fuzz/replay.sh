#!/usr/bin/env bash
# ctest wrapper: runs a replay binary (replay_main.cc) over a committed corpus and, if the
# directory exists, the saved crash reproducers (tests/fuzz/regressions/<name>/).
#   replay.sh <replay-binary> <corpus-dir> <regressions-dir>
set -euo pipefail
dirs=("$2")
[[ -d "$3" ]] && dirs+=("$3")
exec "$1" "${dirs[@]}"
