#pragma once

// Where the aggregator's output goes, as the pipeline sees it: a Publisher that queues messages
// and reports each one's delivery to the DeliveryListener it was produced with, and a Sink that
// recovers what is already there at start-up and then opens the Publisher. The implementation is
// Kafka through librdkafka (kafka.h: makeKafkaSink); unit tests inject a fake.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "outpost/aggregator/dedup_store.h"
#include "outpost/common/metrics.h"
#include "outpost/common/status.h"

namespace outpost::aggregator {

using Headers = std::vector<std::pair<std::string, std::string>>;

// The outcome of one message.
struct Delivery {
  bool ok = false;
  std::string error;  // empty when ok
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;  // meaningful when ok
  // A failed message the broker may still have written (its request was in flight when it timed
  // out or the producer failed): produced again, it may be on Kafka twice.
  bool possibly_persisted = false;
};

// Told the outcome of each message produced with it, exactly once per message that produce()
// accepted (never for one it refused). Called on the publisher's delivery thread, one report at a
// time; it must not block (acks are handed to the transports' own threads).
class DeliveryListener {
 public:
  virtual void onDelivery(const Delivery& delivery) = 0;

 protected:
  ~DeliveryListener() = default;  // not owned through this interface
};

// Thread-safety: produce(), outstanding() and reachable() from any thread; stop() from one.
class Publisher {
 public:
  virtual ~Publisher() = default;

  // Queues one message (key, value and headers are copied). `listener` (may be null: no report)
  // must live until its report. While the local queue is full this waits — the calling worker,
  // and so intake upstream, pauses — instead of dropping; it fails only when stop() was called or
  // the message cannot be queued at all, and then no report will come for it.
  virtual Status produce(const std::string& topic, std::string_view key, std::string_view value,
                         const Headers& headers, DeliveryListener* listener) = 0;
  // Waits up to `timeout_ms` for outstanding reports, then stops reporting. Messages still
  // outstanding after that never report.
  virtual void stop(int timeout_ms) = 0;
  // Messages queued or in flight.
  virtual int outstanding() const = 0;
  // False while no broker can be reached (may block up to `timeout_ms` to find out).
  virtual bool reachable(int timeout_ms) = 0;
  // Delivery reports so far, successful and failed; workers waiting in produce() for queue room
  // now. Any thread (the dashboard's PipelineStats).
  virtual uint64_t delivered() const = 0;
  virtual uint64_t failed() const = 0;
  virtual double pausedWorkers() const = 0;
};

// Thread-safety: one thread (Aggregator::start).
class Sink {
 public:
  virtual ~Sink() = default;
  // Start-up recovery: marks done in `store` every batch whose messages are all on `topics` after
  // the store's checkpoints, and raises the checkpoints. Returns how many batches it found; an
  // error when the topics could not be read (the aggregator then refuses to start).
  virtual Result<uint64_t> recover(const std::vector<std::string>& topics, DedupStore& store) = 0;
  // Opens the publisher (once, after recover()); its metrics go to `registry`.
  virtual Result<std::unique_ptr<Publisher>> openPublisher(metrics::Registry& registry) = 0;
};

}  // namespace outpost::aggregator
