// Issue 13: calibrated scores hold up on series nobody tuned for. Each case is a generated series
// where nothing anomalous happens: after a learning period the detector must raise no alarm at all,
// and at most about 1 reading in 1,000 may score >= 0.99.

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/common/detect/sensor_detector.h"

using namespace outpost::detect;

namespace {

constexpr int64_t kT0 = 1714521600000;  // 2024-05-01T00:00:00Z

struct Outcome {
  int alarms = 0;        // alarms raised after the learning period
  int high = 0;          // readings scoring >= 0.99 after the learning period
  int scored = 0;        // readings after the learning period
  bool stuck = false;    // any stuck alarm at all
};

// Feeds (ts, value) pairs; the first `learn` readings are the learning period.
Outcome run(const std::vector<std::pair<int64_t, double>>& series, size_t learn,
            const DetectorConfig& c = DetectorConfig{}) {
  SensorDetector d(&c);
  Outcome o;
  for (size_t i = 0; i < series.size(); ++i) {
    const DetectResult r = d.update(series[i].first, series[i].second);
    REQUIRE(r.score >= 0.0);
    REQUIRE(r.score <= 1.0);
    if (r.transition == AlarmTransition::kRaised && d.event().kind == AnomalyKind::kStuck)
      o.stuck = true;
    if (i < learn) continue;
    ++o.scored;
    if (r.transition == AlarmTransition::kRaised) ++o.alarms;
    if (r.score >= 0.99) ++o.high;
  }
  return o;
}

std::vector<std::pair<int64_t, double>> regular(size_t n, int64_t step_ms,
                                                const std::function<double(size_t)>& f) {
  std::vector<std::pair<int64_t, double>> v;
  for (size_t i = 0; i < n; ++i) v.emplace_back(kT0 + static_cast<int64_t>(i) * step_ms, f(i));
  return v;
}

}  // namespace

TEST_CASE("a constant series never alarms, and is not stuck", "[common][detect][calibration]") {
  for (double level : {0.0, 1.0, -273.15, 1e-9, 1e12}) {
    const auto s = regular(20000, 1000, [&](size_t) { return level; });
    const Outcome o = run(s, 0);
    CHECK(o.alarms == 0);
    CHECK_FALSE(o.stuck);
    CHECK(o.high == 0);
  }
}

TEST_CASE("integer and quantised series", "[common][detect][calibration]") {
  std::mt19937_64 rng(11);
  SECTION("integer readings of a slowly varying level") {
    std::normal_distribution<double> n(0.0, 0.4);
    const auto s = regular(20000, 10000, [&](size_t) { return std::round(20.0 + n(rng)); });
    const Outcome o = run(s, 2000);
    CHECK(o.alarms == 0);
    CHECK(o.high <= o.scored / 1000 + 1);
  }
  SECTION("a value quantised to 0.5 that mostly repeats") {
    std::normal_distribution<double> n(0.0, 0.15);
    const auto s =
        regular(20000, 60000, [&](size_t) { return std::round((7.0 + n(rng)) * 2) / 2; });
    const Outcome o = run(s, 2000);
    CHECK(o.alarms == 0);
    CHECK_FALSE(o.stuck);
  }
}

TEST_CASE("a square wave alarms no more once learned", "[common][detect][calibration]") {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> n(0.0, 0.05);
  SECTION("noise-free") {
    const auto s = regular(20000, 1000, [&](size_t i) { return (i / 50) % 2 ? 10.0 : 0.0; });
    CHECK(run(s, 0).alarms == 0);
  }
}

TEST_CASE("a noisy square wave alarms no more once learned", "[common][detect][calibration]") {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> n(0.0, 0.05);
  const auto s =
      regular(20000, 1000, [&](size_t i) { return ((i / 50) % 2 ? 10.0 : 0.0) + n(rng); });
  const Outcome o = run(s, 4000);
  CHECK(o.alarms == 0);
}

TEST_CASE("Poisson and bursty counts", "[common][detect][calibration]") {
  std::mt19937_64 rng(7);
  SECTION("Poisson, rare and common") {
    for (double lambda : {0.1, 50.0}) {
      std::poisson_distribution<int> p(lambda);
      const auto s = regular(20000, 1000, [&](size_t) { return static_cast<double>(p(rng)); });
      const Outcome o = run(s, 2000);
      INFO("lambda " << lambda);
      CHECK(o.alarms == 0);
      CHECK(o.high <= o.scored / 1000 + 1);
    }
  }
}

// Counts with a heavy right tail (formerly known gaps): Poisson(3) alarmed on its rare 12s and
// 13s (a symmetric scale, see the per-side scale of counts), bursty counts on most bursts (the
// sparse tail of the evidence history was never learned, see docs/detection.md "Calibration").
TEST_CASE("Poisson counts (lambda 3): no alarm in 18,000 readings",
          "[common][detect][calibration]") {
  std::mt19937_64 rng(7);
  std::poisson_distribution<int> p(3.0);
  const auto s = regular(20000, 1000, [&](size_t) { return static_cast<double>(p(rng)); });
  const Outcome o = run(s, 2000);
  CHECK(o.alarms == 0);
  CHECK(o.high <= o.scored / 1000 + 1);
  // A real burst (40, p ~ 1e-22) still alarms.
  auto burst = s;
  burst.emplace_back(s.back().first + 1000, 40.0);
  CHECK(run(burst, 2000).alarms == 1);
}

TEST_CASE("bursty counts do not alarm on their bursts", "[common][detect][calibration]") {
  std::mt19937_64 rng(7);
  std::poisson_distribution<int> quiet(1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  // Quiet counts with a burst of 20..200 one reading in 100.
  const auto s = regular(30000, 1000, [&](size_t) {
    return u(rng) < 0.01 ? std::round(20.0 + 180.0 * u(rng)) : static_cast<double>(quiet(rng));
  });
  const Outcome o = run(s, 5000);
  CHECK(o.alarms <= o.scored / 5000);  // not every burst (250 of them) alarms
  CHECK(o.high <= o.scored / 1000 + 1);
}

TEST_CASE("5-minute sampling with gaps, irregular sampling", "[common][detect][calibration]") {
  std::mt19937_64 rng(9);
  std::normal_distribution<double> n(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  SECTION("every 5 minutes, 2 % of readings missing") {
    std::vector<std::pair<int64_t, double>> s;
    for (int i = 0; i < 10000; ++i) {
      if (u(rng) < 0.02) continue;
      s.emplace_back(kT0 + i * 300000LL, 50.0 + 2.0 * n(rng));
    }
    DetectorConfig c;
    c.enable_silence = false;  // a missing reading is not what this case is about
    const Outcome o = run(s, 1000, c);
    CHECK(o.alarms == 0);
  }
  SECTION("irregular: intervals from 1 s to 10 min") {
    std::vector<std::pair<int64_t, double>> s;
    int64_t t = kT0;
    for (int i = 0; i < 10000; ++i) {
      t += static_cast<int64_t>(1000 + 599000 * u(rng) * u(rng));
      s.emplace_back(t, 3.0 + 0.2 * n(rng));
    }
    DetectorConfig c;
    c.enable_silence = false;
    const Outcome o = run(s, 1000, c);
    CHECK(o.alarms == 0);
    CHECK(o.high <= o.scored / 1000 + 1);
  }
}

TEST_CASE("values around 1e-9 and 1e12", "[common][detect][calibration]") {
  for (double scale : {1e-9, 1e12}) {
    std::mt19937_64 rng(3);
    std::normal_distribution<double> n(0.0, 1.0);
    const auto s = regular(20000, 1000, [&](size_t) { return scale * (5.0 + 0.01 * n(rng)); });
    const Outcome o = run(s, 2000);
    CHECK(o.alarms == 0);
    CHECK(o.high <= o.scored / 1000 + 1);
    // And a real change is still seen.
    DetectorConfig c;
    SensorDetector d(&c);
    for (const auto& [t, v] : s) d.update(t, v);
    const DetectResult r = d.update(s.back().first + 1000, scale * 5.5);
    CHECK(r.alarm);
  }
}

TEST_CASE("on normal data at most ~1 reading in 1,000 scores >= 0.99",
          "[common][detect][calibration]") {
  std::mt19937_64 rng(13);
  std::normal_distribution<double> n(0.0, 1.0);
  std::student_t_distribution<double> heavy(3.0);
  double ar = 0.0;
  const auto s = regular(50000, 1000, [&](size_t) {
    ar = 0.8 * ar + 0.6 * heavy(rng);  // correlated, heavy-tailed
    return 100.0 + ar;
  });
  const Outcome o = run(s, 2000);
  CHECK(o.high <= o.scored / 1000);
}
