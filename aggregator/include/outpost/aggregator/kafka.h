#pragma once

// The aggregator's side of Kafka (librdkafka): one idempotent producer, whose delivery reports
// drive acknowledgements, and the start-up recovery that reads the tail of our own topics. The
// pipeline sees them as the Publisher and Sink of publisher.h.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "outpost/aggregator/dedup_store.h"
#include "outpost/aggregator/publisher.h"
#include "outpost/common/metrics.h"
#include "outpost/common/status.h"

typedef struct rd_kafka_s rd_kafka_t;

namespace outpost::aggregator {

struct KafkaOptions {
  std::string bootstrap_servers = "127.0.0.1:9092";
  std::string client_id = "outpost-aggregator";
  int linger_ms = 5;
  std::string compression = "lz4";
  int message_timeout_ms = 0;  // 0: never time out (docs/kafka.md, "Delivery failures")
  int queue_max_messages = 100000;
  int64_t queue_max_kbytes = 1048576;
  std::vector<std::pair<std::string, std::string>> extra;  // more librdkafka properties
};

// Header names carried by every message we produce (recovery reads them back).
inline constexpr const char* kHeaderDevice = "outpost-device";
inline constexpr const char* kHeaderEpoch = "outpost-epoch";
inline constexpr const char* kHeaderSeq = "outpost-seq";
inline constexpr const char* kHeaderPart = "outpost-part";
inline constexpr const char* kHeaderParts = "outpost-parts";
inline constexpr const char* kHeaderReason = "outpost-reason";

// The librdkafka producer. Each message's opaque is the DeliveryListener* it was produced with,
// nothing else; the poll thread turns delivery reports into listener calls.
// Thread-safety: as Publisher; reports run on the producer's poll thread only (one at a time).
class KafkaProducer final : public Publisher {
 public:
  static Result<std::unique_ptr<KafkaProducer>> create(const KafkaOptions& options,
                                                       metrics::Registry& registry);
  ~KafkaProducer() override;

  // While librdkafka's local queue is full (QUEUE_FULL) this waits, counting the pause in
  // outpost_aggregator_kafka_queue_full_total and outpost_aggregator_intake_paused.
  Status produce(const std::string& topic, std::string_view key, std::string_view value,
                 const Headers& headers, DeliveryListener* listener) override;
  void stop(int timeout_ms) override;
  int outstanding() const override;
  // False after librdkafka reported every broker down, until a delivery succeeds or a metadata
  // request (at most `timeout_ms`, only made in that state) answers.
  bool reachable(int timeout_ms) override;
  uint64_t delivered() const override { return delivered_->value(); }
  uint64_t failed() const override { return failed_->value(); }
  double pausedWorkers() const override { return paused_->value(); }

 private:
  KafkaProducer() = default;
  rd_kafka_t* rk_ = nullptr;
  std::thread poll_thread_;
  std::atomic<bool> stopping_{false};
  metrics::Counter* queue_full_ = nullptr;
  metrics::Gauge* paused_ = nullptr;
  metrics::Counter* delivered_ = nullptr;
  metrics::Counter* failed_ = nullptr;
  metrics::Counter* uncertain_ = nullptr;  // failed, possibly persisted
  metrics::Counter* fatal_ = nullptr;
  std::atomic<bool> brokers_down_{false};
  friend void deliveryCallback(rd_kafka_t*, const void*, void*);
};

// The Kafka Sink: recovery with recoverFromKafka (bounded by `recovery_max_messages` per
// partition and `recovery_timeout_ms`), then a KafkaProducer.
std::unique_ptr<Sink> makeKafkaSink(const KafkaOptions& options, int64_t recovery_max_messages,
                                    int recovery_timeout_ms);

// The bookkeeping of recoverFromKafka, apart from librdkafka.
class RecoveryScan {
 public:
  // Where to start reading a partition whose offsets are [low, high): after the checkpoint (if
  // any), else `max_messages` from the end; never below `low`. Adds to `lost` the messages after
  // the checkpoint that retention already removed. -1: nothing to read.
  static int64_t startOffset(int64_t low, int64_t high, const int64_t* checkpoint,
                             int64_t max_messages, uint64_t& lost);

  // One message read back, with its outpost-* headers (empty when absent). Messages without a
  // parseable batch identity (ops events, anomaly events) only advance the scan.
  void add(const TopicPartition& tp, int64_t offset, const std::string& device,
           const std::string& epoch, const std::string& seq, const std::string& part,
           const std::string& parts);

  struct Outcome {
    uint64_t scanned = 0;
    uint64_t recovered = 0;  // batches with every part present: marked done
    uint64_t partial = 0;    // batches missing parts: produced again when resent
  };
  // Marks the complete batches done in `store` and raises each partition's checkpoint to the end
  // of what was scanned, but not past the first message of an incomplete batch.
  Outcome apply(DedupStore& store) const;

 private:
  std::map<BatchKey, std::set<uint32_t>> parts_seen_;
  std::map<BatchKey, uint32_t> parts_total_;
  std::map<BatchKey, std::pair<TopicPartition, int64_t>> first_offset_;  // lowest message
  std::map<TopicPartition, int64_t> last_scanned_;
  uint64_t scanned_ = 0;
};

// Reads `topics` from each partition's checkpoint (+1) to its end and marks every batch found as
// done in `store` (multi-part batches only when every part is present). Bounded by
// `max_messages_per_partition` from the end. Returns the number of batches recovered.
Result<uint64_t> recoverFromKafka(const KafkaOptions& options,
                                  const std::vector<std::string>& topics, DedupStore& store,
                                  int64_t max_messages_per_partition, int timeout_ms);

}  // namespace outpost::aggregator
