#include "outpost/agent/uplink_factory.h"

#include "outpost/agent/config_reload.h"
#include "outpost/agent/mqtt_client.h"
#include "outpost/agent/mqtt_uplink.h"
#include "outpost/agent/zmq_module_loader.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::agent {
namespace {

MqttUplinkOptions mqttOptionsFrom(const config::Config& cfg, const std::string& device_id) {
  MqttUplinkOptions mo;
  mo.broker = cfg.getString("uplink.mqtt.broker");
  mo.client_id = cfg.getString("uplink.mqtt.client_id");
  mo.device_id = device_id;
  mo.topic_prefix = cfg.getString("uplink.mqtt.topic_prefix");
  mo.max_inflight = static_cast<size_t>(cfg.getInt("uplink.mqtt.max_inflight"));
  mo.ack_timeout_ms = cfg.getInt("uplink.mqtt.ack_timeout_ms");
  mo.keepalive_s = static_cast<int>(cfg.getInt("uplink.mqtt.keepalive_s"));
  mo.reconnect_min_ms = cfg.getInt("uplink.mqtt.reconnect_min_ms");
  mo.reconnect_max_ms = std::max(mo.reconnect_min_ms, cfg.getInt("uplink.mqtt.reconnect_max_ms"));
  mo.drain = drainSettingsFrom(cfg);  // backlog order and rate after an outage (config_reload.h)
  auto sec = mqttsec::load(cfg, "uplink.mqtt.", mo.broker);
  if (!sec) throw config::ConfigError(sec.error().message());
  mo.security = std::move(*sec);
  return mo;
}

}  // namespace

void checkUplinkConfig(const config::Config& cfg) {
  const std::string device = cfg.getString("device_id");
  if (cfg.getString("uplink.transport") == "zmq") {
    checkZmqUplinkConfig(cfg, device);  // loads the ZeroMQ module (zmq_module_loader.h)
  } else {
    // The broker URI as Paho reads it and, for ssl://, the TLS module found and loadable
    // (mqtt_client.h). Creating a client opens no connection.
    const auto mo = mqttOptionsFrom(cfg, device);
    auto c = makeMqttClient({mo.broker, "outpost-agent-check", 1}, mo.security.tls, {});
    if (!c) throw config::ConfigError("uplink.mqtt.broker: " + c.error().message());
  }
}

std::unique_ptr<Uplink> makeUplink(const config::Config& cfg, const std::string& device_id,
                                   Outbox& outbox, metrics::Registry& registry,
                                   const Clock& clock) {
  if (cfg.getString("uplink.transport") == "zmq") {
    return makeZmqUplink(cfg, device_id, outbox, registry, clock);
  }
  return std::make_unique<MqttUplink>(mqttOptionsFrom(cfg, device_id), outbox, registry, clock);
}

}  // namespace outpost::agent
