#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "outpost/common/codec.h"

namespace outpost::agent {

// Collects readings into a batch and says when to close it: at `max_readings` readings, or
// `linger_us` after the first reading of the batch (monotonic clock), whichever comes first.
// Pipeline thread only.
class Batcher {
 public:
  Batcher(size_t max_readings, int64_t linger_us, std::vector<codec::SensorInfo> dictionary);

  void add(const wire::Reading& r, int64_t mono_now_us);
  // A window statistic counts like a reading towards max_readings.
  void addWindow(const wire::WindowStat& w, int64_t mono_now_us);
  bool empty() const { return readings_.empty() && windows_.empty(); }
  size_t size() const { return readings_.size() + windows_.size(); }
  bool full() const { return size() >= max_readings_; }
  // When the current batch must close (monotonic µs); max() when empty.
  int64_t deadline() const {
    return empty() ? std::numeric_limits<int64_t>::max() : first_mono_us_ + linger_us_;
  }
  bool due(int64_t mono_now_us) const { return full() || mono_now_us >= deadline(); }

  // Moves the collected readings into a batch with the sensor dictionary of the sensors it uses.
  // epoch, seq and dropped are the outbox's to fill in.
  codec::BatchContent take(const std::string& device_id, int64_t created_us);
  // SIGHUP changed the sensors: the dictionary of the following batches. Call with an empty
  // batch (its readings were made under the old dictionary).
  void setDictionary(std::vector<codec::SensorInfo> dictionary) {
    dictionary_ = std::move(dictionary);
  }

 private:
  size_t max_readings_;
  int64_t linger_us_;
  std::vector<codec::SensorInfo> dictionary_;
  std::vector<wire::Reading> readings_;
  std::vector<wire::WindowStat> windows_;
  std::vector<bool> used_;  // indexed by sensor id
  int64_t first_mono_us_ = 0;
};

}  // namespace outpost::agent
