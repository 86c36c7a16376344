#include "mqtt_fleet.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <thread>

#include "outpost/common/net.h"

namespace outpost::sim {
namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr int64_t kReconnectEveryUs = 1'000'000;
constexpr size_t kMaxLatencySamples = 4'000'000;

struct Pending {
  std::vector<wire::Reading> readings;
  int64_t created_us;
  int64_t release_us;
};

struct Flight {
  uint64_t seq;
  std::vector<uint8_t> payload;
  int64_t sent_us;
  uint32_t readings;
};

struct VDev {
  std::string name, batch_topic, status_topic;
  size_t conn = 0;
  uint64_t epoch = 0;
  uint64_t next_seq = 1;
  uint64_t dropped = 0;  // readings dropped since the last batch sent
  std::deque<Pending> queue;
  std::vector<Flight> flights;
  bool online = true;
  bool in_ready = false;
};

struct AckEvent {
  int device;
  uint64_t epoch;
  uint64_t seq;
  bool accepted;
};

// Publishes handed to Paho and not yet completed (PUBACK or failure). Paho C processes its command
// queue in time that grows with its length: with tens of thousands queued (10,000 devices
// publishing in the same second) a client spends seconds per publish. The fleet therefore keeps
// at most kMaxPendingPerConn publishes per connection inside Paho and holds the rest itself.
constexpr int kMaxPendingPerConn = 256;

class PendingCounter final : public mqtt::iaction_listener {
 public:
  std::atomic<int> pending{0};

 private:
  void on_failure(const mqtt::token&) override { pending.fetch_sub(1); }
  void on_success(const mqtt::token&) override { pending.fetch_sub(1); }
};

struct Conn {
  std::unique_ptr<mqtt::async_client> cli;
  bool up = false;
  std::atomic<bool> lost{false};
  int64_t next_try_us = 0;
  PendingCounter counter;
  bool busy() const { return counter.pending.load() >= kMaxPendingPerConn; }
};

}  // namespace

struct MqttFleet::Impl {
  Impl(MqttOptions o, MqttStats& s) : opt(std::move(o)), stats(s) {}

  MqttOptions opt;
  MqttStats& stats;
  std::vector<VDev> devs;
  std::unordered_map<std::string, int> index;  // read-only after construction
  std::vector<codec::SensorInfo> sensors;
  std::vector<std::unique_ptr<Conn>> conns;
  std::deque<std::pair<int64_t, int>> releases;           // (release time, device), time order
  std::deque<std::tuple<int64_t, int, uint64_t>> timers;  // (sent time, device, seq), time order
  std::vector<int> ready;
  std::vector<int> blocked;  // devices whose connection was busy
  std::string ack_filter;
  std::vector<uint32_t> latencies_us;  // capped at kMaxLatencySamples

  std::mutex mu;
  std::vector<AckEvent> acks;  // GUARDED_BY(mu)
  uint64_t bad_acks = 0;       // GUARDED_BY(mu)
  uint64_t foreign = 0;        // GUARDED_BY(mu)

  void onMessage(const mqtt::const_message_ptr& msg) {
    const std::string& p = msg->get_payload_ref().str();
    std::vector<uint8_t> buf(p.begin(), p.end());  // aligned copy
    auto ack = codec::verifyAck(buf);
    std::lock_guard lock(mu);
    if (!ack) {
      ++bad_acks;
      return;
    }
    auto it = index.find((*ack)->device_id()->str());
    if (it == index.end()) {
      ++foreign;  // another agent's ack (real agents share the broker)
      return;
    }
    acks.push_back({it->second, (*ack)->epoch(), (*ack)->seq(),
                    (*ack)->status() == wire::AckStatus::Accepted});
  }

  bool connectOne(size_t k) {
    Conn& c = *conns[k];
    try {
      if (!c.cli) {
        size_t per_conn = (devs.size() + conns.size() - 1) / conns.size();
        mqtt::create_options create(
            MQTTVERSION_DEFAULT,
            static_cast<int>(per_conn * static_cast<size_t>(opt.inflight + 2) + 1000));
        create.set_send_while_disconnected(false);
        c.cli = std::make_unique<mqtt::async_client>(
            opt.broker, opt.client_prefix + "-" + std::to_string(k), create);
        c.cli->set_connection_lost_handler([&c](const std::string&) { c.lost.store(true); });
        if (k == 0) {
          c.cli->set_message_callback([this](mqtt::const_message_ptr m) { onMessage(m); });
        }
      }
      auto b = mqtt::connect_options_builder()
                   .clean_session(true)
                   .keep_alive_interval(std::chrono::seconds(30))
                   .connect_timeout(kConnectTimeout);
      if (!opt.username.empty()) b.user_name(opt.username);
      if (!opt.password.empty()) b.password(opt.password);
      c.cli->connect(b.finalize())->wait_for(kConnectTimeout + std::chrono::seconds(1));
      if (!c.cli->is_connected()) throw mqtt::exception(-1, "connect timed out");
      if (k == 0) c.cli->subscribe(ack_filter, opt.ack_qos)->wait_for(kConnectTimeout);
      c.up = true;
      c.lost.store(false);
      c.counter.pending.store(0);
      return true;
    } catch (const mqtt::exception& e) {
      spdlog::warn("MQTT connection {} to {} failed: {}", k, opt.broker, e.what());
      c.up = false;
      return false;
    }
  }

  bool publish(VDev& d, const std::string& topic, const void* data, size_t len, bool retained) {
    Conn& c = *conns[d.conn];
    if (!c.up) return false;
    try {
      c.counter.pending.fetch_add(1);
      c.cli->publish(topic, data, len, 1, retained, nullptr, c.counter);
      return true;
    } catch (const mqtt::exception& e) {
      c.counter.pending.fetch_sub(1);
      ++stats.publish_failures;
      spdlog::debug("publish on connection {} failed: {}", d.conn, e.what());
      c.lost.store(true);
      return false;
    }
  }

  // For status messages: waits (briefly) for room in the connection's Paho queue.
  void publishStatus(VDev& d, bool online) {
    Conn& c = *conns[d.conn];
    for (int i = 0; i < 400 && c.up && c.busy(); ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    if (c.busy()) return;  // the connection is stuck; a status is not worth blocking for
    publish(d, d.status_topic, online ? "online" : "offline", online ? 6 : 7, true);
  }

  void markReady(int dev) {
    VDev& d = devs[static_cast<size_t>(dev)];
    if (!d.in_ready) {
      d.in_ready = true;
      ready.push_back(dev);
    }
  }

  void send(int dev, int64_t now) {
    VDev& d = devs[static_cast<size_t>(dev)];
    while (d.flights.size() < static_cast<size_t>(opt.inflight) && !d.queue.empty() &&
           d.queue.front().release_us <= now && conns[d.conn]->up) {
      if (conns[d.conn]->busy()) {
        blocked.push_back(dev);  // tried again on the next pump
        return;
      }
      Pending p = std::move(d.queue.front());
      d.queue.pop_front();
      --stats.queued;
      codec::BatchContent b;
      b.device_id = d.name;
      b.epoch = d.epoch;
      b.seq = d.next_seq++;
      b.dropped = d.dropped;
      b.created_us = p.created_us;
      b.sensors = sensors;
      const auto n = static_cast<uint32_t>(p.readings.size());
      b.readings = std::move(p.readings);
      d.dropped = 0;
      Flight f{b.seq, codec::encodeBatch(b), now, n};
      publish(d, d.batch_topic, f.payload.data(), f.payload.size(), false);  // lost: resent later
      ++stats.batches_sent;
      stats.readings_sent += n;
      ++stats.in_flight;
      timers.emplace_back(now, dev, f.seq);
      d.flights.push_back(std::move(f));
    }
  }

  void handleAcks(int64_t ack_now) {
    std::vector<AckEvent> evs;
    {
      std::lock_guard lock(mu);
      evs.swap(acks);
      stats.bad_acks = bad_acks;
      stats.foreign_acks = foreign;
    }
    for (const auto& ev : evs) {
      VDev& d = devs[static_cast<size_t>(ev.device)];
      if (ev.epoch != d.epoch) {
        ++stats.foreign_acks;
        continue;
      }
      auto it = std::find_if(d.flights.begin(), d.flights.end(),
                             [&](const Flight& f) { return f.seq == ev.seq; });
      if (it == d.flights.end()) continue;  // a second ack for a resent batch
      (ev.accepted ? stats.batches_acked : stats.batches_rejected)++;
      if (latencies_us.size() < kMaxLatencySamples) {
        latencies_us.push_back(static_cast<uint32_t>(
            std::clamp<int64_t>(ack_now - it->sent_us, 0, std::numeric_limits<uint32_t>::max())));
      }
      if (ev.accepted) stats.readings_acked += it->readings;
      d.flights.erase(it);
      --stats.in_flight;
      if (!d.queue.empty()) markReady(ev.device);
    }
  }

  void reconnect(int64_t now) {
    for (size_t k = 0; k < conns.size(); ++k) {
      Conn& c = *conns[k];
      if (c.lost.load() && c.up) {
        spdlog::warn("MQTT connection {} lost; its devices' batches in flight will be resent", k);
        c.up = false;
        c.next_try_us = 0;
      }
      if (c.up || now < c.next_try_us) continue;
      if (!connectOne(k)) {
        c.next_try_us = now + kReconnectEveryUs;
        continue;
      }
      ++stats.reconnects;
      net::setTcpNoDelayToPeer(opt.broker);
      // Everything in flight on this connection goes again, oldest first.
      for (size_t i = k; i < devs.size(); i += conns.size()) {
        for (auto& f : devs[i].flights) {
          f.sent_us = now - opt.ack_timeout_us;
          timers.emplace_front(f.sent_us, static_cast<int>(i), f.seq);
        }
        if (!devs[i].queue.empty()) markReady(static_cast<int>(i));
      }
    }
  }

  void resend(int64_t now) {
    while (!timers.empty()) {
      auto [sent, dev, seq] = timers.front();
      if (now - sent < opt.ack_timeout_us) break;
      timers.pop_front();
      VDev& d = devs[static_cast<size_t>(dev)];
      auto it = std::find_if(d.flights.begin(), d.flights.end(),
                             [&](const Flight& f) { return f.seq == seq && f.sent_us == sent; });
      if (it == d.flights.end()) continue;  // acked meanwhile, or a newer timer exists
      if (!conns[d.conn]->up) continue;     // the reconnect re-arms it
      if (conns[d.conn]->busy()) {
        timers.emplace_front(sent, dev, seq);  // again on the next pump
        break;
      }
      publish(d, d.batch_topic, it->payload.data(), it->payload.size(), false);
      it->sent_us = now;
      timers.emplace_back(now, dev, seq);
      ++stats.batches_resent;
    }
  }
};

MqttFleet::MqttFleet(MqttOptions options, std::vector<std::string> devices,
                     std::vector<uint64_t> epochs, std::vector<codec::SensorInfo> sensors)
    : impl_(std::make_unique<Impl>(std::move(options), stats_)) {
  Impl& m = *impl_;
  int k = m.opt.connections;
  if (k <= 0) k = std::clamp<int>(static_cast<int>((devices.size() + 999) / 1000), 1, 8);
  k = std::min<int>(k, static_cast<int>(devices.size()));
  for (int i = 0; i < k; ++i) m.conns.push_back(std::make_unique<Conn>());
  m.sensors = std::move(sensors);
  m.ack_filter = m.opt.topic_prefix + "/+/ack";
  m.devs.resize(devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    VDev& d = m.devs[i];
    d.name = devices[i];
    d.batch_topic = m.opt.topic_prefix + "/" + d.name + "/batch";
    d.status_topic = m.opt.topic_prefix + "/" + d.name + "/status";
    d.conn = i % m.conns.size();
    d.epoch = epochs[i];
    m.index.emplace(d.name, static_cast<int>(i));
  }
}

MqttFleet::~MqttFleet() { disconnect(); }

Status MqttFleet::connect() {
  Impl& m = *impl_;
  for (size_t k = 0; k < m.conns.size(); ++k) {
    if (!m.connectOne(k)) {
      return fail(ErrorCode::kUnavailable, "cannot connect to MQTT broker " + m.opt.broker);
    }
  }
  net::setTcpNoDelayToPeer(m.opt.broker);
  if (m.opt.status) {
    for (auto& d : m.devs) m.publishStatus(d, true);
  }
  spdlog::info("{} virtual devices on {} MQTT connection(s) to {}", m.devs.size(), m.conns.size(),
               m.opt.broker);
  return {};
}

void MqttFleet::enqueue(int device, std::vector<wire::Reading> readings, int64_t created_us,
                        int64_t release_mono_us) {
  if (readings.empty()) return;
  Impl& m = *impl_;
  VDev& d = m.devs[static_cast<size_t>(device)];
  if (d.queue.size() >= m.opt.backlog) {
    // The device's store is full: drop the oldest, report it in the next batch (as the agent).
    const auto n = d.queue.front().readings.size();
    d.dropped += n;
    ++stats_.batches_dropped;
    stats_.readings_dropped += n;
    d.queue.pop_front();
    --stats_.queued;
  }
  d.queue.push_back({std::move(readings), created_us, release_mono_us});
  ++stats_.queued;
  m.releases.emplace_back(release_mono_us, device);
}

void MqttFleet::pump(int64_t now) {
  Impl& m = *impl_;
  m.handleAcks(now);
  m.reconnect(now);
  m.resend(now);
  while (!m.releases.empty() && m.releases.front().first <= now) {
    m.markReady(m.releases.front().second);
    m.releases.pop_front();
  }
  for (int dev : m.blocked) m.markReady(dev);
  m.blocked.clear();
  std::vector<int> work;
  work.swap(m.ready);
  for (int dev : work) {
    m.devs[static_cast<size_t>(dev)].in_ready = false;
    m.send(dev, now);
  }
}

uint64_t MqttFleet::unackedReadings() const {
  uint64_t n = 0;
  for (const auto& d : impl_->devs) {
    for (const auto& p : d.queue) n += p.readings.size();
    for (const auto& f : d.flights) n += f.readings;
  }
  return n;
}

double MqttFleet::ackLatencyMs(double p) const {
  std::vector<uint32_t> v = impl_->latencies_us;
  if (v.empty()) return 0.0;
  const size_t rank = std::clamp<size_t>(
      static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size()))), 1, v.size());
  std::nth_element(v.begin(), v.begin() + static_cast<long>(rank - 1), v.end());
  return v[rank - 1] / 1000.0;
}

void MqttFleet::setOnline(int device, bool online) {
  Impl& m = *impl_;
  VDev& d = m.devs[static_cast<size_t>(device)];
  if (d.online == online) return;
  d.online = online;
  if (m.opt.status) m.publishStatus(d, online);
}

void MqttFleet::disconnect() {
  if (!impl_) return;
  Impl& m = *impl_;
  if (m.opt.status) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (auto& d : m.devs) {
      if (std::chrono::steady_clock::now() > deadline) break;
      if (m.conns[d.conn]->up) m.publishStatus(d, false);
    }
  }
  for (auto& c : m.conns) {
    if (!c->cli) continue;
    try {
      if (c->cli->is_connected()) {
        c->cli->disconnect(std::chrono::milliseconds(1000))->wait_for(std::chrono::seconds(3));
      }
    } catch (const mqtt::exception& e) {
      spdlog::debug("MQTT disconnect: {}", e.what());
    }
    c->up = false;
    // Deliberately not destroyed: the process exits next, and MQTTAsync_destroy was seen to spin
    // for tens of seconds after an overloaded run (long Paho queues), which broke the promise of
    // a prompt exit on SIGTERM. The OS closes the sockets.
    (void)c->cli.release();
  }
}

}  // namespace outpost::sim
