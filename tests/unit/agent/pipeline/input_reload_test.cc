// SIGHUP, input half: stable sensor ids, the pipeline rebuild (state of unchanged sensors kept,
// windows of removed and changed ones flushed), sources kept or restarted, the batch dictionary.
#include "outpost/agent/input_reload.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "outpost/agent/agent_config.h"
#include "outpost/agent/input_set.h"
#include "outpost/agent/sensor_pipeline.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"
#include "support/mosquitto.h"
#include "support/mqtt_publisher.h"
#include "support/temp_dir.h"

using namespace outpost;
using namespace std::chrono_literals;
using namespace outpost::agent;

namespace {

constexpr int64_t kT0 = 1714564800LL * 1000000;
constexpr int64_t kSecond = 1000000;

class ManualClock final : public Clock {
 public:
  int64_t now = kT0;
  int64_t nowUs() const override { return now; }
  int64_t monotonicUs() const override { return now - kT0; }
};

config::Config configFrom(const std::string& toml) {
  return config::parseToml("device_id = \"d\"\n" + toml, agentSchema(), "test.toml");
}

AgentInputs inputsWithIds(const std::string& toml, SensorIds& ids) {
  AgentInputs in = parseInputs(configFrom(toml));
  ids.assign(in);
  return in;
}

uint16_t idOf(const AgentInputs& in, const std::string& name) {
  for (const auto& s : in.sensors) {
    if (s.name == name) return s.id;
  }
  FAIL("no sensor " << name);
  return 0;
}

wire::Reading reading(uint16_t id, int64_t ts, double v) {
  return wire::Reading(ts, v, id, wire::Quality::Good);
}

std::vector<codec::SensorInfo> dictionary(const AgentInputs& in) {
  std::vector<codec::SensorInfo> d;
  for (const auto& s : in.sensors) d.push_back({s.id, s.name, s.unit});
  return d;
}

int connectTo(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

void send(int fd, const std::string& text) {
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
}

// Polls until `n` readings arrived or 10 s passed (not a timing assertion: a bound on waiting);
// the manual clock moves 10 ms per poll (the InputSet schedules its sources by it).
std::vector<wire::Reading> collect(Source& src, ManualClock& clock, size_t n) {
  std::vector<wire::Reading> out;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
    const size_t before = out.size();
    clock.now += 10000;
    src.poll(clock.now, out);
    if (out.size() == before) std::this_thread::sleep_for(2ms);
  }
  return out;
}

const char* kBefore = R"(
[[sensors]]
name = "keep"
source = "stdin"
output = "both"
window.kind = "tumbling"
window.size_ms = 10000
[[sensors.filters]]
type = "dedup"
[[sensors]]
name = "change"
source = "stdin"
output = "both"
window.kind = "tumbling"
window.size_ms = 10000
[[sensors.filters]]
type = "range"
max = 100
[[sensors]]
name = "gone"
source = "stdin"
output = "windows"
window.kind = "tumbling"
window.size_ms = 10000
)";

const char* kAfter = R"(
[[sensors]]
name = "fresh"
source = "stdin"
[[sensors]]
name = "keep"
source = "stdin"
output = "both"
window.kind = "tumbling"
window.size_ms = 10000
[[sensors.filters]]
type = "dedup"
[[sensors]]
name = "change"
source = "stdin"
output = "both"
window.kind = "tumbling"
window.size_ms = 10000
[[sensors.filters]]
type = "range"
max = 1000
)";

}  // namespace

TEST_CASE("SensorIds keep a name's id across reloads and never reuse one", "[agent][reload]") {
  SensorIds ids;
  auto a = inputsWithIds("[[sensors]]\nname=\"x\"\n[[sensors]]\nname=\"y\"\n", ids);
  CHECK(idOf(a, "x") == 0);
  CHECK(idOf(a, "y") == 1);
  auto b = inputsWithIds("[[sensors]]\nname=\"z\"\n[[sensors]]\nname=\"y\"\n", ids);
  CHECK(idOf(b, "z") == 2);  // x's id 0 is not reused
  CHECK(idOf(b, "y") == 1);  // y moved in the file, kept its id
  auto c = inputsWithIds("[[sensors]]\nname=\"x\"\n", ids);
  CHECK(idOf(c, "x") == 0);  // a name that comes back gets its old id
}

TEST_CASE("SensorPipeline::reconfigure keeps unchanged sensors and flushes the rest",
          "[agent][pipeline][reload]") {
  metrics::Registry reg;
  SensorIds ids;
  const auto before = inputsWithIds(kBefore, ids);
  SensorPipeline p(before.sensors, &reg);
  Batcher batcher(100000, 1000000, dictionary(before));
  const uint16_t keep = idOf(before, "keep"), change = idOf(before, "change"),
                 gone = idOf(before, "gone");
  for (int i = 0; i < 3; ++i) {
    p.process(reading(keep, kT0 + i * kSecond, i), 0, batcher);
    p.process(reading(gone, kT0 + i * kSecond, 10 + i), 0, batcher);
  }
  p.process(reading(change, kT0, 50), 0, batcher);
  p.process(reading(change, kT0 + kSecond, 200), 0, batcher);  // dropped: max = 100
  auto first = batcher.take("d", kT0);
  CHECK(first.readings.size() == 4);  // keep 3 + change 1 (gone sends windows only)
  CHECK(first.windows.empty());

  const auto after = inputsWithIds(kAfter, ids);
  const uint16_t fresh = idOf(after, "fresh");
  CHECK(fresh == 3);
  CHECK(idOf(after, "keep") == keep);
  const auto ch = p.reconfigure(after.sensors, 0, batcher);
  CHECK(ch.added == std::vector<std::string>{"fresh"});
  CHECK(ch.rebuilt == std::vector<std::string>{"change"});
  CHECK(ch.removed == std::vector<std::string>{"gone"});
  CHECK(ch.kept == 1);

  // The windows of the removed and the changed sensor were emitted; keep's is still open.
  auto flushed = batcher.take("d", kT0);
  REQUIRE(flushed.windows.size() == 2);
  for (const auto& w : flushed.windows) {
    if (w.sensor() == gone) CHECK(w.count() == 3);
    if (w.sensor() == change) CHECK(w.count() == 1);
    CHECK(w.sensor() != keep);
  }

  // keep's dedup memory and window survived: a repeat is dropped, its window holds 3 + 2.
  p.process(reading(keep, kT0 + 2 * kSecond, 2), 0, batcher);  // duplicate of the last one
  p.process(reading(keep, kT0 + 3 * kSecond, 3), 0, batcher);
  p.process(reading(keep, kT0 + 4 * kSecond, 4), 0, batcher);
  CHECK(p.filters(keep)[0]->counts().droppedFor(FilterDropReason::kDuplicate) == 1);
  // change has its new range (200 passes now); gone is ignored; fresh is a raw sensor.
  p.process(reading(change, kT0 + 2 * kSecond, 200), 0, batcher);
  p.process(reading(gone, kT0 + 3 * kSecond, 13), 0, batcher);
  p.process(reading(fresh, kT0 + 3 * kSecond, 7), 0, batcher);
  p.closeAll(0, batcher);
  auto last = batcher.take("d", kT0);
  size_t raw_keep = 0, raw_change = 0, raw_fresh = 0, raw_gone = 0;
  for (const auto& r : last.readings) {
    raw_keep += r.sensor() == keep;
    raw_change += r.sensor() == change;
    raw_fresh += r.sensor() == fresh;
    raw_gone += r.sensor() == gone;
  }
  CHECK(raw_keep == 2);
  CHECK(raw_change == 1);
  CHECK(raw_fresh == 1);
  CHECK(raw_gone == 0);
  REQUIRE(last.windows.size() == 2);
  for (const auto& w : last.windows) {
    if (w.sensor() == keep) CHECK(w.count() == 5);  // 3 before the reload + 2 after
    if (w.sensor() == change) CHECK(w.count() == 1);
  }
  // Counters are shared across the rebuild, never reset: 2 flushed + 2 at closeAll.
  CHECK(reg.render().find("outpost_agent_windows_emitted_total 4") != std::string::npos);
  CHECK(reg.render().find("outpost_agent_readings_filtered_total{reason=\"out_of_range\"} 1") !=
        std::string::npos);
}

TEST_CASE("reloadInputs: sources kept or restarted, the batch closed under its dictionary",
          "[agent][reload]") {
  ManualClock clock;
  metrics::Registry reg;
  SensorIds ids;
  const char* before_toml = R"(
[[sensors]]
name = "a"
unit = "u"
rate_hz = 10
shape = "counter"
[[sensors]]
name = "b"
unit = "u"
rate_hz = 10
shape = "counter"
)";
  auto before = inputsWithIds(before_toml, ids);
  auto set = buildInputSet(before, clock, &reg);
  SensorPipeline pipeline(before.sensors, &reg);
  Batcher batcher(100000, 10 * kSecond, set->sensors());
  std::vector<codec::BatchContent> closed;
  auto close = [&] { closed.push_back(batcher.take("d", clock.now)); };
  auto run_until = [&](int64_t t) {
    clock.now = t;
    std::vector<wire::Reading> out;
    set->poll(t, out);
    for (const auto& r : out) pipeline.process(r, clock.monotonicUs(), batcher);
  };
  run_until(kT0 + kSecond);  // a and b: 0..10

  // b's rate changes (its source restarts), c is new, a is untouched.
  auto next =
      configFrom(std::string(before_toml)
                     .replace(std::string(before_toml).rfind("rate_hz = 10"), 12, "rate_hz = 20") +
                 "[[sensors]]\nname = \"c\"\nunit = \"v\"\nrate_hz = 10\nshape = \"counter\"\n");
  CHECK(reloadInputs(next, ids, *set, pipeline, batcher, nullptr, clock.monotonicUs(), close));
  REQUIRE(closed.size() == 1);  // the open batch was closed under the old dictionary
  CHECK(closed[0].sensors.size() == 2);
  CHECK(closed[0].readings.size() == 22);
  REQUIRE(set->sensors().size() == 3);
  CHECK(set->sensors()[2].name == "c");
  CHECK(set->sensors()[2].id == 2);

  run_until(kT0 + 2 * kSecond);
  close();
  std::vector<double> a, b, c;
  for (const auto& r : closed[1].readings) {
    (r.sensor() == 0 ? a : r.sensor() == 1 ? b : c).push_back(r.value());
  }
  REQUIRE(!a.empty());
  CHECK(a.front() == 11);  // a's source kept its place: the counter goes on
  REQUIRE(!b.empty());
  CHECK(b.front() == 0);  // b's source restarted at 20 Hz
  CHECK(b.size() == 21);
  REQUIRE(!c.empty());
  CHECK(c.front() == 0);
  CHECK(closed[1].sensors.size() == 3);

  SECTION("a reload that cannot apply changes nothing") {
    auto bad = configFrom(std::string(before_toml) +
                          "[sources.sysfs]\nroot = \"/nonexistent-outpost\"\n[[sensors]]\n"
                          "name = \"t\"\nsource = \"thermal\"\nthermal.zone = \"x\"\n");
    CHECK_THROWS_AS(
        reloadInputs(bad, ids, *set, pipeline, batcher, nullptr, clock.monotonicUs(), close),
        config::ConfigError);
    CHECK(set->sensors().size() == 3);
    // The failed reload took no id: the next new name gets 3.
    auto good = configFrom(std::string(before_toml) + "[[sensors]]\nname = \"e\"\n");
    reloadInputs(good, ids, *set, pipeline, batcher, nullptr, clock.monotonicUs(), close);
    REQUIRE(set->sensors().size() == 3);
    CHECK(set->sensors()[2].name == "e");
    CHECK(set->sensors()[2].id == 3);
  }
  SECTION("an unchanged configuration changes nothing") {
    const auto n = closed.size();
    CHECK_FALSE(
        reloadInputs(next, ids, *set, pipeline, batcher, nullptr, clock.monotonicUs(), close));
    CHECK(closed.size() == n);
  }
}

TEST_CASE(
    "InputSet: the socket source keeps its connections for new sensors, restarts for a new path",
    "[agent][reload]") {
  ManualClock clock;
  metrics::Registry reg;
  outpost::testing::TempDir dir("outpost-reload-sock");
  SensorIds ids;
  const std::string one = "[sources.socket]\npath = \"" + dir.file("one.sock") + "\"\n";
  const std::string s1 = "[[sensors]]\nname = \"s1\"\nsource = \"socket\"\n";
  const std::string s2 = "[[sensors]]\nname = \"s2\"\nsource = \"socket\"\n";
  auto in = inputsWithIds(one + s1, ids);
  auto set = buildInputSet(in, clock, &reg);
  const int c = connectTo(dir.file("one.sock"));
  send(c, "s1 1\n");
  auto got = collect(*set, clock, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].sensor() == 0);

  // A new socket sensor: the reader learns its name, the connection stays.
  auto more = inputsWithIds(one + s1 + s2, ids);
  std::vector<wire::Reading> drained;
  CHECK(set->reconfigure(more, drained).empty());  // no source started or restarted
  REQUIRE(set->sensors().size() == 2);
  send(c, "s2 2\ns1 3\n");
  got = collect(*set, clock, 2);
  REQUIRE(got.size() == 2);
  CHECK(got[0].sensor() == 1);
  CHECK(got[0].value() == 2);
  CHECK(got[1].sensor() == 0);

  // A new path: the source restarts, the old connection is closed, the new path serves.
  const std::string two = "[sources.socket]\npath = \"" + dir.file("two.sock") + "\"\n";
  auto moved = inputsWithIds(two + s1 + s2, ids);
  send(c, "s1 4\n");  // queued before the reload: handed over in `drained`
  std::this_thread::sleep_for(50ms);
  const auto lines = set->reconfigure(moved, drained);
  CHECK(lines == std::vector<std::string>{"socket source restarted (connections closed)"});
  REQUIRE(drained.size() == 1);
  CHECK(drained[0].value() == 4);
  char byte;
  CHECK(::read(c, &byte, 1) == 0);  // closed by the agent
  ::close(c);
  CHECK(::access(dir.file("one.sock").c_str(), F_OK) != 0);  // the old socket file is gone
  const int c2 = connectTo(dir.file("two.sock"));
  send(c2, "s2 5\n");
  got = collect(*set, clock, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].sensor() == 1);
  CHECK(got[0].value() == 5);
  ::close(c2);

  SECTION("a path that is not a socket is refused before anything changes") {
    const std::string file = dir.file("plain");
    REQUIRE(::close(::creat(file.c_str(), 0600)) == 0);
    auto bad = inputsWithIds("[sources.socket]\npath = \"" + file + "\"\n" + s1, ids);
    CHECK_THROWS_AS(set->reconfigure(bad, drained), config::ConfigError);
    const int c3 = connectTo(dir.file("two.sock"));  // still served
    send(c3, "s1 6\n");
    CHECK(collect(*set, clock, 1).size() == 1);
    ::close(c3);
  }
}

TEST_CASE("InputSet: the MQTT source is kept for other changes, restarted for its own",
          "[agent][reload][mqtt]") {
  outpost::testing::MosquittoBroker broker;
  ManualClock clock;
  metrics::Registry reg;
  SensorIds ids;
  const std::string src = "[sources.mqtt]\nbroker = \"" + broker.uri() + "\"\nclient_id = \"" +
                          outpost::testing::clientId("reload-src") + "\"\n";
  auto sensor = [](const std::string& topic) {
    return "[[sensors]]\nname = \"p\"\nsource = \"mqtt\"\nmqtt.topic = \"" + topic + "\"\n";
  };
  outpost::testing::MqttPublisher pub(broker.uri(), outpost::testing::clientId("reload-pub"));
  // Retained: whichever subscription comes gets it, however long the (re)connect takes.
  pub.publish("meter/a", "1", 1, true);
  pub.publish("meter/b", "2", 1, true);

  auto in = inputsWithIds(src + sensor("meter/a"), ids);
  auto set = buildInputSet(in, clock, &reg);
  auto got = collect(*set, clock, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].value() == 1);

  std::vector<wire::Reading> drained;
  auto other = inputsWithIds(src + sensor("meter/a") + "[[sensors]]\nname = \"sim\"\n", ids);
  CHECK(set->reconfigure(other, drained) ==
        std::vector<std::string>{"simulated sensor \"sim\" started"});

  auto moved = inputsWithIds(src + sensor("meter/b"), ids);
  CHECK(set->reconfigure(moved, drained) ==
        std::vector<std::string>{"simulated sensor \"sim\" stopped", "mqtt source restarted"});
  got = collect(*set, clock, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].sensor() == idOf(moved, "p"));
  CHECK(got[0].value() == 2);
  // The old subscription went with the old source: meter/a is not delivered any more (the
  // persistent session would otherwise keep it), so nothing counts as an unmatched topic.
  pub.publish("meter/a", "3", 1, false);
  pub.publish("meter/b", "4", 1, false);
  got = collect(*set, clock, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].value() == 4);
  CHECK(reg.render().find("reason=\"unmatched_topic\"} 0") != std::string::npos);
  for (const char* t : {"meter/a", "meter/b"}) pub.publish(t, "", 1, true);
  pub.disconnect();
}
