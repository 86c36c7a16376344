// The ack-after-delivery contract of the pipeline (design.md, Delivery 2 and 3), with the
// publisher injected: a fake that records messages and reports only when the test says so.

#include "outpost/aggregator/aggregator.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/aggregator/aggregator_config.h"
#include "outpost/common/codec.h"
#include "pipeline/fake_publisher.h"
#include "support/temp_dir.h"

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;
namespace config = outpost::config;
namespace metrics = outpost::metrics;
namespace wire = outpost::wire;
using outpost::testing::FakePublisher;
using outpost::testing::FakeSink;

namespace {

constexpr int64_t kT0 = 1'700'000'000'000'000;  // us: first reading
constexpr int64_t kStepUs = 1'000'000;          // one reading per second

class ManualClock final : public outpost::Clock {
 public:
  int64_t nowUs() const override { return kT0 + 86'400'000'000; }
  int64_t monotonicUs() const override { return mono_.load(); }
  void advance(int64_t us) { mono_ += us; }

 private:
  std::atomic<int64_t> mono_{1'000'000'000};
};

// Records the acks the aggregator hands to the transport.
class RecordingAcks final : public agg::AckSink {
 public:
  struct Ack {
    std::string device;
    uint64_t epoch, seq;
    wire::AckStatus status;
    std::string reason;
  };
  bool sendAck(const std::string& device, std::vector<uint8_t> bytes) override {
    // Called on the worker or the delivery thread: no Catch assertions here.
    auto a = codec::verifyAck(std::span<const uint8_t>(bytes.data(), bytes.size()));
    std::lock_guard lock(mu_);
    if (!a) {
      acks_.push_back({"<undecodable ack>", 0, 0, wire::AckStatus::Rejected, ""});
    } else {
      acks_.push_back({device, (*a)->epoch(), (*a)->seq(), (*a)->status(),
                       (*a)->reason() ? (*a)->reason()->str() : ""});
    }
    cv_.notify_all();
    return true;
  }
  std::vector<Ack> acks() const {
    std::lock_guard lock(mu_);
    return acks_;
  }
  bool waitFor(size_t n, std::chrono::seconds bound = std::chrono::seconds(20)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, bound, [&] { return acks_.size() >= n; });
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Ack> acks_;
};

agg::AggregatorOptions testOptions(const std::string& dedup_path, bool anomalies) {
  agg::AggregatorOptions o;
  if (anomalies) {
    // The detector settings of the AnomalyStage tests: no seasonality, spikes raised.
    o.anomalies = agg::anomalyOptionsFrom(config::parseToml(
        "[[detect.classes]]\nname = \"noseason\"\nmatch = \"*\"\nseason_period_s = 0\n",
        agg::aggregatorSchema(), "test.toml"));
  } else {
    o.anomalies.enabled = false;
  }
  o.latest.enabled = false;
  o.dedup_path = dedup_path;
  o.workers = 1;
  o.queue_capacity = 1;
  o.items_per_message = 10;  // 25 readings: 3 parts
  o.flush_interval_ms = 20;
  return o;
}

struct Fixture {
  explicit Fixture(bool anomalies = false)
      : aggregator(testOptions(dir.file("dedup.db"), anomalies), registry, clock,
                   std::make_unique<FakeSink>(publisher)) {
    aggregator.start();
    REQUIRE(publisher != nullptr);
  }
  ~Fixture() {
    publisher->setCapacity(SIZE_MAX);  // nothing may wait for room while the workers drain
    aggregator.stop();
  }

  // Batch `seq` of dev-1 with `n` readings of sensor "temp"; value(i) for global reading i.
  template <typename F>
  agg::Inbound batch(uint64_t seq, int n, F value) {
    codec::BatchContent b;
    b.device_id = "dev-1";
    b.epoch = 7;
    b.seq = seq;
    b.created_us = kT0;
    b.sensors.push_back({1, "temp", "C"});
    for (int k = 0; k < n; ++k, ++reading) {
      b.readings.emplace_back(kT0 + reading * kStepUs, value(reading), 1, wire::Quality::Good);
    }
    const auto bytes = codec::encodeBatch(b);
    agg::Inbound in;
    in.device = "dev-1";
    in.payload.assign(bytes.begin(), bytes.end());
    in.source = "test";
    in.received_us = clock.nowUs();
    in.reply = &acks;
    return in;
  }
  agg::Inbound batch(uint64_t seq, int n) {
    return batch(seq, n, [](int64_t) { return 20.0; });
  }

  bool submit(agg::Inbound in) {
    clock.advance(5'000'000);  // batches arrive every 5 s
    return aggregator.submit(std::move(in));
  }

  uint64_t counter(const std::string& name, const metrics::Labels& labels = {}) {
    return registry.counter(name, "", labels).value();
  }
  // Waits (bounded) until a counter reaches `value` (it is bumped on another thread).
  bool waitCounter(const std::string& name, uint64_t value) {
    for (int i = 0; i < 2000 && counter(name) < value; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return counter(name) == value;
  }

  outpost::testing::TempDir dir{"outpost-pipeline-test"};
  metrics::Registry registry;
  ManualClock clock;
  RecordingAcks acks;
  FakePublisher* publisher = nullptr;
  agg::Aggregator aggregator;
  int64_t reading = 0;
};

}  // namespace

TEST_CASE("Aggregator: a batch is acked only after every part is delivered",
          "[aggregator][pipeline]") {
  Fixture f;
  REQUIRE(f.submit(f.batch(1, 25)));
  REQUIRE(f.publisher->waitProduced(3));
  // One delivery context per batch: every part reports to the same listener.
  const auto m0 = f.publisher->message(0), m1 = f.publisher->message(1),
             m2 = f.publisher->message(2);
  CHECK(m0.topic == "outpost.readings");
  CHECK(m0.key == "dev-1");
  CHECK(m2.header("outpost-part") == "3");
  CHECK(m2.header("outpost-parts") == "3");
  CHECK(m0.listener != nullptr);
  CHECK(m1.listener == m0.listener);
  CHECK(m2.listener == m0.listener);

  // Reports in any order; the ack is sent by the last one (here, on this thread).
  f.publisher->deliver(2);
  f.publisher->deliver(0);
  CHECK(f.acks.acks().empty());
  f.publisher->deliver(1);
  const auto acks = f.acks.acks();
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].device == "dev-1");
  CHECK(acks[0].epoch == 7);
  CHECK(acks[0].seq == 1);
  CHECK(acks[0].status == wire::AckStatus::Accepted);
  CHECK(f.counter("outpost_aggregator_batches_published_total") == 1);
  CHECK(f.counter("outpost_aggregator_readings_published_total") == 25);

  // The next batch has a context of its own: its one part acks it alone. (Its listener's address
  // may be the finished first batch's: the allocator can reuse it, so addresses prove nothing.)
  REQUIRE(f.submit(f.batch(2, 5)));
  REQUIRE(f.publisher->waitProduced(4));
  f.publisher->deliver(3);
  REQUIRE(f.acks.acks().size() == 2);
  CHECK(f.acks.acks()[1].seq == 2);
}

TEST_CASE("Aggregator: the anomaly events of a batch gate its ack too", "[aggregator][pipeline]") {
  Fixture f(/*anomalies=*/true);
  std::mt19937_64 rng(42);
  std::normal_distribution<double> noise(0.0, 1.0);
  // 200 readings of history (warm-up), each batch delivered and acked.
  size_t delivered = 0;
  for (uint64_t seq = 1; seq <= 10; ++seq) {
    REQUIRE(f.submit(f.batch(seq, 20, [&](int64_t) { return noise(rng); })));
    REQUIRE(f.publisher->waitProduced(delivered + 2));  // 20 readings: 2 parts
    f.publisher->deliverAll();
    delivered = f.publisher->produced();
    REQUIRE(f.acks.waitFor(seq));
  }
  REQUIRE(delivered == 20);  // no event yet
  // A spike at reading 210: the batch produces its 2 parts and one event (opened a reading later).
  REQUIRE(f.submit(f.batch(11, 20, [&](int64_t i) { return i == 210 ? 30.0 : noise(rng); })));
  REQUIRE(f.publisher->waitProduced(23));
  std::vector<size_t> parts, events;
  for (size_t i = 20; i < 23; ++i) {
    const auto m = f.publisher->message(i);
    (m.topic == "outpost.anomalies" ? events : parts).push_back(i);
    CHECK(m.listener == f.publisher->message(20).listener);
  }
  REQUIRE(parts.size() == 2);
  REQUIRE(events.size() == 1);
  CHECK(f.publisher->message(events[0]).header("outpost-anomaly") == "open");

  for (size_t i : parts) f.publisher->deliver(i);
  CHECK(f.acks.acks().size() == 10);  // the event is not delivered yet
  f.publisher->deliver(events[0]);
  REQUIRE(f.acks.acks().size() == 11);
  CHECK(f.acks.acks()[10].seq == 11);
  CHECK(f.acks.acks()[10].status == wire::AckStatus::Accepted);
}

TEST_CASE("Aggregator: no ack when any part fails and the resend is produced again",
          "[aggregator][pipeline]") {
  Fixture f;
  SECTION("a failed delivery report") {
    REQUIRE(f.submit(f.batch(1, 25)));
    REQUIRE(f.publisher->waitProduced(3));
    f.publisher->deliver(0);
    f.publisher->deliver(1, /*ok=*/false);
    f.publisher->deliver(2);
    CHECK(f.acks.acks().empty());
    CHECK(f.counter("outpost_aggregator_kafka_delivery_failures_total") == 1);
    CHECK(f.counter("outpost_aggregator_batches_published_total") == 0);
  }
  SECTION("a part that cannot be produced") {
    f.publisher->failProduceAt(1);  // the second part
    REQUIRE(f.submit(f.batch(1, 25)));
    REQUIRE(f.publisher->waitRefused());
    // The worker gives up on the batch at once: the parts after the refused one are never
    // produced, and the batch finishes with the first part's report (or with the refusal, when
    // that comes last).
    f.publisher->deliver(0);
    REQUIRE(f.waitCounter("outpost_aggregator_kafka_delivery_failures_total", 1));
    CHECK(f.publisher->produced() == 1);
    CHECK(f.acks.acks().empty());
  }
  // The dedup claim was released: the agent's resend is produced (all 3 parts) and acked.
  const size_t before = f.publisher->produced();
  f.reading = 0;
  REQUIRE(f.submit(f.batch(1, 25)));
  REQUIRE(f.publisher->waitProduced(before + 3));
  f.publisher->deliverAll();
  REQUIRE(f.acks.acks().size() == 1);
  CHECK(f.acks.acks()[0].seq == 1);
  CHECK(f.acks.acks()[0].status == wire::AckStatus::Accepted);
}

TEST_CASE("Aggregator: a duplicate is acked without producing", "[aggregator][pipeline]") {
  Fixture f;
  REQUIRE(f.submit(f.batch(1, 25)));
  REQUIRE(f.publisher->waitProduced(3));

  // A resend while the first copy is in flight: neither produced nor acked.
  f.reading = 0;
  REQUIRE(f.submit(f.batch(1, 25)));
  REQUIRE(f.waitCounter("outpost_aggregator_duplicate_inflight_batches_total", 1));
  CHECK(f.publisher->produced() == 3);
  CHECK(f.acks.acks().empty());

  f.publisher->deliverAll();
  REQUIRE(f.acks.acks().size() == 1);

  // A resend after delivery: acked again (accepted), nothing produced.
  f.reading = 0;
  REQUIRE(f.submit(f.batch(1, 25)));
  REQUIRE(f.acks.waitFor(2));
  CHECK(f.acks.acks()[1].seq == 1);
  CHECK(f.acks.acks()[1].status == wire::AckStatus::Accepted);
  CHECK(f.publisher->produced() == 3);
  CHECK(f.counter("outpost_aggregator_duplicate_batches_total") == 1);
  CHECK(f.counter("outpost_aggregator_batches_published_total") == 1);
}

TEST_CASE("Aggregator: a full publisher queue pauses intake until deliveries make room",
          "[aggregator][pipeline]") {
  Fixture f;
  f.publisher->setCapacity(1);  // one message queued at most
  REQUIRE(f.submit(f.batch(1, 5)));  // produced: the queue is full
  REQUIRE(f.publisher->waitProduced(1));
  REQUIRE(f.submit(f.batch(2, 5)));  // the worker waits in produce()
  REQUIRE(f.publisher->waitQueueFull());
  REQUIRE(f.submit(f.batch(3, 5)));  // waits in the worker queue (capacity 1)

  // The next batch cannot be handed over: submit() blocks, pushing back on the transport.
  std::atomic<bool> returned{false};
  agg::Inbound fourth = f.batch(4, 5);
  std::thread transport([&] {
    f.aggregator.submit(std::move(fourth));
    returned = true;
  });
  struct Joiner {  // also when an assertion below ends the test early
    FakePublisher& publisher;
    std::thread& thread;
    ~Joiner() {
      if (!thread.joinable()) return;
      publisher.setCapacity(SIZE_MAX);
      thread.join();
    }
  } joiner{*f.publisher, transport};
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // room to (wrongly) return
  CHECK_FALSE(returned.load());
  CHECK(f.publisher->produced() == 1);
  CHECK(f.acks.acks().empty());

  // Each delivery makes room for one more message: intake resumes.
  for (size_t n = 1; n <= 4; ++n) {
    REQUIRE(f.publisher->waitProduced(n));
    f.publisher->deliver(n - 1);
  }
  transport.join();
  CHECK(returned.load());
  REQUIRE(f.acks.acks().size() == 4);
  std::set<uint64_t> seqs;
  for (const auto& a : f.acks.acks()) seqs.insert(a.seq);
  CHECK(seqs == std::set<uint64_t>{1, 2, 3, 4});
}

TEST_CASE("Aggregator: a rejected batch is acked as rejected once its dead letter is delivered",
          "[aggregator][pipeline]") {
  Fixture f;
  agg::Inbound in = f.batch(1, 5);
  in.device = "dev-2";  // the transport vouches for another device than the batch claims
  REQUIRE(f.submit(std::move(in)));
  REQUIRE(f.publisher->waitProduced(1));
  const auto m = f.publisher->message(0);
  CHECK(m.topic == "outpost.deadletter");
  CHECK(m.header("outpost-reason") != "");
  CHECK(f.acks.acks().empty());
  f.publisher->deliver(0);
  const auto acks = f.acks.acks();
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].device == "dev-2");
  CHECK(acks[0].status == wire::AckStatus::Rejected);
  CHECK_FALSE(acks[0].reason.empty());
  CHECK(f.counter("outpost_aggregator_deadletter_batches_total") == 1);
}
