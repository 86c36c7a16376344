#include "outpost/common/detect/backtest.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "outpost/common/detect/sensor_detector.h"

namespace outpost::detect {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.front())) || s.front() == '"'))
    s.remove_prefix(1);
  while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.back())) || s.back() == '"'))
    s.remove_suffix(1);
  return s;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

std::unexpected<Error> badTs(std::string_view t) {
  return std::unexpected(Error(ErrorCode::kInvalidArgument,
                               "unrecognised timestamp '" + std::string(t) +
                                   "' (expected ISO-8601 date-time or epoch seconds/ms)"));
}

std::vector<std::string_view> splitCsv(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '"') quoted = !quoted;
    if (line[i] == ',' && !quoted) {
      out.push_back(line.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(line.substr(start));
  return out;
}

std::string lower(std::string_view s) {
  std::string o(trim(s));
  for (auto& ch : o) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return o;
}

bool parseValue(std::string_view s, double* v) {
  s = trim(s);
  if (s.empty()) return false;
  if (s.front() == '+') s.remove_prefix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

Result<int64_t> parseTimestampMs(std::string_view text) {
  const std::string_view t = trim(text);
  if (t.empty()) return badTs(text);
  // Epoch seconds or milliseconds.
  if (t.find('-', 1) == std::string_view::npos && t.find(':') == std::string_view::npos) {
    double v = 0;
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc() || p != t.data() + t.size() || !std::isfinite(v)) return badTs(text);
    const bool ms = std::abs(v) >= 1e11 && t.find('.') == std::string_view::npos;
    const double msv = ms ? v : v * 1000.0;
    if (std::abs(msv) > 9e18) return badTs(text);
    return static_cast<int64_t>(std::llround(msv));
  }
  int Y, M, D, h = 0, mi = 0, s = 0;
  if (!digits(t, 0, 4, &Y) || t.size() < 10 || t[4] != '-' || !digits(t, 5, 2, &M) ||
      t[7] != '-' || !digits(t, 8, 2, &D))
    return badTs(text);
  if (M < 1 || M > 12 || D < 1 || D > 31) return badTs(text);
  size_t pos = 10;
  double frac = 0.0;
  int64_t tz_s = 0;
  if (pos < t.size()) {
    if (t[pos] != 'T' && t[pos] != 't' && t[pos] != ' ') return badTs(text);
    ++pos;
    if (!digits(t, pos, 2, &h) || pos + 2 >= t.size() || t[pos + 2] != ':' ||
        !digits(t, pos + 3, 2, &mi))
      return badTs(text);
    pos += 5;
    if (pos < t.size() && t[pos] == ':') {
      if (!digits(t, pos + 1, 2, &s)) return badTs(text);
      pos += 3;
      if (pos < t.size() && (t[pos] == '.' || t[pos] == ',')) {
        ++pos;
        double scale = 0.1;
        while (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos]))) {
          frac += (t[pos] - '0') * scale;
          scale /= 10;
          ++pos;
        }
      }
    }
    if (h > 23 || mi > 59 || s > 60) return badTs(text);
    while (pos < t.size() && t[pos] == ' ') ++pos;
    if (pos < t.size()) {
      if (t[pos] == 'Z' || t[pos] == 'z') {
        ++pos;
      } else if (t[pos] == '+' || t[pos] == '-') {
        const int sign = t[pos] == '+' ? 1 : -1;
        int zh, zm = 0;
        if (!digits(t, pos + 1, 2, &zh)) return badTs(text);
        pos += 3;
        if (pos < t.size() && t[pos] == ':') ++pos;
        if (pos < t.size()) {
          if (!digits(t, pos, 2, &zm)) return badTs(text);
          pos += 2;
        }
        if (zh > 23 || zm > 59) return badTs(text);
        tz_s = sign * (zh * 3600 + zm * 60);
      }
      if (pos != t.size()) return badTs(text);
    }
  }
  const int64_t secs = daysFromCivil(Y, static_cast<unsigned>(M), static_cast<unsigned>(D)) *
                           86400 +
                       h * 3600 + mi * 60 + s - tz_s;
  return secs * 1000 + static_cast<int64_t>(std::llround(frac * 1000.0));
}

Result<BacktestStats> backtestCsv(std::istream& in, std::ostream& out,
                                  const DetectorConfig& cfg) {
  if (auto st = validateDetectorConfig(cfg); !st) return std::unexpected(st.error());
  BacktestStats stats;
  SensorDetector det(&cfg);
  std::string line;
  size_t ts_col = 0, val_col = 1;
  bool first = true;
  out << "timestamp,value,anomaly_score,alarm,kind\n";
  char buf[64];
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (trim(line).empty()) continue;
    auto cols = splitCsv(line);
    if (first) {
      first = false;
      if (!parseTimestampMs(cols[0])) {
        // A header: find the columns by name.
        bool have_ts = false, have_val = false;
        for (size_t i = 0; i < cols.size(); ++i) {
          const std::string name = lower(cols[i]);
          if (!have_ts && (name == "timestamp" || name == "time" || name == "ts")) {
            ts_col = i;
            have_ts = true;
          } else if (!have_val && name == "value") {
            val_col = i;
            have_val = true;
          }
        }
        if (!have_ts || !have_val)
          return fail(ErrorCode::kInvalidArgument,
                      "CSV header '" + line + "' must name columns 'timestamp' and 'value'");
        continue;
      }
    }
    ++stats.rows;
    const std::string_view ts_text = ts_col < cols.size() ? trim(cols[ts_col]) : "";
    const std::string_view val_text = val_col < cols.size() ? trim(cols[val_col]) : "";
    double v = 0;
    auto ts = parseTimestampMs(ts_text);
    DetectResult r;
    if (!ts || !parseValue(val_text, &v)) {
      ++stats.bad_rows;
      r.alarm = det.alarmActive();
    } else {
      r = det.update(*ts, v);
      if (!r.valid) ++stats.bad_rows;
    }
    if (r.transition == AlarmTransition::kRaised) ++stats.alarms;
    std::snprintf(buf, sizeof buf, "%.6f", r.score);
    out << ts_text << ',' << val_text << ',' << buf << ',' << (r.alarm ? '1' : '0') << ','
        << (r.alarm ? kindName(det.event().kind) : "") << '\n';
  }
  if (first) return fail(ErrorCode::kInvalidArgument, "CSV input is empty");
  return stats;
}

}  // namespace outpost::detect
