#pragma once

// The crash-safe outbox (design.md, "Delivery"): a batch is accepted only once it is committed
// here, and leaves only when the aggregator acknowledges it (or the byte limit evicts it, which is
// counted and reported in the next batch's `dropped`).
//
// Thread-safety: every method may be called from any thread (one internal mutex; SQLite work is
// short). The pipeline thread appends, the uplink thread reads and acks.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "outpost/common/status.h"

struct sqlite3;

namespace outpost::agent {

struct OutboxOptions {
  std::string path;                        // SQLite file; created if missing
  uint64_t max_bytes = 256ull << 20;       // limit on stored payload bytes
  std::string synchronous = "full";        // "full": accepted == on disk; "normal": WAL, faster
};

struct StoredBatch {
  uint64_t seq = 0;
  uint64_t readings = 0;
  std::vector<uint8_t> payload;
};

struct OutboxStats {
  uint64_t rows = 0;
  uint64_t bytes = 0;
  int64_t oldest_created_us = 0;          // 0 when empty
  uint64_t dropped_readings_total = 0;    // evicted, failed or addDropped(), since the store was created
  uint64_t dropped_batches_total = 0;
  uint64_t accepted_batches_total = 0;    // this process
  uint64_t acked_batches_total = 0;       // this process
  uint64_t write_errors_total = 0;        // this process
};

class Outbox {
 public:
  // Opens or creates the store. A file that is not a readable SQLite database is renamed to
  // "<path>.corrupt-<unix time>" (logged) and a fresh store with a new epoch is created.
  static Result<std::unique_ptr<Outbox>> open(const OutboxOptions& options, const Clock& clock);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  uint64_t epoch() const { return epoch_; }

  // Assigns epoch, the next seq and the pending dropped count to `batch`, encodes it and commits
  // it, evicting the oldest batches first if the byte limit requires it. Returns the seq.
  // On failure nothing is stored and the batch's readings are counted as dropped.
  Result<uint64_t> append(codec::BatchContent& batch);

  // Up to `limit` batches with seq > `after_seq`, oldest first.
  Result<std::vector<StoredBatch>> readAfter(uint64_t after_seq, size_t limit);

  // Deletes an acknowledged batch. Acking an unknown seq is not an error (already evicted/acked).
  Status ack(uint64_t seq);

  // Counts readings dropped before they reached the outbox; reported in the next batch.
  void addDropped(uint64_t readings);

  OutboxStats stats() const;

 private:
  Outbox(sqlite3* db, OutboxOptions options, const Clock& clock);
  Status init();
  Status setMeta(const char* key, int64_t value);
  Result<int64_t> getMeta(const char* key, int64_t fallback);
  Status evictOldest(uint64_t& freed_bytes, uint64_t& dropped_readings);

  sqlite3* db_;
  const OutboxOptions options_;
  const Clock& clock_;
  mutable std::mutex mu_;
  uint64_t epoch_ = 0;
  uint64_t next_seq_ = 1;       // GUARDED_BY(mu_)
  uint64_t pending_dropped_ = 0;  // GUARDED_BY(mu_), mirrored in meta
  OutboxStats stats_;           // GUARDED_BY(mu_)
};

}  // namespace outpost::agent
