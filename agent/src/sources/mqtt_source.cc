#include "outpost/agent/mqtt_source.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "outpost/agent/line_parser.h"
#include "outpost/common/mqtt_security_paho.h"
#include "outpost/common/thread_name.h"

namespace outpost::agent {
namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr int64_t kIdlePollUs = 5000;

std::string_view trimBlanks(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

const char* mqttPayloadErrorName(MqttPayloadError e) {
  switch (e) {
    case MqttPayloadError::kNone:
      return "none";
    case MqttPayloadError::kTooLarge:
      return "too_large";
    case MqttPayloadError::kBadPayload:
      return "bad_payload";
    case MqttPayloadError::kMissingField:
      return "missing_field";
    case MqttPayloadError::kBadValue:
      return "bad_value";
    case MqttPayloadError::kBadTimestamp:
      return "bad_timestamp";
    case MqttPayloadError::kUnmatchedTopic:
      return "unmatched_topic";
    case MqttPayloadError::kCount:
      break;
  }
  return "?";
}

MqttPayloadError decodeMqttPayload(std::string_view payload, std::string_view field,
                                   std::string_view ts_field, int64_t now_us, double& value,
                                   int64_t& ts_us) {
  ts_us = now_us;
  if (field.empty()) {
    if (!parseNumber(trimBlanks(payload), value)) return MqttPayloadError::kBadPayload;
    if (!ts_field.empty()) return MqttPayloadError::kBadTimestamp;  // a bare number has no time
    return MqttPayloadError::kNone;
  }
  JsonValue v;
  if (!jsonFind(payload, field, v)) {
    return jsonIsObject(payload) ? MqttPayloadError::kMissingField : MqttPayloadError::kBadPayload;
  }
  if (!jsonNumber(v, value)) return MqttPayloadError::kBadValue;
  if (!ts_field.empty()) {
    JsonValue t;
    if (!jsonFind(payload, ts_field, t) || !jsonTimestamp(t, ts_us) ||
        !timestampPlausible(ts_us, now_us)) {
      return MqttPayloadError::kBadTimestamp;
    }
  }
  return MqttPayloadError::kNone;
}

struct MqttSource::Client {
  std::unique_ptr<mqtt::async_client> cli;
};

MqttSource::MqttSource(const std::vector<SensorSpec>& sensors, const SourcesSpec& opt,
                       const Clock& clock, metrics::Registry* registry)
    : opt_(opt),
      clock_(clock),
      handoff_(opt.queue_chunks, 8, /*block=*/false,
               registry ? &registry->counter("outpost_agent_source_dropped_total",
                                             "Readings dropped because the queue to the pipeline "
                                             "was full",
                                             {{"source", "mqtt"}})
                        : nullptr),
      client_(std::make_unique<Client>()) {
  for (const auto& s : sensors) {
    if (s.source != SourceKind::kMqtt) continue;
    routes_.push_back({s.mqtt_topic, s.mqtt_field, s.mqtt_timestamp_field, s.id});
    if (std::find(filters_.begin(), filters_.end(), s.mqtt_topic) == filters_.end()) {
      filters_.push_back(s.mqtt_topic);
    }
    infos_.push_back({s.id, s.name, s.unit});
  }
  if (registry) {
    for (size_t i = 1; i < error_counters_.size(); ++i) {
      error_counters_[i] =
          &registry->counter("outpost_agent_mqtt_source_errors_total",
                             "MQTT source messages (or message-sensor pairs) rejected, by reason",
                             {{"reason", mqttPayloadErrorName(static_cast<MqttPayloadError>(i))}});
    }
    messages_ = &registry->counter("outpost_agent_mqtt_source_messages_total",
                                   "Messages received by the MQTT source");
  }
  try {
    mqtt::create_options create(MQTTVERSION_DEFAULT, 16);
    create.set_send_while_disconnected(false);
    client_->cli =
        std::make_unique<mqtt::async_client>(opt_.mqtt_broker, opt_.mqtt_client_id, create);
  } catch (const mqtt::exception& e) {
    throw config::ConfigError(
        "sources.mqtt.broker = \"" + opt_.mqtt_broker + "\" is not usable: " + e.what() +
        "; allowed: tcp://host:port, mqtt://host:port or (TLS) ssl://host:port");
  }
  client_->cli->set_message_callback([this](mqtt::const_message_ptr m) {
    onMessage(m->get_topic(), std::string_view(m->get_payload_ref().str()));
  });
  client_->cli->set_connection_lost_handler([this](const std::string&) {
    {
      MutexLock lock(mu_);
      lost_ = true;
    }
    cv_.notify_one();
  });
  thread_ = std::thread([this] { run(); });
}

MqttSource::~MqttSource() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  handoff_.close();
  if (thread_.joinable()) thread_.join();
}

void MqttSource::countError(MqttPayloadError e) {
  errors_[static_cast<size_t>(e)].fetch_add(1, std::memory_order_relaxed);
  if (error_counters_[static_cast<size_t>(e)]) error_counters_[static_cast<size_t>(e)]->inc();
  const uint64_t n = errors_[static_cast<size_t>(e)].load(std::memory_order_relaxed);
  if (n <= 5 || n % 10000 == 0) {
    spdlog::warn("mqtt source: message rejected ({}), {} so far", mqttPayloadErrorName(e), n);
  }
}

// Paho's callback thread.
void MqttSource::onMessage(const std::string& topic, std::string_view payload) {
  if (messages_) messages_->inc();
  if (payload.size() > opt_.mqtt_max_payload_bytes) {
    countError(MqttPayloadError::kTooLarge);
    return;
  }
  const int64_t now = clock_.nowUs();
  std::vector<wire::Reading> chunk;
  bool matched = false;
  for (const auto& r : routes_) {
    if (!mqttTopicMatches(r.filter, topic)) continue;
    matched = true;
    double value = 0;
    int64_t ts = now;
    const auto e = decodeMqttPayload(payload, r.field, r.ts_field, now, value, ts);
    if (e != MqttPayloadError::kNone) {
      countError(e);
      continue;
    }
    if (chunk.capacity() == 0) chunk = handoff_.takeEmpty();
    chunk.emplace_back(ts, value, r.id, wire::Quality::Good);
  }
  if (!matched) countError(MqttPayloadError::kUnmatchedTopic);
  if (!chunk.empty()) handoff_.put(std::move(chunk), /*may_block=*/false);
}

int64_t MqttSource::poll(int64_t now_us, std::vector<wire::Reading>& out) {
  const size_t n = handoff_.drain(out, 1024);
  return n > 0 ? now_us : now_us + kIdlePollUs;
}

void MqttSource::run() {
  setThreadName("op-src-mqtt");
  int64_t backoff_ms = 250;
  bool need_connect = true;
  for (;;) {
    {
      MutexLock lock(mu_);
      if (!need_connect) {
        cv_.wait(lock, [&]() REQUIRES(mu_) { return stopping_ || lost_; });
      }
      if (stopping_) break;
      if (lost_) {
        lost_ = false;
        need_connect = true;
        connected_.store(false);
        subscribed_.store(false);
        spdlog::warn("mqtt source: connection to {} lost; reconnecting", opt_.mqtt_broker);
      }
    }
    try {
      auto builder = mqtt::connect_options_builder()
                         .clean_session(opt_.mqtt_clean_session)
                         .keep_alive_interval(std::chrono::seconds(30))
                         .connect_timeout(kConnectTimeout);
      mqttsec::apply(opt_.mqtt_security, builder);
      if (client_->cli->is_connected()) client_->cli->disconnect()->wait_for(kConnectTimeout);
      client_->cli->connect(builder.finalize())
          ->wait_for(kConnectTimeout + std::chrono::seconds(1));
      if (!client_->cli->is_connected()) throw mqtt::exception(-1, "connect timed out");
      connected_.store(true);
      for (const auto& f : filters_) {
        client_->cli->subscribe(f, opt_.mqtt_qos)->wait_for(kConnectTimeout);
      }
      subscribed_.store(true);
      need_connect = false;
      backoff_ms = 250;
      spdlog::info("mqtt source: subscribed to {} topic filters on {}", filters_.size(),
                   opt_.mqtt_broker);
    } catch (const mqtt::exception& e) {
      connected_.store(false);
      spdlog::warn("mqtt source: connect to {} failed: {}; retry in {} ms", opt_.mqtt_broker,
                   e.what(), backoff_ms);
      MutexLock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms),
                   [&]() REQUIRES(mu_) { return stopping_; });
      backoff_ms = std::min<int64_t>(backoff_ms * 2, 30000);
    }
  }
  try {
    if (client_->cli->is_connected() && unsubscribe_on_stop_.load()) {
      for (const auto& f : filters_) {
        client_->cli->unsubscribe(f)->wait_for(std::chrono::milliseconds(500));
      }
    }
    if (client_->cli->is_connected()) {
      client_->cli->disconnect(std::chrono::milliseconds(200))->wait_for(std::chrono::seconds(1));
    }
  } catch (const mqtt::exception& e) {
    spdlog::debug("mqtt source: disconnect: {}", e.what());
  }
  connected_.store(false);
}

}  // namespace outpost::agent
