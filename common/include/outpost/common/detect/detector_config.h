#pragma once

// Configuration of the streaming anomaly detectors (one SensorDetector per device and sensor).
// A plain struct: the aggregator's config table fills it per sensor or sensor class and calls
// validateDetectorConfig() at start-up. Every default is meant to work on unseen data without
// tuning; the physical limits (range, rate) are off unless configured, because no default can
// know them. Units: seconds for durations, the sensor's own unit for values.

#include <cstdint>
#include <limits>

#include "outpost/common/status.h"

namespace outpost::detect {

// Upper bound of season_bins; fixes the size of the per-sensor state (<= 2 KB).
inline constexpr uint32_t kMaxSeasonBins = 96;

struct DetectorConfig {
  // --- Alarm logic (hysteresis and hold-off), on the calibrated score ---
  // The calibrated score is scoreFromSurprise(S), S = -log10 of the reading's tail probability
  // (sensor_detector.h): 0.5 at S = 4 (p = 1e-4), 0.99 at S = 6.
  double alarm_on = 0.5;        // combined score that raises an alarm
  double alarm_off = 0.01;      // an active alarm counts readings below this score (S ~ 2.7) ...
  uint32_t clear_samples = 10;  // ... and ends after this many consecutive ones (hold-off)
  uint32_t warmup_samples = 200; // no alarm (except range/rate) before this many valid readings
  // An alarm of kind level_shift or drift that lasts longer than this many readings is ended and
  // its level accepted as the new normal, so a permanent change does not alarm forever.
  uint32_t accept_after_samples = 2000;
  // Device level (device_detector.h): the device alarm is raised when the combined score has
  // stayed >= alarm_on for this many consecutive evaluations (a device in an abnormal state, not
  // one reading; single-reading spikes remain sensor events). 1 = at the first.
  uint32_t device_min_samples = 5;
  // ... and ended after this many consecutive evaluations below alarm_off (the device's hold-off;
  // a device event ends when the whole device has been calm, so it does not flap).
  uint32_t device_clear_samples = 25;

  // --- Calibration: each reading's raw evidence against this sensor's own recent evidence ---
  // Effective length (readings) of the evidence history the tail probability is taken from.
  double calib_samples = 2000.0;
  // Absolute guard: raw evidence q (1 = at a detector's own threshold) gives at most
  // S = evidence_surprise * q^2, so evidence far below every threshold never alarms however
  // quiet the sensor's history was.
  double evidence_surprise = 4.5;
  // Smallest step of the sensor's values (its resolution); 0 = learned (smallest change seen).
  // The robust sigma never falls below it, so integer and quantised sensors do not collapse.
  double resolution = 0.0;

  // --- Baseline, spikes and dips (robust EWMA of the deseasonalised value) ---
  double level_alpha = 0.05;   // EWMA weight of the local level
  double scale_alpha = 0.02;   // EWMA weight of the mean absolute residual (robust scale)
  double spike_z = 5.0;        // |residual| / sigma at which the spike score is 0.5
  uint32_t spike_max_len = 3;  // a run of outliers on one side longer than this is a level shift

  // --- Level shifts: two-sided CUSUM on the standardised residual ---
  double cusum_k = 1.0;   // slack, in sigmas
  double cusum_h = 8.0;   // cumulated sigmas at which the level-shift score is 0.5

  // --- Sustained shift: the recent level against a long reference level, in readings ---
  // The mean of the last ~shift_fast_samples deseasonalised readings against the mean of the last
  // ~shift_ref_samples (frozen during an alarm), in units of that difference's own normal spread.
  // Catches a level that moves within minutes and stays (a valve closing), which the CUSUM on
  // the residual from the fast-following local level misses; armed after shift_ref_samples.
  uint32_t shift_fast_samples = 20;
  uint32_t shift_ref_samples = 300;
  double shift_z = 5.0;  // displacement / its normal spread at which the evidence is 1

  // --- Drift: local level vs. the long-term seasonal reference ---
  double drift_z = 5.0;         // level offset / its own normal spread at which the score is 0.5
  // Time constant (seconds) of the level's normal spread. In time, not readings, so a densely
  // sampled sensor does not learn a slow drift as normal spread.
  double drift_memory_s = 86400.0;
  // Time constant (seconds) of the slow level the drift detector watches: averages the noise out,
  // so the drift is measured against the spread of slow changes only.
  double drift_tau_s = 1800.0;

  // --- Seasonality: profile over one period, linear interpolation between bins ---
  double season_period_s = 86400.0;  // 0 disables the profile
  uint32_t season_bins = 48;         // 1..kMaxSeasonBins
  double season_memory_periods = 4.0;  // the profile forgets with this time constant, in periods

  // --- Stuck / flat-lined: a run of unchanged values that normal data makes improbable ---
  double stuck_surprise = 20.0;    // -ln P(run | normal repeat rate) at which the score is 0.5
  uint32_t stuck_min_samples = 5;  // never stuck with fewer unchanged readings than this
  double stuck_tolerance = 0.0;    // |change| <= this counts as unchanged (0 = exactly equal)

  // --- Silence: a gap long compared with the sensor's usual cadence ---
  double silence_factor = 4.0;       // gap >= factor * usual interval ...
  double silence_dev_factor = 10.0;  // ... and >= usual + this * mean |interval deviation|

  // --- Physical limits (off unless set) ---
  double range_min = -std::numeric_limits<double>::infinity();
  double range_max = std::numeric_limits<double>::infinity();
  double max_rate_per_s = 0.0;  // |dvalue/dt| above this is a rate anomaly; 0 disables

  // --- Detector switches ---
  bool enable_spike = true;
  bool enable_level_shift = true;
  bool enable_shift = true;  // the sustained-shift detector (reported as level_shift)
  bool enable_drift = true;
  bool enable_stuck = true;
  bool enable_silence = true;
};

// Ok, or kInvalidArgument with a message naming the field, its value and what is allowed.
Status validateDetectorConfig(const DetectorConfig& cfg);

}  // namespace outpost::detect
