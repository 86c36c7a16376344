#pragma once

// The aggregator core, independent of the transport: verified batches in, Kafka messages out,
// acknowledgements back only after every message of a batch has a successful delivery report.
//
// Threads: transports call submit() from their own threads (it blocks while the worker queue is
// full: back-pressure to the broker); N workers verify, dedup and produce (each device is pinned to
// one worker); the publisher's delivery thread turns delivery reports into acks (through the
// DeliveryTracker); a flusher persists the dedup store. Workers also update the latest-state store
// (latest_store.h) once per new batch; a publisher thread sends the sensors that changed to the
// latest topic once per interval.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "outpost/aggregator/ack_sink.h"
#include "outpost/aggregator/anomaly_stage.h"
#include "outpost/aggregator/dedup_store.h"
#include "outpost/aggregator/delivery_tracker.h"
#include "outpost/aggregator/intake.h"
#include "outpost/aggregator/json.h"
#include "outpost/aggregator/kafka.h"
#include "outpost/aggregator/publisher.h"
#include "outpost/aggregator/latest_store.h"
#include "outpost/aggregator/ops_hooks.h"
#include "outpost/common/bounded_queue.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"

namespace outpost::aggregator {

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
  // Non-empty: role ingest (cluster.h). A verified batch is not deduped, detected or rendered:
  // its bytes go unchanged to this topic (key = device id, outpost-* headers) and the agent is
  // acked after that delivery. There is no dedup store (no file, no start-up recovery), no latest
  // store and no detection; dead letters and ops events are as in the full pipeline.
  std::string forward_topic;
};

// Headers of a forwarded batch besides outpost-device/-epoch/-seq (kafka.h).
inline constexpr const char* kHeaderSource = "outpost-source";        // e.g. the MQTT topic
inline constexpr const char* kHeaderReceivedUs = "outpost-received-us";  // ingest wall clock
inline constexpr const char* kHeaderTransport = "outpost-transport";  // "mqtt", "zmq"
inline constexpr const char* kBatchContentType = "application/x-outpost-batch";

AggregatorOptions aggregatorOptionsFrom(const config::Config& cfg);

class Aggregator final : public Intake, public PipelineStats {
 public:
  // Publishes through `sink`.
  Aggregator(AggregatorOptions options, metrics::Registry& registry, const Clock& clock,
             std::unique_ptr<Sink> sink);
  // Publishes to Kafka: makeKafkaSink(options.kafka, options.recovery_*).
  Aggregator(AggregatorOptions options, metrics::Registry& registry, const Clock& clock);
  ~Aggregator() override;

  // Opens the dedup store, recovers what the sink already has (Kafka's tail), opens the
  // publisher and starts the workers (forwarding: only the publisher and the workers). Throws
  // std::runtime_error when it cannot.
  void start();
  // Blocks while the owning worker's queue is full. Returns false once stopping.
  bool submit(Inbound in) override;
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
  struct Worker;
  // The steps of one inbound batch, in order (worker thread): verify, then claim -> detect ->
  // publish, or forward. Each step that ends the batch's way (rejected, duplicate) says so by its
  // return value and has done what that case needs.
  void process(Inbound& in, Worker& w);
  bool forwarding() const { return !opt_.forward_topic.empty(); }
  // Identity, size, FlatBuffers Verifier, semantics; a failure is dead-lettered (nullptr).
  const wire::Batch* verify(Inbound& in, BatchKey& key);
  // Dedup: false for a batch already on Kafka (acked again) or being produced now.
  bool claim(const Inbound& in, const BatchKey& key);
  // The latest-state store and the worker's detectors (events into w.events).
  void detect(const Inbound& in, const wire::Batch& batch, Worker& w);
  // The readings parts and the events, all reporting to one BatchDelivery.
  void publish(const Inbound& in, const wire::Batch& batch, const BatchKey& key,
               uint64_t n_items, Worker& w);
  // Role ingest: the verified bytes as they came to opt_.forward_topic, one BatchDelivery.
  void forward(const Inbound& in, const BatchKey& key, uint64_t n_items);
  void deadLetter(Inbound& in, const codec::DecodeError& why, const BatchKey* key);
  void pollAnomalies(Worker& w);  // silence timer
  void finished(const BatchDelivery& d);  // the tracker's hook: ack or not
  void sendAck(const BatchDelivery::Batch& b);
  void publishLatest();  // changed sensors to the latest topic (publisher thread, stop())

  AggregatorOptions opt_;
  metrics::Registry& registry_;
  const Clock& clock_;
  std::unique_ptr<Sink> sink_;
  AnomalyDetection anomaly_;
  std::unique_ptr<DedupStore> dedup_;  // null when forwarding
  // Reports of messages without a batch: silence events, latest values, ops events.
  OutcomeListener unbatched_events_;
  OutcomeListener latest_reports_;
  OutcomeListener ops_event_reports_;
  DeliveryTracker tracker_;
  std::unique_ptr<Publisher> producer_;  // after tracker_: stopped and destroyed before it
  std::vector<std::unique_ptr<Worker>> workers_;
  std::thread flusher_;
  std::unique_ptr<LatestStore> latest_;
  std::thread latest_publisher_;
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
  metrics::Counter& forwarded_batches_;
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
