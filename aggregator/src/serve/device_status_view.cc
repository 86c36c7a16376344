#include "outpost/aggregator/device_status_view.h"

#include <librdkafka/rdkafka.h>

#include <charconv>
#include <chrono>
#include <set>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "kafka/conf.h"
#include "outpost/aggregator/ops.h"
#include "outpost/common/codec.h"
#include "outpost/common/http_server.h"
#include "outpost/common/json.h"
#include "outpost/common/thread_name.h"

namespace outpost::aggregator {
namespace {

constexpr size_t kMaxRecordBytes = 64 * 1024;

std::unexpected<Error> bad(std::string_view key, const std::string& why) {
  return fail(ErrorCode::kInvalidArgument,
              "device-status record '" + std::string(key.substr(0, 64)) + "': " + why);
}

}  // namespace

Result<DeviceInfo> parseDeviceStatusRecord(std::string_view key, std::string_view value) {
  if (!codec::isValidDeviceId(key)) return bad(key, "the key is not a valid device id");
  if (value.size() > kMaxRecordBytes) {
    return bad(key, "value of " + std::to_string(value.size()) + " bytes (at most " +
                        std::to_string(kMaxRecordBytes) + ")");
  }
  json::ParseLimits limits;
  limits.max_bytes = kMaxRecordBytes;
  limits.max_depth = 4;
  limits.max_values = 200;
  auto doc = json::parse(value, limits);
  if (!doc) return bad(key, doc.error().message());
  if (!doc->isObject()) return bad(key, "not a JSON object");
  const json::Value* dev = doc->find("device");
  if (!dev || !dev->isObject()) return bad(key, "no \"device\" object");

  DeviceInfo d;
  std::string missing;
  auto str = [&](std::string_view k, bool nullable) -> const std::string* {
    const json::Value* v = dev->find(k);
    if (v && v->isNull() && nullable) return nullptr;
    const std::string* s = v ? v->asString() : nullptr;
    if (!s && missing.empty()) {
      missing = std::string(k) + (nullable ? " (a string or null)" : " (a string)");
    }
    return s;
  };
  auto num = [&](std::string_view k, bool nullable, int64_t fallback) -> int64_t {
    const json::Value* v = dev->find(k);
    if (v && v->isNull() && nullable) return fallback;
    const int64_t n = v ? v->asInt().value_or(-1) : -1;
    if (n < 0 && missing.empty()) {
      missing = std::string(k) + " (a non-negative integer" + (nullable ? " or null)" : ")");
    }
    return n >= 0 ? n : fallback;
  };
  if (const std::string* id = str("id", false)) d.id = *id;
  if (const std::string* st = str("state", false)) {
    if (*st != "online" && *st != "offline" && missing.empty()) {
      missing = "state (online or offline)";
    }
    d.online = *st == "online";
  }
  if (const std::string* r = str("reason", false)) {
    if (r->size() > 32 && missing.empty()) missing = "reason (at most 32 bytes)";
    d.reason = *r;
  }
  d.state_since_us = num("state_since_us", false, 0);
  d.first_seen_us = num("first_seen_us", false, 0);
  d.last_seen_us = num("last_seen_us", false, 0);
  d.last_batch_us = num("last_batch_us", false, 0);
  if (const std::string* v = str("agent_version", true)) {
    if (v->size() > 64 && missing.empty()) missing = "agent_version (at most 64 bytes)";
    d.agent_version = *v;
  }
  if (const std::string* e = str("epoch", false)) {
    auto [p, ec] = std::from_chars(e->data(), e->data() + e->size(), d.epoch);
    if ((ec != std::errc() || p != e->data() + e->size()) && missing.empty()) {
      missing = "epoch (a 64-bit unsigned integer as a string)";
    }
  }
  d.epoch_changes = static_cast<uint64_t>(num("epoch_changes", false, 0));
  d.last_seq = static_cast<uint64_t>(num("last_seq", false, 0));
  d.seq_gaps = static_cast<uint64_t>(num("seq_gaps", false, 0));
  d.batches = static_cast<uint64_t>(num("batches", false, 0));
  d.duplicates = static_cast<uint64_t>(num("duplicates", false, 0));
  d.items = static_cast<uint64_t>(num("items", false, 0));
  d.dropped_reported = static_cast<uint64_t>(num("dropped_reported", false, 0));
  d.backlog_rows = num("backlog_rows", true, -1);
  d.backlog_bytes = num("backlog_bytes", true, -1);
  if (!missing.empty()) return bad(key, "device." + missing + " missing or of the wrong type");
  if (d.id != key) return bad(key, "device.id '" + d.id.substr(0, 64) + "' differs from the key");
  return d;
}

struct DeviceStatusView::Consumer {
  rd_kafka_t* rk = nullptr;
  std::set<int32_t> behind;  // partitions not read to their end yet
  bool assigned = false;
  ~Consumer() {
    if (rk) {
      rd_kafka_assign(rk, nullptr);
      rd_kafka_destroy(rk);
    }
  }
};

DeviceStatusView::DeviceStatusView(KafkaOptions kafka, std::string topic, std::string group_id,
                                   DeviceRegistryOptions devices, metrics::Registry& registry,
                                   const Clock& clock)
    : kafka_(std::move(kafka)), topic_(std::move(topic)), group_id_(std::move(group_id)),
      clock_(clock), devices_(devices),
      records_(registry, "outpost_aggregator_device_status_records_total",
               "Device-status topic records read by the process role's device view, by result",
               "result"),
      applied_(records_.with("applied")),
      invalid_(records_.with("invalid")),
      forgotten_(records_.with("tombstone")),
      over_max_(records_.with("over_max")) {
  const DeviceRegistry* devs = &devices_;
  registry.gaugeFunction("outpost_aggregator_devices", "Known devices by state",
                         [devs] { return static_cast<double>(devs->onlineCount()); },
                         {{"state", "online"}});
  registry.gaugeFunction(
      "outpost_aggregator_devices", "Known devices by state",
      [devs] { return static_cast<double>(devs->size() - devs->onlineCount()); },
      {{"state", "offline"}});
}

DeviceStatusView::~DeviceStatusView() { stop(); }

void DeviceStatusView::start() {
  // Assign-only: the group id (librdkafka's assign() wants one) is never joined and nothing is
  // committed. The topic is produced without transactions.
  const KafkaProps props = {{"group.id", group_id_},
                            {"enable.auto.commit", "false"},
                            {"enable.auto.offset.store", "false"},
                            {"enable.partition.eof", "true"},
                            {"auto.offset.reset", "earliest"}};
  rd_kafka_t* rk = newClient(RD_KAFKA_CONSUMER, clientConf(kafka_, props), "device-status reader");
  consumer_ = std::make_unique<Consumer>();
  consumer_->rk = rk;
  thread_ = std::thread([this] {
    setThreadName("op-devstatus");
    run();
  });
}

void DeviceStatusView::stop() {
  if (stopping_.exchange(true)) return;
  if (thread_.joinable()) thread_.join();
  consumer_.reset();
}

bool DeviceStatusView::assign(std::string& why) {
  rd_kafka_t* rk = consumer_->rk;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic_.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    why = std::string("metadata: ") + rd_kafka_err2str(err);
    return false;
  }
  const rd_kafka_resp_err_t terr =
      md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
  const int32_t n = terr == RD_KAFKA_RESP_ERR_NO_ERROR ? md->topics[0].partition_cnt : 0;
  rd_kafka_metadata_destroy(md);
  if (n <= 0) {
    why = rd_kafka_err2str(terr);
    return false;
  }
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(n);
  for (int32_t p = 0; p < n; ++p) {
    rd_kafka_topic_partition_list_add(list, topic_.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    consumer_->behind.insert(p);
  }
  const rd_kafka_resp_err_t aerr = rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
    consumer_->behind.clear();
    why = std::string("assign: ") + rd_kafka_err2str(aerr);
    return false;
  }
  spdlog::info("device view: reading {} ({} partitions) from the beginning", topic_, n);
  return true;
}

void DeviceStatusView::run() {
  rd_kafka_t* rk = consumer_->rk;
  auto next_try = std::chrono::steady_clock::now();
  bool warned = false;
  while (!stopping_.load()) {
    if (!consumer_->assigned) {
      if (std::chrono::steady_clock::now() < next_try) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      std::string why;
      consumer_->assigned = assign(why);
      if (!consumer_->assigned) {
        if (!warned) {
          spdlog::warn("device view: topic {} not readable yet ({}); retrying every 5 s", topic_,
                       why);
          warned = true;
        }
        next_try = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        continue;
      }
    }
    rd_kafka_poll(rk, 0);  // error events on the main queue (they would pile up unread)
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      consumer_->behind.erase(m->partition);
      if (consumer_->behind.empty() && !caught_up_.exchange(true)) {
        spdlog::info("device view: {} read to its end: {} devices", topic_, devices_.size());
      }
    } else if (m->err) {
      spdlog::debug("device view: {}: {}", topic_, rd_kafka_message_errstr(m));
    } else {
      const std::string_view key =
          m->key ? std::string_view(static_cast<const char*>(m->key), m->key_len)
                 : std::string_view();
      apply(key, m->payload, m->len);
    }
    rd_kafka_message_destroy(m);
  }
}

void DeviceStatusView::apply(std::string_view key, const void* value, size_t len) {
  if (!value) {  // a tombstone: the device is forgotten
    devices_.erase(key);
    forgotten_.inc();
    return;
  }
  auto d = parseDeviceStatusRecord(key, std::string_view(static_cast<const char*>(value), len));
  if (!d) {
    invalid_.inc();
    spdlog::debug("device view: {}", d.error().message());
    return;
  }
  if (devices_.put(*d)) {
    applied_.inc();
  } else {
    over_max_.inc();  // a new device beyond devices.max: not kept
  }
}

void DeviceStatusView::addRoutes(HttpServer& http) {
  http.addRequestHandler("/api/devices", [this](const HttpServer::Request& r) {
    return devicesPageResponse(devices_, r, clock_.nowUs());
  });
  http.addRequestHandler(R"(/api/devices/([^/]+))", [this](const HttpServer::Request& r) {
    return deviceByIdResponse(devices_, r.matches.size() > 1 ? r.matches[1] : "", clock_.nowUs());
  });
}

}  // namespace outpost::aggregator
