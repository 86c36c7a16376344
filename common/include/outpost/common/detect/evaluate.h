#pragma once

// `outpost-aggregator score`: runs the device detector over labelled multi-sensor CSV files and
// scores its own alarms (scoring.h): NAB on the changepoint label (windows to the right of each
// changepoint) with the device alarm's transitions as detections - the row where an alarm is
// raised and the row where it ends are both the detector saying "the state changed here" (the
// open and the ended event on Kafka); the raise-only figure is reported beside it - and
// point-wise metrics on the anomaly label with the device alarm state of every row. Files are
// grouped by their directory.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "outpost/common/detect/backtest.h"
#include "outpost/common/detect/scoring.h"
#include "outpost/common/status.h"

namespace outpost::detect {

struct EvalOptions {
  DeviceCsvOptions csv;                        // ignore: columns that are neither time nor sensor
  std::string anomaly_label = "anomaly";       // point-wise label column (0/1)
  std::string changepoint_label = "changepoint";  // NAB label column (1 at a changepoint)
  int64_t window_ms = 60000;                   // NAB window to the right of a changepoint
};

struct EvalGroup {
  std::string name;  // directory
  size_t files = 0;
  double hours = 0.0;       // time covered by the files
  double normal_hours = 0.0;  // rows labelled normal (or files without labels), in hours
  uint64_t device_alarms = 0;
  uint64_t normal_alarms = 0;  // device alarms raised on a row labelled normal (or unlabelled)
  NabScore nab[3];             // standard, reward_low_FP_rate, reward_low_FN_rate
  NabScore nab_onsets;         // standard, alarm raises only
  PointCounts points;          // files with an anomaly label only
};

// Runs every file; returns groups in order of first appearance plus a last group "all".
// kInvalidArgument/kIo naming the file when one cannot be read or parsed.
Result<std::vector<EvalGroup>> evaluateFiles(const std::vector<std::string>& files,
                                             const DetectorConfig& cfg, const EvalOptions& opt);

// Markdown table of the groups.
void writeEvalTable(const std::vector<EvalGroup>& groups, std::ostream& out);

}  // namespace outpost::detect
