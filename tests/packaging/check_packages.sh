#!/usr/bin/env bash
# Checks the .deb packages and the agent tarball that scripts/package.sh wrote for one architecture:
#   - dpkg-deb metadata (name, architecture, Depends from dpkg-shlibdeps + adduser, conffiles,
#     maintainer scripts) and contents (binary stripped, config, unit, man page, copyright);
#   - maintainer scripts parse (sh -n);
#   - systemd-analyze verify on both units;
#   - lintian, failing on any error or warning not overridden with a reason
#     (packaging/lintian/<package>, shipped in the package);
#   - hardening of the packaged binaries (readelf: PIE, GNU_RELRO, BIND_NOW, __stack_chk_fail,
#     __*_chk) and Maintainer;
#   - cross builds (arm64, armhf): the packaged binaries and the tarball's agent (with its bundled
#     libraries) print --version under qemu-user;
#   - amd64 only: the packages unpack into a scratch root with `dpkg --root` and the unpacked
#     binaries print --version; the maintainer scripts run for real (install, upgrade, purge) in a
#     throw-away overlay of / (tests/packaging/maintscripts_test.sh, needs root); the tarball
#     installs into a scratch root with its install.sh and the installed agent prints --version
#     with only its bundled libraries.
# Usage: tests/packaging/check_packages.sh BUILD_DIR DEB_ARCH
set -euo pipefail
build=$(cd "${1:?usage: check_packages.sh BUILD_DIR DEB_ARCH}" && pwd)
arch=${2:?usage: check_packages.sh BUILD_DIR DEB_ARCH}
src=$(cd "$(dirname "$0")/../.." && pwd)
pkgdir=$build/packages
work=$(mktemp -d "${TMPDIR:-/tmp}/outpost_pkg.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
checks=0
ok() { checks=$((checks + 1)); echo "ok: $*"; }

version=$(sed -n 's/^project(outpost VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
programs=(agent)
[[ $arch == amd64 || $arch == arm64 ]] && programs+=(aggregator)

for prog in "${programs[@]}"; do
  pkg=outpost-$prog
  deb=$pkgdir/${pkg}_${version}_${arch}.deb
  [[ -f $deb ]] || fail "$deb missing"
  field() { dpkg-deb -f "$deb" "$1"; }
  [[ $(field Package) == "$pkg" ]] || fail "$deb: Package is $(field Package)"
  [[ $(field Architecture) == "$arch" ]] || fail "$deb: Architecture is $(field Architecture)"
  [[ $(field Version) == "$version" ]] || fail "$deb: Version is $(field Version)"
  depends=$(field Depends)
  dep_names=" $(sed 's/ *([^)]*)//g; s/,/ /g' <<<"$depends") "
  needed=(adduser libc6 libstdc++6 libsqlite3-0 libspdlog1.10-fmt9 libfmt9)
  # The agent's libzmq5 comes from its ZeroMQ module (outpost-agent-zmq.so), not the executable;
  # its HTTP server is libevent's (libevent-2.1-7), the aggregator's cpp-httplib. Its MQTT is Paho C
  # (libpaho-mqtt1.3: the non-SSL library in the executable); libssl3 comes from its MQTT TLS
  # module (outpost-agent-mqtt-tls.so, Paho's SSL build linked in statically); no Paho C++.
  if [[ $prog == agent ]]; then
    needed+=(libpaho-mqtt1.3 libssl3 libzmq5 libevent-2.1-7)
    [[ $dep_names != *" libcpp-httplib"* ]] ||
      fail "$deb: the agent must not depend on cpp-httplib: $depends"
    [[ $dep_names != *" libpaho-mqttpp3"* ]] ||
      fail "$deb: the agent must not depend on Paho C++: $depends"
  else
    needed+=(librdkafka1 libpaho-mqttpp3-1 libcpp-httplib0.11)
  fi
  for d in "${needed[@]}"; do
    [[ $dep_names == *" $d "* ]] || fail "$deb: Depends lacks $d: $depends"
  done
  ok "$pkg: metadata ($arch, Depends: $depends)"

  dpkg-deb -e "$deb" "$work/$pkg.control"
  [[ $(cat "$work/$pkg.control/conffiles") == "/etc/outpost/$prog.toml" ]] ||
    fail "$deb: conffiles is $(cat "$work/$pkg.control/conffiles")"
  for s in postinst prerm postrm; do
    [[ -x $work/$pkg.control/$s ]] || fail "$deb: no executable $s"
    sh -n "$work/$pkg.control/$s" || fail "$deb: $s does not parse"
  done
  grep -q 'adduser --system' "$work/$pkg.control/postinst" || fail "$deb: postinst creates no system user"
  [[ $(field Maintainer) == "Outpost team <outpost@example.org>" ]] || fail "$deb: Maintainer is $(field Maintainer)"
  ok "$pkg: conffiles and maintainer scripts"

  dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' >"$work/$pkg.contents"
  for f in ./usr/bin/$pkg ./etc/outpost/$prog.toml ./lib/systemd/system/$pkg.service \
           ./usr/share/man/man1/$pkg.1.gz ./usr/share/doc/$pkg/copyright \
           ./usr/share/doc/$pkg/changelog.gz ./usr/share/lintian/overrides/$pkg; do
    grep -q " $f\$" "$work/$pkg.contents" || fail "$deb lacks $f"
  done
  grep -q '^-rwxr-xr-x root/root \./usr/bin/'"$pkg"'$' "$work/$pkg.contents" ||
    fail "$deb: /usr/bin/$pkg is not root-owned 0755"
  if grep -Ev '^[-dl]r[-w][-x]r-[-x]r-[-x] root/root ' "$work/$pkg.contents"; then
    fail "$deb: files above are not root-owned or world-writable"
  fi
  dpkg-deb -x "$deb" "$work/$pkg.x"
  file "$work/$pkg.x/usr/bin/$pkg" | grep -q ', stripped' || fail "$deb: binary not stripped"
  if [[ $prog == agent ]]; then
    # The ZeroMQ uplink is a module in <libdir>/outpost; the executable itself needs no libzmq.
    mod=$(grep -o ' \./usr/lib/\(.*/\)\?outpost/outpost-agent-zmq\.so$' "$work/$pkg.contents" | tr -d ' ') ||
      fail "$deb lacks the ZeroMQ module <libdir>/outpost/outpost-agent-zmq.so"
    file "$work/$pkg.x/$mod" | grep -q ', stripped' || fail "$deb: $mod not stripped"
    if readelf -d "$work/$pkg.x/usr/bin/$pkg" | grep -q 'NEEDED.*libzmq'; then
      fail "$deb: /usr/bin/$pkg links libzmq (it belongs in the module only)"
    fi
    readelf -d "$work/$pkg.x/$mod" | grep -q 'NEEDED.*libzmq' || fail "$deb: $mod does not link libzmq"
    ok "$pkg: ZeroMQ module ${mod#.}, executable without libzmq"
    # MQTT over TLS is a module too; the executable maps no SSL library.
    tls=$(grep -o ' \./usr/lib/\(.*/\)\?outpost/outpost-agent-mqtt-tls\.so$' "$work/$pkg.contents" | tr -d ' ') ||
      fail "$deb lacks the MQTT TLS module <libdir>/outpost/outpost-agent-mqtt-tls.so"
    file "$work/$pkg.x/$tls" | grep -q ', stripped' || fail "$deb: $tls not stripped"
    if readelf -d "$work/$pkg.x/usr/bin/$pkg" | grep -Eq 'NEEDED.*(libssl|libcrypto|paho-mqtt3as)'; then
      fail "$deb: /usr/bin/$pkg links an SSL library (it belongs in the TLS module only)"
    fi
    readelf -d "$work/$pkg.x/$tls" | grep -q 'NEEDED.*libssl' || fail "$deb: $tls does not link libssl"
    ok "$pkg: MQTT TLS module ${tls#.}, executable without libssl"
  fi
  ok "$pkg: contents ($(wc -l <"$work/$pkg.contents") entries, binary stripped)"

  # Debian hardening (cmake/Hardening.cmake), read from the packaged ELF file itself (readelf reads
  # every architecture): PIE, full RELRO (GNU_RELRO + BIND_NOW), stack protector, FORTIFY.
  # -fstack-clash-protection leaves no mark in the binary; the compile flags carry it.
  bin=$work/$pkg.x/usr/bin/$pkg
  readelf -hW "$bin" | grep -Eq 'Type: +DYN' || fail "$pkg: not a position-independent executable"
  dyn=$(readelf -dW "$bin")
  grep -Eq '\(FLAGS_1\).*\bPIE\b' <<<"$dyn" || fail "$pkg: FLAGS_1 lacks PIE"
  grep -Eq '\(FLAGS\).*\bBIND_NOW\b|\(FLAGS_1\).*\bNOW\b' <<<"$dyn" || fail "$pkg: no BIND_NOW (-z now)"
  readelf -lW "$bin" | grep -q 'GNU_RELRO' || fail "$pkg: no GNU_RELRO segment (-z relro)"
  syms=$(readelf --dyn-syms -W "$bin")
  grep -q ' __stack_chk_fail' <<<"$syms" || fail "$pkg: no __stack_chk_fail (stack protector)"
  chk=$(grep -Eo ' __[a-z0-9_]+_chk@' <<<"$syms" | tr -d ' @' | sort -u | tr '\n' ' ' || true)
  [[ -n $chk ]] || fail "$pkg: no fortified __*_chk function (-D_FORTIFY_SOURCE=2)"
  ok "$pkg: hardened (PIE, RELRO, BIND_NOW, __stack_chk_fail, fortified: $chk)"

  # systemd-analyze needs the ExecStart binary: verify the unit with ExecStart pointing into the
  # unpacked package (same file otherwise).
  unit=$work/$pkg.service
  sed "s#^ExecStart=/usr/bin/#ExecStart=$work/$pkg.x/usr/bin/#" \
    "$work/$pkg.x/lib/systemd/system/$pkg.service" >"$unit"
  if ! out=$(systemd-analyze verify --man=false "$unit" 2>&1) || [[ -n $out ]]; then
    echo "$out" >&2
    fail "systemd-analyze verify $pkg.service"
  fi
  ok "$pkg: systemd-analyze verify clean"

  lintian -I --fail-on error,warning --tag-display-limit 0 "$deb" >"$work/$pkg.lintian" 2>&1 || {
    cat "$work/$pkg.lintian" >&2
    fail "lintian $deb"
  }
  if grep -E '(hardening-|copyright-).*' "$work/$pkg.lintian"; then
    fail "lintian: hardening or copyright tags above"
  fi
  ok "$pkg: lintian clean (no error or warning; no hardening or copyright tag, info level included)"
done

if [[ $arch == amd64 ]]; then
  # Unpack into a scratch root with dpkg itself (files, permissions, conffile records). The
  # maintainer scripts need a chroot with adduser: maintscripts_test.sh below runs them.
  root=$work/root
  mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
  : >"$root/var/lib/dpkg/status"
  for prog in "${programs[@]}"; do
    dpkg --root="$root" --force-not-root --unpack "$pkgdir/outpost-${prog}_${version}_${arch}.deb" >/dev/null
    v=$("$root/usr/bin/outpost-$prog" --version)
    grep -q "$version" <<<"$v" || fail "installed outpost-$prog --version says: $v"
    if [[ $prog == agent ]]; then  # loads the module from its installed place
      "$root/usr/bin/outpost-agent" keygen --out "$work/keys" --name pkg-test >/dev/null ||
        fail "installed outpost-agent keygen (ZeroMQ module) failed"
      grep -q '^public_key' "$work/keys/pkg-test.pub" || fail "installed keygen wrote no public key"
      ok "outpost-agent: installed keygen loads the ZeroMQ module"
    fi
    grep -q "^/etc/outpost/$prog.toml" "$root/var/lib/dpkg/info/outpost-$prog.conffiles" ||
      fail "dpkg does not record /etc/outpost/$prog.toml as a conffile"
    ok "outpost-$prog: dpkg --root unpack, $root/usr/bin/outpost-$prog --version: $v"
  done
  [[ $(dpkg --root="$root" -l | grep -c '^iU  outpost-') == "${#programs[@]}" ]] ||
    fail "dpkg --root does not list the packages as unpacked"
  # The maintainer scripts, run for real by dpkg -i / upgrade / purge inside a throw-away overlay of
  # / in a private mount namespace (tests/packaging/maintscripts_test.sh).
  "$src/tests/packaging/maintscripts_test.sh" "$pkgdir" "$version" >"$work/maint.log" 2>&1 ||
    { cat "$work/maint.log" >&2; fail "maintainer scripts (tests/packaging/maintscripts_test.sh)"; }
  grep '^ok: ' "$work/maint.log" || true
  ok "maintainer scripts: $(tail -1 "$work/maint.log")"
fi

# Cross builds: the packaged binary runs under qemu-user (glibc from the target's libc6, found at
# / with multiarch or in the build's sysroot), and so does the tarball's with its bundled libraries.
qemu=""
case "$arch" in arm64) qemu=qemu-aarch64 ;; armhf) qemu=qemu-arm ;; esac
if [[ -n $qemu ]]; then
  command -v "$qemu" >/dev/null || fail "$qemu not installed (scripts/cross-deps.sh $arch --host-only)"
  qemu_prefix=$(sed -n 's/^OUTPOST_SYSROOT:[A-Z]*=//p' "$build/CMakeCache.txt")
  qemu_prefix=${qemu_prefix:-/}
  for prog in "${programs[@]}"; do
    v=$("$qemu" -L "$qemu_prefix" "$work/outpost-$prog.x/usr/bin/outpost-$prog" --version)
    grep -q "$version" <<<"$v" || fail "packaged outpost-$prog --version under $qemu says: $v"
    ok "outpost-$prog ($arch): the packaged binary runs under $qemu: $v"
  done
fi

tarball=$pkgdir/outpost-agent-$version-linux-$arch.tar.gz
[[ -f $tarball ]] || fail "$tarball missing"
tar -tzf "$tarball" >"$work/tar.list"
for f in bin/outpost-agent libexec/outpost-agent libexec/outpost-agent-zmq.so \
         libexec/outpost-agent-mqtt-tls.so etc/agent.toml outpost-agent.service install.sh; do
  grep -qx "outpost-agent-$version-linux-$arch/$f" "$work/tar.list" || fail "$tarball lacks $f"
done
tar -C "$work" -xzf "$tarball"
t=$work/outpost-agent-$version-linux-$arch
for lib in $(readelf -d "$t/libexec/outpost-agent" "$t/libexec/outpost-agent-zmq.so" \
               "$t/libexec/outpost-agent-mqtt-tls.so" |
             sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u); do
  case "$lib" in libc.so.*|libm.so.*|ld-linux*) continue ;; esac
  [[ -f $t/lib/$lib ]] || fail "$tarball does not bundle $lib"
done
ok "tarball: layout and bundled libraries ($(ls "$t/lib" | wc -l) libraries)"
if [[ -n $qemu ]]; then
  # The bundled libraries first (what bin/outpost-agent's LD_LIBRARY_PATH does on the board).
  v=$("$qemu" -L "$qemu_prefix" -E LD_LIBRARY_PATH="$t/lib" "$t/libexec/outpost-agent" --version)
  grep -q "$version" <<<"$v" || fail "tarball agent --version under $qemu says: $v"
  ok "tarball ($arch): libexec/outpost-agent with the bundled lib/ runs under $qemu: $v"
fi
if [[ $arch == amd64 ]]; then
  "$t/install.sh" --root "$work/troot" >"$work/tinstall.log" ||
    { cat "$work/tinstall.log" >&2; fail "tarball install.sh --root"; }
  # Only the bundled libraries and glibc: the library path of the system is not searched.
  v=$(env -i "$work/troot/opt/outpost-agent/bin/outpost-agent" --version)
  grep -q "$version" <<<"$v" || fail "tarball agent --version says: $v"
  LD_DEBUG=libs env -i LD_DEBUG=libs "$work/troot/opt/outpost-agent/bin/outpost-agent" --version 2>"$work/lddebug" >/dev/null
  if grep 'calling init:' "$work/lddebug" | grep -v "$work/troot/opt/outpost-agent/" |
     grep -Ev '/(libc|libm|libpthread|libdl|librt|libresolv)\.so|/ld-linux'; then
    fail "tarball agent loaded the libraries above from outside its bundle"
  fi
  env -i "$work/troot/opt/outpost-agent/bin/outpost-agent" keygen --out "$work/tkeys" --name t \
    >/dev/null || fail "tarball agent keygen (ZeroMQ module, bundled libzmq) failed"
  mkdir -p "$work/tunit"
  sed "s#^ExecStart=/opt/#ExecStart=$work/troot/opt/#" \
    "$work/troot/etc/systemd/system/outpost-agent.service" >"$work/tunit/outpost-agent.service"
  if ! out=$(systemd-analyze verify --man=false "$work/tunit/outpost-agent.service" 2>&1) ||
     [[ -n $out ]]; then
    echo "$out" >&2
    fail "systemd-analyze verify on the tarball's unit"
  fi
  ok "tarball: install.sh --root, installed agent --version: $v (bundled libraries only)"
fi
echo "packaging: $checks passed, 0 failed"
