#pragma once

#include <cstdint>
#include <vector>

#include "outpost/common/codec.h"

namespace outpost::agent {

// A source of readings. Called only from the pipeline thread.
class Source {
 public:
  virtual ~Source() = default;

  // The sensors this source produces, with ids unique within the agent (assigned at construction).
  virtual const std::vector<codec::SensorInfo>& sensors() const = 0;

  // Appends every reading due at or before `now_us` (wall clock, µs since the Unix epoch) to `out`
  // and returns the wall-clock time at which the next reading falls due.
  virtual int64_t poll(int64_t now_us, std::vector<wire::Reading>& out) = 0;
};

}  // namespace outpost::agent
