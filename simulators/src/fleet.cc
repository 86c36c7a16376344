#include "outpost/sim/fleet.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numbers>
#include <stdexcept>

#include "outpost/common/json.h"

namespace outpost::sim {
namespace {

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kNever = std::numeric_limits<int64_t>::max() / 4;
constexpr int64_t kStateStepUs = 10 * kSecond;  // machine, weather and drift advance in 10 s steps
constexpr double kTwoPi = 2.0 * std::numbers::pi;

struct KindModel {
  const char* name;
  const char* unit;
  double rate_hz;     // default sampling rate
  double scale;       // typical size of a deviation (anomaly magnitudes are multiples of it)
  double resolution;  // values are rounded to this (ADC / firmware resolution)
  bool non_negative;
};
constexpr std::array<KindModel, kSensorKinds> kModels = {{
    {"temperature", "degC", 0.2, 1.0, 0.01, false},
    {"humidity", "%RH", 0.2, 3.0, 0.1, true},
    {"vibration_rms", "mm/s", 2.0, 0.8, 0.001, true},
    {"current", "A", 1.0, 1.0, 0.01, true},
    {"power", "W", 1.0, 200.0, 0.1, true},
    {"pressure", "hPa", 0.1, 1.0, 0.01, true},
    {"counter", "count", 0.1, 10.0, 1.0, true},
}};

constexpr std::array<const char*, kAnomalyKinds> kAnomalyNames = {
    "spike", "dip", "level_shift", "drift", "stuck", "noise_burst", "dropout", "offline"};

const KindModel& model(SensorKind k) { return kModels[static_cast<size_t>(k)]; }

struct Anomaly {
  AnomalyKind kind = AnomalyKind::kSpike;
  int64_t start = kNever;  // device time, inclusive
  int64_t end = kNever;
  double magnitude = 0.0;
  bool labelled = false;
  bool have_stuck = false;
  double stuck = 0.0;
};

struct SensorSim {
  SensorKind kind;
  uint16_t id;
  std::string name;
  int64_t period_us;
  int64_t jitter_us;
  int64_t next_nominal;
  Rng noise;
  Rng anom;
  Anomaly cur;
  double counter = 0.0;
};

// Division by an exact power of ten gives the double nearest to the decimal (13.62, not
// 13.620000000000001), so values print short.
double roundTo(double v, double step) {
  const double inv = std::round(1.0 / step);
  return std::round(v * inv) / inv;
}

std::string isoTime(int64_t us) {
  const time_t secs = static_cast<time_t>(us >= 0 ? us / kSecond : (us - kSecond + 1) / kSecond);
  const int64_t frac = us - static_cast<int64_t>(secs) * kSecond;
  tm t{};
  gmtime_r(&secs, &t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

}  // namespace

double Rng::normal() {
  if (have_spare_) {
    have_spare_ = false;
    return spare_;
  }
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(kTwoPi * u2);
  have_spare_ = true;
  return r * std::cos(kTwoPi * u2);
}

Rng Rng::derive(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  Rng r(seed ^ 0x6a09e667f3bcc909ull);
  uint64_t s = r.next();
  for (uint64_t x : {a, b, c}) {
    Rng m(s ^ (x * 0x9e3779b97f4a7c15ull + 0x3c6ef372fe94f82bull));
    s = m.next();
  }
  return Rng(s);
}

const char* sensorKindName(SensorKind kind) { return model(kind).name; }
const char* sensorKindUnit(SensorKind kind) { return model(kind).unit; }
double defaultRateHz(SensorKind kind) { return model(kind).rate_hz; }

const char* anomalyKindName(AnomalyKind kind) { return kAnomalyNames[static_cast<size_t>(kind)]; }

std::optional<AnomalyKind> parseAnomalyKind(std::string_view name) {
  for (size_t i = 0; i < kAnomalyNames.size(); ++i) {
    if (name == kAnomalyNames[i]) return static_cast<AnomalyKind>(i);
  }
  return std::nullopt;
}

std::string labelJson(const Label& l) {
  char mag[64];  // 6 significant digits: a label, not a measurement
  std::snprintf(mag, sizeof mag, "%.6g", l.magnitude);
  std::string o;
  json::Writer(o)
      .beginObject()
      .member("device", l.device)
      .member("sensor", l.sensor)
      .member("kind", anomalyKindName(l.kind))
      .member("start_us", l.start_us)
      .member("end_us", l.end_us)
      .member("start", isoTime(l.start_us))
      .member("end", isoTime(l.end_us))
      .key("magnitude")
      .raw(std::isfinite(l.magnitude) ? std::string_view(mag) : std::string_view("null"))
      .endObject();
  return o;
}

uint64_t deviceEpoch(uint64_t seed, int64_t start_us, int device) {
  Rng r =
      Rng::derive(seed, 0xe90c4, static_cast<uint64_t>(start_us), static_cast<uint64_t>(device));
  const uint64_t e = r.next() >> 1;  // 63 bits, like the agent's epochs
  return e ? e : 1;
}

struct Fleet::Device {
  std::string name;
  Rng state_rng;
  Rng offline_rng;
  double offset_us;  // device clock = nominal + offset + drift * (nominal - start)
  double drift;
  // Site and machine character.
  double temp_mean, temp_amp, hum_mean, lon_h, vib_on, parts_per_s, pressure_base;
  // State, advanced in kStateStepUs steps up to state_t.
  int64_t state_t;
  double weather = 0.0;
  bool machine_on = false;
  int64_t machine_next = 0;
  double load = 0.0;
  int64_t load_next = 0;
  double pressure_drift = 0.0;
  Anomaly offline;
  std::vector<SensorSim> sensors;

  int64_t deviceTime(int64_t nominal, int64_t start) const {
    return nominal +
           static_cast<int64_t>(std::llround(offset_us + drift * double(nominal - start)));
  }
};

namespace {

void advanceState(Fleet::Device& d, int64_t t) {
  constexpr double dt = double(kStateStepUs) / kSecond;
  constexpr double tau = 6 * 3600.0;  // weather decorrelation time
  constexpr double weather_sd = 2.0;  // degC
  static constexpr double kLoads[] = {4.0, 7.5, 11.0, 14.5};
  while (d.state_t + kStateStepUs <= t) {
    d.state_t += kStateStepUs;
    d.weather +=
        -d.weather * dt / tau + weather_sd * std::sqrt(2 * dt / tau) * d.state_rng.normal();
    if (d.state_t >= d.machine_next) {
      d.machine_on = !d.machine_on;
      const double mean_s = d.machine_on ? 40 * 60.0 : 15 * 60.0;
      d.machine_next = d.state_t + static_cast<int64_t>(d.state_rng.exponential(mean_s) * kSecond) +
                       kStateStepUs;
      if (d.machine_on) d.load_next = d.state_t;
    }
    if (d.machine_on && d.state_t >= d.load_next) {
      d.load = kLoads[d.state_rng.next() % 4];
      d.load_next = d.state_t + static_cast<int64_t>(d.state_rng.exponential(10 * 60.0) * kSecond);
    }
    d.pressure_drift += 0.02 * d.state_rng.normal() - d.pressure_drift * dt / (3 * 86400.0);
  }
}

// The clean (anomaly-free) value of a sensor at nominal time t. Consumes the sensor's noise stream
// the same way whatever the anomalies do.
double cleanValue(Fleet::Device& d, SensorSim& s, int64_t t) {
  const double tod_h = std::fmod(double(t) / 3.6e9 + d.lon_h + 48.0, 24.0);
  const double diurnal = d.temp_amp * std::sin(kTwoPi * (tod_h - 9.0) / 24.0);
  const double n = s.noise.normal();
  switch (s.kind) {
    case SensorKind::kTemperature:
      return d.temp_mean + diurnal + d.weather + 0.08 * n;
    case SensorKind::kHumidity:
      return std::clamp(d.hum_mean - 2.2 * (diurnal + d.weather) + 0.4 * n, 3.0, 100.0);
    case SensorKind::kVibration:
      if (d.machine_on) {
        return std::max(0.0, d.vib_on * (0.85 + 0.02 * d.load) * (1.0 + 0.08 * n));
      }
      return 0.12 + 0.02 * std::fabs(n);
    case SensorKind::kCurrent:
      return d.machine_on ? d.load + 0.08 * n : 0.35 + 0.03 * n;
    case SensorKind::kPower:
      return (d.machine_on ? d.load : 0.35) * 230.0 * 0.93 + 12.0 * n;
    case SensorKind::kPressure:
      return d.pressure_base + d.pressure_drift + 0.5 * std::sin(kTwoPi * tod_h / 12.0) + 0.05 * n;
    case SensorKind::kCounter: {
      const double u = s.noise.uniform();
      if (d.machine_on) {
        s.counter += std::floor(d.parts_per_s * double(s.period_us) / kSecond + u);
      }
      return s.counter;
    }
  }
  return 0.0;
}

int64_t durationUs(AnomalyKind k, Rng& r, double scale) {
  double lo = 0, hi = 0;
  switch (k) {
    case AnomalyKind::kSpike:
    case AnomalyKind::kDip:
      return 0;
    case AnomalyKind::kLevelShift:
      lo = 600;
      hi = 3600;
      break;
    case AnomalyKind::kDrift:
      lo = 1800;
      hi = 7200;
      break;
    case AnomalyKind::kStuck:
      lo = 300;
      hi = 1800;
      break;
    case AnomalyKind::kNoiseBurst:
      lo = 60;
      hi = 600;
      break;
    case AnomalyKind::kDropout:
      lo = 120;
      hi = 1200;
      break;
    case AnomalyKind::kOffline:
      lo = 120;
      hi = 1800;
      break;
  }
  return static_cast<int64_t>(r.uniform(lo, hi) * scale * kSecond);
}

double magnitude(AnomalyKind k, Rng& r, double scale) {
  const double sign = r.uniform() < 0.5 ? -1.0 : 1.0;
  switch (k) {
    case AnomalyKind::kSpike:
    case AnomalyKind::kDip:
      return scale * r.uniform(6, 12);
    case AnomalyKind::kLevelShift:
      return sign * scale * r.uniform(3, 6);
    case AnomalyKind::kDrift:
      return sign * scale * r.uniform(3, 8);
    case AnomalyKind::kNoiseBurst:
      return scale * r.uniform(2, 5);
    default:
      return 0.0;
  }
}

}  // namespace

Fleet::Fleet(const FleetOptions& o) : opt_(o), now_us_(o.start_us) {
  auto bad = [](const std::string& what) { throw std::invalid_argument(what); };
  if (o.devices < 1 || o.devices > 1'000'000) bad("--devices must be 1..1000000");
  if (o.sensors < 1 || o.sensors > 256) bad("--sensors must be 1..256");
  if (o.interval_us < 1000 || o.interval_us > 3600 * kSecond) bad("--interval must be 1 ms..1 h");
  if (o.rate_hz < 0 || o.rate_hz > 10000) bad("--rate must be 0..10000 Hz (0 = per-kind defaults)");
  if (o.skew_ms < 0 || o.drift_ppm < 0 || o.jitter_ms < 0)
    bad("clock skew, drift and jitter must be >= 0");
  if (o.anomaly_rate < 0 || o.offline_rate < 0) bad("anomaly rates must be >= 0");
  if (o.duration_scale <= 0) bad("--anomaly-duration-scale must be > 0");
  if (!opt_.kinds.empty() &&
      std::ranges::find(opt_.kinds, AnomalyKind::kOffline) != opt_.kinds.end()) {
    bad("'offline' is a device anomaly: set its rate with --offline-rate, not in --anomalies");
  }
  if (opt_.kinds.empty()) {
    for (int k = 0; k < kAnomalyKinds; ++k) {
      if (static_cast<AnomalyKind>(k) != AnomalyKind::kOffline) {
        opt_.kinds.push_back(static_cast<AnomalyKind>(k));
      }
    }
  }
  const int width = std::max<int>(4, static_cast<int>(std::to_string(o.devices).size()));

  for (int s = 0; s < o.sensors; ++s) {
    const auto kind = static_cast<SensorKind>(s % kSensorKinds);
    std::string name = sensorKindName(kind);
    if (s >= kSensorKinds) name += "_" + std::to_string(s / kSensorKinds + 1);
    sensor_info_.push_back({static_cast<uint16_t>(s), name, sensorKindUnit(kind)});
  }

  const int64_t anomaly_from = o.start_us + static_cast<int64_t>(o.anomaly_warmup_s * kSecond);
  devices_.resize(static_cast<size_t>(o.devices));
  for (int i = 0; i < o.devices; ++i) {
    Device& d = devices_[static_cast<size_t>(i)];
    std::string idx = std::to_string(i + 1);
    if (static_cast<int>(idx.size()) < width)
      idx.insert(0, static_cast<size_t>(width) - idx.size(), '0');
    d.name = o.device_prefix + idx;
    if (!codec::isValidDeviceId(d.name)) {
      bad("--device-prefix: '" + d.name + "' is not a valid device id (1..64 of [A-Za-z0-9._-])");
    }
    const auto di = static_cast<uint64_t>(i);
    Rng site = Rng::derive(o.seed, di, 1);
    d.state_rng = Rng::derive(o.seed, di, 2);
    d.offline_rng = Rng::derive(o.seed, di, 3);
    d.offset_us = site.normal() * o.skew_ms * 1000.0;
    d.drift = site.normal() * o.drift_ppm * 1e-6;
    d.temp_mean = site.uniform(8, 24);
    d.temp_amp = site.uniform(2, 7);
    d.hum_mean = site.uniform(45, 70);
    d.lon_h = site.uniform(-1, 1);
    d.vib_on = site.uniform(2.5, 6.0);
    d.parts_per_s = site.uniform(0.2, 2.0);
    d.pressure_base = 1013.25 - site.uniform(0, 40);  // altitude
    d.machine_on = site.uniform() < 0.7;
    d.machine_next = o.start_us + static_cast<int64_t>(site.exponential(20 * 60.0) * kSecond);
    d.load = 7.5;
    d.load_next = o.start_us;
    d.weather = site.normal() * 2.0;
    d.state_t = o.start_us - kStateStepUs;
    advanceState(d, o.start_us);

    if (o.offline_rate > 0) {
      d.offline.kind = AnomalyKind::kOffline;
      d.offline.start =
          d.deviceTime(anomaly_from, o.start_us) +
          static_cast<int64_t>(d.offline_rng.exponential(3600.0 / o.offline_rate) * kSecond);
      d.offline.end =
          d.offline.start + durationUs(AnomalyKind::kOffline, d.offline_rng, o.duration_scale);
    }
    for (int s = 0; s < o.sensors; ++s) {
      const auto kind = static_cast<SensorKind>(s % kSensorKinds);
      const double rate = o.rate_hz > 0 ? o.rate_hz : model(kind).rate_hz;
      SensorSim ss{kind,
                   static_cast<uint16_t>(s),
                   sensor_info_[static_cast<size_t>(s)].name,
                   std::max<int64_t>(1, std::llround(1e6 / rate)),
                   0,
                   0,
                   Rng::derive(o.seed, di, 100 + static_cast<uint64_t>(s)),
                   Rng::derive(o.seed, di, 100000 + static_cast<uint64_t>(s)),
                   {},
                   0.0};
      ss.jitter_us = std::min<int64_t>(static_cast<int64_t>(o.jitter_ms * 1000), ss.period_us / 4);
      ss.next_nominal =
          o.start_us + static_cast<int64_t>(ss.noise.uniform() * double(ss.period_us));
      ss.counter = std::floor(ss.noise.uniform(1000, 100000));
      if (o.anomaly_rate > 0) {
        ss.cur.start = d.deviceTime(anomaly_from, o.start_us) +
                       static_cast<int64_t>(ss.anom.exponential(3600.0 / o.anomaly_rate) * kSecond);
        ss.cur.kind = opt_.kinds[ss.anom.next() % opt_.kinds.size()];
        ss.cur.end =
            ss.cur.start + std::max<int64_t>(durationUs(ss.cur.kind, ss.anom, o.duration_scale),
                                             2 * ss.period_us);  // spikes: set to the hit reading
        ss.cur.magnitude = magnitude(ss.cur.kind, ss.anom, model(kind).scale);
      }
      d.sensors.push_back(std::move(ss));
    }
  }
}

Fleet::~Fleet() = default;

int Fleet::devices() const { return static_cast<int>(devices_.size()); }

const std::string& Fleet::deviceName(int d) const {
  return devices_.at(static_cast<size_t>(d)).name;
}

void Fleet::step(std::vector<DeviceStep>& out, std::vector<Label>& labels) {
  const int64_t t0 = now_us_;
  const int64_t t1 = now_us_ + opt_.interval_us;
  out.resize(devices_.size());
  for (size_t di = 0; di < devices_.size(); ++di) {
    Device& d = devices_[di];
    DeviceStep& ds = out[di];
    ds.readings.clear();
    ds.anomaly.clear();
    ds.offline = false;
    scratch_.clear();
    advanceState(d, t0);
    const int64_t label_clamp = opt_.end_us > 0 ? d.deviceTime(opt_.end_us, opt_.start_us) : kNever;

    // The device's offline episode, checked against the step's device-time span.
    auto& off = d.offline;
    const int64_t dt0 = d.deviceTime(t0, opt_.start_us), dt1 = d.deviceTime(t1, opt_.start_us);
    while (opt_.offline_rate > 0 && dt0 > off.end) {
      const int64_t from = off.end;
      off = Anomaly{AnomalyKind::kOffline};
      off.start = from + static_cast<int64_t>(
                             d.offline_rng.exponential(3600.0 / opt_.offline_rate) * kSecond);
      off.end = off.start + durationUs(AnomalyKind::kOffline, d.offline_rng, opt_.duration_scale);
    }
    if (off.start < dt1 && off.end >= dt0) {
      ds.offline = true;
      if (!off.labelled && off.start < label_clamp) {
        off.labelled = true;
        labels.push_back(
            {d.name, "*", AnomalyKind::kOffline, off.start, std::min(off.end, label_clamp), 0.0});
      }
    }

    for (SensorSim& s : d.sensors) {
      const double scale = model(s.kind).scale;
      for (; s.next_nominal < t1; s.next_nominal += s.period_us) {
        const int64_t nominal = s.next_nominal;
        double v = cleanValue(d, s, nominal);
        const int64_t jitter =
            s.jitter_us > 0
                ? static_cast<int64_t>((s.noise.uniform() * 2 - 1) * double(s.jitter_us))
                : 0;
        const int64_t ts = d.deviceTime(nominal, opt_.start_us) + jitter;
        if (s.kind != SensorKind::kCounter) v = roundTo(v, model(s.kind).resolution);

        Anomaly& a = s.cur;
        while (opt_.anomaly_rate > 0 && ts > a.end) {
          // The next anomaly starts after this one ended (one at a time per sensor). One that fell
          // entirely between two readings was never seen: no label, nothing injected.
          const int64_t from = a.end;
          a = Anomaly{};
          a.start =
              from + static_cast<int64_t>(s.anom.exponential(3600.0 / opt_.anomaly_rate) * kSecond);
          a.kind = opt_.kinds[s.anom.next() % opt_.kinds.size()];
          a.end = a.start + std::max<int64_t>(durationUs(a.kind, s.anom, opt_.duration_scale),
                                              2 * s.period_us);
          a.magnitude = magnitude(a.kind, s.anom, scale);
        }
        // Offline: the device is silent; anomalies of its sensors only count where seen.
        if (ts >= off.start && ts <= off.end) continue;
        bool drop = false;
        uint8_t tag = 0;
        if (ts >= a.start && ts <= a.end) {
          tag = static_cast<uint8_t>(1 + static_cast<int>(a.kind));
          if (!a.labelled) {
            a.labelled = true;
            if (a.kind == AnomalyKind::kSpike || a.kind == AnomalyKind::kDip) a.start = a.end = ts;
            if (a.start < label_clamp) {
              labels.push_back(
                  {d.name, s.name, a.kind, a.start, std::min(a.end, label_clamp), a.magnitude});
            }
          }
          switch (a.kind) {
            case AnomalyKind::kSpike:
              v += a.magnitude;
              break;
            case AnomalyKind::kDip:
              v -= a.magnitude;
              break;
            case AnomalyKind::kLevelShift:
              v += a.magnitude;
              break;
            case AnomalyKind::kDrift:
              v += a.magnitude * double(ts - a.start) /
                   double(std::max<int64_t>(1, a.end - a.start));
              break;
            case AnomalyKind::kStuck:
              if (!a.have_stuck) {
                a.have_stuck = true;
                a.stuck = v;
              }
              v = a.stuck;
              break;
            case AnomalyKind::kNoiseBurst:
              v += a.magnitude * s.anom.normal();
              break;
            case AnomalyKind::kDropout:
              drop = true;
              break;
            case AnomalyKind::kOffline:
              break;
          }
          if (model(s.kind).non_negative) v = std::max(0.0, v);
          v = roundTo(v, model(s.kind).resolution);
        }
        if (drop) continue;
        scratch_.push_back({wire::Reading(ts, v, s.id, wire::Quality::Good), tag});
      }
    }
    std::sort(scratch_.begin(), scratch_.end(), [](const Tagged& x, const Tagged& y) {
      return x.r.ts_us() != y.r.ts_us() ? x.r.ts_us() < y.r.ts_us() : x.r.sensor() < y.r.sensor();
    });
    ds.readings.reserve(scratch_.size());
    ds.anomaly.reserve(scratch_.size());
    for (const Tagged& t : scratch_) {
      ds.readings.push_back(t.r);
      ds.anomaly.push_back(t.tag);
    }
  }
  now_us_ = t1;
}

}  // namespace outpost::sim
