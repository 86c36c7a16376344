#include "outpost/agent/line_parser.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <string>

using namespace outpost::agent;

namespace {
constexpr int64_t k2024 = 1714564800LL * 1000000;  // 2024-05-01T12:00:00Z in µs

int64_t ts(std::string_view text) {
  int64_t out = -1;
  if (!parseTimestampUs(text, out)) return -1;
  return out;
}
}  // namespace

TEST_CASE("Timestamps: epoch units by magnitude and ISO-8601", "[agent][source][parse]") {
  SECTION("epoch seconds, milliseconds, microseconds, nanoseconds") {
    CHECK(ts("1714564800") == k2024);
    CHECK(ts("1714564800123") == k2024 + 123000);
    CHECK(ts("1714564800123456") == k2024 + 123456);
    CHECK(ts("1714564800123456789") == k2024 + 123456);
  }
  SECTION("fractional epochs keep their precision down to the microsecond") {
    CHECK(ts("1714564800.5") == k2024 + 500000);
    CHECK(ts("1714564800.000001") == k2024 + 1);
    CHECK(ts("1714564800123.25") == k2024 + 123250);
  }
  SECTION("ISO-8601 forms") {
    CHECK(ts("2024-05-01T12:00:00Z") == k2024);
    CHECK(ts("2024-05-01 12:00:00") == k2024);
    CHECK(ts("2024-05-01T12:00:00.25Z") == k2024 + 250000);
    CHECK(ts("2024-05-01T12:00:00.123456789Z") == k2024 + 123456);
    CHECK(ts("2024-05-01T14:00:00+02:00") == k2024);
    CHECK(ts("2024-05-01T06:30:00-0530") == k2024);
    CHECK(ts("2024-05-01T12:00Z") == k2024);
    CHECK(ts("2024-05-01") == k2024 - 12LL * 3600 * 1000000);
    CHECK(ts("2024-02-29T00:00:00Z") > 0);  // leap day
  }
  SECTION("malformed timestamps are rejected") {
    for (const char* bad : {"", "abc", "-5", "1e9", "0x10", "12345678901234567890", "1714564800.",
                            "2024-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2024-05-01T25:00:00Z",
                            "2024-05-01T12:00:00+2", "2024-05-01T12:00:00Zjunk",
                            "2024-05-01X12:00:00", "2024-5-1T12:00:00Z", "1714564800 5"}) {
      INFO(bad);
      CHECK(ts(bad) == -1);
    }
  }
  SECTION("plausibility: not before 2000, at most a day ahead") {
    CHECK(timestampPlausible(k2024, k2024));
    CHECK_FALSE(timestampPlausible(ts("1999-12-31T23:59:59Z"), k2024));
    CHECK(timestampPlausible(k2024 + 23LL * 3600 * 1000000, k2024));
    CHECK_FALSE(timestampPlausible(k2024 + 25LL * 3600 * 1000000, k2024));
  }
}

TEST_CASE("Line protocol: sensor value [timestamp]", "[agent][source][parse]") {
  ParsedLine p;
  SECTION("value only, value and timestamp, blanks and CR") {
    REQUIRE(parseLine(LineFormat::kLine, "temp 21.5", p) == LineError::kNone);
    CHECK(p.sensor == "temp");
    CHECK(p.value == 21.5);
    CHECK_FALSE(p.has_ts);
    REQUIRE(parseLine(LineFormat::kLine, "  temp\t-3e2   1714564800\r", p) == LineError::kNone);
    CHECK(p.value == -300);
    CHECK(p.has_ts);
    CHECK(p.ts_us == k2024);
    REQUIRE(parseLine(LineFormat::kLine, "temp +7 2024-05-01T12:00:00Z", p) == LineError::kNone);
    CHECK(p.value == 7);
  }
  SECTION("NaN and Inf parse (the range filter decides)") {
    REQUIRE(parseLine(LineFormat::kLine, "temp nan", p) == LineError::kNone);
    CHECK(std::isnan(p.value));
    REQUIRE(parseLine(LineFormat::kLine, "temp -inf", p) == LineError::kNone);
    CHECK(std::isinf(p.value));
  }
  SECTION("blank and comment lines are skipped, not errors") {
    CHECK(parseLine(LineFormat::kLine, "", p) == LineError::kEmpty);
    CHECK(parseLine(LineFormat::kLine, "   \r", p) == LineError::kEmpty);
    CHECK(parseLine(LineFormat::kLine, "# comment", p) == LineError::kEmpty);
  }
  SECTION("malformed lines name their reason") {
    CHECK(parseLine(LineFormat::kLine, "temp", p) == LineError::kSyntax);
    CHECK(parseLine(LineFormat::kLine, "temp 1 2 3", p) == LineError::kSyntax);
    CHECK(parseLine(LineFormat::kLine, "temp abc", p) == LineError::kBadValue);
    CHECK(parseLine(LineFormat::kLine, "temp 1.2.3", p) == LineError::kBadValue);
    CHECK(parseLine(LineFormat::kLine, "temp 0x1f", p) == LineError::kBadValue);
    CHECK(parseLine(LineFormat::kLine, "temp 1e999", p) == LineError::kBadValue);
    CHECK(parseLine(LineFormat::kLine, "temp 1 yesterday", p) == LineError::kBadTimestamp);
  }
  SECTION("binary junk never crashes") {
    std::string junk;
    for (int i = 0; i < 256; ++i) junk += static_cast<char>(i);
    (void)parseLine(LineFormat::kLine, junk, p);
    (void)parseLine(LineFormat::kCsv, junk, p);
    (void)parseLine(LineFormat::kJson, junk, p);
    SUCCEED();
  }
}

TEST_CASE("CSV lines: sensor,value[,timestamp]", "[agent][source][parse]") {
  ParsedLine p;
  REQUIRE(parseLine(LineFormat::kCsv, "temp,21.5", p) == LineError::kNone);
  CHECK(p.sensor == "temp");
  CHECK(p.value == 21.5);
  REQUIRE(parseLine(LineFormat::kCsv, "\"temp\", 22 ,1714564800000", p) == LineError::kNone);
  CHECK(p.sensor == "temp");
  CHECK(p.value == 22);
  CHECK(p.ts_us == k2024);
  REQUIRE(parseLine(LineFormat::kCsv, "temp,22,", p) == LineError::kNone);  // empty timestamp
  CHECK_FALSE(p.has_ts);
  CHECK(parseLine(LineFormat::kCsv, "sensor,value,timestamp", p) == LineError::kHeader);
  CHECK(parseLine(LineFormat::kCsv, "Name,Value", p) == LineError::kHeader);
  CHECK(parseLine(LineFormat::kCsv, "temp", p) == LineError::kSyntax);
  CHECK(parseLine(LineFormat::kCsv, "temp,1,2,3", p) == LineError::kSyntax);
  CHECK(parseLine(LineFormat::kCsv, ",1", p) == LineError::kSyntax);
  CHECK(parseLine(LineFormat::kCsv, "\"te\"\"mp\",1", p) == LineError::kSyntax);
  CHECK(parseLine(LineFormat::kCsv, "\"temp,1", p) == LineError::kSyntax);
  CHECK(parseLine(LineFormat::kCsv, "temp,x", p) == LineError::kBadValue);
  CHECK(parseLine(LineFormat::kCsv, "temp,1,x", p) == LineError::kBadTimestamp);
}

TEST_CASE("JSON lines", "[agent][source][parse]") {
  ParsedLine p;
  SECTION("members in any order, extra members ignored, ts as number or string") {
    REQUIRE(parseLine(LineFormat::kJson,
                      R"({"value": 21.5, "extra": {"a": [1, 2, {"b": null}]}, "sensor": "t"})",
                      p) == LineError::kNone);
    CHECK(p.sensor == "t");
    CHECK(p.value == 21.5);
    CHECK_FALSE(p.has_ts);
    REQUIRE(parseLine(LineFormat::kJson, R"({"name":"t","value":"3.5","ts":1714564800000})", p) ==
            LineError::kNone);
    CHECK(p.value == 3.5);
    CHECK(p.ts_us == k2024);
    REQUIRE(parseLine(LineFormat::kJson,
                      R"({"sensor":"t","value":1,"timestamp":"2024-05-01T12:00:00Z"})",
                      p) == LineError::kNone);
    CHECK(p.ts_us == k2024);
    REQUIRE(parseLine(LineFormat::kJson, R"({"sensor":"t","value":1,"time":null})", p) ==
            LineError::kNone);
    CHECK_FALSE(p.has_ts);
  }
  SECTION("malformed JSON and bad members") {
    CHECK(parseLine(LineFormat::kJson, R"({"sensor":"t","value":1)", p) == LineError::kSyntax);
    CHECK(parseLine(LineFormat::kJson, R"({"sensor":"t","value":1}x)", p) == LineError::kSyntax);
    CHECK(parseLine(LineFormat::kJson, R"({"sensor":"t" "value":1})", p) == LineError::kSyntax);
    CHECK(parseLine(LineFormat::kJson, R"([1,2])", p) == LineError::kSyntax);
    CHECK(parseLine(LineFormat::kJson, R"({"value":1})", p) == LineError::kSyntax);
    CHECK(parseLine(LineFormat::kJson, R"({"sensor":5,"value":1})", p) ==
          LineError::kUnknownSensor);
    CHECK(parseLine(LineFormat::kJson, R"({"sensor":"t"})", p) == LineError::kBadValue);
    CHECK(parseLine(LineFormat::kJson, R"({"sensor":"t","value":true})", p) ==
          LineError::kBadValue);
    CHECK(parseLine(LineFormat::kJson, R"({"sensor":"t","value":01})", p) == LineError::kSyntax);
    CHECK(parseLine(LineFormat::kJson, R"({"sensor":"t","value":1,"ts":"soon"})", p) ==
          LineError::kBadTimestamp);
    CHECK(parseLine(LineFormat::kJson, R"({"sensor":"t","value":1,"ts":-5})", p) ==
          LineError::kBadTimestamp);
  }
  SECTION("deep nesting is refused, not recursed into without bound") {
    std::string deep = R"({"sensor":"t","value":1,"x":)";
    for (int i = 0; i < 1000; ++i) deep += "[";
    for (int i = 0; i < 1000; ++i) deep += "]";
    deep += "}";
    CHECK(parseLine(LineFormat::kJson, deep, p) == LineError::kSyntax);
  }
}

TEST_CASE("jsonFind: dotted paths, escapes, validity", "[agent][source][parse]") {
  JsonValue v;
  REQUIRE(jsonFind(R"({"env":{"temp":21.5,"hum":"40"},"ok":true})", "env.temp", v));
  CHECK(v.kind == JsonValue::Kind::kNumber);
  CHECK(v.raw == "21.5");
  REQUIRE(jsonFind(R"({"env":{"temp":21.5,"hum":"40"}})", "env.hum", v));
  double d = 0;
  CHECK(jsonNumber(v, d));
  CHECK(d == 40);
  CHECK_FALSE(jsonFind(R"({"env":{"temp":21.5}})", "env.pressure", v));
  CHECK_FALSE(jsonFind(R"({"env":5})", "env.temp", v));
  CHECK_FALSE(jsonFind(R"({"env":{"temp":21.5}} trailing)", "env.temp", v));
  CHECK(jsonFind(R"({"s":"a\"b\u00e9","x":1})", "x", v));
  CHECK_FALSE(jsonFind(R"({"s":"bad\q","x":1})", "x", v));
  CHECK(jsonIsObject(R"( {"a": [1, -2.5e3, "x", null, false, {}]} )"));
  CHECK_FALSE(jsonIsObject(R"({"a": [1,]})"));
  CHECK_FALSE(jsonIsObject("42"));
}

TEST_CASE("MQTT topic filters", "[agent][source][parse]") {
  CHECK(mqttTopicMatches("a/b", "a/b"));
  CHECK_FALSE(mqttTopicMatches("a/b", "a/c"));
  CHECK(mqttTopicMatches("a/+/c", "a/x/c"));
  CHECK_FALSE(mqttTopicMatches("a/+/c", "a/x/y/c"));
  CHECK(mqttTopicMatches("a/#", "a/x/y"));
  CHECK(mqttTopicMatches("a/#", "a"));
  CHECK(mqttTopicMatches("#", "anything/at/all"));
  CHECK_FALSE(mqttTopicMatches("#", "$SYS/broker"));
  CHECK(mqttTopicMatches("+", "a"));
  CHECK_FALSE(mqttTopicMatches("+", "a/b"));
  CHECK_FALSE(mqttTopicMatches("a/b", "a/b/c"));
  CHECK_FALSE(mqttTopicMatches("a/b/c", "a/b"));
}
