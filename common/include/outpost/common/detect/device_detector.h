#pragma once

// Device-level anomaly detection: the calibrated evidence of all sensors of one device, combined.
//
// Each sensor's SensorDetector gives a calibrated surprise S_i = -log10 p_i per reading (p_i: the
// reading's tail probability under that sensor's own evidence history). The device combines the
// latest p_i of its N sensors with two tests, each correct for N:
//   - Bonferroni (one sensor far out):  p_B = min(1, N * min_i p_i)
//   - Fisher (several sensors a little out): X = -2 sum ln p_i ~ chi^2(2N) under independence,
//     p_F = P(chi^2_2N >= X) = e^{-X/2} sum_{k<N} (X/2)^k / k!
// and takes p = min(1, 2 * min(p_B, p_F)) (Bonferroni over the two tests). To keep Fisher from
// adding up the ordinary noise of correlated sensors, a sensor enters it only when its own
// p_i <= fisher_p_max (a truncated product), and N counts every sensor. The device surprise is
// S = -log10 p and its score scoreFromSurprise(S), the same scale as a sensor's.
//
// Alarm: hysteresis and hold-off like a sensor's (alarm_on / alarm_off of the device's
// DetectorConfig), raised after device_min_samples consecutive evaluations >= alarm_on (at once
// for a gap: every contributing sensor silent) and ended after device_clear_samples below
// alarm_off. The event lists the sensors that contributed (S_i >= contrib_surprise
// at any evaluation during the event); its kind is `combined` when more than one contributed,
// otherwise the kind of the one sensor's evidence.
//
// Thread-safety: none; one instance per device, owned by the worker the device is pinned to.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "outpost/common/detect/detector_config.h"
#include "outpost/common/detect/sensor_detector.h"
#include "outpost/common/status.h"

namespace outpost::detect {

struct DeviceEvent {
  int64_t start_ms = 0;
  int64_t end_ms = 0;  // 0 while open
  double peak_score = 0.0;
  AnomalyKind kind = AnomalyKind::kNone;
  std::vector<uint32_t> sensors;  // indices of the contributing sensors, ascending
};

struct DeviceResult {
  double score = 0.0;     // calibrated device score, [0, 1]
  double surprise = 0.0;  // -log10 of the combined tail probability
  bool alarm = false;
  AlarmTransition transition = AlarmTransition::kNone;
};

class DeviceDetector {
 public:
  // Sensor surprise at or above which a sensor counts as contributing (p <= 0.001).
  static constexpr double kContribSurprise = 3.0;
  // A sensor enters the Fisher sum only with p_i at most this.
  static constexpr double kFisherPMax = 0.01;

  // `cfg` (alarm_on, alarm_off, device_min_samples, device_clear_samples) must be valid and
  // outlive this object.
  DeviceDetector(const DetectorConfig* cfg, uint32_t sensors);

  // Sets sensor i's latest evidence: its calibrated surprise and the kind of that evidence.
  void set(uint32_t sensor, double surprise, AnomalyKind kind);
  // Adds a sensor (e.g. one first seen live); returns its index.
  uint32_t addSensor();
  // Combines the current evidence at time ts_ms and runs the device alarm.
  DeviceResult evaluate(int64_t ts_ms);

  // Combined surprise of the given sensor surprises (exposed for tests).
  static double combine(const double* surprises, uint32_t n);

  bool alarmActive() const { return alarm_; }
  // The open event while alarmActive(), otherwise the last ended one.
  const DeviceEvent& event() const { return event_; }
  uint32_t sensors() const { return static_cast<uint32_t>(s_.size()); }

  // State image, as SensorDetector::save/restore (issue 19). At most kMaxStateSensors sensors.
  static constexpr uint32_t kMaxStateSensors = 4096;
  void save(std::string& out) const;
  Status restore(std::span<const uint8_t>& in);
  // Every member of the state (not cfg_), for both directions; a new member is added here.
  template <class Ar>
  void fields(Ar& ar);
  // Bytes of this class that are neither in fields(), cfg_ nor padding (unit test: empty).
  static std::string unlistedStateBytes();

 private:
  const DetectorConfig* cfg_;
  std::vector<double> s_;
  std::vector<AnomalyKind> kind_;
  std::vector<uint8_t> contrib_;  // during the open event
  DeviceEvent event_;
  int64_t last_high_ts_ = 0;
  uint32_t below_ = 0;
  uint32_t above_ = 0;  // consecutive evaluations >= alarm_on while no alarm is open
  int64_t above_since_ms_ = 0;
  bool alarm_ = false;
};

}  // namespace outpost::detect
