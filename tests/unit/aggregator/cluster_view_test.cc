// Issue 19, operating a cluster: the consumer-protocol assignment parser (bytes from the network),
// the static member's instance id, the device-status record parser and the process role's device
// view (cluster_view.h, device_status_view.h).
#include <catch2/catch.hpp>

#include <cstdint>
#include <chrono>
#include <random>
#include <thread>
#include <string>
#include <vector>

#include "outpost/aggregator/cluster_view.h"
#include "outpost/aggregator/device_registry.h"
#include "outpost/aggregator/device_status_view.h"
#include "outpost/common/clock.h"
#include "outpost/common/json.h"
#include "outpost/common/metrics.h"

using namespace outpost;
using namespace outpost::aggregator;

namespace {

// ConsumerProtocolAssignment as Kafka clients write it (big-endian).
struct Encoder {
  std::vector<uint8_t> b;
  Encoder& i16(int16_t v) {
    b.push_back(static_cast<uint8_t>(static_cast<uint16_t>(v) >> 8));
    b.push_back(static_cast<uint8_t>(v));
    return *this;
  }
  Encoder& i32(int32_t v) {
    const auto u = static_cast<uint32_t>(v);
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(u >> s));
    return *this;
  }
  Encoder& str(const std::string& s) {
    i16(static_cast<int16_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  std::span<const uint8_t> span() const { return b; }
};

// Version, topics (name, partitions) and user data (null when empty).
Encoder assignment(int16_t version,
                   const std::vector<std::pair<std::string, std::vector<int32_t>>>& topics,
                   const std::string& user_data = "") {
  Encoder e;
  e.i16(version).i32(static_cast<int32_t>(topics.size()));
  for (const auto& [t, parts] : topics) {
    e.str(t).i32(static_cast<int32_t>(parts.size()));
    for (int32_t p : parts) e.i32(p);
  }
  if (user_data.empty()) {
    e.i32(-1);
  } else {
    e.i32(static_cast<int32_t>(user_data.size()));
    e.b.insert(e.b.end(), user_data.begin(), user_data.end());
  }
  return e;
}

}  // namespace

TEST_CASE("member assignment: valid encodings", "[cluster_view]") {
  SECTION("one topic, user data null") {
    auto r = parseMemberAssignment(assignment(0, {{"outpost.batches", {0, 2, 4}}}).span());
    REQUIRE(r);
    REQUIRE(r->size() == 1);
    CHECK((*r)[0].topic == "outpost.batches");
    CHECK((*r)[0].partitions == std::vector<int32_t>{0, 2, 4});
  }
  SECTION("two topics, user data, version 3") {
    auto r = parseMemberAssignment(
        assignment(3, {{"a", {1}}, {"outpost.batches", {}}}, "sticky-user-data").span());
    REQUIRE(r);
    REQUIRE(r->size() == 2);
    CHECK((*r)[0].topic == "a");
    CHECK((*r)[0].partitions == std::vector<int32_t>{1});
    CHECK((*r)[1].partitions.empty());
  }
  SECTION("no topic (a member the assignor gave nothing)") {
    auto r = parseMemberAssignment(assignment(0, {}).span());
    REQUIRE(r);
    CHECK(r->empty());
  }
  SECTION("empty bytes: no assignment (the group is rebalancing)") {
    auto r = parseMemberAssignment({});
    REQUIRE(r);
    CHECK(r->empty());
  }
  SECTION("null topic array (-1)") {
    Encoder e;
    e.i16(0).i32(-1).i32(-1);
    auto r = parseMemberAssignment(e.span());
    REQUIRE(r);
    CHECK(r->empty());
  }
  SECTION("user data absent, and trailing bytes after it (a later version's fields)") {
    Encoder e;
    e.i16(0).i32(1).str("t").i32(1).i32(7);
    auto r = parseMemberAssignment(e.span());
    REQUIRE(r);
    CHECK((*r)[0].partitions == std::vector<int32_t>{7});
    Encoder f = assignment(4, {{"t", {7}}});
    f.i32(12345);
    CHECK(parseMemberAssignment(f.span()));
  }
}

TEST_CASE("member assignment: every truncation is an error, none reads past the end",
          "[cluster_view]") {
  const Encoder full = assignment(1, {{"outpost.batches", {0, 1, 2}}, {"x", {5}}}, "ud");
  // Without the user data (6 bytes: length 2 + "ud") the encoding is complete; every other
  // prefix is cut inside a field.
  const size_t topics_end = full.b.size() - 6;
  for (size_t n = 1; n < full.b.size(); ++n) {
    std::vector<uint8_t> cut(full.b.begin(), full.b.begin() + static_cast<ptrdiff_t>(n));
    auto r = parseMemberAssignment(cut);
    INFO("prefix of " << n << " of " << full.b.size() << " bytes");
    if (n == topics_end) {
      CHECK(r);
    } else {
      REQUIRE_FALSE(r);
      CHECK(r.error().code() == ErrorCode::kCorrupt);
      CHECK(r.error().message().find("member assignment") != std::string::npos);
    }
  }
}

TEST_CASE("member assignment: hostile counts and values", "[cluster_view]") {
  SECTION("a topic count far beyond the bytes: rejected before reserving anything") {
    Encoder e;
    e.i16(0).i32(0x7fffffff).str("t").i32(0);
    auto r = parseMemberAssignment(e.span());
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("topic count 2147483647 beyond") != std::string::npos);
  }
  SECTION("a partition count far beyond the bytes") {
    Encoder e;
    e.i16(0).i32(1).str("t").i32(0x40000000).i32(1).i32(2);
    auto r = parseMemberAssignment(e.span());
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("partition count 1073741824 beyond") != std::string::npos);
  }
  SECTION("negative counts, lengths, version, partition") {
    Encoder a;
    a.i16(0).i32(-2);
    CHECK_FALSE(parseMemberAssignment(a.span()));
    Encoder b;
    b.i16(0).i32(1).i16(-5).i32(0);
    CHECK_FALSE(parseMemberAssignment(b.span()));
    Encoder c;
    c.i16(-1).i32(0).i32(-1);
    CHECK_FALSE(parseMemberAssignment(c.span()));
    Encoder d;
    d.i16(0).i32(1).str("t").i32(-7);
    CHECK_FALSE(parseMemberAssignment(d.span()));
    Encoder e;
    e.i16(0).i32(1).str("t").i32(1).i32(-3).i32(-1);
    auto r = parseMemberAssignment(e.span());
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("negative partition -3") != std::string::npos);
    Encoder f;
    f.i16(0).i32(0).i32(-9);
    CHECK_FALSE(parseMemberAssignment(f.span()));
  }
  SECTION("user data longer than the rest") {
    Encoder e;
    e.i16(0).i32(0).i32(1000).i16(1);
    auto r = parseMemberAssignment(e.span());
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("user data of 1000 bytes past the end") != std::string::npos);
  }
  SECTION("a topic name running past the end") {
    Encoder e;
    e.i16(0).i32(1).i16(300).i32(0);
    CHECK_FALSE(parseMemberAssignment(e.span()));
  }
}

TEST_CASE("member assignment: random bytes and mutations never crash", "[cluster_view]") {
  std::mt19937 rng(19);
  const Encoder valid = assignment(0, {{"outpost.batches", {0, 1, 2, 3, 4, 5}}}, "u");
  size_t accepted = 0, rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> b;
    if (i % 2 == 0) {
      b.resize(rng() % 64);
      for (auto& x : b) x = static_cast<uint8_t>(rng());
    } else {
      b = valid.b;
      for (int k = 0; k < 3; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    }
    auto r = parseMemberAssignment(b);
    if (!r) {
      ++rejected;
      continue;
    }
    ++accepted;
    size_t total = 0;
    for (const auto& t : *r) {
      for (int32_t p : t.partitions) CHECK(p >= 0);
      total += t.partitions.size();
    }
    CHECK(total * 4 <= b.size());  // nothing invented beyond the bytes
  }
  CHECK(rejected > 0);
  CHECK(accepted > 0);
}

TEST_CASE("static member instance from the member id", "[cluster_view]") {
  const std::string uuid = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
  CHECK(staticInstanceOf("p1-" + uuid, "outpost-aggregator") == "p1");
  CHECK(staticInstanceOf("proc-a.eu-" + uuid, "outpost-aggregator") == "proc-a.eu");
  // A dynamic member: "<client id>-<uuid>".
  CHECK(staticInstanceOf("outpost-aggregator-" + uuid, "outpost-aggregator").empty());
  CHECK(staticInstanceOf("p1-1B4E28BA-2FA1-41D2-883F-0016D3CCA427", "c").empty());
  CHECK(staticInstanceOf("p1_" + uuid, "c").empty());
  CHECK(staticInstanceOf(uuid, "c").empty());
  CHECK(staticInstanceOf("", "c").empty());
  CHECK(staticInstanceOf("p1-1b4e28ba-2fa1-41d2-883f-0016d3cca42", "c").empty());
}

namespace {

DeviceInfo sampleDevice(const std::string& id, bool online) {
  DeviceInfo d;
  d.id = id;
  d.online = online;
  d.reason = online ? "batch" : "silence";
  d.state_since_us = 1'700'000'000'000'000;
  d.first_seen_us = 1'699'000'000'000'000;
  d.last_seen_us = 1'700'000'000'500'000;
  d.last_batch_us = 1'700'000'000'400'000;
  d.agent_version = "0.1.0";
  d.epoch = 18'000'000'000'000'000'001ULL;  // beyond 2^63: a string in JSON
  d.epoch_changes = 1;
  d.last_seq = 42;
  d.seq_gaps = 2;
  d.batches = 40;
  d.duplicates = 3;
  d.items = 4000;
  d.dropped_reported = 7;
  d.backlog_rows = 5;
  d.backlog_bytes = -1;
  return d;
}

// The event as the ops layer publishes it (ops.cc, OpsCenter::onDeviceChange).
std::string event(const DeviceInfo& d) {
  std::string ev;
  json::Writer(ev)
      .beginObject()
      .member("type", "device_status")
      .member("ts_us", int64_t{1'700'000'000'600'000})
      .key("device")
      .raw(deviceJson(d, 1'700'000'001'000'000))
      .endObject();
  return ev;
}

}  // namespace

TEST_CASE("device-status record: what the ops layer publishes reads back the same",
          "[cluster_view]") {
  const DeviceInfo d = sampleDevice("dev-1", true);
  auto r = parseDeviceStatusRecord("dev-1", event(d));
  REQUIRE(r);
  // Rendered again, it is the same device JSON.
  CHECK(deviceJson(*r, 1'700'000'001'000'000) == deviceJson(d, 1'700'000'001'000'000));
  CHECK(r->epoch == d.epoch);
  CHECK(r->backlog_bytes == -1);
  DeviceInfo fresh = sampleDevice("dev-2", false);
  fresh.agent_version.clear();  // null
  fresh.backlog_rows = -1;
  auto r2 = parseDeviceStatusRecord("dev-2", event(fresh));
  REQUIRE(r2);
  CHECK(r2->agent_version.empty());
  CHECK_FALSE(r2->online);
}

TEST_CASE("device-status record: bad records are rejected naming why", "[cluster_view]") {
  const std::string good = event(sampleDevice("dev-1", true));
  auto err = [](std::string_view key, std::string_view value) {
    auto r = parseDeviceStatusRecord(key, value);
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == ErrorCode::kInvalidArgument);
    return r.error().message();
  };
  CHECK(err("dev-2", good).find("differs from the key") != std::string::npos);
  CHECK(err("bad key/with slash", good).find("not a valid device id") != std::string::npos);
  CHECK(err("dev-1", "not json").find("dev-1") != std::string::npos);
  CHECK(err("dev-1", "[1,2]").find("not a JSON object") != std::string::npos);
  CHECK(err("dev-1", R"({"type":"device_status"})").find("no \"device\" object") !=
        std::string::npos);
  std::string wrong = good;
  wrong.replace(wrong.find("\"online\""), 8, "\"maybe\"");
  CHECK(err("dev-1", wrong).find("state (online or offline)") != std::string::npos);
  std::string neg = good;
  neg.replace(neg.find("\"batches\":40"), 12, "\"batches\":-4");
  CHECK(err("dev-1", neg).find("device.batches") != std::string::npos);
  std::string epoch = good;
  epoch.replace(epoch.find("\"epoch\":\""), 9, "\"epoch\":\"x");
  CHECK(err("dev-1", epoch).find("device.epoch") != std::string::npos);
  std::string missing = good;
  missing.replace(missing.find("\"last_seq\""), 10, "\"lost_seq\"");
  CHECK(err("dev-1", missing).find("device.last_seq") != std::string::npos);
  CHECK(err("dev-1", std::string(70000, ' ')).find("bytes (at most") != std::string::npos);
}

TEST_CASE("device view: latest record per device, tombstones, bounded", "[cluster_view]") {
  metrics::Registry registry;
  DeviceRegistryOptions opts;
  opts.max_devices = 2;
  DeviceStatusView view(KafkaOptions{}, "outpost.device-status", "g-device-view", opts, registry,
                        SystemClock::instance());
  const std::string a_on = event(sampleDevice("a", true));
  const std::string a_off = event(sampleDevice("a", false));
  view.apply("a", a_on.data(), a_on.size());
  REQUIRE(view.devices().get("a"));
  CHECK(view.devices().get("a")->online);
  CHECK(view.devices().onlineCount() == 1);
  view.apply("a", a_off.data(), a_off.size());  // the later record wins
  CHECK_FALSE(view.devices().get("a")->online);
  CHECK(view.devices().onlineCount() == 0);
  const std::string b = event(sampleDevice("b", true)), c = event(sampleDevice("c", true));
  view.apply("b", b.data(), b.size());
  view.apply("c", c.data(), c.size());  // beyond devices.max: counted, not recorded
  CHECK(view.devices().size() == 2);
  CHECK(view.devices().unrecorded() == 1);
  CHECK_FALSE(view.devices().get("c"));
  view.apply("b", "garbage", 7);  // invalid: the kept record stays
  CHECK(view.devices().get("b")->online);
  view.apply("b", nullptr, 0);  // tombstone
  CHECK_FALSE(view.devices().get("b"));
  CHECK(view.devices().onlineCount() == 0);
  CHECK(view.devices().size() == 1);
  const std::string text = registry.render();
  CHECK(text.find("outpost_aggregator_device_status_records_total{result=\"invalid\"} 1") !=
        std::string::npos);
  CHECK(text.find("outpost_aggregator_device_status_records_total{result=\"tombstone\"} 1") !=
        std::string::npos);
  CHECK(text.find("outpost_aggregator_device_status_records_total{result=\"over_max\"} 1") !=
        std::string::npos);
  CHECK(text.find("outpost_aggregator_device_status_records_total{result=\"applied\"} 3") !=
        std::string::npos);
}

TEST_CASE("cluster view: /api/cluster before and without a broker", "[cluster_view]") {
  KafkaOptions kafka;
  kafka.bootstrap_servers = "127.0.0.1:1";  // nothing listens: every describe fails
  ClusterOptions cluster;
  cluster.role = Role::kIngest;
  cluster.instance_id = "i1";
  ClusterView view(kafka, cluster, SystemClock::instance(), 200);
  auto field = [](const std::string& body, std::string_view k) {
    auto doc = json::parse(body);
    REQUIRE(doc);
    const json::Value* v = doc->find(k);
    REQUIRE(v);
    return *v;
  };
  // Not started: the shape is complete, the view says why it has nothing.
  std::string body = clusterJson(cluster, &view);
  CHECK(*field(body, "role").asString() == "ingest");
  CHECK(*field(body, "instance").asString() == "i1");
  CHECK(field(body, "members").items().empty());
  CHECK(field(body, "group_lag").isNull());
  CHECK(*field(body, "view_error").asString() == "not described yet");
  CHECK(field(body, "partitions").items().empty());

  view.start();
  GroupView v;
  for (int i = 0; i < 100 && v.updated_us == 0; ++i) {  // bounded: 10 s
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    v = view.snapshot();
  }
  view.stop();
  REQUIRE(v.updated_us > 0);
  CHECK_FALSE(v.described);
  CHECK_FALSE(v.error.empty());
  CHECK_FALSE(v.exists());
  body = clusterJson(cluster, &view);
  CHECK(field(body, "view_error").asString() != nullptr);
  CHECK(field(body, "members").items().empty());
  view.stop();  // idempotent
  // Without a view (it could not start): the same fields, saying so.
  body = clusterJson(cluster, nullptr);
  CHECK(field(body, "partition_count").asInt() == 0);
  CHECK(field(body, "members").items().empty());
  CHECK(field(body, "view_error").asString()->find("not running") != std::string::npos);
}
