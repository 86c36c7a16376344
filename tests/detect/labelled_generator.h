#pragma once

// Labelled synthetic sensor data for the detector quality program and tests: realistic signals
// (AR(1) noise, daily seasonality with harmonics and day-to-day variation, optional ADC
// quantisation, irregular sampling with dropped readings, any magnitude) with injected
// anomalies and their ground-truth intervals. Deterministic from the seed.

#include <cstdint>
#include <string>
#include <vector>

#include "outpost/common/detect/detector_config.h"
#include "outpost/common/detect/sensor_detector.h"

namespace outpost::detect::testing {

struct LabelledEvent {
  AnomalyKind kind;
  int64_t start_ms;
  int64_t end_ms;  // inclusive; the last timestamp affected (for silence: when data resumes)
};

struct LabelledSeries {
  std::vector<int64_t> ts_ms;
  std::vector<double> value;
  std::vector<LabelledEvent> events;
  DetectorConfig cfg;  // defaults + the sensor's physical limits (range, rate)
  double sigma = 1.0;  // marginal noise sd, for reference
  double days = 0.0;
  std::string description;  // the generator's parameters, for diagnostics
};

struct GeneratorOptions {
  uint64_t seed = 1;
  double days = 6.0;
  int anomalies = 8;      // per series; 0 for clean data
  double first_anomaly_day = 1.0;  // anomalies start after this much history
};

// One sensor's series. `index` selects an independent stream for the same seed.
LabelledSeries generateSeries(const GeneratorOptions& opt, uint64_t index);

}  // namespace outpost::detect::testing
