#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "outpost/agent/window.h"

using namespace outpost;
using namespace outpost::agent;

namespace {

constexpr int64_t kT0 = 1714564800LL * 1000000;
constexpr int64_t kSecond = 1000000;

WindowSpec tumbling(int64_t size_s, int64_t lateness_s = 0) {
  return {WindowKind::kTumbling, size_s * kSecond, size_s * kSecond, lateness_s * kSecond};
}
WindowSpec sliding(int64_t size_s, int64_t hop_s, int64_t lateness_s = 0) {
  return {WindowKind::kSliding, size_s * kSecond, hop_s * kSecond, lateness_s * kSecond};
}

struct Sample {
  int64_t ts;
  double v;
};

// Naive reference: every window [start, start+size) on the hop grid that holds samples,
// two-pass statistics on the values shifted by the window's first value. The shift is exact here
// (values within a factor of 2 of each other, Sterbenz), so the reference is exact to ~1e-16
// relative even where long double is only double (armhf: AAPCS makes long double 64-bit).
struct Ref {
  int64_t start, end;
  uint32_t count;
  double min, max, mean, stddev, first, last;
};
std::vector<Ref> reference(const std::vector<Sample>& samples, const WindowSpec& w) {
  std::map<int64_t, std::vector<Sample>> by_window;
  for (const auto& s : samples) {
    const int64_t last_start = (s.ts >= 0 ? s.ts / w.hop_us : 0) * w.hop_us;
    for (int64_t start = last_start; start > s.ts - w.size_us; start -= w.hop_us) {
      by_window[start].push_back(s);
    }
  }
  std::vector<Ref> out;
  for (auto& [start, xs] : by_window) {
    const long double shift = xs[0].v;
    long double sum = 0;
    for (const auto& s : xs) sum += s.v - shift;
    const long double shifted_mean = sum / xs.size();
    const long double mean = shift + shifted_mean;
    long double ss = 0;
    for (const auto& s : xs) ss += (s.v - shift - shifted_mean) * (s.v - shift - shifted_mean);
    // first/last by event time; ties: arrival order.
    auto first = std::min_element(xs.begin(), xs.end(),
                                  [](const Sample& a, const Sample& b) { return a.ts < b.ts; });
    auto last = std::max_element(xs.begin(), xs.end(),
                                 [](const Sample& a, const Sample& b) { return a.ts < b.ts; });
    for (auto it = xs.begin(); it != xs.end(); ++it) {
      if (it->ts == last->ts) last = it;  // the last arrival among equal timestamps
    }
    double mn = xs[0].v, mx = xs[0].v;
    for (const auto& s : xs) mn = std::min(mn, s.v), mx = std::max(mx, s.v);
    out.push_back({start, start + w.size_us, static_cast<uint32_t>(xs.size()), mn, mx,
                   static_cast<double>(mean), static_cast<double>(std::sqrt(ss / xs.size())),
                   first->v, last->v});
  }
  return out;
}

std::vector<wire::WindowStat> feed(EventTimeWindow& w, const std::vector<Sample>& samples) {
  std::vector<wire::WindowStat> out;
  for (const auto& s : samples) w.add(s.ts, s.v, out);
  w.closeAll(out);
  return out;
}

void checkAgainstReference(const std::vector<wire::WindowStat>& got, const std::vector<Ref>& ref,
                           double rel) {
  REQUIRE(got.size() == ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("window " << i << " start " << ref[i].start);
    CHECK(got[i].start_us() == ref[i].start);
    CHECK(got[i].end_us() == ref[i].end);
    CHECK(got[i].count() == ref[i].count);
    CHECK(got[i].min() == ref[i].min);
    CHECK(got[i].max() == ref[i].max);
    CHECK(got[i].first() == ref[i].first);
    CHECK(got[i].last() == ref[i].last);
    CHECK(got[i].mean() == Approx(ref[i].mean).epsilon(1e-15));
    CHECK(got[i].stddev() == Approx(ref[i].stddev).epsilon(rel).margin(1e-12));
  }
}

}  // namespace

TEST_CASE("Tumbling windows: boundaries, statistics, emission on event time", "[agent][window]") {
  EventTimeWindow w(tumbling(10), 7);
  std::vector<wire::WindowStat> out;
  for (int i = 0; i < 10; ++i) w.add(kT0 + i * kSecond, i, out);  // window [T0, T0+10)
  CHECK(out.empty());                                             // not closed yet
  w.add(kT0 + 10 * kSecond, 100, out);                            // closes it
  REQUIRE(out.size() == 1);
  const auto& s = out[0];
  CHECK(s.sensor() == 7);
  CHECK(s.start_us() == kT0);
  CHECK(s.end_us() == kT0 + 10 * kSecond);
  CHECK(s.count() == 10);
  CHECK(s.min() == 0);
  CHECK(s.max() == 9);
  CHECK(s.mean() == 4.5);
  CHECK(s.stddev() == Approx(std::sqrt(8.25)));  // population stddev of 0..9
  CHECK(s.first() == 0);
  CHECK(s.last() == 9);

  SECTION("empty windows in a gap are skipped, not emitted") {
    w.add(kT0 + 3600 * kSecond, 5, out);  // an hour later
    REQUIRE(out.size() == 2);
    CHECK(out[1].start_us() == kT0 + 10 * kSecond);
    CHECK(out[1].count() == 1);
    w.closeAll(out);
    REQUIRE(out.size() == 3);
    CHECK(out[2].start_us() == kT0 + 3600 * kSecond);
  }
  SECTION("a reading for a closed window is late: counted, not merged") {
    CHECK_FALSE(w.add(kT0 + 5 * kSecond, -1000, out));
    CHECK(w.late() == 1);
    w.closeAll(out);
    REQUIRE(out.size() == 2);
    CHECK(out[1].min() == 100);  // -1000 went nowhere
  }
}

TEST_CASE("Allowed lateness keeps windows open for out-of-order readings", "[agent][window]") {
  EventTimeWindow w(tumbling(10, 5), 0);
  std::vector<wire::WindowStat> out;
  w.add(kT0 + 1 * kSecond, 1, out);
  w.add(kT0 + 12 * kSecond, 12, out);  // watermark T0+7: [T0, T0+10) stays open
  CHECK(out.empty());
  CHECK(w.add(kT0 + 9 * kSecond, 9, out));  // late but within the allowed lateness: merged
  CHECK(w.add(kT0 + 0, 0, out));            // out of order, earlier than first: becomes first
  w.add(kT0 + 15 * kSecond, 15, out);       // watermark T0+10: closes [T0, T0+10)
  REQUIRE(out.size() == 1);
  CHECK(out[0].count() == 3);
  CHECK(out[0].first() == 0);
  CHECK(out[0].last() == 9);
  CHECK_FALSE(w.add(kT0 + 8 * kSecond, 8, out));  // now too late
  CHECK(w.late() == 1);
}

TEST_CASE("Sliding windows match a naive reference", "[agent][window]") {
  std::mt19937_64 rng(20240501);
  std::normal_distribution<double> noise(0, 1e-3);
  std::uniform_int_distribution<int64_t> jitter(0, 999999);
  SECTION("size 10 s, hop 2 s, in-order readings with 1e9 + small noise") {
    const WindowSpec spec = sliding(10, 2);
    std::vector<Sample> samples;
    for (int i = 0; i < 500; ++i)
      samples.push_back({kT0 + i * 300000 + jitter(rng) / 10, 1e9 + noise(rng)});
    std::sort(samples.begin(), samples.end(), [](auto& a, auto& b) { return a.ts < b.ts; });
    EventTimeWindow w(spec, 0);
    const auto got = feed(w, samples);
    CHECK(w.late() == 0);
    checkAgainstReference(got, reference(samples, spec), 1e-10);
    // The noise's stddev (1e-3) survives the 1e9 offset.
    CHECK(got[5].stddev() == Approx(1e-3).epsilon(0.5));
  }
  SECTION("tumbling 5 s with lateness 3 s, shuffled within the lateness") {
    const WindowSpec spec = tumbling(5, 3);
    std::vector<Sample> samples;
    for (int i = 0; i < 2000; ++i) samples.push_back({kT0 + i * 50000, 1e9 + noise(rng) + i % 7});
    // Shuffle in blocks of 2 s (less than the 3 s lateness): nothing is late.
    for (size_t b = 0; b < samples.size(); b += 40) {
      std::shuffle(samples.begin() + static_cast<std::ptrdiff_t>(b),
                   samples.begin() + static_cast<std::ptrdiff_t>(std::min(b + 40, samples.size())),
                   rng);
    }
    EventTimeWindow w(spec, 0);
    const auto got = feed(w, samples);
    CHECK(w.late() == 0);
    checkAgainstReference(got, reference(samples, spec), 1e-10);
  }
  SECTION("welford stays exact where the naive one-pass formula fails") {
    // sum of squares minus square of sums in double loses everything at 1e9; Welford does not.
    const WindowSpec spec = tumbling(60);
    std::vector<Sample> samples;
    for (int i = 0; i < 60; ++i) samples.push_back({kT0 + i * kSecond, 1e9 + (i % 2 ? 0.5 : -0.5)});
    EventTimeWindow w(spec, 0);
    const auto got = feed(w, samples);
    REQUIRE(got.size() == 1);
    CHECK(got[0].stddev() == Approx(0.5).epsilon(1e-9));
    CHECK(got[0].mean() == 1e9);
  }
}

TEST_CASE("Window state is bounded by size, hop and lateness", "[agent][window]") {
  // A far-future reading followed by normal ones: the far one closes everything older; the
  // window does not grow, older readings become late.
  EventTimeWindow w(sliding(4, 1, 2), 0);
  std::vector<wire::WindowStat> out;
  for (int i = 0; i < 10; ++i) w.add(kT0 + i * kSecond, i, out);
  w.add(kT0 + 86400LL * 365 * kSecond, 1, out);
  const size_t emitted = out.size();
  CHECK(emitted > 0);
  CHECK_FALSE(w.add(kT0 + 11 * kSecond, 11, out));
  CHECK(w.late() == 1);
  w.closeAll(out);
  CHECK(out.size() == emitted + 4);  // the far reading is in 4 sliding windows
}
