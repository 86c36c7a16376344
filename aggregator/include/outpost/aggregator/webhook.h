#pragma once

// Alerts to an HTTP webhook: each event (anomaly, device offline/online) is POSTed as one JSON
// body. Delivery is retried with exponential backoff (jittered) on connection errors, 5xx and 429;
// other 4xx answers are final. A token bucket limits what an incident can send: events beyond the
// rate are not sent but counted, and one {"type":"alerts_suppressed",...} summary goes out as soon
// as the bucket allows. The queue is bounded (full: the event is dropped and counted).
//
// Threads: post() from any thread, never blocks on I/O; one sender thread ("op-webhook") does
// the HTTP work in order.

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "outpost/common/metrics.h"
#include "outpost/common/status.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::aggregator {

struct WebhookOptions {
  std::string url;               // http://host[:port]/path; empty: alerts are not sent
  size_t queue_capacity = 1000;  // events waiting to be sent
  int max_attempts = 5;          // per event, first try included
  int backoff_min_ms = 500;      // first retry delay; doubles up to backoff_max_ms
  int backoff_max_ms = 30000;
  int timeout_ms = 5000;        // connect and read timeout of one attempt
  double rate_per_minute = 30;  // token bucket refill
  int burst = 10;               // token bucket size
};

class Webhook {
 public:
  // Validates the URL (only http:// is supported: this cpp-httplib build has no TLS; put a local
  // TLS relay in front for https). Starts the sender thread.
  static Result<std::unique_ptr<Webhook>> create(const WebhookOptions& options,
                                                 metrics::Registry& registry);
  ~Webhook();

  // Queues one event (a JSON object). Returns false if it was rate-limited or the queue was full
  // (counted; rate-limited ones are reported in the next summary).
  bool post(std::string json);
  // Stops the sender; events not yet delivered are abandoned (counted as failed).
  void stop();

  struct Stats {
    uint64_t sent = 0, failed = 0, suppressed = 0, dropped = 0, attempts = 0;
  };
  Stats stats() const;

 private:
  Webhook(WebhookOptions options, metrics::Registry& registry);
  void run();
  bool deliver(const std::string& body);  // with retries; false when given up
  bool takeToken() REQUIRES(mu_);

  const WebhookOptions opt_;
  std::string host_;  // scheme://host:port
  std::string path_;

  mutable Mutex mu_;
  CondVar cv_;
  std::deque<std::string> queue_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  double tokens_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point refilled_ GUARDED_BY(mu_);
  uint64_t pending_suppressed_ GUARDED_BY(mu_) = 0;  // not yet reported in a summary
  int64_t suppressed_since_us_ GUARDED_BY(mu_) = 0;
  std::thread thread_;

  metrics::Counter& sent_;
  metrics::Counter& failed_;
  metrics::Counter& suppressed_;
  metrics::Counter& dropped_;
  metrics::Counter& attempts_;
};

}  // namespace outpost::aggregator
