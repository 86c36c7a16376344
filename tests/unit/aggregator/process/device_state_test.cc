// Issue 19: DeviceDedup and the outpost.state record (encode, verified decode).

#include "outpost/aggregator/device_state.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace agg = outpost::aggregator;
using agg::DeviceDedup;

namespace {

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

agg::DeviceStateRecord sampleRecord() {
  agg::DeviceStateRecord r;
  r.device = "pump-17.site_b";
  for (uint64_t s = 1; s <= 100; ++s) r.dedup.add(7, s);
  r.dedup.add(7, 150);
  r.dedup.add(9, 3);
  r.detectors = std::string("\x41\x01\x00\x00\x00\x00\xff binary\0 bytes", 20);
  r.updated_us = 1'733'450'000'123'456;
  return r;
}

}  // namespace

TEST_CASE("DeviceDedup: intervals per epoch, bounded", "[aggregator][state]") {
  DeviceDedup d;
  SECTION("in order: one interval") {
    for (uint64_t s = 1; s <= 1000; ++s) {
      CHECK_FALSE(d.contains(1, s));
      d.add(1, s);
      REQUIRE(d.contains(1, s));
    }
    CHECK(d.intervals() == 1);
    CHECK_FALSE(d.contains(1, 0));
    CHECK_FALSE(d.contains(1, 1001));
    CHECK_FALSE(d.contains(2, 5));
    d.add(1, 500);  // a duplicate changes nothing
    CHECK(d.intervals() == 1);
  }
  SECTION("out of order and gaps: merged when the gap closes") {
    for (uint64_t s : {5, 3, 1, 2, 10, 4}) d.add(1, s);
    CHECK(d.intervals() == 2);  // 1..5, 10
    CHECK(d.contains(1, 4));
    CHECK_FALSE(d.contains(1, 6));
    CHECK_FALSE(d.contains(1, 9));
    for (uint64_t s = 6; s <= 9; ++s) d.add(1, s);
    CHECK(d.intervals() == 1);
    const auto& iv = d.epochs().at(1);
    CHECK(iv.begin()->first == 1);
    CHECK(iv.begin()->second == 10);
    // Extremes of the seq space.
    d.add(1, UINT64_MAX);
    d.add(1, 0);
    CHECK(d.contains(1, UINT64_MAX));
    CHECK(d.contains(1, 0));
    CHECK(d.intervals() == 2);
  }
  SECTION("beyond kMaxEpochs the highest epochs are kept; a lower one counts as new") {
    for (uint64_t e = 1; e <= DeviceDedup::kMaxEpochs + 2; ++e) d.add(e, 1);
    CHECK(d.epochs().size() == DeviceDedup::kMaxEpochs);
    CHECK_FALSE(d.contains(1, 1));  // forgotten: a resend would be produced again
    CHECK_FALSE(d.contains(2, 1));
    CHECK(d.contains(DeviceDedup::kMaxEpochs + 2, 1));
    CHECK(d.contains(3, 1));
    d.add(1, 2);  // lower than every kept epoch: not recorded
    CHECK_FALSE(d.contains(1, 2));
    CHECK(d.epochs().size() == DeviceDedup::kMaxEpochs);
    CHECK(d.epochs().begin()->first == 3);
  }
  SECTION("beyond kMaxIntervals the oldest gap is filled") {
    // Odd seqs only: every add opens a new interval.
    for (uint64_t k = 0; k < DeviceDedup::kMaxIntervals + 10; ++k) d.add(1, 2 * k + 1);
    CHECK(d.intervals() == DeviceDedup::kMaxIntervals);
    // The 10 lowest gaps (2, 4, ..., 20) are filled: they count as done (duplicates).
    CHECK(d.epochs().at(1).begin()->first == 1);
    CHECK(d.epochs().at(1).begin()->second == 21);
    CHECK(d.contains(1, 2));
    CHECK(d.contains(1, 20));
    CHECK_FALSE(d.contains(1, 22));  // newer gaps are still gaps
    CHECK(d.contains(1, 23));
    // Other epochs are bounded on their own.
    d.add(2, 1);
    CHECK(d.intervals() == DeviceDedup::kMaxIntervals + 1);
  }
  SECTION("assign validates") {
    CHECK(d.assign({{1, {{1, 5}, {7, 9}}}}));
    CHECK(d.contains(1, 8));
    CHECK_FALSE(d.assign({{1, {{1, 5}, {6, 9}}}}));  // adjacent: not canonical
    CHECK_FALSE(d.assign({{1, {{5, 1}}}}));          // lo > hi
    CHECK_FALSE(d.assign({{1, {}}}));                // empty epoch
    CHECK_FALSE(
        d.assign({{1, {{1, 1}}}, {2, {{1, 1}}}, {3, {{1, 1}}}, {4, {{1, 1}}}, {5, {{1, 1}}}}));
    CHECK(d.contains(1, 8));  // unchanged by the failures
  }
}

TEST_CASE("outpost.state record: round trip", "[aggregator][state]") {
  const auto r = sampleRecord();
  const std::string bytes = agg::encodeDeviceState(r);
  CHECK(std::memcmp(bytes.data() + 4, "OPS1", 4) == 0);
  auto back = agg::decodeDeviceState(bytesOf(bytes));
  REQUIRE(back);
  CHECK(*back == r);
  CHECK(back->dedup.intervals() == 3);
  // Empty dedup and no detectors.
  agg::DeviceStateRecord e;
  e.device = "d";
  auto back2 = agg::decodeDeviceState(bytesOf(agg::encodeDeviceState(e)));
  REQUIRE(back2);
  CHECK(*back2 == e);
  // Full bounds: 4 epochs x 256 intervals.
  agg::DeviceStateRecord f;
  f.device = "full";
  for (uint64_t ep = 10; ep < 10 + DeviceDedup::kMaxEpochs; ++ep)
    for (uint64_t k = 0; k < DeviceDedup::kMaxIntervals; ++k) f.dedup.add(ep, 2 * k + 1);
  REQUIRE(f.dedup.intervals() == DeviceDedup::kMaxEpochs * DeviceDedup::kMaxIntervals);
  const std::string fb = agg::encodeDeviceState(f);
  auto back3 = agg::decodeDeviceState(bytesOf(fb));
  REQUIRE(back3);
  CHECK(*back3 == f);
}

TEST_CASE("outpost.state record: untrusted bytes give errors, never a crash",
          "[aggregator][state]") {
  const std::string good = agg::encodeDeviceState(sampleRecord());
  SECTION("truncated at every length") {
    for (size_t n = 0; n < good.size(); ++n) {
      auto d = agg::decodeDeviceState(bytesOf(good).first(n));
      REQUIRE_FALSE(d);
    }
  }
  SECTION("bad device id") {
    auto r = sampleRecord();
    r.device = "bad/id";
    auto d = agg::decodeDeviceState(bytesOf(agg::encodeDeviceState(r)));
    REQUIRE_FALSE(d);
    CHECK_THAT(d.error().message(), Catch::Contains("invalid device id"));
    r.device = "";
    REQUIRE_FALSE(agg::decodeDeviceState(bytesOf(agg::encodeDeviceState(r))));
  }
  SECTION("wrong version") {
    // The version is the first field written with ForceDefaults: find the little-endian 1 of
    // format_version by re-encoding and patching every candidate position.
    bool found = false;
    for (size_t i = 0; i + 1 < good.size() && !found; ++i) {
      if (good[i] != 1 || good[i + 1] != 0) continue;
      std::string v = good;
      v[i] = 2;
      auto d = agg::decodeDeviceState(bytesOf(v));
      if (!d && d.error().message().find("format_version 2 is not supported") != std::string::npos)
        found = true;
    }
    CHECK(found);
  }
  SECTION("semantics: overlapping intervals, too many epochs, wrong identifier") {
    // Built with the raw builder through a DeviceDedup that bypasses the checks is not possible,
    // so patch an encoded record: make the second interval of epoch 7 overlap the first.
    auto r = sampleRecord();  // epoch 7: [1,100], [150,150]
    std::string b = agg::encodeDeviceState(r);
    const uint64_t needle = 150;
    bool patched = false;
    for (size_t i = 0; i + 16 <= b.size(); ++i) {
      uint64_t lo, hi;
      std::memcpy(&lo, b.data() + i, 8);
      std::memcpy(&hi, b.data() + i + 8, 8);
      if (lo == needle && hi == needle) {
        const uint64_t fifty = 50;
        std::memcpy(b.data() + i, &fifty, 8);
        patched = true;
        break;
      }
    }
    REQUIRE(patched);
    auto d = agg::decodeDeviceState(bytesOf(b));
    REQUIRE_FALSE(d);
    CHECK_THAT(d.error().message(), Catch::Contains("overlapping"));
    std::string id = good;
    id[4] = 'X';
    auto d2 = agg::decodeDeviceState(bytesOf(id));
    REQUIRE_FALSE(d2);
    CHECK_THAT(d2.error().message(), Catch::Contains("verifier"));
    // Oversized input.
    std::string huge(agg::kMaxDeviceStateBytes + 1, '\0');
    REQUIRE_FALSE(agg::decodeDeviceState(bytesOf(huge)));
  }
  SECTION("bit flips and random bytes") {
    std::mt19937_64 rng(5);
    int rejected = 0;
    for (int k = 0; k < 3000; ++k) {
      std::string g = good;
      if (k % 2 == 0) {
        for (int j = 0; j < 1 + static_cast<int>(rng() % 3); ++j)
          g[rng() % g.size()] ^= static_cast<char>(1u << (rng() % 8));
      } else {
        g.resize(rng() % 256);
        for (char& c : g) c = static_cast<char>(rng());
      }
      auto d = agg::decodeDeviceState(bytesOf(g));
      if (!d) {
        ++rejected;
        REQUIRE_FALSE(d.error().message().empty());
      } else {
        // Accepted: it must be a consistent record (re-encodes to something that decodes equal).
        auto again = agg::decodeDeviceState(bytesOf(agg::encodeDeviceState(*d)));
        REQUIRE(again);
        REQUIRE(*again == *d);
      }
    }
    CHECK(rejected > 1500);
  }
}
