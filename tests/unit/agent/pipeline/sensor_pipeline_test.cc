#include "outpost/agent/sensor_pipeline.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "outpost/agent/agent_config.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"

using namespace outpost;
using namespace outpost::agent;

namespace {

constexpr int64_t kT0 = 1714564800LL * 1000000;
constexpr int64_t kSecond = 1000000;

AgentInputs inputsFrom(const std::string& toml) {
  const auto cfg = config::parseToml("device_id = \"d\"\n" + toml, agentSchema(), "test.toml");
  return parseInputs(cfg);
}

std::string configError(const std::string& toml) {
  try {
    (void)inputsFrom(toml);
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "no error";
}

std::vector<codec::SensorInfo> dictionary(const AgentInputs& in) {
  std::vector<codec::SensorInfo> d;
  for (const auto& s : in.sensors) d.push_back({s.id, s.name, s.unit});
  return d;
}

}  // namespace

TEST_CASE("Sensor config: filters in order, windows, output", "[agent][config]") {
  const auto in = inputsFrom(R"(
[[sensors]]
name = "temp"
source = "stdin"
output = "both"
window.kind = "sliding"
window.size_ms = 60000
window.hop_ms = 10000
window.allowed_lateness_ms = 5000
[[sensors.filters]]
type = "range"
min = -40
max = 125
action = "suspect"
[[sensors.filters]]
type = "deadband"
absolute = 0.5
heartbeat_s = 300
[[sensors]]
name = "legacy"
rate_hz = 2
shape = "counter"
)");
  REQUIRE(in.sensors.size() == 2);
  const auto& t = in.sensors[0];
  CHECK(t.source == SourceKind::kStdin);
  REQUIRE(t.filters.size() == 2);
  CHECK(t.filters[0].kind == FilterKind::kRange);
  CHECK(t.filters[0].out_of_range == Action::kSuspect);
  CHECK(t.filters[1].kind == FilterKind::kDeadband);
  CHECK(t.filters[1].heartbeat_us == 300 * kSecond);
  CHECK(t.window.kind == WindowKind::kSliding);
  CHECK(t.window.hop_us == 10 * kSecond);
  CHECK(t.window.lateness_us == 5 * kSecond);
  CHECK(t.output == Output::kBoth);
  CHECK(in.sensors[1].source == SourceKind::kSimulated);  // old configs keep working
  CHECK(in.sensors[1].simulated.rate_hz == 2);
}

TEST_CASE("Sensor config errors name the key and what is allowed", "[agent][config]") {
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nsource=\"serial\"\n"),
             Catch::Contains("sensors[0].source") && Catch::Contains("\"mqtt\""));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nsource=\"stdin\"\nrate_hz=5\n"),
             Catch::Contains("sensors[0].rate_hz is set but applies only to source = "
                             "\"simulated\""));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nsource=\"mqtt\"\n"),
             Catch::Contains("sensors[0].mqtt.topic is required"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nsource=\"mqtt\"\nmqtt.topic=\"a/b#\"\n"),
             Catch::Contains("not a valid topic filter"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nsource=\"socket\"\n"),
             Catch::Contains("sources.socket.path is required"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nsource=\"hwmon\"\nhwmon.chip=\"x\"\n"),
             Catch::Contains("sensors[0].hwmon.input is required"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nsource=\"hwmon\"\nhwmon.chip=\"../x\"\n"
                         "hwmon.input=\"temp1_input\"\n"),
             Catch::Contains("without '/'"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\n[[sensors]]\nname=\"a\"\n"),
             Catch::Contains("sensors[1].name = \"a\" is used twice"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\n[[sensors.filters]]\ntype=\"deadband\"\n"
                         "min=3\n"),
             Catch::Contains("sensors[0].filters[0].min is set but applies only to type = "
                             "\"range\""));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\n[[sensors.filters]]\ntype=\"rate_limit\"\n"),
             Catch::Contains("sensors[0].filters[0]: a rate_limit filter needs"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\n[[sensors.filters]]\ntype=\"range\"\n"
                         "min=3\nmax=1\n"),
             Catch::Contains("sensors[0].filters[0].min = 3 is above"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\n[[sensors.filters]]\ntype=\"kalman\"\n"),
             Catch::Contains("sensors[0].filters[0].type") && Catch::Contains("\"dedup\""));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\n[[sensors.filters]]\ntype=\"range\"\n"
                         "colour=1\n"),
             Catch::Contains("unknown key 'sensors[0].filters[0].colour'"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\noutput=\"windows\"\n"),
             Catch::Contains("sensors[0].output = \"windows\" needs a window"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nwindow.kind=\"sliding\"\nwindow.size_ms=10000\n"
                         "window.hop_ms=3000\n"),
             Catch::Contains("sensors[0].window.hop_ms = 3000 does not divide"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nwindow.kind=\"tumbling\"\nwindow.hop_ms=1000\n"),
             Catch::Contains("sensors[0].window.hop_ms is set but applies only to"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nwindow.size_ms=1000\n"),
             Catch::Contains("sensors[0].window.size_ms is set but applies only to"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nwindow.kind=\"sliding\"\nwindow.size_ms=100000\n"
                         "window.hop_ms=1\n"),
             Catch::Contains("too large"));
  CHECK_THAT(configError("[[sensors]]\nname=\"a\"\nrate_hz=1\npoll_interval_ms=100\n"),
             Catch::Contains("rate_hz or poll_interval_ms, not both"));
  CHECK_THAT(configError("[sources.stdin]\nformat=\"xml\"\n[[sensors]]\nname=\"a\"\n"),
             Catch::Contains("sources.stdin.format") && Catch::Contains("\"csv\""));
}

TEST_CASE("SensorPipeline: filters, then raw and/or windows into the batch", "[agent][pipeline]") {
  metrics::Registry reg;
  const auto in = inputsFrom(R"(
[[sensors]]
name = "raw_only"
source = "stdin"
[[sensors.filters]]
type = "range"
max = 100
[[sensors]]
name = "windows_only"
source = "stdin"
output = "windows"
window.kind = "tumbling"
window.size_ms = 10000
[[sensors.filters]]
type = "range"
max = 100
action = "bad"
[[sensors]]
name = "both"
source = "stdin"
output = "both"
window.kind = "tumbling"
window.size_ms = 10000
)");
  SensorPipeline p(in.sensors, &reg);
  Batcher batcher(100000, 1000000, dictionary(in));
  for (int i = 0; i < 20; ++i) {
    for (uint16_t s = 0; s < 3; ++s) {
      const double v = i == 5 ? 500 : i;  // reading 5 is out of range
      p.process(wire::Reading(kT0 + i * kSecond, v, s, wire::Quality::Good), 0, batcher);
    }
  }
  p.closeAll(0, batcher);
  auto batch = batcher.take("d", kT0);
  size_t raw[3] = {}, win[3] = {};
  for (const auto& r : batch.readings) ++raw[r.sensor()];
  for (const auto& w : batch.windows) ++win[w.sensor()];
  CHECK(raw[0] == 19);  // one dropped by range
  CHECK(win[0] == 0);
  CHECK(raw[1] == 0);
  CHECK(win[1] == 2);
  CHECK(raw[2] == 20);
  CHECK(win[2] == 2);
  CHECK(batch.sensors.size() == 3);
  for (const auto& w : batch.windows) {
    if (w.sensor() == 1 && w.start_us() == kT0) {
      CHECK(w.count() == 9);  // the bad reading is kept raw-side only, never in statistics
      CHECK(w.max() == 9);
    }
    if (w.sensor() == 2 && w.start_us() == kT0) CHECK(w.max() == 500);
  }
  CHECK(p.filters(0)[0]->counts().droppedFor(FilterDropReason::kOutOfRange) == 1);
  CHECK(p.filters(1)[0]->counts().marked == 1);
  CHECK(reg.render().find("outpost_agent_windows_emitted_total 4") != std::string::npos);

  SECTION("late readings count under reason=\"late\"") {
    p.process(wire::Reading(kT0, 1, 2, wire::Quality::Good), 0, batcher);
    CHECK(p.window(2)->late() == 1);
    CHECK(reg.render().find("outpost_agent_readings_filtered_total{reason=\"late\"} 1") !=
          std::string::npos);
  }
  SECTION("idle sensors close their windows after size + lateness of processing time") {
    p.process(wire::Reading(kT0 + 100 * kSecond, 1, 2, wire::Quality::Good), 5'000'000, batcher);
    p.closeIdle(10'000'000, batcher);  // 5 s idle: not yet
    CHECK(batcher.take("d", kT0).windows.empty());
    p.closeIdle(15'100'000, batcher);  // 10.1 s idle
    CHECK(batcher.take("d", kT0).windows.size() == 1);
  }
}
