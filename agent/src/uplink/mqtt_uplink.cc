#include "outpost/agent/mqtt_uplink.h"

#include <algorithm>
#include <random>

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include "outpost/common/mqtt_security_paho.h"
#include "outpost/common/net.h"
#include "outpost/common/thread_annotations.h"
#include "outpost/common/thread_name.h"
#include "outpost/common/version.h"

namespace outpost::agent {
namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr int64_t kStopDrainUs = 1500 * 1000;  // keeps SIGTERM-to-exit within ~2 s
constexpr int64_t kStatusEveryUs = 30 * 1000 * 1000;  // retained status refresh (backlog)

}  // namespace

struct MqttUplink::Impl {
  Impl(MqttUplinkOptions o, Outbox& ob, metrics::Registry& reg, const Clock& c, MqttUplink& own)
      : opt(std::move(o)), outbox(ob), clock(c), owner(own),
        batch_topic(opt.topic_prefix + "/" + opt.device_id + "/batch"),
        ack_topic(opt.topic_prefix + "/" + opt.device_id + "/ack"),
        status_topic(opt.topic_prefix + "/" + opt.device_id + "/status"),
        sender(ob, SenderOptions{opt.max_inflight, opt.ack_timeout_ms, opt.drain}, reg, c),
        connects(reg.counter("outpost_agent_mqtt_connects_total", "Successful MQTT connections")),
        connect_failures(reg.counter("outpost_agent_mqtt_connect_failures_total",
                                     "Failed MQTT connection attempts")),
        bad_acks(reg.counter("outpost_agent_bad_acks_total",
                             "Ack messages that failed verification or named another epoch")) {
    if (opt.client_id.empty()) opt.client_id = "outpost-agent-" + opt.device_id;
  }

  void onMessage(mqtt::const_message_ptr msg) {
    const std::string& p = msg->get_payload_ref().str();
    std::vector<uint8_t> buf(p.begin(), p.end());  // aligned copy
    auto ack = codec::verifyAck(buf);
    if (!ack) {
      bad_acks.inc();
      spdlog::warn("ignoring malformed ack on {}: {}", msg->get_topic(), ack.error().toString());
      return;
    }
    const wire::Ack* a = *ack;
    if (a->device_id()->string_view() != opt.device_id) {
      bad_acks.inc();
      return;
    }
    AckEvent ev{a->epoch(), a->seq(), a->status() == wire::AckStatus::Accepted,
                a->reason() ? a->reason()->str() : ""};
    {
      MutexLock lock(mu);
      acks.push_back(std::move(ev));
    }
    cv.notify_one();
  }

  void onConnectionLost(const std::string& cause) {
    {
      MutexLock lock(mu);
      lost = true;
    }
    cv.notify_one();
  }

  bool connect() {
    try {
      // Paho refuses publishes beyond its buffer (default 100) even while connected: room for the
      // whole in-flight window plus status messages.
      // Not queued while disconnected: the outbox is the buffer, and a publish that fails tells
      // the sender thread to reconnect.
      mqtt::create_options create(MQTTVERSION_DEFAULT, static_cast<int>(opt.max_inflight) + 16);
      create.set_send_while_disconnected(false);
      cli = std::make_unique<mqtt::async_client>(opt.broker, opt.client_id, create);
      cli->set_message_callback([this](mqtt::const_message_ptr m) { onMessage(std::move(m)); });
      cli->set_connection_lost_handler([this](const std::string& c) { onConnectionLost(c); });
      auto builder = mqtt::connect_options_builder()
                         .clean_session(true)
                         .keep_alive_interval(std::chrono::seconds(opt.keepalive_s))
                         .connect_timeout(kConnectTimeout)
                         .will(mqtt::message(status_topic, statusJson("offline", "last_will"), 1,
                                             true));
      mqttsec::apply(opt.security, builder);
      cli->connect(builder.finalize())->wait_for(kConnectTimeout + std::chrono::seconds(1));
      if (!cli->is_connected()) throw mqtt::exception(-1, "connect timed out");
      net::setTcpNoDelayToPeer(opt.broker);  // batches must not wait for a delayed ACK
      cli->subscribe(ack_topic, 1)->wait_for(kConnectTimeout);
      publishStatus("online", "status");
      return true;
    } catch (const mqtt::exception& e) {
      spdlog::warn("MQTT connect to {} failed: {}", opt.broker, e.what());
      cli.reset();
      return false;
    }
  }

  void disconnect(bool graceful) {
    if (!cli) return;
    try {
      if (graceful && cli->is_connected()) {
        const std::string s = statusJson("offline", "shutdown");
        cli->publish(status_topic, s.data(), s.size(), 1, true)->wait_for(std::chrono::seconds(1));
        cli->disconnect(std::chrono::milliseconds(500))->wait_for(std::chrono::seconds(2));
      }
    } catch (const mqtt::exception& e) {
      spdlog::debug("MQTT disconnect: {}", e.what());
    }
    cli.reset();
  }

  // The retained status (aggregator device registry, docs/architecture.md): state, why, agent
  // version and outbox backlog (the aggregator also accepts the bare "online"/"offline" of older
  // agents).
  std::string statusJson(const char* state, const char* reason) const {
    std::string s = std::string("{\"state\":\"") + state + "\",\"reason\":\"" + reason +
                    "\",\"version\":\"" + kVersion + "\"";
    if (std::string_view(reason) != "last_will") {  // a will's backlog would be stale
      const auto st = outbox.stats();
      s += ",\"backlog_rows\":" + std::to_string(st.rows) +
           ",\"backlog_bytes\":" + std::to_string(st.bytes);
    }
    return s + "}";
  }

  void publishStatus(const char* state, const char* reason) {
    const std::string s = statusJson(state, reason);
    cli->publish(status_topic, s.data(), s.size(), 1, true);
    last_status_us = clock.monotonicUs();
  }

  // Publishes one stored batch; false if the connection is gone.
  bool publish(const StoredBatch& b) {
    try {
      cli->publish(batch_topic, b.payload.data(), b.payload.size(), 1, false);
      return true;
    } catch (const mqtt::exception& e) {
      spdlog::warn("MQTT publish of batch {} failed: {}", b.seq, e.what());
      return false;
    }
  }

  void handleAcks(std::vector<AckEvent>& events) {
    sender.onAcks(events);
    owner.inflight_count_.store(sender.inFlight());
  }

  void run() {
    std::mt19937 jitter(std::random_device{}());
    int64_t backoff_ms = opt.reconnect_min_ms;
    int64_t next_connect_us = 0;
    bool was_connected = false;
    std::vector<AckEvent> events;
    for (;;) {
      bool lost_now = false;
      {
        MutexLock lock(mu);
        // At most 50 ms, less when the drain rate or an ack timeout says so.
        const int64_t due_us = sender.nextDueUs() - clock.monotonicUs();
        const auto wait = std::chrono::microseconds(std::clamp<int64_t>(due_us, 0, 50000));
        cv.wait_for(lock, wait,
                    [&]() REQUIRES(mu) { return stopping || wake || lost || !acks.empty(); });
        if (stopping) break;
        wake = false;
        events.swap(acks);
        lost_now = lost;
        lost = false;
      }
      handleAcks(events);
      events.clear();

      if (lost_now && owner.connected_.load()) {
        spdlog::warn("MQTT connection to {} lost; {} batches in flight will be sent again",
                     opt.broker, sender.inFlight());
        owner.connected_.store(false);
        disconnect(false);
      }
      const int64_t now = clock.monotonicUs();
      if (!owner.connected_.load()) {
        if (now < next_connect_us) continue;
        if (connect()) {
          connects.inc();
          owner.connected_.store(true);
          backoff_ms = opt.reconnect_min_ms;
          // Everything not acknowledged is sent again (backlog, in the drain order).
          sender.onConnected();
          spdlog::info("MQTT connected to {} as {}{}", opt.broker, opt.client_id,
                       was_connected ? " (reconnect)" : "");
          was_connected = true;
        } else {
          connect_failures.inc();
          std::uniform_int_distribution<int64_t> j(0, backoff_ms / 4);
          next_connect_us = now + (backoff_ms + j(jitter)) * 1000;
          backoff_ms = std::min(backoff_ms * 2, opt.reconnect_max_ms);
          continue;
        }
      }
      if (now - last_status_us > kStatusEveryUs) {
        try {
          publishStatus("online", "status");
        } catch (const mqtt::exception& e) {
          spdlog::debug("status publish: {}", e.what());
        }
      }
      if (!sender.pump([this](const StoredBatch& b) { return publish(b); })) {
        owner.connected_.store(false);
        disconnect(false);
        next_connect_us = now + backoff_ms * 1000;
      }
    }
    drainAcks();
    disconnect(true);
    owner.connected_.store(false);
  }

  // On a clean stop, waits briefly for the acks of batches in flight: a batch the aggregator has
  // already delivered would otherwise stay in the outbox and be resent (and deduplicated) later.
  void drainAcks() {
    if (!owner.connected_.load() || sender.inFlight() == 0) return;
    const int64_t deadline = clock.monotonicUs() + kStopDrainUs;
    std::vector<AckEvent> events;
    while (sender.inFlight() > 0 && clock.monotonicUs() < deadline) {
      {
        MutexLock lock(mu);
        cv.wait_for(lock, std::chrono::milliseconds(20),
                    [&]() REQUIRES(mu) { return !acks.empty(); });
        events.swap(acks);
      }
      handleAcks(events);
      events.clear();
    }
    if (sender.inFlight() > 0) {
      spdlog::info("stopping with {} batches unacknowledged; they stay in the outbox",
                   sender.inFlight());
    }
  }

  MqttUplinkOptions opt;
  Outbox& outbox;
  const Clock& clock;
  MqttUplink& owner;
  const std::string batch_topic, ack_topic, status_topic;
  std::unique_ptr<mqtt::async_client> cli;  // sender thread only
  std::thread thread;

  Mutex mu;
  CondVar cv;
  bool stopping GUARDED_BY(mu) = false;
  bool wake GUARDED_BY(mu) = false;
  bool lost GUARDED_BY(mu) = false;
  std::vector<AckEvent> acks GUARDED_BY(mu);

  int64_t last_status_us = 0;  // sender thread only
  OutboxSender sender;  // sender thread only (setDrain: any thread)
  metrics::Counter& connects;
  metrics::Counter& connect_failures;
  metrics::Counter& bad_acks;
};

MqttUplink::MqttUplink(MqttUplinkOptions options, Outbox& outbox, metrics::Registry& registry,
                       const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), outbox, registry, clock, *this)) {
  registry.gaugeFunction("outpost_agent_mqtt_connected", "1 while connected to the MQTT broker",
                         [this] { return connected() ? 1.0 : 0.0; });
}

MqttUplink::~MqttUplink() { stop(); }

void MqttUplink::start() {
  impl_->thread = std::thread([this] {
    setThreadName("op-uplink");
    impl_->run();
  });
}

void MqttUplink::setDrain(const DrainSettings& drain) { impl_->sender.setDrain(drain); }

void MqttUplink::notify() {
  {
    MutexLock lock(impl_->mu);
    impl_->wake = true;
  }
  impl_->cv.notify_one();
}

void MqttUplink::stop() {
  {
    MutexLock lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_one();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace outpost::agent
