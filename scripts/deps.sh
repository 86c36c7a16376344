#!/usr/bin/env bash
# Installs every Debian 12 package Outpost needs to build, test and run its demo.
# Idempotent: packages already present are not reinstalled; apt-get runs only when something is missing.
# Usage: scripts/deps.sh [--with-fuzz]
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git python3
  libpaho-mqttpp-dev libpaho-mqtt-dev mosquitto mosquitto-clients
  libflatbuffers-dev flatbuffers-compiler
  libsqlite3-dev sqlite3
  cppzmq-dev libzmq3-dev
  librdkafka-dev kcat
  catch2 libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev libcpp-httplib-dev
  curl procps iproute2
  iptables  # torture net-* scenarios: NFQUEUE rules feeding tests/torture/netem.py (no sch_netem here)
  openssl
  prometheus chromium nodejs
  wrk  # HTTP latency at a fixed request rate (tests/bench/run_latest_bench.sh)
  lintian file
  libevent-dev  # the agent's /metrics server (evhttp): unlike cpp-httplib it does not load OpenSSL
  adduser util-linux systemd  # packaging checks: the packages' Depends, unshare, systemd-analyze
  libmodbus-dev socat  # the agent's Modbus TCP/RTU source; socat makes the RTU test's pty pair
  openjdk-17-jre-headless maven  # the real Kafka broker (scripts/kafka.sh): Java 17 runs it, Maven fetches it
  clang-16  # the -Wthread-safety -Werror check of common, agent, aggregator (scripts/thread-safety.sh)
)
# clang 16's sanitizer/libFuzzer runtime: only for the opt-in libFuzzer build (docs/fuzzing.md).
[[ "${1:-}" == --with-fuzz ]] && PACKAGES+=(libclang-rt-16-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "deps: run as root (or install them with: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The mosquitto package may start a system broker; Outpost never relies on it (tests and the demo start
# their own on free loopback ports), so leave whatever the init system did alone.
echo "deps: done"
