#pragma once

// Parsers for text readings from local producers (stdin, a Unix socket, MQTT payloads). Pure
// functions over untrusted text: they never throw, never allocate and never read past the view.
//
//   line protocol:  sensor value [timestamp]            (fields separated by blanks/tabs)
//   JSON lines:     {"sensor": "t1", "value": 21.5, "ts": 1700000000123}
//                   (sensor or name; value; ts, timestamp or time; other members ignored)
//   CSV:            sensor,value[,timestamp]            (a header line "sensor,value,..." is
//   skipped)
//
// Timestamps: an integer or decimal epoch whose unit follows from its magnitude (< 1e11 seconds,
// < 1e14 milliseconds, < 1e17 microseconds, else nanoseconds), or ISO-8601
// (2024-05-01T12:00:00.250Z, a space for the T, an offset +02:00/-0530, no zone = UTC).

#include <cstdint>
#include <string_view>

namespace outpost::agent {

// Its names ("line", "json", "csv") are in lineFormatNames() (inputs.h): this header stays free
// of the config library (the line-parser fuzz target builds it alone).
enum class LineFormat { kLine, kJson, kCsv };

// Why a line was rejected; names are stable metric labels.
enum class LineError {
  kNone,
  kHeader,         // a CSV header line: skipped, not an error
  kEmpty,          // blank or comment (#) line: skipped, not an error
  kSyntax,         // wrong field count, malformed JSON/CSV
  kBadValue,       // value missing or not a number
  kBadTimestamp,   // timestamp unparsable or outside the accepted range
  kUnknownSensor,  // sensor name not configured for this source
  kTooLong,        // longer than the line limit
  kCount
};
const char* lineErrorName(LineError e);

struct ParsedLine {
  std::string_view sensor;  // aliases the line
  double value = 0;
  bool has_ts = false;
  int64_t ts_us = 0;
};

// Parses one line (without its '\n'; a trailing '\r' is ignored). On kNone `out` is filled.
LineError parseLine(LineFormat format, std::string_view line, ParsedLine& out);

// Parses a timestamp (see above) into µs since the Unix epoch. False if unparsable or out of the
// int64 µs range.
bool parseTimestampUs(std::string_view text, int64_t& out_us);

// Accepted event times: not before 2000-01-01 (the aggregator rejects a whole batch holding an
// older reading) and not more than 24 h after the receiver's clock.
bool timestampPlausible(int64_t ts_us, int64_t now_us);

// Parses a complete decimal number (no blanks, no hex, no inf/nan words); false otherwise.
bool parseNumber(std::string_view text, double& out);

// Minimal JSON access (RFC 8259 syntax, validated as far as it is scanned; nesting depth <= 32).
struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kObject, kArray };
  Kind kind = Kind::kNull;
  std::string_view raw;  // the value's text; strings: the contents between the quotes, escapes
                         // left as they are (`has_escapes`)
  bool has_escapes = false;
};

// Finds the member at a dotted path ("a.b.c") in a JSON object document. Returns false if the
// document is not valid JSON (as far as scanned), not an object, or has no such member.
bool jsonFind(std::string_view doc, std::string_view dotted_path, JsonValue& out);

// True if `doc` is one valid JSON object (and nothing else).
bool jsonIsObject(std::string_view doc);

// The number a JSON value holds: a number, or a string that parses as one.
bool jsonNumber(const JsonValue& v, double& out);
// The timestamp a JSON value holds: a number (epoch, unit by magnitude) or a string (ISO-8601 or
// numeric epoch).
bool jsonTimestamp(const JsonValue& v, int64_t& out_us);

// MQTT topic filter matching ('+' one level, '#' the rest, as in MQTT 3.1.1 §4.7).
bool mqttTopicMatches(std::string_view filter, std::string_view topic);

}  // namespace outpost::agent
