#include "outpost/common/detect/detector_config.h"

#include <cmath>
#include <sstream>
#include <string>

namespace outpost::detect {

namespace {

Status bad(const char* field, double value, const char* allowed) {
  std::ostringstream m;
  m << "detector config: " << field << " = " << value << " is invalid; allowed: " << allowed;
  return fail(ErrorCode::kInvalidArgument, m.str());
}

bool in(double v, double lo, double hi) { return std::isfinite(v) && v >= lo && v <= hi; }

}  // namespace

Status validateDetectorConfig(const DetectorConfig& c) {
  if (!in(c.alarm_on, 0.01, 1.0)) return bad("alarm_on", c.alarm_on, "0.01..1");
  if (!in(c.alarm_off, 0.0, c.alarm_on))
    return bad("alarm_off", c.alarm_off, "0..alarm_on (hysteresis needs off <= on)");
  if (c.clear_samples < 1 || c.clear_samples > 100000)
    return bad("clear_samples", c.clear_samples, "1..100000");
  if (c.warmup_samples < 3 || c.warmup_samples > 1000000)
    return bad("warmup_samples", c.warmup_samples, "3..1000000");
  if (c.accept_after_samples < 1) return bad("accept_after_samples", 0, ">= 1");
  if (c.device_min_samples < 1 || c.device_min_samples > 100000)
    return bad("device_min_samples", c.device_min_samples, "1..100000");
  if (c.device_clear_samples < 1 || c.device_clear_samples > 100000)
    return bad("device_clear_samples", c.device_clear_samples, "1..100000");
  if (!in(c.calib_samples, 10.0, 1e9)) return bad("calib_samples", c.calib_samples, "10..1e9");
  if (!in(c.evidence_surprise, 0.01, 1e6))
    return bad("evidence_surprise", c.evidence_surprise, "0.01..1e6");
  if (!(c.resolution >= 0.0) || !std::isfinite(c.resolution))
    return bad("resolution", c.resolution, "0 (learned) or a positive step, finite");
  if (!in(c.level_alpha, 1e-6, 1.0)) return bad("level_alpha", c.level_alpha, "(0, 1]");
  if (!in(c.scale_alpha, 1e-6, 1.0)) return bad("scale_alpha", c.scale_alpha, "(0, 1]");
  if (!in(c.spike_z, 0.5, 1e6)) return bad("spike_z", c.spike_z, "0.5..1e6");
  if (c.spike_max_len < 1 || c.spike_max_len > 7)
    return bad("spike_max_len", c.spike_max_len, "1..7");
  if (!in(c.cusum_k, 0.0, 100.0)) return bad("cusum_k", c.cusum_k, "0..100");
  if (!in(c.cusum_h, 0.01, 1e6)) return bad("cusum_h", c.cusum_h, "0.01..1e6");
  if (c.shift_fast_samples < 2 || c.shift_fast_samples > 1000000)
    return bad("shift_fast_samples", c.shift_fast_samples, "2..1000000");
  if (c.shift_ref_samples <= c.shift_fast_samples || c.shift_ref_samples > 100000000)
    return bad("shift_ref_samples", c.shift_ref_samples, "> shift_fast_samples, <= 1e8");
  if (!in(c.shift_z, 0.1, 1e6)) return bad("shift_z", c.shift_z, "0.1..1e6");
  if (!in(c.drift_z, 0.1, 1e6)) return bad("drift_z", c.drift_z, "0.1..1e6");
  if (!in(c.drift_memory_s, 1.0, 1e9))
    return bad("drift_memory_s", c.drift_memory_s, "1..1e9 seconds");
  if (!in(c.drift_tau_s, 0.001, 1e9)) return bad("drift_tau_s", c.drift_tau_s, "0.001..1e9 seconds");
  if (!in(c.season_period_s, 0.0, 1e9))
    return bad("season_period_s", c.season_period_s, "0 (off) or a period in seconds, <= 1e9");
  if (c.season_period_s > 0.0 && c.season_period_s < 0.001)
    return bad("season_period_s", c.season_period_s, "0 (off) or >= 0.001");
  if (c.season_bins < 1 || c.season_bins > kMaxSeasonBins)
    return bad("season_bins", c.season_bins, "1..96");
  if (!in(c.season_memory_periods, 0.1, 1e6))
    return bad("season_memory_periods", c.season_memory_periods, "0.1..1e6");
  if (!in(c.stuck_surprise, 0.1, 1e6)) return bad("stuck_surprise", c.stuck_surprise, "0.1..1e6");
  if (c.stuck_min_samples < 2) return bad("stuck_min_samples", c.stuck_min_samples, ">= 2");
  if (!(c.stuck_tolerance >= 0.0) || !std::isfinite(c.stuck_tolerance))
    return bad("stuck_tolerance", c.stuck_tolerance, ">= 0, finite");
  if (!in(c.silence_factor, 1.0, 1e6)) return bad("silence_factor", c.silence_factor, "1..1e6");
  if (!in(c.silence_dev_factor, 0.0, 1e6))
    return bad("silence_dev_factor", c.silence_dev_factor, "0..1e6");
  if (std::isnan(c.range_min) || c.range_min == std::numeric_limits<double>::infinity())
    return bad("range_min", c.range_min, "a number or -inf (off)");
  if (std::isnan(c.range_max) || c.range_max == -std::numeric_limits<double>::infinity())
    return bad("range_max", c.range_max, "a number or +inf (off)");
  if (c.range_min >= c.range_max) return bad("range_min", c.range_min, "< range_max");
  if (!(c.max_rate_per_s >= 0.0) || !std::isfinite(c.max_rate_per_s))
    return bad("max_rate_per_s", c.max_rate_per_s, "0 (off) or a positive rate per second");
  return {};
}

}  // namespace outpost::detect
