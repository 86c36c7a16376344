#pragma once

#include <memory>
#include <string>

#include "outpost/agent/outbox.h"
#include "outpost/agent/uplink.h"
#include "outpost/common/clock.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

// Reads the uplink.* settings (uplink.transport picks MQTT or ZeroMQ), including key, certificate
// and password files, without connecting. Throws config::ConfigError naming the setting.
void checkUplinkConfig(const config::Config& cfg);

// The uplink uplink.transport names, built from its settings (throws config::ConfigError).
std::unique_ptr<Uplink> makeUplink(const config::Config& cfg, const std::string& device_id,
                                   Outbox& outbox, metrics::Registry& registry,
                                   const Clock& clock);

}  // namespace outpost::agent
