#pragma once

// SIGHUP reload of the agent (which settings apply live, which need a restart) and the typed
// outbox and drain settings it re-reads from the config.

#include <string>
#include <string_view>
#include <vector>

#include "outpost/agent/outbox.h"
#include "outpost/agent/outbox_sender.h"
#include "outpost/agent/uplink.h"
#include "outpost/common/config.h"

namespace outpost::agent {

OutboxOptions outboxOptionsFrom(const config::Config& cfg);
DrainSettings drainSettingsFrom(const config::Config& cfg);

// Keys of `schema` whose values differ between `a` and `b` (a table array counts as one key).
std::vector<std::string> changedSettings(const config::Schema& schema, const config::Config& a,
                                         const config::Config& b);

// True for the settings SIGHUP applies to the running agent: the rows marked live() in the
// settings tables (agent_config.cc, inputs_config.cc; the SIGHUP column of
// docs/configuration.md). The inputs are applied by reloadInputs(), the rest by applyReload().
// Every other change is logged as needing a restart (and is not applied).
bool isReloadable(std::string_view key);

// SIGHUP: applies the reloadable settings that differ between `applied` (the last config
// applied) and `next` to the outbox, the uplink and the log level, logging each; logs every other
// setting that differs between `started` (the config the process started with) and `next` as
// needing a restart, and returns those keys. `next` must be validated already.
std::vector<std::string> applyReload(const config::Schema& schema, const config::Config& started,
                                     const config::Config& applied, const config::Config& next,
                                     Outbox& outbox, Uplink& uplink);

}  // namespace outpost::agent
