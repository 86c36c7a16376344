#pragma once

// The pipeline's side of the outbox: closed batches are queued with add() and committed together
// by commit() — one transaction (one fsync under synchronous=full) for every batch closed in the
// same pipeline round, up to `group_max` per transaction. This is what lets one pipeline thread
// store millions of readings per second (docs/benchmarks.md, outpost-bench-outbox).
//
// Under FullPolicy::kBlock a full outbox (or a failing disk) leaves the batches queued: blocked()
// says the pipeline must stop reading its sources and call commit() again later (the source
// waits; nothing is dropped). finish() at shutdown commits what it can and counts the rest as
// dropped, so the next batch reports it.
//
// Thread-safety: pipeline thread only.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "outpost/agent/outbox.h"
#include "outpost/common/codec.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

class OutboxWriter {
 public:
  // `on_commit` runs after every commit that stored something (e.g. Uplink::notify).
  OutboxWriter(Outbox& outbox, size_t group_max, metrics::Registry& registry,
               std::function<void()> on_commit);

  void add(codec::BatchContent batch) { queue_.push_back(std::move(batch)); }
  // Commits the queue. False when blocked (kBlock and full, or the write failed under kBlock).
  bool commit();
  bool blocked() const { return blocked_; }
  size_t queued() const { return queue_.size(); }
  // Shutdown: commit, then count whatever is still queued as dropped (outbox_full).
  void finish();

 private:
  Outbox& outbox_;
  const size_t group_max_;
  std::function<void()> on_commit_;
  std::vector<codec::BatchContent> queue_;
  bool blocked_ = false;
  metrics::Counter& accepted_batches_;
  metrics::Counter& accepted_readings_;
  metrics::Counter& append_failures_;
  metrics::Counter& blocked_rounds_;
};

}  // namespace outpost::agent
