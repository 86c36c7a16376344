#include "outpost/aggregator/process_role.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <span>
#include <stdexcept>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "kafka/conf.h"
#include "outpost/aggregator/cluster_view.h"
#include "outpost/aggregator/device_state.h"
#include "outpost/aggregator/json.h"
#include "outpost/aggregator/reorder_buffer.h"
#include "outpost/common/codec.h"
#include "outpost/common/http_server.h"
#include "outpost/common/json.h"
#include "outpost/common/signals.h"
#include "outpost/common/thread_name.h"

namespace outpost::aggregator {
namespace {

struct ErrorFree {
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
};
using KafkaError = std::unique_ptr<rd_kafka_error_t, ErrorFree>;
struct ListFree {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, ListFree>;

std::string_view bytesOf(const void* p, size_t n) {
  return p ? std::string_view(static_cast<const char*>(p), n) : std::string_view();
}

int64_t toInt(const std::string& s) {
  try {
    return s.empty() ? 0 : std::stoll(s);
  } catch (...) {
    return 0;
  }
}

}  // namespace

// Everything the processing thread owns, and what the HTTP threads read of it (under mu).
struct ProcessRole::Impl final : public Publisher {
  explicit Impl(ProcessRole& owner);
  ~Impl() override;

  // Publisher, for AnomalyDetection::produce: messages join the open transaction; failures make
  // the transaction abort (librdkafka), so no listener is needed.
  Status produce(const std::string& topic, std::string_view key, std::string_view value,
                 const Headers& headers, DeliveryListener* listener) override;
  void stop(int timeout_ms) override { rd_kafka_flush(producer, timeout_ms); }
  int outstanding() const override { return producer ? rd_kafka_outq_len(producer) : 0; }
  bool reachable(int) override { return !brokers_down.load(); }
  uint64_t delivered() const override { return delivered_.value(); }
  uint64_t failed() const override { return failed_.value(); }
  double pausedWorkers() const override { return 0.0; }

  void open();
  void loop();

  // One consumed message of outpost.batches: verify, restore seq order, process.
  void handle(const rd_kafka_message_t& m);
  // Identity, FlatBuffers Verifier, semantics; a failure is dead-lettered (nullptr).
  const wire::Batch* verify(const std::string& device, int32_t partition, int64_t offset,
                            std::string_view payload);
  // Dedup, latest values, detection, readings and events (into the open transaction).
  void process(const std::string& device, const wire::Batch& batch, int32_t partition,
               int64_t received_us);
  void processHeld(std::vector<ReorderBuffer::Held> held);
  // After the highest seq of (device, epoch) processed; 0 when the stream is unknown.
  uint64_t nextExpected(const std::string& device, uint64_t epoch, int32_t partition) const;
  void deadLetter(const std::string& device, int32_t partition, int64_t offset,
                  std::string_view payload, const codec::DecodeError& why);
  Status produceTo(const std::string& topic, int32_t partition, std::string_view key,
                   std::string_view value, const Headers& headers);
  void begin();
  // Writes the state records and the offsets, commits. False: the transaction was aborted (the
  // caller rewinds, or is giving the partitions up anyway).
  bool commit();
  void abort();
  // After an aborted transaction: the owned partitions' state and positions as last committed.
  void rewind();
  void pollSilence(int64_t now_mono_us);
  void updateLag();

  void onAssign(rd_kafka_topic_partition_list_t* parts);
  void onRevoke(rd_kafka_topic_partition_list_t* parts);
  // Reads the state records of `partitions` (outpost.state) into owned.
  void restore(const std::vector<int32_t>& partitions);
  void dropPartition(int32_t p);
  void publishAssignment();

  ProcessRole& o;
  const ClusterOptions& opt;
  rd_kafka_t* producer = nullptr;
  rd_kafka_t* consumer = nullptr;
  rd_kafka_t* restorer = nullptr;
  int32_t partition_count = 0;
  std::unique_ptr<AnomalyStage> stage;
  ReorderBuffer reorder;

  struct Partition {
    std::unordered_map<std::string, DeviceDedup> devices;
    int64_t next_offset = RD_KAFKA_OFFSET_INVALID;  // after the last message processed
    int64_t committed = RD_KAFKA_OFFSET_INVALID;    // as committed by the last transaction
  };
  std::map<int32_t, Partition> owned;
  std::map<int32_t, Partition> parked;  // revoked after a clean commit: reused if reassigned
  std::unordered_map<std::string, int32_t> device_partition;
  std::set<std::string> dirty;    // devices touched by the open transaction
  std::set<int32_t> txn_partitions;
  bool txn_open = false;
  int64_t txn_started_us = 0;
  uint64_t txn_batches = 0, txn_readings = 0, txn_messages = 0, txn_dropped = 0;
  std::vector<int64_t> txn_received_us;  // for the latency histogram, at commit
  std::vector<AnomalyRecord> events;
  std::string scratch, state_value;

  mutable Mutex mu;
  std::vector<int32_t> assigned GUARDED_BY(mu);
  bool restoring GUARDED_BY(mu) = false;
  std::atomic<bool> brokers_down{false};
  std::atomic<bool> loop_alive{false};
  std::atomic<int64_t> total_lag{0};  // batches behind on the owned partitions (updateLag)
  std::atomic<bool> broken{false};  // a rebalance callback failed: leave the loop

  metrics::Counter& consumed_;
  metrics::Counter& published_batches_;
  metrics::Counter& published_readings_;
  metrics::Counter& duplicates_;
  metrics::Counter& deadlettered_;
  metrics::CounterVec rejected_;
  metrics::CounterVec transactions_;  // by result
  metrics::Counter& committed_;
  metrics::Counter& aborted_;
  metrics::Counter& state_written_;
  metrics::Counter& state_restored_;
  metrics::Counter& state_invalid_;
  metrics::Counter& detector_restore_failed_;
  metrics::Counter& rebalances_;
  metrics::Counter& held_;
  metrics::Counter& reorder_gaps_;
  metrics::Counter& dropped_by_agents_;
  metrics::Counter& delivered_;
  metrics::Counter& failed_;
  metrics::Gauge& assigned_gauge_;
  metrics::Histogram& restore_seconds_;
  metrics::Histogram& commit_latency_;
  std::vector<metrics::Gauge*> lag_;  // by partition
};

ProcessRole::Impl::Impl(ProcessRole& owner)
    : o(owner), opt(owner.opt_),
      reorder(int64_t{owner.opt_.reorder_wait_ms} * 1000,
              static_cast<size_t>(owner.opt_.reorder_max_batches)),
      consumed_(o.registry_.counter("outpost_aggregator_batches_consumed_total",
                                    "Batches consumed from the batches topic (process role)")),
      published_batches_(o.registry_.counter("outpost_aggregator_batches_published_total",
                                             "Batches whose every Kafka message is delivered")),
      published_readings_(o.registry_.counter("outpost_aggregator_readings_published_total",
                                              "Readings delivered to the readings topic")),
      duplicates_(o.registry_.counter(
          "outpost_aggregator_duplicate_batches_total",
          "Re-sent batches already on Kafka (acked again, not produced)")),
      deadlettered_(o.registry_.counter("outpost_aggregator_deadletter_batches_total",
                                        "Batches delivered to the dead-letter topic")),
      rejected_(o.registry_, "outpost_aggregator_rejected_batches_total",
                "Batches that failed verification, by reason", "reason"),
      transactions_(o.registry_, "outpost_aggregator_transactions_total",
                    "Kafka transactions of the process role, by result", "result"),
      committed_(transactions_.with("committed")),
      aborted_(transactions_.with("aborted")),
      state_written_(o.registry_.counter("outpost_aggregator_state_records_written_total",
                                         "Device state records produced to the state topic")),
      state_restored_(o.registry_.counter(
          "outpost_aggregator_state_devices_restored_total",
          "Devices whose state was read back from the state topic at an assignment")),
      state_invalid_(o.registry_.counter(
          "outpost_aggregator_state_records_invalid_total",
          "State records that failed verification at restore (the device starts afresh)")),
      detector_restore_failed_(o.registry_.counter(
          "outpost_aggregator_state_detectors_reset_total",
          "Devices whose detector state could not be restored (other format version, ...): "
          "their detectors warm up again; dedup memory is kept")),
      rebalances_(o.registry_.counter("outpost_aggregator_rebalances_total",
                                      "Consumer group assignments received")),
      held_(o.registry_.counter(
          "outpost_aggregator_reordered_batches_total",
          "Batches that arrived before a lower seq of their device and waited for it")),
      reorder_gaps_(o.registry_.counter(
          "outpost_aggregator_reorder_gaps_total",
          "Devices whose waiting batches went on with a seq still missing (waited "
          "cluster.reorder_wait_ms, or cluster.reorder_max_batches held)")),
      dropped_by_agents_(o.registry_.counter(
          "outpost_aggregator_agent_dropped_readings_total",
          "Readings agents reported as dropped (outbox full, ...), from batch headers")),
      delivered_(o.registry_.counter("outpost_aggregator_kafka_messages_delivered_total",
                                     "Kafka messages with a successful delivery report")),
      failed_(o.registry_.counter("outpost_aggregator_kafka_messages_failed_total",
                                  "Kafka messages with a failed delivery report")),
      assigned_gauge_(o.registry_.gauge("outpost_aggregator_partitions_assigned",
                                        "Partitions of the batches topic this instance owns")),
      restore_seconds_(o.registry_.histogram(
          "outpost_aggregator_state_restore_seconds",
          "Reading the state records of newly assigned partitions",
          metrics::exponentialBuckets(0.01, 2, 12))),
      commit_latency_(o.registry_.histogram(
          "outpost_aggregator_commit_latency_seconds",
          "From an ingest instance receiving a batch to its outputs committed on Kafka",
          metrics::exponentialBuckets(0.001, 2, 16))) {}

ProcessRole::Impl::~Impl() {
  if (restorer) rd_kafka_destroy(restorer);
  if (consumer) rd_kafka_destroy(consumer);
  if (producer) {
    rd_kafka_flush(producer, 5000);
    rd_kafka_destroy(producer);
  }
}

void ProcessRole::Impl::open() {
  const KafkaOptions& k = o.pipeline_.kafka;
  // The transactional producer. message.timeout.ms is left to librdkafka: it must not exceed
  // transaction.timeout.ms, and a message that fails aborts its transaction.
  const KafkaProps producer_props = {
      {"transactional.id", "outpost-process-" + opt.instance_id},
      {"transaction.timeout.ms", std::to_string(opt.transaction_timeout_ms)},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"socket.nagle.disable", "true"},
      {"linger.ms", std::to_string(k.linger_ms)},
      {"compression.type", k.compression},
      {"queue.buffering.max.messages", std::to_string(k.queue_max_messages)},
      {"queue.buffering.max.kbytes", std::to_string(k.queue_max_kbytes)}};
  rd_kafka_conf_t* pconf = clientConf(k, producer_props);
  rd_kafka_conf_set_opaque(pconf, this);
  rd_kafka_conf_set_dr_msg_cb(pconf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* op) {
    auto* self = static_cast<Impl*>(op);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      self->delivered_.inc();
      self->brokers_down.store(false);
    } else {
      self->failed_.inc();  // the transaction will abort; commit() says so
    }
  });
  rd_kafka_conf_set_error_cb(pconf, [](rd_kafka_t* rk, int err, const char* reason, void* op) {
    auto* self = static_cast<Impl*>(op);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) self->brokers_down.store(true);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      char why[512];
      const rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
      spdlog::critical("kafka producer: fatal error {}: {}; stopping (exit status 1)",
                       rd_kafka_err2name(orig), why[0] ? why : reason);
      signals::requestFailureStop();
    }
  });
  producer = newClient(RD_KAFKA_PRODUCER, pconf, "transactional producer");

  // Both topics exist, with the same partition count: a device's state record goes to the
  // partition number of its batches.
  for (const std::string* topic : {&opt.batches_topic, &opt.state_topic}) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(producer, topic->c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_metadata(producer, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("kafka: no metadata for topic " + *topic + ": " +
                               rd_kafka_err2str(err));
    }
    const int32_t n = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR
                          ? md->topics[0].partition_cnt
                          : 0;
    rd_kafka_metadata_destroy(md);
    if (n <= 0) {
      throw std::runtime_error("kafka: topic " + *topic + " does not exist (create it with the "
                               "partition count of the largest fleet expected: docs/scaling.md)");
    }
    if (topic == &opt.batches_topic) {
      partition_count = n;
    } else if (n != partition_count) {
      throw std::runtime_error("kafka: " + opt.state_topic + " has " + std::to_string(n) +
                               " partitions and " + opt.batches_topic + " " +
                               std::to_string(partition_count) + "; they must be equal");
    }
  }
  for (int32_t p = 0; p < partition_count; ++p) {
    lag_.push_back(&o.registry_.gauge(
        "outpost_aggregator_consumer_lag",
        "Batches of the batches topic not yet processed, by owned partition (0 when not owned)",
        {{"partition", std::to_string(p)}}));
  }

  // Fences an earlier incarnation of this instance id and aborts its open transaction.
  if (KafkaError e{rd_kafka_init_transactions(producer, 30000)}) {
    throw std::runtime_error(std::string("kafka: init_transactions: ") +
                             rd_kafka_error_string(e.get()));
  }

  // The reader of state records (assign only, never joins a group, never commits).
  const KafkaProps reader_props = {
      {"group.id", opt.group + "-restore"},
      {"enable.auto.commit", "false"},
      {"enable.partition.eof", "true"},
      {"isolation.level", "read_committed"},
      // It reads to the end and stops: a fetch at the end of a partition would otherwise wait the
      // default 500 ms before it answers, and that wait is what an assignment took (restores of a
      // few KB took 1.0, 1.5 or 2.0 s: docs/benchmarks.md, "Issue 19").
      {"fetch.wait.max.ms", "10"},
      {"auto.offset.reset", "earliest"}};
  rd_kafka_conf_t* rconf = clientConf(k, reader_props);
  restorer = newClient(RD_KAFKA_CONSUMER, rconf, "state reader");

  // The group member.
  const KafkaProps member_props = {
      {"group.id", opt.group},
      {"group.instance.id", opt.instance_id},
      {"partition.assignment.strategy", "range"},
      {"session.timeout.ms", std::to_string(opt.session_timeout_ms)},
      // librdkafka's default heartbeat (3 s) is as long as a short session: the member would time
      // itself out between heartbeats and rebalance forever. A third, as Kafka advises.
      {"heartbeat.interval.ms", std::to_string(std::max(opt.session_timeout_ms / 3, 100))},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"isolation.level", "read_committed"},
      {"auto.offset.reset", "earliest"}};
  rd_kafka_conf_t* cconf = clientConf(k, member_props);
  rd_kafka_conf_set_opaque(cconf, this);
  rd_kafka_conf_set_rebalance_cb(
      cconf, [](rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                 void* op) {
        auto* self = static_cast<Impl*>(op);
        // No exception may cross librdkafka's C frames: a failure ends the loop instead.
        try {
          if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
            self->onAssign(parts);
          } else {
            self->onRevoke(parts);
          }
        } catch (const std::exception& e) {
          spdlog::critical("process role: rebalance failed: {}; stopping (exit status 1)",
                           e.what());
          self->broken.store(true);
          signals::requestFailureStop();
        }
      });
  consumer = newClient(RD_KAFKA_CONSUMER, cconf, "consumer");
  rd_kafka_poll_set_consumer(consumer);
  PartitionList topics{rd_kafka_topic_partition_list_new(1)};
  rd_kafka_topic_partition_list_add(topics.get(), opt.batches_topic.c_str(),
                                    RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(consumer, topics.get()); err) {
    throw std::runtime_error("kafka: subscribe to " + opt.batches_topic + ": " +
                             rd_kafka_err2str(err));
  }
  if (o.anomaly_.enabled()) stage = o.anomaly_.newStage(1);
  spdlog::info("process role: instance {} in group {}, {} partitions of {}, transactional.id "
               "outpost-process-{}, commit every {} ms",
               opt.instance_id, opt.group, partition_count, opt.batches_topic, opt.instance_id,
               opt.commit_interval_ms);
}

void ProcessRole::Impl::loop() {
  loop_alive.store(true);
  int64_t next_lag_us = 0;
  while (!o.stopping_.load() && !signals::stopRequested() && !broken.load()) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 20);
    if (m) {
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        handle(*m);
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        spdlog::warn("kafka consumer: {}", rd_kafka_message_errstr(m));
        if (m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) brokers_down.store(true);
      }
      rd_kafka_message_destroy(m);
    }
    rd_kafka_poll(producer, 0);  // delivery reports
    const int64_t now = o.clock_.monotonicUs();
    if (reorder.size() > 0) {
      auto expired = reorder.takeExpired(now);
      if (!expired.empty()) {
        reorder_gaps_.inc();
        processHeld(std::move(expired));
      }
    }
    if (stage) pollSilence(now);
    if (txn_open && now - txn_started_us >= int64_t{opt.commit_interval_ms} * 1000) {
      if (!commit()) rewind();
    }
    if (now >= next_lag_us) {
      updateLag();
      next_lag_us = now + 1000000;
    }
  }
  if (txn_open && !commit()) spdlog::warn("process role: last transaction aborted at shutdown");
  // Static membership: closing does not leave the group, so a restart within
  // session.timeout.ms gets the same partitions without a rebalance (docs/scaling.md).
  rd_kafka_consumer_close(consumer);
  loop_alive.store(false);
}

void ProcessRole::Impl::begin() {
  if (txn_open) return;
  if (KafkaError e{rd_kafka_begin_transaction(producer)}) {
    spdlog::critical("kafka: begin_transaction: {}; stopping (exit status 1)",
                     rd_kafka_error_string(e.get()));
    signals::requestFailureStop();
    throw std::runtime_error(rd_kafka_error_string(e.get()));
  }
  txn_open = true;
  txn_started_us = o.clock_.monotonicUs();
}

Status ProcessRole::Impl::produceTo(const std::string& topic, int32_t partition,
                                    std::string_view key, std::string_view value,
                                    const Headers& headers) {
  for (;;) {
    rd_kafka_headers_t* hdrs = newHeaders(headers);
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return {};
    rd_kafka_headers_destroy(hdrs);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || o.stopping_.load()) {
      return fail(ErrorCode::kUnavailable,
                  "kafka produce to " + topic + ": " + rd_kafka_err2str(err));
    }
    rd_kafka_poll(producer, 10);  // deliveries make room
  }
}

Status ProcessRole::Impl::produce(const std::string& topic, std::string_view key,
                                  std::string_view value, const Headers& headers,
                                  DeliveryListener*) {
  return produceTo(topic, RD_KAFKA_PARTITION_UA, key, value, headers);
}

void ProcessRole::Impl::handle(const rd_kafka_message_t& m) {
  auto pit = owned.find(m.partition);
  if (pit == owned.end()) return;  // not ours (any more): the owner processes it
  begin();
  consumed_.inc();
  pit->second.next_offset = m.offset + 1;
  txn_partitions.insert(m.partition);
  ++txn_messages;

  const std::string device(bytesOf(m.key, m.key_len));
  rd_kafka_headers_t* hdrs = nullptr;
  rd_kafka_message_headers(&m, &hdrs);
  const int64_t received_us = toInt(headerValue(hdrs, "outpost-received-us"));
  const std::string_view payload = bytesOf(m.payload, m.len);
  const wire::Batch* batch = verify(device, m.partition, m.offset, payload);
  if (!batch) return;
  // Ingest instances share a device's batches: restore its seq order first.
  const uint64_t next = nextExpected(device, batch->epoch(), m.partition);
  if (opt.reorder_wait_ms > 0 && !ReorderBuffer::inOrder(batch->seq(), next)) {
    ReorderBuffer::Held h{device,   batch->epoch(),      batch->seq(),
                          m.partition, m.offset,         std::string(payload),
                          received_us, o.clock_.monotonicUs()};
    if (reorder.hold(std::move(h))) {
      held_.inc();
      return;
    }
    // The device holds as many as it may: what it holds goes on first, in order.
    reorder_gaps_.inc();
    processHeld(reorder.takeDevice(device));
  }
  process(device, *batch, m.partition, received_us);
  processHeld(reorder.takeReady(device, batch->epoch(),
                                nextExpected(device, batch->epoch(), m.partition)));
}

uint64_t ProcessRole::Impl::nextExpected(const std::string& device, uint64_t epoch,
                                         int32_t partition) const {
  auto pit = owned.find(partition);
  if (pit == owned.end()) return 0;
  auto dit = pit->second.devices.find(device);
  if (dit == pit->second.devices.end()) return 0;
  auto eit = dit->second.epochs().find(epoch);
  if (eit == dit->second.epochs().end() || eit->second.empty()) return 0;
  return eit->second.rbegin()->second + 1;  // after the highest seq processed
}

void ProcessRole::Impl::processHeld(std::vector<ReorderBuffer::Held> held) {
  if (held.empty()) return;
  begin();
  for (const ReorderBuffer::Held& h : held) {
    if (!owned.count(h.partition)) continue;  // revoked meanwhile: its next owner reads it
    if (const wire::Batch* b = verify(h.device, h.partition, h.offset, h.payload)) {
      process(h.device, *b, h.partition, h.received_us);
    }
  }
}

const wire::Batch* ProcessRole::Impl::verify(const std::string& device, int32_t partition,
                                             int64_t offset, std::string_view payload) {
  // The topic is writable by whoever has the rights: its bytes are verified again.
  if (!codec::isValidDeviceId(device)) {
    deadLetter(device, partition, offset, payload,
               {codec::Reason::kBadDeviceId, "no valid device id in the message key"});
    return nullptr;
  }
  const auto bytes =
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  auto verified = codec::verifyBatch(bytes, o.pipeline_.limits);
  if (!verified) {
    deadLetter(device, partition, offset, payload, verified.error());
    return nullptr;
  }
  const wire::Batch& batch = **verified;
  if (auto sem = codec::checkBatchSemantics(batch, o.pipeline_.limits, o.clock_.nowUs(), device);
      !sem) {
    deadLetter(device, partition, offset, payload, sem.error());
    return nullptr;
  }
  return &batch;
}

void ProcessRole::Impl::process(const std::string& device, const wire::Batch& batch,
                                int32_t partition, int64_t received_us) {
  DeviceDedup& dedup = owned[partition].devices[device];
  device_partition[device] = partition;
  txn_partitions.insert(partition);
  if (dedup.contains(batch.epoch(), batch.seq())) {
    duplicates_.inc();
    return;
  }
  dedup.add(batch.epoch(), batch.seq());
  dirty.insert(device);

  if (o.latest_) o.latest_->update(device, batch, o.clock_.nowUs());
  events.clear();
  if (stage) stage->onBatch(device, batch, o.clock_.monotonicUs(), events);

  const BatchJson rendered(batch, o.pipeline_.items_per_message, o.pipeline_.readings_format);
  const std::string epoch_s = std::to_string(batch.epoch()), seq_s = std::to_string(batch.seq()),
                    parts_s = std::to_string(rendered.parts());
  for (size_t i = 0; i < rendered.parts(); ++i) {
    scratch.clear();
    rendered.appendPart(i, received_us, scratch);
    auto st = produceTo(o.pipeline_.readings_topic, RD_KAFKA_PARTITION_UA, device, scratch,
                        {{kHeaderDevice, device},
                         {kHeaderEpoch, epoch_s},
                         {kHeaderSeq, seq_s},
                         {kHeaderPart, std::to_string(i + 1)},
                         {kHeaderParts, parts_s},
                         {"content-type", "application/json"}});
    if (!st) throw std::runtime_error(st.error().toString());  // stopping
  }
  for (const AnomalyRecord& r : events) {
    if (auto st = o.anomaly_.produce(*this, r, nullptr, scratch); !st) {
      throw std::runtime_error(st.error().toString());
    }
  }
  ++txn_batches;
  txn_dropped += batch.dropped();
  txn_readings += (batch.readings() ? batch.readings()->size() : 0) +
                  (batch.windows() ? batch.windows()->size() : 0);
  if (received_us > 0) txn_received_us.push_back(received_us);
}

void ProcessRole::Impl::deadLetter(const std::string& device, int32_t partition, int64_t offset,
                                   std::string_view payload, const codec::DecodeError& why) {
  rejected_.with(codec::reasonName(why.reason)).inc();
  spdlog::warn("rejected batch at {}[{}]@{} ('{}', {} bytes): {}", opt.batches_topic, partition,
               offset, device, payload.size(), why.toString());
  auto st = produceTo(o.pipeline_.deadletter_topic, RD_KAFKA_PARTITION_UA, device, payload,
                      {{kHeaderReason, codec::reasonName(why.reason)},
                       {"outpost-reason-detail", why.detail},
                       {"outpost-source", opt.batches_topic + "[" + std::to_string(partition) +
                                              "]@" + std::to_string(offset)}});
  if (!st) throw std::runtime_error(st.error().toString());
  deadlettered_.inc();
}

void ProcessRole::Impl::pollSilence(int64_t now_mono_us) {
  events.clear();
  if (!stage->poll(now_mono_us, events) || events.empty()) return;
  begin();
  for (const AnomalyRecord& r : events) {
    if (auto st = o.anomaly_.produce(*this, r, nullptr, scratch); !st) {
      throw std::runtime_error(st.error().toString());
    }
    auto it = device_partition.find(r.device);
    if (it != device_partition.end()) {
      dirty.insert(r.device);
      txn_partitions.insert(it->second);
    }
  }
}

bool ProcessRole::Impl::commit() {
  if (!txn_open) return true;
  const int64_t now_mono = o.clock_.monotonicUs();
  // One state record per touched device, to the partition number of its batches.
  for (const std::string& device : dirty) {
    auto dp = device_partition.find(device);
    if (dp == device_partition.end()) continue;
    auto pit = owned.find(dp->second);
    if (pit == owned.end()) continue;
    DeviceStateRecord rec;
    rec.device = device;
    rec.dedup = pit->second.devices[device];
    rec.updated_us = o.clock_.nowUs();
    if (stage) stage->saveDevice(device, now_mono, rec.detectors);
    state_value = encodeDeviceState(rec);
    auto st = produceTo(opt.state_topic, dp->second, device, state_value,
                        {{"content-type", "application/x-outpost-state"}});
    if (!st) {
      spdlog::warn("process role: state record of {}: {}", device, st.error().toString());
      abort();
      return false;
    }
  }
  if (o.latest_) {
    for (const auto& c : o.latest_->collectChanged()) {
      if (auto st = produce(o.latest_->options().topic, c.key, c.value,
                            {{"content-type", "application/json"}}, nullptr);
          !st) {
        abort();
        return false;
      }
    }
  }
  // The consumed positions, committed with the outputs (KIP-447: fenced if the group has
  // moved on without us).
  PartitionList offsets{rd_kafka_topic_partition_list_new(static_cast<int>(txn_partitions.size()))};
  std::vector<std::pair<int32_t, int64_t>> positions;
  for (int32_t p : txn_partitions) {
    auto pit = owned.find(p);
    if (pit == owned.end() || pit->second.next_offset < 0) continue;
    // Not past a batch still waiting for its order: a crash must read it again.
    int64_t pos = pit->second.next_offset;
    if (auto held = reorder.lowestHeldOffset(p); held && *held < pos) pos = *held;
    rd_kafka_topic_partition_list_add(offsets.get(), opt.batches_topic.c_str(), p)->offset = pos;
    positions.emplace_back(p, pos);
  }
  if (offsets->cnt > 0) {
    rd_kafka_consumer_group_metadata_t* cgmd = rd_kafka_consumer_group_metadata(consumer);
    KafkaError e{rd_kafka_send_offsets_to_transaction(producer, offsets.get(), cgmd, -1)};
    rd_kafka_consumer_group_metadata_destroy(cgmd);
    if (e) {
      spdlog::warn("process role: sending offsets to the transaction: {}",
                   rd_kafka_error_string(e.get()));
      if (rd_kafka_error_is_fatal(e.get())) {
        spdlog::critical("process role: fenced or fatal; stopping (exit status 1)");
        signals::requestFailureStop();
        throw std::runtime_error(rd_kafka_error_string(e.get()));
      }
      abort();
      return false;
    }
  }
  for (int attempt = 1;; ++attempt) {
    KafkaError e{rd_kafka_commit_transaction(producer, opt.transaction_timeout_ms)};
    if (!e) break;
    spdlog::warn("process role: commit_transaction (attempt {}): {}", attempt,
                 rd_kafka_error_string(e.get()));
    if (rd_kafka_error_is_fatal(e.get())) {
      spdlog::critical("process role: fenced or fatal; stopping (exit status 1)");
      signals::requestFailureStop();
      throw std::runtime_error(rd_kafka_error_string(e.get()));
    }
    if (rd_kafka_error_txn_requires_abort(e.get()) || attempt >= 10 || o.stopping_.load()) {
      abort();
      return false;
    }
    // Retriable (e.g. a timeout): the same commit is asked for again.
  }
  committed_.inc();
  published_batches_.inc(txn_batches);
  published_readings_.inc(txn_readings);
  dropped_by_agents_.inc(txn_dropped);
  state_written_.inc(dirty.size());
  const int64_t now_us = o.clock_.nowUs();
  for (int64_t r : txn_received_us) {
    commit_latency_.observe(static_cast<double>(now_us - r) / 1e6);
  }
  for (const auto& [p, pos] : positions) {
    auto pit = owned.find(p);
    if (pit != owned.end()) pit->second.committed = pos;
  }
  txn_open = false;
  dirty.clear();
  txn_partitions.clear();
  txn_received_us.clear();
  txn_batches = txn_readings = txn_messages = txn_dropped = 0;
  return true;
}

void ProcessRole::Impl::abort() {
  aborted_.inc();
  if (KafkaError e{rd_kafka_abort_transaction(producer, -1)}) {
    spdlog::critical("process role: abort_transaction: {}; stopping (exit status 1)",
                     rd_kafka_error_string(e.get()));
    signals::requestFailureStop();
    throw std::runtime_error(rd_kafka_error_string(e.get()));
  }
  txn_open = false;
  dirty.clear();
  txn_partitions.clear();
  txn_received_us.clear();
  txn_batches = txn_readings = txn_messages = txn_dropped = 0;
}

void ProcessRole::Impl::rewind() {
  // The in-memory state has the aborted batches in it: the partitions start again from what
  // was committed (state records and consumer offsets).
  std::vector<int32_t> parts;
  for (const auto& [p, _] : owned) parts.push_back(p);
  spdlog::warn("process role: transaction aborted; rewinding {} partitions to their last commit",
               parts.size());
  for (int32_t p : parts) dropPartition(p);
  restore(parts);
  PartitionList list{rd_kafka_topic_partition_list_new(static_cast<int>(parts.size()))};
  for (int32_t p : parts) {
    rd_kafka_topic_partition_list_add(list.get(), opt.batches_topic.c_str(), p);
  }
  if (auto err = rd_kafka_committed(consumer, list.get(), 30000); err) {
    spdlog::critical("process role: committed offsets unavailable after an abort ({}); stopping "
                     "(exit status 1) so that a restart resumes from them",
                     rd_kafka_err2str(err));
    signals::requestFailureStop();
    throw std::runtime_error("rewind");
  }
  for (int i = 0; i < list->cnt; ++i) {
    auto& e = list->elems[i];
    if (e.offset < 0) e.offset = RD_KAFKA_OFFSET_BEGINNING;
    owned[e.partition].committed = e.offset;
  }
  if (KafkaError e{rd_kafka_seek_partitions(consumer, list.get(), 30000)}) {
    spdlog::critical("process role: seek after an abort: {}; stopping (exit status 1)",
                     rd_kafka_error_string(e.get()));
    signals::requestFailureStop();
    throw std::runtime_error("rewind");
  }
}

void ProcessRole::Impl::dropPartition(int32_t p) {
  reorder.dropPartition(p);  // re-read by the next owner: the offsets stopped before them
  auto it = owned.find(p);
  if (it == owned.end()) return;
  for (const auto& [device, _] : it->second.devices) {
    if (stage) stage->dropDevice(device);
    device_partition.erase(device);
    dirty.erase(device);
  }
  owned.erase(it);
  if (static_cast<size_t>(p) < lag_.size()) lag_[p]->set(0);
}

void ProcessRole::Impl::onRevoke(rd_kafka_topic_partition_list_t* parts) {
  // The open transaction commits before the partitions go (their next owner starts from it).
  const bool lost = rd_kafka_assignment_lost(consumer);
  const bool clean = !lost && commit();
  for (int i = 0; i < parts->cnt; ++i) {
    const int32_t p = parts->elems[i].partition;
    auto it = owned.find(p);
    if (it == owned.end()) continue;
    if (clean) {
      parked[p] = std::move(it->second);
      owned.erase(it);
    } else {
      dropPartition(p);
    }
  }
  rd_kafka_assign(consumer, nullptr);
  spdlog::info("process role: {} partitions revoked{}", parts->cnt,
               lost ? " (lost: the group moved on without this member)" : "");
  publishAssignment();
}

void ProcessRole::Impl::onAssign(rd_kafka_topic_partition_list_t* parts) {
  rebalances_.inc();
  const auto t0 = std::chrono::steady_clock::now();
  {
    MutexLock lock(mu);
    restoring = true;
  }
  // A parked partition is reused only if nobody committed on it since we did.
  PartitionList committed{rd_kafka_topic_partition_list_copy(parts)};
  const bool have_committed = rd_kafka_committed(consumer, committed.get(), 30000) ==
                              RD_KAFKA_RESP_ERR_NO_ERROR;
  std::vector<int32_t> to_restore;
  for (int i = 0; i < parts->cnt; ++i) {
    const int32_t p = parts->elems[i].partition;
    auto pk = parked.find(p);
    const int64_t now_committed = have_committed ? committed->elems[i].offset : INT64_MIN;
    if (pk != parked.end() && pk->second.committed == now_committed) {
      owned[p] = std::move(pk->second);
      parked.erase(pk);
    } else {
      to_restore.push_back(p);
    }
  }
  for (auto& [p, part] : parked) {  // moved elsewhere
    owned[p] = std::move(part);
    dropPartition(p);
  }
  parked.clear();
  restore(to_restore);
  for (int32_t p : to_restore) {
    if (have_committed) {
      for (int i = 0; i < committed->cnt; ++i) {
        if (committed->elems[i].partition == p) owned[p].committed = committed->elems[i].offset;
      }
    }
  }
  rd_kafka_assign(consumer, parts);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  restore_seconds_.observe(secs);
  {
    MutexLock lock(mu);
    restoring = false;
  }
  spdlog::info("process role: assigned {} partitions ({} restored from {}) in {:.3f} s",
               parts->cnt, to_restore.size(), opt.state_topic, secs);
  publishAssignment();
}

void ProcessRole::Impl::restore(const std::vector<int32_t>& partitions) {
  if (partitions.empty()) return;
  // The reader learns the partitions' leaders before the assignment: a partition assigned
  // without a known leader gets its start offset queried only after librdkafka's fixed 500 ms
  // retry ("no current leader for partition"), which is what a fresh instance's first restore
  // took (docs/bench-notes/cluster.md). The handle keeps the topic known for the assignment.
  std::unique_ptr<rd_kafka_topic_t, void (*)(rd_kafka_topic_t*)> state_topic(
      rd_kafka_topic_new(restorer, opt.state_topic.c_str(), nullptr), rd_kafka_topic_destroy);
  if (state_topic) {
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(restorer, 0, state_topic.get(), &md, 10000) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy(md);
    }  // else: the assignment below finds the leaders itself, only later
  }
  PartitionList list{rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()))};
  for (int32_t p : partitions) {
    rd_kafka_topic_partition_list_add(list.get(), opt.state_topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  if (auto err = rd_kafka_assign(restorer, list.get()); err) {
    throw std::runtime_error("kafka: assign " + opt.state_topic + ": " + rd_kafka_err2str(err));
  }
  std::set<int32_t> remaining(partitions.begin(), partitions.end());
  std::map<int32_t, std::unordered_map<std::string, std::string>> latest;  // last record wins
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(opt.restore_timeout_ms);
  while (!remaining.empty()) {
    if (std::chrono::steady_clock::now() > deadline) {
      rd_kafka_assign(restorer, nullptr);
      spdlog::critical("process role: reading {} took longer than cluster.restore_timeout_ms "
                       "({} ms); stopping (exit status 1) rather than process without state",
                       opt.state_topic, opt.restore_timeout_ms);
      signals::requestFailureStop();
      throw std::runtime_error("state restore timed out");
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(restorer, 100);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      remaining.erase(m->partition);
    } else if (m->err) {
      spdlog::warn("process role: reading {}: {}", opt.state_topic, rd_kafka_message_errstr(m));
    } else if (m->key) {
      auto& devices = latest[m->partition];
      std::string key(bytesOf(m->key, m->key_len));
      if (m->payload) {
        devices[std::move(key)].assign(static_cast<const char*>(m->payload), m->len);
      } else {
        devices.erase(key);  // tombstone: the device was forgotten
      }
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_assign(restorer, nullptr);
  const int64_t now_mono = o.clock_.monotonicUs();
  for (int32_t p : partitions) {
    Partition& part = owned[p];
    for (auto& [device, value] : latest[p]) {
      auto rec = decodeDeviceState(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(value.data()), value.size()));
      if (!rec || rec->device != device) {
        state_invalid_.inc();
        spdlog::warn("process role: state record of '{}' in {}[{}] rejected: {}", device,
                     opt.state_topic, p,
                     rec ? "its device differs from the key" : rec.error().toString());
        continue;
      }
      part.devices[device] = std::move(rec->dedup);
      device_partition[device] = p;
      state_restored_.inc();
      if (stage && !rec->detectors.empty()) {
        const auto bytes = std::span<const uint8_t>(
            reinterpret_cast<const uint8_t*>(rec->detectors.data()), rec->detectors.size());
        if (auto st = stage->restoreDevice(device, bytes, now_mono); !st) {
          detector_restore_failed_.inc();
          spdlog::warn("process role: detectors of '{}' not restored ({}); they warm up again",
                       device, st.error().toString());
        }
      }
    }
  }
}

void ProcessRole::Impl::publishAssignment() {
  std::vector<int32_t> now;
  for (const auto& [p, _] : owned) now.push_back(p);
  assigned_gauge_.set(static_cast<double>(now.size()));
  MutexLock lock(mu);
  assigned = std::move(now);
}

void ProcessRole::Impl::updateLag() {
  if (owned.empty()) {
    total_lag.store(0);
    return;
  }
  PartitionList list{rd_kafka_topic_partition_list_new(static_cast<int>(owned.size()))};
  for (const auto& [p, _] : owned) {
    rd_kafka_topic_partition_list_add(list.get(), opt.batches_topic.c_str(), p);
  }
  if (rd_kafka_position(consumer, list.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  int64_t total = 0;
  for (int i = 0; i < list->cnt; ++i) {
    const auto& e = list->elems[i];
    int64_t lo = 0, hi = 0;
    if (rd_kafka_get_watermark_offsets(consumer, opt.batches_topic.c_str(), e.partition, &lo,
                                       &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0 || static_cast<size_t>(e.partition) >= lag_.size()) {
      continue;
    }
    const int64_t pos = e.offset >= 0 ? e.offset : lo;
    const int64_t lag = std::max<int64_t>(0, hi - pos);
    lag_[e.partition]->set(static_cast<double>(lag));
    total += lag;
  }
  total_lag.store(total);
}

// --- ProcessRole ---

ProcessRole::ProcessRole(AggregatorOptions pipeline, ClusterOptions options,
                         metrics::Registry& registry, const Clock& clock)
    : pipeline_(std::move(pipeline)), opt_(std::move(options)), registry_(registry),
      clock_(clock), anomaly_(pipeline_.anomalies, registry) {
  if (pipeline_.latest.enabled) {
    latest_ = std::make_unique<LatestStore>(pipeline_.latest, 1, registry);
  }
}

ProcessRole::~ProcessRole() { stop(); }

void ProcessRole::start() {
  impl_ = std::make_unique<Impl>(*this);
  impl_->open();
  started_.store(true);
  thread_ = std::thread([this] {
    setThreadName("op-process");
    try {
      impl_->loop();
    } catch (const std::exception& e) {
      spdlog::critical("process role stopped: {}", e.what());
      impl_->loop_alive.store(false);
      signals::requestFailureStop();
    }
  });
}

void ProcessRole::stop() {
  if (!started_.exchange(false)) return;
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  impl_.reset();
  spdlog::info("process role stopped");
}

std::vector<std::string> ProcessRole::notReadyReasons() const {
  if (!started_.load() || stopping_.load() || !impl_ || !impl_->loop_alive.load()) {
    return {"process role not running"};
  }
  std::vector<std::string> why;
  if (impl_->brokers_down.load()) why.push_back("kafka: all brokers down");
  const int64_t lag = impl_->total_lag.load();
  if (opt_.ready_max_lag > 0 && lag > opt_.ready_max_lag) {
    why.push_back("consumer lag " + std::to_string(lag) +
                  " batches on the owned partitions (limit " + std::to_string(opt_.ready_max_lag) +
                  ", cluster.ready_max_lag)");
  }
  MutexLock lock(impl_->mu);
  if (impl_->restoring) why.push_back("restoring device state from " + opt_.state_topic);
  if (impl_->assigned.empty()) why.push_back("no partition of " + opt_.batches_topic + " assigned");
  return why;
}

bool ProcessRole::healthy(std::string& detail) const {
  const bool alive = started_.load() && impl_ && impl_->loop_alive.load();
  size_t n = 0;
  if (impl_) {
    MutexLock lock(impl_->mu);
    n = impl_->assigned.size();
  }
  detail = std::string("process role ") + (alive ? "running" : "not running") + ", " +
           std::to_string(n) + " partitions";
  return alive;
}

void ProcessRole::addRoutes(HttpServer& http, const ClusterView* view) {
  http.addHandler("/api/cluster", [this, view] {
    std::string body;
    json::Writer w(body);
    w.beginObject()
        .member("instance", opt_.instance_id)
        .member("role", "process")
        .member("group", opt_.group)
        .member("topic", opt_.batches_topic);
    w.key("partitions").beginArray();
    if (impl_) {
      MutexLock lock(impl_->mu);
      for (int32_t p : impl_->assigned) w.integer(p);
    }
    w.endArray();
    w.member("partition_count", static_cast<int64_t>(impl_ ? impl_->partition_count : 0));
    if (view) view->writeMembers(w);
    w.endObject();
    return HttpServer::Response{200, "application/json", std::move(body)};
  });
}

}  // namespace outpost::aggregator
