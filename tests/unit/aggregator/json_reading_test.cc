// kafka.readings_format = "reading": one flat JSON object per reading (issue 15).
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/aggregator/json.h"
#include "outpost/common/codec.h"
#include "support/encoded_batch.h"

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;
namespace wire = outpost::wire;

namespace {

constexpr int64_t kNow = 1'700'000'000'000'000;

using Encoded = outpost::testing::EncodedBatch;
Encoded encode(const codec::BatchContent& content) {
  return outpost::testing::encodeVerified(content);
}

}  // namespace

TEST_CASE("reading format: one flat record per reading and window", "[aggregator][json]") {
  codec::BatchContent b;
  b.device_id = "dev-\"1\"";
  b.epoch = 9007199254740993ULL;  // above 2^53: a string in JSON
  b.seq = 42;
  b.dropped = 3;
  b.created_us = kNow;
  b.sensors = {{1, "temp", "C"}, {4, "hum", "%"}};
  b.readings = {wire::Reading(kNow - 2, 21.5, 1, wire::Quality::Good),
                wire::Reading(kNow - 1, std::nan(""), 4, wire::Quality::Bad)};
  b.windows = {wire::WindowStat(kNow - 10, kNow, 20.0, 22.0, 21.0, 0.5, 20.5, 21.5, 10, 1)};
  Encoded e = encode(b);
  const agg::BatchJson rendered(*e.batch, 1000, agg::ReadingsFormat::kReading);
  REQUIRE(rendered.parts() == 3);  // every reading and window is its own part
  std::string out;
  rendered.appendPart(0, kNow, out);
  CHECK(out == R"({"device":"dev-\"1\"","sensor":"temp","unit":"C","ts":1699999999999998,)"
               R"("value":21.5,"quality":"good","epoch":"9007199254740993","seq":42,"dropped":3})");
  out.clear();
  rendered.appendPart(1, kNow, out);
  CHECK(out == R"({"device":"dev-\"1\"","sensor":"hum","unit":"%","ts":1699999999999999,)"
               R"("value":null,"quality":"bad","epoch":"9007199254740993","seq":42,"dropped":0})");
  out.clear();
  rendered.appendPart(2, kNow, out);
  CHECK(out == R"({"device":"dev-\"1\"","sensor":"temp","unit":"C","ts":1700000000000000,)"
               R"("value":21,"quality":"good","window_start":1699999999999990,"count":10,)"
               R"("min":20,"max":22,"stddev":0.5,"epoch":"9007199254740993","seq":42,)"
               R"("dropped":0})");
  SECTION("the batch format is unchanged by the option") {
    const agg::BatchJson batch_fmt(*e.batch, 1000, agg::ReadingsFormat::kBatch);
    CHECK(batch_fmt.parts() == 1);
  }
}

TEST_CASE("reading format: a batch without items is still one record (its seq and drops)",
          "[aggregator][json]") {
  codec::BatchContent b;
  b.device_id = "d";
  b.epoch = 1;
  b.seq = 2;
  b.dropped = 5;
  b.created_us = kNow;
  Encoded e = encode(b);
  const agg::BatchJson rendered(*e.batch, 1000, agg::ReadingsFormat::kReading);
  REQUIRE(rendered.parts() == 1);
  std::string out;
  rendered.appendPart(0, kNow, out);
  CHECK(out == R"({"device":"d","epoch":"1","seq":2,"dropped":5})");
}
