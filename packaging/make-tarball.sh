#!/usr/bin/env bash
# Self-contained tarball of outpost-agent for boards without apt:
#   outpost-agent-VERSION-linux-ARCH/
#     bin/outpost-agent        wrapper: runs libexec/outpost-agent with the bundled libraries
#     libexec/outpost-agent    the stripped binary
#     libexec/outpost-agent-zmq.so  its ZeroMQ uplink module (loaded only with uplink.transport = "zmq")
#     libexec/outpost-agent-mqtt-tls.so  its MQTT TLS client (loaded only for an ssl:// broker)
#     lib/                     every shared library it needs except glibc's (libc, libm, ld.so, ...)
#     etc/agent.toml           default configuration
#     outpost-agent.service    systemd unit for /opt/outpost-agent
#     install.sh               installs it (see its --help)
# The board needs only glibc >= the build's (2.36, Debian 12 / Raspberry Pi OS bookworm).
#
# Usage: packaging/make-tarball.sh BUILD_DIR DEB_ARCH   (BUILD_DIR holds agent/outpost-agent and
#        agent/outpost-agent-zmq.so, agent/outpost-agent-mqtt-tls.so)
# Prints the path of the tarball it wrote (BUILD_DIR/packages/...tar.gz).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: make-tarball.sh BUILD_DIR DEB_ARCH}" && pwd)
arch=${2:?usage: make-tarball.sh BUILD_DIR DEB_ARCH}
case "$arch" in
  amd64) triple=x86_64-linux-gnu ;;
  arm64) triple=aarch64-linux-gnu ;;
  armhf) triple=arm-linux-gnueabihf ;;
  *) echo "make-tarball: unknown architecture $arch" >&2; exit 2 ;;
esac
version=$(sed -n 's/^project(outpost VERSION \([0-9.]*\).*/\1/p' "$here/../CMakeLists.txt")
name=outpost-agent-$version-linux-$arch
out=$build/packages
stage=$out/$name
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/libexec" "$stage/lib" "$stage/etc"

strip_tool=strip
[[ $arch == amd64 ]] || strip_tool=$triple-strip
"$strip_tool" --strip-unneeded -o "$stage/libexec/outpost-agent" "$build/agent/outpost-agent"
for m in outpost-agent-zmq.so outpost-agent-mqtt-tls.so; do
  "$strip_tool" --strip-unneeded -o "$stage/libexec/$m" "$build/agent/$m"
  chmod 0644 "$stage/libexec/$m"
done

# Bundle the NEEDED closure, glibc excepted (it must match the board's kernel interface and is
# always present). readelf reads ELF files of any architecture.
is_glibc() {
  case "$1" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|ld-linux*) return 0 ;;
  esac
  return 1
}
# A sysroot build (scripts/cross-sysroot.sh) takes the libraries from its sysroot.
sysroot=$(sed -n 's/^OUTPOST_SYSROOT:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
find_lib() {
  local d
  for d in $sysroot/usr/lib/$triple $sysroot/lib/$triple; do
    [[ -e "$d/$1" ]] && { readlink -f "$d/$1"; return 0; }
  done
  return 1
}
declare -A seen=()
queue=("$stage/libexec/outpost-agent" "$stage/libexec/outpost-agent-zmq.so"
  "$stage/libexec/outpost-agent-mqtt-tls.so")
while ((${#queue[@]})); do
  f=${queue[0]}
  queue=("${queue[@]:1}")
  while read -r lib; do
    is_glibc "$lib" && continue
    [[ -n "${seen[$lib]:-}" ]] && continue
    seen[$lib]=1
    src=$(find_lib "$lib") || { echo "make-tarball: $lib not found for $arch" >&2; exit 1; }
    cp "$src" "$stage/lib/$lib"
    chmod 0644 "$stage/lib/$lib"
    queue+=("$stage/lib/$lib")
  done < <(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done

cat >"$stage/bin/outpost-agent" <<'SH'
#!/bin/sh
# Runs the bundled outpost-agent with the bundled libraries.
here=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$here/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/../libexec/outpost-agent" "$@"
SH
chmod 0755 "$stage/bin/outpost-agent"
install -m 0644 "$here/config/agent.toml" "$stage/etc/agent.toml"
sed 's#^ExecStart=/usr/bin/outpost-agent#ExecStart=/opt/outpost-agent/bin/outpost-agent#;
     s#^Documentation=.*#Documentation=file:///opt/outpost-agent/README.md#' \
  "$here/systemd/outpost-agent.service" >"$stage/outpost-agent.service"
install -m 0755 "$here/tarball-install.sh" "$stage/install.sh"
install -m 0644 "$here/../docs/packaging.md" "$stage/README.md"

tar -C "$out" --owner=0 --group=0 --numeric-owner -czf "$out/$name.tar.gz" "$name"
rm -rf "$stage"
echo "$out/$name.tar.gz"
