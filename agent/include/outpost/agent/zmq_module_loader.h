#pragma once

// Loads the agent's ZeroMQ module (outpost-agent-zmq.so, zmq_module.h) on first use: only an agent
// with uplink.transport = "zmq" (or `outpost-agent keygen`) ever maps libzmq.
//
// Where: see agent_module.h. The module is never unloaded. Thread-safety: any thread.

#include <memory>
#include <string>

#include "outpost/agent/outbox.h"
#include "outpost/agent/uplink.h"
#include "outpost/common/clock.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"
#include "outpost/common/status.h"

struct OutpostZmqModule;

namespace outpost::agent {

// The module, or an error naming uplink.transport and the paths tried.
Result<const OutpostZmqModule*> loadZmqModule();

// Checks the uplink.zmq.* settings and key files. Throws config::ConfigError.
void checkZmqUplinkConfig(const config::Config& cfg, const std::string& device_id);

// The ZeroMQ uplink, sending through an OutboxSender of this executable (drain settings from
// uplink.drain.*). Throws config::ConfigError (bad settings, missing module).
std::unique_ptr<Uplink> makeZmqUplink(const config::Config& cfg, const std::string& device_id,
                                      Outbox& outbox, metrics::Registry& registry,
                                      const Clock& clock);

// outpost-agent keygen: DIR/NAME.key (0600) and DIR/NAME.pub; returns the public key (Z85).
Result<std::string> zmqKeygen(const std::string& dir, const std::string& name);

}  // namespace outpost::agent
