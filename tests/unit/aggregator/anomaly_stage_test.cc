#include "outpost/aggregator/anomaly_stage.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "outpost/aggregator/aggregator_config.h"
#include "outpost/common/codec.h"

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;
namespace config = outpost::config;
namespace detect = outpost::detect;
namespace metrics = outpost::metrics;
namespace wire = outpost::wire;

namespace {

constexpr int64_t kT0 = 1'700'000'000'000'000;  // us
constexpr int64_t kStepUs = 1'000'000;          // one reading per second per sensor

agg::AnomalyOptions optionsFrom(const std::string& toml) {
  return agg::anomalyOptionsFrom(config::parseToml(toml, agg::aggregatorSchema(), "test.toml"));
}

std::string configError(const std::string& toml) {
  try {
    optionsFrom(toml);
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "";
}

// Feeds batches of `per_batch` readings per sensor, one batch per simulated arrival.
struct Feeder {
  agg::AnomalyStage& stage;
  std::string device = "dev-1";
  std::vector<std::string> sensors = {"temp"};
  int64_t ts = kT0;
  int64_t mono = 1'000'000'000;
  std::vector<agg::AnomalyRecord> events;

  // `value(i, k)`: value of reading i (global index) of sensor k.
  template <typename F>
  void batch(int n, F value, int64_t arrival_gap_us = 5'000'000) {
    codec::BatchContent b;
    b.device_id = device;
    b.epoch = 1;
    b.seq = 1;
    b.created_us = ts;
    for (size_t k = 0; k < sensors.size(); ++k)
      b.sensors.push_back({static_cast<uint16_t>(k + 1), sensors[k], ""});
    for (int i = 0; i < n; ++i) {
      for (size_t k = 0; k < sensors.size(); ++k)
        b.readings.emplace_back(ts, value(static_cast<int>((ts - kT0) / kStepUs), k),
                                static_cast<uint16_t>(k + 1), wire::Quality::Good);
      ts += kStepUs;
    }
    const auto bytes = codec::encodeBatch(b);
    auto v = codec::verifyBatch(std::span<const uint8_t>(bytes.data(), bytes.size()),
                                codec::VerifyLimits{});
    REQUIRE(v);
    mono += arrival_gap_us;
    stage.onBatch(device, **v, mono, events);
  }
};

double noise(int i, size_t k) {
  static std::mt19937_64 rng(42);
  static std::normal_distribution<double> n(0.0, 1.0);
  (void)i;
  (void)k;
  return n(rng);
}

const char* kNoSeason = R"(
[[detect.classes]]
name = "noseason"
match = "*"
season_period_s = 0
)";

}  // namespace

TEST_CASE("[detect] config: defaults, class overrides by glob, errors name the key",
          "[aggregator][anomaly]") {
  SECTION("defaults are the library's") {
    const auto o = optionsFrom("");
    CHECK(o.enabled);
    CHECK(o.topic == "outpost.anomalies");
    CHECK(o.defaults.spike_z == detect::DetectorConfig{}.spike_z);
    CHECK(std::isinf(o.defaults.range_min));
    CHECK(std::isinf(o.defaults.range_max));
    CHECK(o.classes.empty());
  }
  SECTION("a class overrides only what it sets, on top of [detect]") {
    const auto o = optionsFrom(R"(
[detect]
spike_z = 6.0
[[detect.classes]]
name = "temps"
match = "temp*"
range_min = -40
range_max = 85
[[detect.classes]]
name = "pumps on site b"
match = "*"
device = "site-b-*"
enable_stuck = false
)");
    REQUIRE(o.classes.size() == 2);
    CHECK(o.classes[0].cfg.spike_z == 6.0);  // inherited from [detect]
    CHECK(o.classes[0].cfg.range_min == -40);
    CHECK(o.classes[0].cfg.range_max == 85);
    CHECK(o.classes[1].cfg.enable_stuck == false);
    CHECK(o.classes[1].cfg.range_max == o.defaults.range_max);
    metrics::Registry reg;
    agg::AnomalyDetection d(o, reg);
    CHECK(d.configFor("dev-1", "temp_inside") == &d.options().classes[0].cfg);
    CHECK(d.configFor("site-b-7", "pressure") == &d.options().classes[1].cfg);
    CHECK(d.configFor("site-a-7", "pressure") == &d.options().defaults);
  }
  SECTION("errors name the key") {
    CHECK_THAT(configError("[detect]\nspike_z = -1\n"), Catch::Contains("detect.spike_z"));
    CHECK_THAT(configError("[detect]\nspike_zz = 5\n"), Catch::Contains("detect.spike_zz"));
    CHECK_THAT(configError("[[detect.classes]]\nname = \"x\"\nalarm_on = 0.4\nalarm_off = 0.45\n"),
               Catch::Contains("detect.classes[0]") && Catch::Contains("alarm_off"));
    CHECK_THAT(configError("[[detect.classes]]\nmatch = \"t*\"\n"),
               Catch::Contains("detect.classes[0].name"));
    CHECK_THAT(configError("[[detect.classes]]\nname = \"x\"\nmatch = \"\"\n"),
               Catch::Contains("detect.classes[0]"));
  }
}

TEST_CASE("AnomalyStage: a step gives one level_shift event, opened and ended",
          "[aggregator][anomaly]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom(kNoSeason), reg);
  auto stage = d.newStage(1);
  Feeder f{*stage};
  // Issue 13: 240 readings of history first (warmup_samples = 200, was 200 readings).
  for (int b = 0; b < 12; ++b) f.batch(20, [](int i, size_t k) { return 20.0 + noise(i, k); });
  CHECK(f.events.empty());
  for (int b = 0; b < 10; ++b) f.batch(20, [](int i, size_t k) { return 60.0 + noise(i, k); });
  REQUIRE(f.events.size() == 2);
  const auto& open = f.events[0];
  CHECK(open.device == "dev-1");
  CHECK(open.sensor == "temp");
  CHECK(open.kind == detect::AnomalyKind::kLevelShift);  // not "spike": the open event waits
  CHECK_FALSE(open.ended);
  CHECK(open.timestamp_us == kT0 + 240 * kStepUs);  // the first reading after the step
  CHECK(open.value > 50);
  CHECK(open.expected_hi < 30);
  CHECK(open.score >= 0.5);
  const auto& end = f.events[1];
  CHECK(end.ended);
  CHECK(end.kind == detect::AnomalyKind::kLevelShift);
  CHECK(end.timestamp_us == open.timestamp_us);
  CHECK(end.ended_us >= open.timestamp_us);
  CHECK(end.score >= open.score);

  std::string json;
  agg::appendAnomalyJson(open, json);
  CHECK_THAT(json, Catch::StartsWith("{\"device\":\"dev-1\",\"sensor\":\"temp\",\"kind\":"
                                     "\"level_shift\",\"detector\":\"cusum\",\"state\":\"open\","));
  CHECK_THAT(json, Catch::EndsWith(",\"ended_us\":null}"));
  json.clear();
  agg::appendAnomalyJson(end, json);
  CHECK_THAT(json, Catch::Contains("\"state\":\"ended\""));
  CHECK_THAT(json, Catch::EndsWith(",\"ended_us\":" + std::to_string(end.ended_us) + "}"));
  CHECK_THAT(reg.render(),
             Catch::Contains("outpost_aggregator_anomalies_total{kind=\"level_shift\"} 1"));
}

TEST_CASE("AnomalyStage: a single spike is published as a spike one reading later",
          "[aggregator][anomaly]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom(kNoSeason), reg);
  auto stage = d.newStage(1);
  Feeder f{*stage};
  for (int b = 0; b < 10; ++b) f.batch(20, [](int i, size_t k) { return noise(i, k); });
  f.batch(20, [](int i, size_t k) { return i == 210 ? 30.0 : noise(i, k); });
  REQUIRE(f.events.size() == 1);  // opened on reading 211: the next one is normal
  f.batch(20, [](int i, size_t k) { return noise(i, k); });
  REQUIRE(f.events.size() == 2);  // ended 10 readings later
  CHECK(f.events[0].kind == detect::AnomalyKind::kSpike);
  CHECK(f.events[0].timestamp_us == kT0 + 210 * kStepUs);
  CHECK(f.events[0].value == 30.0);
  // The opened event carries the sensor's recent values for the dashboard, the spike among them.
  REQUIRE(f.events[0].recent.size() >= 2);
  CHECK(f.events[0].recent.size() <= agg::kRecentValues);
  CHECK(std::any_of(f.events[0].recent.begin(), f.events[0].recent.end(),
                    [](const auto& p) { return p.second == 30.0; }));
  CHECK(std::is_sorted(f.events[0].recent.begin(), f.events[0].recent.end()));
  CHECK(f.events[1].ended);
  CHECK_THAT(reg.render(), Catch::Contains("outpost_aggregator_anomalies_total{kind=\"spike\"} 1"));
}

TEST_CASE("AnomalyStage: silence is raised by the timer, relative to the batches' cadence",
          "[aggregator][anomaly]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom("[detect]\npoll_interval_ms = 1000\n"), reg);
  auto stage = d.newStage(1);
  Feeder f{*stage};
  // Issue 13: 250 readings (warmup_samples = 200, was 100 readings).
  for (int b = 0; b < 25; ++b)
    f.batch(
        10, [](int i, size_t k) { return noise(i, k); }, 10'000'000);
  // Batches arrive every 10 s: 30 s without one is not silence yet (factor 4), 45 s is.
  CHECK(stage->poll(f.mono + 30'000'000, f.events));
  CHECK(f.events.empty());
  CHECK_FALSE(stage->poll(f.mono + 30'500'000, f.events));  // within the poll interval
  CHECK(stage->poll(f.mono + 45'000'000, f.events));
  REQUIRE(f.events.size() == 1);
  CHECK(f.events[0].kind == detect::AnomalyKind::kSilence);
  CHECK_FALSE(f.events[0].ended);
  CHECK(std::isnan(f.events[0].value));
  // Polling again does not repeat it; readings resuming end it.
  CHECK(stage->poll(f.mono + 60'000'000, f.events));
  CHECK(f.events.size() == 1);
  f.ts += 50 * kStepUs;
  f.batch(
      20, [](int i, size_t k) { return noise(i, k); }, 60'000'000);
  REQUIRE(f.events.size() == 2);
  CHECK(f.events[1].ended);
  CHECK(f.events[1].kind == detect::AnomalyKind::kSilence);
}

TEST_CASE("AnomalyStage: bounded, least recently seen evicted and counted",
          "[aggregator][anomaly]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom("[detect]\nmax_sensors = 16\n"), reg);
  auto stage = d.newStage(1);
  REQUIRE(stage->capacity() == 16);
  Feeder f{*stage};
  f.sensors.clear();
  for (int s = 0; s < 16; ++s) f.sensors.push_back("s" + std::to_string(s));
  f.batch(3, [](int i, size_t k) { return noise(i, k); });
  CHECK_THAT(reg.render(), Catch::Contains("outpost_aggregator_detect_evictions_total 0"));
  f.sensors.clear();
  for (int s = 16; s < 21; ++s) f.sensors.push_back("s" + std::to_string(s));
  f.batch(3, [](int i, size_t k) { return noise(i, k); });
  CHECK(stage->tracked() == 16);
  const std::string m = reg.render();
  CHECK_THAT(m, Catch::Contains("outpost_aggregator_detect_evictions_total 5"));
  CHECK_THAT(m, Catch::Contains("outpost_aggregator_detect_sensors 16"));
  CHECK_THAT(m, Catch::Contains("outpost_aggregator_detect_readings_total 63"));
  // Two workers share max_sensors.
  metrics::Registry reg2;
  agg::AnomalyDetection d2(optionsFrom("[detect]\nmax_sensors = 100\n"), reg2);
  CHECK(d2.newStage(2)->capacity() == 50);
}

// Issue 13: a device with several sensors also gets device-level events (scope "device"), kind
// `combined` when more than one sensor contributed, listing them; none while all is quiet.
TEST_CASE("AnomalyStage: device-level events combine the sensors of a device",
          "[aggregator][anomaly]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom(kNoSeason), reg);
  auto stage = d.newStage(1);
  Feeder f{*stage};
  f.sensors = {"current", "pressure", "flow"};
  for (int b = 0; b < 20; ++b) f.batch(20, [](int i, size_t k) { return 10.0 * k + noise(i, k); });
  CHECK(f.events.empty());
  // Current and flow step together; pressure stays.
  for (int b = 0; b < 3; ++b)
    f.batch(20, [](int i, size_t k) { return 10.0 * k + noise(i, k) + (k != 1 ? 30.0 : 0.0); });
  const auto dev = std::find_if(f.events.begin(), f.events.end(),
                                [](const agg::AnomalyRecord& r) { return r.device_level; });
  REQUIRE(dev != f.events.end());
  CHECK(dev->device == "dev-1");
  CHECK_FALSE(dev->ended);
  CHECK(dev->kind == detect::AnomalyKind::kCombined);
  CHECK(dev->sensors == std::vector<std::string>{"current", "flow"});
  CHECK(dev->sensor == "current+flow");
  CHECK(dev->score >= 0.5);
  CHECK(dev->timestamp_us == kT0 + 400 * kStepUs);
  std::string json;
  agg::appendAnomalyJson(*dev, json);
  CHECK_THAT(json, Catch::Contains("\"kind\":\"combined\",\"detector\":\"device_combined\""));
  CHECK_THAT(json, Catch::EndsWith(",\"scope\":\"device\",\"sensors\":[\"current\",\"flow\"]}"));
  // Sensor-level events are still there, one per stepped sensor.
  CHECK(std::count_if(f.events.begin(), f.events.end(), [](const agg::AnomalyRecord& r) {
          return !r.device_level && !r.ended;
        }) == 2);
  CHECK_THAT(reg.render(),
             Catch::Contains("outpost_aggregator_anomalies_total{kind=\"combined\"} 1"));
  // Back to normal: the device alarm's evidence subsides (a "changed" event, the alarm still
  // open, not counted as a new alarm), then it ends.
  for (int b = 0; b < 15; ++b) f.batch(20, [](int i, size_t k) { return 10.0 * k + noise(i, k); });
  const auto ch = std::find_if(f.events.begin(), f.events.end(), [](const agg::AnomalyRecord& r) {
    return r.device_level && r.changed;
  });
  REQUIRE(ch != f.events.end());
  CHECK(ch->subsided);
  CHECK_FALSE(ch->ended);
  CHECK(ch->timestamp_us == kT0 + 400 * kStepUs);  // the alarm it belongs to
  CHECK(ch->changed_us > ch->timestamp_us);
  json.clear();
  agg::appendAnomalyJson(*ch, json);
  CHECK_THAT(json, Catch::Contains("\"state\":\"changed\""));
  CHECK_THAT(json, Catch::Contains("\"phase\":\"subsided\""));
  const auto end = std::find_if(ch, f.events.end(), [](const agg::AnomalyRecord& r) {
    return r.device_level && r.ended;
  });
  CHECK(end != f.events.end());
  CHECK_THAT(reg.render(),
             Catch::Contains("outpost_aggregator_anomalies_total{kind=\"combined\"} 1"));
}

// Issue 19: after a failover the new owner catches up on a backlog: batches arrive milliseconds
// apart though each covers its usual interval of event time. The silence timer's cadence must not
// shrink to those milliseconds (the next batch on time then looked like a silence, which ended an
// open alarm and accepted its level: integration.cluster).
TEST_CASE("AnomalyStage: a backlog delivered in a burst does not make the next batch a silence",
          "[aggregator][anomaly]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom("[detect]\npoll_interval_ms = 1000\n"), reg);
  auto stage = d.newStage(1);
  Feeder f{*stage};
  for (int b = 0; b < 25; ++b)
    f.batch(
        10, [](int i, size_t k) { return noise(i, k); }, 10'000'000);
  // 8 batches of 10 s each, delivered 1 ms apart (a catch-up), then on time again.
  for (int b = 0; b < 8; ++b)
    f.batch(
        10, [](int i, size_t k) { return noise(i, k); }, 1'000);
  CHECK(stage->poll(f.mono + 10'000'000, f.events));
  CHECK(stage->poll(f.mono + 20'000'000, f.events));
  CHECK(f.events.empty());
  f.batch(
      10, [](int i, size_t k) { return noise(i, k); }, 25'000'000);
  CHECK(f.events.empty());
  // A real silence is still one: 4 usual intervals (13 s after that late batch) without a batch.
  CHECK(stage->poll(f.mono + 30'000'000, f.events));
  CHECK(f.events.empty());
  CHECK(stage->poll(f.mono + 60'000'000, f.events));
  REQUIRE(f.events.size() == 1);
  CHECK(f.events[0].kind == detect::AnomalyKind::kSilence);
}
