#!/usr/bin/env bash
# Installs the amd64 .deb packages for real, maintainer scripts included, without touching the
# machine's root file system:
#   - a private mount namespace (unshare -m, propagation private) holds a tmpfs, and on it an
#     overlayfs whose lower dir is / (read-only to the overlay) and whose upper dir is on the tmpfs;
#   - `chroot` into the merged dir runs dpkg there; every write (dpkg database, /etc/passwd,
#     /etc/outpost, /var/lib/outpost, /usr/bin) lands in the tmpfs and vanishes with the namespace;
#   - systemd is not running inside (/run/systemd/system does not exist in the merged dir), so the
#     maintainer scripts skip systemctl, as on a machine booted without systemd.
# Checked:
#   1. install (dpkg -i, stdin /dev/null so any prompt fails): the system user and group `outpost`
#      exist (system uid, no login shell, home /var/lib/outpost); /etc/outpost/*.toml are
#      root:outpost 0640 and recorded as conffiles; /var/lib/outpost is outpost:outpost 0750;
#   2. as the service user: `--version` runs, the config is readable, /var/lib/outpost writable;
#      another unprivileged user (nobody) cannot read the config;
#   3. upgrade to a higher version whose default config is unchanged, after the admin edited
#      /etc/outpost/agent.toml: the edit is kept, without a prompt and without any --force option
#      (dpkg keeps a modified conffile silently when the packaged default did not change);
#   4. upgrade to a higher version whose default config DID change: without a terminal plain
#      `dpkg -i` stops at the conffile question (it must ask; it fails on EOF), and with
#      --force-confold (what an unattended upgrade chooses) the edit is kept and the new default is
#      written beside it as agent.toml.dpkg-dist; the upgraded binary runs;
#   5. remove keeps config and state; purge of the agent deletes its outbox files
#      (outbox.db, -wal, -shm) but not the aggregator's; purging the aggregator too removes
#      /var/lib/outpost and /etc/outpost; the `outpost` user stays (docs/packaging.md).
# The "higher version" packages are the same packages rebuilt with dpkg-deb (Version bumped, and for
# 4. one line added to the default config), so the test costs seconds, not a CMake rebuild.
#
# Needs root (mount namespaces, overlayfs, chroot), adduser and the packages' Depends installed on
# the machine (scripts/deps.sh installs them).
# Usage: tests/packaging/maintscripts_test.sh PACKAGE_DIR VERSION
set -euo pipefail
pkgdir=$(cd "${1:?usage: maintscripts_test.sh PACKAGE_DIR VERSION}" && pwd)
version=${2:?usage: maintscripts_test.sh PACKAGE_DIR VERSION}
agent_deb=$pkgdir/outpost-agent_${version}_amd64.deb
agg_deb=$pkgdir/outpost-aggregator_${version}_amd64.deb
for d in "$agent_deb" "$agg_deb"; do [[ -f $d ]] || { echo "FAIL: $d missing" >&2; exit 1; }; done
if [[ $(id -u) != 0 ]]; then
  echo "FAIL: maintscripts_test.sh needs root (mount namespace, overlayfs, chroot)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/outpost_maint.XXXXXX")
trap 'rmdir "$work" 2>/dev/null || true' EXIT
# Everything below runs in the private mount namespace; its mounts disappear when it exits.
exec_inside() {
  unshare --mount --propagation private bash -s -- "$work" "$agent_deb" "$agg_deb" "$version"
}
exec_inside <<'INSIDE'
set -euo pipefail
work=$1 agent_deb=$2 agg_deb=$3 version=$4
fail() { echo "FAIL: $*" >&2; exit 1; }
checks=0
ok() { checks=$((checks + 1)); echo "ok: maintscripts: $*"; }

mount -t tmpfs -o mode=0755,size=512m outpost-maint "$work"
mkdir "$work/upper" "$work/ovlwork" "$work/root" "$work/debs"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/ovlwork" "$work/root"
R=$work/root
# Only what dpkg and the scripts need: /proc, and a /dev with the usual character devices.
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755 dev "$R/dev"
for n in null:1:3 zero:1:5 random:1:8 urandom:1:9; do
  IFS=: read -r name maj min <<<"$n"
  mknod -m 0666 "$R/dev/$name" c "$maj" "$min"
done
mount -t tmpfs -o mode=0755 run "$R/run"   # no /run/systemd/system: systemd is not running
mount -t tmpfs -o mode=1777 tmp "$R/tmp"
# Sanity: the overlay really is a copy (writing here must not reach /).
touch "$R/.outpost-overlay-probe"
[[ ! -e /.outpost-overlay-probe ]] || fail "the overlay wrote through to the real root"
rm "$R/.outpost-overlay-probe"

in_root() { chroot "$R" "$@"; }
# A machine where outpost was never installed: drop any trace the build machine may have.
for f in passwd group shadow gshadow; do
  [[ -f $R/etc/$f ]] && sed -i '/^outpost:/d' "$R/etc/$f"
done
for p in outpost-agent outpost-aggregator; do
  if in_root dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qv not-installed; then
    in_root dpkg --purge "$p" >/dev/null
  fi
done
rm -rf "$R/etc/outpost" "$R/var/lib/outpost"
# man-db's dpkg trigger rebuilds the whole manual index after every dpkg run that touches
# /usr/share/man (~5 s each here); it has nothing to do with our scripts. Without this flag file
# man-db skips it (its documented switch, debconf man-db/auto-update).
rm -f "$R/var/lib/man-db/auto-update"

dpkg_i() { in_root dpkg "$@" </dev/null; }
stat_of() { in_root stat -c '%U:%G %a' "$1"; }

# Packages with a higher version, rebuilt from the real ones with dpkg-deb.
rebuild() {  # rebuild DEB NEWVERSION OUT [extra config line]
  local deb=$1 newv=$2 out=$3 extra=${4:-} tree
  tree=$(mktemp -d "$work/debs/tree.XXXX")
  dpkg-deb -R "$deb" "$tree"
  sed -i "s/^Version: .*/Version: $newv/" "$tree/DEBIAN/control"
  if [[ -n $extra ]]; then
    printf '%s\n' "$extra" >>"$tree/etc/outpost/agent.toml"
    # DEBIAN/md5sums must describe the new default.
    (cd "$tree" && md5sum etc/outpost/agent.toml) >"$tree/md5.new"
    grep -v ' etc/outpost/agent.toml$' "$tree/DEBIAN/md5sums" >>"$tree/md5.new" || true
    mv "$tree/md5.new" "$tree/DEBIAN/md5sums"
  fi
  dpkg-deb --root-owner-group -Znone -b "$tree" "$out" >/dev/null  # -Znone: no time compressing
  rm -rf "$tree"
}
cp "$agent_deb" "$agg_deb" "$R/tmp/"
rebuild "$agent_deb" "$version+maint1" "$R/tmp/agent-up1.deb"
rebuild "$agent_deb" "$version+maint2" "$R/tmp/agent-up2.deb" '# a new default line (upgrade test)'
a=/tmp/$(basename "$agent_deb") g=/tmp/$(basename "$agg_deb")

# 1. install
dpkg_i -i "$a" "$g" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "dpkg -i"; }
for p in outpost-agent outpost-aggregator; do
  [[ $(in_root dpkg-query -W -f='${db:Status-Abbrev}' "$p") == "ii " ]] || fail "$p is not installed"
done
pw=$(in_root getent passwd outpost) || fail "postinst created no user outpost"
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
((uid < 1000)) || fail "outpost is not a system user (uid $uid)"
[[ $(in_root getent group outpost | cut -d: -f3) == "$gid" ]] || fail "no group outpost as primary group"
[[ $home == /var/lib/outpost ]] || fail "home of outpost is $home"
[[ $shell == */nologin || $shell == /bin/false ]] || fail "outpost has a login shell: $shell"
ok "system user outpost (uid $uid, gid $gid, home $home, shell $shell)"
for c in agent aggregator; do
  [[ $(stat_of /etc/outpost/$c.toml) == "root:outpost 640" ]] ||
    fail "/etc/outpost/$c.toml is $(stat_of /etc/outpost/$c.toml), want root:outpost 640"
  grep -q "^ /etc/outpost/$c.toml " <(in_root dpkg-query -W -f='${Conffiles}\n' outpost-$c) ||
    fail "/etc/outpost/$c.toml is not a conffile"
done
[[ $(stat_of /var/lib/outpost) == "outpost:outpost 750" ]] ||
  fail "/var/lib/outpost is $(stat_of /var/lib/outpost), want outpost:outpost 750"
ok "/etc/outpost/{agent,aggregator}.toml root:outpost 0640 conffiles; /var/lib/outpost outpost:outpost 0750"

# 2. as the service user
as_outpost() { chroot --userspec="$uid:$gid" --groups="$gid" "$R" "$@"; }
versions=""
for p in outpost-agent outpost-aggregator; do
  v=$(as_outpost /usr/bin/$p --version) || fail "$p --version as outpost"
  grep -q "$version" <<<"$v" || fail "$p --version as outpost says: $v"
  versions+="${versions:+, }$v"
done
as_outpost cat /etc/outpost/agent.toml >/dev/null || fail "outpost cannot read its config"
as_outpost touch /var/lib/outpost/outbox.db || fail "outpost cannot write /var/lib/outpost"
nobody=$(in_root id -u nobody)
if chroot --userspec="$nobody:$nobody" "$R" cat /etc/outpost/agent.toml >/dev/null 2>&1; then
  fail "user nobody can read /etc/outpost/agent.toml"
fi
ok "as outpost: --version ($versions), config readable, state dir writable; nobody cannot read the config"

# 3. upgrade, default config unchanged, admin's edit kept without a prompt
sed -i 's/^device_id *=.*/device_id = "maint-test-device"/' "$R/etc/outpost/agent.toml"
grep -q '^device_id = "maint-test-device"$' "$R/etc/outpost/agent.toml" ||
  fail "could not edit device_id in the default agent.toml"
edited=$(md5sum <"$R/etc/outpost/agent.toml")
dpkg_i -i /tmp/agent-up1.deb >"$work/up1.log" 2>&1 || { cat "$work/up1.log" >&2; fail "upgrade to $version+maint1"; }
[[ $(in_root dpkg-query -W -f='${Version}' outpost-agent) == "$version+maint1" ]] || fail "not upgraded"
[[ $(md5sum <"$R/etc/outpost/agent.toml") == "$edited" ]] || fail "upgrade replaced the edited agent.toml"
[[ ! -e $R/etc/outpost/agent.toml.dpkg-dist && ! -e $R/etc/outpost/agent.toml.dpkg-old ]] ||
  fail "upgrade with an unchanged default left .dpkg-dist/.dpkg-old files"
[[ $(stat_of /etc/outpost/agent.toml) == "root:outpost 640" ]] || fail "upgrade changed the config's mode"
ok "upgrade $version -> $version+maint1 (default unchanged): edited agent.toml kept, no prompt, no --force"

# 4. upgrade, default config changed
if dpkg_i -i /tmp/agent-up2.deb >"$work/up2.log" 2>&1; then
  fail "dpkg replaced or kept a locally edited conffile whose default changed without asking"
fi
grep -q 'agent.toml' "$work/up2.log" || { cat "$work/up2.log" >&2; fail "dpkg failed for another reason"; }
dpkg_i --force-confold -i /tmp/agent-up2.deb >"$work/up2b.log" 2>&1 ||
  { cat "$work/up2b.log" >&2; fail "upgrade to $version+maint2 with --force-confold"; }
[[ $(md5sum <"$R/etc/outpost/agent.toml") == "$edited" ]] || fail "--force-confold did not keep the edit"
grep -q '^# a new default line (upgrade test)$' "$R/etc/outpost/agent.toml.dpkg-dist" ||
  fail "the new default is not in agent.toml.dpkg-dist"
[[ $(in_root dpkg-query -W -f='${db:Status-Abbrev} ${Version}' outpost-agent) == "ii  $version+maint2" ]] ||
  fail "outpost-agent is not installed at $version+maint2 after the --force-confold upgrade"
as_outpost /usr/bin/outpost-agent --version >/dev/null || fail "upgraded agent does not run"
ok "upgrade -> $version+maint2 (default changed): plain dpkg -i asks (fails without a terminal); --force-confold keeps the edit, new default in agent.toml.dpkg-dist"

# 5. remove, purge
as_outpost touch /var/lib/outpost/outbox.db-wal /var/lib/outpost/outbox.db-shm /var/lib/outpost/dedup.db
dpkg_i -r outpost-agent >/dev/null 2>&1 || fail "dpkg -r outpost-agent"
[[ -f $R/etc/outpost/agent.toml && -f $R/var/lib/outpost/outbox.db && ! -e $R/usr/bin/outpost-agent ]] ||
  fail "remove (not purge) must keep config and state and delete the binary"
dpkg_i --purge outpost-agent >/dev/null 2>&1 || fail "dpkg --purge outpost-agent"
for f in outbox.db outbox.db-wal outbox.db-shm; do
  [[ ! -e $R/var/lib/outpost/$f ]] || fail "purge left /var/lib/outpost/$f"
done
[[ ! -e $R/etc/outpost/agent.toml && ! -e $R/etc/outpost/agent.toml.dpkg-dist ]] ||
  fail "purge left /etc/outpost/agent.toml*"
[[ -f $R/var/lib/outpost/dedup.db && -f $R/etc/outpost/aggregator.toml ]] ||
  fail "purging the agent removed the aggregator's state or config"
dpkg_i --purge outpost-aggregator >/dev/null 2>&1 || fail "dpkg --purge outpost-aggregator"
[[ ! -e $R/var/lib/outpost && ! -e $R/etc/outpost ]] || fail "purge of both left /var/lib/outpost or /etc/outpost"
in_root getent passwd outpost >/dev/null || fail "purge removed the outpost user (documented: it stays)"
ok "remove keeps config+state; purge deletes each program's state files, then the directories; user outpost stays"
echo "maintscripts: $checks passed, 0 failed"
INSIDE
