#pragma once

// The small interfaces between the data path (Aggregator workers, the Kafka poll thread, the
// anomaly detectors) and the operations side (device registry, dashboard, alerts). The data path
// only calls these; it knows nothing of what is behind them.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "outpost/common/metrics.h"
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

// One anomaly raised by a detector (AggregatorApp in pipeline/app.cc fills it from the detection
// stage's AnomalyRecord); `json` is the event exactly as published on outpost.anomalies, forwarded
// to webhooks as is (when empty, the same renderer, appendAnomalyJson, makes it from these fields).
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

// The data path's running totals (counters: they only grow) as the dashboard shows them.
struct PipelineTotals {
  uint64_t batches_in = 0;           // batch messages received, every transport
  uint64_t readings_in = 0;          // readings in verified batches (duplicates included)
  uint64_t batches_published = 0;    // batches whose every Kafka message is delivered
  uint64_t readings_published = 0;   // readings delivered to the readings topic
  uint64_t rejected = 0;             // batches that failed verification, every reason
  uint64_t duplicates = 0;           // re-sent batches (already on Kafka or still in flight)
  uint64_t kafka_delivered = 0;      // Kafka messages with a successful delivery report
  uint64_t kafka_failed = 0;         // Kafka messages with a failed delivery report
  uint64_t undelivered_batches = 0;  // batches with a failed delivery report (not acked)
  uint64_t anomalies = 0;            // anomaly alarms raised, every kind
};

// The data path's current levels.
struct PipelineLevels {
  double kafka_outstanding = 0;      // messages queued in or in flight from the producer
  double intake_paused = 0;          // workers waiting for room in the producer queue
  std::vector<double> queue_depths;  // batches waiting, one per worker
};

// What the operations side reads of the data path, from the meters the stages own (no look-up of
// metrics by name). Thread-safety: any thread while the data path runs; cheap (atomic loads).
class PipelineStats {
 public:
  virtual ~PipelineStats() = default;
  virtual PipelineTotals totals() const = 0;
  virtual PipelineLevels levels() const = 0;
  // From receiving a batch to sending its ack (cumulative histogram).
  virtual metrics::Histogram::Snapshot ackLatency() const = 0;
};

}  // namespace outpost::aggregator
