#include "outpost/common/detect/backtest.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <limits>
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

std::vector<std::string_view> splitCsv(std::string_view line, char sep = ',') {
  std::vector<std::string_view> out;
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '"') quoted = !quoted;
    if (line[i] == sep && !quoted) {
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

Result<DeviceCsvStats> runDeviceCsv(std::istream& in, const DetectorConfig& device_cfg,
                                    const DeviceCsvOptions& opt,
                                    const std::function<void(const DeviceRow&)>& row) {
  if (auto st = validateDetectorConfig(device_cfg); !st) return std::unexpected(st.error());
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!trim(line).empty()) break;
  }
  if (trim(line).empty()) return fail(ErrorCode::kInvalidArgument, "CSV input is empty");
  const char sep = std::count(line.begin(), line.end(), ';') >
                           std::count(line.begin(), line.end(), ',')
                       ? ';'
                       : ',';
  const std::string header = line;
  const auto cols = splitCsv(header, sep);
  auto listed = [](const std::vector<std::string>& names, const std::string& n) {
    for (const auto& x : names)
      if (lower(x) == n) return true;
    return false;
  };
  size_t ts_col = SIZE_MAX;
  for (size_t i = 0; i < cols.size() && ts_col == SIZE_MAX; ++i) {
    const std::string n = lower(cols[i]);
    if (n == "timestamp" || n == "time" || n == "ts" || n == "datetime" || n == "date")
      ts_col = i;
  }
  if (ts_col == SIZE_MAX) ts_col = 0;
  DeviceCsvStats stats;
  std::vector<size_t> sensor_cols;
  std::vector<size_t> label_cols(opt.labels.size(), SIZE_MAX);
  for (size_t i = 0; i < cols.size(); ++i) {
    if (i == ts_col) continue;
    const std::string n = lower(cols[i]);
    bool is_label = false;
    for (size_t k = 0; k < opt.labels.size(); ++k) {
      if (lower(opt.labels[k]) == n) {
        label_cols[k] = i;
        is_label = true;
      }
    }
    if (is_label || listed(opt.ignore, n)) continue;
    sensor_cols.push_back(i);
    stats.sensors.emplace_back(trim(cols[i]));
  }
  for (size_t k = 0; k < opt.labels.size(); ++k)
    stats.label_present.push_back(label_cols[k] != SIZE_MAX);
  if (sensor_cols.empty())
    return fail(ErrorCode::kInvalidArgument,
                "CSV header '" + header +
                    "' has no sensor column (one time column, then value columns not ignored)");
  std::vector<const DetectorConfig*> cfgs;
  for (const auto& name : stats.sensors) {
    const DetectorConfig* c = opt.sensor_cfg ? opt.sensor_cfg(name) : nullptr;
    if (!c) c = &device_cfg;
    if (auto st = validateDetectorConfig(*c); !st) return std::unexpected(st.error());
    cfgs.push_back(c);
  }
  std::vector<SensorDetector> dets;
  dets.reserve(cfgs.size());
  for (const DetectorConfig* c : cfgs) dets.emplace_back(c);
  DeviceDetector device(&device_cfg, static_cast<uint32_t>(dets.size()));
  std::vector<DetectResult> res(dets.size());
  std::vector<double> labels(opt.labels.size());
  int64_t last_ts = INT64_MIN;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (trim(line).empty()) continue;
    const auto cells = splitCsv(line, sep);
    ++stats.rows;
    DeviceRow r;
    r.ts_text = ts_col < cells.size() ? trim(cells[ts_col]) : std::string_view();
    for (size_t k = 0; k < label_cols.size(); ++k) {
      double v = std::numeric_limits<double>::quiet_NaN();
      if (label_cols[k] < cells.size()) parseValue(cells[label_cols[k]], &v);
      labels[k] = v;
    }
    r.labels = &labels;
    auto ts = parseTimestampMs(r.ts_text);
    if (!ts || *ts < last_ts) {
      ++stats.bad_rows;
      r.valid = false;
      for (auto& x : res) x = DetectResult{};
      r.device.alarm = device.alarmActive();
    } else {
      last_ts = *ts;
      r.ts_ms = *ts;
      for (size_t j = 0; j < dets.size(); ++j) {
        double v = 0;
        const size_t c = sensor_cols[j];
        if (c < cells.size() && parseValue(cells[c], &v)) {
          res[j] = dets[j].update(*ts, v);
          device.set(static_cast<uint32_t>(j), res[j].surprise, res[j].kind);
        } else {
          ++stats.bad_values;
          res[j] = DetectResult{};
          res[j].valid = false;
        }
      }
      r.device = device.evaluate(*ts);
      if (r.device.transition == AlarmTransition::kRaised) ++stats.device_alarms;
    }
    r.sensor = &res;
    r.detector = &device;
    r.names = &stats.sensors;
    row(r);
  }
  return stats;
}

Result<DeviceCsvStats> backtestDeviceCsv(std::istream& in, std::ostream& out,
                                         const DetectorConfig& device_cfg,
                                         const DeviceCsvOptions& opt) {
  bool header = false;
  char buf[64];
  auto writeHeader = [&](const std::vector<std::string>& names) {
    header = true;
    out << "timestamp";
    for (const auto& n : names) out << ',' << n << "_score";
    out << ",device_score,device_alarm,device_kind,device_sensors\n";
  };
  auto st = runDeviceCsv(in, device_cfg, opt, [&](const DeviceRow& r) {
    if (!header) writeHeader(*r.names);
    out << r.ts_text;
    for (const DetectResult& s : *r.sensor) {
      std::snprintf(buf, sizeof buf, ",%.6f", s.score);
      out << buf;
    }
    std::snprintf(buf, sizeof buf, ",%.6f,%d,", r.device.score, r.device.alarm ? 1 : 0);
    out << buf;
    if (r.device.alarm) {
      out << kindName(r.detector->event().kind) << ',';
      bool first = true;
      for (uint32_t i : r.detector->event().sensors) {
        if (!first) out << '|';
        first = false;
        out << (*r.names)[i];
      }
    } else {
      out << ',';
    }
    out << '\n';
  });
  if (st && !header) writeHeader(st->sensors);
  return st;
}

}  // namespace outpost::detect
