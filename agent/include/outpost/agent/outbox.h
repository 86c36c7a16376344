#pragma once

// The crash-safe outbox (design.md, "Delivery"): a batch is accepted only once it is committed
// here, and leaves only when the aggregator acknowledges it — or when a limit (bytes, age) or the
// full-policy drops it, which is counted and reported in the next stored batch's `dropped`.
//
// Thread-safety: every method may be called from any thread (one internal mutex; SQLite work is
// short). The pipeline thread appends, the uplink thread reads and acks, the metrics endpoint
// reads stats().

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "outpost/common/settings.h"
#include "outpost/common/status.h"
#include "outpost/common/thread_annotations.h"

struct sqlite3;

namespace outpost::sqlite {
class Stmt;
}

namespace outpost::agent {

// What appendMany() does with a batch that does not fit under the byte limit (or cannot be written
// because the disk is full).
enum class FullPolicy {
  kDropOldest,  // evict the oldest stored batches until it fits (default)
  kDropNewest,  // refuse the new batch
  kBlock,       // store nothing more; the caller keeps the batch and retries (the source waits)
};
// "drop_oldest" | "drop_newest" | "block" (the one spelling); anything else fails.
const config::EnumNames<FullPolicy>& fullPolicyNames();
Result<FullPolicy> parseFullPolicy(const std::string& s);
const char* fullPolicyName(FullPolicy p);

// Why readings were dropped (the `reason` label of outpost_agent_readings_dropped_total).
enum class DropReason : uint8_t {
  kOutboxFull,  // evicted by drop_oldest, or refused by drop_newest (byte limit or disk full)
  kMaxAge,      // older than max_age
  kWriteError,  // the store failed (I/O error, disk full with nothing left to evict)
  kTooLarge,    // one batch larger than the whole byte limit
  kUpstream,    // reported through addDropped() (e.g. a source overran before the outbox)
  kStoreDamaged,  // waiting in a store that was unreadable at start-up (read back by the salvage)
  kCount,
};
const char* dropReasonName(DropReason r);

struct OutboxOptions {
  std::string path;                   // SQLite file; created if missing
  uint64_t max_bytes = 256ull << 20;  // limit on stored payload bytes
  int64_t max_age_s = 0;              // drop batches older than this (0: no limit)
  FullPolicy full_policy = FullPolicy::kDropOldest;
  std::string synchronous = "full";  // "full": accepted == on disk; "normal": faster
  size_t group_max_batches = 64;     // closed batches committed in one transaction (OutboxWriter)
};

// The settings that may change while the store is open (SIGHUP reload).
struct OutboxLimits {
  uint64_t max_bytes;
  int64_t max_age_s;
  FullPolicy full_policy;
};

struct SalvageResult;

struct StoredBatch {
  uint64_t seq = 0;
  uint64_t readings = 0;
  int64_t created_us = 0;
  std::vector<uint8_t> payload;
};

struct OutboxStats {
  uint64_t rows = 0;
  uint64_t bytes = 0;
  int64_t oldest_created_us = 0;         // 0 when empty
  uint64_t last_seq = 0;                 // highest seq ever assigned in this epoch
  uint64_t dropped_readings_total = 0;   // since the store was created (persisted)
  uint64_t dropped_batches_total = 0;    // stored batches evicted (persisted)
  uint64_t accepted_batches_total = 0;   // this process
  uint64_t accepted_readings_total = 0;  // this process
  uint64_t acked_batches_total = 0;      // this process
  uint64_t write_errors_total = 0;       // this process: failed transactions
  uint64_t recoveries_total = 0;         // this process: writes that succeeded after a failure
  std::array<uint64_t, static_cast<size_t>(DropReason::kCount)> dropped_by_reason{};  // process
  // This process: damaged stores moved aside at open, by what the salvage could read back
  // (index: SalvageResult::Found — nothing, partial, complete).
  std::array<uint64_t, 3> damaged_stores{};
};

// What appendMany() did with a group of batches.
struct AppendOutcome {
  size_t stored = 0;    // batches committed (each got the next seq)
  size_t consumed = 0;  // batches the caller is done with (stored + dropped); under
                        // FullPolicy::kBlock the rest (from `consumed` on) must be retried
  uint64_t stored_readings = 0;
  uint64_t dropped_readings = 0;  // of these batches (not counting evicted older ones)
  bool blocked = false;           // kBlock: stopped because the store is full
};

enum class ReadOrder { kOldestFirst, kNewestFirst };

class Outbox {
 public:
  // Opens or creates the store. A file that is not a readable SQLite database is renamed to
  // "<path>.corrupt-<unix time>" (logged) and a fresh store with a new epoch is created; what can
  // still be read from the moved copy (salvageStore: the waiting batches' readings, the `dropped`
  // they carried, the pending count) is counted as dropped (kStoreDamaged) and reported in the
  // fresh store's first batch. When nothing can be read the store itself is counted
  // (stats().damaged_stores) and the log says an unknown number of readings was lost.
  // A "<path>-reserve" file is kept beside the store (when there is room): 5 MB, or a sixteenth
  // of a smaller file system (at least 128 KB; the WAL is then kept to half of it). On a full disk it is deleted so that SQLite can
  // record evictions (drop_oldest) and deletions of acknowledged batches, and the store is then
  // capped at the size that fit until the disk has room again (checked every 64 appends).
  static Result<std::unique_ptr<Outbox>> open(const OutboxOptions& options, const Clock& clock);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  uint64_t epoch() const { return epoch_; }

  // Commits `batches` in ONE transaction (one fsync under synchronous=full), in order. Each stored
  // batch gets epoch, the next seq and the dropped count pending at that point (everything
  // dropped before it is reported by the first batch stored after the drop). Batches that do not
  // fit are handled by the full policy. If the transaction fails (I/O error, disk full with
  // nothing to evict), nothing of it is stored: under kDropOldest/kDropNewest the group's readings
  // are counted as dropped (kWriteError) and the error returned; under kBlock the error is returned
  // and nothing is counted (the caller retries).
  Result<AppendOutcome> appendMany(std::span<codec::BatchContent> batches);

  // One batch; returns its seq. A batch that was not stored (dropped or blocked) is an error:
  // kResourceExhausted (full/too large) or kIoError.
  Result<uint64_t> append(codec::BatchContent& batch);

  // Up to `limit` batches with seq > `after_seq`, oldest first.
  Result<std::vector<StoredBatch>> readAfter(uint64_t after_seq, size_t limit);
  // Up to `limit` batches with `after_seq` < seq < `before_seq`, in `order` (newest first walks
  // down from before_seq). Never more than `limit` payloads are in memory.
  Result<std::vector<StoredBatch>> readRange(uint64_t after_seq, uint64_t before_seq, size_t limit,
                                             ReadOrder order);

  // Deletes an acknowledged batch. Acking an unknown seq is not an error (already evicted/acked).
  Status ack(uint64_t seq);
  // Deletes several acknowledged batches in one transaction.
  Status ackMany(std::span<const uint64_t> seqs);

  // Drops batches older than max_age (if set); returns the readings dropped. appendMany() does this
  // too; call it periodically so that an idle store also expires.
  Result<uint64_t> expire();

  // Counts readings dropped before they reached the outbox; reported in the next batch.
  void addDropped(uint64_t readings, DropReason reason = DropReason::kUpstream);

  // Writes the drop counters (pending for the next batch, totals) if they changed since they were
  // last written. They normally go with the next append's transaction; when the write that failed
  // was the last one (an I/O error just before a stop), this is what keeps the count. True when
  // the store holds the current counters. Any thread.
  bool persistDropCounts();
  // Readings counted as dropped but not yet reported in a batch (in memory).
  uint64_t pendingDropped() const;

  // Applies new limits (reload). A lower byte limit or age takes effect at the next append/expire.
  void setLimits(const OutboxLimits& limits);
  OutboxLimits limits() const;

  OutboxStats stats() const;

 private:
  struct Stmts;
  Outbox(sqlite3* db, OutboxOptions options, const Clock& clock);
  Status init() EXCLUDES(mu_);
  // Counts what the salvage of a damaged store found (pending for the first batch) and persists it.
  void countDamagedStore(const SalvageResult& found) EXCLUDES(mu_);
  Status setMeta(const char* key, int64_t value);
  Result<int64_t> getMeta(const char* key, int64_t fallback);
  Status persistCounters() REQUIRES(mu_);
  // Deletes the oldest stored batch inside the current transaction.
  Status evictOldestLocked(DropReason reason) REQUIRES(mu_);
  Status expireLocked(int64_t now_us, uint64_t& dropped) REQUIRES(mu_);
  Status refreshOldestLocked() REQUIRES(mu_);
  void countDropLocked(uint64_t readings, DropReason reason) REQUIRES(mu_);
  Result<AppendOutcome> appendGroupLocked(std::span<codec::BatchContent> batches) REQUIRES(mu_);
  Status ackLocked(std::span<const uint64_t> seqs) REQUIRES(mu_);
  // The store's file system: total and available bytes (nullopt if statvfs fails).
  struct FsSpace {
    uint64_t total, available;
  };
  std::optional<FsSpace> fsSpace() const REQUIRES(mu_);
  uint64_t reserveTarget() const REQUIRES(mu_);
  // True if the store's file system has less than a reserve's worth of space left (or cannot be
  // asked): only then does an I/O error mean "disk full" and justify evicting or giving up the
  // reserve. Any other I/O error (EIO from a failing card, a failed fsync) is retried once.
  bool diskNearlyFull() const REQUIRES(mu_);
  void takeReserve() REQUIRES(mu_);
  void releaseReserve() REQUIRES(mu_);
  // On a full disk: gives up the reserve and checkpoints the WAL into the database (`mode`:
  // SQLITE_CHECKPOINT_TRUNCATE frees the WAL's space, _RESTART lets the next frames reuse it).
  void makeRoomLocked(int mode) REQUIRES(mu_);

  sqlite3* db_;
  OutboxOptions options_ GUARDED_BY(mu_);  // path and synchronous never change
  const Clock& clock_;
  std::unique_ptr<Stmts> stmts_;
  mutable Mutex mu_;
  uint64_t epoch_ = 0;
  uint64_t next_seq_ GUARDED_BY(mu_) = 1;
  uint64_t pending_dropped_ GUARDED_BY(mu_) = 0;  // mirrored in meta
  int64_t persisted_pending_ GUARDED_BY(mu_) = -1;  // what meta holds (-1 unknown)
  int64_t persisted_dropped_ GUARDED_BY(mu_) = -1;
  int64_t persisted_batches_ GUARDED_BY(mu_) = -1;
  bool failing_ GUARDED_BY(mu_) = false;  // the last write failed
  bool reserve_held_ GUARDED_BY(mu_) = false;  // "<path>-reserve" exists (disk-full room)
  uint64_t reserve_retry_ GUARDED_BY(mu_) = 0;
  uint64_t reserve_bytes_ GUARDED_BY(mu_) = 0;  // size of the reserve file when held
  uint64_t disk_cap_ GUARDED_BY(mu_) = 0;  // store size that fit when the disk filled
  bool refusing_ GUARDED_BY(mu_) = false;  // drop_newest is refusing batches
  uint64_t evicting_ GUARDED_BY(mu_) = 0;  // batches drop_oldest evicted in this run
  uint64_t dropped_by_full_before_ GUARDED_BY(mu_) = 0;  // for the refusing_ log lines
  OutboxStats stats_ GUARDED_BY(mu_);
};

}  // namespace outpost::agent
