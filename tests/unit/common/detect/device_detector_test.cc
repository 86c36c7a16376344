// Issue 13: the device combines its sensors' calibrated evidence correctly for their number.

#include "outpost/common/detect/device_detector.h"

#include <cmath>
#include <random>
#include <sstream>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/common/detect/backtest.h"

using namespace outpost::detect;

TEST_CASE("device combination: Bonferroni and truncated Fisher", "[common][detect][device]") {
  const double log2 = std::log10(2.0);
  SECTION("no evidence: 0") {
    std::vector<double> s(8, 0.0);
    CHECK(DeviceDetector::combine(s.data(), 8) == 0.0);
  }
  SECTION("one sensor far out: its surprise less log10(N), less log10(2) for the two tests") {
    std::vector<double> s(8, 0.0);
    s[3] = 6.0;
    CHECK(DeviceDetector::combine(s.data(), 8) == Approx(6.0 - std::log10(8.0) - log2));
    CHECK(DeviceDetector::combine(s.data(), 1 + 3) == Approx(6.0 - std::log10(4.0) - log2));
  }
  SECTION("four sensors at S = 3 of 8: Fisher, stronger than any one of them") {
    std::vector<double> s = {3, 3, 3, 3, 0, 0, 0, 0};
    // x = 12 ln 10; p = e^-x sum_{k<8} x^k / k!  (computed by hand: S = 5.191 after log10(2))
    CHECK(DeviceDetector::combine(s.data(), 8) == Approx(5.191076).epsilon(1e-4));
  }
  SECTION("independent uniform p-values: the combination is not anti-conservative") {
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    int hits = 0;
    const int trials = 200000;
    std::vector<double> s(8);
    for (int t = 0; t < trials; ++t) {
      for (double& x : s) x = -std::log10(u(rng));
      if (DeviceDetector::combine(s.data(), 8) >= 3.0) ++hits;  // p <= 1e-3
    }
    CHECK(hits <= trials / 1000);
  }
}

TEST_CASE("device alarm, kind and contributing sensors", "[common][detect][device]") {
  DetectorConfig c;
  c.device_min_samples = 1;  // raised at the first evaluation (persistence: next test)
  DeviceDetector d(&c, 4);
  int64_t t = 0;
  CHECK(d.evaluate(t += 1000).transition == AlarmTransition::kNone);
  SECTION("one sensor: the event has its kind and lists it") {
    d.set(2, 8.0, AnomalyKind::kSpike);
    const DeviceResult r = d.evaluate(t += 1000);
    CHECK(r.transition == AlarmTransition::kRaised);
    CHECK(d.event().kind == AnomalyKind::kSpike);
    CHECK(d.event().sensors == std::vector<uint32_t>{2});
  }
  SECTION("several sensors: kind combined") {
    d.set(0, 4.0, AnomalyKind::kLevelShift);
    d.set(3, 4.0, AnomalyKind::kDip);
    d.set(1, 3.5, AnomalyKind::kSpike);
    CHECK(d.evaluate(t += 1000).alarm);
    CHECK(d.event().kind == AnomalyKind::kCombined);
    CHECK(d.event().sensors == std::vector<uint32_t>{0, 1, 3});
    for (uint32_t i = 0; i < 4; ++i) d.set(i, 0.0, AnomalyKind::kNone);
    int ended = 0;
    for (uint32_t k = 0; k < c.device_clear_samples; ++k)
      ended += d.evaluate(t += 1000).transition == AlarmTransition::kEnded;
    CHECK(ended == 1);
    CHECK_FALSE(d.alarmActive());
    CHECK(d.event().end_ms == d.event().start_ms);  // the last evaluation above alarm_off
    CHECK(d.event().sensors.size() == 3);
  }
}

TEST_CASE("device alarm needs device_min_samples evaluations in a row",
          "[common][detect][device]") {
  DetectorConfig c;
  REQUIRE(c.device_min_samples == 5);  // the shipped default (docs/detection.md)
  DeviceDetector d(&c, 3);
  int64_t t = 0;
  SECTION("a short burst (4 evaluations) raises nothing") {
    for (int k = 0; k < 4; ++k) {
      d.set(1, 8.0, AnomalyKind::kSpike);
      CHECK(d.evaluate(t += 1000).transition == AlarmTransition::kNone);
    }
    d.set(1, 0.0, AnomalyKind::kNone);
    CHECK(d.evaluate(t += 1000).transition == AlarmTransition::kNone);
    d.set(1, 8.0, AnomalyKind::kSpike);  // the count starts again
    CHECK(d.evaluate(t += 1000).transition == AlarmTransition::kNone);
    CHECK_FALSE(d.alarmActive());
  }
  SECTION("a gap (every contributing sensor silent) raises at once") {
    d.set(0, 9.0, AnomalyKind::kSilence);
    d.set(2, 9.0, AnomalyKind::kSilence);
    CHECK(d.evaluate(t += 1000).transition == AlarmTransition::kRaised);
    CHECK(d.event().kind == AnomalyKind::kCombined);
  }
  SECTION("silence beside other evidence waits like any other") {
    d.set(0, 9.0, AnomalyKind::kSilence);
    d.set(1, 9.0, AnomalyKind::kSpike);
    CHECK(d.evaluate(t += 1000).transition == AlarmTransition::kNone);
  }
  SECTION("raised at the fifth; the event starts where the evidence began") {
    d.set(0, 8.0, AnomalyKind::kLevelShift);
    for (int k = 0; k < 4; ++k) CHECK(d.evaluate(t += 1000).transition == AlarmTransition::kNone);
    const int64_t first = t - 3000;
    d.set(2, 6.0, AnomalyKind::kDip);
    CHECK(d.evaluate(t += 1000).transition == AlarmTransition::kRaised);
    CHECK(d.event().start_ms == first);
    CHECK(d.event().sensors == std::vector<uint32_t>{0, 2});
    CHECK(d.event().kind == AnomalyKind::kCombined);
  }
}

TEST_CASE("multi-sensor CSV backtest", "[common][detect][device][backtest]") {
  std::ostringstream csv;
  csv << "datetime;a;b;label;c\n";
  std::mt19937_64 rng(4);
  std::normal_distribution<double> n(0.0, 1.0);
  for (int i = 0; i < 600; ++i) {
    const double jump = i >= 500 ? 30.0 : 0.0;
    csv << "2024-05-01 00:" << (i / 60 < 10 ? "0" : "") << i / 60 << ':' << (i % 60 < 10 ? "0" : "")
        << i % 60 << ';' << 10 + n(rng) << ';' << 20 + n(rng) + jump << ';' << (i >= 500) << ';'
        << 5 + 0.1 * n(rng) << '\n';
  }
  DetectorConfig c;
  DeviceCsvOptions opt;
  opt.ignore = {"LABEL"};
  std::istringstream in(csv.str());
  std::ostringstream out;
  auto st = backtestDeviceCsv(in, out, c, opt);
  REQUIRE(st.has_value());
  CHECK(st->rows == 600);
  CHECK(st->sensors == std::vector<std::string>{"a", "b", "c"});
  std::istringstream lines(out.str());
  std::string header, line;
  std::getline(lines, header);
  CHECK(header == "timestamp,a_score,b_score,c_score,device_score,device_alarm,device_kind,"
                  "device_sensors");
  int rows = 0, alarm_at_jump = 0, alarms_before = 0;
  while (std::getline(lines, line)) {
    // Raised once the device evidence has lasted device_min_samples readings.
    if (rows == 500 + static_cast<int>(c.device_min_samples) - 1 &&
        line.find(",1,") != std::string::npos &&
        line.find(",b") != std::string::npos)
      alarm_at_jump = 1;
    if (rows >= 100 && rows < 500 && line.find(",1,") != std::string::npos) ++alarms_before;
    ++rows;
  }
  CHECK(rows == 600);
  CHECK(alarm_at_jump == 1);
  CHECK(alarms_before == 0);
  SECTION("bad input names the problem") {
    std::istringstream only_time("time;label\n2024-05-01 00:00:00;1\n");
    std::ostringstream o;
    auto e = backtestDeviceCsv(only_time, o, c, opt);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message().find("no sensor column") != std::string::npos);
  }
}

// Issue 13 second pass + issue 19: the members added for SKAB (calibration episode counters,
// device persistence) are part of the state image - a restored pair of detectors continues
// exactly like the originals, also in the middle of a sustained shift and a pending device raise.
TEST_CASE("save/restore mid-shift and mid-persistence continues identically",
          "[common][detect][device]") {
  DetectorConfig c;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> n(0.0, 1.0);
  SensorDetector a(&c), b(&c);
  DeviceDetector da(&c, 2), db(&c, 2);
  auto value = [&](int i, double noise) { return 10.0 + (i >= 700 ? 6.0 : 0.0) + noise; };
  int64_t t = 0;
  int i = 0;
  // Up to the second evaluation of a raise that needs five.
  for (; i < 2000; ++i) {
    const DetectResult r = a.update(t += 1000, value(i, n(rng)));
    da.set(0, r.surprise, r.kind);
    da.set(1, 0.0, AnomalyKind::kNone);
    const DeviceResult d = da.evaluate(t);
    if (i > 700 && d.score >= c.alarm_on && !da.alarmActive()) break;
  }
  REQUIRE(i < 2000);
  std::string img;
  a.save(img);
  da.save(img);
  std::span<const uint8_t> in(reinterpret_cast<const uint8_t*>(img.data()), img.size());
  REQUIRE(b.restore(in).has_value());
  REQUIRE(db.restore(in).has_value());
  CHECK(in.empty());
  bool raised = false;
  for (int k = 0; k < 400; ++k, ++i) {
    const double x = value(i, n(rng));
    const DetectResult ra = a.update(t += 1000, x), rb = b.update(t, x);
    CHECK(ra.score == rb.score);
    CHECK(ra.surprise == rb.surprise);
    da.set(0, ra.surprise, ra.kind);
    db.set(0, rb.surprise, rb.kind);
    const DeviceResult x1 = da.evaluate(t), x2 = db.evaluate(t);
    CHECK(x1.transition == x2.transition);
    raised = raised || x1.transition == AlarmTransition::kRaised;
  }
  CHECK(raised);
  CHECK(da.event().start_ms == db.event().start_ms);
}
