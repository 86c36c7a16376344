# shellcheck shell=bash
# The target-architecture library packages the agent and aggregator build against, sourced by
# scripts/cross-deps.sh (multiarch: installed as PKG:ARCH) and scripts/cross-sysroot.sh (unpacked
# into a sysroot). One list, so the two ways of cross-building cannot drift apart.
CROSS_TARGET_PACKAGES=(
  libpaho-mqttpp-dev libpaho-mqtt-dev libflatbuffers-dev libsqlite3-dev
  libspdlog-dev libfmt-dev libtomlplusplus-dev libcpp-httplib-dev
  cppzmq-dev libzmq3-dev librdkafka-dev
  libevent-dev  # the agent's /metrics server (issue 17)
  libmodbus-dev  # the agent's Modbus source
  libssl-dev  # the agent's MQTT TLS module (Paho's SSL build, linked statically, needs OpenSSL)
)
