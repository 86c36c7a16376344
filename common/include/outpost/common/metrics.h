#pragma once

// A small Prometheus metrics registry. Registration takes a lock and returns a reference that stays
// valid for the registry's lifetime; updating a metric is lock-free (atomics), so hot paths keep
// the reference and never look metrics up by name.
// Thread-safety: every method may be called from any thread.

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "outpost/common/thread_annotations.h"

namespace outpost::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

namespace detail {
inline std::atomic<bool> collecting{true};
}
// Process-wide switch, for measuring what metrics cost: false turns Counter::inc and
// Histogram::observe into no-ops (gauges and scrape-time functions still work). Default true.
inline void setCollectionEnabled(bool on) { detail::collecting.store(on); }
inline bool collectionEnabled() { return detail::collecting.load(std::memory_order_relaxed); }

class Counter {
 public:
  void inc(uint64_t n = 1) {
    if (collectionEnabled()) value_.fetch_add(n, std::memory_order_relaxed);
  }
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

  // A counter whose value is read at scrape time (a total kept elsewhere, e.g. persisted in a
  // store); `fn` must be thread-safe and never decrease.
  void counterFunction(const std::string& name, const std::string& help,
                       std::function<double()> fn, const Labels& labels = {});

  // Prometheus text exposition format 0.0.4.
  std::string render() const;

  // Sum of every series of counter family `name` (0 if there is none): e.g. rejections over all
  // reasons, for the dashboard.
  uint64_t counterSum(const std::string& name) const;
  // Current value of every series of gauge family `name` (scrape-time functions are called).
  std::vector<std::pair<Labels, double>> gaugeValues(const std::string& name) const;

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
  Family& family(const std::string& name, const std::string& help, Kind kind) REQUIRES(mu_);
  Series* findSeries(Family& f, const Labels& labels);

  mutable Mutex mu_;
  std::map<std::string, Family> families_ GUARDED_BY(mu_);
  std::deque<Counter> counters_ GUARDED_BY(mu_);  // deque: stable addresses
  std::deque<Gauge> gauges_ GUARDED_BY(mu_);
  std::deque<std::unique_ptr<Histogram>> histograms_ GUARDED_BY(mu_);
};

// A counter family with one label whose few values are known only at run time (transport, kind):
// a series is registered on first use of its value, later uses find it without locking. At most
// kMaxValues distinct values; further values share the series "other".
// Thread-safety: any thread.
class CounterVec {
 public:
  CounterVec(Registry& registry, std::string name, std::string help, std::string label);
  Counter& with(std::string_view value);

 private:
  static constexpr size_t kMaxValues = 32;
  Registry& registry_;
  const std::string name_, help_, label_;
  Mutex mu_;  // serialises registration only
  std::array<std::pair<std::string, Counter*>, kMaxValues> slots_;  // written before count_ grows
  std::atomic<size_t> count_{0};
};

}  // namespace outpost::metrics
