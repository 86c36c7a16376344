# Shared part of the Debian multiarch toolchains: target libraries live in /usr/lib/<triple>,
# headers in /usr/include, host tools (flatc) in /usr/bin.
#
# -DOUTPOST_SYSROOT=DIR instead takes the target libraries from a sysroot made by
# scripts/cross-sysroot.sh (used when the :<arch> packages cannot be installed on this machine,
# see docs/packaging.md); the cross compiler and host tools stay the same.
set(CMAKE_C_COMPILER ${OUTPOST_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${OUTPOST_CROSS_TRIPLE}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${OUTPOST_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES OUTPOST_SYSROOT)
if(OUTPOST_SYSROOT)
  set(CMAKE_SYSROOT ${OUTPOST_SYSROOT})
  set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "${OUTPOST_SYSROOT}")
  set(ENV{PKG_CONFIG_LIBDIR}
      "${OUTPOST_SYSROOT}/usr/lib/${OUTPOST_CROSS_TRIPLE}/pkgconfig:${OUTPOST_SYSROOT}/usr/share/pkgconfig")
  set(_outpost_qemu_prefix ${OUTPOST_SYSROOT})
else()
  set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${OUTPOST_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
  set(_outpost_qemu_prefix /)
endif()
# Test programs run under qemu-user. `-L /`: the target's dynamic loader and libc are the ones of the
# multiarch libc6:<arch> package (/lib/ld-linux-*.so, /usr/lib/<triple>). Do NOT use
# `-L /usr/<triple>`: that mixes the cross toolchain's ld.so (libc6-<arch>-cross, 2.36-8cross1) with
# the multiarch libc.so.6 (2.36-9+deb12uN) found through /etc/ld.so.cache, and every
# pthread_create then spins forever (their private rtld structures differ). With a sysroot,
# `-L <sysroot>`: loader and libc both come from the sysroot's libc6:<arch>.
find_program(OUTPOST_QEMU NAMES qemu-${OUTPOST_QEMU_ARCH} qemu-${OUTPOST_QEMU_ARCH}-static)
if(OUTPOST_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${OUTPOST_QEMU} -L ${_outpost_qemu_prefix})
endif()
