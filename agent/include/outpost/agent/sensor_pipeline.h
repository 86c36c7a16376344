#pragma once

// The per-sensor part of the pipeline between the sources and the batcher: each reading runs
// through its sensor's filter chain (config order), then, by the sensor's output setting, goes to
// the batch as a raw reading, into the sensor's window, or both. Closed windows go to the batch as
// window statistics. Readings of quality bad are sent raw but left out of window statistics.
// No allocation per reading. Pipeline thread only.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "outpost/agent/batcher.h"
#include "outpost/agent/filter.h"
#include "outpost/agent/inputs.h"
#include "outpost/agent/window.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

class SensorPipeline {
 public:
  // Sensors are found by their id (ids may have gaps, see SensorIds). `registry` may be null
  // (tests).
  SensorPipeline(const std::vector<SensorSpec>& sensors, metrics::Registry* registry);

  // What reconfigure() did, by sensor name.
  struct Changes {
    std::vector<std::string> added, rebuilt, removed;
    size_t kept = 0;
    bool any() const { return !added.empty() || !rebuilt.empty() || !removed.empty(); }
  };
  // SIGHUP: makes `sensors` the configured set. A sensor whose filters, window and output are
  // unchanged keeps its state (deadband/rate-limit/dedup memory, open windows); a changed one has
  // its open windows emitted into `batcher`, then gets new filters and window; a removed one has
  // its open windows emitted and is dropped; a new one starts empty. Readings for an id that is no
  // longer configured are ignored afterwards. Counters are shared, never reset.
  Changes reconfigure(const std::vector<SensorSpec>& sensors, int64_t mono_us, Batcher& batcher);

  void process(const wire::Reading& r, int64_t mono_us, Batcher& batcher);

  // Closes the windows of sensors that had no reading for window size + allowed lateness
  // (monotonic time), so a sensor that stops does not hold its last window forever. Cheap to call
  // often: it looks at the sensors at most every 100 ms.
  void closeIdle(int64_t mono_us, Batcher& batcher);
  // Emits every window holding data (shutdown, end of input).
  void closeAll(int64_t mono_us, Batcher& batcher);

  // For tests and diagnostics.
  const std::vector<std::unique_ptr<Filter>>& filters(uint16_t sensor) const {
    return sensors_[sensor].filters;
  }
  const EventTimeWindow* window(uint16_t sensor) const {
    return sensors_[sensor].window ? &*sensors_[sensor].window : nullptr;
  }

 private:
  struct PerSensor {
    bool active = false;
    SensorSpec spec;  // as configured (reconfigure() compares it)
    std::vector<std::unique_ptr<Filter>> filters;
    std::optional<EventTimeWindow> window;
    bool raw = true;
    int64_t idle_after_us = 0;
    int64_t last_mono_us = 0;
  };
  void emit(int64_t mono_us, Batcher& batcher);
  void build(const SensorSpec& spec);  // (re)creates the sensor's filters and window
  void rebuildWindowed();

  std::unique_ptr<FilterMetrics> filter_metrics_;
  metrics::Counter* late_ = nullptr;
  metrics::Counter* windows_emitted_ = nullptr;
  std::vector<PerSensor> sensors_;
  std::vector<uint16_t> windowed_;  // ids of sensors with a window
  std::vector<wire::WindowStat> scratch_;
  int64_t next_idle_check_us_ = 0;
};

}  // namespace outpost::agent
