// The entry point of outpost-agent-mqtt-tls.so (mqtt_tls_module.h).
#include "outpost/agent/mqtt_tls_module.h"

#include <cstdio>

#include "outpost/agent/mqtt_client.h"

namespace {

outpost::agent::MqttClient* create(const outpost::agent::MqttClientOptions* options,
                                   outpost::agent::MqttCallbacks* callbacks, char* err,
                                   size_t err_size) {
  try {
    auto c = outpost::agent::makePahoClient(*options, std::move(*callbacks));
    if (!c) {
      std::snprintf(err, err_size, "%s", c.error().message().c_str());
      return nullptr;
    }
    return c->release();
  } catch (const std::exception& e) {  // bad_alloc: nothing else throws here
    std::snprintf(err, err_size, "%s", e.what());
    return nullptr;
  }
}

const OutpostMqttTlsModule kModule = {
    OUTPOST_MQTT_TLS_MODULE_ABI,
    sizeof(outpost::agent::MqttClientOptions),
    sizeof(outpost::agent::MqttCallbacks),
    sizeof(outpost::agent::MqttConnectOptions),
    &create,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const OutpostMqttTlsModule*
outpost_agent_mqtt_tls_module(void) {
  return &kModule;
}
