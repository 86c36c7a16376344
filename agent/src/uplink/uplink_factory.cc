#include "outpost/agent/uplink_factory.h"

#include "outpost/agent/agent_config.h"
#include "outpost/agent/mqtt_client.h"
#include "outpost/agent/mqtt_uplink.h"
#include "outpost/agent/zmq_module_loader.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::agent {
namespace {

MqttUplinkOptions mqttOptionsFrom(const AgentSettings& settings, const config::Config& cfg,
                                  const std::string& device_id) {
  MqttUplinkOptions mo = settings.mqtt;  // with the drain order and rate (agent_config.h)
  mo.device_id = device_id;
  auto sec = mqttsec::load(cfg, "uplink.mqtt.", mo.broker);
  if (!sec) throw config::ConfigError(sec.error().message());
  mo.security = std::move(*sec);
  return mo;
}

}  // namespace

void checkUplinkConfig(const config::Config& cfg) {
  const AgentSettings settings = readAgentSettings(cfg);
  if (settings.transport == UplinkTransport::kZmq) {
    checkZmqUplinkConfig(cfg, settings.device_id);  // loads the module (zmq_module_loader.h)
  } else {
    // The broker URI as Paho reads it and, for ssl://, the TLS module found and loadable
    // (mqtt_client.h). Creating a client opens no connection.
    const auto mo = mqttOptionsFrom(settings, cfg, settings.device_id);
    auto c = makeMqttClient({mo.broker, "outpost-agent-check", 1}, mo.security.tls, {});
    if (!c) throw config::ConfigError("uplink.mqtt.broker: " + c.error().message());
  }
}

std::unique_ptr<Uplink> makeUplink(const config::Config& cfg, const std::string& device_id,
                                   Outbox& outbox, metrics::Registry& registry,
                                   const Clock& clock) {
  const AgentSettings settings = readAgentSettings(cfg);
  if (settings.transport == UplinkTransport::kZmq) {
    return makeZmqUplink(cfg, device_id, outbox, registry, clock);
  }
  return std::make_unique<MqttUplink>(mqttOptionsFrom(settings, cfg, device_id), outbox, registry,
                                      clock);
}

}  // namespace outpost::agent
