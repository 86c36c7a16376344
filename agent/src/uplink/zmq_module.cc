// outpost-agent-zmq.so: the C entry point of the agent's ZeroMQ module (zmq_module.h). Nothing
// thrown here leaves the module: every function catches and returns the message as text.

#include "outpost/agent/zmq_module.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <string>

#include "outpost/agent/zmq_uplink.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {
namespace {

void setError(char* err, size_t size, const std::string& msg) {
  if (err && size > 0) std::snprintf(err, size, "%s", msg.c_str());
}

// The executable's logger and metrics switch: this module's copies of spdlog's registry (if
// spdlog is ever linked statically) and of metrics::detail::collecting are not the executable's.
void adoptHost(const OutpostZmqHost* host) {
  if (host->logger && *host->logger && spdlog::default_logger_raw() != host->logger->get()) {
    spdlog::set_default_logger(*host->logger);
  }
  metrics::setCollectionEnabled(host->metrics_collect);
}

// Owns the counter references the uplink keeps.
class ModuleUplink final : public Uplink {
 public:
  ModuleUplink(ZmqUplinkOptions options, const OutpostZmqHost& host)
      : metrics_{*host.connects, *host.heartbeat_timeouts, *host.disconnects,
                 *host.handshake_failures, *host.bad_acks},
        uplink_(std::move(options), *host.sender, metrics_, *host.clock) {}
  void start() override { uplink_.start(); }
  void notify() override { uplink_.notify(); }
  void stop() override { uplink_.stop(); }
  bool connected() const override { return uplink_.connected(); }
  size_t inFlight() const override { return uplink_.inFlight(); }

 private:
  ZmqUplinkMetrics metrics_;
  ZmqUplink uplink_;
};

int check(const OutpostZmqSettings* settings, char* err, size_t err_size) {
  try {
    auto o = zmqUplinkOptionsFrom(*settings);
    if (!o) {
      setError(err, err_size, o.error().message());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    setError(err, err_size, e.what());
    return 1;
  }
}

Uplink* create(const OutpostZmqSettings* settings, const OutpostZmqHost* host, char* err,
               size_t err_size) {
  try {
    adoptHost(host);
    auto o = zmqUplinkOptionsFrom(*settings);
    if (!o) {
      setError(err, err_size, o.error().message());
      return nullptr;
    }
    return new ModuleUplink(std::move(*o), *host);
  } catch (const std::exception& e) {
    setError(err, err_size, e.what());
    return nullptr;
  }
}

void destroy(Uplink* uplink) { delete uplink; }

int keygen(const char* dir, const char* name, char* public_key, size_t public_key_size, char* err,
           size_t err_size) {
  try {
    auto pub = writeCurveKeyFiles(dir, name);
    if (!pub) {
      setError(err, err_size, pub.error().message());
      return 1;
    }
    setError(public_key, public_key_size, *pub);
    return 0;
  } catch (const std::exception& e) {
    setError(err, err_size, e.what());
    return 1;
  }
}

constexpr OutpostZmqModule kModule{OUTPOST_ZMQ_MODULE_ABI,
                                   sizeof(OutpostZmqSettings),
                                   sizeof(OutpostZmqHost),
                                   &check,
                                   &create,
                                   &destroy,
                                   &keygen};

}  // namespace
}  // namespace outpost::agent

extern "C" __attribute__((visibility("default"))) const OutpostZmqModule* outpost_agent_zmq_module(
    void) {
  return &outpost::agent::kModule;
}
