#include "outpost/aggregator/latest_store.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "outpost/common/json.h"
#include "outpost/common/settings.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::aggregator {
namespace {

constexpr int64_t kMaxStepS = 86400;
constexpr int64_t kMaxPoints = 10000;
constexpr int64_t kMaxTimeMs = 253402300799999;  // 9999-12-31T23:59:59.999Z
constexpr size_t kMaxRecent = 1440;
constexpr size_t kLateSearch = 16;  // buckets searched backwards for an out-of-order reading

const char* qualityText(uint8_t q) {
  switch (static_cast<wire::Quality>(q)) {
    case wire::Quality::Good: return "good";
    case wire::Quality::Suspect: return "suspect";
    case wire::Quality::Bad: return "bad";
  }
  return "unknown";
}

int64_t floorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

HttpServer::Response jsonResponse(int status, std::string body) {
  return {status, "application/json", std::move(body)};
}

HttpServer::Response badParam(const char* param, const std::string& value, const std::string& why) {
  std::string o;
  json::Writer(o)
      .beginObject()
      .member("error", std::string(param) + " " + why)
      .member("parameter", param)
      .member("value", value)
      .endObject();
  return jsonResponse(400, std::move(o));
}

HttpServer::Response notFound(const std::string& what, const std::string& device,
                              const std::string* sensor) {
  std::string o;
  json::Writer w(o);
  w.beginObject().member("error", what).member("device", device);
  if (sensor) w.member("sensor", *sensor);
  w.endObject();
  return jsonResponse(404, std::move(o));
}

bool parseInt(const std::string& s, int64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

struct LatestStore::Sensor {
  std::string unit;
  double value = 0;
  int64_t ts_us = std::numeric_limits<int64_t>::min();
  int64_t updated_us = 0;
  uint8_t quality = 0;
  bool dirty = false;
  std::unique_ptr<Bucket[]> ring;  // history_buckets_, oldest overwritten first
  size_t head = 0;                 // newest bucket
  size_t size = 0;                 // buckets in use
};

struct LatestStore::Device {
  std::map<std::string, Sensor, std::less<>> sensors;  // by name
};

struct LatestStore::Shard {
  mutable Mutex mu;
  std::unordered_map<std::string, Device> devices GUARDED_BY(mu);
  std::vector<Sensor*> by_id GUARDED_BY(mu);  // scratch of update()
};

namespace {

const config::SettingsTable<LatestOptions>& latestTable() {
  using L = LatestOptions;
  static const auto t =
      config::SettingsTable<L>()
          .boolean("latest.enabled", &L::enabled, true,
                   "Keep the latest value and a recent history per (device, sensor) for the HTTP "
                   "API (/api/devices/{id}/sensors) and the outpost.latest topic")
          .integer("latest.bucket_s", &L::bucket_s, 60, 1, 3600,
                   "Width of one history bucket (min/mean/max/count of the readings in it)")
          .integer("latest.history_bytes_per_sensor", &L::history_bytes, 34560, 24, 16 << 20,
                   "History ring of each sensor in bytes; 24 bytes a bucket (34560 = 1440 "
                   "one-minute buckets = 24 h). Allocated when the sensor is first seen")
          .integer("latest.max_bytes", &L::max_bytes, 512 << 20, 1 << 20, int64_t{1} << 40,
                   "Memory cap of all tracked sensors together (ring + 192 bytes + name and unit "
                   "per sensor, 160 bytes + id per device); beyond it new sensors are refused "
                   "(counted in outpost_aggregator_latest_refused_total), tracked ones keep "
                   "updating")
          .string("kafka.latest_topic", &L::topic, "outpost.latest",
                  "Compacted topic for each sensor's latest value (JSON, key = device/sensor); "
                  "create it with cleanup.policy=compact")
          .integer("latest.publish_interval_ms", &L::publish_interval_ms, 5000, 0, 3600000,
                   "Publish each sensor that changed to kafka.latest_topic at most once per "
                   "interval (at most tracked sensors / interval messages per second); 0: do not "
                   "publish");
  return t;
}

}  // namespace

void addLatestSettings(config::Schema& s) { latestTable().declare(s); }

LatestOptions latestOptionsFrom(const config::Config& cfg) { return latestTable().read(cfg); }

LatestStore::LatestStore(LatestOptions options, size_t shards, metrics::Registry& registry)
    : opt_(std::move(options)),
      history_buckets_(std::max<size_t>(1, opt_.history_bytes / kBucketBytes)),
      refused_(registry.counter(
          "outpost_aggregator_latest_refused_total",
          "Sensor entries of batches not tracked by the latest-state store (latest.max_bytes "
          "reached)")),
      late_(registry.counter("outpost_aggregator_latest_late_readings_total",
                             "Readings older than the history ring they belong to (not in the "
                             "history; the latest value is unaffected)")) {
  for (size_t i = 0; i < std::max<size_t>(1, shards); ++i) {
    shards_.push_back(std::make_unique<Shard>());
  }
  registry.gaugeFunction("outpost_aggregator_latest_sensors",
                         "(device, sensor) pairs tracked by the latest-state store",
                         [this] { return static_cast<double>(sensors()); });
  registry.gaugeFunction("outpost_aggregator_latest_bytes",
                         "Memory charged by the latest-state store (cap latest.max_bytes)",
                         [this] { return static_cast<double>(chargedBytes()); });
}

LatestStore::~LatestStore() = default;

LatestStore::Shard& LatestStore::shardOf(const std::string& device) const {
  return *shards_[std::hash<std::string>{}(device) % shards_.size()];
}

bool LatestStore::charge(size_t bytes) {
  size_t cur = charged_.load(std::memory_order_relaxed);
  do {
    if (cur + bytes > opt_.max_bytes) return false;
  } while (!charged_.compare_exchange_weak(cur, cur + bytes, std::memory_order_relaxed));
  return true;
}

namespace {

void merge(LatestStore::Bucket& b, double mn, double mx, double sum, uint32_t count) {
  const uint32_t total = b.count + count;
  b.mean = static_cast<float>((static_cast<double>(b.mean) * b.count + sum) / total);
  b.min = static_cast<float>(std::min<double>(b.min, mn));
  b.max = static_cast<float>(std::max<double>(b.max, mx));
  b.count = total;
}

}  // namespace

void LatestStore::update(const std::string& device, const wire::Batch& batch, int64_t now_us) {
  const auto* dict = batch.sensors();
  if (!dict || dict->size() == 0) return;
  const int64_t bucket_us = opt_.bucket_s * 1'000'000;
  const size_t cap = history_buckets_;
  uint32_t refused = 0, late = 0;

  auto addToHistory = [&](Sensor& s, int64_t ts_us, double mn, double mx, double sum,
                          uint32_t count) {
    const int64_t idx = floorDiv(ts_us, bucket_us);
    if (s.size == 0) {
      s.ring[0] = Bucket{idx, count, static_cast<float>(mn), static_cast<float>(mx),
                         static_cast<float>(sum / count)};
      s.head = 0;
      s.size = 1;
      return;
    }
    Bucket& h = s.ring[s.head];
    if (idx == h.index) return merge(h, mn, mx, sum, count);
    if (idx > h.index) {
      s.head = (s.head + 1) % cap;
      s.ring[s.head] = Bucket{idx, count, static_cast<float>(mn), static_cast<float>(mx),
                              static_cast<float>(sum / count)};
      s.size = std::min(s.size + 1, cap);
      return;
    }
    for (size_t k = 1; k < std::min(s.size, kLateSearch); ++k) {  // out of order: recent bucket?
      Bucket& b = s.ring[(s.head + cap - k) % cap];
      if (b.index == idx) return merge(b, mn, mx, sum, count);
      if (b.index < idx) break;
    }
    ++late;
  };

  Shard& sh = shardOf(device);
  MutexLock lock(sh.mu);
  auto dit = sh.devices.find(device);
  if (dit == sh.devices.end()) {
    if (!charge(kDeviceOverheadBytes + device.size())) {
      refused_.inc(dict->size());
      return;
    }
    dit = sh.devices.emplace(device, Device{}).first;
  }
  Device& dev = dit->second;
  // Sensor id -> tracked sensor (nullptr: refused), resolved once per batch.
  uint16_t max_id = 0;
  for (const auto* e : *dict) max_id = std::max(max_id, e->id());
  sh.by_id.assign(static_cast<size_t>(max_id) + 1, nullptr);
  for (const auto* e : *dict) {
    const std::string_view name = e->name()->string_view();
    const std::string_view unit = e->unit() ? e->unit()->string_view() : std::string_view();
    auto it = dev.sensors.find(name);
    if (it == dev.sensors.end()) {
      if (!charge(bytesPerSensor() + name.size() + unit.size())) {
        ++refused;
        continue;
      }
      it = dev.sensors.emplace(std::string(name), Sensor{}).first;
      it->second.ring = std::make_unique<Bucket[]>(cap);
      sensors_.fetch_add(1, std::memory_order_relaxed);
    }
    if (it->second.unit != unit) it->second.unit.assign(unit);
    sh.by_id[e->id()] = &it->second;
  }

  auto touch = [&](Sensor& s, int64_t ts_us, double v, uint8_t quality) {
    if (ts_us >= s.ts_us) {
      s.ts_us = ts_us;
      s.value = v;
      s.quality = quality;
    }
    s.updated_us = now_us;
    s.dirty = true;
  };
  if (const auto* rs = batch.readings()) {
    for (const wire::Reading* r : *rs) {
      Sensor* s = r->sensor() < sh.by_id.size() ? sh.by_id[r->sensor()] : nullptr;
      if (!s) continue;
      const double v = r->value();
      touch(*s, r->ts_us(), v, static_cast<uint8_t>(r->quality()));
      if (std::isfinite(v)) addToHistory(*s, r->ts_us(), v, v, v, 1);
    }
  }
  if (const auto* ws = batch.windows()) {
    for (const wire::WindowStat* w : *ws) {
      Sensor* s = w->sensor() < sh.by_id.size() ? sh.by_id[w->sensor()] : nullptr;
      if (!s || w->count() == 0) continue;
      touch(*s, w->end_us(), w->last(), static_cast<uint8_t>(wire::Quality::Good));
      if (std::isfinite(w->mean()) && std::isfinite(w->min()) && std::isfinite(w->max())) {
        addToHistory(*s, w->end_us() - 1, w->min(), w->max(), w->mean() * w->count(), w->count());
      }
    }
  }
  if (refused) refused_.inc(refused);
  if (late) late_.inc(late);
}

HttpServer::Response LatestStore::sensorsJson(const std::string& device, size_t recent) const {
  std::string o;
  json::Writer w(o);
  w.beginObject().member("device", device).member("bucket_s", opt_.bucket_s).key("sensors");
  w.beginArray();
  const Shard& sh = shardOf(device);
  {
    MutexLock lock(sh.mu);
    auto dit = sh.devices.find(device);
    if (dit == sh.devices.end()) return notFound("no readings from this device", device, nullptr);
    for (const auto& [name, s] : dit->second.sensors) {
      w.beginObject()
          .member("name", name)
          .member("unit", s.unit)
          .member("value", s.value)
          .member("ts_us", s.ts_us)
          .member("quality", qualityText(s.quality))
          .member("updated_us", s.updated_us)
          .member("history_buckets", static_cast<int64_t>(s.size));
      if (recent > 0) {  // [bucket start ms, mean], oldest first
        w.key("recent").beginArray();
        const size_t n = std::min(recent, s.size);
        for (size_t k = n; k-- > 0;) {
          const Bucket& b = s.ring[(s.head + history_buckets_ - k) % history_buckets_];
          w.beginArray().integer(b.index * opt_.bucket_s * 1000).number(b.mean).endArray();
        }
        w.endArray();
      }
      w.endObject();
    }
  }
  w.endArray().endObject();
  return jsonResponse(200, std::move(o));
}

HttpServer::Response LatestStore::historyJson(const std::string& device, const std::string& sensor,
                                              const HttpServer::Request& req,
                                              int64_t now_us) const {
  const int64_t bucket_s = opt_.bucket_s;
  int64_t to_ms = now_us / 1000, from_ms = 0, step_s = bucket_s;
  const std::string to_s = req.param("to"), from_s = req.param("from"),
                    step_str = req.param("step");
  // Bounded so that the arithmetic below cannot overflow (found by fuzz.history_query).
  const auto badTime = [](int64_t ms) { return ms < 0 || ms > kMaxTimeMs; };
  const std::string time_rule =
      "must be an integer: Unix time in milliseconds, 0 to " + std::to_string(kMaxTimeMs);
  if (!to_s.empty() && (!parseInt(to_s, to_ms) || badTime(to_ms))) {
    return badParam("to", to_s, time_rule);
  }
  from_ms = to_ms - 3'600'000;
  if (!from_s.empty() && (!parseInt(from_s, from_ms) || badTime(from_ms))) {
    return badParam("from", from_s, time_rule);
  }
  if (from_ms >= to_ms) {
    return badParam("from", from_s, "must be before to (" + std::to_string(to_ms) + ")");
  }
  if (!step_str.empty() &&
      (!parseInt(step_str, step_s) || step_s < bucket_s || step_s > kMaxStepS ||
       step_s % bucket_s != 0)) {
    return badParam("step", step_str,
                    "must be a multiple of latest.bucket_s (" + std::to_string(bucket_s) +
                        ") in seconds, at most " + std::to_string(kMaxStepS));
  }
  const int64_t step_ms = step_s * 1000;
  // Overflow-safe: from < to, both int64.
  const uint64_t span = static_cast<uint64_t>(to_ms) - static_cast<uint64_t>(from_ms);
  const auto step_u = static_cast<uint64_t>(step_ms);
  const uint64_t points = (span + step_u - 1) / step_u;
  if (points > static_cast<uint64_t>(kMaxPoints)) {
    return badParam("step", step_str.empty() ? std::to_string(step_s) : step_str,
                    "gives " + std::to_string(points) + " points between from and to; at most " +
                        std::to_string(kMaxPoints) + " (use a larger step or a shorter range)");
  }

  std::vector<Bucket> buckets;  // in range, oldest first
  std::string unit;
  {
    const Shard& sh = shardOf(device);
    MutexLock lock(sh.mu);
    auto dit = sh.devices.find(device);
    if (dit == sh.devices.end()) return notFound("no readings from this device", device, nullptr);
    auto sit = dit->second.sensors.find(sensor);
    if (sit == dit->second.sensors.end()) {
      return notFound("no such sensor on this device", device, &sensor);
    }
    const Sensor& s = sit->second;
    unit = s.unit;
    for (size_t k = s.size; k-- > 0;) {
      const Bucket& b = s.ring[(s.head + history_buckets_ - k) % history_buckets_];
      const int64_t start_ms = b.index * bucket_s * 1000;
      if (start_ms >= from_ms && start_ms < to_ms) buckets.push_back(b);
    }
  }
  std::string o;
  json::Writer w(o);
  w.beginObject()
      .member("device", device)
      .member("sensor", sensor)
      .member("unit", unit)
      .member("from", from_ms)
      .member("to", to_ms)
      .member("step", step_s)
      .key("columns").beginArray();
  for (const char* c : {"ts_ms", "min", "mean", "max", "count"}) w.string(c);
  w.endArray().key("points").beginArray();
  // Bins of `step` from `from`; only bins with readings are listed.
  for (size_t i = 0; i < buckets.size();) {
    const int64_t bin = (buckets[i].index * bucket_s * 1000 - from_ms) / step_ms;
    double mn = buckets[i].min, mx = buckets[i].max, sum = 0;
    uint64_t count = 0;
    for (; i < buckets.size() && (buckets[i].index * bucket_s * 1000 - from_ms) / step_ms == bin;
         ++i) {
      mn = std::min<double>(mn, buckets[i].min);
      mx = std::max<double>(mx, buckets[i].max);
      sum += static_cast<double>(buckets[i].mean) * buckets[i].count;
      count += buckets[i].count;
    }
    w.beginArray()
        .integer(from_ms + bin * step_ms)
        .number(mn)
        .number(count ? sum / static_cast<double>(count) : std::nan(""))
        .number(mx)
        .uinteger(count)
        .endArray();
  }
  w.endArray().endObject();
  return jsonResponse(200, std::move(o));
}

void LatestStore::addRoutes(HttpServer& http, const Clock& clock) const {
  http.addRequestHandler(R"(/api/devices/([^/]+)/sensors)", [this](const HttpServer::Request& r) {
    const std::string recent_s = r.param("recent");
    int64_t recent = 0;
    if (!recent_s.empty() &&
        (!parseInt(recent_s, recent) || recent < 0 || recent > static_cast<int64_t>(kMaxRecent))) {
      return badParam("recent", recent_s,
                      "must be an integer from 0 to " + std::to_string(kMaxRecent));
    }
    return sensorsJson(r.matches.at(1), static_cast<size_t>(recent));
  });
  http.addRequestHandler(R"(/api/devices/([^/]+)/sensors/([^/]+)/history)",
                         [this, &clock](const HttpServer::Request& r) {
                           return historyJson(r.matches.at(1), r.matches.at(2), r,
                                              clock.nowUs());
                         });
}

std::vector<LatestStore::Changed> LatestStore::collectChanged() {
  std::vector<Changed> out;
  for (auto& shp : shards_) {
    MutexLock lock(shp->mu);
    for (auto& [id, dev] : shp->devices) {
      for (auto& [name, s] : dev.sensors) {
        if (!s.dirty) continue;
        s.dirty = false;
        Changed c;
        c.key = id + "/" + name;
        json::Writer(c.value)
            .beginObject()
            .member("device", id)
            .member("sensor", name)
            .member("unit", s.unit)
            .member("ts", s.ts_us)
            .member("value", s.value)
            .member("quality", qualityText(s.quality))
            .member("updated_us", s.updated_us)
            .endObject();
        out.push_back(std::move(c));
      }
    }
  }
  return out;
}

}  // namespace outpost::aggregator
