#pragma once

// Streaming anomaly detection for one sensor of one device.
//
// One fused class runs every detector (spike/dip, level shift, drift, stuck, rate, range,
// silence) over a shared deseasonalised baseline, instead of a list of `Detector` objects behind
// a virtual interface: the detectors share most of their state (level, robust scale, seasonal
// profile, previous value), a fused update computes it once, and it costs no virtual call or
// pointer chase per detector - the budget is 5,000,000 updates/s per core. Work per reading is
// constant (no loop over history); the state is a fixed-size object (static_assert <= 2 KB) that
// never allocates.
//
// Raw evidence: every detector measures its evidence q >= 0 in units of its own threshold (q = 1
// at the threshold). The raw evidence of a reading is the largest.
//
// Calibrated score (Ahmad et al. 2017, "anomaly likelihood"): the raw evidence x = ln(1 + q) is
// compared with the recent distribution of the same sensor's evidence, a decayed histogram of
// its past x (kCalibBins bins, effective length calib_samples readings). The tail probability
// p = P(X >= x) is read from the histogram (linear within a bin) and beyond the largest evidence
// seen it decays exponentially (a factor e per kCalibTail of x), so a sensor whose history is
// full of bursts does not alarm on a burst, and a flat sensor alarms on its first real change.
// The surprise S = -log10 p is capped by evidence_surprise * q^2 (evidence far below every
// threshold never alarms). score = scoreFromSurprise(S): 0.5 at S = 4, 0.99 at S = 6, and 1.0
// only in double rounding for astronomic evidence. Range and rate (hard physical limits) give 0
// inside the limit and 0.5 + 0.5 * q^2/(1+q^2) with q = relative excess outside it.
//
// Alarm: raised when the combined score reaches alarm_on (after warm-up), ended after
// clear_samples consecutive readings below alarm_off; readings in between belong to the same
// event, so one event gives one alarm. While an alarm is active (or the score is above alarm_off)
// the baseline does not learn from the data, so an anomaly does not become the norm.
//
// Thread-safety: none; one instance is owned by one detector worker (design.md: a device is
// pinned to one worker). The DetectorConfig is borrowed and must outlive the detector; many
// detectors may share one config.

#include <cstdint>
#include <span>
#include <string>

#include "outpost/common/detect/detector_config.h"
#include "outpost/common/status.h"

namespace outpost::detect {

enum class AnomalyKind : uint8_t {
  kNone,
  kSpike,
  kDip,
  kLevelShift,
  kDrift,
  kStuck,
  kRate,
  kRange,
  kSilence,
  kCombined,  // device level: the evidence of several sensors together (device_detector.h)
};
// "spike", "dip", "level_shift", "drift", "stuck", "rate", "range", "silence", "combined"; ""
// for kNone.
const char* kindName(AnomalyKind kind);
// Name of the detector that reports a kind: "robust_ewma_z", "cusum", "seasonal_level_drift",
// "stuck_run", "rate_limit", "range_limit", "cadence_silence", "device_combined"; "" for kNone.
const char* detectorName(AnomalyKind kind);

// One alarm. Published when raised (end_ms == 0, the event is still open) and again when ended.
struct AnomalyEvent {
  int64_t start_ms = 0;     // timestamp of the reading (or poll) that raised the alarm
  int64_t end_ms = 0;       // last reading with score >= alarm_off; 0 while the alarm is open
  double value = 0.0;       // value of the reading that raised the alarm (NaN for silence)
  double peak_score = 0.0;  // highest combined score during the event
  double expected_lo = 0.0; // expected range at the raising reading
  double expected_hi = 0.0;
  AnomalyKind kind = AnomalyKind::kNone;  // may be refined while open (spike -> level_shift)
};

// kChanged: device alarms only (device_detector.h) - the open event's evidence subsided or
// resumed; the alarm stays open.
enum class AlarmTransition : uint8_t { kNone, kRaised, kEnded, kChanged };

struct DetectResult {
  double score = 0.0;  // calibrated score of this reading, [0, 1]
  double surprise = 0.0;   // -log10 of its tail probability (0: nothing unusual)
  double raw_score = 0.0;  // raw evidence as q^2 / (1 + q^2), before calibration
  AnomalyKind kind = AnomalyKind::kNone;  // strongest evidence of this reading (kNone if < off)
  bool alarm = false;                     // an alarm is active after this reading
  AlarmTransition transition = AlarmTransition::kNone;  // what this reading did to the alarm
  bool valid = true;  // false: NaN/inf value or timestamp older than the previous reading
  double expected_lo = 0.0;  // expected range for this reading (before it was seen)
  double expected_hi = 0.0;
  // poll() only: an open alarm of another kind was ended (previousEvent()) before this silence
  // alarm was raised - a device going offline is its own event.
  bool replaced = false;
};

// Calibrated score of a surprise S = -log10(p): S^11 / (S^11 + 4^11).
double scoreFromSurprise(double surprise);
// Its inverse (score in [0, 1); 1 gives a large finite surprise).
double surpriseFromScore(double score);

inline constexpr int kCalibBins = 40;
inline constexpr double kCalibBinWidth = 0.125;  // in x = ln(1 + q)
inline constexpr double kCalibTail = 0.1;       // e-folding of p beyond the largest x seen

class SensorDetector {
 public:
  // `cfg` must be valid (validateDetectorConfig) and outlive this object.
  explicit SensorDetector(const DetectorConfig* cfg);

  // Feeds one reading. Timestamps in milliseconds (any epoch), non-decreasing; an older reading
  // or a non-finite value is ignored (valid = false) and leaves the state unchanged.
  DetectResult update(int64_t ts_ms, double value);

  // Checks for silence at wall time `now_ms` without a reading; call it periodically (e.g. every
  // few seconds per worker). Raises a silence alarm when the gap since the last reading exceeds
  // the cadence threshold; an open alarm of another kind is ended first (result.replaced). Never
  // ends a silence alarm (only readings do).
  DetectResult poll(int64_t now_ms);

  bool alarmActive() const { return alarm_; }
  // The open event while alarmActive(); otherwise the last ended event.
  const AnomalyEvent& event() const { return event_; }
  // The event a silence alarm replaced (DetectResult::replaced).
  const AnomalyEvent& previousEvent() const { return prev_event_; }
  uint64_t validReadings() const { return n_; }
  const DetectorConfig* config() const { return cfg_; }

  // State image (issue 19: moving a sensor to another process). save() appends a versioned
  // little-endian image of the whole state (not the config); restore() reads one image from the
  // front of `in` and consumes it. Truncated, oversized or garbage input, or another version: an
  // error, and neither this object nor `in` changes. Doubles and floats are restored bit-exact.
  void save(std::string& out) const;
  Status restore(std::span<const uint8_t>& in);
  // Every member of the state, for both directions (state_io.h); a new member is added here.
  // Not cfg_ nor period_ms_/bins_per_ms_ (recomputed from the config by the constructor).
  template <class Ar>
  void fields(Ar& ar);
  // Bytes of this class that are neither in fields(), the config members nor padding; empty
  // when the list is complete (a unit test checks it).
  static std::string unlistedStateBytes();

 private:

  void raiseOrExtend(int64_t ts_ms, double value, double score, AnomalyKind kind, double lo,
                     double hi, DetectResult* r);
  void endAlarm(DetectResult* r);
  double seasonal(int64_t ts_ms, int* i0, int* i1, double* f);
  // Surprise -log10 P(X >= x) under the evidence history; learnCalib adds x with weight factor.
  struct CalibHist;
  double calibSurprise(const CalibHist& h, double x) const;
  void learnCalib(double x_fast, double x_shift, double factor);
  double interpolate(int i0, int i1, double f) const;

  const DetectorConfig* cfg_;
  // From the config, computed once: the season period and bins per millisecond.
  int64_t period_ms_ = 0;
  double bins_per_ms_ = 0.0;
  // Phase of the last reading: the next phase is found by adding the interval (no division).
  int64_t phase_ts_ = 0;
  int64_t phase_ms_ = -1;
  // Time and cadence.
  int64_t first_ts_ = 0;
  int64_t last_ts_ = 0;
  int64_t last_high_ts_ = 0;  // last reading of the open event with score >= alarm_off
  double last_x_ = 0.0;
  double cadence_s_ = 0.0;      // EWMA of the interval between readings
  double cadence_dev_s_ = 0.0;  // EWMA of |interval - cadence|
  // Baseline: x = off_ + profile(phase) + base_ + noise.
  double off_ = 0.0;    // accepted level (moves when a level shift is accepted)
  double base_ = 0.0;   // local level of the deseasonalised value
  double mad_ = 0.0;    // EWMA of |residual|; sigma = 1.2533 * mad_
  // The same per side (residual > 0, < 0): counts are skewed (a wider tail above than below),
  // and a count's spike is measured against the scale of its own side.
  double mad_up_ = 0.0;
  double mad_dn_ = 0.0;
  double slow_ = 0.0;      // slow level (time constant drift_tau_s) of the deseasonalised value
  double base_var_ = 0.0;  // EWMA of slow_^2 in normal operation (drift reference spread)
  double last_profile_ = 0.0;
  // Sustained shift: fast and reference means of the deseasonalised value, normal spread of
  // their difference.
  double sfast_ = 0.0;
  double sref_ = 0.0;
  double svar_ = 0.0;
  // CUSUM.
  double g_pos_ = 0.0;
  double g_neg_ = 0.0;
  double rho_ = 0.0;     // lag-1 autocorrelation of the standardised residual
  double last_z_ = 0.0;
  // Stuck.
  double p_repeat_ = 0.0;
  double stuck_surprise_ = 0.0;
  double stuck_p0_ = 0.0;  // repeat rate when the current run started
  double res_ = 0.0;       // typical non-zero change (learned resolution = half of it)
  // Calibration: decayed histogram of x = ln(1 + raw evidence); a new reading adds calib_w_,
  // which grows by 1/calib_samples per reading (rescaled when large) instead of decaying all.
  struct CalibHist {
    double total = 0.0;
    float bins[kCalibBins] = {};
  };
  double calib_w_ = 1.0;
  CalibHist calib_fast_;   // spike/dip, CUSUM, stuck, silence
  CalibHist calib_shift_;  // sustained shift
  uint64_t n_ = 0;  // valid readings
  uint32_t learn_n_ = 0;  // readings the drift spread has learned from
  double learn_s_ = 0.0;  // seconds of data it has learned from
  int64_t settle_until_ms_ = 0;  // after an accepted level: drift off, then the level re-accepted
  uint32_t stuck_len_ = 0;
  uint32_t changes_ = 0;  // readings that differed from the previous one (saturating)
  uint32_t run_len_ = 0;  // consecutive outliers on one side
  uint32_t below_ = 0;    // consecutive readings below alarm_off while the alarm is active
  uint32_t alarm_len_ = 0;
  uint16_t hot_fast_ = 0;   // consecutive learned readings with evidence at its threshold or above
  uint16_t hot_shift_ = 0;  // the same for the sustained-shift evidence
  // Counts: fast evidence x of the previous reading, learned at a tenth of the weight for being
  // surprising (< 0: none); topped up to full weight if the next reading is back to normal.
  float burst_x_ = -1.0f;
  int8_t run_sign_ = 0;
  bool alarm_ = false;
  bool calib_armed_ = false;  // the history was restarted when the detectors were armed
  bool integral_ = true;      // every reading so far was an integer (a count)
  float run_y_[8] = {};
  AnomalyEvent event_;
  AnomalyEvent prev_event_;
  // Seasonal profile (relative to off_) and the weight each bin has learned from.
  double profile_[kMaxSeasonBins] = {};
  float profile_w_[kMaxSeasonBins] = {};
};

}  // namespace outpost::detect
