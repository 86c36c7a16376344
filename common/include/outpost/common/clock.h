#pragma once

// Time comes in through this interface so tests can control it (cf. LevelDB's Env).

#include <chrono>
#include <cstdint>

namespace outpost {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall clock, microseconds since the Unix epoch (event timestamps).
  virtual int64_t nowUs() const = 0;
  // Monotonic clock, microseconds since an arbitrary origin (timeouts, linger).
  virtual int64_t monotonicUs() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t nowUs() const override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  int64_t monotonicUs() const override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  static SystemClock& instance() {
    static SystemClock clock;
    return clock;
  }
};

}  // namespace outpost
