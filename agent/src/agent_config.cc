#include "outpost/agent/agent_config.h"

#include "outpost/common/cli.h"

namespace outpost::agent {
namespace {

std::shared_ptr<const config::Schema> sensorSchema() {
  auto s = std::make_shared<config::Schema>("sensor");
  s->requiredString("name", "Sensor name, unique within the device (appears on Kafka)")
      .string("unit", "", "Unit of the values, e.g. \"degC\", \"%RH\", \"A\"")
      .string("source", "simulated", "Where readings come from; this build supports \"simulated\"")
      .real("rate_hz", 1.0, 0.001, 100000, "Readings per second")
      .oneOf("shape", "sine", {"sine", "square", "sawtooth", "random_walk", "constant", "counter"},
             "Simulated signal shape; \"counter\" emits 0, 1, 2, ... (used by tests)")
      .real("amplitude", 1.0, 0, 1e12, "Simulated signal amplitude (random_walk: step stddev)")
      .real("offset", 0.0, -1e12, 1e12, "Simulated signal offset")
      .real("period_s", 60.0, 0.001, 1e9, "Simulated signal period in seconds")
      .real("noise", 0.0, 0, 1e12, "Standard deviation of Gaussian noise added to the signal")
      .integer("seed", 1, 0, INT64_MAX, "Random seed of the simulated signal");
  return s;
}

config::Schema buildSchema() {
  config::Schema s("outpost-agent");
  s.string("device_id", "",
           "Identity of this device: 1..64 of [A-Za-z0-9._-]. Required (here or --device-id)");
  cli::addProcessSettings(s, "127.0.0.1:9101");
  s.integer("batch.max_readings", 500, 1, 100000, "Close a batch at this many readings")
      .integer("batch.linger_ms", 1000, 1, 3600000,
               "Close a non-empty batch this long after its first reading (bounds the readings "
               "held only in memory)")
      .string("outbox.path", "/var/lib/outpost/outbox.db", "SQLite outbox file")
      .integer("outbox.max_bytes", 256ll << 20, 65536, 1ll << 40,
               "Limit on stored batch bytes; when full the oldest batches are dropped (counted)")
      .oneOf("outbox.synchronous", "full", {"full", "normal"},
             "full: a batch is accepted only once on disk (survives power loss); normal: faster, "
             "survives a process crash but may lose the last batches on power loss")
      .oneOf("uplink.transport", "mqtt", {"mqtt"}, "Transport to the aggregator")
      .string("uplink.mqtt.broker", "tcp://127.0.0.1:1883", "MQTT broker URI (tcp://host:port)")
      .string("uplink.mqtt.client_id", "", "MQTT client id; empty: outpost-agent-<device_id>")
      .string("uplink.mqtt.topic_prefix", "outpost/v1", "Prefix of the batch/ack/status topics")
      .string("uplink.mqtt.username", "", "MQTT user name (empty: anonymous)")
      .string("uplink.mqtt.password", "", "MQTT password; never logged")
      .integer("uplink.mqtt.max_inflight", 16, 1, 1024,
               "Batches sent and not yet acknowledged, at most")
      .integer("uplink.mqtt.ack_timeout_ms", 10000, 100, 3600000,
               "Send a batch again if the aggregator has not acknowledged it within this time")
      .integer("uplink.mqtt.keepalive_s", 30, 2, 3600, "MQTT keep-alive interval")
      .integer("uplink.mqtt.reconnect_min_ms", 500, 10, 600000,
               "First reconnect delay; doubles up to reconnect_max_ms while the broker is down")
      .integer("uplink.mqtt.reconnect_max_ms", 30000, 10, 3600000, "Longest reconnect delay")
      .tableArray("sensors", sensorSchema(), "One entry per sensor of the device");
  return s;
}

}  // namespace

const config::Schema& agentSchema() {
  static const config::Schema schema = buildSchema();
  return schema;
}

}  // namespace outpost::agent
