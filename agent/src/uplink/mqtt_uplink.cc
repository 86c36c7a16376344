#include "outpost/agent/mqtt_uplink.h"

#include <random>

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include "outpost/common/mqtt_security_paho.h"
#include "outpost/common/net.h"
#include "outpost/common/thread_name.h"

namespace outpost::agent {
namespace {

struct AckEvent {
  uint64_t epoch;
  uint64_t seq;
  bool accepted;
  std::string reason;
};

constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr int64_t kStopDrainUs = 1500 * 1000;  // keeps SIGTERM-to-exit within ~2 s

}  // namespace

struct MqttUplink::Impl {
  Impl(MqttUplinkOptions o, Outbox& ob, metrics::Registry& reg, const Clock& c, MqttUplink& own)
      : opt(std::move(o)), outbox(ob), clock(c), owner(own),
        batch_topic(opt.topic_prefix + "/" + opt.device_id + "/batch"),
        ack_topic(opt.topic_prefix + "/" + opt.device_id + "/ack"),
        status_topic(opt.topic_prefix + "/" + opt.device_id + "/status"),
        sent(reg.counter("outpost_agent_batches_sent_total", "Batches published (first sends)")),
        resent(reg.counter("outpost_agent_batches_resent_total",
                           "Batches published again (ack timeout or reconnect)")),
        acked(reg.counter("outpost_agent_batches_acked_total",
                          "Batches acknowledged by the aggregator", {{"status", "accepted"}})),
        rejected(reg.counter("outpost_agent_batches_acked_total",
                             "Batches acknowledged by the aggregator", {{"status", "rejected"}})),
        readings_acked(reg.counter("outpost_agent_readings_acked_total",
                                   "Readings in batches the aggregator accepted")),
        connects(reg.counter("outpost_agent_mqtt_connects_total", "Successful MQTT connections")),
        connect_failures(reg.counter("outpost_agent_mqtt_connect_failures_total",
                                     "Failed MQTT connection attempts")),
        bad_acks(reg.counter("outpost_agent_bad_acks_total",
                             "Ack messages that failed verification or named another epoch")),
        ack_latency(reg.histogram("outpost_agent_ack_latency_seconds",
                                  "Time from publishing a batch to its acknowledgement",
                                  metrics::exponentialBuckets(0.001, 2, 16))) {
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
      std::lock_guard lock(mu);
      acks.push_back(std::move(ev));
    }
    cv.notify_one();
  }

  void onConnectionLost(const std::string& cause) {
    {
      std::lock_guard lock(mu);
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
                         .will(mqtt::message(status_topic, "offline", 1, true));
      mqttsec::apply(opt.security, builder);
      cli->connect(builder.finalize())->wait_for(kConnectTimeout + std::chrono::seconds(1));
      if (!cli->is_connected()) throw mqtt::exception(-1, "connect timed out");
      net::setTcpNoDelayToPeer(opt.broker);  // batches must not wait for a delayed ACK
      cli->subscribe(ack_topic, 1)->wait_for(kConnectTimeout);
      cli->publish(status_topic, "online", 6, 1, true);
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
        cli->publish(status_topic, "offline", 7, 1, true)->wait_for(std::chrono::seconds(1));
        cli->disconnect(std::chrono::milliseconds(500))->wait_for(std::chrono::seconds(2));
      }
    } catch (const mqtt::exception& e) {
      spdlog::debug("MQTT disconnect: {}", e.what());
    }
    cli.reset();
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
    const int64_t now = clock.monotonicUs();
    for (auto& ev : events) {
      if (ev.epoch != outbox.epoch()) {
        bad_acks.inc();
        continue;
      }
      auto it = inflight.find(ev.seq);
      if (it != inflight.end()) {
        ack_latency.observe(static_cast<double>(now - it->second.sent_us) / 1e6);
        if (ev.accepted) readings_acked.inc(it->second.readings);
        inflight.erase(it);
      }
      if (auto st = outbox.ack(ev.seq); !st) {
        spdlog::error("outbox: cannot delete acknowledged batch {}: {}", ev.seq,
                      st.error().toString());
      }
      if (ev.accepted) {
        acked.inc();
      } else {
        rejected.inc();
        spdlog::warn("aggregator rejected batch {} (now on its dead-letter topic): {}", ev.seq,
                     ev.reason);
      }
    }
    owner.inflight_count_.store(inflight.size());
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
        std::unique_lock lock(mu);
        cv.wait_for(lock, std::chrono::milliseconds(50),
                    [&] { return stopping || wake || lost || !acks.empty(); });
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
                     opt.broker, inflight.size());
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
          // Everything not acknowledged is sent again, oldest first.
          inflight.clear();
          cursor = 0;
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
      if (!sendPending(now)) {
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
    if (!owner.connected_.load() || inflight.empty()) return;
    const int64_t deadline = clock.monotonicUs() + kStopDrainUs;
    std::vector<AckEvent> events;
    while (!inflight.empty() && clock.monotonicUs() < deadline) {
      {
        std::unique_lock lock(mu);
        cv.wait_for(lock, std::chrono::milliseconds(20), [&] { return !acks.empty(); });
        events.swap(acks);
      }
      handleAcks(events);
      events.clear();
    }
    if (!inflight.empty()) {
      spdlog::info("stopping with {} batches unacknowledged; they stay in the outbox",
                   inflight.size());
    }
  }

  // Resends timed-out batches and fills the in-flight window. False if the connection broke.
  bool sendPending(int64_t now) {
    const int64_t timeout_us = opt.ack_timeout_ms * 1000;
    for (auto& [seq, f] : inflight) {
      if (now - f.sent_us < timeout_us) continue;
      auto batches = outbox.readAfter(seq - 1, 1);
      if (!batches || batches->empty() || batches->front().seq != seq) {
        f.sent_us = now;  // evicted meanwhile; the erase below drops it
        f.gone = true;
        continue;
      }
      if (!publish(batches->front())) return false;
      resent.inc();
      f.sent_us = now;
    }
    std::erase_if(inflight, [](const auto& kv) { return kv.second.gone; });
    while (inflight.size() < opt.max_inflight) {
      auto batches = outbox.readAfter(cursor, opt.max_inflight - inflight.size());
      if (!batches) {
        spdlog::error("outbox read failed: {}", batches.error().toString());
        break;
      }
      if (batches->empty()) break;
      for (const auto& b : *batches) {
        if (!publish(b)) return false;
        (resend_floor >= b.seq ? resent : sent).inc();
        inflight[b.seq] = {now, b.readings, false};
        cursor = b.seq;
      }
    }
    resend_floor = std::max(resend_floor, cursor);
    owner.inflight_count_.store(inflight.size());
    return true;
  }

  struct InFlight {
    int64_t sent_us;
    uint64_t readings;
    bool gone;
  };

  MqttUplinkOptions opt;
  Outbox& outbox;
  const Clock& clock;
  MqttUplink& owner;
  const std::string batch_topic, ack_topic, status_topic;
  std::unique_ptr<mqtt::async_client> cli;  // sender thread only
  std::thread thread;

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;          // GUARDED_BY(mu)
  bool wake = false;              // GUARDED_BY(mu)
  bool lost = false;              // GUARDED_BY(mu)
  std::vector<AckEvent> acks;     // GUARDED_BY(mu)

  std::map<uint64_t, InFlight> inflight;  // sender thread only
  uint64_t cursor = 0;                    // highest seq sent on this connection
  uint64_t resend_floor = 0;              // highest seq ever sent by this process

  metrics::Counter& sent;
  metrics::Counter& resent;
  metrics::Counter& acked;
  metrics::Counter& rejected;
  metrics::Counter& readings_acked;
  metrics::Counter& connects;
  metrics::Counter& connect_failures;
  metrics::Counter& bad_acks;
  metrics::Histogram& ack_latency;
};

MqttUplink::MqttUplink(MqttUplinkOptions options, Outbox& outbox, metrics::Registry& registry,
                       const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), outbox, registry, clock, *this)) {
  registry.gaugeFunction("outpost_agent_mqtt_connected", "1 while connected to the MQTT broker",
                         [this] { return connected() ? 1.0 : 0.0; });
  registry.gaugeFunction("outpost_agent_batches_in_flight",
                         "Batches sent and not yet acknowledged",
                         [this] { return static_cast<double>(inFlight()); });
}

MqttUplink::~MqttUplink() { stop(); }

void MqttUplink::start() {
  impl_->thread = std::thread([this] {
    setThreadName("op-uplink");
    impl_->run();
  });
}

void MqttUplink::notify() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->wake = true;
  }
  impl_->cv.notify_one();
}

void MqttUplink::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_one();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace outpost::agent
