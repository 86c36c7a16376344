#!/usr/bin/env bash
# Builds the .deb packages (CPack) and the agent tarball from an already configured build directory,
# native (amd64) or cross (build-aarch64, build-armhf), then checks them
# (tests/packaging/check_packages.sh: dpkg-deb metadata and contents, lintian, systemd-analyze
# verify; for amd64 also an install into a scratch root).
#
# Usage: scripts/package.sh [BUILD_DIR] [--no-check]     (default BUILD_DIR: build)
# Output: BUILD_DIR/packages/outpost-{agent,aggregator}_VERSION_ARCH.deb,
#         BUILD_DIR/packages/outpost-agent-VERSION-linux-ARCH.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
check=1
[[ "${2:-}" == --no-check ]] && check=0
JOBS=${JOBS:-$(nproc)}

arch=$(sed -n 's/^set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "\(.*\)")$/\1/p' "$build/CPackConfig.cmake" 2>/dev/null)
[[ -n $arch ]] || { echo "package: $build is not configured (no CPackConfig.cmake)" >&2; exit 1; }
targets=(outpost-agent)
[[ $arch == amd64 || $arch == arm64 ]] && targets+=(outpost-aggregator)
cmake --build "$build" -j "$JOBS" --target "${targets[@]}"

rm -rf "$build/packages"
(cd "$build" && cpack --config CPackConfig.cmake -G DEB >/dev/null) || {
  echo "package: cpack failed; rerun: (cd $build && cpack --config CPackConfig.cmake --verbose)" >&2
  exit 1
}
packaging/make-tarball.sh "$build" "$arch" >/dev/null
ls -l "$build"/packages/*.deb "$build"/packages/*.tar.gz
if [[ $check == 1 ]]; then
  tests/packaging/check_packages.sh "$build" "$arch"
fi
