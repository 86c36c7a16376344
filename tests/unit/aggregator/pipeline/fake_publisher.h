#pragma once

// A Publisher and Sink for unit tests of the pipeline: every produced message is recorded, and
// reports come only when the test calls deliver() (the test thread plays librdkafka's poll
// thread). A message capacity makes produce() wait like KafkaProducer does on QUEUE_FULL.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/aggregator/publisher.h"

namespace outpost::testing {

class FakePublisher final : public aggregator::Publisher {
 public:
  struct Message {
    std::string topic;
    std::string key;
    std::string value;
    aggregator::Headers headers;
    aggregator::DeliveryListener* listener = nullptr;
    bool reported = false;

    std::string header(const std::string& name) const {
      for (const auto& [k, v] : headers) {
        if (k == name) return v;
      }
      return "";
    }
  };

  Status produce(const std::string& topic, std::string_view key, std::string_view value,
                 const aggregator::Headers& headers,
                 aggregator::DeliveryListener* listener) override {
    std::unique_lock lock(mu_);
    if (fail_produce_at_ == messages_.size() + refused_) {
      ++refused_;
      cv_.notify_all();
      return fail(ErrorCode::kUnavailable, "fake: produce refused");
    }
    if (outstandingLocked() >= capacity_) {
      ++queue_full_;  // like KafkaProducer: wait for room instead of dropping
      ++waiting_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return stopped_ || outstandingLocked() < capacity_; });
      --waiting_;
      if (stopped_) return fail(ErrorCode::kUnavailable, "fake: stopping");
    }
    messages_.push_back({topic, std::string(key), std::string(value), headers, listener});
    cv_.notify_all();
    return {};
  }

  void stop(int) override {
    std::lock_guard lock(mu_);
    stopped_ = true;
    cv_.notify_all();
  }
  int outstanding() const override {
    std::lock_guard lock(mu_);
    return static_cast<int>(outstandingLocked());
  }
  bool reachable(int) override { return true; }
  uint64_t delivered() const override {
    std::lock_guard lock(mu_);
    return delivered_;
  }
  uint64_t failed() const override {
    std::lock_guard lock(mu_);
    return failed_;
  }
  double pausedWorkers() const override {
    std::lock_guard lock(mu_);
    return static_cast<double>(waiting_);
  }

  // --- test side ---

  // Waits (bounded) until `n` messages were produced; false on time-out.
  bool waitProduced(size_t n, std::chrono::seconds bound = std::chrono::seconds(20)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, bound, [&] { return messages_.size() >= n; });
  }
  // Waits (bounded) until a produce() call was refused (failProduceAt).
  bool waitRefused(std::chrono::seconds bound = std::chrono::seconds(20)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, bound, [&] { return refused_ > 0; });
  }
  // Waits (bounded) until a produce() call waits for room.
  bool waitQueueFull(std::chrono::seconds bound = std::chrono::seconds(20)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, bound, [&] { return queue_full_ > 0; });
  }
  size_t produced() const {
    std::lock_guard lock(mu_);
    return messages_.size();
  }
  Message message(size_t i) const {
    std::lock_guard lock(mu_);
    REQUIRE(i < messages_.size());
    return messages_[i];
  }
  // Reports message `i` (once), as a success at offset i of partition 0 or as a failure.
  void deliver(size_t i, bool ok = true) {
    aggregator::DeliveryListener* listener = nullptr;
    aggregator::Delivery d;
    {
      std::lock_guard lock(mu_);
      REQUIRE(i < messages_.size());
      REQUIRE_FALSE(messages_[i].reported);
      messages_[i].reported = true;
      ++(ok ? delivered_ : failed_);
      listener = messages_[i].listener;
      d = {ok, ok ? "" : "fake: delivery failed", messages_[i].topic, 0, static_cast<int64_t>(i)};
    }
    if (listener) listener->onDelivery(d);
    std::lock_guard lock(mu_);
    cv_.notify_all();  // room for a waiting produce()
  }
  // Reports every message not reported yet, successfully.
  void deliverAll() {
    for (size_t i = 0; i < produced(); ++i) {
      bool reported;
      {
        std::lock_guard lock(mu_);
        reported = messages_[i].reported;
      }
      if (!reported) deliver(i);
    }
  }
  // At most `n` messages queued and not reported; produce() waits beyond that.
  void setCapacity(size_t n) {
    std::lock_guard lock(mu_);
    capacity_ = n;
    cv_.notify_all();
  }
  // The produce() call that would queue message number `n` (0-based, counting refusals) fails.
  void failProduceAt(size_t n) {
    std::lock_guard lock(mu_);
    fail_produce_at_ = n;
  }
  size_t queueFullCount() const {
    std::lock_guard lock(mu_);
    return queue_full_;
  }

 private:
  size_t outstandingLocked() const {
    size_t n = 0;
    for (const auto& m : messages_) n += m.reported ? 0 : 1;
    return n;
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Message> messages_;
  size_t capacity_ = std::numeric_limits<size_t>::max();
  size_t fail_produce_at_ = std::numeric_limits<size_t>::max();
  size_t refused_ = 0;
  size_t queue_full_ = 0;
  size_t waiting_ = 0;  // produce() calls waiting for room now
  uint64_t delivered_ = 0;
  uint64_t failed_ = 0;
  bool stopped_ = false;
};

// Recovers nothing; hands out the one FakePublisher (owned by the aggregator after start()).
class FakeSink final : public aggregator::Sink {
 public:
  explicit FakeSink(FakePublisher*& out) : out_(out) {}
  Result<uint64_t> recover(const std::vector<std::string>&, aggregator::DedupStore&) override {
    return 0;
  }
  Result<std::unique_ptr<aggregator::Publisher>> openPublisher(metrics::Registry&) override {
    auto p = std::make_unique<FakePublisher>();
    out_ = p.get();
    return std::unique_ptr<aggregator::Publisher>(std::move(p));
  }

 private:
  FakePublisher*& out_;
};

}  // namespace outpost::testing
