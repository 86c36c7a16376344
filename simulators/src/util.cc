#include "outpost/sim/util.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "outpost/common/detect/backtest.h"

namespace outpost::sim {

std::string isoTimeUs(int64_t us) {
  const int64_t secs = us >= 0 ? us / 1'000'000 : (us - 999'999) / 1'000'000;
  const int64_t frac = us - secs * 1'000'000;
  const time_t t = static_cast<time_t>(secs);
  tm tmv{};
  gmtime_r(&t, &tmv);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tmv.tm_year + 1900,
                tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

std::string formatValue(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

Result<int64_t> parseDurationUs(std::string_view text) {
  std::string s(text);
  double mult = 1e6;
  if (!s.empty()) {
    switch (s.back()) {
      case 's':
        mult = 1e6;
        s.pop_back();
        break;
      case 'm':
        mult = 60e6;
        s.pop_back();
        break;
      case 'h':
        mult = 3600e6;
        s.pop_back();
        break;
      case 'd':
        mult = 86400e6;
        s.pop_back();
        break;
      default:
        break;
    }
  }
  double v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || !(v >= 0) ||
      v * mult > 9e18) {
    return fail(ErrorCode::kInvalidArgument,
                "'" + std::string(text) + "' is not a duration (e.g. 90, 90s, 15m, 2h, 1d)");
  }
  return static_cast<int64_t>(std::llround(v * mult));
}

Result<int64_t> parseTimeUs(std::string_view text) {
  if (text == "now") return wallUs();
  auto ms = detect::parseTimestampMs(text);
  if (!ms) {
    return fail(ErrorCode::kInvalidArgument,
                "'" + std::string(text) +
                    "' is not a time (now, 2024-05-01, 2024-05-01T00:00:00Z or epoch seconds)");
  }
  return *ms * 1000;
}

Result<double> parseSpeed(std::string_view text) {
  if (text == "max") return 0.0;
  std::string s(text);
  if (!s.empty() && (s.back() == 'x' || s.back() == 'X')) s.pop_back();
  double v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || !(v > 0) || v > 1e9) {
    return fail(ErrorCode::kInvalidArgument,
                "'" + std::string(text) + "' is not a speed (1 = real time, 60 = 60x, max)");
  }
  return v;
}

std::string withCommas(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

Progress::Progress(bool quiet, double interval_s)
    : quiet_(quiet),
      tty_(isatty(STDERR_FILENO) == 1),
      interval_us_(static_cast<int64_t>(interval_s * 1e6)) {}

void Progress::update(double fraction, const std::string& text, bool force) {
  if (quiet_) return;
  const int64_t now = monoUs();
  if (!force && now - last_us_ < (tty_ ? 100'000 : interval_us_)) return;
  last_us_ = now;
  std::string line;
  if (fraction >= 0) {
    constexpr int kWidth = 30;
    const int fill = static_cast<int>(std::clamp(fraction, 0.0, 1.0) * kWidth);
    char pct[16];
    std::snprintf(pct, sizeof pct, "%5.1f%% ", std::clamp(fraction, 0.0, 1.0) * 100);
    line = "[" + std::string(static_cast<size_t>(fill), '#') +
           std::string(static_cast<size_t>(kWidth - fill), '.') + "] " + pct;
  }
  line += text;
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    drawn_ = true;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (!quiet_ && tty_ && drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace outpost::sim
