// Fuzz target for the agent's text decoders of local input (stdin, Unix socket, MQTT payloads):
// parseLine in all three formats, jsonFind/jsonNumber/jsonTimestamp with dotted paths,
// parseTimestampUs and MQTT topic matching. They must never crash, read out of bounds or loop,
// and what they return must be consistent (checked below; a violation aborts).
//
// Built like batch_decode_fuzz.cc: a libFuzzer binary with OUTPOST_BUILD_FUZZERS (clang), and
// with replay_main.cc as a plain program that runs the committed corpus in every build.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "outpost/agent/line_parser.h"

using namespace outpost::agent;

namespace {

volatile uint64_t g_sink = 0;

void check(bool ok) {
  if (!ok) std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (LineFormat f : {LineFormat::kLine, LineFormat::kCsv, LineFormat::kJson}) {
    ParsedLine p;
    const LineError e = parseLine(f, text, p);
    if (e == LineError::kNone) {
      check(!p.sensor.empty());
      check(inside(p.sensor, text));  // the name aliases the input, never beyond it
      g_sink = g_sink + static_cast<uint64_t>(p.ts_us) + (std::isnan(p.value) ? 1 : 0);
    }
    check(e != LineError::kTooLong && e != LineError::kCount);  // not parseLine's to say
  }
  for (std::string_view path : {"value", "a.b", "env.temp.x", ""}) {
    JsonValue v;
    if (jsonFind(text, path, v)) {
      check(!path.empty());
      check(inside(v.raw, text));
      check(jsonIsObject(text));  // a found member implies a valid document
      double d = 0;
      int64_t ts = 0;
      g_sink = g_sink + (jsonNumber(v, d) ? 1 : 0) + (jsonTimestamp(v, ts) ? 2 : 0);
    }
  }
  int64_t ts = 0;
  if (parseTimestampUs(text, ts)) check(ts >= 0);
  const size_t cut = size / 2;
  g_sink = g_sink + (mqttTopicMatches(text.substr(0, cut), text.substr(cut)) ? 1 : 0);
  return 0;
}
