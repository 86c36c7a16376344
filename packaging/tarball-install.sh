#!/bin/sh
# Installs outpost-agent from this unpacked tarball, like the .deb does:
#   /opt/outpost-agent/        the program and its bundled libraries
#   /etc/outpost/agent.toml    the config (an existing one is kept; the new default goes next to it
#                              as agent.toml.dist)
#   /var/lib/outpost/          state (the SQLite outbox), owned by the system user "outpost"
#   /etc/systemd/system/outpost-agent.service
# It does not start the service: set device_id in /etc/outpost/agent.toml, then
#   systemctl enable --now outpost-agent
#
# Usage: sudo ./install.sh [--root DIR]
#   --root DIR  install below DIR (a scratch or image root); no user is created and systemd is not
#               told, so it needs no root rights.
set -eu
src=$(dirname "$(readlink -f "$0")")
root=
case "${1:-}" in
  --root) root=${2:?--root needs a directory} ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  "") ;;
  *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or with --root DIR)" >&2
  exit 1
fi

mkdir -p "$root/opt/outpost-agent" "$root/etc/outpost" "$root/etc/systemd/system" "$root/var/lib/outpost"
rm -rf "$root/opt/outpost-agent/bin" "$root/opt/outpost-agent/libexec" "$root/opt/outpost-agent/lib"
cp -R "$src/bin" "$src/libexec" "$src/lib" "$root/opt/outpost-agent/"
cp "$src/README.md" "$root/opt/outpost-agent/README.md"
if [ -e "$root/etc/outpost/agent.toml" ]; then
  cp "$src/etc/agent.toml" "$root/etc/outpost/agent.toml.dist"
  echo "install.sh: kept /etc/outpost/agent.toml; the new default is agent.toml.dist"
else
  cp "$src/etc/agent.toml" "$root/etc/outpost/agent.toml"
fi
cp "$src/outpost-agent.service" "$root/etc/systemd/system/outpost-agent.service"

if [ -z "$root" ]; then
  if ! getent passwd outpost >/dev/null; then
    if command -v adduser >/dev/null; then
      adduser --system --group --home /var/lib/outpost --no-create-home outpost >/dev/null
    else
      useradd --system --user-group --home-dir /var/lib/outpost --no-create-home \
        --shell /usr/sbin/nologin outpost
    fi
  fi
  chown outpost:outpost /var/lib/outpost
  chmod 0750 /var/lib/outpost
  chgrp outpost /etc/outpost/agent.toml
  chmod 0640 /etc/outpost/agent.toml
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl try-restart outpost-agent.service || true
  fi
fi
"$root/opt/outpost-agent/bin/outpost-agent" --version
echo "install.sh: installed in ${root:-/}opt/outpost-agent; edit /etc/outpost/agent.toml, then: systemctl enable --now outpost-agent"
