#pragma once

// A small Prometheus metrics registry. Registration takes a lock and returns a reference that stays
// valid for the registry's lifetime; updating a metric is lock-free (atomics), so hot paths keep
// the reference and never look metrics up by name.
// Thread-safety: every method may be called from any thread.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace outpost::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double d);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Cumulative histogram with fixed upper bounds (seconds, bytes, ...).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    double sum;
    uint64_t count;
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1, non-cumulative
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Exponential bucket bounds: start, start*factor, ... (count bounds).
std::vector<double> exponentialBuckets(double start, double factor, int count);

class Registry {
 public:
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help,
                       const std::vector<double>& bounds, const Labels& labels = {});
  // A gauge computed at scrape time (called from the HTTP thread; must be thread-safe).
  void gaugeFunction(const std::string& name, const std::string& help,
                     std::function<double()> fn, const Labels& labels = {});

  // A counter read at scrape time from a monotonic source (e.g. a store's own totals).
  void counterFunction(const std::string& name, const std::string& help,
                       std::function<double()> fn, const Labels& labels = {});

  // Prometheus text exposition format 0.0.4.
  std::string render() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Series {
    Labels labels;
    Counter* counter = nullptr;
    Gauge* gauge = nullptr;
    Histogram* histogram = nullptr;
    std::function<double()> fn;
  };
  struct Family {
    std::string help;
    Kind kind;
    std::vector<Series> series;
  };
  Family& family(const std::string& name, const std::string& help, Kind kind);
  Series* findSeries(Family& f, const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;  // GUARDED_BY(mu_)
  std::deque<Counter> counters_;            // GUARDED_BY(mu_); deque: stable addresses
  std::deque<Gauge> gauges_;                // GUARDED_BY(mu_)
  std::deque<std::unique_ptr<Histogram>> histograms_;  // GUARDED_BY(mu_)
};

}  // namespace outpost::metrics
