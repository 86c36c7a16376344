#include "outpost/agent/uplink_factory.h"

#include "outpost/agent/agent_config.h"
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
    (void)mqttOptionsFrom(settings, cfg, settings.device_id);
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
