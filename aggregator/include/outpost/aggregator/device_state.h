#pragma once

// Per-device processing state of the scaled-out aggregator (design.md, "Scaling past one machine"):
// what a `process` instance writes to the compacted `outpost.state` topic (key = device id) after
// each Kafka transaction, and what the instance that is assigned the device's partition next
// restores from it: the device's dedup memory and its detector state.
//
// Thread-safety: none; a DeviceDedup / DeviceStateRecord is owned by the thread that owns the
// device. The free functions are pure and may be called from any thread.

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "outpost/common/status.h"

namespace outpost::aggregator {

// Completed batches (epoch, seq) of one device as disjoint closed intervals per epoch (agents send
// seqs mostly in order, so a device costs a few intervals).
//
// Bounded, so that a state record stays small whatever a device sends:
//  - at most kMaxEpochs epochs: the highest epochs are kept. Adding to a new epoch beyond the bound
//    forgets the lowest one; a batch of a forgotten (or lower, never recorded) epoch is then
//    treated as NEW (contains() is false), so a very late resend from an agent store that was
//    re-created more than kMaxEpochs times since is produced again (a duplicate, never a loss).
//  - at most kMaxIntervals intervals per epoch: beyond it the two LOWEST intervals of that epoch
//    are merged, i.e. the oldest gap is filled and its seqs count as done. A batch of that gap
//    arriving afterwards is treated as a duplicate (dropped). Gaps that old are in practice
//    batches the agent dropped itself (outbox full, counted in Batch.dropped) and will never come;
//    keeping the floor means a resend of anything old is still recognised.
class DeviceDedup {
 public:
  static constexpr size_t kMaxEpochs = 4;
  static constexpr size_t kMaxIntervals = 256;

  using Intervals = std::map<uint64_t, uint64_t>;  // lo -> hi, inclusive, disjoint, not adjacent

  bool contains(uint64_t epoch, uint64_t seq) const;
  // Records (epoch, seq) as completed (no-op if already contained), applying the bounds above.
  void add(uint64_t epoch, uint64_t seq);
  size_t intervals() const;  // all epochs
  bool empty() const { return epochs_.empty(); }
  bool operator==(const DeviceDedup&) const = default;

  // Iteration (encoding, tests): epoch -> its intervals, ascending.
  const std::map<uint64_t, Intervals>& epochs() const { return epochs_; }

  // Decoding: replaces the contents with already-validated intervals (see decodeDeviceState).
  // Error, and nothing changed, when they are not ordered/disjoint/non-adjacent with lo <= hi,
  // or exceed kMaxEpochs / kMaxIntervals.
  Status assign(std::map<uint64_t, Intervals> epochs);

 private:
  std::map<uint64_t, Intervals> epochs_;
};

struct DeviceStateRecord {
  std::string device;
  DeviceDedup dedup;
  std::string detectors;   // AnomalyStage::saveDevice bytes; empty: none
  int64_t updated_us = 0;  // wall clock of the write, microseconds since the Unix epoch
  bool operator==(const DeviceStateRecord&) const = default;
};

// Format version of the outpost.state value written by this build (StateRecord.format_version).
inline constexpr uint16_t kDeviceStateFormat = 1;
// Upper bound of an encoded record the decoder accepts (bytes).
inline constexpr size_t kMaxDeviceStateBytes = 1 << 20;

// The outpost.state message value: FlatBuffers (schemas/state.fbs, file identifier "OPS1") with a
// format version field.
std::string encodeDeviceState(const DeviceStateRecord& r);

// Untrusted bytes: size limit and the FlatBuffers Verifier first, then semantics (device id valid
// per codec::isValidDeviceId, intervals ordered and disjoint with lo <= hi, counts within the
// bounds, known format version). The error (kCorrupt, or kInvalidArgument for a bad device id /
// unknown version) says what is wrong. Never crashes on any input.
Result<DeviceStateRecord> decodeDeviceState(std::span<const uint8_t> bytes);

}  // namespace outpost::aggregator
