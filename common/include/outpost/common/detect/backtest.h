#pragma once

// Offline replay of a CSV file through one SensorDetector: the engine behind
// `outpost-aggregator detect --input FILE.csv`. No look-ahead: each output row is written from
// the readings up to and including its input row.

#include <cstdint>
#include <istream>
#include <ostream>
#include <string_view>

#include "outpost/common/detect/detector_config.h"
#include "outpost/common/status.h"

namespace outpost::detect {

// Parses a timestamp into milliseconds since the Unix epoch (UTC):
//   "2024-05-01 13:45:00", "2024-05-01T13:45:00Z", "2024-05-01T13:45:00.250+02:00",
//   "2024-05-01 13:45", "2024-05-01", epoch seconds "1714571100" or "1714571100.25", epoch
//   milliseconds "1714571100000" (an integer >= 1e11 is taken as milliseconds, i.e. seconds
//   after the year 5138 are not supported). Without a zone, UTC. Surrounding spaces and quotes
//   are ignored. kInvalidArgument otherwise.
Result<int64_t> parseTimestampMs(std::string_view text);

struct BacktestStats {
  uint64_t rows = 0;      // data rows read (= rows written)
  uint64_t bad_rows = 0;  // rows whose timestamp or value did not parse (written with score 0)
  uint64_t alarms = 0;    // alarms raised
};

// Reads CSV with a header naming columns `timestamp` and `value` (case-insensitive, any order,
// other columns ignored), or without a header (then column 1 = timestamp, 2 = value). Writes
// `timestamp,value,anomaly_score,alarm,kind` with one row per input row: timestamp and value
// echoed as read, the combined score (6 decimals), 1/0 for an active alarm, and the open
// alarm's kind (empty without alarm). Rows out of time order are scored 0 and do not change the
// state. Errors (kInvalidArgument): empty input, header without the needed columns, invalid
// config.
Result<BacktestStats> backtestCsv(std::istream& in, std::ostream& out, const DetectorConfig& cfg);

}  // namespace outpost::detect
