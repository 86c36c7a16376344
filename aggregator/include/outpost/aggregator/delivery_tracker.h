#pragma once

// The batches between their first produce and their last delivery report (design.md, Delivery 2:
// a batch is acked only after every Kafka message produced from it is delivered).
//
// One BatchDelivery per batch is the DeliveryListener of every message produced for it (the
// readings parts and the anomaly events raised by it, or its one dead letter); it holds what the
// ack needs and collects the partitions and offsets of its delivered parts. The DeliveryTracker
// owns every BatchDelivery from begin() until the last of its messages has reported (or could
// not be produced); it then hands it to the `finished` hook and destroys it.

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>

#include "outpost/aggregator/ack_sink.h"
#include "outpost/aggregator/dedup_store.h"
#include "outpost/aggregator/publisher.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::aggregator {

class DeliveryTracker;

// Thread-safety: batch() is written before the first produce and read-only afterwards;
// onDelivery runs on the publisher's delivery thread; notProduced on the producing worker. The
// outcome (failed(), parts(), firstError()) is complete once the `finished` hook runs.
class BatchDelivery final : public DeliveryListener {
 public:
  struct Batch {
    BatchKey key;               // device empty: an unidentifiable dead letter (nothing to ack)
    AckSink* reply = nullptr;   // where the ack goes; null: nowhere
    bool dead_letter = false;   // acked as rejected, with `reason`
    std::string reason;
    uint64_t readings = 0;      // readings + windows in the batch
    int64_t oldest_item_us = 0;
    int64_t received_mono_us = 0;
  };

  const Batch& batch() const { return batch_; }
  // Some message failed to deliver or could not be produced: no ack.
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // The first failed delivery report's error (empty if only produce() failed).
  const std::string& firstError() const { return first_error_; }
  // Partition and offset of each delivered readings or dead-letter message.
  const DedupStore::Parts& parts() const { return parts_; }

  void onDelivery(const Delivery& delivery) override;
  // `count` messages of the batch could not be produced and will never report.
  void notProduced(size_t count);

  BatchDelivery(DeliveryTracker& tracker, Batch batch, size_t messages);
  BatchDelivery(const BatchDelivery&) = delete;
  BatchDelivery& operator=(const BatchDelivery&) = delete;

 private:
  friend class DeliveryTracker;
  void reported(size_t count);

  DeliveryTracker& tracker_;
  const Batch batch_;
  std::atomic<size_t> remaining_;
  std::atomic<bool> failed_{false};
  DedupStore::Parts parts_;   // delivery thread only, until finished
  std::string first_error_;   // delivery thread only, until finished
  std::list<BatchDelivery>::iterator self_;
};

// Thread-safety: begin() from any thread (workers); the hooks run on the thread of a batch's
// last report (the delivery thread, or the worker whose produce failed).
class DeliveryTracker {
 public:
  struct Hooks {
    // A readings or dead-letter message of `batch` was delivered (not called for messages on
    // `gate_only_topic`).
    std::function<void(const BatchDelivery& batch, const TopicPartition& tp, int64_t offset)>
        delivered;
    // Every message of `batch` has reported: ack it or not. Called once; `batch` is destroyed
    // right after.
    std::function<void(const BatchDelivery& batch)> finished;
  };

  // Messages on `gate_only_topic` (the anomaly events) hold a batch's ack back until they are
  // delivered but are not parts of the batch (recovery and dedup do not count them).
  DeliveryTracker(std::string gate_only_topic, Hooks hooks);
  ~DeliveryTracker();  // batches still in flight are dropped unacked (their reports never came)

  // A batch that will produce `messages` (> 0) messages with the returned listener.
  BatchDelivery& begin(BatchDelivery::Batch batch, size_t messages);
  // Batches between begin() and their last report.
  size_t inFlight() const;

 private:
  friend class BatchDelivery;
  void finish(BatchDelivery& delivery);

  const std::string gate_only_topic_;
  const Hooks hooks_;
  mutable Mutex mu_;
  std::list<BatchDelivery> live_ GUARDED_BY(mu_);
};

// A listener for messages that belong to no batch (ops events, latest values, silence events):
// each outcome goes to `fn`; nothing is acked or retried.
class OutcomeListener final : public DeliveryListener {
 public:
  explicit OutcomeListener(std::function<void(bool ok)> fn) : fn_(std::move(fn)) {}
  void onDelivery(const Delivery& delivery) override { fn_(delivery.ok); }

 private:
  std::function<void(bool ok)> fn_;
};

}  // namespace outpost::aggregator
