// Role ingest (issue 19): a verified batch goes unchanged to the batches topic and the agent is
// acked only after that delivery; no dedup store, no detection. The publisher is the fake of
// fake_publisher.h; the shared MQTT subscription is checked against a real Mosquitto.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <mqtt/async_client.h>

#include "outpost/aggregator/aggregator.h"
#include "outpost/aggregator/aggregator_config.h"
#include "outpost/aggregator/mqtt_ingest.h"
#include "outpost/common/codec.h"
#include "pipeline/fake_publisher.h"
#include "support/mosquitto.h"
#include "support/temp_dir.h"

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;
namespace config = outpost::config;
namespace metrics = outpost::metrics;
namespace wire = outpost::wire;
using outpost::testing::FakePublisher;
using outpost::testing::FakeSink;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kT0 = 1'700'000'000'000'000;  // us: first reading

class FixedClock final : public outpost::Clock {
 public:
  int64_t nowUs() const override { return kT0 + 60'000'000; }
  int64_t monotonicUs() const override { return 5'000'000'000; }
};

// The acks handed to the transport, decoded.
class Acks final : public agg::AckSink {
 public:
  struct Ack {
    std::string device;
    uint64_t seq;
    wire::AckStatus status;
  };
  bool sendAck(const std::string& device, std::vector<uint8_t> bytes) override {
    auto a = codec::verifyAck(std::span<const uint8_t>(bytes.data(), bytes.size()));
    std::lock_guard lock(mu_);
    acks_.push_back(a ? Ack{device, (*a)->seq(), (*a)->status()}
                      : Ack{"<undecodable>", 0, wire::AckStatus::Rejected});
    return true;
  }
  std::vector<Ack> all() const {
    std::lock_guard lock(mu_);
    return acks_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Ack> acks_;
};

struct IngestFixture {
  IngestFixture()
      : aggregator(options(dir.file("dedup.db")), registry, clock,
                   std::make_unique<FakeSink>(publisher)) {
    aggregator.start();
    REQUIRE(publisher != nullptr);
  }
  ~IngestFixture() { aggregator.stop(); }

  static agg::AggregatorOptions options(const std::string& dedup_path) {
    agg::AggregatorOptions o;  // detection and the latest store at their defaults: on
    o.dedup_path = dedup_path;
    o.workers = 2;
    o.forward_topic = "outpost.batches";
    return o;
  }

  agg::Inbound batch(const std::string& device, uint64_t seq, double value = 20.0) {
    codec::BatchContent b;
    b.device_id = device;
    b.epoch = 7;
    b.seq = seq;
    b.created_us = kT0;
    b.dropped = 3;
    b.sensors.push_back({1, "temp", "C"});
    for (int k = 0; k < 25; ++k) {
      b.readings.emplace_back(kT0 + k * 1'000'000, k == 20 ? value : 20.0, 1, wire::Quality::Good);
    }
    const auto bytes = codec::encodeBatch(b);
    agg::Inbound in;
    in.device = device;
    in.payload.assign(bytes.begin(), bytes.end());
    in.source = "outpost/v1/" + device + "/batch";
    in.received_us = 1'234'567;
    in.transport = "mqtt";
    in.reply = &acks;
    return in;
  }

  uint64_t counter(const std::string& name, const metrics::Labels& labels = {}) {
    return registry.counter(name, "", labels).value();
  }
  bool waitCounter(const std::string& name, uint64_t value) {
    for (int i = 0; i < 2000 && counter(name) < value; ++i) std::this_thread::sleep_for(10ms);
    return counter(name) == value;
  }

  outpost::testing::TempDir dir{"outpost-ingest-role-test"};
  metrics::Registry registry;
  FixedClock clock;
  Acks acks;
  FakePublisher* publisher = nullptr;
  agg::Aggregator aggregator;
};

}  // namespace

TEST_CASE("Ingest role: the verified bytes go unchanged to the batches topic, acked after delivery",
          "[aggregator][ingest]") {
  IngestFixture f;
  agg::Inbound in = f.batch("dev-1", 1);
  const std::string original = in.payload;
  REQUIRE(f.aggregator.submit(std::move(in)));
  REQUIRE(f.publisher->waitProduced(1));
  const FakePublisher::Message m = f.publisher->message(0);
  CHECK(m.topic == "outpost.batches");
  CHECK(m.key == "dev-1");
  CHECK(m.value == original);  // the FlatBuffers bytes as received, not rendered
  CHECK(m.header("outpost-device") == "dev-1");
  CHECK(m.header("outpost-epoch") == "7");
  CHECK(m.header("outpost-seq") == "1");
  CHECK(m.header("outpost-source") == "outpost/v1/dev-1/batch");
  CHECK(m.header("outpost-received-us") == "1234567");
  CHECK(m.header("outpost-transport") == "mqtt");
  CHECK(m.header("content-type") == "application/x-outpost-batch");
  CHECK(m.headers.size() == 7);

  // Nothing is acked before the delivery report.
  std::this_thread::sleep_for(50ms);
  CHECK(f.acks.all().empty());
  CHECK(f.publisher->produced() == 1);  // one message per batch, whatever its size
  f.publisher->deliver(0);
  const auto acks = f.acks.all();
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].device == "dev-1");
  CHECK(acks[0].seq == 1);
  CHECK(acks[0].status == wire::AckStatus::Accepted);
  CHECK(f.counter("outpost_aggregator_batches_forwarded_total") == 1);
  CHECK(f.counter("outpost_aggregator_batches_published_total") == 0);
  CHECK(f.counter("outpost_aggregator_readings_published_total") == 0);
  CHECK(f.counter("outpost_aggregator_readings_received_total", {{"transport", "mqtt"}}) == 25);
}

TEST_CASE("Ingest role: no dedup store, no detection, no latest store", "[aggregator][ingest]") {
  IngestFixture f;
  CHECK(f.aggregator.latest() == nullptr);
  CHECK_FALSE(f.aggregator.anomalies().enabled());
  // A spike far outside the history would be an anomaly in role all; here only the batches are
  // produced. And a resend is forwarded again: dedup is the process role's (a resend may reach
  // another ingest instance anyway).
  for (uint64_t seq = 1; seq <= 3; ++seq) REQUIRE(f.aggregator.submit(f.batch("dev-1", seq)));
  REQUIRE(f.aggregator.submit(f.batch("dev-1", 4, 1e6)));
  REQUIRE(f.aggregator.submit(f.batch("dev-1", 4, 1e6)));
  REQUIRE(f.publisher->waitProduced(5));
  f.publisher->deliverAll();
  for (size_t i = 0; i < f.publisher->produced(); ++i) {
    CHECK(f.publisher->message(i).topic == "outpost.batches");
  }
  CHECK(f.publisher->produced() == 5);
  CHECK(f.acks.all().size() == 5);
  CHECK(f.counter("outpost_aggregator_duplicate_batches_total") == 0);
  CHECK(f.counter("outpost_aggregator_batches_forwarded_total") == 5);
  // Stateless: no SQLite file (nor anything else) was created.
  CHECK_FALSE(std::filesystem::exists(f.dir.file("dedup.db")));
  CHECK(std::filesystem::is_empty(f.dir.path()));
}

TEST_CASE("Ingest role: no ack when the batch is not delivered, and the resend is forwarded",
          "[aggregator][ingest]") {
  IngestFixture f;
  SECTION("a failed delivery report") {
    REQUIRE(f.aggregator.submit(f.batch("dev-1", 1)));
    REQUIRE(f.publisher->waitProduced(1));
    f.publisher->deliver(0, /*ok=*/false);
  }
  SECTION("a batch that cannot be produced") {
    f.publisher->failProduceAt(0);
    REQUIRE(f.aggregator.submit(f.batch("dev-1", 1)));
    REQUIRE(f.publisher->waitRefused());
  }
  REQUIRE(f.waitCounter("outpost_aggregator_kafka_delivery_failures_total", 1));
  CHECK(f.acks.all().empty());
  CHECK(f.counter("outpost_aggregator_batches_forwarded_total") == 0);

  const size_t before = f.publisher->produced();
  REQUIRE(f.aggregator.submit(f.batch("dev-1", 1)));
  REQUIRE(f.publisher->waitProduced(before + 1));
  f.publisher->deliver(before);
  const auto acks = f.acks.all();
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].seq == 1);
  CHECK(acks[0].status == wire::AckStatus::Accepted);
}

TEST_CASE("Ingest role: an invalid batch is dead-lettered and acked as rejected",
          "[aggregator][ingest]") {
  IngestFixture f;
  SECTION("the batch claims another device than the transport vouches for") {
    agg::Inbound in = f.batch("dev-1", 9);
    in.device = "dev-2";
    REQUIRE(f.aggregator.submit(std::move(in)));
    REQUIRE(f.publisher->waitProduced(1));
    const auto m = f.publisher->message(0);
    CHECK(m.topic == "outpost.deadletter");
    CHECK_FALSE(m.header("outpost-reason").empty());
    CHECK(f.acks.all().empty());
    f.publisher->deliver(0);
    const auto acks = f.acks.all();
    REQUIRE(acks.size() == 1);
    CHECK(acks[0].device == "dev-2");
    CHECK(acks[0].seq == 9);
    CHECK(acks[0].status == wire::AckStatus::Rejected);
  }
  SECTION("bytes that are no batch: dead-lettered, nothing to ack") {
    agg::Inbound in = f.batch("dev-1", 1);
    in.payload = "not a flatbuffer at all";
    REQUIRE(f.aggregator.submit(std::move(in)));
    REQUIRE(f.publisher->waitProduced(1));
    CHECK(f.publisher->message(0).topic == "outpost.deadletter");
    CHECK(f.publisher->message(0).value == "not a flatbuffer at all");
    f.publisher->deliver(0);
    CHECK(f.acks.all().empty());
  }
  CHECK(f.counter("outpost_aggregator_deadletter_batches_total") == 1);
  CHECK(f.counter("outpost_aggregator_batches_forwarded_total") == 0);
}

namespace {

// Records what an MqttIngest hands over (no aggregator behind it).
class RecordingIntake final : public agg::Intake {
 public:
  bool submit(agg::Inbound in) override {
    std::lock_guard lock(mu_);
    received_.push_back(std::move(in));
    cv_.notify_all();
    return true;
  }
  std::vector<agg::Inbound> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }
  size_t count() const {
    std::lock_guard lock(mu_);
    return received_.size();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<agg::Inbound> received_;
};

}  // namespace

TEST_CASE("MqttIngest with mqtt.shared_group: the group shares the batches, topics unchanged",
          "[aggregator][ingest][mqtt]") {
  outpost::testing::MosquittoBroker broker;
  metrics::Registry registry;
  RecordingIntake intake_a, intake_b;
  auto options = [&](const std::string& role) {
    agg::MqttIngestOptions o;
    o.broker = broker.uri();
    o.client_id = outpost::testing::clientId(role);
    o.clean_session = true;
    o.shared_group = "outpost-ingest";
    return o;
  };
  agg::MqttIngest a(options("ingest-a"), intake_a, registry, outpost::SystemClock::instance());
  agg::MqttIngest b(options("ingest-b"), intake_b, registry, outpost::SystemClock::instance());
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  auto give_up = [deadline] { return std::chrono::steady_clock::now() >= deadline; };
  REQUIRE(a.start(give_up));
  REQUIRE(b.start(give_up));

  mqtt::async_client pub(broker.uri(), outpost::testing::clientId("pub"));
  REQUIRE(pub.connect(mqtt::connect_options_builder().clean_session(true).finalize())
              ->wait_for(15s));
  auto send = [&](int n) {
    const std::string device = "dev-" + std::to_string(n % 5);
    REQUIRE(pub.publish("outpost/v1/" + device + "/batch", std::to_string(n), 1, false)
                ->wait_for(15s));
  };
  // The subscriptions are made in the connected handlers: probe (bounded) until both have one.
  int probes = 0;
  for (; probes < 200 && (intake_a.count() == 0 || intake_b.count() == 0); ++probes) {
    send(1000 + probes);
    std::this_thread::sleep_for(20ms);
  }
  REQUIRE(intake_a.count() > 0);
  REQUIRE(intake_b.count() > 0);
  for (int i = 0; i < 200 && intake_a.count() + intake_b.count() < static_cast<size_t>(probes);
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  const size_t before_a = intake_a.count(), before_b = intake_b.count();
  REQUIRE(before_a + before_b == static_cast<size_t>(probes));
  constexpr int kMessages = 40;
  for (int n = 0; n < kMessages; ++n) send(n);
  for (int i = 0; i < 1000 && intake_a.count() + intake_b.count() < before_a + before_b + kMessages;
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  pub.disconnect()->wait_for(5s);
  a.stop();
  b.stop();

  // Every message went to exactly one of the two, with the plain topic and device.
  std::multiset<std::string> payloads;
  for (const auto* intake : {&intake_a, &intake_b}) {
    for (const agg::Inbound& in : intake->received()) {
      CHECK(in.source == "outpost/v1/" + in.device + "/batch");
      CHECK(in.device == "dev-" + std::to_string(std::stoi(in.payload) % 5));
      payloads.insert(in.payload);
    }
  }
  CHECK(payloads.size() == static_cast<size_t>(probes + kMessages));
  CHECK(std::set<std::string>(payloads.begin(), payloads.end()).size() == payloads.size());
  // Mosquitto hands a group's messages out round-robin: both got some of the 40.
  CHECK(intake_a.count() > before_a);
  CHECK(intake_b.count() > before_b);
}
