# Debian's usual hardening (what `dpkg-buildflags` gives a package build with hardening=+all minus
# nothing): -D_FORTIFY_SOURCE=2, -fstack-protector-strong, -fstack-clash-protection, -Wl,-z,relro,
# -Wl,-z,now, and position-independent executables. On by default (OUTPOST_HARDENING) for every
# optimised build, so the binaries that scripts/test.sh tests are the ones scripts/package.sh packs;
# tests/packaging/check_packages.sh verifies the packaged binaries (readelf: PIE, BIND_NOW,
# GNU_RELRO, __stack_chk_fail, __*_chk).
#   - _FORTIFY_SOURCE needs optimisation, so it is left out of Debug builds (-O0 warns) and of
#     sanitizer and libFuzzer builds (ASan/TSan intercept the same functions; the two do not mix).
#   - the cost: a few bounds checks in libc calls; no measurable change in the benchmarks' hot loops,
#     which make no fortified calls.
option(OUTPOST_HARDENING "Debian hardening flags (FORTIFY, stack protector, RELRO/BIND_NOW, PIE)" ON)
if(NOT OUTPOST_HARDENING)
  return()
endif()

include(CheckCXXCompilerFlag)
include(CheckPIESupported)
check_pie_supported(LANGUAGES C CXX)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)  # with check_pie_supported: -fPIE and -pie on executables

add_compile_options(-fstack-protector-strong)
check_cxx_compiler_flag(-fstack-clash-protection OUTPOST_HAVE_STACK_CLASH_PROTECTION)
if(OUTPOST_HAVE_STACK_CLASH_PROTECTION)
  add_compile_options(-fstack-clash-protection)
endif()
if(NOT OUTPOST_SANITIZE AND NOT OUTPOST_BUILD_FUZZERS)
  # -U first: a toolchain that already defines it (Ubuntu's gcc) would otherwise warn on redefinition.
  add_compile_options("$<$<NOT:$<CONFIG:Debug>>:-U_FORTIFY_SOURCE;-D_FORTIFY_SOURCE=2>")
endif()
add_link_options(-Wl,-z,relro -Wl,-z,now)
