// Issue 13: the NAB and point-wise scorers on hand-computed cases (values worked out from the
// definitions in scoring.h: sigma(y) = 2 / (1 + e^{5y}) - 1, sigma(-1) = 0.98661430).

#include "outpost/common/detect/scoring.h"

#include <catch2/catch.hpp>

using namespace outpost::detect;

namespace {
std::vector<uint8_t> at(size_t n, std::initializer_list<size_t> rows) {
  std::vector<uint8_t> v(n, 0);
  for (size_t r : rows) v[r] = 1;
  return v;
}
}  // namespace

TEST_CASE("scaled sigmoid", "[common][detect][scoring]") {
  CHECK(nabScaledSigmoid(-1.0) == Approx(0.9866143));
  CHECK(nabScaledSigmoid(0.0) == Approx(0.0).margin(1e-12));
  CHECK(nabScaledSigmoid(1.0) == Approx(-0.9866143));
  CHECK(nabScaledSigmoid(3.5) == -1.0);
}

TEST_CASE("windows to the right of changepoints", "[common][detect][scoring]") {
  std::vector<int64_t> ts;
  for (int i = 0; i < 10; ++i) ts.push_back(i * 1000);
  SECTION("60 s covers the rest; a later changepoint cuts the window short") {
    const auto w = windowsRightOf(ts, at(10, {2, 4}), 60000);
    REQUIRE(w.size() == 2);
    CHECK(w[0].first == 2);
    CHECK(w[0].last == 3);
    CHECK(w[1].first == 4);
    CHECK(w[1].last == 9);
  }
  SECTION("a 2 s window") {
    const auto w = windowsRightOf(ts, at(10, {5}), 2000);
    REQUIRE(w.size() == 1);
    CHECK(w[0].first == 5);
    CHECK(w[0].last == 7);
  }
}

TEST_CASE("NAB score of one window", "[common][detect][scoring]") {
  const std::vector<NabWindow> w = {{2, 4}};  // width 3
  SECTION("detection at the window's first row: perfect") {
    const NabScore s = nabScore(w, at(10, {2}), kNabStandard);
    CHECK(s.raw == Approx(1.0));
    CHECK(s.null == -1.0);
    CHECK(s.perfect == 1.0);
    CHECK(s.normalised() == Approx(100.0));
  }
  SECTION("no detection: 0") {
    const NabScore s = nabScore(w, at(10, {}), kNabStandard);
    CHECK(s.raw == -1.0);
    CHECK(s.normalised() == Approx(0.0));
  }
  SECTION("detection at the last row: sigma(-1/3) / sigma(-1)") {
    const NabScore s = nabScore(w, at(10, {4}), kNabStandard);
    CHECK(s.raw == Approx(0.6915182));
    CHECK(s.normalised() == Approx(100.0 * 1.6915182 / 2.0));
  }
  SECTION("only the first detection in a window counts") {
    CHECK(nabScore(w, at(10, {3, 4}), kNabStandard).raw == Approx(0.9437423));
  }
  SECTION("false positive before any window costs A_FP") {
    const NabScore s = nabScore(w, at(10, {0, 2}), kNabStandard);
    CHECK(s.raw == Approx(1.0 - 0.11));
    CHECK(s.false_positives == 1);
    CHECK(nabScore(w, at(10, {0, 2}), kNabLowFp).raw == Approx(1.0 - 0.22));
  }
  SECTION("false positive behind a window: A_FP * sigma((i - last) / (width - 1))") {
    // Row 6: y = (6 - 4) / 2 = 1.
    CHECK(nabScore(w, at(10, {6}), kNabStandard).raw == Approx(-1.0 - 0.1085276));
    // Row 5: y = 0.5.
    CHECK(nabScore(w, at(10, {2, 5}), kNabStandard).raw == Approx(1.0 - 0.0933112));
  }
  SECTION("false positive far behind (y > 3) costs A_FP in full") {
    CHECK(nabScore(w, at(20, {2, 15}), kNabStandard).raw == Approx(1.0 - 0.11));
  }
  SECTION("reward_low_FN_rate: a missed window costs 2") {
    const NabScore s = nabScore(w, at(10, {}), kNabLowFn);
    CHECK(s.raw == -2.0);
    CHECK(s.null == -2.0);
    CHECK(s.normalised() == Approx(0.0));
  }
}

TEST_CASE("NAB sums over files before normalising", "[common][detect][scoring]") {
  NabScore total = nabScore({{2, 4}}, at(10, {2}), kNabStandard);  // +1
  total += nabScore({{1, 3}, {5, 7}}, at(10, {}), kNabStandard);  // -2
  CHECK(total.windows == 3);
  CHECK(total.detected == 1);
  CHECK(total.raw == Approx(-1.0));
  // (raw - null) / (perfect - null) = (-1 + 3) / (3 + 3)
  CHECK(total.normalised() == Approx(100.0 * 2.0 / 6.0));
}

TEST_CASE("point-wise counts", "[common][detect][scoring]") {
  PointCounts c;
  // labels 1 1 1 0 0 0 0 0, alarms 1 1 0 1 0 0 0 0
  const int label[] = {1, 1, 1, 0, 0, 0, 0, 0}, alarm[] = {1, 1, 0, 1, 0, 0, 0, 0};
  for (int i = 0; i < 8; ++i) c.add(label[i], alarm[i]);
  CHECK(c.tp == 2);
  CHECK(c.fn == 1);
  CHECK(c.fp == 1);
  CHECK(c.tn == 4);
  CHECK(c.precision() == Approx(2.0 / 3.0));
  CHECK(c.recall() == Approx(2.0 / 3.0));
  CHECK(c.f1() == Approx(2.0 / 3.0));
  CHECK(c.falseAlarmRate() == Approx(1.0 / 5.0));
  CHECK(c.missedAlarmRate() == Approx(1.0 / 3.0));
  PointCounts none;
  CHECK(none.f1() == 0.0);
}
