#pragma once

// The aggregator's side of Kafka (librdkafka): one idempotent producer, whose delivery reports
// drive acknowledgements, and the start-up recovery that reads the tail of our own topics.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "outpost/aggregator/dedup_store.h"
#include "outpost/common/metrics.h"
#include "outpost/common/status.h"

typedef struct rd_kafka_s rd_kafka_t;

namespace outpost::aggregator {

struct KafkaOptions {
  std::string bootstrap_servers = "127.0.0.1:9092";
  std::string client_id = "outpost-aggregator";
  int linger_ms = 5;
  std::string compression = "lz4";
  int message_timeout_ms = 30000;
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

struct Delivery {
  void* opaque;
  bool ok;
  std::string error;
  std::string topic;
  int32_t partition;
  int64_t offset;
};

// Thread-safety: produce() from any thread; the delivery handler runs on the producer's poll
// thread only (one at a time).
class KafkaProducer {
 public:
  using DeliveryHandler = std::function<void(const Delivery&)>;

  static Result<std::unique_ptr<KafkaProducer>> create(const KafkaOptions& options,
                                                       DeliveryHandler handler,
                                                       metrics::Registry& registry);
  ~KafkaProducer();

  // Queues one message (the value is copied). While librdkafka's local queue is full this waits
  // (pausing intake upstream) instead of dropping; gives up only when stop() was called.
  Status produce(const std::string& topic, std::string_view key, std::string_view value,
                 const std::vector<std::pair<std::string, std::string>>& headers, void* opaque);

  // Waits up to `timeout_ms` for outstanding deliveries, then stops the poll thread.
  void stop(int timeout_ms);
  // Messages queued or in flight.
  int outstanding() const;
  // False after librdkafka reported every broker down, until a delivery succeeds or a metadata
  // request (at most `timeout_ms`, only made in that state) answers. Any thread.
  bool reachable(int timeout_ms);
  // Delivery reports so far, successful and failed; workers waiting for queue room now. Any thread.
  uint64_t delivered() const { return delivered_->value(); }
  uint64_t failed() const { return failed_->value(); }
  double pausedWorkers() const { return paused_->value(); }

 private:
  KafkaProducer() = default;
  rd_kafka_t* rk_ = nullptr;
  DeliveryHandler handler_;
  std::thread poll_thread_;
  std::atomic<bool> stopping_{false};
  metrics::Counter* queue_full_ = nullptr;
  metrics::Gauge* paused_ = nullptr;
  metrics::Counter* delivered_ = nullptr;
  metrics::Counter* failed_ = nullptr;
  std::atomic<bool> brokers_down_{false};
  friend void deliveryCallback(rd_kafka_t*, const void*, void*);
};

// Reads `topics` from each partition's checkpoint (+1) to its end and marks every batch found as
// done in `store` (multi-part batches only when every part is present). Bounded by
// `max_messages_per_partition` from the end. Returns the number of batches recovered.
Result<uint64_t> recoverFromKafka(const KafkaOptions& options, const std::vector<std::string>& topics,
                                  DedupStore& store, int64_t max_messages_per_partition,
                                  int timeout_ms);

}  // namespace outpost::aggregator
