#pragma once

// Completed batch seqs as disjoint closed intervals lo -> hi (not adjacent: touching intervals are
// merged), shared by DedupStore and DeviceDedup. Agents send seqs mostly in order, so a stream
// costs a few intervals however long it runs.

#include <cstdint>
#include <iterator>
#include <map>

namespace outpost::aggregator {

using SeqIntervals = std::map<uint64_t, uint64_t>;  // lo -> hi, inclusive

// Whether `seq` lies in one of the intervals.
inline bool intervalsContain(const SeqIntervals& ranges, uint64_t seq) {
  auto r = ranges.upper_bound(seq);
  if (r == ranges.begin()) return false;
  return std::prev(r)->second >= seq;
}

// Adds `seq`, merging with the neighbours it touches. False if it was already inside.
inline bool intervalsAdd(SeqIntervals& ranges, uint64_t s) {
  // First range starting after s, and the one before it.
  auto next = ranges.upper_bound(s);
  if (next != ranges.begin()) {
    auto prev = std::prev(next);
    if (prev->second >= s) return false;  // already inside
    if (prev->second + 1 == s) {
      prev->second = s;
      if (next != ranges.end() && next->first == s + 1) {
        prev->second = next->second;
        ranges.erase(next);
      }
      return true;
    }
  }
  if (next != ranges.end() && next->first == s + 1) {
    const uint64_t hi = next->second;
    ranges.erase(next);
    ranges[s] = hi;
  } else {
    ranges[s] = s;
  }
  return true;
}

}  // namespace outpost::aggregator
