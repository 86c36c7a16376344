#!/usr/bin/env bash
# Builds Outpost and runs every test (unit, integration against real Mosquitto and the Kafka-protocol
# development broker, fuzz corpus replay, benchmark smoke tests, the quick torture suite), the
# amd64 packages and their checks, and the aarch64 cross build with its tests under qemu-user.
# On a fresh Debian 12 machine as root it first installs what is missing (scripts/deps.sh).
#
# Usage: scripts/test.sh [-L LABEL] [-R REGEX]     (extra arguments are passed to ctest)
# Env:   BUILD_DIR (default build), FUZZ_BUILD_DIR (default build-fuzz), JOBS (default nproc),
#        OUTPOST_FUZZ=1 to add the clang/libFuzzer build and its short fuzz runs,
#        OUTPOST_SKIP_CROSS=1 to skip the aarch64 cross build and its tests under qemu,
#        OUTPOST_CROSS_ARCHES="arm64 armhf" to add the armhf cross build (default: arm64; opt-in,
#        it costs ~10 more minutes on a cold cache, see docs/packaging.md),
#        OUTPOST_SKIP_PACKAGING=1 to skip the .deb/tarball build and checks,
#        OUTPOST_SKIP_REALKAFKA=1 to leave out the tests on a real Apache Kafka broker (label
#        realkafka; they need Java 17 and Maven Central, see docs/kafka.md).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

BUILD_DIR=${BUILD_DIR:-build}
FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
start=$SECONDS

# The aarch64 dependencies (apt, mostly download) install while the native build compiles: the
# cross compiler and qemu-user on this machine, the target libraries in a sysroot
# (scripts/cross-sysroot.sh, build-sysroot-arm64/). Not multiarch: Debian 12's libevent-dev
# conflicts with its own other-architecture copy, so libevent-dev:arm64 cannot be installed beside
# the native libevent-dev the agent builds with (docs/packaging.md).
cross_deps_pid=""
CROSS_ARCHES=${OUTPOST_CROSS_ARCHES:-arm64}
if [[ "${OUTPOST_SKIP_CROSS:-0}" != 1 && $# -eq 0 ]]; then
  mkdir -p "$BUILD_DIR"
  (for arch in $CROSS_ARCHES; do
    ./scripts/cross-deps.sh "$arch" --host-only && ./scripts/cross-sysroot.sh "$arch" || exit 1
  done) >"$BUILD_DIR/cross-deps.log" 2>&1 &
  cross_deps_pid=$!
fi

# The real Kafka broker's jars (label realkafka, docs/kafka.md) are fetched by Maven into
# ~/.cache/outpost while the native build compiles; a cached version returns at once.
kafka_fetch_pid=""
realkafka_args=()
if [[ "${OUTPOST_SKIP_REALKAFKA:-0}" == 1 ]]; then
  echo "== OUTPOST_SKIP_REALKAFKA=1: the realkafka tests are left out"
  realkafka_args=(-LE realkafka)
else
  mkdir -p "$BUILD_DIR"
  ./scripts/kafka.sh fetch >"$BUILD_DIR/kafka-fetch.log" 2>&1 &
  kafka_fetch_pid=$!
fi

# A Release build (hardening, NDEBUG) at -O1 and without debug info: the suite checks behaviour,
# not speed (figures come from tests/bench with release builds), and on CI's 2 cores -O1 compiles
# about a quarter faster than -O2 (measured on sqlite_outbox.cc 12.3 -> 8.7 s, cmd_replay.cc
# 23.2 -> 18.2 s), and debug info would cost a third more. _FORTIFY_SOURCE works from -O1, so the
# packaged binaries' hardening checks still apply. Builds for debugging use the presets.
OPT_FLAGS="-O1 -DNDEBUG"
echo "== configure + build ($BUILD_DIR)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="$OPT_FLAGS" \
  -DCMAKE_C_FLAGS_RELEASE="$OPT_FLAGS" -DOUTPOST_BUILD_TESTS=ON >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"

echo "== docs/configuration.md is generated from the settings tables"
./scripts/gen-config-docs.sh "$BUILD_DIR" --check

status=0
# The aarch64 cross build (issue 6) runs beside the native tests: its compile needs the CPU the
# mostly-waiting integration tests leave idle, and the suite must stay under 15 minutes on 2 cores.
cross_pid=""
CROSS_LOG="$BUILD_DIR/cross-aarch64.log"
if [[ "${OUTPOST_SKIP_CROSS:-0}" != 1 && $# -eq 0 ]]; then
  # ARM breakage is caught on every change: the aarch64 agent and its unit tests (with common's)
  # under qemu-user, and the emulated agent end to end against this build's aggregator. The arm64
  # aggregator and armhf are built by scripts/cross-build.sh only (docs/packaging.md says why).
  echo "== aarch64 cross build + unit tests and end-to-end under qemu-user (background; log $CROSS_LOG)"
  cross_start=$SECONDS
  if [[ -n "$cross_deps_pid" ]] && ! wait "$cross_deps_pid"; then
    cat "$BUILD_DIR/cross-deps.log" >&2
    echo "== aarch64 dependencies failed (log above)" >&2
    status=1
  fi
  for arch in $CROSS_ARCHES; do
    OUTPOST_HOST_BUILD_DIR="$BUILD_DIR" OUTPOST_CROSS_OPT_FLAGS="$OPT_FLAGS" \
      ./scripts/cross-build.sh "$arch" --sysroot --agent-only --e2e || exit 1
  done >"$CROSS_LOG" 2>&1 &
  cross_pid=$!
fi

if [[ -n "$kafka_fetch_pid" ]] && ! wait "$kafka_fetch_pid"; then
  cat "$BUILD_DIR/kafka-fetch.log" >&2
  echo "== fetching the Kafka broker failed (log above): the realkafka tests will fail" >&2
  status=1
fi

# clang's thread-safety analysis as errors over common, agent and aggregator (compile only, issue
# 14): beside ctest, like the cross build, on the CPU the waiting integration tests leave idle.
# One compile at a time (~95 s of CPU on an idle core) so that it never starves the tests.
tsa_pid=""
if [[ $# -eq 0 ]]; then
  echo "== clang -Wthread-safety -Werror (background; log $BUILD_DIR/thread-safety.out)"
  JOBS=1 nice -n 5 ./scripts/thread-safety.sh "$BUILD_DIR" >"$BUILD_DIR/thread-safety.out" 2>&1 &
  tsa_pid=$!
fi

echo "== ctest ($BUILD_DIR)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" "${realkafka_args[@]}" "$@" || status=1

# The reliability torture suite's quick pass (issue 16, docs/reliability.md): a few SIGKILLs of the
# agent, the aggregator and Mosquitto, a damaged store and a full disk, each ending in an exact
# accounting on Kafka (105 s measured on 2 shared cores).
if [[ $# -eq 0 ]]; then
  echo "== torture (quick)"
  t=$SECONDS
  ./scripts/torture.sh --quick --build-dir "$BUILD_DIR" || status=1
  echo "== torture: $((SECONDS - t)) s"
fi

# The libFuzzer build (clang 16) is opt-in (OUTPOST_FUZZ=1): the corpus replay
# (fuzz.*.corpus_replay) already runs in every build above; the instrumented 20 s runs cost ~2 min.
if [[ "${OUTPOST_FUZZ:-0}" == 1 && $# -eq 0 ]]; then
  echo "== libFuzzer build (clang 16, $FUZZ_BUILD_DIR)"
  ./scripts/deps.sh --with-fuzz
  cmake -S . -B "$FUZZ_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang-16 -DCMAKE_CXX_COMPILER=clang++-16 -DOUTPOST_BUILD_FUZZERS=ON >/dev/null
  fuzz_targets=(outpost_make_seed_corpus)
  for t in batch_decode line_parse modbus_decode capture_read history_query config_load \
           json_parse state_decode member_assignment; do
    fuzz_targets+=("outpost_${t}_fuzz" "outpost_${t}_replay")
  done
  cmake --build "$FUZZ_BUILD_DIR" -j "$JOBS" --target "${fuzz_targets[@]}"
  ctest --test-dir "$FUZZ_BUILD_DIR" --output-on-failure -L fuzz || status=1
fi

if [[ "${OUTPOST_SKIP_PACKAGING:-0}" != 1 && $# -eq 0 ]]; then
  echo "== packages (amd64): .deb + tarball, dpkg-deb, lintian, systemd-analyze, scratch-root install"
  t=$SECONDS
  ./scripts/package.sh "$BUILD_DIR" || status=1
  echo "== packages: $((SECONDS - t)) s"
fi

if [[ -n "$tsa_pid" ]]; then
  wait "$tsa_pid" || status=1
  cat "$BUILD_DIR/thread-safety.out"
fi

if [[ -n "$cross_pid" ]]; then
  if wait "$cross_pid"; then cross_ok=1; else cross_ok=0; status=1; fi
  tail -n 25 "$CROSS_LOG"
  echo "== cross ($CROSS_ARCHES): $([[ $cross_ok == 1 ]] && echo passed || echo FAILED) ($((SECONDS - cross_start)) s, beside ctest)"
fi

echo "== done in $((SECONDS - start)) s: $([[ $status == 0 ]] && echo PASSED || echo FAILED)"
exit $status
