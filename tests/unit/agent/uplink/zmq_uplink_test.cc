// The ZeroMQ uplink (compiled from the module's source) against a real ROUTER socket with CURVE,
// played by the test: sessions start on the first reply, batches leave the outbox only on acks,
// bad acks are counted, and a silent aggregator is detected by heartbeats and reconnected to,
// with everything unacknowledged sent again.
#include "outpost/agent/zmq_uplink.h"

#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "outpost/agent/outbox.h"
#include "outpost/agent/outbox_sender.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "outpost/common/metrics.h"
#include "outpost/common/zmq_protocol.h"
#include "support/temp_dir.h"
#include "support/wait_for.h"

using namespace outpost;
using namespace outpost::agent;
using namespace std::chrono_literals;

using outpost::testing::waitFor;

namespace {

struct KeyPair {
  std::string pub, sec;
  KeyPair() {
    char p[41], s[41];
    REQUIRE(zmq_curve_keypair(p, s) == 0);
    pub = p;
    sec = s;
  }
};

// The aggregator's side: a CURVE ROUTER on a free loopback port, served by its own thread
// (bounded by `stop`). Answers pings unless silenced, records batch seqs, sends what it is told.
class Router {
 public:
  Router() {
    sock_.set(zmq::sockopt::curve_server, 1);
    sock_.set(zmq::sockopt::curve_secretkey, keys.sec);
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind("tcp://127.0.0.1:*");
    endpoint = sock_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] { run(); });
  }
  ~Router() {
    stop_ = true;
    thread_.join();
  }
  std::vector<uint64_t> seqs() {
    std::lock_guard lock(mu_);
    return seqs_;
  }
  void clearSeqs() {
    std::lock_guard lock(mu_);
    seqs_.clear();
  }
  void reply(std::string kind, std::vector<uint8_t> body) {
    std::lock_guard lock(mu_);
    outgoing_.push_back({std::move(kind), std::move(body)});
  }
  void ack(uint64_t epoch, uint64_t seq, const std::string& device = "dev-1") {
    reply(std::string(zmqproto::kAck),
          codec::encodeAck({device, epoch, seq, wire::AckStatus::Accepted, ""}));
  }

  KeyPair keys;
  std::string endpoint;
  std::atomic<bool> silent{false};  // true: pings go unanswered (an aggregator that hangs)

 private:
  void run() {
    zmq::message_t peer_id;
    bool have_peer = false;
    while (!stop_) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(10));
      if (item.revents & ZMQ_POLLIN) {
        std::vector<zmq::message_t> parts;
        (void)zmq::recv_multipart(sock_, std::back_inserter(parts));
        if (parts.size() >= 2) {
          peer_id.copy(parts[0]);
          have_peer = true;
          const auto kind = parts[1].to_string_view();
          if (kind == zmqproto::kPing && !silent) {
            sock_.send(zmq::buffer(peer_id.data(), peer_id.size()), zmq::send_flags::sndmore);
            sock_.send(zmq::buffer(zmqproto::kPong), zmq::send_flags::none);
          } else if (kind == zmqproto::kBatch && parts.size() == 3) {
            std::vector<uint8_t> buf(parts[2].data<uint8_t>(),
                                     parts[2].data<uint8_t>() + parts[2].size());
            auto b = codec::verifyBatch(std::span<const uint8_t>(buf), codec::VerifyLimits{});
            std::lock_guard lock(mu_);
            if (b) seqs_.push_back((*b)->seq());
          }
        }
      }
      std::vector<std::pair<std::string, std::vector<uint8_t>>> out;
      {
        std::lock_guard lock(mu_);
        if (have_peer) out.swap(outgoing_);
      }
      for (auto& [kind, body] : out) {
        sock_.send(zmq::buffer(peer_id.data(), peer_id.size()), zmq::send_flags::sndmore);
        sock_.send(zmq::buffer(kind), zmq::send_flags::sndmore);
        sock_.send(zmq::buffer(body), zmq::send_flags::none);
      }
    }
  }

  zmq::context_t ctx_{1};
  zmq::socket_t sock_{ctx_, zmq::socket_type::router};
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<uint64_t> seqs_;                                          // GUARDED_BY(mu_)
  std::vector<std::pair<std::string, std::vector<uint8_t>>> outgoing_;  // GUARDED_BY(mu_)
};

struct Rig {
  testing::TempDir dir{"outpost-zmq-uplink-test"};
  metrics::Registry registry;
  std::unique_ptr<Outbox> box;
  std::unique_ptr<OutboxSender> sender;
  ZmqUplinkMetrics m{registry.counter("connects", "c"), registry.counter("hb_timeouts", "h"),
                     registry.counter("disconnects", "d"), registry.counter("hs_failures", "f"),
                     registry.counter("bad_acks", "b")};
  std::unique_ptr<ZmqUplink> uplink;

  Rig(const Router& router, size_t batches) {
    OutboxOptions o;
    o.path = dir.file("outbox.db");
    box = std::move(*Outbox::open(o, SystemClock::instance()));
    for (size_t i = 0; i < batches; ++i) {
      codec::BatchContent b;
      b.device_id = "dev-1";
      b.created_us = SystemClock::instance().nowUs();
      b.sensors = {{1, "t", "C"}};
      b.readings.emplace_back(b.created_us, static_cast<double>(i), 1, wire::Quality::Good);
      REQUIRE(box->append(b).has_value());
    }
    SenderOptions so;
    so.ack_timeout_ms = 10000;
    sender = std::make_unique<OutboxSender>(*box, so, registry, SystemClock::instance());
    const KeyPair mine;
    ZmqUplinkOptions zo;
    zo.endpoint = router.endpoint;
    zo.device_id = "dev-1";
    zo.server_public_key = router.keys.pub;
    zo.public_key = mine.pub;
    zo.secret_key = mine.sec;
    zo.heartbeat_ms = 200;  // liveness 3: 600 ms of silence (the suite also runs this under qemu)
    zo.liveness = 3;
    zo.reconnect_min_ms = 50;
    zo.reconnect_max_ms = 200;
    uplink = std::make_unique<ZmqUplink>(zo, *sender, m, SystemClock::instance());
  }
  ~Rig() { uplink->stop(); }
};

bool hasAll(const std::vector<uint64_t>& seqs, std::initializer_list<uint64_t> want) {
  return std::all_of(want.begin(), want.end(), [&](uint64_t s) {
    return std::find(seqs.begin(), seqs.end(), s) != seqs.end();
  });
}

}  // namespace

TEST_CASE("ZmqUplink sends stored batches and deletes them only on acks", "[agent][uplink][zmq]") {
  Router router;
  Rig rig(router, 3);
  rig.uplink->start();
  REQUIRE(waitFor([&] { return hasAll(router.seqs(), {1, 2, 3}); }));
  CHECK(rig.uplink->connected());
  CHECK(rig.m.connects.value() == 1);
  REQUIRE(waitFor([&] { return rig.uplink->inFlight() == 3; }));
  CHECK(rig.box->stats().rows == 3);

  SECTION("acks delete exactly the acknowledged batches") {
    router.ack(rig.box->epoch(), 2);
    REQUIRE(waitFor([&] { return rig.box->stats().rows == 2; }));
    router.ack(rig.box->epoch(), 1);
    router.ack(rig.box->epoch(), 3);
    REQUIRE(waitFor([&] { return rig.box->stats().rows == 0 && rig.uplink->inFlight() == 0; }));
  }
  SECTION("malformed acks and unknown messages are counted and delete nothing") {
    router.reply(std::string(zmqproto::kAck), {1, 2, 3});
    router.ack(rig.box->epoch(), 1, "dev-2");
    router.reply("hello", {0});
    REQUIRE(waitFor([&] { return rig.m.bad_acks.value() >= 3; }));
    std::this_thread::sleep_for(100ms);
    CHECK(rig.box->stats().rows == 3);
  }
  SECTION("a silent aggregator is dropped after `liveness` heartbeats; the batches go again") {
    router.silent = true;
    REQUIRE(waitFor([&] { return rig.m.heartbeat_timeouts.value() >= 1; }));
    REQUIRE(waitFor([&] { return !rig.uplink->connected(); }));
    router.clearSeqs();
    router.silent = false;
    REQUIRE(waitFor([&] { return rig.uplink->connected() && hasAll(router.seqs(), {1, 2, 3}); }));
    CHECK(rig.m.connects.value() == 2);
    for (uint64_t s : {1, 2, 3}) router.ack(rig.box->epoch(), s);
    REQUIRE(waitFor([&] { return rig.box->stats().rows == 0; }));
  }
}
