# Cross build for 32-bit ARM hard-float (Raspberry Pi OS 32-bit, ARMv7) on Debian 12 multiarch:
#   dpkg --add-architecture armhf && apt-get update
#   apt-get install crossbuild-essential-armhf qemu-user <lib>-dev:armhf ...
#   cmake -S . -B build-armhf --toolchain toolchains/arm-linux-gnueabihf.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(OUTPOST_CROSS_TRIPLE arm-linux-gnueabihf)
set(OUTPOST_QEMU_ARCH arm)
set(OUTPOST_DEB_ARCH armhf)
include(${CMAKE_CURRENT_LIST_DIR}/debian-multiarch.cmake)
