# Shared part of the Debian multiarch toolchains: target libraries live in /usr/lib/<triple>,
# headers in /usr/include, host tools (flatc) in /usr/bin.
set(CMAKE_C_COMPILER ${OUTPOST_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${OUTPOST_CROSS_TRIPLE}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${OUTPOST_CROSS_TRIPLE})
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${OUTPOST_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
find_program(OUTPOST_QEMU NAMES qemu-${CMAKE_SYSTEM_PROCESSOR}-static qemu-${CMAKE_SYSTEM_PROCESSOR})
if(OUTPOST_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${OUTPOST_QEMU} -L /usr/${OUTPOST_CROSS_TRIPLE})
endif()

