#pragma once

// The serving side of the readings: per (device, sensor) the latest value, its timestamp, quality
// and unit, and a bounded recent history of fixed-width buckets (min/mean/max/count), served over
// HTTP and published to the compacted topic outpost.latest (key = device/sensor).
//
// Memory: each tracked sensor owns one fixed ring of `history_buckets` buckets (kBucketBytes each),
// allocated when the sensor is first seen, plus a fixed overhead (kSensorOverheadBytes + name and
// unit). The store charges that against `max_bytes` before tracking a sensor; once the cap is
// reached new sensors (and devices) are refused, counted in
// outpost_aggregator_latest_refused_sensors_total, and never tracked; tracked ones keep updating.
// Nothing is evicted, so what is served never silently disappears.
//
// Threads: the store is split into shards, one per aggregator worker (a device is always updated
// by the same worker). update() takes its shard's mutex once per batch, not per reading, and
// allocates only for a sensor seen for the first time; HTTP threads (sensorsJson, historyJson) and
// the publisher (collectChanged) take the same mutex briefly to copy what they need.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "outpost/common/clock.h"
#include "outpost/common/config.h"
#include "outpost/common/http_server.h"
#include "outpost/common/metrics.h"
#include "outpost/wire/batch_generated.h"

namespace outpost::aggregator {

struct LatestOptions {
  bool enabled = true;
  int64_t bucket_s = 60;             // width of a history bucket
  size_t history_bytes = 34560;      // per sensor: 1440 buckets of 24 bytes = 24 h of minutes
  size_t max_bytes = 512u << 20;     // all sensors together
  std::string topic = "outpost.latest";
  int publish_interval_ms = 5000;    // 0: not published
};

LatestOptions latestOptionsFrom(const config::Config& cfg);
// Adds the latest.* settings to the aggregator's table.
void addLatestSettings(config::Schema& s);

class LatestStore {
 public:
  struct Bucket {       // 24 bytes
    int64_t index = 0;  // ts_us / (bucket_s * 1e6)
    uint32_t count = 0;
    float min = 0, max = 0, mean = 0;
  };
  static constexpr size_t kBucketBytes = sizeof(Bucket);
  // Charged per sensor besides its ring, name and unit (the Sensor struct, its map node, the
  // allocator's headers); per device besides its id.
  static constexpr size_t kSensorOverheadBytes = 192;
  static constexpr size_t kDeviceOverheadBytes = 160;

  struct Changed {  // one sensor's latest state, for outpost.latest
    std::string key;    // device/sensor
    std::string value;  // JSON
  };

  LatestStore(LatestOptions options, size_t shards, metrics::Registry& registry);
  ~LatestStore();

  const LatestOptions& options() const { return opt_; }
  size_t historyBuckets() const { return history_buckets_; }
  // Bytes one sensor costs (ring + fixed overhead), without its name and unit.
  size_t bytesPerSensor() const { return history_buckets_ * kBucketBytes + kSensorOverheadBytes; }
  size_t chargedBytes() const { return charged_.load(std::memory_order_relaxed); }
  size_t sensors() const { return sensors_.load(std::memory_order_relaxed); }

  // Records the readings and windows of a verified batch (any thread; the aggregator calls it
  // from the device's worker, so shards are not contended between workers). `now_us`: wall clock.
  void update(const std::string& device, const wire::Batch& batch, int64_t now_us);

  // GET /api/devices/{id}/sensors[?recent=N]: N > 0 adds each sensor's last N bucket means.
  HttpServer::Response sensorsJson(const std::string& device, size_t recent = 0) const;
  // GET /api/devices/{id}/sensors/{name}/history?from=&to=&step= (from/to: Unix ms; step: s).
  HttpServer::Response historyJson(const std::string& device, const std::string& sensor,
                                   const HttpServer::Request& req, int64_t now_us) const;
  // Adds both routes to `http` (call before http.start()); `clock` gives "now" for history.
  void addRoutes(HttpServer& http, const Clock& clock) const;
  // Sensors updated since the last call, as outpost.latest records (the publisher thread).
  std::vector<Changed> collectChanged();

 private:
  struct Sensor;
  struct Device;
  struct Shard;
  Shard& shardOf(const std::string& device) const;
  bool charge(size_t bytes);

  const LatestOptions opt_;
  const size_t history_buckets_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<size_t> charged_{0};
  std::atomic<size_t> sensors_{0};
  metrics::Counter& refused_;
  metrics::Counter& late_;
};

}  // namespace outpost::aggregator
