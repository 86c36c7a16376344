#include "outpost/agent/outbox_writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <span>

namespace outpost::agent {

OutboxWriter::OutboxWriter(Outbox& outbox, size_t group_max, metrics::Registry& reg,
                           std::function<void()> on_commit)
    : outbox_(outbox),
      group_max_(std::max<size_t>(1, group_max)),
      on_commit_(std::move(on_commit)),
      accepted_batches_(reg.counter("outpost_agent_batches_accepted_total",
                                    "Batches committed to the outbox (accepted)")),
      accepted_readings_(reg.counter("outpost_agent_readings_accepted_total",
                                     "Readings in batches committed to the outbox")),
      append_failures_(reg.counter("outpost_agent_outbox_append_failures_total",
                                   "Outbox transactions that failed (their readings count as "
                                   "dropped, except under the block policy)")),
      blocked_rounds_(reg.counter("outpost_agent_outbox_blocked_total",
                                  "Times the block policy stopped the sources because the outbox "
                                  "was full or failing")) {}

bool OutboxWriter::commit() {
  size_t done = 0;
  bool stored_any = false;
  const bool was_blocked = blocked_;
  blocked_ = false;
  while (done < queue_.size()) {
    const size_t n = std::min(group_max_, queue_.size() - done);
    auto out = outbox_.appendMany(std::span<codec::BatchContent>(queue_.data() + done, n));
    if (!out) {
      append_failures_.inc();
      if (outbox_.limits().full_policy == FullPolicy::kBlock) {
        blocked_ = true;
        break;
      }
      done += n;  // counted as dropped by the outbox
      continue;
    }
    accepted_batches_.inc(out->stored);
    accepted_readings_.inc(out->stored_readings);
    stored_any = stored_any || out->stored > 0;
    done += out->consumed;
    if (out->blocked) {
      blocked_ = true;
      break;
    }
  }
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(done));
  if (blocked_ && !was_blocked) {
    blocked_rounds_.inc();
    spdlog::warn(
        "outbox full (block policy): sources paused until there is room ({} batches "
        "waiting in memory)",
        queue_.size());
  } else if (!blocked_ && was_blocked) {
    spdlog::info("outbox has room again: sources resume");
  }
  if (stored_any && on_commit_) on_commit_();
  return !blocked_;
}

void OutboxWriter::finish() {
  commit();
  uint64_t n = 0;
  for (const auto& b : queue_) n += b.readings.size() + b.windows.size();
  if (n > 0) {
    spdlog::warn("stopping with the outbox full: {} readings not stored (counted as dropped)", n);
    outbox_.addDropped(n, DropReason::kOutboxFull);
  }
  queue_.clear();
  blocked_ = false;
}

}  // namespace outpost::agent
