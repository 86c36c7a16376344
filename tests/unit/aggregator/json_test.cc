#include "outpost/aggregator/json.h"
#include "outpost/common/json.h"

#include <sys/wait.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/common/codec.h"
#include "support/encoded_batch.h"

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;
namespace wire = outpost::wire;

namespace {

// 2023-11-14T22:13:20Z.
constexpr int64_t kNow = 1'700'000'000'000'000;
constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kReceived = kNow + 1234;

// ---------------------------------------------------------------------------------------------
// A minimal, strict RFC 8259 parser (no JSON library is installed): rejects trailing commas,
// NaN/Infinity, leading zeros, raw control characters and invalid UTF-8 in strings, lone
// surrogate escapes, duplicate keys and trailing garbage. Strings are decoded to UTF-8.
struct JValue {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = kNull;
  bool boolean = false;
  std::string text;  // the number's literal, or the decoded string
  std::vector<JValue> items;
  std::vector<std::pair<std::string, JValue>> members;

  const JValue& operator[](std::string_view key) const {
    for (const auto& [k, v] : members) {
      if (k == key) return v;
    }
    FAIL("missing key " << key);
    return *this;
  }
  bool has(std::string_view key) const {
    for (const auto& [k, v] : members) {
      if (k == key) return true;
    }
    return false;
  }
  int64_t asInt() const {
    REQUIRE(kind == kNumber);
    return std::strtoll(text.c_str(), nullptr, 10);
  }
  uint64_t asUint() const {
    REQUIRE(kind == kNumber);
    return std::strtoull(text.c_str(), nullptr, 10);
  }
  double asDouble() const {
    REQUIRE(kind == kNumber);
    return std::strtod(text.c_str(), nullptr);
  }
};

class JParser {
 public:
  explicit JParser(std::string_view s) : s_(s) {}

  std::optional<JValue> document() {
    JValue v;
    ws();
    if (!value(v, 0)) return std::nullopt;
    ws();
    if (i_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  bool lit(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  bool value(JValue& v, int depth) {
    if (depth > 64 || i_ >= s_.size()) return false;
    switch (s_[i_]) {
      case '{': return object(v, depth);
      case '[': return array(v, depth);
      case '"': v.kind = JValue::kString; return string(v.text);
      case 't': v.kind = JValue::kBool; v.boolean = true; return lit("true");
      case 'f': v.kind = JValue::kBool; return lit("false");
      case 'n': v.kind = JValue::kNull; return lit("null");
      default: v.kind = JValue::kNumber; return number(v.text);
    }
  }
  bool object(JValue& v, int depth) {
    v.kind = JValue::kObject;
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
    for (;;) {
      ws();
      std::string key;
      if (i_ >= s_.size() || s_[i_] != '"' || !string(key)) return false;
      if (v.has(key)) return false;  // duplicate key
      ws();
      if (i_ >= s_.size() || s_[i_++] != ':') return false;
      ws();
      JValue member;
      if (!value(member, depth + 1)) return false;
      v.members.emplace_back(std::move(key), std::move(member));
      ws();
      if (i_ >= s_.size()) return false;
      const char c = s_[i_++];
      if (c == '}') return true;
      if (c != ',') return false;
    }
  }
  bool array(JValue& v, int depth) {
    v.kind = JValue::kArray;
    ++i_;
    ws();
    if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
    for (;;) {
      ws();
      JValue item;
      if (!value(item, depth + 1)) return false;
      v.items.push_back(std::move(item));
      ws();
      if (i_ >= s_.size()) return false;
      const char c = s_[i_++];
      if (c == ']') return true;
      if (c != ',') return false;
    }
  }
  bool digits() {
    const size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > start;
  }
  bool number(std::string& out) {
    const size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ >= s_.size()) return false;
    if (s_[i_] == '0') {
      ++i_;
    } else if (s_[i_] >= '1' && s_[i_] <= '9') {
      digits();
    } else {
      return false;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits()) return false;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return false;
    }
    out.assign(s_.substr(start, i_ - start));
    return true;
  }
  static void putUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  bool hex4(uint32_t& v) {
    if (i_ + 4 > s_.size()) return false;
    v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else return false;
    }
    return true;
  }
  // One raw (unescaped) UTF-8 sequence, validated independently of the code under test.
  bool rawUtf8(std::string& out) {
    const auto c = static_cast<unsigned char>(s_[i_]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) n = 1, cp = c;
    else if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
    else return false;
    if (i_ + n > s_.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s_[i_ + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    out.append(s_.substr(i_, n));
    i_ += n;
    return true;
  }
  bool string(std::string& out) {
    ++i_;  // opening quote
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') return ++i_, true;
      if (c < 0x20) return false;
      if (c != '\\') {
        if (!rawUtf8(out)) return false;
        continue;
      }
      if (++i_ >= s_.size()) return false;
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp;
          if (!hex4(cp)) return false;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (!lit("\\u") || !hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          putUtf8(out, cp);
          break;
        }
        default: return false;
      }
    }
    return false;
  }

  std::string_view s_;
  size_t i_ = 0;
};

JValue parseJson(const std::string& json) {
  auto v = JParser(json).document();
  if (!v) FAIL("not valid JSON: " << json);
  return *v;
}

// Python's json module as an independent judge (strict: NaN/Infinity refused, input must be
// valid UTF-8). Returns nullopt when python3 is not available.
std::optional<bool> pythonAcceptsJson(const std::string& json) {
  static const std::optional<bool> have_python = [] {
    const int st = std::system("python3 -c 'import json' >/dev/null 2>&1");
    return std::optional<bool>(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }();
  if (!*have_python) return std::nullopt;
  FILE* p = popen(
      "python3 -c '"
      "import json,sys\n"
      "def bad(c): raise ValueError(c)\n"
      "json.loads(sys.stdin.buffer.read().decode(\"utf-8\", \"strict\"), parse_constant=bad)\n"
      "' 2>/dev/null",
      "w");
  REQUIRE(p != nullptr);
  const size_t written = std::fwrite(json.data(), 1, json.size(), p);
  const int st = pclose(p);
  REQUIRE(written == json.size());
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

void checkValidJson(const std::string& json) {
  INFO((json.size() <= 400 ? json : json.substr(0, 400) + "... (" + std::to_string(json.size()) +
                                        " bytes)"));
  REQUIRE(JParser(json).document().has_value());
  if (auto ok = pythonAcceptsJson(json)) {
    CHECK(*ok);
  } else {
    WARN("python3 not available: JSON checked by the built-in parser only");
  }
}

// ---------------------------------------------------------------------------------------------

using Encoded = outpost::testing::EncodedBatch;
Encoded encode(const codec::BatchContent& content) {
  return outpost::testing::encodeVerified(content);
}

std::string render(const wire::Batch& b, size_t part = 0, size_t per_part = 1000) {
  std::string out;
  agg::appendBatchJson(b, part, per_part, kReceived, out);
  return out;
}

std::string jsonString(std::string_view s) {
  std::string out;
  outpost::json::appendString(out, s);
  return out;
}

std::string jsonNumber(double v) {
  std::string out;
  outpost::json::appendNumber(out, v);
  return out;
}

codec::BatchContent smallBatch() {
  codec::BatchContent b;
  b.device_id = "dev-01";
  b.epoch = 7;
  b.seq = 42;
  b.dropped = 3;
  b.created_us = kNow;
  b.sensors = {{1, "temp", "C"}, {2, "humidity", "%"}};
  b.readings = {
      wire::Reading(kNow - 3 * kSecond, 21.5, 1, wire::Quality::Good),
      wire::Reading(kNow - 2 * kSecond, 48.25, 2, wire::Quality::Suspect),
  };
  b.windows = {
      wire::WindowStat(kNow - 10 * kSecond, kNow, 20.0, 22.0, 21.0, 0.5, 20.5, 21.5, 10, 1),
  };
  return b;
}

// `n_readings` readings with distinct ts_us and `n_windows` windows with distinct start_us.
codec::BatchContent bigBatch(size_t n_readings, size_t n_windows) {
  codec::BatchContent b;
  b.device_id = "dev-big";
  b.epoch = 3;
  b.seq = 1000;
  b.dropped = 17;
  b.created_us = kNow;
  b.sensors = {{0, "a", "V"}, {5, "b", ""}, {9, "c", "A"}};
  const uint16_t ids[] = {0, 5, 9};
  for (size_t i = 0; i < n_readings; ++i) {
    b.readings.emplace_back(kNow - static_cast<int64_t>(i) * 1000, 0.25 * static_cast<double>(i),
                            ids[i % 3], static_cast<wire::Quality>(i % 3));
  }
  for (size_t i = 0; i < n_windows; ++i) {
    const int64_t start = kNow - 1'000'000'000 + static_cast<int64_t>(i) * kSecond;
    b.windows.emplace_back(start, start + kSecond, 1.0, 2.0, 1.5, 0.25, 1.0, 2.0,
                           static_cast<uint32_t>(i + 1), ids[i % 3]);
  }
  return b;
}

}  // namespace

TEST_CASE("JSON: exact rendering of a small batch", "[aggregator][json]") {
  const auto e = encode(smallBatch());
  REQUIRE(agg::jsonPartCount(*e.batch, 1000) == 1);
  const std::string json = render(*e.batch);
  const std::string expected =
      R"({"device":"dev-01","epoch":"7","seq":42,"part":1,"parts":1,"dropped":3,)"
      R"("created_us":1700000000000000,"received_us":1700000000001234,"readings":[)"
      R"({"sensor":"temp","unit":"C","ts_us":1699999997000000,"value":21.5,"quality":"good"},)"
      R"({"sensor":"humidity","unit":"%","ts_us":1699999998000000,"value":48.25,"quality":"suspect"}],)"
      R"("windows":[{"sensor":"temp","unit":"C","start_us":1699999990000000,"end_us":1700000000000000,)"
      R"("count":10,"min":20,"max":22,"mean":21,"stddev":0.5,"first":20.5,"last":21.5}]})";
  CHECK(json == expected);
  checkValidJson(json);

  SECTION("appends to what is already in the buffer") {
    std::string out = "prefix|";
    agg::appendBatchJson(*e.batch, 0, 1000, kReceived, out);
    CHECK(out == "prefix|" + expected);
  }

  SECTION("a batch without readings or windows is one part with empty arrays") {
    auto c = smallBatch();
    c.readings.clear();
    c.windows.clear();
    const auto empty = encode(c);
    CHECK(agg::jsonPartCount(*empty.batch, 10) == 1);
    const std::string j = render(*empty.batch, 0, 10);
    CHECK(j ==
          R"({"device":"dev-01","epoch":"7","seq":42,"part":1,"parts":1,"dropped":3,)"
          R"("created_us":1700000000000000,"received_us":1700000000001234,"readings":[],"windows":[]})");
    checkValidJson(j);
  }

  SECTION("quality names, a sensor without a unit") {
    auto c = smallBatch();
    c.sensors = {{4, "s", ""}};
    c.readings = {wire::Reading(kNow, 1.0, 4, wire::Quality::Bad)};
    c.windows.clear();
    const std::string j = render(*encode(c).batch);
    CHECK(j.find(R"({"sensor":"s","unit":"","ts_us":1700000000000000,"value":1,"quality":"bad"})") !=
          std::string::npos);
    checkValidJson(j);
  }
}

TEST_CASE("JSON: batches split into parts", "[aggregator][json]") {
  struct Shape {
    size_t readings, windows;
  };
  for (const Shape shape : {Shape{7, 3}, Shape{10, 0}, Shape{0, 9}, Shape{1, 1}, Shape{0, 0},
                            Shape{250, 40}}) {
    const auto content = bigBatch(shape.readings, shape.windows);
    const auto e = encode(content);
    const size_t items = shape.readings + shape.windows;
    for (size_t per_part : {size_t{1}, size_t{2}, size_t{3}, size_t{4}, size_t{10}, size_t{11},
                            size_t{100}, size_t{1000}}) {
      INFO("readings " << shape.readings << ", windows " << shape.windows << ", per part "
                       << per_part);
      const size_t parts = agg::jsonPartCount(*e.batch, per_part);
      CHECK(parts == (items == 0 ? 1 : (items + per_part - 1) / per_part));

      std::map<int64_t, int> readings_seen;  // ts_us -> times seen
      std::map<int64_t, int> windows_seen;   // start_us -> times seen
      for (size_t part = 0; part < parts; ++part) {
        INFO("part " << part);
        const std::string json = render(*e.batch, part, per_part);
        const JValue v = parseJson(json);
        REQUIRE(v.kind == JValue::kObject);
        CHECK(v["device"].text == "dev-big");
        CHECK(v["epoch"].kind == JValue::kString);
        CHECK(v["epoch"].text == "3");
        CHECK(v["seq"].asUint() == 1000);
        CHECK(v["part"].asUint() == part + 1);
        CHECK(v["parts"].asUint() == parts);
        CHECK(v["dropped"].asUint() == (part == 0 ? 17u : 0u));  // counted once per batch
        CHECK(v["created_us"].asInt() == kNow);
        CHECK(v["received_us"].asInt() == kReceived);
        const JValue& rs = v["readings"];
        const JValue& ws = v["windows"];
        REQUIRE(rs.kind == JValue::kArray);
        REQUIRE(ws.kind == JValue::kArray);
        // Every part but the last is full; none is empty unless the batch is.
        const size_t in_part = rs.items.size() + ws.items.size();
        if (part + 1 < parts) CHECK(in_part == per_part);
        CHECK(in_part <= per_part);
        if (items > 0) CHECK(in_part > 0);
        for (const JValue& r : rs.items) {
          const int64_t ts = r["ts_us"].asInt();
          const size_t i = static_cast<size_t>((kNow - ts) / 1000);
          REQUIRE(i < content.readings.size());
          const auto& want = content.readings[i];
          CHECK(ts == want.ts_us());
          CHECK(r["value"].asDouble() == want.value());
          CHECK(r["sensor"].text == (want.sensor() == 0 ? "a" : want.sensor() == 5 ? "b" : "c"));
          CHECK(r["unit"].text == (want.sensor() == 0 ? "V" : want.sensor() == 5 ? "" : "A"));
          static const char* kQuality[] = {"good", "suspect", "bad"};
          CHECK(r["quality"].text == kQuality[static_cast<int>(want.quality())]);
          ++readings_seen[ts];
        }
        for (const JValue& w : ws.items) {
          const int64_t start = w["start_us"].asInt();
          CHECK(w["end_us"].asInt() == start + kSecond);
          const size_t i = static_cast<size_t>((start - (kNow - 1'000'000'000)) / kSecond);
          REQUIRE(i < content.windows.size());
          CHECK(w["count"].asUint() == i + 1);
          CHECK(w["mean"].asDouble() == 1.5);
          ++windows_seen[start];
        }
        if (part == 0 && per_part == 3) checkValidJson(json);  // python is slow to start
      }
      // The union of the parts holds every reading and window exactly once.
      CHECK(readings_seen.size() == shape.readings);
      CHECK(windows_seen.size() == shape.windows);
      for (const auto& [ts, n] : readings_seen) CHECK(n == 1);
      for (const auto& [start, n] : windows_seen) CHECK(n == 1);
    }
  }
}

TEST_CASE("JSON: readings before windows, split exactly at the boundary", "[aggregator][json]") {
  // 7 readings + 3 windows, 4 per part: [r0..r3] [r4..r6 w0] [w1 w2].
  const auto e = encode(bigBatch(7, 3));
  REQUIRE(agg::jsonPartCount(*e.batch, 4) == 3);
  const JValue p1 = parseJson(render(*e.batch, 0, 4));
  const JValue p2 = parseJson(render(*e.batch, 1, 4));
  const JValue p3 = parseJson(render(*e.batch, 2, 4));
  CHECK(p1["readings"].items.size() == 4);
  CHECK(p1["windows"].items.empty());
  CHECK(p2["readings"].items.size() == 3);
  CHECK(p2["windows"].items.size() == 1);
  CHECK(p3["readings"].items.empty());
  CHECK(p3["windows"].items.size() == 2);
  CHECK(p2["readings"].items[0]["ts_us"].asInt() == kNow - 4000);
  CHECK(p2["windows"].items[0]["count"].asUint() == 1);
  CHECK(p3["windows"].items[1]["count"].asUint() == 3);
}

TEST_CASE("JSON: string escaping", "[aggregator][json]") {
  SECTION("quotes, backslash and the short escapes") {
    CHECK(jsonString("") == R"("")");
    CHECK(jsonString("plain text") == R"("plain text")");
    CHECK(jsonString("a\"b") == R"("a\"b")");
    CHECK(jsonString("a\\b") == R"("a\\b")");
    CHECK(jsonString("\\\"") == R"("\\\"")");
    CHECK(jsonString("l1\nl2\r\tx") == R"("l1\nl2\r\tx")");
    CHECK(jsonString("/") == R"("/")");
  }

  SECTION("other control characters and DEL as \\u00XX") {
    CHECK(jsonString("\x01") == R"("\u0001")");
    CHECK(jsonString("\x1f") == R"("\u001f")");
    CHECK(jsonString("\b\f") == R"("\u0008\u000c")");
    CHECK(jsonString("\x7f") == R"("\u007f")");
    CHECK(jsonString(std::string_view("a\0b", 3)) == R"("a\u0000b")");
    CHECK(jsonString(" ~") == R"(" ~")");  // 0x20 and 0x7E are printable
  }

  SECTION("valid multi-byte UTF-8 is kept as is") {
    for (const char* s : {"\xC2\xB0""C",                // °C (2 bytes)
                          "\xE2\x82\xAC",               // € (3 bytes)
                          "\xE6\xB8\xA9\xE5\xBA\xA6",   // 温度
                          "\xF0\x9F\x98\x80",           // U+1F600 (4 bytes)
                          "\xEF\xBF\xBF",               // U+FFFF
                          "\xF4\x8F\xBF\xBF",           // U+10FFFF, the last code point
                          "\xC2\x80",                   // U+0080, the first 2-byte one
                          "\xE0\xA0\x80",               // U+0800
                          "\xF0\x90\x80\x80",           // U+10000
                          "\xED\x9F\xBF",               // U+D7FF, just below the surrogates
                          "\xEE\x80\x80"}) {            // U+E000, just above them
      INFO(s);
      CHECK(jsonString(s) == "\"" + std::string(s) + "\"");
    }
  }

  SECTION("invalid UTF-8 bytes become \\ufffd, one per byte") {
    const std::pair<std::string, std::string> cases[] = {
        {"\x80", R"("\ufffd")"},                                      // lone continuation
        {"a\xFFz", R"("a\ufffdz")"},                                  // never valid
        {"\xC0\xAF", R"("\ufffd\ufffd")"},                            // overlong '/'
        {"\xC1\xBF", R"("\ufffd\ufffd")"},                            // overlong
        {"\xE0\x80\xAF", R"("\ufffd\ufffd\ufffd")"},                  // overlong, 3 bytes
        {"\xF0\x80\x80\xAF", R"("\ufffd\ufffd\ufffd\ufffd")"},        // overlong, 4 bytes
        {"\xED\xA0\x80", R"("\ufffd\ufffd\ufffd")"},                  // UTF-16 surrogate
        {"\xF4\x90\x80\x80", R"("\ufffd\ufffd\ufffd\ufffd")"},        // above U+10FFFF
        {"\xF5\x80\x80\x80", R"("\ufffd\ufffd\ufffd\ufffd")"},        // lead byte > F4
        {"\xE2\x82", R"("\ufffd\ufffd")"},                            // truncated at the end
        {"\xE2\x82x", R"("\ufffd\ufffdx")"},                          // truncated mid-string
        {"\xC3", R"("\ufffd")"},                                      // lead byte at the end
        {"\xC3\xA9\xC3", "\"\xC3\xA9\\ufffd\""},                      // é then a truncated one
        {"\xE2\x82\"", R"("\ufffd\ufffd\"")"},                        // a quote cannot be swallowed
    };
    for (const auto& [in, want] : cases) {
      INFO("input bytes: " << in.size());
      CHECK(jsonString(in) == want);
    }
  }

  SECTION("every single byte and byte pair yields valid JSON") {
    std::string all;
    for (int c = 0; c < 256; ++c) {
      const std::string s(1, static_cast<char>(c));
      const std::string j = jsonString(s);
      INFO("byte " << c);
      const auto v = JParser(j).document();
      REQUIRE(v.has_value());
      REQUIRE(v->kind == JValue::kString);
      if (c < 0x80) {
        CHECK(v->text == s);  // ASCII round-trips exactly
      } else {
        CHECK(v->text == "\xEF\xBF\xBD");  // a lone high byte is never valid UTF-8
      }
      all += j;
      all += ',';
    }
    std::mt19937 rng(99);
    std::string random_bytes;
    for (int i = 0; i < 4096; ++i) random_bytes += static_cast<char>(rng() & 0xFF);
    const std::string j = jsonString(random_bytes);
    REQUIRE(JParser(j).document().has_value());
    all += j;
    all += ',';
    checkValidJson("[" + all + "null]");
  }

  SECTION("tricky names in a whole batch") {
    auto c = smallBatch();
    c.sensors = {{1, "t\"e\\m\x01p\x7f", "\xC2\xB0""C"}, {2, "bad\xFF\xC0 name\n", "\xF0\x9F\x98\x80"}};
    c.device_id = "dev\"x";  // step 1 does not check the id; the renderer must still escape it
    const auto e = encode(c);
    const std::string json = render(*e.batch);
    checkValidJson(json);
    const JValue v = parseJson(json);
    CHECK(v["device"].text == "dev\"x");
    CHECK(v["readings"].items[0]["sensor"].text == "t\"e\\m\x01p\x7f");
    CHECK(v["readings"].items[0]["unit"].text == "\xC2\xB0""C");
    CHECK(v["readings"].items[1]["sensor"].text == "bad\xEF\xBF\xBD\xEF\xBF\xBD name\n");
    CHECK(v["readings"].items[1]["unit"].text == "\xF0\x9F\x98\x80");
    CHECK(v["windows"].items[0]["sensor"].text == "t\"e\\m\x01p\x7f");
    CHECK(json.find(R"("sensor":"t\"e\\m\u0001p\u007f")") != std::string::npos);
    CHECK(json.find(R"("sensor":"bad\ufffd\ufffd name\n")") != std::string::npos);
  }
}

TEST_CASE("JSON: NaN and infinities become null", "[aggregator][json]") {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  CHECK(jsonNumber(kNaN) == "null");
  CHECK(jsonNumber(-kNaN) == "null");
  CHECK(jsonNumber(kInf) == "null");
  CHECK(jsonNumber(-kInf) == "null");
  CHECK(jsonNumber(std::numeric_limits<double>::signaling_NaN()) == "null");

  auto c = smallBatch();
  c.readings = {wire::Reading(kNow, kNaN, 1, wire::Quality::Bad),
                wire::Reading(kNow + 1, kInf, 1, wire::Quality::Bad),
                wire::Reading(kNow + 2, -kInf, 2, wire::Quality::Bad)};
  c.windows = {wire::WindowStat(kNow - kSecond, kNow, -kInf, kInf, kNaN, kNaN, 1.0, kNaN, 3, 2)};
  const std::string json = render(*encode(c).batch);
  checkValidJson(json);
  CHECK(json.find("NaN") == std::string::npos);
  CHECK(json.find("nan") == std::string::npos);
  CHECK(json.find("inf") == std::string::npos);
  CHECK(json.find("Inf") == std::string::npos);
  CHECK(json.find(R"("value":null,"quality":"bad"})") != std::string::npos);
  CHECK(json.find(R"("count":3,"min":null,"max":null,"mean":null,"stddev":null,"first":1,"last":null})") !=
        std::string::npos);
  const JValue v = parseJson(json);
  for (const JValue& r : v["readings"].items) CHECK(r["value"].kind == JValue::kNull);
}

TEST_CASE("JSON: 64-bit identifiers and timestamps", "[aggregator][json]") {
  constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  auto c = smallBatch();

  SECTION("epoch 2^63-1 is a string with every digit") {
    c.epoch = kInt64Max;
    const std::string json = render(*encode(c).batch);
    CHECK(json.find(R"("epoch":"9223372036854775807",)") != std::string::npos);
    checkValidJson(json);
    CHECK(parseJson(json)["epoch"].text == "9223372036854775807");
  }

  SECTION("the full unsigned range: epoch, seq and dropped") {
    c.epoch = std::numeric_limits<uint64_t>::max();
    c.seq = std::numeric_limits<uint64_t>::max();
    c.dropped = std::numeric_limits<uint64_t>::max() - 1;
    const std::string json = render(*encode(c).batch);
    CHECK(json.find(R"("epoch":"18446744073709551615","seq":18446744073709551615,)") !=
          std::string::npos);
    CHECK(json.find(R"("dropped":18446744073709551614,)") != std::string::npos);
    checkValidJson(json);
  }

  SECTION("extreme signed timestamps") {
    c.created_us = std::numeric_limits<int64_t>::min();
    c.readings = {wire::Reading(std::numeric_limits<int64_t>::max(), 1.0, 1, wire::Quality::Good)};
    c.windows = {wire::WindowStat(std::numeric_limits<int64_t>::min(), -1, 0, 0, 0, 0, 0, 0,
                                  std::numeric_limits<uint32_t>::max(), 1)};
    std::string json;
    agg::appendBatchJson(*encode(c).batch, 0, 100, std::numeric_limits<int64_t>::min(), json);
    CHECK(json.find(R"("created_us":-9223372036854775808,"received_us":-9223372036854775808,)") !=
          std::string::npos);
    CHECK(json.find(R"("ts_us":9223372036854775807,)") != std::string::npos);
    CHECK(json.find(R"("start_us":-9223372036854775808,"end_us":-1,"count":4294967295,)") !=
          std::string::npos);
    checkValidJson(json);
  }
}

TEST_CASE("JSON: numbers round-trip exactly", "[aggregator][json]") {
  std::vector<double> values = {0.0,
                                -0.0,
                                1.0,
                                -1.0,
                                0.1,
                                0.2,
                                0.1 + 0.2,
                                1.0 / 3.0,
                                2.0 / 3.0,
                                21.5,
                                -273.15,
                                1e21,
                                1e22,
                                1e-7,
                                123456789.123456789,
                                9007199254740993.0,  // 2^53 + 1 (rounds to 2^53)
                                9007199254740991.0,
                                std::numeric_limits<double>::max(),
                                -std::numeric_limits<double>::max(),
                                std::numeric_limits<double>::min(),         // smallest normal
                                std::numeric_limits<double>::denorm_min(),  // 4.9e-324
                                std::numeric_limits<double>::epsilon(),
                                std::nextafter(1.0, 2.0),
                                std::nextafter(0.0, 1.0),
                                1.7976931348623157e308,
                                5e-324,
                                2.2250738585072009e-308};  // largest subnormal
  std::mt19937_64 rng(12345);
  while (values.size() < 20000) {
    const double d = std::bit_cast<double>(rng());
    if (std::isfinite(d)) values.push_back(d);
  }
  std::uniform_real_distribution<double> dist(-1e6, 1e6);
  for (int i = 0; i < 5000; ++i) values.push_back(dist(rng));

  size_t failures = 0;
  for (double v : values) {
    const std::string s = jsonNumber(v);
    // A JSON number by the grammar, not just something strtod accepts.
    auto parsed = JParser(s).document();
    const bool grammar_ok = parsed && parsed->kind == JValue::kNumber && parsed->text == s;
    char* end = nullptr;
    const double back = std::strtod(s.c_str(), &end);
    const bool exact = end == s.c_str() + s.size() &&
                       std::bit_cast<uint64_t>(back) == std::bit_cast<uint64_t>(v);
    if (!grammar_ok || !exact) {
      if (++failures <= 10) {
        FAIL_CHECK("value bits " << std::bit_cast<uint64_t>(v) << " rendered as '" << s << "'"
                                 << (grammar_ok ? "" : " (not a JSON number)")
                                 << (exact ? "" : " (does not round-trip)"));
      }
    }
  }
  CHECK(failures == 0);

  SECTION("shortest forms") {
    CHECK(jsonNumber(0.0) == "0");
    CHECK(jsonNumber(-0.0) == "-0");
    CHECK(jsonNumber(20.0) == "20");
    CHECK(jsonNumber(0.1) == "0.1");
    CHECK(jsonNumber(-1.5) == "-1.5");
    CHECK(jsonNumber(1e300) == "1e+300");
    CHECK(jsonNumber(5e-324) == "5e-324");
  }

  SECTION("appends") {
    std::string out = "[";
    outpost::json::appendNumber(out, 1.25);
    out += ',';
    outpost::json::appendNumber(out, std::nan(""));
    out += ']';
    CHECK(out == "[1.25,null]");
  }
}

TEST_CASE("JSON: the validity checkers reject invalid JSON", "[aggregator][json]") {
  // Guards against a checker that accepts everything.
  for (const std::string bad : {"{", "{\"a\":1,}", "[1,]", "{\"a\":NaN}", "{\"a\":Infinity}",
                                "[01]", "[1.]", "[.5]", "[\"\x01\"]", "[\"\xFF\"]", "[\"\\ud800\"]",
                                "[\"\\x\"]", "{\"a\":1,\"a\":2}", "[1] x", "[\"a]", "{'a':1}"}) {
    INFO(bad);
    CHECK_FALSE(JParser(bad).document().has_value());
  }
  for (const std::string bad : {"{", "{\"a\":NaN}", "[\"\xFF\"]", "[1,]"}) {
    INFO(bad);
    if (auto ok = pythonAcceptsJson(bad)) CHECK_FALSE(*ok);
  }
  for (const std::string good : {"{}", "[]", "[-0,0.5e-3,1E+2,true,false,null]",
                                 "{\"a\":[{\"b\":\"\\u00e9\\ud83d\\ude00\\/\"}]}"}) {
    INFO(good);
    CHECK(JParser(good).document().has_value());
    if (auto ok = pythonAcceptsJson(good)) CHECK(*ok);
  }
  const auto v = JParser("{\"a\":[{\"b\":\"\\u00e9\\ud83d\\ude00\\/\"}]}").document();
  REQUIRE(v);
  CHECK((*v)["a"].items[0]["b"].text == "\xC3\xA9\xF0\x9F\x98\x80/");
}
