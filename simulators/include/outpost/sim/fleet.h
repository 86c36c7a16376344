#pragma once

// The fleet model of outpost-sim: N devices x M sensors with realistic signals, per-device clock
// skew and jitter, and injected anomalies with ground-truth labels. Deterministic: the same
// FleetOptions (seed included) give the same readings and labels, bit for bit, on the same
// platform (own RNG and normal draws; no std:: distributions, whose output is unspecified).
//
// Time is simulated: step() generates the next interval [now, now + interval) of every device.
// Whether that is paced in real time, N x faster or as fast as possible is the caller's business.
//
// Independence: each device and sensor has its own random streams, and the anomaly streams are
// separate from the signal streams. A run with anomalies therefore has exactly the readings of the
// same run without anomalies, except inside the labelled intervals (tests rely on this).
//
// Thread-safety: none; one thread owns a Fleet.

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/common/codec.h"

namespace outpost::sim {

// splitmix64: small, fast, good enough for simulation, and fully specified.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal();  // mean 0, sd 1 (Box-Muller, own code)
  double exponential(double mean) { return -mean * std::log1p(-uniform()); }
  // An independent stream for (seed, a, b, c): streams never share state.
  static Rng derive(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0);

 private:
  uint64_t s_;
  bool have_spare_ = false;
  double spare_ = 0.0;
};

enum class SensorKind : uint8_t {
  kTemperature,  // degC: daily cycle + weather (mean-reverting) + noise
  kHumidity,     // %RH: moves against temperature
  kVibration,    // mm/s RMS of a machine with duty cycles
  kCurrent,      // A: load steps while the machine runs, idle current otherwise
  kPower,        // W: follows the current
  kPressure,     // hPa: slow drift (random walk) + semi-diurnal tide
  kCounter,      // count: parts produced while the machine runs (monotonic)
};
inline constexpr int kSensorKinds = 7;
const char* sensorKindName(SensorKind kind);
const char* sensorKindUnit(SensorKind kind);
double defaultRateHz(SensorKind kind);

enum class AnomalyKind : uint8_t {
  kSpike,       // one reading far above normal
  kDip,         // one reading far below normal
  kLevelShift,  // an offset for a while
  kDrift,       // an offset growing linearly from 0 (sensor ageing), reset at the end
  kStuck,       // the value freezes
  kNoiseBurst,  // much larger noise for a while
  kDropout,     // the sensor is silent (no readings)
  kOffline,     // the whole device is silent (sensor "*" in labels)
};
inline constexpr int kAnomalyKinds = 8;
// "spike", "dip", "level_shift", "drift", "stuck", "noise_burst", "dropout", "offline".
const char* anomalyKindName(AnomalyKind kind);
std::optional<AnomalyKind> parseAnomalyKind(std::string_view name);

struct FleetOptions {
  uint64_t seed = 1;
  int devices = 10;
  int sensors = kSensorKinds;  // sensor kinds cycle: temperature, humidity, vibration_rms, ...
  std::string device_prefix = "sim-";
  int64_t start_us = 0;             // simulated start (device clocks add their skew)
  int64_t end_us = 0;               // simulated end (labels are clamped to it); 0 = open-ended
  int64_t interval_us = 1'000'000;  // one step (one batch per device in MQTT mode)
  double rate_hz = 0.0;             // every sensor samples at this rate; 0 = per-kind defaults
  double skew_ms = 500.0;           // sd of each device clock's constant offset
  double drift_ppm = 20.0;          // sd of each device clock's rate error
  double jitter_ms = 20.0;          // max sampling jitter (never more than a quarter period)
  double anomaly_rate = 0.2;        // sensor anomalies per sensor-hour (Poisson)
  double offline_rate = 0.02;       // device offline episodes per device-hour
  double anomaly_warmup_s = 0;      // no anomaly starts in the first seconds of the run
  double duration_scale = 1.0;      // multiplies every anomaly duration
  std::vector<AnomalyKind> kinds;   // sensor anomaly kinds to inject; empty = all but offline
};

// Ground truth of one injected anomaly. Times are device timestamps (what the readings carry),
// inclusive: a reading of `sensor` with start_us <= ts_us <= end_us is affected. Spikes and dips
// affect one reading: start_us == end_us == its timestamp. Offline: sensor "*".
struct Label {
  std::string device;
  std::string sensor;
  AnomalyKind kind;
  int64_t start_us;
  int64_t end_us;
  double magnitude;  // offset / peak / noise sd in sensor units; 0 for stuck, dropout, offline
};
std::string labelJson(const Label& label);  // one JSON object, no newline

struct DeviceStep {
  std::vector<wire::Reading> readings;  // in time order
  // Parallel to readings: 0 = clean, else 1 + the AnomalyKind that changed the reading.
  std::vector<uint8_t> anomaly;
  bool offline = false;  // the device was offline for part of the step
};

class Fleet {
 public:
  // Throws std::invalid_argument on options out of range (the message names the option).
  explicit Fleet(const FleetOptions& options);
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // Generates [now(), now() + interval) for every device: out[d] for device d (resized to the
  // device count), labels of anomalies that started in this step appended to `labels`.
  void step(std::vector<DeviceStep>& out, std::vector<Label>& labels);

  int64_t now() const { return now_us_; }
  int devices() const;
  const std::string& deviceName(int d) const;
  // The sensor dictionary (same for every device).
  const std::vector<codec::SensorInfo>& sensors() const { return sensor_info_; }
  const FleetOptions& options() const { return opt_; }

  struct Device;  // implementation detail (fleet.cc)

 private:
  FleetOptions opt_;
  int64_t now_us_;
  std::vector<codec::SensorInfo> sensor_info_;
  std::vector<Device> devices_;
  struct Tagged {
    wire::Reading r;
    uint8_t tag;
  };
  std::vector<Tagged> scratch_;
};

// Seed-derived stream epoch for a simulated device (never 0): the same run gives the same epoch.
uint64_t deviceEpoch(uint64_t seed, int64_t start_us, int device);

}  // namespace outpost::sim
