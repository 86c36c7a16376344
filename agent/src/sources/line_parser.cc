#include "outpost/agent/line_parser.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace outpost::agent {
namespace {

constexpr int64_t kMinPlausibleUs = 946684800LL * 1000000;  // 2000-01-01T00:00:00Z
constexpr int64_t kMaxFutureSkewUs = 24LL * 3600 * 1000000;

bool isBlank(char c) { return c == ' ' || c == '\t'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (isBlank(s.front()) || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (isBlank(s.back()) || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool leapYear(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// Reads exactly `n` digits at `s[pos]`.
bool digits(std::string_view s, size_t& pos, size_t n, int64_t& out) {
  if (pos + n > s.size()) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!isDigit(s[pos + i])) return false;
    v = v * 10 + (s[pos + i] - '0');
  }
  pos += n;
  out = v;
  return true;
}

bool parseIso8601(std::string_view s, int64_t& out_us) {
  size_t p = 0;
  int64_t year, month, day, hour = 0, minute = 0, second = 0;
  if (!digits(s, p, 4, year) || p >= s.size() || s[p++] != '-' || !digits(s, p, 2, month) ||
      p >= s.size() || s[p++] != '-' || !digits(s, p, 2, day)) {
    return false;
  }
  if (month < 1 || month > 12) return false;
  static constexpr int kMonthDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const int64_t mdays = kMonthDays[month - 1] + (month == 2 && leapYear(year) ? 1 : 0);
  if (day < 1 || day > mdays) return false;
  int64_t frac_us = 0;
  int64_t offset_s = 0;
  if (p < s.size()) {
    if (s[p] != 'T' && s[p] != 't' && s[p] != ' ') return false;
    ++p;
    if (!digits(s, p, 2, hour) || p >= s.size() || s[p++] != ':' || !digits(s, p, 2, minute)) {
      return false;
    }
    if (p < s.size() && s[p] == ':') {
      ++p;
      if (!digits(s, p, 2, second)) return false;
      if (p < s.size() && (s[p] == '.' || s[p] == ',')) {
        ++p;
        size_t n = 0;
        int64_t scale = 100000;
        while (p < s.size() && isDigit(s[p])) {
          if (n < 6) frac_us += (s[p] - '0') * scale;
          scale /= 10;
          ++n;
          ++p;
        }
        if (n == 0 || n > 9) return false;
      }
    }
    if (hour > 23 || minute > 59 || second > 60) return false;
    if (p < s.size()) {
      if (s[p] == 'Z' || s[p] == 'z') {
        ++p;
      } else if (s[p] == '+' || s[p] == '-') {
        const int64_t sign = s[p] == '-' ? -1 : 1;
        ++p;
        int64_t oh = 0, om = 0;
        if (!digits(s, p, 2, oh)) return false;
        if (p < s.size() && s[p] == ':') ++p;
        if (p < s.size() && !digits(s, p, 2, om)) return false;
        if (oh > 23 || om > 59) return false;
        offset_s = sign * (oh * 3600 + om * 60);
      } else {
        return false;
      }
    }
  }
  if (p != s.size()) return false;
  if (year < 1970 || year > 2262) return false;  // int64 µs covers 1970..2262 comfortably
  const int64_t secs =
      daysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
      hour * 3600 + minute * 60 + second - offset_s;
  if (secs < 0) return false;
  out_us = secs * 1000000 + frac_us;
  return true;
}

bool parseEpoch(std::string_view s, int64_t& out_us) {
  size_t p = 0;
  uint64_t ip = 0;
  size_t nd = 0;
  while (p < s.size() && isDigit(s[p])) {
    if (++nd > 19) return false;
    ip = ip * 10 + static_cast<uint64_t>(s[p] - '0');
    ++p;
  }
  if (nd == 0) return false;
  // Unit by magnitude; `frac_digits` = how many fraction digits still add precision in µs.
  int64_t mult;  // µs per unit (0: nanoseconds, divide)
  int frac_digits;
  if (ip < 100000000000ULL) {
    mult = 1000000, frac_digits = 6;
  } else if (ip < 100000000000000ULL) {
    mult = 1000, frac_digits = 3;
  } else if (ip < 100000000000000000ULL) {
    mult = 1, frac_digits = 0;
  } else {
    mult = 0, frac_digits = 0;
  }
  int64_t frac_us = 0;
  if (p < s.size() && s[p] == '.') {
    ++p;
    size_t n = 0;
    int64_t scale = mult / 10;
    while (p < s.size() && isDigit(s[p])) {
      if (static_cast<int>(n) < frac_digits) {
        frac_us += (s[p] - '0') * scale;
        scale /= 10;
      }
      ++n;
      ++p;
    }
    if (n == 0) return false;
  }
  if (p != s.size()) return false;
  if (mult == 0) {
    if (ip / 1000 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    out_us = static_cast<int64_t>(ip / 1000);
  } else {
    out_us = static_cast<int64_t>(ip) * mult + frac_us;  // ip < 1e17 / mult: no overflow
  }
  return true;
}

// ---- JSON scanning ----

constexpr int kMaxJsonDepth = 32;

struct JsonScanner {
  std::string_view s;
  size_t p = 0;

  void ws() {
    while (p < s.size() && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) ++p;
  }

  bool literal(std::string_view word) {
    if (s.substr(p, word.size()) != word) return false;
    p += word.size();
    return true;
  }

  bool string(JsonValue& v) {
    if (p >= s.size() || s[p] != '"') return false;
    const size_t start = ++p;
    v.has_escapes = false;
    while (p < s.size()) {
      const unsigned char c = static_cast<unsigned char>(s[p]);
      if (c == '"') {
        v.kind = JsonValue::Kind::kString;
        v.raw = s.substr(start, p - start);
        ++p;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        v.has_escapes = true;
        if (++p >= s.size()) return false;
        const char e = s[p];
        if (e == 'u') {
          for (int i = 0; i < 4; ++i) {
            if (++p >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[p]))) return false;
          }
        } else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
                   e != 'r' && e != 't') {
          return false;
        }
      }
      ++p;
    }
    return false;
  }

  bool number(JsonValue& v) {
    const size_t start = p;
    if (p < s.size() && s[p] == '-') ++p;
    if (p >= s.size()) return false;
    if (s[p] == '0') {
      ++p;
    } else if (isDigit(s[p])) {
      while (p < s.size() && isDigit(s[p])) ++p;
    } else {
      return false;
    }
    if (p < s.size() && s[p] == '.') {
      ++p;
      if (p >= s.size() || !isDigit(s[p])) return false;
      while (p < s.size() && isDigit(s[p])) ++p;
    }
    if (p < s.size() && (s[p] == 'e' || s[p] == 'E')) {
      ++p;
      if (p < s.size() && (s[p] == '+' || s[p] == '-')) ++p;
      if (p >= s.size() || !isDigit(s[p])) return false;
      while (p < s.size() && isDigit(s[p])) ++p;
    }
    v.kind = JsonValue::Kind::kNumber;
    v.raw = s.substr(start, p - start);
    v.has_escapes = false;
    return true;
  }

  // Scans one value. When `path` is non-empty and the value is an object, the member named by
  // the first path segment is looked for inside it (found → *found filled).
  bool value(int depth, JsonValue& v, std::string_view path, bool& matched, JsonValue& found) {
    if (depth > kMaxJsonDepth) return false;
    ws();
    if (p >= s.size()) return false;
    const size_t start = p;
    v.has_escapes = false;
    switch (s[p]) {
      case '{': {
        ++p;
        ws();
        const size_t dot = path.find('.');
        const std::string_view head = path.substr(0, dot);
        const std::string_view rest =
            dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
        if (p < s.size() && s[p] == '}') {
          ++p;
        } else {
          for (;;) {
            ws();
            JsonValue key;
            if (!string(key)) return false;
            ws();
            if (p >= s.size() || s[p++] != ':') return false;
            JsonValue member;
            const bool wanted = !path.empty() && !matched && !key.has_escapes && key.raw == head;
            bool inner_matched = false;
            if (!value(depth + 1, member, wanted ? rest : std::string_view(), inner_matched,
                       found)) {
              return false;
            }
            if (wanted) {
              if (rest.empty()) {
                found = member;
                matched = true;
              } else if (inner_matched) {
                matched = true;
              }
            }
            ws();
            if (p >= s.size()) return false;
            if (s[p] == ',') {
              ++p;
              continue;
            }
            if (s[p] == '}') {
              ++p;
              break;
            }
            return false;
          }
        }
        v.kind = JsonValue::Kind::kObject;
        v.raw = s.substr(start, p - start);
        return true;
      }
      case '[': {
        ++p;
        ws();
        if (p < s.size() && s[p] == ']') {
          ++p;
        } else {
          for (;;) {
            JsonValue item;
            bool unused = false;
            JsonValue unused_found;
            if (!value(depth + 1, item, {}, unused, unused_found)) return false;
            ws();
            if (p >= s.size()) return false;
            if (s[p] == ',') {
              ++p;
              continue;
            }
            if (s[p] == ']') {
              ++p;
              break;
            }
            return false;
          }
        }
        v.kind = JsonValue::Kind::kArray;
        v.raw = s.substr(start, p - start);
        return true;
      }
      case '"':
        return string(v);
      case 't':
        v.kind = JsonValue::Kind::kBool;
        v.raw = s.substr(p, 4);
        return literal("true");
      case 'f':
        v.kind = JsonValue::Kind::kBool;
        v.raw = s.substr(p, 5);
        return literal("false");
      case 'n':
        v.kind = JsonValue::Kind::kNull;
        v.raw = s.substr(p, 4);
        return literal("null");
      default:
        return number(v);
    }
  }
};

}  // namespace

const char* lineErrorName(LineError e) {
  switch (e) {
    case LineError::kNone:
      return "none";
    case LineError::kHeader:
      return "header";
    case LineError::kEmpty:
      return "empty";
    case LineError::kSyntax:
      return "syntax";
    case LineError::kBadValue:
      return "bad_value";
    case LineError::kBadTimestamp:
      return "bad_timestamp";
    case LineError::kUnknownSensor:
      return "unknown_sensor";
    case LineError::kTooLong:
      return "too_long";
    case LineError::kCount:
      break;
  }
  return "?";
}

bool parseNumber(std::string_view text, double& out) {
  if (text.empty()) return false;
  if (text.front() == '+') text.remove_prefix(1);
  if (text.empty() || text.front() == '+' || (text.front() == '-' && text.size() == 1))
    return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

bool parseTimestampUs(std::string_view text, int64_t& out_us) {
  text = trim(text);
  if (text.size() >= 10 && text[4] == '-') return parseIso8601(text, out_us);
  return parseEpoch(text, out_us);
}

bool timestampPlausible(int64_t ts_us, int64_t now_us) {
  return ts_us >= kMinPlausibleUs && ts_us <= now_us + kMaxFutureSkewUs;
}

bool jsonFind(std::string_view doc, std::string_view dotted_path, JsonValue& out) {
  JsonScanner sc{doc};
  sc.ws();
  if (sc.p >= doc.size() || doc[sc.p] != '{') return false;
  JsonValue root;
  bool matched = false;
  if (!sc.value(0, root, dotted_path, matched, out)) return false;
  sc.ws();
  if (sc.p != doc.size()) return false;  // trailing garbage
  return matched;
}

bool jsonIsObject(std::string_view doc) {
  JsonScanner sc{doc};
  sc.ws();
  if (sc.p >= doc.size() || doc[sc.p] != '{') return false;
  JsonValue root, unused;
  bool matched = false;
  if (!sc.value(0, root, {}, matched, unused)) return false;
  sc.ws();
  return sc.p == doc.size();
}

bool jsonNumber(const JsonValue& v, double& out) {
  if (v.kind == JsonValue::Kind::kNumber) return parseNumber(v.raw, out);
  if (v.kind == JsonValue::Kind::kString && !v.has_escapes) return parseNumber(trim(v.raw), out);
  return false;
}

bool jsonTimestamp(const JsonValue& v, int64_t& out_us) {
  if ((v.kind == JsonValue::Kind::kNumber && v.raw.front() != '-' &&
       v.raw.find_first_of("eE") == std::string_view::npos) ||
      (v.kind == JsonValue::Kind::kString && !v.has_escapes)) {
    return parseTimestampUs(v.raw, out_us);
  }
  return false;
}

LineError parseLine(LineFormat format, std::string_view line, ParsedLine& out) {
  line = trim(line);
  if (line.empty() || line.front() == '#') return LineError::kEmpty;
  std::string_view fields[3];
  size_t n = 0;
  switch (format) {
    case LineFormat::kLine: {
      size_t p = 0;
      while (p < line.size()) {
        while (p < line.size() && isBlank(line[p])) ++p;
        if (p >= line.size()) break;
        const size_t start = p;
        while (p < line.size() && !isBlank(line[p])) ++p;
        if (n == 3) return LineError::kSyntax;
        fields[n++] = line.substr(start, p - start);
      }
      if (n < 2) return LineError::kSyntax;
      break;
    }
    case LineFormat::kCsv: {
      size_t p = 0;
      for (;;) {
        if (n == 3) return LineError::kSyntax;
        while (p < line.size() && isBlank(line[p])) ++p;
        std::string_view f;
        if (p < line.size() && line[p] == '"') {
          const size_t close = line.find('"', p + 1);
          if (close == std::string_view::npos) return LineError::kSyntax;
          f = line.substr(p + 1, close - p - 1);
          p = close + 1;
          while (p < line.size() && isBlank(line[p])) ++p;
          if (p < line.size() && line[p] != ',') return LineError::kSyntax;  // incl. "" escapes
        } else {
          const size_t comma = line.find(',', p);
          f = trim(line.substr(p, comma == std::string_view::npos ? line.size() - p : comma - p));
          p = comma == std::string_view::npos ? line.size() : comma;
        }
        fields[n++] = f;
        if (p >= line.size()) break;
        ++p;  // the comma
      }
      if (n < 2) return LineError::kSyntax;
      if ((equalsIgnoreCase(fields[0], "sensor") || equalsIgnoreCase(fields[0], "name")) &&
          equalsIgnoreCase(fields[1], "value")) {
        return LineError::kHeader;
      }
      break;
    }
    case LineFormat::kJson: {
      JsonValue name, value, ts;
      // Invalid JSON, or no sensor member.
      if (!jsonFind(line, "sensor", name) && !jsonFind(line, "name", name)) {
        return LineError::kSyntax;
      }
      if (name.kind != JsonValue::Kind::kString || name.has_escapes || name.raw.empty()) {
        return LineError::kUnknownSensor;
      }
      out.sensor = name.raw;
      if (!jsonFind(line, "value", value) || !jsonNumber(value, out.value)) {
        return LineError::kBadValue;
      }
      out.has_ts = false;
      if ((jsonFind(line, "ts", ts) || jsonFind(line, "timestamp", ts) ||
           jsonFind(line, "time", ts)) &&
          ts.kind != JsonValue::Kind::kNull) {
        if (!jsonTimestamp(ts, out.ts_us)) return LineError::kBadTimestamp;
        out.has_ts = true;
      }
      return LineError::kNone;
    }
  }
  if (fields[0].empty()) return LineError::kSyntax;
  out.sensor = fields[0];
  if (!parseNumber(fields[1], out.value)) return LineError::kBadValue;
  out.has_ts = false;
  if (n == 3 && !fields[2].empty()) {
    if (!parseTimestampUs(fields[2], out.ts_us)) return LineError::kBadTimestamp;
    out.has_ts = true;
  }
  return LineError::kNone;
}

bool mqttTopicMatches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic.front() == '$' &&
      (filter.empty() || filter.front() == '+' || filter.front() == '#')) {
    return false;  // $SYS-style topics are not matched by leading wildcards
  }
  for (;;) {
    const size_t fs = filter.find('/');
    const std::string_view flevel = filter.substr(0, fs);
    if (flevel == "#") return fs == std::string_view::npos;
    const size_t ts = topic.find('/');
    const std::string_view tlevel = topic.substr(0, ts);
    if (flevel != "+" && flevel != tlevel) return false;
    if (fs == std::string_view::npos || ts == std::string_view::npos) {
      if (fs == std::string_view::npos && ts == std::string_view::npos) return true;
      // "a/#" also matches "a".
      return ts == std::string_view::npos && filter.substr(fs + 1) == "#";
    }
    filter.remove_prefix(fs + 1);
    topic.remove_prefix(ts + 1);
  }
}

}  // namespace outpost::agent
