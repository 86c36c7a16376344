#pragma once

#include <memory>

#include "outpost/common/config.h"

namespace outpost::agent {

// The settings table of outpost-agent: validates agent.toml and --set overrides, and renders the
// agent part of docs/configuration.md.
const config::Schema& agentSchema();

}  // namespace outpost::agent
