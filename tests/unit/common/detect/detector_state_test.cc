// Issue 19: detector state moves between aggregator processes (save -> restore into a new object).

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/common/detect/device_detector.h"
#include "outpost/common/detect/sensor_detector.h"
#include "outpost/common/detect/state_io.h"

using namespace outpost::detect;

namespace {

constexpr int64_t kT0 = 1714521600000;  // 2024-05-01T00:00:00Z
constexpr int64_t kStep = 60000;        // one reading per minute: the daily profile arms in 1440

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string imageOf(const SensorDetector& d) {
  std::string s;
  d.save(s);
  return s;
}

// Daily cycle + noise; from `shift_at` on, `shift` is added for `shift_len` readings.
struct Series {
  std::mt19937_64 rng{7};
  std::normal_distribution<double> n{0.0, 1.0};
  double value(int i, int shift_at, int shift_len, double shift) {
    const double day = std::sin(2.0 * M_PI * static_cast<double>(i) / 1440.0);
    double v = 20.0 + 3.0 * day + 0.5 * n(rng);
    if (i >= shift_at && i < shift_at + shift_len) v += shift;
    return v;
  }
};

void requireSame(const DetectResult& a, const DetectResult& b) {
  REQUIRE(std::bit_cast<uint64_t>(a.score) == std::bit_cast<uint64_t>(b.score));
  REQUIRE(std::bit_cast<uint64_t>(a.surprise) == std::bit_cast<uint64_t>(b.surprise));
  REQUIRE(std::bit_cast<uint64_t>(a.raw_score) == std::bit_cast<uint64_t>(b.raw_score));
  REQUIRE(std::bit_cast<uint64_t>(a.expected_lo) == std::bit_cast<uint64_t>(b.expected_lo));
  REQUIRE(std::bit_cast<uint64_t>(a.expected_hi) == std::bit_cast<uint64_t>(b.expected_hi));
  REQUIRE(a.kind == b.kind);
  REQUIRE(a.alarm == b.alarm);
  REQUIRE(a.transition == b.transition);
  REQUIRE(a.valid == b.valid);
  REQUIRE(a.replaced == b.replaced);
}

}  // namespace

namespace {
struct Probed {  // a class whose field list forgot `b` (it fits into padding before `c`)
  int64_t a = 0;
  uint8_t b = 0;
  uint16_t c = 0;
  double d = 0;
};
template <class Ar>
void stateFields(Ar& ar, Probed& p) {
  ar(p.a, p.c, p.d);
}
}  // namespace

TEST_CASE("the field lists name every member of the detectors' state", "[common][detect][state]") {
  CHECK(SensorDetector::unlistedStateBytes() == "");
  CHECK(DeviceDetector::unlistedStateBytes() == "");
  // The probe finds a forgotten member even when the class size does not change.
  Probed p;
  StateLayoutProbe probe(&p, sizeof p, alignof(Probed));
  probe(p);
  CHECK(probe.gaps() == "bytes 8..9 are not in the field list");
  StateLayoutProbe tail(&p, sizeof p, alignof(Probed));
  tail(p.a, p.b, p.c);  // `d` forgotten at the end
  CHECK(tail.gaps() == "bytes 12..23 are not in the field list");
}

TEST_CASE("SensorDetector: a restored copy continues bit-exactly (one alarm across a move)",
          "[common][detect][state]") {
  DetectorConfig c;
  // 2,000 normal readings (the daily profile armed), then a level shift of 10 sd for 600
  // readings that opens an alarm; the move happens at `move_at`, inside the open anomaly.
  constexpr int kShiftAt = 2000, kShiftLen = 600, kTotal = 3000;
  const int move_at = GENERATE(2001, 2100, 2450);
  Series s;
  SensorDetector cont(&c);
  std::unique_ptr<SensorDetector> moved = std::make_unique<SensorDetector>(&c);
  int raised_cont = 0, raised_moved = 0, ended_cont = 0;
  bool alarm_at_move = false;
  for (int i = 0; i < kTotal; ++i) {
    if (i == move_at) {
      alarm_at_move = moved->alarmActive();
      std::string img;
      moved->save(img);
      auto fresh = std::make_unique<SensorDetector>(&c);  // another process's detector
      std::span<const uint8_t> in = bytesOf(img);
      REQUIRE(fresh->restore(in));
      CHECK(in.empty());  // consumed its bytes
      moved = std::move(fresh);
      REQUIRE(imageOf(*moved) == img);
    }
    const int64_t ts = kT0 + i * kStep;
    const double v = s.value(i, kShiftAt, kShiftLen, 5.0);
    const DetectResult a = cont.update(ts, v);
    const DetectResult b = moved->update(ts, v);
    requireSame(a, b);
    raised_cont += a.transition == AlarmTransition::kRaised;
    ended_cont += a.transition == AlarmTransition::kEnded;
    raised_moved += b.transition == AlarmTransition::kRaised;
    if (i % 100 == 99) requireSame(cont.poll(ts + kStep / 2), moved->poll(ts + kStep / 2));
  }
  CHECK(alarm_at_move);  // the move really happened inside the open anomaly
  CHECK(raised_cont == 1);
  CHECK(raised_moved == 1);  // one alarm, not two
  CHECK(ended_cont == 1);
  CHECK(cont.event().start_ms == moved->event().start_ms);
  CHECK(cont.event().end_ms == moved->event().end_ms);
  CHECK(cont.event().kind == moved->event().kind);
  CHECK(cont.validReadings() == moved->validReadings());
  CHECK(imageOf(cont) == imageOf(*moved));
}

TEST_CASE("SensorDetector: restore rejects bad images and changes nothing",
          "[common][detect][state]") {
  DetectorConfig c;
  Series s;
  SensorDetector src(&c);
  for (int i = 0; i < 300; ++i) src.update(kT0 + i * kStep, s.value(i, 200, 50, 8.0));
  const std::string img = imageOf(src);
  INFO("image bytes: " << img.size());
  CHECK(img.size() < 2048);

  SensorDetector dst(&c);
  for (int i = 0; i < 10; ++i) dst.update(kT0 + i * kStep, 1.0 + i);
  const std::string before = imageOf(dst);
  auto unchanged = [&] { REQUIRE(imageOf(dst) == before); };

  SECTION("truncated at every length") {
    for (size_t n = 0; n < img.size(); ++n) {
      std::span<const uint8_t> in = bytesOf(img).first(n);
      auto st = dst.restore(in);
      REQUIRE_FALSE(st);
      REQUIRE(in.size() == n);  // nothing consumed
      unchanged();
    }
  }
  SECTION("oversized: a body longer than its fields") {
    std::string big = img;
    big.push_back('\0');
    const uint32_t len = static_cast<uint32_t>(big.size() - 6);
    for (int i = 0; i < 4; ++i) big[2 + i] = static_cast<char>((len >> (8 * i)) & 0xff);
    std::span<const uint8_t> in = bytesOf(big);
    auto st = dst.restore(in);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().message(), Catch::Contains("unexpected bytes"));
    unchanged();
  }
  SECTION("another version or not a sensor image") {
    std::string v = img;
    v[1] = 3;  // the current version is 2
    std::span<const uint8_t> in = bytesOf(v);
    auto st = dst.restore(in);
    REQUIRE_FALSE(st);
    CHECK_THAT(st.error().message(), Catch::Contains("version 3 is not supported"));
    v = img;
    v[0] = 'D';
    in = bytesOf(v);
    REQUIRE_FALSE(dst.restore(in));
    unchanged();
  }
  SECTION("invalid values: a boolean of 2, an array longer than the member") {
    // The image of a fresh detector; its last bytes are the two trimmed profile arrays (count 0).
    SensorDetector fresh(&c);
    std::string f = imageOf(fresh);
    std::string bad = f;
    bad[bad.size() - 4] = 97;  // profile_w_ count 97 > kMaxSeasonBins
    std::span<const uint8_t> in = bytesOf(bad);
    REQUIRE_FALSE(dst.restore(in));
    unchanged();
  }
  SECTION("random bytes and bit flips never crash; an error leaves the detector as it was") {
    std::mt19937_64 rng(1);
    for (int k = 0; k < 2000; ++k) {
      std::string g = img;
      if (k % 2 == 0) {
        for (int j = 0; j < 1 + static_cast<int>(rng() % 4); ++j)
          g[rng() % g.size()] ^= static_cast<char>(1u << (rng() % 8));
      } else {
        g.resize(rng() % (img.size() + 16));
        for (char& ch : g) ch = static_cast<char>(rng());
      }
      SensorDetector t(&c);
      for (int i = 0; i < 5; ++i) t.update(kT0 + i * kStep, 3.0);
      const std::string t_before = imageOf(t);
      std::span<const uint8_t> in = bytesOf(g);
      if (auto st = t.restore(in); !st) {
        REQUIRE(imageOf(t) == t_before);
      } else {
        // A flip in a double is a valid (different) state: it must still run.
        for (int i = 0; i < 5; ++i) t.update(kT0 + (1000 + i) * kStep, 3.0);
        t.poll(kT0 + 2000 * kStep);
      }
    }
  }
}

TEST_CASE("DeviceDetector: a restored copy continues identically", "[common][detect][state]") {
  DetectorConfig c;
  DeviceDetector cont(&c, 3);
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.5);
  auto feed = [&](DeviceDetector& d, int i, const double* s) {
    for (uint32_t k = 0; k < 3; ++k) d.set(k, s[k], s[k] > 3.0 ? AnomalyKind::kLevelShift
                                                                : AnomalyKind::kNone);
    return d.evaluate(kT0 + i * kStep);
  };
  std::vector<std::array<double, 3>> ev(400);
  for (int i = 0; i < 400; ++i) {
    for (int k = 0; k < 3; ++k) ev[i][k] = u(rng) + (i >= 200 && i < 260 && k != 1 ? 5.0 : 0.0);
  }
  std::unique_ptr<DeviceDetector> moved;
  int raised = 0;
  for (int i = 0; i < 400; ++i) {
    if (i == 230) {  // inside the device alarm
      REQUIRE(cont.alarmActive());
      std::string img;
      cont.save(img);
      moved = std::make_unique<DeviceDetector>(&c, 0);
      std::span<const uint8_t> in = bytesOf(img);
      REQUIRE(moved->restore(in));
      CHECK(in.empty());
      CHECK(moved->sensors() == 3);
      CHECK(moved->event().sensors == cont.event().sensors);
      // Garbage: truncated and flipped version are rejected, nothing changes.
      DeviceDetector other(&c, 1);
      for (size_t n = 0; n < img.size(); ++n) {
        std::span<const uint8_t> t = bytesOf(img).first(n);
        REQUIRE_FALSE(other.restore(t));
        REQUIRE(other.sensors() == 1);
      }
    }
    const DeviceResult a = feed(cont, i, ev[i].data());
    raised += a.transition == AlarmTransition::kRaised;
    if (moved) {
      const DeviceResult b = feed(*moved, i, ev[i].data());
      REQUIRE(std::bit_cast<uint64_t>(a.score) == std::bit_cast<uint64_t>(b.score));
      REQUIRE(a.transition == b.transition);
      REQUIRE(a.alarm == b.alarm);
    }
  }
  CHECK(raised == 1);
  CHECK(moved->event().end_ms == cont.event().end_ms);
}
