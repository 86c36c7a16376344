# Cross build for 32-bit ARM hard-float (Raspberry Pi OS 32-bit, ARMv7) on Debian 12 multiarch:
#   dpkg --add-architecture armhf && apt-get update
#   apt-get install crossbuild-essential-armhf qemu-user <lib>-dev:armhf ...
#   (all of it: scripts/cross-deps.sh armhf)
#   cmake --preset cross-armhf       (or: scripts/cross-build.sh armhf)
# Debian's armhf baseline is ARMv7-A + VFPv3-D16 + Thumb-2: Pi 2/3/4/5 and Zero 2 on a 32-bit OS;
# not the ARMv6 Pi 1 / Zero / Zero W (Raspberry Pi OS's own armhf is ARMv6, Debian's is not).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(OUTPOST_CROSS_TRIPLE arm-linux-gnueabihf)
set(OUTPOST_QEMU_ARCH arm)
set(OUTPOST_DEB_ARCH armhf)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
