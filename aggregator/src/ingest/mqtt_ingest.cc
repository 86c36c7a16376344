#include "outpost/aggregator/mqtt_ingest.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include "outpost/common/codec.h"
#include "outpost/common/mqtt_security_paho.h"
#include "outpost/common/net.h"
#include "outpost/common/thread_annotations.h"
#include "outpost/common/thread_name.h"

namespace outpost::aggregator {
namespace {

// Paho C refuses a publish once this many are queued inside the client, even while connected (its
// default is 100). One Kafka produce response can complete hundreds of batches at once, so the ack
// burst must fit; each queued ack is ~100 bytes. This also queues acks while the connection is
// down (Paho's send-while-disconnected): they go out after the reconnect, and an agent that already
// resent the batch ignores the late duplicate.
constexpr int kMaxBufferedAcks = 1 << 16;

// Messages of a shared subscription arrive with their own topic ({prefix}/{device}/batch, no
// $share/... in front), so deviceOf() reads them like plain ones.
std::string batchSubscription(const MqttIngestOptions& o) {
  const std::string filter = o.topic_prefix + "/+/batch";
  return o.shared_group.empty() ? filter : "$share/" + o.shared_group + "/" + filter;
}

}  // namespace

struct MqttIngest::Impl {
  MqttIngestOptions opt;
  Intake& intake;
  const Clock& clock;
  std::unique_ptr<mqtt::async_client> cli;
  std::string subscription;
  metrics::Counter& bad_topic;
  metrics::Counter& ack_failures;
  metrics::Counter& reconnects;
  std::atomic<bool> is_connected{false};  // read without Paho's lock (see connected())

  // Acks are published by their own thread. sendAck() is called from librdkafka's delivery
  // callback and from the workers; Paho's publish takes the client's global lock, which Paho's
  // receive thread holds while onMessage() waits for room in a worker queue (back-pressure).
  // Publishing there would close a cycle: the callback waits for Paho, Paho for a worker, the
  // worker for room in the Kafka queue, and the Kafka queue for the delivery callback. Seen as a
  // stall of the whole pipeline after a Kafka outage (realkafka.kafka_outage).
  Mutex ack_mu;
  CondVar ack_cv;
  std::deque<std::pair<std::string, std::vector<uint8_t>>> acks GUARDED_BY(ack_mu);
  bool ack_stop GUARDED_BY(ack_mu) = false;
  std::thread ack_thread;

  void publishAcks() {
    std::deque<std::pair<std::string, std::vector<uint8_t>>> batch;
    for (;;) {
      {
        MutexLock lock(ack_mu);
        ack_cv.wait(lock, [&]() REQUIRES(ack_mu) { return ack_stop || !acks.empty(); });
        if (acks.empty()) return;  // stopping, and everything queued went out
        batch.swap(acks);
      }
      for (auto& [device, ack] : batch) publishAck(device, ack);
      batch.clear();
    }
  }

  void publishAck(const std::string& device, const std::vector<uint8_t>& ack) {
    try {
      cli->publish(opt.topic_prefix + "/" + device + "/ack", ack.data(), ack.size(), 1, false);
    } catch (const mqtt::exception& e) {
      // The agent resends after its ack timeout and dedup acks again: nothing is lost, but the
      // agent stalls, so this is worth a warning (rate-limited).
      const uint64_t n = ack_failures.value();
      ack_failures.inc();
      if (n % 1000 == 0) {
        spdlog::warn("ack to {} not published ({} so far): {}", device, n + 1, e.what());
      }
    }
  }

  Impl(MqttIngestOptions o, Intake& a, metrics::Registry& reg, const Clock& c)
      : opt(std::move(o)), intake(a), clock(c), subscription(batchSubscription(opt)),
        bad_topic(reg.counter("outpost_aggregator_mqtt_bad_topic_total",
                              "Messages on a topic without a valid device segment")),
        ack_failures(reg.counter("outpost_aggregator_ack_publish_failures_total",
                                 "Acks that could not be published (the agent will resend)")),
        reconnects(reg.counter("outpost_aggregator_mqtt_connects_total",
                               "MQTT (re)connections of the ingest client")) {}

  // "{prefix}/{device}/{leaf}" -> device; empty if the topic has another shape.
  std::string deviceOf(const std::string& topic, std::string_view leaf = "/batch") const {
    const std::string head = opt.topic_prefix + "/";
    if (topic.rfind(head, 0) != 0) return {};
    const std::string rest = topic.substr(head.size());
    const auto slash = rest.find('/');
    if (slash == std::string::npos || rest.substr(slash) != leaf) return {};
    return rest.substr(0, slash);
  }

  void onMessage(const mqtt::const_message_ptr& msg) {
    if (status_handler && msg->get_topic().ends_with("/status")) {
      const std::string device = deviceOf(msg->get_topic(), "/status");
      if (codec::isValidDeviceId(device)) {
        status_handler(device, msg->get_payload_ref().str(), msg->is_retained());
      } else {
        bad_topic.inc();
      }
      return;
    }
    Inbound in;
    in.source = msg->get_topic();
    in.device = deviceOf(in.source);
    if (in.device.empty()) bad_topic.inc();
    in.payload = msg->get_payload_str();
    in.received_us = clock.nowUs();
    in.reply = owner;
    intake.submit(std::move(in));
  }

  MqttIngest* owner = nullptr;
  StatusHandler status_handler;
};

void MqttIngest::setStatusHandler(StatusHandler handler) {
  impl_->status_handler = std::move(handler);
}

MqttIngest::MqttIngest(MqttIngestOptions options, Intake& intake,
                       metrics::Registry& registry, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), intake, registry, clock)) {
  impl_->owner = this;
  registry.gaugeFunction("outpost_aggregator_mqtt_connected", "1 while the ingest client is connected",
                         [this] { return connected() ? 1.0 : 0.0; });
}

MqttIngest::~MqttIngest() { stop(); }

bool MqttIngest::start(const std::function<bool()>& stop_requested) {
  auto& o = impl_->opt;
  impl_->cli = std::make_unique<mqtt::async_client>(
      o.broker, o.client_id, mqtt::create_options(MQTTVERSION_DEFAULT, kMaxBufferedAcks));
  auto* cli = impl_->cli.get();
  Impl* impl = impl_.get();
  cli->set_message_callback([impl](mqtt::const_message_ptr m) { impl->onMessage(m); });
  cli->set_connected_handler([impl, cli](const std::string&) {
    impl->is_connected.store(true);
    impl->reconnects.inc();
    net::setTcpNoDelayToPeer(impl->opt.broker);  // acks must not wait 40 ms for a delayed ACK
    // Subscribe on every (re)connect: a broker that lost our session lost the subscription too.
    try {
      cli->subscribe(impl->subscription, 1);
      if (impl->status_handler) cli->subscribe(impl->opt.topic_prefix + "/+/status", 1);
      spdlog::info("MQTT ingest connected to {}, subscribed to {}", impl->opt.broker,
                   impl->subscription);
    } catch (const mqtt::exception& e) {
      spdlog::error("MQTT subscribe failed: {}", e.what());
    }
  });
  cli->set_connection_lost_handler([impl](const std::string& cause) {
    impl->is_connected.store(false);
    spdlog::warn("MQTT ingest lost its connection to {} ({}); reconnecting", impl->opt.broker,
                 cause);
  });
  auto builder = mqtt::connect_options_builder()
                     .clean_session(o.clean_session)
                     .keep_alive_interval(std::chrono::seconds(o.keepalive_s))
                     .automatic_reconnect(std::chrono::milliseconds(o.reconnect_min_ms),
                                          std::chrono::milliseconds(o.reconnect_max_ms))
                     .max_inflight(65535);
  mqttsec::apply(o.security, builder);
  const auto opts = builder.finalize();
  int attempt = 0;
  while (!stop_requested()) {
    try {
      cli->connect(opts)->wait();
      // The connected handler runs on Paho's thread, maybe after wait() returns: up now.
      impl->is_connected.store(true);
      impl->ack_thread = std::thread([impl] {
        setThreadName("op-mqtt-ack");
        impl->publishAcks();
      });
      return true;
    } catch (const mqtt::exception& e) {
      if (attempt++ % 10 == 0) {
        spdlog::warn("MQTT ingest cannot connect to {}: {} (retrying every second)", o.broker,
                     e.what());
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
  return false;
}

void MqttIngest::stop() {
  if (!impl_->cli) return;
  if (impl_->ack_thread.joinable()) {
    {
      MutexLock lock(impl_->ack_mu);
      impl_->ack_stop = true;
    }
    impl_->ack_cv.notify_one();
    impl_->ack_thread.join();  // publishes what is queued first
  }
  try {
    if (impl_->cli->is_connected()) {
      impl_->cli->disconnect(std::chrono::milliseconds(500))->wait_for(std::chrono::seconds(2));
    }
  } catch (const mqtt::exception& e) {
    spdlog::debug("MQTT ingest disconnect: {}", e.what());
  }
  impl_->is_connected.store(false);
  impl_->cli.reset();
}

// Not cli->is_connected(): that takes Paho's lock, held by its receive thread while intake is
// paused, and /metrics and the ops tick must answer then above all.
bool MqttIngest::connected() const { return impl_->cli && impl_->is_connected.load(); }

bool MqttIngest::sendAck(const std::string& device, std::vector<uint8_t> ack) {
  if (!impl_->cli || !impl_->ack_thread.joinable()) {
    impl_->ack_failures.inc();
    return false;
  }
  {
    MutexLock lock(impl_->ack_mu);
    impl_->acks.emplace_back(device, std::move(ack));
  }
  impl_->ack_cv.notify_one();
  return true;
}

}  // namespace outpost::aggregator
