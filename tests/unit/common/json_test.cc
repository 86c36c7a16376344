#include "outpost/common/json.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include <catch2/catch.hpp>

#include "outpost/common/http_server.h"

using namespace outpost;

namespace {

std::string str(std::string_view s) { return json::quote(s); }

std::string num(double v) {
  std::string out;
  json::appendNumber(out, v);
  return out;
}

std::string errorOf(std::string_view text, const json::ParseLimits& limits = {}) {
  auto v = json::parse(text, limits);
  REQUIRE_FALSE(v.has_value());
  return v.error().toString();
}

}  // namespace

TEST_CASE("JSON writer: strings", "[common][json]") {
  SECTION("\"é\" stays é (valid UTF-8 is copied, not escaped byte by byte)") {
    CHECK(str("\xC3\xA9") == "\"\xC3\xA9\"");
    CHECK(str("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80") ==
          "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
    // The HTTP bodies both programs serve use the same writer (it used to give "\u00c3\u00a9",
    // i.e. "Ã©").
    CHECK(healthBody(false, "caf\xC3\xA9") ==
          "{\"status\":\"unhealthy\",\"detail\":\"caf\xC3\xA9\"}\n");
    CHECK(readyBody({"kafka: d\xC3\xA9j\xC3\xA0 vu", "x"}) ==
          "{\"ready\":false,\"reasons\":[\"kafka: d\xC3\xA9j\xC3\xA0 vu\",\"x\"]}\n");
    CHECK(readyBody({}) == "{\"ready\":true,\"reasons\":[]}\n");
  }
  SECTION("quote, backslash, short escapes, other control characters and DEL") {
    CHECK(str("") == R"("")");
    CHECK(str("a\"b\\c/") == R"("a\"b\\c/")");
    CHECK(str("\n\r\t") == R"("\n\r\t")");
    CHECK(str("\b\f\x01\x1f\x7f") == R"("\u0008\u000c\u0001\u001f\u007f")");
    CHECK(str(std::string_view("a\0b", 3)) == R"("a\u0000b")");
  }
  SECTION("invalid UTF-8: each byte of a bad sequence becomes \\ufffd") {
    CHECK(str("\xC3") == R"("\ufffd")");              // truncated at the end
    CHECK(str("\xC0\xAF") == R"("\ufffd\ufffd")");    // overlong
    CHECK(str("\xED\xA0\x80") == R"("\ufffd\ufffd\ufffd")");  // a surrogate
    CHECK(str("\xF4\x90\x80\x80x") == R"("\ufffd\ufffd\ufffd\ufffdx")");  // above U+10FFFF
    CHECK(str("\xE2\x82\"") == R"("\ufffd\ufffd\"")");  // a quote is never swallowed
    CHECK(str("\xC3\xA9\xC3") == "\"\xC3\xA9\\ufffd\"");
  }
  SECTION("whatever the bytes, the output parses back; what was read writes the same again") {
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
      std::string bytes;
      const int n = static_cast<int>(rng() % 64);
      const unsigned mask = round % 2 ? 0x7F : 0xFF;  // every other round ASCII only
      for (int i = 0; i < n; ++i) bytes += static_cast<char>(rng() & mask);
      const std::string quoted = str(bytes);
      auto v = json::parse(quoted);
      REQUIRE(v.has_value());
      REQUIRE(v->asString());
      const std::string& read = *v->asString();  // bad bytes are U+FFFD now: valid UTF-8
      CHECK(*json::parse(str(read))->asString() == read);
      bool ascii = true;
      for (unsigned char c : bytes) ascii = ascii && c < 0x80;
      if (ascii) CHECK(read == bytes);  // ASCII, control characters included, comes back exact
    }
    const std::string utf8 = "t\xC2\xB0 \xE6\xB8\xA9\xE5\xBA\xA6 \xF4\x8F\xBF\xBF \"q\" \\ \x01";
    CHECK(*json::parse(str(utf8))->asString() == utf8);
  }
}

TEST_CASE("JSON writer: numbers", "[common][json]") {
  CHECK(num(0.1) == "0.1");
  CHECK(num(20.0) == "20");
  CHECK(num(-0.0) == "-0");
  CHECK(num(1e300) == "1e+300");
  CHECK(num(5e-324) == "5e-324");
  CHECK(num(std::nan("")) == "null");
  CHECK(num(std::numeric_limits<double>::infinity()) == "null");
  CHECK(num(-std::numeric_limits<double>::infinity()) == "null");
  for (double v : {0.1 + 0.2, 1.0 / 3.0, 123456.789e-20, -9.87654321e200}) {
    CHECK(*json::parse(num(v))->asDouble() == v);  // shortest form, same double back
  }
  std::string out;
  json::appendInt(out, std::numeric_limits<int64_t>::min());
  out += ' ';
  json::appendUint(out, std::numeric_limits<uint64_t>::max());
  CHECK(out == "-9223372036854775808 18446744073709551615");
}

TEST_CASE("JSON writer: structure", "[common][json]") {
  std::string out;
  json::Writer w(out);
  w.beginObject()
      .member("s", "x")
      .member("i", int64_t{-3})
      .member("u", uint64_t{7})
      .member("d", 1.5)
      .member("b", true)
      .key("n").null()
      .key("epoch").uintString(std::numeric_limits<uint64_t>::max())
      .key("empty_a").beginArray().endArray()
      .key("empty_o").beginObject().endObject()
      .key("a").beginArray().integer(1).beginArray().number(2).endArray().beginObject()
      .endObject().string("z").endArray()
      .key("raw").raw(R"({"k":[1]})")
      .key("o").beginObject().rawMembers(R"("p":1,"q":2)").member("r", 3).endObject()
      .endObject();
  CHECK(out ==
        R"({"s":"x","i":-3,"u":7,"d":1.5,"b":true,"n":null,"epoch":"18446744073709551615",)"
        R"("empty_a":[],"empty_o":{},"a":[1,[2],{},"z"],"raw":{"k":[1]},)"
        R"("o":{"p":1,"q":2,"r":3}})");
  REQUIRE(json::parse(out).has_value());

  SECTION("names that are not literals are escaped like strings; writing appends") {
    std::string o2 = "prefix ";
    const std::string name = "a\"b";  // a literal like this one would not compile (json::Name)
    json::Writer(o2).beginObject().key(name).string("\xC3\xA9").endObject();
    CHECK(o2 == "prefix {\"a\\\"b\":\"\xC3\xA9\"}");
  }
}

TEST_CASE("JSON parser: valid documents", "[common][json]") {
  auto v = json::parse(
      " {\"a\": [1, -2.5e3, true, false, null, \"x\\n\\u00e9\\ud83d\\ude00\\/\"], "
      "\"n\": 9007199254740993, \"o\": {}, \"e\": [], \"a\": \"last\"}\r\n\t");
  REQUIRE(v.has_value());
  REQUIRE(v->isObject());
  CHECK(v->keys().size() == 5);
  CHECK(*v->find("a")->asString() == "last");  // a repeated name: the last one counts
  const json::Value& arr = v->items()[0];
  REQUIRE(arr.isArray());
  REQUIRE(arr.items().size() == 6);
  CHECK(*arr.items()[0].asInt() == 1);
  CHECK(*arr.items()[1].asDouble() == -2500.0);
  CHECK_FALSE(arr.items()[1].asInt());  // written with a fraction/exponent: not an integer
  CHECK(*arr.items()[2].asBool());
  CHECK_FALSE(*arr.items()[3].asBool());
  CHECK(arr.items()[4].isNull());
  CHECK(*arr.items()[5].asString() == "x\n\xC3\xA9\xF0\x9F\x98\x80/");
  CHECK(*v->find("n")->asInt() == 9007199254740993);  // exact beyond 2^53
  CHECK(v->find("o")->isObject());
  CHECK(v->find("e")->items().empty());
  CHECK(v->find("missing") == nullptr);
  CHECK(arr.find("a") == nullptr);  // not an object
  CHECK_FALSE(v->find("n")->asString());

  CHECK(json::parse("0")->asInt() == 0);
  CHECK(json::parse("-0")->asDouble() == 0.0);
  CHECK(*json::parse("\"\"")->asString() == "");
  CHECK_FALSE(json::parse("99999999999999999999")->asInt());  // beyond int64: a double only
  CHECK(*json::parse("99999999999999999999")->asDouble() == 1e20);
}

TEST_CASE("JSON parser: malformed input is refused with the offset and the reason",
          "[common][json]") {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", "at byte 0: unexpected end, expected a value"},
      {"   ", "at byte 3: unexpected end"},
      {"{", "at byte 1: expected a member name"},
      {"{\"a\" 1}", "at byte 5: expected ':'"},
      {"{\"a\":1,}", "at byte 7: expected a member name"},
      {"{\"a\":1 \"b\":2}", "at byte 7: expected ',' or '}'"},
      {"[1,]", "at byte 3: unexpected character, expected a value"},
      {"[1 2]", "at byte 3: expected ',' or ']'"},
      {"{\"a\":1} x", "at byte 8: unexpected data after the value"},
      {"tru", "at byte 0: unexpected character"},
      {"nul", "at byte 0"},
      {"01", "at byte 1: unexpected data after the value"},
      {"1.", "a number needs digits after '.'"},
      {"-", "a number needs digits"},
      {"1e", "digits in its exponent"},
      {"+1", "unexpected character"},
      {".5", "unexpected character"},
      {"1e999", "number out of the range of a double"},
      {"\"abc", "unterminated string"},
      {"\"a\x01\"", "control character in a string"},
      {"\"a\\x\"", "at byte 3: unknown escape"},
      {"\"\\u12xy\"", "at byte 5: \\u escape needs 4 hex digits"},
      {"\"\\u12", "truncated \\u escape"},
      {"\"\\ud800\"", "high surrogate not followed by a \\u low surrogate"},
      {"\"\\ud800\\u0041\"", "high surrogate not followed by a \\u low surrogate"},
      {"\"\\udc00\"", "lone low surrogate"},
      {"\"\xC3\"", "invalid UTF-8 in a string"},
      {"\"\xC0\xAF\"", "invalid UTF-8"},
      {"\"\xED\xA0\x80\"", "invalid UTF-8"},
      {"[NaN]", "unexpected character"},
      {"{'a':1}", "expected a member name"},
  };
  for (const auto& [text, want] : cases) {
    INFO("input: " << text);
    const std::string e = errorOf(text);
    CHECK(e.find("invalid JSON") != std::string::npos);
    CHECK(e.find(want) != std::string::npos);
    CHECK(json::parse(text).error().code() == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("JSON parser: limits", "[common][json]") {
  json::ParseLimits limits;
  limits.max_bytes = 16;
  limits.max_depth = 3;
  limits.max_values = 5;
  CHECK(json::parse("[[[1]]]", limits).has_value());
  CHECK(errorOf("[[[[1]]]]", limits).find("nested deeper than 3 levels") != std::string::npos);
  CHECK(errorOf("{\"a\":{\"b\":{\"c\":{}}}}", {.max_depth = 3})
            .find("nested deeper than 3 levels") != std::string::npos);
  CHECK(json::parse("[1,2,3,4]", limits).has_value());
  CHECK(errorOf("[1,2,3,4,5]", limits).find("more than 5 values") != std::string::npos);
  CHECK(errorOf(std::string(17, ' '), limits).find("17 bytes is over the limit of 16") !=
        std::string::npos);
  CHECK(json::parse(std::string(17, ' '), limits).error().code() == ErrorCode::kResourceExhausted);
  // Deep nesting never recurses past the limit, whatever the input size.
  CHECK(errorOf(std::string(100000, '['), {.max_bytes = 1 << 20}).find("nested deeper") !=
        std::string::npos);
}

TEST_CASE("JSON parser and writer agree", "[common][json]") {
  const std::string doc =
      R"({"device":"d\u00e9v","epoch":"18446744073709551615","v":[0.1,-2,1e+300,null,true],)"
      R"("o":{"k":"\"\\\n\u0001"}})";
  auto v = json::parse(doc);
  REQUIRE(v.has_value());
  std::string out;
  json::Writer w(out);
  v->write(w);
  CHECK(out ==
        "{\"device\":\"d\xC3\xA9v\",\"epoch\":\"18446744073709551615\","
        "\"v\":[0.1,-2,1e+300,null,true],\"o\":{\"k\":\"\\\"\\\\\\n\\u0001\"}}");
  auto again = json::parse(out);
  REQUIRE(again.has_value());
  std::string out2;
  json::Writer w2(out2);
  again->write(w2);
  CHECK(out2 == out);
}
