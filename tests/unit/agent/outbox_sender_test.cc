// Backlog draining (OutboxSender): live first, drain order, drain rate, acks, timeouts.
#include "outpost/agent/outbox_sender.h"

#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "outpost/agent/outbox.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "outpost/common/metrics.h"
#include "support/temp_dir.h"

namespace codec = outpost::codec;
namespace wire = outpost::wire;
using namespace outpost::agent;

namespace {

constexpr int64_t kNow = 1'700'000'000'000'000;
constexpr int64_t kSecond = 1'000'000;

class FakeClock final : public outpost::Clock {
 public:
  int64_t wall_us = kNow;
  int64_t mono_us = 1'000'000;
  int64_t nowUs() const override { return wall_us; }
  int64_t monotonicUs() const override { return mono_us; }
  void advance(int64_t us) {
    wall_us += us;
    mono_us += us;
  }
};

codec::BatchContent makeBatch(size_t n) {
  codec::BatchContent b;
  b.device_id = "dev-01";
  b.created_us = kNow;
  b.sensors = {{1, "temp", "C"}};
  for (size_t i = 0; i < n; ++i) b.readings.emplace_back(kNow + i, 1.0, 1, wire::Quality::Good);
  return b;
}

struct Rig {
  outpost::testing::TempDir dir{"outpost-sender-test"};
  FakeClock clock;
  outpost::metrics::Registry registry;
  std::unique_ptr<Outbox> box;
  std::unique_ptr<OutboxSender> sender;
  std::vector<uint64_t> published;

  Rig(size_t backlog, SenderOptions opt) {
    OutboxOptions o;
    o.path = dir.file("outbox.db");
    box = std::move(*Outbox::open(o, clock));
    append(backlog);
    sender = std::make_unique<OutboxSender>(*box, opt, registry, clock);
  }
  void append(size_t n) {
    std::vector<codec::BatchContent> g;
    for (size_t i = 0; i < n; ++i) g.push_back(makeBatch(10));
    if (n) REQUIRE(box->appendMany(g)->stored == n);
  }
  bool pump() {
    return sender->pump([this](const StoredBatch& b) {
      published.push_back(b.seq);
      return true;
    });
  }
  void ackAll() {
    std::vector<AckEvent> acks;
    for (auto s : published) acks.push_back({box->epoch(), s, true, ""});
    sender->onAcks(acks);
    published.clear();
  }
};

}  // namespace

TEST_CASE("Live batches go before the backlog, backlog oldest first", "[agent][sender]") {
  SenderOptions opt;
  opt.max_inflight = 8;
  Rig rig(20, opt);  // seqs 1..20: backlog
  rig.sender->onConnected();
  rig.append(3);  // seqs 21..23: live
  REQUIRE(rig.pump());
  // Live first, then the backlog in 3/4 of the window minus what live uses: 8 - 3 = 5 slots left,
  // backlog capped at 6 in flight.
  CHECK(rig.published == std::vector<uint64_t>{21, 22, 23, 1, 2, 3, 4, 5});
  CHECK(rig.sender->inFlight() == 8);
  rig.ackAll();
  CHECK(rig.box->stats().rows == 15);
  // A live batch arriving while the backlog drains still goes first.
  rig.append(1);  // 24
  REQUIRE(rig.pump());
  CHECK(rig.published.front() == 24);
  CHECK(rig.published[1] == 6);
  // Drain to the end.
  for (int i = 0; i < 10 && rig.box->stats().rows > 0; ++i) {
    rig.ackAll();
    REQUIRE(rig.pump());
  }
  rig.ackAll();
  CHECK(rig.box->stats().rows == 0);
  CHECK(rig.sender->backlogDone());
}

TEST_CASE("Backlog newest first", "[agent][sender]") {
  SenderOptions opt;
  opt.max_inflight = 4;
  opt.drain.order = ReadOrder::kNewestFirst;
  Rig rig(10, opt);
  rig.sender->onConnected();
  std::vector<uint64_t> order;
  for (int i = 0; i < 10; ++i) {
    REQUIRE(rig.pump());
    order.insert(order.end(), rig.published.begin(), rig.published.end());
    rig.ackAll();
  }
  CHECK(order == std::vector<uint64_t>{10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
  CHECK(rig.box->stats().rows == 0);
}

TEST_CASE("Drain rate limits the backlog, not live data", "[agent][sender]") {
  SenderOptions opt;
  opt.max_inflight = 64;
  opt.drain.rate_readings_per_s = 100;  // 10 batches of 10 readings per second
  Rig rig(200, opt);
  rig.sender->onConnected();
  size_t backlog_sent = 0, live_sent = 0;
  for (int step = 0; step < 50; ++step) {  // 5 simulated seconds, 100 ms steps
    rig.append(2);                         // live: 20 batches/s, above the drain rate
    REQUIRE(rig.pump());
    for (auto s : rig.published) (s <= 200 ? backlog_sent : live_sent) += 1;
    rig.ackAll();
    rig.clock.advance(kSecond / 10);
  }
  CHECK(live_sent == 100);  // every live batch, at once
  // 100 readings/s for 5 s = 50 batches (+1 for the bucket's rounding at the edges).
  CHECK(backlog_sent >= 48);
  CHECK(backlog_sent <= 51);
  CHECK(rig.sender->nextDueUs() != INT64_MAX);  // wakes the uplink for the next token

  SECTION("setDrain changes the rate at the next pump") {
    rig.sender->setDrain({ReadOrder::kOldestFirst, 0});
    REQUIRE(rig.pump());
    CHECK(rig.published.size() >= 40);  // the window, not the rate, limits now
  }
}

TEST_CASE("Unacknowledged batches are sent again after the timeout, gone ones forgotten",
          "[agent][sender]") {
  SenderOptions opt;
  opt.max_inflight = 4;
  opt.ack_timeout_ms = 1000;
  Rig rig(0, opt);
  rig.sender->onConnected();
  rig.append(2);
  REQUIRE(rig.pump());
  CHECK(rig.published == std::vector<uint64_t>{1, 2});
  rig.published.clear();
  REQUIRE(rig.box->ack(2).has_value());  // e.g. evicted meanwhile
  rig.clock.advance(1100 * 1000);
  REQUIRE(rig.pump());
  CHECK(rig.published == std::vector<uint64_t>{1});
  CHECK(rig.sender->inFlight() == 1);
  // A publish failure reports the broken connection.
  rig.clock.advance(1100 * 1000);
  CHECK_FALSE(rig.sender->pump([](const StoredBatch&) { return false; }));
}

TEST_CASE("Acks of another epoch are ignored and counted", "[agent][sender]") {
  SenderOptions opt;
  Rig rig(0, opt);
  rig.sender->onConnected();
  rig.append(1);
  REQUIRE(rig.pump());
  std::vector<AckEvent> acks{{rig.box->epoch() + 1, 1, true, ""}};
  rig.sender->onAcks(acks);
  CHECK(rig.box->stats().rows == 1);
  CHECK(rig.registry.render().find("outpost_agent_bad_acks_total 1") != std::string::npos);
  rig.ackAll();
  CHECK(rig.box->stats().rows == 0);
  CHECK(rig.registry.render().find("outpost_agent_ack_round_trip_seconds_count 1") !=
        std::string::npos);
}
