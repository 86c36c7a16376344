#pragma once

#include "outpost/common/config.h"

namespace outpost::aggregator {

// The settings table of outpost-aggregator: validates aggregator.toml and --set overrides, and
// renders the aggregator part of docs/configuration.md.
const config::Schema& aggregatorSchema();

}  // namespace outpost::aggregator
