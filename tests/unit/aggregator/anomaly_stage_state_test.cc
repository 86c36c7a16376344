// Issue 19: a device's detector state moves from one AnomalyStage (process instance) to another:
// the events after the move are exactly those of a stage that never moved.

#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "outpost/aggregator/aggregator_config.h"
#include "outpost/aggregator/anomaly_stage.h"
#include "outpost/aggregator/device_state.h"
#include "outpost/common/codec.h"
#include "outpost/common/detect/device_detector.h"
#include "outpost/common/detect/sensor_detector.h"

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;
namespace config = outpost::config;
namespace detect = outpost::detect;
namespace metrics = outpost::metrics;
namespace wire = outpost::wire;

namespace {

constexpr int64_t kT0 = 1'700'000'000'000'000;  // us
constexpr int64_t kStepUs = 1'000'000;
constexpr int64_t kArrivalUs = 5'000'000;

agg::AnomalyOptions optionsFrom(const std::string& toml) {
  return agg::anomalyOptionsFrom(config::parseToml(toml, agg::aggregatorSchema(), "test.toml"));
}

const char* kNoSeason = R"(
[detect]
poll_interval_ms = 1000
[[detect.classes]]
name = "noseason"
match = "*"
season_period_s = 0
)";

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Verified batches of one device, built once and fed to several stages.
struct Batches {
  std::string device = "dev-1";
  std::vector<std::string> sensors;
  int64_t ts = kT0;
  int64_t step_us = kStepUs;
  uint64_t seq = 0;
  std::mt19937_64 rng{11};
  std::normal_distribution<double> n{0.0, 1.0};
  std::vector<std::vector<uint8_t>> all;

  // `shift(k)`: added to sensor k's level in this batch.
  template <typename F>
  void add(int readings, F shift) {
    codec::BatchContent b;
    b.device_id = device;
    b.epoch = 1;
    b.seq = ++seq;
    b.created_us = ts;
    for (size_t k = 0; k < sensors.size(); ++k)
      b.sensors.push_back({static_cast<uint16_t>(k + 1), sensors[k], ""});
    for (int i = 0; i < readings; ++i) {
      for (size_t k = 0; k < sensors.size(); ++k)
        b.readings.emplace_back(ts, 10.0 * static_cast<double>(k) + n(rng) + shift(k),
                                static_cast<uint16_t>(k + 1), wire::Quality::Good);
      ts += step_us;
    }
    all.push_back(codec::encodeBatch(b));
  }
};

// One stage with its own monotonic clock.
struct Instance {
  std::unique_ptr<agg::AnomalyStage> stage;
  int64_t mono;
  std::vector<agg::AnomalyRecord> events;
  void feed(const Batches& bs, size_t i) {
    auto v = codec::verifyBatch(std::span<const uint8_t>(bs.all[i].data(), bs.all[i].size()),
                                codec::VerifyLimits{});
    REQUIRE(v);
    mono += kArrivalUs;
    stage->onBatch(bs.device, **v, mono, events);
  }
  void idle(int64_t us) {
    mono += us;
    stage->poll(mono, events);
  }
};

bool sameBits(double a, double b) {
  return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}

void requireSame(const std::vector<agg::AnomalyRecord>& a,
                 const std::vector<agg::AnomalyRecord>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("event " << i);
    REQUIRE(a[i].device == b[i].device);
    REQUIRE(a[i].sensor == b[i].sensor);
    REQUIRE(a[i].kind == b[i].kind);
    REQUIRE(a[i].ended == b[i].ended);
    REQUIRE(a[i].changed == b[i].changed);
    REQUIRE(a[i].subsided == b[i].subsided);
    REQUIRE(a[i].changed_us == b[i].changed_us);
    REQUIRE(a[i].timestamp_us == b[i].timestamp_us);
    REQUIRE(a[i].ended_us == b[i].ended_us);
    REQUIRE(sameBits(a[i].value, b[i].value));
    REQUIRE(sameBits(a[i].score, b[i].score));
    REQUIRE(sameBits(a[i].expected_lo, b[i].expected_lo));
    REQUIRE(sameBits(a[i].expected_hi, b[i].expected_hi));
    REQUIRE(a[i].recent == b[i].recent);
    REQUIRE(a[i].device_level == b[i].device_level);
    REQUIRE(a[i].sensors == b[i].sensors);
  }
}

struct MoveResult {
  std::vector<agg::AnomalyRecord> unmoved;  // a stage that never moved
  std::vector<agg::AnomalyRecord> before;   // stage one, up to the move
  std::vector<agg::AnomalyRecord> after;    // stage two, after the move
};

// Runs `bs` through an unmoved stage and through stage one (batches [0, move_after)) ->
// saveDevice -> stage two (restoreDevice, the rest), then a silence long enough for a silence
// alarm on both. Requires the events of the moved pair to be exactly those of the unmoved stage.
MoveResult checkMove(agg::AnomalyDetection& d, const Batches& bs, size_t move_after) {
  Instance unmoved{d.newStage(1), 1'000'000'000};
  Instance one{d.newStage(1), 1'000'000'000};
  Instance two{d.newStage(1), 77'000'000'000};  // another process: another monotonic clock
  for (size_t i = 0; i < bs.all.size(); ++i) {
    unmoved.feed(bs, i);
    if (i < move_after) {
      one.feed(bs, i);
      continue;
    }
    if (i == move_after) {
      std::string img;
      REQUIRE(one.stage->saveDevice(bs.device, one.mono, img));
      REQUIRE(two.stage->restoreDevice(bs.device, bytesOf(img), two.mono));
      one.stage->dropDevice(bs.device);  // its partition moved away
      CHECK(one.stage->tracked() == 0);
      std::string again;
      CHECK_FALSE(one.stage->saveDevice(bs.device, one.mono, again));
      CHECK(again.empty());
      CHECK(two.stage->tracked() == bs.sensors.size());
    }
    two.feed(bs, i);
  }
  // Silence: measured from the last arrival in each stage's own clock.
  for (int k = 0; k < 5; ++k) {
    unmoved.idle(20 * kArrivalUs);
    two.idle(20 * kArrivalUs);
  }
  std::vector<agg::AnomalyRecord> moved = one.events;
  moved.insert(moved.end(), two.events.begin(), two.events.end());
  requireSame(unmoved.events, moved);
  return {unmoved.events, one.events, two.events};
}

size_t countOf(const std::vector<agg::AnomalyRecord>& v, bool ended, int64_t start_us,
               bool device_level = false) {
  return static_cast<size_t>(std::count_if(v.begin(), v.end(), [&](const agg::AnomalyRecord& r) {
    return r.ended == ended && !r.changed && r.timestamp_us == start_us &&
           r.device_level == device_level;
  }));
}

}  // namespace

TEST_CASE("AnomalyStage: an anomaly open across a move raises one alarm, no warm-up after it",
          "[aggregator][anomaly][state]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom(kNoSeason), reg);
  Batches bs;
  bs.sensors = {"temp"};
  for (int b = 0; b < 12; ++b) bs.add(20, [](size_t) { return 0.0; });  // readings 0..239
  // The step at reading 240 in batches of one reading, so that a move can fall inside the
  // alarm: after batch 12 the open event is still pending (a spike or a step?), after 13 and
  // 14 it is published and the alarm open.
  for (int b = 0; b < 4; ++b) bs.add(1, [](size_t) { return 40.0; });
  for (int b = 0; b < 10; ++b) bs.add(20, [](size_t) { return 40.0; });
  for (int b = 0; b < 10; ++b) bs.add(20, [](size_t) { return 0.0; });  // back: a new alarm
  const size_t move_after = GENERATE(13u, 14u, 15u);
  const MoveResult m = checkMove(d, bs, move_after);
  const int64_t step_us = kT0 + 240 * kStepUs;
  // One alarm for the step, opened on one side of the move and ended on the other.
  CHECK(countOf(m.unmoved, false, step_us) == 1);
  CHECK(countOf(m.before, false, step_us) + countOf(m.after, false, step_us) == 1);
  CHECK(countOf(m.before, true, step_us) == 0);  // still open at the move
  CHECK(countOf(m.after, true, step_us) == 1);
  if (move_after == 13) CHECK(countOf(m.after, false, step_us) == 1);  // was pending
  // No warm-up after the move: the step back (reading 440 + 3) alarms on stage two as on the
  // unmoved stage, and so does the final silence.
  const auto later =
      std::count_if(m.after.begin(), m.after.end(), [&](const agg::AnomalyRecord& r) {
        return !r.ended && r.timestamp_us > step_us;
      });
  CHECK(later >= 2);
  CHECK(std::any_of(m.after.begin(), m.after.end(), [](const agg::AnomalyRecord& r) {
    return !r.ended && r.kind == detect::AnomalyKind::kSilence;
  }));
}

TEST_CASE("AnomalyStage: device-level state moves too (multi-sensor device)",
          "[aggregator][anomaly][state]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom(kNoSeason), reg);
  Batches bs;
  bs.sensors = {"current", "pressure", "flow"};
  for (int b = 0; b < 20; ++b) bs.add(20, [](size_t) { return 0.0; });  // readings 0..399
  for (int b = 0; b < 4; ++b) bs.add(1, [](size_t k) { return k != 1 ? 30.0 : 0.0; });
  for (int b = 0; b < 6; ++b) bs.add(20, [](size_t k) { return k != 1 ? 30.0 : 0.0; });
  for (int b = 0; b < 6; ++b) bs.add(20, [](size_t) { return 0.0; });
  const size_t move_after = GENERATE(21u, 22u, 23u);
  const MoveResult m = checkMove(d, bs, move_after);
  const int64_t step_us = kT0 + 400 * kStepUs;
  CHECK(countOf(m.unmoved, false, step_us, true) == 1);
  CHECK(countOf(m.before, false, step_us, true) + countOf(m.after, false, step_us, true) == 1);
  CHECK(countOf(m.before, true, step_us, true) == 0);
  CHECK(countOf(m.after, true, step_us, true) == 1);
  // The step back subsides the device alarm's evidence before it ends: one "changed" event,
  // on one side of the move.
  auto changed = [&](const std::vector<agg::AnomalyRecord>& v) {
    return std::count_if(v.begin(), v.end(), [&](const agg::AnomalyRecord& r) {
      return r.changed && r.subsided && r.timestamp_us == step_us && r.device_level;
    });
  };
  CHECK(changed(m.unmoved) == 1);
  CHECK(changed(m.before) + changed(m.after) == 1);
}

TEST_CASE("AnomalyStage: restoreDevice rejects bad bytes and changes nothing",
          "[aggregator][anomaly][state]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom(kNoSeason), reg);
  Batches bs;
  bs.sensors = {"a", "b"};
  for (int b = 0; b < 15; ++b) bs.add(20, [](size_t) { return 0.0; });
  Instance src{d.newStage(1), 1'000'000'000};
  for (size_t i = 0; i < bs.all.size(); ++i) src.feed(bs, i);
  std::string img;
  REQUIRE(src.stage->saveDevice("dev-1", src.mono, img));
  std::string none;
  CHECK_FALSE(src.stage->saveDevice("dev-2", src.mono, none));
  CHECK(none.empty());

  // The target tracks the same device already (older state) and another one.
  Instance dst{d.newStage(1), 5'000'000'000};
  for (size_t i = 0; i < 3; ++i) dst.feed(bs, i);
  Batches other = bs;
  other.device = "dev-2";
  dst.feed(other, 0);
  std::string before1, before2;
  REQUIRE(dst.stage->saveDevice("dev-1", 0, before1));
  REQUIRE(dst.stage->saveDevice("dev-2", 0, before2));
  const size_t tracked = dst.stage->tracked();
  auto unchanged = [&] {
    std::string a, b;
    REQUIRE(dst.stage->saveDevice("dev-1", 0, a));
    REQUIRE(dst.stage->saveDevice("dev-2", 0, b));
    REQUIRE(a == before1);
    REQUIRE(b == before2);
    REQUIRE(dst.stage->tracked() == tracked);
  };
  SECTION("truncated at every length") {
    for (size_t n = 0; n < img.size(); ++n) {
      REQUIRE_FALSE(dst.stage->restoreDevice("dev-1", bytesOf(img).first(n), dst.mono));
    }
    unchanged();
  }
  SECTION("another version, trailing bytes, garbage") {
    std::string v = img;
    v[1] = 9;
    auto st = dst.stage->restoreDevice("dev-1", bytesOf(v), dst.mono);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().message(), Catch::Contains("version 9 is not supported"));
    v = img + "x";
    st = dst.stage->restoreDevice("dev-1", bytesOf(v), dst.mono);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().message(), Catch::Contains("after the image"));
    std::mt19937_64 rng(2);
    for (int k = 0; k < 500; ++k) {
      std::string g(rng() % 600, '\0');
      for (char& c : g) c = static_cast<char>(rng());
      if (!g.empty()) g[0] = 'A';
      if (g.size() > 1) g[1] = 1;
      REQUIRE_FALSE(dst.stage->restoreDevice("dev-1", bytesOf(g), dst.mono));
    }
    unchanged();
  }
  SECTION("bit flips never crash; an accepted flip still runs") {
    std::mt19937_64 rng(3);
    for (int k = 0; k < 300; ++k) {
      std::string g = img;
      g[rng() % g.size()] ^= static_cast<char>(1u << (rng() % 8));
      if (dst.stage->restoreDevice("dev-1", bytesOf(g), dst.mono)) {
        dst.feed(bs, 3);
        dst.idle(100 * kArrivalUs);
      }
    }
  }
  SECTION("a valid image replaces the device's state; the other device is untouched") {
    REQUIRE(dst.stage->restoreDevice("dev-1", bytesOf(img), dst.mono));
    std::string a, b;
    REQUIRE(dst.stage->saveDevice("dev-1", dst.mono, a));
    REQUIRE(dst.stage->saveDevice("dev-2", 0, b));
    CHECK(b == before2);
    // Same state; the arrival times are relative, so saving at the same relative moment
    // reproduces the image byte for byte.
    CHECK(a == img);
  }
}

TEST_CASE("AnomalyStage: restoreDevice respects capacity, dropDevice frees entries",
          "[aggregator][anomaly][state]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom(kNoSeason), reg);
  Batches bs;
  bs.sensors = {"s1", "s2", "s3"};
  for (int b = 0; b < 3; ++b) bs.add(10, [](size_t) { return 0.0; });
  Instance src{d.newStage(1), 1'000'000'000};
  for (size_t i = 0; i < bs.all.size(); ++i) src.feed(bs, i);
  std::string img;
  REQUIRE(src.stage->saveDevice("dev-1", src.mono, img));

  Instance small{std::make_unique<agg::AnomalyStage>(d, 4), 1'000'000'000};
  Batches other = bs;
  other.device = "dev-2";
  small.feed(other, 0);
  CHECK(small.stage->tracked() == 3);
  REQUIRE(small.stage->restoreDevice("dev-1", bytesOf(img), small.mono));
  CHECK(small.stage->tracked() == 4);  // two of dev-2's sensors evicted (least recently seen)
  CHECK_THAT(reg.render(), Catch::Contains("outpost_aggregator_detect_evictions_total 2"));
  std::string a;
  REQUIRE(small.stage->saveDevice("dev-1", small.mono, a));
  CHECK(a.size() == img.size());
  small.stage->dropDevice("dev-1");
  CHECK(small.stage->tracked() == 1);
  small.stage->dropDevice("dev-1");  // twice: nothing
  small.stage->dropDevice("nobody");
  CHECK(small.stage->tracked() == 1);
  // Freed entries are reused before anything is evicted.
  small.feed(bs, 0);
  CHECK(small.stage->tracked() == 4);
  CHECK_THAT(reg.render(), Catch::Contains("outpost_aggregator_detect_evictions_total 2"));
}

TEST_CASE("AnomalyStage: detector state of a 7-sensor device stays small",
          "[aggregator][anomaly][state]") {
  // The [detect] defaults (daily profile of 48 bins) after a day of minute readings: every
  // profile bin learned, the largest image a sensor has with the defaults.
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom(""), reg);
  Batches bs;
  bs.sensors = {"t1", "t2", "t3", "p1", "p2", "flow", "current"};
  bs.step_us = 60 * kStepUs;
  Instance st{d.newStage(1), 1'000'000'000};
  for (int b = 0; b < 25; ++b) {
    bs.add(60, [](size_t) { return 0.0; });
    st.feed(bs, bs.all.size() - 1);
  }
  std::string img;
  REQUIRE(st.stage->saveDevice("dev-1", st.mono, img));
  const size_t per_sensor = img.size() / bs.sensors.size();
  CAPTURE(img.size(), per_sensor);
  CHECK(per_sensor <= 2048);
  // The image survives the outpost.state record unchanged (opaque bytes).
  CHECK(img.size() < 7 * 2048);
}

// The committed seeds of the state_decode fuzz target (tests/fuzz/corpus/state_decode) must be
// accepted by today's decoders: a seed the decoder rejects only ever exercises the rejection path.
// Two of them (record_3_sensors, stage_image) went stale unnoticed when the sensor image grew a
// version 2. They are written from a real stage here: OUTPOST_WRITE_STATE_SEEDS=<dir> rewrites
// them after a format change (then commit the files).
TEST_CASE("state_decode fuzz seeds are in today's format", "[aggregator][anomaly][state]") {
  metrics::Registry reg;
  agg::AnomalyDetection d(optionsFrom(kNoSeason), reg);
  Batches bs;
  bs.sensors = {"current", "pressure", "flow"};
  Instance st{d.newStage(1), 1'000'000'000};
  for (int b = 0; b < 12; ++b) {
    bs.add(20, [](size_t) { return 0.0; });
    st.feed(bs, bs.all.size() - 1);
  }
  std::string stage_img;
  REQUIRE(st.stage->saveDevice(bs.device, st.mono, stage_img));
  agg::DeviceStateRecord rec;
  rec.device = bs.device;
  rec.dedup.add(1, 1);
  rec.dedup.add(1, 2);
  rec.dedup.add(1, 12);
  rec.dedup.add(2, 1);
  rec.detectors = stage_img;
  rec.updated_us = kT0;

  if (const char* dir = std::getenv("OUTPOST_WRITE_STATE_SEEDS")) {
    auto write = [&](const char* name, const std::string& bytes) {
      std::ofstream(std::string(dir) + "/" + name, std::ios::binary) << bytes;
    };
    write("record_3_sensors", agg::encodeDeviceState(rec));
    write("stage_image", stage_img);
    static const detect::DetectorConfig cfg;
    detect::SensorDetector s(&cfg);
    for (int i = 0; i < 200; ++i) s.update(kT0 / 1000 + i * 1000, 20.0 + (i % 7) * 0.1);
    std::string sensor_img;
    s.save(sensor_img);
    write("sensor_image", sensor_img);
    detect::DeviceDetector dev(&cfg, 3);
    for (int i = 0; i < 10; ++i) {
      dev.set(static_cast<uint32_t>(i % 3), 0.5 * i, detect::AnomalyKind::kSpike);
      dev.evaluate(kT0 / 1000 + i * 1000);
    }
    std::string device_img;
    dev.save(device_img);
    write("device_image", device_img);
  }

  auto read = [](const char* name) {
    std::ifstream in(std::string(OUTPOST_SOURCE_DIR) + "/tests/fuzz/corpus/state_decode/" + name,
                     std::ios::binary);
    REQUIRE(in.good());
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  SECTION("record_3_sensors: a record whose detector image restores") {
    const std::string bytes = read("record_3_sensors");
    auto got = agg::decodeDeviceState(bytesOf(bytes));
    REQUIRE(got);
    CHECK(got->dedup.intervals() == 3);
    Instance other{d.newStage(1), 5'000'000'000};
    REQUIRE(other.stage->restoreDevice(got->device, bytesOf(got->detectors), other.mono));
    CHECK(other.stage->tracked() == 3);
  }
  SECTION("stage_image: an AnomalyStage device image that restores") {
    const std::string bytes = read("stage_image");
    Instance other{d.newStage(1), 5'000'000'000};
    REQUIRE(other.stage->restoreDevice("dev-1", bytesOf(bytes), other.mono));
    CHECK(other.stage->tracked() == 3);
  }
  SECTION("sensor_image and device_image: detector images that restore whole") {
    static const detect::DetectorConfig cfg;
    detect::SensorDetector s(&cfg);
    const std::string sensor = read("sensor_image");
    std::span<const uint8_t> in = bytesOf(sensor);
    REQUIRE(s.restore(in));
    CHECK(in.empty());
    detect::DeviceDetector dev(&cfg, 3);
    const std::string device = read("device_image");
    in = bytesOf(device);
    REQUIRE(dev.restore(in));
    CHECK(in.empty());
  }
}
