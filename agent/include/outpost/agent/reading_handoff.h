#pragma once

// Hands readings from a source's own thread (stdin, socket, MQTT callbacks) to the pipeline
// thread: a BoundedQueue of chunks (vectors of up to `chunk_readings` readings) plus a free list
// that recycles them, so the steady state allocates nothing. A full queue either blocks the
// producer (back-pressure) or drops the chunk, counting its readings.
// Thread-safety: put()/takeEmpty() from producer threads, drain() from the pipeline thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>

#include "outpost/common/bounded_queue.h"
#include "outpost/common/codec.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

class ReadingHandoff {
 public:
  ReadingHandoff(size_t max_chunks, size_t chunk_readings, bool block,
                 metrics::Counter* dropped = nullptr)
      : full_(max_chunks),
        free_(max_chunks + 4),
        chunk_readings_(chunk_readings),
        block_(block),
        dropped_counter_(dropped) {}

  size_t chunkReadings() const { return chunk_readings_; }

  std::vector<wire::Reading> takeEmpty() {
    if (auto v = free_.pop(std::chrono::milliseconds(0))) return std::move(*v);
    std::vector<wire::Reading> v;
    v.reserve(chunk_readings_);
    return v;
  }

  // Hands a non-empty chunk over. Returns false if it was dropped (queue full in drop mode, or
  // closed); the dropped readings are counted.
  bool put(std::vector<wire::Reading>&& chunk, bool may_block = true) {
    const size_t n = chunk.size();
    const bool ok =
        (block_ && may_block) ? full_.push(std::move(chunk)) : full_.tryPush(std::move(chunk));
    if (!ok) {
      dropped_.fetch_add(n, std::memory_order_relaxed);
      if (dropped_counter_) dropped_counter_->inc(n);
    }
    return ok;
  }

  // Appends the readings of up to `max_chunks` chunks to `out`; returns how many readings.
  size_t drain(std::vector<wire::Reading>& out, size_t max_chunks) {
    size_t n = 0;
    for (size_t i = 0; i < max_chunks; ++i) {
      auto chunk = full_.pop(std::chrono::milliseconds(0));
      if (!chunk) break;
      out.insert(out.end(), chunk->begin(), chunk->end());
      n += chunk->size();
      chunk->clear();
      free_.tryPush(std::move(*chunk));
    }
    return n;
  }

  size_t size() const { return full_.size(); }
  void close() { full_.close(); }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  BoundedQueue<std::vector<wire::Reading>> full_;
  BoundedQueue<std::vector<wire::Reading>> free_;
  size_t chunk_readings_;
  bool block_;
  metrics::Counter* dropped_counter_;
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace outpost::agent
