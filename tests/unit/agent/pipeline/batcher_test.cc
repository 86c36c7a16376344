#include "outpost/agent/batcher.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/common/codec.h"

namespace codec = outpost::codec;
namespace wire = outpost::wire;
using outpost::agent::Batcher;

namespace {

constexpr int64_t kNow = 1'700'000'000'000'000;
constexpr int64_t kMono = 5'000'000;  // an arbitrary monotonic origin
constexpr int64_t kLinger = 2'000'000;

std::vector<codec::SensorInfo> dictionary() {
  return {{0, "temp", "C"}, {1, "humidity", "%"}, {2, "pressure", "hPa"}, {5, "voltage", "V"}};
}

wire::Reading reading(uint16_t sensor, int64_t i) {
  return wire::Reading(kNow + i * 1000, static_cast<double>(i), sensor, wire::Quality::Good);
}

std::vector<uint16_t> idsOf(const std::vector<codec::SensorInfo>& sensors) {
  std::vector<uint16_t> out;
  for (const auto& s : sensors) out.push_back(s.id);
  return out;
}

}  // namespace

TEST_CASE("Batcher closes at max_readings", "[agent][batcher]") {
  Batcher b(3, kLinger, dictionary());
  CHECK(b.empty());
  CHECK(b.size() == 0);
  CHECK_FALSE(b.full());

  b.add(reading(0, 0), kMono);
  CHECK_FALSE(b.empty());
  CHECK(b.size() == 1);
  CHECK_FALSE(b.full());
  CHECK_FALSE(b.due(kMono));

  b.add(reading(0, 1), kMono);
  CHECK_FALSE(b.full());
  CHECK_FALSE(b.due(kMono));

  b.add(reading(1, 2), kMono);
  CHECK(b.size() == 3);
  CHECK(b.full());
  CHECK(b.due(kMono));  // full: due at once, long before the linger deadline
}

TEST_CASE("Batcher deadline is the first reading's time plus linger", "[agent][batcher]") {
  Batcher b(100, kLinger, dictionary());
  CHECK(b.deadline() == std::numeric_limits<int64_t>::max());

  SECTION("empty is never due") {
    CHECK_FALSE(b.due(kMono));
    CHECK_FALSE(b.due(std::numeric_limits<int64_t>::max() - 1));
  }
  SECTION("later readings do not move the deadline") {
    b.add(reading(0, 0), kMono);
    CHECK(b.deadline() == kMono + kLinger);
    b.add(reading(0, 1), kMono + 500'000);
    b.add(reading(1, 2), kMono + 1'500'000);
    CHECK(b.deadline() == kMono + kLinger);
  }
  SECTION("due exactly at the deadline, not before") {
    b.add(reading(0, 0), kMono);
    CHECK_FALSE(b.due(kMono));
    CHECK_FALSE(b.due(kMono + kLinger - 1));
    CHECK(b.due(kMono + kLinger));
    CHECK(b.due(kMono + kLinger + 1));
    CHECK_FALSE(b.full());
  }
  SECTION("take resets the deadline; the next batch starts its own") {
    b.add(reading(0, 0), kMono);
    (void)b.take("dev-01", kNow);
    CHECK(b.deadline() == std::numeric_limits<int64_t>::max());
    CHECK_FALSE(b.due(kMono + 10 * kLinger));
    b.add(reading(0, 1), kMono + 10 * kLinger);
    CHECK(b.deadline() == kMono + 11 * kLinger);
    CHECK_FALSE(b.due(kMono + 10 * kLinger));
  }
}

TEST_CASE("Batcher take moves readings out with the sensors they use", "[agent][batcher]") {
  Batcher b(100, kLinger, dictionary());
  const std::vector<wire::Reading> first = {reading(1, 0), reading(5, 1), reading(1, 2)};
  for (const auto& r : first) b.add(r, kMono);

  auto batch = b.take("dev-01", kNow);
  CHECK(batch.device_id == "dev-01");
  CHECK(batch.created_us == kNow);
  CHECK(batch.epoch == 0);  // the outbox's to fill in
  CHECK(batch.seq == 0);
  CHECK(batch.dropped == 0);
  CHECK(batch.windows.empty());
  REQUIRE(batch.readings.size() == first.size());
  for (size_t i = 0; i < first.size(); ++i) {
    CHECK(batch.readings[i].ts_us() == first[i].ts_us());
    CHECK(batch.readings[i].value() == first[i].value());
    CHECK(batch.readings[i].sensor() == first[i].sensor());
  }
  // Only sensors 1 and 5, in dictionary order, with their names and units.
  REQUIRE(idsOf(batch.sensors) == std::vector<uint16_t>{1, 5});
  CHECK(batch.sensors[0].name == "humidity");
  CHECK(batch.sensors[0].unit == "%");
  CHECK(batch.sensors[1].name == "voltage");
  CHECK(batch.sensors[1].unit == "V");

  // Emptied by take.
  CHECK(b.empty());
  CHECK(b.size() == 0);
  CHECK_FALSE(b.full());

  SECTION("the next batch's dictionary holds only its own sensors") {
    b.add(reading(2, 3), kMono + 1);
    b.add(reading(0, 4), kMono + 1);
    auto second = b.take("dev-01", kNow + 1);
    CHECK(idsOf(second.sensors) == std::vector<uint16_t>{0, 2});
    CHECK(second.readings.size() == 2);
    CHECK(second.created_us == kNow + 1);

    b.add(reading(5, 5), kMono + 2);
    auto third = b.take("dev-01", kNow + 2);
    CHECK(idsOf(third.sensors) == std::vector<uint16_t>{5});
    REQUIRE(third.readings.size() == 1);
    CHECK(third.readings[0].sensor() == 5);
  }
  SECTION("taking an empty batcher gives an empty batch") {
    auto empty = b.take("dev-01", kNow);
    CHECK(empty.readings.empty());
    CHECK(empty.sensors.empty());
  }
  SECTION("reusable up to max_readings again") {
    Batcher small(2, kLinger, dictionary());
    small.add(reading(0, 0), kMono);
    small.add(reading(0, 1), kMono);
    REQUIRE(small.full());
    CHECK(small.take("dev-01", kNow).readings.size() == 2);
    CHECK_FALSE(small.full());
    small.add(reading(1, 2), kMono);
    CHECK_FALSE(small.full());
    small.add(reading(1, 3), kMono);
    CHECK(small.full());
    auto again = small.take("dev-01", kNow);
    CHECK(again.readings.size() == 2);
    CHECK(idsOf(again.sensors) == std::vector<uint16_t>{1});
  }
}

TEST_CASE("Batcher output encodes and passes the codec's semantic checks", "[agent][batcher]") {
  Batcher b(10, kLinger, dictionary());
  b.add(reading(0, 0), kMono);
  b.add(reading(2, 1), kMono);
  auto batch = b.take("dev-01", kNow);
  batch.epoch = 1;
  batch.seq = 1;
  const auto bytes = codec::encodeBatch(batch);
  auto verified = codec::verifyBatch(bytes, codec::VerifyLimits{});
  REQUIRE(verified.has_value());
  auto semantics = codec::checkBatchSemantics(**verified, codec::VerifyLimits{}, kNow, "dev-01");
  CHECK(semantics.has_value());
}
