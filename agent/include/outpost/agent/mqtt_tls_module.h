#pragma once

// The agent's MQTT TLS module (outpost-agent-mqtt-tls.so): the MqttClient of paho_client.cc built
// on Paho's SSL library (libpaho-mqtt3as, linked statically and kept inside the module) and
// OpenSSL. Kept out of the executable so that an agent whose brokers are all tcp:// / mqtt://
// never maps libssl and libcrypto (~2 MB resident, issue 17). makeMqttClient() (mqtt_client.h)
// loads it with dlopen on the first ssl:// or mqtts:// broker (agent_module.h).
//
// The boundary is one C function returning plain data. The client comes back as a pointer to the
// MqttClient interface (virtual calls, virtual destructor: free it with delete); no exception
// crosses it (errors come back as text in `err`). Module and executable come from the same build:
// abi_version and the struct sizes are checked on load.

#include <cstddef>
#include <cstdint>

namespace outpost::agent {
class MqttClient;
struct MqttClientOptions;
struct MqttCallbacks;
}  // namespace outpost::agent

extern "C" {

#define OUTPOST_MQTT_TLS_MODULE_ABI 1u
#define OUTPOST_MQTT_TLS_MODULE_SYMBOL "outpost_agent_mqtt_tls_module"

struct OutpostMqttTlsModule {
  uint32_t abi_version;          // OUTPOST_MQTT_TLS_MODULE_ABI
  uint32_t options_size;         // sizeof(MqttClientOptions)
  uint32_t callbacks_size;       // sizeof(MqttCallbacks)
  uint32_t connect_options_size; // sizeof(MqttConnectOptions)
  // A new client (callbacks moved from *callbacks); nullptr and a message on error.
  outpost::agent::MqttClient* (*create)(const outpost::agent::MqttClientOptions* options,
                                        outpost::agent::MqttCallbacks* callbacks, char* err,
                                        size_t err_size);
};

// The module's only exported symbol.
const OutpostMqttTlsModule* outpost_agent_mqtt_tls_module(void);

}  // extern "C"
