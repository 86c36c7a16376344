#include "outpost/aggregator/delivery_tracker.h"

namespace outpost::aggregator {

BatchDelivery::BatchDelivery(DeliveryTracker& tracker, Batch batch, size_t messages)
    : tracker_(tracker), batch_(std::move(batch)), remaining_(messages) {}

void BatchDelivery::onDelivery(const Delivery& d) {
  if (!d.ok) {
    if (first_error_.empty()) first_error_ = d.error;
    failed_.store(true, std::memory_order_release);
  } else if (d.topic != tracker_.gate_only_topic_) {
    const TopicPartition tp{d.topic, d.partition};
    parts_.emplace_back(tp, d.offset);
    if (tracker_.hooks_.delivered) tracker_.hooks_.delivered(*this, tp, d.offset);
  }
  reported(1);
}

void BatchDelivery::notProduced(size_t count) {
  failed_.store(true, std::memory_order_release);
  reported(count);
}

void BatchDelivery::reported(size_t count) {
  // The report that brings the count to zero is the last one: everything the others wrote
  // (parts_, first_error_) happened before it (acq_rel).
  if (remaining_.fetch_sub(count, std::memory_order_acq_rel) == count) tracker_.finish(*this);
}

DeliveryTracker::DeliveryTracker(std::string gate_only_topic, Hooks hooks)
    : gate_only_topic_(std::move(gate_only_topic)), hooks_(std::move(hooks)) {}

DeliveryTracker::~DeliveryTracker() = default;

BatchDelivery& DeliveryTracker::begin(BatchDelivery::Batch batch, size_t messages) {
  MutexLock lock(mu_);
  BatchDelivery& d = live_.emplace_front(*this, std::move(batch), messages);
  d.self_ = live_.begin();
  return d;
}

size_t DeliveryTracker::inFlight() const {
  MutexLock lock(mu_);
  return live_.size();
}

void DeliveryTracker::finish(BatchDelivery& d) {
  if (hooks_.finished) hooks_.finished(d);
  MutexLock lock(mu_);
  live_.erase(d.self_);
}

}  // namespace outpost::aggregator
