#include "outpost/agent/outbox_metrics.h"

#include <algorithm>

#include "outpost/agent/outbox_salvage.h"

namespace outpost::agent {

void registerOutboxMetrics(metrics::Registry& reg, const Outbox& outbox, const Clock& clock) {
  const Outbox* box = &outbox;
  reg.gaugeFunction("outpost_agent_outbox_batches", "Batches waiting in the outbox (backlog rows)",
                    [box] { return static_cast<double>(box->stats().rows); });
  reg.gaugeFunction("outpost_agent_outbox_bytes", "Payload bytes waiting in the outbox",
                    [box] { return static_cast<double>(box->stats().bytes); });
  reg.gaugeFunction("outpost_agent_outbox_oldest_age_seconds",
                    "Age of the oldest batch waiting in the outbox (0 when empty)", [box, &clock] {
                      const auto oldest = box->stats().oldest_created_us;
                      return oldest == 0 ? 0.0 : std::max(0.0, (clock.nowUs() - oldest) / 1e6);
                    });
  reg.gaugeFunction("outpost_agent_outbox_limit_bytes", "outbox.max_bytes in effect",
                    [box] { return static_cast<double>(box->limits().max_bytes); });
  // Persisted across restarts, unlike the per-reason counters below (kept for dashboards and
  // scripts/demo.sh). A counter read from the store's monotonic total (promtool rejects a gauge
  // named _total); it does not reset when the process restarts, only when the store is re-created.
  reg.counterFunction("outpost_agent_dropped_readings_total",
                    "Readings dropped since the store was created (all reasons, persisted)",
                    [box] { return static_cast<double>(box->stats().dropped_readings_total); });
  for (size_t r = 0; r < static_cast<size_t>(DropReason::kCount); ++r) {
    reg.counterFunction(
        "outpost_agent_readings_dropped_total",
        "Readings dropped by this process, by reason (outbox_full: evicted by drop_oldest or "
        "refused by drop_newest; max_age; write_error: disk full/I/O error; too_large; upstream; "
        "store_damaged: waiting in a store found unreadable at start-up)",
        [box, r] { return static_cast<double>(box->stats().dropped_by_reason[r]); },
        {{"reason", dropReasonName(static_cast<DropReason>(r))}});
  }
  reg.counterFunction("outpost_agent_outbox_batches_evicted_total",
                      "Stored batches dropped (drop_oldest, max_age) since the store was created",
                      [box] { return static_cast<double>(box->stats().dropped_batches_total); });
  for (size_t f = 0; f < 3; ++f) {
    reg.counterFunction(
        "outpost_agent_outbox_damaged_stores_total",
        "Outbox stores found unreadable at start-up and moved aside, by what the salvage read back "
        "(complete: every waiting batch counted as dropped; partial or nothing: an unknown number "
        "of readings was lost)",
        [box, f] { return static_cast<double>(box->stats().damaged_stores[f]); },
        {{"salvage", salvageFoundName(static_cast<SalvageResult::Found>(f))}});
  }
  reg.counterFunction("outpost_agent_outbox_write_errors_total",
                      "Outbox transactions that failed (disk full, I/O error)",
                      [box] { return static_cast<double>(box->stats().write_errors_total); });
  reg.counterFunction("outpost_agent_outbox_recoveries_total",
                      "Times the outbox accepted writes again after failing",
                      [box] { return static_cast<double>(box->stats().recoveries_total); });
}

}  // namespace outpost::agent
