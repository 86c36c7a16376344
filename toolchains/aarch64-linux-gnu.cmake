# Cross build for 64-bit ARM (Raspberry Pi 3/4/5 with a 64-bit OS) on Debian 12 multiarch:
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install crossbuild-essential-arm64 qemu-user <lib>-dev:arm64 ...
#   (all of it: scripts/cross-deps.sh arm64)
#   cmake --preset cross-aarch64     (or: scripts/cross-build.sh arm64)
# Test binaries run here through qemu-user (CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(OUTPOST_CROSS_TRIPLE aarch64-linux-gnu)
set(OUTPOST_QEMU_ARCH aarch64)
set(OUTPOST_DEB_ARCH arm64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
