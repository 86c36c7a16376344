#include "mqtt_fleet.h"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <thread>
#include <unordered_map>

#include "links.h"
#include "outpost/sim/lite_mqtt.h"
#include "outpost/sim/util.h"

namespace outpost::sim {
namespace {

constexpr int64_t kConnectTimeoutUs = 10'000'000;
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

// QoS 1 publishes sent and not yet PUBACKed per connection. The window per device already bounds
// what is in flight; this bounds what one connection has outstanding at the broker (and the
// bytes in its send buffer), so a slow broker pushes back on the fleet instead of growing
// buffers. Devices whose connection is busy wait in the fleet's own queues.
constexpr int kMaxPendingPerConn = 512;
constexpr size_t kMaxUnsentPerConn = 4u << 20;

class MqttLink final : public Link {
 public:
  MqttLink(MqttLinkOptions o, OnAck on_ack) : opt_(std::move(o)) {
    if (!opt_.ack_filters.empty()) {
      cli_.setOnMessage([f = std::move(on_ack)](std::string_view, std::span<const uint8_t> p) {
        if (f) f(p);
      });
    }
  }
  Status connect() override {
    LiteMqttOptions lo;
    lo.broker = opt_.broker;
    lo.client_id = opt_.client_id;
    lo.username = opt_.username;
    lo.password = opt_.password;
    lo.connect_timeout_us = opt_.connect_timeout_us;
    auto st = cli_.connect(lo);
    // In SUBSCRIBE packets of at most 256 filters.
    for (size_t i = 0; st && i < opt_.ack_filters.size(); i += 256) {
      const size_t n = std::min<size_t>(256, opt_.ack_filters.size() - i);
      st = cli_.subscribe(std::span<const std::string>(opt_.ack_filters).subspan(i, n),
                          opt_.ack_qos, opt_.connect_timeout_us);
    }
    return st;
  }
  bool io(int64_t now, bool read) override { return cli_.io(now, read); }
  bool publish(const std::string& topic, std::span<const uint8_t> payload, bool retained) override {
    return cli_.publish(topic, payload, 1, retained);
  }
  bool busy() const override {
    return cli_.pending() >= kMaxPendingPerConn || cli_.unsent() >= kMaxUnsentPerConn;
  }
  zmq_pollitem_t pollItem() const override {
    return {nullptr, cli_.fd(), static_cast<short>(ZMQ_POLLIN | (cli_.unsent() ? ZMQ_POLLOUT : 0)),
            0};
  }
  void disconnect() override { cli_.disconnect(1'000'000); }  // flushes what is queued first
  std::string lastError() const override { return cli_.lastError(); }

 private:
  MqttLinkOptions opt_;
  LiteMqtt cli_;
};

struct Conn {
  std::unique_ptr<Link> link;
  bool up = false;
  int64_t next_try_us = 0;
  bool readable = true;  // poll saw input (or was not asked): read on the next io()
  bool busy() const { return link->busy(); }
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
  std::vector<AckEvent> evs;           // scratch of handleAcks
  std::vector<int> work;               // scratch of pump
  std::vector<zmq_pollitem_t> pfds;    // scratch of wait
  void* zmq_ctx = nullptr;             // ZeroMQ transport: shared by every device's socket
  std::vector<size_t> pconn;           // scratch of wait: connection of each pfds entry
  int64_t last_wait_us = 0;

  std::vector<AckEvent> acks;
  uint64_t bad_acks = 0;
  uint64_t foreign = 0;
  std::vector<uint8_t> ack_buf;  // aligned copy of an ack for the FlatBuffers verifier

  // An ack from connection `conn` (ZeroMQ: the device's own socket).
  void onMessage(std::span<const uint8_t> payload, int conn) {
    if (payload.size() > 4096) {
      ++bad_acks;
      return;
    }
    ack_buf.assign(payload.begin(), payload.end());
    auto ack = codec::verifyAck(ack_buf);
    if (!ack) {
      ++bad_acks;
      return;
    }
    auto it = index.find((*ack)->device_id()->str());
    if (it == index.end() || (opt.transport == Transport::kZmq && it->second != conn)) {
      ++foreign;  // another agent's ack (real agents share the broker)
      return;
    }
    acks.push_back({it->second, (*ack)->epoch(), (*ack)->seq(),
                    (*ack)->status() == wire::AckStatus::Accepted});
  }

  bool connectOne(size_t k) {
    Conn& c = *conns[k];
    auto st = c.link->connect();
    if (!st) {
      spdlog::warn("{} connection {} failed: {}", transportName(), k, st.error().message());
      c.up = false;
      return false;
    }
    c.up = true;
    c.readable = true;
    return true;
  }

  const char* transportName() const { return opt.transport == Transport::kZmq ? "ZeroMQ" : "MQTT"; }

  bool publish(VDev& d, const std::string& topic, std::span<const uint8_t> data, bool retained) {
    Conn& c = *conns[d.conn];
    if (!c.up) return false;
    if (!c.link->publish(topic, data, retained)) {
      ++stats.publish_failures;
      return false;
    }
    return true;
  }

  // Reads acks and writes what is queued on every connection; notes lost connections.
  void io(int64_t now) {
    for (size_t k = 0; k < conns.size(); ++k) {
      Conn& c = *conns[k];
      const bool read = c.readable;
      c.readable = false;
      if (c.up && !c.link->io(now, read)) {
        spdlog::warn("{} connection {} lost ({}); its devices' batches in flight will be resent",
                     transportName(), k, c.link->lastError());
        c.up = false;
        c.next_try_us = now + kReconnectEveryUs;
      }
    }
  }

  static std::span<const uint8_t> bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
  }

  // For status messages (MQTT only): waits (briefly) for room on the connection.
  void publishStatus(VDev& d, bool online) {
    Conn& c = *conns[d.conn];
    for (int i = 0; i < 400 && c.up && c.busy(); ++i) {
      zmq_pollitem_t item = c.link->pollItem();
      item.events |= ZMQ_POLLOUT;
      zmq_poll(&item, 1, 1);
      for (auto& x : conns) x->readable = true;
      io(monoUs());
    }
    if (c.busy()) return;  // the connection is stuck; a status is not worth blocking for
    publish(d, d.status_topic, bytes(online ? "online" : "offline"), true);
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
      publish(d, d.batch_topic, f.payload, false);  // lost: resent after the reconnect
      ++stats.batches_sent;
      stats.readings_sent += n;
      ++stats.in_flight;
      timers.emplace_back(now, dev, f.seq);
      d.flights.push_back(std::move(f));
    }
  }

  void handleAcks(int64_t ack_now) {
    evs.clear();
    evs.swap(acks);
    stats.bad_acks = bad_acks;
    stats.foreign_acks = foreign;
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
      if (c.up || now < c.next_try_us) continue;
      if (!connectOne(k)) {
        c.next_try_us = now + kReconnectEveryUs;
        continue;
      }
      ++stats.reconnects;
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
      publish(d, d.batch_topic, it->payload, false);
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
  if (m.opt.transport == Transport::kZmq) k = static_cast<int>(devices.size());  // a socket each
  m.ack_filter = m.opt.topic_prefix + "/+/ack";
  if (m.opt.transport == Transport::kZmq) {
    m.zmq_ctx = zmq_ctx_new();
    zmq_ctx_set(m.zmq_ctx, ZMQ_MAX_SOCKETS, k + 64);
  }
  for (int i = 0; i < k; ++i) {
    auto c = std::make_unique<Conn>();
    auto on_ack = [&m, i](std::span<const uint8_t> p) { m.onMessage(p, i); };
    if (m.opt.transport == Transport::kZmq) {
      ZmqLinkOptions zo;
      zo.endpoint = m.opt.zmq_endpoint;
      zo.server_public_key = m.opt.zmq_server_key;
      auto pair = simCurveKeyPair(m.opt.key_seed, i);
      if (!pair) throw std::runtime_error(pair.error().message());
      zo.public_key = pair->public_key;
      zo.secret_key = pair->secret_key;
      zo.heartbeat_ms = m.opt.zmq_heartbeat_ms;
      zo.sndhwm = m.opt.inflight * 2 + 4;
      c->link = makeZmqLink(m.zmq_ctx, std::move(zo), on_ack);
    } else {
      MqttLinkOptions mo;
      mo.broker = m.opt.broker;
      mo.client_id = m.opt.client_prefix + "-" + std::to_string(i);
      mo.username = m.opt.username;
      mo.password = m.opt.password;
      mo.ack_qos = m.opt.ack_qos;
      mo.connect_timeout_us = kConnectTimeoutUs;
      if (!m.opt.ack_per_device) {
        if (i == 0) mo.ack_filters.push_back(m.ack_filter);
      } else {
        // Each device's own ack topic on its own connection (device j on connection j mod k),
        // as an agent subscribes to its own: the broker's per-client window (100 in flight)
        // then applies per connection instead of one connection carrying every ack.
        for (size_t j = static_cast<size_t>(i); j < devices.size(); j += static_cast<size_t>(k)) {
          mo.ack_filters.push_back(m.opt.topic_prefix + "/" + devices[j] + "/ack");
        }
      }
      c->link = std::make_unique<MqttLink>(std::move(mo), on_ack);
    }
    m.conns.push_back(std::move(c));
  }
  m.sensors = std::move(sensors);
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
  if (m.opt.status && m.opt.transport == Transport::kMqtt) {
    for (auto& d : m.devs) m.publishStatus(d, true);
  }
  spdlog::info("{} virtual devices on {} {} connection(s) to {}", m.devs.size(), m.conns.size(),
               m.transportName(),
               m.opt.transport == Transport::kZmq ? m.opt.zmq_endpoint : m.opt.broker);
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
  m.io(now);
  m.handleAcks(now);
  m.reconnect(now);
  m.resend(now);
  while (!m.releases.empty() && m.releases.front().first <= now) {
    m.markReady(m.releases.front().second);
    m.releases.pop_front();
  }
  for (int dev : m.blocked) m.markReady(dev);
  m.blocked.clear();
  m.work.clear();
  m.work.swap(m.ready);
  for (int dev : m.work) {
    m.devs[static_cast<size_t>(dev)].in_ready = false;
    m.send(dev, now);
  }
  if (m.opt.transport == Transport::kMqtt) {
    for (auto& c : m.conns) {
      if (c->up) c->link->io(now, false);  // write now, not on the next pump
    }
  }
}

void MqttFleet::wait(int64_t max_us) {
  Impl& m = *impl_;
  // At most one wake-up per kMinPumpGapUs: acks trickle in one by one at 10,000 batches/s, and
  // a pump per ack costs a poll, a recv and a send each; gathered, one set of calls serves many.
  constexpr int64_t kMinPumpGapUs = 1000;
  const int64_t since = monoUs() - m.last_wait_us;
  if (since < kMinPumpGapUs && max_us > 0) {
    const int64_t nap = std::min(max_us, kMinPumpGapUs - since);
    std::this_thread::sleep_for(std::chrono::microseconds(nap));
    max_us -= nap;
  }
  m.pfds.clear();
  m.pconn.clear();
  for (size_t k = 0; k < m.conns.size(); ++k) {
    Conn& c = *m.conns[k];
    if (!c.up) continue;
    m.pfds.push_back(c.link->pollItem());
    m.pconn.push_back(k);
  }
  const int ms = static_cast<int>(std::clamp<int64_t>((max_us + 999) / 1000, 0, 1000));
  if (m.pfds.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  } else if (zmq_poll(m.pfds.data(), static_cast<int>(m.pfds.size()), ms) >= 0) {
    for (size_t i = 0; i < m.pfds.size(); ++i) {
      m.conns[m.pconn[i]]->readable = (m.pfds[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) != 0;
    }
  }
  m.last_wait_us = monoUs();
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
  if (!impl_ || impl_->conns.empty()) return;  // never connected, or disconnected already
  Impl& m = *impl_;
  if (m.opt.status && m.opt.transport == Transport::kMqtt) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (auto& d : m.devs) {
      if (std::chrono::steady_clock::now() > deadline) break;
      if (m.conns[d.conn]->up) m.publishStatus(d, false);
    }
  }
  for (auto& c : m.conns) {
    if (c->up) c->link->disconnect();  // MQTT: flushes the statuses first
    c->up = false;
  }
  m.conns.clear();
  if (m.zmq_ctx) zmq_ctx_term(m.zmq_ctx);  // every socket is closed (linger 0): returns at once
  m.zmq_ctx = nullptr;
}

}  // namespace outpost::sim
