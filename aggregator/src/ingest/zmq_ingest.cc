#include "outpost/aggregator/zmq_ingest.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <zmq.hpp>

#include "outpost/common/thread_annotations.h"
#include "outpost/common/thread_name.h"
#include "outpost/common/zmq_monitor.h"
#include "outpost/common/zmq_protocol.h"

namespace outpost::aggregator {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kMonitorEndpoint = "inproc://outpost-zmq-ingest-monitor";
constexpr int kLiveness = 3;
constexpr int kMaxReadsPerWake = 256;

std::string frameText(const zmq::message_t& m) { return std::string(m.to_string_view()); }

// ZMTP metadata encoding (ZAP reply "metadata" frame): name length (1 byte), name, value length
// (4 bytes, network order), value.
std::string zapProperty(std::string_view name, std::string_view value) {
  std::string out;
  out.push_back(static_cast<char>(name.size()));
  out.append(name);
  const uint32_t n = static_cast<uint32_t>(value.size());
  const char len[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
  out.append(len, 4);
  out.append(value);
  return out;
}

std::optional<std::string> property(zmq::message_t& m, const char* name) {
  const char* v = zmq_msg_gets(m.handle(), name);
  if (!v) return std::nullopt;
  return std::string(v);
}

}  // namespace

struct ZmqIngest::Impl {
  Impl(ZmqIngestOptions o, Aggregator& a, metrics::Registry& reg, const Clock& c)
      : opt(std::move(o)),
        aggregator(a),
        registry(reg),
        clock(c),
        zap_unknown_key(reg.counter("outpost_aggregator_zmq_auth_rejected_total",
                                    "ZeroMQ connections refused by the ZAP handler",
                                    {{"reason", "unknown_key"}})),
        zap_mechanism(reg.counter("outpost_aggregator_zmq_auth_rejected_total",
                                  "ZeroMQ connections refused by the ZAP handler",
                                  {{"reason", "mechanism"}})),
        zap_accepted(reg.counter("outpost_aggregator_zmq_auth_accepted_total",
                                 "ZeroMQ connections admitted by the ZAP handler (key on the "
                                 "allow-list)")),
        hs_protocol(reg.counter("outpost_aggregator_zmq_handshake_failures_total",
                                "ZeroMQ handshakes that failed, e.g. a plaintext or non-CURVE peer "
                                "(protocol) or a refused key (auth)",
                                {{"reason", "protocol"}})),
        hs_auth(reg.counter("outpost_aggregator_zmq_handshake_failures_total",
                            "ZeroMQ handshakes that failed, e.g. a plaintext or non-CURVE peer "
                            "(protocol) or a refused key (auth)",
                            {{"reason", "auth"}})),
        hs_other(reg.counter("outpost_aggregator_zmq_handshake_failures_total",
                             "ZeroMQ handshakes that failed, e.g. a plaintext or non-CURVE peer "
                             "(protocol) or a refused key (auth)",
                             {{"reason", "other"}})),
        revoked(reg.counter("outpost_aggregator_zmq_revoked_messages_total",
                            "Messages dropped because their key left the allow-list (reload)")),
        bad_messages(reg.counter("outpost_aggregator_zmq_bad_messages_total",
                                 "ZeroMQ messages with an unknown kind or frame count")),
        ack_failures(reg.counter("outpost_aggregator_zmq_ack_failures_total",
                                 "Acks that could not be sent (peer gone or queue full; the agent "
                                 "will resend)")),
        reload_ok(reg.counter("outpost_aggregator_zmq_allowlist_reloads_total",
                              "Reloads of the CURVE allow-list (SIGHUP)", {{"result", "ok"}})),
        reload_failed(reg.counter("outpost_aggregator_zmq_allowlist_reloads_total",
                                  "Reloads of the CURVE allow-list (SIGHUP)",
                                  {{"result", "error"}})) {}

  ZmqIngestOptions opt;
  Aggregator& aggregator;
  metrics::Registry& registry;
  const Clock& clock;
  ZmqIngest* owner = nullptr;

  zmq::context_t ctx;
  std::unique_ptr<zmq::socket_t> router;   // socket thread (after start)
  std::unique_ptr<zmq::socket_t> monitor;  // socket thread
  std::unique_ptr<zmq::socket_t> zap;      // ZAP thread
  int wake_fd = -1;
  int bound_port = 0;
  std::thread socket_thread, zap_thread;
  std::atomic<bool> stopping{false};

  Mutex list_mu;
  std::shared_ptr<const secrets::AllowList> allow GUARDED_BY(list_mu);
  std::atomic<size_t> allow_size{0};

  Mutex ack_mu;
  std::deque<std::pair<std::string, std::vector<uint8_t>>> acks GUARDED_BY(ack_mu);

  struct Peer {
    std::string routing_id;
    int64_t last_seen_us = 0;
  };
  std::map<std::string, Peer> peers;  // device -> latest connection; socket thread only
  std::atomic<size_t> peer_count{0};

  metrics::Counter& zap_unknown_key;
  metrics::Counter& zap_mechanism;
  metrics::Counter& zap_accepted;
  metrics::Counter& hs_protocol;
  metrics::Counter& hs_auth;
  metrics::Counter& hs_other;
  metrics::Counter& revoked;
  metrics::Counter& bad_messages;
  metrics::Counter& ack_failures;
  metrics::Counter& reload_ok;
  metrics::Counter& reload_failed;

  std::shared_ptr<const secrets::AllowList> currentList() {
    MutexLock lock(list_mu);
    return allow;
  }

  // --- ZAP (RFC 27) ---------------------------------------------------------------------------
  void zapLoop() {
    setThreadName("op-zmq-zap");
    zmq::pollitem_t item{zap->handle(), 0, ZMQ_POLLIN, 0};
    while (!stopping.load()) {
      try {
        zmq::poll(&item, 1, std::chrono::milliseconds(200));
        if (!(item.revents & ZMQ_POLLIN)) continue;
        std::vector<zmq::message_t> req;
        for (;;) {
          zmq::message_t m;
          if (!zap->recv(m, zmq::recv_flags::none)) break;
          const bool more = m.more();
          req.push_back(std::move(m));
          if (!more) break;
        }
        answerZap(req);
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) break;
        spdlog::error("ZAP handler: {}", e.what());
      }
    }
  }

  void answerZap(std::vector<zmq::message_t>& req) {
    // version, request id, domain, address, routing id, mechanism, credentials...
    std::string request_id = req.size() > 1 ? frameText(req[1]) : "";
    auto reply = [&](const char* code, const std::string& text, const std::string& user,
                     const std::string& metadata) {
      zap->send(zmq::buffer(std::string_view("1.0")), zmq::send_flags::sndmore);
      zap->send(zmq::buffer(request_id), zmq::send_flags::sndmore);
      zap->send(zmq::buffer(std::string_view(code)), zmq::send_flags::sndmore);
      zap->send(zmq::buffer(text), zmq::send_flags::sndmore);
      zap->send(zmq::buffer(user), zmq::send_flags::sndmore);
      zap->send(zmq::buffer(metadata), zmq::send_flags::none);
    };
    if (req.size() < 6 || frameText(req[0]) != "1.0") {
      reply("500", "malformed ZAP request", "", "");
      return;
    }
    const std::string address = frameText(req[3]);
    const std::string mechanism = frameText(req[5]);
    if (mechanism != "CURVE" || req.size() != 7 || req[6].size() != 32) {
      zap_mechanism.inc();
      spdlog::warn("ZeroMQ: refused {} from {}: only CURVE is accepted", mechanism, address);
      reply("400", "CURVE required", "", "");
      return;
    }
    char z85[41];
    zmq_z85_encode(z85, static_cast<const uint8_t*>(req[6].data()), 32);
    const std::string key(z85);
    auto list = currentList();
    auto it = list->device_by_key.find(key);
    if (it == list->device_by_key.end()) {
      const uint64_t n = zap_unknown_key.value();
      zap_unknown_key.inc();
      if (n < 10 || n % 1000 == 0) {
        spdlog::warn("ZeroMQ: refused unknown CURVE public key {} from {} ({} so far)", key,
                     address, n + 1);
      }
      reply("400", "unknown key", "", "");
      return;
    }
    zap_accepted.inc();
    spdlog::info("ZeroMQ: device {} authenticated from {}", it->second, address);
    reply("200", "OK", it->second, zapProperty(zmqproto::kKeyProperty, key));
  }

  // --- socket thread --------------------------------------------------------------------------
  void socketLoop() {
    setThreadName("op-zmq-ingest");
    zmq::pollitem_t items[3] = {{router->handle(), 0, ZMQ_POLLIN, 0},
                                {monitor->handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, wake_fd, ZMQ_POLLIN, 0}};
    while (!stopping.load()) {
      try {
        zmq::poll(items, 3, std::chrono::milliseconds(opt.heartbeat_ms));
        if (items[2].revents & ZMQ_POLLIN) {
          uint64_t v;
          [[maybe_unused]] auto n = ::read(wake_fd, &v, sizeof v);
        }
        sendQueuedAcks();
        if (items[0].revents & ZMQ_POLLIN) {
          for (int i = 0; i < kMaxReadsPerWake && readOne(); ++i) {
          }
        }
        if (items[1].revents & ZMQ_POLLIN) readMonitor();
        expirePeers();
      } catch (const zmq::error_t& e) {
        if (e.num() == ETERM) break;
        spdlog::error("ZeroMQ ingest: {}", e.what());
      }
    }
    try {
      sendQueuedAcks();
    } catch (const zmq::error_t&) {
    }
  }

  // Reads one message; false if none was waiting.
  bool readOne() {
    std::vector<zmq::message_t> frames;
    for (;;) {
      zmq::message_t m;
      if (!router->recv(m, frames.empty() ? zmq::recv_flags::dontwait : zmq::recv_flags::none)) {
        return false;
      }
      const bool more = m.more();
      frames.push_back(std::move(m));
      if (!more) break;
    }
    if (frames.size() < 2) {
      bad_messages.inc();
      return true;
    }
    const std::string rid = frameText(frames[0]);
    const std::string_view kind = frames[1].to_string_view();
    // Identity from the authenticated connection (ZAP), never from the payload.
    const std::string device = property(frames[1], "User-Id").value_or("");
    const std::string key = property(frames[1], zmqproto::kKeyProperty).value_or("");
    {
      auto list = currentList();
      auto it = list->device_by_key.find(key);
      if (it == list->device_by_key.end() || it->second != device) {
        const uint64_t n = revoked.value();
        revoked.inc();
        if (n < 10 || n % 1000 == 0) {
          spdlog::warn(
              "ZeroMQ: dropped a message of device '{}': its key is no longer on the "
              "allow-list",
              device);
        }
        return true;
      }
    }
    const int64_t now = clock.monotonicUs();
    auto& peer = peers[device];
    peer.routing_id = rid;
    peer.last_seen_us = now;
    peer_count.store(peers.size());
    if (kind == zmqproto::kPing && frames.size() == 2) {
      sendTo(rid, zmqproto::kPong, {});
      return true;
    }
    if (kind == zmqproto::kBatch && frames.size() == 3) {
      Inbound in;
      in.device = device;
      in.payload.assign(static_cast<const char*>(frames[2].data()), frames[2].size());
      in.source = "zmq " + property(frames[1], "Peer-Address").value_or("?");
      in.transport = "zmq";
      in.received_us = clock.nowUs();
      in.reply = owner;
      aggregator.submit(std::move(in));
      return true;
    }
    bad_messages.inc();
    return true;
  }

  bool sendTo(const std::string& rid, std::string_view kind, std::span<const uint8_t> body) {
    try {
      if (!router->send(zmq::buffer(rid), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        return false;
      }
      if (kind == zmqproto::kPong) {
        return router->send(zmq::buffer(kind), zmq::send_flags::dontwait).has_value();
      }
      router->send(zmq::buffer(kind), zmq::send_flags::sndmore);
      router->send(zmq::buffer(body.data(), body.size()), zmq::send_flags::none);
      return true;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) return false;  // that connection is gone
      throw;
    }
  }

  void sendQueuedAcks() {
    std::deque<std::pair<std::string, std::vector<uint8_t>>> batch;
    {
      MutexLock lock(ack_mu);
      batch.swap(acks);
    }
    for (auto& [device, ack] : batch) {
      auto it = peers.find(device);
      if (it == peers.end() || !sendTo(it->second.routing_id, zmqproto::kAck, ack)) {
        ack_failures.inc();
      }
    }
  }

  void readMonitor() {
    while (auto ev = zmqmon::next(*monitor)) {
      switch (ev->event) {
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
          hs_protocol.inc();
          spdlog::warn(
              "ZeroMQ: handshake with {} failed: protocol error {:#x} (a peer without "
              "CURVE, or the wrong server key?)",
              ev->address, ev->value);
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
          hs_auth.inc();
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
          hs_other.inc();
          break;
        default:
          break;
      }
    }
  }

  void expirePeers() {
    const int64_t limit = clock.monotonicUs() - int64_t{kLiveness} * opt.heartbeat_ms * 1000;
    std::erase_if(peers, [limit](const auto& kv) { return kv.second.last_seen_us < limit; });
    peer_count.store(peers.size());
  }
};

ZmqIngest::ZmqIngest(ZmqIngestOptions options, Aggregator& aggregator, metrics::Registry& registry,
                     const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), aggregator, registry, clock)) {
  impl_->owner = this;
  Impl* impl = impl_.get();
  registry.gaugeFunction("outpost_aggregator_zmq_peers",
                         "Devices heard from over ZeroMQ within the last 3 heartbeat intervals",
                         [impl] { return static_cast<double>(impl->peer_count.load()); });
  registry.gaugeFunction("outpost_aggregator_zmq_allowlist_keys",
                         "CURVE public keys on the allow-list in force",
                         [impl] { return static_cast<double>(impl->allow_size.load()); });
}

ZmqIngest::~ZmqIngest() { stop(); }

Status ZmqIngest::start() {
  auto& im = *impl_;
  auto pair = secrets::loadKeyPairFile(im.opt.secret_key_file, "zmq.secret_key_file");
  if (!pair) return std::unexpected(pair.error());
  auto list = secrets::loadAllowList(im.opt.allow_list_file);
  if (!list) return std::unexpected(list.error());
  if (list->device_by_key.empty()) {
    spdlog::warn("ZeroMQ: the allow-list {} has no devices: every agent will be refused",
                 im.opt.allow_list_file);
  }
  {
    MutexLock lock(im.list_mu);
    im.allow_size.store(list->device_by_key.size());
    im.allow = std::make_shared<const secrets::AllowList>(std::move(*list));
  }
  if (!zmq_has("curve")) return fail(ErrorCode::kInternal, "libzmq was built without CURVE");
  try {
    // The ZAP handler first: CURVE without one admits every key.
    im.zap = std::make_unique<zmq::socket_t>(im.ctx, zmq::socket_type::rep);
    im.zap->set(zmq::sockopt::linger, 0);
    im.zap->bind(kZapEndpoint);

    im.router = std::make_unique<zmq::socket_t>(im.ctx, zmq::socket_type::router);
    auto& r = *im.router;
    r.set(zmq::sockopt::curve_server, 1);
    r.set(zmq::sockopt::curve_secretkey, pair->secret_key);
    r.set(zmq::sockopt::zap_domain, zmqproto::kZapDomain);
    r.set(zmq::sockopt::router_mandatory, 1);
    r.set(zmq::sockopt::linger, 1000);
    r.set(zmq::sockopt::sndhwm, 100000);
    r.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(64) << 20);
    if (zmq_socket_monitor(r.handle(), kMonitorEndpoint,
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
      return fail(ErrorCode::kInternal,
                  std::string("zmq_socket_monitor: ") + zmq_strerror(zmq_errno()));
    }
    im.monitor = std::make_unique<zmq::socket_t>(im.ctx, zmq::socket_type::pair);
    im.monitor->set(zmq::sockopt::linger, 0);
    im.monitor->connect(kMonitorEndpoint);
    r.bind(im.opt.listen);
    const std::string last = r.get(zmq::sockopt::last_endpoint);
    im.bound_port = std::atoi(last.substr(last.rfind(':') + 1).c_str());
  } catch (const zmq::error_t& e) {
    im.router.reset();
    im.monitor.reset();
    im.zap.reset();
    return fail(ErrorCode::kUnavailable,
                "zmq.listen = \"" + im.opt.listen + "\": cannot bind: " + e.what());
  }
  im.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (im.wake_fd < 0) return fail(ErrorCode::kIoError, "eventfd failed");
  im.zap_thread = std::thread([&im] { im.zapLoop(); });
  im.socket_thread = std::thread([&im] { im.socketLoop(); });
  spdlog::info("ZeroMQ ingest listening on {} (CURVE, {} keys on the allow-list {})", im.opt.listen,
               im.allow_size.load(), im.opt.allow_list_file);
  return {};
}

void ZmqIngest::stop() {
  auto& im = *impl_;
  if (im.stopping.exchange(true)) return;
  if (im.wake_fd >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(im.wake_fd, &one, sizeof one);
  }
  if (im.socket_thread.joinable()) im.socket_thread.join();
  if (im.zap_thread.joinable()) im.zap_thread.join();
  im.monitor.reset();
  im.router.reset();
  im.zap.reset();
  im.ctx.close();
  if (im.wake_fd >= 0) ::close(im.wake_fd);
  im.wake_fd = -1;
}

int ZmqIngest::port() const { return impl_->bound_port; }

Status ZmqIngest::reloadAllowList() {
  auto& im = *impl_;
  auto list = secrets::loadAllowList(im.opt.allow_list_file);
  if (!list) {
    im.reload_failed.inc();
    spdlog::error("ZeroMQ: allow-list not reloaded, the previous one stays in force: {}",
                  list.error().toString());
    return std::unexpected(list.error());
  }
  const size_t n = list->device_by_key.size();
  {
    MutexLock lock(im.list_mu);
    im.allow = std::make_shared<const secrets::AllowList>(std::move(*list));
  }
  im.allow_size.store(n);
  im.reload_ok.inc();
  spdlog::info("ZeroMQ: allow-list {} reloaded: {} keys", im.opt.allow_list_file, n);
  return {};
}

bool ZmqIngest::sendAck(const std::string& device, std::vector<uint8_t> ack) {
  auto& im = *impl_;
  {
    MutexLock lock(im.ack_mu);
    if (im.acks.size() >= im.opt.max_queued_acks || im.wake_fd < 0) {
      im.ack_failures.inc();
      return false;
    }
    im.acks.emplace_back(device, std::move(ack));
  }
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(im.wake_fd, &one, sizeof one);
  return true;
}

}  // namespace outpost::aggregator
