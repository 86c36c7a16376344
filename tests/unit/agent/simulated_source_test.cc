#include "outpost/agent/simulated_source.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace wire = outpost::wire;
using outpost::agent::parseShape;
using outpost::agent::Shape;
using outpost::agent::SimulatedSensorSpec;
using outpost::agent::SimulatedSource;

namespace {

constexpr int64_t kStart = 1'700'000'000'000'000;
constexpr int64_t kSecond = 1'000'000;

SimulatedSensorSpec spec(std::string name, double rate_hz, Shape shape, uint64_t seed = 1) {
  SimulatedSensorSpec s;
  s.name = std::move(name);
  s.unit = "u";
  s.rate_hz = rate_hz;
  s.shape = shape;
  s.amplitude = 2.0;
  s.offset = 10.0;
  s.period_s = 7.0;
  s.seed = seed;
  return s;
}

std::vector<wire::Reading> readingsOf(const std::vector<wire::Reading>& all, uint16_t sensor) {
  std::vector<wire::Reading> out;
  for (const auto& r : all) {
    if (r.sensor() == sensor) out.push_back(r);
  }
  return out;
}

}  // namespace

TEST_CASE("SimulatedSource is deterministic", "[agent][source]") {
  std::vector<SimulatedSensorSpec> specs = {
      spec("sine", 5, Shape::kSine), spec("walk", 3, Shape::kRandomWalk, 42),
      spec("square", 2, Shape::kSquare), spec("saw", 1, Shape::kSawtooth)};
  for (auto& s : specs) s.noise = 0.25;  // noise is seeded too

  SimulatedSource a(specs, kStart, 3);
  SimulatedSource b(specs, kStart, 3);
  std::vector<wire::Reading> ra, rb;

  SECTION("same polls") {
    for (int64_t t = 0; t <= 20 * kSecond; t += 700'000) {
      CHECK(a.poll(kStart + t, ra) == b.poll(kStart + t, rb));
    }
    a.poll(kStart + 20 * kSecond, ra);
    b.poll(kStart + 20 * kSecond, rb);
  }
  SECTION("however the polls are spaced") {
    a.poll(kStart + 20 * kSecond, ra);
    for (int64_t t = 0; t <= 20 * kSecond; t += 333'000) b.poll(kStart + t, rb);
    b.poll(kStart + 20 * kSecond, rb);
  }
  // Per sensor the sequences are identical (the interleaving across sensors may differ).
  REQUIRE(ra.size() == rb.size());
  for (uint16_t id = 3; id < 7; ++id) {
    const auto sa = readingsOf(ra, id);
    const auto sb = readingsOf(rb, id);
    REQUIRE_FALSE(sa.empty());
    REQUIRE(sa.size() == sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      CHECK(sa[i].ts_us() == sb[i].ts_us());
      CHECK(sa[i].value() == sb[i].value());
    }
  }
}

TEST_CASE("SimulatedSource identical polls give identical output order", "[agent][source]") {
  std::vector<SimulatedSensorSpec> specs = {spec("walk", 4, Shape::kRandomWalk, 7),
                                            spec("sine", 10, Shape::kSine)};
  specs[1].noise = 1.0;
  SimulatedSource a(specs, kStart);
  SimulatedSource b(specs, kStart);
  std::vector<wire::Reading> ra, rb;
  a.poll(kStart + 30 * kSecond, ra);
  b.poll(kStart + 30 * kSecond, rb);
  REQUIRE(ra.size() == rb.size());
  for (size_t i = 0; i < ra.size(); ++i) {
    CHECK(ra[i].ts_us() == rb[i].ts_us());
    CHECK(ra[i].value() == rb[i].value());
    CHECK(ra[i].sensor() == rb[i].sensor());
    CHECK(ra[i].quality() == rb[i].quality());
  }

  // A different seed gives a different walk.
  specs[0].seed = 8;
  SimulatedSource c(specs, kStart);
  std::vector<wire::Reading> rc;
  c.poll(kStart + 30 * kSecond, rc);
  const auto wa = readingsOf(ra, 0);
  const auto wc = readingsOf(rc, 0);
  REQUIRE(wa.size() == wc.size());
  bool differs = false;
  for (size_t i = 0; i < wa.size(); ++i) differs = differs || wa[i].value() != wc[i].value();
  CHECK(differs);
}

TEST_CASE("SimulatedSource emits at its rate", "[agent][source]") {
  SimulatedSource src({spec("s", 5, Shape::kSine)}, kStart, 0);
  std::vector<wire::Reading> out;

  // Reading k is due at start + k * 200 ms; due at or before now means k = 0 .. 50 inclusive.
  const int64_t next = src.poll(kStart + 10 * kSecond, out);
  REQUIRE(out.size() == 51);
  for (size_t k = 0; k < out.size(); ++k) {
    CHECK(out[k].ts_us() == kStart + static_cast<int64_t>(k) * 200'000);
    CHECK(out[k].sensor() == 0);
    CHECK(out[k].quality() == wire::Quality::Good);
  }
  CHECK(next == kStart + 51 * 200'000);

  SECTION("polling again before the next is due emits nothing") {
    out.clear();
    CHECK(src.poll(kStart + 10 * kSecond, out) == next);
    CHECK(src.poll(next - 1, out) == next);
    CHECK(out.empty());
  }
  SECTION("polling exactly at the due time emits it") {
    out.clear();
    CHECK(src.poll(next, out) == next + 200'000);
    REQUIRE(out.size() == 1);
    CHECK(out[0].ts_us() == next);
  }
  SECTION("polling before the start emits nothing and returns the start") {
    SimulatedSource fresh({spec("s", 5, Shape::kSine)}, kStart, 0);
    out.clear();
    CHECK(fresh.poll(kStart - kSecond, out) == kStart);
    CHECK(out.empty());
    CHECK(fresh.poll(kStart, out) == kStart + 200'000);
    REQUIRE(out.size() == 1);
    CHECK(out[0].ts_us() == kStart);
  }
}

TEST_CASE("SimulatedSource fractional intervals do not drift", "[agent][source]") {
  // 3 Hz: 333333.33 µs; reading k is at start + round(k * 1e6 / 3).
  SimulatedSource src({spec("s", 3, Shape::kConstant)}, kStart, 0);
  std::vector<wire::Reading> out;
  src.poll(kStart + 100 * kSecond, out);
  REQUIRE(out.size() == 301);
  CHECK(out[1].ts_us() == kStart + 333'333);
  CHECK(out[2].ts_us() == kStart + 666'667);
  CHECK(out[3].ts_us() == kStart + kSecond);
  CHECK(out[300].ts_us() == kStart + 100 * kSecond);
  for (const auto& r : out) CHECK(r.value() == 10.0);  // constant = offset
}

TEST_CASE("SimulatedSource counter shape counts 0, 1, 2, ...", "[agent][source]") {
  auto s = spec("c", 10, Shape::kCounter);
  s.noise = 5.0;  // never applied to counters
  SimulatedSource src({s}, kStart, 0);
  std::vector<wire::Reading> out;
  src.poll(kStart + kSecond, out);      // k = 0..10
  src.poll(kStart + 2 * kSecond, out);  // k = 11..20
  REQUIRE(out.size() == 21);
  for (size_t k = 0; k < out.size(); ++k) {
    CHECK(out[k].value() == static_cast<double>(k));
    CHECK(out[k].ts_us() == kStart + static_cast<int64_t>(k) * 100'000);
  }
}

TEST_CASE("SimulatedSource poll returns the earliest next due time", "[agent][source]") {
  SimulatedSource src({spec("slow", 1, Shape::kSine), spec("fast", 4, Shape::kSine)}, kStart, 0);
  std::vector<wire::Reading> out;
  CHECK(src.poll(kStart, out) == kStart + 250'000);
  CHECK(out.size() == 2);  // both sensors' reading 0
  CHECK(src.poll(kStart + 250'000, out) == kStart + 500'000);
  CHECK(src.poll(kStart + 900'000, out) == kStart + kSecond);
  CHECK(src.poll(kStart + kSecond, out) == kStart + 1'250'000);
  // slow: 0, 1 s; fast: 0, .25, .5, .75, 1 s.
  CHECK(readingsOf(out, 0).size() == 2);
  CHECK(readingsOf(out, 1).size() == 5);

  SECTION("no sensors: never due") {
    SimulatedSource none({}, kStart, 0);
    std::vector<wire::Reading> nothing;
    CHECK(none.poll(kStart + kSecond, nothing) == std::numeric_limits<int64_t>::max());
    CHECK(nothing.empty());
  }
}

TEST_CASE("SimulatedSource gives sensors consecutive ids from first_id", "[agent][source]") {
  std::vector<SimulatedSensorSpec> specs = {spec("a", 1, Shape::kSine), spec("b", 2, Shape::kSquare),
                                            spec("c", 3, Shape::kCounter)};
  specs[1].unit = "V";
  SimulatedSource src(specs, kStart, 10);
  const auto& infos = src.sensors();
  REQUIRE(infos.size() == 3);
  CHECK(infos[0].id == 10);
  CHECK(infos[0].name == "a");
  CHECK(infos[0].unit == "u");
  CHECK(infos[1].id == 11);
  CHECK(infos[1].name == "b");
  CHECK(infos[1].unit == "V");
  CHECK(infos[2].id == 12);
  CHECK(infos[2].name == "c");

  std::vector<wire::Reading> out;
  src.poll(kStart + kSecond, out);
  CHECK(readingsOf(out, 10).size() == 2);
  CHECK(readingsOf(out, 11).size() == 3);
  CHECK(readingsOf(out, 12).size() == 4);
  for (const auto& r : out) {
    CHECK(r.sensor() >= 10);
    CHECK(r.sensor() <= 12);
  }

  SECTION("default first_id is 0") {
    SimulatedSource zero(specs, kStart);
    CHECK(zero.sensors()[0].id == 0);
    CHECK(zero.sensors()[2].id == 2);
  }
}

TEST_CASE("SimulatedSource rejects a non-positive rate", "[agent][source]") {
  CHECK_THROWS_AS(SimulatedSource({spec("z", 0, Shape::kSine)}, kStart), std::invalid_argument);
  CHECK_THROWS_AS(SimulatedSource({spec("n", -1, Shape::kSine)}, kStart), std::invalid_argument);
  CHECK_THROWS_AS(SimulatedSource({spec("nan", std::nan(""), Shape::kSine)}, kStart),
                  std::invalid_argument);
}

TEST_CASE("SimulatedSource shapes stay within offset +- amplitude", "[agent][source]") {
  for (Shape shape : {Shape::kSine, Shape::kSquare, Shape::kSawtooth}) {
    SimulatedSource src({spec("s", 10, shape)}, kStart, 0);
    std::vector<wire::Reading> out;
    src.poll(kStart + 20 * kSecond, out);
    REQUIRE(out.size() == 201);
    for (const auto& r : out) {
      CHECK(r.value() >= 8.0 - 1e-9);
      CHECK(r.value() <= 12.0 + 1e-9);
    }
  }
}

TEST_CASE("parseShape", "[agent][source]") {
  CHECK(parseShape("sine") == Shape::kSine);
  CHECK(parseShape("square") == Shape::kSquare);
  CHECK(parseShape("sawtooth") == Shape::kSawtooth);
  CHECK(parseShape("random_walk") == Shape::kRandomWalk);
  CHECK(parseShape("constant") == Shape::kConstant);
  CHECK(parseShape("counter") == Shape::kCounter);
  CHECK_THROWS_AS(parseShape("triangle"), std::invalid_argument);
  CHECK_THROWS_AS(parseShape(""), std::invalid_argument);
  CHECK_THROWS_AS(parseShape("Sine"), std::invalid_argument);
  CHECK_THROWS_AS(parseShape("random-walk"), std::invalid_argument);
}
