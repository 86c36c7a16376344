#pragma once

// Small helpers shared by the outpost-sim subcommands: clocks, number and time formatting, a
// progress line on stderr, a duration parser for the command line.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "outpost/common/status.h"

namespace outpost::sim {

inline int64_t monoUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline int64_t wallUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2024-05-01T13:45:00.250000Z" (UTC, microseconds).
std::string isoTimeUs(int64_t us);
// Shortest text that reads back as exactly `v` (std::to_chars); "nan"/"inf" for non-finite.
std::string formatValue(double v);
// "90", "90s", "15m", "2h", "1d", "1.5h" -> microseconds. kInvalidArgument otherwise.
Result<int64_t> parseDurationUs(std::string_view text);
// "now", an ISO 8601 time ("2024-05-01", "2024-05-01T00:00:00Z") or epoch seconds -> µs.
Result<int64_t> parseTimeUs(std::string_view text);
// "1", "10", "0.5", "max" (-> 0) -> speed factor; kInvalidArgument otherwise.
Result<double> parseSpeed(std::string_view text);
// "12,345,678"
std::string withCommas(uint64_t n);

// A progress line on stderr: redrawn in place (at most 10 times a second) when stderr is a
// terminal, otherwise printed as a new line every `interval_s` seconds. Disabled when quiet.
class Progress {
 public:
  explicit Progress(bool quiet, double interval_s = 5.0);
  // fraction in [0, 1] draws a bar; negative means unknown total (no bar).
  void update(double fraction, const std::string& text, bool force = false);
  void finish();  // ends the redrawn line

 private:
  bool quiet_;
  bool tty_;
  int64_t interval_us_;
  int64_t last_us_ = 0;
  bool drawn_ = false;
};

}  // namespace outpost::sim
