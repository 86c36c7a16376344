#include "outpost/common/metrics.h"

#include <charconv>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace outpost::metrics {
namespace {

std::string escapeLabel(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string labelText(const Labels& labels, const std::string& extra_key = "",
                      const std::string& extra_value = "") {
  if (labels.empty() && extra_key.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += (first ? "" : ",") + k + "=\"" + escapeLabel(v) + "\"";
    first = false;
  }
  if (!extra_key.empty()) out += (first ? "" : ",") + extra_key + "=\"" + extra_value + "\"";
  return out + "}";
}

std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest exact form: le="0.1"
  return std::string(buf, p);
}

// HELP text escaping of the exposition format: backslash and newline.
std::string escapeHelp(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

void Gauge::add(double d) {
  double cur = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) {
  if (!collectionEnabled()) return;
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  double cur = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(acc);
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  s.count = acc;
  return s;
}

std::vector<double> exponentialBuckets(double start, double factor, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i, start *= factor) b.push_back(start);
  return b;
}

Registry::Family& Registry::family(const std::string& name, const std::string& help, Kind kind) {
  auto [it, inserted] = families_.try_emplace(name, Family{help, kind, {}});
  if (!inserted && it->second.kind != kind) {
    throw std::logic_error("metric " + name + " registered with two different types");
  }
  return it->second;
}

Registry::Series* Registry::findSeries(Family& f, const Labels& labels) {
  for (auto& s : f.series) {
    if (s.labels == labels) return &s;
  }
  return nullptr;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  MutexLock lock(mu_);
  Family& f = family(name, help, Kind::kCounter);
  if (Series* s = findSeries(f, labels)) return *s->counter;
  Counter& c = counters_.emplace_back();
  f.series.push_back({labels, &c, nullptr, nullptr, {}});
  return c;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  MutexLock lock(mu_);
  Family& f = family(name, help, Kind::kGauge);
  if (Series* s = findSeries(f, labels); s && s->gauge) return *s->gauge;
  Gauge& g = gauges_.emplace_back();
  f.series.push_back({labels, nullptr, &g, nullptr, {}});
  return g;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help,
                               const std::vector<double>& bounds, const Labels& labels) {
  MutexLock lock(mu_);
  Family& f = family(name, help, Kind::kHistogram);
  if (Series* s = findSeries(f, labels)) return *s->histogram;
  Histogram* h = histograms_.emplace_back(std::make_unique<Histogram>(bounds)).get();
  f.series.push_back({labels, nullptr, nullptr, h, {}});
  return *h;
}

void Registry::gaugeFunction(const std::string& name, const std::string& help,
                             std::function<double()> fn, const Labels& labels) {
  MutexLock lock(mu_);
  Family& f = family(name, help, Kind::kGauge);
  if (Series* s = findSeries(f, labels)) {
    s->fn = std::move(fn);
    s->gauge = nullptr;
    return;
  }
  f.series.push_back({labels, nullptr, nullptr, nullptr, std::move(fn)});
}

void Registry::counterFunction(const std::string& name, const std::string& help,
                               std::function<double()> fn, const Labels& labels) {
  MutexLock lock(mu_);
  Family& f = family(name, help, Kind::kCounter);
  if (Series* s = findSeries(f, labels)) {
    s->fn = std::move(fn);
    s->counter = nullptr;
    return;
  }
  f.series.push_back({labels, nullptr, nullptr, nullptr, std::move(fn)});
}

uint64_t Registry::counterSum(const std::string& name) const {
  MutexLock lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  uint64_t sum = 0;
  for (const auto& s : it->second.series) {
    if (s.counter) sum += s.counter->value();
    else if (s.fn) sum += static_cast<uint64_t>(s.fn());
  }
  return sum;
}

std::vector<std::pair<Labels, double>> Registry::gaugeValues(const std::string& name) const {
  MutexLock lock(mu_);
  std::vector<std::pair<Labels, double>> out;
  auto it = families_.find(name);
  if (it == families_.end()) return out;
  for (const auto& s : it->second.series) {
    if (s.gauge) out.emplace_back(s.labels, s.gauge->value());
    else if (s.fn) out.emplace_back(s.labels, s.fn());
  }
  return out;
}

std::string Registry::render() const {
  MutexLock lock(mu_);
  std::ostringstream os;
  for (const auto& [name, f] : families_) {
    const char* type = f.kind == Kind::kCounter ? "counter"
                       : f.kind == Kind::kGauge ? "gauge"
                                                : "histogram";
    os << "# HELP " << name << " " << escapeHelp(f.help) << "\n# TYPE " << name << " " << type << "\n";
    for (const auto& s : f.series) {
      if (s.counter) {
        os << name << labelText(s.labels) << " " << s.counter->value() << "\n";
      } else if (s.gauge) {
        os << name << labelText(s.labels) << " " << num(s.gauge->value()) << "\n";
      } else if (s.fn) {
        os << name << labelText(s.labels) << " " << num(s.fn()) << "\n";
      } else if (s.histogram) {
        auto snap = s.histogram->snapshot();
        for (size_t i = 0; i < snap.bounds.size(); ++i) {
          os << name << "_bucket" << labelText(s.labels, "le", num(snap.bounds[i])) << " "
             << snap.cumulative[i] << "\n";
        }
        os << name << "_bucket" << labelText(s.labels, "le", "+Inf") << " " << snap.count << "\n";
        os << name << "_sum" << labelText(s.labels) << " " << num(snap.sum) << "\n";
        os << name << "_count" << labelText(s.labels) << " " << snap.count << "\n";
      }
    }
  }
  return os.str();
}

CounterVec::CounterVec(Registry& registry, std::string name, std::string help, std::string label)
    : registry_(registry),
      name_(std::move(name)),
      help_(std::move(help)),
      label_(std::move(label)) {}

Counter& CounterVec::with(std::string_view value) {
  const size_t n = count_.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i) {
    if (slots_[i].first == value) return *slots_[i].second;
  }
  MutexLock lock(mu_);
  const size_t m = count_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < m; ++i) {
    if (slots_[i].first == value) return *slots_[i].second;
  }
  const std::string v = m + 1 < kMaxValues ? std::string(value) : "other";
  Counter& c = registry_.counter(name_, help_, {{label_, v}});
  if (m < kMaxValues) {
    slots_[m] = {std::string(value), &c};
    count_.store(m + 1, std::memory_order_release);
  }
  return c;
}

}  // namespace outpost::metrics
