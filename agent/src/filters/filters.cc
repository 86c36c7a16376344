#include <cmath>
#include <cstring>
#include <vector>

#include "outpost/agent/filter.h"

namespace outpost::agent {

const char* filterDropReasonName(FilterDropReason reason) {
  switch (reason) {
    case FilterDropReason::kNonFinite:
      return "non_finite";
    case FilterDropReason::kOutOfRange:
      return "out_of_range";
    case FilterDropReason::kDeadband:
      return "deadband";
    case FilterDropReason::kRateLimit:
      return "rate_limit";
    case FilterDropReason::kDuplicate:
      return "duplicate";
    case FilterDropReason::kLate:
      return "late";
    case FilterDropReason::kCount:
      break;
  }
  return "?";
}

FilterMetrics::FilterMetrics(metrics::Registry& registry) {
  for (size_t i = 0; i < dropped.size(); ++i) {
    dropped[i] =
        &registry.counter("outpost_agent_readings_filtered_total",
                          "Readings dropped by filters and windows, by reason",
                          {{"reason", filterDropReasonName(static_cast<FilterDropReason>(i))}});
  }
  for (size_t i = 0; i < passed.size(); ++i) {
    passed[i] = &registry.counter("outpost_agent_filter_passed_total",
                                  "Readings a filter let through, by filter kind",
                                  {{"filter", filterKindName(static_cast<FilterKind>(i))}});
  }
  marked_bad = &registry.counter("outpost_agent_readings_marked_total",
                                 "Readings kept with their quality lowered by a range filter",
                                 {{"quality", "bad"}});
  marked_suspect = &registry.counter("outpost_agent_readings_marked_total",
                                     "Readings kept with their quality lowered by a range filter",
                                     {{"quality", "suspect"}});
}

bool Filter::apply(wire::Reading& r) {
  FilterDropReason reason = FilterDropReason::kCount;
  const Verdict v = check(r, reason);
  if (v == Verdict::kDrop) {
    ++counts_.dropped[static_cast<size_t>(reason)];
    if (metrics_) metrics_->dropped[static_cast<size_t>(reason)]->inc();
    return false;
  }
  ++counts_.passed;
  if (metrics_) metrics_->passed[static_cast<size_t>(kind())]->inc();
  if (v == Verdict::kPassMarkedBad || v == Verdict::kPassMarkedSuspect) {
    const bool bad = v == Verdict::kPassMarkedBad;
    // Never raise a quality a previous filter lowered.
    const auto q = bad ? wire::Quality::Bad : wire::Quality::Suspect;
    if (static_cast<uint8_t>(r.quality()) < static_cast<uint8_t>(q)) {
      r = wire::Reading(r.ts_us(), r.value(), r.sensor(), q);
    }
    ++counts_.marked;
    if (metrics_) (bad ? metrics_->marked_bad : metrics_->marked_suspect)->inc();
  } else if (v == Verdict::kPassHeartbeat) {
    ++counts_.heartbeats;
  }
  return true;
}

namespace {

class RangeFilter final : public Filter {
 public:
  RangeFilter(const FilterSpec& s, FilterMetrics* m) : Filter(m), spec_(s) {}
  FilterKind kind() const override { return FilterKind::kRange; }

 protected:
  Verdict check(const wire::Reading& r, FilterDropReason& reason) override {
    const double v = r.value();
    if (!std::isfinite(v)) {
      reason = FilterDropReason::kNonFinite;
      return spec_.non_finite == Action::kDrop ? Verdict::kDrop : Verdict::kPassMarkedBad;
    }
    if (v < spec_.min || v > spec_.max) {
      reason = FilterDropReason::kOutOfRange;
      switch (spec_.out_of_range) {
        case Action::kDrop:
          return Verdict::kDrop;
        case Action::kBad:
          return Verdict::kPassMarkedBad;
        case Action::kSuspect:
          return Verdict::kPassMarkedSuspect;
      }
    }
    return Verdict::kPass;
  }

 private:
  FilterSpec spec_;
};

class DeadbandFilter final : public Filter {
 public:
  DeadbandFilter(const FilterSpec& s, FilterMetrics* m) : Filter(m), spec_(s) {}
  FilterKind kind() const override { return FilterKind::kDeadband; }

 protected:
  Verdict check(const wire::Reading& r, FilterDropReason& reason) override {
    const double v = r.value();
    if (!has_last_ || std::isnan(v) != std::isnan(last_value_)) return pass(r, Verdict::kPass);
    const double band = std::max(spec_.absolute, std::fabs(last_value_) * spec_.percent / 100.0);
    const double delta = std::fabs(v - last_value_);
    // Both bands 0: any change passes. Non-finite deltas (Inf vs Inf) are no change.
    if (delta > band && !(delta != delta)) return pass(r, Verdict::kPass);
    if (spec_.heartbeat_us > 0 && r.ts_us() - last_ts_ >= spec_.heartbeat_us) {
      return pass(r, Verdict::kPassHeartbeat);
    }
    reason = FilterDropReason::kDeadband;
    return Verdict::kDrop;
  }

 private:
  Verdict pass(const wire::Reading& r, Verdict v) {
    has_last_ = true;
    last_value_ = r.value();
    last_ts_ = r.ts_us();
    return v;
  }
  FilterSpec spec_;
  bool has_last_ = false;
  double last_value_ = 0;
  int64_t last_ts_ = 0;
};

// Event time: the limits hold for the timestamps the readings carry, so replays and bursts from a
// buffered sensor are limited the same way as live data.
class RateLimitFilter final : public Filter {
 public:
  RateLimitFilter(const FilterSpec& s, FilterMetrics* m) : Filter(m), spec_(s) {}
  FilterKind kind() const override { return FilterKind::kRateLimit; }

 protected:
  Verdict check(const wire::Reading& r, FilterDropReason& reason) override {
    const int64_t ts = r.ts_us();
    if (has_last_ && spec_.min_interval_us > 0 && ts - last_ts_ < spec_.min_interval_us) {
      reason = FilterDropReason::kRateLimit;
      return Verdict::kDrop;
    }
    if (spec_.max_per_second > 0) {
      // Fixed one-second buckets of event time; an older timestamp counts in the current one.
      const int64_t second = ts >= 0 ? ts / 1000000 : (ts - 999999) / 1000000;
      if (!has_last_ || second > bucket_) {
        bucket_ = second;
        in_bucket_ = 0;
      }
      if (in_bucket_ >= spec_.max_per_second) {
        reason = FilterDropReason::kRateLimit;
        return Verdict::kDrop;
      }
      ++in_bucket_;
    }
    has_last_ = true;
    last_ts_ = ts;
    return Verdict::kPass;
  }

 private:
  FilterSpec spec_;
  bool has_last_ = false;
  int64_t last_ts_ = 0;
  int64_t bucket_ = 0;
  uint32_t in_bucket_ = 0;
};

class DedupFilter final : public Filter {
 public:
  DedupFilter(const FilterSpec& s, FilterMetrics* m) : Filter(m), ring_(s.history) {}
  FilterKind kind() const override { return FilterKind::kDedup; }

 protected:
  Verdict check(const wire::Reading& r, FilterDropReason& reason) override {
    uint64_t bits;
    const double v = r.value();
    std::memcpy(&bits, &v, sizeof bits);
    for (size_t i = 0; i < filled_; ++i) {
      if (ring_[i].ts == r.ts_us() && ring_[i].bits == bits) {
        reason = FilterDropReason::kDuplicate;
        return Verdict::kDrop;
      }
    }
    ring_[next_] = {r.ts_us(), bits};
    next_ = (next_ + 1) % ring_.size();
    if (filled_ < ring_.size()) ++filled_;
    return Verdict::kPass;
  }

 private:
  struct Seen {
    int64_t ts;
    uint64_t bits;  // the value's bit pattern: equal values, and NaN equal to the same NaN
  };
  std::vector<Seen> ring_;  // sized once
  size_t next_ = 0;
  size_t filled_ = 0;
};

}  // namespace

std::unique_ptr<Filter> makeFilter(const FilterSpec& spec, FilterMetrics* metrics) {
  switch (spec.kind) {
    case FilterKind::kRange:
      return std::make_unique<RangeFilter>(spec, metrics);
    case FilterKind::kDeadband:
      return std::make_unique<DeadbandFilter>(spec, metrics);
    case FilterKind::kRateLimit:
      return std::make_unique<RateLimitFilter>(spec, metrics);
    case FilterKind::kDedup:
      return std::make_unique<DedupFilter>(spec, metrics);
  }
  return nullptr;
}

}  // namespace outpost::agent
