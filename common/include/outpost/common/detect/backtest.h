#pragma once

// Offline replay of a CSV file through one SensorDetector: the engine behind
// `outpost-aggregator detect --input FILE.csv`. No look-ahead: each output row is written from
// the readings up to and including its input row.

#include <cstdint>
#include <functional>
#include <istream>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/common/detect/detector_config.h"
#include "outpost/common/detect/device_detector.h"
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

// --- One device with N sensors (multi-sensor CSV) ---

struct DeviceCsvOptions {
  // Column names (case-insensitive) that are not sensors, e.g. labels.
  std::vector<std::string> ignore;
  // Column names read as 0/1 labels and handed to the row callback (must not be sensors).
  std::vector<std::string> labels;
  // Detector configuration of a sensor (by column name); nullptr = `device_cfg`.
  std::function<const DetectorConfig*(std::string_view sensor)> sensor_cfg;
};

// One row as the device detector saw it.
struct DeviceRow {
  std::string_view ts_text;
  int64_t ts_ms = 0;
  bool valid = true;                      // the timestamp parsed and was in order
  const std::vector<DetectResult>* sensor = nullptr;  // per sensor column
  DeviceResult device;
  const DeviceDetector* detector = nullptr;
  const std::vector<double>* labels = nullptr;  // DeviceCsvOptions::labels, NaN if missing
  const std::vector<std::string>* names = nullptr;  // sensor column names
};

struct DeviceCsvStats {
  uint64_t rows = 0;
  uint64_t bad_rows = 0;       // timestamp unparseable or out of order (state unchanged)
  uint64_t bad_values = 0;     // sensor cells that did not parse (that sensor skipped)
  uint64_t device_alarms = 0;  // device alarms raised
  std::vector<std::string> sensors;  // sensor column names, in order
  std::vector<bool> label_present;   // per DeviceCsvOptions::labels: the column exists
};

// Reads a CSV with a header: one time column (the first named timestamp/time/ts/datetime/date,
// else the first column), N sensor columns (every other column not in `ignore` or `labels`),
// separated by ',' or ';' (the header decides: ';' when it has more ';' than ','). Runs one
// SensorDetector per sensor column and a DeviceDetector over them (`device_cfg`), row by row, no
// look-ahead, and calls `row` for every data row (a label column that is missing reads NaN).
// kInvalidArgument: empty input, no sensor column, an invalid config.
Result<DeviceCsvStats> runDeviceCsv(std::istream& in, const DetectorConfig& device_cfg,
                                    const DeviceCsvOptions& opt,
                                    const std::function<void(const DeviceRow&)>& row);

// The backtest of a multi-sensor CSV: writes `timestamp,<sensor>_score...,device_score,
// device_alarm,device_kind,device_sensors` (device_sensors: contributing sensor names joined by
// '|', while the device alarm is active).
Result<DeviceCsvStats> backtestDeviceCsv(std::istream& in, std::ostream& out,
                                         const DetectorConfig& device_cfg,
                                         const DeviceCsvOptions& opt);

}  // namespace outpost::detect
