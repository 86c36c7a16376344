#!/usr/bin/env bash
# Installs what an ARM cross build of Outpost needs on a Debian 12 amd64 machine (Debian multiarch):
# the cross compiler (crossbuild-essential-ARCH), qemu-user to run the ARM test programs here, and
# the :ARCH -dev packages of the libraries Outpost links. Build tools that run on the build machine
# (flatc, cmake, the header-only catch2 and CLI11) are the native ones from scripts/deps.sh.
#
# Idempotent: the architecture is added and `apt-get update` runs only when something is missing.
# Changes the machine: `dpkg --add-architecture ARCH`, and apt may upgrade a few amd64 libraries
# (libssl3, liblzma5, ...) because a Multi-Arch: same package must have the same version in every
# architecture.
#
# Usage: scripts/cross-deps.sh arm64|armhf [--check] [--host-only]
#   --check      exit 1 if anything is missing
#   --host-only  only the build machine's packages (cross compiler, qemu): for a sysroot build
#                (scripts/cross-sysroot.sh), which takes the target libraries from elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH=${1:-}
case "$ARCH" in
  arm64) TRIPLE=aarch64-linux-gnu ;;
  armhf) TRIPLE=arm-linux-gnueabihf ;;
  *) echo "usage: $0 arm64|armhf [--check]" >&2; exit 2 ;;
esac
CHECK_ONLY=0 HOST_ONLY=0
for a in "${@:2}"; do
  case "$a" in
    --check) CHECK_ONLY=1 ;;
    --host-only) HOST_ONLY=1 ;;
    *) echo "cross-deps: unknown option $a" >&2; exit 2 ;;
  esac
done

# Native (build machine) packages.
HOST_PACKAGES=(crossbuild-essential-"$ARCH" qemu-user flatbuffers-compiler catch2 libcli11-dev
               cmake ninja-build pkg-config)
# Target packages. All are Multi-Arch: same, so they co-install with the amd64 ones. Not listed on
# purpose: flatbuffers-compiler (the build runs the host's flatc), catch2 (Multi-Arch: foreign,
# header-only: the amd64 package serves) and libcli11-dev (Architecture: all).
source scripts/cross-packages.sh
TARGET_PACKAGES=("${CROSS_TARGET_PACKAGES[@]}")

[[ $HOST_ONLY == 1 ]] && TARGET_PACKAGES=()

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${HOST_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${TARGET_PACKAGES[@]}"; do installed "$p:$ARCH" || missing+=("$p:$ARCH"); done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "cross-deps($ARCH): all $((${#HOST_PACKAGES[@]} + ${#TARGET_PACKAGES[@]})) packages present"
  exit 0
fi
if [[ $CHECK_ONLY == 1 ]]; then
  echo "cross-deps($ARCH): missing: ${missing[*]} (run scripts/cross-deps.sh $ARCH as root)" >&2
  exit 1
fi
if [[ "$(id -u)" -ne 0 ]]; then
  echo "cross-deps($ARCH): missing packages: ${missing[*]}" >&2
  echo "cross-deps($ARCH): run as root: scripts/cross-deps.sh $ARCH" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
if [[ $HOST_ONLY == 0 ]] && ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
  echo "cross-deps($ARCH): dpkg --add-architecture $ARCH"
  dpkg --add-architecture "$ARCH"
fi
echo "cross-deps($ARCH): installing ${missing[*]}"
# A failing index (a mirror mid-sync) is not fatal here: the simulated install below decides.
"${APT[@]}" update -qq || echo "cross-deps($ARCH): apt-get update reported errors; trying the install anyway" >&2
# Simulate first: never let apt remove a native package to make room for a foreign one.
sim=$("${APT[@]}" install -s --no-install-recommends "${missing[@]}" 2>&1) || {
  echo "$sim" | tail -20 >&2
  echo "cross-deps($ARCH): apt cannot install the packages above (an index out of date?)" >&2
  exit 1
}
if grep -q '^Remv' <<<"$sim"; then
  grep '^Remv' <<<"$sim" >&2
  echo "cross-deps($ARCH): refusing: apt would remove the packages above" >&2
  exit 1
fi
"${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}"
echo "cross-deps($ARCH): done"
