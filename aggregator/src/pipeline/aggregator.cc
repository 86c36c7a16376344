#include "outpost/aggregator/aggregator.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "outpost/aggregator/json.h"
#include "outpost/common/thread_name.h"

namespace outpost::aggregator {

namespace {

// Role ingest keeps no per-device state: no detection, no latest-value store.
AggregatorOptions withRole(AggregatorOptions o) {
  if (!o.forward_topic.empty()) {
    o.anomalies.enabled = false;
    o.latest.enabled = false;
  }
  return o;
}

}  // namespace

struct Aggregator::Worker {
  explicit Worker(size_t capacity) : queue(capacity) {}
  BoundedQueue<Inbound> queue;
  std::thread thread;
  std::string scratch;  // JSON buffer, reused
  std::unique_ptr<AnomalyStage> stage;  // detectors of this worker's devices
  std::vector<AnomalyRecord> events;     // reused
};

Aggregator::Aggregator(AggregatorOptions options, metrics::Registry& registry, const Clock& clock)
    : Aggregator(options, registry, clock,
                 makeKafkaSink(options.kafka, options.recovery_max_messages,
                               options.recovery_timeout_ms)) {}

Aggregator::Aggregator(AggregatorOptions options, metrics::Registry& registry, const Clock& clock,
                       std::unique_ptr<Sink> sink)
    : opt_(withRole(std::move(options))), registry_(registry), clock_(clock), sink_(std::move(sink)),
      anomaly_(opt_.anomalies, registry),
      unbatched_events_([this](bool ok) { anomaly_.onUnbatchedDelivery(ok); }),
      latest_reports_([this](bool ok) { (ok ? latest_published_ : latest_failed_).inc(); }),
      ops_event_reports_([this](bool ok) {
        if (!ok) events_failed_.inc();
      }),
      tracker_(opt_.anomalies.topic,
               {.delivered =
                    [this](const BatchDelivery& d, const TopicPartition& tp, int64_t offset) {
                      if (dedup_ && !d.batch().key.device.empty()) dedup_->delivered(tp, offset);
                    },
                .finished = [this](const BatchDelivery& d) { finished(d); }}),
      received_(registry, "outpost_aggregator_batches_received_total",
                "Batch messages received from agents (before verification), by transport",
                "transport"),
      readings_in_(registry, "outpost_aggregator_readings_received_total",
                   "Readings in verified batches (duplicates included), by transport",
                   "transport"),
      rejected_(registry, "outpost_aggregator_rejected_batches_total",
                "Batches that failed verification, by reason", "reason"),
      events_failed_(registry.counter("outpost_aggregator_ops_events_failed_total",
                                      "Ops events (device status) not delivered to Kafka")),
      published_batches_(registry.counter("outpost_aggregator_batches_published_total",
                                          "Batches whose every Kafka message is delivered")),
      published_readings_(registry.counter("outpost_aggregator_readings_published_total",
                                           "Readings delivered to the readings topic")),
      forwarded_batches_(registry.counter(
          "outpost_aggregator_batches_forwarded_total",
          "Role ingest: verified batches delivered to the batches topic (acked)")),
      duplicates_(registry.counter("outpost_aggregator_duplicate_batches_total",
                                   "Re-sent batches already on Kafka (acked again, not produced)")),
      duplicates_inflight_(registry.counter(
          "outpost_aggregator_duplicate_inflight_batches_total",
          "Re-sent batches whose first copy was still being delivered (not produced)")),
      deadlettered_(registry.counter("outpost_aggregator_deadletter_batches_total",
                                     "Batches delivered to the dead-letter topic")),
      delivery_failures_(registry.counter("outpost_aggregator_kafka_delivery_failures_total",
                                          "Batches with a failed delivery report (not acked)")),
      acks_accepted_(registry.counter("outpost_aggregator_acks_sent_total", "Acks sent to agents",
                                      {{"status", "accepted"}})),
      acks_rejected_(registry.counter("outpost_aggregator_acks_sent_total", "Acks sent to agents",
                                      {{"status", "rejected"}})),
      dedup_flush_errors_(registry.counter("outpost_aggregator_dedup_flush_errors_total",
                                           "Failed writes of the dedup store")),
      dropped_by_agents_(registry.counter(
          "outpost_aggregator_agent_dropped_readings_total",
          "Readings agents reported as dropped (outbox full, ...), from batch headers")),
      ack_latency_(registry.histogram("outpost_aggregator_batch_latency_seconds",
                                      "From receiving a batch to sending its ack",
                                      metrics::exponentialBuckets(0.0005, 2, 16))),
      latest_published_(registry.counter("outpost_aggregator_latest_published_total",
                                         "Latest-value records delivered to the latest topic")),
      latest_failed_(registry.counter(
          "outpost_aggregator_latest_publish_failed_total",
          "Latest-value records not queued or not delivered (the next change is sent again)")) {
  if (opt_.latest.enabled) {
    latest_ = std::make_unique<LatestStore>(opt_.latest, opt_.workers, registry);
  }
}

Aggregator::~Aggregator() { stop(); }

void Aggregator::start() {
  if (!forwarding()) {
    auto store = DedupStore::open(opt_.dedup_path);
    if (!store) throw std::runtime_error("dedup store: " + store.error().toString());
    dedup_ = std::move(*store);

    auto recovered = sink_->recover({opt_.readings_topic, opt_.deadletter_topic}, *dedup_);
    if (!recovered) {
      throw std::runtime_error("cannot read the tail of the Kafka topics to recover delivered "
                               "batches (" + recovered.error().toString() +
                               "); refusing to start, since acking without it could duplicate");
    }
    if (auto st = dedup_->flush(); !st) throw std::runtime_error(st.error().toString());
  }

  auto producer = sink_->openPublisher(registry_);
  if (!producer) throw std::runtime_error(producer.error().toString());
  producer_ = std::move(*producer);

  if (dedup_) {
    DedupStore* dedup = dedup_.get();
    registry_.gaugeFunction("outpost_aggregator_dedup_streams",
                            "(device, epoch) streams remembered by the dedup store",
                            [dedup] { return static_cast<double>(dedup->stats().devices); });
    registry_.gaugeFunction("outpost_aggregator_batches_in_progress",
                            "Batches produced and waiting for delivery reports",
                            [dedup] { return static_cast<double>(dedup->stats().in_progress); });
  } else {
    DeliveryTracker* tracker = &tracker_;
    registry_.gaugeFunction("outpost_aggregator_batches_in_progress",
                            "Batches produced and waiting for delivery reports",
                            [tracker] { return static_cast<double>(tracker->inFlight()); });
  }

  for (size_t i = 0; i < opt_.workers; ++i) {
    auto w = std::make_unique<Worker>(opt_.queue_capacity);
    Worker* raw = w.get();
    if (anomaly_.enabled()) raw->stage = anomaly_.newStage(opt_.workers);
    registry_.gaugeFunction("outpost_aggregator_queue_depth", "Batches waiting for a worker",
                            [raw] { return static_cast<double>(raw->queue.size()); },
                            {{"worker", std::to_string(i)}});
    w->thread = std::thread([this, raw, i] {
      setThreadName("op-worker-" + std::to_string(i));
      // Runs until the queue is closed and drained.
      for (;;) {
        auto in = raw->queue.pop(std::chrono::milliseconds(200));
        if (in) {
          process(*in, *raw);
        } else if (stopping_.load() && raw->queue.size() == 0) {
          break;
        }
        if (raw->stage && raw->queue.size() == 0) pollAnomalies(*raw);
      }
    });
    workers_.push_back(std::move(w));
  }
  if (dedup_) {
    flusher_ = std::thread([this] {
      setThreadName("op-dedup-flush");
      while (!stopping_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(opt_.flush_interval_ms));
        if (auto st = dedup_->flush(); !st) {
          dedup_flush_errors_.inc();
          spdlog::error("dedup store: {}", st.error().toString());
        }
      }
    });
  }
  if (latest_ && opt_.latest.publish_interval_ms > 0) {
    latest_publisher_ = std::thread([this] {
      setThreadName("op-latest-pub");
      const auto interval = std::chrono::milliseconds(opt_.latest.publish_interval_ms);
      auto next = std::chrono::steady_clock::now() + interval;
      while (!stopping_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(
            std::min<int>(100, opt_.latest.publish_interval_ms)));
        if (std::chrono::steady_clock::now() < next) continue;
        next += interval;
        publishLatest();
      }
    });
  }
  started_.store(true);
  running_once_.store(true);
}

PipelineTotals Aggregator::totals() const {
  PipelineTotals t;
  t.batches_in = received_.sum();
  t.readings_in = readings_in_.sum();
  t.batches_published = published_batches_.value() + forwarded_batches_.value();
  t.readings_published = published_readings_.value();
  t.rejected = rejected_.sum();
  t.duplicates = duplicates_.value() + duplicates_inflight_.value();
  t.undelivered_batches = delivery_failures_.value();
  t.anomalies = anomaly_.raised();
  if (running_once_.load()) {  // the producer exists from then on
    t.kafka_delivered = producer_->delivered();
    t.kafka_failed = producer_->failed();
  }
  return t;
}

PipelineLevels Aggregator::levels() const {
  PipelineLevels l;
  if (!running_once_.load()) return l;  // workers and producer are created by start()
  l.kafka_outstanding = producer_->outstanding();
  l.intake_paused = producer_->pausedWorkers();
  for (const auto& w : workers_) l.queue_depths.push_back(static_cast<double>(w->queue.size()));
  return l;
}

void Aggregator::publishLatest() {
  for (const auto& c : latest_->collectChanged()) {
    auto st = producer_->produce(opt_.latest.topic, c.key, c.value,
                                 {{"content-type", "application/json"}}, &latest_reports_);
    if (!st) latest_failed_.inc();
  }
}

bool Aggregator::submit(Inbound in) {
  if (stopping_.load() || workers_.empty()) return false;
  const size_t shard = std::hash<std::string>{}(in.device) % workers_.size();
  return workers_[shard]->queue.push(std::move(in));
}

void Aggregator::stop() {
  if (!started_.exchange(false)) return;
  stopping_.store(true);
  for (auto& w : workers_) w->queue.close();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  if (latest_publisher_.joinable()) {
    latest_publisher_.join();
    publishLatest();  // the last changes, before the producer drains
  }
  producer_->stop(5000);
  if (flusher_.joinable()) flusher_.join();
  if (!dedup_) {
    spdlog::info("aggregator stopped: {} batches forwarded to {}, {} dead letters",
                 forwarded_batches_.value(), opt_.forward_topic, deadlettered_.value());
    return;
  }
  if (auto st = dedup_->flush(); !st) spdlog::error("dedup store: {}", st.error().toString());
  spdlog::info("aggregator stopped: {} batches published, {} duplicates dropped, {} dead letters",
               published_batches_.value(), duplicates_.value(), deadlettered_.value());
}

bool Aggregator::healthy(std::string& detail) const {
  detail = "kafka outstanding " + std::to_string(producer_ ? producer_->outstanding() : 0);
  return started_.load();
}

std::vector<std::string> Aggregator::notReadyReasons() {
  std::vector<std::string> why;
  if (!started_.load() || stopping_.load()) return {"aggregator not running"};
  if (!producer_->reachable(500)) why.push_back("kafka: all brokers down");
  const int outstanding = producer_->outstanding();
  if (outstanding > opt_.kafka.queue_max_messages * 9 / 10) {
    why.push_back("kafka: producer queue " + std::to_string(outstanding) + " messages (limit " +
                  std::to_string(opt_.kafka.queue_max_messages) + ")");
  }
  for (size_t i = 0; i < workers_.size(); ++i) {
    const size_t depth = workers_[i]->queue.size();
    if (depth * 10 > opt_.queue_capacity * 9) {
      why.push_back("worker " + std::to_string(i) + " queue " + std::to_string(depth) + "/" +
                    std::to_string(opt_.queue_capacity) + " batches");
    }
  }
  return why;
}

bool Aggregator::publishEvent(const std::string& topic, const std::string& key,
                              const std::string& value) {
  if (!producer_ || stopping_.load()) return false;
  auto st = producer_->produce(topic, key, value, {{"content-type", "application/json"}},
                              &ops_event_reports_);
  if (!st) events_failed_.inc();
  return st.has_value();
}

void Aggregator::process(Inbound& in, Worker& w) {
  received_.with(in.transport).inc();
  BatchKey key;
  const wire::Batch* batch = verify(in, key);
  if (!batch) return;
  const uint64_t n_items = (batch->readings() ? batch->readings()->size() : 0) +
                           (batch->windows() ? batch->windows()->size() : 0);
  readings_in_.with(in.transport).inc(n_items);
  if (observer_) {
    observer_->onBatch({key.device, key.epoch, key.seq, batch->dropped(), n_items, clock_.nowUs()});
  }
  if (forwarding()) {
    // Not deduped here (a resend may reach another ingest instance): the agents' drop counts
    // are counted where batches are deduped, by the process role.
    forward(in, key, n_items);
    return;
  }
  if (!claim(in, key)) return;
  dropped_by_agents_.inc(batch->dropped());
  detect(in, *batch, w);
  publish(in, *batch, key, n_items, w);
}

const wire::Batch* Aggregator::verify(Inbound& in, BatchKey& key) {
  // Every key, ack and Kafka message is per device: without an identity from the transport
  // (e.g. the MQTT topic outpost/v1//batch) a batch cannot be accepted, whatever it says.
  if (!codec::isValidDeviceId(in.device)) {
    deadLetter(in, {codec::Reason::kBadDeviceId, "no valid device id in " + in.source}, nullptr);
    return nullptr;
  }
  const auto bytes = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(in.payload.data()),
                                              in.payload.size());
  auto verified = codec::verifyBatch(bytes, opt_.limits);
  if (!verified) {
    deadLetter(in, verified.error(), nullptr);
    return nullptr;
  }
  const wire::Batch& batch = **verified;
  // The key uses the transport's identity: a batch claiming another device is still acked (as
  // rejected) only to the device it came from.
  key = BatchKey{in.device, batch.epoch(), batch.seq()};
  if (auto sem = codec::checkBatchSemantics(batch, opt_.limits, clock_.nowUs(), in.device); !sem) {
    const bool ackable = key.epoch != 0 && key.seq != 0;
    deadLetter(in, sem.error(), ackable ? &key : nullptr);
    return nullptr;
  }
  return &batch;
}

bool Aggregator::claim(const Inbound& in, const BatchKey& key) {
  switch (dedup_->begin(key)) {
    case DedupStore::State::kDone: {
      duplicates_.inc();
      const codec::AckContent ack{key.device, key.epoch, key.seq, wire::AckStatus::Accepted, ""};
      if (in.reply && in.reply->sendAck(in.device, codec::encodeAck(ack))) acks_accepted_.inc();
      return false;
    }
    case DedupStore::State::kInProgress: duplicates_inflight_.inc(); return false;
    case DedupStore::State::kNew: return true;
  }
  return false;
}

void Aggregator::detect(const Inbound& in, const wire::Batch& batch, Worker& w) {
  if (latest_) latest_->update(in.device, batch, clock_.nowUs());
  w.events.clear();
  if (w.stage) w.stage->onBatch(in.device, batch, clock_.monotonicUs(), w.events);
}

void Aggregator::publish(const Inbound& in, const wire::Batch& batch, const BatchKey& key,
                         uint64_t n_items, Worker& w) {
  const BatchJson rendered(batch, opt_.items_per_message, opt_.readings_format);
  const size_t parts = rendered.parts();
  const size_t total = parts + w.events.size();  // anomaly events gate the ack too
  BatchDelivery& delivery = tracker_.begin(
      {.key = key,
       .reply = in.reply,
       .readings = n_items,
       .oldest_item_us = observer_ ? oldestItemUs(batch) : 0,
       .received_mono_us = clock_.monotonicUs()},
      total);
  const std::string epoch_s = std::to_string(key.epoch), seq_s = std::to_string(key.seq),
                    parts_s = std::to_string(parts);
  std::string& json = w.scratch;
  for (size_t i = 0; i < total; ++i) {
    json.clear();
    Status st;
    if (i < parts) {
      rendered.appendPart(i, in.received_us, json);
      st = producer_->produce(opt_.readings_topic, key.device, json,
                              {{kHeaderDevice, key.device},
                               {kHeaderEpoch, epoch_s},
                               {kHeaderSeq, seq_s},
                               {kHeaderPart, std::to_string(i + 1)},
                               {kHeaderParts, parts_s},
                               {"content-type", "application/json"}},
                              &delivery);
    } else {
      st = anomaly_.produce(*producer_, w.events[i - parts], &delivery, json);
    }
    if (!st) {
      spdlog::warn("batch {}/{}/{}: {}", key.device, key.epoch, key.seq, st.error().toString());
      // Messages never produced will never report: account for them here. This may finish (and
      // destroy) `delivery`, so it is the last use.
      delivery.notProduced(total - i);
      return;
    }
  }
}

void Aggregator::forward(const Inbound& in, const BatchKey& key, uint64_t n_items) {
  BatchDelivery& delivery = tracker_.begin({.key = key,
                                            .reply = in.reply,
                                            .readings = n_items,
                                            .received_mono_us = clock_.monotonicUs()},
                                           1);
  auto st = producer_->produce(opt_.forward_topic, key.device, in.payload,
                              {{kHeaderDevice, key.device},
                               {kHeaderEpoch, std::to_string(key.epoch)},
                               {kHeaderSeq, std::to_string(key.seq)},
                               {kHeaderSource, in.source},
                               {kHeaderReceivedUs, std::to_string(in.received_us)},
                               {kHeaderTransport, in.transport},
                               {"content-type", kBatchContentType}},
                              &delivery);
  if (!st) {
    spdlog::warn("batch {}/{}/{}: {}", key.device, key.epoch, key.seq, st.error().toString());
    delivery.notProduced(1);  // finishes (and destroys) `delivery`: not acked
  }
}

void Aggregator::pollAnomalies(Worker& w) {
  w.events.clear();
  if (!w.stage->poll(clock_.monotonicUs(), w.events)) return;
  for (const AnomalyRecord& r : w.events) {
    if (auto st = anomaly_.produce(*producer_, r, &unbatched_events_, w.scratch); !st) {
      anomaly_.onUnbatchedDelivery(false);
      spdlog::warn("anomaly event {}/{} not produced: {}", r.device, r.sensor,
                   st.error().toString());
    }
  }
}

void Aggregator::deadLetter(Inbound& in, const codec::DecodeError& why, const BatchKey* key) {
  rejected_.with(codec::reasonName(why.reason)).inc();
  spdlog::warn("rejected batch from '{}' ({} bytes, {}): {}", in.device, in.payload.size(),
               in.source, why.toString());
  if (key && dedup_ && dedup_->begin(*key) != DedupStore::State::kNew) {
    duplicates_.inc();  // already dead-lettered (or in progress): do not repeat it
    return;
  }
  std::vector<std::pair<std::string, std::string>> headers = {
      {kHeaderReason, codec::reasonName(why.reason)},
      {"outpost-reason-detail", why.detail},
      {"outpost-source", in.source},
      {"outpost-received-us", std::to_string(in.received_us)},
  };
  if (key) {
    headers.push_back({kHeaderDevice, key->device});
    headers.push_back({kHeaderEpoch, std::to_string(key->epoch)});
    headers.push_back({kHeaderSeq, std::to_string(key->seq)});
  }
  BatchDelivery& delivery = tracker_.begin({.key = key ? *key : BatchKey{},
                                            .reply = key ? in.reply : nullptr,
                                            .dead_letter = true,
                                            .reason = why.toString(),
                                            .received_mono_us = clock_.monotonicUs()},
                                           1);
  auto st = producer_->produce(opt_.deadletter_topic, in.device, in.payload, headers, &delivery);
  if (!st) {
    spdlog::error("dead letter not produced: {}", st.error().toString());
    delivery.notProduced(1);
  }
}

void Aggregator::finished(const BatchDelivery& d) {
  const BatchDelivery::Batch& b = d.batch();
  if (d.failed()) {
    delivery_failures_.inc();
    if (dedup_ && !b.key.device.empty()) dedup_->abort(b.key, d.parts());
    spdlog::warn("batch {}/{}/{} not delivered to Kafka ({}); not acked, the agent will resend",
                 b.key.device, b.key.epoch, b.key.seq, d.firstError());
    return;
  }
  if (b.key.device.empty()) {
    deadlettered_.inc();
    return;
  }
  if (dedup_) dedup_->complete(b.key, d.parts());
  if (b.dead_letter) {
    deadlettered_.inc();
  } else if (forwarding()) {
    forwarded_batches_.inc();
  } else {
    published_batches_.inc();
    published_readings_.inc(b.readings);
    if (observer_) {
      observer_->onDelivered({b.key.device, b.readings, b.oldest_item_us, clock_.nowUs()});
    }
  }
  sendAck(b);
}

void Aggregator::sendAck(const BatchDelivery::Batch& b) {
  if (!b.reply) return;
  codec::AckContent ack{b.key.device, b.key.epoch, b.key.seq,
                        b.dead_letter ? wire::AckStatus::Rejected : wire::AckStatus::Accepted,
                        b.dead_letter ? b.reason : ""};
  if (!b.reply->sendAck(b.key.device, codec::encodeAck(ack))) return;
  (b.dead_letter ? acks_rejected_ : acks_accepted_).inc();
  ack_latency_.observe(static_cast<double>(clock_.monotonicUs() - b.received_mono_us) / 1e6);
}

}  // namespace outpost::aggregator
