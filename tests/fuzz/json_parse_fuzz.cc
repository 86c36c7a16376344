// Fuzz target for the one JSON parser of untrusted bytes (common/include/outpost/common/json.h;
// device status messages today) and for the writer's string escaping. Neither may crash, read out
// of bounds, recurse past the depth limit or loop, and they must agree (checked below; a
// violation aborts):
//   - a parsed document, written again, parses again and writes the same bytes (a fixed point);
//   - every number read is finite, an integer reads the same as int64 and double, find() returns
//     the last member of a name; every error names the byte offset, within the input;
//   - any bytes written as a JSON string parse back as a string; ASCII comes back exact, and what
//     was read writes and reads back unchanged.
//
// Built like line_parse_fuzz.cc: a libFuzzer binary with OUTPOST_BUILD_FUZZERS (clang), and with
// replay_main.cc as a plain program that runs the committed corpus and regressions in every build.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>

#include "outpost/common/json.h"

using namespace outpost;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// Every number in the tree is finite; returns the number of values.
size_t walk(const json::Value& v, int depth) {
  check(depth <= 64);
  if (auto d = v.asDouble()) {
    check(std::isfinite(*d));
    // An integer reads the same as an int64 and as a double (both the nearest double).
    if (auto i = v.asInt()) check(static_cast<double>(*i) == *d);
  } else {
    check(!v.asInt());
  }
  check(v.asBool().has_value() == (v.kind() == json::Value::Kind::kBool));
  check((v.asString() != nullptr) == (v.kind() == json::Value::Kind::kString));
  if (v.isObject()) {
    check(v.keys().size() == v.items().size());
    for (size_t i = 0; i < v.keys().size(); ++i) {
      const json::Value* found = v.find(v.keys()[i]);
      check(found != nullptr && found >= &v.items()[i]);  // the last member of that name
    }
  } else {
    check(v.keys().empty());
    check(v.find("") == nullptr);
  }
  size_t n = 1;
  for (const json::Value& item : v.items()) n += walk(item, depth + 1);
  return n;
}

std::string write(const json::Value& v) {
  std::string out;
  json::Writer w(out);
  v.write(w);
  return out;
}

void parseAndCheck(std::string_view text, const json::ParseLimits& limits) {
  auto doc = json::parse(text, limits);
  if (!doc) {
    const std::string& m = doc.error().message();
    check(m.rfind("invalid JSON at byte ", 0) == 0 || m.rfind("JSON document of ", 0) == 0);
    if (m.rfind("invalid JSON at byte ", 0) == 0) {
      const size_t at = std::strtoull(m.c_str() + 21, nullptr, 10);
      check(at <= text.size());
    }
    return;
  }
  check(text.size() <= limits.max_bytes);
  check(walk(*doc, 0) <= limits.max_values);
  const std::string once = write(*doc);
  json::ParseLimits unbounded = limits;
  unbounded.max_bytes = std::numeric_limits<size_t>::max();
  auto again = json::parse(once, unbounded);
  check(again.has_value());
  check(write(*again) == once);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  parseAndCheck(text, json::ParseLimits{});
  parseAndCheck(text, json::ParseLimits{.max_bytes = 1024, .max_depth = 4, .max_values = 64});

  // The writer's escaping over arbitrary bytes.
  const std::string quoted = json::quote(text);
  auto s = json::parse(quoted, {.max_bytes = std::numeric_limits<size_t>::max()});
  check(s.has_value() && s->asString() != nullptr);
  const std::string& read = *s->asString();
  bool ascii = true;
  for (unsigned char c : text) ascii = ascii && c < 0x80;
  if (ascii) check(read == text);
  auto back = json::parse(json::quote(read), {.max_bytes = std::numeric_limits<size_t>::max()});
  check(back.has_value() && *back->asString() == read);
  return 0;
}
