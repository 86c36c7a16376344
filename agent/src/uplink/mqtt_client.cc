// makeMqttClient(): the built-in non-SSL Paho client, or the TLS module's (mqtt_client.h).
#include "outpost/agent/mqtt_client.h"

#include <spdlog/spdlog.h>

#include <mutex>

#include "outpost/agent/agent_module.h"
#include "outpost/agent/mqtt_tls_module.h"

namespace outpost::agent {
namespace {

constexpr const char* kModuleFile = "outpost-agent-mqtt-tls.so";

struct Loaded {
  const OutpostMqttTlsModule* module = nullptr;
  std::string error;
};

Loaded loadOnce() {
  const LoadedModule lm = loadAgentModule(kModuleFile, OUTPOST_MQTT_TLS_MODULE_SYMBOL);
  if (!lm.entry) return {nullptr, lm.error};
  using EntryFn = const OutpostMqttTlsModule* (*)();
  const OutpostMqttTlsModule* m = reinterpret_cast<EntryFn>(lm.entry)();
  if (!m || m->abi_version != OUTPOST_MQTT_TLS_MODULE_ABI ||
      m->options_size != sizeof(MqttClientOptions) || m->callbacks_size != sizeof(MqttCallbacks) ||
      m->connect_options_size != sizeof(MqttConnectOptions)) {
    return {nullptr, lm.path + ": built for another outpost-agent version (module ABI " +
                         std::to_string(m ? m->abi_version : 0) + ", this agent " +
                         std::to_string(OUTPOST_MQTT_TLS_MODULE_ABI) + ")"};
  }
  spdlog::debug("MQTT TLS module loaded from {}", lm.path);
  return {m, ""};
}

const OutpostMqttTlsModule* tlsModule(std::string& error) {
  static std::once_flag once;
  static Loaded loaded;
  std::call_once(once, [] { loaded = loadOnce(); });
  error = loaded.error;
  return loaded.module;
}

}  // namespace

Result<std::unique_ptr<MqttClient>> makeMqttClient(const MqttClientOptions& options, bool tls,
                                                   MqttCallbacks callbacks) {
  if (!tls) return makePahoClient(options, std::move(callbacks));
  std::string why;
  const OutpostMqttTlsModule* m = tlsModule(why);
  if (!m) {
    return fail(ErrorCode::kNotFound,
                "MQTT broker \"" + options.broker + "\" (TLS) needs the module " + kModuleFile +
                    " of the outpost-agent package: " + why +
                    ". Install the complete package or set OUTPOST_AGENT_MODULE_DIR to its "
                    "directory");
  }
  char err[1024] = "";
  MqttClient* c = m->create(&options, &callbacks, err, sizeof err);
  if (!c) return fail(ErrorCode::kInvalidArgument, err);
  return std::unique_ptr<MqttClient>(c);
}

}  // namespace outpost::agent
