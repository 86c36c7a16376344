#include "outpost/aggregator/device_registry.h"

#include <catch2/catch.hpp>

using outpost::aggregator::BatchSeen;
using outpost::aggregator::DeviceInfo;
using outpost::aggregator::DeviceRegistry;
using outpost::aggregator::DeviceRegistryOptions;

namespace {

constexpr int64_t kS = 1'000'000;

BatchSeen batch(std::string_view dev, uint64_t epoch, uint64_t seq, int64_t now,
                uint64_t dropped = 0, uint64_t items = 10) {
  return {dev, epoch, seq, dropped, items, now};
}

struct Recorder {
  std::vector<DeviceInfo> changes;
  DeviceRegistry::ChangeFn fn() {
    return [this](const DeviceInfo& d) { changes.push_back(d); };
  }
};

}  // namespace

TEST_CASE("registry counts sequence gaps and repairs late arrivals", "[aggregator][registry]") {
  DeviceRegistry reg({});
  SECTION("in order: no gaps; re-sends are duplicates") {
    for (uint64_t s = 1; s <= 5; ++s) reg.onBatch(batch("d1", 7, s, s * kS));
    reg.onBatch(batch("d1", 7, 3, 6 * kS));
    const auto d = *reg.get("d1");
    CHECK(d.seq_gaps == 0);
    CHECK(d.batches == 5);
    CHECK(d.duplicates == 1);
    CHECK(d.items == 50);
    CHECK(d.last_seq == 5);
  }
  SECTION("a skipped range counts each missing seq") {
    reg.onBatch(batch("d1", 7, 1, kS));
    reg.onBatch(batch("d1", 7, 5, 2 * kS));  // 2, 3, 4 missing
    CHECK(reg.get("d1")->seq_gaps == 3);
    reg.onBatch(batch("d1", 7, 3, 3 * kS));  // late (out of order): no longer missing
    CHECK(reg.get("d1")->seq_gaps == 2);
    CHECK(reg.get("d1")->batches == 3);
    reg.onBatch(batch("d1", 7, 3, 4 * kS));  // the same late one again: a duplicate
    CHECK(reg.get("d1")->seq_gaps == 2);
    CHECK(reg.get("d1")->duplicates == 1);
    reg.onBatch(batch("d1", 7, 5, 4 * kS));  // re-send of the newest
    CHECK(reg.get("d1")->duplicates == 2);
  }
  SECTION("a jump beyond the repair window still counts, and old seqs are duplicates") {
    reg.onBatch(batch("d1", 7, 1, kS));
    reg.onBatch(batch("d1", 7, 1001, 2 * kS));
    CHECK(reg.get("d1")->seq_gaps == 999);
    reg.onBatch(batch("d1", 7, 2, 3 * kS));  // 999 behind: outside the 64-seq window
    CHECK(reg.get("d1")->seq_gaps == 999);
    CHECK(reg.get("d1")->duplicates == 1);
  }
  SECTION("the first batch seen of a stream is not a gap (aggregator restarted mid-stream)") {
    reg.onBatch(batch("d1", 7, 500, kS));
    CHECK(reg.get("d1")->seq_gaps == 0);
    CHECK(reg.get("d1")->last_seq == 500);
  }
}

TEST_CASE("registry follows stream epochs and sums reported drops", "[aggregator][registry]") {
  DeviceRegistry reg({});
  reg.onBatch(batch("d1", 7, 1, kS, /*dropped=*/4));
  reg.onBatch(batch("d1", 7, 2, 2 * kS, 6));
  reg.onBatch(batch("d1", 7, 2, 3 * kS, 6));  // re-send: its drops are not counted twice
  CHECK(reg.get("d1")->dropped_reported == 10);
  reg.onBatch(batch("d1", 9, 1, 4 * kS, 1));  // store re-created: new epoch, seq restarts
  const auto d = *reg.get("d1");
  CHECK(d.epoch == 9);
  CHECK(d.epoch_changes == 1);
  CHECK(d.last_seq == 1);
  CHECK(d.seq_gaps == 0);
  CHECK(d.dropped_reported == 11);
  CHECK(d.first_seen_us == kS);
  CHECK(d.last_seen_us == 4 * kS);
}

TEST_CASE("registry online/offline from status, last will and silence", "[aggregator][registry]") {
  Recorder rec;
  DeviceRegistryOptions opt;
  opt.offline_after_us = 60 * kS;
  DeviceRegistry reg(opt, rec.fn());

  SECTION("JSON status carries version and backlog; the last will marks offline") {
    REQUIRE(reg.onStatus(
        "d1",
        R"({"state":"online","reason":"status","version":"1.2.3","backlog_rows":12,"backlog_bytes":3400})",
        false, kS));
    auto d = *reg.get("d1");
    CHECK(d.online);
    CHECK(d.agent_version == "1.2.3");
    CHECK(d.backlog_rows == 12);
    CHECK(d.backlog_bytes == 3400);
    CHECK(reg.onlineCount() == 1);
    REQUIRE(reg.onStatus("d1", R"({"state":"offline","reason":"last_will","version":"1.2.3"})",
                         false, 5 * kS));
    d = *reg.get("d1");
    CHECK_FALSE(d.online);
    CHECK(d.reason == "last_will");
    CHECK(d.backlog_rows == 12);  // a will does not carry a backlog: the last one stays
    CHECK(reg.onlineCount() == 0);
    REQUIRE(rec.changes.size() == 2);
    CHECK(rec.changes[0].online);
    CHECK_FALSE(rec.changes[1].online);
    CHECK(rec.changes[1].reason == "last_will");
  }
  SECTION("bare strings of older agents") {
    REQUIRE(reg.onStatus("d1", "online", false, kS));
    CHECK(reg.get("d1")->online);
    REQUIRE(reg.onStatus("d1", "offline", false, 2 * kS));
    CHECK_FALSE(reg.get("d1")->online);
    CHECK(reg.get("d1")->reason == "status");
  }
  SECTION("untrusted payloads: anything malformed is ignored") {
    for (std::string_view bad :
         {"", "on", "{", R"({"state":"maybe"})", R"({"state":"online",})", R"({"state":{"x":1}})",
          R"({"state":"online"} trailing)", R"(["online"])"}) {
      CHECK_FALSE(reg.onStatus("d1", bad, false, kS));
    }
    CHECK_FALSE(reg.get("d1"));
    CHECK(reg.onStatus("d1", std::string(R"({"state":"online","version":")") + "\x01" + R"("})",
                       false, kS) == false);  // control character in a string
    // A bad number or an implausible version is dropped, the state still counts.
    REQUIRE(reg.onStatus("d2", R"({"state":"online","backlog_rows":-5,"version":""})", false, kS));
    CHECK(reg.get("d2")->backlog_rows == -1);
    CHECK(reg.get("d2")->agent_version.empty());
    CHECK_FALSE(reg.onStatus("d3", std::string(2000, ' '), false, kS));  // over the size limit
  }
  SECTION("silence: an online device not heard of for offline_after goes offline") {
    reg.onBatch(batch("d1", 7, 1, kS));
    reg.onBatch(batch("d2", 7, 1, kS));
    CHECK(reg.sweep(30 * kS) == 0);
    reg.onBatch(batch("d2", 7, 2, 50 * kS));
    CHECK(reg.sweep(62 * kS) == 1);  // d1: 61 s silent; d2: 12 s
    CHECK_FALSE(reg.get("d1")->online);
    CHECK(reg.get("d1")->reason == "silence");
    CHECK(reg.get("d2")->online);
    CHECK(reg.onlineCount() == 1);
    reg.onBatch(batch("d1", 7, 2, 70 * kS));  // back
    CHECK(reg.get("d1")->online);
    CHECK(reg.get("d1")->reason == "batch");
    REQUIRE(rec.changes.size() == 4);  // d1 new, d2 new, d1 offline, d1 online
    CHECK(rec.changes[2].id == "d1");
    CHECK_FALSE(rec.changes[2].online);
    CHECK(rec.changes[3].online);
  }
  SECTION("a retained status does not count as seen live") {
    REQUIRE(reg.onStatus("d1", "online", /*retained=*/true, kS));
    CHECK(reg.get("d1")->last_seen_us == 0);
    CHECK(reg.get("d1")->online);
    CHECK(reg.sweep(62 * kS) == 1);  // nothing live since it was recorded
  }
}

TEST_CASE("registry lists pages, searches and filters by state", "[aggregator][registry]") {
  DeviceRegistryOptions opt;
  opt.max_devices = 250;
  DeviceRegistry reg(opt);
  char id[16];
  for (int i = 0; i < 300; ++i) {
    std::snprintf(id, sizeof id, "dev-%04d", i);
    if (i % 3 == 0)
      reg.onStatus(id, "offline", false, kS);
    else
      reg.onBatch(batch(id, 1, 1, kS));
  }
  CHECK(reg.size() == 250);
  CHECK(reg.unrecorded() == 50);
  auto p = reg.list(0, 10, "", "");
  CHECK(p.total == 250);
  REQUIRE(p.items.size() == 10);
  CHECK(p.items.front().id == "dev-0000");
  p = reg.list(245, 10, "", "");
  CHECK(p.items.size() == 5);
  CHECK(p.items.back().id == "dev-0249");
  p = reg.list(0, 100, "dev-01", "");
  CHECK(p.total == 100);
  p = reg.list(0, 500, "", "offline");
  CHECK(p.total == 84);  // 0, 3, ..., 249
  for (const auto& d : p.items) CHECK_FALSE(d.online);
  p = reg.list(0, 500, "dev-000", "online");
  CHECK(p.total == 6);  // 1 2 4 5 7 8
  CHECK(reg.onlineCount() == 166);
}

TEST_CASE("device JSON escapes what devices report", "[aggregator][registry]") {
  DeviceRegistry reg({});
  REQUIRE(reg.onStatus("d1", R"({"state":"online","version":"1.0 \"beta\""})", false, kS));
  const std::string j = outpost::aggregator::deviceJson(*reg.get("d1"), 3 * kS);
  CHECK(j.find(R"("agent_version":"1.0 \"beta\"")") != std::string::npos);
  CHECK(j.find(R"("last_seen_age_s":2)") != std::string::npos);
  CHECK(j.find(R"("backlog_rows":null)") != std::string::npos);
}
