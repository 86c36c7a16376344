#include "outpost/aggregator/kafka.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>
#include <set>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "kafka/conf.h"
#include "outpost/common/signals.h"
#include "outpost/common/thread_name.h"

namespace outpost::aggregator {

Status setConf(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    return fail(ErrorCode::kInvalidArgument, "kafka property " + key + "=" + value + ": " + err);
  }
  return {};
}

Result<rd_kafka_conf_t*> baseConf(const KafkaOptions& o) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> props = {
      {"bootstrap.servers", o.bootstrap_servers},
      {"client.id", o.client_id},
      {"log_level", "4"},
  };
  props.insert(props.end(), o.extra.begin(), o.extra.end());
  for (const auto& [k, v] : props) {
    if (auto st = setConf(conf, k, v); !st) {
      rd_kafka_conf_destroy(conf);
      return std::unexpected(st.error());
    }
  }
  return conf;
}

rd_kafka_conf_t* clientConf(const KafkaOptions& options, const KafkaProps& props) {
  auto conf = baseConf(options);
  if (!conf) throw std::runtime_error(conf.error().toString());
  for (const auto& [k, v] : props) {
    if (auto st = setConf(*conf, k, v); !st) {
      rd_kafka_conf_destroy(*conf);
      throw std::runtime_error(st.error().toString());
    }
  }
  rd_kafka_conf_set_log_cb(*conf, logCallback);
  return *conf;
}

rd_kafka_t* newClient(rd_kafka_type_t type, rd_kafka_conf_t* conf, const std::string& what) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error("kafka " + what + ": " + err);
  }
  return rk;
}

rd_kafka_headers_t* newHeaders(const Headers& headers) {
  rd_kafka_headers_t* hdrs = rd_kafka_headers_new(headers.size());
  for (const auto& [k, v] : headers) {
    rd_kafka_header_add(hdrs, k.data(), static_cast<ssize_t>(k.size()), v.data(),
                        static_cast<ssize_t>(v.size()));
  }
  return hdrs;
}

void logCallback(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  if (level <= 3) spdlog::error("kafka {}: {}", fac, buf);
  else if (level <= 4) spdlog::warn("kafka {}: {}", fac, buf);
  else spdlog::debug("kafka {}: {}", fac, buf);
}

std::string headerValue(rd_kafka_headers_t* hdrs, const char* name) {
  const void* v = nullptr;
  size_t n = 0;
  if (!hdrs || rd_kafka_header_get_last(hdrs, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR || !v) {
    return {};
  }
  return std::string(static_cast<const char*>(v), n);
}

namespace {

template <typename T>
bool parseNum(const std::string& s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

void deliveryCallback(rd_kafka_t*, const void* msg_ptr, void* opaque) {
  const auto* msg = static_cast<const rd_kafka_message_t*>(msg_ptr);
  auto* self = static_cast<KafkaProducer*>(opaque);
  const bool uncertain = msg->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
                         rd_kafka_message_status(msg) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED;
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    self->delivered_->inc();
    self->brokers_down_.store(false);
  } else {
    self->failed_->inc();
    if (uncertain) self->uncertain_->inc();
  }
  auto* listener = static_cast<DeliveryListener*>(msg->_private);
  if (!listener) return;
  listener->onDelivery(Delivery{msg->err == RD_KAFKA_RESP_ERR_NO_ERROR,
                                msg->err ? rd_kafka_err2str(msg->err) : "",
                                msg->rkt ? rd_kafka_topic_name(msg->rkt) : "", msg->partition,
                                msg->offset, uncertain});
}

Result<std::unique_ptr<KafkaProducer>> KafkaProducer::create(const KafkaOptions& o,
                                                             metrics::Registry& registry) {
  auto conf = baseConf(o);
  if (!conf) return std::unexpected(conf.error());
  std::unique_ptr<KafkaProducer> p(new KafkaProducer());
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           // The delivery guarantee (design.md): a delivery report means every in-sync replica
           // has the message, retries cannot duplicate or reorder it. Idempotence implies both
           // acks and the in-flight cap; they are set explicitly so an extra property cannot
           // weaken them (librdkafka rejects idempotence with other values).
           {"enable.idempotence", "true"},
           {"acks", "all"},
           {"max.in.flight.requests.per.connection", "5"},
           {"socket.nagle.disable", "true"},  // requests must not wait for delayed ACKs
           {"linger.ms", std::to_string(o.linger_ms)},
           {"compression.type", o.compression},
           {"message.timeout.ms", std::to_string(o.message_timeout_ms)},
           {"queue.buffering.max.messages", std::to_string(o.queue_max_messages)},
           {"queue.buffering.max.kbytes", std::to_string(o.queue_max_kbytes)},
       }) {
    if (auto st = setConf(*conf, k, v); !st) {
      rd_kafka_conf_destroy(*conf);
      return std::unexpected(st.error());
    }
  }
  rd_kafka_conf_set_log_cb(*conf, logCallback);
  rd_kafka_conf_set_opaque(*conf, p.get());
  rd_kafka_conf_set_error_cb(*conf, [](rd_kafka_t* rk, int err, const char* reason, void* op) {
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
      static_cast<KafkaProducer*>(op)->brokers_down_.store(true);
    } else if (err == RD_KAFKA_RESP_ERR__FATAL) {
      // The idempotent producer can no longer keep its guarantee (e.g. the broker lost
      // messages it had acknowledged, or refused the producer id): every later produce fails.
      // Stop, unacked batches are resent by the agents, and a restart recovers from the
      // topics' tails what did reach Kafka.
      char why[512];
      const rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
      spdlog::critical("kafka producer: fatal error {}: {}; stopping (exit status 1) so the "
                       "service restarts and recovers from Kafka",
                       rd_kafka_err2name(orig), why[0] ? why : reason);
      static_cast<KafkaProducer*>(op)->fatal_->inc();
      signals::requestFailureStop();
    }
  });
  rd_kafka_conf_set_dr_msg_cb(*conf, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* op) {
    deliveryCallback(rk, m, op);
  });
  char err[512];
  p->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, *conf, err, sizeof err);
  if (!p->rk_) {
    rd_kafka_conf_destroy(*conf);
    return fail(ErrorCode::kInvalidArgument, std::string("kafka producer: ") + err);
  }
  spdlog::info("kafka producer: enable.idempotence=true acks=all max.in.flight=5 compression={} "
               "linger.ms={} bootstrap {}",
               o.compression, o.linger_ms, o.bootstrap_servers);
  p->queue_full_ = &registry.counter("outpost_aggregator_kafka_queue_full_total",
                                     "Times produce found librdkafka's queue full (intake paused)");
  p->paused_ = &registry.gauge(
      "outpost_aggregator_intake_paused",
      "Ingest workers waiting for room in the Kafka producer queue (0: intake flows)");
  p->delivered_ = &registry.counter("outpost_aggregator_kafka_messages_delivered_total",
                                    "Kafka messages with a successful delivery report");
  p->failed_ = &registry.counter("outpost_aggregator_kafka_messages_failed_total",
                                 "Kafka messages with a failed delivery report");
  p->uncertain_ = &registry.counter(
      "outpost_aggregator_kafka_messages_uncertain_total",
      "Failed Kafka messages the broker may have written anyway (possibly persisted); their "
      "batch, resent, may be on Kafka twice (docs/kafka.md)");
  p->fatal_ = &registry.counter("outpost_aggregator_kafka_fatal_errors_total",
                                "Fatal errors of the idempotent producer (the process stops)");
  KafkaProducer* raw = p.get();
  registry.gaugeFunction("outpost_aggregator_kafka_outstanding_messages",
                         "Messages queued in or in flight from the Kafka producer",
                         [raw] { return static_cast<double>(raw->outstanding()); });
  p->poll_thread_ = std::thread([raw] {
    setThreadName("op-kafka-poll");  // delivery reports -> acks
    while (!raw->stopping_.load()) rd_kafka_poll(raw->rk_, 50);
  });
  return p;
}

KafkaProducer::~KafkaProducer() {
  stop(5000);
  if (rk_) rd_kafka_destroy(rk_);
}

int KafkaProducer::outstanding() const { return rk_ ? rd_kafka_outq_len(rk_) : 0; }

bool KafkaProducer::reachable(int timeout_ms) {
  if (!rk_) return false;
  if (!brokers_down_.load()) return true;
  // Told every broker was down: ask for metadata (bounded) to see whether one is back.
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk_, 0, nullptr, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_metadata_destroy(md);
    brokers_down_.store(false);
    return true;
  }
  return false;
}

Status KafkaProducer::produce(const std::string& topic, std::string_view key,
                              std::string_view value, const Headers& headers,
                              DeliveryListener* listener) {
  bool paused = false;
  for (;;) {
    rd_kafka_headers_t* hdrs = newHeaders(headers);
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_, RD_KAFKA_V_TOPIC(topic.c_str()),
        RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(listener), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;  // headers now owned by the message
    rd_kafka_headers_destroy(hdrs);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      if (paused) paused_->add(-1);
      return fail(ErrorCode::kUnavailable,
                  "kafka produce to " + topic + ": " + rd_kafka_err2str(err));
    }
    // Back-pressure: wait for deliveries to make room; the caller's intake waits with us.
    if (!paused) {
      paused = true;
      queue_full_->inc();
      paused_->add(1);
    }
    if (stopping_.load()) {
      paused_->add(-1);
      return fail(ErrorCode::kUnavailable, "kafka producer stopping");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (paused) paused_->add(-1);
  return {};
}

void KafkaProducer::stop(int timeout_ms) {
  if (!rk_ || stopping_.exchange(true)) return;
  if (poll_thread_.joinable()) poll_thread_.join();
  // flush() serves the remaining delivery reports on this thread.
  if (rd_kafka_flush(rk_, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("kafka: {} messages still undelivered at shutdown (their batches are not acked "
                 "and will be resent by the agents)",
                 rd_kafka_outq_len(rk_));
  }
}

namespace {

// A topic-level error in a metadata answer that a moment may cure: a topic being created or
// its leader elected (LEADER_NOT_AVAILABLE), a broker whose metadata lags (UNKNOWN_TOPIC_OR_PART),
// a broker busy or in transition.
bool retriableTopicError(rd_kafka_resp_err_t e) {
  switch (e) {
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
      return true;
    default:
      return false;
  }
}

// How long an unknown topic is asked about again before it is taken for one that does not exist
// (a first start: nothing was produced to it, so there is nothing to recover).
constexpr auto kUnknownTopicWait = std::chrono::seconds(2);

// The partitions of `topic` for the start-up recovery. Any topic-level error in the answer used to
// read as "no partitions", and the recovery then skipped the topic: batches on Kafka but not yet
// acknowledged were produced again when their agents resent them (torture realkafka-proxy,
// docs/reliability.md). Now retriable errors are asked again until `deadline`; a topic still
// unknown after kUnknownTopicWait is taken for absent only if the dedup store never delivered to
// it; anything else is an error, and the aggregator refuses to start rather than duplicate.
Result<std::vector<int32_t>> topicPartitions(
    rd_kafka_t* rk, const std::string& topic,
    const std::map<TopicPartition, int64_t>& checkpoints,
    std::chrono::steady_clock::time_point deadline) {
  const auto start = std::chrono::steady_clock::now();
  const bool delivered_before =
      std::any_of(checkpoints.begin(), checkpoints.end(),
                  [&](const auto& cp) { return cp.first.topic == topic; });
  rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;  // the topic error of the last answer
  for (int attempt = 1;; ++attempt) {
    const auto now = std::chrono::steady_clock::now();
    const int wait_ms = static_cast<int>(std::max<int64_t>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()));
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const auto merr = rd_kafka_metadata(rk, 0, rkt, &md, wait_ms);
    rd_kafka_topic_destroy(rkt);
    if (merr != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // A request that ran out of the time left after retried topic errors: those are the news.
      const std::string why =
          last != RD_KAFKA_RESP_ERR_NO_ERROR
              ? std::string(rd_kafka_err2name(last)) + ": " + rd_kafka_err2str(last) +
                    ", still after " + std::to_string(attempt - 1) +
                    " attempts within dedup.recovery_timeout_ms"
              : std::string(rd_kafka_err2str(merr));
      return fail(ErrorCode::kUnavailable, "kafka recovery: metadata for " + topic + ": " + why);
    }
    std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> mg(
        md, rd_kafka_metadata_destroy);
    rd_kafka_resp_err_t terr = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    std::vector<int32_t> partitions;
    if (md->topic_cnt == 1) {
      terr = md->topics[0].err;
      for (int i = 0; i < md->topics[0].partition_cnt; ++i)
        partitions.push_back(md->topics[0].partitions[i].id);
    }
    if (terr == RD_KAFKA_RESP_ERR_NO_ERROR && !partitions.empty()) return partitions;
    if (terr == RD_KAFKA_RESP_ERR_NO_ERROR) terr = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
    const bool unknown = terr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    const auto after = std::chrono::steady_clock::now();
    if (unknown && !delivered_before && after - start >= kUnknownTopicWait) {
      spdlog::info("kafka recovery: topic {} does not exist (yet), nothing to recover from it",
                   topic);
      return std::vector<int32_t>{};
    }
    if (!retriableTopicError(terr) || after >= deadline) {
      std::string why = std::string(rd_kafka_err2name(terr)) + ": " + rd_kafka_err2str(terr);
      if (unknown) {
        why += " (the dedup store has delivered to it before; if the topic was deleted on "
               "purpose, start with a new dedup.path)";
      } else if (retriableTopicError(terr)) {
        why += ", still after " + std::to_string(attempt) + " attempts within "
               "dedup.recovery_timeout_ms";
      }
      return fail(ErrorCode::kUnavailable, "kafka recovery: metadata for " + topic + ": " + why);
    }
    if (attempt == 1) {
      spdlog::warn("kafka recovery: metadata for {}: {}; asking again", topic,
                   rd_kafka_err2name(terr));
    }
    last = terr;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

Result<uint64_t> recoverFromKafka(const KafkaOptions& options,
                                  const std::vector<std::string>& topics, DedupStore& store,
                                  int64_t max_messages_per_partition, int timeout_ms) {
  auto conf = baseConf(options);
  if (!conf) return std::unexpected(conf.error());
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"group.id", options.client_id + "-recovery"},
           {"enable.auto.commit", "false"},
           {"enable.partition.eof", "true"},
       }) {
    if (auto st = setConf(*conf, k, v); !st) {
      rd_kafka_conf_destroy(*conf);
      return std::unexpected(st.error());
    }
  }
  rd_kafka_conf_set_log_cb(*conf, logCallback);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, *conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(*conf);
    return fail(ErrorCode::kInvalidArgument, std::string("kafka consumer: ") + err);
  }
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> guard(rk, [](rd_kafka_t* k) {
    rd_kafka_consumer_close(k);
    rd_kafka_destroy(k);
  });

  const auto checkpoints = store.checkpoints();
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(8);
  std::unique_ptr<rd_kafka_topic_partition_list_t, void (*)(rd_kafka_topic_partition_list_t*)>
      list_guard(assignment, rd_kafka_topic_partition_list_destroy);
  std::map<TopicPartition, int64_t> end_offsets;
  uint64_t lost_messages = 0;
  const auto recovery_deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (const auto& topic : topics) {
    auto partitions = topicPartitions(rk, topic, checkpoints, recovery_deadline);
    if (!partitions) return std::unexpected(partitions.error());
    for (int32_t p : *partitions) {
      int64_t low = 0, high = 0;
      // A partition without a leader yet (a topic just created, a leader election in a real
      // cluster) answers NOT_LEADER / LEADER_NOT_AVAILABLE for a moment: retried, bounded by
      // timeout_ms in all.
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
      rd_kafka_resp_err_t werr;
      for (;;) {
        werr = rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, timeout_ms);
        const bool leaderless = werr == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                                werr == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
        if (!leaderless || std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      if (werr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return fail(ErrorCode::kUnavailable, "kafka recovery: watermarks of " + topic + "/" +
                                                 std::to_string(p) + ": " + rd_kafka_err2str(werr));
      }
      const auto it = checkpoints.find({topic, p});
      const int64_t start = RecoveryScan::startOffset(
          low, high, it != checkpoints.end() ? &it->second : nullptr, max_messages_per_partition,
          lost_messages);
      if (start < 0) continue;
      rd_kafka_topic_partition_list_add(assignment, topic.c_str(), p)->offset = start;
      end_offsets[{topic, p}] = high;
    }
  }
  if (lost_messages > 0) {
    spdlog::warn("kafka recovery: {} messages after the last checkpoint were already removed by "
                 "retention; batches among them that agents resend may be duplicated",
                 lost_messages);
  }
  if (assignment->cnt == 0) {
    spdlog::info("kafka recovery: nothing produced after the last checkpoint");
    return 0;
  }
  if (auto aerr = rd_kafka_assign(rk, assignment); aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail(ErrorCode::kUnavailable,
                std::string("kafka recovery: assign: ") + rd_kafka_err2str(aerr));
  }

  RecoveryScan scan;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!end_offsets.empty()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return fail(ErrorCode::kUnavailable, "kafka recovery: timed out reading the topic tails");
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (!m) continue;
    std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> mg(
        m, rd_kafka_message_destroy);
    const TopicPartition tp{m->rkt ? rd_kafka_topic_name(m->rkt) : "", m->partition};
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      end_offsets.erase(tp);
      continue;
    }
    if (m->err) {
      spdlog::warn("kafka recovery: {}", rd_kafka_message_errstr(m));
      continue;
    }
    rd_kafka_headers_t* hdrs = nullptr;
    rd_kafka_message_headers(m, &hdrs);
    scan.add(tp, m->offset, headerValue(hdrs, kHeaderDevice), headerValue(hdrs, kHeaderEpoch),
             headerValue(hdrs, kHeaderSeq), headerValue(hdrs, kHeaderPart),
             headerValue(hdrs, kHeaderParts));
    if (auto it = end_offsets.find(tp); it != end_offsets.end() && m->offset + 1 >= it->second) {
      end_offsets.erase(it);
    }
  }
  const RecoveryScan::Outcome out = scan.apply(store);
  spdlog::info("kafka recovery: scanned {} messages after the checkpoints, {} batches recovered "
               "as delivered, {} incomplete (will be produced again when resent)",
               out.scanned, out.recovered, out.partial);
  return out.recovered;
}

int64_t RecoveryScan::startOffset(int64_t low, int64_t high, const int64_t* checkpoint,
                                  int64_t max_messages, uint64_t& lost) {
  int64_t start = std::max(low, high - max_messages);
  if (checkpoint) {
    if (*checkpoint + 1 < low) lost += static_cast<uint64_t>(low - *checkpoint - 1);
    start = std::max(*checkpoint + 1, low);
  }
  return start >= high ? -1 : start;
}

void RecoveryScan::add(const TopicPartition& tp, int64_t offset, const std::string& device,
                       const std::string& epoch, const std::string& seq, const std::string& part_s,
                       const std::string& parts_s) {
  ++scanned_;
  BatchKey key;
  key.device = device;
  uint32_t part = 1, parts = 1;
  if (!key.device.empty() && parseNum(epoch, key.epoch) && parseNum(seq, key.seq) &&
      (part_s.empty() || parseNum(part_s, part)) && (parts_s.empty() || parseNum(parts_s, parts))) {
    parts_seen_[key].insert(part);
    parts_total_[key] = parts;
    first_offset_.try_emplace(key, tp, offset);
  }
  auto [it, fresh] = last_scanned_.try_emplace(tp, offset);
  if (!fresh) it->second = std::max(it->second, offset);
}

RecoveryScan::Outcome RecoveryScan::apply(DedupStore& store) const {
  Outcome out;
  out.scanned = scanned_;
  // The checkpoint may move to the end of what was scanned, but not past an incomplete batch.
  std::map<TopicPartition, int64_t> new_checkpoint = last_scanned_;
  for (const auto& [key, seen] : parts_seen_) {
    if (seen.size() >= parts_total_.at(key)) {
      store.markDone(key);
      ++out.recovered;
    } else {
      ++out.partial;
      const auto& [tp, off] = first_offset_.at(key);
      auto& cp = new_checkpoint[tp];
      cp = std::min(cp, off - 1);
    }
  }
  for (const auto& [tp, off] : new_checkpoint) store.raiseCheckpoint(tp, off);
  return out;
}

namespace {

class KafkaSink final : public Sink {
 public:
  KafkaSink(KafkaOptions options, int64_t recovery_max_messages, int recovery_timeout_ms)
      : opt_(std::move(options)),
        max_messages_(recovery_max_messages),
        timeout_ms_(recovery_timeout_ms) {}

  Result<uint64_t> recover(const std::vector<std::string>& topics, DedupStore& store) override {
    return recoverFromKafka(opt_, topics, store, max_messages_, timeout_ms_);
  }
  Result<std::unique_ptr<Publisher>> openPublisher(metrics::Registry& registry) override {
    auto p = KafkaProducer::create(opt_, registry);
    if (!p) return std::unexpected(p.error());
    return std::unique_ptr<Publisher>(std::move(*p));
  }

 private:
  KafkaOptions opt_;
  int64_t max_messages_;
  int timeout_ms_;
};

}  // namespace

std::unique_ptr<Sink> makeKafkaSink(const KafkaOptions& options, int64_t recovery_max_messages,
                                    int recovery_timeout_ms) {
  return std::make_unique<KafkaSink>(options, recovery_max_messages, recovery_timeout_ms);
}


}  // namespace outpost::aggregator
