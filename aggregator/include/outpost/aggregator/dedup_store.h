#pragma once

// Duplicate suppression by (device, epoch, seq) that survives a restart (design.md, Delivery 3).
//
// In memory: per (device, epoch) the set of completed seqs as disjoint intervals (agents send seqs
// mostly in order, so a device costs a few intervals however long it runs), plus the batches in
// progress (produced, delivery reports pending; memory only).
// On disk (SQLite, flushed every few ms): the intervals and, per Kafka topic-partition, the highest
// offset whose batch is recorded. Anything produced after that checkpoint is recovered at start-up
// by reading the topic's tail (see KafkaRecovery), which closes the window between "Kafka has it"
// and "the store says so".
//
// Thread-safety: every method may be called from any thread (one mutex).

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "outpost/common/status.h"
#include "outpost/common/thread_annotations.h"

struct sqlite3;

namespace outpost::aggregator {

struct BatchKey {
  std::string device;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  auto operator<=>(const BatchKey&) const = default;
};

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  auto operator<=>(const TopicPartition&) const = default;
};

class DedupStore {
 public:
  enum class State { kNew, kInProgress, kDone };

  // Opens or creates the store at `path`.
  static Result<std::unique_ptr<DedupStore>> open(const std::string& path);
  ~DedupStore();

  // Claims a batch: kNew means the caller must produce it and then call complete() or abort();
  // kInProgress means another copy is being produced now; kDone means it is on Kafka already.
  State begin(const BatchKey& key);
  using Parts = std::vector<std::pair<TopicPartition, int64_t>>;
  // One message of a claimed batch has a successful delivery report at this offset. Until its
  // batch completes, the partition's checkpoint stays below it.
  void delivered(const TopicPartition& tp, int64_t offset);
  // Every message of the batch is delivered (`parts`: each message's partition and offset).
  void complete(const BatchKey& key, const Parts& parts);
  // Delivery failed: forget the claim so that a resend is produced again. `parts`: the messages
  // of the batch that were delivered anyway (they stay on Kafka; the resend repeats them).
  void abort(const BatchKey& key, const Parts& parts);
  // Recovery: the batch was found on Kafka.
  void markDone(const BatchKey& key);
  bool isDone(const BatchKey& key) const;
  // Recovery: every batch with a message at or below `offset` in `tp` is recorded. Never lowers.
  void raiseCheckpoint(const TopicPartition& tp, int64_t offset);

  // Writes what changed since the last flush (one transaction).
  Status flush();

  // Highest recorded offset per topic-partition (from disk and this run).
  std::map<TopicPartition, int64_t> checkpoints() const;

  struct Stats {
    uint64_t devices = 0;
    uint64_t intervals = 0;
    uint64_t in_progress = 0;
  };
  Stats stats() const;

 private:
  explicit DedupStore(sqlite3* db) : db_(db) {}
  Status load() EXCLUDES(mu_);
  void addDone(const BatchKey& key) REQUIRES(mu_);

  sqlite3* db_;
  mutable Mutex mu_;
  using Stream = std::pair<std::string, uint64_t>;  // (device, epoch)
  std::map<Stream, std::map<uint64_t, uint64_t>> done_ GUARDED_BY(mu_);  // lo -> hi
  std::set<Stream> dirty_ GUARDED_BY(mu_);
  std::set<BatchKey> in_progress_ GUARDED_BY(mu_);
  std::map<TopicPartition, int64_t> offsets_ GUARDED_BY(mu_);  // checkpoints
  std::map<TopicPartition, int64_t> max_delivered_ GUARDED_BY(mu_);
  std::map<TopicPartition, std::multiset<int64_t>> open_ GUARDED_BY(mu_);  // delivered, batch open
  bool offsets_dirty_ GUARDED_BY(mu_) = false;
  void advanceCheckpoint(const TopicPartition& tp) REQUIRES(mu_);
  Mutex flush_mu_;  // serialises flush()
};

}  // namespace outpost::aggregator
