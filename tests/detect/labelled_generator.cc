#include "labelled_generator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

namespace outpost::detect::testing {

namespace {
constexpr double kPi = 3.14159265358979323846;
}

LabelledSeries generateSeries(const GeneratorOptions& opt, uint64_t index) {
  std::mt19937_64 rng(opt.seed * 0x9E3779B97F4A7C15ull + index * 0xBF58476D1CE4E5B9ull + 7);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  std::normal_distribution<double> N(0.0, 1.0);
  auto uni = [&](double a, double b) { return a + (b - a) * U(rng); };

  LabelledSeries s;
  s.days = opt.days;
  // Magnitude: level and noise scale anywhere from 1e-6 to 1e9.
  const double scale = std::pow(10.0, uni(-6.0, 9.0));
  const double level = uni(-50.0, 200.0) * scale;
  const double sigma = scale;
  s.sigma = sigma;
  const double phi = uni(0.0, 0.6);  // AR(1) correlation of the noise
  const double innov = sigma * std::sqrt(1.0 - phi * phi);
  const double amp = U(rng) < 0.3 ? 0.0 : uni(1.0, 8.0) * sigma;  // daily cycle
  const double phase = uni(0.0, 2 * kPi);
  const double h2 = uni(0.0, 0.4);
  const bool quantised = U(rng) < 0.3;
  const double q = 0.5 * sigma;
  const double base_dt = std::vector<double>{10.0, 30.0, 60.0, 60.0, 120.0}[rng() % 5];
  const double t0 = 1714521600.0 + std::floor(uni(0, 365)) * 86400.0;  // 2024-05-01 + days

  char desc[200];
  std::snprintf(desc, sizeof desc, "scale=%.3g phi=%.2f amp=%.1f quant=%d dt=%.0f", scale, phi,
                amp / sigma, quantised ? 1 : 0, base_dt);
  s.description = desc;

  // Physical limits configured for this sensor class.
  s.cfg = DetectorConfig{};
  const double max_rate = 40.0 * sigma / base_dt;
  s.cfg.max_rate_per_s = max_rate;
  s.cfg.range_min = level - amp * 1.5 - 1000.0 * sigma;
  s.cfg.range_max = level + amp * 1.5 + 1000.0 * sigma;

  // Timeline of anomalies: non-overlapping, >= 6 h apart, after first_anomaly_day.
  struct Planned {
    AnomalyKind kind;
    double start_s, dur_s, mag;
  };
  std::vector<Planned> plan;
  const AnomalyKind kinds[] = {AnomalyKind::kSpike, AnomalyKind::kDip, AnomalyKind::kLevelShift,
                               AnomalyKind::kDrift, AnomalyKind::kStuck, AnomalyKind::kSilence,
                               AnomalyKind::kRate,  AnomalyKind::kRange};
  const double span0 = opt.first_anomaly_day * 86400.0;
  const double span1 = opt.days * 86400.0 - 12 * 3600.0;
  if (opt.anomalies > 0 && span1 > span0) {
    const double slot = (span1 - span0) / opt.anomalies;
    for (int i = 0; i < opt.anomalies; ++i) {
      Planned p;
      p.kind = kinds[rng() % 8];
      p.start_s = span0 + i * slot + uni(0.0, std::max(0.0, slot - 10 * 3600.0));
      const double sign = U(rng) < 0.5 ? -1.0 : 1.0;
      switch (p.kind) {
        case AnomalyKind::kSpike:
        case AnomalyKind::kDip:
          p.dur_s = base_dt * (U(rng) < 0.6 ? 0.5 : 1.5);  // 1 or 2 readings
          p.mag = uni(6.0, 20.0) * sigma * (p.kind == AnomalyKind::kDip ? -1 : 1);
          break;
        case AnomalyKind::kLevelShift:
          p.dur_s = uni(2.0, 8.0) * 3600.0;
          p.mag = sign * uni(3.0, 10.0) * sigma;
          break;
        case AnomalyKind::kDrift:
          p.dur_s = uni(3.0, 8.0) * 3600.0;
          p.mag = sign * uni(4.0, 10.0) * sigma;
          break;
        case AnomalyKind::kStuck:
        case AnomalyKind::kSilence:
          p.dur_s = std::max(uni(0.5, 4.0) * 3600.0, 20 * base_dt);
          p.mag = 0;
          break;
        case AnomalyKind::kRate:
          p.dur_s = base_dt * uni(1.5, 2.5);  // 2-3 readings of an impossible ramp
          p.mag = sign * uni(2.0, 4.0) * max_rate;
          break;
        case AnomalyKind::kRange:
          p.dur_s = base_dt * uni(0.5, 10.0);
          p.mag = sign * uni(1.05, 1.5);
          break;
        default: break;
      }
      plan.push_back(p);
    }
  }

  double t = 0.0, ar = 0.0, day_amp = 1.0;
  int last_day = -1;
  double last_emitted = level;
  std::vector<int64_t> first_ts(plan.size(), -1), last_ts(plan.size(), -1);
  const double end = opt.days * 86400.0;
  while (t < end) {
    const int day = static_cast<int>(t / 86400.0);
    if (day != last_day) {
      day_amp = 1.0 + 0.05 * N(rng);
      last_day = day;
    }
    ar = phi * ar + innov * N(rng);
    const double ph = 2 * kPi * (t0 + t) / 86400.0 + phase;
    double v = level + day_amp * amp * (std::sin(ph) + h2 * std::sin(2 * ph + 1.0)) + ar;
    if (quantised) v = std::round(v / q) * q;
    bool emit = U(rng) >= 0.01;  // 1% of readings dropped
    for (size_t i = 0; i < plan.size(); ++i) {
      const Planned& p = plan[i];
      const double rel = t - p.start_s;
      if (rel < 0 || rel > p.dur_s) continue;
      switch (p.kind) {
        case AnomalyKind::kSpike:
        case AnomalyKind::kDip:
        case AnomalyKind::kLevelShift: v += p.mag; break;
        case AnomalyKind::kDrift: v += p.mag * rel / p.dur_s; break;
        case AnomalyKind::kStuck: v = last_emitted; emit = true; break;
        case AnomalyKind::kSilence: emit = false; break;
        case AnomalyKind::kRate: v += p.mag * rel; break;
        case AnomalyKind::kRange:
          v = p.mag > 0 ? s.cfg.range_max + (p.mag - 1.0) * (s.cfg.range_max - s.cfg.range_min)
                        : s.cfg.range_min + (p.mag + 1.0) * (s.cfg.range_max - s.cfg.range_min);
          break;
        default: break;
      }
      if (p.kind == AnomalyKind::kStuck && first_ts[i] < 0) v = last_emitted;
      if (emit || p.kind == AnomalyKind::kSilence) {
        const int64_t ms = static_cast<int64_t>((t0 + t) * 1000.0);
        if (p.kind != AnomalyKind::kSilence || true) {
          if (first_ts[i] < 0) first_ts[i] = ms;
          last_ts[i] = ms;
        }
      }
    }
    if (emit) {
      const int64_t ms = static_cast<int64_t>(std::llround((t0 + t) * 1000.0));
      s.ts_ms.push_back(ms);
      s.value.push_back(v);
      last_emitted = v;
    }
    t += base_dt * uni(0.8, 1.2);
  }
  for (size_t i = 0; i < plan.size(); ++i) {
    if (first_ts[i] < 0) continue;
    s.events.push_back({plan[i].kind, first_ts[i], last_ts[i]});
  }
  return s;
}

}  // namespace outpost::detect::testing
