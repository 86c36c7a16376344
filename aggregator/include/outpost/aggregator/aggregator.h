#pragma once

// The aggregator core, independent of the transport: verified batches in, Kafka messages out,
// acknowledgements back only after every message of a batch has a successful delivery report.
//
// Threads: transports call submit() from their own threads (it blocks while the worker queue is
// full: back-pressure to the broker); N workers verify, dedup and produce (each device is pinned to
// one worker); the Kafka poll thread turns delivery reports into acks; a flusher persists the
// dedup store. Workers also update the latest-state store (latest_store.h) once per new batch; a
// publisher thread sends the sensors that changed to the latest topic once per interval.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "outpost/aggregator/anomaly_stage.h"
#include "outpost/aggregator/dedup_store.h"
#include "outpost/aggregator/json.h"
#include "outpost/aggregator/kafka.h"
#include "outpost/aggregator/latest_store.h"
#include "outpost/aggregator/ops_hooks.h"
#include "outpost/common/bounded_queue.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"

namespace outpost::aggregator {

// Where acknowledgements for a device go (the transport the batch came in on).
// Thread-safety: sendAck may be called from any thread. It must not wait for the transport: it
// is called from librdkafka's delivery callback, which must keep serving delivery reports for
// the producer queue to drain (MqttIngest hands acks to its own publishing thread).
class AckSink {
 public:
  virtual ~AckSink() = default;
  // Returns false if the ack could not be handed to the transport (the agent will resend).
  virtual bool sendAck(const std::string& device, std::vector<uint8_t> ack) = 0;
};

struct Inbound {
  std::string device;   // identity the transport vouches for (MQTT topic segment)
  std::string payload;  // untrusted bytes
  std::string source;   // where it came from, e.g. the MQTT topic (dead-letter header)
  int64_t received_us = 0;
  AckSink* reply = nullptr;
  const char* transport = "mqtt";  // metrics label: "mqtt", "zmq"
};

struct AggregatorOptions {
  codec::VerifyLimits limits;
  std::string readings_topic = "outpost.readings";
  std::string deadletter_topic = "outpost.deadletter";
  size_t items_per_message = 1000;
  ReadingsFormat readings_format = ReadingsFormat::kBatch;  // kafka.readings_format
  size_t workers = 2;
  size_t queue_capacity = 256;  // per worker, in batches
  std::string dedup_path;
  int flush_interval_ms = 100;
  int64_t recovery_max_messages = 1000000;
  int recovery_timeout_ms = 60000;
  KafkaOptions kafka;
  AnomalyOptions anomalies;  // [detect]
  LatestOptions latest;      // [latest]
};

AggregatorOptions aggregatorOptionsFrom(const config::Config& cfg);

class Aggregator final : public PipelineStats {
 public:
  Aggregator(AggregatorOptions options, metrics::Registry& registry, const Clock& clock);
  ~Aggregator() override;

  // Opens the dedup store, recovers from Kafka's tail, starts the producer and the workers.
  // Throws std::runtime_error when it cannot.
  void start();
  // Blocks while the owning worker's queue is full. Returns false once stopping.
  bool submit(Inbound in);
  // Stops intake, drains the workers, waits for outstanding deliveries (acking what completes),
  // flushes the dedup store.
  void stop();

  bool healthy(std::string& detail) const;
  // Live anomaly detection: add observers (AnomalyDetection::addObserver) before start().
  AnomalyDetection& anomalies() { return anomaly_; }
  // The latest-state store (latest_store.h); nullptr with latest.enabled = false.
  LatestStore* latest() { return latest_.get(); }

  // Why the aggregator should not get traffic now (empty: ready): not started, Kafka unreachable,
  // a worker queue or the Kafka queue near full. May block up to ~0.5 s (Kafka probe).
  std::vector<std::string> notReadyReasons();

  // Ops hooks (ops_hooks.h); set before start(). The observer must outlive the aggregator.
  void setObserver(BatchObserver* observer) { observer_ = observer; }
  // Produces one ops event (device status, ...) to `topic`, keyed by `key`; delivery failures are
  // counted, never acked or retried. Returns false if it could not be queued.
  bool publishEvent(const std::string& topic, const std::string& key, const std::string& value);

  // PipelineStats (ops_hooks.h), for the dashboard: zeros before start().
  PipelineTotals totals() const override;
  PipelineLevels levels() const override;
  metrics::Histogram::Snapshot ackLatency() const override { return ack_latency_.snapshot(); }

 private:
  struct Pending;
  struct Worker;
  void process(Inbound& in, Worker& w);
  void pollAnomalies(Worker& w);  // silence timer
  void deadLetter(Inbound& in, const codec::DecodeError& why, const BatchKey* key);
  void onDelivery(const Delivery& d);
  void finish(Pending* p);
  void sendAck(Pending* p);
  void publishLatest();  // changed sensors to the latest topic (publisher thread, stop())

  AggregatorOptions opt_;
  metrics::Registry& registry_;
  const Clock& clock_;
  AnomalyDetection anomaly_;
  char unbatched_tag_ = 0;  // delivery-report opaque of events produced without a batch
  std::unique_ptr<DedupStore> dedup_;
  std::unique_ptr<KafkaProducer> producer_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::thread flusher_;
  std::unique_ptr<LatestStore> latest_;
  std::thread latest_publisher_;
  char latest_tag_ = 0;  // delivery-report opaque of outpost.latest records
  std::atomic<bool> stopping_{false};
  std::atomic<bool> started_{false};
  std::atomic<bool> running_once_{false};  // set when start() completes, never cleared

  BatchObserver* observer_ = nullptr;
  metrics::CounterVec received_;     // by transport
  metrics::CounterVec readings_in_;  // by transport
  metrics::CounterVec rejected_;     // by reason
  metrics::Counter& events_failed_;
  metrics::Counter& published_batches_;
  metrics::Counter& published_readings_;
  metrics::Counter& duplicates_;
  metrics::Counter& duplicates_inflight_;
  metrics::Counter& deadlettered_;
  metrics::Counter& delivery_failures_;
  metrics::Counter& acks_accepted_;
  metrics::Counter& acks_rejected_;
  metrics::Counter& dedup_flush_errors_;
  metrics::Counter& dropped_by_agents_;
  metrics::Histogram& ack_latency_;
  metrics::Counter& latest_published_;
  metrics::Counter& latest_failed_;
};

}  // namespace outpost::aggregator
