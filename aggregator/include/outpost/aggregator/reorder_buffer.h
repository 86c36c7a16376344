#pragma once

// Per-device seq order for the process role (docs/scaling.md, "Order").
//
// Ingest instances share the agents' batches (an MQTT shared subscription hands consecutive
// batches of one agent to different instances), so a device's batches can reach outpost.batches
// out of seq order: seq 8 produced by one instance before seq 7 by another. The process role
// restores the order before dedup and detection: a batch whose seq is beyond the next one expected
// for its (device, epoch) waits here until the missing seqs arrive, or until it has waited
// `max_wait_us` (the gap is then taken as final: the agent dropped those batches, or died before
// sending them), or until the device holds `max_held` batches. Then the held batches go on in seq
// order.
//
// The buffer holds message copies, not offsets committed: the caller commits a partition's
// consumer offset no further than lowestHeldOffset(partition), so a crash re-reads what was held
// (and dedup drops what was processed after it).
//
// Thread-safety: none; owned by the process role's thread.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace outpost::aggregator {

class ReorderBuffer {
 public:
  struct Held {
    std::string device;
    uint64_t epoch = 0;
    uint64_t seq = 0;
    int32_t partition = 0;
    int64_t offset = 0;
    std::string payload;      // the message value (verified again when released)
    int64_t received_us = 0;  // outpost-received-us of the ingest
    int64_t held_since_us = 0;
  };

  ReorderBuffer(int64_t max_wait_us, size_t max_held)
      : max_wait_us_(max_wait_us), max_held_(max_held) {}

  // Whether a batch with this seq may go on now, given `next_expected` (the lowest seq of the
  // (device, epoch) not yet processed; 0 when unknown: anything goes on).
  static bool inOrder(uint64_t seq, uint64_t next_expected) {
    return next_expected == 0 || seq <= next_expected;
  }
  // Keeps a batch that is not in order. Returns false (nothing kept) when the device already
  // holds max_held batches: the caller releases them first (takeDevice) and processes this one.
  bool hold(Held h);
  // The held batches of (device, epoch) that are in order once `next_expected` is reached, in
  // seq order; each taken batch advances next_expected past its seq.
  std::vector<Held> takeReady(const std::string& device, uint64_t epoch, uint64_t next_expected);
  // Every held batch of the device, in (epoch, seq) order (a full device, or a partition moving).
  std::vector<Held> takeDevice(const std::string& device);
  // Every held batch that has waited max_wait_us at `now_us`, with the later-seq batches of its
  // (device, epoch) (all in seq order): their gap is final.
  std::vector<Held> takeExpired(int64_t now_us);
  // The lowest offset held from `partition`, if any.
  std::optional<int64_t> lowestHeldOffset(int32_t partition) const;
  // Forgets every held batch of `partition` (revoked: its next owner reads them again).
  void dropPartition(int32_t partition);

  size_t size() const { return size_; }

 private:
  using Key = std::pair<std::string, uint64_t>;  // (device, epoch)
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<std::string>{}(k.first) ^ (k.second * 0x9E3779B97F4A7C15ull);
    }
  };
  std::vector<Held> takeStream(const Key& key);

  int64_t max_wait_us_;
  size_t max_held_;
  std::unordered_map<Key, std::map<uint64_t, Held>, KeyHash> streams_;  // seq -> held
  std::unordered_map<std::string, size_t> per_device_;
  std::map<int32_t, std::multiset<int64_t>> offsets_;  // held offsets by partition
  size_t size_ = 0;
};

}  // namespace outpost::aggregator
