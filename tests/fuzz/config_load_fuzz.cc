// Fuzz target for the configuration loader (common/src/config.cc): TOML text through toml++ into
// a schema's typed, checked values, and a command-line override. A configuration file is written
// by an operator, not by the network, but a typo must still end in a ConfigError that names the
// problem, never in a crash, another exception type or a value outside its declared range.
//
// Input: the first line is a command-line override ("key=value"), the rest the TOML text. The
// schema has one setting of every kind (bool, bounded int and double, string, one-of, required
// string, a table array with its own schema).
//
// Built like batch_decode_fuzz.cc: a libFuzzer binary with OUTPOST_BUILD_FUZZERS (clang), and
// with replay_main.cc as a plain program that runs the committed corpus in every build.

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "outpost/common/config.h"

using namespace outpost::config;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

const Schema& schema() {
  static const Schema s = [] {
    auto item = std::make_shared<Schema>("item");
    item->requiredString("name", "item name")
        .integer("port", 502, 1, 65535, "a port")
        .oneOf("parity", "N", {"N", "E", "O"}, "serial parity");
    Schema r("fuzz");
    r.boolean("enabled", true, "a flag")
        .integer("batch.max_readings", 500, 1, 100000, "a bounded integer")
        .real("batch.max_age_s", 1.5, 0.001, 3600, "a bounded double")
        .string("uplink.mqtt.broker", "tcp://127.0.0.1:1883", "a string")
        .oneOf("outbox.full_policy", "drop_oldest", {"drop_oldest", "drop_newest", "block"},
               "one of")
        .requiredString("device_id", "a required string")
        .tableArray("slaves", item, "a table array");
    return r;
  }();
  return s;
}

void checkValues(const Config& c, const Schema& s) {
  for (const Setting& set : s.settings()) {
    switch (set.type) {
      case Type::kBool:
        (void)c.getBool(set.key);
        break;
      case Type::kInt: {
        const int64_t v = c.getInt(set.key);
        check(!set.min || static_cast<double>(v) >= *set.min);
        check(!set.max || static_cast<double>(v) <= *set.max);
        break;
      }
      case Type::kDouble: {
        const double v = c.getDouble(set.key);
        check(v == v);  // no NaN gets through a range
        check(!set.min || v >= *set.min);
        check(!set.max || v <= *set.max);
        break;
      }
      case Type::kString: {
        const std::string& v = c.getString(set.key);
        if (!set.allowed.empty()) {
          bool ok = false;
          for (const auto& a : set.allowed) ok = ok || a == v;
          check(ok);
        }
        break;
      }
      case Type::kTableArray:
        for (const Config& item : c.items(set.key)) checkValues(item, *set.item_schema);
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  const std::string_view override_line = nl == in.npos ? in : in.substr(0, nl);
  const std::string_view toml = nl == in.npos ? std::string_view() : in.substr(nl + 1);
  // Only ConfigError may leave the loader (an uncaught exception is a finding).
  try {
    Config c = parseToml(toml, schema(), "fuzz.toml");
    checkValues(c, schema());
    if (!override_line.empty()) {
      try {
        c.applyOverride(schema(), override_line);
        checkValues(c, schema());
      } catch (const ConfigError& e) {
        check(e.what()[0] != '\0');
      }
    }
  } catch (const ConfigError& e) {
    check(e.what()[0] != '\0');
  }
  return 0;
}
