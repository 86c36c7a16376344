#include "outpost/agent/zmq_module_loader.h"

#include <spdlog/spdlog.h>

#include <mutex>

#include "outpost/agent/agent_config.h"
#include "outpost/agent/agent_module.h"
#include "outpost/agent/config_reload.h"
#include "outpost/agent/outbox_sender.h"
#include "outpost/agent/zmq_module.h"

namespace outpost::agent {
namespace {

constexpr const char* kModuleFile = "outpost-agent-zmq.so";

struct Loaded {
  const OutpostZmqModule* module = nullptr;
  std::string error;
};

Loaded loadOnce() {
  const LoadedModule lm = loadAgentModule(kModuleFile, OUTPOST_ZMQ_MODULE_SYMBOL);
  if (!lm.entry) return {nullptr, lm.error};
  using EntryFn = const OutpostZmqModule* (*)();
  const OutpostZmqModule* m = reinterpret_cast<EntryFn>(lm.entry)();
  if (!m) return {nullptr, lm.path + ": not an outpost ZeroMQ module"};
  if (m->abi_version != OUTPOST_ZMQ_MODULE_ABI || m->settings_size != sizeof(OutpostZmqSettings) ||
      m->host_size != sizeof(OutpostZmqHost)) {
    return {nullptr, lm.path + ": built for another outpost-agent version (module ABI " +
                         std::to_string(m->abi_version) + ", this agent " +
                         std::to_string(OUTPOST_ZMQ_MODULE_ABI) + ")"};
  }
  spdlog::debug("ZeroMQ module loaded from {}", lm.path);
  return {m, ""};
}

Result<const OutpostZmqModule*> loadFor(const std::string& why) {
  static std::once_flag once;
  static Loaded loaded;
  std::call_once(once, [] { loaded = loadOnce(); });
  if (loaded.module) return loaded.module;
  return fail(ErrorCode::kNotFound,
              why + " needs the ZeroMQ module " + kModuleFile +
                  " of the outpost-agent package: " + loaded.error +
                  ". Install the complete package, set OUTPOST_AGENT_MODULE_DIR to its directory, "
                  "or use uplink.transport = \"mqtt\"");
}

const char* const kTransportWhy = "uplink.transport = \"zmq\"";

// The settings as the module wants them; `c` points into `typed` and `device_id`.
struct Settings {
  ZmqUplinkSettings typed;
  std::string device_id;
  OutpostZmqSettings c{};
  Settings(const config::Config& cfg, const std::string& device)
      : typed(readAgentSettings(cfg).zmq), device_id(device) {
    c.endpoint = typed.endpoint.c_str();
    c.device_id = device_id.c_str();
    c.server_public_key_file = typed.server_public_key_file.c_str();
    c.key_file = typed.key_file.c_str();
    c.max_inflight = static_cast<uint64_t>(typed.max_inflight);
    c.heartbeat_ms = typed.heartbeat_ms;
    c.heartbeat_liveness = typed.heartbeat_liveness;
    c.reconnect_min_ms = typed.reconnect_min_ms;
    c.reconnect_max_ms = typed.reconnect_max_ms;
  }
};

// The executable's half of the ZeroMQ uplink: the OutboxSender (shared with MQTT), the metrics,
// and the module's transport object, destroyed before the sender it drives.
class ZmqModuleUplink final : public Uplink {
 public:
  ZmqModuleUplink(const OutpostZmqModule& module, const Settings& settings, SenderOptions so,
                  Outbox& outbox, metrics::Registry& reg, const Clock& clock)
      : module_(module),
        sender_(outbox, so, reg, clock),
        connects_(reg.counter("outpost_agent_zmq_connects_total",
                              "ZeroMQ sessions established (first reply from the aggregator)")),
        heartbeat_timeouts_(reg.counter("outpost_agent_zmq_heartbeat_timeouts_total",
                                        "Times the aggregator stayed silent for `liveness` "
                                        "heartbeat intervals (socket dropped and remade)")),
        disconnects_(reg.counter("outpost_agent_zmq_disconnects_total",
                                 "TCP disconnects seen on the ZeroMQ socket (socket remade)")),
        handshake_failures_(reg.counter("outpost_agent_zmq_handshake_failures_total",
                                        "CURVE handshakes that failed (wrong server key, or our "
                                        "key is not on the aggregator's allow-list)")),
        bad_acks_(reg.counter("outpost_agent_bad_acks_total",
                              "Ack messages that failed verification or named another epoch")),
        logger_(spdlog::default_logger()) {
    const OutpostZmqHost host{&sender_,
                              &clock,
                              &connects_,
                              &heartbeat_timeouts_,
                              &disconnects_,
                              &handshake_failures_,
                              &bad_acks_,
                              &logger_,
                              metrics::collectionEnabled()};
    char err[1024] = "";
    uplink_ = module_.create(&settings.c, &host, err, sizeof err);
    if (!uplink_) throw config::ConfigError(err);
    reg.gaugeFunction("outpost_agent_zmq_connected", "1 while the aggregator answers over ZeroMQ",
                      [this] { return connected() ? 1.0 : 0.0; });
  }
  ~ZmqModuleUplink() override {
    if (uplink_) module_.destroy(uplink_);  // stops its thread before sender_ goes
  }

  void start() override { uplink_->start(); }
  void notify() override { uplink_->notify(); }
  void stop() override { uplink_->stop(); }
  void setDrain(const DrainSettings& drain) override { sender_.setDrain(drain); }
  bool connected() const override { return uplink_->connected(); }
  size_t inFlight() const override { return sender_.inFlight(); }

 private:
  const OutpostZmqModule& module_;
  OutboxSender sender_;
  metrics::Counter& connects_;
  metrics::Counter& heartbeat_timeouts_;
  metrics::Counter& disconnects_;
  metrics::Counter& handshake_failures_;
  metrics::Counter& bad_acks_;
  std::shared_ptr<spdlog::logger> logger_;
  Uplink* uplink_ = nullptr;  // owned; freed by module_.destroy
};

}  // namespace

Result<const OutpostZmqModule*> loadZmqModule() { return loadFor(kTransportWhy); }

void checkZmqUplinkConfig(const config::Config& cfg, const std::string& device_id) {
  auto m = loadFor(kTransportWhy);
  if (!m) throw config::ConfigError(m.error().message());
  const Settings s(cfg, device_id);
  char err[1024] = "";
  if ((*m)->check(&s.c, err, sizeof err) != 0) throw config::ConfigError(err);
}

std::unique_ptr<Uplink> makeZmqUplink(const config::Config& cfg, const std::string& device_id,
                                      Outbox& outbox, metrics::Registry& registry,
                                      const Clock& clock) {
  auto m = loadFor(kTransportWhy);
  if (!m) throw config::ConfigError(m.error().message());
  const Settings s(cfg, device_id);
  SenderOptions so;
  so.max_inflight = s.typed.max_inflight;
  so.ack_timeout_ms = s.typed.ack_timeout_ms;
  so.drain = readAgentSettings(cfg).drain;  // the same backlog order and rate as over MQTT
  return std::make_unique<ZmqModuleUplink>(**m, s, so, outbox, registry, clock);
}

Result<std::string> zmqKeygen(const std::string& dir, const std::string& name) {
  auto m = loadFor("outpost-agent keygen");
  if (!m) return std::unexpected(m.error());
  char pub[128] = "", err[1024] = "";
  if ((*m)->keygen(dir.c_str(), name.c_str(), pub, sizeof pub, err, sizeof err) != 0) {
    return fail(ErrorCode::kInvalidArgument, err);
  }
  return std::string(pub);
}

}  // namespace outpost::agent
