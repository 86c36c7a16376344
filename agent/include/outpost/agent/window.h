#pragma once

// Event-time windows of one sensor: tumbling (hop = size) and sliding (size = k * hop).
//
// Readings go into panes of `hop` length (Welford mean/M2, min, max, first/last by event time);
// a window is the merge of size/hop consecutive panes (Chan et al.'s pairwise update). Moments
// are of shifted values (see Pane), so large offsets such as 1e9 + noise keep their precision. The
// watermark is the newest event time seen minus the allowed lateness; a window [start, start +
// size) is emitted once the watermark reaches its end. A reading that belongs to an already emitted
// window is late: counted and left out (never merged into a later window). Empty windows are not
// emitted. All state is allocated at construction; add() never allocates. Pipeline thread only.

#include <cstdint>
#include <vector>

#include "outpost/agent/inputs.h"
#include "outpost/common/codec.h"

namespace outpost::agent {

class EventTimeWindow {
 public:
  EventTimeWindow(const WindowSpec& spec, uint16_t sensor);

  // Adds a reading; windows it closes are appended to `out`. Returns false if the reading was late
  // (then it is counted in late() and not added).
  bool add(int64_t ts_us, double value, std::vector<wire::WindowStat>& out);

  // Emits every window that holds data, as far as the data goes (stop, or the sensor went idle);
  // later readings older than what was emitted count as late.
  void closeAll(std::vector<wire::WindowStat>& out);

  bool empty() const { return non_empty_panes_ == 0; }
  uint64_t late() const { return late_; }
  uint64_t emitted() const { return emitted_; }

 private:
  // Moments are kept of (value - shift), shift = the pane's first value: with large offsets
  // (1e9 + noise) the differences are exact (Sterbenz) and the mean and M2 keep full precision.
  struct Pane {
    uint64_t count = 0;
    double shift = 0;
    double mean = 0;  // of value - shift
    double m2 = 0;
    double min = 0;
    double max = 0;
    double first = 0;
    double last = 0;
    int64_t first_ts = 0;
    int64_t last_ts = 0;
  };
  static void merge(Pane& into, const Pane& p);
  Pane& paneAt(int64_t pane_index) { return panes_[static_cast<size_t>(pane_index % ring_)]; }
  void emitReady(int64_t watermark, std::vector<wire::WindowStat>& out);
  void emitWindow(std::vector<wire::WindowStat>& out);
  int64_t floorDiv(int64_t a, int64_t b) const { return a >= 0 ? a / b : -((-a + b - 1) / b); }

  WindowSpec spec_;
  uint16_t sensor_;
  int64_t panes_per_window_;
  int64_t ring_;
  std::vector<Pane> panes_;  // ring indexed by pane index (start / hop) modulo ring_
  bool started_ = false;
  int64_t next_start_ = 0;  // start of the next window to emit (multiple of hop)
  int64_t max_ts_ = 0;
  size_t non_empty_panes_ = 0;
  // The pane the last reading went to (most readings go to the same one): saves two divisions.
  Pane* cached_pane_ = nullptr;
  int64_t cached_start_ = 0;
  uint64_t late_ = 0;
  uint64_t emitted_ = 0;
};

}  // namespace outpost::agent
