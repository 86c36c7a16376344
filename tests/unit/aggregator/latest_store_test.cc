#include "outpost/aggregator/latest_store.h"

#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/common/codec.h"
#include "support/encoded_batch.h"

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;
namespace wire = outpost::wire;

namespace {

constexpr int64_t kMinute = 60'000'000;
constexpr int64_t kT0 = 1'700'000'040'000'000;  // a minute boundary (28333334 min)

using Encoded = outpost::testing::EncodedBatch;
Encoded encode(const codec::BatchContent& content) {
  return outpost::testing::encodeVerified(content);
}

codec::BatchContent batchOf(const std::string& device, std::vector<wire::Reading> readings) {
  codec::BatchContent b;
  b.device_id = device;
  b.epoch = 1;
  b.seq = 1;
  b.created_us = kT0;
  b.sensors = {{1, "temp", "C"}, {2, "hum", "%"}};
  b.readings = std::move(readings);
  return b;
}

void feed(agg::LatestStore& s, const codec::BatchContent& c, int64_t now = kT0) {
  Encoded e = encode(c);
  s.update(c.device_id, *e.batch, now);
}

outpost::HttpServer::Request query(std::initializer_list<std::pair<std::string, std::string>> kv) {
  outpost::HttpServer::Request r;
  for (const auto& [k, v] : kv) r.params.emplace(k, v);
  return r;
}

const std::string kFrom = std::to_string(kT0 / 1000);
const std::string kTo = std::to_string((kT0 + 10 * kMinute) / 1000);

}  // namespace

TEST_CASE("latest value, unit and quality per sensor, an older reading does not replace it",
          "[aggregator][latest]") {
  outpost::metrics::Registry reg;
  agg::LatestStore store({}, 2, reg);
  feed(store, batchOf("dev-1", {wire::Reading(kT0 + 2'000'000, 21.5, 1, wire::Quality::Good),
                                wire::Reading(kT0 + 1'000'000, 99.0, 1, wire::Quality::Bad),
                                wire::Reading(kT0, 40.0, 2, wire::Quality::Suspect)}));
  const auto r = store.sensorsJson("dev-1");
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(r.body.find(R"({"name":"hum","unit":"%","value":40,"ts_us":1700000040000000,)"
                    R"("quality":"suspect")") != std::string::npos);
  CHECK(r.body.find(R"({"name":"temp","unit":"C","value":21.5,"ts_us":1700000042000000,)"
                    R"("quality":"good")") != std::string::npos);
  CHECK(store.sensors() == 2);

  SECTION("unknown device: 404 naming it") {
    const auto nf = store.sensorsJson("nobody");
    CHECK(nf.status == 404);
    CHECK(nf.body.find("\"device\":\"nobody\"") != std::string::npos);
  }
  SECTION("recent bucket means on request") {
    const auto rr = store.sensorsJson("dev-1", 5);
    CHECK(rr.body.find("\"recent\":[[1700000040000,") != std::string::npos);
  }
}

TEST_CASE("history: min/mean/max/count per bucket, re-binned by step", "[aggregator][latest]") {
  outpost::metrics::Registry reg;
  agg::LatestStore store({}, 1, reg);
  // Minute 0: 1, 3; minute 1: 10; minute 3: 5, 7, 9.
  feed(store, batchOf("d", {wire::Reading(kT0, 1, 1, wire::Quality::Good),
                            wire::Reading(kT0 + 30'000'000, 3, 1, wire::Quality::Good),
                            wire::Reading(kT0 + kMinute, 10, 1, wire::Quality::Good),
                            wire::Reading(kT0 + 3 * kMinute, 5, 1, wire::Quality::Good),
                            wire::Reading(kT0 + 3 * kMinute + 1, 7, 1, wire::Quality::Good),
                            wire::Reading(kT0 + 3 * kMinute + 2, 9, 1, wire::Quality::Good)}));
  const int64_t t0_ms = kT0 / 1000;
  auto h = store.historyJson("d", "temp", query({{"from", kFrom}, {"to", kTo}}), kT0);
  REQUIRE(h.status == 200);
  const std::string p0 = "[" + std::to_string(t0_ms) + ",1,2,3,2]";
  const std::string p1 = "[" + std::to_string(t0_ms + 60000) + ",10,10,10,1]";
  const std::string p3 = "[" + std::to_string(t0_ms + 180000) + ",5,7,9,3]";
  CHECK(h.body.find("\"points\":[" + p0 + "," + p1 + "," + p3 + "]") != std::string::npos);

  auto h2 = store.historyJson("d", "temp", query({{"from", kFrom}, {"to", kTo}, {"step", "120"}}),
                              kT0);
  REQUIRE(h2.status == 200);
  // Bins of 2 minutes: (1,3,10) and (5,7,9).
  CHECK(h2.body.find("\"points\":[[" + std::to_string(t0_ms) + ",1,4.666666666666667,10,3],[" +
                     std::to_string(t0_ms + 120000) + ",5,7,9,3]]") != std::string::npos);
  // A range that excludes the first two minutes.
  auto h3 = store.historyJson(
      "d", "temp", query({{"from", std::to_string(t0_ms + 120000)}, {"to", kTo}}), kT0);
  CHECK(h3.body.find("\"points\":[" + p3 + "]") != std::string::npos);
}

TEST_CASE("history: bad parameters are 400 naming the parameter, unknown names 404",
          "[aggregator][latest]") {
  outpost::metrics::Registry reg;
  agg::LatestStore store({}, 1, reg);
  feed(store, batchOf("d", {wire::Reading(kT0, 1, 1, wire::Quality::Good)}));
  auto check400 = [&](std::initializer_list<std::pair<std::string, std::string>> kv,
                      const std::string& param) {
    const auto r = store.historyJson("d", "temp", query(kv), kT0);
    CHECK(r.status == 400);
    CHECK(r.body.find("\"parameter\":\"" + param + "\"") != std::string::npos);
  };
  check400({{"from", "yesterday"}}, "from");
  check400({{"to", "1.5"}}, "to");
  check400({{"from", kTo}, {"to", kFrom}}, "from");
  check400({{"step", "90"}}, "step");       // not a multiple of 60
  check400({{"step", "0"}}, "step");
  check400({{"step", "172800"}}, "step");   // above a day
  check400({{"from", "0"}, {"to", kTo}}, "step");  // far too many points at 60 s
  CHECK(store.historyJson("x", "temp", query({}), kT0).status == 404);
  const auto ns = store.historyJson("d", "nope", query({}), kT0);
  CHECK(ns.status == 404);
  CHECK(ns.body.find("\"sensor\":\"nope\"") != std::string::npos);
  CHECK(store.historyJson("d", "temp", query({{"from", kFrom}, {"to", kTo}, {"step", "600"}}),
                          kT0)
            .status == 200);
}

TEST_CASE("history ring is bounded by history_bytes_per_sensor", "[aggregator][latest]") {
  outpost::metrics::Registry reg;
  agg::LatestOptions o;
  o.history_bytes = 3 * agg::LatestStore::kBucketBytes;
  agg::LatestStore store(o, 1, reg);
  REQUIRE(store.historyBuckets() == 3);
  for (int m = 0; m < 5; ++m) {
    feed(store, batchOf("d", {wire::Reading(kT0 + m * kMinute, m, 1, wire::Quality::Good)}));
  }
  const auto h = store.historyJson("d", "temp", query({{"from", kFrom}, {"to", kTo}}), kT0);
  const int64_t t0_ms = kT0 / 1000;
  CHECK(h.body.find("\"points\":[[" + std::to_string(t0_ms + 120000) + ",2,2,2,1],[" +
                    std::to_string(t0_ms + 180000) + ",3,3,3,1],[" +
                    std::to_string(t0_ms + 240000) + ",4,4,4,1]]") != std::string::npos);
  // A reading older than the ring: not in the history (counted), the latest value unchanged.
  feed(store, batchOf("d", {wire::Reading(kT0, -1, 1, wire::Quality::Good)}));
  CHECK(reg.counterSum("outpost_aggregator_latest_late_readings_total") == 1);
  CHECK(store.sensorsJson("d").body.find("\"value\":4,") != std::string::npos);
}

TEST_CASE("the memory cap refuses new sensors (counted), tracked ones keep updating",
          "[aggregator][latest]") {
  outpost::metrics::Registry reg;
  agg::LatestOptions o;
  o.history_bytes = 1000 * agg::LatestStore::kBucketBytes;
  agg::LatestStore store(o, 1, reg);
  // Room for one device with exactly one sensor ("temp", unit "C").
  const size_t one = agg::LatestStore::kDeviceOverheadBytes + 1 + store.bytesPerSensor() + 5;
  agg::LatestOptions capped = o;
  capped.max_bytes = one;
  agg::LatestStore small(capped, 1, reg);
  feed(small, batchOf("d", {wire::Reading(kT0, 1, 1, wire::Quality::Good),
                            wire::Reading(kT0, 2, 2, wire::Quality::Good)}));
  CHECK(small.sensors() == 1);
  CHECK(small.chargedBytes() <= capped.max_bytes);
  CHECK(reg.counterSum("outpost_aggregator_latest_refused_total") == 1);
  feed(small, batchOf("e", {wire::Reading(kT0, 1, 1, wire::Quality::Good)}));
  CHECK(small.sensorsJson("e").status == 404);  // a new device is refused too
  CHECK(reg.counterSum("outpost_aggregator_latest_refused_total") == 3);
  feed(small, batchOf("d", {wire::Reading(kT0 + 1, 7, 1, wire::Quality::Good)}));
  CHECK(small.sensorsJson("d").body.find("\"value\":7,") != std::string::npos);
}

TEST_CASE("changed sensors are collected once per change for outpost.latest",
          "[aggregator][latest]") {
  outpost::metrics::Registry reg;
  agg::LatestStore store({}, 2, reg);
  feed(store, batchOf("d", {wire::Reading(kT0, 1.5, 1, wire::Quality::Good)}));
  auto c = store.collectChanged();
  REQUIRE(c.size() == 1);
  CHECK(c[0].key == "d/temp");
  CHECK(c[0].value == R"({"device":"d","sensor":"temp","unit":"C","ts":1700000040000000,)"
                      R"("value":1.5,"quality":"good","updated_us":1700000040000000})");
  CHECK(store.collectChanged().empty());
  feed(store, batchOf("d", {wire::Reading(kT0 + 1, 2, 1, wire::Quality::Good),
                            wire::Reading(kT0 + 1, 3, 2, wire::Quality::Good)}));
  CHECK(store.collectChanged().size() == 2);
}

// Regression (fuzz.history_query, tests/fuzz/regressions/history_query/): to=INT64_MIN made the
// default `from = to - 1 h` overflow (undefined behaviour); from/to are now bounded.
TEST_CASE("history: from and to outside 0..year 9999 are 400, not an overflow",
          "[aggregator][latest]") {
  outpost::metrics::Registry reg;
  agg::LatestStore store({}, 1, reg);
  feed(store, batchOf("d", {wire::Reading(kT0, 1, 1, wire::Quality::Good)}));
  auto get = [&](std::initializer_list<std::pair<std::string, std::string>> kv) {
    return store.historyJson("d", "temp", query(kv), kT0);
  };
  for (const char* to : {"-9223372036854775808", "-1", "253402300800000", "9223372036854775807"}) {
    const auto r = get({{"to", to}});
    CHECK(r.status == 400);
    CHECK(r.body.find("\"parameter\":\"to\"") != std::string::npos);
    CHECK(r.body.find("0 to 253402300799999") != std::string::npos);
  }
  CHECK(get({{"from", "-9223372036854775808"}, {"to", "1000"}}).status == 400);
  CHECK(get({{"from", "-1"}}).body.find("\"parameter\":\"from\"") != std::string::npos);
  // The bounds themselves are accepted (a far range answers 400 for too many points, at `step`).
  CHECK(get({{"from", "0"}, {"to", "3600000"}}).status == 200);
  const auto far = get({{"from", "0"}, {"to", "253402300799999"}});
  CHECK(far.status == 400);
  CHECK(far.body.find("\"parameter\":\"step\"") != std::string::npos);
  // to < 1 h: the default from is negative, which is fine (nothing is read before 0).
  CHECK(get({{"to", "1000"}}).status == 200);
}
