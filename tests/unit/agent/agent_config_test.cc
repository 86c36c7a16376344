// The agent's settings tables (agent_config.cc, inputs_config.cc): typed reads, invalid
// combinations rejected with the key names, enum names in one table, reloadability in the rows.
#include "outpost/agent/agent_config.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "outpost/agent/config_reload.h"
#include "outpost/agent/inputs.h"
#include "outpost/agent/uplink_factory.h"
#include "outpost/common/config.h"

using namespace outpost;
using namespace outpost::agent;
using Catch::Matchers::Contains;

namespace {

config::Config load(const std::string& extra, const std::string& sensor = "name = \"a\"\n") {
  const std::string toml = "device_id = \"dev-1\"\n" + extra + "\n[[sensors]]\n" + sensor;
  return config::parseToml(toml, agentSchema(), "test.toml");
}

}  // namespace

TEST_CASE("readAgentSettings reads every stage's table into its struct", "[agent][config]") {
  SECTION("defaults") {
    const AgentSettings s = readAgentSettings(load(""));
    CHECK(s.device_id == "dev-1");
    CHECK(s.batch.max_readings == 500);
    CHECK(s.batch.linger_us == 1000000);
    CHECK(s.outbox.path == "/var/lib/outpost/outbox.db");
    CHECK(s.outbox.max_bytes == 256ull << 20);
    CHECK(s.outbox.full_policy == FullPolicy::kDropOldest);
    CHECK(s.outbox.group_max_batches == 64);
    CHECK(s.outbox.synchronous == "full");
    CHECK(s.transport == UplinkTransport::kMqtt);
    CHECK(s.mqtt.broker == "tcp://127.0.0.1:1883");
    CHECK(s.mqtt.device_id == "dev-1");
    CHECK(s.mqtt.reconnect_min_ms == 500);
    CHECK(s.mqtt.reconnect_max_ms == 30000);
    CHECK(s.drain.order == ReadOrder::kOldestFirst);
    CHECK(s.zmq.heartbeat_liveness == 3);
  }
  SECTION("set values") {
    const AgentSettings s = readAgentSettings(
        load("[batch]\nlinger_ms = 250\n[outbox]\nfull_policy = \"block\"\nsynchronous = "
             "\"normal\"\n[uplink]\ntransport = \"zmq\"\n[uplink.drain]\norder = "
             "\"newest_first\"\nrate = 12.5\n[uplink.zmq]\nendpoint = \"tcp://10.0.0.1:1\"\n"));
    CHECK(s.batch.linger_us == 250000);
    CHECK(s.outbox.full_policy == FullPolicy::kBlock);
    CHECK(s.outbox.synchronous == "normal");
    CHECK(s.transport == UplinkTransport::kZmq);
    CHECK(s.drain.order == ReadOrder::kNewestFirst);
    CHECK(s.mqtt.drain.rate_readings_per_s == 12.5);  // the MQTT uplink gets the drain settings
    CHECK(s.zmq.endpoint == "tcp://10.0.0.1:1");
  }
}

TEST_CASE("reconnect_max_ms below reconnect_min_ms is rejected and not repaired",
          "[agent][config]") {
  SECTION("uplink.mqtt") {
    const auto cfg = load("[uplink.mqtt]\nreconnect_min_ms = 5000\nreconnect_max_ms = 1000\n");
    CHECK_THROWS_AS(readAgentSettings(cfg), config::ConfigError);
    CHECK_THROWS_WITH(readAgentSettings(cfg),
                      Contains("uplink.mqtt.reconnect_max_ms = 1000") &&
                          Contains("uplink.mqtt.reconnect_min_ms = 5000") &&
                          Contains("allowed: uplink.mqtt.reconnect_max_ms >= "
                                   "uplink.mqtt.reconnect_min_ms"));
    CHECK_THROWS_WITH(checkUplinkConfig(cfg), Contains("uplink.mqtt.reconnect_max_ms"));
  }
  SECTION("uplink.zmq") {
    const auto cfg = load("[uplink.zmq]\nreconnect_min_ms = 800\nreconnect_max_ms = 700\n");
    CHECK_THROWS_WITH(readAgentSettings(cfg), Contains("uplink.zmq.reconnect_max_ms = 700") &&
                                                  Contains("uplink.zmq.reconnect_min_ms = 800"));
  }
  SECTION("equal is fine") {
    const auto cfg = load("[uplink.mqtt]\nreconnect_min_ms = 1000\nreconnect_max_ms = 1000\n");
    CHECK(readAgentSettings(cfg).mqtt.reconnect_max_ms == 1000);
  }
  SECTION("a modbus slave") {
    const auto cfg = load(
        "[[sources.modbus.slaves]]\nname = \"plc\"\nhost = \"127.0.0.1\"\nreconnect_min_ms = "
        "900\nreconnect_max_ms = 100\n",
        "name = \"a\"\nsource = \"modbus\"\nmodbus.slave = \"plc\"\nmodbus.address = 0\n");
    CHECK_THROWS_WITH(parseInputs(cfg),
                      Contains("sources.modbus.slaves[0].reconnect_max_ms = 100") &&
                          Contains("sources.modbus.slaves[0].reconnect_min_ms = 900"));
  }
}

TEST_CASE("source kinds are spelled once and an unknown kind is an error naming the allowed ones",
          "[agent][config]") {
  const std::vector<std::string> kinds = {"simulated", "stdin", "socket", "mqtt",
                                          "hwmon",     "thermal", "iio",  "modbus"};
  CHECK(sourceKindNames().names() == kinds);
  // The schema's allowed values are the table's names.
  const config::Setting* source = nullptr;
  for (const auto& s : agentSchema().settings()) {
    if (s.key == "sensors") source = s.item_schema->find("source");
  }
  REQUIRE(source != nullptr);
  CHECK(source->allowed == kinds);
  for (const auto& k : kinds) {
    CHECK(std::string(sourceKindName(*sourceKindNames().find(k))) == k);
  }
  // Before: parseSourceKind() turned any unknown name into kIio.
  CHECK_THROWS_WITH(sourceKindNames().parse("sensors[0].source", "lidar"),
                    Contains("sensors[0].source = \"lidar\"") && Contains("\"iio\", \"modbus\""));
  CHECK_THROWS_WITH(load("", "name = \"a\"\nsource = \"lidar\"\n"),
                    Contains("source") && Contains("\"simulated\", \"stdin\""));
}

TEST_CASE("the SIGHUP-reloadable settings are the rows marked live", "[agent][config][reload]") {
  std::vector<std::string> live;
  for (const auto& s : agentSchema().settings()) {
    CHECK(isReloadable(s.key) == s.reloadable);
    if (s.reloadable && !s.key.starts_with("sources.mqtt.")) live.push_back(s.key);
  }
  // The list agent_ops.cc (now config_reload.cc) kept by hand before the tables said it (plus sources.mqtt.*).
  const std::vector<std::string> expected = {"log_level",
                                             "outbox.max_bytes",
                                             "outbox.full_policy",
                                             "outbox.max_age_s",
                                             "uplink.drain.order",
                                             "uplink.drain.rate",
                                             "sources.stdin.on_eof",
                                             "sources.stdin.eof_drain_timeout_s",
                                             "sources.socket.path",
                                             "sources.socket.format",
                                             "sources.socket.max_clients",
                                             "sources.modbus.slaves",
                                             "sources.sysfs.root",
                                             "sensors"};
  CHECK(live == expected);
  CHECK(isReloadable("sources.mqtt.password_file"));  // declared by mqttsec::addSettings
  CHECK(isReloadable("sources.mqtt.verify"));
  CHECK_FALSE(isReloadable("uplink.mqtt.password_file"));
  CHECK_FALSE(isReloadable("device_id"));
}

TEST_CASE("sensor settings of other kinds stay out of the typed spec", "[agent][config]") {
  const AgentInputs in = parseInputs(load(
      "", "name = \"a\"\nsource = \"stdin\"\n[[sensors]]\nname = \"b\"\npoll_interval_ms = 250\n"
          "window.kind = \"tumbling\"\nwindow.size_ms = 1000\noutput = \"both\"\n"));
  REQUIRE(in.sensors.size() == 2);
  const SensorSpec& a = in.sensors[0];
  CHECK(a.source == SourceKind::kStdin);
  CHECK(a.simulated == SimulatedSensorSpec{});
  CHECK(a.window == WindowSpec{});  // window.kind none: no size from the default
  CHECK(a.poll_interval_us == 0);
  const SensorSpec& b = in.sensors[1];
  CHECK(b.source == SourceKind::kSimulated);
  CHECK(b.simulated.rate_hz == 4.0);  // poll_interval_ms instead of rate_hz
  CHECK(b.poll_interval_us == 0);
  CHECK(b.window.kind == WindowKind::kTumbling);
  CHECK(b.window.hop_us == 1000000);
  CHECK(b.output == Output::kBoth);
}
