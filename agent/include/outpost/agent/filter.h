#pragma once

// Per-sensor filters. A sensor's chain runs its filters in config order; a reading dropped by one
// does not reach the next. Filters keep O(1) state per sensor and never allocate per reading.
// Pipeline thread only (counts are plain integers; the exported metrics are atomics).

#include <array>
#include <cstdint>
#include <memory>

#include "outpost/agent/inputs.h"
#include "outpost/common/codec.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

// Why a reading was dropped: stable names, the `reason` label of
// outpost_agent_readings_filtered_total.
enum class FilterDropReason : uint8_t {
  kNonFinite,
  kOutOfRange,
  kDeadband,
  kRateLimit,
  kDuplicate,
  kLate,  // windows: arrived after its window closed
  kCount
};
const char* filterDropReasonName(FilterDropReason reason);

// What a filter did, for tests and the exported counters.
struct FilterCounts {
  uint64_t passed = 0;
  std::array<uint64_t, static_cast<size_t>(FilterDropReason::kCount)> dropped{};
  uint64_t marked = 0;      // passed with quality set to bad/suspect
  uint64_t heartbeats = 0;  // deadband: passed only because of the heartbeat
  uint64_t droppedFor(FilterDropReason r) const { return dropped[static_cast<size_t>(r)]; }
  uint64_t droppedTotal() const {
    uint64_t n = 0;
    for (auto d : dropped) n += d;
    return n;
  }
};

// Counters shared by every filter of the agent (bounded labels: reason, filter kind, quality).
struct FilterMetrics {
  explicit FilterMetrics(metrics::Registry& registry);
  std::array<metrics::Counter*, static_cast<size_t>(FilterDropReason::kCount)> dropped{};
  std::array<metrics::Counter*, 4> passed{};  // by FilterKind
  metrics::Counter* marked_bad = nullptr;
  metrics::Counter* marked_suspect = nullptr;
};

class Filter {
 public:
  virtual ~Filter() = default;
  // Returns false to drop `r`; may change its quality. Counts either way.
  bool apply(wire::Reading& r);
  const FilterCounts& counts() const { return counts_; }
  virtual FilterKind kind() const = 0;

 protected:
  explicit Filter(FilterMetrics* metrics) : metrics_(metrics) {}
  enum class Verdict { kPass, kPassMarkedBad, kPassMarkedSuspect, kPassHeartbeat, kDrop };
  virtual Verdict check(const wire::Reading& r, FilterDropReason& reason) = 0;

 private:
  FilterCounts counts_;
  FilterMetrics* metrics_;  // may be null (tests)
};

// Builds one filter; `metrics` may be null.
std::unique_ptr<Filter> makeFilter(const FilterSpec& spec, FilterMetrics* metrics);

}  // namespace outpost::agent
