#include "outpost/common/detect/device_detector.h"

#include <algorithm>
#include <cmath>

#include "outpost/common/detect/state_io.h"

namespace outpost::detect {

namespace {
constexpr double kLn10 = 2.302585092994046;
}

DeviceDetector::DeviceDetector(const DetectorConfig* cfg, uint32_t sensors)
    : cfg_(cfg), s_(sensors, 0.0), kind_(sensors, AnomalyKind::kNone), contrib_(sensors, 0) {}

uint32_t DeviceDetector::addSensor() {
  s_.push_back(0.0);
  kind_.push_back(AnomalyKind::kNone);
  contrib_.push_back(0);
  return static_cast<uint32_t>(s_.size() - 1);
}

void DeviceDetector::set(uint32_t i, double surprise, AnomalyKind kind) {
  if (i >= s_.size()) return;
  s_[i] = std::isfinite(surprise) ? std::max(0.0, surprise) : 1e3;
  kind_[i] = kind;
}

double DeviceDetector::combine(const double* s, uint32_t n) {
  if (n == 0) return 0.0;
  double smax = 0.0, x_half = 0.0;  // x_half = X / 2 = -sum ln p_i over the truncated set
  const double s_fisher = -std::log10(kFisherPMax);
  for (uint32_t i = 0; i < n; ++i) {
    smax = std::max(smax, s[i]);
    if (s[i] >= s_fisher) x_half += s[i] * kLn10;
  }
  // Bonferroni, in -log10.
  const double s_b = smax - std::log10(static_cast<double>(n));
  // Fisher: ln p_F = -x + ln sum_{k<n} x^k / k!, summed in the log domain.
  double s_f = 0.0;
  if (x_half > 0.0) {
    double term = 0.0, lse = 0.0;  // log of the running sum
    for (uint32_t k = 0; k < n; ++k) {
      term = k == 0 ? 0.0 : term + std::log(x_half) - std::log(static_cast<double>(k));
      lse = k == 0 ? term : std::max(lse, term) + std::log1p(std::exp(-std::abs(lse - term)));
    }
    s_f = (x_half - lse) / kLn10;
  }
  return std::max(0.0, std::max(s_b, s_f) - std::log10(2.0));
}

DeviceResult DeviceDetector::evaluate(int64_t ts_ms) {
  DeviceResult r;
  r.surprise = combine(s_.data(), static_cast<uint32_t>(s_.size()));
  r.score = scoreFromSurprise(r.surprise);
  const DetectorConfig& c = *cfg_;
  auto note = [&] {
    for (size_t i = 0; i < s_.size(); ++i)
      if (s_[i] >= kContribSurprise) contrib_[i] = 1;
  };
  const bool high = r.score >= c.alarm_on;
  if (!high || alarm_) {
    above_ = 0;
  } else if (above_++ == 0) {
    above_since_ms_ = ts_ms;
    std::fill(contrib_.begin(), contrib_.end(), 0);
  }
  // A gap is one reading long by nature: when every contributing sensor reports silence (the
  // device went quiet), the device alarm does not wait for more evaluations.
  bool silent = false;
  if (high && !alarm_) {
    silent = true;
    for (size_t i = 0; i < s_.size(); ++i)
      if (s_[i] >= kContribSurprise && kind_[i] != AnomalyKind::kSilence) silent = false;
  }
  if (high && (alarm_ || silent || above_ >= c.device_min_samples)) {
    if (!alarm_) {
      alarm_ = true;
      event_ = DeviceEvent{};
      event_.start_ms = above_since_ms_;  // where the evidence began
      r.transition = AlarmTransition::kRaised;
      above_ = 0;
    }
    event_.peak_score = std::max(event_.peak_score, r.score);
    below_ = 0;
    last_high_ts_ = ts_ms;
    note();
  } else if (high) {
    note();  // not raised yet: collect the contributors from the first evaluation on
  } else if (alarm_) {
    if (r.score >= c.alarm_off) {
      below_ = 0;
      last_high_ts_ = ts_ms;
      note();
    } else if (++below_ >= c.device_clear_samples) {
      alarm_ = false;
      event_.end_ms = last_high_ts_;
      r.transition = AlarmTransition::kEnded;
    }
  }
  if (alarm_ || r.transition == AlarmTransition::kEnded) {
    // Contributors and kind (refreshed while open, final when ended).
    event_.sensors.clear();
    AnomalyKind one = AnomalyKind::kNone;
    double best = -1.0;
    for (size_t i = 0; i < contrib_.size(); ++i) {
      if (!contrib_[i]) continue;
      event_.sensors.push_back(static_cast<uint32_t>(i));
      if (s_[i] > best) {
        best = s_[i];
        one = kind_[i];
      }
    }
    if (event_.sensors.size() > 1) {
      event_.kind = AnomalyKind::kCombined;
    } else if (event_.sensors.size() == 1 && one != AnomalyKind::kNone) {
      event_.kind = one;
    } else if (event_.kind == AnomalyKind::kNone) {
      event_.kind = AnomalyKind::kCombined;  // no single sensor strong: the sum of weak ones
    }
  }
  r.alarm = alarm_;
  return r;
}

// --- State image (issue 19; state_io.h) ---

template <class Ar>
void stateFields(Ar& ar, DeviceEvent& e) {
  ar(e.start_ms, e.end_ms, e.peak_score, e.kind, e.sensors);
  ar.check(e.kind <= AnomalyKind::kCombined, "device event kind");
  ar.check(saneStateMs(e.start_ms) && saneStateMs(e.end_ms), "device event time");
}

template <class Ar>
void DeviceDetector::fields(Ar& ar) {
  ar(s_, kind_, contrib_, event_, last_high_ts_, below_, above_, above_since_ms_, alarm_);
  ar.check(s_.size() <= kMaxStateSensors, "sensor count");
  ar.check(saneStateMs(last_high_ts_) && saneStateMs(above_since_ms_), "timestamp");
  ar.check(kind_.size() == s_.size() && contrib_.size() == s_.size(), "per-sensor vector sizes");
  for (size_t i = 0; i < kind_.size(); ++i) ar.check(kind_[i] <= AnomalyKind::kCombined, "kind");
  for (size_t i = 0; i < event_.sensors.size(); ++i)
    ar.check(event_.sensors[i] < s_.size() && (i == 0 || event_.sensors[i - 1] < event_.sensors[i]),
             "event sensor index");
}

std::string DeviceDetector::unlistedStateBytes() {
  static const DetectorConfig cfg;
  DeviceDetector d(&cfg, 0);
  StateLayoutProbe p(&d, sizeof d, alignof(DeviceDetector));
  p(d.cfg_);
  d.fields(p);
  return p.gaps();
}

// A member added to DeviceDetector must be added to fields() too (LP64 size check; the unit test
// of unlistedStateBytes() finds one that fits into padding).
static_assert(sizeof(void*) != 8 || sizeof(DeviceDetector) == 168,
              "DeviceDetector changed: list the new member in DeviceDetector::fields()");

namespace {
constexpr uint8_t kDeviceStateTag = 0x44;  // 'D'
constexpr uint8_t kDeviceStateVersion = 1;
}  // namespace

void DeviceDetector::save(std::string& out) const {
  StateWriter w(out);
  w.begin(kDeviceStateTag, kDeviceStateVersion);
  const_cast<DeviceDetector*>(this)->fields(w);  // the writer only reads
  w.end();
}

Status DeviceDetector::restore(std::span<const uint8_t>& in) {
  StateReader rd(in);
  if (!rd.begin(kDeviceStateTag, kDeviceStateVersion, "device detector state")) return rd.status();
  DeviceDetector tmp(cfg_, 0);
  tmp.fields(rd);
  if (!rd.end()) return rd.status();
  *this = std::move(tmp);
  in = in.subspan(rd.consumed());
  return {};
}

}  // namespace outpost::detect
