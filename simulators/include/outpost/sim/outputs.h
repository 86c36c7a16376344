#pragma once

// File outputs of `outpost-sim fleet`: the line protocol an agent's stdin source reads, and CSV
// per device and sensor for `outpost-aggregator detect`. Both are deterministic functions of the
// fleet's steps (byte-identical for the same seed and options).
//
// Thread-safety: none; the fleet's thread owns them.

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/common/status.h"
#include "outpost/sim/fleet.h"

namespace outpost::sim {

// Many output files written in 64 KiB appends (open, write, close), so a fleet of thousands of
// devices x sensors never holds thousands of descriptors. The first write truncates the file and
// writes its header.
class BufferedFiles {
 public:
  explicit BufferedFiles(size_t flush_bytes = 64 * 1024) : flush_bytes_(flush_bytes) {}
  size_t add(std::string path, std::string header);
  Status append(size_t file, std::string_view text);
  Status flushAll();

 private:
  Status flush(size_t file);
  struct File {
    std::string path;
    std::string header;
    std::string buf;
    bool created = false;
  };
  size_t flush_bytes_;
  std::vector<File> files_;
};

enum class LineTimestamp { kNone, kSeconds, kMillis, kMicros };

class StepOutput {
 public:
  virtual ~StepOutput() = default;
  virtual Status write(const Fleet& fleet, int device, const DeviceStep& step) = 0;
  virtual Status endStep() { return {}; }
  virtual Status finish() = 0;
};

// `sensor value [timestamp]` per line. dir empty: stdout (one device only), else
// DIR/<device>.lines. Timestamps are the device's (skewed) clock.
std::unique_ptr<StepOutput> makeLinesOutput(const std::string& dir, const Fleet& fleet,
                                            LineTimestamp ts);
// DIR/<device>/<sensor>.csv with `timestamp,value,label` (ISO 8601 UTC, µs; label = anomaly kind
// or empty).
std::unique_ptr<StepOutput> makeCsvOutput(const std::string& dir, const Fleet& fleet);

}  // namespace outpost::sim
