# Shared part of the Debian multiarch toolchains: target libraries live in /usr/lib/<triple>,
# headers in /usr/include, host tools (flatc) in /usr/bin.
set(CMAKE_C_COMPILER ${OUTPOST_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${OUTPOST_CROSS_TRIPLE}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${OUTPOST_CROSS_TRIPLE})
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${OUTPOST_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
# Test programs run under qemu-user. `-L /`: the target's dynamic loader and libc are the ones of the
# multiarch libc6:<arch> package (/lib/ld-linux-*.so, /usr/lib/<triple>). Do NOT use
# `-L /usr/<triple>`: that mixes the cross toolchain's ld.so (libc6-<arch>-cross, 2.36-8cross1) with
# the multiarch libc.so.6 (2.36-9+deb12uN) found through /etc/ld.so.cache, and every
# pthread_create then spins forever (their private rtld structures differ).
find_program(OUTPOST_QEMU NAMES qemu-${OUTPOST_QEMU_ARCH} qemu-${OUTPOST_QEMU_ARCH}-static)
if(OUTPOST_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${OUTPOST_QEMU} -L /)
endif()

