#pragma once

// The small interfaces between the data path (Aggregator workers, the Kafka poll thread, the
// anomaly detectors) and the operations side (device registry, dashboard, alerts). The data path
// only calls these; it knows nothing of what is behind them.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "outpost/wire/batch_generated.h"

namespace outpost::aggregator {

// A batch that passed verification and the semantic checks (re-sent duplicates included).
struct BatchSeen {
  std::string_view device;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  uint64_t dropped = 0;  // readings the agent reports dropped since its previous batch
  uint64_t items = 0;    // readings + windows
  int64_t now_us = 0;    // wall clock at the aggregator
};

// A batch whose every Kafka message was delivered.
struct BatchDelivered {
  std::string_view device;
  uint64_t items = 0;
  int64_t oldest_item_us = 0;  // earliest reading/window timestamp in the batch (agent clock)
  int64_t now_us = 0;          // wall clock at the delivery report
};

// Thread-safety: onBatch from any worker thread, onDelivered from the Kafka poll thread; both on
// the data path, so they must be cheap and must not block on I/O.
class BatchObserver {
 public:
  virtual ~BatchObserver() = default;
  virtual void onBatch(const BatchSeen& b) = 0;
  virtual void onDelivered(const BatchDelivered& d) = 0;
};

// Earliest timestamp of any reading (ts_us) or window (start_us) in a verified batch; 0 if empty.
int64_t oldestItemUs(const wire::Batch& batch);

// One anomaly raised by a detector. The detector side (branch issue4's workers) fills it; `json`
// is the event exactly as published on outpost.anomalies (forwarded to webhooks as is when set).
struct AnomalyEvent {
  std::string device;
  std::string sensor;
  std::string kind;   // e.g. "spike", "drift", "stuck", "dropout"
  double value = 0;   // the reading that raised it
  double score = 0;   // detector score, 0..1
  int64_t ts_us = 0;  // reading timestamp
  std::vector<std::pair<int64_t, double>>
      recent;  // the sensor's recent (ts_us, value), oldest first
  std::string json;
};

// Where anomaly events go besides Kafka (dashboard, counters, webhook).
// Thread-safety: onAnomaly from any thread; cheap, never blocks on I/O.
class AnomalySink {
 public:
  virtual ~AnomalySink() = default;
  virtual void onAnomaly(const AnomalyEvent& e) = 0;
};

}  // namespace outpost::aggregator
