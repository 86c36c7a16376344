#!/usr/bin/env bash
# Cross-builds Outpost for ARM and tests it under qemu-user, on a Debian 12 amd64 machine.
#   1. installs what is missing (scripts/cross-deps.sh ARCH; needs root the first time); if the
#      :ARCH packages cannot be installed (multiarch version skew, see docs/packaging.md), or with
#      --sysroot, the target libraries come from a sysroot instead (scripts/cross-sysroot.sh ARCH
#      → build-sysroot-ARCH/, private apt state; the machine's dpkg state is not touched);
#   2. configures with the CMake preset (cross-aarch64 → build-aarch64, cross-armhf → build-armhf);
#   3. builds the agent, common's and the agent's unit tests, and for arm64 the aggregator;
#   4. runs those unit tests under qemu-user and checks the stripped agent is <= 3 MiB;
#   5. with --e2e: the emulated agent against the native aggregator (integration.qemu_agent;
#      needs the native build in $OUTPOST_HOST_BUILD_DIR, default build/);
#   6. with --package: the .deb packages and the agent tarball in <build>/packages/.
#
# Usage: scripts/cross-build.sh arm64|armhf [--agent-only] [--e2e] [--package] [--sysroot]
#   --agent-only  skip the aggregator (what scripts/test.sh builds, to save time)
#   --sysroot     take the target libraries from build-sysroot-ARCH/ rather than multiarch
# Env: JOBS (default nproc), OUTPOST_HOST_BUILD_DIR (default build)
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:-}
case "$arch" in
  arm64) preset=cross-aarch64 build=build-aarch64 ;;
  armhf) preset=cross-armhf build=build-armhf ;;
  *) echo "usage: $0 arm64|armhf [--agent-only] [--e2e] [--package] [--sysroot]" >&2; exit 2 ;;
esac
shift
agent_only=0 e2e=0 package=0 use_sysroot=0
for a in "$@"; do
  case "$a" in
    --sysroot) use_sysroot=1 ;;
    --agent-only) agent_only=1 ;;
    --e2e) e2e=1 ;;
    --package) package=1 ;;
    *) echo "cross-build: unknown option $a" >&2; exit 2 ;;
  esac
done
JOBS=${JOBS:-$(nproc)}
host_build=$(realpath -m "${OUTPOST_HOST_BUILD_DIR:-build}")
t0=$SECONDS
stamp() { echo "== cross-build($arch): $* [$((SECONDS - t0)) s]"; }

sysroot_arg=(-DOUTPOST_SYSROOT=)
if [[ $use_sysroot == 0 ]] && ! ./scripts/cross-deps.sh "$arch"; then
  echo "cross-build($arch): the :$arch packages cannot be installed here; using a sysroot instead" >&2
  use_sysroot=1
fi
if [[ $use_sysroot == 1 ]]; then
  ./scripts/cross-deps.sh "$arch" --host-only
  ./scripts/cross-sysroot.sh "$arch"
  sysroot_arg=(-DOUTPOST_SYSROOT="$PWD/build-sysroot-$arch")
fi
stamp "deps ok ($([[ $use_sysroot == 1 ]] && echo "sysroot build-sysroot-$arch" || echo multiarch))"

# Switching between multiarch and sysroot invalidates every cached library path: start afresh.
if [[ -f $build/CMakeCache.txt ]]; then
  cached=$(sed -n 's/^OUTPOST_SYSROOT:[A-Z]*=//p' "$build/CMakeCache.txt")
  if [[ "-DOUTPOST_SYSROOT=$cached" != "${sysroot_arg[0]}" ]]; then
    echo "cross-build($arch): $build was configured with OUTPOST_SYSROOT='$cached'; reconfiguring from scratch"
    rm -rf "$build"
  fi
fi
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# OUTPOST_CROSS_OPT_FLAGS (scripts/test.sh sets "-O1 -DNDEBUG"): the suite's quicker compile. Unset,
# the preset's release flags apply (the figures in docs/benchmarks.md are from those).
opt_args=()
if [[ -n ${OUTPOST_CROSS_OPT_FLAGS:-} ]]; then
  opt_args=(-DCMAKE_CXX_FLAGS_RELEASE="$OUTPOST_CROSS_OPT_FLAGS" -DCMAKE_C_FLAGS_RELEASE="$OUTPOST_CROSS_OPT_FLAGS")
else
  opt_args=(-UCMAKE_CXX_FLAGS_RELEASE -UCMAKE_C_FLAGS_RELEASE)
fi
cmake --preset "$preset" -DOUTPOST_BUILD_TESTS=ON -DOUTPOST_HOST_BUILD_DIR="$host_build" \
  "${sysroot_arg[@]}" "${launcher[@]}" "${opt_args[@]}" >/dev/null
targets=(outpost-agent outpost_common_tests outpost_agent_tests)
[[ $arch == arm64 && $agent_only == 0 ]] && targets+=(outpost-aggregator)
cmake --build "$build" -j "$JOBS" --target "${targets[@]}"
stamp "built ${targets[*]}"

# Unit tests of common and the agent under qemu-user: each test program once (one qemu start per
# program; `ctest -R '^unit\.(common|agent)\.'` runs the same cases one process each, ~4x slower).
case "$arch" in arm64) qemu=qemu-aarch64 ;; armhf) qemu=qemu-arm ;; esac
qemu_prefix=/
[[ $use_sysroot == 1 ]] && qemu_prefix=$PWD/build-sysroot-$arch
for t in outpost_common_tests outpost_agent_tests; do
  "$qemu" -L "$qemu_prefix" "$build/tests/unit/$t" || { echo "cross-build: $t failed under $qemu" >&2; exit 1; }
done
stamp "unit tests passed under qemu"
# The ZeroMQ module (outpost-agent-zmq.so, dlopened beside the executable) loads under qemu-user.
keys=$(mktemp -d)
"$qemu" -L "$qemu_prefix" "$build/agent/outpost-agent" keygen --out "$keys" --name qemu >/dev/null ||
  { rm -rf "$keys"; echo "cross-build: keygen (ZeroMQ module) failed under $qemu" >&2; exit 1; }
rm -rf "$keys"
stamp "ZeroMQ module loads under qemu"
# The MQTT TLS module (outpost-agent-mqtt-tls.so, dlopened for an ssl:// broker) loads under qemu-user.
"$qemu" -L "$qemu_prefix" "$build/agent/outpost-agent" --config packaging/config/agent.toml \
  --check-config --set uplink.mqtt.broker=ssl://127.0.0.1:8883 >/dev/null ||
  { echo "cross-build: the MQTT TLS module failed to load under $qemu" >&2; exit 1; }
stamp "MQTT TLS module loads under qemu"

# Size target (docs/benchmarks.md): the stripped agent, shared system libraries aside.
case "$arch" in arm64) strip_tool=aarch64-linux-gnu-strip ;; armhf) strip_tool=arm-linux-gnueabihf-strip ;; esac
"$strip_tool" -o "$build/outpost-agent.stripped" "$build/agent/outpost-agent"
size=$(stat -c %s "$build/outpost-agent.stripped")
echo "cross-build($arch): stripped outpost-agent is $size bytes (target <= 3145728)"
((size <= 3145728)) || { echo "cross-build: the stripped agent is above 3 MiB" >&2; exit 1; }

if [[ $e2e == 1 ]]; then
  for b in aggregator/outpost-aggregator tools/devkafka/outpost-devkafka; do
    [[ -x $host_build/$b ]] || { echo "cross-build: --e2e needs $host_build/$b (native build)" >&2; exit 1; }
  done
  ctest --test-dir "$build" --output-on-failure -R '^integration\.qemu_agent$'
  stamp "end-to-end under qemu passed"
fi

if [[ $package == 1 ]]; then
  if [[ $agent_only == 1 ]]; then
    echo "cross-build: --package needs the aggregator too; drop --agent-only" >&2
    exit 2
  fi
  ./scripts/package.sh "$build"
  stamp "packages in $build/packages"
fi
