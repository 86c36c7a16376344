#!/usr/bin/env bash
# ctest wrapper for fuzz targets (registered by tests/fuzz/CMakeLists.txt).
#
#   run_fuzz.sh replay <make_seed_corpus> <replay-binary> <work-dir> [extra corpus dirs...]
#       regenerates the seed corpus in <work-dir>/seed and replays it (plus any extra dirs
#       that exist, e.g. saved crash reproducers) through the plain replay driver.
#   run_fuzz.sh short <make_seed_corpus> <libfuzzer-binary> <work-dir> [libFuzzer flags...]
#       regenerates the seeds, copies them into a fresh <work-dir>/corpus and runs libFuzzer on
#       it; crash reproducers land in <work-dir>/artifacts/.
set -euo pipefail

mode=${1:?mode: replay|short}
seedgen=${2:?path to make_seed_corpus}
binary=${3:?path to the fuzz or replay binary}
work=${4:?work directory}
shift 4

rm -rf "$work/seed"
mkdir -p "$work"
"$seedgen" "$work/seed"

case "$mode" in
  replay)
    dirs=("$work/seed")
    for extra in "$@"; do
      [[ -e "$extra" ]] && dirs+=("$extra")
    done
    exec "$binary" "${dirs[@]}"
    ;;
  short)
    rm -rf "$work/corpus" "$work/artifacts"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp "$work/seed"/* "$work/corpus"/
    exec "$binary" "$work/corpus" -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$@"
    ;;
  *)
    echo "run_fuzz.sh: unknown mode '$mode'" >&2
    exit 2
    ;;
esac
