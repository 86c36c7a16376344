#include "outpost/common/config.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>

#include <catch2/catch.hpp>

namespace config = outpost::config;
using config::ConfigError;
using Catch::Matchers::Contains;

namespace {

// One setting of every kind, in nested tables and in a table array.
config::Schema testSchema() {
  auto sensor = std::make_shared<config::Schema>("sensor");
  sensor->requiredString("name", "Sensor name.")
      .integer("rate_hz", 1, 1, 1000, "Sampling rate in Hz.")
      .oneOf("kind", "temperature", {"temperature", "humidity"}, "What the sensor measures.")
      .real("scale", 1.0, -100.0, 100.0, "Multiplier applied to raw values.")
      .boolean("enabled", true, "Whether the sensor is sampled.");

  config::Schema s("agent");
  s.requiredString("device_id", "This device's id.")
      .boolean("debug", false, "Verbose logging.")
      .integer("batch.max_readings", 500, 1, 100000, "Readings per batch.")
      .real("batch.linger_s", 1.5, 0.01, 60.0, "How long a batch may stay open.")
      .oneOf("outbox.when_full", "drop_oldest", {"drop_oldest", "drop_newest", "block"},
             "Policy when the outbox is full.")
      .string("uplink.mqtt.broker", "tcp://localhost:1883", "MQTT broker URL.")
      .tableArray("sensors", sensor, "Sensors to sample.");
  return s;
}

config::Config parse(const std::string& text) {
  static const config::Schema schema = testSchema();
  return config::parseToml(text, schema, "agent.toml");
}

std::string parseError(const std::string& text) {
  try {
    parse(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("no ConfigError for:\n" << text);
  return "";
}

std::string overrideError(config::Config& c, const config::Schema& schema, const std::string& a) {
  try {
    c.applyOverride(schema, a);
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("no ConfigError for --set " << a);
  return "";
}

constexpr const char* kValid = R"(# a complete file
device_id = "dev-01"
debug = true

[batch]
max_readings = 1000
linger_s = 2          # an integer is accepted for a number

[outbox]
when_full = "block"

[uplink.mqtt]
broker = "ssl://broker.example:8883"

[[sensors]]
name = "t1"
rate_hz = 10

[[sensors]]
name = "h1"
kind = "humidity"
scale = -0.5
enabled = false
)";

}  // namespace

TEST_CASE("defaults give every setting its declared value", "[common][config]") {
  const config::Schema schema = testSchema();
  const config::Config c = config::defaults(schema);
  CHECK(c.getString("device_id").empty());
  CHECK(c.getBool("debug") == false);
  CHECK(c.getInt("batch.max_readings") == 500);
  CHECK(c.getDouble("batch.linger_s") == 1.5);
  CHECK(c.getString("outbox.when_full") == "drop_oldest");
  CHECK(c.getString("uplink.mqtt.broker") == "tcp://localhost:1883");
  CHECK(c.items("sensors").empty());
  CHECK_FALSE(c.isSet("debug"));
  CHECK_FALSE(c.isSet("batch.max_readings"));
}

TEST_CASE("a valid TOML file", "[common][config]") {
  const config::Config c = parse(kValid);
  CHECK(c.getString("device_id") == "dev-01");
  CHECK(c.getBool("debug") == true);
  CHECK(c.getInt("batch.max_readings") == 1000);
  CHECK(c.getDouble("batch.linger_s") == 2.0);
  CHECK(c.getString("outbox.when_full") == "block");
  CHECK(c.getString("uplink.mqtt.broker") == "ssl://broker.example:8883");
  CHECK(c.isSet("debug"));
  CHECK(c.isSet("batch.linger_s"));

  const auto& sensors = c.items("sensors");
  REQUIRE(sensors.size() == 2);
  CHECK(sensors[0].getString("name") == "t1");
  CHECK(sensors[0].getInt("rate_hz") == 10);
  CHECK(sensors[0].getString("kind") == "temperature");  // default
  CHECK(sensors[0].getDouble("scale") == 1.0);
  CHECK(sensors[0].getBool("enabled") == true);
  CHECK_FALSE(sensors[0].isSet("kind"));
  CHECK(sensors[1].getString("name") == "h1");
  CHECK(sensors[1].getInt("rate_hz") == 1);
  CHECK(sensors[1].getString("kind") == "humidity");
  CHECK(sensors[1].getDouble("scale") == -0.5);
  CHECK(sensors[1].getBool("enabled") == false);

  SECTION("dotted keys and inline tables are the same settings") {
    const config::Config d = parse(
        "device_id = \"d\"\nbatch.max_readings = 7\nuplink = { mqtt = { broker = \"tcp://x:1\" } }\n");
    CHECK(d.getInt("batch.max_readings") == 7);
    CHECK(d.getString("uplink.mqtt.broker") == "tcp://x:1");
  }
  SECTION("range bounds are inclusive") {
    const config::Config d = parse(
        "device_id = \"d\"\n[batch]\nmax_readings = 100000\nlinger_s = 0.01\n");
    CHECK(d.getInt("batch.max_readings") == 100000);
    CHECK(d.getDouble("batch.linger_s") == 0.01);
  }
}

TEST_CASE("a table array written as an array of inline tables", "[common][config]") {
  // Regression: each entry was re-serialised as `{ name = "a" }`, which is not a TOML document,
  // so a valid file failed with "agent.toml:1:1: TOML syntax error".
  const config::Config c = parse(
      "device_id = \"d\"\nsensors = [ { name = \"a\" }, { name = \"b\", rate_hz = 1000 } ]\n");
  REQUIRE(c.items("sensors").size() == 2);
  CHECK(c.items("sensors")[0].getString("name") == "a");
  CHECK(c.items("sensors")[0].getInt("rate_hz") == 1);
  CHECK(c.items("sensors")[1].getInt("rate_hz") == 1000);
  // Errors inside such entries still name the entry.
  CHECK_THAT(parseError("device_id = \"d\"\nsensors = [ { name = \"a\" }, { name = \"b\", x = 1 } ]\n"),
             Contains("'sensors[1].x'"));
  CHECK_THAT(parseError("device_id = \"d\"\nsensors = [ { name = \"a\", rate_hz = 0 } ]\n"),
             Contains("sensors[0].rate_hz = 0"));
}

TEST_CASE("a table array must hold tables only", "[common][config]") {
  CHECK_THAT(parseError("device_id = \"d\"\nsensors = [1, 2]\n"), Contains("[[sensors]]"));
  CHECK_THAT(parseError("device_id = \"d\"\nsensors = [{ name = \"a\" }, 2]\n"),
             Contains("[[sensors]]"));
}

TEST_CASE("an empty sensors array is an empty table array", "[common][config]") {
  // Regression: `sensors = []` was rejected as "must be an array of tables" because toml++
  // does not call an empty array homogeneous.
  const config::Config c = parse("device_id = \"d\"\nsensors = []\n");
  CHECK(c.items("sensors").empty());
}

TEST_CASE("unknown keys are rejected with their full name", "[common][config]") {
  SECTION("at the top level") {
    const std::string msg = parseError("device_id = \"d\"\ncolour = \"blue\"\n");
    CHECK_THAT(msg, Contains("agent.toml"));
    CHECK_THAT(msg, Contains("'colour'"));
    CHECK_THAT(msg, Contains("top level"));
    CHECK_THAT(msg, Contains("device_id"));  // lists the known keys
  }
  SECTION("an unknown table") {
    const std::string msg = parseError("device_id = \"d\"\n[nosuch]\nx = 1\n");
    CHECK_THAT(msg, Contains("'nosuch'"));
  }
  SECTION("inside a table") {
    const std::string msg = parseError("device_id = \"d\"\n[batch]\nmax_reading = 5\n");
    CHECK_THAT(msg, Contains("'batch.max_reading'"));
    CHECK_THAT(msg, Contains("max_readings"));
    CHECK_THAT(msg, Contains("linger_s"));
  }
  SECTION("inside a nested table") {
    const std::string msg =
        parseError("device_id = \"d\"\n[uplink.mqtt]\nbroker = \"x\"\nport = 1883\n");
    CHECK_THAT(msg, Contains("'uplink.mqtt.port'"));
  }
  SECTION("inside the second [[sensors]] entry") {
    const std::string msg = parseError(
        "device_id = \"d\"\n[[sensors]]\nname = \"a\"\n[[sensors]]\nname = \"b\"\nsample_hz = 5\n");
    CHECK_THAT(msg, Contains("'sensors[1].sample_hz'"));
    CHECK_THAT(msg, Contains("rate_hz"));
    // Regression: the entry's own level was called "the top level".
    CHECK_THAT(msg, !Contains("top level"));
  }
}

// Regression: `batch = 5` was reported as "unknown key 'batch' ...; known keys there: batch, ...".
TEST_CASE("a known table given as a value", "[common][config]") {
  const std::string msg = parseError("device_id = \"d\"\nbatch = 5\n");
  CHECK_THAT(msg, Contains("batch = 5 is not a table"));
  CHECK_THAT(msg, Contains("[batch]"));
  CHECK_THAT(msg, Contains("max_readings, linger_s"));
  CHECK_THAT(msg, !Contains("unknown key"));
  CHECK_THAT(parseError("device_id = \"d\"\nuplink = [1]\n"), Contains("uplink is an array"));
  CHECK_THAT(parseError("device_id = \"d\"\n[uplink]\nmqtt = \"x\"\n"),
             Contains("uplink.mqtt = \"x\" is not a table") && Contains("[uplink.mqtt]"));
}

TEST_CASE("wrong types name the key, the value and what is allowed", "[common][config]") {
  SECTION("bool") {
    const std::string msg = parseError("device_id = \"d\"\ndebug = \"yes\"\n");
    CHECK_THAT(msg, Contains("debug"));
    CHECK_THAT(msg, Contains("\"yes\""));
    CHECK_THAT(msg, Contains("wrong type"));
    CHECK_THAT(msg, Contains("true or false"));
  }
  SECTION("integer given a float") {
    const std::string msg = parseError("device_id = \"d\"\n[batch]\nmax_readings = 1.5\n");
    CHECK_THAT(msg, Contains("batch.max_readings"));
    CHECK_THAT(msg, Contains("1.5"));
    CHECK_THAT(msg, Contains("an integer"));
  }
  SECTION("number given a string") {
    const std::string msg = parseError("device_id = \"d\"\n[batch]\nlinger_s = \"1s\"\n");
    CHECK_THAT(msg, Contains("batch.linger_s"));
    CHECK_THAT(msg, Contains("a number"));
  }
  SECTION("string given an integer") {
    const std::string msg = parseError("device_id = 5\n");
    CHECK_THAT(msg, Contains("device_id = 5"));
    CHECK_THAT(msg, Contains("a string"));
  }
  SECTION("string given a date") {
    const std::string msg = parseError("device_id = 2024-01-01\n");
    CHECK_THAT(msg, Contains("device_id"));
    CHECK_THAT(msg, Contains("a date"));
  }
  SECTION("scalar given a table or an array") {
    CHECK_THAT(parseError("device_id = \"d\"\n[debug]\nx = 1\n"), Contains("debug is a table"));
    CHECK_THAT(parseError("device_id = \"d\"\ndebug = [true]\n"), Contains("debug is an array"));
  }
  SECTION("inside a [[sensors]] entry") {
    const std::string msg =
        parseError("device_id = \"d\"\n[[sensors]]\nname = \"a\"\nrate_hz = \"fast\"\n");
    CHECK_THAT(msg, Contains("sensors[0].rate_hz"));
    CHECK_THAT(msg, Contains("\"fast\""));
  }
  SECTION("table array given a scalar") {
    const std::string msg = parseError("device_id = \"d\"\nsensors = 5\n");
    CHECK_THAT(msg, Contains("sensors"));
    CHECK_THAT(msg, Contains("[[sensors]]"));
  }
}

TEST_CASE("out-of-range values name the key, the value and the range", "[common][config]") {
  SECTION("integer below the minimum") {
    const std::string msg = parseError("device_id = \"d\"\n[batch]\nmax_readings = 0\n");
    CHECK_THAT(msg, Contains("batch.max_readings = 0"));
    CHECK_THAT(msg, Contains("out of range"));
    CHECK_THAT(msg, Contains("from 1 to 100000"));
  }
  SECTION("integer above the maximum, in a table array") {
    const std::string msg =
        parseError("device_id = \"d\"\n[[sensors]]\nname = \"a\"\nrate_hz = 1001\n");
    CHECK_THAT(msg, Contains("sensors[0].rate_hz = 1001"));
    CHECK_THAT(msg, Contains("from 1 to 1000"));
  }
  SECTION("number above the maximum") {
    const std::string msg = parseError("device_id = \"d\"\n[batch]\nlinger_s = 60.5\n");
    CHECK_THAT(msg, Contains("batch.linger_s = 60.5"));
    CHECK_THAT(msg, Contains("from 0.01 to 60"));
  }
  SECTION("non-finite numbers") {
    CHECK_THAT(parseError("device_id = \"d\"\n[batch]\nlinger_s = nan\n"), Contains("not finite"));
    CHECK_THAT(parseError("device_id = \"d\"\n[batch]\nlinger_s = inf\n"), Contains("not finite"));
  }
}

TEST_CASE("oneOf names the allowed values", "[common][config]") {
  const std::string msg = parseError("device_id = \"d\"\n[outbox]\nwhen_full = \"explode\"\n");
  CHECK_THAT(msg, Contains("outbox.when_full = \"explode\""));
  CHECK_THAT(msg, Contains("\"drop_oldest\""));
  CHECK_THAT(msg, Contains("\"drop_newest\""));
  CHECK_THAT(msg, Contains("\"block\""));
  // Values are case-sensitive.
  CHECK_THAT(parseError("device_id = \"d\"\n[outbox]\nwhen_full = \"BLOCK\"\n"),
             Contains("not allowed"));
}

TEST_CASE("missing required keys", "[common][config]") {
  SECTION("at the top level") {
    const std::string msg = parseError("debug = true\n");
    CHECK_THAT(msg, Contains("device_id is required"));
    CHECK_THAT(msg, Contains("This device's id."));
  }
  SECTION("set but empty") {
    const std::string msg = parseError("device_id = \"\"\n");
    CHECK_THAT(msg, Contains("device_id"));
    CHECK_THAT(msg, Contains("must not be empty"));
  }
  SECTION("inside a [[sensors]] entry") {
    const std::string msg =
        parseError("device_id = \"d\"\n[[sensors]]\nname = \"a\"\n[[sensors]]\nrate_hz = 2\n");
    CHECK_THAT(msg, Contains("sensors[1].name is required"));
  }
}

TEST_CASE("TOML syntax errors give the line number", "[common][config]") {
  const std::string msg = parseError("device_id = \"d\"\n\n[batch\nmax_readings = 5\n");
  CHECK_THAT(msg, Contains("agent.toml:3:"));
  CHECK_THAT(msg, Contains("TOML syntax error"));
  CHECK_THAT(parseError("device_id = \"d\"\ndebug = true\ndebug = false\n"), Contains("agent.toml:3:"));
  CHECK_THAT(parseError("device_id = \"unterminated\n"), Contains("agent.toml:1:"));
}

TEST_CASE("loadFile", "[common][config]") {
  const config::Schema schema = testSchema();
  namespace fs = std::filesystem;
  const fs::path path =
      fs::temp_directory_path() / ("outpost_config_test_" + std::to_string(::getpid()) + ".toml");
  {
    std::ofstream out(path);
    out << kValid;
  }
  const config::Config c = config::loadFile(path.string(), schema);
  CHECK(c.getString("device_id") == "dev-01");
  CHECK(c.items("sensors").size() == 2);
  fs::remove(path);
  try {
    config::loadFile(path.string(), schema);
    FAIL("no error for a missing file");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Contains(path.string()));
    CHECK_THAT(e.what(), Contains("cannot open"));
  }
}

TEST_CASE("applyOverride types and checks command-line values", "[common][config]") {
  const config::Schema schema = testSchema();
  config::Config c = config::defaults(schema);

  SECTION("bool") {
    c.applyOverride(schema, "debug=true");
    CHECK(c.getBool("debug"));
    CHECK(c.isSet("debug"));
    c.applyOverride(schema, "debug=false");
    CHECK_FALSE(c.getBool("debug"));
    for (const char* bad : {"debug=yes", "debug=1", "debug=", "debug=True"}) {
      INFO(bad);
      CHECK_THAT(overrideError(c, schema, bad), Contains("debug") && Contains("true or false"));
    }
  }
  SECTION("integer") {
    c.applyOverride(schema, "batch.max_readings=42");
    CHECK(c.getInt("batch.max_readings") == 42);
    const std::string range = overrideError(c, schema, "batch.max_readings=0");
    CHECK_THAT(range, Contains("batch.max_readings = 0"));
    CHECK_THAT(range, Contains("from 1 to 100000"));
    for (const char* bad : {"batch.max_readings=abc", "batch.max_readings=42x",
                            "batch.max_readings=4.2", "batch.max_readings=",
                            "batch.max_readings=99999999999999999999"}) {
      INFO(bad);
      CHECK_THAT(overrideError(c, schema, bad), Contains("batch.max_readings") &&
                                                    Contains("wrong type"));
    }
    CHECK(c.getInt("batch.max_readings") == 42);  // failed overrides change nothing
  }
  SECTION("number") {
    c.applyOverride(schema, "batch.linger_s=0.25");
    CHECK(c.getDouble("batch.linger_s") == 0.25);
    c.applyOverride(schema, "batch.linger_s=3");
    CHECK(c.getDouble("batch.linger_s") == 3.0);
    CHECK_THAT(overrideError(c, schema, "batch.linger_s=61"), Contains("from 0.01 to 60"));
    CHECK_THAT(overrideError(c, schema, "batch.linger_s=fast"), Contains("wrong type"));
    CHECK_THAT(overrideError(c, schema, "batch.linger_s="), Contains("wrong type"));
    CHECK_THAT(overrideError(c, schema, "batch.linger_s=nan"), Contains("not finite"));
    CHECK_THAT(overrideError(c, schema, "batch.linger_s=inf"), Contains("not finite"));
  }
  SECTION("oneOf") {
    c.applyOverride(schema, "outbox.when_full=drop_newest");
    CHECK(c.getString("outbox.when_full") == "drop_newest");
    const std::string msg = overrideError(c, schema, "outbox.when_full=explode");
    CHECK_THAT(msg, Contains("\"explode\""));
    CHECK_THAT(msg, Contains("\"block\""));
  }
  SECTION("string, including '=' in the value") {
    c.applyOverride(schema, "uplink.mqtt.broker=tcp://h:1883/?a=b");
    CHECK(c.getString("uplink.mqtt.broker") == "tcp://h:1883/?a=b");
    c.applyOverride(schema, "uplink.mqtt.broker=");
    CHECK(c.getString("uplink.mqtt.broker").empty());
  }
  SECTION("required string") {
    c.applyOverride(schema, "device_id=dev-09");
    CHECK(c.getString("device_id") == "dev-09");
    CHECK_THAT(overrideError(c, schema, "device_id="), Contains("must not be empty"));
  }
  SECTION("unknown keys and malformed assignments") {
    CHECK_THAT(overrideError(c, schema, "colour=blue"), Contains("unknown key 'colour'"));
    CHECK_THAT(overrideError(c, schema, "batch=1"), Contains("unknown key 'batch'"));
    CHECK_THAT(overrideError(c, schema, "sensors=x"), Contains("unknown key 'sensors'"));
    CHECK_THAT(overrideError(c, schema, "debug"), Contains("expected key=value"));
    CHECK_THAT(overrideError(c, schema, "=true"), Contains("expected key=value"));
  }
  SECTION("an override wins over the file") {
    config::Config f = parse(kValid);
    f.applyOverride(schema, "batch.max_readings=3");
    CHECK(f.getInt("batch.max_readings") == 3);
    CHECK(f.getString("outbox.when_full") == "block");
  }
}

TEST_CASE("renderMarkdown documents every key", "[common][config]") {
  const config::Schema schema = testSchema();
  const std::string md = config::renderMarkdown(schema, "outpost-agent", "Settings of the agent.");
  CHECK_THAT(md, Contains("## outpost-agent"));
  CHECK_THAT(md, Contains("Settings of the agent."));
  for (const auto& s : schema.settings()) {
    INFO(s.key);
    CHECK_THAT(md, Contains("`" + s.key + "`"));
    CHECK_THAT(md, Contains(s.description));
    if (s.item_schema) {
      CHECK_THAT(md, Contains("[[" + s.key + "]]"));
      for (const auto& item : s.item_schema->settings()) {
        INFO(item.key);
        CHECK_THAT(md, Contains("`" + s.key + "[]." + item.key + "`"));
        CHECK_THAT(md, Contains(item.description));
      }
    }
  }
  CHECK_THAT(md, Contains("`500`"));
  CHECK_THAT(md, Contains("(required)"));
  CHECK_THAT(md, Contains("from 1 to 100000"));
  CHECK_THAT(md, Contains("\"drop_oldest\", \"drop_newest\", \"block\""));
}

TEST_CASE("schema declarations", "[common][config]") {
  config::Schema s("x");
  s.integer("a", 1, 0, 2, "A.");
  CHECK_THROWS_AS(s.boolean("a", true, "again"), std::logic_error);
  CHECK(s.find("a") != nullptr);
  CHECK(s.find("b") == nullptr);
  s.boolean("t.u.v", true, "Nested.");
  CHECK(s.isTablePrefix("t"));
  CHECK(s.isTablePrefix("t.u"));
  CHECK_FALSE(s.isTablePrefix("t.u.v"));
  CHECK_FALSE(s.isTablePrefix("a"));
  const config::Config c = config::defaults(s);
  CHECK_THROWS_AS(c.getInt("nope"), std::logic_error);
}
