#include "outpost/agent/zmq_uplink.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <thread>
#include <zmq.hpp>

#include "outpost/common/codec.h"
#include "outpost/common/secrets.h"
#include "outpost/common/thread_name.h"
#include "outpost/common/zmq_monitor.h"
#include "outpost/common/zmq_protocol.h"

namespace outpost::agent {
namespace {

constexpr int64_t kStopDrainUs = 1500 * 1000;  // keeps SIGTERM-to-exit within ~2 s
std::atomic<int> g_monitor_seq{0};

}  // namespace

struct ZmqUplink::Impl {
  Impl(ZmqUplinkOptions o, UplinkSender& snd, const ZmqUplinkMetrics& m, const Clock& c,
       ZmqUplink& own)
      : opt(std::move(o)),
        clock(c),
        owner(own),
        sender(snd),
        connects(m.connects),
        heartbeat_timeouts(m.heartbeat_timeouts),
        disconnects(m.disconnects),
        handshake_failures(m.handshake_failures),
        bad_acks(m.bad_acks) {
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) throw std::runtime_error("eventfd failed");
  }
  ~Impl() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
  }

  void openSocket() {
    sock = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
    sock->set(zmq::sockopt::linger, 0);
    sock->set(zmq::sockopt::immediate, 1);  // queue only to a completed (authenticated) connection
    sock->set(zmq::sockopt::sndhwm, static_cast<int>(opt.max_inflight) * 2 + 16);
    sock->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(1) << 20);  // acks are tiny
    sock->set(zmq::sockopt::curve_serverkey, opt.server_public_key);
    sock->set(zmq::sockopt::curve_publickey, opt.public_key);
    sock->set(zmq::sockopt::curve_secretkey, opt.secret_key);
    const std::string mon = "inproc://outpost-uplink-monitor-" + std::to_string(++g_monitor_seq);
    if (zmq_socket_monitor(sock->handle(), mon.c_str(),
                           ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
      monitor = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::pair);
      monitor->set(zmq::sockopt::linger, 0);
      monitor->connect(mon);
    }
    sock->connect(opt.endpoint);
  }

  void closeSocket() {
    if (sock) (void)zmq_socket_monitor(sock->handle(), nullptr, 0);
    monitor.reset();
    sock.reset();
    owner.connected_.store(false);
  }

  // True if the socket must be remade (the TCP connection dropped or the handshake failed).
  bool readMonitor() {
    bool broken = false;
    while (auto ev = zmqmon::next(*monitor)) {
      const uint16_t event = ev->event;
      const uint32_t value = ev->value;
      if (event == ZMQ_EVENT_DISCONNECTED) {
        if (owner.connected_.load()) {
          disconnects.inc();
          spdlog::warn("ZeroMQ connection to {} dropped; {} batches in flight will be sent again",
                       opt.endpoint, sender.inFlight());
          broken = true;
        }
      } else {
        const uint64_t n = handshake_failures.value();
        handshake_failures.inc();
        if (n < 5 || n % 100 == 0) {
          spdlog::error(
              "ZeroMQ handshake with {} failed ({}, code {}): check "
              "uplink.zmq.server_public_key_file and that this device's public key "
              "is on the aggregator's allow-list",
              opt.endpoint,
              event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? "refused by the aggregator"
                                                       : "protocol error",
              value);
        }
      }
    }
    return broken;
  }

  void onSession() {
    connects.inc();
    owner.connected_.store(true);
    backoff_ms = opt.reconnect_min_ms;
    // A new session: everything not acknowledged is backlog and is sent again (live batches
    // first, the backlog in the drain order and at the drain rate).
    sender.onConnected();
    spdlog::info("ZeroMQ session with {} established{}", opt.endpoint,
                 was_connected ? " (reconnect)" : "");
    was_connected = true;
  }

  void handleAck(const zmq::message_t& body) {
    std::vector<uint8_t> buf(static_cast<const uint8_t*>(body.data()),
                             static_cast<const uint8_t*>(body.data()) + body.size());
    auto ack = codec::verifyAck(buf);
    if (!ack) {
      bad_acks.inc();
      spdlog::warn("ignoring malformed ack: {}", ack.error().toString());
      return;
    }
    const wire::Ack* a = *ack;
    if (a->device_id()->string_view() != opt.device_id) {
      // The aggregator acks under the identity our key authenticated as: a key/device mix-up.
      // The batches stay in the outbox (a configuration error must not lose data).
      const uint64_t n = bad_acks.value();
      bad_acks.inc();
      if (n < 5 || n % 100 == 0) {
        spdlog::error(
            "the aggregator knows this device's key as device '{}' but device_id is "
            "'{}': batches are rejected (device_mismatch) and kept in the outbox; check "
            "uplink.zmq.key_file and the aggregator's allow-list",
            a->device_id()->string_view(), opt.device_id);
      }
      return;
    }
    // Epoch check, round-trip time, outbox delete: OutboxSender::onAcks (flushAcks).
    acks.push_back({a->epoch(), a->seq(), a->status() == wire::AckStatus::Accepted,
                    a->reason() ? a->reason()->str() : ""});
  }

  // Hands the acks read since the last call to the sender (deleted in one outbox transaction).
  void flushAcks() {
    if (acks.empty()) return;
    sender.onAcks(acks);
    acks.clear();
  }

  // Reads every waiting message; returns how many.
  int readSocket() {
    int n = 0;
    for (;;) {
      zmq::message_t kind;
      if (!sock->recv(kind, zmq::recv_flags::dontwait)) break;
      ++n;
      zmq::message_t body;
      bool has_body = false;
      if (kind.more()) {
        (void)sock->recv(body, zmq::recv_flags::none);
        has_body = true;
        while (body.more()) {  // extra frames: not ours
          zmq::message_t skip;
          (void)sock->recv(skip, zmq::recv_flags::none);
          has_body = false;
        }
      }
      if (!owner.connected_.load()) onSession();
      if (kind.to_string_view() == zmqproto::kAck && has_body) {
        handleAck(body);
      } else if (kind.to_string_view() != zmqproto::kPong) {
        bad_acks.inc();
      }
    }
    flushAcks();
    return n;
  }

  // Sends one stored batch; false if the socket cannot take it (high-water mark). The window is
  // bounded (max_inflight, plus resends) well below the high-water mark, so a full socket means
  // the connection is stuck: the caller remakes it and the sender starts over (onConnected).
  bool publish(const StoredBatch& b) {
    if (!sock->send(zmq::buffer(zmqproto::kBatch),
                    zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      return false;
    }
    sock->send(zmq::buffer(b.payload.data(), b.payload.size()), zmq::send_flags::none);
    return true;
  }

  // Resends timed-out batches and fills the in-flight window (OutboxSender). False if the socket
  // refused a batch.
  bool sendPending() {
    return sender.pump([this](const StoredBatch& b) { return publish(b); });
  }

  void scheduleReconnect(int64_t now) {
    closeSocket();
    std::uniform_int_distribution<int64_t> j(0, backoff_ms / 4);
    next_connect_us = now + (backoff_ms + j(jitter)) * 1000;
    backoff_ms = std::min(backoff_ms * 2, opt.reconnect_max_ms);
  }

  void run() {
    const int64_t hb_us = opt.heartbeat_ms * 1000;
    int64_t last_heard_us = 0, next_ping_us = 0;
    while (!stopping.load()) {
      int64_t now = clock.monotonicUs();
      if (!sock && now >= next_connect_us) {
        try {
          openSocket();
        } catch (const zmq::error_t& e) {
          spdlog::error("ZeroMQ: cannot connect to {}: {}", opt.endpoint, e.what());
          scheduleReconnect(now);
          continue;
        }
        last_heard_us = now;
        next_ping_us = now;
      }
      // At most 50 ms; less for the next ping, the drain rate or an ack timeout.
      int64_t wait_us =
          sock ? std::min(next_ping_us, owner.connected_.load() ? sender.nextDueUs() : INT64_MAX) -
                     now
               : next_connect_us - now;
      wait_us = std::clamp<int64_t>(wait_us, 0, 50000);
      zmq::pollitem_t items[3] = {{nullptr, wake_fd, ZMQ_POLLIN, 0},
                                  {sock ? sock->handle() : nullptr, 0, ZMQ_POLLIN, 0},
                                  {monitor ? monitor->handle() : nullptr, 0, ZMQ_POLLIN, 0}};
      const int n_items = !sock ? 1 : (monitor ? 3 : 2);
      try {
        zmq::poll(items, n_items, std::chrono::milliseconds((wait_us + 999) / 1000));
        if (items[0].revents & ZMQ_POLLIN) {
          uint64_t v;
          [[maybe_unused]] auto r = ::read(wake_fd, &v, sizeof v);
          if (stopping.load()) break;
        }
        if (!sock) continue;
        now = clock.monotonicUs();
        if ((items[1].revents & ZMQ_POLLIN) && readSocket() > 0) last_heard_us = now;
        if (n_items == 3 && (items[2].revents & ZMQ_POLLIN) && readMonitor()) {
          scheduleReconnect(now);
          next_connect_us = now;  // the peer is back or restarting: try at once, then back off
          continue;
        }
        if (now - last_heard_us > int64_t{opt.liveness} * hb_us) {
          heartbeat_timeouts.inc();
          spdlog::warn(
              "no reply from {} for {} ms; reconnecting ({} batches in flight will be "
              "sent again)",
              opt.endpoint, (now - last_heard_us) / 1000, sender.inFlight());
          scheduleReconnect(now);
          continue;
        }
        if (now >= next_ping_us) {
          // Before the (CURVE) connection is up, the socket takes nothing (ZMQ_IMMEDIATE): try
          // again shortly, so a new session starts within ~10 ms of the handshake, not a whole
          // heartbeat interval later.
          const bool queued =
              sock->send(zmq::buffer(zmqproto::kPing), zmq::send_flags::dontwait).has_value();
          next_ping_us = now + (queued ? hb_us : std::min<int64_t>(hb_us, 10000));
        }
        if (owner.connected_.load() && !sendPending()) {
          spdlog::warn("ZeroMQ socket to {} takes no more batches; reconnecting", opt.endpoint);
          scheduleReconnect(now);
        }
      } catch (const zmq::error_t& e) {
        spdlog::error("ZeroMQ uplink: {}", e.what());
        scheduleReconnect(clock.monotonicUs());
      }
    }
    drainAcks();
    closeSocket();
  }

  // On a clean stop, waits briefly for the acks of batches in flight.
  void drainAcks() {
    if (!sock || !owner.connected_.load() || sender.inFlight() == 0) return;
    const int64_t deadline = clock.monotonicUs() + kStopDrainUs;
    try {
      while (sender.inFlight() > 0 && clock.monotonicUs() < deadline) {
        zmq::pollitem_t item{sock->handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, std::chrono::milliseconds(20));
        if (item.revents & ZMQ_POLLIN) readSocket();
      }
    } catch (const zmq::error_t&) {
    }
    if (sender.inFlight() > 0) {
      spdlog::info("stopping with {} batches unacknowledged; they stay in the outbox",
                   sender.inFlight());
    }
  }

  ZmqUplinkOptions opt;
  const Clock& clock;
  ZmqUplink& owner;
  int wake_fd = -1;
  std::atomic<bool> stopping{false};
  std::thread thread;

  // Sender thread only:
  zmq::context_t ctx{1};
  std::unique_ptr<zmq::socket_t> sock;
  std::unique_ptr<zmq::socket_t> monitor;
  std::mt19937 jitter{std::random_device{}()};
  int64_t backoff_ms = 0;
  int64_t next_connect_us = 0;
  bool was_connected = false;
  std::vector<AckEvent> acks;  // read, not yet handed to the sender
  UplinkSender& sender;        // the executable's OutboxSender: window, resends, drain, acks

  metrics::Counter& connects;
  metrics::Counter& heartbeat_timeouts;
  metrics::Counter& disconnects;
  metrics::Counter& handshake_failures;
  metrics::Counter& bad_acks;
};

ZmqUplink::ZmqUplink(ZmqUplinkOptions options, UplinkSender& sender,
                     const ZmqUplinkMetrics& metrics, const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), sender, metrics, clock, *this)) {
  impl_->backoff_ms = impl_->opt.reconnect_min_ms;
}

size_t ZmqUplink::inFlight() const { return impl_->sender.inFlight(); }

ZmqUplink::~ZmqUplink() { stop(); }

void ZmqUplink::start() {
  impl_->thread = std::thread([this] {
    setThreadName("op-uplink");
    impl_->run();
  });
}

void ZmqUplink::notify() { impl_->wake(); }

void ZmqUplink::stop() {
  impl_->stopping.store(true);
  impl_->wake();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<ZmqUplinkOptions> zmqUplinkOptionsFrom(const OutpostZmqSettings& s) {
  ZmqUplinkOptions o;
  o.endpoint = s.endpoint;
  o.device_id = s.device_id;
  auto server =
      secrets::loadPublicKeyFile(s.server_public_key_file, "uplink.zmq.server_public_key_file");
  if (!server) return std::unexpected(server.error());
  o.server_public_key = *server;
  auto pair = secrets::loadKeyPairFile(s.key_file, "uplink.zmq.key_file");
  if (!pair) return std::unexpected(pair.error());
  o.public_key = pair->public_key;
  o.secret_key = pair->secret_key;
  o.max_inflight = static_cast<size_t>(s.max_inflight);
  o.heartbeat_ms = s.heartbeat_ms;
  o.liveness = static_cast<int>(s.heartbeat_liveness);
  o.reconnect_min_ms = s.reconnect_min_ms;
  o.reconnect_max_ms = std::max(o.reconnect_min_ms, s.reconnect_max_ms);
  return o;
}

Result<std::string> writeCurveKeyFiles(const std::string& dir, const std::string& name) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(ErrorCode::kIoError, "cannot create " + dir + ": " + ec.message());
  auto pair = secrets::generateCurveKeyPair();
  if (!pair) return std::unexpected(pair.error());
  const std::string key_path = (std::filesystem::path(dir) / (name + ".key")).string();
  const std::string pub_path = (std::filesystem::path(dir) / (name + ".pub")).string();
  if (std::filesystem::exists(key_path, ec) || std::filesystem::exists(pub_path, ec)) {
    return fail(ErrorCode::kInvalidArgument,
                key_path + " or " + pub_path + " exists already; not overwriting a key");
  }
  const std::string comment = "outpost CURVE key of " + name;
  if (auto st = secrets::writePrivateFile(key_path, secrets::formatKeyPairFile(*pair, comment));
      !st) {
    return std::unexpected(st.error());
  }
  if (auto st = secrets::writePrivateFile(pub_path,
                                          secrets::formatPublicKeyFile(pair->public_key, comment));
      !st) {
    return std::unexpected(st.error());
  }
  std::filesystem::permissions(
      pub_path,
      std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
          std::filesystem::perms::group_read | std::filesystem::perms::others_read,
      ec);
  return pair->public_key;
}

}  // namespace outpost::agent
