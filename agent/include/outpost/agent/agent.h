#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "outpost/agent/agent_config.h"
#include "outpost/common/clock.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

class Outbox;
class InputSet;
class Uplink;

struct RunLimits {
  uint64_t max_readings = 0;       // stop producing after this many readings (0: no limit)
  bool exit_when_drained = false;  // after production stops, exit once the outbox is empty
};

// Checks what the settings table cannot (device id form, sensors); throws config::ConfigError.
// Has no side effects (opens no store).
void validateConfig(const config::Config& cfg);

// The agent: sources → batcher → outbox (pipeline thread = the caller of run()) and the uplink
// (its own thread). Built from a validated config.
class Agent {
 public:
  Agent(const config::Config& cfg, metrics::Registry& registry, const Clock& clock);
  ~Agent();

  // Runs until signals::stopRequested() (or the run limits say so); flushes the open batch into
  // the outbox before returning. Returns the process exit code.
  int run(const RunLimits& limits);

  Outbox& outbox() { return *outbox_; }
  // Where SIGHUP reads the new configuration from (main: the same file and --set overrides).
  // Without one, SIGHUP is logged and ignored.
  void setConfigLoader(std::function<config::Config()> loader);
  bool healthy(std::string& detail) const;
  // /readyz: why the agent cannot deliver now (empty: ready): uplink not connected, outbox over
  // 90% of the outbox byte limit in effect (outbox.max_bytes as last applied by SIGHUP).
  std::vector<std::string> notReadyReasons() const;

 private:
  void flush(int64_t mono_now);
  void reload();  // pipeline thread

  const config::Config cfg_;       // as started (restart-only settings)
  config::Config applied_ = cfg_;  // last configuration applied (reloadable settings)
  std::function<config::Config()> loader_;
  metrics::Registry& registry_;
  const Clock& clock_;
  std::string device_id_;
  UplinkTransport transport_ = UplinkTransport::kMqtt;  // restart-only: /healthz and /readyz name it
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<InputSet> source_;
  std::unique_ptr<Uplink> uplink_;
  struct Batching;
  std::unique_ptr<Batching> batching_;
};

}  // namespace outpost::agent
