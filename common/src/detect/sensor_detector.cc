#include "outpost/common/detect/sensor_detector.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "outpost/common/detect/state_io.h"

namespace outpost::detect {

static_assert(sizeof(SensorDetector) <= 2048, "per-sensor detector state must stay <= 2 KB");

namespace {

constexpr double kSigmaPerMad = 1.2533141373155;  // sigma / E|x| for a normal distribution
constexpr double kClipSigmas = 4.0;               // residuals are clipped here before learning
constexpr double kRepeatAlpha = 0.01;
constexpr double kCadenceAlpha = 0.05;
constexpr uint32_t kDriftRelabelMax = 20;  // a young drift alarm may still turn out a level shift

// q^2 / (1 + q^2): 0.5 at q = 1, strictly increasing, slow to saturate.
inline double evidenceScore(double q) {
  const double q2 = q * q;
  return q2 / (1.0 + q2);
}
// The same from q^2 (saves a square root where the evidence is a ratio of squares).
inline double evidenceScore2(double q2) { return q2 / (1.0 + q2); }
// Hard limits: 0 inside, 0.5 at the limit, rising with the relative excess.
inline double limitScore(double excess) { return 0.5 + 0.5 * evidenceScore(excess); }

inline double clampAbs(double v, double lim) { return std::max(-lim, std::min(lim, v)); }

float median(const float* v, uint32_t n) {
  float tmp[8];
  std::copy(v, v + n, tmp);
  std::sort(tmp, tmp + n);
  return n % 2 ? tmp[n / 2] : 0.5f * (tmp[n / 2 - 1] + tmp[n / 2]);
}

constexpr double kLearnOff = 0.3;  // raw score below which a reading teaches the baseline
constexpr double kSlowLearn = 0.1;  // the level's rate above it (outliers excepted)
constexpr double kScoreHalf = 4.0;   // surprise at which the calibrated score is 0.5
constexpr double kScorePower = 11.0;  // 0.99 at S = 6
constexpr double kCalibTailPrior = 2.0;  // readings' weight of the default tail scale

}  // namespace

double scoreFromSurprise(double s) {
  if (!(s > 0.0)) return 0.0;
  const double r = std::pow(kScoreHalf / s, kScorePower);
  return 1.0 / (1.0 + r);
}

double surpriseFromScore(double score) {
  if (!(score > 0.0)) return 0.0;
  if (score >= 1.0) return 1e3;
  return kScoreHalf * std::pow(score / (1.0 - score), 1.0 / kScorePower);
}

double SensorDetector::calibSurprise(const CalibHist& h, double x) const {
  if (h.total <= 0.0 || !(x >= 0.0)) return 0.0;
  // The dense part of the history: bins up to the highest holding >= 2 readings' weight. Above
  // it the sparse tail's mass (plus half a reading for "not seen yet") decays exponentially
  // with the distance beyond the dense part.
  int top = -1;
  double sparse = 0.5 * calib_w_;
  double sparse_at = 0.0;  // the sparse tail's weight times bin index, summed
  for (int i = kCalibBins - 1; i >= 0; --i) {
    if (h.bins[i] >= 2.0 * calib_w_) {
      top = i;
      break;
    }
    sparse += h.bins[i];
    sparse_at += h.bins[i] * i;
  }
  const double x_top = (top + 1) * kCalibBinWidth;
  double mass;
  if (x >= x_top) {
    // Counts: peaks over threshold - the tail beyond the dense part is exponential with the
    // scale of the sparse readings' mean excess over x_top (the maximum-likelihood scale of an
    // exponential tail), shrunk towards kCalibTail by a prior worth kCalibTailPrior readings, so
    // a count whose normal evidence has a long tail (bursts) learns it, while one past outlier
    // barely widens the tail. Real-valued sensors keep kCalibTail: there an isolated excursion
    // is the spike this detector is for (learning their sparse tail cost the simulator's spike
    // F1 0.92 -> 0.83 and level_shift 0.86 -> 0.75).
    const double seen = sparse - 0.5 * calib_w_;
    const double excess =
        seen > 0.0 ? std::max(0.0, (sparse_at / seen + 0.5 - (top + 1)) * kCalibBinWidth) : 0.0;
    const double prior = kCalibTailPrior * calib_w_;
    const double beta =
        integral_ ? (prior * kCalibTail + seen * excess) / (prior + seen) : kCalibTail;
    mass = sparse * std::exp(-(x - x_top) / beta);
  } else {
    const double u = std::max(0.0, x / kCalibBinWidth);
    const int b = std::min(static_cast<int>(u), kCalibBins - 1);
    mass = sparse + (1.0 - std::min(u - b, 1.0)) * h.bins[b];
    for (int i = b + 1; i <= top; ++i) mass += h.bins[i];
  }
  const double p = std::min(1.0, mass / (h.total + 0.5 * calib_w_));
  return -std::log10(std::max(p, 1e-300));
}

void SensorDetector::learnCalib(double x_fast, double x_shift, double factor) {
  // Evidence at or beyond a detector's own threshold (x >= ln 2) that persists is one episode,
  // not many independent readings: its k-th consecutive reading teaches 1/k of the weight, so a
  // sustained shift cannot teach its own history that it is normal within a few dozen readings
  // (recurring episodes still do).
  constexpr double kAtThreshold = 0.6931471805599453;  // ln(1 + 1)
  hot_fast_ = x_fast >= kAtThreshold ? static_cast<uint16_t>(std::min(hot_fast_ + 1, 65535)) : 0;
  hot_shift_ =
      x_shift >= kAtThreshold ? static_cast<uint16_t>(std::min(hot_shift_ + 1, 65535)) : 0;
  const std::pair<CalibHist*, double> hx[2] = {{&calib_fast_, x_fast}, {&calib_shift_, x_shift}};
  for (auto [h, x] : hx) {
    const uint16_t run = h == &calib_fast_ ? hot_fast_ : hot_shift_;
    const double w = calib_w_ * factor / std::max<uint16_t>(run, 1);
    // x >= 0 by construction; NaN (never expected) lands in bin 0, beyond the range in the last.
    const double u = x / kCalibBinWidth;
    const int b = u >= kCalibBins ? kCalibBins - 1 : (u >= 0.0 ? static_cast<int>(u) : 0);
    h->bins[b] += static_cast<float>(w);
    h->total += w;
  }
  calib_w_ *= 1.0 + 1.0 / cfg_->calib_samples;
  if (calib_w_ > 1e4) {
    for (CalibHist* h : {&calib_fast_, &calib_shift_}) {
      h->total = 0.0;
      for (float& c : h->bins) {
        c = static_cast<float>(c / calib_w_);
        h->total += c;
      }
    }
    calib_w_ = 1.0;
  }
}

const char* kindName(AnomalyKind kind) {
  switch (kind) {
    case AnomalyKind::kNone:
      return "";
    case AnomalyKind::kSpike:
      return "spike";
    case AnomalyKind::kDip:
      return "dip";
    case AnomalyKind::kLevelShift:
      return "level_shift";
    case AnomalyKind::kDrift:
      return "drift";
    case AnomalyKind::kStuck:
      return "stuck";
    case AnomalyKind::kRate:
      return "rate";
    case AnomalyKind::kRange:
      return "range";
    case AnomalyKind::kSilence:
      return "silence";
    case AnomalyKind::kCombined:
      return "combined";
  }
  return "";
}

const char* detectorName(AnomalyKind kind) {
  switch (kind) {
    case AnomalyKind::kNone:
      return "";
    case AnomalyKind::kSpike:
    case AnomalyKind::kDip:
      return "robust_ewma_z";
    case AnomalyKind::kLevelShift:
      return "cusum";
    case AnomalyKind::kDrift:
      return "seasonal_level_drift";
    case AnomalyKind::kStuck:
      return "stuck_run";
    case AnomalyKind::kRate:
      return "rate_limit";
    case AnomalyKind::kRange:
      return "range_limit";
    case AnomalyKind::kSilence:
      return "cadence_silence";
    case AnomalyKind::kCombined:
      return "device_combined";
  }
  return "";
}

SensorDetector::SensorDetector(const DetectorConfig* cfg) : cfg_(cfg) {
  if (cfg->season_period_s > 0.0 && cfg->season_bins > 1) {
    period_ms_ = std::max<int64_t>(1, static_cast<int64_t>(cfg->season_period_s * 1000.0));
    bins_per_ms_ = static_cast<double>(cfg->season_bins) / static_cast<double>(period_ms_);
  }
}

double SensorDetector::interpolate(int a, int b, double f) const {
  const bool ha = profile_w_[a] > 0.0f, hb = profile_w_[b] > 0.0f;
  if (ha && hb) return (1.0 - f) * profile_[a] + f * profile_[b];
  if (ha) return profile_[a];
  if (hb) return profile_[b];
  return last_profile_;
}

double SensorDetector::seasonal(int64_t ts_ms, int* i0, int* i1, double* f) {
  if (period_ms_ == 0) {
    *i0 = *i1 = 0;
    *f = 0.0;
    return profile_w_[0] > 0.0f ? profile_[0] : last_profile_;
  }
  // Phase in [0, period): from the previous phase when the step is short (the usual case),
  // otherwise by division.
  int64_t ph;
  const int64_t step = ts_ms - phase_ts_;
  if (phase_ms_ >= 0 && step >= 0 && step < period_ms_) {
    ph = phase_ms_ + step;
    if (ph >= period_ms_) ph -= period_ms_;
  } else {
    ph = ts_ms % period_ms_;
    if (ph < 0) ph += period_ms_;
  }
  phase_ts_ = ts_ms;
  phase_ms_ = ph;
  const int bins = static_cast<int>(cfg_->season_bins);
  const double u = static_cast<double>(ph) * bins_per_ms_ + 0.5;  // >= 0.5: truncation = floor
  int a = static_cast<int>(u);
  *f = u - a;
  a -= 1;  // the bin centre at or before the phase
  if (a < 0) a += bins;
  if (a >= bins) a -= bins;
  int b = a + 1;
  if (b >= bins) b -= bins;
  *i0 = a;
  *i1 = b;
  return interpolate(a, b, *f);
}

void SensorDetector::raiseOrExtend(int64_t ts_ms, double value, double score, AnomalyKind kind,
                                   double lo, double hi, DetectResult* r) {
  if (!alarm_) {
    alarm_ = true;
    below_ = 0;
    alarm_len_ = 0;
    event_ = AnomalyEvent{};
    event_.start_ms = ts_ms;
    event_.value = value;
    event_.peak_score = score;
    event_.expected_lo = lo;
    event_.expected_hi = hi;
    event_.kind = kind;
    r->transition = AlarmTransition::kRaised;
  } else {
    event_.peak_score = std::max(event_.peak_score, score);
    // Refinement: hard limits and stuck/silence win; an outlier run turns a spike into a level
    // shift. Drift never relabels an open event (it follows most other events).
    auto rank = [](AnomalyKind k) {
      switch (k) {
        case AnomalyKind::kRange:
          return 5;
        case AnomalyKind::kRate:
          return 4;
        case AnomalyKind::kSilence:
        case AnomalyKind::kStuck:
          return 3;
        case AnomalyKind::kLevelShift:
          return 2;
        case AnomalyKind::kSpike:
        case AnomalyKind::kDip:
          return 1;
        default:
          return 0;
      }
    };
    const bool settled_drift = event_.kind == AnomalyKind::kDrift &&
                               alarm_len_ >= kDriftRelabelMax && kind == AnomalyKind::kLevelShift;
    if (kind != AnomalyKind::kDrift && rank(kind) > rank(event_.kind) && !settled_drift)
      event_.kind = kind;
  }
  last_high_ts_ = ts_ms;
}

void SensorDetector::endAlarm(DetectResult* r) {
  alarm_ = false;
  event_.end_ms = last_high_ts_;
  r->transition = AlarmTransition::kEnded;
  g_pos_ = g_neg_ = 0.0;
  if (event_.kind == AnomalyKind::kLevelShift || event_.kind == AnomalyKind::kDrift) {
    // Accept the current level as the new normal.
    sfast_ -= base_;
    sref_ = sfast_;
    off_ += base_;
    slow_ = 0.0;
    base_ = 0.0;
    // The local level is still settling on the new level: the drift detector waits, and the
    // settled level is accepted when the wait ends.
    settle_until_ms_ = last_high_ts_ + static_cast<int64_t>(4.0 * cfg_->drift_tau_s * 1000.0);
    g_pos_ = g_neg_ = 0.0;
  }
}

DetectResult SensorDetector::poll(int64_t now_ms) {
  DetectResult r;
  r.alarm = alarm_;
  const DetectorConfig& c = *cfg_;
  if (!c.enable_silence || n_ < 3 || n_ < c.warmup_samples || now_ms <= last_ts_) return r;
  const double gap = static_cast<double>(now_ms - last_ts_) * 1e-3;
  const double thr =
      std::max(c.silence_factor * cadence_s_, cadence_s_ + c.silence_dev_factor * cadence_dev_s_);
  if (thr <= 0.0) return r;
  const double q = gap / thr;
  if (q < 1.0) return r;
  r.score = evidenceScore(q);
  r.kind = AnomalyKind::kSilence;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (alarm_ && event_.kind != AnomalyKind::kSilence) {
    // The open alarm (e.g. a level shift) ends where its evidence did; the silence is new.
    endAlarm(&r);
    prev_event_ = event_;
    r.replaced = true;
  }
  if (!alarm_) {
    raiseOrExtend(now_ms, nan, r.score, AnomalyKind::kSilence, nan, nan, &r);
  } else {
    event_.peak_score = std::max(event_.peak_score, r.score);
    last_high_ts_ = now_ms;
  }
  below_ = 0;
  r.alarm = true;
  return r;
}

DetectResult SensorDetector::update(int64_t ts_ms, double x) {
  const DetectorConfig& c = *cfg_;
  DetectResult r;
  if (!std::isfinite(x) || (n_ > 0 && ts_ms < last_ts_)) {
    r.valid = false;
    r.alarm = alarm_;
    return r;
  }

  if (n_ == 0) {
    // First reading: seed the profile and the baseline; nothing to compare with yet.
    int i0, i1;
    double f;
    last_profile_ = 0.0;
    off_ = x;
    seasonal(ts_ms, &i0, &i1, &f);
    profile_[i0] = 0.0;
    profile_w_[i0] = 1.0f;
    last_ts_ = first_ts_ = ts_ms;
    last_x_ = x;
    n_ = 1;
    r.expected_lo = r.expected_hi = x;
    r.score = 0.0;
    integral_ = x == std::nearbyint(x);
    if (x < c.range_min || x > c.range_max) {
      const double w = std::max(std::abs(x) * 1e-3, 1e-300);
      const double e = x < c.range_min ? c.range_min - x : x - c.range_max;
      r.score = limitScore(e / w);
      r.kind = AnomalyKind::kRange;
      raiseOrExtend(ts_ms, x, r.score, r.kind, c.range_min, c.range_max, &r);
    }
    r.alarm = alarm_;
    return r;
  }

  const double dt = static_cast<double>(ts_ms - last_ts_) * 1e-3;
  const bool warm = n_ >= c.warmup_samples;
  // Level shift and drift compare with the seasonal reference: armed after one period.
  const bool armed = warm && (c.season_period_s <= 0.0 ||
                              static_cast<double>(ts_ms - first_ts_) >= c.season_period_s * 1e3);

  // --- Silence (the gap that ended with this reading) and cadence.
  double s_silence = 0.0;
  if (c.enable_silence && n_ >= 3) {
    const double thr =
        std::max(c.silence_factor * cadence_s_, cadence_s_ + c.silence_dev_factor * cadence_dev_s_);
    if (thr > 0.0 && dt >= thr) s_silence = evidenceScore(dt / thr);
  }

  // --- Hard limits.
  double s_range = 0.0;
  if (x < c.range_min || x > c.range_max) {
    const double width = c.range_max - c.range_min;
    const double w =
        std::isfinite(width) && width > 0.0 ? 0.1 * width : std::max(std::abs(x) * 1e-3, 1e-300);
    const double e = x < c.range_min ? c.range_min - x : x - c.range_max;
    s_range = limitScore(e / w);
  }
  double s_rate = 0.0;
  if (c.max_rate_per_s > 0.0 && dt > 0.0) {
    const double rate = std::abs(x - last_x_) / dt;
    if (rate > c.max_rate_per_s) s_rate = limitScore(rate / c.max_rate_per_s - 1.0);
  }

  if (settle_until_ms_ != 0 && ts_ms >= settle_until_ms_) {
    sfast_ -= slow_;
    sref_ -= slow_;
    off_ += slow_;
    base_ -= slow_;
    slow_ = 0.0;
    settle_until_ms_ = 0;
  }
  // --- Baseline prediction.
  int i0, i1;
  double f;
  const double prof = seasonal(ts_ms, &i0, &i1, &f);
  const double y = x - off_ - prof;  // deseasonalised value, relative to the accepted level
  // Floors: the sensor's resolution (configured, or the smallest change seen) and its level, so
  // flat, quantised and integer series do not collapse the scale.
  // Learned: half the typical step, up to the whole step for a sensor that mostly repeats its
  // value (counts, coarse quantisation), where one step is the usual noise.
  const double res = c.resolution > 0.0 ? c.resolution : (0.5 + 0.5 * p_repeat_) * res_;
  const double sigma_floor = std::max(std::max(std::abs(off_ + base_) * 1e-9, res), 1e-300);
  const double sigma = std::max(mad_ * kSigmaPerMad, sigma_floor);
  const double resid = y - base_;
  const double z = resid / sigma;
  const double pred = off_ + prof + base_;
  r.expected_lo = pred - c.spike_z * sigma;
  r.expected_hi = pred + c.spike_z * sigma;

  // --- Spike / dip, and runs of outliers (a long run is a level shift).
  double s_spike = 0.0;
  bool run_shift = false;
  // Counts (integer readings only): spikes and dips against the scale of their own side, never
  // below the two-sided one - a count's right tail is wider than its left and than a symmetric
  // scale says (Poisson(3): 12 is 5.4 sigma above the mean, yet 1 reading in 14,000).
  if (x != std::nearbyint(x)) integral_ = false;
  const double side_mad = resid > 0.0 ? mad_up_ : mad_dn_;
  const double zs = integral_ ? resid / std::max(sigma, side_mad * kSigmaPerMad) : z;
  const bool outlier = std::abs(zs) >= c.spike_z;
  if (c.enable_spike && n_ >= 3) s_spike = evidenceScore2(zs * zs / (c.spike_z * c.spike_z));
  if (outlier) {
    const int8_t sign = z > 0 ? 1 : -1;
    if (sign != run_sign_) run_len_ = 0;
    run_sign_ = sign;
    run_y_[run_len_ & 7] = static_cast<float>(y);
    ++run_len_;
    if (run_len_ > c.spike_max_len && c.enable_level_shift && armed) run_shift = true;
  } else {
    run_len_ = 0;
    run_sign_ = 0;
  }

  // --- CUSUM on the standardised residual (outliers excluded: they are spikes or runs).
  double s_level = 0.0;
  if (c.enable_level_shift) {
    if (!outlier && n_ >= 3 && stuck_len_ < 2) {
      // Correlated noise inflates sums of residuals: scale to the long-run spread.
      const double zc = z * std::sqrt((1.0 - rho_) / (1.0 + rho_));
      g_pos_ = std::max(0.0, g_pos_ + zc - c.cusum_k);
      g_neg_ = std::max(0.0, g_neg_ - zc - c.cusum_k);
    }
    if (armed) s_level = evidenceScore(std::max(g_pos_, g_neg_) / c.cusum_h);
  }

  // --- Sustained shift: recent mean against the reference mean (both in readings).
  double s_shift = 0.0;
  double q_shift = 0.0;
  double shift_y = 0.0;
  const double af = 1.0 / c.shift_fast_samples, ar_ref = 1.0 / c.shift_ref_samples;
  {
    const double yc = base_ + clampAbs(resid, 2.0 * kClipSigmas * sigma);
    shift_y = yc;
    sfast_ += std::max(af, 1.0 / static_cast<double>(n_)) * (yc - sfast_);
    const double dv = sfast_ - sref_;
    if (c.enable_shift && n_ >= c.shift_ref_samples && warm) {
      const double corr = (1.0 + rho_) / (1.0 - rho_);
      const double floor_var =
          sigma * sigma * corr * (af / (2.0 - af) + ar_ref / (2.0 - ar_ref));
      const double var = std::max(svar_, floor_var);
      const double sd = std::sqrt(var);
      q_shift = dv == 0.0 ? 0.0 : std::abs(dv) / (c.shift_z * std::max(sd, 1e-300));
      s_shift = evidenceScore(q_shift);
    }
    // The reference learns slowly while the shift evidence is high and not at all during an
    // alarm; the spread learns from normal operation only (winsorised at 2 sd).
    if (!alarm_) {
      const double w = q_shift >= 0.5 ? 0.1 : 1.0;
      sref_ += w * std::max(ar_ref, 1.0 / static_cast<double>(n_)) * (yc - sref_);
      if (q_shift < 1.0 && n_ >= 2 * c.shift_fast_samples) {
        const double l2 = n_ > c.shift_ref_samples ? std::min(dv * dv, 4.0 * svar_) / 0.9 : dv * dv;
        svar_ += std::max(ar_ref, 1.0 / static_cast<double>(n_)) * (l2 - svar_);
      }
    }
  }

  // --- Drift: the slow level (drift_tau_s) against the seasonal reference, in units of the slow
  // level's normal spread (learned in time, drift_memory_s, winsorised).
  double s_drift = 0.0;
  const bool event_is_shift = alarm_ && event_.kind == AnomalyKind::kLevelShift;
  // The spread of the slow level is learned once the seasonal profile is (armed), over at least
  // 4 time constants of the slow level before the drift detector may alarm.
  const bool settling = settle_until_ms_ != 0;
  if (c.enable_drift && armed && learn_s_ >= 4.0 * c.drift_tau_s && !event_is_shift && !settling) {
    // Floor: the spread of the slow level for white noise of this sigma, correlation included.
    const double w = std::min(std::max(cadence_s_, 1e-3) / c.drift_tau_s, 1.0);
    const double floor_var = sigma * sigma * (w / (2.0 - w) * (1.0 + rho_) / (1.0 - rho_));
    const double var = std::max(base_var_, floor_var);
    s_drift = evidenceScore2(slow_ * slow_ / (c.drift_z * c.drift_z * var));
  }
  {
    // Slow level: the clipped deseasonalised value averaged over drift_tau_s (in time).
    const double yc = base_ + clampAbs(resid, kClipSigmas * sigma);
    const double w = std::max(std::min(dt / c.drift_tau_s, 1.0), 1.0 / static_cast<double>(n_));
    slow_ = settling ? base_ : slow_ + w * (yc - slow_);
  }

  // --- Stuck: probability of this run of unchanged values under the normal repeat rate.
  double s_stuck = 0.0;
  const bool repeat = std::abs(x - last_x_) <= c.stuck_tolerance;
  if (repeat) {
    if (stuck_len_ == 0) stuck_p0_ = p_repeat_;
    ++stuck_len_;
    // A sensor that usually repeats its value (a flat line, a slow counter) is not stuck when it
    // repeats: only a run that the repeat rate before it makes improbable counts.
    // A sensor that never varied (fewer than warmup_samples changes) is not stuck either.
    if (stuck_p0_ < 0.5 && changes_ >= c.warmup_samples)
      stuck_surprise_ -= std::log(std::max(stuck_p0_, 0.02));
  } else {
    stuck_len_ = 0;
    stuck_surprise_ = 0.0;
    if (changes_ < UINT32_MAX) ++changes_;
  }
  if (c.enable_stuck && stuck_len_ >= c.stuck_min_samples)
    s_stuck = evidenceScore(stuck_surprise_ / c.stuck_surprise);

  // --- Combine: hard limits first, then the strongest calibrated evidence of three families:
  // fast (spike/dip, CUSUM level shift, stuck, silence) and sustained shift, each calibrated
  // against its own evidence history, and drift (already relative to its own learned spread).
  double score = 0.0;
  AnomalyKind kind = AnomalyKind::kNone;
  if (s_range > 0.0) {
    score = s_range;
    kind = AnomalyKind::kRange;
  } else if (s_rate > 0.0) {
    score = s_rate;
    kind = AnomalyKind::kRate;
  }
  double fast = 0.0;
  AnomalyKind fast_kind = AnomalyKind::kNone;
  if (warm) {
    auto take = [&](double s, AnomalyKind k) {
      if (s > fast) {
        fast = s;
        fast_kind = k;
      }
    };
    take(s_spike, run_shift ? AnomalyKind::kLevelShift
                            : (z > 0 ? AnomalyKind::kSpike : AnomalyKind::kDip));
    take(s_level, AnomalyKind::kLevelShift);
    take(s_stuck, AnomalyKind::kStuck);
    take(s_silence, AnomalyKind::kSilence);
  }
  const double raw = std::max(std::max(score, fast), std::max(s_shift, s_drift));
  const bool hard_kind = kind == AnomalyKind::kRange || kind == AnomalyKind::kRate;
  double surprise = 0.0;
  auto qOf = [](double sc) { return sc >= 1.0 ? 1e12 : std::sqrt(sc / (1.0 - sc)); };
  const double q_fast = qOf(fast), q_sh = qOf(s_shift);
  const double x_fast = std::log1p(q_fast), x_shift = std::log1p(q_sh);
  if (warm) {
    // Below S = 1 the cap decides (and the score is < 1e-6): no histogram walk.
    auto calibrated = [&](const CalibHist& h, double q, double x) {
      const double cap = c.evidence_surprise * q * q;
      return cap < 1.0 ? cap : std::min(calibSurprise(h, x), cap);
    };
    const double s_f = calibrated(calib_fast_, q_fast, x_fast);
    const double s_s = calibrated(calib_shift_, q_sh, x_shift);
    // Drift is measured against the level's own learned normal spread already, and grows too
    // slowly for an evidence history (it would learn the drift): 0.5 at its threshold.
    const double q_dr = qOf(s_drift);
    const double s_d = kScoreHalf * q_dr * q_dr;
    if (!hard_kind) {
      surprise = s_f;
      kind = fast_kind;
      if (s_s > surprise) {
        surprise = s_s;
        // Abrupt (the current value well beyond the recent mean, which still lags): a level
        // shift; otherwise a drift.
        kind = std::abs(shift_y - sref_) > 2.0 * std::abs(sfast_ - sref_) ? AnomalyKind::kLevelShift
                                                                         : AnomalyKind::kDrift;
      }
      if (s_d > surprise) {
        surprise = s_d;
        kind = AnomalyKind::kDrift;
      }
    } else {
      surprise = std::max(std::max(s_f, s_s), s_d);
    }
  }
  if (hard_kind) surprise = std::max(surprise, surpriseFromScore(score));
  score = hard_kind ? score : scoreFromSurprise(surprise);
  if (score < c.alarm_off && !hard_kind) kind = AnomalyKind::kNone;
  const bool was_alarm = alarm_;

  // --- Alarm state machine.
  const bool hard = kind == AnomalyKind::kRange || kind == AnomalyKind::kRate;
  if (score >= c.alarm_on && (warm || hard)) {
    raiseOrExtend(ts_ms, x, score, kind, r.expected_lo, r.expected_hi, &r);
    below_ = 0;
  } else if (alarm_) {
    if (score >= c.alarm_off) {
      below_ = 0;
      last_high_ts_ = ts_ms;
      if (kind == AnomalyKind::kLevelShift &&
          (event_.kind != AnomalyKind::kDrift || alarm_len_ < kDriftRelabelMax) &&
          event_.kind != AnomalyKind::kRange && event_.kind != AnomalyKind::kRate &&
          event_.kind != AnomalyKind::kStuck && event_.kind != AnomalyKind::kSilence)
        event_.kind = AnomalyKind::kLevelShift;
      event_.peak_score = std::max(event_.peak_score, score);
    } else if (++below_ >= c.clear_samples) {
      endAlarm(&r);
    }
  }
  if (alarm_ && ++alarm_len_ > c.accept_after_samples &&
      (event_.kind == AnomalyKind::kLevelShift || event_.kind == AnomalyKind::kDrift)) {
    last_high_ts_ = ts_ms;
    endAlarm(&r);
  }

  // --- Learning (after scoring: the score of a reading never depends on itself or later ones).
  // Surprising evidence (S >= 2) teaches the evidence history slowly (rising evidence does not
  // raise its own reference, while a sensor's recurring bursts still become its norm); readings
  // during an alarm and beyond hard limits not at all (an anomaly is not the norm).
  if (armed && !calib_armed_) {
    // The evidence of the learning period (before the seasonal profile was learned) is not
    // the sensor's normal evidence: start the history afresh.
    calib_armed_ = true;
    calib_fast_ = CalibHist{};
    calib_shift_ = CalibHist{};
    calib_w_ = 1.0;
  }
  if (burst_x_ >= 0.0f && warm && !hard_kind && surprise < 1.0) {
    // Counts: the previous reading's surprising evidence was an isolated excursion - the count
    // is back to normal at once (S < 1; a burst, not rising or persisting evidence). It teaches
    // the fast history at full weight after all, so recurring bursts become normal.
    const double u = burst_x_ / kCalibBinWidth;
    const int b = u >= kCalibBins ? kCalibBins - 1 : static_cast<int>(u);
    calib_fast_.bins[b] += static_cast<float>(0.9 * calib_w_);
    calib_fast_.total += 0.9 * calib_w_;
  }
  burst_x_ = -1.0f;
  if (warm && !was_alarm && !hard_kind) {
    const bool surprising = surprise >= 2.0;
    learnCalib(x_fast, x_shift, surprising ? 0.1 : 1.0);
    if (surprising && integral_) burst_x_ = static_cast<float>(x_fast);
  }
  {
    // Resolution: half the typical non-zero step (EWMA of |change|, each step clipped at 4x the
    // estimate), so jitter around quantised values does not pass for resolution. A running mean
    // over the first 100 changes, so a sensor whose first changes were tiny is ready early.
    const double d = std::abs(x - last_x_);
    const double ra = std::max(0.01, 1.0 / std::max<uint32_t>(changes_, 1));
    if (d > 0.0) res_ = res_ == 0.0 ? d : res_ + ra * (std::min(d, 4.0 * res_) - res_);
  }
  const bool shift_event = alarm_ && event_.kind == AnomalyKind::kLevelShift;
  if (run_shift) {
    // Re-seat the level on the run of outliers; the alarm carries on as a level shift.
    base_ = median(run_y_, std::min<uint32_t>(run_len_, 8));
    g_pos_ = g_neg_ = 0.0;
    run_len_ = 0;
    run_sign_ = 0;
  } else if (shift_event) {
    base_ += 0.3 * clampAbs(y - base_, kClipSigmas * sigma);
  }
  // Learning. The local state (level, scale, correlation, repeat rate) learns from every reading
  // without evidence other than drift - the level must keep following a drift to measure it. The
  // reference (seasonal profile, normal spread of the level) learns only from readings without
  // any evidence. Both also learn in an alarm's clearing tail, so an alarm never freezes the
  // state that would end it.
  const double other =
      warm ? std::max(std::max(std::max(s_spike, s_level), std::max(s_stuck, s_silence)),
                      std::max(s_rate, s_range))
           : std::max(s_rate, s_range);
  if (other < kLearnOff) {
    const double nn = static_cast<double>(n_);
    const double la = std::max(c.level_alpha, 1.0 / nn);
    const double sa = std::max(c.scale_alpha, 1.0 / nn);
    const double rc = clampAbs(resid, kClipSigmas * sigma);
    // Early on sigma is unknown: do not clip the scale's own input until warm.
    const double ar =
        warm ? std::min(std::abs(resid), kClipSigmas * sigma / kSigmaPerMad) : std::abs(resid);
    if (n_ >= 2 && raw < kLearnOff) {
      mad_ += sa * (ar - mad_);
      if (resid > 0.0) mad_up_ += sa * (ar - mad_up_);
      if (resid < 0.0) mad_dn_ += sa * (ar - mad_dn_);
    }
    if (n_ >= 3 && warm) {
      const double zc = clampAbs(z, 3.0);
      rho_ += 0.01 * (std::clamp(zc * last_z_, -9.0, 9.0) - rho_);
      rho_ = std::clamp(rho_, 0.0, 0.9);
    }
    last_z_ = clampAbs(z, 3.0);
    base_ += la * (warm ? rc : resid);
    p_repeat_ += kRepeatAlpha * ((repeat ? 1.0 : 0.0) - p_repeat_);
  } else if (warm && !outlier && !shift_event) {
    // Moderate evidence that persists (a level that moved by less than an outlier, a fluid
    // warming faster than usual): the local level follows at a tenth of its rate, so a moved
    // level cannot freeze it and hold the evidence - and the alarm - up for ever. Outliers
    // (spikes, runs) never move it.
    const double la = std::max(c.level_alpha, 1.0 / static_cast<double>(n_));
    base_ += kSlowLearn * la * clampAbs(resid, kClipSigmas * sigma);
  }
  if (raw < kLearnOff) {
    if (armed) {
      ++learn_n_;
      learn_s_ += dt;
      // In time, not readings; winsorised at 2 sd (x 1/0.9, the bias that leaves for a normal
      // level), so a drift does not teach the reference that large offsets are normal.
      const double va = std::max(std::min(dt / c.drift_memory_s, 0.5), 1.0 / learn_n_);
      const double l2 =
          learn_n_ > 30 ? std::min(slow_ * slow_, 4.0 * base_var_) / 0.9 : slow_ * slow_;
      base_var_ += va * (l2 - base_var_);
    }
    // Seasonal profile: each bin is the mean of x - off over the readings nearest to its centre
    // (cumulative during the first period, then forgetting with a time constant of
    // season_memory_periods); the prediction interpolates between bin centres. A plain mean per
    // bin cannot oscillate (learning every bin from the interpolated error did, between
    // neighbouring bins, and inflated sigma on densely sampled sensors).
    double rate_min = 1e-3;  // no season: the profile is one long-term mean
    if (c.season_period_s > 0.0 && cadence_s_ > 0.0)
      rate_min = std::clamp(
          cadence_s_ * c.season_bins / (c.season_period_s * c.season_memory_periods), 1e-5, 0.5);
    // Weight a bin collects in one period: the cumulative-mean stage ends there.
    const double w_cap = 1.0 / (rate_min * std::max(1.0, c.season_memory_periods));
    const int k = f < 0.5 ? i0 : i1;
    if (profile_w_[k] <= 0.0f) {
      profile_[k] = prof;  // starts from the current prediction, then learns
      profile_w_[k] = 1.0f;
    }
    const double w = profile_w_[k];
    const double e = clampAbs(x - off_ - profile_[k], kClipSigmas * sigma);
    profile_[k] += (w < w_cap ? 1.0 / (w + 1.0) : rate_min) * e;
    profile_w_[k] = static_cast<float>(std::min(w + 1.0, 1e9));
    const double prof_new = interpolate(i0, i1, f);  // only bin k changed
    // What the profile learned moves out of the local level: the prediction stays continuous.
    base_ -= prof_new - prof;
    slow_ -= prof_new - prof;
    sfast_ -= prof_new - prof;
    sref_ -= prof_new - prof;
    last_profile_ = prof_new;
  }
  if (dt > 0.0 && s_silence < kLearnOff) {
    if (n_ <= 10) {
      cadence_s_ += (dt - cadence_s_) / static_cast<double>(n_);
      cadence_dev_s_ += (std::abs(dt - cadence_s_) - cadence_dev_s_) / static_cast<double>(n_);
    } else {
      const double d = std::min(dt, 4.0 * cadence_s_);
      cadence_s_ += kCadenceAlpha * (d - cadence_s_);
      cadence_dev_s_ += kCadenceAlpha * (std::abs(d - cadence_s_) - cadence_dev_s_);
    }
  }

  last_ts_ = ts_ms;
  last_x_ = x;
  ++n_;
  r.score = score;
  r.surprise = surprise;
  r.raw_score = raw;
  r.kind = kind;
  r.alarm = alarm_;
  return r;
}

// --- State image (issue 19; state_io.h) ---

template <class Ar>
void stateFields(Ar& ar, AnomalyEvent& e) {
  ar(e.start_ms, e.end_ms, e.value, e.peak_score, e.expected_lo, e.expected_hi, e.kind);
  ar.check(e.kind <= AnomalyKind::kCombined, "event kind");
  ar.check(saneStateMs(e.start_ms) && saneStateMs(e.end_ms), "event time");
}

template <class Ar>
void SensorDetector::fields(Ar& ar) {
  ar(phase_ts_, phase_ms_, first_ts_, last_ts_, last_high_ts_, last_x_, cadence_s_,
     cadence_dev_s_, off_, base_, mad_, mad_up_, mad_dn_, slow_, base_var_, last_profile_, sfast_,
     sref_, svar_, g_pos_, g_neg_, rho_, last_z_, p_repeat_, stuck_surprise_, stuck_p0_, res_,
     calib_w_, calib_fast_.total, calib_fast_.bins, calib_shift_.total, calib_shift_.bins, n_,
     learn_n_, learn_s_, settle_until_ms_, stuck_len_, changes_, run_len_, below_, alarm_len_,
     hot_fast_, hot_shift_, burst_x_, run_sign_, alarm_, calib_armed_, integral_, run_y_, event_,
     prev_event_, profile_, profile_w_);
  ar.check(phase_ms_ >= -1, "season phase");
  ar.check(saneStateMs(phase_ts_) && saneStateMs(first_ts_) && saneStateMs(last_ts_) &&
               saneStateMs(last_high_ts_) && saneStateMs(settle_until_ms_),
           "timestamp");
  ar.check(run_sign_ >= -1 && run_sign_ <= 1, "outlier run sign");
}

std::string SensorDetector::unlistedStateBytes() {
  static const DetectorConfig cfg;
  SensorDetector d(&cfg);
  StateLayoutProbe p(&d, sizeof d, alignof(SensorDetector));
  p(d.cfg_, d.period_ms_, d.bins_per_ms_);
  d.fields(p);
  return p.gaps();
}

// A member added to SensorDetector must be added to fields() too; this size check (LP64 hosts)
// fails to remind you (and the unit test of unlistedStateBytes() finds a member that fits into
// padding). Update the number after adding the member to the list.
static_assert(sizeof(void*) != 8 || sizeof(SensorDetector) == 1944,
              "SensorDetector changed: list the new member in SensorDetector::fields()");

namespace {
constexpr uint8_t kSensorStateTag = 0x53;  // 'S'
constexpr uint8_t kSensorStateVersion = 2;  // 2: per-side scales, burst top-up, integral_
}  // namespace

void SensorDetector::save(std::string& out) const {
  StateWriter w(out);
  w.begin(kSensorStateTag, kSensorStateVersion);
  const_cast<SensorDetector*>(this)->fields(w);  // the writer only reads
  w.end();
}

Status SensorDetector::restore(std::span<const uint8_t>& in) {
  StateReader rd(in);
  if (!rd.begin(kSensorStateTag, kSensorStateVersion, "sensor detector state")) return rd.status();
  SensorDetector tmp(cfg_);
  tmp.fields(rd);
  if (!rd.end()) return rd.status();
  // The phase is a cache of phase_ts_ modulo the period; recomputed if the period changed.
  if (tmp.period_ms_ == 0 || tmp.phase_ms_ >= tmp.period_ms_) tmp.phase_ms_ = -1;
  *this = tmp;
  in = in.subspan(rd.consumed());
  return {};
}

}  // namespace outpost::detect
