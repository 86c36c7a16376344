// OpsCenter reads the data path through the injected PipelineStats and MQTT state (ops.h,
// OpsSources), never by metric name: the snapshot shows exactly what they report.
#include <atomic>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/aggregator/ops.h"
#include "outpost/common/json.h"

using namespace outpost;
using namespace outpost::aggregator;

namespace {

// Time under the test's control: each tick is one second later.
class StepClock final : public Clock {
 public:
  int64_t nowUs() const override { return 1'700'000'000'000'000 + mono_; }
  int64_t monotonicUs() const override { return mono_; }
  void advance(int64_t us) { mono_ += us; }

 private:
  int64_t mono_ = 1'000'000;
};

// A data path that reports fixed figures (what the Aggregator computes from its meters).
struct Figures final : PipelineStats {
  PipelineTotals t;
  PipelineLevels l;
  metrics::Histogram ack{metrics::exponentialBuckets(0.0005, 2, 16)};
  PipelineTotals totals() const override { return t; }
  PipelineLevels levels() const override { return l; }
  metrics::Histogram::Snapshot ackLatency() const override { return ack.snapshot(); }
};

json::Value parsed(const std::string& s) {
  auto v = json::parse(s);
  REQUIRE(v.has_value());
  return std::move(*v);
}

double num(const json::Value& v, std::initializer_list<std::string_view> path) {
  const json::Value* at = &v;
  for (auto k : path) {
    at = at->find(k);
    REQUIRE(at != nullptr);
  }
  REQUIRE(at->asDouble());
  return *at->asDouble();
}

}  // namespace

TEST_CASE("ops center snapshot comes from the injected pipeline stats", "[aggregator][ops]") {
  metrics::Registry reg;
  // Series of the old names in the registry must not matter any more.
  reg.counter("outpost_aggregator_readings_received_total", "decoy").inc(999);
  StepClock clock;
  Figures fig;
  std::atomic<bool> mqtt{false};
  OpsCenter ops({}, reg, clock, {}, [] { return std::vector<std::string>{"kafka: down"}; },
                OpsSources{&fig, [&mqtt] { return mqtt.load(); }});

  fig.t.readings_in = 5000;
  fig.t.readings_published = 4000;
  fig.t.batches_in = 10;
  fig.t.rejected = 2;
  fig.t.duplicates = 1;
  fig.t.kafka_delivered = 20;
  fig.t.anomalies = 3;
  fig.l.kafka_outstanding = 7;
  fig.l.intake_paused = 1;
  fig.l.queue_depths = {4, 0};
  for (int i = 0; i < 10; ++i) fig.ack.observe(0.004);
  mqtt = true;
  clock.advance(1'000'000);
  ops.tick();

  const json::Value s = parsed(ops.snapshot());
  CHECK(num(s, {"totals", "readings_in"}) == 5000);
  CHECK(num(s, {"totals", "readings_published"}) == 4000);
  CHECK(num(s, {"totals", "rejected_batches"}) == 2);
  CHECK(num(s, {"totals", "anomalies"}) == 3);
  CHECK(num(s, {"rates", "readings_in"}) == 5000);  // over one second, from zero
  CHECK(num(s, {"rates", "kafka_delivered"}) == 20);
  CHECK(num(s, {"kafka", "outstanding_messages"}) == 7);
  CHECK(num(s, {"kafka", "intake_paused"}) == 1);
  CHECK(num(s, {"mqtt_connected"}) == 1);
  const double ack_p50 = num(s, {"latency_s", "ack", "p50"});
  CHECK(ack_p50 > 0.002);
  CHECK(ack_p50 <= 0.004);
  REQUIRE(s.find("workers")->items().size() == 2);
  CHECK(*s.find("workers")->items()[0].asDouble() == 4);
  CHECK(*s.find("ready")->asBool() == false);
  CHECK(*s.find("reasons")->items()[0].asString() == "kafka: down");

  SECTION("without a data path or MQTT: zeros and null") {
    metrics::Registry reg2;
    OpsCenter bare({}, reg2, clock, {}, {});
    bare.tick();
    const json::Value b = parsed(bare.snapshot());
    CHECK(num(b, {"totals", "readings_in"}) == 0);
    CHECK(b.find("mqtt_connected")->isNull());
    CHECK(b.find("workers")->items().empty());
  }
}
