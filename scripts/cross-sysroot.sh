#!/usr/bin/env bash
# Builds a target sysroot (the :ARCH -dev packages and their dependencies, unpacked) for a cross build
# when Debian multiarch cannot be used on this machine. Multiarch needs every `Multi-Arch: same`
# library at the SAME version in amd64 and ARCH; when the mirror's bookworm-security index for ARCH
# cannot be fetched (seen for armhf: "File has unexpected size"), the :ARCH libraries that have
# security updates (libssl3, liblzma5, libsasl2-2, ...) can only be had at their bookworm versions,
# which cannot co-install with the updated amd64 ones, so `scripts/cross-deps.sh ARCH` fails.
#
# This script uses a private apt state (nothing of the machine's apt or dpkg state changes):
#   - sources: bookworm and bookworm-updates only (signed Release files, verified with the machine's
#     Debian archive keyring); bookworm-security is left out on purpose;
#   - `apt-get install --download-only` resolves the dependency closure against an empty dpkg
#     status and downloads the .debs (hash-checked against the signed indexes);
#   - each .deb is unpacked into SYSROOT (`dpkg-deb -x`; no maintainer script runs), and a small
#     dpkg database (SYSROOT/var/lib/dpkg: status, *.list, *.shlibs, *.symbols) is written so that
#     dpkg-shlibdeps can compute the packages' Depends (cpack sets DPKG_ADMINDIR to it; the
#     *.list paths carry the SYSROOT prefix, since that is where dpkg-shlibdeps finds the libraries).
# The libraries are the bookworm (point release) versions: fine to compile, link and test against
# (same sonames and ABI); the target device installs the current security versions through the
# package's Depends.
#
# Usage: scripts/cross-sysroot.sh ARCH [SYSROOT]   (default SYSROOT: sysroot-ARCH in the worktree)
# Then:  cmake --preset cross-armhf -DOUTPOST_SYSROOT=$PWD/build-sysroot-armhf  (scripts/cross-build.sh
#        armhf does this by itself when the :armhf packages are not installed).
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH=${1:-}
case "$ARCH" in
  arm64) TRIPLE=aarch64-linux-gnu ;;
  armhf) TRIPLE=arm-linux-gnueabihf ;;
  *) echo "usage: $0 arm64|armhf [SYSROOT]" >&2; exit 2 ;;
esac
SYSROOT=$(realpath -m "${2:-build-sysroot-$ARCH}")
# The list of scripts/cross-deps.sh (scripts/cross-packages.sh), plus the header-only libcli11-dev and catch2 (in multiarch
# the build machine's copies serve), and the C and C++ runtime development files (in multiarch
# they come from the cross toolchain; with --sysroot the compiler takes them from the sysroot).
source scripts/cross-packages.sh
PACKAGES=("${CROSS_TARGET_PACKAGES[@]}" libc6-dev libstdc++-12-dev libcli11-dev catch2)
stamp_file=$SYSROOT/.outpost-sysroot
want="$ARCH ${PACKAGES[*]}"
if [[ -f $stamp_file && "$(cat "$stamp_file")" == "$want" ]]; then
  echo "cross-sysroot($ARCH): $SYSROOT is up to date"
  exit 0
fi

apt_dir=$SYSROOT.apt
rm -rf "$SYSROOT" "$apt_dir"
mkdir -p "$apt_dir"/{lists/partial,archives/partial,etc/apt.conf.d,etc/preferences.d} "$SYSROOT"
: >"$apt_dir/status"
cat >"$apt_dir/etc/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
EOF
APT=(apt-get -q -o Acquire::Retries=3
     -o Dir::Etc="$apt_dir/etc" -o Dir::Etc::SourceList="$apt_dir/etc/sources.list"
     -o Dir::Etc::SourceParts=/nonexistent -o Dir::Etc::Parts="$apt_dir/etc/apt.conf.d"
     -o Dir::Etc::PreferencesParts="$apt_dir/etc/preferences.d"
     -o Dir::State="$apt_dir" -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::status="$apt_dir/status"
     -o Dir::Cache="$apt_dir" -o Dir::Cache::Archives="$apt_dir/archives"
     -o APT::Architecture="$ARCH" -o APT::Architectures="$ARCH"
     -o APT::Install-Recommends=false -o Debug::NoLocking=true)
echo "cross-sysroot($ARCH): apt-get update (private state in $apt_dir)"
"${APT[@]}" update >"$apt_dir/update.log" 2>&1 || { cat "$apt_dir/update.log" >&2; exit 1; }
echo "cross-sysroot($ARCH): downloading ${PACKAGES[*]} and their dependencies"
"${APT[@]}" install -y --download-only "${PACKAGES[@]}" >"$apt_dir/install.log" 2>&1 || {
  tail -30 "$apt_dir/install.log" >&2; exit 1; }

admin=$SYSROOT/var/lib/dpkg
mkdir -p "$admin/info" "$admin/updates"
: >"$admin/status"
printf '%s\n' "$ARCH" >"$admin/arch"
echo 1 >"$admin/info/format"  # multiarch info db: Multi-Arch: same files are named pkg:arch.*
n=0
for deb in "$apt_dir"/archives/*.deb; do
  dpkg-deb -x "$deb" "$SYSROOT"
  pkg=$(dpkg-deb -f "$deb" Package)
  a=$(dpkg-deb -f "$deb" Architecture)
  key=$pkg  # dpkg qualifies the info files of Multi-Arch: same packages only
  [[ "$(dpkg-deb -f "$deb" Multi-Arch)" == same ]] && key=$pkg:$a
  ctl=$(mktemp -d)
  dpkg-deb -e "$deb" "$ctl"
  for f in shlibs symbols; do [[ -f $ctl/$f ]] && cp "$ctl/$f" "$admin/info/$key.$f"; done
  # File list, with the sysroot prefix: dpkg-shlibdeps finds a library as SYSROOT/usr/lib/... (cpack
  # passes the sysroot's library directories with -l) and asks `dpkg-query --search` for that path.
  dpkg-deb --fsys-tarfile "$deb" | tar -t | sed "s|^\./|$SYSROOT/|; s|/\$||" >"$admin/info/$key.list"
  { grep -v '^Status:' "$ctl/control" | sed '/^$/d' | sed '1a Status: install ok installed'; echo; } \
    >>"$admin/status"
  rm -rf "$ctl"
  n=$((n + 1))
done
# The linker (--sysroot) follows the sysroot's ld.so.conf to find libraries' own dependencies.
mkdir -p "$SYSROOT/etc"
echo 'include /etc/ld.so.conf.d/*.conf' >"$SYSROOT/etc/ld.so.conf"
# Absolute symlinks (e.g. /usr/lib/<triple>/libfoo.so -> /lib/<triple>/libfoo.so.1) would point
# into the build machine: make them relative to the sysroot.
while IFS= read -r -d '' link; do
  target=$(readlink "$link")
  [[ $target == /* ]] || continue
  ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$SYSROOT$target")" "$link"
done < <(find "$SYSROOT" -type l -print0)
echo "$want" >"$stamp_file"
echo "cross-sysroot($ARCH): $n packages unpacked into $SYSROOT ($(du -sh "$SYSROOT" | cut -f1))"
