#pragma once

// The transport-independent half of an uplink: which stored batches to send next, the in-flight
// window, ack timeouts, deleting acknowledged batches, and backlog draining. An uplink (MQTT,
// ZeroMQ) owns the connection and calls these methods from its one sender thread; it only has to
// provide "publish these bytes" and hand over the acks it receives.
//
// Live data and backlog: when the connection (re)opens, every batch already in the outbox is
// backlog; batches committed after that are live. Live batches are always sent first; backlog
// batches use the rest of the in-flight window, in the configured order (oldest or newest first)
// and at most at the configured drain rate (readings/s, 0 = as fast as acks allow). Only
// `max_inflight` payloads are ever in memory; the backlog is read from the store in small pages.
//
// Thread-safety: sender thread only, except setDrain() and inFlight() (any thread).

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "outpost/agent/outbox.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::agent {

struct DrainSettings {
  ReadOrder order = ReadOrder::kOldestFirst;
  double rate_readings_per_s = 0;  // backlog drain rate; 0: unlimited
};
// "oldest_first" | "newest_first" (the one spelling).
const config::EnumNames<ReadOrder>& drainOrderNames();
Result<ReadOrder> parseDrainOrder(const std::string& s);

struct SenderOptions {
  size_t max_inflight = 16;        // batches sent and not yet acknowledged
  int64_t ack_timeout_ms = 10000;  // send again if not acknowledged within this time
  DrainSettings drain;
};

// An acknowledgement received from the aggregator (already verified by the transport).
struct AckEvent {
  uint64_t epoch = 0;
  uint64_t seq = 0;
  bool accepted = true;
  std::string reason;
};

// What a transport's sender thread calls: the sending half of OutboxSender as an interface, so
// that the ZeroMQ uplink, which lives in a module (outpost-agent-zmq.so), drives the executable's
// OutboxSender through its vtable instead of linking a second copy of it and of the outbox.
class UplinkSender {
 public:
  // Sends one stored batch; false when the connection is gone (the uplink reconnects).
  using PublishFn = std::function<bool(const StoredBatch&)>;

  virtual ~UplinkSender() = default;
  // A new connection: nothing is in flight any more; everything in the outbox is backlog and is
  // sent again (the aggregator deduplicates what it already had).
  virtual void onConnected() = 0;
  // Resends timed-out batches, then live batches, then backlog within the rate. False if a
  // publish failed.
  virtual bool pump(const PublishFn& publish) = 0;
  // Deletes acknowledged batches (one transaction for the lot) and records round-trip times. A
  // delete that fails (an I/O error) is retried by pump() every second until it succeeds.
  virtual void onAcks(std::span<const AckEvent> acks) = 0;
  // Any thread.
  virtual size_t inFlight() const = 0;
  // Monotonic µs at which pump() should run again although nothing else happened (rate-limited
  // backlog, ack timeout); INT64_MAX if nothing is waiting for time.
  virtual int64_t nextDueUs() const = 0;
};

class OutboxSender final : public UplinkSender {
 public:
  OutboxSender(Outbox& outbox, SenderOptions options, metrics::Registry& registry,
               const Clock& clock);

  void onConnected() override;
  bool pump(const PublishFn& publish) override;
  void onAcks(std::span<const AckEvent> acks) override;
  size_t inFlight() const override { return inflight_count_.load(std::memory_order_relaxed); }
  int64_t nextDueUs() const override { return next_due_us_; }
  // True once every backlog batch of this connection has been sent (not necessarily acked).
  bool backlogDone() const { return backlog_done_; }

  void setDrain(const DrainSettings& drain);  // any thread; applies from the next pump()

 private:
  struct InFlight {
    int64_t sent_us;
    uint64_t readings;
    bool live;
  };
  bool sendOne(const StoredBatch& b, const PublishFn& publish, int64_t now, bool live);
  bool sendBacklog(const PublishFn& publish, int64_t now, size_t room);

  Outbox& outbox_;
  const SenderOptions options_;
  const Clock& clock_;

  Mutex drain_mu_;
  DrainSettings drain_ GUARDED_BY(drain_mu_);
  bool drain_changed_ GUARDED_BY(drain_mu_) = false;

  // Sender thread only.
  DrainSettings active_drain_;
  std::map<uint64_t, InFlight> inflight_;
  uint64_t live_from_ = 0;       // seqs above this are live on this connection
  uint64_t live_cursor_ = 0;     // highest live seq sent
  uint64_t backlog_after_ = 0;   // oldest-first: next backlog seq is above this
  uint64_t backlog_before_ = 0;  // newest-first: next backlog seq is below this
  bool backlog_done_ = true;
  uint64_t max_sent_ = 0;  // highest seq sent by this process before this connection
  uint64_t max_sent_now_ = 0;
  double tokens_ = 0;  // drain-rate bucket (readings)
  int64_t tokens_at_us_ = 0;
  int64_t next_due_us_ = INT64_MAX;
  size_t backlog_inflight_ = 0;
  std::vector<uint64_t> ack_scratch_;
  // Acknowledged batches whose delete failed (an I/O error): deleted again by the next pump()s
  // until it succeeds. They are no longer in flight, so nothing else would ever delete them.
  std::vector<uint64_t> undeleted_;
  int64_t undeleted_retry_us_ = 0;
  std::atomic<size_t> inflight_count_{0};

  metrics::Counter& sent_;
  metrics::Counter& resent_;
  metrics::Counter& backlog_sent_;
  metrics::Counter& acked_;
  metrics::Counter& rejected_;
  metrics::Counter& readings_sent_;
  metrics::Counter& readings_acked_;
  metrics::Counter& bad_acks_;
  metrics::Histogram& ack_latency_;
};

}  // namespace outpost::agent
