#pragma once

#include "outpost/agent/outbox.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

// Gauges and counters read from the outbox at scrape time: rows, bytes, oldest age, limit,
// dropped readings by reason, write errors. `outbox` and `clock` must outlive `registry`'s
// scrapes. Thread-safe (Outbox::stats()).
void registerOutboxMetrics(metrics::Registry& registry, const Outbox& outbox, const Clock& clock);

}  // namespace outpost::agent
