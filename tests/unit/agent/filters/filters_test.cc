#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "outpost/agent/filter.h"
#include "outpost/common/metrics.h"

using namespace outpost;
using namespace outpost::agent;

namespace {

constexpr int64_t kT0 = 1714564800LL * 1000000;
constexpr int64_t kSecond = 1000000;

wire::Reading rd(int64_t ts, double v) { return wire::Reading(ts, v, 0, wire::Quality::Good); }

// Values that pass, in order.
std::vector<double> run(Filter& f, const std::vector<wire::Reading>& in) {
  std::vector<double> out;
  for (auto r : in) {
    if (f.apply(r)) out.push_back(r.value());
  }
  return out;
}

FilterSpec spec(FilterKind k) {
  FilterSpec s;
  s.kind = k;
  return s;
}

}  // namespace

TEST_CASE("Range filter: NaN/Inf and physical range", "[agent][filter]") {
  metrics::Registry reg;
  FilterMetrics m(reg);
  FilterSpec s = spec(FilterKind::kRange);
  s.min = -40;
  s.max = 125;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();

  SECTION("drop: out-of-range and non-finite values are dropped and counted by reason") {
    auto f = makeFilter(s, &m);
    CHECK(run(*f, {rd(kT0, 20), rd(kT0, nan), rd(kT0, -inf), rd(kT0, 126), rd(kT0, -40),
                   rd(kT0, 125)}) == std::vector<double>{20, -40, 125});
    CHECK(f->counts().passed == 3);
    CHECK(f->counts().droppedFor(FilterDropReason::kNonFinite) == 2);
    CHECK(f->counts().droppedFor(FilterDropReason::kOutOfRange) == 1);
    const std::string text = reg.render();
    CHECK(text.find("outpost_agent_readings_filtered_total{reason=\"non_finite\"} 2") !=
          std::string::npos);
    CHECK(text.find("outpost_agent_readings_filtered_total{reason=\"out_of_range\"} 1") !=
          std::string::npos);
    CHECK(text.find("outpost_agent_filter_passed_total{filter=\"range\"} 3") != std::string::npos);
  }
  SECTION("mark: kept with quality bad or suspect") {
    s.out_of_range = Action::kSuspect;
    s.non_finite = Action::kBad;
    auto f = makeFilter(s, &m);
    wire::Reading hot = rd(kT0, 200), missing = rd(kT0, nan), fine = rd(kT0, 1);
    CHECK(f->apply(hot));
    CHECK(hot.quality() == wire::Quality::Suspect);
    CHECK(hot.value() == 200);
    CHECK(f->apply(missing));
    CHECK(missing.quality() == wire::Quality::Bad);
    CHECK(f->apply(fine));
    CHECK(fine.quality() == wire::Quality::Good);
    CHECK(f->counts().marked == 2);
    CHECK(f->counts().droppedTotal() == 0);
    CHECK(reg.render().find("outpost_agent_readings_marked_total{quality=\"suspect\"} 1") !=
          std::string::npos);
  }
  SECTION("a lowered quality is never raised by a later, milder mark") {
    s.out_of_range = Action::kSuspect;
    auto f = makeFilter(s, nullptr);
    wire::Reading r(kT0, 500, 0, wire::Quality::Bad);
    CHECK(f->apply(r));
    CHECK(r.quality() == wire::Quality::Bad);
  }
}

TEST_CASE("Deadband filter: report by exception with a heartbeat", "[agent][filter]") {
  SECTION("absolute band") {
    FilterSpec s = spec(FilterKind::kDeadband);
    s.absolute = 0.5;
    auto f = makeFilter(s, nullptr);
    // Compared with the last *passed* value, so a slow drift still gets through.
    CHECK(run(*f, {rd(kT0, 10), rd(kT0 + 1, 10.3), rd(kT0 + 2, 10.5), rd(kT0 + 3, 10.6),
                   rd(kT0 + 4, 10.2), rd(kT0 + 5, 9.9)}) == std::vector<double>{10, 10.6, 9.9});
    CHECK(f->counts().droppedFor(FilterDropReason::kDeadband) == 3);
  }
  SECTION("percent band, the wider band wins") {
    FilterSpec s = spec(FilterKind::kDeadband);
    s.percent = 10;
    s.absolute = 1;
    auto f = makeFilter(s, nullptr);
    // At 100 the band is max(1, 10) = 10; at 5 it is max(1, 0.5) = 1.
    CHECK(run(*f, {rd(kT0, 100), rd(kT0 + 1, 109), rd(kT0 + 2, 111), rd(kT0 + 3, 5),
                   rd(kT0 + 4, 5.9), rd(kT0 + 5, 6.1)}) == std::vector<double>{100, 111, 5, 6.1});
  }
  SECTION("zero bands: any change passes, repeats do not") {
    auto f = makeFilter(spec(FilterKind::kDeadband), nullptr);
    CHECK(run(*f, {rd(kT0, 1), rd(kT0 + 1, 1), rd(kT0 + 2, 1.0000001), rd(kT0 + 3, 1.0000001)}) ==
          std::vector<double>{1, 1.0000001});
  }
  SECTION("heartbeat: a flat signal still reports every N seconds of event time") {
    FilterSpec s = spec(FilterKind::kDeadband);
    s.absolute = 1;
    s.heartbeat_us = 10 * kSecond;
    auto f = makeFilter(s, nullptr);
    std::vector<wire::Reading> flat;
    for (int i = 0; i <= 60; ++i) flat.push_back(rd(kT0 + i * kSecond, 20));
    CHECK(run(*f, flat).size() == 7);  // t = 0, 10, ..., 60
    CHECK(f->counts().heartbeats == 6);
    CHECK(f->counts().droppedFor(FilterDropReason::kDeadband) == 54);
  }
}

TEST_CASE("Rate limit filter: min interval and max per second (event time)", "[agent][filter]") {
  SECTION("min interval") {
    FilterSpec s = spec(FilterKind::kRateLimit);
    s.min_interval_us = 1 * kSecond;
    auto f = makeFilter(s, nullptr);
    CHECK(run(*f, {rd(kT0, 1), rd(kT0 + 500000, 2), rd(kT0 + 1000000, 3), rd(kT0 + 1999999, 4),
                   rd(kT0 + 2000000, 5)}) == std::vector<double>{1, 3, 5});
    CHECK(f->counts().droppedFor(FilterDropReason::kRateLimit) == 2);
  }
  SECTION("max per second: at most N in each second of event time") {
    FilterSpec s = spec(FilterKind::kRateLimit);
    s.max_per_second = 3;
    auto f = makeFilter(s, nullptr);
    std::vector<wire::Reading> burst;
    for (int i = 0; i < 100; ++i) burst.push_back(rd(kT0 + i * 50000, i));  // 20/s for 5 s
    CHECK(run(*f, burst).size() == 15);
    CHECK(f->counts().droppedFor(FilterDropReason::kRateLimit) == 85);
  }
}

TEST_CASE("Dedup filter: same timestamp and value", "[agent][filter]") {
  SECTION("history 1: consecutive repeats") {
    auto f = makeFilter(spec(FilterKind::kDedup), nullptr);
    CHECK(run(*f, {rd(kT0, 1), rd(kT0, 1), rd(kT0, 2), rd(kT0 + 1, 2), rd(kT0, 1)}) ==
          std::vector<double>{1, 2, 2, 1});
    CHECK(f->counts().droppedFor(FilterDropReason::kDuplicate) == 1);
  }
  SECTION("longer history catches re-sent readings further back") {
    FilterSpec s = spec(FilterKind::kDedup);
    s.history = 4;
    auto f = makeFilter(s, nullptr);
    CHECK(run(*f, {rd(kT0, 1), rd(kT0 + 1, 2), rd(kT0 + 2, 3), rd(kT0, 1), rd(kT0 + 1, 2),
                   rd(kT0 + 3, 4), rd(kT0 + 4, 5), rd(kT0 + 5, 6), rd(kT0 + 6, 7), rd(kT0, 1)}) ==
          std::vector<double>{1, 2, 3, 4, 5, 6, 7, 1});
  }
}
