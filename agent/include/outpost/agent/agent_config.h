#pragma once

// The settings of outpost-agent: one table per stage (settings.h) bound to the stage's options
// struct. The tables build the schema (validates agent.toml and --set overrides, renders the
// agent part of docs/configuration.md, says which settings SIGHUP applies) and read a validated
// config into AgentSettings. The inputs ([sources.*], [[sensors]]) are in inputs.h.

#include <cstddef>
#include <cstdint>
#include <string>

#include "outpost/agent/mqtt_uplink.h"
#include "outpost/agent/outbox.h"
#include "outpost/agent/outbox_sender.h"
#include "outpost/common/config.h"
#include "outpost/common/settings.h"

namespace outpost::agent {

enum class UplinkTransport { kMqtt, kZmq };
const config::EnumNames<UplinkTransport>& uplinkTransportNames();  // "mqtt", "zmq"

// [batch]
struct BatchSettings {
  size_t max_readings = 500;
  int64_t linger_us = 1000000;
};

// [uplink.zmq]: what the ZeroMQ module gets (zmq_module_loader.cc).
struct ZmqUplinkSettings {
  std::string endpoint;
  std::string server_public_key_file;
  std::string key_file;
  size_t max_inflight = 16;
  int64_t ack_timeout_ms = 10000;
  int64_t heartbeat_ms = 1000;
  int64_t heartbeat_liveness = 3;
  int64_t reconnect_min_ms = 500;
  int64_t reconnect_max_ms = 30000;
};

struct AgentSettings {
  std::string device_id;
  BatchSettings batch;
  OutboxOptions outbox;
  UplinkTransport transport = UplinkTransport::kMqtt;
  // uplink.mqtt.*, with device_id and drain filled in; `security` is not read here (it reads
  // files: mqttsec::load).
  MqttUplinkOptions mqtt;
  DrainSettings drain;  // [uplink.drain], used by both transports
  ZmqUplinkSettings zmq;
};

// The settings table of outpost-agent (every stage's rows, and the inputs').
const config::Schema& agentSchema();

// Typed view of a validated config (everything but the inputs: parseInputs()). Throws
// config::ConfigError naming the keys of an invalid combination (reconnect_max_ms below
// reconnect_min_ms). Reads no files.
AgentSettings readAgentSettings(const config::Config& cfg);

}  // namespace outpost::agent
